"""A Key Protect emulator and the client stack over ``StubTreq``, on a ``Clock``.

Shared by the Key Protect client and wrapper tests: :meth:`Harness.settle` runs a
Deferred to its end, flushing the in-memory HTTP connections and jumping the clock
to the next timed event (backoff, timeout, latency) until it fires.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from kmiptwist.keyprotect.client import KeyProtectClient
from kmiptwist.keyprotect.iam import APIKeySource, IAMTokenManager
from kmiptwist.keyprotect.transport import HTTPTransport, RetryPolicy
from kmiptwist.keyprotect.wrapper import KeyProtectWrapper
from kmiptwist.testing.keyprotect_emulator import APIKeyGrant, KeyProtectEmulator

INSTANCE = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
BASE = "http://127.0.0.1:18443"
TOKEN_URL = "http://127.0.0.1:18443/identity/token"
API_KEY_ENV = "KMIPTWIST_TEST_KP_API_KEY"


class Harness:
    """An emulator (rotation and state changes allowed at once) and a client for it."""

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        max_in_flight: int = 8,
        token_lifetime: int = 3600,
    ) -> None:
        os.environ[API_KEY_ENV] = "service-id-api-key"
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.emulator = KeyProtectEmulator(
            self.clock,
            api_keys={"service-id-api-key": APIKeyGrant("Manager")},
            rotation_interval=0,
            state_change_delay=0,
            token_lifetime=token_lifetime,
        )
        self.stub = StubTreq(self.emulator.resource())
        self.policy = policy or RetryPolicy(timeout=2.0, deadline=6.0, max_retries=3)
        self.semaphore = DeferredSemaphore(max_in_flight)
        self.tokens = IAMTokenManager(
            HTTPTransport(self.stub, self.clock, self.policy, draw=lambda: 0.5),
            TOKEN_URL,
            APIKeySource.parse(f"env:{API_KEY_ENV}"),
        )
        self.transport = HTTPTransport(
            self.stub, self.clock, self.policy, self.semaphore, lambda: 0.5
        )
        self.client = KeyProtectClient(self.transport, self.tokens, BASE, INSTANCE)
        self.root_key = self.emulator.create_root_key(INSTANCE, "kmip-root-key").id

    def wrapper(self, **options: Any) -> KeyProtectWrapper:
        """A wrapper of the harness's root key."""
        return KeyProtectWrapper(self.client, self.root_key, self.clock, **options)

    def settle(self, work: Deferred[Any] | Coroutine[Any, Any, Any], limit: float = 120.0) -> Any:
        """Run ``work`` to its end (time jumps to each next event); its result or Failure."""
        deferred = work if isinstance(work, Deferred) else Deferred.fromCoroutine(work)
        outcome: list[Any] = []
        deferred.addBoth(outcome.append)
        start = self.clock.seconds()
        self.stub.flush()
        while not outcome:
            calls = [call.getTime() for call in self.clock.getDelayedCalls() if call.active()]
            if not calls or min(calls) - start > limit:
                raise AssertionError("the call never ended")
            self.clock.advance(max(0.0, min(calls) - self.clock.seconds()))
            self.stub.flush()
        return outcome[0]

    def result(self, work: Deferred[Any] | Coroutine[Any, Any, Any]) -> Any:
        """The result of ``work``; its exception raised when it failed."""
        outcome = self.settle(work)
        if isinstance(outcome, Failure):
            outcome.raiseException()
        return outcome

    def failure(self, work: Deferred[Any] | Coroutine[Any, Any, Any], kind: type) -> Any:
        """The exception ``work`` failed with (it must be a ``kind``)."""
        outcome = self.settle(work)
        if not isinstance(outcome, Failure):
            raise AssertionError(f"expected {kind.__name__}, got {outcome!r}")
        if not outcome.check(kind):
            outcome.raiseException()
        return outcome.value

    def manage(self, action: str) -> None:
        """rotate / disable / enable / delete the root key straight in the emulator."""
        model = self.emulator.model
        if action == "rotate":
            model.rotate(INSTANCE, self.root_key, {})
        elif action == "delete":
            model.delete(INSTANCE, self.root_key, "test")
        else:
            getattr(model, action)(INSTANCE, self.root_key)
