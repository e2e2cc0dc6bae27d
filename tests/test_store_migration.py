"""Tests for the key store's schema version 4: a database of version 3 is migrated in
place, keeping every object exactly as it was stored.

Version 3 kept one row per attribute instance (``attributes``); version 4 keeps the
attributes as one blob on the object's row and their searchable forms in
``attribute_index``.  The version-3 rows are written here as the version-3 store wrote
them, then the store (or ``schema.migrate``) upgrades the database.
"""

from __future__ import annotations

import random
import sqlite3
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kmiptwist import ttlv
from kmiptwist.interfaces import LocateCriterion
from kmiptwist.objects import ManagedObject
from kmiptwist.store import schema
from kmiptwist.store.sqlite import SQLiteStore, install_functions
from kmiptwist.testing.memory_store import MemoryStore
from kmiptwist.vocabulary.enums import NameType, ObjectType, State
from kmiptwist.vocabulary.tags import Tag
from tests.test_store import _CRITERIA, _OBJECTS, assert_locates_alike

_V3 = schema.MIGRATIONS[:3]


def _write_v3(
    connection: sqlite3.Connection, obj: ManagedObject, shuffle: random.Random | None = None
) -> None:
    """Store ``obj`` as the version-3 store did: one row per instance, with the name's
    position and the instance's index (inserted in any order)."""
    connection.execute(
        "INSERT INTO objects (unique_identifier, tenant, object_type, wrapped_material, revision,"
        " created, root_key_version) VALUES (?, ?, ?, ?, ?, 0, ?)",
        (
            obj.unique_identifier,
            obj.tenant,
            obj.object_type,
            obj.wrapped_material,
            obj.revision,
            obj.root_key_version,
        ),
    )
    rows = [
        (
            obj.tenant,
            obj.unique_identifier,
            name,
            index,
            position,
            ttlv.encode(item),
            schema.match_value(item),
        )
        for position, (name, instances) in enumerate(obj.attributes.items())
        for index, item in enumerate(instances)
    ]
    if shuffle is not None:
        shuffle.shuffle(rows)
    connection.executemany(
        'INSERT INTO attributes (tenant, unique_identifier, name, idx, position, item, "match")'
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _name(value: str) -> ttlv.Item:
    return ttlv.structure(
        Tag.NAME,
        [
            ttlv.text_string(Tag.NAME_VALUE, value),
            ttlv.enumeration(Tag.NAME_TYPE, NameType.UNINTERPRETED_TEXT_STRING),
        ],
    )


def _objects() -> list[ManagedObject]:
    """Objects of two tenants with every kind of attribute value a store keeps."""
    first = ManagedObject(
        "uid-1",
        "alpha",
        ObjectType.SYMMETRIC_KEY,
        {
            "Unique Identifier": [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, "uid-1")],
            "x-vmware": [
                ttlv.text_string(Tag.ATTRIBUTE_VALUE, "second"),
                ttlv.text_string(Tag.ATTRIBUTE_VALUE, "first"),
                ttlv.text_string(Tag.ATTRIBUTE_VALUE, "second"),
            ],
            "State": [ttlv.enumeration(Tag.STATE, State.ACTIVE)],
            "Name": [_name("db"), _name("db-alias")],
            "y-flag": [ttlv.boolean(Tag.ATTRIBUTE_VALUE, True)],
            "x-bytes": [ttlv.byte_string(Tag.ATTRIBUTE_VALUE, b"\x00\xff")],
            "x-big": [ttlv.big_integer(Tag.ATTRIBUTE_VALUE, -(1 << 70))],
            "x-long": [ttlv.long_integer(Tag.ATTRIBUTE_VALUE, 1 << 40)],
            "x-interval": [ttlv.interval(Tag.ATTRIBUTE_VALUE, 86400)],
            "x-micro": [ttlv.date_time_extended(Tag.ATTRIBUTE_VALUE, 1_700_000_000_123_456)],
            "Initial Date": [ttlv.date_time(Tag.INITIAL_DATE, 1_700_000_000)],
            "Cryptographic Length": [ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, 256)],
        },
        wrapped_material=bytes(range(256)),
        revision=7,
        root_key_version="version-3",
    )
    bare = ManagedObject("bare", "alpha", ObjectType.OPAQUE_OBJECT, revision=2)
    other = ManagedObject(
        "uid-2",
        "beta",
        ObjectType.SECRET_DATA,
        {
            "Name": [_name("db")],
            "State": [ttlv.enumeration(Tag.STATE, State.PRE_ACTIVE)],
            "Initial Date": [ttlv.date_time(Tag.INITIAL_DATE, 1_700_000_500)],
        },
        wrapped_material=b"\x01wrapped",
    )
    third = ManagedObject(
        "uid-3",
        "alpha",
        ObjectType.SYMMETRIC_KEY,
        {
            "State": [ttlv.enumeration(Tag.STATE, State.PRE_ACTIVE)],
            "Name": [_name("db")],
            "Initial Date": [ttlv.date_time(Tag.INITIAL_DATE, 1_700_000_900)],
        },
        wrapped_material=b"\x01wrapped-3",
    )
    return [first, bare, other, third]


