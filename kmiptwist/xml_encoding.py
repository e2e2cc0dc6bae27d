"""The KMIP XML encoding (KMIP Profiles, "Additional Message Encodings"): XML ⇄ item trees.

Each TTLV item is one element: the element name is the tag's XML name
("UniqueIdentifier"), or ``TTLV`` with ``tag="0x54xxxx"`` for a tag without one (any
element may carry ``tag`` to name its tag by number); ``type`` names the item type
(omitted for a Structure); ``value`` holds the value:

- Integer, Long Integer, Interval: decimal, or ``0x`` hex; an Integer that is a bit
  mask (Cryptographic Usage Mask, ...) may be its flag names separated by spaces or
  ``|`` ("Encrypt Decrypt");
- Enumeration: the value's name ("SymmetricKey") or ``0x`` + 8 hex digits;
- Boolean: ``true`` / ``false``;
- Text String: the text; Byte String: hex;
- Big Integer: hex of the two's-complement value, padded to a multiple of 8 bytes;
- Date-Time: ISO 8601 ("2001-01-01T10:00:00+00:00"); Date-Time Extended: the same
  with microseconds.  A time that ISO 8601 cannot hold (before year 1, after 9999)
  is written as ``0x`` + 16 hex digits of the raw value, and read back from it.

Which enumeration an Enumeration value belongs to follows from its tag, or for a 1.x
``AttributeValue`` from the ``AttributeName`` beside it.  Pure: no Twisted import.
"""

from __future__ import annotations

import datetime
import enum
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import Any

from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.attributes import ATTRIBUTES_BY_NAME
from kmiptwist.vocabulary.enums import ENUM_BY_TAG, enum_from_xml_name, enum_xml_name
from kmiptwist.vocabulary.tags import TAG_BY_XML_NAME, TAG_XML_NAME, Tag

__all__ = [
    "XMLEncodingError",
    "Resolver",
    "element_to_item",
    "item_to_element",
    "loads",
    "dumps",
    "normalise_attribute_name",
]

#: Called for a value that starts with "$" (a test-case placeholder) with the value
#: text, the item type and the tag; what it returns becomes the item's value.
Resolver = Callable[[str, int, int], Any]


class XMLEncodingError(ValueError):
    """XML that is not a valid KMIP XML encoding, or an item that has none."""


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MIN_SECONDS = int((datetime.datetime(1, 1, 1, tzinfo=datetime.UTC) - _EPOCH).total_seconds())
_MAX_SECONDS = int(
    (datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC) - _EPOCH).total_seconds()
)
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT32 = (0, (1 << 32) - 1)
#: Characters an XML 1.0 document cannot hold, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def normalise_attribute_name(name: str) -> str:
    """Fold whitespace artefacts in an attribute name ("Cryptographic  Length ")."""
    return " ".join(name.split())


def _tag_of(element: ElementTree.Element) -> int:
    number = element.get("tag")
    if number is not None:
        try:
            tag = int(number, 16)
        except ValueError:
            raise XMLEncodingError(f"tag={number!r} is not a hex tag") from None
        if not 0 <= tag <= 0xFFFFFF:
            raise XMLEncodingError(f"tag={number!r} does not fit three bytes")
        return tag
    named = TAG_BY_XML_NAME.get(element.tag)
    if named is None:
        raise XMLEncodingError(f"<{element.tag}> is not a KMIP tag name")
    return int(named)


def _value_enum(tag: int, attribute_name: str | None) -> type | None:
    """The enumeration (or mask) of a value: by its tag, or by its 1.x attribute name."""
    if tag == Tag.ATTRIBUTE_VALUE:
        if attribute_name is None:
            return None
        rule = ATTRIBUTES_BY_NAME.get(normalise_attribute_name(attribute_name))
        return None if rule is None else ENUM_BY_TAG.get(rule.tag)
    return ENUM_BY_TAG.get(tag)


def _is_mask(cls: type | None) -> bool:
    return cls is not None and issubclass(cls, enum.IntFlag)


