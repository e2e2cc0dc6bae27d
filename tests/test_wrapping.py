"""Tests for the local root key, the fake root key and the unwrapped-material cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kmiptwist.interfaces import IKeyWrapper, UnwrapResult
from kmiptwist.testing.fake_wrapper import FakeWrapper
from kmiptwist.wrapping import aad_for
from kmiptwist.wrapping.cache import MaterialCache
from kmiptwist.wrapping.errors import WrappingError
from kmiptwist.wrapping.local import LocalRootKeyWrapper, RootKeyError, load_root_key

MATERIAL = bytes(range(32))
AAD = aad_for("alpha", "uid-1")


class AADTests(SynchronousTestCase):
    """The AAD names exactly one (tenant, unique identifier) pair."""

    def test_unambiguous(self) -> None:
        """Moving characters between tenant and identifier gives another AAD, so material
        cannot be passed off as another tenant's."""
        self.assertNotEqual(aad_for("ab", "c"), aad_for("a", "bc"))
        self.assertNotEqual(aad_for("alpha", "uid-1"), aad_for("beta", "uid-1"))
        self.assertEqual(aad_for("alpha", "uid-1"), AAD)


class _WrapperContract:
    """What any root key must do with material, as the operations layer relies on."""

    assertEqual: Any
    assertNotIn: Any
    assertTrue: Any
    successResultOf: Any
    failureResultOf: Any

    def make_wrapper(self) -> Any:
        """A wrapper under test."""
        raise NotImplementedError

    def _unwrap_error(self, wrapper: Any, wrapped: bytes, aad: bytes) -> WrappingError:
        failure = self.failureResultOf(wrapper.unwrap(wrapped, aad), WrappingError)
        return cast(WrappingError, failure.value)

    def test_provides(self) -> None:
        """The wrapper is a complete IKeyWrapper."""
        self.assertTrue(verifyObject(IKeyWrapper, self.make_wrapper()))

    def test_round_trip(self) -> None:
        """Wrapped material unwraps to the same bytes with the same AAD."""
        wrapper = self.make_wrapper()
        wrapped = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        result = self.successResultOf(wrapper.unwrap(wrapped, AAD))
        self.assertEqual(result, UnwrapResult(MATERIAL))

    def test_wrong_aad(self) -> None:
        """Material copied to another object or tenant does not unwrap, permanently."""
        wrapper = self.make_wrapper()
        wrapped = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        for other in (aad_for("alpha", "uid-2"), aad_for("beta", "uid-1")):
            self.assertTrue(self._unwrap_error(wrapper, wrapped, other).permanent)

    def test_no_plaintext(self) -> None:
        """The wrapped form, which is what reaches the disk, never contains the key."""
        wrapper = self.make_wrapper()
        wrapped = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        self.assertNotIn(MATERIAL, wrapped)
        self.assertNotIn(MATERIAL[:8], wrapped)


class LocalRootKeyTests(_WrapperContract, SynchronousTestCase):
    """The local root key: AES-256-GCM, versioned format, authenticated."""

    def make_wrapper(self) -> LocalRootKeyWrapper:
        """A local wrapper with a random root key."""
        return LocalRootKeyWrapper(os.urandom(32))

    def test_format(self) -> None:
        """The wrapped form is a version byte, a 12-byte nonce, the ciphertext and a tag."""
        wrapped = self.successResultOf(self.make_wrapper().wrap(MATERIAL, AAD))
        self.assertEqual(wrapped[0], 1)
        self.assertEqual(len(wrapped), 1 + 12 + len(MATERIAL) + 16)

    def test_fresh_nonce(self) -> None:
        """Wrapping the same material twice gives different nonces and ciphertexts."""
        wrapper = self.make_wrapper()
        first = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        second = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        self.assertNotEqual(first[1:13], second[1:13])
        self.assertNotEqual(first[13:], second[13:])

    def test_tampering(self) -> None:
        """Changing any byte of the wrapped form (version, nonce, ciphertext or tag), or
        truncating it, makes unwrapping fail permanently instead of returning a wrong key."""
        wrapper = self.make_wrapper()
        wrapped = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        for position in (0, 1, 12, 13, 13 + 31, len(wrapped) - 1):
            altered = bytearray(wrapped)
            altered[position] ^= 0x01
            self.assertTrue(self._unwrap_error(wrapper, bytes(altered), AAD).permanent)
        for length in (0, 1, 28, len(wrapped) - 1):
            self.assertTrue(self._unwrap_error(wrapper, wrapped[:length], AAD).permanent)

    def test_other_root_key(self) -> None:
        """Material wrapped by one root key does not unwrap with another."""
        wrapped = self.successResultOf(self.make_wrapper().wrap(MATERIAL, AAD))
        self.assertTrue(self._unwrap_error(self.make_wrapper(), wrapped, AAD).permanent)

    def test_repr_hides_key(self) -> None:
        """Logging the wrapper does not log the root key."""
        key = os.urandom(32)
        self.assertNotIn(key.hex(), repr(LocalRootKeyWrapper(key)))

    def test_wrong_key_length(self) -> None:
        """Only an AES-256 root key is accepted."""
        self.assertRaises(RootKeyError, LocalRootKeyWrapper, os.urandom(16))


