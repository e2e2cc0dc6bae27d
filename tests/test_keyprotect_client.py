"""Tests for the Key Protect client stack: IAM tokens, retries and timeouts, every call.

Everything runs against the emulator through ``treq.testing.StubTreq`` on a
``Clock``: what these tests see is what the server sees from Key Protect.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.keyprotect import errors as kp
from kmiptwist.keyprotect.client import ACTIVE, DESTROYED, SUSPENDED
from kmiptwist.keyprotect.errors import KeyProtectError, describe_error_body
from kmiptwist.keyprotect.iam import APIKeyError, APIKeySource
from kmiptwist.keyprotect.transport import RetryPolicy
from tests.keyprotect_harness import API_KEY_ENV, Harness


class TokenTests(SynchronousTestCase):
    """IAM tokens: fetched once, shared, refreshed before expiry, dropped on a 401."""

    def test_one_token_for_many_calls(self) -> None:
        """Concurrent first calls share one token request; later calls reuse the token."""
        harness = Harness()
        calls = [
            Deferred.fromCoroutine(harness.client.key_metadata(harness.root_key)) for _ in range(5)
        ]
        for call in calls:
            harness.result(call)
        harness.result(harness.client.key_metadata(harness.root_key))
        self.assertEqual(harness.emulator.iam.tokens_issued, 1)
        self.assertEqual(harness.tokens.fetch_count, 1)

    def test_refresh_before_expiry(self) -> None:
        """After 80 % of its life the token is refreshed in the background while still
        used; callers never wait for IAM then."""
        harness = Harness()
        first = harness.result(harness.tokens.authorization())
        harness.clock.advance(0.85 * 3600)
        second = harness.settle(harness.tokens.authorization())
        self.assertEqual(second, first)  # the old one, still valid
        self.assertEqual(harness.emulator.iam.tokens_issued, 2)
        third = harness.result(harness.tokens.authorization())
        self.assertNotEqual(third, first)

    def test_expired_token_waits_for_new(self) -> None:
        """A token within a minute of expiry is not sent; the call waits for a new one."""
        harness = Harness()
        first = harness.result(harness.tokens.authorization())
        harness.clock.advance(3600 - 30)
        self.assertNotEqual(harness.result(harness.tokens.authorization()), first)

    def test_401_refreshes_once(self) -> None:
        """A Key Protect 401 (token revoked, emulator restarted with a new secret) gets
        one more try with a fresh token, and the call succeeds."""
        harness = Harness()
        harness.result(harness.client.key_metadata(harness.root_key))
        harness.emulator.iam.secret = os.urandom(32)  # every issued token is now invalid
        metadata = harness.result(harness.client.key_metadata(harness.root_key))
        self.assertEqual(metadata["id"], harness.root_key)
        self.assertEqual(harness.emulator.iam.tokens_issued, 2)

    def test_401_twice_is_unauthorized(self) -> None:
        """When even a fresh token is refused, the error says so (kind unauthorized)."""
        harness = Harness()
        harness.emulator.inject(401, 2)
        harness.emulator.knobs.update({})
        error = harness.failure(harness.client.key_metadata(harness.root_key), KeyProtectError)
        # The first injected 401 hit the token request itself, which is retried no more.
        self.assertIn(error.kind, (kp.UNAUTHORIZED, kp.IAM_REJECTED))

    def test_iam_retried(self) -> None:
        """IAM answering 503 or 429 is retried like Key Protect; the call then succeeds."""
        harness = Harness()
        harness.emulator.inject(503)
        harness.emulator.inject(429)
        harness.result(harness.client.key_metadata(harness.root_key))
        self.assertEqual(harness.emulator.calls["token"], 3)

    def test_bad_api_key(self) -> None:
        """An API key IAM does not know: IAM's 400 BXNIM0415E, named with where the key
        came from; the key itself is never in the message."""
        harness = Harness()
        os.environ[API_KEY_ENV] = "revoked-key-value"
        error = harness.failure(harness.client.wrap(harness.root_key, None, []), KeyProtectError)
        self.assertEqual(
            (error.kind, error.status, error.code), (kp.IAM_REJECTED, 400, "BXNIM0415E")
        )
        self.assertIn("Provided API key could not be found.", str(error))
        self.assertIn(f"env:{API_KEY_ENV}", str(error))
        self.assertNotIn("revoked-key-value", str(error))
        self.assertEqual(harness.emulator.calls["wrap"], 0)

    def test_api_key_sources(self) -> None:
        """API keys come from a file or an environment variable; a literal key is refused."""
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("  from-a-file\n")
        os.chmod(path, 0o600)
        self.assertEqual(APIKeySource.parse(f"file:{path}").read(), "from-a-file")
        os.environ["KMIPTWIST_TEST_OTHER"] = "from-env"
        self.assertEqual(APIKeySource.parse("env:KMIPTWIST_TEST_OTHER").read(), "from-env")
        for reference in ("abcdef0123", "file:", "env:not a name", "http://x"):
            self.assertRaises(ValueError, APIKeySource.parse, reference)
        self.assertRaises(APIKeyError, APIKeySource.parse("file:/nonexistent/key").read)
        self.assertRaises(APIKeyError, APIKeySource.parse("env:KMIPTWIST_TEST_UNSET").read)
        self.assertNotIn("from-a-file", repr(APIKeySource.parse(f"file:{path}")))


class RetryTests(SynchronousTestCase):
    """Timeouts, retries with backoff, the bound on calls in flight."""

    def test_retries_429_and_5xx(self) -> None:
        """429, 500 and 503 are retried (with backoff) and the call then succeeds."""
        harness = Harness()
        harness.result(harness.tokens.authorization())
        harness.emulator.inject(429)
        harness.emulator.inject(500)
        harness.emulator.inject(503)
        start = harness.clock.seconds()
        answer = harness.result(harness.client.wrap(harness.root_key, None, []))
        self.assertEqual(len(answer.plaintext), 32)
        # Waits of 0.75 x 0.2, 0.4, 0.8 s (backoff doubling, jitter 0.5 of the upper half).
        self.assertAlmostEqual(harness.clock.seconds() - start, 0.15 + 0.3 + 0.6, places=6)

    def test_retry_after(self) -> None:
        """A 429's Retry-After is honoured when it is longer than the backoff."""
        harness = Harness()
        harness.result(harness.tokens.authorization())
        harness.emulator.inject(429, retry_after=2)
        start = harness.clock.seconds()
        harness.result(harness.client.key_metadata(harness.root_key))
        self.assertAlmostEqual(harness.clock.seconds() - start, 2.0)

    def test_501_and_4xx_not_retried(self) -> None:
        """501 and 4xx answers are final at once."""
        harness = Harness()
        harness.result(harness.tokens.authorization())
        harness.emulator.inject(501)
        error = harness.failure(harness.client.key_metadata(harness.root_key), KeyProtectError)
        self.assertEqual(error.status, 501)
        self.assertFalse(error.transient)
        self.assertEqual(harness.emulator.calls["GET api/v2/keys/{id}/metadata"], 1)

    def test_retries_bounded(self) -> None:
        """A service that keeps failing gets max_retries + 1 attempts, then the last answer."""
        harness = Harness(RetryPolicy(timeout=1, deadline=60, max_retries=2))
        harness.result(harness.tokens.authorization())
        harness.emulator.knobs.update({"outage": "503"})
        error = harness.failure(harness.client.wrap(harness.root_key, None, []), KeyProtectError)
        self.assertEqual((error.kind, error.status), (kp.SERVER_ERROR, 503))
        self.assertTrue(error.transient)
        self.assertEqual(harness.emulator.calls["wrap"], 3)

    def test_timeout_and_deadline(self) -> None:
        """A service that never answers: each attempt times out, and the call fails
        within its deadline, saying so, with the root key and correlation id."""
        harness = Harness(RetryPolicy(timeout=1.0, deadline=3.5, max_retries=10))
        harness.result(harness.tokens.authorization())
        harness.emulator.knobs.update({"outage": "hang"})
        start = harness.clock.seconds()
        error = harness.failure(harness.client.unwrap(harness.root_key, "x", []), KeyProtectError)
        self.assertLessEqual(harness.clock.seconds() - start, 3.5)
        self.assertEqual((error.kind, error.status), (kp.UNAVAILABLE, None))
        self.assertIn("no answer within 1 s", str(error))
        self.assertIn(harness.root_key, str(error))
        self.assertIn(f"[correlation id {error.correlation_id}]", str(error))
        self.assertEqual(harness.emulator.in_flight, 0)

    def test_connection_dropped(self) -> None:
        """A connection closed without an answer is retried like no answer."""
        harness = Harness()
        harness.result(harness.tokens.authorization())
        harness.emulator.inject(0, 2)
        answer = harness.result(harness.client.key_metadata(harness.root_key))
        self.assertEqual(answer["state"], ACTIVE)

    def test_not_idempotent_not_resent(self) -> None:
        """A rotate whose answer was lost is not sent again (it is not idempotent)."""
        harness = Harness()
        harness.result(harness.tokens.authorization())
        harness.emulator.inject(0)
        error = harness.failure(harness.client.rotate(harness.root_key), KeyProtectError)
        self.assertEqual(error.kind, kp.UNAVAILABLE)
        self.assertEqual(harness.emulator.calls["rotate"], 1)

    def test_in_flight_bound(self) -> None:
        """At most max_in_flight calls are on the wire; the others wait their turn."""
        harness = Harness(max_in_flight=3)
        harness.result(harness.tokens.authorization())
        harness.emulator.knobs.update({"latency": 0.05})
        calls = [
            Deferred.fromCoroutine(harness.client.wrap(harness.root_key, None, []))
            for _ in range(10)
        ]
        for call in calls:
            harness.result(call)
        self.assertEqual(harness.emulator.max_in_flight, 3)
        self.assertEqual(harness.emulator.calls["wrap"], 10)

    def test_waiting_for_a_slot_is_bounded(self) -> None:
        """A call that cannot get a slot within its timeout fails; it never hangs."""
        harness = Harness(RetryPolicy(timeout=0.5, deadline=1.0, max_retries=0), max_in_flight=1)
        harness.result(harness.tokens.authorization())
        harness.result(harness.semaphore.acquire())  # a call that never ends holds the slot
        error = harness.failure(harness.client.key_metadata(harness.root_key), KeyProtectError)
        self.assertIn("1 calls already in flight and none finished within 0.5 s", str(error))
        self.assertEqual(harness.emulator.calls["GET api/v2/keys/{id}/metadata"], 0)


