"""Attribute operations: Get Attributes, Get Attribute List, Add, Modify, Delete and
Set Attribute, in the 1.x and 2.x payload forms.
"""

from __future__ import annotations

from kmiptwist import server_attributes, ttlv
from kmiptwist.attributes import (
    check_client_value,
    check_deletable,
    check_modifiable,
    check_state_allows,
    from_wire,
    is_custom,
    reference_name,
    requested_names,
    rule_for,
    to_wire,
    visible_in,
)
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.messages import ProtocolVersion
from kmiptwist.objects import ManagedObject
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, reason_in, uid_item
from kmiptwist.operations.naming import check_unique_names
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import Operation, ResultReason
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS"]


def _is_multi_valued(name: str) -> bool:
    found = rule_for(name)
    return found.multi_valued if found is not None else True


def _attributes_out(
    obj: ManagedObject, names: list[str] | None, version: ProtocolVersion
) -> list[Item]:
    """The object's attributes as a client of ``version`` reads them."""
    selected = list(obj.attributes) if not names else names
    out: list[Item] = []
    seen: set[str] = set()
    for name in selected:
        if name in seen:
            continue
        seen.add(name)
        if not visible_in(name, version):
            continue
        for index, value in enumerate(obj.values(name)):
            out.append(to_wire(name, value, version, index))
    return out


async def get_attributes(context: RequestContext, payload: Item) -> Payload:
    """Get Attributes: absent attributes are simply not returned (vCenter relies on it)."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    names = requested_names(payload, context.version)
    obj = await context.load(unique_identifier)
    attributes = _attributes_out(obj, names, context.version)
    if context.version.is_2x:
        return [uid_item(unique_identifier), ttlv.structure(Tag.ATTRIBUTES, attributes)]
    return [uid_item(unique_identifier), *attributes]


async def get_attribute_list(context: RequestContext, payload: Item) -> Payload:
    """Get Attribute List: the names of the attributes the object has."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    obj = await context.load(unique_identifier)
    out = [uid_item(unique_identifier)]
    for name in obj.attributes:
        if not visible_in(name, context.version):
            continue
        if not context.version.is_2x:
            out.append(ttlv.text_string(Tag.ATTRIBUTE_NAME, name))
            continue
        found = rule_for(name)
        if found is not None:
            out.append(ttlv.enumeration(Tag.ATTRIBUTE_REFERENCE, found.tag))
        else:
            vendor, _, short = name.partition("-")
            out.append(
                ttlv.structure(
                    Tag.ATTRIBUTE_REFERENCE,
                    [
                        ttlv.text_string(Tag.VENDOR_IDENTIFICATION, vendor),
                        ttlv.text_string(Tag.ATTRIBUTE_NAME, short),
                    ],
                )
            )
    return out


def _single_attribute(
    payload: Item, context: RequestContext, tag_2x: int
) -> tuple[str, int | None, Item]:
    """The one attribute of an Add/Modify/Set request (1.x Attribute, 2.x New Attribute)."""
    if context.version.is_2x:
        container = payload.find(tag_2x)
        if container is None or container.type != ItemType.STRUCTURE or len(container.value) != 1:
            raise invalid_field(f"the request needs one attribute inside {_tag_name(tag_2x)}")
        return from_wire(container.value[0], context.version)
    found = payload.find(Tag.ATTRIBUTE)
    if found is None:
        raise invalid_field("the request needs an Attribute")
    return from_wire(found, context.version)


def _tag_name(tag: int) -> str:
    names: dict[int, str] = {
        Tag.NEW_ATTRIBUTE: "New Attribute",
        Tag.CURRENT_ATTRIBUTE: "Current Attribute",
    }
    return names.get(tag, hex(tag))


async def _check_change(
    context: RequestContext, obj: ManagedObject, name: str, value: Item
) -> None:
    """Refuse a change the object's state or the tenant's other objects forbid."""
    check_state_allows(name, obj.state, obj.value(name), context.now(), context.version)
    if name == "Name":
        await check_unique_names(context, [value])


def _touch(context: RequestContext, obj: ManagedObject) -> None:
    server_attributes.keep_history(obj)
    obj.set_date("Last Change Date", context.now())


def _response(
    context: RequestContext, unique_identifier: str, name: str, value: Item, index: int
) -> Payload:
    if context.version.is_2x:
        return [uid_item(unique_identifier)]
    return [uid_item(unique_identifier), to_wire(name, value, context.version, index)]


