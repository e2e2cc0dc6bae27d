"""Managed objects and their lifecycle: the state machine of the KMIP specification.

A managed object is its attributes plus, while it has any, its key material in
wrapped form.  Attributes are kept in wire form (items tagged with the attribute's
tag, or Attribute Value for custom attributes) keyed by their KMIP name, so that
what a client registered is what it reads back.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field

from kmiptwist import ttlv
from kmiptwist.errors import KMIPError
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import ResultReason, State
from kmiptwist.vocabulary.tags import Tag

__all__ = ["ManagedObject", "transition", "effective_state", "TRANSITIONS"]

#: Which states each state may move to (KMIP 1.4 section 3.22, 2.1 section 4.57).
TRANSITIONS: dict[int, frozenset[int]] = {
    State.PRE_ACTIVE: frozenset({State.ACTIVE, State.COMPROMISED, State.DESTROYED}),
    State.ACTIVE: frozenset({State.DEACTIVATED, State.COMPROMISED}),
    State.DEACTIVATED: frozenset({State.DESTROYED, State.COMPROMISED}),
    State.COMPROMISED: frozenset({State.DESTROYED_COMPROMISED}),
    State.DESTROYED: frozenset({State.DESTROYED_COMPROMISED}),
    State.DESTROYED_COMPROMISED: frozenset(),
}

_STATE_NAMES: dict[int, str] = {
    State.PRE_ACTIVE: "Pre-Active",
    State.ACTIVE: "Active",
    State.DEACTIVATED: "Deactivated",
    State.COMPROMISED: "Compromised",
    State.DESTROYED: "Destroyed",
    State.DESTROYED_COMPROMISED: "Destroyed Compromised",
}


def state_name(state: int) -> str:
    """The spec's display name of a State value."""
    return _STATE_NAMES.get(state, str(state))


@define
class ManagedObject:
    """One managed object of one tenant."""

    unique_identifier: str
    tenant: str
    object_type: int
    attributes: dict[str, list[Item]] = field(factory=dict)
    wrapped_material: bytes | None = None
    revision: int = 0
    #: The root key version that wrapped the material, when the root key has versions
    #: (Key Protect's keyVersion); a rotation can be followed up by comparing it.
    root_key_version: str | None = None

    # -- attribute access ----------------------------------------------------

    def values(self, name: str) -> list[Item]:
        """Every instance of attribute ``name`` (empty when absent)."""
        return self.attributes.get(name, [])

    def value(self, name: str, default: Any = None) -> Any:
        """The Python value of the first instance of ``name``, or ``default``."""
        found = self.attributes.get(name)
        return found[0].value if found else default

    def set(self, name: str, item: Item) -> None:
        """Make ``item`` the only instance of ``name``."""
        self.attributes[name] = [item]

    def add(self, name: str, item: Item) -> int:
        """Append an instance of ``name``; return its index."""
        instances = self.attributes.setdefault(name, [])
        instances.append(item)
        return len(instances) - 1

    def remove(self, name: str, index: int | None = None) -> Item | None:
        """Remove one instance (``index``) or all; return the removed first instance."""
        instances = self.attributes.get(name)
        if not instances:
            return None
        if index is None:
            del self.attributes[name]
            return instances[0]
        if not 0 <= index < len(instances):
            return None
        removed = instances.pop(index)
        if not instances:
            del self.attributes[name]
        return removed

    @property
    def state(self) -> int:
        """The State attribute (objects without one, like templates, count as Active)."""
        return self.value("State", State.ACTIVE)

    def set_date(self, name: str, when: int) -> None:
        """Set a Date-Time attribute."""
        self.set(name, ttlv.date_time(_date_tag(name), when))


def _date_tag(name: str) -> int:
    return {
        "Initial Date": Tag.INITIAL_DATE,
        "Activation Date": Tag.ACTIVATION_DATE,
        "Deactivation Date": Tag.DEACTIVATION_DATE,
        "Destroy Date": Tag.DESTROY_DATE,
        "Compromise Date": Tag.COMPROMISE_DATE,
        "Compromise Occurrence Date": Tag.COMPROMISE_OCCURRENCE_DATE,
        "Last Change Date": Tag.LAST_CHANGE_DATE,
        "Archive Date": Tag.ARCHIVE_DATE,
        "Original Creation Date": Tag.ORIGINAL_CREATION_DATE,
        "Process Start Date": Tag.PROCESS_START_DATE,
        "Protect Stop Date": Tag.PROTECT_STOP_DATE,
    }[name]


def effective_state(obj: ManagedObject, now: int) -> int:
    """The state the object is in at ``now``, honouring Activation/Deactivation Dates.

    A Pre-Active object whose Activation Date has passed is Active; an Active (or
    Pre-Active) object whose Deactivation Date has passed is Deactivated.
    """
    state = obj.state
    if state == State.PRE_ACTIVE:
        activation = obj.value("Activation Date")
        if activation is not None and activation <= now:
            state = State.ACTIVE
    if state == State.ACTIVE:
        deactivation = obj.value("Deactivation Date")
        if deactivation is not None and deactivation <= now:
            state = State.DEACTIVATED
    return state


def apply_time(obj: ManagedObject, now: int) -> bool:
    """Move the object to its effective state; return True when it changed."""
    state = effective_state(obj, now)
    if state == obj.state:
        return False
    obj.set("State", ttlv.enumeration(Tag.STATE, state))
    return True


def transition(obj: ManagedObject, target: int, now: int) -> None:
    """Move ``obj`` to ``target`` or raise Wrong Key Lifecycle State.

    Sets the dates the spec ties to each transition and Last Change Date.
    """
    current = obj.state
    if target not in TRANSITIONS.get(current, frozenset()):
        raise KMIPError(
            ResultReason.WRONG_KEY_LIFECYCLE_STATE,
            f"object {obj.unique_identifier} is {state_name(current)} and cannot become "
            f"{state_name(target)}",
        )
    obj.set("State", ttlv.enumeration(Tag.STATE, target))
    if target == State.ACTIVE and obj.value("Activation Date") is None:
        obj.set_date("Activation Date", now)
    elif target == State.DEACTIVATED and (
        obj.value("Deactivation Date") is None or obj.value("Deactivation Date") > now
    ):
        obj.set_date("Deactivation Date", now)
    elif target in (State.DESTROYED, State.DESTROYED_COMPROMISED):
        if obj.value("Destroy Date") is None:
            obj.set_date("Destroy Date", now)
    if (
        target in (State.COMPROMISED, State.DESTROYED_COMPROMISED)
        and obj.value("Compromise Date") is None
    ):
        obj.set_date("Compromise Date", now)
    obj.set_date("Last Change Date", now)
