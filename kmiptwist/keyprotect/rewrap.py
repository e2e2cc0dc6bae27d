"""Rewrap every object of a tenant by its root key's latest version (after a rotation).

Key Protect keeps unwrapping material wrapped by older root key versions, and every
unwrap of such material already stores its rewrapped form; :func:`rewrap_tenant` does
it for all of a tenant's objects at once, so that the old versions protect nothing
any more.  It uses Key Protect's ``rewrap`` (the material never leaves Key Protect),
skips objects already on the latest version, and replaces each object's wrapped
material only if it did not change meanwhile (a Destroy wins).  Material stored
before the tenant was bound to Key Protect (local root key) is moved to Key Protect.
It is safe to run again, and beside a running server.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.logger import Logger

from kmiptwist.keyprotect.wrapper import KeyProtectWrapper
from kmiptwist.wrapping import aad_for
from kmiptwist.wrapping.errors import WrappingError

__all__ = ["RewrapReport", "rewrap_tenant", "NotKeyProtect"]

_log = Logger()


class NotKeyProtect(Exception):
    """The tenant's root key is not a Key Protect root key: there is nothing to rewrap."""


@define
class RewrapReport:
    """What :func:`rewrap_tenant` did."""

    tenant: str
    root_key_id: str
    latest_version: str
    objects: int = 0
    rewrapped: int = 0
    current: int = 0
    without_material: int = 0
    changed_meanwhile: int = 0
    failed: list[tuple[str, str]] = field(factory=list)

    def as_dict(self) -> dict[str, Any]:
        """For the operator command and the admin API."""
        return {
            "tenant": self.tenant,
            "root_key_id": self.root_key_id,
            "latest_version": self.latest_version,
            "objects": self.objects,
            "rewrapped": self.rewrapped,
            "already_current": self.current,
            "without_material": self.without_material,
            "changed_meanwhile": self.changed_meanwhile,
            "failed": [{"unique_identifier": uid, "error": error} for uid, error in self.failed],
        }


async def rewrap_tenant(
    store: Any, root_keys: Any, tenant: str, concurrency: int = 16
) -> RewrapReport:
    """Rewrap ``tenant``'s objects by the latest version of its Key Protect root key.

    ``store`` is the key store, ``root_keys`` the server's ``RootKeys``.  Raises
    :class:`NotKeyProtect` for a tenant of the local root key and WrappingError when
    the root key cannot be used at all (disabled, deleted, unreachable); failures of
    single objects are listed in the report.
    """
    wrapper = await root_keys.for_tenant(tenant)
    if not isinstance(wrapper, KeyProtectWrapper):
        raise NotKeyProtect(
            f"tenant {tenant!r} uses {getattr(wrapper, 'name', 'a local root key')}, which has no "
            "versions to rewrap to"
        )
    latest = await wrapper.latest_version()
    report = RewrapReport(tenant, wrapper.root_key_id, latest)
    identifiers = await store.locate(tenant, [], 0, None)
    report.objects = len(identifiers)
    slots = DeferredSemaphore(max(1, concurrency))

    async def one(unique_identifier: str) -> None:
        obj = await store.get_object(tenant, unique_identifier)
        if obj is None or obj.wrapped_material is None:
            report.without_material += 1
            return
        old = bytes(obj.wrapped_material)
        if latest and wrapper.key_version(old) == latest:
            report.current += 1
            return
        aad = aad_for(tenant, unique_identifier)
        try:
            new = await wrapper.rewrap(old, aad)
        except WrappingError as error:
            report.failed.append((unique_identifier, str(error)))
            return
        if await store.replace_wrapped_material(
            tenant, unique_identifier, old, new, wrapper.key_version(new)
        ):
            report.rewrapped += 1
        else:
            report.changed_meanwhile += 1

    async def bounded(unique_identifier: str) -> None:
        await slots.acquire()
        try:
            await one(unique_identifier)
        finally:
            slots.release()

    await gatherResults([Deferred.fromCoroutine(bounded(uid)) for uid in identifiers])
    _log.info(
        "Rewrapped {rewrapped} of {objects} objects of tenant {tenant} by root key "
        "{root_key_id} version {version} ({current} already current, {failed} failed)",
        rewrapped=report.rewrapped,
        objects=report.objects,
        tenant=tenant,
        root_key_id=report.root_key_id,
        version=latest,
        current=report.current,
        failed=len(report.failed),
    )
    return report
