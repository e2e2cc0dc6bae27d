"""
The KMIP server's TLS settings, as a Twisted connection creator over pyOpenSSL.

TLS here authenticates the *server* and proves that the client holds the key of the
certificate it presents; it does not decide who may use KMIP.  Any client certificate
(self-signed vCenter certificates, certificates without the clientAuth EKU, or none at
all) completes the handshake, and the application looks the SHA-256 fingerprint up
afterwards (DESIGN.md decisions 4 and 9).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from .pki import PrivateKey, key_matches_certificate

TLS12_CIPHERS = (
    # Forward secret AEAD suites first, AES-128 ahead of AES-256 (as fast, as safe).
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    # Forward secret CBC suites, for KMIP 1.x clients that offer no AEAD suite.
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
    # The KMIP profiles' mandatory TLS_RSA_WITH_AES_{128,256}_CBC_SHA256: vCenter 7
    # negotiated AES128-SHA256 when it could not use TLS 1.3.
    "AES128-SHA256",
    "AES256-SHA256",
)
"""TLS 1.2 cipher suites in server preference order.  No DHE suite at all: OpenSSL
picks DHE when offered, and DHE handshakes were about 2.5 times slower than ECDHE."""

SESSION_ID_CONTEXT = b"kmiptwist-kmip"
"""Names the sessions of this server; OpenSSL refuses to resume client-certificate
sessions without one."""

SESSION_TIMEOUT = 3600
"""Seconds a TLS session (cache entry or ticket) can be resumed; longer than vCenter's
five-minute health-check period, so its probes resume instead of re-handshaking."""


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLSOptions:
    """TLS server settings for the KMIP listener, whose certificate can be swapped live.

    Pass it to ``twisted.internet.endpoints.wrapServerTLS`` or ``TLSMemoryBIOFactory``.
    Every new connection uses the current context; :meth:`replace` builds a new one and
    leaves established connections alone.
    """

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: PrivateKey,
        extra_chain: Sequence[x509.Certificate] = (),
    ) -> None:
        """Build the context for ``certificate`` (sent with ``extra_chain``) and its key."""
        self._context = _server_context(certificate, private_key, extra_chain)
        self._certificate = certificate

    @property
    def certificate(self) -> x509.Certificate:
        """The server certificate new connections present."""
        return self._certificate

    def replace(
        self,
        certificate: x509.Certificate,
        private_key: PrivateKey,
        extra_chain: Sequence[x509.Certificate] = (),
    ) -> None:
        """Serve a new certificate to new connections without a restart.

        The new context is complete before it is swapped in, so a bad certificate or a
        key that does not match raises ``ValueError`` and the old one stays in use.
        Sessions of the old context are not resumed under the new certificate.
        """
        context = _server_context(certificate, private_key, extra_chain)
        self._context, self._certificate = context, certificate

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """Create the OpenSSL connection for one accepted client (Twisted's interface)."""
        return SSL.Connection(self._context, None)


def server_tls_options(
    certificate: x509.Certificate,
    private_key: PrivateKey,
    extra_chain: Sequence[x509.Certificate] = (),
) -> ServerTLSOptions:
    """Build the KMIP server's TLS settings from ``cryptography`` objects."""
    return ServerTLSOptions(certificate, private_key, extra_chain)


def peer_certificate(transport: object) -> x509.Certificate | None:
    """Return the certificate the TLS peer presented, or None (no certificate, no TLS)."""
    get_peer_certificate = getattr(transport, "getPeerCertificate", None)
    if get_peer_certificate is None:
        return None
    certificate = get_peer_certificate()
    if certificate is None or isinstance(certificate, x509.Certificate):
        return certificate
    return certificate.to_cryptography()


def peer_certificate_chain(transport: object) -> list[x509.Certificate]:
    """Return the certificates the TLS peer sent (its own first, when OpenSSL includes
    it), or an empty list.  Used to follow a client certificate to a trusted CA."""
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return []
    try:
        connection = get_handle()
        chain = connection.get_peer_cert_chain(as_cryptography=True)
    except (AttributeError, TypeError, SSL.Error):
        return []
    return list(chain or [])


def _accept_any_certificate(
    connection: SSL.Connection, certificate: object, error_number: int, depth: int, ok: int
) -> bool:
    """Let every presented certificate through: identity is decided by fingerprint later.

    OpenSSL still checks that the client holds the certificate's key (CertificateVerify),
    so a fingerprint seen after the handshake has been proven.
    """
    return True


def _server_context(
    certificate: x509.Certificate,
    private_key: PrivateKey,
    extra_chain: Sequence[x509.Certificate],
) -> SSL.Context:
    """Make the OpenSSL context for the KMIP listener (see the module docstring)."""
    if not key_matches_certificate(private_key, certificate):
        raise ValueError("the server private key does not belong to the server certificate")
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(
        SSL.OP_NO_COMPRESSION
        | SSL.OP_CIPHER_SERVER_PREFERENCE
        # Client-initiated renegotiation is a CPU sink and could change the identity
        # of a connection mid-stream; KMIP never needs it.
        | SSL.OP_NO_RENEGOTIATION
    )
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    # cryptography objects go straight in: pyOpenSSL deprecates its own X509/PKey.
    context.use_certificate(certificate)
    context.use_privatekey(private_key)
    for chain_certificate in extra_chain:
        context.add_extra_chain_cert(chain_certificate)
    context.check_privatekey()
    context.set_cipher_list(":".join(TLS12_CIPHERS).encode("ascii"))
    # TLS 1.3 suites stay OpenSSL's defaults: all three are AEAD and forward secret.

    # Request a certificate, never require one, accept any.  No CA names are added to
    # the request: clients that pick their certificate by the server's CA list (Java
    # key managers) would otherwise withhold a self-signed one.
    context.set_verify(SSL.VERIFY_PEER, _accept_any_certificate)

    context.set_session_id(SESSION_ID_CONTEXT)
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    context.set_timeout(SESSION_TIMEOUT)
    # Session tickets stay on (no OP_NO_TICKET): TLS 1.3 resumes only with tickets.
    return context