class RootKeyFileTests(SynchronousTestCase):
    """The root-key file is checked before the server uses it."""

    def _file(self, content: bytes, mode: int) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)
        return path

    def test_load(self) -> None:
        """A 32-byte file only its owner can read is the root key."""
        key = os.urandom(32)
        path = self._file(key, 0o600)
        self.assertEqual(load_root_key(path), key)
        wrapper = LocalRootKeyWrapper.from_file(path)
        wrapped = self.successResultOf(LocalRootKeyWrapper(key).wrap(MATERIAL, AAD))
        self.assertEqual(self.successResultOf(wrapper.unwrap(wrapped, AAD)).material, MATERIAL)

    def test_readable_by_others(self) -> None:
        """A root-key file that group or others can read is refused, saying how to fix it."""
        for mode in (0o644, 0o640, 0o604, 0o620):
            path = self._file(os.urandom(32), mode)
            error = self.assertRaises(RootKeyError, load_root_key, path)
            self.assertIn("chmod 600", str(error))

    def test_wrong_length(self) -> None:
        """A file of the wrong length (truncated, or a hex or base64 text) is refused."""
        for content in (b"", os.urandom(16), os.urandom(33), os.urandom(32).hex().encode()):
            path = self._file(content, 0o600)
            error = self.assertRaises(RootKeyError, load_root_key, path)
            self.assertIn(f"holds {len(content)} bytes", str(error))

    def test_missing(self) -> None:
        """A missing file is reported by name."""
        path = self.mktemp()
        error = self.assertRaises(RootKeyError, load_root_key, path)
        self.assertIn(path, str(error))

    def test_not_a_file(self) -> None:
        """A directory is not a root key."""
        path = self.mktemp()
        os.mkdir(path, 0o700)
        self.assertRaises(RootKeyError, load_root_key, path)


class FakeWrapperTests(_WrapperContract, SynchronousTestCase):
    """The fake root key behaves like a real one where the operations layer can tell."""

    def make_wrapper(self) -> FakeWrapper:
        """A fake wrapper."""
        return FakeWrapper()

    def test_counts(self) -> None:
        """Tests can count the calls that would reach Key Protect."""
        wrapper = FakeWrapper()
        wrapped = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        self.successResultOf(wrapper.unwrap(wrapped, AAD))
        self.successResultOf(wrapper.unwrap(wrapped, AAD))
        self.assertEqual((wrapper.wrap_calls, wrapper.unwrap_calls), (1, 2))

    def test_failure_switch(self) -> None:
        """A test can make the root key fail, transiently or permanently."""
        wrapper = FakeWrapper()
        wrapped = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        wrapper.fail_with("Key Protect is unreachable")
        error = self.failureResultOf(wrapper.unwrap(wrapped, AAD), WrappingError).value
        self.assertFalse(error.permanent)
        self.failureResultOf(wrapper.wrap(MATERIAL, AAD), WrappingError)
        wrapper.failure = None
        self.assertEqual(self.successResultOf(wrapper.unwrap(wrapped, AAD)).material, MATERIAL)

    def test_rotation(self) -> None:
        """After a root key rotation, old material unwraps with a rewrapped form."""
        wrapper = FakeWrapper()
        wrapped = self.successResultOf(wrapper.wrap(MATERIAL, AAD))
        wrapper.rotate()
        result = self.successResultOf(wrapper.unwrap(wrapped, AAD))
        self.assertEqual(result.material, MATERIAL)
        assert result.rewrapped is not None
        self.assertEqual(
            self.successResultOf(wrapper.unwrap(result.rewrapped, AAD)), UnwrapResult(MATERIAL)
        )

    def test_hold(self) -> None:
        """A test can hold calls in flight (a slow Key Protect) and release them."""
        wrapper = FakeWrapper()
        wrapper.hold()
        pending = wrapper.wrap(MATERIAL, AAD)
        self.assertNoResult(pending)
        wrapper.release()
        wrapped = self.successResultOf(pending)
        self.assertEqual(self.successResultOf(wrapper.unwrap(wrapped, AAD)).material, MATERIAL)


class _Loads:
    """A load function whose calls a test answers one by one."""

    def __init__(self) -> None:
        self.calls: list[Deferred[bytes]] = []

    def __call__(self) -> Deferred[bytes]:
        deferred: Deferred[bytes] = Deferred()
        self.calls.append(deferred)
        return deferred


