"""Tests for Key Protect as a tenant's root key: the wrapper, tenants' bindings, what a
KMIP client sees when the root key is rotated, disabled, deleted or unreachable, and
rewrapping a tenant after a rotation.

The emulator runs behind ``treq.testing.StubTreq`` on a ``Clock``; KMIP requests go
through the real processor over the in-memory store.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kmiptwist import ttlv
from kmiptwist.engine import Engine
from kmiptwist.interfaces import IKeyWrapper, IRemoteRootKey, Tenant
from kmiptwist.keyprotect.binding import KeyProtectSettings, check_url, make_binding
from kmiptwist.keyprotect.rewrap import NotKeyProtect, rewrap_tenant
from kmiptwist.keyprotect.root_keys import TenantRootKeys
from kmiptwist.keyprotect.transport import RetryPolicy
from kmiptwist.keyprotect.wrapper import MAX_MATERIAL, KeyProtectWrapper, WrappedForm, aad_strings
from kmiptwist.processor import KMIPProcessor, Peer
from kmiptwist.testing.memory_store import MemoryStore
from kmiptwist.testing.messages import BatchResult, read_response, request
from kmiptwist.vocabulary.enums import ObjectType, Operation, ResultReason
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.wrapping import aad_for
from kmiptwist.wrapping.cache import MaterialCache
from kmiptwist.wrapping.errors import DENIED, MATERIAL, SERVICE, WrappingError
from kmiptwist.wrapping.local import LocalRootKeyWrapper
from tests.keyprotect_harness import API_KEY_ENV, BASE, INSTANCE, TOKEN_URL, Harness
from tests.test_operations import aes_template

AAD = aad_for("finance", "uid-1")


class WrapperTests(SynchronousTestCase):
    """The wrapper on its own."""

    def setUp(self) -> None:
        self.harness = Harness()
        self.refused: list[bool] = []
        self.wrapper = self.harness.wrapper(on_refused=lambda: self.refused.append(True))

    def wrap(self, material: bytes = b"key material", aad: bytes = AAD) -> bytes:
        wrapped: bytes = self.harness.result(self.wrapper.wrap(material, aad))
        return wrapped

    def error(self, work: Any) -> WrappingError:
        error: WrappingError = self.harness.failure(work, WrappingError)
        return error

    def test_provides(self) -> None:
        """The wrapper is a complete IKeyWrapper and IRemoteRootKey."""
        self.assertTrue(verifyObject(IKeyWrapper, self.wrapper))
        self.assertTrue(verifyObject(IRemoteRootKey, self.wrapper))

    def test_round_trip(self) -> None:
        """Wrapped material unwraps; the stored form names format, root key and version
        and holds Key Protect's ciphertext, never the material."""
        wrapped = self.wrap()
        self.assertNotIn(b"key material", wrapped)
        form = WrappedForm.decode(wrapped)
        assert form is not None
        self.assertEqual(
            (form.root_key_id, form.key_version), (self.harness.root_key, self.harness.root_key)
        )
        self.assertEqual(self.wrapper.key_version(wrapped), self.harness.root_key)
        result = self.harness.result(self.wrapper.unwrap(wrapped, AAD))
        self.assertEqual((result.material, result.rewrapped), (b"key material", None))

    def test_aad_binds_owner(self) -> None:
        """Material moved to another object or tenant does not unwrap (Cryptographic Failure)."""
        wrapped = self.wrap()
        for aad in (aad_for("finance", "uid-2"), aad_for("hr", "uid-1")):
            error = self.error(self.wrapper.unwrap(wrapped, aad))
            self.assertEqual((error.kind, error.permanent), (MATERIAL, True))
            self.assertIn("does not unwrap", str(error))

    def test_long_tenant_names(self) -> None:
        """The AAD goes as base64 strings of at most 255 characters, whatever its length."""
        aad = aad_for("t" * 400, "uid-1")
        self.assertTrue(all(len(part) <= 255 for part in aad_strings(aad)))
        wrapped = self.wrap(aad=aad)
        self.assertEqual(
            self.harness.result(self.wrapper.unwrap(wrapped, aad)).material, b"key material"
        )

    def test_rotation(self) -> None:
        """After a rotation, unwrap returns the material rewrapped by the new version;
        rewrap does it without the material leaving Key Protect."""
        wrapped = self.wrap()
        self.harness.manage("rotate")
        result = self.harness.result(self.wrapper.unwrap(wrapped, AAD))
        latest = self.harness.result(self.wrapper.latest_version())
        self.assertNotEqual(latest, self.harness.root_key)
        self.assertEqual(self.wrapper.key_version(result.rewrapped), latest)
        again = self.harness.result(self.wrapper.unwrap(result.rewrapped, AAD))
        self.assertEqual((again.material, again.rewrapped), (b"key material", None))
        rewrapped = self.harness.result(self.wrapper.rewrap(wrapped, AAD))
        self.assertEqual(self.wrapper.key_version(rewrapped), latest)
        self.assertEqual(self.harness.emulator.calls["rewrap"], 1)

    def test_disabled(self) -> None:
        """A disabled root key: Permission Denied kind, not permanent, the tenant's cache
        is told, and the message names the root key, Key Protect's code and correlation id."""
        wrapped = self.wrap()
        self.harness.manage("disable")
        error = self.error(self.wrapper.unwrap(wrapped, AAD))
        self.assertEqual((error.kind, error.permanent), (DENIED, False))
        for text in (
            "disabled or expired",
            self.harness.root_key,
            INSTANCE,
            "KEY_ACTION_INVALID_STATE_ERR",
            "correlation id",
        ):
            self.assertIn(text, str(error))
        self.assertEqual(self.refused, [True])
        self.assertEqual(self.error(self.wrapper.wrap(b"m", AAD)).kind, DENIED)

    def test_deleted(self) -> None:
        """A deleted root key: Permission Denied kind, permanent: the keys are gone."""
        wrapped = self.wrap()
        self.harness.manage("delete")
        error = self.error(self.wrapper.unwrap(wrapped, AAD))
        self.assertEqual((error.kind, error.permanent), (DENIED, True))
        self.assertIn("KEY_DELETED_ERR", str(error))
        self.assertIn("every key it wrapped is gone", str(error))

    def test_unknown_root_key(self) -> None:
        """A binding naming a root key Key Protect does not have: General Failure kind."""
        wrapper = KeyProtectWrapper(
            self.harness.client, "c0ffee00-0000-4000-8000-000000000000", self.harness.clock
        )
        error = self.error(wrapper.wrap(b"m", AAD))
        self.assertEqual((error.kind, error.permanent), (SERVICE, True))
        self.assertIn("KEY_NOT_FOUND_ERR", str(error))

    def test_credentials_refused(self) -> None:
        """An API key IAM rejects: General Failure kind, naming the root key and IAM's code."""
        import os

        os.environ[API_KEY_ENV] = "unknown"
        error = self.error(self.wrapper.wrap(b"m", AAD))
        self.assertEqual((error.kind, error.permanent), (SERVICE, True))
        self.assertIn("BXNIM0415E", str(error))
        self.assertIn(self.harness.root_key, str(error))

    def test_unreachable(self) -> None:
        """Key Protect not answering: General Failure kind, not permanent, within the deadline."""
        self.harness.emulator.knobs.update({"outage": "hang"})
        start = self.harness.clock.seconds()
        error = self.error(self.wrapper.wrap(b"m", AAD))
        self.assertLessEqual(self.harness.clock.seconds() - start, self.harness.policy.deadline)
        self.assertEqual((error.kind, error.permanent), (SERVICE, False))
        self.assertIn("unreachable or too slow", str(error))

    def test_too_large(self) -> None:
        """Material beyond what one Key Protect wrap takes is refused before any call."""
        error = self.error(self.wrapper.wrap(b"x" * (MAX_MATERIAL + 1), AAD))
        self.assertIn(f"at most {MAX_MATERIAL} bytes", str(error))
        self.assertEqual(self.harness.emulator.calls["wrap"], 0)

    def test_local_material(self) -> None:
        """Material of the local root key: refused without a fallback; with one it
        unwraps locally and comes back wrapped by Key Protect."""
        local = LocalRootKeyWrapper(b"\x07" * 32)
        wrapped = self.harness.result(local.wrap(b"old material", AAD))
        error = self.error(self.wrapper.unwrap(wrapped, AAD))
        self.assertIn("wrapped by the local root key", str(error))
        migrating = self.harness.wrapper(fallback=local)
        result = self.harness.result(migrating.unwrap(wrapped, AAD))
        self.assertEqual(result.material, b"old material")
        self.assertIsNotNone(WrappedForm.decode(result.rewrapped))
        self.assertIsNotNone(
            WrappedForm.decode(self.harness.result(migrating.rewrap(wrapped, AAD)))
        )

    def test_check_usable(self) -> None:
        """check_usable asks Key Protect only with verify_on_get, at most once an interval,
        and fails with Permission Denied kind once the root key is disabled."""
        self.harness.result(self.wrapper.check_usable())
        self.assertNotIn("GET api/v2/keys/{id}/metadata", self.harness.emulator.calls)
        checking = self.harness.wrapper(verify_on_get=True, verify_interval=1.0)
        self.harness.result(checking.check_usable())
        self.harness.result(checking.check_usable())
        self.assertEqual(self.harness.emulator.calls["GET api/v2/keys/{id}/metadata"], 1)
        self.harness.manage("disable")
        self.harness.result(checking.check_usable())  # within the interval
        self.harness.clock.advance(1.0)
        error = self.error(checking.check_usable())
        self.assertEqual(error.kind, DENIED)
        self.harness.manage("enable")
        self.harness.result(checking.check_usable())

    def test_usable_now(self) -> None:
        """usable_now is True exactly when check_usable would succeed without asking Key
        Protect: always without verify_on_get, within the interval after a check with it."""
        self.assertTrue(self.wrapper.usable_now())
        checking = self.harness.wrapper(verify_on_get=True, verify_interval=1.0)
        self.assertFalse(checking.usable_now())
        self.harness.result(checking.check_usable())
        self.assertTrue(checking.usable_now())
        self.harness.clock.advance(1.0)
        self.assertFalse(checking.usable_now())
        self.harness.manage("disable")
        self.error(checking.check_usable())
        self.assertFalse(checking.usable_now())


