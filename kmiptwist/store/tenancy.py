# -*- test-case-name: tests.test_store -*-
"""The key store's tenancy (``ITenancy``) in sqlite: tenants and the root keys they
are bound to, the CAs they trust, their client certificates, and the certificates
seen but not registered (pending).

:class:`SQLiteTenancy` is the half of :class:`~kmiptwist.store.sqlite.SQLiteStore`
that keeps these, mixed into it: the same database, written through the store's
writer thread (every write acknowledged after its commit) and read on its read
connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, ClassVar

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from kmiptwist.interfaces import ClientCertificate, PendingCertificate, Tenant, TrustedCA
from kmiptwist.store.errors import (
    CertificateConflict,
    StoreNotRunning,
    TenantExists,
    TenantHasObjects,
    UnknownTenant,
)

__all__ = ["SQLiteTenancy"]


def _tenant(row: tuple[Any, ...]) -> Tenant:
    """A tenant from its row: name, root key kind and id, created, binding (JSON)."""
    name, kind, root_key_id, created, binding = row
    return Tenant(name, kind, root_key_id, created, json.loads(binding or "{}"))


class SQLiteTenancy:
    """``ITenancy`` over the key store's database; mixed into ``SQLiteStore``, which
    gives it what it declares here."""

    path: str
    max_pending: int
    """How many pending certificates are kept at most."""
    _log: ClassVar[Logger]
    _reader: sqlite3.Connection | None
    _tenants: dict[str, tuple[int, Tenant | None]]
    """Tenants read, by name, with the data_version they were read at."""
    _objects: MutableMapping[str, Any]
    """The store's decoded objects (a removed tenant's are forgotten)."""
    _submit: Callable[..., Deferred[Any]]
    _answer: Callable[..., Deferred[Any]]
    _read: Callable[..., list[Any]]

    def add_tenant(self, tenant: Tenant) -> Deferred[None]:
        """Create a tenant; fails with :class:`TenantExists` if the name is taken."""
        try:
            binding = json.dumps(dict(tenant.root_key_binding), sort_keys=True)
        except (TypeError, ValueError):
            return fail()

        def add(connection: sqlite3.Connection) -> None:
            if connection.execute(
                "SELECT 1 FROM tenants WHERE name = ?", (tenant.name,)
            ).fetchone():
                raise TenantExists(f"tenant {tenant.name!r} already exists")
            connection.execute(
                "INSERT INTO tenants (name, root_key_kind, root_key_id, created, root_key_binding)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    tenant.name,
                    tenant.root_key_kind,
                    tenant.root_key_id,
                    tenant.created,
                    binding,
                ),
            )

        return self._submit(add)

    def get_tenant(self, name: str) -> Deferred[Tenant | None]:
        """The tenant of that name, or None."""
        return self._answer(self._get_tenant, name)

    def _get_tenant(self, name: str) -> Tenant | None:
        # Read on every request (the tenant's root key): the record is kept until
        # anyone commits anything to the database (sqlite's data_version changes).
        version = self._data_version()
        cached = self._tenants.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        rows = self._read(
            "SELECT name, root_key_kind, root_key_id, created, root_key_binding FROM tenants"
            " WHERE name = ?",
            (name,),
        )
        tenant = _tenant(rows[0]) if rows else None
        if len(self._tenants) >= 1024:
            self._tenants.clear()
        self._tenants[name] = (version, tenant)
        return tenant

    def _data_version(self) -> int:
        """sqlite's data_version on the read connection: it changes whenever another
        connection (the writer thread, another process) commits a change."""
        if self._reader is None:
            raise StoreNotRunning(f"the key store {self.path} is not running")
        version: int = self._reader.execute("PRAGMA data_version").fetchone()[0]
        return version

    def list_tenants(self) -> Deferred[list[Tenant]]:
        """Every tenant, by name."""
        return self._answer(
            lambda: [
                _tenant(row)
                for row in self._read(
                    "SELECT name, root_key_kind, root_key_id, created, root_key_binding"
                    " FROM tenants ORDER BY name"
                )
            ]
        )

    def set_root_key(
        self, name: str, root_key_kind: str, root_key_id: str, root_key_binding: Mapping[str, Any]
    ) -> Deferred[None]:
        """Bind the tenant to a root key (or change how it is reached).

        Fails with :class:`UnknownTenant` when there is no such tenant.
        """
        try:
            binding = json.dumps(dict(root_key_binding), sort_keys=True)
        except (TypeError, ValueError):
            return fail()

        def bind(connection: sqlite3.Connection) -> None:
            cursor = connection.execute(
                "UPDATE tenants SET root_key_kind = ?, root_key_id = ?, root_key_binding = ?"
                " WHERE name = ?",
                (root_key_kind, root_key_id, binding, name),
            )
            if cursor.rowcount != 1:
                raise UnknownTenant(f"tenant {name!r} does not exist")

        return self._submit(bind)

    def remove_tenant(self, name: str, force: bool) -> Deferred[list[str]]:
        """Remove the tenant, its certificates, trusted CAs and (``force``) objects.

        Fails with :class:`UnknownTenant`, or :class:`TenantHasObjects` when the tenant
        has objects and ``force`` is false; nothing changes then.  The removed
        material is overwritten in the database (``secure_delete``) and the WAL is
        checkpointed and truncated after the commit, so the wrapped bytes do not stay
        behind on disk.  Fires with the removed objects' unique identifiers.
        """

        def remove(connection: sqlite3.Connection) -> list[str]:
            if not connection.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
                raise UnknownTenant(f"tenant {name!r} does not exist")
            identifiers = [
                row[0]
                for row in connection.execute(
                    "SELECT unique_identifier FROM objects WHERE tenant = ? ORDER BY seq", (name,)
                )
            ]
            if identifiers and not force:
                raise TenantHasObjects(
                    f"tenant {name!r} still has {len(identifiers)} object"
                    f"{'s' if len(identifiers) != 1 else ''}; destroy them first, or force the "
                    "removal, which destroys them"
                )
            connection.execute("PRAGMA secure_delete = ON")
            connection.execute("DELETE FROM attribute_index WHERE tenant = ?", (name,))
            connection.execute("DELETE FROM objects WHERE tenant = ?", (name,))
            connection.execute("DELETE FROM certificates WHERE tenant = ?", (name,))
            connection.execute("DELETE FROM trusted_cas WHERE tenant = ?", (name,))
            connection.execute("DELETE FROM tenants WHERE name = ?", (name,))
            return identifiers

        def removed(identifiers: list[str]) -> None:
            for identifier in identifiers:
                self._objects.pop(identifier, None)

        def shred(connection: sqlite3.Connection) -> None:
            connection.execute("PRAGMA secure_delete = OFF")
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                self._log.warn(
                    "The WAL of {path} could not be truncated after removing tenant {tenant}; "
                    "the removed wrapped material leaves it at the next checkpoint",
                    path=self.path,
                    tenant=name,
                )

        return self._submit(remove, removed, after_commit=shred)

    def add_trusted_ca(self, ca: TrustedCA) -> Deferred[None]:
        """Trust a CA for its tenant.

        Fails with :class:`UnknownTenant`, or :class:`CertificateConflict` when the CA
        is already trusted (by this or another tenant).
        """

        def add(connection: sqlite3.Connection) -> None:
            owner = _owner_in(connection, ca.tenant, "trusted_cas", ca.fingerprint)
            if owner is not None:
                raise CertificateConflict(
                    f"CA certificate {ca.fingerprint} is already trusted by tenant {owner!r}"
                )
            connection.execute(
                "INSERT INTO trusted_cas (fingerprint, tenant, subject, certificate_pem, added)"
                " VALUES (?, ?, ?, ?, ?)",
                (ca.fingerprint, ca.tenant, ca.subject, ca.certificate_pem, ca.added),
            )

        return self._submit(add)

    def list_trusted_cas(self, tenant: str | None = None) -> Deferred[list[TrustedCA]]:
        """The CAs ``tenant`` trusts (None: every tenant's), oldest first."""
        where, parameters = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        return self._answer(
            lambda: [
                TrustedCA(*row)
                for row in self._read(
                    "SELECT fingerprint, tenant, subject, certificate_pem, added FROM trusted_cas "
                    f"{where} ORDER BY added, fingerprint",
                    parameters,
                )
            ]
        )

    def remove_trusted_ca(self, fingerprint: str) -> Deferred[bool]:
        """Stop trusting a CA; True when it was trusted."""

        def remove(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "DELETE FROM trusted_cas WHERE fingerprint = ?", (fingerprint,)
            )
            return cursor.rowcount > 0

        return self._submit(remove)

    def add_certificate(self, certificate: ClientCertificate) -> Deferred[None]:
        """Register a client certificate to its tenant; it stops being pending.

        Fails with :class:`UnknownTenant` when the tenant does not exist and with
        :class:`CertificateConflict` when the fingerprint is already registered.
        """

        def add(connection: sqlite3.Connection) -> None:
            owner = _owner_in(
                connection, certificate.tenant, "certificates", certificate.fingerprint
            )
            if owner is not None:
                raise CertificateConflict(
                    f"certificate {certificate.fingerprint} is already registered to tenant "
                    f"{owner!r}"
                )
            connection.execute(
                "INSERT INTO certificates (fingerprint, tenant, subject, issuer, not_after, added,"
                " certificate_pem) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    certificate.fingerprint,
                    certificate.tenant,
                    certificate.subject,
                    certificate.issuer,
                    certificate.not_after,
                    certificate.added,
                    certificate.certificate_pem,
                ),
            )
            connection.execute(
                "DELETE FROM pending_certificates WHERE fingerprint = ?", (certificate.fingerprint,)
            )

        return self._submit(add)

    def remove_certificate(self, fingerprint: str) -> Deferred[bool]:
        """Unregister a certificate; True when it was registered."""

        def remove(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "DELETE FROM certificates WHERE fingerprint = ?", (fingerprint,)
            )
            return cursor.rowcount > 0

        return self._submit(remove)

    def list_certificates(self, tenant: str) -> Deferred[list[ClientCertificate]]:
        """The tenant's registered certificates, oldest first."""
        return self._answer(
            lambda: [
                ClientCertificate(*row)
                for row in self._read(
                    "SELECT fingerprint, tenant, subject, issuer, not_after, added, certificate_pem"
                    " FROM certificates WHERE tenant = ? ORDER BY added, fingerprint",
                    (tenant,),
                )
            ]
        )

    def tenant_for_fingerprint(self, fingerprint: str) -> Deferred[str | None]:
        """The tenant the certificate is registered to, or None."""
        return self._answer(self._tenant_for_fingerprint, fingerprint)

    def _tenant_for_fingerprint(self, fingerprint: str) -> str | None:
        rows = self._read("SELECT tenant FROM certificates WHERE fingerprint = ?", (fingerprint,))
        return rows[0][0] if rows else None

    def record_pending(
        self,
        fingerprint: str,
        subject: str,
        issuer: str,
        address: str,
        certificate_pem: str,
        now: int,
    ) -> Deferred[None]:
        """Remember an unregistered certificate, or refresh it: last seen, address, count.

        A certificate registered meanwhile is not recorded.  At most ``max_pending``
        are kept; beyond that the least recently seen are forgotten, so that a stream
        of made-up certificates cannot fill the disk.
        """
        max_pending = self.max_pending

        def record(connection: sqlite3.Connection) -> None:
            if connection.execute(
                "SELECT 1 FROM certificates WHERE fingerprint = ?", (fingerprint,)
            ).fetchone():
                return
            cursor = connection.execute(
                "UPDATE pending_certificates SET last_seen = ?, address = ?, count = count + 1"
                " WHERE fingerprint = ?",
                (now, address, fingerprint),
            )
            if cursor.rowcount:
                return
            connection.execute(
                "INSERT INTO pending_certificates (fingerprint, subject, issuer, first_seen,"
                " last_seen, address, count, certificate_pem) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (fingerprint, subject, issuer, now, now, address, certificate_pem),
            )
            connection.execute(
                "DELETE FROM pending_certificates WHERE fingerprint IN ("
                " SELECT fingerprint FROM pending_certificates"
                " ORDER BY last_seen DESC, fingerprint LIMIT -1 OFFSET ?)",
                (max_pending,),
            )

        return self._submit(record)

    def list_pending(self) -> Deferred[list[PendingCertificate]]:
        """Every pending certificate, most recently seen first."""
        return self._answer(
            lambda: [
                PendingCertificate(*row)
                for row in self._read(
                    "SELECT fingerprint, subject, issuer, first_seen, last_seen, address, count,"
                    " certificate_pem FROM pending_certificates"
                    " ORDER BY last_seen DESC, fingerprint"
                )
            ]
        )

    def remove_pending(self, fingerprint: str) -> Deferred[bool]:
        """Forget a pending certificate; True when it was pending."""

        def remove(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "DELETE FROM pending_certificates WHERE fingerprint = ?", (fingerprint,)
            )
            return cursor.rowcount > 0

        return self._submit(remove)


def _owner_in(
    connection: sqlite3.Connection, tenant: str, table: str, fingerprint: str
) -> str | None:
    """The tenant that already has ``fingerprint`` in ``table`` (``certificates`` or
    ``trusted_cas``), or None; raises :class:`UnknownTenant` when ``tenant``, which
    is to have it, does not exist."""
    if not connection.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)).fetchone():
        raise UnknownTenant(f"tenant {tenant!r} does not exist")
    # ``table`` is one of the two names above, never input.
    row = connection.execute(
        f"SELECT tenant FROM {table} WHERE fingerprint = ?",  # noqa: S608
        (fingerprint,),
    ).fetchone()
    return None if row is None else str(row[0])
