"""The collaborators behind the operations: where objects live and what wraps them.

Each interface has a real implementation (sqlite, local root key, Key Protect) and an
in-memory one in :mod:`kmiptwist.testing`, held to the same contract tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from attrs import field, frozen
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
    "TrustedCA",
    "UnwrapResult",
    "ConcurrentModification",
    "IRemoteRootKey",
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

    def object_revision(tenant: str, unique_identifier: str) -> Deferred[Any]:
        """``(seq, revision)`` of the stored object, or None when it does not exist in
        ``tenant``: cheaper than :meth:`get_object`, for telling whether an object
        changed since it was read (by any process sharing the store)."""

    def revision_now(tenant: str, unique_identifier: str) -> tuple[int, int] | None:
        """What :meth:`object_revision` answers, returned at once rather than as an
        awaitable (the one method that is): a lone Get of a kept answer checks it
        without waiting on anything.  Raises what :meth:`object_revision` would fail
        with."""

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

    def replace_wrapped_material(
        tenant: str,
        unique_identifier: str,
        expected: bytes,
        wrapped_material: bytes,
        root_key_version: str | None,
    ) -> Deferred[Any]:
        """Swap the stored wrapped material for a rewrapped form of the same material.

        Only while the stored material is still ``expected`` (compare-and-swap, so a
        destroyed object stays destroyed); revision and attributes do not change (the
        key material is the same).  Fires True when it swapped, False otherwise.
        """


@frozen
class Tenant:
    """A tenant: a name and the root key that wraps all of its objects' material.

    ``root_key_binding`` holds what the root key needs beyond kind and id (for Key
    Protect: instance, endpoint, where the API key is read from), stored as JSON;
    never an API key itself.
    """

    name: str
    root_key_kind: str = "local"
    root_key_id: str = "default"
    created: int = 0
    root_key_binding: Mapping[str, Any] = field(factory=dict, hash=False)


@frozen
class ClientCertificate:
    """A client certificate registered to a tenant, pinned by SHA-256 fingerprint."""

    fingerprint: str
    tenant: str
    subject: str
    issuer: str
    not_after: int
    added: int
    certificate_pem: str = ""


@frozen
class TrustedCA:
    """A CA certificate a tenant trusts: client certificates chaining to it belong to it."""

    fingerprint: str
    tenant: str
    subject: str
    certificate_pem: str
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

    def set_root_key(
        name: str, root_key_kind: str, root_key_id: str, root_key_binding: Mapping[str, Any]
    ) -> Deferred[Any]:
        """Bind the tenant to a root key, or change how it is reached (never an API key
        in the binding); ``UnknownTenant`` when there is no such tenant."""

    def remove_tenant(name: str, force: bool) -> Deferred[Any]:
        """Remove a tenant with its certificates, trusted CAs and objects.

        Without ``force`` a tenant that still has objects is refused
        (``TenantHasObjects``); with it, every object goes too, wrapped material and
        metadata (crypto-shredding).  Fires with the removed objects' unique
        identifiers; ``UnknownTenant`` when there is no such tenant.
        """

    def add_trusted_ca(ca: TrustedCA) -> Deferred[Any]:
        """Trust a CA for its tenant; a CA can be trusted by one tenant only."""

    def list_trusted_cas(tenant: str | None) -> Deferred[Any]:
        """The :class:`TrustedCA` records of ``tenant`` (None: of every tenant), oldest first."""

    def remove_trusted_ca(fingerprint: str) -> Deferred[Any]:
        """Stop trusting a CA; True when it was trusted."""


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


class IRemoteRootKey(IKeyWrapper):
    """A root key held by a key service (Key Protect): versioned, rotatable, revocable.

    The operations layer uses these when a wrapper provides them: the version to
    record beside wrapped material, a check that the root key is still usable before
    serving cached material, and rewrapping after a rotation.
    """

    root_key_id = Attribute("The root key's identifier in its service.")

    def key_version(wrapped: bytes) -> str | None:
        """The root key version that made ``wrapped`` (None when it does not say)."""

    def rewrap(wrapped: bytes, aad: bytes) -> Deferred[Any]:
        """Awaitable of ``wrapped`` wrapped again by the latest root key version."""

    def check_usable() -> Deferred[Any]:
        """Fires when the root key may be used now (per the configured policy); fails
        with a WrappingError when it was disabled or deleted."""

    def usable_now() -> bool:
        """True when :meth:`check_usable` would succeed at once, without asking the
        key service (no check is due or running)."""
