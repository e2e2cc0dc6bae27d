"""The sqlite store's read caches and partial writes, against the database itself.

The store keeps decoded objects (checked against the object's revision on every read)
and tenant records (checked against sqlite's data_version), and an update rewrites only
the index rows of the attributes it changed.  These tests use a second store on the
same file, as a second worker process would, to check that nothing stale is ever
served, and compare the index with what the stored attributes say it must hold.
"""

from __future__ import annotations

import sqlite3
from typing import Any, cast

from twisted.trial.unittest import SynchronousTestCase, TestCase

from kmiptwist import ttlv
from kmiptwist.interfaces import ConcurrentModification, LocateCriterion, Tenant
from kmiptwist.objects import ManagedObject
from kmiptwist.store import schema
from kmiptwist.store.sqlite import SQLiteStore, _index_changes
from kmiptwist.vocabulary.enums import ObjectType, State
from kmiptwist.vocabulary.tags import Tag


def _object(uid: str) -> ManagedObject:
    obj = ManagedObject(uid, "alpha", ObjectType.SYMMETRIC_KEY, wrapped_material=b"wrapped")
    obj.set("Unique Identifier", ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid))
    obj.set("State", ttlv.enumeration(Tag.STATE, State.PRE_ACTIVE))
    obj.set("Cryptographic Length", ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, 256))
    obj.add(
        "Name",
        ttlv.structure(
            Tag.NAME,
            [ttlv.text_string(Tag.NAME_VALUE, "vm-1"), ttlv.enumeration(Tag.NAME_TYPE, 1)],
        ),
    )
    return obj


