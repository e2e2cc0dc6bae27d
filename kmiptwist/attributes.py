"""Attributes on the wire: KMIP 1.x Attribute structures and 2.x tagged attributes.

Inside the server an attribute is a name and an item: standard attributes by their
spec name ("Cryptographic Algorithm") with the item tagged by the attribute's own
tag, custom attributes as "<vendor>-<name>" ("x-Product") with the item tagged
Attribute Value.  This module converts both wire forms to that and back, and holds
the rules of who may set what.
"""

from __future__ import annotations

from typing import Any

from kmiptwist import ttlv
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.messages import ProtocolVersion
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.attributes import ATTRIBUTES_BY_NAME, ATTRIBUTES_BY_TAG, AttributeRule
from kmiptwist.vocabulary.enums import ENUM_BY_TAG, ResultReason, State
from kmiptwist.vocabulary.tags import Tag

__all__ = [
    "rule_for",
    "is_custom",
    "visible_in",
    "from_wire",
    "to_wire",
    "requested_names",
    "check_client_value",
    "check_modifiable",
    "check_deletable",
    "SERVER_ONLY",
]

#: Attributes only the server sets: a client that sends one in a template or an
#: Add/Modify/Set Attribute is refused.
SERVER_ONLY = frozenset(
    {
        "Unique Identifier",
        "Object Type",
        "State",
        "Initial Date",
        "Last Change Date",
        "Destroy Date",
        "Compromise Date",
        "Compromise Occurrence Date",
        "Revocation Reason",
        "Archive Date",
        "Digest",
        "Lease Time",
        "Always Sensitive",
        "Never Extractable",
        "Key Value Present",
        "Original Creation Date",
        "Short Unique Identifier",
        "Certificate Type",
        "Certificate Length",
        "Certificate Identifier",
        "Certificate Subject",
        "Certificate Issuer",
        "X.509 Certificate Identifier",
        "X.509 Certificate Subject",
        "X.509 Certificate Issuer",
        "Digital Signature Algorithm",
        "Key Format Type",
    }
)

_CUSTOM_PREFIXES = ("x-", "y-")

_STRUCTURE = ItemType.STRUCTURE
_ENUMERATION = ItemType.ENUMERATION


def rule_for(name: str) -> AttributeRule | None:
    """The spec's rule for a standard attribute, None for custom or unknown names."""
    return ATTRIBUTES_BY_NAME.get(name)


def is_custom(name: str) -> bool:
    """True for client (x-) and server (y-) custom attributes and 2.x vendor attributes."""
    return name not in ATTRIBUTES_BY_NAME and "-" in name


def visible_in(name: str, version: ProtocolVersion) -> bool:
    """Whether a client speaking ``version`` may be shown attribute ``name``."""
    found = ATTRIBUTES_BY_NAME.get(name)
    if found is None:
        return name.startswith(_CUSTOM_PREFIXES) or version.is_2x
    return version.spec in found.versions


def _normalise_name(name: str) -> str:
    """Fold the whitespace artefacts some clients put in attribute names."""
    return " ".join(name.split())


_TYPE_CHECKS: dict[str, tuple[int | None, dict[int, Any] | None]] = {}
"""Per standard attribute: the item type its rule requires, and the known values of
its enumeration (None where the rule names none)."""


def _type_check(rule: AttributeRule) -> tuple[int | None, dict[int, Any] | None]:
    found = _TYPE_CHECKS.get(rule.name)
    if found is None:
        enum = ENUM_BY_TAG.get(rule.tag)
        found = _TYPE_CHECKS[rule.name] = (
            ItemType.BY_NAME.get(rule.item_type),
            None if enum is None else getattr(enum, "_value2member_map_", {}),
        )
    return found


