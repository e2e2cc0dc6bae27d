"""The attributes a request asks a new object to have, templates included (KMIP 1.x).

A 1.x Template-Attribute may name Template objects (registered earlier with
Register); their attributes apply first, in the order named, then the request's own
attributes, which replace a template's value of a single-valued attribute and add to
a multi-valued one.  A template's own identity (its Name, Unique Identifier and the
attributes only a server sets) never passes to the new object.
"""

from __future__ import annotations

from kmiptwist import ttlv
from kmiptwist.attributes import SERVER_ONLY, from_wire, rule_for
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.interfaces import LocateCriterion
from kmiptwist.operations.base import RequestContext, reason_in
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import ObjectType, ResultReason, State
from kmiptwist.vocabulary.tags import TAG_SPEC_NAME, Tag

__all__ = ["request_attributes", "refers_to_templates", "merge_attributes", "TEMPLATE_CONTAINERS"]

#: Where Create, Register and their kin carry the new object's attributes.
TEMPLATE_CONTAINERS = (
    Tag.TEMPLATE_ATTRIBUTE,
    Tag.ATTRIBUTES,
    Tag.COMMON_TEMPLATE_ATTRIBUTE,
    Tag.COMMON_ATTRIBUTES,
)

_NOT_INHERITED = frozenset({"Name"}) | SERVER_ONLY

#: The 1.x Template-Attribute structures, where a Name refers to a Template object.
_TEMPLATE_ATTRIBUTES_1X = (
    Tag.TEMPLATE_ATTRIBUTE,
    Tag.COMMON_TEMPLATE_ATTRIBUTE,
    Tag.PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
    Tag.PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
)


async def _template(context: RequestContext, name: Item) -> list[tuple[str, Item]]:
    """The attributes held by the Template object called ``name``."""
    name_value = ttlv.structure(Tag.NAME, list(name.value))
    found = await context.engine.store.locate(
        context.tenant,
        [
            LocateCriterion("Name", name_value),
            LocateCriterion("Object Type", ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.TEMPLATE)),
            LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.COMPROMISED), "<="),
        ],
        0,
        2,
    )
    label = name.get(Tag.NAME_VALUE)
    if not found:
        raise KMIPError(
            reason_in(context.version, "OBJECT_NOT_FOUND", ResultReason.ITEM_NOT_FOUND),
            f"no Template named {label!r}",
        )
    template = await context.load(found[0])
    stored = ttlv.decode(await context.material(template))
    attributes = []
    for child in stored.value:
        attribute_name, _, value = from_wire(child, context.version)
        if attribute_name not in _NOT_INHERITED:
            attributes.append((attribute_name, value))
    return attributes


def _merge(
    base: list[tuple[str, Item]], overrides: list[tuple[str, Item]]
) -> list[tuple[str, Item]]:
    """``base`` then ``overrides``; an override of a single-valued attribute replaces it."""
    replaced = {
        name
        for name, _ in overrides
        if (rule := rule_for(name)) is not None and not rule.multi_valued
    }
    return [(name, value) for name, value in base if name not in replaced] + overrides


def merge_attributes(
    base: list[tuple[str, Item]], overrides: list[tuple[str, Item]]
) -> list[tuple[str, Item]]:
    """``base`` then ``overrides``: a single-valued attribute in ``overrides`` replaces
    the base's, a multi-valued one adds to it (Create Key Pair's common attributes)."""
    return _merge(base, overrides)


async def request_attributes(
    context: RequestContext, payload: Item, containers: tuple[int, ...] = TEMPLATE_CONTAINERS
) -> list[tuple[str, Item]]:
    """The attributes the request gives the new object, in order, templates expanded."""
    from_templates: list[tuple[str, Item]] = []
    own: list[tuple[str, Item]] = []
    for container_tag in containers:
        container = payload.find(container_tag)
        if container is None:
            continue
        if container.type != ItemType.STRUCTURE:
            raise invalid_field(
                f"{TAG_SPEC_NAME.get(container_tag, container_tag)} must be a structure"
            )
        for child in container.value:
            if child.tag == Tag.NAME and container_tag in _TEMPLATE_ATTRIBUTES_1X:
                if child.type != ItemType.STRUCTURE:
                    raise invalid_field("a template Name must be a Name structure")
                from_templates = _merge(from_templates, await _template(context, child))
                continue
            name, _, value = from_wire(child, context.version)
            own.append((name, value))
    return _merge(from_templates, own)


def refers_to_templates(payload: Item, containers: tuple[int, ...] = TEMPLATE_CONTAINERS) -> bool:
    """Whether :func:`request_attributes` reads Template objects for ``payload`` (a
    Name in a 1.x Template-Attribute); when it does not, what it returns depends on
    the payload and the protocol version alone."""
    for container_tag in containers:
        if container_tag not in _TEMPLATE_ATTRIBUTES_1X:
            continue
        container = payload.find(container_tag)
        if container is not None and container.type == ItemType.STRUCTURE:
            if any(child.tag == Tag.NAME for child in container.value):
                return True
    return False