class BindingTests(SynchronousTestCase):
    """Tenants' bindings, checked before use."""

    settings = KeyProtectSettings(api_key="env:X")

    def test_defaults_and_overrides(self) -> None:
        """Fields left out come from [keyprotect]; an api_key_file replaces the default."""
        binding = make_binding("crk", {"instance_id": INSTANCE}, self.settings)
        self.assertEqual(binding.endpoint, "https://us-south.kms.cloud.ibm.com")
        self.assertEqual(binding.api_key.reference, "env:X")
        binding = make_binding(
            "crk",
            {
                "instance_id": INSTANCE,
                "api_key_file": "/k",
                "endpoint": "https://private.eu-de.kms.cloud.ibm.com/",
            },
            self.settings,
        )
        self.assertEqual(binding.api_key.reference, "file:/k")
        self.assertEqual(binding.endpoint, "https://private.eu-de.kms.cloud.ibm.com")
        self.assertEqual(binding.stored()["api_key_file"], "/k")
        binding = make_binding("crk", {"instance_id": INSTANCE, "api_key": "env:KP"}, self.settings)
        self.assertEqual(binding.stored()["api_key_env"], "KP")
        self.assertNotIn("api_key", binding.stored())

    def test_refused(self) -> None:
        """Unknown fields, a bad instance id, an API key instead of its place, plain
        HTTP to a remote host, no API key at all: each refused with a reason."""
        for fields, settings in (
            ({"instance_id": INSTANCE, "api_key": "secret"}, self.settings),
            ({"instance_id": INSTANCE, "api_key": "env:A", "api_key_file": "/k"}, self.settings),
            ({"instance_id": "nope"}, self.settings),
            ({"instance_id": INSTANCE, "endpoint": "http://kp.example.com"}, self.settings),
            ({"instance_id": INSTANCE, "api_key_file": "/a", "api_key_env": "B"}, self.settings),
            ({"instance_id": INSTANCE}, KeyProtectSettings()),
        ):
            self.assertRaises(ValueError, make_binding, "crk", fields, settings)
        self.assertEqual(check_url("http://127.0.0.1:8/", "x"), "http://127.0.0.1:8")
        self.assertEqual(check_url("http://[::1]:8", "x"), "http://[::1]:8")

    def test_configuration(self) -> None:
        """[keyprotect] and [cache] settings are read; an API key itself is refused,
        and plain HTTP to a remote host stops the server at start."""
        from kmiptwist.config import ConfigurationError, load_configuration, parse_configuration
        from kmiptwist.keyprotect.binding import settings_from

        values = parse_configuration(
            "[keyprotect]\napi_key = env:KP\ntimeout = 2\nmax_in_flight = 16\n"
            "[cache]\nverify_on_get = yes\nverify_interval = 0\n"
        )
        settings = settings_from(load_configuration(None).replace(**values))
        self.assertEqual(
            (settings.api_key, settings.timeout, settings.max_in_flight, settings.verify_on_get),
            ("env:KP", 2.0, 16, True),
        )
        self.assertRaises(
            ConfigurationError, parse_configuration, "[keyprotect]\napi_key = abcdef\n"
        )
        self.assertRaises(
            ConfigurationError, parse_configuration, "[cache]\nverify_on_get = maybe\n"
        )
        remote = load_configuration(None).replace(keyprotect_endpoint="http://kp.example.com")
        self.assertRaises(ValueError, settings_from, remote)