class StoreCacheTests(TestCase):
    """Reads served from memory are never stale; partial writes store the same thing."""

    def make_store(self, path: str, object_cache_size: int = 10_000) -> SQLiteStore:
        from twisted.internet import reactor

        store = SQLiteStore(path, cast(Any, reactor), object_cache_size=object_cache_size)
        store.startService()
        self.addCleanup(store.stopService)
        return store

    async def two_stores(self) -> tuple[SQLiteStore, SQLiteStore, str]:
        path = self.mktemp()
        first = self.make_store(path)
        await first.add_tenant(Tenant("alpha"))
        return first, self.make_store(path), path

    def stored(self, path: str, uid: str) -> tuple[dict[str, list[ttlv.Item]], set[Any]]:
        """The object's attributes as stored in its row, and its rows in the index."""
        database = sqlite3.connect(path)
        try:
            ((seq, tenant, blob),) = database.execute(
                "SELECT seq, tenant, attributes FROM objects WHERE unique_identifier = ?", (uid,)
            ).fetchall()
            index = set(
                database.execute(
                    'SELECT tenant, name, "match" FROM attribute_index WHERE seq = ?', (seq,)
                ).fetchall()
            )
        finally:
            database.close()
        attributes = schema.decode_attributes(blob)
        return attributes, index

    def assert_index_exact(self, path: str, uid: str) -> dict[str, list[ttlv.Item]]:
        """The index holds exactly one row per searchable value of the stored attributes
        (what Locate finds depends on it); returns the stored attributes."""
        with sqlite3.connect(path) as database:
            ((tenant,),) = database.execute(
                "SELECT tenant FROM objects WHERE unique_identifier = ?", (uid,)
            ).fetchall()
        attributes, index = self.stored(path, uid)
        expected = {
            (tenant, name, schema.match_value(item))
            for name, items in attributes.items()
            for item in items
        }
        self.assertEqual(index, expected)
        return attributes

    async def test_change_by_another_worker_is_seen_at_once(self) -> None:
        """A key destroyed by another worker process is destroyed for this one at its
        very next read, although this one had the key in memory."""
        first, second, _ = await self.two_stores()
        await first.add_object(_object("k1"))
        seen = await first.get_object("alpha", "k1")
        self.assertEqual(seen.state, State.PRE_ACTIVE)
        theirs = await second.get_object("alpha", "k1")
        theirs.set("State", ttlv.enumeration(Tag.STATE, State.DESTROYED))
        theirs.wrapped_material = None
        await second.update_object(theirs)
        again = await first.get_object("alpha", "k1")
        self.assertEqual(again.state, State.DESTROYED)
        self.assertIsNone(again.wrapped_material)
        self.assertEqual(again.revision, 1)

    async def test_removal_by_another_worker_is_seen_at_once(self) -> None:
        """A tenant removed through another worker takes its objects with it here too."""
        first, second, _ = await self.two_stores()
        await first.add_object(_object("k1"))
        await first.get_object("alpha", "k1")
        await second.remove_tenant("alpha", True)
        self.assertIsNone(await first.get_object("alpha", "k1"))
        self.assertIsNone(await first.get_tenant("alpha"))

    async def test_tenant_change_by_another_worker_is_seen_at_once(self) -> None:
        """A tenant bound to another root key through one worker is read with that key
        by every worker at its next request."""
        first, second, _ = await self.two_stores()
        self.assertEqual((await first.get_tenant("alpha")).root_key_kind, "local")
        await second.set_root_key("alpha", "keyprotect", "root-1", {"instance": "i-1"})
        tenant = await first.get_tenant("alpha")
        self.assertEqual((tenant.root_key_kind, tenant.root_key_id), ("keyprotect", "root-1"))

    async def test_partial_update_stores_what_a_full_one_would(self) -> None:
        """Changing one attribute, removing one, adding one and moving one stores exactly
        the object's attributes, in its order, as a fresh reader sees them."""
        first, second, path = await self.two_stores()
        await first.add_object(_object("k1"))
        obj = await first.get_object("alpha", "k1")
        obj.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        obj.remove("Cryptographic Length")
        obj.add("x-Vendor", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "VMware, Inc."))
        name = obj.remove("Name")
        assert name is not None
        obj.add("Name", name)
        await first.update_object(obj)
        expected = ["Unique Identifier", "State", "x-Vendor", "Name"]
        self.assertEqual(list(self.assert_index_exact(path, "k1")), expected)
        fresh = await self.make_store(path).get_object("alpha", "k1")
        self.assertEqual(list(fresh.attributes), expected)
        self.assertEqual(fresh.attributes, obj.attributes)
        self.assertEqual(
            await first.locate(
                "alpha", [LocateCriterion("State", obj.values("State")[0])], 0, None
            ),
            ["k1"],
        )

    async def test_many_attributes(self) -> None:
        """An object with hundreds of attributes is stored, indexed and found by any of
        them."""
        first, _, path = await self.two_stores()
        obj = _object("k1")
        for n in range(250):
            obj.add(f"x-{n}", ttlv.text_string(Tag.ATTRIBUTE_VALUE, f"v{n}"))
        await first.add_object(obj)
        obj.set("x-249", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "changed"))
        for n in range(120):
            obj.add(f"y-{n}", ttlv.integer(Tag.ATTRIBUTE_VALUE, n))
        await first.update_object(obj)
        self.assertEqual(self.assert_index_exact(path, "k1"), obj.attributes)
        last = LocateCriterion("y-119", ttlv.integer(Tag.ATTRIBUTE_VALUE, 119))
        self.assertEqual(await first.locate("alpha", [last], 0, None), ["k1"])

    async def test_objects_served_from_memory_can_be_changed_freely(self) -> None:
        """Changing an object read from memory (structures included) changes neither the
        stored object nor what the next reader gets."""
        first, _, _ = await self.two_stores()
        await first.add_object(_object("k1"))
        seen = await first.get_object("alpha", "k1")
        seen.values("Name")[0].value.append(ttlv.text_string(Tag.NAME_VALUE, "other"))
        seen.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        again = await first.get_object("alpha", "k1")
        self.assertEqual(len(again.values("Name")[0].value), 2)
        self.assertEqual(again.state, State.PRE_ACTIVE)

    async def test_updates_without_a_cached_copy(self) -> None:
        """A store that keeps no decoded objects, and one whose copy another worker made
        stale, still leave the index exactly matching what they stored."""
        first, second, path = await self.two_stores()
        uncached = self.make_store(path, object_cache_size=0)
        await first.add_object(_object("k1"))
        obj = await uncached.get_object("alpha", "k1")
        obj.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        obj.add("Name", ttlv.structure(Tag.NAME, [ttlv.text_string(Tag.NAME_VALUE, "vm-2")]))
        obj.remove("Cryptographic Length")
        await uncached.update_object(obj)
        self.assert_index_exact(path, "k1")
        # ``first`` still has revision 0 in memory; ``second`` reads revision 1.
        theirs = await second.get_object("alpha", "k1")
        theirs.add("x-a", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "a"))
        theirs.add("x-a", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "a"))
        await second.update_object(theirs)
        mine = await first.get_object("alpha", "k1")
        self.assertEqual(mine.attributes, theirs.attributes)
        mine.set("x-a", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "b"))
        await first.update_object(mine)
        self.assertEqual(self.assert_index_exact(path, "k1"), mine.attributes)
        b = LocateCriterion("x-a", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "b"))
        a = LocateCriterion("x-a", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "a"))
        self.assertEqual(await uncached.locate("alpha", [b], 0, None), ["k1"])
        self.assertEqual(await uncached.locate("alpha", [a], 0, None), [])

    async def test_update_of_a_recreated_object(self) -> None:
        """An object removed and created again under its identifier by another worker is
        updated as what it now is, not as the object this store remembers."""
        first, second, path = await self.two_stores()
        await first.add_object(_object("k1"))
        await first.get_object("alpha", "k1")
        await second.remove_tenant("alpha", True)
        again = _object("k1")
        again.set("x-new", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "new"))
        await second.add_object(again)
        theirs = await second.get_object("alpha", "k1")
        theirs.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        await first.update_object(theirs)
        self.assertEqual(self.assert_index_exact(path, "k1"), theirs.attributes)

    async def test_stale_copy_is_refused(self) -> None:
        """An update from a copy read before another worker's change fails, whether or
        not this store still has that revision in memory, and changes nothing."""
        first, second, path = await self.two_stores()
        await first.add_object(_object("k1"))
        mine = await first.get_object("alpha", "k1")
        theirs = await second.get_object("alpha", "k1")
        theirs.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        await second.update_object(theirs)
        mine.set("State", ttlv.enumeration(Tag.STATE, State.DESTROYED))
        with self.assertRaises(ConcurrentModification):
            await first.update_object(mine)
        self.assertEqual(self.assert_index_exact(path, "k1"), theirs.attributes)

    async def test_revision_of_another_workers_change(self) -> None:
        """The revision read is the one committed by any worker, at once."""
        first, second, _ = await self.two_stores()
        await first.add_object(_object("k1"))
        seq, revision = await first.object_revision("alpha", "k1")
        theirs = await second.get_object("alpha", "k1")
        await second.update_object(theirs)
        self.assertEqual(await first.object_revision("alpha", "k1"), (seq, revision + 1))
        await second.remove_tenant("alpha", True)
        self.assertIsNone(await first.object_revision("alpha", "k1"))

    async def test_forced_tenant_removal_empties_its_index(self) -> None:
        """Removing a tenant by force removes its objects' index rows too, and no other
        tenant's."""
        first, _, path = await self.two_stores()
        await first.add_tenant(Tenant("beta"))
        await first.add_object(_object("k1"))
        other = _object("k2")
        other.tenant = "beta"
        await first.add_object(other)
        await first.remove_tenant("alpha", True)
        with sqlite3.connect(path) as database:
            tenants = database.execute("SELECT DISTINCT tenant FROM attribute_index").fetchall()
        self.assertEqual(tenants, [("beta",)])
        self.assert_index_exact(path, "k2")