class MaterialCacheTests(SynchronousTestCase):
    """The cache saves unwraps without keeping material longer or more than configured."""

    def _get(
        self, cache: MaterialCache, key: object, load: Callable[[], object]
    ) -> Deferred[bytes]:
        return Deferred.fromCoroutine(cache.get(key, load))  # type: ignore[arg-type]

    def _filled(self, cache: MaterialCache, key: object, material: bytes = MATERIAL) -> None:
        loads = _Loads()
        got = self._get(cache, key, loads)
        loads.calls[0].callback(material)
        self.assertEqual(self.successResultOf(got), material)

    def test_hit_within_ttl(self) -> None:
        """A second Get within the TTL does not unwrap again."""
        clock = Clock()
        cache = MaterialCache(10, 60.0, clock)
        self._filled(cache, ("alpha", "k"))
        clock.advance(59)
        loads = _Loads()
        self.assertEqual(self.successResultOf(self._get(cache, ("alpha", "k"), loads)), MATERIAL)
        self.assertEqual(loads.calls, [])

    def test_miss_after_ttl(self) -> None:
        """Material is not served once its TTL has passed; it is unwrapped again."""
        clock = Clock()
        cache = MaterialCache(10, 60.0, clock)
        self._filled(cache, ("alpha", "k"))
        clock.advance(60)
        loads = _Loads()
        got = self._get(cache, ("alpha", "k"), loads)
        self.assertEqual(len(loads.calls), 1)
        loads.calls[0].callback(b"again")
        self.assertEqual(self.successResultOf(got), b"again")

    def test_lru_bound(self) -> None:
        """The cache holds at most max_entries materials, dropping the least recently used."""
        clock = Clock()
        cache = MaterialCache(2, 60.0, clock)
        self._filled(cache, "a", b"A")
        self._filled(cache, "b", b"B")
        self.successResultOf(self._get(cache, "a", _Loads()))  # a is now the most recent
        self._filled(cache, "c", b"C")
        self.assertEqual(len(cache), 2)
        for key in ("a", "c"):
            loads = _Loads()
            self.successResultOf(self._get(cache, key, loads))
            self.assertEqual(loads.calls, [])
        loads = _Loads()
        self._get(cache, "b", loads)
        self.assertEqual(len(loads.calls), 1)

    def test_single_flight(self) -> None:
        """Concurrent Gets of one key share one unwrap; other keys are not held up."""
        cache = MaterialCache(10, 60.0, Clock())
        loads = _Loads()
        first = self._get(cache, "k", loads)
        second = self._get(cache, "k", loads)
        other = _Loads()
        third = self._get(cache, "other", other)
        self.assertEqual((len(loads.calls), len(other.calls)), (1, 1))
        self.assertNoResult(first)
        self.assertNoResult(second)
        loads.calls[0].callback(MATERIAL)
        self.assertEqual(self.successResultOf(first), MATERIAL)
        self.assertEqual(self.successResultOf(second), MATERIAL)
        self.assertNoResult(third)

    def test_failed_load(self) -> None:
        """A failed unwrap fails every Get waiting for it and is not remembered."""
        cache = MaterialCache(10, 60.0, Clock())
        loads = _Loads()
        first = self._get(cache, "k", loads)
        second = self._get(cache, "k", loads)
        loads.calls[0].errback(WrappingError("Key Protect is unreachable", permanent=False))
        self.failureResultOf(first, WrappingError)
        self.failureResultOf(second, WrappingError)
        retry = self._get(cache, "k", loads)
        self.assertEqual(len(loads.calls), 2)
        loads.calls[1].callback(MATERIAL)
        self.assertEqual(self.successResultOf(retry), MATERIAL)

    def test_off(self) -> None:
        """With max_entries 0 or TTL 0 nothing is kept: every Get unwraps."""
        for cache in (MaterialCache(0, 60.0, Clock()), MaterialCache(10, 0, Clock())):
            loads = _Loads()
            for _ in range(2):
                got = self._get(cache, "k", loads)
                loads.calls[-1].callback(MATERIAL)
                self.assertEqual(self.successResultOf(got), MATERIAL)
            self.assertEqual((len(loads.calls), len(cache)), (2, 0))

    def test_invalidate(self) -> None:
        """A destroyed key's material is forgotten at once, and an unwrap already under
        way when it was destroyed is not cached."""
        cache = MaterialCache(10, 60.0, Clock())
        self._filled(cache, "k")
        cache.invalidate("k")
        loads = _Loads()
        waiting = self._get(cache, "k", loads)
        cache.invalidate("k")
        loads.calls[0].callback(MATERIAL)
        self.assertEqual(self.successResultOf(waiting), MATERIAL)
        self.assertEqual(len(cache), 0)

    def test_clear(self) -> None:
        """Clearing forgets every material."""
        cache = MaterialCache(10, 60.0, Clock())
        self._filled(cache, "a")
        self._filled(cache, "b")
        cache.clear()
        self.assertEqual(len(cache), 0)

    def test_put(self) -> None:
        """Material put by Create is served without an unwrap."""
        cache = MaterialCache(10, 60.0, Clock())
        cache.put("k", MATERIAL)
        loads = _Loads()
        self.assertEqual(self.successResultOf(self._get(cache, "k", loads)), MATERIAL)
        self.assertEqual(loads.calls, [])
