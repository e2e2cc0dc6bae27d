"""What every cryptographic operation checks before it uses a key, and the state it keeps.

A key is used to *protect* (Encrypt, Sign, MAC) or to *process* what was
protected (Decrypt, Signature Verify, MAC Verify).  KMIP's rules, in order:

- the object must be of a type the operation takes (Invalid Object Type);
- protecting needs an Active key before its Protect Stop Date; processing needs a
  key that is Active, Deactivated or Compromised, after its Process Start Date
  (Wrong Key Lifecycle State; KMIP 1.x says Permission Denied);
- the key's Cryptographic Usage Mask must allow the operation (Incompatible
  Cryptographic Usage Mask; 1.x: Permission Denied) — a key created or registered
  without a usage mask is not restricted by one;
- protecting draws on the key's Usage Limits, if it has any (Permission Denied once
  they are used up).

The Cryptographic Parameters in effect are the request's, each field the request
leaves out taken from the key's Cryptographic Parameters attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from attrs import frozen

from kmiptwist import ttlv
from kmiptwist.cryptoparams import CryptographicParameters
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.objects import ManagedObject, state_name
from kmiptwist.operations.base import RequestContext, reason_in
from kmiptwist.streams import Stream
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import (
    CryptographicUsageMask,
    ObjectType,
    ResultReason,
    State,
    UsageLimitsUnit,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = [
    "KeyUse",
    "usable_key",
    "parameters",
    "byte_field",
    "run_blocking",
    "Parts",
    "parts_of",
    "open_stream",
    "continue_stream",
    "symmetric_material",
]

T = TypeVar("T")

_PROCESSING_STATES = frozenset({State.ACTIVE, State.DEACTIVATED, State.COMPROMISED})


@frozen
class KeyUse:
    """How an operation uses its key: its name, usage mask bit, purpose, object types."""

    operation: str
    usage: int
    protect: bool
    object_types: frozenset[int]


def _type_name(object_type: int) -> str:
    try:
        return ObjectType(object_type).name.replace("_", " ").title()
    except ValueError:
        return f"0x{object_type:08X}"


def _check_state(context: RequestContext, obj: ManagedObject, use: KeyUse) -> None:
    state = obj.state
    uid = obj.unique_identifier
    now = context.now()
    if use.protect:
        if state != State.ACTIVE:
            raise KMIPError(
                ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                f"{use.operation} needs an Active key; {uid} is {state_name(state)}",
            )
        stop = obj.value("Protect Stop Date")
        if stop is not None and stop <= now:
            raise KMIPError(
                ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                f"{uid}'s Protect Stop Date has passed: it may no longer be used for {use.operation}",
            )
        return
    if state not in _PROCESSING_STATES:
        raise KMIPError(
            ResultReason.WRONG_KEY_LIFECYCLE_STATE,
            f"{use.operation} needs an Active, Deactivated or Compromised key; {uid} is "
            f"{state_name(state)}",
        )
    start = obj.value("Process Start Date")
    if start is not None and start > now:
        raise KMIPError(
            ResultReason.WRONG_KEY_LIFECYCLE_STATE,
            f"{uid}'s Process Start Date has not come: it may not be used for {use.operation} yet",
        )


def _check_mask(context: RequestContext, obj: ManagedObject, use: KeyUse) -> None:
    mask = obj.value("Cryptographic Usage Mask")
    if mask is None or mask & use.usage or mask & CryptographicUsageMask.UNRESTRICTED:
        return
    raise KMIPError(
        reason_in(
            context.version,
            "INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK",
            ResultReason.PERMISSION_DENIED,
        ),
        f"{obj.unique_identifier}'s Cryptographic Usage Mask does not allow {use.operation}",
    )


async def usable_key(
    context: RequestContext, unique_identifier: str, use: KeyUse
) -> tuple[ManagedObject, Item]:
    """The key ``use`` may use, and its stored value; raises the reason it may not."""
    obj = await context.load(unique_identifier)
    if obj.object_type not in use.object_types:
        raise KMIPError(
            reason_in(context.version, "INVALID_OBJECT_TYPE", ResultReason.INVALID_FIELD),
            f"{use.operation} takes "
            + " or ".join(_type_name(t) for t in sorted(use.object_types))
            + f" objects; {unique_identifier} is a {_type_name(obj.object_type)}",
        )
    _check_state(context, obj, use)
    _check_mask(context, obj, use)
    stored = ttlv.decode(await context.material(obj))
    return obj, stored


async def draw_usage(context: RequestContext, obj: ManagedObject, data_length: int) -> None:
    """Take an allocation from the key's Usage Limits (protecting only), or refuse."""
    if not obj.values("Usage Limits"):
        return
    async with context.lock(obj.unique_identifier):
        current = await context.load(obj.unique_identifier)
        limits = current.values("Usage Limits")
        if not limits:
            return
        limit = limits[0]
        total = limit.get(Tag.USAGE_LIMITS_TOTAL)
        count = limit.get(Tag.USAGE_LIMITS_COUNT, total)
        unit = limit.get(Tag.USAGE_LIMITS_UNIT)
        amount = data_length if unit == UsageLimitsUnit.BYTE else 1
        if not isinstance(count, int) or count < amount:
            raise KMIPError(
                ResultReason.PERMISSION_DENIED,
                f"{obj.unique_identifier}'s Usage Limits are used up ({count} "
                f"{'bytes' if unit == UsageLimitsUnit.BYTE else 'uses'} left)",
            )
        children = [c for c in limit.value if c.tag != Tag.USAGE_LIMITS_COUNT]
        children.insert(1, ttlv.long_integer(Tag.USAGE_LIMITS_COUNT, count - amount))
        current.set("Usage Limits", ttlv.structure(Tag.USAGE_LIMITS, children))
        current.set_date("Last Change Date", context.now())
        await context.save(current)