async def add_attribute(context: RequestContext, payload: Item) -> Payload:
    """Add Attribute: a new instance; any x-/y- custom attribute is welcome."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    name, index, value = _single_attribute(payload, context, Tag.NEW_ATTRIBUTE)
    check_client_value(name, context.version)
    if index is not None and not context.version.is_2x:
        raise invalid_field(
            "Add Attribute must not carry an Attribute Index; the server assigns it"
        )
    async with context.lock(unique_identifier):
        obj = await context.load(unique_identifier)
        if not _is_multi_valued(name) and obj.values(name):
            raise KMIPError(
                reason_in(
                    context.version, "ATTRIBUTE_SINGLE_VALUED", ResultReason.INDEX_OUT_OF_BOUNDS
                ),
                f"attribute {name!r} is single-valued and already set; use Modify Attribute",
            )
        await _check_change(context, obj, name, value)
        new_index = obj.add(name, value)
        _touch(context, obj)
        await context.save(obj)
    return _response(context, unique_identifier, name, value, new_index)


def _find_instance(obj: ManagedObject, name: str, value: Item) -> int | None:
    for index, existing in enumerate(obj.values(name)):
        if existing.type == value.type and existing.value == value.value:
            return index
    return None


async def modify_attribute(context: RequestContext, payload: Item) -> Payload:
    """Modify Attribute: replace an existing instance (by index in 1.x, by value in 2.x)."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    name, index, value = _single_attribute(payload, context, Tag.NEW_ATTRIBUTE)
    check_modifiable(name, context.version)
    async with context.lock(unique_identifier):
        obj = await context.load(unique_identifier)
        instances = obj.values(name)
        if not instances:
            raise KMIPError(
                reason_in(context.version, "ATTRIBUTE_NOT_FOUND", ResultReason.INVALID_FIELD),
                f"{unique_identifier} has no attribute {name!r} to modify; use Add Attribute",
            )
        if context.version.is_2x:
            current = payload.find(Tag.CURRENT_ATTRIBUTE)
            if current is not None:
                if current.type != ItemType.STRUCTURE or len(current.value) != 1:
                    raise invalid_field("Current Attribute must hold one attribute")
                current_name, _, current_value = from_wire(current.value[0], context.version)
                if current_name != name:
                    raise invalid_field(
                        "Current Attribute and New Attribute name different attributes"
                    )
                position = _find_instance(obj, name, current_value)
                if position is None:
                    raise KMIPError(
                        reason_in(
                            context.version, "ATTRIBUTE_NOT_FOUND", ResultReason.INVALID_FIELD
                        ),
                        f"{unique_identifier} has no {name!r} with the Current Attribute's value",
                    )
            elif len(instances) > 1:
                raise invalid_field(
                    f"{name!r} has several instances; name one with Current Attribute"
                )
            else:
                position = 0
        else:
            position = index or 0
            if position >= len(instances):
                raise KMIPError(
                    reason_in(
                        context.version,
                        "ATTRIBUTE_INDEX_OUT_OF_BOUNDS",
                        ResultReason.INDEX_OUT_OF_BOUNDS,
                    ),
                    f"{name!r} has no instance {position}",
                )
        await _check_change(context, obj, name, value)
        instances[position] = value
        _touch(context, obj)
        await context.save(obj)
    return _response(context, unique_identifier, name, value, position)


async def set_attribute(context: RequestContext, payload: Item) -> Payload:
    """Set Attribute (2.x): set a single-valued attribute, whether present or not."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    name, _, value = _single_attribute(payload, context, Tag.NEW_ATTRIBUTE)
    check_modifiable(name, context.version)
    if _is_multi_valued(name) and not is_custom(name):
        raise KMIPError(
            reason_in(context.version, "MULTI_VALUED_ATTRIBUTE", ResultReason.INVALID_FIELD),
            f"attribute {name!r} is multi-valued; use Add or Modify Attribute",
        )
    async with context.lock(unique_identifier):
        obj = await context.load(unique_identifier)
        await _check_change(context, obj, name, value)
        obj.set(name, value)
        _touch(context, obj)
        await context.save(obj)
    return [uid_item(unique_identifier)]


async def delete_attribute(context: RequestContext, payload: Item) -> Payload:
    """Delete Attribute: remove one instance (1.x by index, 2.x by value or all)."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    current_value: Item | None = None
    index: int | None = None
    if context.version.is_2x:
        current = payload.find(Tag.CURRENT_ATTRIBUTE)
        reference = payload.find(Tag.ATTRIBUTE_REFERENCE)
        if current is not None:
            if current.type != ItemType.STRUCTURE or len(current.value) != 1:
                raise invalid_field("Current Attribute must hold one attribute")
            name, _, current_value = from_wire(current.value[0], context.version)
        elif reference is not None:
            name = reference_name(reference)
        else:
            raise invalid_field(
                "Delete Attribute needs a Current Attribute or an Attribute Reference"
            )
    else:
        names = requested_names(payload, context.version)
        if len(names) != 1:
            raise invalid_field("Delete Attribute needs one Attribute Name")
        name = names[0]
        found_index = payload.find(Tag.ATTRIBUTE_INDEX)
        if found_index is not None:
            if found_index.type != ItemType.INTEGER or found_index.value < 0:
                raise invalid_field("Attribute Index must be a non-negative Integer")
            index = found_index.value
    check_deletable(name, context.version)
    async with context.lock(unique_identifier):
        obj = await context.load(unique_identifier)
        instances = obj.values(name)
        if current_value is not None:
            position = _find_instance(obj, name, current_value)
        elif context.version.is_2x:
            position = None if not instances else -1
        else:
            position = index or 0
            if position >= len(instances):
                position = None
        if position is None:
            raise KMIPError(
                reason_in(context.version, "ATTRIBUTE_NOT_FOUND", ResultReason.ITEM_NOT_FOUND),
                f"{unique_identifier} has no such instance of {name!r}",
            )
        if position == -1:
            removed = instances[0]
            obj.remove(name)
            position = 0
        else:
            removed = obj.remove(name, position)  # type: ignore[assignment]
        _touch(context, obj)
        await context.save(obj)
    return _response(context, unique_identifier, name, removed, position)


_V2 = ProtocolVersion(2, 0)

HANDLERS = [
    OperationHandler(Operation.GET_ATTRIBUTES, get_attributes),
    OperationHandler(Operation.GET_ATTRIBUTE_LIST, get_attribute_list),
    OperationHandler(Operation.ADD_ATTRIBUTE, add_attribute),
    OperationHandler(Operation.MODIFY_ATTRIBUTE, modify_attribute),
    OperationHandler(Operation.DELETE_ATTRIBUTE, delete_attribute),
    OperationHandler(Operation.SET_ATTRIBUTE, set_attribute, minimum=_V2),
]
