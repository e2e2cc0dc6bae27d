"""Names are unique among a tenant's objects (KMIP: "Names SHALL be unique within a
given key management domain"); a destroyed object's name may be used again."""

from __future__ import annotations

from kmiptwist import ttlv
from kmiptwist.errors import KMIPError
from kmiptwist.interfaces import LocateCriterion
from kmiptwist.operations.base import RequestContext, reason_in
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import ResultReason, State
from kmiptwist.vocabulary.tags import Tag

__all__ = ["check_unique_names"]


def _label(name: Item) -> str:
    value = name.get(Tag.NAME_VALUE) if isinstance(name.value, list) else None
    return repr(value)


async def check_unique_names(context: RequestContext, names: list[Item]) -> None:
    """Refuse ``names`` when a live object of the tenant has one of them already.

    The object the names are for counts too: giving an object a name it has is
    refused, as is one request naming a new object twice with the same name.
    """
    seen: set[bytes] = set()
    for name in names:
        key = ttlv.encode(ttlv.structure(0, list(name.value)))
        if key in seen:
            raise _not_unique(context, name)
        seen.add(key)
        found = await context.engine.store.locate(
            context.tenant,
            [
                LocateCriterion("Name", name),
                LocateCriterion("State", ttlv.enumeration(Tag.STATE, State.COMPROMISED), "<="),
            ],
            0,
            1,
        )
        if found:
            raise _not_unique(context, name)
        if context.held is not None:
            for obj, _created in context.held.values():
                if any(existing.value == name.value for existing in obj.values("Name")):
                    raise _not_unique(context, name)


def _not_unique(context: RequestContext, name: Item) -> KMIPError:
    return KMIPError(
        reason_in(context.version, "NON_UNIQUE_NAME_ATTRIBUTE", ResultReason.INVALID_FIELD),
        f"the Name {_label(name)} is already used by another object",
    )