def _number(text: str, bounds: tuple[int, int], what: str, unsigned_hex: bool = True) -> int:
    """A decimal or 0x-hex number within ``bounds``; hex wraps to signed when needed."""
    try:
        if text[:2].lower() == "0x":
            value = int(text, 16)
            width = 64 if bounds[1] > (1 << 32) else 32
            if unsigned_hex and bounds[0] < 0 and value >= 1 << (width - 1):
                value -= 1 << width
        else:
            value = int(text, 10)
    except ValueError:
        raise XMLEncodingError(f"{what} value {text!r} is not a number") from None
    if not bounds[0] <= value <= bounds[1]:
        raise XMLEncodingError(f"{what} value {text!r} is out of range")
    return value


def _hex_bytes(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise XMLEncodingError(f"{what} value {text!r} is not hex") from None


def _parse_time(text: str, extended: bool) -> int:
    if text[:2].lower() == "0x":
        return _number(text, _INT64, "Date-Time")
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise XMLEncodingError(f"Date-Time value {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    delta = moment - _EPOCH
    if extended:
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return delta.days * 86400 + delta.seconds


def _format_time(value: int, extended: bool) -> str:
    seconds, micros = divmod(value, 1_000_000) if extended else (value, 0)
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        return f"0x{value & 0xFFFFFFFFFFFFFFFF:016X}"
    moment = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=micros)
    return moment.isoformat(timespec="microseconds" if extended else "seconds")


def _parse_value(text: str, item_type: int, tag: int, attribute_name: str | None) -> Any:
    """The Python value of a non-structure element's ``value`` text."""
    if item_type == ItemType.TEXT_STRING:
        return text
    if item_type == ItemType.BYTE_STRING:
        return _hex_bytes(text, "Byte String")
    if item_type == ItemType.ENUMERATION:
        cls = _value_enum(tag, attribute_name)
        if text[:2].lower() == "0x":
            return _number(text, _UINT32, "Enumeration")
        if cls is None:
            raise XMLEncodingError(f"Enumeration value {text!r} of 0x{tag:06X} has no names")
        try:
            return int(enum_from_xml_name(cls, text))
        except ValueError as error:
            raise XMLEncodingError(str(error)) from None
    if item_type == ItemType.INTEGER:
        stripped = text.strip()
        if stripped[:2].lower() == "0x" or stripped.lstrip("-").isdigit():
            return _number(stripped, _INT32, "Integer")
        cls = _value_enum(tag, attribute_name)
        if not _is_mask(cls):
            raise XMLEncodingError(f"Integer value {text!r} of 0x{tag:06X} is not a number")
        assert cls is not None
        try:
            value = enum_from_xml_name(cls, text)
        except ValueError as error:
            raise XMLEncodingError(str(error)) from None
        return value - (1 << 32) if value >= 1 << 31 else value
    if item_type == ItemType.LONG_INTEGER:
        return _number(text, _INT64, "Long Integer")
    if item_type == ItemType.INTERVAL:
        return _number(text, _UINT32, "Interval")
    if item_type == ItemType.BOOLEAN:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered[:2] == "0x":
            return _number(text, (0, 1), "Boolean") == 1
        raise XMLEncodingError(f"Boolean value {text!r} is not true or false")
    if item_type == ItemType.BIG_INTEGER:
        raw = _hex_bytes(text[2:] if text[:2].lower() == "0x" else text, "Big Integer")
        if not raw:
            raise XMLEncodingError("Big Integer value is empty")
        return int.from_bytes(raw, "big", signed=True)
    if item_type == ItemType.DATE_TIME:
        return _parse_time(text, extended=False)
    if item_type == ItemType.DATE_TIME_EXTENDED:
        return _parse_time(text, extended=True)
    raise XMLEncodingError(f"unknown item type 0x{item_type:02X}")


def element_to_item(
    element: ElementTree.Element,
    resolve: Resolver | None = None,
    attribute_name: str | None = None,
) -> Item:
    """The item an XML element encodes (and everything below it).

    ``resolve``, when given, supplies the value of every ``value`` that starts with
    "$" (the test cases' placeholders); without it such text is read literally.
    """
    tag = _tag_of(element)
    type_name = element.get("type", "Structure")
    item_type = ItemType.BY_NAME.get(type_name)
    if item_type is None:
        raise XMLEncodingError(f"<{element.tag}> has unknown type {type_name!r}")
    if item_type == ItemType.STRUCTURE:
        if element.get("value") is not None:
            raise XMLEncodingError(f"structure <{element.tag}> must not have a value")
        name_element = element.find("AttributeName")
        name = None if name_element is None else name_element.get("value")
        return Item(tag, item_type, [element_to_item(child, resolve, name) for child in element])
    if len(element):
        raise XMLEncodingError(f"<{element.tag}> of type {type_name} must not have children")
    text = element.get("value")
    if text is None:
        raise XMLEncodingError(f"<{element.tag}> of type {type_name} has no value")
    if resolve is not None and text.startswith("$"):
        return Item(tag, item_type, resolve(text, item_type, tag))
    return Item(tag, item_type, _parse_value(text, item_type, tag, attribute_name))


def _format_value(item: Item, attribute_name: str | None) -> str:
    tag, item_type, value = item
    if item_type == ItemType.TEXT_STRING:
        if _NOT_XML.search(value):
            raise XMLEncodingError(f"text of 0x{tag:06X} holds a character XML 1.0 cannot carry")
        return str(value)
    if item_type == ItemType.BYTE_STRING:
        return bytes(value).hex()
    if item_type == ItemType.ENUMERATION:
        cls = _value_enum(tag, attribute_name)
        if cls is None:
            return f"0x{value:08X}"
        return enum_xml_name(cls, value)
    if item_type == ItemType.INTEGER:
        cls = _value_enum(tag, attribute_name)
        if _is_mask(cls) and value != 0:
            assert cls is not None
            return enum_xml_name(cls, value & 0xFFFFFFFF)
        return str(value)
    if item_type in (ItemType.LONG_INTEGER, ItemType.INTERVAL):
        return str(value)
    if item_type == ItemType.BOOLEAN:
        return "true" if value else "false"
    if item_type == ItemType.BIG_INTEGER:
        size = max(8, ((value.bit_length() + 8) // 8 + 7) & ~7)
        return value.to_bytes(size, "big", signed=True).hex()
    if item_type == ItemType.DATE_TIME:
        return _format_time(value, extended=False)
    if item_type == ItemType.DATE_TIME_EXTENDED:
        return _format_time(value, extended=True)
    raise XMLEncodingError(f"cannot encode item type 0x{item_type:02X}")


def item_to_element(item: Item, attribute_name: str | None = None) -> ElementTree.Element:
    """The XML element of an item (and everything below it)."""
    name = TAG_XML_NAME.get(item.tag)
    if name is None:
        element = ElementTree.Element("TTLV", {"tag": f"0x{item.tag:06X}"})
    else:
        element = ElementTree.Element(name)
    if item.type == ItemType.STRUCTURE:
        names = [c.value for c in item.value if c.tag == Tag.ATTRIBUTE_NAME]
        inner_name = names[0] if names and isinstance(names[0], str) else None
        for child in item.value:
            element.append(item_to_element(child, inner_name))
        return element
    type_name = ItemType.NAMES.get(item.type)
    if type_name is None:
        raise XMLEncodingError(f"cannot encode item type 0x{item.type:02X}")
    element.set("type", type_name)
    element.set("value", _format_value(item, attribute_name))
    return element


def loads(text: str | bytes) -> Item:
    """The item of one KMIP XML document (one message or any other item)."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise XMLEncodingError(f"not well-formed XML: {error}") from None
    return element_to_item(root)


def dumps(item: Item, indent: bool = True) -> str:
    """One item as a KMIP XML document, indented two spaces like the OASIS test cases."""
    element = item_to_element(item)
    if indent:
        ElementTree.indent(element, space="  ")
    return ElementTree.tostring(element, encoding="unicode")