def parameters(payload: Item, obj: ManagedObject) -> CryptographicParameters:
    """The request's Cryptographic Parameters over the key's attribute."""
    given = CryptographicParameters.from_item(payload.find(Tag.CRYPTOGRAPHIC_PARAMETERS))
    stored = obj.values("Cryptographic Parameters")
    if not stored:
        return given
    return given.over(CryptographicParameters.from_item(stored[0]))


def byte_field(payload: Item, tag: int, what: str, required: bool = False) -> bytes | None:
    """A Byte String field of the request."""
    found = payload.find(tag)
    if found is None:
        if required:
            raise invalid_field(f"{what} is required")
        return None
    if found.type != ItemType.BYTE_STRING:
        raise invalid_field(f"{what} must be a Byte String")
    return found.value


def symmetric_material(stored: Item) -> bytes:
    """The raw key bytes of a stored Symmetric Key."""
    block = stored.find(Tag.KEY_BLOCK)
    value = block.find(Tag.KEY_VALUE) if block is not None else None
    material = value.get(Tag.KEY_MATERIAL) if value is not None else None
    if not isinstance(material, bytes):
        raise KMIPError(ResultReason.KEY_VALUE_NOT_PRESENT, "the key has no raw key material")
    return material


async def run_blocking(context: RequestContext, function: Callable[[], T]) -> T:
    """Run CPU-heavy work (key pair generation) off the reactor thread when the server
    has a thread pool, else inline."""
    runner = context.engine.run_blocking
    if runner is None:
        return function()
    result: T = await runner(function)
    return result


# -- by-parts operations ----------------------------------------------------------------


@frozen
class Parts:
    """Where a request stands in a by-parts operation."""

    correlation: bytes | None
    init: bool
    final: bool

    @property
    def single(self) -> bool:
        """A whole operation in one request."""
        return self.correlation is None and not self.init


def _flag(payload: Item, tag: int, what: str) -> bool:
    found = payload.find(tag)
    if found is None:
        return False
    if found.type != ItemType.BOOLEAN:
        raise invalid_field(f"{what} must be a Boolean")
    return bool(found.value)


def parts_of(payload: Item) -> Parts:
    """The request's Correlation Value, Init Indicator and Final Indicator."""
    parts = Parts(
        byte_field(payload, Tag.CORRELATION_VALUE, "Correlation Value"),
        _flag(payload, Tag.INIT_INDICATOR, "Init Indicator"),
        _flag(payload, Tag.FINAL_INDICATOR, "Final Indicator"),
    )
    if parts.init and parts.correlation is not None:
        raise invalid_field(
            "a request with Init Indicator starts a new operation: no Correlation Value"
        )
    return parts


def open_stream(
    context: RequestContext, unique_identifier: str, operation: int, state: Any
) -> bytes:
    """Keep a by-parts operation's state; its Correlation Value for the client."""
    correlation = context.engine.streams.open(
        context.tenant, Stream(unique_identifier, operation, state, context.now()), context.now()
    )
    if correlation is None:
        raise KMIPError(
            reason_in(context.version, "SERVER_LIMIT_EXCEEDED", ResultReason.PERMISSION_DENIED),
            "too many by-parts operations are in progress; finish some or retry later",
        )
    return correlation


def continue_stream(
    context: RequestContext, parts: Parts, unique_identifier: str | None, operation: int
) -> tuple[str, Any]:
    """(key, state) of the by-parts operation the request continues; closed if final.

    The request may leave out the Unique Identifier: the operation knows its key.
    """
    assert parts.correlation is not None
    streams = context.engine.streams
    stream = streams.find(context.tenant, parts.correlation, context.now())
    if (
        stream is None
        or stream.operation != operation
        or unique_identifier not in (None, stream.unique_identifier)
    ):
        raise KMIPError(
            reason_in(context.version, "INVALID_CORRELATION_VALUE", ResultReason.INVALID_FIELD),
            "the Correlation Value names no operation of this kind on this key in progress "
            "(finished, timed out, or never started)",
        )
    if parts.final:
        streams.close(context.tenant, parts.correlation)
    return stream.unique_identifier, stream.context


def forget_stream(context: RequestContext, parts: Parts) -> None:
    """Drop a by-parts operation that failed."""
    if parts.correlation is not None:
        context.engine.streams.close(context.tenant, parts.correlation)


__all__ += ["draw_usage", "forget_stream"]
