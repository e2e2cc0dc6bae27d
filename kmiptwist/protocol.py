# -*- test-case-name: tests.test_protocol -*-
"""The KMIP connection: TLS identity, framing, pipelined requests answered in order.

This layer is thin on purpose.  It turns the peer's certificate into a :class:`Peer`
(fingerprint -> tenant), splits the byte stream into messages with the sans-IO
:class:`TTLVFramer`, hands each message to the processor and writes the responses
back in request order.  Everything it bounds is per connection (message size,
requests in flight, idle and handshake time) or per listener (connections); nothing a
peer sends can raise out of it or touch another connection.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import inspect
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, cast
from typing import Protocol as TypingProtocol

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kmiptwist.collector import ClosedConnections
from kmiptwist.errors import KMIPError, ResultReason
from kmiptwist.framing import FramingError, TTLVFramer
from kmiptwist.interfaces import ITenancy
from kmiptwist.messages import ProtocolVersion, error_response
from kmiptwist.pki import fingerprint
from kmiptwist.processor import Peer
from kmiptwist.tls import peer_certificate, peer_certificate_chain
from kmiptwist.trust import TrustedCAs

__all__ = [
    "ConnectionLimits",
    "KMIPServerFactory",
    "KMIPServerProtocol",
    "RequestProcessor",
    "format_address",
]

_FRAMING_ERROR_VERSION = ProtocolVersion(1, 0)
"""The version of the Invalid Message response to a stream that cannot be framed: the
request's own version is unknown then, and every KMIP client reads a 1.0 header."""


class RequestProcessor(TypingProtocol):
    """Answers one KMIP request message for a peer (``kmiptwist.processor.KMIPProcessor``)."""

    def respond(self, data: bytes, peer: Peer) -> bytes | Coroutine[Any, Any, bytes]:
        """The response bytes, or a coroutine of them when they take waiting for;
        never raises for anything the peer sent."""
        ...


@frozen
class ConnectionLimits:
    """What one listener bounds, per connection and in total."""

    max_message_size: int = 1 << 20
    """Largest message (header included) a peer may send; longer ones close the stream."""
    max_connections: int = 10_000
    """Open connections on the listener; connections past it are closed at once."""
    max_requests_in_flight: int = 32
    """Pipelined requests processed at once per connection; reading pauses past it."""
    idle_timeout: float = 300.0
    """Seconds without a request (and none being processed) before the connection closes."""
    handshake_timeout: float = 30.0
    """Seconds a peer has from TCP accept to the end of the TLS handshake."""
    close_timeout: float = 10.0
    """Seconds a closing connection may wait for the peer's TLS close before it is cut."""


def format_address(address: IAddress | None) -> str:
    """``host:port`` (``[host]:port`` for IPv6) for logs and the pending-certificate list."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    return str(address) if address is not None else "unknown"


async def _resolve(value: object) -> Any:
    """Await ``value`` if it is awaitable (Deferred or coroutine), else return it."""
    if inspect.isawaitable(value):
        return await value
    return value


def _run(coroutine: Coroutine[Any, Any, bytes]) -> bytes | Deferred[bytes]:
    """Run ``coroutine`` as far as it goes now: its result, or a Deferred of it.

    Most requests (Get, Get Attributes, Locate: reads of the store) finish without
    waiting on anything; running them directly saves the Deferred and the round of
    inlineCallbacks that ``Deferred.fromCoroutine`` costs per request.  One that waits
    (a write being committed, a Key Protect call) carries on in the same contextvars
    context, as it would under ``Deferred.fromCoroutine``.
    """
    context = contextvars.copy_context()
    try:
        waiting = context.run(coroutine.send, None)
    except StopIteration as done:
        result: bytes = done.value
        return result
    return Deferred.fromCoroutine(_carry_on(coroutine, waiting, context))


def _carry_on(
    coroutine: Coroutine[Any, Any, bytes], waiting: Any, context: contextvars.Context
) -> Generator[Deferred[Any], Any, bytes]:
    """Drive the rest of a coroutine :func:`_run` started, each step in its context."""
    while True:
        try:
            result = yield waiting
        except Exception as error:
            step = functools.partial(coroutine.throw, error)
        else:
            step = functools.partial(coroutine.send, result)
        try:
            waiting = context.run(step)
        except StopIteration as done:
            value: bytes = done.value
            return value


class _Transport(TypingProtocol):
    """What the protocol uses of its transport (TCP, or TLS over TCP)."""

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def registerProducer(self, producer: object, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...


class _Response:
    """One request's place in the response order; filled in when it is answered."""

    __slots__ = ("data", "done")

    def __init__(self) -> None:
        self.data = b""
        self.done = False


