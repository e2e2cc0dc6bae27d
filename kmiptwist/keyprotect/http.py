"""The HTTP client of the Key Protect and IAM calls in the server.

:func:`https_client` gives a :class:`~kmiptwist.keyprotect.http11.LeanHTTP` whose
HTTPS connections are verified (always) against a CA bundle or the system's CAs.
:class:`~kmiptwist.keyprotect.transport.HTTPTransport` also speaks to anything with
treq's ``request`` (``treq.testing.StubTreq`` in the unit tests).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IStreamClientEndpoint

from kmiptwist.keyprotect.http11 import LeanHTTP

__all__ = ["https_client"]


def _trust_root(ca_bundle: str) -> Any:
    """The twisted trust root of every certificate in the PEM file ``ca_bundle``."""
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    from kmiptwist import pki

    with open(ca_bundle, "rb") as handle:
        certificates = pki.load_certificates(handle.read())
    return trustRootFromCertificates(
        [Certificate.loadPEM(pki.certificate_pem(certificate)) for certificate in certificates]
    )


def https_client(
    reactor: Any, ca_bundle: str | None, max_connections: int, connect_timeout: float
) -> LeanHTTP:
    """A client with persistent connections, verifying TLS against ``ca_bundle``
    (None: the system's CAs), connecting within ``connect_timeout`` seconds."""
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
    from twisted.internet.ssl import optionsForClientTLS, platformTrust

    trust = platformTrust() if ca_bundle is None else _trust_root(ca_bundle)

    def endpoint_for(scheme: str, host: str, port: int) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            reactor, host, port, timeout=connect_timeout
        )
        if scheme == "https":
            endpoint = wrapClientTLS(optionsForClientTLS(host, trustRoot=trust), endpoint)
        return endpoint

    return LeanHTTP(reactor, endpoint_for, max_idle=max_connections)