def _check_type(name: str, value: Item, rule: AttributeRule) -> None:
    expected, known = _type_check(rule)
    if expected is not None and value.type != expected:
        raise invalid_field(
            f"attribute {name!r} must be of type {rule.item_type}, not "
            f"{ItemType.NAMES.get(value.type, value.type)}"
        )
    if known is not None and value.type == _ENUMERATION:
        if value.value not in known and value.value < 0x80000000:
            raise invalid_field(f"attribute {name!r} has no value 0x{value.value:08X}")


def _standard(name: str, value: Item) -> tuple[str, Item]:
    """Retag a 1.x Attribute Value as the standard attribute ``name``."""
    found = ATTRIBUTES_BY_NAME[name]
    item = ttlv.item(found.tag, value.type, value.value)
    _check_type(name, item, found)
    return name, item


def from_wire(item: Item, version: ProtocolVersion) -> tuple[str, int | None, Item]:
    """Read one attribute as sent: (name, index or None, value item).

    Accepts the 1.x Attribute structure, the 2.x vendor Attribute structure and 2.x
    tagged attributes.
    """
    if item.tag == Tag.ATTRIBUTE:
        if item.type != _STRUCTURE:
            raise invalid_field("Attribute must be a structure")
        raw_name = value = index = vendor = None
        for child in item.value:  # the first of each, in one pass
            tag = child.tag
            if tag == Tag.ATTRIBUTE_NAME:
                if raw_name is None:
                    raw_name = child.value
            elif tag == Tag.ATTRIBUTE_VALUE:
                if value is None:
                    value = child
            elif tag == Tag.ATTRIBUTE_INDEX:
                if index is None:
                    index = child.value
            elif tag == Tag.VENDOR_IDENTIFICATION and vendor is None:
                vendor = child.value
        if not isinstance(raw_name, str):
            raise invalid_field("Attribute has no Attribute Name")
        if index is not None and (not isinstance(index, int) or index < 0):
            raise invalid_field("Attribute Index must be a non-negative Integer")
        if vendor is not None:
            name = f"{vendor}-{raw_name}"
        else:
            name = _normalise_name(raw_name)
        if value is None:
            raise invalid_field(f"attribute {name!r} has no Attribute Value")
        if vendor is None and name in ATTRIBUTES_BY_NAME:
            name, value = _standard(name, value)
        elif vendor is None and not name.startswith(_CUSTOM_PREFIXES):
            raise KMIPError(
                ResultReason.INVALID_FIELD,
                f"unknown attribute {name!r}: custom attribute names start with 'x-' or 'y-'",
            )
        return name, index, value
    found = ATTRIBUTES_BY_TAG.get(item.tag)
    if found is None:
        raise invalid_field(f"tag 0x{item.tag:06X} is not an attribute")
    _check_type(found.name, item, found)
    return found.name, None, item


def to_wire(name: str, value: Item, version: ProtocolVersion, index: int | None = None) -> Item:
    """One attribute in the form a client of ``version`` reads."""
    if version.is_2x:
        if name in ATTRIBUTES_BY_NAME:
            return value
        vendor, _, short = name.partition("-")
        return ttlv.structure(
            Tag.ATTRIBUTE,
            [
                ttlv.text_string(Tag.VENDOR_IDENTIFICATION, vendor),
                ttlv.text_string(Tag.ATTRIBUTE_NAME, short),
                Item(Tag.ATTRIBUTE_VALUE, value.type, value.value),
            ],
        )
    children = [ttlv.text_string(Tag.ATTRIBUTE_NAME, name)]
    if index:
        children.append(ttlv.integer(Tag.ATTRIBUTE_INDEX, index))
    children.append(Item(Tag.ATTRIBUTE_VALUE, value.type, value.value))
    return ttlv.structure(Tag.ATTRIBUTE, children)


def requested_names(payload: Item, version: ProtocolVersion) -> list[str]:
    """The attribute names a Get Attributes / Delete request asks for, in order."""
    names: list[str] = []
    for child in payload.value:
        if child.tag == Tag.ATTRIBUTE_NAME:
            if child.type != ItemType.TEXT_STRING:
                raise invalid_field("Attribute Name must be a Text String")
            names.append(_normalise_name(child.value))
        elif child.tag == Tag.ATTRIBUTE_REFERENCE:
            names.append(reference_name(child))
    return names


