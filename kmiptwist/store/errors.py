"""Why the key store refused an operation (:mod:`kmiptwist.store.sqlite` and
:mod:`kmiptwist.store.tenancy` raise them; the admin API turns them into HTTP errors)."""

from __future__ import annotations

__all__ = [
    "StoreError",
    "StoreNotRunning",
    "ObjectExists",
    "TenantExists",
    "UnknownTenant",
    "TenantHasObjects",
    "CertificateConflict",
]


class StoreError(Exception):
    """A store operation was refused; the message says why."""


class StoreNotRunning(StoreError):
    """The store was used before it started or after it stopped."""


class ObjectExists(StoreError):
    """An object with that Unique Identifier already exists (in any tenant)."""


class TenantExists(StoreError):
    """A tenant of that name already exists."""


class UnknownTenant(StoreError):
    """The tenant named does not exist."""


class CertificateConflict(StoreError):
    """The certificate's fingerprint is already registered (to this or another tenant)."""


class TenantHasObjects(StoreError):
    """The tenant still has objects and its removal was not forced."""
