"""Locate: find the tenant's objects by any attribute, answered by the store's index."""

from __future__ import annotations

from twisted.internet.defer import Deferred, gatherResults

from kmiptwist import ttlv
from kmiptwist.attributes import from_wire
from kmiptwist.errors import invalid_field
from kmiptwist.interfaces import ConcurrentModification, LocateCriterion
from kmiptwist.objects import apply_time
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, number, uid_item
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import Operation, State, StorageStatusMask
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "catch_up_states", "criteria_from"]

_DATE_TYPES = (ItemType.DATE_TIME, ItemType.DATE_TIME_EXTENDED)


def criteria_from(payload: Item, context: RequestContext) -> list[LocateCriterion]:
    """The Locate conditions: every attribute must match; a date given twice is a range."""
    attributes: list[tuple[str, Item]] = []
    if context.version.is_2x:
        container = payload.find(Tag.ATTRIBUTES)
        if container is not None:
            if container.type != ItemType.STRUCTURE:
                raise invalid_field("Attributes must be a structure")
            attributes = [
                (name, value)
                for name, _, value in (from_wire(c, context.version) for c in container.value)
            ]
    else:
        attributes = [
            (name, value)
            for name, _, value in (
                from_wire(c, context.version) for c in payload.find_all(Tag.ATTRIBUTE)
            )
        ]
    criteria: list[LocateCriterion] = []
    dates: dict[str, list[Item]] = {}
    for name, value in attributes:
        if value.type in _DATE_TYPES:
            dates.setdefault(name, []).append(value)
        else:
            criteria.append(LocateCriterion(name, value))
    for name, values in dates.items():
        if len(values) == 1:
            criteria.append(LocateCriterion(name, values[0]))
        elif len(values) == 2:
            low, high = sorted(values, key=lambda item: item.value)
            criteria.append(LocateCriterion(name, low, ">="))
            criteria.append(LocateCriterion(name, high, "<="))
        else:
            raise invalid_field(
                f"date attribute {name!r} may appear at most twice (a range) in Locate"
            )
    return criteria


def _storage_criteria(payload: Item, criteria: list[LocateCriterion]) -> list[LocateCriterion]:
    """Leave destroyed objects out unless the client asks for them.

    Without a Storage Status Mask only on-line objects are searched; a destroyed
    object is not on-line (2.x names Destroyed Storage as a mask bit of its own).  A
    client that names a State asks for objects in that state, whatever it is.
    """
    if any(criterion.name == "State" for criterion in criteria):
        return criteria
    mask = number(payload, Tag.STORAGE_STATUS_MASK, "Storage Status Mask")
    if mask is not None and mask & StorageStatusMask.DESTROYED_STORAGE:
        if mask & StorageStatusMask.ON_LINE_STORAGE:
            return criteria
        return [*criteria, LocateCriterion("State", _state(State.DESTROYED), ">=")]
    return [*criteria, LocateCriterion("State", _state(State.COMPROMISED), "<=")]


def _state(state: int) -> Item:
    return ttlv.enumeration(Tag.STATE, state)


#: (stored State, the date that moves it on when it has passed, that date's tag):
#: KMIP's time-driven transitions (:func:`kmiptwist.objects.effective_state`).
_DUE = (
    (State.PRE_ACTIVE, "Activation Date", Tag.ACTIVATION_DATE),
    (State.ACTIVE, "Deactivation Date", Tag.DEACTIVATION_DATE),
)

#: Objects brought up to date per query, and so per concurrent group of writes.
_CATCH_UP_BATCH = 1000


async def catch_up_states(context: RequestContext) -> None:
    """Store the state of the tenant's objects whose Activation or Deactivation Date
    has passed since their State was last written.

    A state moved on by time is applied when an object is read, but the stored State,
    which Locate compares, changes only when the object is written: without this, a
    Locate by State missed a Pre-Active key whose Activation Date had passed.  Only a
    Locate that names State asks (and the admin API's listing by state); finding none
    costs two index lookups.
    """
    store, now = context.engine.store, context.now()
    for stored_state, date_name, date_tag in _DUE:
        criteria = [
            LocateCriterion("State", _state(stored_state)),
            LocateCriterion(date_name, ttlv.date_time(date_tag, now), "<="),
        ]
        seen: set[str] = set()
        while True:
            due = await store.locate(context.tenant, criteria, 0, _CATCH_UP_BATCH)
            if seen.issuperset(due):  # none, or none that could be moved on
                break
            seen.update(due)
            await gatherResults(
                [Deferred.fromCoroutine(_catch_up(context, uid, stored_state)) for uid in due]
            )


async def _catch_up(context: RequestContext, unique_identifier: str, stored_state: int) -> None:
    """Write one object's state as time has made it (read applies it), unless another
    request or worker changed or removed the object meanwhile."""
    async with context.lock(unique_identifier):
        obj = await context.engine.store.get_object(context.tenant, unique_identifier)
        if obj is None or obj.state != stored_state:
            return
        if not apply_time(obj, context.now()):
            return
        try:
            await context.engine.store.update_object(obj)
        except ConcurrentModification:
            pass  # written by someone else meanwhile, with its own state


async def locate(context: RequestContext, payload: Item) -> Payload:
    """Locate: matching identifiers, newest first, with Maximum Items and Offset Items."""
    maximum = number(payload, Tag.MAXIMUM_ITEMS, "Maximum Items")
    offset = number(payload, Tag.OFFSET_ITEMS, "Offset Items")
    paging = maximum is not None or offset is not None
    offset = offset or 0
    if maximum is not None and maximum < 0 or offset < 0:
        raise invalid_field("Maximum Items and Offset Items must not be negative")
    limit = context.engine.max_locate_items
    if maximum is None or maximum > limit:
        maximum = limit
    asked = criteria_from(payload, context)
    if any(criterion.name == "State" for criterion in asked):
        # (The on-line filter added below compares State too, but time only moves an
        # object between states that are all on-line.)
        await catch_up_states(context)
    criteria = _storage_criteria(payload, asked)
    found = await context.engine.store.locate(context.tenant, criteria, offset, maximum)
    out: list[Item] = []
    if paging and context.version >= (1, 3):
        # Located Items tells a client that pages how many matched in all.
        total = await context.engine.store.locate_count(context.tenant, criteria)
        out.append(ttlv.integer(Tag.LOCATED_ITEMS, total))
    out.extend(uid_item(unique_identifier) for unique_identifier in found)
    if len(found) == 1:
        # A Locate that finds one object sets the ID Placeholder for the batch.
        context.id_placeholder = found[0]
    return out


HANDLERS = [OperationHandler(Operation.LOCATE, locate)]
