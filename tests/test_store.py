"""Tests for the key stores: one contract, held by the sqlite store and the memory store.

The contract tests run against both implementations (txacme's ``test_store`` shape);
the sqlite tests below them check what only a database can get wrong: durability,
group commit, schema versions and query plans.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any, cast

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from kmiptwist import ttlv
from kmiptwist.interfaces import (
    ClientCertificate,
    ConcurrentModification,
    IKeyStore,
    ITenancy,
    LocateCriterion,
    Tenant,
    TrustedCA,
)
from kmiptwist.objects import ManagedObject
from kmiptwist.store import schema
from kmiptwist.store import sqlite as sqlite_store
from kmiptwist.store.errors import (
    CertificateConflict,
    ObjectExists,
    StoreNotRunning,
    TenantExists,
    TenantHasObjects,
    UnknownTenant,
)
from kmiptwist.store.schema import SchemaTooNew
from kmiptwist.store.sqlite import (
    GROUP_WAIT,
    GROUP_WAIT_AFTER,
    WAL_PAGES_BETWEEN_CHECKPOINTS,
    SQLiteStore,
    _insert_objects,
    _stored_form,
    group_wait,
    install_functions,
    locate_sql,
)
from kmiptwist.testing.memory_store import MemoryStore
from kmiptwist.vocabulary.enums import NameType, ObjectType, State
from kmiptwist.vocabulary.tags import Tag


def _name(value: str, tag: int = Tag.NAME) -> ttlv.Item:
    return ttlv.structure(
        tag,
        [
            ttlv.text_string(Tag.NAME_VALUE, value),
            ttlv.enumeration(Tag.NAME_TYPE, NameType.UNINTERPRETED_TEXT_STRING),
        ],
    )


def _key(
    unique_identifier: str,
    tenant: str = "alpha",
    name: str | None = None,
    state: int = State.PRE_ACTIVE,
    length: int = 256,
    initial: int = 1_700_000_000,
    extra: dict[str, list[ttlv.Item]] | None = None,
) -> ManagedObject:
    """A symmetric key as the operations layer would store it."""
    attributes: dict[str, list[ttlv.Item]] = {
        "Unique Identifier": [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, unique_identifier)],
        "Name": [_name(name or f"name-{unique_identifier}")],
        "State": [ttlv.enumeration(Tag.STATE, state)],
        "Cryptographic Length": [ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, length)],
        "Initial Date": [ttlv.date_time(Tag.INITIAL_DATE, initial)],
    }
    attributes.update(extra or {})
    return ManagedObject(
        unique_identifier=unique_identifier,
        tenant=tenant,
        object_type=ObjectType.SYMMETRIC_KEY,
        attributes=attributes,
        wrapped_material=b"\x01wrapped:" + unique_identifier.encode(),
    )


def _certificate(fingerprint: str, tenant: str, added: int = 100) -> ClientCertificate:
    return ClientCertificate(
        fingerprint=fingerprint,
        tenant=tenant,
        subject=f"CN={fingerprint}",
        issuer="CN=kmiptwist CA",
        not_after=2_000_000_000,
        added=added,
    )


class _StoreContract:
    """What every IKeyStore/ITenancy implementation must do, as clients see it."""

    # Provided by TestCase.
    assertEqual: Any
    assertIsNone: Any
    assertIs: Any
    assertTrue: Any
    assertFalse: Any
    failureResultOf: Any

    def make_store(self) -> Any:
        """A new, running, empty store."""
        raise NotImplementedError

    async def _add(self, store: Any, *objects: ManagedObject) -> None:
        for obj in objects:
            await store.add_object(obj)

    async def _failure(self, deferred: Any, exception: type[Exception]) -> Exception:
        """Await ``deferred`` and return the exception it failed with."""
        try:
            await deferred
        except exception as error:
            return error
        raise AssertionError(f"expected {exception.__name__}")

    def test_provides_interfaces(self) -> None:
        """The store is a complete IKeyStore and ITenancy."""
        store = self.make_store()
        self.assertTrue(verifyObject(IKeyStore, store))
        self.assertTrue(verifyObject(ITenancy, store))

    async def test_round_trip(self) -> None:
        """An object comes back exactly as stored: every attribute instance in order,
        the order of attribute names, and the wrapped material byte for byte."""
        store = self.make_store()
        obj = _key(
            "uid-1",
            extra={
                "x-vmware": [
                    ttlv.text_string(Tag.ATTRIBUTE_VALUE, "second"),
                    ttlv.text_string(Tag.ATTRIBUTE_VALUE, "first"),
                ],
                "Object Group": [ttlv.text_string(Tag.OBJECT_GROUP, "g")],
                "x-flag": [ttlv.boolean(Tag.ATTRIBUTE_VALUE, True)],
                "x-bytes": [ttlv.byte_string(Tag.ATTRIBUTE_VALUE, b"\x00\xff")],
                "x-big": [ttlv.big_integer(Tag.ATTRIBUTE_VALUE, -(1 << 70))],
                "x-long": [ttlv.long_integer(Tag.ATTRIBUTE_VALUE, 1 << 40)],
                "x-interval": [ttlv.interval(Tag.ATTRIBUTE_VALUE, 86400)],
                "x-micro": [ttlv.date_time_extended(Tag.ATTRIBUTE_VALUE, 1_700_000_000_123_456)],
            },
        )
        obj.wrapped_material = bytes(range(256))
        await store.add_object(obj)
        found = await store.get_object("alpha", "uid-1")
        self.assertEqual(found.attributes, obj.attributes)
        self.assertEqual(list(found.attributes), list(obj.attributes))
        self.assertEqual(found.wrapped_material, bytes(range(256)))
        self.assertEqual(found.object_type, ObjectType.SYMMETRIC_KEY)
        self.assertEqual((found.unique_identifier, found.tenant), ("uid-1", "alpha"))
        self.assertEqual(found.revision, 0)

    async def test_object_without_material_or_attributes(self) -> None:
        """A destroyed object keeps its metadata with no material; an object may have no
        attributes at all."""
        store = self.make_store()
        await store.add_object(ManagedObject("bare", "alpha", ObjectType.OPAQUE_OBJECT))
        found = await store.get_object("alpha", "bare")
        self.assertEqual(found.attributes, {})
        self.assertIsNone(found.wrapped_material)

    async def test_copies(self) -> None:
        """Changing an object in memory changes nothing stored until it is updated."""
        store = self.make_store()
        obj = _key("uid-1")
        await store.add_object(obj)
        obj.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        found = await store.get_object("alpha", "uid-1")
        found.attributes["Name"][0].value.append(ttlv.text_string(Tag.NAME_VALUE, "x"))
        again = await store.get_object("alpha", "uid-1")
        self.assertEqual(again.value("State"), State.PRE_ACTIVE)
        self.assertEqual(len(again.values("Name")[0].value), 2)

    async def test_structures_alike_and_apart(self) -> None:
        """Objects given equal structure values each keep their own, and structures that
        differ only deep inside stay apart, whatever the caller or a reader then does
        to the items it holds."""

        def parameters(mode: int, inner: str) -> ttlv.Item:
            return ttlv.structure(
                Tag.ATTRIBUTE_VALUE,
                [
                    ttlv.enumeration(Tag.BLOCK_CIPHER_MODE, mode),
                    ttlv.structure(Tag.ATTRIBUTE_VALUE, [ttlv.text_string(Tag.NAME_VALUE, inner)]),
                ],
            )

        store = self.make_store()
        given = {
            "k1": parameters(1, "a"),
            "k2": parameters(1, "a"),
            "k3": parameters(1, "b"),
            "k4": parameters(2, "a"),
        }
        for uid, value in given.items():
            obj = _key(uid, extra={"x-parameters": [value]})
            await store.add_object(obj)
            value.value.append(ttlv.integer(Tag.ATTRIBUTE_VALUE, 7))  # the caller's, after
        first = await store.get_object("alpha", "k1")
        first.values("x-parameters")[0].value[1].value.append(ttlv.integer(Tag.ATTRIBUTE_VALUE, 8))
        for uid, (mode, inner) in {
            "k1": (1, "a"),
            "k2": (1, "a"),
            "k3": (1, "b"),
            "k4": (2, "a"),
        }.items():
            found = await store.get_object("alpha", uid)
            self.assertEqual(found.values("x-parameters"), [parameters(mode, inner)], uid)
        self.assertEqual(
            await self._locate(store, LocateCriterion("x-parameters", parameters(1, "a"))),
            ["k2", "k1"],
        )

    async def test_missing(self) -> None:
        """An identifier nobody stored is simply not found."""
        store = self.make_store()
        self.assertIsNone(await store.get_object("alpha", "nothing"))

    async def test_duplicate_identifier(self) -> None:
        """A Unique Identifier is unique across tenants; reusing one is refused."""
        store = self.make_store()
        await store.add_object(_key("uid-1"))
        await self._failure(store.add_object(_key("uid-1", tenant="beta")), ObjectExists)
        self.assertEqual(await store.count_objects("beta"), 0)

    async def test_tenant_scoping(self) -> None:
        """A tenant cannot get, locate, count or update another tenant's objects."""
        store = self.make_store()
        await self._add(store, _key("a-1", name="shared"), _key("a-2"))
        self.assertIsNone(await store.get_object("beta", "a-1"))
        self.assertEqual(await store.locate("beta", [], 0, None), [])
        by_name = [LocateCriterion("Name", _name("shared"))]
        self.assertEqual(await store.locate("beta", by_name, 0, None), [])
        self.assertEqual(await store.locate("alpha", by_name, 0, None), ["a-1"])
        self.assertEqual(await store.count_objects("alpha"), 2)
        self.assertEqual(await store.count_objects("beta"), 0)
        intruder = _key("a-1", tenant="beta", state=State.DESTROYED)
        await self._failure(store.update_object(intruder), ConcurrentModification)
        self.assertEqual((await store.get_object("alpha", "a-1")).value("State"), State.PRE_ACTIVE)

    async def test_update(self) -> None:
        """An update with the current revision replaces attributes and material, and
        bumps the revision; Locate sees the new values, not the old."""
        store = self.make_store()
        await store.add_object(
            _key("uid-1", extra={"x-a": [ttlv.text_string(Tag.ATTRIBUTE_VALUE, "v")]})
        )
        obj = await store.get_object("alpha", "uid-1")
        obj.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        obj.remove("x-a")
        obj.wrapped_material = None
        await store.update_object(obj)
        self.assertEqual(obj.revision, 1)
        found = await store.get_object("alpha", "uid-1")
        self.assertEqual(found.revision, 1)
        self.assertEqual(found.attributes, obj.attributes)
        self.assertIsNone(found.wrapped_material)
        active = LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        pre_active = LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.PRE_ACTIVE))
        old = LocateCriterion("x-a", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "v"))
        self.assertEqual(await store.locate("alpha", [active], 0, None), ["uid-1"])
        self.assertEqual(await store.locate("alpha", [pre_active], 0, None), [])
        self.assertEqual(await store.locate("alpha", [old], 0, None), [])
        await store.update_object(found)
        self.assertEqual((await store.get_object("alpha", "uid-1")).revision, 2)

    async def test_stale_update(self) -> None:
        """Of two clients changing one object from the same read, the second is told of
        the conflict, and its change is not applied."""
        store = self.make_store()
        await store.add_object(_key("uid-1"))
        first = await store.get_object("alpha", "uid-1")
        second = await store.get_object("alpha", "uid-1")
        first.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        await store.update_object(first)
        second.set("State", ttlv.enumeration(Tag.STATE, State.DESTROYED))
        second.wrapped_material = None
        await self._failure(store.update_object(second), ConcurrentModification)
        self.assertEqual(second.revision, 0)
        found = await store.get_object("alpha", "uid-1")
        self.assertEqual(found.value("State"), State.ACTIVE)
        self.assertEqual(found.wrapped_material, b"\x01wrapped:uid-1")
        self.assertEqual(found.revision, 1)

    async def test_update_missing(self) -> None:
        """Updating an object that does not exist fails and creates nothing."""
        store = self.make_store()
        await self._failure(store.update_object(_key("ghost")), ConcurrentModification)
        self.assertIsNone(await store.get_object("alpha", "ghost"))

    async def test_root_key_version(self) -> None:
        """The root key version that wrapped the material is kept with it and updated."""
        store = self.make_store()
        obj = _key("uid-1")
        obj.root_key_version = "version-1"
        await store.add_object(obj)
        found = await store.get_object("alpha", "uid-1")
        self.assertEqual(found.root_key_version, "version-1")
        found.root_key_version = "version-2"
        await store.update_object(found)
        self.assertEqual((await store.get_object("alpha", "uid-1")).root_key_version, "version-2")

    async def test_object_revision(self) -> None:
        """Whether a copy read earlier is still current can be asked without reading the
        object: (seq, revision) follows updates, tells objects apart, and is None for an
        absent object or another tenant's."""
        store = self.make_store()
        self.assertIsNone(await store.object_revision("alpha", "uid-1"))
        await self._add(store, _key("uid-1"), _key("uid-2"))
        seq, revision = await store.object_revision("alpha", "uid-1")
        self.assertEqual(revision, 0)
        self.assertIsNone(await store.object_revision("beta", "uid-1"))
        obj = await store.get_object("alpha", "uid-1")
        await store.update_object(obj)
        self.assertEqual(await store.object_revision("alpha", "uid-1"), (seq, 1))
        other, _ = await store.object_revision("alpha", "uid-2")
        self.assertTrue(other != seq)

    async def test_revision_now(self) -> None:
        """``revision_now`` answers what ``object_revision`` does, at once."""
        store = self.make_store()
        self.assertIsNone(store.revision_now("alpha", "uid-1"))
        await self._add(store, _key("uid-1"))
        for tenant in ("alpha", "beta"):
            self.assertEqual(
                store.revision_now(tenant, "uid-1"), await store.object_revision(tenant, "uid-1")
            )
        obj = await store.get_object("alpha", "uid-1")
        await store.update_object(obj)
        self.assertEqual(store.revision_now("alpha", "uid-1")[1], 1)

    async def test_replace_wrapped_material(self) -> None:
        """A rewrapped form replaces the material only while it is still the one that was
        rewrapped, in the owner tenant, without a new revision: a destroyed object stays
        destroyed and a concurrent update still succeeds."""
        store = self.make_store()
        await store.add_object(_key("uid-1"))
        old = (await store.get_object("alpha", "uid-1")).wrapped_material
        self.assertFalse(await store.replace_wrapped_material("beta", "uid-1", old, b"new", "v2"))
        self.assertFalse(
            await store.replace_wrapped_material("alpha", "uid-1", b"other", b"new", "v2")
        )
        self.assertFalse(await store.replace_wrapped_material("alpha", "ghost", old, b"new", "v2"))
        reader = await store.get_object("alpha", "uid-1")
        self.assertTrue(await store.replace_wrapped_material("alpha", "uid-1", old, b"new", "v2"))
        found = await store.get_object("alpha", "uid-1")
        self.assertEqual((found.wrapped_material, found.root_key_version), (b"new", "v2"))
        self.assertEqual(found.revision, reader.revision)
        reader.wrapped_material = None
        await store.update_object(reader)
        self.assertFalse(
            await store.replace_wrapped_material("alpha", "uid-1", b"new", b"newer", "v3")
        )
        self.assertIsNone((await store.get_object("alpha", "uid-1")).wrapped_material)

    # -- Locate -----------------------------------------------------------------------

    async def _population(self, store: Any) -> None:
        """k1..k5 of alpha, oldest first, and one object of beta."""
        await self._add(
            store,
            _key(
                "k1",
                name="db",
                state=State.ACTIVE,
                length=128,
                initial=100,
                extra={"x-app": [ttlv.text_string(Tag.ATTRIBUTE_VALUE, "vcenter")]},
            ),
            _key("k2", name="web", state=State.ACTIVE, length=256, initial=200),
            _key(
                "k3",
                name="db",
                state=State.PRE_ACTIVE,
                length=256,
                initial=300,
                extra={
                    "x-app": [
                        ttlv.text_string(Tag.ATTRIBUTE_VALUE, "vcenter"),
                        ttlv.text_string(Tag.ATTRIBUTE_VALUE, "vsan"),
                    ]
                },
            ),
            _key("k4", name="mail", state=State.ACTIVE, length=256, initial=400),
            _key("k5", name="db", state=State.DEACTIVATED, length=128, initial=500),
            _key("b1", tenant="beta", name="db", state=State.ACTIVE, length=256, initial=300),
        )

    async def _locate(
        self, store: Any, *criteria: LocateCriterion, offset: int = 0, maximum: int | None = None
    ) -> list[str]:
        found = await store.locate("alpha", list(criteria), offset, maximum)
        self.assertEqual(
            await store.locate_count("alpha", list(criteria)),
            len(await store.locate("alpha", list(criteria), 0, None)),
        )
        return found

    async def test_locate_all_newest_first(self) -> None:
        """With no criteria Locate lists the tenant's objects, newest first."""
        store = self.make_store()
        await self._population(store)
        self.assertEqual(await self._locate(store), ["k5", "k4", "k3", "k2", "k1"])

    async def test_locate_text(self) -> None:
        """Locate by a text attribute matches any of an object's instances, exactly."""
        store = self.make_store()
        await self._population(store)
        vcenter = LocateCriterion("x-app", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "vcenter"))
        vsan = LocateCriterion("x-app", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "vsan"))
        partial = LocateCriterion("x-app", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "vcent"))
        self.assertEqual(await self._locate(store, vcenter), ["k3", "k1"])
        self.assertEqual(await self._locate(store, vsan), ["k3"])
        self.assertEqual(await self._locate(store, vcenter, vsan), ["k3"])
        self.assertEqual(await self._locate(store, partial), [])

    async def test_locate_enumeration_and_integer(self) -> None:
        """Locate by an enumeration (State) and an integer (Cryptographic Length)."""
        store = self.make_store()
        await self._population(store)
        active = LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        short = LocateCriterion("Cryptographic Length", ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, 128))
        self.assertEqual(await self._locate(store, active), ["k4", "k2", "k1"])
        self.assertEqual(await self._locate(store, short), ["k5", "k1"])
        self.assertEqual(await self._locate(store, active, short), ["k1"])

    async def test_locate_structure(self) -> None:
        """Locate by Name compares the whole structure, whether the criterion came tagged
        as Name (KMIP 2.x) or as Attribute Value (KMIP 1.x)."""
        store = self.make_store()
        await self._population(store)
        self.assertEqual(
            await self._locate(store, LocateCriterion("Name", _name("db"))), ["k5", "k3", "k1"]
        )
        legacy = LocateCriterion("Name", _name("db", tag=Tag.ATTRIBUTE_VALUE))
        self.assertEqual(await self._locate(store, legacy), ["k5", "k3", "k1"])
        uri = ttlv.structure(
            Tag.NAME,
            [ttlv.text_string(Tag.NAME_VALUE, "db"), ttlv.enumeration(Tag.NAME_TYPE, NameType.URI)],
        )
        self.assertEqual(await self._locate(store, LocateCriterion("Name", uri)), [])

    async def test_locate_two_criteria(self) -> None:
        """Every criterion must hold."""
        store = self.make_store()
        await self._population(store)
        db = LocateCriterion("Name", _name("db"))
        active = LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        self.assertEqual(await self._locate(store, db, active), ["k1"])
        self.assertEqual(await self._locate(store, active, db), ["k1"])

    async def test_locate_date_range(self) -> None:
        """Two instances of a date select the objects between them, both ends included;
        one bound alone selects everything on its side."""
        store = self.make_store()
        await self._population(store)

        def date(operator: str, when: int) -> LocateCriterion:
            return LocateCriterion("Initial Date", ttlv.date_time(Tag.INITIAL_DATE, when), operator)

        self.assertEqual(
            await self._locate(store, date(">=", 200), date("<=", 400)), ["k4", "k3", "k2"]
        )
        self.assertEqual(await self._locate(store, date(">=", 201), date("<=", 399)), ["k3"])
        self.assertEqual(await self._locate(store, date(">=", 400)), ["k5", "k4"])
        self.assertEqual(await self._locate(store, date("<=", 100)), ["k1"])
        self.assertEqual(await self._locate(store, date(">=", 401), date("<=", 399)), [])
        self.assertEqual(await self._locate(store, date("=", 300)), ["k3"])
        active = LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        self.assertEqual(await self._locate(store, date(">=", 150), active), ["k4", "k2"])

    async def test_locate_types_do_not_mix(self) -> None:
        """A number never matches text and a date range never matches a text value."""
        store = self.make_store()
        await self._add(
            store,
            _key("n", extra={"x-v": [ttlv.integer(Tag.ATTRIBUTE_VALUE, 5)]}),
            _key("t", extra={"x-v": [ttlv.text_string(Tag.ATTRIBUTE_VALUE, "5")]}),
            _key("b", extra={"x-v": [ttlv.byte_string(Tag.ATTRIBUTE_VALUE, b"5")]}),
        )

        def criterion(item: ttlv.Item, operator: str = "=") -> LocateCriterion:
            return LocateCriterion("x-v", item, operator)

        self.assertEqual(
            await self._locate(store, criterion(ttlv.integer(Tag.ATTRIBUTE_VALUE, 5))), ["n"]
        )
        self.assertEqual(
            await self._locate(store, criterion(ttlv.text_string(Tag.ATTRIBUTE_VALUE, "5"))), ["t"]
        )
        self.assertEqual(
            await self._locate(store, criterion(ttlv.byte_string(Tag.ATTRIBUTE_VALUE, b"5"))), ["b"]
        )
        self.assertEqual(
            await self._locate(store, criterion(ttlv.date_time(Tag.ATTRIBUTE_VALUE, 0), ">=")),
            ["n"],
        )
        self.assertEqual(
            await self._locate(store, criterion(ttlv.text_string(Tag.ATTRIBUTE_VALUE, ""), ">=")),
            ["t"],
        )
        self.assertEqual(
            await self._locate(store, criterion(ttlv.text_string(Tag.ATTRIBUTE_VALUE, "9"), "<=")),
            ["t"],
        )
        self.assertEqual(
            await self._locate(
                store,
                criterion(ttlv.integer(Tag.ATTRIBUTE_VALUE, 0), ">="),
                criterion(ttlv.text_string(Tag.ATTRIBUTE_VALUE, "9"), "<="),
            ),
            [],
        )

    async def test_locate_offset_and_maximum(self) -> None:
        """Offset skips and Maximum bounds, over the newest-first order."""
        store = self.make_store()
        await self._population(store)
        self.assertEqual(await self._locate(store, maximum=2), ["k5", "k4"])
        self.assertEqual(await self._locate(store, offset=2, maximum=2), ["k3", "k2"])
        self.assertEqual(await self._locate(store, offset=4, maximum=2), ["k1"])
        self.assertEqual(await self._locate(store, offset=9), [])
        self.assertEqual(await self._locate(store, maximum=0), [])
        db = LocateCriterion("Name", _name("db"))
        self.assertEqual(await self._locate(store, db, offset=1, maximum=1), ["k3"])

    async def test_locate_absent_attribute(self) -> None:
        """A criterion on an attribute no object has matches nothing."""
        store = self.make_store()
        await self._population(store)
        absent = LocateCriterion("x-none", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "vcenter"))
        self.assertEqual(await self._locate(store, absent), [])

    # -- tenancy ------------------------------------------------------------------------

    async def test_tenants(self) -> None:
        """Tenants are created once, found by name and listed by name."""
        store = self.make_store()
        beta = Tenant("beta", "keyprotect", "root-key-id", 50)
        await store.add_tenant(beta)
        await store.add_tenant(Tenant("alpha", created=10))
        self.assertEqual(await store.get_tenant("beta"), beta)
        self.assertIsNone(await store.get_tenant("gamma"))
        self.assertEqual([t.name for t in await store.list_tenants()], ["alpha", "beta"])
        await self._failure(store.add_tenant(Tenant("beta")), TenantExists)
        self.assertEqual(await store.get_tenant("beta"), beta)

    async def test_set_root_key(self) -> None:
        """A tenant is bound to another root key; its name and creation date stay."""
        store = self.make_store()
        await store.add_tenant(Tenant("alpha", created=10))
        binding = {"instance_id": "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6", "api_key_env": "KP"}
        await store.set_root_key("alpha", "keyprotect", "crk-1", binding)
        found = await store.get_tenant("alpha")
        self.assertEqual(
            (found.root_key_kind, found.root_key_id, dict(found.root_key_binding), found.created),
            ("keyprotect", "crk-1", binding, 10),
        )
        await self._failure(store.set_root_key("gamma", "local", "default", {}), UnknownTenant)

    async def test_certificates(self) -> None:
        """A registered certificate identifies its tenant until it is removed."""
        store = self.make_store()
        await store.add_tenant(Tenant("alpha"))
        await store.add_certificate(_certificate("fp-2", "alpha", added=200))
        await store.add_certificate(_certificate("fp-1", "alpha", added=100))
        self.assertEqual(await store.tenant_for_fingerprint("fp-1"), "alpha")
        self.assertIsNone(await store.tenant_for_fingerprint("fp-unknown"))
        self.assertEqual(
            await store.list_certificates("alpha"),
            [_certificate("fp-1", "alpha", added=100), _certificate("fp-2", "alpha", added=200)],
        )
        self.assertIs(await store.remove_certificate("fp-1"), True)
        self.assertIs(await store.remove_certificate("fp-1"), False)
        self.assertIsNone(await store.tenant_for_fingerprint("fp-1"))
        self.assertEqual(await store.list_certificates("beta"), [])

    async def test_certificate_conflict(self) -> None:
        """One certificate cannot belong to two tenants (nor twice to one)."""
        store = self.make_store()
        await store.add_tenant(Tenant("alpha"))
        await store.add_tenant(Tenant("beta"))
        await store.add_certificate(_certificate("fp", "alpha"))
        error = await self._failure(
            store.add_certificate(_certificate("fp", "beta")), CertificateConflict
        )
        self.assertTrue("alpha" in str(error))
        await self._failure(store.add_certificate(_certificate("fp", "alpha")), CertificateConflict)
        self.assertEqual(await store.tenant_for_fingerprint("fp"), "alpha")
        self.assertEqual(await store.list_certificates("beta"), [])

    async def test_certificate_unknown_tenant(self) -> None:
        """A certificate cannot be registered to a tenant that does not exist."""
        store = self.make_store()
        await self._failure(store.add_certificate(_certificate("fp", "nobody")), UnknownTenant)
        self.assertIsNone(await store.tenant_for_fingerprint("fp"))

    async def test_pending(self) -> None:
        """An unknown certificate is remembered once, with when it was first and last
        seen, from where, and how often."""
        store = self.make_store()
        await store.record_pending("fp-a", "CN=a", "CN=ca", "10.0.0.1:1", "PEM-A", 100)
        await store.record_pending("fp-b", "CN=b", "CN=ca", "10.0.0.2:1", "PEM-B", 150)
        await store.record_pending("fp-a", "CN=a", "CN=ca", "10.0.0.3:7", "PEM-A", 200)
        pending = await store.list_pending()
        self.assertEqual([p.fingerprint for p in pending], ["fp-a", "fp-b"])
        a = pending[0]
        self.assertEqual(
            (a.subject, a.issuer, a.first_seen, a.last_seen, a.address, a.count, a.certificate_pem),
            ("CN=a", "CN=ca", 100, 200, "10.0.0.3:7", 2, "PEM-A"),
        )
        self.assertEqual(pending[1].count, 1)
        self.assertIs(await store.remove_pending("fp-b"), True)
        self.assertIs(await store.remove_pending("fp-b"), False)
        self.assertEqual([p.fingerprint for p in await store.list_pending()], ["fp-a"])

    async def test_approving_pending(self) -> None:
        """Registering a pending certificate takes it off the pending list, and a
        registered certificate is not recorded as pending again."""
        store = self.make_store()
        await store.add_tenant(Tenant("alpha"))
        await store.record_pending("fp", "CN=a", "CN=ca", "10.0.0.1:1", "PEM", 100)
        await store.add_certificate(_certificate("fp", "alpha"))
        self.assertEqual(await store.list_pending(), [])
        await store.record_pending("fp", "CN=a", "CN=ca", "10.0.0.1:1", "PEM", 200)
        self.assertEqual(await store.list_pending(), [])

    async def test_pending_bounded(self) -> None:
        """A flood of made-up certificates keeps only the most recently seen."""
        store = self.make_store()
        store.max_pending = 3
        for n in range(5):
            await store.record_pending(f"fp-{n}", "CN=x", "CN=x", "addr", "PEM", 100 + n)
        self.assertEqual(
            [p.fingerprint for p in await store.list_pending()], ["fp-4", "fp-3", "fp-2"]
        )

    async def test_root_key_binding_and_certificate_pem(self) -> None:
        """A tenant's root-key binding and a certificate's PEM read back as stored."""
        store = self.make_store()
        binding = {"instance_id": "a1b2", "endpoint": "https://kp.example", "api_key_env": "KP"}
        await store.add_tenant(Tenant("kp", "keyprotect", "crk-1", 5, binding))
        self.assertEqual((await store.get_tenant("kp")).root_key_binding, binding)
        self.assertEqual((await store.list_tenants())[0].root_key_binding, binding)
        self.assertEqual((await store.get_tenant("kp")).root_key_kind, "keyprotect")
        with_pem = ClientCertificate("fp", "kp", "CN=a", "CN=b", 9, 1, "-----BEGIN...")
        await store.add_certificate(with_pem)
        self.assertEqual(await store.list_certificates("kp"), [with_pem])

    async def test_remove_tenant(self) -> None:
        """A tenant with objects is kept unless the removal is forced; a forced removal
        takes its objects, certificates and CAs with it and leaves other tenants alone."""
        store = self.make_store()
        await store.add_tenant(Tenant("alpha"))
        await store.add_tenant(Tenant("beta"))
        await store.add_certificate(_certificate("fp-a", "alpha"))
        await store.add_certificate(_certificate("fp-b", "beta"))
        await store.add_trusted_ca(TrustedCA("ca-a", "alpha", "CN=ca", "PEM", 1))
        await self._add(store, _key("a-1", "alpha"), _key("a-2", "alpha"), _key("b-1", "beta"))
        error = await self._failure(store.remove_tenant("alpha", False), TenantHasObjects)
        self.assertTrue("2 objects" in str(error))
        self.assertEqual(await store.tenant_for_fingerprint("fp-a"), "alpha")
        self.assertEqual(await store.count_objects("alpha"), 2)
        self.assertEqual(await store.remove_tenant("alpha", True), ["a-1", "a-2"])
        self.assertIsNone(await store.get_tenant("alpha"))
        self.assertIsNone(await store.get_object("alpha", "a-1"))
        self.assertIsNone(await store.tenant_for_fingerprint("fp-a"))
        self.assertEqual(await store.list_trusted_cas(None), [])
        self.assertEqual(await store.count_objects("alpha"), 0)
        self.assertEqual(await store.tenant_for_fingerprint("fp-b"), "beta")
        self.assertIsNotNone(await store.get_object("beta", "b-1"))
        await self._failure(store.remove_tenant("alpha", True), UnknownTenant)
        # A tenant without objects goes without force; its name can be reused.
        await store.add_tenant(Tenant("gamma"))
        self.assertEqual(await store.remove_tenant("gamma", False), [])
        await store.add_tenant(Tenant("gamma"))

    async def test_trusted_cas(self) -> None:
        """A CA is trusted by one tenant, listed per tenant or for all, and removable."""
        store = self.make_store()
        await store.add_tenant(Tenant("alpha"))
        await store.add_tenant(Tenant("beta"))
        first = TrustedCA("ca-1", "alpha", "CN=one", "PEM-1", 10)
        second = TrustedCA("ca-2", "beta", "CN=two", "PEM-2", 5)
        await store.add_trusted_ca(first)
        await store.add_trusted_ca(second)
        self.assertEqual(await store.list_trusted_cas("alpha"), [first])
        self.assertEqual(await store.list_trusted_cas(None), [second, first])
        error = await self._failure(
            store.add_trusted_ca(TrustedCA("ca-1", "beta", "CN=one", "PEM-1", 11)),
            CertificateConflict,
        )
        self.assertTrue("alpha" in str(error))
        await self._failure(
            store.add_trusted_ca(TrustedCA("ca-3", "nobody", "CN=3", "PEM", 1)), UnknownTenant
        )
        self.assertIs(await store.remove_trusted_ca("ca-1"), True)
        self.assertIs(await store.remove_trusted_ca("ca-1"), False)
        self.assertEqual(await store.list_trusted_cas(None), [second])