class MigrationTests(TestCase):
    """A version-3 database is upgraded in place when the store starts."""

    def version_3(self, objects: list[ManagedObject]) -> str:
        """A version-3 database file holding ``objects`` (and a gap in the seqs)."""
        path = self.mktemp()
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            schema.migrate(connection, _V3)
            connection.execute("BEGIN")
            shuffle = random.Random(4)
            _write_v3(connection, ManagedObject("gone", "alpha", ObjectType.OPAQUE_OBJECT))
            for obj in objects:
                _write_v3(connection, obj, shuffle)
            connection.execute("DELETE FROM objects WHERE unique_identifier = 'gone'")
            connection.execute("COMMIT")
        finally:
            connection.close()
        return path

    def start(self, path: str) -> SQLiteStore:
        from twisted.internet import reactor

        store = SQLiteStore(path, cast(Any, reactor))
        store.startService()
        self.addCleanup(store.stopService)
        return store

    def seqs(self, path: str) -> list[tuple[int, str, int]]:
        with sqlite3.connect(path) as database:
            found: list[tuple[int, str, int]] = database.execute(
                "SELECT seq, unique_identifier, revision FROM objects ORDER BY seq"
            ).fetchall()
        return found

    async def test_objects_read_back_exactly(self) -> None:
        """Every object reads back after the upgrade exactly as it was stored: each
        attribute instance, the order of names (custom ones included) and instances,
        the material, the root key version, the revision and the row's seq."""
        objects = _objects()
        path = self.version_3(objects)
        before = self.seqs(path)
        store = self.start(path)
        self.assertEqual(self.seqs(path), before)
        for original in objects:
            found = await store.get_object(original.tenant, original.unique_identifier)
            assert found is not None
            self.assertEqual(found.attributes, original.attributes)
            self.assertEqual(list(found.attributes), list(original.attributes))
            self.assertEqual(
                (found.object_type, found.wrapped_material, found.revision),
                (original.object_type, original.wrapped_material, original.revision),
            )
            self.assertEqual(found.root_key_version, original.root_key_version)

    async def test_locate_after_upgrade(self) -> None:
        """Locate finds what it found before the upgrade, newest first, per tenant; new
        objects come after the old ones."""
        path = self.version_3(_objects())
        store = self.start(path)
        db = LocateCriterion("Name", _name("db"))
        alias = LocateCriterion("Name", _name("db-alias"))
        pre_active = LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.PRE_ACTIVE))
        later = LocateCriterion(
            "Initial Date", ttlv.date_time(Tag.INITIAL_DATE, 1_700_000_001), ">="
        )
        second = LocateCriterion("x-vmware", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "second"))
        self.assertEqual(await store.locate("alpha", [db], 0, None), ["uid-3", "uid-1"])
        self.assertEqual(await store.locate("alpha", [alias], 0, None), ["uid-1"])
        self.assertEqual(await store.locate("alpha", [second, db], 0, None), ["uid-1"])
        self.assertEqual(await store.locate("alpha", [db, later], 0, None), ["uid-3"])
        self.assertEqual(await store.locate("alpha", [pre_active], 0, None), ["uid-3"])
        self.assertEqual(await store.locate("beta", [db], 0, None), ["uid-2"])
        self.assertEqual(await store.locate_count("alpha", [db]), 2)
        await store.add_object(
            ManagedObject("uid-4", "alpha", ObjectType.SYMMETRIC_KEY, {"Name": [_name("db")]})
        )
        self.assertEqual(await store.locate("alpha", [db], 0, None), ["uid-4", "uid-3", "uid-1"])
        self.assertEqual(
            await store.locate("alpha", [], 0, None), ["uid-4", "uid-3", "bare", "uid-1"]
        )

    async def test_layout_after_upgrade(self) -> None:
        """The per-instance rows and their index are gone; the index holds one row per
        distinct searchable value of each of an object's attributes."""
        path = self.version_3(_objects())
        self.start(path)
        with sqlite3.connect(path) as database:
            names = {row[0] for row in database.execute("SELECT name FROM sqlite_master")}
            self.assertFalse("attributes" in names or "attributes_by_value" in names, names)
            self.assertEqual(schema.current_version(database), 4)
            index = database.execute(
                'SELECT i.tenant, i.name, i."match" FROM attribute_index i'
                " JOIN objects o ON o.seq = i.seq WHERE o.unique_identifier = 'uid-1'"
            ).fetchall()
        self.assertEqual(len(index), 14)
        self.assertEqual(
            sorted(m for tenant, name, m in index if name == "x-vmware"), ["first", "second"]
        )
        self.assertEqual({tenant for tenant, _, _ in index}, {"alpha"})

    def test_failed_upgrade_keeps_version_3(self) -> None:
        """An upgrade that fails halfway (in its Python step) leaves the database at
        version 3 with its rows, to be upgraded again by a fixed kmiptwist."""
        path = self.version_3(_objects())
        connection = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(connection.close)

        def fail(connection: sqlite3.Connection) -> None:
            raise RuntimeError("interrupted")

        broken = [*_V3, [*schema.MIGRATIONS[3][:3], fail, *schema.MIGRATIONS[3][3:]]]
        self.assertRaises(RuntimeError, schema.migrate, connection, broken)
        self.assertEqual(schema.current_version(connection), 3)
        self.assertEqual(connection.execute("SELECT count(*) FROM attributes").fetchone(), (21,))
        columns = [row[1] for row in connection.execute("PRAGMA table_info(objects)")]
        self.assertFalse("attributes" in columns, columns)
        self.assertEqual(schema.migrate(connection), 3)
        self.assertEqual(schema.current_version(connection), schema.SCHEMA_VERSION)