class KMIPCase(SynchronousTestCase):
    """A KMIP processor whose tenant "finance" is bound to the emulator's root key and
    whose tenant "local" uses the local root key."""

    cache_ttl = 60.0
    verify_on_get = False

    def setUp(self) -> None:
        self.harness = Harness(RetryPolicy(timeout=1.0, deadline=3.0, max_retries=2))
        self.clock = self.harness.clock
        self.store = MemoryStore()
        self.cache = MaterialCache(100, self.cache_ttl, self.clock)
        settings = KeyProtectSettings(
            endpoint=BASE,
            token_url=TOKEN_URL,
            api_key=f"env:{API_KEY_ENV}",
            timeout=1.0,
            deadline=3.0,
            max_retries=2,
            verify_on_get=self.verify_on_get,
            verify_interval=0,
        )
        self.local = LocalRootKeyWrapper(b"\x01" * 32)
        self.root_keys = TenantRootKeys(
            self.store,
            self.local,
            settings,
            self.clock,
            self.cache,
            http_for=lambda _: self.harness.stub,
        )
        self.engine = Engine(
            store=self.store,
            tenancy=self.store,
            root_keys=self.root_keys,
            cache=self.cache,
            clock=self.clock,
        )
        self.processor = KMIPProcessor(self.engine)
        self.store.add_tenant(Tenant("local"))
        self.bind("finance")

    def bind(self, tenant: str, root_key: str | None = None, **fields: Any) -> None:
        record = Tenant(
            tenant,
            "keyprotect",
            root_key or self.harness.root_key,
            0,
            {"instance_id": INSTANCE, **fields},
        )
        self.store._tenants[tenant] = record
        self.root_keys.forget(tenant)

    def one(self, operation: int, payload: list[ttlv.Item], tenant: str = "finance") -> BatchResult:
        peer = Peer("127.0.0.1", "ab" * 32, tenant)
        answer = self.harness.result(
            Deferred.fromCoroutine(
                self.processor.process(request((1, 1), [(operation, payload, None)]), peer)
            )
        )
        item: BatchResult = read_response(answer).items[0]
        return item

    def create(self, tenant: str = "finance") -> BatchResult:
        return self.one(
            Operation.CREATE,
            [ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY), aes_template()],
            tenant,
        )

    def created(self, tenant: str = "finance") -> str:
        item = self.create(tenant)
        self.assertTrue(item.ok, item.message)
        uid: str = item.get(Tag.UNIQUE_IDENTIFIER)
        return uid

    def get(self, uid: str, tenant: str = "finance") -> BatchResult:
        return self.one(Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)], tenant)

    def stored(self, uid: str, tenant: str = "finance") -> Any:
        return self.harness.result(self.store.get_object(tenant, uid))


