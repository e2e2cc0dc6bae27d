"""Operations about using an object: Check (may the client use it so?) and Obtain
Lease (for how long may it keep using it?)."""

from __future__ import annotations

from kmiptwist import ttlv
from kmiptwist.errors import KMIPError
from kmiptwist.operations.base import (
    OperationHandler,
    Payload,
    RequestContext,
    number,
    reason_in,
    uid_item,
)
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import Operation, ResultReason, State
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS"]

_DESTROYED = frozenset({State.DESTROYED, State.DESTROYED_COMPROMISED})


async def check(context: RequestContext, payload: Item) -> Payload:
    """Check: may the object be used for this usage mask, lease and usage amount?

    A denial empties the ID Placeholder, so a Get batched after the Check does not
    run on an object the client may not use.
    """
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    mask = number(payload, Tag.CRYPTOGRAPHIC_USAGE_MASK, "Cryptographic Usage Mask")
    lease = number(payload, Tag.LEASE_TIME, "Lease Time", ItemType.INTERVAL)
    count = number(payload, Tag.USAGE_LIMITS_COUNT, "Usage Limits Count", ItemType.LONG_INTEGER)
    obj = await context.load(unique_identifier)
    try:
        if mask is not None:
            allowed = obj.value("Cryptographic Usage Mask", 0)
            missing = (mask & ~allowed) & 0xFFFFFFFF
            if missing:
                raise KMIPError(
                    reason_in(
                        context.version,
                        "INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK",
                        ResultReason.PERMISSION_DENIED,
                    ),
                    f"{unique_identifier} may not be used for usage mask 0x{missing:08X}",
                )
        if lease is not None:
            granted = obj.value("Lease Time")
            if granted is not None and granted != 0 and lease > granted:
                raise KMIPError(
                    ResultReason.PERMISSION_DENIED,
                    f"{unique_identifier} is leased for at most {granted} seconds",
                )
        if count is not None:
            limits = obj.values("Usage Limits")
            remaining = limits[0].get(Tag.USAGE_LIMITS_COUNT) if limits else None
            if isinstance(remaining, int) and count > remaining:
                raise KMIPError(
                    reason_in(
                        context.version, "USAGE_LIMIT_EXCEEDED", ResultReason.PERMISSION_DENIED
                    ),
                    f"{unique_identifier} has {remaining} uses left",
                )
    except KMIPError:
        context.id_placeholder = None
        raise
    context.id_placeholder = unique_identifier
    return [uid_item(unique_identifier)]


async def obtain_lease(context: RequestContext, payload: Item) -> Payload:
    """Obtain Lease: the object's Lease Time (0: no limit) and Last Change Date."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    obj = await context.load(unique_identifier)
    if obj.state in _DESTROYED:
        raise KMIPError(
            reason_in(context.version, "OBJECT_DESTROYED", ResultReason.PERMISSION_DENIED),
            f"{unique_identifier} is destroyed: no lease is granted",
        )
    return [
        uid_item(unique_identifier),
        ttlv.interval(Tag.LEASE_TIME, obj.value("Lease Time", 0)),
        ttlv.date_time(Tag.LAST_CHANGE_DATE, obj.value("Last Change Date", context.now())),
    ]


HANDLERS = [
    OperationHandler(Operation.CHECK, check),
    OperationHandler(Operation.OBTAIN_LEASE, obtain_lease),
]
