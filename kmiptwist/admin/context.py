"""What the admin API acts on: the store, the engine, live connections, the CA, the audit."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from attrs import define
from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from kmiptwist import pki
from kmiptwist.admin.api import AdminError, Call
from kmiptwist.audit import AuditError
from kmiptwist.engine import Engine
from kmiptwist.tls import ServerTLSOptions

__all__ = ["AdminContext", "Connections", "AuditRecorder", "CertificateAuthority", "iso"]

_T = TypeVar("_T")


class Connections(Protocol):
    """The live KMIP connections (``kmiptwist.protocol.KMIPServerFactory``)."""

    def disconnect_fingerprint(self, certificate_fingerprint: str) -> int:
        """Cut off the certificate's connections."""
        ...

    def disconnect_trusted_ca(self, ca_fingerprint: str) -> int:
        """Cut off the connections that came in through the CA."""
        ...

    def disconnect_tenant(self, tenant: str) -> int:
        """Cut off the tenant's connections."""
        ...


class AuditRecorder(Protocol):
    """Where admin changes are recorded (``kmiptwist.audit.AuditLog``)."""

    healthy: bool

    def record(
        self,
        *,
        actor: str,
        operation: str,
        result: str,
        tenant: str | None = None,
        unique_identifier: str | None = None,
        correlation_id: str | None = None,
        **details: Any,
    ) -> Deferred[None]:
        """Queue a record; fires once it is on disk."""
        ...


class CertificateAuthority(Protocol):
    """Loads the built-in CA (``kmiptwist.datadir.DataDirectory.certificate_authority``)."""

    def __call__(self) -> tuple[x509.Certificate, pki.PrivateKey]:
        """The CA certificate and key; raises when the key is offline."""
        ...


def iso(seconds: float | int | None) -> str | None:
    """UTC ISO 8601 (seconds precision) for the API, or None."""
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@define
class AdminContext:
    """The collaborators every admin handler may use.

    ``store`` is the key store and tenancy (one sqlite store in the server);
    ``certificate_authority`` loads the CA on demand, so a CA key taken offline only
    disables issuing; ``ca_certificate`` loads the CA certificate alone.
    ``server_credentials`` reloads the server certificate chain and key from where
    the server reads them at start (None: a replacement cannot be reloaded), and
    ``save_server_credentials`` writes a replacement there (None: it cannot be kept
    across a restart).  ``readiness`` answers named checks for ``/readyz``.  ``check_binding``
    validates a Key Protect root-key binding (root key id, fields) and returns what
    to store, raising ValueError with the reason (None: stored as given).
    """

    store: Any
    engine: Engine
    connections: Connections
    audit: AuditRecorder
    clock: IReactorTime
    tls_options: ServerTLSOptions
    certificate_authority: CertificateAuthority
    ca_certificate: Callable[[], x509.Certificate]
    client_validity_days: int = 825
    server_credentials: Callable[[], tuple[list[x509.Certificate], pki.PrivateKey]] | None = None
    save_server_credentials: (
        Callable[[list[x509.Certificate], pki.PrivateKey], str | None] | None
    ) = None
    readiness: Callable[[], dict[str, bool]] | None = None
    check_binding: Callable[[str, dict[str, Any]], Mapping[str, Any]] | None = None
    run_in_thread: Callable[[Callable[[], Any]], Deferred[Any]] | None = None

    def now(self) -> int:
        """The current time in whole seconds."""
        return int(self.clock.seconds())

    async def blocking(self, function: Callable[[], _T]) -> _T:
        """Run CPU-heavy work (key generation) off the reactor thread when one is given."""
        if self.run_in_thread is None:
            return function()
        result: _T = await self.run_in_thread(function)
        return result

    async def audited(
        self,
        call: Call,
        operation: str,
        *,
        tenant: str | None = None,
        unique_identifier: str | None = None,
        result: str = "success",
        **details: Any,
    ) -> None:
        """Record an admin change and wait until it is on disk.

        The change is already made; when the record cannot be written the caller gets
        a 500 that says so, rather than an acknowledgement without an audit trail.
        """
        try:
            await self.audit.record(
                actor=call.actor,
                operation=f"admin.{operation}",
                result=result,
                tenant=tenant,
                unique_identifier=unique_identifier,
                **details,
            )
        except AuditError as error:
            raise AdminError(
                500,
                "AUDIT_FAILED",
                f"the change was made but its audit record could not be written: {error}",
            ) from None