class CallTests(SynchronousTestCase):
    """Every call of the client, and every error of the reference, as the client sees them."""

    def setUp(self) -> None:
        self.harness = Harness()
        self.client = self.harness.client
        self.key = self.harness.root_key

    def call(self, coroutine: Any) -> Any:
        return self.harness.result(coroutine)

    def error(self, coroutine: Any) -> KeyProtectError:
        error: KeyProtectError = self.harness.failure(coroutine, KeyProtectError)
        return error

    def test_wrap_unwrap(self) -> None:
        """Wrap given material with AAD, unwrap it back; the AAD is checked."""
        wrapped = self.call(self.client.wrap(self.key, b"material", ["a", "b"]))
        self.assertIsNone(wrapped.plaintext)
        self.assertEqual(wrapped.key_version, self.key)
        self.assertTrue(wrapped.correlation_id)
        unwrapped = self.call(self.client.unwrap(self.key, wrapped.ciphertext, ["a", "b"]))
        self.assertEqual((unwrapped.plaintext, unwrapped.rewrapped), (b"material", None))
        error = self.error(self.client.unwrap(self.key, wrapped.ciphertext, ["a"]))
        self.assertEqual(
            (error.kind, error.status, error.code), (kp.BAD_CIPHERTEXT, 400, "INVALID_FIELD_ERR")
        )
        self.assertIn("original base64 encoded ciphertext", str(error))

    def test_generated_key(self) -> None:
        """Wrap without material returns Key Protect's new 32-byte key with its ciphertext."""
        wrapped = self.call(self.client.wrap(self.key, None, []))
        self.assertEqual(len(wrapped.plaintext), 32)
        self.assertEqual(
            self.call(self.client.unwrap(self.key, wrapped.ciphertext, [])).plaintext,
            wrapped.plaintext,
        )

    def test_rotation(self) -> None:
        """After a rotation unwrap returns the rewrapped ciphertext and the new version;
        rewrap does the same without the plaintext."""
        wrapped = self.call(self.client.wrap(self.key, b"material", ["a"]))
        self.call(self.client.rotate(self.key))
        latest = self.call(self.client.key_metadata(self.key))["keyVersion"]["id"]
        unwrapped = self.call(self.client.unwrap(self.key, wrapped.ciphertext, ["a"]))
        self.assertEqual(
            (unwrapped.key_version, unwrapped.rewrapped_key_version), (self.key, latest)
        )
        self.assertEqual(
            self.call(self.client.unwrap(self.key, unwrapped.rewrapped, ["a"])).plaintext,
            b"material",
        )
        rewrapped = self.call(self.client.rewrap(self.key, wrapped.ciphertext, ["a"]))
        self.assertEqual(
            (rewrapped.key_version, rewrapped.rewrapped_key_version), (self.key, latest)
        )
        versions = self.call(self.client.versions(self.key))
        self.assertEqual([v["id"] for v in versions], [latest, self.key])

    def test_key_management(self) -> None:
        """Create, get, list, disable, enable, delete and restore keys."""
        created = self.call(self.client.create_root_key("second", "for tests", ("second-alias",)))
        self.assertEqual((created["name"], created["state"]), ("second", ACTIVE))
        standard = self.call(
            self.client.create_root_key("std", payload=b"standard material", extractable=True)
        )
        self.assertEqual(
            base64.b64decode(self.call(self.client.get_key(standard["id"]))["payload"]),
            b"standard material",
        )
        page = self.call(self.client.list_keys(limit=2, total_count=True))
        self.assertEqual((len(page.keys), page.total), (2, 3))
        self.call(self.client.disable("second-alias"))
        self.assertEqual(self.call(self.client.key_metadata(created["id"]))["state"], SUSPENDED)
        self.assertEqual(len(self.call(self.client.list_keys(states=[SUSPENDED])).keys), 1)
        self.call(self.client.enable(created["id"]))
        deleted = self.call(self.client.delete(created["id"]))
        self.assertEqual(deleted["state"], DESTROYED)
        self.assertEqual(self.call(self.client.restore(created["id"]))["state"], ACTIVE)

    def test_state_errors(self) -> None:
        """Disabled: 409 invalid state; deleted: 410; unknown: 404; standard key: 400."""
        wrapped = self.call(self.client.wrap(self.key, b"material", []))
        self.harness.manage("disable")
        error = self.error(self.client.unwrap(self.key, wrapped.ciphertext, []))
        self.assertEqual(
            (error.kind, error.status, error.code),
            (kp.INVALID_STATE, 409, "KEY_ACTION_INVALID_STATE_ERR"),
        )
        self.assertIn("Key is not in a valid state", str(error))
        self.assertIn(f"root key {self.key}", str(error))
        self.harness.manage("enable")
        self.harness.manage("delete")
        error = self.error(self.client.wrap(self.key, b"material", []))
        self.assertEqual(
            (error.kind, error.status, error.code), (kp.DELETED, 410, "KEY_DELETED_ERR")
        )
        error = self.error(self.client.wrap("6f9b3c1e-0000-4000-8000-000000000000", None, []))
        self.assertEqual(
            (error.kind, error.status, error.code), (kp.NOT_FOUND, 404, "KEY_NOT_FOUND_ERR")
        )
        standard = self.call(self.client.create_root_key("std", extractable=True))
        error = self.error(self.client.wrap(standard["id"], None, []))
        self.assertEqual((error.kind, error.code), (kp.REJECTED, "KEY_ROOT_REQ_ERR"))

    def test_other_errors(self) -> None:
        """Corrupted ciphertext is 422; a Reader cannot disable (403 forbidden); a
        second rotation too soon is 409; an unknown instance's key is 404."""
        error = self.error(self.client.unwrap(self.key, base64.b64encode(b"{}").decode(), []))
        self.assertEqual((error.kind, error.status), (kp.BAD_CIPHERTEXT, 422))
        self.harness.emulator.add_api_key("service-id-api-key", "Reader")
        self.harness.tokens.invalidate(self.call(self.harness.tokens.authorization()))
        error = self.error(self.client.disable(self.key))
        self.assertEqual((error.kind, error.status), (kp.FORBIDDEN, 403))
        self.harness.emulator.model.rotation_interval = 3600
        self.harness.emulator.add_api_key("service-id-api-key", "Manager")
        self.harness.tokens.invalidate(self.call(self.harness.tokens.authorization()))
        error = self.error(self.client.rotate(self.key))
        self.assertEqual((error.status, error.code), (409, "KEY_ROTATION_NOT_PERMITTED"))

    def test_correlation_id(self) -> None:
        """The correlation id sent is the one in the answer and in the error."""
        wrapped = self.call(self.client.wrap(self.key, b"m", [], correlation_id="kmip-req-1"))
        self.assertEqual(wrapped.correlation_id, "kmip-req-1")
        self.harness.manage("disable")
        error = self.error(self.client.wrap(self.key, b"m", [], correlation_id="kmip-req-2"))
        self.assertEqual(error.correlation_id, "kmip-req-2")
        self.assertIn("[correlation id kmip-req-2]", str(error))

    def test_error_bodies(self) -> None:
        """Key Protect, IAM and foreign error bodies all give a code and a message."""
        self.assertEqual(
            describe_error_body(b'{"errorCode":"BXNIM0415E","errorMessage":"nope"}')[:2],
            ("BXNIM0415E", "nope"),
        )
        self.assertEqual(
            describe_error_body(b"<html>bad gateway</html>")[:2], (None, "<html>bad gateway</html>")
        )
        self.assertEqual(
            describe_error_body(b'{"errors":[{"code":"x","message":"y"}]}')[:2], ("x", "y")
        )
