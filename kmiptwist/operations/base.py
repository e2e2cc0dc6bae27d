"""What every operation handler shares: the request context, loading and saving
objects of the caller's tenant, and reaching their key material.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from attrs import define, frozen
from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from kmiptwist import ttlv
from kmiptwist.engine import Engine
from kmiptwist.errors import KMIPError, invalid_field, item_not_found
from kmiptwist.interfaces import IRemoteRootKey
from kmiptwist.messages import ProtocolVersion, RequestHeader
from kmiptwist.objects import ManagedObject, apply_time
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import ENUM_VALUE_VERSIONS, Operation, ResultReason
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.wrapping import aad_for
from kmiptwist.wrapping.errors import DENIED, MATERIAL, SERVICE, WrappingError

__all__ = [
    "RequestContext",
    "OperationHandler",
    "Payload",
    "reason_in",
    "reason_for",
    "wrapping_failure",
]

Payload = list[Item]

_log = Logger()


@define
class RequestContext:
    """One request's view: the engine, the caller's tenant and version, the ID Placeholder."""

    engine: Engine
    tenant: str
    version: ProtocolVersion
    peer_fingerprint: str | None = None
    header: RequestHeader | None = None
    id_placeholder: str | None = None
    #: In a batch that may be undone (Batch Error Continuation Option Undo), the
    #: objects written so far, held back until the whole batch has succeeded.
    held: dict[str, tuple[ManagedObject, bool]] | None = None

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
        """The tenant's object, or Item (2.x: Object) Not Found — other tenants' objects
        do not exist."""
        if self.held is not None and unique_identifier in self.held:
            obj = _copy(self.held[unique_identifier][0])
        else:
            obj = await self.engine.store.get_object(self.tenant, unique_identifier)
        if obj is None:
            error = item_not_found(unique_identifier)
            error.reason = reason_in(self.version, "OBJECT_NOT_FOUND", error.reason)
            raise error
        apply_time(obj, self.now())
        return obj

    async def save(self, obj: ManagedObject) -> None:
        """Write the object back; success only once it is committed."""
        if self.held is not None:
            created = obj.unique_identifier in self.held and self.held[obj.unique_identifier][1]
            self.held[obj.unique_identifier] = (_copy(obj), created)
            return
        await self.engine.store.update_object(obj)

    async def add(self, obj: ManagedObject) -> None:
        """Store a new object; success only once it is committed."""
        if self.held is not None:
            self.held[obj.unique_identifier] = (_copy(obj), True)
            return
        await self.engine.store.add_object(obj)

    def hold_writes(self) -> None:
        """Hold every write of this batch back until :meth:`commit_held` (Undo)."""
        self.held = {}

    async def commit_held(self) -> None:
        """Write what the batch held back, in the order it was first written."""
        held, self.held = self.held or {}, None
        for obj, created in held.values():
            if created:
                await self.engine.store.add_object(obj)
            else:
                await self.engine.store.update_object(obj)

    def lock(self, unique_identifier: str) -> _ObjectLock:
        """A lock that serialises read-modify-write of one object within this process."""
        return _ObjectLock(self.engine, (self.tenant, unique_identifier))

    async def wrap(self, obj: ManagedObject, material: bytes) -> None:
        """Wrap ``material`` with the tenant's root key into ``obj`` (and its key version)."""
        try:
            wrapper = await self.engine.root_keys.for_tenant(self.tenant)
            wrapped = await wrapper.wrap(material, aad_for(self.tenant, obj.unique_identifier))
        except WrappingError as error:
            raise wrapping_failure(error, "cannot wrap key material") from None
        obj.wrapped_material = wrapped
        obj.root_key_version = (
            wrapper.key_version(wrapped) if IRemoteRootKey.providedBy(wrapper) else None
        )

    async def material(self, obj: ManagedObject) -> bytes:
        """The object's unwrapped material, through the bounded cache.

        Material unwrapped with a root key that was rotated since it was wrapped comes
        back rewrapped: the new form is stored (in place of the old, if it is still
        there) before the material is returned.  Material served from the cache is
        checked against the root key's state when the root key asks for it
        (``[cache] verify_on_get``).
        """
        if obj.wrapped_material is None:
            raise KMIPError(
                reason_in(self.version, "OBJECT_DESTROYED", ResultReason.PERMISSION_DENIED),
                f"object {obj.unique_identifier} has no key material (it was destroyed)",
            )
        wrapped = obj.wrapped_material
        what = f"cannot unwrap the key material of {obj.unique_identifier}"
        try:
            wrapper = await self.engine.root_keys.for_tenant(self.tenant)
        except WrappingError as error:
            raise wrapping_failure(error, what) from None
        aad = aad_for(self.tenant, obj.unique_identifier)
        loaded = False

        async def load() -> bytes:
            nonlocal loaded
            loaded = True
            try:
                result = await wrapper.unwrap(wrapped, aad)
            except WrappingError as error:
                raise wrapping_failure(error, what) from None
            if result.rewrapped is not None:
                await self._store_rewrapped(obj, wrapped, result.rewrapped, wrapper)
            return result.material

        cache: Any = self.engine.cache
        material: bytes = await cache.get((self.tenant, obj.unique_identifier), load)
        if not loaded:
            await self._check_root_key(wrapper, what)
        return material

    async def check_root_key(self, what: str) -> None:
        """Before serving something made from cached material: the tenant's root key
        still allows it (for a remote root key with ``verify_on_get``, Key Protect is
        asked, at most once per check interval).  ``what`` starts the error message."""
        try:
            wrapper = await self.engine.root_keys.for_tenant(self.tenant)
        except WrappingError as error:
            raise wrapping_failure(error, what) from None
        await self._check_root_key(wrapper, what)

    @staticmethod
    async def _check_root_key(wrapper: Any, what: str) -> None:
        if IRemoteRootKey.providedBy(wrapper):
            try:
                await wrapper.check_usable()
            except WrappingError as error:
                raise wrapping_failure(error, what) from None

    async def _store_rewrapped(
        self, obj: ManagedObject, old: bytes, new: bytes, wrapper: Any
    ) -> None:
        """Keep the rewrapped form of ``obj``'s material; a failure only costs a rewrap."""
        version = wrapper.key_version(new) if IRemoteRootKey.providedBy(wrapper) else None
        try:
            swapped = await self.engine.store.replace_wrapped_material(
                self.tenant, obj.unique_identifier, old, new, version
            )
        except Exception:
            _log.failure(
                "Could not store the rewrapped material of {uid} ({tenant})",
                uid=obj.unique_identifier,
                tenant=self.tenant,
            )
            return
        if obj.wrapped_material == old:
            obj.wrapped_material, obj.root_key_version = new, version
        _log.info(
            "Stored the material of {uid} ({tenant}) rewrapped by root key version {version}{note}",
            uid=obj.unique_identifier,
            tenant=self.tenant,
            version=version,
            note="" if swapped else " (not stored: the object changed meanwhile)",
        )

    def forget_material(self, obj: ManagedObject) -> None:
        """Drop the object's unwrapped material from the cache (destroy, revoke)."""
        cache: Any = self.engine.cache
        cache.invalidate((self.tenant, obj.unique_identifier))