class IndexChangesTests(SynchronousTestCase):
    """An update touches only the index rows of the attributes it changed."""

    def test_only_changed_names(self) -> None:
        """A state change deletes the old state's row and inserts the new one; moving an
        attribute, or keeping one, touches nothing; a removed attribute loses its rows
        and a repeated value has one row."""
        before = _object("k1").attributes
        after = dict(before)
        after["State"] = [ttlv.enumeration(Tag.STATE, State.ACTIVE)]
        after["Name"] = after.pop("Name")
        del after["Cryptographic Length"]
        after["x-a"] = [
            ttlv.text_string(Tag.ATTRIBUTE_VALUE, "v"),
            ttlv.text_string(Tag.ATTRIBUTE_VALUE, "v"),
        ]
        stale, fresh = _index_changes(before, after)
        self.assertEqual(
            sorted(stale, key=repr),
            sorted([("State", State.PRE_ACTIVE), ("Cryptographic Length", 256)], key=repr),
        )
        self.assertEqual(sorted(fresh, key=repr), [("State", State.ACTIVE), ("x-a", "v")])

    def test_instances_changed_within_a_name(self) -> None:
        """Of a name's instances, only values that appear or disappear change rows."""
        one, two, three = (ttlv.text_string(Tag.ATTRIBUTE_VALUE, v) for v in "123")
        stale, fresh = _index_changes({"x-a": [one, two]}, {"x-a": [two, three, two]})
        self.assertEqual((stale, fresh), ([("x-a", "1")], [("x-a", "3")]))
        self.assertEqual(_index_changes({"x-a": [one, two]}, {"x-a": [one, two]}), ([], []))
