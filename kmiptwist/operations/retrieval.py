"""Get: return an object's value in the Key Format Type asked for, in the clear (over
TLS) or wrapped by another key when the request has a Key Wrapping Specification."""

from __future__ import annotations

from kmiptwist import keyblocks, server_attributes, ttlv
from kmiptwist.errors import KMIPError
from kmiptwist.operations.base import (
    OperationHandler,
    Payload,
    RequestContext,
    number,
    reason_in,
    uid_item,
)
from kmiptwist.operations.keywrapping import wrap_for_get
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import Operation, ResultReason
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS"]


async def get(context: RequestContext, payload: Item) -> Payload:
    """Get: any state that still has material (vCenter gets Pre-Active keys)."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    requested_format = number(payload, Tag.KEY_FORMAT_TYPE, "Key Format Type", ItemType.ENUMERATION)
    wrapping = payload.find(Tag.KEY_WRAPPING_SPECIFICATION)
    if payload.find(Tag.KEY_COMPRESSION_TYPE) is not None:
        raise KMIPError(
            ResultReason.KEY_COMPRESSION_TYPE_NOT_SUPPORTED, "key compression is not supported"
        )
    obj = await context.load(unique_identifier)
    if obj.value("Sensitive") is True and wrapping is None:
        raise KMIPError(
            reason_in(context.version, "SENSITIVE", ResultReason.PERMISSION_DENIED),
            f"{unique_identifier} is Sensitive: its value is never returned in the clear",
        )
    if obj.value("Extractable") is False:
        raise KMIPError(
            reason_in(context.version, "NOT_EXTRACTABLE", ResultReason.PERMISSION_DENIED),
            f"{unique_identifier} is not Extractable",
        )
    stored = ttlv.decode(await context.material(obj))
    if requested_format is None:
        # As the client registered it (a Transparent Symmetric Key comes back so).
        requested_format = obj.value("Key Format Type")
    value = keyblocks.for_get(stored, requested_format)
    if wrapping is not None:
        # A Sensitive key may leave the server wrapped, never in the clear.
        value = await wrap_for_get(context, obj, value, wrapping)
    if obj.value("Fresh") is not False:
        # The first Get serves the value: the object is no longer Fresh.
        async with context.lock(unique_identifier):
            current = await context.load(unique_identifier)
            if server_attributes.served(current):
                await context.save(current)
    return [
        ttlv.enumeration(Tag.OBJECT_TYPE, obj.object_type),
        uid_item(unique_identifier),
        value,
    ]


HANDLERS = [OperationHandler(Operation.GET, get)]