class MemoryStoreTests(_StoreContract, TestCase):
    """The memory store keeps the contract."""

    def make_store(self) -> MemoryStore:
        """A memory store."""
        store = MemoryStore()
        store.startService()
        return store


class SQLiteStoreTests(_StoreContract, TestCase):
    """The sqlite store keeps the contract, with a real database and writer thread."""

    def make_store(self, path: str | None = None) -> SQLiteStore:
        """A running sqlite store on a new file; stopped at the end of the test."""
        from twisted.internet import reactor

        store = SQLiteStore(path or self.mktemp(), cast(Any, reactor))
        store.startService()
        self.addCleanup(store.stopService)
        return store

    async def test_forced_tenant_removal_leaves_no_wrapped_material(self) -> None:
        """After a tenant is removed by force, its wrapped material is in no file of the
        database (overwritten, and the WAL truncated)."""
        path = self.mktemp()
        store = self.make_store(path)
        await store.add_tenant(Tenant("alpha"))
        await store.add_tenant(Tenant("beta"))
        await store.add_object(_key("shred-me-0001", "alpha"))
        await store.add_object(_key("keep-me-0001", "beta"))
        marker = b"\x01wrapped:shred-me-0001"

        def files() -> bytes:
            content = b""
            for suffix in ("", "-wal"):
                if os.path.exists(path + suffix):
                    with open(path + suffix, "rb") as handle:
                        content += handle.read()
            return content

        self.assertIn(marker, files())
        await store.remove_tenant("alpha", True)
        self.assertNotIn(marker, files())
        self.assertIsNotNone(await store.get_object("beta", "keep-me-0001"))

    async def test_survives_restart(self) -> None:
        """Everything acknowledged is there after the server stops and starts again."""
        path = self.mktemp()
        store = self.make_store(path)
        await store.add_tenant(Tenant("alpha", created=7))
        await store.add_certificate(_certificate("fp", "alpha"))
        await store.record_pending("fp-p", "CN=p", "CN=ca", "addr", "PEM", 100)
        obj = _key("uid-1")
        await store.add_object(obj)
        obj.set("State", ttlv.enumeration(Tag.STATE, State.ACTIVE))
        await store.update_object(obj)
        await store.stopService()
        reopened = self.make_store(path)
        found = await reopened.get_object("alpha", "uid-1")
        assert found is not None
        self.assertEqual((found.attributes, found.revision), (obj.attributes, 1))
        self.assertEqual(found.wrapped_material, obj.wrapped_material)
        self.assertEqual(await reopened.get_tenant("alpha"), Tenant("alpha", created=7))
        self.assertEqual(await reopened.tenant_for_fingerprint("fp"), "alpha")
        self.assertEqual([p.count for p in await reopened.list_pending()], [1])
        await reopened.add_object(_key("uid-2"))
        self.assertEqual(await reopened.locate("alpha", [], 0, None), ["uid-2", "uid-1"])

    async def test_group_commit(self) -> None:
        """Fifty clients creating keys at once all succeed, in fewer commits (disk
        flushes) than keys."""
        store = self.make_store()
        before = store.commit_count
        await defer.gatherResults([store.add_object(_key(f"uid-{n}")) for n in range(50)])
        self.assertEqual(await store.count_objects("alpha"), 50)
        self.assertTrue(store.commit_count - before < 50, store.commit_count - before)

    async def test_failure_in_group_alone(self) -> None:
        """A write that fails (a duplicate identifier) fails alone: the writes committed
        with it in the same transaction succeed."""
        store = self.make_store()
        await store.add_object(_key("taken"))
        gate = threading.Event()
        before = store.commit_count
        # Hold the writer thread in a job so the writes below queue up as one group.
        blocker = store._submit(lambda connection: gate.wait(10))

        def half_done(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO tenants (name, root_key_kind, root_key_id, created) VALUES ('half', 'local', 'default', 0)"
            )
            raise RuntimeError("failed after writing")

        writes = [
            store.add_object(_key("new-1")),
            store.add_object(_key("taken", name="impostor")),
            store._submit(half_done),
            store.add_object(_key("new-2")),
            store.add_tenant(Tenant("alpha")),
        ]
        gate.set()
        outcomes = await defer.DeferredList([blocker, *writes], consumeErrors=True)
        self.assertEqual([ok for ok, _ in outcomes], [True, True, False, False, True, True])
        outcomes[2][1].trap(ObjectExists)
        outcomes[3][1].trap(RuntimeError)
        self.assertTrue(store.commit_count - before <= 2)
        self.assertEqual(await store.locate("alpha", [], 0, None), ["new-2", "new-1", "taken"])
        taken = await store.get_object("alpha", "taken")
        assert taken is not None
        self.assertEqual(taken.values("Name"), [_name("name-taken")])
        self.assertEqual([t.name for t in await store.list_tenants()], ["alpha"])

    async def test_first_write_fails_alone(self) -> None:
        """A write that fails first in its group, before anything else was written,
        leaves nothing behind and the writes after it succeed."""
        store = self.make_store()
        gate = threading.Event()
        blocker = store._submit(lambda connection: gate.wait(10))

        def half_done(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO tenants (name, root_key_kind, root_key_id, created) VALUES ('half', 'local', 'default', 0)"
            )
            raise RuntimeError("failed after writing")

        writes = [store._submit(half_done), store.add_object(_key("new-1"))]
        gate.set()
        outcomes = await defer.DeferredList([blocker, *writes], consumeErrors=True)
        self.assertEqual([ok for ok, _ in outcomes], [True, False, True])
        outcomes[1][1].trap(RuntimeError)
        self.assertEqual(await store.locate("alpha", [], 0, None), ["new-1"])
        self.assertEqual(await store.list_tenants(), [])

    async def test_failed_commit_fails_every_write(self) -> None:
        """When the commit itself fails, every write of the group fails, new objects
        written together included, and none of them is stored."""
        store = self.make_store()
        await store.add_tenant(Tenant("alpha"))
        gate = threading.Event()
        blocker = store._submit(lambda connection: gate.wait(10))

        def breaks_the_commit(connection: sqlite3.Connection) -> None:
            # A foreign key checked only at COMMIT, which then fails.
            connection.execute("PRAGMA defer_foreign_keys = ON")
            connection.execute(
                "INSERT INTO certificates (fingerprint, tenant, subject, issuer, not_after, added)"
                " VALUES ('ff', 'nobody', 'CN=x', 'CN=x', 0, 0)"
            )

        writes = [
            store.add_object(_key("new-1")),
            store.add_object(_key("new-2")),
            store._submit(breaks_the_commit),
        ]
        gate.set()
        outcomes = await defer.DeferredList([blocker, *writes], consumeErrors=True)
        # (The blocker may have joined the group, and then failed with it.)
        self.assertEqual([ok for ok, _ in outcomes[1:]], [False, False, False])
        self.assertEqual(await store.locate("alpha", [], 0, None), [])
        await store.add_object(_key("new-3"))
        self.assertEqual(await store.locate("alpha", [], 0, None), ["new-3"])

    async def test_new_objects_written_together(self) -> None:
        """New objects queued together are inserted by a few shared statements: each
        gets its own seq in the order they were queued, and the index, the rows and the
        store's own memory of them (what a sole writer answers revisions from) agree,
        also across a restart.  Writes of other kinds in the group still run."""
        from twisted.internet import reactor

        path = self.mktemp()
        store = SQLiteStore(path, cast(Any, reactor), sole_writer=True)
        store.startService()
        await store.add_tenant(Tenant("alpha"))
        await store.add_object(_key("first"))
        gate = threading.Event()
        before = store.commit_count
        statements: list[str] = []
        assert store._writer is not None
        store._writer.set_trace_callback(statements.append)
        blocker = store._submit(lambda connection: gate.wait(10))
        count = 300  # more than one statement's worth of rows and of index rows
        writes = [store.add_object(_key(f"uid-{n}", name=f"n{n}")) for n in range(count)]
        writes.append(store.add_tenant(Tenant("beta")))
        writes.append(store.add_object(_key("beta-1", tenant="beta")))
        gate.set()
        await defer.gatherResults([blocker, *writes])
        store._writer.set_trace_callback(None)
        self.assertTrue(store.commit_count - before <= 2)
        insertions = [sql for sql in statements if sql.startswith("INSERT INTO objects")]
        self.assertTrue(len(insertions) <= 5, len(insertions))
        expected = [f"uid-{n}" for n in reversed(range(count))] + ["first"]
        self.assertEqual(await store.locate("alpha", [], 0, None), expected)
        self.assertEqual(await store.locate("beta", [], 0, None), ["beta-1"])
        name = [LocateCriterion("Name", _name("n123"))]
        self.assertEqual(await store.locate("alpha", name, 0, None), ["uid-123"])
        remembered = [(await store.object_revision("alpha", f"uid-{n}")) for n in range(count)]
        rows = dict(
            store._read("SELECT unique_identifier, seq FROM objects WHERE tenant = 'alpha'")
        )
        self.assertEqual(remembered, [(rows[f"uid-{n}"], 0) for n in range(count)])
        seqs = [seq for seq, _ in remembered]  # type: ignore[misc]
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertTrue(seqs[0] > rows["first"])
        await store.stopService()
        reopened = self.make_store(path)
        self.assertEqual(await reopened.locate("alpha", name, 0, None), ["uid-123"])
        self.assertEqual(await reopened.object_revision("alpha", "uid-7"), remembered[7])
        await reopened.add_object(_key("after"))
        self.assertEqual((await reopened.locate("alpha", [], 0, 1)), ["after"])

    async def test_reads_see_acknowledged_writes(self) -> None:
        """As soon as a write is acknowledged, every read sees it."""
        store = self.make_store()
        seen = []
        for n in range(20):
            await store.add_object(_key(f"uid-{n}"))
            seen.append((await store.get_object("alpha", f"uid-{n}")) is not None)
        self.assertEqual(seen, [True] * 20)

    def test_future_schema_refused(self) -> None:
        """A database written by a newer kmiptwist is refused, clearly, and left as is."""
        path = self.mktemp()
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        from twisted.internet import reactor

        store = SQLiteStore(path, cast(Any, reactor))
        error = self.assertRaises(SchemaTooNew, store.startService)
        self.assertTrue("99" in str(error) and "newer kmiptwist" in str(error), str(error))
        self.assertFalse(store.running)
        connection = sqlite3.connect(path)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (99,))
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone(), ("delete",))
        self.assertEqual(connection.execute("SELECT count(*) FROM sqlite_master").fetchone(), (0,))
        connection.close()

    def test_failed_migration_rolls_back(self) -> None:
        """A migration that fails leaves the database at the version before it."""
        connection = sqlite3.connect(self.mktemp(), isolation_level=None)
        broken = [*schema.MIGRATIONS, ["CREATE TABLE extra (x)", "this is not sql"]]
        self.assertRaises(sqlite3.OperationalError, schema.migrate, connection, broken)
        self.assertEqual(schema.current_version(connection), schema.SCHEMA_VERSION)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        self.assertFalse("extra" in tables)
        self.assertEqual(schema.migrate(connection), schema.SCHEMA_VERSION)
        connection.close()

    def test_durable_settings(self) -> None:
        """The database is in WAL mode with full fsync and foreign keys enforced, and
        savepoint journals stay in memory (no temporary file per group commit)."""
        path = self.mktemp()
        store = self.make_store(path)
        connection = sqlite3.connect(path)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        connection.close()
        reader = store._reader
        assert reader is not None
        self.assertEqual(reader.execute("PRAGMA synchronous").fetchone(), (2,))
        self.assertEqual(reader.execute("PRAGMA foreign_keys").fetchone(), (1,))
        self.assertEqual(reader.execute("PRAGMA temp_store").fetchone(), (2,))
        self.assertEqual(schema.current_version(reader), schema.SCHEMA_VERSION)

    async def test_checkpoints_seldom(self) -> None:
        """The writer lets the write-ahead log grow to WAL_PAGES_BETWEEN_CHECKPOINTS
        pages before a commit checkpoints it."""
        store = self.make_store()
        found = await store._submit(
            lambda connection: connection.execute("PRAGMA wal_autocheckpoint").fetchone()
        )
        self.assertEqual(found, (WAL_PAGES_BETWEEN_CHECKPOINTS,))

    async def test_writer_asks_whether_to_wait(self) -> None:
        """Before each group commit the writer asks group_wait, with the size of the
        group before it and what is queued, and sleeps what it says."""
        asked: list[tuple[int, int]] = []
        slept: list[float] = []

        def wait(last_group: int, queued: int) -> float:
            asked.append((last_group, queued))
            return 0.001

        self.patch(sqlite_store, "group_wait", wait)
        self.patch(sqlite_store.time, "sleep", slept.append)
        store = self.make_store()
        await store.add_object(_key("first"))
        await store.add_object(_key("second"))
        self.assertGreaterEqual(len(asked), 2)
        self.assertEqual(asked[-1], (1, 1))
        self.assertEqual(slept, [0.001] * len(asked))

    async def test_not_running(self) -> None:
        """Using a stopped store fails clearly rather than losing writes."""
        store = self.make_store()
        await store.stopService()
        await self._failure(store.add_object(_key("late")), StoreNotRunning)
        await self._failure(store.get_object("alpha", "late"), StoreNotRunning)

    async def test_stop_commits_queued_writes(self) -> None:
        """Writes queued when the server stops are committed and acknowledged first."""
        path = self.mktemp()
        store = self.make_store(path)
        writes = [store.add_object(_key(f"uid-{n}")) for n in range(10)]
        await store.stopService()
        self.assertEqual([w.called for w in writes], [True] * 10)
        await defer.gatherResults(writes)
        self.assertEqual(await self.make_store(path).count_objects("alpha"), 10)

    def _plan(self, store: SQLiteStore, criteria: list[LocateCriterion]) -> str:
        """The query plan of the Locate query for ``criteria``, one step per "|"."""
        conditions = schema.match_conditions(criteria)
        assert conditions is not None
        sql, parameters = locate_sql("alpha", conditions, 0, 10)
        return " | ".join(
            row[3]
            for row in cast(sqlite3.Connection, store._reader).execute(
                "EXPLAIN QUERY PLAN " + sql, parameters
            )
        )

    def test_locate_uses_index(self) -> None:
        """Locate is answered from the attribute index, newest first straight from its
        order, not by scanning or sorting the tenant's objects, however the criteria
        are ordered; a range that does not drive the query is checked per candidate,
        not by scanning the index over the range."""
        store = self.make_store()
        plan = self._plan(
            store,
            [
                LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.ACTIVE)),
                LocateCriterion("Initial Date", ttlv.date_time(Tag.INITIAL_DATE, 5), ">="),
                LocateCriterion("Name", _name("db")),
            ],
        )
        self.assertTrue(
            "SEARCH a USING PRIMARY KEY (tenant=? AND name=? AND match=?)" in plan, plan
        )
        self.assertTrue("SEARCH o USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan)
        self.assertTrue(
            "SEARCH b USING PRIMARY KEY (tenant=? AND name=? AND match=? AND seq=?)" in plan, plan
        )
        # Name, State and the object's row: the date is not looked up in the index.
        self.assertEqual(plan.count("SEARCH"), 3, plan)
        self.assertFalse("SCAN" in plan or "TEMP B-TREE" in plan, plan)

    def test_locate_range_uses_index(self) -> None:
        """A Locate driven by a range reads the index over the range once, and the
        objects by their key."""
        store = self.make_store()
        plan = self._plan(
            store,
            [
                LocateCriterion("Initial Date", ttlv.date_time(Tag.INITIAL_DATE, 5), ">="),
                LocateCriterion("Initial Date", ttlv.date_time(Tag.INITIAL_DATE, 9), "<="),
                LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.ACTIVE)),
            ],
        )
        self.assertTrue(
            "SEARCH attribute_index USING PRIMARY KEY (tenant=? AND name=? AND match>? AND match<?)"
            in plan,
            plan,
        )
        self.assertTrue("SEARCH o USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan)
        self.assertTrue(
            "SEARCH b USING PRIMARY KEY (tenant=? AND name=? AND match=? AND seq=?)" in plan, plan
        )
        self.assertFalse("SCAN o" in plan or "SCAN attribute_index" in plan, plan)

    def test_file_is_private(self) -> None:
        """A new database (and its write-ahead log) is readable by the server's user only."""
        path = self.mktemp()
        self.make_store(path)
        for name in (path, path + "-wal"):
            self.assertEqual(os.stat(name).st_mode & 0o077, 0, name)


# -- the query and the memory store agree ------------------------------------------------

_VALUES = st.one_of(
    st.builds(ttlv.integer, st.just(Tag.ATTRIBUTE_VALUE), st.integers(-2, 3)),
    st.builds(ttlv.enumeration, st.just(Tag.ATTRIBUTE_VALUE), st.integers(0, 3)),
    st.builds(ttlv.date_time, st.just(Tag.ATTRIBUTE_VALUE), st.integers(-2, 3)),
    st.builds(ttlv.boolean, st.just(Tag.ATTRIBUTE_VALUE), st.booleans()),
    st.builds(
        ttlv.long_integer,
        st.just(Tag.ATTRIBUTE_VALUE),
        st.sampled_from([-(1 << 63), 0, (1 << 63) - 1]),
    ),
    st.builds(
        ttlv.text_string, st.just(Tag.ATTRIBUTE_VALUE), st.sampled_from(["", "a", "b", "ab", "é"])
    ),
    st.builds(
        ttlv.byte_string,
        st.just(Tag.ATTRIBUTE_VALUE),
        st.sampled_from([b"", b"a", b"\x00", b"\xff"]),
    ),
    st.builds(_name, st.sampled_from(["a", "b"])),
    st.builds(ttlv.big_integer, st.just(Tag.ATTRIBUTE_VALUE), st.integers(-2, 2)),
)
_NAMES = st.sampled_from(["x-a", "x-a", "x-a", "x-b"])
_OBJECTS = st.lists(
    st.tuples(
        st.sampled_from(["alpha", "beta"]),
        st.dictionaries(_NAMES, st.lists(_VALUES, min_size=1, max_size=3), max_size=2),
    ),
    max_size=12,
)
_CRITERIA = st.lists(
    st.builds(LocateCriterion, _NAMES, _VALUES, st.sampled_from(["=", "=", ">=", "<="])),
    max_size=3,
)


def assert_locates_alike(
    case: SynchronousTestCase,
    connection: sqlite3.Connection,
    memory: MemoryStore,
    criteria: list[LocateCriterion],
    offset: int,
    maximum: int | None,
) -> None:
    """The query of :func:`locate_sql` on ``connection`` finds what ``memory`` locates
    for tenant alpha, in the same order."""
    expected = case.successResultOf(memory.locate("alpha", criteria, offset, maximum))
    conditions = schema.match_conditions(criteria)
    if conditions is None:
        found = []
    else:
        sql, parameters = locate_sql("alpha", conditions, offset, maximum)
        found = [row[0] for row in connection.execute(sql, parameters)]
    case.assertEqual(found, expected)


class GroupWaitTests(SynchronousTestCase):
    """When the writer waits for more writes before a group commit."""

    def test_lone_writer_never_waits(self) -> None:
        """After groups smaller than GROUP_WAIT_AFTER (one client writing, or a few),
        a write is committed at once."""
        for last in range(GROUP_WAIT_AFTER):
            self.assertEqual(group_wait(last, 1), 0.0)

    def test_busy_writer_waits(self) -> None:
        """After a busy group, the writer waits GROUP_WAIT for company, unless as
        many writes as the last group had are queued already."""
        self.assertGreater(GROUP_WAIT, 0)
        self.assertEqual(group_wait(GROUP_WAIT_AFTER, 1), GROUP_WAIT)
        self.assertEqual(group_wait(12, 11), GROUP_WAIT)
        self.assertEqual(group_wait(12, 12), 0.0)
        self.assertEqual(group_wait(GROUP_WAIT_AFTER, GROUP_WAIT_AFTER), 0.0)


class LocateEquivalenceTests(SynchronousTestCase):
    """The sqlite query finds exactly what the memory store finds, for any data and
    criteria: tests written against the memory store hold for the real one."""

    @settings(max_examples=500, deadline=None)
    @given(_OBJECTS, _CRITERIA, st.integers(0, 3), st.one_of(st.none(), st.integers(0, 4)))
    @example(  # sqlite sorts every blob after every text: a text range must stop there.
        [("alpha", {"x-a": [ttlv.byte_string(Tag.ATTRIBUTE_VALUE, b"a")]})],
        [LocateCriterion("x-a", ttlv.text_string(Tag.ATTRIBUTE_VALUE, "a"), ">=")],
        0,
        None,
    )
    @example(  # ...and every text after every integer.
        [("alpha", {"x-a": [ttlv.text_string(Tag.ATTRIBUTE_VALUE, "")]})],
        [LocateCriterion("x-a", ttlv.date_time(Tag.ATTRIBUTE_VALUE, 0), ">=")],
        0,
        None,
    )
    def test_same_answers(
        self,
        objects: list[tuple[str, dict[str, list[ttlv.Item]]]],
        criteria: list[LocateCriterion],
        offset: int,
        maximum: int | None,
    ) -> None:
        """Same identifiers, same order, same counts."""
        connection = sqlite3.connect(":memory:", isolation_level=None)
        self.addCleanup(connection.close)
        schema.migrate(connection)
        install_functions(connection)
        memory = MemoryStore()
        for n, (tenant, attributes) in enumerate(objects):
            obj = ManagedObject(f"uid-{n}", tenant, ObjectType.OPAQUE_OBJECT, attributes)
            self.successResultOf(memory.add_object(obj))
            stored, entries, _ = _stored_form(obj.attributes)
            row = (obj.unique_identifier, tenant, 0, None, 0, 0, None, stored)
            _insert_objects(connection, [(row, entries)])
        assert_locates_alike(self, connection, memory, criteria, offset, maximum)