class KMIPTests(KMIPCase):
    """What a KMIP client of a Key Protect tenant sees."""

    def test_create_and_get(self) -> None:
        """Create wraps with Key Protect; the store holds the wrapped form and version;
        Get returns the key; the local tenant is served by the local root key."""
        uid = self.created()
        obj = self.stored(uid)
        self.assertEqual(obj.root_key_version, self.harness.root_key)
        self.assertIsNotNone(WrappedForm.decode(obj.wrapped_material))
        self.assertTrue(self.get(uid).ok)
        self.assertEqual(self.harness.emulator.calls["wrap"], 1)
        local_uid = self.created("local")
        self.assertEqual(self.stored(local_uid, "local").wrapped_material[:1], b"\x01")
        self.assertEqual(self.harness.emulator.calls["wrap"], 1)

    def test_rotation_persists_rewrapped(self) -> None:
        """After a rotation, a Get still returns the key and the store gets the
        rewrapped material and new version, without a new revision or Last Change Date."""
        uid = self.created()
        key = self.get(uid).payload
        before = self.stored(uid)
        self.harness.manage("rotate")
        self.cache.clear()
        again = self.get(uid)
        self.assertTrue(again.ok, again.message)
        self.assertEqual(ttlv.encode(again.payload), ttlv.encode(key))
        after = self.stored(uid)
        self.assertNotEqual(after.wrapped_material, before.wrapped_material)
        self.assertNotEqual(after.root_key_version, before.root_key_version)
        self.assertEqual(after.revision, before.revision)
        self.assertEqual(after.value("Last Change Date"), before.value("Last Change Date"))
        self.cache.clear()
        self.assertTrue(self.get(uid).ok)
        self.assertEqual(self.harness.emulator.calls["unwrap"], 3)
        self.assertEqual(self.stored(uid).wrapped_material, after.wrapped_material)

    def test_disabled_root_key(self) -> None:
        """Disabled: Create fails with Permission Denied naming the root key and stores
        nothing; a Get of a key not in the cache fails the same way; enabled, both work."""
        uid = self.created()
        self.cache.clear()
        self.harness.manage("disable")
        count = self.harness.result(self.store.count_objects("finance"))
        created = self.create()
        self.assertEqual(created.reason, ResultReason.PERMISSION_DENIED)
        self.assertIn(self.harness.root_key, created.message)
        self.assertIn("cannot wrap key material", created.message)
        self.assertEqual(self.harness.result(self.store.count_objects("finance")), count)
        got = self.get(uid)
        self.assertEqual(got.reason, ResultReason.PERMISSION_DENIED)
        self.assertIn("disabled", got.message)
        self.assertTrue(self.get(uid, "local").reason == ResultReason.ITEM_NOT_FOUND)
        self.harness.manage("enable")
        self.assertTrue(self.get(uid).ok)
        self.assertTrue(self.create().ok)

    def test_disable_within_cache_ttl(self) -> None:
        """By default a cached key is served until the cache TTL passes, then refused;
        any refusal Key Protect gives drops the tenant's whole cache at once."""
        first, second = self.created(), self.created()
        self.assertTrue(self.get(first).ok and self.get(second).ok)
        self.harness.manage("disable")
        self.assertTrue(self.get(first).ok)  # from the cache
        self.clock.advance(self.cache_ttl)
        self.assertEqual(self.get(first).reason, ResultReason.PERMISSION_DENIED)
        self.assertEqual(len(self.cache), 0)  # second was dropped too

    def test_deleted_root_key(self) -> None:
        """Deleted: Get fails with Permission Denied for good (crypto-shredding), and
        the local tenant keeps working."""
        uid = self.created()
        local_uid = self.created("local")
        self.cache.clear()
        self.harness.manage("delete")
        got = self.get(uid)
        self.assertEqual(got.reason, ResultReason.PERMISSION_DENIED)
        self.assertIn("KEY_DELETED_ERR", got.message)
        self.assertTrue(self.get(local_uid, "local").ok)

    def test_unreachable(self) -> None:
        """Key Protect down: General Failure within the deadline; the local tenant works."""
        uid = self.created()
        self.cache.clear()
        self.harness.emulator.knobs.update({"outage": "hang"})
        start = self.clock.seconds()
        got = self.get(uid)
        self.assertLessEqual(self.clock.seconds() - start, 3.0)
        self.assertEqual(got.reason, ResultReason.GENERAL_FAILURE)
        self.assertIn("unreachable or too slow", got.message)
        self.assertTrue(self.created("local"))
        self.harness.emulator.knobs.update({"outage": "off"})
        self.assertTrue(self.get(uid).ok)

    def test_bad_binding(self) -> None:
        """A binding that cannot work is a General Failure naming the tenant and why."""
        self.bind("broken", endpoint="http://kp.example.com")
        item = self.create("broken")
        self.assertEqual(item.reason, ResultReason.GENERAL_FAILURE)
        self.assertIn("must use https", item.message)

    def test_binding_changes_seen(self) -> None:
        """A binding changed by another process is used within the recheck interval."""
        first = self.harness.result(self.root_keys.for_tenant("finance"))
        self.store._tenants["finance"] = Tenant("finance")
        self.assertIs(self.harness.result(self.root_keys.for_tenant("finance")), first)
        self.clock.advance(self.root_keys.recheck_interval)
        self.assertIs(self.harness.result(self.root_keys.for_tenant("finance")), self.local)

    def test_usable_now(self) -> None:
        """A tenant's root key is known usable without a look-up only after one, until
        the recheck interval passes or its binding changes; a kept Get is then answered
        at once, and otherwise the way that looks it up."""
        uid = self.created()
        self.clock.advance(self.root_keys.recheck_interval)
        self.assertFalse(self.root_keys.usable_now("finance"))
        self.assertFalse(self.root_keys.usable_now("local"))
        self.assertTrue(self.get(uid).ok)  # looks the tenant up again
        self.assertTrue(self.get(uid).ok)  # and keeps its answer
        self.assertTrue(self.root_keys.usable_now("finance"))
        self.harness.result(self.root_keys.for_tenant("local"))
        self.assertTrue(self.root_keys.usable_now("local"))
        peer = Peer("127.0.0.1", "ab" * 32, "finance")
        data = request(
            (1, 1), [(Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)], None)]
        )
        self.assertIsInstance(self.processor.respond(data, peer), bytes)
        self.bind("finance", key_ring="ring-2")
        self.assertFalse(self.root_keys.usable_now("finance"))
        answer = self.processor.respond(data, peer)
        self.assertNotIsInstance(answer, bytes)
        assert not isinstance(answer, bytes)
        self.assertTrue(
            read_response(self.harness.result(Deferred.fromCoroutine(answer))).items[0].ok
        )
        self.assertTrue(self.root_keys.usable_now("finance"))
        self.clock.advance(self.root_keys.recheck_interval)
        self.assertFalse(self.root_keys.usable_now("finance"))

    def test_one_wrapper_per_binding(self) -> None:
        """The tenant's wrapper is kept while its binding stays; a new binding gets a new one."""
        first = self.harness.result(self.root_keys.for_tenant("finance"))
        self.assertIs(self.harness.result(self.root_keys.for_tenant("finance")), first)
        self.assertIs(self.harness.result(self.root_keys.for_tenant("local")), self.local)
        self.bind("finance", key_ring="ring-2")
        self.assertIsNot(self.harness.result(self.root_keys.for_tenant("finance")), first)