def _copy(obj: ManagedObject) -> ManagedObject:
    """A copy whose attribute lists can change without changing ``obj``."""
    return ManagedObject(
        unique_identifier=obj.unique_identifier,
        tenant=obj.tenant,
        object_type=obj.object_type,
        attributes={name: list(items) for name, items in obj.attributes.items()},
        wrapped_material=obj.wrapped_material,
        revision=obj.revision,
        root_key_version=obj.root_key_version,
    )


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


def wrapping_failure(error: WrappingError, what: str) -> KMIPError:
    """The KMIP error for a root key failure: Permission Denied when the root key is
    disabled or deleted, Cryptographic Failure when the material itself does not
    unwrap, General Failure when the root key service failed."""
    kind = getattr(error, "kind", MATERIAL if error.permanent else SERVICE)
    if kind == DENIED:
        reason = ResultReason.PERMISSION_DENIED
    elif kind == MATERIAL:
        reason = ResultReason.CRYPTOGRAPHIC_FAILURE
    else:
        reason = ResultReason.GENERAL_FAILURE
    return KMIPError(reason, f"{what}: {error}")


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
    #: For an operation the configuration turns on or off: whether it is on.
    enabled: Callable[[Engine], bool] | None = None

    def supports(self, version: ProtocolVersion) -> bool:
        """Whether a client speaking ``version`` may call this operation."""
        return self.minimum <= version <= self.maximum

    def offered(self, version: ProtocolVersion, engine: Engine) -> bool:
        """Whether this server offers the operation to a client of ``version`` (Query)."""
        return self.supports(version) and (self.enabled is None or self.enabled(engine))

    async def run(self, context: RequestContext, payload: Item) -> Payload:
        """Run the operation; raises KMIPError on failure."""
        if self.enabled is not None and not self.enabled(context.engine):
            raise KMIPError(
                ResultReason.OPERATION_NOT_SUPPORTED,
                f"operation {_operation_name(self.operation)} is turned off on this server",
            )
        return await self.run_function(context, payload)


