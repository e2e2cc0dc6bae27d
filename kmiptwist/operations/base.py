"""What every operation handler shares: the request context, loading and saving
objects of the caller's tenant, and reaching their key material.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from attrs import define, frozen
from twisted.internet.defer import DeferredLock

from kmiptwist import ttlv
from kmiptwist.engine import Engine
from kmiptwist.errors import KMIPError, invalid_field, item_not_found
from kmiptwist.messages import ProtocolVersion, RequestHeader
from kmiptwist.objects import ManagedObject, apply_time
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import ENUM_VALUE_VERSIONS, ResultReason
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.wrapping import aad_for
from kmiptwist.wrapping.errors import WrappingError

__all__ = [
    "RequestContext",
    "OperationHandler",
    "Payload",
    "reason_in",
]

Payload = list[Item]


@define
class RequestContext:
    """One request's view: the engine, the caller's tenant and version, the ID Placeholder."""

    engine: Engine
    tenant: str
    version: ProtocolVersion
    peer_fingerprint: str | None = None
    header: RequestHeader | None = None
    id_placeholder: str | None = None

    def now(self) -> int:
        """The current time in whole seconds."""
        return self.engine.now()

    def unique_identifier(self, payload: Item, required: bool = True) -> str | None:
        """The Unique Identifier of the request, or the ID Placeholder when it is absent."""
        found = payload.find(Tag.UNIQUE_IDENTIFIER)
        if found is None:
            if self.id_placeholder is None and required:
                raise invalid_field(
                    "the request has no Unique Identifier and no earlier batch item set the ID Placeholder"
                )
            return self.id_placeholder
        if found.type == ItemType.TEXT_STRING:
            return found.value
        if found.type == ItemType.ENUMERATION and self.version.is_2x:
            # 2.x lets a Unique Identifier be the enumeration "ID Placeholder" (and
            # others that name earlier results, which all mean the placeholder here).
            if self.id_placeholder is None:
                raise invalid_field(
                    "Unique Identifier refers to the ID Placeholder, which is not set"
                )
            return self.id_placeholder
        raise invalid_field("Unique Identifier must be a Text String")

    async def load(self, unique_identifier: str) -> ManagedObject:
        """The tenant's object, or Item Not Found — other tenants' objects do not exist."""
        obj = await self.engine.store.get_object(self.tenant, unique_identifier)
        if obj is None:
            raise item_not_found(unique_identifier)
        apply_time(obj, self.now())
        return obj

    async def save(self, obj: ManagedObject) -> None:
        """Write the object back; success only once it is committed."""
        await self.engine.store.update_object(obj)

    def lock(self, unique_identifier: str) -> _ObjectLock:
        """A lock that serialises read-modify-write of one object within this process."""
        return _ObjectLock(self.engine, (self.tenant, unique_identifier))

    async def wrap(self, obj: ManagedObject, material: bytes) -> None:
        """Wrap ``material`` with the tenant's root key into ``obj``."""
        wrapper = self.engine.root_keys.for_tenant(self.tenant)
        try:
            obj.wrapped_material = await wrapper.wrap(
                material, aad_for(self.tenant, obj.unique_identifier)
            )
        except WrappingError as error:
            raise KMIPError(
                ResultReason.GENERAL_FAILURE, f"cannot wrap key material: {error}"
            ) from None

    async def material(self, obj: ManagedObject) -> bytes:
        """The object's unwrapped material, through the bounded cache."""
        if obj.wrapped_material is None:
            raise KMIPError(
                reason_in(self.version, "OBJECT_DESTROYED", ResultReason.PERMISSION_DENIED),
                f"object {obj.unique_identifier} has no key material (it was destroyed)",
            )
        wrapped = obj.wrapped_material
        wrapper = self.engine.root_keys.for_tenant(self.tenant)
        aad = aad_for(self.tenant, obj.unique_identifier)

        async def load() -> bytes:
            try:
                result = await wrapper.unwrap(wrapped, aad)
            except WrappingError as error:
                raise KMIPError(
                    ResultReason.CRYPTOGRAPHIC_FAILURE
                    if getattr(error, "permanent", False)
                    else ResultReason.GENERAL_FAILURE,
                    f"cannot unwrap the key material of {obj.unique_identifier}: {error}",
                ) from None
            return result.material

        cache: Any = self.engine.cache
        return await cache.get((self.tenant, obj.unique_identifier), load)

    def forget_material(self, obj: ManagedObject) -> None:
        """Drop the object's unwrapped material from the cache (destroy, revoke)."""
        cache: Any = self.engine.cache
        cache.invalidate((self.tenant, obj.unique_identifier))


_LOCKS: dict[tuple[str, str], tuple[DeferredLock, int]] = {}


@frozen
class _ObjectLock:
    """``async with`` one object's lock; the lock is dropped when nobody holds or waits."""

    engine: Engine
    key: tuple[str, str]

    async def __aenter__(self) -> None:
        lock, users = _LOCKS.get(self.key, (None, 0))
        if lock is None:
            lock = DeferredLock()
        _LOCKS[self.key] = (lock, users + 1)
        await lock.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        lock, users = _LOCKS[self.key]
        lock.release()
        if users == 1:
            del _LOCKS[self.key]
        else:
            _LOCKS[self.key] = (lock, users - 1)


def reason_in(version: ProtocolVersion, name: str, fallback: int) -> int:
    """The Result Reason ``name`` if the client's version defines it, else ``fallback``."""
    member = getattr(ResultReason, name, None)
    if member is None:
        return fallback
    versions = ENUM_VALUE_VERSIONS.get(("ResultReason", int(member)))
    if versions is not None and version.spec not in versions:
        return fallback
    return int(member)


@frozen
class OperationHandler:
    """One KMIP operation: its coroutine and the protocol versions that define it."""

    operation: int
    run_function: Callable[[RequestContext, Item], Awaitable[Payload]]
    minimum: ProtocolVersion = ProtocolVersion(1, 0)
    maximum: ProtocolVersion = ProtocolVersion(2, 1)

    def supports(self, version: ProtocolVersion) -> bool:
        """Whether a client speaking ``version`` may call this operation."""
        return self.minimum <= version <= self.maximum

    def run(self, context: RequestContext, payload: Item) -> Awaitable[Payload]:
        """Run the operation; raises KMIPError on failure."""
        return self.run_function(context, payload)


def text(payload: Item, tag: int, what: str, required: bool = False) -> str | None:
    """A Text String field of the payload, type-checked."""
    found = payload.find(tag)
    if found is None:
        if required:
            raise invalid_field(f"{what} is required")
        return None
    if found.type != ItemType.TEXT_STRING:
        raise invalid_field(f"{what} must be a Text String")
    return found.value


def number(payload: Item, tag: int, what: str, item_type: int = ItemType.INTEGER) -> int | None:
    """An Integer (or other numeric type) field of the payload, type-checked."""
    found = payload.find(tag)
    if found is None:
        return None
    if found.type != item_type:
        raise invalid_field(f"{what} must be of type {ItemType.NAMES[item_type]}")
    return found.value


def uid_item(unique_identifier: str) -> Item:
    """The Unique Identifier field of a response payload."""
    return ttlv.text_string(Tag.UNIQUE_IDENTIFIER, unique_identifier)
