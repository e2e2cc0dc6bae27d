"""The store's sole-writer mode: one server process holds its database exclusively and
trusts its own object cache; workers share it and check every read."""

from __future__ import annotations

from typing import Any, cast

from twisted.trial.unittest import TestCase

from kmiptwist import ttlv
from kmiptwist.interfaces import Tenant
from kmiptwist.objects import ManagedObject
from kmiptwist.store.errors import StoreError
from kmiptwist.store.sqlite import SQLiteStore
from kmiptwist.vocabulary.enums import ObjectType
from kmiptwist.vocabulary.tags import Tag


def _object(uid: str, tenant: str = "alpha") -> ManagedObject:
    obj = ManagedObject(uid, tenant, ObjectType.SYMMETRIC_KEY, wrapped_material=b"wrapped")
    obj.set("Unique Identifier", ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid))
    return obj


class SoleWriterTests(TestCase):
    def make_store(self, path: str, sole_writer: bool) -> SQLiteStore:
        from twisted.internet import reactor

        store = SQLiteStore(path, cast(Any, reactor), sole_writer=sole_writer)
        store.startService()
        self.addCleanup(store.stopService)
        return store

    def test_second_server_refused(self) -> None:
        """A sole writer excludes any other store on the file, and is excluded by one."""
        path = self.mktemp()
        self.make_store(path, sole_writer=True)
        for sole in (True, False):
            with self.assertRaises(StoreError) as raised:
                self.make_store(path, sole_writer=sole)
            self.assertIn("another kmiptwist process", str(raised.exception))
        other = self.mktemp()
        self.make_store(other, sole_writer=False)
        self.make_store(other, sole_writer=False)  # workers share
        with self.assertRaises(StoreError):
            self.make_store(other, sole_writer=True)

    async def test_lock_released_at_stop(self) -> None:
        from twisted.internet import reactor

        path = self.mktemp()
        first = SQLiteStore(path, cast(Any, reactor), sole_writer=True)
        first.startService()
        await first.stopService()
        self.make_store(path, sole_writer=True)

    async def test_revision_from_cache_follows_own_writes(self) -> None:
        """Revisions come from the cache, kept current by every write, tenant checked;
        a forced tenant removal forgets its objects."""
        store = self.make_store(self.mktemp(), sole_writer=True)
        await store.add_tenant(Tenant("alpha"))
        obj = _object("k1")
        await store.add_object(obj)
        first = await store.object_revision("alpha", "k1")
        self.assertIsNotNone(first)
        self.assertIsNone(await store.object_revision("beta", "k1"))
        loaded = await store.get_object("alpha", "k1")
        loaded.set("Fresh", ttlv.boolean(Tag.FRESH, False))
        await store.update_object(loaded)
        second = await store.object_revision("alpha", "k1")
        self.assertEqual(second, (first[0], first[1] + 1))
        await store.remove_tenant("alpha", force=True)
        self.assertIsNone(await store.object_revision("alpha", "k1"))