@implementer(IHandshakeListener, IPushProducer)
class KMIPServerProtocol(Protocol):
    """One KMIP client connection, from TLS handshake to close.

    Lifecycle: ``connectionMade`` starts the handshake timer; ``handshakeCompleted``
    calls :meth:`identify` with the peer's certificate, which resolves the tenant;
    requests that arrive meanwhile wait in the backlog.  Then each framed message is
    processed (up to ``max_requests_in_flight`` at once) and the responses are written
    in request order.  The protocol is also the transport's producer, so a peer that
    stops reading its responses stops being read.
    """

    _log = Logger()

    def __init__(self, factory: KMIPServerFactory, address: str) -> None:
        """A connection from ``address`` (``host:port``) accepted by ``factory``."""
        self.factory = factory
        self.address = address
        self.peer: Peer | None = None
        """Who the peer is, once :meth:`identify` has resolved it; None before."""
        self.requests = 0
        """How many request messages the peer has sent so far."""
        self._framer = TTLVFramer(factory.limits.max_message_size)
        self._backlog: deque[bytes] = deque()
        self._responses: deque[_Response] = deque()
        self._in_flight = 0
        self._fingerprint: str | None = None
        self._connected = False
        self._handshake_done = False
        self._identifying = False
        self._reading_paused = False
        self._writes_paused = False
        self._closing = False
        self._close_started = False
        self._closed = False
        self._producer_registered = False
        self._last_words: bytes | None = None
        self._progressing = False
        self._progress_again = False
        self._abort_call: IDelayedCall | None = None
        self.timeOut: float | None = None
        """Seconds of inactivity before :meth:`timeoutConnection` (None: no timer)."""

    def setTimeout(self, period: float | None) -> None:
        """Call :meth:`timeoutConnection` after ``period`` seconds of inactivity (None:
        never); the API of Twisted's ``TimeoutMixin``, on the factory's shared timer."""
        self.timeOut = period
        deadline = None if period is None else self.factory.clock.seconds() + period
        self.factory.deadlines.set(self, deadline)

    def resetTimeout(self) -> None:
        """Activity: start the inactivity period again."""
        if self.timeOut is not None:
            self.factory.deadlines.set(self, self.factory.clock.seconds() + self.timeOut)

    @property
    def _link(self) -> _Transport:
        """The transport, typed for what this protocol calls on it."""
        return cast(_Transport, self.transport)

    # -- connection lifecycle ------------------------------------------------------------

    def connectionMade(self) -> None:
        """Count the connection and give the peer ``handshake_timeout`` to finish TLS."""
        self._connected = True
        self.factory.connection_opened(self)
        self._link.registerProducer(self, True)
        self._producer_registered = True
        self.setTimeout(self.factory.limits.handshake_timeout)
        # Connections are logged once, when they close (with whom and how many
        # requests): vCenter opens one per step, and each log line costs more than the
        # step's KMIP request.

    def handshakeCompleted(self) -> None:
        """TLS is up: identify the peer by the certificate it presented (if any).

        The rest of the chain it sent is read only if the certificate itself is not
        registered (most connections never need it).
        """
        self.identify(peer_certificate(self.transport))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget the connection; responses still being computed are dropped."""
        self._connected = False
        self._closed = True
        self.setTimeout(None)
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        self._backlog.clear()
        self.factory.connection_closed(self)
        fields = {
            "peer": self.address,
            "tenant": self.peer.tenant if self.peer else None,
            "fingerprint": self._fingerprint,
            "requests": self.requests,
        }
        if not self._handshake_done and not reason.check(ConnectionDone, ConnectionLost):
            # A failed TLS handshake: a client that does not trust us yet, a port scan,
            # plain text on the TLS port.  The peer's problem, not the server's.
            self._log.info(
                "TLS handshake with {peer} failed: {reason}",
                reason=reason.getErrorMessage(),
                **fields,
            )
        elif self.requests == 0:
            # vCenter probes the server (fetching its certificate, health checks) with
            # connections that carry no KMIP message: normal, and frequent.
            self._log.debug(
                "Connection from {peer} ({tenant}) closed without a KMIP request", **fields
            )
        else:
            self._log.debug(
                "Connection from {peer} ({tenant}) closed after {requests} requests", **fields
            )
        # The TLS transport holds this protocol as its producer and this protocol holds
        # the transport: a cycle that, once the connection is closed, only a collection
        # of the generation it has reached would free, and collector.py makes those of
        # old generations rare.  Broken, reference counting frees the connection.
        self._unregister_producer()
        self.transport = None

    def timeoutConnection(self) -> None:
        """The handshake or idle timer ran out: close the connection."""
        if not self._handshake_done:
            self._log.info(
                "TLS handshake from {peer} did not complete within {timeout} seconds; "
                "closing the connection",
                peer=self.address,
                timeout=self.factory.limits.handshake_timeout,
            )
            self._link.abortConnection()
            return
        self._log.debug(
            "Closing connection from {peer}: idle for {timeout} seconds",
            peer=self.address,
            tenant=self.peer.tenant if self.peer else None,
            timeout=self.factory.limits.idle_timeout,
        )
        self._close()

    def cut_off(self, why: str) -> None:
        """Drop the connection now, without answering what is in flight (access revoked)."""
        if self._closed:
            return
        self._log.info(
            "Disconnecting {peer}: {why}",
            peer=self.address,
            fingerprint=self._fingerprint,
            tenant=self.peer.tenant if self.peer else None,
            why=why,
        )
        self._closing = True
        self._backlog.clear()
        self._responses.clear()
        self._link.abortConnection()

    # -- identity ------------------------------------------------------------------------

    def identify(
        self,
        certificate: x509.Certificate | None,
        chain: list[x509.Certificate] | None = None,
    ) -> Deferred[None]:
        """Resolve the peer's identity from its certificate (None: it presented none).

        Called by :meth:`handshakeCompleted` on every handshake (tests call it directly)
        with the certificates the peer sent in ``chain`` (None: read them from the TLS
        transport when needed).  A certificate is a tenant's
        when its fingerprint is registered, or else when it chains to a CA the tenant
        trusts.  Requests that arrive before the identity is known wait, in order.  A
        certificate that is neither is recorded as pending; the peer keeps its
        connection and every request is refused by the processor.
        """
        self._handshake_done = True
        self._identifying = True
        self._update_timeout()
        result = Deferred.fromCoroutine(self._identify(certificate, chain))
        result.addErrback(self._identify_failed)
        return result

    async def _identify(
        self, certificate: x509.Certificate | None, chain: list[x509.Certificate] | None
    ) -> None:
        """Look the certificate's fingerprint up, then its chain; see :meth:`identify`."""
        if certificate is None:
            self._set_fingerprint(None)
            self._log.info(
                "{peer} presented no client certificate; its requests will be refused",
                peer=self.address,
            )
            self._identified(Peer(self.address))
            return
        peer_fingerprint = fingerprint(certificate)
        subject = certificate.subject.rfc4514_string()
        # Indexed before the lookup, so that disconnect_fingerprint() during the lookup
        # still reaches this connection.
        self._set_fingerprint(peer_fingerprint)
        tenant = await _resolve(self.factory.tenancy.tenant_for_fingerprint(peer_fingerprint))
        if self._closed:
            return
        if tenant is not None:
            self._identified(Peer(self.address, peer_fingerprint, tenant, subject))
            return
        trusted = await _resolve(self.factory.tenancy.list_trusted_cas(None))
        if self._closed:
            return
        if chain is None:
            chain = peer_certificate_chain(self.transport)
        match = self.factory.trusted_cas.match(
            certificate,
            chain,
            trusted,
            datetime.datetime.fromtimestamp(self.factory.clock.seconds(), datetime.UTC),
        )
        if match is not None:
            self._log.debug(
                "{peer} is tenant {tenant} through trusted CA {ca} (certificate "
                "{fingerprint}, {subject})",
                peer=self.address,
                tenant=match.tenant,
                ca=match.ca_fingerprint,
                fingerprint=peer_fingerprint,
                subject=subject,
            )
            self._identified(
                Peer(self.address, peer_fingerprint, match.tenant, subject, match.ca_fingerprint)
            )
            return
        self._log.warn(
            "Unregistered client certificate from {peer}: {subject} (SHA-256 {fingerprint}); "
            "recorded as pending, its requests will be refused until an administrator "
            "approves it",
            peer=self.address,
            fingerprint=peer_fingerprint,
            subject=subject,
        )
        self._identified(Peer(self.address, peer_fingerprint, None, subject))
        try:
            await _resolve(
                self.factory.tenancy.record_pending(
                    peer_fingerprint,
                    subject,
                    certificate.issuer.rfc4514_string(),
                    self.address,
                    # The chain the client sent after its own certificate, so that a
                    # CA trusted later can be matched against the pending entry.
                    b"".join(
                        member.public_bytes(Encoding.PEM)
                        for member in [certificate, *(c for c in chain if c != certificate)]
                    ).decode("ascii"),
                    int(self.factory.clock.seconds()),
                )
            )
        except Exception:
            # The refusal does not depend on the record; the connection carries on.
            self._log.failure(
                "Could not record the pending certificate {fingerprint} of {peer}",
                peer=self.address,
                fingerprint=peer_fingerprint,
            )

    def _identified(self, peer: Peer) -> None:
        """Requests may now be processed as ``peer``."""
        self.peer = peer
        self._identifying = False
        self._progress()

    def _identify_failed(self, failure: Failure) -> None:
        """The tenancy could not answer: close rather than serve an unknown identity."""
        self._log.failure(
            "Could not resolve the identity of {peer}; closing the connection",
            failure,
            peer=self.address,
            fingerprint=self._fingerprint,
        )
        if not self._closed:
            self._identifying = False
            self._closing = True
            self._link.abortConnection()

    def _set_fingerprint(self, new: str | None) -> None:
        """Keep the factory's fingerprint index in step with this connection."""
        if new != self._fingerprint:
            self.factory.fingerprint_changed(self, self._fingerprint, new)
            self._fingerprint = new

    # -- requests and responses ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Frame the bytes into messages and queue them; never raises."""
        if self._closing:
            return
        try:
            messages = self._framer.feed(data)
        except FramingError as error:
            if error.messages:
                self.requests += len(error.messages)
                self._backlog.extend(error.messages)
            self._framing_failed(error)
            return
        except Exception:
            self._log.failure("Framing failed unexpectedly for {peer}", peer=self.address)
            self._framing_failed(FramingError("the stream could not be framed"))
            return
        if messages:
            self.requests += len(messages)
            self._backlog.extend(messages)
            self.resetTimeout()
            self._progress()

    def _framing_failed(self, error: FramingError) -> None:
        """Answer what came before, then Invalid Message, then close."""
        self._log.info(
            "Closing connection from {peer}: {error}",
            peer=self.address,
            tenant=self.peer.tenant if self.peer else None,
            fingerprint=self._fingerprint,
            error=str(error),
        )
        self._closing = True
        self._last_words = error_response(
            _FRAMING_ERROR_VERSION,
            int(self.factory.clock.seconds()),
            KMIPError(ResultReason.INVALID_MESSAGE, str(error)),
        )
        self._progress()

    def _progress(self) -> None:
        """Start waiting requests, write the responses that are next in order, and so on.

        A request answered at once is written in the same round, with any answered
        before it.  Not re-entrant: an answer that arrives while this runs (a failure
        reported, a Deferred that fired) only asks for another round.
        """
        if self._progressing:
            self._progress_again = True
            return
        self._progressing = True
        try:
            again = True
            while again:
                self._progress_again = False
                self._start_waiting()
                self._write_ready()
                again = self._progress_again
        finally:
            self._progressing = False
        if self._closed:
            return
        if self._closing and not self._backlog and not self._responses and not self._in_flight:
            if self._last_words is not None:
                self._link.write(self._last_words)
                self._last_words = None
            self._close()
            return
        self._update_reading()
        self._update_timeout()

    def _start_waiting(self) -> None:
        """Start waiting requests, in order, while the in-flight bound allows."""
        limit = self.factory.limits.max_requests_in_flight
        while (
            self._backlog
            and self.peer is not None
            and not self._identifying
            and not self._closed
            and self._in_flight < limit
        ):
            message = self._backlog.popleft()
            slot = _Response()
            self._responses.append(slot)
            self._in_flight += 1
            try:
                answer = self.factory.processor.respond(message, self.peer)
                if not isinstance(answer, bytes):
                    answer = _run(answer)
            except Exception:
                self._answer_failed(Failure(), slot)
                continue
            # isinstance of bytes first: of Deferred (an ABC) it costs five times more.
            if isinstance(answer, bytes):
                # Answered at once: _progress writes it next, without a round of its own.
                slot.data, slot.done = answer, True
                self._in_flight -= 1
            else:
                answer.addCallbacks(
                    self._answered, self._answer_failed, callbackArgs=(slot,), errbackArgs=(slot,)
                )

    def _answered(self, response: bytes, slot: _Response) -> None:
        """A request is answered; write it when every earlier one has been."""
        slot.data = response
        slot.done = True
        self._in_flight -= 1
        self._progress()

    def _answer_failed(self, failure: Failure, slot: _Response) -> None:
        """The processor broke its promise never to fail: answer General Failure."""
        self._log.failure(
            "Processing a request from {peer} failed unexpectedly",
            failure,
            peer=self.address,
            tenant=self.peer.tenant if self.peer else None,
        )
        self._answered(
            error_response(
                _FRAMING_ERROR_VERSION,
                int(self.factory.clock.seconds()),
                KMIPError(
                    ResultReason.GENERAL_FAILURE,
                    "the request failed on an internal error; the server log has details",
                ),
            ),
            slot,
        )

    def _write_ready(self) -> None:
        """Write every response at the head of the order that is ready."""
        responses = self._responses
        while responses and responses[0].done:
            slot = responses.popleft()
            if not self._closed:
                self._link.write(slot.data)

    # -- flow control --------------------------------------------------------------------

    def _update_reading(self) -> None:
        """Read from the peer only while there is room for its next request."""
        if self._closed or self._closing:
            return
        limits = self.factory.limits
        pause = bool(
            self._backlog or self._writes_paused or self._in_flight >= limits.max_requests_in_flight
        )
        if pause and not self._reading_paused:
            self._reading_paused = True
            self._link.pauseProducing()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            self._link.resumeProducing()

    def _update_timeout(self) -> None:
        """Idle time runs while nothing is being processed (waiting on a peer counts)."""
        if self._closed or not self._handshake_done:
            return
        wanted = None if self._in_flight else self.factory.limits.idle_timeout
        if wanted != self.timeOut:
            self.setTimeout(wanted)

    def pauseProducing(self) -> None:
        """The peer is not reading its responses: stop reading its requests."""
        self._writes_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        """The peer caught up with its responses: read again."""
        self._writes_paused = False
        self._update_reading()

    def stopProducing(self) -> None:
        """The transport is going away; ``connectionLost`` follows."""

    def _close(self) -> None:
        """Close cleanly (TLS close_notify), and cut the connection if the peer stalls."""
        if self._closed or self._close_started:
            return
        self._close_started = True
        self._closing = True
        self.setTimeout(None)
        if self._reading_paused:
            # The TLS close needs the peer's close_notify: keep reading.
            self._reading_paused = False
            self._link.resumeProducing()
        # A registered producer keeps the TLS layer from shutting down.
        self._unregister_producer()
        self._link.loseConnection()
        if self._abort_call is None and not self._closed:
            self._abort_call = self.factory.clock.callLater(
                self.factory.limits.close_timeout, self._abort_stalled
            )

    def _unregister_producer(self) -> None:
        """Stop being the transport's producer, if this protocol still is."""
        if self._producer_registered:
            self._producer_registered = False
            self._link.unregisterProducer()

    def _abort_stalled(self) -> None:
        """The peer did not finish closing in time: drop the connection."""
        self._abort_call = None
        if not self._closed:
            self._link.abortConnection()


