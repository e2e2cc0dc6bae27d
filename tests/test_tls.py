"""Tests for kmiptwist.tls: handshakes in memory, over TLSMemoryBIOFactory and iosim."""

from __future__ import annotations

import datetime
import functools

from attrs import Factory as AttrsFactory
from attrs import define
from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from kmiptwist import pki
from kmiptwist.tls import ServerTLSOptions, peer_certificate, server_tls_options


@functools.cache
def _ca() -> tuple[x509.Certificate, pki.PrivateKey]:
    """The CA that signs the test server certificates."""
    return pki.create_ca("kmiptwist TLS test CA", key_kind="ec")


@functools.cache
def _server(kind: str = "rsa") -> tuple[x509.Certificate, pki.PrivateKey]:
    """A server certificate and key of ``kind`` ("rsa" or "ec")."""
    ca, ca_key = _ca()
    return pki.issue_server_certificate(
        ca, ca_key, ["localhost"], ["127.0.0.1"], f"{kind} server", key_kind=kind
    )


def _vcenter_certificate(*, expired: bool = False) -> tuple[x509.Certificate, pki.PrivateKey]:
    """A self-signed client certificate like vCenter 6.5 makes: arbitrary CN, no EKU,
    no basic constraints, signed by nobody the server knows."""
    key = pki.new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kmipClient20161127094708")])
    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(days=800 if expired else 1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _session_reused(connection: SSL.Connection) -> bool:
    """Whether this TLS connection resumed a session (abbreviated handshake).

    pyOpenSSL 26.4 has no method for SSL_session_reused; its binding exposes it.
    """
    return bool(Binding.lib.SSL_session_reused(connection._ssl))


@implementer(IHandshakeListener)
class _Peer(Protocol):
    """One end of a test connection: records what it saw of the TLS handshake."""

    handshake_done = False
    peer: x509.Certificate | None = None
    cipher: str | None = None
    version: str | None = None
    lost: Failure | None = None

    def handshakeCompleted(self) -> None:
        """Record the peer certificate and the negotiated parameters."""
        self.handshake_done = True
        self.peer = peer_certificate(self.transport)
        handle = self.transport.getHandle()  # type: ignore[union-attr]
        self.cipher = handle.get_cipher_name()
        self.version = handle.get_protocol_version_name()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """Record why the connection ended."""
        self.lost = reason


@implementer(IOpenSSLClientConnectionCreator)
@define
class _ClientOptions:
    """A TLS client built straight on pyOpenSSL, so a test can offer exactly the
    versions, ciphers, certificate and saved session it wants."""

    context: SSL.Context
    session: SSL.Session | None = None
    states: list[bytes] = AttrsFactory(list)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """Make the client connection, resuming ``session`` if one was saved."""
        connection = SSL.Connection(self.context, None)
        connection.set_info_callback(self._record_state)
        if self.session is not None:
            connection.set_session(self.session)
        return connection

    def _record_state(self, connection: SSL.Connection, where: int, result: int) -> None:
        """Keep OpenSSL's handshake state names ("... read server session ticket")."""
        self.states.append(connection.get_state_string())


def _client(
    *,
    certificate: x509.Certificate | None = None,
    key: pki.PrivateKey | None = None,
    minimum: int = SSL.TLS1_2_VERSION,
    maximum: int = 0,
    ciphers: str | None = None,
    tickets: bool = True,
) -> _ClientOptions:
    """Client options; ``maximum=0`` means the newest version OpenSSL has."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(minimum)
    context.set_max_proto_version(maximum)
    if ciphers is not None:
        context.set_cipher_list(ciphers.encode("ascii"))
    if certificate is not None and key is not None:
        context.use_certificate(certificate)
        context.use_privatekey(key)
    if not tickets:
        context.set_options(SSL.OP_NO_TICKET)
    context.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
    return _ClientOptions(context)


@define
class _Connection:
    """Both ends of an in-memory TLS connection."""

    client: _Peer
    server: _Peer
    client_tls: TLSMemoryBIOProtocol
    server_tls: TLSMemoryBIOProtocol
    pump: IOPump


def _connect(server_options: ServerTLSOptions, client_options: _ClientOptions) -> _Connection:
    """Run a TLS handshake between the two, in memory, until nothing more moves."""
    peers: dict[str, _Peer] = {}

    def build(factory: TLSMemoryBIOFactory, end: str) -> TLSMemoryBIOProtocol:
        protocol = factory.buildProtocol(None)
        assert isinstance(protocol, TLSMemoryBIOProtocol)
        assert isinstance(protocol.wrappedProtocol, _Peer)
        peers[end] = protocol.wrappedProtocol
        return protocol

    clock = Clock()
    server_factory = TLSMemoryBIOFactory(
        server_options, False, Factory.forProtocol(_Peer), clock=clock
    )
    client_factory = TLSMemoryBIOFactory(
        client_options, True, Factory.forProtocol(_Peer), clock=clock
    )
    client_tls, server_tls, pump = connectedServerAndClient(
        lambda: build(server_factory, "server"),
        lambda: build(client_factory, "client"),
        clock=clock,
    )
    pump.flush()
    return _Connection(peers["client"], peers["server"], client_tls, server_tls, pump)


class ClientIdentityTests(SynchronousTestCase):
    """The TLS layer admits every client; the application decides by fingerprint."""

    def setUp(self) -> None:
        """A server with an RSA certificate from the built-in CA."""
        self.options = server_tls_options(*_server("rsa"))

    def test_self_signed_client(self) -> None:
        """A self-signed vCenter certificate that no CA signed, without the clientAuth
        EKU, completes the handshake and the server sees its fingerprint."""
        certificate, key = _vcenter_certificate()
        connection = _connect(self.options, _client(certificate=certificate, key=key))
        self.assertTrue(connection.server.handshake_done)
        self.assertTrue(connection.client.handshake_done)
        assert connection.server.peer is not None
        self.assertEqual(pki.fingerprint(connection.server.peer), pki.fingerprint(certificate))

    def test_expired_client(self) -> None:
        """An expired client certificate still connects: whether it may use KMIP is for
        the tenant registry to say, not the handshake."""
        certificate, key = _vcenter_certificate(expired=True)
        connection = _connect(self.options, _client(certificate=certificate, key=key))
        assert connection.server.peer is not None
        self.assertEqual(pki.fingerprint(connection.server.peer), pki.fingerprint(certificate))

    def test_ca_issued_client(self) -> None:
        """A client certificate from the built-in CA is seen by the server as well."""
        ca, ca_key = _ca()
        certificate, key = pki.issue_client_certificate(ca, ca_key, "pykmip")
        connection = _connect(self.options, _client(certificate=certificate, key=key))
        self.assertEqual(connection.server.peer, certificate)

    def test_no_client_certificate(self) -> None:
        """A client without a certificate (vCenter fetching the server certificate to
        pin it) completes the handshake, and the server sees no identity."""
        connection = _connect(self.options, _client())
        self.assertTrue(connection.server.handshake_done)
        self.assertIsNone(connection.server.peer)
        self.assertEqual(connection.client.peer, _server("rsa")[0])

    def test_no_ca_names_requested(self) -> None:
        """The certificate request names no CA, so clients that choose a certificate by
        the server's CA list (Java key managers) still send their self-signed one."""
        connection = _connect(self.options, _client())
        self.assertEqual(connection.client_tls.getHandle().get_client_ca_list(), [])

    def test_client_certificate_requested_in_tls12(self) -> None:
        """In TLS 1.2 too the server asks for, and gets, the client's certificate."""
        certificate, key = _vcenter_certificate()
        connection = _connect(
            self.options,
            _client(certificate=certificate, key=key, maximum=SSL.TLS1_2_VERSION),
        )
        self.assertEqual(connection.server.version, "TLSv1.2")
        self.assertEqual(connection.server.peer, certificate)


class ProtocolVersionTests(SynchronousTestCase):
    """Only TLS 1.2 and TLS 1.3 are spoken."""

    def setUp(self) -> None:
        """A server with an RSA certificate."""
        self.options = server_tls_options(*_server("rsa"))

    def test_tls13_preferred(self) -> None:
        """A modern client gets TLS 1.3."""
        connection = _connect(self.options, _client())
        self.assertEqual(connection.server.version, "TLSv1.3")

    def test_tls11_refused(self) -> None:
        """A client that can only speak TLS 1.0 or 1.1 is refused."""
        for version in (SSL.TLS1_VERSION, SSL.TLS1_1_VERSION):
            connection = _connect(
                self.options,
                # SECLEVEL=0 lets this OpenSSL send an old ClientHello at all.
                _client(minimum=version, maximum=version, ciphers="DEFAULT:@SECLEVEL=0"),
            )
            self.assertFalse(connection.server.handshake_done)
            self.assertFalse(connection.client.handshake_done)
            assert connection.server.lost is not None
            self.assertTrue(connection.server.lost.check(SSL.Error))

    def test_old_client_that_can_do_tls12(self) -> None:
        """The same old-fashioned client succeeds once it allows TLS 1.2, so the refusal
        above is about the protocol version and nothing else."""
        connection = _connect(
            self.options,
            _client(
                minimum=SSL.TLS1_VERSION,
                maximum=SSL.TLS1_2_VERSION,
                ciphers="DEFAULT:@SECLEVEL=0",
            ),
        )
        self.assertEqual(connection.server.version, "TLSv1.2")


class CipherTests(SynchronousTestCase):
    """TLS 1.2 suites: ECDHE first, the KMIP-mandated RSA suites, never DHE."""

    def setUp(self) -> None:
        """A server with an RSA certificate."""
        self.options = server_tls_options(*_server("rsa"))

    def _cipher(self, ciphers: str | None = None) -> str | None:
        """The suite a TLS 1.2 client offering ``ciphers`` gets."""
        connection = _connect(self.options, _client(maximum=SSL.TLS1_2_VERSION, ciphers=ciphers))
        self.assertEqual(connection.client.cipher, connection.server.cipher)
        return connection.server.cipher

    def test_ecdhe_chosen(self) -> None:
        """A TLS 1.2 client offering everything (DHE included, DHE first) gets an
        ECDHE-RSA AES-GCM suite: the fast, forward-secret choice."""
        self.assertEqual(self._cipher(), "ECDHE-RSA-AES128-GCM-SHA256")
        self.assertEqual(
            self._cipher("DHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:AES128-SHA256"),
            "ECDHE-RSA-AES256-GCM-SHA384",
        )

    def test_no_dhe(self) -> None:
        """A client that offers only DHE suites is refused: DHE is never negotiated."""
        connection = _connect(
            self.options,
            _client(
                maximum=SSL.TLS1_2_VERSION,
                ciphers="DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-SHA256",
            ),
        )
        self.assertFalse(connection.server.handshake_done)

    def test_kmip_mandatory_suites(self) -> None:
        """Clients limited to the KMIP profile suites TLS_RSA_WITH_AES_128/256_CBC_SHA256
        connect."""
        self.assertEqual(self._cipher("AES128-SHA256"), "AES128-SHA256")
        self.assertEqual(self._cipher("AES256-SHA256"), "AES256-SHA256")

    def test_vcenter_offer(self) -> None:
        """vCenter 7.0.3's TLS 1.2 offer (as captured against PyKMIP) gets AES128-SHA256."""
        self.assertEqual(
            self._cipher("AES128-SHA256:AES256-SHA256:ECDHE-ECDSA-AES256-SHA384"),
            "AES128-SHA256",
        )

    def test_ecdhe_cbc(self) -> None:
        """KMIP 1.x clients with only CBC suites get forward secrecy when they offer it."""
        self.assertEqual(
            self._cipher("AES128-SHA256:ECDHE-RSA-AES128-SHA256"), "ECDHE-RSA-AES128-SHA256"
        )
        self.assertEqual(self._cipher("ECDHE-RSA-AES256-SHA384"), "ECDHE-RSA-AES256-SHA384")


class ECServerTests(SynchronousTestCase):
    """An EC server certificate works too."""

    def test_ec_server(self) -> None:
        """With a P-256 server certificate, TLS 1.3 and TLS 1.2 (ECDHE-ECDSA) handshakes
        complete and the client identity is still seen."""
        certificate, key = _server("ec")
        options = server_tls_options(certificate, key)
        client_certificate, client_key = _vcenter_certificate()
        for maximum, cipher in [
            (0, "TLS_AES_256_GCM_SHA384"),
            (SSL.TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"),
        ]:
            connection = _connect(
                options,
                _client(certificate=client_certificate, key=client_key, maximum=maximum),
            )
            self.assertEqual(connection.server.cipher, cipher)
            self.assertEqual(connection.client.peer, certificate)
            self.assertEqual(connection.server.peer, client_certificate)


class SessionResumptionTests(SynchronousTestCase):
    """Reconnecting clients (vCenter opens one connection per task) resume sessions."""

    def _resume(self, *, ticket: bool, **client_settings: int | bool) -> None:
        """Connect, save the session, reconnect with it, and check it was resumed with
        the client identity intact; ``ticket`` says whether the server sent a ticket."""
        options = server_tls_options(*_server("rsa"))
        certificate, key = _vcenter_certificate()
        client = _client(certificate=certificate, key=key, **client_settings)  # type: ignore[arg-type]
        first = _connect(options, client)
        self.assertFalse(_session_reused(first.server_tls.getHandle()))
        self.assertEqual(
            any(b"read server session ticket" in state for state in client.states), ticket
        )
        session = first.client_tls.getHandle().get_session()
        first.client_tls.loseConnection()
        first.pump.flush()

        second = _connect(options, _ClientOptions(client.context, session))
        self.assertTrue(second.server.handshake_done)
        self.assertTrue(_session_reused(second.server_tls.getHandle()))
        self.assertTrue(_session_reused(second.client_tls.getHandle()))
        assert second.server.peer is not None
        self.assertEqual(pki.fingerprint(second.server.peer), pki.fingerprint(certificate))

    def test_tls13_ticket(self) -> None:
        """A TLS 1.3 client resumes with a session ticket."""
        self._resume(ticket=True)

    def test_tls12_ticket(self) -> None:
        """A TLS 1.2 client resumes with a session ticket (nothing kept on the server)."""
        self._resume(ticket=True, maximum=SSL.TLS1_2_VERSION)

    def test_tls12_session_id(self) -> None:
        """A TLS 1.2 client without ticket support resumes from the server's cache."""
        self._resume(ticket=False, maximum=SSL.TLS1_2_VERSION, tickets=False)


class ReplaceTests(SynchronousTestCase):
    """The server certificate can be replaced without a restart."""

    def test_new_connections_get_new_certificate(self) -> None:
        """After replace(), new connections see the new certificate, and a connection
        made before keeps working."""
        options = server_tls_options(*_server("rsa"))
        before = _connect(options, _client())
        new_certificate, new_key = _server("ec")
        options.replace(new_certificate, new_key)
        after = _connect(options, _client())
        self.assertEqual(after.client.peer, new_certificate)
        self.assertEqual(options.certificate, new_certificate)

        before.client_tls.write(b"still here")
        before.pump.flush()
        self.assertIsNone(before.server.lost)
        self.assertIsNone(before.client.lost)
        self.assertEqual(before.client.peer, _server("rsa")[0])

    def test_bad_replacement_keeps_old(self) -> None:
        """A key that does not match the new certificate is refused and the old
        certificate stays in service."""
        options = server_tls_options(*_server("rsa"))
        self.assertRaises(ValueError, options.replace, _server("ec")[0], _server("rsa")[1])
        connection = _connect(options, _client())
        self.assertEqual(connection.client.peer, _server("rsa")[0])

    def test_mismatched_key_at_start(self) -> None:
        """A server certificate paired with the wrong key is refused at startup."""
        self.assertRaises(ValueError, server_tls_options, _server("ec")[0], _server("rsa")[1])


class PeerCertificateTests(SynchronousTestCase):
    """peer_certificate() works on any transport."""

    def test_not_tls(self) -> None:
        """A plain TCP transport has no peer certificate."""
        self.assertIsNone(peer_certificate(StringTransport()))

    def test_cryptography_certificate_passed_through(self) -> None:
        """A transport that already returns a cryptography certificate is handled."""
        certificate = _ca()[0]

        class _Transport:
            def getPeerCertificate(self) -> x509.Certificate:
                return certificate

        self.assertIs(peer_certificate(_Transport()), certificate)
