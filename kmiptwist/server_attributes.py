"""The attributes the server keeps on every object, and keeps true as the object changes.

Set when an object is created or registered (KMIP 1.4 chapter 3, 2.1 chapter 4):
Initial Date, Last Change Date, Original Creation Date; Sensitive and Extractable
(defaults False and True) with their histories Always Sensitive and Never
Extractable; Fresh (True until the object's value is first served); Lease Time
(the longest lease the server grants); Random Number Generator for material the
server generated (its details are the operating system's, so "Unspecified"); and,
for KMIP 2.x clients, Short Unique Identifier (:func:`kmiptwist.identifiers.short_unique_identifier`),
Key Format Type and Protection Storage Mask (Software).  Which of them a client
sees is decided per version by :func:`kmiptwist.attributes.visible_in`.
"""

from __future__ import annotations

from kmiptwist import ttlv
from kmiptwist.identifiers import short_unique_identifier
from kmiptwist.objects import ManagedObject
from kmiptwist.vocabulary.enums import ObjectType, ProtectionStorageMask, RNGAlgorithm
from kmiptwist.vocabulary.tags import Tag

__all__ = ["set_initial", "served", "keep_history", "CRYPTOGRAPHIC_OBJECTS"]

#: The "Cryptographic Objects" of KMIP 1.x, to which Lease Time applies.
CRYPTOGRAPHIC_OBJECTS = frozenset(
    {
        ObjectType.CERTIFICATE,
        ObjectType.SYMMETRIC_KEY,
        ObjectType.PUBLIC_KEY,
        ObjectType.PRIVATE_KEY,
        ObjectType.SPLIT_KEY,
        ObjectType.SECRET_DATA,
        ObjectType.PGP_KEY,
    }
)


def _default(obj: ManagedObject, name: str, item: ttlv.Item) -> None:
    if not obj.attributes.get(name):
        obj.attributes[name] = [item]


# Items are immutable (structures aside): the values every new object gets are made once.
_FALSE = {
    name: ttlv.boolean(tag, False)
    for name, tag in (
        ("Sensitive", Tag.SENSITIVE),
        ("Always Sensitive", Tag.ALWAYS_SENSITIVE),
        ("Never Extractable", Tag.NEVER_EXTRACTABLE),
        ("Fresh", Tag.FRESH),
    )
}
_TRUE = {
    name: ttlv.boolean(tag, True)
    for name, tag in (
        ("Extractable", Tag.EXTRACTABLE),
        ("Always Sensitive", Tag.ALWAYS_SENSITIVE),
        ("Never Extractable", Tag.NEVER_EXTRACTABLE),
        ("Fresh", Tag.FRESH),
    )
}
_SOFTWARE = ttlv.integer(Tag.PROTECTION_STORAGE_MASK, ProtectionStorageMask.SOFTWARE)
_TEMPLATE = int(ObjectType.TEMPLATE)
_DATES = [
    ("Initial Date", Tag.INITIAL_DATE),
    ("Last Change Date", Tag.LAST_CHANGE_DATE),
    ("Original Creation Date", Tag.ORIGINAL_CREATION_DATE),
]


def set_initial(
    obj: ManagedObject,
    now: int,
    *,
    generated: bool,
    key_format_type: int | None,
    lease_time: int | None,
) -> None:
    """Give a new object the attributes the server sets (the client's values stay)."""
    attributes = obj.attributes
    for name, tag in _DATES:
        attributes[name] = [ttlv.Item(tag, ttlv.ItemType.DATE_TIME, now)]
    attributes["Short Unique Identifier"] = [
        ttlv.byte_string(
            Tag.SHORT_UNIQUE_IDENTIFIER, short_unique_identifier(obj.unique_identifier)
        )
    ]
    if obj.object_type == _TEMPLATE:
        return
    attributes["Protection Storage Mask"] = [_SOFTWARE]
    if key_format_type is not None:
        attributes["Key Format Type"] = [ttlv.enumeration(Tag.KEY_FORMAT_TYPE, key_format_type)]
    _default(obj, "Sensitive", _FALSE["Sensitive"])
    _default(obj, "Extractable", _TRUE["Extractable"])
    attributes["Always Sensitive"] = [
        (_TRUE if obj.value("Sensitive") else _FALSE)["Always Sensitive"]
    ]
    attributes["Never Extractable"] = [
        (_FALSE if obj.value("Extractable") else _TRUE)["Never Extractable"]
    ]
    _default(obj, "Fresh", _TRUE["Fresh"])
    if "Usage Limits" in attributes:
        _start_usage_limits(obj)
    if lease_time is not None and obj.object_type in CRYPTOGRAPHIC_OBJECTS:
        obj.set("Lease Time", ttlv.interval(Tag.LEASE_TIME, lease_time))
    if generated:
        _default(
            obj,
            "Random Number Generator",
            ttlv.structure(
                Tag.RANDOM_NUMBER_GENERATOR,
                [ttlv.enumeration(Tag.RNG_ALGORITHM, RNGAlgorithm.UNSPECIFIED)],
            ),
        )


def _start_usage_limits(obj: ManagedObject) -> None:
    """A new object's Usage Limits Count is its Usage Limits Total, whatever count the
    client sent (KMIP 2.1 section 4.59)."""
    limits = obj.values("Usage Limits")
    if not limits or limits[0].type != ttlv.ItemType.STRUCTURE:
        return
    total = limits[0].find(Tag.USAGE_LIMITS_TOTAL)
    if total is None:
        return
    children = [c for c in limits[0].value if c.tag != Tag.USAGE_LIMITS_COUNT]
    children.insert(1, ttlv.long_integer(Tag.USAGE_LIMITS_COUNT, total.value))
    obj.set("Usage Limits", ttlv.structure(Tag.USAGE_LIMITS, children))


def served(obj: ManagedObject) -> bool:
    """Record that the object's value went to a client (Fresh becomes False).

    True when that changed the object, so the caller knows to save it.
    """
    if obj.value("Fresh") is False:
        return False
    obj.set("Fresh", ttlv.boolean(Tag.FRESH, False))
    return True


def keep_history(obj: ManagedObject) -> None:
    """After Sensitive or Extractable changed: a key that was ever not sensitive is not
    Always Sensitive, one that was ever extractable is not Never Extractable."""
    if obj.values("Always Sensitive") and obj.value("Sensitive") is False:
        obj.set("Always Sensitive", ttlv.boolean(Tag.ALWAYS_SENSITIVE, False))
    if obj.values("Never Extractable") and obj.value("Extractable") is True:
        obj.set("Never Extractable", ttlv.boolean(Tag.NEVER_EXTRACTABLE, False))