_deadlines_log = Logger()


class _Deadlines:
    """Every connection's inactivity deadline, on one reactor timer for them all.

    A timer per connection puts a thousand idle connections in the reactor's timer
    heap, and every timer of the busy ones (TLS schedules one per write) then pays for
    them.  Here a deadline is a dict entry, moved at each request for nothing; the one
    timer is due at the earliest deadline, and when it fires it times out whoever is
    due and waits for the next.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._deadlines: dict[KMIPServerProtocol, float] = {}
        self._call: IDelayedCall | None = None
        self._call_at = 0.0

    def set(self, connection: KMIPServerProtocol, deadline: float | None) -> None:
        """Time ``connection`` out at ``deadline`` (seconds on the clock; None: never)."""
        if deadline is None:
            if self._deadlines.pop(connection, None) is not None and not self._deadlines:
                self._cancel()
            return
        self._deadlines[connection] = deadline
        if self._call is None or deadline < self._call_at:
            self._schedule(deadline)

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, deadline: float) -> None:
        self._cancel()
        self._call_at = deadline
        self._call = self.clock.callLater(max(0.0, deadline - self.clock.seconds()), self._due)

    def _due(self) -> None:
        """Time out the connections whose deadline has passed; wait for the next."""
        self._call = None
        now = self.clock.seconds()
        due = [connection for connection, at in self._deadlines.items() if at <= now]
        for connection in due:
            del self._deadlines[connection]
        for connection in due:
            connection.timeOut = None
            try:
                connection.timeoutConnection()
            except Exception:
                _deadlines_log.failure("Timing out {peer} failed", peer=connection.address)
        if self._deadlines and self._call is None:
            self._schedule(min(self._deadlines.values()))


class _RefusedConnection(Protocol):
    """A connection past ``max_connections``: closed as soon as it is made."""

    def connectionMade(self) -> None:
        """Drop the connection without a handshake."""
        cast(_Transport, self.transport).abortConnection()


class KMIPServerFactory(Factory):
    """Builds a :class:`KMIPServerProtocol` per connection and keeps track of them all.

    It holds what connections share: the processor, the tenancy (certificate to
    tenant), the clock and the limits.  It counts open connections, refuses those past
    ``max_connections``, and can cut off every connection of a certificate or tenant
    at once (when an administrator removes it).
    """

    _log = Logger()
    noisy = False

    def __init__(
        self,
        processor: RequestProcessor,
        tenancy: ITenancy,
        clock: IReactorTime,
        limits: ConnectionLimits | None = None,
    ) -> None:
        """Serve with ``processor``; identify with ``tenancy``; time with ``clock``."""
        self.processor = processor
        self.tenancy = tenancy
        self.clock = clock
        self.limits = limits if limits is not None else ConnectionLimits()
        self.deadlines = _Deadlines(clock)
        """The inactivity (and handshake) deadlines of the connections, on one timer."""
        self.closed_connections = ClosedConnections(clock)
        """Collects what closed connections leave to the garbage collector."""
        self.relays: list[Callable[[str, str], object]] = []
        """Told of every ``disconnect_*`` (kind, argument): the other worker processes
        serving this port (``kmiptwist.workers``) cut their connections too."""
        self.trusted_cas = TrustedCAs()
        """Follows client chains to the tenants' trusted CAs (parsed CAs cached)."""
        self._connections: set[KMIPServerProtocol] = set()
        self._by_fingerprint: dict[str, set[KMIPServerProtocol]] = {}
        self._refused_since_log = 0
        self._last_refusal_log: float | None = None

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return len(self._connections)

    def connections(self) -> list[KMIPServerProtocol]:
        """The open connections (a copy)."""
        return list(self._connections)

    def buildProtocol(self, addr: IAddress) -> Protocol:  # type: ignore[override]
        """A protocol for a new connection, or one that closes it when the listener is full."""
        if len(self._connections) >= self.limits.max_connections:
            self._refused(addr)
            return _RefusedConnection()
        return KMIPServerProtocol(self, format_address(addr))

    def _refused(self, addr: IAddress) -> None:
        """Log refusals, at most one line every 10 seconds during a flood."""
        self._refused_since_log += 1
        now = self.clock.seconds()
        if self._last_refusal_log is not None and now - self._last_refusal_log < 10:
            return
        self._log.warn(
            "Refusing connection from {peer}: {open} connections are open, the maximum "
            "(max_connections); {refused} refused since the last report",
            peer=format_address(addr),
            open=len(self._connections),
            refused=self._refused_since_log,
        )
        self._refused_since_log = 0
        self._last_refusal_log = now

    def connection_opened(self, connection: KMIPServerProtocol) -> None:
        """Count a new connection (called by the protocol)."""
        self.closed_connections.collect_due()
        self._connections.add(connection)

    def connection_closed(self, connection: KMIPServerProtocol) -> None:
        """Forget a closed connection (called by the protocol)."""
        self._connections.discard(connection)
        self.fingerprint_changed(connection, connection._fingerprint, None)
        self.closed_connections.closed()

    def fingerprint_changed(
        self, connection: KMIPServerProtocol, old: str | None, new: str | None
    ) -> None:
        """Index ``connection`` under its certificate fingerprint (called by the protocol)."""
        if old is not None:
            holders = self._by_fingerprint.get(old)
            if holders is not None:
                holders.discard(connection)
                if not holders:
                    del self._by_fingerprint[old]
        if new is not None and connection in self._connections:
            self._by_fingerprint.setdefault(new, set()).add(connection)

    def _relay(self, kind: str, value: str) -> None:
        """Pass a disconnect on to the other workers; a failure there is only logged."""
        for relay in self.relays:
            try:
                relay(kind, value)
            except Exception:
                self._log.failure("Could not relay a disconnect ({kind}) to the workers", kind=kind)

    def disconnect_fingerprint(self, certificate_fingerprint: str) -> int:
        """Cut off every connection of the certificate at once; return how many.

        For an administrator removing a certificate: its open connections lose service
        immediately, requests in flight included, instead of at their next reconnect.
        The fingerprint is hex, any case, with or without colons.
        """
        normalized = certificate_fingerprint.replace(":", "").strip().lower()
        self._relay("fingerprint", normalized)
        holders = list(self._by_fingerprint.get(normalized, ()))
        for connection in holders:
            connection.cut_off("its client certificate was removed")
        return len(holders)

    def disconnect_trusted_ca(self, ca_fingerprint: str) -> int:
        """Cut off every connection that got its tenant through the CA; return how many.

        For an administrator removing a trusted CA: clients it vouched for lose service
        at once, open connections included.
        """
        normalized = ca_fingerprint.replace(":", "").strip().lower()
        self._relay("trusted_ca", normalized)
        holders = [
            connection
            for connection in self._connections
            if connection.peer is not None and connection.peer.trusted_ca == normalized
        ]
        for connection in holders:
            connection.cut_off("the CA its client certificate chains to is no longer trusted")
        return len(holders)

    def disconnect_tenant(self, tenant: str) -> int:
        """Cut off every connection identified as ``tenant``; return how many."""
        self._relay("tenant", tenant)
        holders = [
            connection
            for connection in self._connections
            if connection.peer is not None and connection.peer.tenant == tenant
        ]
        for connection in holders:
            connection.cut_off(f"tenant {tenant} was removed")
        return len(holders)
