# -*- test-case-name: tests.test_admin_api -*-
"""The admin API's listeners: a unix socket in the data directory, optionally mutual TLS.

Never the KMIP port.  The unix socket is mode 0600 inside the 0700 data directory,
so only the server's own user (and root) can use it; the caller is named in the
audit log by its uid (``SO_PEERCRED``).  The TCP listener, off by default, accepts
only clients whose certificate was issued by the configured admin client CA (a
separate trust from KMIP clients) and names them by certificate fingerprint.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.web.server import Request, Site
from zope.interface import implementer

from kmiptwist import pki
from kmiptwist.admin import ca, certificates, objects, root_keys, server, tenants
from kmiptwist.admin.api import AdminResource, Router
from kmiptwist.admin.client import MAX_UNIX_PATH
from kmiptwist.admin.context import AdminContext
from kmiptwist.tls import TLS12_CIPHERS, peer_certificate

__all__ = [
    "AdminListeners",
    "AdminTLSOptions",
    "admin_resource",
    "tls_actor",
    "unix_actor",
]

_log = Logger()


def admin_resource(context: AdminContext, actor_of: Any = None) -> AdminResource:
    """The whole admin API over ``context`` as one twisted.web resource."""
    router = Router()
    for family in (tenants, root_keys, certificates, objects, ca, server):
        family.routes(router, context)
    if actor_of is None:
        return AdminResource(router)
    return AdminResource(router, actor_of)


def unix_actor(request: Request) -> str:
    """``admin:uid=N(name)`` of the process on the other end of the unix socket."""
    try:
        handle = request.channel.transport.getHandle()  # type: ignore[union-attr]
        credentials = handle.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        _, uid, _ = struct.unpack("3i", credentials)
    except (AttributeError, OSError, struct.error):
        return "admin:unix"
    try:
        return f"admin:uid={uid}({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"admin:uid={uid}"


def tls_actor(request: Request) -> str:
    """``admin:cert:<fingerprint>`` of the admin client certificate."""
    certificate = peer_certificate(request.channel.transport)  # type: ignore[union-attr]
    if certificate is None:
        return "admin:tls"
    return f"admin:cert:{pki.fingerprint(certificate)}"


@implementer(IOpenSSLServerConnectionCreator)
class AdminTLSOptions:
    """TLS for the admin listener: a client certificate from the admin CA is required."""

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: pki.PrivateKey,
        client_ca_file: str,
        extra_chain: Sequence[x509.Certificate] = (),
    ) -> None:
        """Serve ``certificate``; accept clients whose certificates a CA of the PEM file
        ``client_ca_file`` issued (PKIError when it holds none)."""
        with open(client_ca_file, "rb") as ca_file:
            pki.load_certificates(ca_file.read())
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
        context.use_certificate(certificate)
        context.use_privatekey(private_key)
        for chain_certificate in extra_chain:
            context.add_extra_chain_cert(chain_certificate)
        context.check_privatekey()
        context.set_cipher_list(":".join(TLS12_CIPHERS).encode("ascii"))
        context.load_verify_locations(client_ca_file.encode())
        # OpenSSL verifies the chain; no client certificate, no handshake.
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        context.set_session_id(b"kmiptwist-admin")
        self._context = context

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:  # noqa: N802
        """The OpenSSL connection for one admin client (Twisted's interface)."""
        return SSL.Connection(self._context, None)


class AdminListeners(MultiService):
    """The admin listeners, started after the KMIP listener and stopped before it.

    A socket path longer than a unix address can hold is bound through
    ``/proc/self/fd`` (see :func:`kmiptwist.admin.client.short_unix_path`); the
    directory descriptor that needs is held while the service runs.
    """

    def __init__(
        self,
        reactor: Any,
        context: AdminContext,
        socket_path: str | None,
        tls_port: int = 0,
        tls_interface: str = "127.0.0.1",
        tls_options: AdminTLSOptions | None = None,
    ) -> None:
        """Listen on ``socket_path`` (None: no socket) and, with ``tls_options``, TCP."""
        super().__init__()
        self.socket_path = socket_path
        self._directory: int | None = None
        self.ports: list[Any] = []
        if socket_path is not None:
            site = Site(admin_resource(context, unix_actor))
            site.displayTracebacks = False
            endpoint = UNIXServerEndpoint(
                reactor, self._bind_path(socket_path), mode=0o600, wantPID=True
            )
            self._add(StreamServerEndpointService(endpoint, site))
        if tls_options is not None:
            from twisted.internet.endpoints import wrapServerTLS

            site = Site(admin_resource(context, tls_actor))
            site.displayTracebacks = False
            tcp: Any
            if ":" in tls_interface:
                tcp = TCP6ServerEndpoint(reactor, tls_port, interface=tls_interface)
            else:
                tcp = TCP4ServerEndpoint(reactor, tls_port, interface=tls_interface)
            self._add(StreamServerEndpointService(wrapServerTLS(tls_options, tcp), site))

    def _add(self, service: StreamServerEndpointService) -> None:
        # A socket in use fails the start instead of being logged while nothing listens.
        service._raiseSynchronously = True
        service.setServiceParent(self)

    def _bind_path(self, path: str) -> str:
        """``path``, or a short alias of it through an open descriptor of its directory."""
        absolute = os.path.abspath(path)
        os.makedirs(os.path.dirname(absolute), mode=0o700, exist_ok=True)
        if len(os.fsencode(absolute)) <= MAX_UNIX_PATH:
            return absolute
        self._directory = os.open(
            os.path.dirname(absolute), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
        )
        return f"/proc/self/fd/{self._directory}/{os.path.basename(absolute)}"

    async def listen(self) -> list[Any]:
        """Start every listener; fires with their ports once all of them listen."""
        Service.startService(self)
        self.ports = []
        for service in self:
            assert isinstance(service, StreamServerEndpointService)
            service.startService()
            waiting = service._waitingForPort
            assert waiting is not None
            self.ports.append(await waiting)
        if self.socket_path is not None:
            _log.info("Admin API on unix socket {path}", path=os.path.abspath(self.socket_path))
        for port in self.ports[1 if self.socket_path is not None else 0 :]:
            _log.info("Admin API over mutual TLS on {address}", address=port.getHost())
        return self.ports

    def stopService(self) -> Any:  # noqa: N802
        """Stop listening; release the directory descriptor."""
        result = super().stopService()

        def release(passthrough: Any) -> Any:
            if self._directory is not None:
                os.close(self._directory)
                self._directory = None
            return passthrough

        return result.addBoth(release)