class MigrationEquivalenceTests(SynchronousTestCase):
    """For any objects and criteria, a migrated database answers as the memory store
    does, and gives back every object's attributes."""

    @settings(max_examples=200, deadline=None)
    @given(_OBJECTS, _CRITERIA, st.integers(0, 3), st.one_of(st.none(), st.integers(0, 4)))
    def test_same_answers(
        self,
        objects: list[tuple[str, dict[str, list[ttlv.Item]]]],
        criteria: list[LocateCriterion],
        offset: int,
        maximum: int | None,
    ) -> None:
        """Same identifiers, in the same order, and the same attributes back."""
        connection = sqlite3.connect(":memory:", isolation_level=None)
        self.addCleanup(connection.close)
        schema.migrate(connection, _V3)
        memory = MemoryStore()
        for n, (tenant, attributes) in enumerate(objects):
            obj = ManagedObject(f"uid-{n}", tenant, ObjectType.OPAQUE_OBJECT, attributes)
            self.successResultOf(memory.add_object(obj))
            _write_v3(connection, obj, random.Random(n))
        schema.migrate(connection)
        install_functions(connection)
        for n, (_, attributes) in enumerate(objects):
            ((stored,),) = connection.execute(
                "SELECT attributes FROM objects WHERE unique_identifier = ?", (f"uid-{n}",)
            ).fetchall()
            decoded = schema.decode_attributes(stored)
            self.assertEqual((decoded, list(decoded)), (attributes, list(attributes)))
        assert_locates_alike(self, connection, memory, criteria, offset, maximum)
