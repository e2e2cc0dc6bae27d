"""The sqlite store's read caches and partial writes, against the database itself.

The store keeps decoded objects (checked against the object's revision on every read)
and tenant records (checked against sqlite's data_version), and writes only the
attributes an update changed.  These tests use a second store on the same file, as a
second worker process would, to check that nothing stale is ever served.
"""

from __future__ import annotations

import sqlite3
from typing import Any, cast

from twisted.trial.unittest import TestCase

from kmiptwist import ttlv
from kmiptwist.interfaces import LocateCriterion, Tenant
from kmiptwist.objects import ManagedObject
from kmiptwist.store.sqlite import SQLiteStore
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

    def make_store(self, path: str) -> SQLiteStore:
        from twisted.internet import reactor

        store = SQLiteStore(path, cast(Any, reactor))
        store.startService()
        self.addCleanup(store.stopService)
        return store

    async def two_stores(self) -> tuple[SQLiteStore, SQLiteStore, str]:
        path = self.mktemp()
        first = self.make_store(path)
        await first.add_tenant(Tenant("alpha"))
        return first, self.make_store(path), path

    def rows(self, path: str, uid: str) -> list[tuple[str, int, int]]:
        with sqlite3.connect(path) as database:
            found: list[tuple[str, int, int]] = database.execute(
                "SELECT name, idx, position FROM attributes WHERE unique_identifier = ?"
                " ORDER BY position, idx",
                (uid,),
            ).fetchall()
        return found

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
        self.assertEqual([row[0] for row in self.rows(path, "k1")], expected)
        self.assertEqual([row[2] for row in self.rows(path, "k1")], [0, 1, 2, 3])
        fresh = await self.make_store(path).get_object("alpha", "k1")
        self.assertEqual(list(fresh.attributes), expected)
        self.assertEqual(fresh.attributes, obj.attributes)
        self.assertEqual(
            await first.locate(
                "alpha", [LocateCriterion("State", obj.values("State")[0])], 0, None
            ),
            ["k1"],
        )

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
