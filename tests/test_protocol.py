"""Tests for kmiptwist.protocol: one KMIP connection, without sockets or real TLS."""

from __future__ import annotations

import functools
import gc
import weakref
from random import Random

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import pki
from kmiptwist.engine import Engine
from kmiptwist.errors import ResultReason, ResultStatus
from kmiptwist.processor import KMIPProcessor, Peer
from kmiptwist.protocol import (
    ConnectionLimits,
    KMIPServerFactory,
    KMIPServerProtocol,
    format_address,
)
from kmiptwist.testing.messages import read_response, request
from kmiptwist.tls import server_tls_options
from kmiptwist.vocabulary.enums import Operation

ADDRESS = IPv4Address("TCP", "192.0.2.7", 40000)


@functools.cache
def _pki() -> dict[str, tuple[x509.Certificate, pki.PrivateKey]]:
    """A test CA, a server certificate and two client certificates (EC: fast to make)."""
    ca, ca_key = pki.create_ca("kmiptwist test CA", key_kind="ec")
    return {
        "ca": (ca, ca_key),
        "server": pki.issue_server_certificate(
            ca, ca_key, ["kms.example"], [], "kms.example", key_kind="ec"
        ),
        "first": pki.issue_client_certificate(ca, ca_key, "vcenter-1", key_kind="ec"),
        "second": pki.issue_client_certificate(ca, ca_key, "vcenter-2", key_kind="ec"),
    }


def _certificates() -> tuple[x509.Certificate, x509.Certificate]:
    """The two client certificates."""
    return _pki()["first"][0], _pki()["second"][0]


def _message(number: int) -> bytes:
    """A small, well-formed KMIP request message, distinct per ``number``."""
    return request((1, 1), [(Operation.DISCOVER_VERSIONS, None, number.to_bytes(4, "big"))])


class FakeTenancy:
    """Certificate fingerprints to tenants, and a record of pending certificates."""

    def __init__(self, tenants: dict[str, str] | None = None) -> None:
        self.tenants = dict(tenants or {})
        self.pending: list[tuple[str, str, str, str, str, int]] = []
        self.lookups: list[str] = []
        self.hold: Deferred[str | None] | None = None

    def tenant_for_fingerprint(self, fingerprint: str) -> Deferred[str | None]:
        self.lookups.append(fingerprint)
        if self.hold is not None:
            return self.hold
        return succeed(self.tenants.get(fingerprint))

    def record_pending(
        self, fingerprint: str, subject: str, issuer: str, address: str, pem: str, now: int
    ) -> Deferred[None]:
        self.pending.append((fingerprint, subject, issuer, address, pem, now))
        return succeed(None)

    def list_trusted_cas(self, tenant: str | None) -> Deferred[list[object]]:
        return succeed([])