def _operation_name(operation: int) -> str:
    try:
        return Operation(operation).name
    except ValueError:
        return f"0x{operation:08X}"


#: What a Result Reason a KMIP 1.x client's version lacks becomes for that client.
_REASONS_1X: dict[int, int] = {
    ResultReason.OBJECT_NOT_FOUND: ResultReason.ITEM_NOT_FOUND,
    ResultReason.WRONG_KEY_LIFECYCLE_STATE: ResultReason.PERMISSION_DENIED,
    ResultReason.OBJECT_DESTROYED: ResultReason.PERMISSION_DENIED,
    ResultReason.ATTRIBUTE_READ_ONLY: ResultReason.PERMISSION_DENIED,
    ResultReason.READ_ONLY_ATTRIBUTE: ResultReason.PERMISSION_DENIED,
    ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK: ResultReason.PERMISSION_DENIED,
    ResultReason.USAGE_LIMIT_EXCEEDED: ResultReason.PERMISSION_DENIED,
    ResultReason.SENSITIVE: ResultReason.PERMISSION_DENIED,
    ResultReason.NOT_EXTRACTABLE: ResultReason.PERMISSION_DENIED,
    ResultReason.NOT_AUTHORISED: ResultReason.PERMISSION_DENIED,
    ResultReason.ATTRIBUTE_SINGLE_VALUED: ResultReason.INDEX_OUT_OF_BOUNDS,
    ResultReason.ATTRIBUTE_INSTANCE_NOT_FOUND: ResultReason.INDEX_OUT_OF_BOUNDS,
    ResultReason.ATTRIBUTE_NOT_FOUND: ResultReason.ITEM_NOT_FOUND,
}


def reason_for(version: ProtocolVersion, reason: int) -> int:
    """``reason`` as a client of ``version`` may be sent it.

    A reason its version does not define becomes the nearest one it does (KMIP 1.x
    says Permission Denied where 2.x says Wrong Key Lifecycle State), else Invalid
    Field, or General Failure for a server-side error.
    """
    versions = ENUM_VALUE_VERSIONS.get(("ResultReason", int(reason)))
    if versions is None or version.spec in versions:
        return reason
    if version.is_2x:
        return ResultReason.GENERAL_FAILURE
    return _REASONS_1X.get(reason, ResultReason.INVALID_FIELD)


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
