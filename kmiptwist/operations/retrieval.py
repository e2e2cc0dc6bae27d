"""Get: return an object's value, unwrapped, in the Key Format Type asked for."""

from __future__ import annotations

from kmiptwist import keyblocks, ttlv
from kmiptwist.errors import KMIPError
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, number, uid_item
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import Operation, ResultReason
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS"]


async def get(context: RequestContext, payload: Item) -> Payload:
    """Get: any state that still has material (vCenter gets Pre-Active keys)."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    requested_format = number(payload, Tag.KEY_FORMAT_TYPE, "Key Format Type", ItemType.ENUMERATION)
    if payload.find(Tag.KEY_WRAPPING_SPECIFICATION) is not None:
        raise KMIPError(
            ResultReason.FEATURE_NOT_SUPPORTED,
            "Get with a Key Wrapping Specification is not supported; keys are returned over TLS",
        )
    if payload.find(Tag.KEY_COMPRESSION_TYPE) is not None:
        raise KMIPError(
            ResultReason.KEY_COMPRESSION_TYPE_NOT_SUPPORTED, "key compression is not supported"
        )
    obj = await context.load(unique_identifier)
    stored = ttlv.decode(await context.material(obj))
    value = keyblocks.for_get(stored, requested_format)
    return [
        ttlv.enumeration(Tag.OBJECT_TYPE, obj.object_type),
        uid_item(unique_identifier),
        value,
    ]


HANDLERS = [OperationHandler(Operation.GET, get)]