class FakeProcessor:
    """Answers each request with ``b"answer:" + request``; a test may hold answers back."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.seen: list[tuple[bytes, Peer]] = []
        self.waiting: list[Deferred[None]] = []

    async def respond(self, data: bytes, peer: Peer) -> bytes:
        self.seen.append((data, peer))
        if self.hold:
            gate: Deferred[None] = Deferred()
            self.waiting.append(gate)
            await gate
        return b"answer:" + data


class ProtocolTestMixin:
    """Builds a factory and connected protocols over StringTransports."""

    clock: Clock
    tenancy: FakeTenancy
    processor: FakeProcessor
    factory: KMIPServerFactory

    def make_factory(self, hold: bool = False, **limits: object) -> KMIPServerFactory:
        self.clock = Clock()
        first, _ = _certificates()
        self.tenancy = FakeTenancy({pki.fingerprint(first): "acme"})
        self.processor = FakeProcessor(hold)
        self.factory = KMIPServerFactory(
            self.processor,
            self.tenancy,
            self.clock,
            ConnectionLimits(**limits),  # type: ignore[arg-type]
        )
        return self.factory

    def connect(
        self, certificate: x509.Certificate | None = None, identify: bool = True
    ) -> tuple[KMIPServerProtocol, StringTransport]:
        protocol = self.factory.buildProtocol(ADDRESS)
        assert isinstance(protocol, KMIPServerProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        if identify:
            protocol.identify(certificate if certificate is not None else _certificates()[0])
        return protocol, transport


class OrderingTests(ProtocolTestMixin, SynchronousTestCase):
    """Pipelined requests on one connection."""

    def test_responses_in_request_order(self) -> None:
        """A client that pipelines two requests gets the answers in the order it asked,
        even when the second request finishes first."""
        self.make_factory(hold=True)
        protocol, transport = self.connect()
        protocol.dataReceived(_message(1) + _message(2))
        self.assertEqual([data for data, _ in self.processor.seen], [_message(1), _message(2)])
        self.processor.waiting[1].callback(None)
        self.assertEqual(transport.value(), b"")
        self.processor.waiting[0].callback(None)
        self.assertEqual(transport.value(), b"answer:" + _message(1) + b"answer:" + _message(2))

    def test_answers_given_at_once_keep_their_place(self) -> None:
        """A processor may answer a request at once (bytes, not a coroutine): that answer
        still waits for the ones before it."""
        self.make_factory(hold=True)
        processor = self.processor
        hold = processor.respond

        def respond(data: bytes, peer: Peer) -> object:
            if data == _message(2):
                processor.seen.append((data, peer))
                return b"at once:" + data
            return hold(data, peer)

        processor.respond = respond  # type: ignore[method-assign]
        protocol, transport = self.connect()
        protocol.dataReceived(_message(1) + _message(2) + _message(3))
        self.assertEqual(len(processor.seen), 3)
        self.assertEqual(transport.value(), b"")
        processor.waiting[0].callback(None)
        self.assertEqual(transport.value(), b"answer:" + _message(1) + b"at once:" + _message(2))
        processor.waiting[1].callback(None)
        self.assertTrue(
            transport.value().endswith(b"at once:" + _message(2) + b"answer:" + _message(3))
        )

    @given(
        st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12),
        st.lists(st.integers(1, 64), min_size=1),
        st.randoms(use_true_random=False),
    )
    @settings(max_examples=60, deadline=None)
    def test_any_chunking_any_completion_order(
        self, numbers: list[int], cuts: list[int], random: Random
    ) -> None:
        """However the client's bytes are split and in whatever order the server
        finishes the requests, every answer arrives, once, in request order."""
        self.make_factory(hold=True, max_requests_in_flight=4)
        protocol, transport = self.connect()
        stream = b"".join(_message(n) for n in numbers)
        position, index = 0, 0
        while position < len(stream) or self.processor.waiting:
            if position < len(stream) and transport.producerState == "producing":
                size = cuts[index % len(cuts)]
                protocol.dataReceived(stream[position : position + size])
                position, index = position + size, index + 1
            elif self.processor.waiting:
                gate = self.processor.waiting.pop(random.randrange(len(self.processor.waiting)))
                gate.callback(None)
            else:
                self.fail("reading is paused with nothing in flight")
        self.assertEqual(transport.value(), b"".join(b"answer:" + _message(n) for n in numbers))

    def test_message_split_across_reads(self) -> None:
        """A request that arrives a few bytes at a time is processed once, whole."""
        self.make_factory()
        protocol, transport = self.connect()
        message = _message(7)
        for index in range(0, len(message), 3):
            protocol.dataReceived(message[index : index + 3])
        self.assertEqual([data for data, _ in self.processor.seen], [message])
        self.assertEqual(transport.value(), b"answer:" + message)

    def test_peer_identity_reaches_processor(self) -> None:
        """Requests are served as the tenant the client certificate is registered to."""
        self.make_factory()
        protocol, _ = self.connect()
        protocol.dataReceived(_message(1))
        [(_, peer)] = self.processor.seen
        first, _ = _certificates()
        self.assertEqual(peer.tenant, "acme")
        self.assertEqual(peer.fingerprint, pki.fingerprint(first))
        self.assertEqual(peer.address, "192.0.2.7:40000")
        self.assertIn("vcenter-1", peer.subject or "")

    def test_requests_before_identity_wait(self) -> None:
        """Requests that race the identity lookup are held, in order, not dropped."""
        self.make_factory()
        self.tenancy.hold = Deferred()
        protocol, transport = self.connect()
        protocol.dataReceived(_message(1))
        protocol.dataReceived(_message(2))
        self.assertEqual(self.processor.seen, [])
        self.tenancy.hold.callback("acme")
        self.assertEqual([data for data, _ in self.processor.seen], [_message(1), _message(2)])
        self.assertEqual(transport.value(), b"answer:" + _message(1) + b"answer:" + _message(2))

    def test_requests_before_handshake_wait(self) -> None:
        """Bytes that arrive before the identity is known are queued until it is."""
        self.make_factory()
        protocol, transport = self.connect(identify=False)
        protocol.dataReceived(_message(1))
        self.assertEqual(self.processor.seen, [])
        protocol.identify(_certificates()[0])
        self.assertEqual(transport.value(), b"answer:" + _message(1))

    def test_in_flight_bound_pauses_reading(self) -> None:
        """A client pipelining more than the bound stops being read until answers drain."""
        self.make_factory(hold=True, max_requests_in_flight=2)
        protocol, transport = self.connect()
        protocol.dataReceived(_message(1) + _message(2) + _message(3))
        self.assertEqual(len(self.processor.seen), 2)
        self.assertEqual(transport.producerState, "paused")
        self.processor.waiting[0].callback(None)
        self.assertEqual(len(self.processor.seen), 3)
        self.assertEqual(transport.producerState, "paused")
        self.processor.waiting[1].callback(None)
        self.assertEqual(transport.producerState, "producing")
        self.processor.waiting[2].callback(None)
        self.assertEqual(transport.value(), b"".join(b"answer:" + _message(n) for n in (1, 2, 3)))

    def test_slow_reader_is_not_read(self) -> None:
        """A client that does not read its responses is not read either, so the server
        does not pile up answers for it."""
        self.make_factory()
        protocol, transport = self.connect()
        self.assertIs(transport.producer, protocol)
        protocol.pauseProducing()  # the transport's write buffer is full
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_processor_failure_answers_general_failure(self) -> None:
        """Should the processor fail unexpectedly, the client still gets an answer
        (General Failure) in its place, and the connection stays usable."""
        self.make_factory()

        class Broken(FakeProcessor):
            async def respond(self, data: bytes, peer: Peer) -> bytes:
                if data == _message(1):
                    raise RuntimeError("bug")
                return await super().respond(data, peer)

        self.factory.processor = Broken()
        protocol, transport = self.connect()
        protocol.dataReceived(_message(1) + _message(2))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        first = read_response(transport.value()[: -len(b"answer:" + _message(2))])
        self.assertEqual(first.items[0].reason, ResultReason.GENERAL_FAILURE)
        self.assertTrue(transport.value().endswith(b"answer:" + _message(2)))
        self.assertFalse(transport.disconnecting)


class MalformedStreamTests(ProtocolTestMixin, SynchronousTestCase):
    """What a client that sends something other than KMIP gets."""

    def test_length_over_maximum(self) -> None:
        """A message longer than the maximum gets an Invalid Message response, after the
        answers to earlier requests, and the connection is closed."""
        self.make_factory(hold=True, max_message_size=1024)
        protocol, transport = self.connect()
        protocol.dataReceived(_message(1))
        oversized_header = b"\x42\x00\x78\x01" + (4096).to_bytes(4, "big")
        protocol.dataReceived(oversized_header)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)
        self.processor.waiting[0].callback(None)
        answer = b"answer:" + _message(1)
        self.assertTrue(transport.value().startswith(answer))
        response = read_response(transport.value()[len(answer) :])
        [item] = response.items
        self.assertEqual(item.status, ResultStatus.OPERATION_FAILED)
        self.assertEqual(item.reason, ResultReason.INVALID_MESSAGE)
        self.assertIn("exceeds the maximum", item.message)
        self.assertTrue(transport.disconnecting)

    def test_not_ttlv(self) -> None:
        """A stream that is not TTLV at all (here, HTTP) is answered and closed, and
        nothing after it is processed."""
        self.make_factory()
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: kms\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        [item] = read_response(transport.value()).items
        self.assertEqual(item.reason, ResultReason.INVALID_MESSAGE)
        protocol.dataReceived(_message(1))
        self.assertEqual(self.processor.seen, [])

    def test_stalled_close_is_aborted(self) -> None:
        """A peer that never finishes the TLS close is cut off after close_timeout."""
        self.make_factory(close_timeout=10)
        protocol, transport = self.connect()
        protocol.dataReceived(b"\x00" * 8)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.clock.advance(10)
        self.assertTrue(transport.disconnected)

    def test_other_connections_unaffected(self) -> None:
        """Garbage on one connection does not disturb another."""
        self.make_factory()
        bad, bad_transport = self.connect()
        good, good_transport = self.connect()
        bad.dataReceived(b"\xff" * 64)
        good.dataReceived(_message(1))
        self.assertTrue(bad_transport.disconnecting)
        self.assertFalse(good_transport.disconnecting)
        self.assertEqual(good_transport.value(), b"answer:" + _message(1))


class IdentityTests(ProtocolTestMixin, SynchronousTestCase):
    """Who gets KMIP service."""

    def test_unknown_certificate_pending_and_refused(self) -> None:
        """A certificate nobody registered is listed as pending for an administrator;
        the client keeps its connection and its requests reach the processor with no
        tenant (which refuses them)."""
        self.make_factory()
        self.clock.advance(1_700_000_000)
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        _, stranger = _certificates()
        protocol, transport = self.connect(stranger)
        [(fp, subject, issuer, address, pem, now)] = self.tenancy.pending
        self.assertEqual(fp, pki.fingerprint(stranger))
        self.assertIn("vcenter-2", subject)
        self.assertIn("kmiptwist test CA", issuer)
        self.assertEqual(address, "192.0.2.7:40000")
        self.assertEqual(pki.load_certificate(pem), stranger)
        self.assertEqual(now, 1_700_000_000)
        [event] = [
            e for e in observer if e.get("fingerprint") == fp and e["log_level"] == LogLevel.warn
        ]
        self.assertEqual(event["peer"], "192.0.2.7:40000")
        self.assertIn("vcenter-2", event["subject"])
        protocol.dataReceived(_message(1))
        [(_, peer)] = self.processor.seen
        self.assertIsNone(peer.tenant)
        self.assertEqual(peer.fingerprint, fp)
        self.assertFalse(transport.disconnecting)

    def test_no_certificate_refused(self) -> None:
        """A client without a certificate (vCenter fetching the server certificate)
        completes the handshake and keeps the connection, but gets no tenant."""
        self.make_factory()
        protocol = self.factory.buildProtocol(ADDRESS)
        assert isinstance(protocol, KMIPServerProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.identify(None)
        protocol.dataReceived(_message(1))
        [(_, peer)] = self.processor.seen
        self.assertEqual((peer.tenant, peer.fingerprint), (None, None))
        self.assertEqual(self.tenancy.pending, [])
        self.assertFalse(transport.disconnecting)

    def test_real_processor_refuses_unregistered(self) -> None:
        """With the real processor, an unregistered client's request is answered with
        Authentication Not Successful, and the connection stays open."""
        self.make_factory()
        engine = Engine(store=None, tenancy=None, root_keys=None, cache=None, clock=self.clock)  # type: ignore[arg-type]
        self.factory.processor = KMIPProcessor(engine)
        _, stranger = _certificates()
        protocol, transport = self.connect(stranger)
        protocol.dataReceived(_message(1))
        response = read_response(transport.value())
        self.assertEqual(response.version, (1, 1))
        [item] = response.items
        self.assertEqual(item.reason, ResultReason.AUTHENTICATION_NOT_SUCCESSFUL)
        self.assertEqual(item.batch_id, (1).to_bytes(4, "big"))
        self.assertFalse(transport.disconnecting)

    def test_lookup_failure_closes(self) -> None:
        """When the tenancy cannot answer, the connection is closed, not served."""
        self.make_factory()
        self.tenancy.hold = Deferred()
        protocol, transport = self.connect()
        protocol.dataReceived(_message(1))
        self.tenancy.hold.errback(Failure(OSError("database is locked")))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.processor.seen, [])

    def test_disconnect_fingerprint(self) -> None:
        """Removing a certificate cuts off its open connections at once, and only its."""
        self.make_factory(hold=True)
        first, second = _certificates()
        mine, my_transport = self.connect(first)
        other, other_transport = self.connect(second)
        mine.dataReceived(_message(1))
        # As an administrator may paste it: upper case, colon separated.
        pasted = ":".join(
            first.fingerprint(hashes.SHA256()).hex().upper()[i : i + 2] for i in range(0, 64, 2)
        )
        self.assertEqual(self.factory.disconnect_fingerprint(pasted), 1)
        self.assertTrue(my_transport.disconnected)
        self.assertFalse(other_transport.disconnecting)
        self.processor.waiting[0].callback(None)
        self.assertEqual(my_transport.value(), b"")

    def test_disconnect_during_lookup(self) -> None:
        """A certificate removed while its connection is being identified is cut off
        too, and is never served."""
        self.make_factory()
        self.tenancy.hold = Deferred()
        first, _ = _certificates()
        protocol, transport = self.connect(first)
        protocol.dataReceived(_message(1))
        self.assertEqual(self.factory.disconnect_fingerprint(pki.fingerprint(first)), 1)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.tenancy.hold.callback("acme")
        self.assertEqual(self.processor.seen, [])
        self.assertEqual(self.factory.disconnect_fingerprint(pki.fingerprint(first)), 0)

    def test_disconnect_tenant(self) -> None:
        """Removing a tenant cuts off every connection of it."""
        self.make_factory()
        _, first_transport = self.connect()
        _, second_transport = self.connect()
        _, stranger_transport = self.connect(_certificates()[1])
        self.assertEqual(self.factory.disconnect_tenant("acme"), 2)
        self.assertTrue(first_transport.disconnected)
        self.assertTrue(second_transport.disconnected)
        self.assertFalse(stranger_transport.disconnecting)


class TimeoutTests(ProtocolTestMixin, SynchronousTestCase):
    """Connections do not live forever."""

    def test_idle_timeout(self) -> None:
        """A connection idle for idle_timeout seconds is closed."""
        self.make_factory(idle_timeout=300)
        protocol, transport = self.connect()
        self.clock.advance(200)
        protocol.dataReceived(_message(1))
        self.clock.advance(200)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(100)
        self.assertTrue(transport.disconnecting)

    def test_no_idle_timeout_while_processing(self) -> None:
        """A slow request (a root-key service taking its time) does not time the
        connection out; idle time starts when it is answered."""
        self.make_factory(hold=True, idle_timeout=300)
        protocol, transport = self.connect()
        protocol.dataReceived(_message(1))
        self.clock.advance(1000)
        self.assertFalse(transport.disconnecting)
        self.processor.waiting[0].callback(None)
        self.clock.advance(299)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_handshake_timeout(self) -> None:
        """A peer that opens TCP and never completes TLS is dropped."""
        self.make_factory(handshake_timeout=30)
        protocol, transport = self.connect(identify=False)
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnected)

    def test_timers_cancelled_on_close(self) -> None:
        """A closed connection leaves no timer behind."""
        self.make_factory()
        protocol, _ = self.connect()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class QuietCloseTests(ProtocolTestMixin, SynchronousTestCase):
    """vCenter's many probe connections are normal, not errors."""

    def test_silent_connection_logs_no_error(self) -> None:
        """A connection that completes the handshake, sends nothing and closes is not
        logged as a warning or an error."""
        self.make_factory()
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        protocol, _ = self.connect()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([e for e in observer if e["log_level"] >= LogLevel.warn], [])
        self.assertEqual(self.factory.open_connections, 0)


