"""The collaborators behind the operations: where objects live and what wraps them.

Each interface has a real implementation (sqlite, local root key, Key Protect) and an
in-memory one in :mod:`kmiptwist.testing`, held to the same contract tests.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from attrs import frozen
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from kmiptwist.objects import ManagedObject
from kmiptwist.ttlv import Item

__all__ = [
    "IKeyStore",
    "ITenancy",
    "IKeyWrapper",
    "LocateCriterion",
    "Tenant",
    "ClientCertificate",
    "PendingCertificate",
    "UnwrapResult",
    "ConcurrentModification",
]


class ConcurrentModification(Exception):
    """An update lost a race: the object changed since it was read."""


class LocateCriterion(NamedTuple):
    """One condition of a Locate: attribute ``name`` compared with ``value``.

    ``value`` is the attribute's item; ``operator`` is "=" for equality, or ">=" /
    "<=" for the two bounds of a date range (two instances of one date attribute in
    a Locate request select the objects between them).
    """

    name: str
    value: Item
    operator: str = "="


class IKeyStore(Interface):
    """Managed objects of all tenants; every call is scoped by tenant.

    Every method returns an awaitable (a Deferred or coroutine). A write returns only
    after it is durable: a KMIP success is sent only after commit.
    """

    def add_object(obj: ManagedObject) -> Deferred[Any]:
        """Store a new object (attributes and wrapped material)."""

    def get_object(tenant: str, unique_identifier: str) -> Deferred[Any]:
        """The object, or None when it does not exist in ``tenant``."""

    def update_object(obj: ManagedObject) -> Deferred[Any]:
        """Replace the stored attributes and material of ``obj``.

        The update succeeds only if the stored revision equals ``obj.revision``;
        otherwise it raises :class:`ConcurrentModification`. On success
        ``obj.revision`` is incremented.
        """

    def locate(
        tenant: str,
        criteria: list[LocateCriterion],
        offset: int,
        maximum: int | None,
    ) -> Deferred[Any]:
        """The unique identifiers of the tenant's objects matching every criterion.

        Newest first; ``offset`` skips, ``maximum`` bounds (None: all).
        """

    def locate_count(tenant: str, criteria: list[LocateCriterion]) -> Deferred[Any]:
        """How many of the tenant's objects match every criterion (Located Items)."""

    def count_objects(tenant: str) -> Deferred[Any]:
        """How many objects the tenant has (any state)."""


@frozen
class Tenant:
    """A tenant: a name and the root key that wraps all of its objects' material."""

    name: str
    root_key_kind: str = "local"
    root_key_id: str = "default"
    created: int = 0


@frozen
class ClientCertificate:
    """A client certificate registered to a tenant, pinned by SHA-256 fingerprint."""

    fingerprint: str
    tenant: str
    subject: str
    issuer: str
    not_after: int
    added: int


@frozen
class PendingCertificate:
    """A certificate nobody registered that tried to use KMIP."""

    fingerprint: str
    subject: str
    issuer: str
    first_seen: int
    last_seen: int
    address: str
    count: int
    certificate_pem: str


class ITenancy(Interface):
    """Tenants, their client certificates, and certificates waiting for approval."""

    def tenant_for_fingerprint(fingerprint: str) -> Deferred[Any]:
        """The tenant name the certificate belongs to, or None."""

    def get_tenant(name: str) -> Deferred[Any]:
        """The :class:`Tenant`, or None."""

    def add_tenant(tenant: Tenant) -> Deferred[Any]:
        """Create a tenant; a tenant of that name must not exist."""

    def add_certificate(certificate: ClientCertificate) -> Deferred[Any]:
        """Register a client certificate to its tenant."""

    def record_pending(
        fingerprint: str, subject: str, issuer: str, address: str, certificate_pem: str, now: int
    ) -> Deferred[Any]:
        """Remember (or refresh) a certificate that is not registered."""

    def list_pending() -> Deferred[Any]:
        """Every :class:`PendingCertificate`, most recently seen first."""

    def remove_pending(fingerprint: str) -> Deferred[Any]:
        """Forget a pending certificate; True when it was pending."""

    def list_tenants() -> Deferred[Any]:
        """Every :class:`Tenant`, by name."""

    def list_certificates(tenant: str) -> Deferred[Any]:
        """The tenant's :class:`ClientCertificate` records, oldest first."""

    def remove_certificate(fingerprint: str) -> Deferred[Any]:
        """Unregister a certificate; True when it was registered."""


class UnwrapResult(NamedTuple):
    """Material unwrapped, and a new wrapped form when the root key was rotated."""

    material: bytes
    rewrapped: bytes | None = None


class IKeyWrapper(Interface):
    """A root key that wraps and unwraps key material.

    ``aad`` binds the wrapped material to its owner (tenant and unique identifier):
    material moved to another object does not unwrap.
    """

    name = Attribute("A short description for logs, e.g. 'local root key'.")

    def wrap(material: bytes, aad: bytes) -> Deferred[Any]:
        """Awaitable of the wrapped material (bytes)."""

    def unwrap(wrapped: bytes, aad: bytes) -> Deferred[Any]:
        """Awaitable of :class:`UnwrapResult`; a KMIP error when it cannot."""