class VerifyOnGetTests(KMIPCase):
    """``[cache] verify_on_get``: every Get checks the root key, cached or not."""

    verify_on_get = True

    def test_disable_honoured_at_once(self) -> None:
        """A cached key is refused as soon as the root key is disabled."""
        uid = self.created()
        self.assertTrue(self.get(uid).ok)
        self.harness.manage("disable")
        got = self.get(uid)
        self.assertEqual(got.reason, ResultReason.PERMISSION_DENIED)
        self.assertIn("is disabled", got.message)
        self.harness.manage("enable")
        self.assertTrue(self.get(uid).ok)


class RewrapTests(KMIPCase):
    """``kmiptwist tenant rewrap``: every object to the latest root key version."""

    def test_rewrap_after_rotation(self) -> None:
        """All objects are rewrapped; a second run finds them current; destroyed ones
        have nothing to rewrap."""
        uids = [self.created() for _ in range(5)]
        destroyed = self.created()
        self.one(Operation.DESTROY, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, destroyed)])
        self.harness.manage("rotate")
        report = self.harness.result(rewrap_tenant(self.store, self.root_keys, "finance"))
        self.assertEqual((report.objects, report.rewrapped, report.without_material), (6, 5, 1))
        self.assertEqual(report.failed, [])
        for uid in uids:
            self.assertEqual(self.stored(uid).root_key_version, report.latest_version)
        self.cache.clear()
        self.assertTrue(self.get(uids[0]).ok)
        again = self.harness.result(rewrap_tenant(self.store, self.root_keys, "finance"))
        self.assertEqual((again.rewrapped, again.current), (0, 5))

    def test_local_tenant(self) -> None:
        """A tenant of the local root key has nothing to rewrap."""
        self.harness.failure(rewrap_tenant(self.store, self.root_keys, "local"), NotKeyProtect)

    def test_disabled(self) -> None:
        """With the root key disabled nothing is attempted; the error says why."""
        self.created()
        self.harness.manage("disable")
        error = self.harness.failure(
            rewrap_tenant(self.store, self.root_keys, "finance"), WrappingError
        )
        self.assertEqual(error.kind, DENIED)
        self.assertEqual(self.harness.emulator.calls["rewrap"], 0)

    def test_moving_from_the_local_root_key(self) -> None:
        """A local tenant bound to Key Protect keeps its keys readable, and rewrap moves
        them all to Key Protect (after which deleting the root key shreds them)."""
        uid = self.created("local")
        self.bind("local")
        self.cache.clear()
        self.assertTrue(self.get(uid, "local").ok)
        self.assertIsNotNone(WrappedForm.decode(self.stored(uid, "local").wrapped_material))
        second = self.created("local")
        report = self.harness.result(rewrap_tenant(self.store, self.root_keys, "local"))
        self.assertEqual((report.objects, report.current), (2, 2))
        self.cache.clear()
        self.harness.manage("delete")
        self.assertEqual(self.get(second, "local").reason, ResultReason.PERMISSION_DENIED)
