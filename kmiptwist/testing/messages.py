"""Build KMIP requests and read responses at the TTLV level, for tests and benchmarks.

This is a client's view written independently of the server's message layer, so
that tests exercise the server's parsing rather than mirror it.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field

from kmiptwist import ttlv
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import ResultStatus
from kmiptwist.vocabulary.tags import Tag

__all__ = ["request", "BatchResult", "read_response", "attribute_1x", "template_1x", "name_1x"]


def request(
    version: tuple[int, int],
    items: list[tuple[int, list[Item] | None, bytes | None]],
    batch_count: int | None = None,
    header_extra: list[Item] | None = None,
) -> bytes:
    """A Request Message: ``items`` are (operation, payload children or None, batch id)."""
    header = [
        ttlv.structure(
            Tag.PROTOCOL_VERSION,
            [
                ttlv.integer(Tag.PROTOCOL_VERSION_MAJOR, version[0]),
                ttlv.integer(Tag.PROTOCOL_VERSION_MINOR, version[1]),
            ],
        ),
        *(header_extra or []),
        ttlv.integer(Tag.BATCH_COUNT, len(items) if batch_count is None else batch_count),
    ]
    children = [ttlv.structure(Tag.REQUEST_HEADER, header)]
    for operation, payload, batch_id in items:
        fields = [ttlv.enumeration(Tag.OPERATION, operation)]
        if batch_id is not None:
            fields.append(ttlv.byte_string(Tag.UNIQUE_BATCH_ITEM_ID, batch_id))
        if payload is not None:
            fields.append(ttlv.structure(Tag.REQUEST_PAYLOAD, payload))
        children.append(ttlv.structure(Tag.BATCH_ITEM, fields))
    return ttlv.encode(ttlv.structure(Tag.REQUEST_MESSAGE, children))


@define
class BatchResult:
    """One response batch item, read loosely."""

    operation: int | None
    status: int
    reason: int | None
    message: str | None
    batch_id: bytes | None
    payload: Item | None

    @property
    def ok(self) -> bool:
        """True when the item succeeded."""
        return self.status == ResultStatus.SUCCESS

    def get(self, tag: int, default: Any = None) -> Any:
        """A payload field's value."""
        return self.payload.get(tag, default) if self.payload is not None else default


@define
class Response:
    """A Response Message: its version and batch items."""

    version: tuple[int, int]
    items: list[BatchResult] = field(factory=list)


def read_response(data: bytes) -> Response:
    """Decode a Response Message."""
    message = ttlv.decode(data)
    assert message.tag == Tag.RESPONSE_MESSAGE, hex(message.tag)
    header = message.find(Tag.RESPONSE_HEADER)
    assert header is not None
    version_item = header.find(Tag.PROTOCOL_VERSION)
    assert version_item is not None
    version = (
        version_item.get(Tag.PROTOCOL_VERSION_MAJOR),
        version_item.get(Tag.PROTOCOL_VERSION_MINOR),
    )
    response = Response(version)
    for item in message.find_all(Tag.BATCH_ITEM):
        response.items.append(
            BatchResult(
                operation=item.get(Tag.OPERATION),
                status=item.get(Tag.RESULT_STATUS),
                reason=item.get(Tag.RESULT_REASON),
                message=item.get(Tag.RESULT_MESSAGE),
                batch_id=item.get(Tag.UNIQUE_BATCH_ITEM_ID),
                payload=item.find(Tag.RESPONSE_PAYLOAD),
            )
        )
    assert header.get(Tag.BATCH_COUNT) == len(response.items)
    return response


def attribute_1x(name: str, value: Item, index: int | None = None) -> Item:
    """A 1.x Attribute structure."""
    children = [ttlv.text_string(Tag.ATTRIBUTE_NAME, name)]
    if index is not None:
        children.append(ttlv.integer(Tag.ATTRIBUTE_INDEX, index))
    children.append(Item(Tag.ATTRIBUTE_VALUE, value.type, value.value))
    return ttlv.structure(Tag.ATTRIBUTE, children)


def template_1x(attributes: list[Item]) -> Item:
    """A 1.x Template-Attribute of Attribute structures."""
    return ttlv.structure(Tag.TEMPLATE_ATTRIBUTE, attributes)


def name_1x(text: str) -> Item:
    """A Name attribute value (uninterpreted text string)."""
    return ttlv.structure(
        Tag.NAME,
        [ttlv.text_string(Tag.NAME_VALUE, text), ttlv.enumeration(Tag.NAME_TYPE, 1)],
    )
