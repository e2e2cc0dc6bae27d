# -*- test-case-name: tests.test_store -*-
"""An in-memory key store that behaves like the sqlite one, for fast unit tests.

Objects are kept in their encoded form, exactly as the sqlite store keeps them, so a
test sees the same copies, the same Locate answers and the same exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from kmiptwist import ttlv
from kmiptwist.interfaces import (
    ClientCertificate,
    ConcurrentModification,
    IKeyStore,
    ITenancy,
    LocateCriterion,
    PendingCertificate,
    Tenant,
    TrustedCA,
)
from kmiptwist.objects import ManagedObject
from kmiptwist.store import schema
from kmiptwist.store.errors import (
    CertificateConflict,
    ObjectExists,
    TenantExists,
    TenantHasObjects,
    UnknownTenant,
)

__all__ = ["MemoryStore"]

_T = TypeVar("_T")


@define
class _StoredObject:
    """One object as stored: encoded attributes plus their searchable forms."""

    seq: int
    tenant: str
    object_type: int
    wrapped_material: bytes | None
    revision: int
    attributes: list[tuple[str, list[bytes]]]
    matches: dict[str, list[Any]]
    root_key_version: str | None = None


def _stored(obj: ManagedObject, seq: int, revision: int) -> _StoredObject:
    """Snapshot ``obj`` so later changes to it do not reach the store."""
    return _StoredObject(
        seq=seq,
        tenant=obj.tenant,
        object_type=obj.object_type,
        wrapped_material=None if obj.wrapped_material is None else bytes(obj.wrapped_material),
        revision=revision,
        attributes=[
            (name, [ttlv.encode(item) for item in instances])
            for name, instances in obj.attributes.items()
        ],
        matches={
            name: [schema.match_value(item) for item in instances]
            for name, instances in obj.attributes.items()
        },
        root_key_version=obj.root_key_version,
    )


def _answer(function: Callable[[], _T]) -> Deferred[_T]:
    """The outcome of ``function`` as an already-fired Deferred."""
    try:
        return succeed(function())
    except Exception:
        return fail()


@implementer(IKeyStore, ITenancy)
@define(eq=False)
class MemoryStore(Service):
    """The :class:`kmiptwist.store.sqlite.SQLiteStore` contract, kept in dicts.

    Every method returns an already-fired Deferred.  ``max_pending`` bounds the pending
    certificates as in the sqlite store.
    """

    max_pending: int = 10_000
    _objects: dict[str, _StoredObject] = field(factory=dict)
    _seq: int = 0
    _tenants: dict[str, Tenant] = field(factory=dict)
    _certificates: dict[str, ClientCertificate] = field(factory=dict)
    _pending: dict[str, PendingCertificate] = field(factory=dict)
    _trusted_cas: dict[str, TrustedCA] = field(factory=dict)

    # -- IKeyStore --------------------------------------------------------------------

    def add_object(self, obj: ManagedObject) -> Deferred[None]:
        """Store a new object; fails with ObjectExists for a used identifier."""

        def add() -> None:
            if obj.unique_identifier in self._objects:
                raise ObjectExists(
                    f"an object with Unique Identifier {obj.unique_identifier!r} exists"
                )
            stored = _stored(obj, self._seq + 1, obj.revision)
            self._seq += 1
            self._objects[obj.unique_identifier] = stored

        return _answer(add)

    def get_object(self, tenant: str, unique_identifier: str) -> Deferred[ManagedObject | None]:
        """A fresh copy of the tenant's object, or None."""

        def get() -> ManagedObject | None:
            stored = self._objects.get(unique_identifier)
            if stored is None or stored.tenant != tenant:
                return None
            return ManagedObject(
                unique_identifier=unique_identifier,
                tenant=tenant,
                object_type=stored.object_type,
                attributes={
                    name: [ttlv.decode(item) for item in instances]
                    for name, instances in stored.attributes
                },
                wrapped_material=stored.wrapped_material,
                revision=stored.revision,
                root_key_version=stored.root_key_version,
            )

        return _answer(get)

    def object_revision(
        self, tenant: str, unique_identifier: str
    ) -> Deferred[tuple[int, int] | None]:
        """``(seq, revision)`` of the tenant's object, or None."""
        return _answer(lambda: self.revision_now(tenant, unique_identifier))

    def revision_now(self, tenant: str, unique_identifier: str) -> tuple[int, int] | None:
        """What :meth:`object_revision` answers, at once."""
        stored = self._objects.get(unique_identifier)
        if stored is None or stored.tenant != tenant:
            return None
        return (stored.seq, stored.revision)

    def update_object(self, obj: ManagedObject) -> Deferred[None]:
        """Replace the object if its revision is current; bump ``obj.revision``."""

        def update() -> None:
            stored = self._objects.get(obj.unique_identifier)
            if stored is None or stored.tenant != obj.tenant or stored.revision != obj.revision:
                raise ConcurrentModification(
                    f"object {obj.unique_identifier} changed since revision {obj.revision} "
                    "was read (or is gone)"
                )
            replacement = _stored(obj, stored.seq, obj.revision + 1)
            self._objects[obj.unique_identifier] = replacement
            obj.revision += 1

        return _answer(update)

    def replace_wrapped_material(
        self,
        tenant: str,
        unique_identifier: str,
        expected: bytes,
        wrapped_material: bytes,
        root_key_version: str | None,
    ) -> Deferred[bool]:
        """Swap the wrapped material while it is still ``expected``; revision unchanged."""

        def replace() -> bool:
            stored = self._objects.get(unique_identifier)
            if stored is None or stored.tenant != tenant or stored.wrapped_material != expected:
                return False
            stored.wrapped_material = bytes(wrapped_material)
            stored.root_key_version = root_key_version
            return True

        return _answer(replace)

    def _matching(self, tenant: str, criteria: list[LocateCriterion]) -> list[str]:
        """The identifiers of the tenant's objects matching every criterion, newest first."""
        conditions = schema.match_conditions(criteria)
        if conditions is None:
            return []
        found = [
            (stored.seq, unique_identifier)
            for unique_identifier, stored in self._objects.items()
            if stored.tenant == tenant
            and all(
                any(condition.accepts(value) for value in stored.matches.get(condition.name, ()))
                for condition in conditions
            )
        ]
        found.sort(reverse=True)
        return [unique_identifier for _, unique_identifier in found]

    def locate(
        self,
        tenant: str,
        criteria: list[LocateCriterion],
        offset: int,
        maximum: int | None,
    ) -> Deferred[list[str]]:
        """The tenant's matching objects, newest first, after ``offset``, at most ``maximum``."""

        def locate() -> list[str]:
            found = self._matching(tenant, criteria)[max(0, offset) :]
            return found if maximum is None else found[: max(0, maximum)]

        return _answer(locate)

    def locate_count(self, tenant: str, criteria: list[LocateCriterion]) -> Deferred[int]:
        """How many of the tenant's objects match every criterion."""
        return _answer(lambda: len(self._matching(tenant, criteria)))

    def count_objects(self, tenant: str) -> Deferred[int]:
        """How many objects the tenant has."""
        return _answer(lambda: sum(1 for s in self._objects.values() if s.tenant == tenant))

    # -- ITenancy ---------------------------------------------------------------------

    def add_tenant(self, tenant: Tenant) -> Deferred[None]:
        """Create a tenant; fails with TenantExists if the name is taken."""

        def add() -> None:
            if tenant.name in self._tenants:
                raise TenantExists(f"tenant {tenant.name!r} already exists")
            # A copy, as the database would keep it.
            self._tenants[tenant.name] = Tenant(
                tenant.name,
                tenant.root_key_kind,
                tenant.root_key_id,
                tenant.created,
                json.loads(json.dumps(dict(tenant.root_key_binding))),
            )

        return _answer(add)

    def get_tenant(self, name: str) -> Deferred[Tenant | None]:
        """The tenant of that name, or None."""
        return succeed(self._tenants.get(name))

    def list_tenants(self) -> Deferred[list[Tenant]]:
        """Every tenant, by name."""
        return succeed(sorted(self._tenants.values(), key=lambda tenant: tenant.name))

    def set_root_key(
        self, name: str, root_key_kind: str, root_key_id: str, root_key_binding: Mapping[str, Any]
    ) -> Deferred[None]:
        """Bind the tenant to a root key; UnknownTenant when there is no such tenant."""

        def bind() -> None:
            tenant = self._tenants.get(name)
            if tenant is None:
                raise UnknownTenant(f"tenant {name!r} does not exist")
            self._tenants[name] = Tenant(
                name, root_key_kind, root_key_id, tenant.created, dict(root_key_binding)
            )

        return _answer(bind)

    def remove_tenant(self, name: str, force: bool) -> Deferred[list[str]]:
        """Remove the tenant, its certificates, CAs and (``force``) objects."""

        def remove() -> list[str]:
            if name not in self._tenants:
                raise UnknownTenant(f"tenant {name!r} does not exist")
            found = sorted(
                (stored.seq, unique_identifier)
                for unique_identifier, stored in self._objects.items()
                if stored.tenant == name
            )
            if found and not force:
                raise TenantHasObjects(
                    f"tenant {name!r} still has {len(found)} object"
                    f"{'s' if len(found) != 1 else ''}; destroy them first, or force the "
                    "removal, which destroys them"
                )
            for _, unique_identifier in found:
                del self._objects[unique_identifier]
            for table in (self._certificates, self._trusted_cas):
                for fingerprint in [f for f, c in table.items() if c.tenant == name]:
                    del table[fingerprint]
            del self._tenants[name]
            return [unique_identifier for _, unique_identifier in found]

        return _answer(remove)

    def add_trusted_ca(self, ca: TrustedCA) -> Deferred[None]:
        """Trust a CA for an existing tenant; a CA is trusted by one tenant only."""

        def add() -> None:
            if ca.tenant not in self._tenants:
                raise UnknownTenant(f"tenant {ca.tenant!r} does not exist")
            owner = self._trusted_cas.get(ca.fingerprint)
            if owner is not None:
                raise CertificateConflict(
                    f"CA certificate {ca.fingerprint} is already trusted by tenant {owner.tenant!r}"
                )
            self._trusted_cas[ca.fingerprint] = ca

        return _answer(add)

    def list_trusted_cas(self, tenant: str | None = None) -> Deferred[list[TrustedCA]]:
        """The CAs ``tenant`` trusts (None: every tenant's), oldest first."""
        return succeed(
            sorted(
                (c for c in self._trusted_cas.values() if tenant is None or c.tenant == tenant),
                key=lambda c: (c.added, c.fingerprint),
            )
        )

    def remove_trusted_ca(self, fingerprint: str) -> Deferred[bool]:
        """Stop trusting a CA; True when it was trusted."""
        return succeed(self._trusted_cas.pop(fingerprint, None) is not None)

    def add_certificate(self, certificate: ClientCertificate) -> Deferred[None]:
        """Register a certificate to an existing tenant; it stops being pending."""

        def add() -> None:
            if certificate.tenant not in self._tenants:
                raise UnknownTenant(f"tenant {certificate.tenant!r} does not exist")
            owner = self._certificates.get(certificate.fingerprint)
            if owner is not None:
                raise CertificateConflict(
                    f"certificate {certificate.fingerprint} is already registered to tenant "
                    f"{owner.tenant!r}"
                )
            self._certificates[certificate.fingerprint] = certificate
            self._pending.pop(certificate.fingerprint, None)

        return _answer(add)

    def remove_certificate(self, fingerprint: str) -> Deferred[bool]:
        """Unregister a certificate; True when it was registered."""
        return succeed(self._certificates.pop(fingerprint, None) is not None)

    def list_certificates(self, tenant: str) -> Deferred[list[ClientCertificate]]:
        """The tenant's certificates, oldest first."""
        return succeed(
            sorted(
                (c for c in self._certificates.values() if c.tenant == tenant),
                key=lambda c: (c.added, c.fingerprint),
            )
        )

    def tenant_for_fingerprint(self, fingerprint: str) -> Deferred[str | None]:
        """The tenant the certificate is registered to, or None."""
        certificate = self._certificates.get(fingerprint)
        return succeed(None if certificate is None else certificate.tenant)

    def record_pending(
        self,
        fingerprint: str,
        subject: str,
        issuer: str,
        address: str,
        certificate_pem: str,
        now: int,
    ) -> Deferred[None]:
        """Remember or refresh an unregistered certificate (see the sqlite store)."""
        if fingerprint in self._certificates:
            return succeed(None)
        known = self._pending.get(fingerprint)
        if known is not None:
            self._pending[fingerprint] = PendingCertificate(
                fingerprint=fingerprint,
                subject=known.subject,
                issuer=known.issuer,
                first_seen=known.first_seen,
                last_seen=now,
                address=address,
                count=known.count + 1,
                certificate_pem=known.certificate_pem,
            )
            return succeed(None)
        self._pending[fingerprint] = PendingCertificate(
            fingerprint, subject, issuer, now, now, address, 1, certificate_pem
        )
        for stale in self._pending_order()[self.max_pending :]:
            del self._pending[stale.fingerprint]
        return succeed(None)

    def _pending_order(self) -> list[PendingCertificate]:
        """Pending certificates, most recently seen first (ties by fingerprint)."""
        by_fingerprint = sorted(self._pending.values(), key=lambda p: p.fingerprint)
        return sorted(by_fingerprint, key=lambda p: p.last_seen, reverse=True)

    def list_pending(self) -> Deferred[list[PendingCertificate]]:
        """Every pending certificate, most recently seen first."""
        return succeed(self._pending_order())

    def remove_pending(self, fingerprint: str) -> Deferred[bool]:
        """Forget a pending certificate; True when it was pending."""
        return succeed(self._pending.pop(fingerprint, None) is not None)