class FactoryTests(ProtocolTestMixin, SynchronousTestCase):
    """The listener as a whole."""

    def test_max_connections(self) -> None:
        """Connections past max_connections are closed at once, with a log line; one
        closing makes room again."""
        self.make_factory(max_connections=2)
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        first, _ = self.connect()
        self.connect()
        self.assertEqual(self.factory.open_connections, 2)
        refused = self.factory.buildProtocol(ADDRESS)
        self.assertNotIsInstance(refused, KMIPServerProtocol)
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.factory.open_connections, 2)
        self.assertTrue(any("max_connections" in e["log_format"] for e in observer))
        first.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(self.factory.buildProtocol(ADDRESS), KMIPServerProtocol)

    def test_format_address(self) -> None:
        """Peers are named host:port in logs, with IPv6 hosts in brackets."""
        self.assertEqual(format_address(ADDRESS), "192.0.2.7:40000")
        self.assertEqual(format_address(IPv6Address("TCP", "2001:db8::1", 5)), "[2001:db8::1]:5")


class _Collector(Protocol):
    """A client that keeps what the server sends."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


class TLSTests(ProtocolTestMixin, SynchronousTestCase):
    """The real TLS layer in memory: the identity comes from the handshake."""

    def tls_connection(
        self, client_key_pair: tuple[x509.Certificate, pki.PrivateKey] | None
    ) -> tuple[TLSMemoryBIOProtocol, KMIPServerProtocol, _Collector, IOPump]:
        server_certificate, server_key = _pki()["server"]
        server_factory = TLSMemoryBIOFactory(
            server_tls_options(server_certificate, server_key), False, self.factory, self.clock
        )
        client_certificate = None
        if client_key_pair is not None:
            certificate, key = client_key_pair
            client_certificate = PrivateCertificate.loadPEM(
                pki.certificate_pem(certificate) + pki.private_key_pem(key)
            )
        options = optionsForClientTLS(
            "kms.example",
            trustRoot=Certificate.loadPEM(pki.certificate_pem(_pki()["ca"][0])),
            clientCertificate=client_certificate,
        )
        collector = _Collector()
        client_factory = TLSMemoryBIOFactory(
            options, True, ClientFactory.forProtocol(lambda: collector), self.clock
        )
        client, server, pump = connectedServerAndClient(
            lambda: server_factory.buildProtocol(ADDRESS),
            lambda: client_factory.buildProtocol(None),
            clock=self.clock,
        )
        pump.flush()
        kmip = server.wrappedProtocol
        assert isinstance(kmip, KMIPServerProtocol)
        return client, kmip, collector, pump

    def test_client_certificate_identifies_tenant(self) -> None:
        """A client presenting its registered certificate in the TLS handshake is
        served as its tenant."""
        self.make_factory()
        client, kmip, collector, pump = self.tls_connection(_pki()["first"])
        client.write(_message(1))
        pump.flush()
        self.assertEqual(
            kmip.peer,
            Peer(
                "192.0.2.7:40000",
                pki.fingerprint(_certificates()[0]),
                "acme",
                _certificates()[0].subject.rfc4514_string(),
            ),
        )
        self.assertEqual(collector.received, b"answer:" + _message(1))

    def test_no_client_certificate(self) -> None:
        """A client without a certificate completes the handshake (vCenter fetching
        the server certificate) and is served with no tenant."""
        self.make_factory()
        client, kmip, collector, pump = self.tls_connection(None)
        client.write(_message(1))
        pump.flush()
        self.assertEqual(kmip.peer, Peer("192.0.2.7:40000"))
        self.assertEqual(collector.received, b"answer:" + _message(1))

    def test_garbage_closes_tls_cleanly(self) -> None:
        """Over TLS, a stream that is not KMIP gets Invalid Message and a clean close
        (TLS close_notify), without waiting for the abort timer."""
        self.make_factory()
        client, kmip, collector, pump = self.tls_connection(_pki()["first"])
        client.write(b"\xff" * 16)
        pump.flush()
        [item] = read_response(collector.received).items
        self.assertEqual(item.reason, ResultReason.INVALID_MESSAGE)
        self.assertIsNotNone(collector.lost)
        self.assertEqual(self.factory.open_connections, 0)

    def test_idle_close_over_tls(self) -> None:
        """An idle TLS connection is closed by the idle timer and leaves no timer."""
        self.make_factory(idle_timeout=60)
        client, kmip, collector, pump = self.tls_connection(_pki()["first"])
        self.clock.advance(60)
        pump.flush()
        self.assertIsNotNone(collector.lost)
        self.assertEqual(self.factory.open_connections, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dropped_connection_needs_no_full_collection(self) -> None:
        """A connection its peer drops without a TLS close_notify, made long-lived
        (moved to the oldest generation), is freed once the youngest generation is
        collected: what is left of it is not a cycle with old objects.  The server's
        collector rarely collects old generations (``kmiptwist.collector``)."""
        self.make_factory()
        client, kmip, collector, pump = self.tls_connection(_pki()["first"])
        client.write(_message(1))
        pump.flush()
        gone = weakref.ref(kmip)
        gc.collect()  # everything alive now is in the oldest generation
        client.transport.loseConnection()  # TCP closed, no close_notify
        pump.flush()
        self.assertIsNotNone(collector.lost)
        del client, kmip, collector, pump
        gc.collect(0)
        self.assertIsNone(gone())

    def test_cut_off_over_tls(self) -> None:
        """A connection cut off (access revoked) over TLS closes without an error, is
        forgotten, and is freed once the youngest generation is collected."""
        self.make_factory()
        client, kmip, collector, pump = self.tls_connection(_pki()["first"])
        client.write(_message(1))
        pump.flush()
        gone = weakref.ref(kmip)
        gc.collect()
        kmip.cut_off("certificate removed")
        pump.flush()
        self.assertIsNotNone(collector.lost)
        self.assertEqual(self.factory.open_connections, 0)
        self.assertIsNone(kmip.transport)
        del client, kmip, collector, pump
        gc.collect(0)
        self.assertIsNone(gone())

    def test_closed_connections_collect_the_youngest_generation(self) -> None:
        """After connections close, the youngest generation is collected when the
        next connection opens or closes, at most once a second."""
        generations: list[int] = []
        self.patch(gc, "collect", generations.append)
        self.make_factory()
        first = self.tls_connection(_pki()["first"])
        self.assertEqual(generations, [])
        first[0].transport.loseConnection()
        first[3].flush()
        self.assertEqual(generations, [0])
        second = self.tls_connection(_pki()["first"])
        second[0].transport.loseConnection()
        second[3].flush()
        self.assertEqual(generations, [0], "not again within the second")
        self.clock.advance(1)
        self.tls_connection(_pki()["first"])
        self.assertEqual(generations, [0, 0], "a connection opened after it collects")
        self.clock.advance(1)
        self.tls_connection(_pki()["first"])
        self.assertEqual(generations, [0, 0], "nothing closed since")
