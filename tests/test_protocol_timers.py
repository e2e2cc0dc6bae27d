"""The connection's cheap paths: one timer for every connection's deadline, and
requests answered without waiting run without a Deferred."""

from __future__ import annotations

import contextvars

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import pki
from kmiptwist.errors import ResultReason
from kmiptwist.processor import Peer
from kmiptwist.protocol import ConnectionLimits, KMIPServerFactory, _run
from kmiptwist.testing.messages import read_response

from .test_protocol import ADDRESS, FakeTenancy, _certificates, _message

_SEEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("seen", default=None)


class WaitingProcessor:
    """Sets a context variable, waits on a Deferred the test fires, then answers with
    what the variable holds (or fails, if the Deferred fails)."""

    def __init__(self) -> None:
        self.gates: list[Deferred[None]] = []

    async def respond(self, data: bytes, peer: Peer) -> bytes:
        _SEEN.set(f"request {len(self.gates)}")
        gate: Deferred[None] = Deferred()
        self.gates.append(gate)
        await gate
        return (_SEEN.get() or "lost").encode("ascii")


def _factory(processor: object, clock: Clock, **limits: float) -> KMIPServerFactory:
    first, _ = _certificates()
    tenancy = FakeTenancy({pki.fingerprint(first): "acme"})
    return KMIPServerFactory(processor, tenancy, clock, ConnectionLimits(**limits))  # type: ignore[arg-type]


def _connect(factory: KMIPServerFactory) -> tuple[object, object]:
    protocol = factory.buildProtocol(ADDRESS)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.identify(_certificates()[0])  # type: ignore[attr-defined]
    return protocol, transport


class SharedTimerTests(SynchronousTestCase):
    """Idle and handshake deadlines of many connections on one reactor timer."""

    def test_a_thousand_idle_connections_keep_one_timer(self) -> None:
        """A thousand idle connections cost the reactor one timer, not a thousand, so
        they do not slow the timers of busy connections."""
        clock = Clock()
        factory = _factory(WaitingProcessor(), clock, idle_timeout=300)
        for _ in range(1000):
            _connect(factory)
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_each_connection_times_out_at_its_own_deadline(self) -> None:
        """A connection that was active later is closed later: each one gets its own
        full idle period."""
        clock = Clock()
        factory = _factory(WaitingProcessor(), clock, idle_timeout=60)
        early, early_transport = _connect(factory)
        clock.advance(30)
        late, late_transport = _connect(factory)
        clock.advance(30)
        self.assertTrue(early_transport.disconnecting)  # type: ignore[attr-defined]
        self.assertFalse(late_transport.disconnecting)  # type: ignore[attr-defined]
        clock.advance(30)
        self.assertTrue(late_transport.disconnecting)  # type: ignore[attr-defined]

    def test_activity_moves_the_deadline(self) -> None:
        """A client that keeps sending is never timed out between its requests."""

        class Answering:
            async def respond(self, data: bytes, peer: Peer) -> bytes:
                return b"answer"

        clock = Clock()
        factory = _factory(Answering(), clock, idle_timeout=60)
        protocol, transport = _connect(factory)
        for number in range(10):
            clock.advance(50)
            protocol.dataReceived(_message(number))  # type: ignore[attr-defined]
        self.assertFalse(transport.disconnecting)  # type: ignore[attr-defined]
        clock.advance(60)
        self.assertTrue(transport.disconnecting)  # type: ignore[attr-defined]


class RunTests(SynchronousTestCase):
    """Requests that wait (a commit, a Key Protect call) keep their context."""

    def test_context_survives_the_wait(self) -> None:
        """What an operation notes before it waits (the audit record's Key Protect
        correlation id) is still there after the wait, and not in another request."""
        clock = Clock()
        processor = WaitingProcessor()
        factory = _factory(processor, clock)
        protocol, transport = _connect(factory)
        protocol.dataReceived(_message(1) + _message(2))  # type: ignore[attr-defined]
        self.assertIsNone(_SEEN.get())
        processor.gates[1].callback(None)
        processor.gates[0].callback(None)
        self.assertEqual(transport.value(), b"request 0request 1")  # type: ignore[attr-defined]

    def test_failure_after_the_wait_is_answered(self) -> None:
        """An operation that fails after waiting still gets an answer (General Failure)
        and the connection carries on."""
        clock = Clock()
        processor = WaitingProcessor()
        factory = _factory(processor, clock)
        protocol, transport = _connect(factory)
        protocol.dataReceived(_message(1))  # type: ignore[attr-defined]
        processor.gates[0].errback(RuntimeError("store broke"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        (item,) = read_response(transport.value()).items  # type: ignore[attr-defined]
        self.assertEqual(item.reason, ResultReason.GENERAL_FAILURE)
        self.assertFalse(transport.disconnecting)  # type: ignore[attr-defined]

    def test_driving_a_coroutine_through_several_waits(self) -> None:
        """``_run`` resumes a coroutine at each Deferred it waits on, in its context;
        a failure it catches is its own (nothing is logged), and one it lets out
        fails the answer."""
        first: Deferred[int] = Deferred()
        second: Deferred[int] = Deferred()
        third: Deferred[int] = Deferred()

        async def operation() -> bytes:
            _SEEN.set("mine")
            total = await first
            try:
                await second
            except ValueError as error:
                total += len(str(error))
            total += await third
            return f"{total} {_SEEN.get()}".encode()

        answer = _run(operation())
        assert isinstance(answer, Deferred)
        first.callback(1)
        second.errback(ValueError("four"))
        self.assertNoResult(answer)
        third.callback(10)
        self.assertEqual(self.successResultOf(answer), b"15 mine")
        self.assertIsNone(_SEEN.get())
        self.assertEqual(self.flushLoggedErrors(ValueError), [])

        failing: Deferred[int] = Deferred()

        async def failing_operation() -> bytes:
            await failing
            return b"never"

        answer = _run(failing_operation())
        assert isinstance(answer, Deferred)
        failing.errback(KeyError("gone"))
        self.failureResultOf(answer, KeyError)
