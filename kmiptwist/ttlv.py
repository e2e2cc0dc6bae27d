"""The KMIP TTLV codec: bytes to item trees and back, with strict bounds.

Pure Python, no Twisted: every layer above uses it, and it sits on the hot path,
so decoding is a single pass with ``struct.unpack_from`` over one buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

__all__ = [
    "ItemType",
    "Item",
    "TTLVError",
    "Limits",
    "DEFAULT_LIMITS",
    "decode",
    "encode",
    "structure",
    "integer",
    "long_integer",
    "big_integer",
    "enumeration",
    "boolean",
    "text_string",
    "byte_string",
    "date_time",
    "interval",
    "date_time_extended",
]


class ItemType:
    """The TTLV item types (KMIP 1.x section 9.1.1.2; 2.x adds Date-Time Extended)."""

    STRUCTURE = 0x01
    INTEGER = 0x02
    LONG_INTEGER = 0x03
    BIG_INTEGER = 0x04
    ENUMERATION = 0x05
    BOOLEAN = 0x06
    TEXT_STRING = 0x07
    BYTE_STRING = 0x08
    DATE_TIME = 0x09
    INTERVAL = 0x0A
    DATE_TIME_EXTENDED = 0x0B

    NAMES = {
        0x01: "Structure",
        0x02: "Integer",
        0x03: "LongInteger",
        0x04: "BigInteger",
        0x05: "Enumeration",
        0x06: "Boolean",
        0x07: "TextString",
        0x08: "ByteString",
        0x09: "DateTime",
        0x0A: "Interval",
        0x0B: "DateTimeExtended",
    }
    BY_NAME = {name: value for value, name in NAMES.items()}


class TTLVError(ValueError):
    """Bytes that are not valid TTLV, or that exceed a configured bound."""


class Limits(NamedTuple):
    """Bounds that keep a hostile peer from exhausting memory or stack."""

    max_length: int = 1 << 20
    max_depth: int = 32
    max_items: int = 100_000


DEFAULT_LIMITS = Limits()


class Item(NamedTuple):
    """One TTLV item: a tag, a type and a Python value.

    Structures hold a list of items; integers, enumerations, intervals and dates
    (seconds since the epoch) hold ``int``; booleans ``bool``; text ``str``;
    byte strings ``bytes``.
    """

    tag: int
    type: int
    value: Any

    def find(self, tag: int) -> Item | None:
        """The first child with ``tag``, or None (structures only)."""
        for child in self.value:
            if child.tag == tag:
                return child
        return None

    def find_all(self, tag: int) -> list[Item]:
        """Every child with ``tag``, in order."""
        return [child for child in self.value if child.tag == tag]

    def get(self, tag: int, default: Any = None) -> Any:
        """The value of the first child with ``tag``, or ``default``."""
        for child in self.value:
            if child.tag == tag:
                return child.value
        return default

    def walk(self) -> Iterator[Item]:
        """This item and every item below it, depth first."""
        yield self
        if self.type == ItemType.STRUCTURE:
            for child in self.value:
                yield from child.walk()


# -- constructors -----------------------------------------------------------


def structure(tag: int, children: list[Item]) -> Item:
    """A Structure item."""
    return Item(tag, ItemType.STRUCTURE, children)


def integer(tag: int, value: int) -> Item:
    """An Integer (signed 32-bit) item."""
    return Item(tag, ItemType.INTEGER, value)


def long_integer(tag: int, value: int) -> Item:
    """A Long Integer (signed 64-bit) item."""
    return Item(tag, ItemType.LONG_INTEGER, value)


def big_integer(tag: int, value: int) -> Item:
    """A Big Integer (two's complement, multiple of 8 bytes) item."""
    return Item(tag, ItemType.BIG_INTEGER, value)


def enumeration(tag: int, value: int) -> Item:
    """An Enumeration (unsigned 32-bit) item."""
    return Item(tag, ItemType.ENUMERATION, int(value))


def boolean(tag: int, value: bool) -> Item:
    """A Boolean item."""
    return Item(tag, ItemType.BOOLEAN, bool(value))


def text_string(tag: int, value: str) -> Item:
    """A Text String (UTF-8) item."""
    return Item(tag, ItemType.TEXT_STRING, value)


def byte_string(tag: int, value: bytes) -> Item:
    """A Byte String item."""
    return Item(tag, ItemType.BYTE_STRING, bytes(value))


def date_time(tag: int, value: int) -> Item:
    """A Date-Time item (POSIX seconds)."""
    return Item(tag, ItemType.DATE_TIME, int(value))


def interval(tag: int, value: int) -> Item:
    """An Interval item (seconds, unsigned 32-bit)."""
    return Item(tag, ItemType.INTERVAL, value)


def date_time_extended(tag: int, value: int) -> Item:
    """A Date-Time Extended item (POSIX microseconds, KMIP 2.x)."""
    return Item(tag, ItemType.DATE_TIME_EXTENDED, int(value))


# -- decoding ---------------------------------------------------------------

_unpack_header = struct.Struct(">I").unpack_from
_unpack_i32 = struct.Struct(">i").unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_i64 = struct.Struct(">q").unpack_from
_unpack_u64 = struct.Struct(">Q").unpack_from

_FIXED_LENGTH = {
    ItemType.INTEGER: 4,
    ItemType.LONG_INTEGER: 8,
    ItemType.ENUMERATION: 4,
    ItemType.BOOLEAN: 8,
    ItemType.DATE_TIME: 8,
    ItemType.INTERVAL: 4,
    ItemType.DATE_TIME_EXTENDED: 8,
}


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Item:
    """Decode exactly one TTLV item from ``data``; trailing bytes are an error."""
    if len(data) > limits.max_length:
        raise TTLVError(f"message of {len(data)} bytes exceeds the maximum of {limits.max_length}")
    view = memoryview(data)
    counter = [0]
    item, end = _decode_item(view, 0, len(data), 0, limits, counter)
    if end != len(data):
        raise TTLVError(f"{len(data) - end} trailing bytes after the message")
    return item


def _decode_item(
    data: memoryview, offset: int, limit: int, depth: int, limits: Limits, counter: list[int]
) -> tuple[Item, int]:
    """Decode the item at ``offset`` that must end by ``limit``."""
    if limit - offset < 8:
        raise TTLVError(f"truncated item header at byte {offset}")
    counter[0] += 1
    if counter[0] > limits.max_items:
        raise TTLVError(f"more than {limits.max_items} items in one message")
    word = _unpack_header(data, offset)[0]
    tag = word >> 8
    item_type = word & 0xFF
    length = _unpack_u32(data, offset + 4)[0]
    start = offset + 8
    if tag >> 16 != 0x42 and tag >> 16 != 0x54:
        raise TTLVError(f"invalid tag 0x{tag:06X} at byte {offset}")
    if item_type == ItemType.STRUCTURE:
        if length % 8:
            raise TTLVError(f"structure 0x{tag:06X} has a length of {length}, not a multiple of 8")
        end = start + length
        if end > limit:
            raise TTLVError(
                f"structure 0x{tag:06X} claims {length} bytes, only {limit - start} remain"
            )
        if depth >= limits.max_depth:
            raise TTLVError(f"structures nested deeper than {limits.max_depth}")
        children = []
        position = start
        while position < end:
            child, position = _decode_item(data, position, end, depth + 1, limits, counter)
            children.append(child)
        return Item(tag, item_type, children), end
    padded = (length + 7) & ~7
    end = start + padded
    if end > limit:
        raise TTLVError(f"item 0x{tag:06X} claims {length} bytes, only {limit - start} remain")
    fixed = _FIXED_LENGTH.get(item_type)
    if fixed is not None and length != fixed:
        raise TTLVError(
            f"item 0x{tag:06X} of type {ItemType.NAMES[item_type]} has length {length}, "
            f"expected {fixed}"
        )
    if item_type == ItemType.INTEGER:
        value: Any = _unpack_i32(data, start)[0]
    elif item_type == ItemType.ENUMERATION or item_type == ItemType.INTERVAL:
        value = _unpack_u32(data, start)[0]
    elif item_type == ItemType.TEXT_STRING:
        try:
            value = str(data[start : start + length], "utf-8")
        except UnicodeDecodeError:
            raise TTLVError(f"text string 0x{tag:06X} is not valid UTF-8") from None
    elif item_type == ItemType.BYTE_STRING:
        value = bytes(data[start : start + length])
    elif item_type == ItemType.LONG_INTEGER:
        value = _unpack_i64(data, start)[0]
    elif item_type == ItemType.DATE_TIME or item_type == ItemType.DATE_TIME_EXTENDED:
        value = _unpack_i64(data, start)[0]
    elif item_type == ItemType.BOOLEAN:
        raw = _unpack_u64(data, start)[0]
        if raw > 1:
            raise TTLVError(f"boolean 0x{tag:06X} has value {raw}, expected 0 or 1")
        value = raw == 1
    elif item_type == ItemType.BIG_INTEGER:
        if length % 8 or length == 0:
            raise TTLVError(f"big integer 0x{tag:06X} has length {length}, not a multiple of 8")
        value = int.from_bytes(data[start : start + length], "big", signed=True)
    else:
        raise TTLVError(f"item 0x{tag:06X} has unknown type 0x{item_type:02X}")
    return Item(tag, item_type, value), end


# -- encoding ---------------------------------------------------------------

_pack_header = struct.Struct(">II").pack
_pack_i32_pad = struct.Struct(">i4x").pack
_pack_u32_pad = struct.Struct(">I4x").pack
_pack_i64 = struct.Struct(">q").pack
_PAD = b"\x00" * 8


def encode(item: Item) -> bytes:
    """Encode one item (and everything below it) to TTLV bytes."""
    parts: list[bytes] = []
    _encode_into(item, parts)
    return b"".join(parts)


def _encode_into(item: Item, parts: list[bytes]) -> int:
    """Append the encoding of ``item`` to ``parts``; return its encoded size."""
    tag, item_type, value = item
    head = (tag << 8) | item_type
    if item_type == ItemType.STRUCTURE:
        index = len(parts)
        parts.append(b"")
        size = 0
        for child in value:
            size += _encode_into(child, parts)
        parts[index] = _pack_header(head, size)
        return size + 8
    if item_type == ItemType.ENUMERATION or item_type == ItemType.INTERVAL:
        if not 0 <= value <= 0xFFFFFFFF:
            raise TTLVError(f"value {value} of 0x{tag:06X} does not fit an unsigned 32-bit field")
        parts.append(_pack_header(head, 4) + _pack_u32_pad(value))
        return 16
    if item_type == ItemType.TEXT_STRING:
        raw = value.encode("utf-8")
    elif item_type == ItemType.BYTE_STRING:
        raw = value
    elif item_type == ItemType.INTEGER:
        if not -0x80000000 <= value <= 0x7FFFFFFF:
            raise TTLVError(f"value {value} of 0x{tag:06X} does not fit a signed 32-bit field")
        parts.append(_pack_header(head, 4) + _pack_i32_pad(value))
        return 16
    elif item_type in (ItemType.LONG_INTEGER, ItemType.DATE_TIME, ItemType.DATE_TIME_EXTENDED):
        parts.append(_pack_header(head, 8) + _pack_i64(value))
        return 16
    elif item_type == ItemType.BOOLEAN:
        parts.append(_pack_header(head, 8) + (b"\x00" * 7 + (b"\x01" if value else b"\x00")))
        return 16
    elif item_type == ItemType.BIG_INTEGER:
        size = max(8, ((value.bit_length() + 8) // 8 + 7) & ~7)
        parts.append(_pack_header(head, size) + value.to_bytes(size, "big", signed=True))
        return 8 + size
    else:
        raise TTLVError(f"cannot encode item type 0x{item_type:02X}")
    length = len(raw)
    pad = -length & 7
    parts.append(_pack_header(head, length) + raw + _PAD[:pad])
    return 8 + length + pad