def reference_name(item: Item) -> str:
    """The attribute name of a 2.x Attribute Reference (a tag, or vendor + name)."""
    if item.type == ItemType.ENUMERATION:
        found = ATTRIBUTES_BY_TAG.get(item.value)
        if found is None:
            raise invalid_field(f"Attribute Reference 0x{item.value:06X} is not an attribute")
        return found.name
    if item.type == ItemType.STRUCTURE:
        vendor = item.get(Tag.VENDOR_IDENTIFICATION)
        name = item.get(Tag.ATTRIBUTE_NAME)
        if not isinstance(vendor, str) or not isinstance(name, str):
            raise invalid_field(
                "Attribute Reference needs Vendor Identification and Attribute Name"
            )
        return f"{vendor}-{name}"
    raise invalid_field("Attribute Reference must be an Enumeration or a Structure")


def _read_only(name: str, version: ProtocolVersion, what: str) -> KMIPError:
    reason = ResultReason.ATTRIBUTE_READ_ONLY if version.is_2x else ResultReason.PERMISSION_DENIED
    return KMIPError(reason, f"attribute {name!r} {what}")


def check_client_value(name: str, version: ProtocolVersion) -> None:
    """Refuse a client setting an attribute only the server sets."""
    if name in SERVER_ONLY:
        raise _read_only(name, version, "is set by the server and cannot be set by a client")


def check_modifiable(name: str, version: ProtocolVersion) -> None:
    """Refuse a change the spec's "Modifiable by client" row does not allow."""
    check_client_value(name, version)
    found = ATTRIBUTES_BY_NAME.get(name)
    if found is None:
        return
    allowed = found.client_modifiable
    if not version.is_2x and found.client_modifiable_1x is not None:
        allowed = found.client_modifiable_1x
    if not allowed:
        raise _read_only(name, version, "cannot be changed by a client once the object exists")


def check_deletable(name: str, version: ProtocolVersion) -> None:
    """Refuse a deletion the spec's "Deletable by client" row does not allow."""
    found = ATTRIBUTES_BY_NAME.get(name)
    if found is None:
        return
    allowed = found.client_deletable
    if not version.is_2x and found.client_deletable_1x is not None:
        allowed = found.client_deletable_1x
    if not allowed:
        raise _read_only(name, version, "cannot be deleted by a client")


#: Dates a client may change only in some states (the rules' "Modifiable by client:
#: Yes, only while in ..."), and whether the date must also still lie ahead.
_STATE_BOUND: dict[str, tuple[frozenset[int], bool]] = {
    "Activation Date": (frozenset({State.PRE_ACTIVE}), False),
    "Deactivation Date": (frozenset({State.PRE_ACTIVE, State.ACTIVE}), False),
    "Process Start Date": (frozenset({State.PRE_ACTIVE, State.ACTIVE}), True),
    "Protect Stop Date": (frozenset({State.PRE_ACTIVE, State.ACTIVE}), True),
}


def check_state_allows(
    name: str, state: int, current: int | None, now: int, version: ProtocolVersion
) -> None:
    """Refuse a client changing a lifecycle date the object's state no longer allows.

    ``current`` is the date's present value, if any.  KMIP 2.x answers Wrong Key
    Lifecycle State; 1.x, which has no such rule for attributes, Permission Denied.
    """
    bound = _STATE_BOUND.get(name)
    if bound is None:
        return
    states, must_lie_ahead = bound
    reached = must_lie_ahead and current is not None and current <= now
    if state in states and not reached:
        return
    reason = (
        ResultReason.WRONG_KEY_LIFECYCLE_STATE if version.is_2x else ResultReason.PERMISSION_DENIED
    )
    why = "its date has passed" if state in states else "of the object's state"
    raise KMIPError(reason, f"attribute {name!r} can no longer be changed: {why}")


__all__ += ["check_state_allows"]
