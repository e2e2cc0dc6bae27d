# -*- test-case-name: tests.test_store -*-
"""The versioned sqlite schema of the key store, and the searchable form of attributes.

Migrations are numbered by position (version 1 is the initial schema) and applied in
order, each in one transaction together with ``PRAGMA user_version``, so a database is
always at exactly one version.  A database written by a newer kmiptwist is refused
rather than guessed at.

Since version 4 an object's attributes are one blob on its row (see
:func:`encode_attributes`): exactly the items stored, in their order, read back with
one decode.  What Locate compares is kept apart, in ``attribute_index``: one row per
distinct searchable value of each attribute name of each object, keyed by (tenant,
name, value, object seq), so a lookup by value lists a tenant's objects newest first
straight from the key order.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Iterable
from typing import Any

from attrs import frozen

from kmiptwist import ttlv
from kmiptwist.interfaces import LocateCriterion
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.tags import Tag

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "SchemaTooNew",
    "attribute_instances",
    "current_version",
    "decode_attributes",
    "encode_attribute",
    "encode_attributes",
    "join_attributes",
    "migrate",
    "match_value",
    "MatchCondition",
    "match_conditions",
]


class SchemaTooNew(Exception):
    """The database was written by a newer kmiptwist than the one opening it."""


# -- the stored form of an object's attributes ----------------------------------------

_HEAD = struct.Struct(">II")
_ATTRIBUTES_HEAD = (Tag.ATTRIBUTES << 8) | ItemType.STRUCTURE
_ATTRIBUTE_HEAD = (Tag.ATTRIBUTE << 8) | ItemType.STRUCTURE

#: Stored attributes are not a message from a peer: they were bounded when they
#: arrived, and an object may hold more of them than one message could.
_STORED_LIMITS = ttlv.Limits(max_length=1 << 62, max_depth=64, max_items=1 << 62)

_NAME_ENCODINGS: dict[str, bytes] = {}


def _name_encoding(name: str) -> bytes:
    """The TTLV encoding of Attribute Name ``name`` (memoised: names repeat)."""
    found = _NAME_ENCODINGS.get(name)
    if found is None:
        found = ttlv.encode(ttlv.text_string(Tag.ATTRIBUTE_NAME, name))
        if len(_NAME_ENCODINGS) >= 4096:
            _NAME_ENCODINGS.clear()
        _NAME_ENCODINGS[name] = found
    return found


def encode_attribute(name: str, encodings: Iterable[bytes]) -> bytes:
    """One attribute in the stored form: an Attribute structure holding the Attribute
    Name and then the instances' own TTLV encodings, in index order."""
    body = _name_encoding(name) + b"".join(encodings)
    return _HEAD.pack(_ATTRIBUTE_HEAD, len(body)) + body


def join_attributes(attributes: Iterable[bytes]) -> bytes:
    """The stored form of an object's attributes from :func:`encode_attribute`'s, in
    the object's order: one TTLV Attributes structure holding them."""
    body = b"".join(attributes)
    return _HEAD.pack(_ATTRIBUTES_HEAD, len(body)) + body


def encode_attributes(attributes: Iterable[tuple[str, Iterable[bytes]]]) -> bytes:
    """The stored form of an object's attributes, given each name's encoded instances.

    One TTLV Attributes structure holding, per attribute name and in the object's
    order, an Attribute structure of the Attribute Name followed by the instances'
    own encodings, in index order.  It is the format of the ``attributes`` column
    since schema version 4; changing it takes a new schema version.
    """
    return join_attributes(encode_attribute(name, encodings) for name, encodings in attributes)


def decode_attributes(stored: bytes) -> dict[str, list[Item]]:
    """The attributes of :func:`encode_attributes`, in order, as fresh items."""
    attributes = {}
    for attribute in ttlv.decode(stored, _STORED_LIMITS).value:
        children = attribute.value
        attributes[children[0].value] = children[1:]
    return attributes


def attribute_instances(stored: bytes, name: str) -> list[Item]:
    """The instances of one attribute of stored attributes, the others left undecoded."""
    wanted = _name_encoding(name)
    unpack_from = _HEAD.unpack_from
    position, end = 8, len(stored)
    while position < end:
        _, length = unpack_from(stored, position)
        following = position + 8 + length
        if stored.startswith(wanted, position + 8):
            found: list[Item] = ttlv.decode(stored[position:following], _STORED_LIMITS).value
            return found[1:]
        position = following
    return []


# -- migrations ------------------------------------------------------------------------


def _attributes_into_objects(connection: sqlite3.Connection) -> None:
    """Version 4, in Python: each object's attribute rows become the blob on its row.

    The rows' stored encodings are copied as they are (names by position, instances
    by index), so every item reads back exactly as before.
    """
    objects = connection.execute("SELECT seq, unique_identifier FROM objects").fetchall()
    for seq, unique_identifier in objects:
        rows = connection.execute(
            "SELECT position, name, idx, item FROM attributes WHERE unique_identifier = ?",
            (unique_identifier,),
        ).fetchall()
        rows.sort(key=lambda row: (row[0], row[1], row[2]))
        attributes: dict[str, list[bytes]] = {}
        for _, name, _, item in rows:
            attributes.setdefault(name, []).append(bytes(item))
        connection.execute(
            "UPDATE objects SET attributes = ? WHERE seq = ?",
            (encode_attributes(attributes.items()), seq),
        )


Migration = list[str | Callable[[sqlite3.Connection], None]]
"""SQL statements, and Python steps given the connection, run in order."""

#: MIGRATIONS[n - 1] brings a database from version n - 1 to version n, in one
#: transaction.  Append new migrations; never edit released ones.
MIGRATIONS: list[Migration] = [
    # -- version 1: the initial schema ----------------------------------------------
    [
        """
        CREATE TABLE objects (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            unique_identifier TEXT UNIQUE NOT NULL,
            tenant TEXT NOT NULL,
            object_type INTEGER NOT NULL,
            wrapped_material BLOB,
            revision INTEGER NOT NULL,
            created INTEGER NOT NULL
        )
        """,
        "CREATE INDEX objects_by_tenant ON objects (tenant, seq)",
        # ``item`` is ttlv.encode(item): it gives back exactly the item that was
        # stored.  ``match`` has no declared type (no affinity), so ints, text and
        # blobs keep their storage class and never compare equal across classes.
        # ``position`` keeps the order of attribute names of the object, ``idx`` the
        # order (the KMIP Attribute Index) of the instances of one name.
        """
        CREATE TABLE attributes (
            tenant TEXT NOT NULL,
            unique_identifier TEXT NOT NULL,
            name TEXT NOT NULL,
            idx INTEGER NOT NULL,
            position INTEGER NOT NULL,
            item BLOB NOT NULL,
            "match",
            PRIMARY KEY (unique_identifier, name, idx)
        ) WITHOUT ROWID
        """,
        'CREATE INDEX attributes_by_value ON attributes (tenant, name, "match", unique_identifier)',
        """
        CREATE TABLE tenants (
            name TEXT PRIMARY KEY,
            root_key_kind TEXT NOT NULL,
            root_key_id TEXT NOT NULL,
            created INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE certificates (
            fingerprint TEXT PRIMARY KEY,
            tenant TEXT NOT NULL REFERENCES tenants (name),
            subject TEXT NOT NULL,
            issuer TEXT NOT NULL,
            not_after INTEGER NOT NULL,
            added INTEGER NOT NULL
        )
        """,
        "CREATE INDEX certificates_by_tenant ON certificates (tenant)",
        """
        CREATE TABLE pending_certificates (
            fingerprint TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            issuer TEXT NOT NULL,
            first_seen INTEGER NOT NULL,
            last_seen INTEGER NOT NULL,
            address TEXT NOT NULL,
            count INTEGER NOT NULL,
            certificate_pem TEXT NOT NULL
        )
        """,
    ],
    # -- version 2: root-key bindings, key versions, trusted client CAs --------------
    [
        # The tenant's root-key binding beyond kind and id (Key Protect instance,
        # endpoint, where the API key is read from), as JSON; never an API key itself.
        "ALTER TABLE tenants ADD COLUMN root_key_binding TEXT NOT NULL DEFAULT '{}'",
        # The root key version that wrapped the material (Key Protect's
        # rewrappedKeyVersion / keyVersion), so a rotation can be followed up.
        "ALTER TABLE objects ADD COLUMN root_key_version TEXT",
        # CA certificates a tenant trusts: any client certificate chaining to one
        # belongs to the tenant (vCenter's "root CA" trust method).
        """
        CREATE TABLE trusted_cas (
            fingerprint TEXT PRIMARY KEY,
            tenant TEXT NOT NULL REFERENCES tenants (name),
            subject TEXT NOT NULL,
            certificate_pem TEXT NOT NULL,
            added INTEGER NOT NULL
        )
        """,
        "CREATE INDEX trusted_cas_by_tenant ON trusted_cas (tenant)",
    ],
    # -- version 3: the PEM of registered client certificates -------------------------
    [
        # So that an administrator can read back exactly what was registered.
        "ALTER TABLE certificates ADD COLUMN certificate_pem TEXT NOT NULL DEFAULT ''",
    ],
    # -- version 4: attributes in one blob per object, a slim index for Locate ---------
    [
        # encode_attributes: what reads give back.  Writing 20-odd rows (and their
        # index entries) per object cost five times the CPU of the whole object row.
        "ALTER TABLE objects ADD COLUMN attributes BLOB",
        # One row per distinct searchable value (``match``, as in version 1: no
        # affinity) of each attribute name of each object; ``seq`` is the object's
        # row.  The key order answers "this tenant's objects with this value, newest
        # first" without a sort, and keeps every tenant's rows apart.
        """
        CREATE TABLE attribute_index (
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            "match" NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (tenant, name, "match", seq)
        ) WITHOUT ROWID
        """,
        _attributes_into_objects,
        """
        INSERT OR IGNORE INTO attribute_index (tenant, name, "match", seq)
        SELECT o.tenant, a.name, a."match", o.seq
        FROM attributes a JOIN objects o ON o.unique_identifier = a.unique_identifier
        ORDER BY 1, 2, 3, 4
        """,
        "DROP INDEX attributes_by_value",
        "DROP TABLE attributes",
    ],
]

#: The schema version this code writes.
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(connection: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0 for a new, empty one)."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(connection: sqlite3.Connection, migrations: list[Migration] | None = None) -> int:
    """Bring the database up to the newest schema; return the version it was at.

    ``connection`` must be in autocommit mode (``isolation_level=None``): each
    migration runs in its own ``BEGIN IMMEDIATE`` transaction, so a failure leaves the
    database at the previous version.  A database newer than the code raises
    :class:`SchemaTooNew` and is left untouched.
    """
    if migrations is None:
        migrations = MIGRATIONS
    found = current_version(connection)
    if found > len(migrations):
        raise SchemaTooNew(
            f"the database has schema version {found}, but this kmiptwist knows versions "
            f"up to {len(migrations)}; it was written by a newer kmiptwist — upgrade "
            "kmiptwist (or restore a backup) instead of using this database"
        )
    for version in range(found + 1, len(migrations) + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for step in migrations[version - 1]:
                if isinstance(step, str):
                    connection.execute(step)
                else:
                    step(connection)
            # PRAGMA does not take parameters; ``version`` is our own int.
            connection.execute(f"PRAGMA user_version = {int(version)}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    return found


_INTEGER_TYPES = frozenset(
    {
        ItemType.INTEGER,
        ItemType.LONG_INTEGER,
        ItemType.ENUMERATION,
        ItemType.INTERVAL,
        ItemType.DATE_TIME,
        ItemType.DATE_TIME_EXTENDED,
    }
)


def match_value(item: Item) -> Any:
    """The searchable form of an attribute instance: what Locate compares.

    Numbers, enumerations, dates and booleans become ``int``, text ``str``, byte
    strings ``bytes``.  Structures and big integers become the TTLV encoding of their
    value without the item's own tag, so that two equal structures compare equal
    whether they arrived tagged as the attribute (KMIP 2.x) or as Attribute Value
    (KMIP 1.x).
    """
    item_type = item.type
    if item_type in _INTEGER_TYPES:
        return int(item.value)
    if item_type == ItemType.BOOLEAN:
        return 1 if item.value else 0
    if item_type == ItemType.TEXT_STRING:
        return str(item.value)
    if item_type == ItemType.BYTE_STRING:
        return bytes(item.value)
    # Structure or Big Integer: the encoding with a fixed tag of 0.
    return ttlv.encode(Item(0, item_type, item.value))


# -- Locate: how criteria compare with the searchable form ---------------------------

#: The storage classes of ``match`` values, in sqlite's sort order (integers sort
#: before text, text before blobs).
INTEGER_CLASS, TEXT_CLASS, BYTES_CLASS = 0, 1, 2

_DATE_TYPES = frozenset({ItemType.DATE_TIME, ItemType.DATE_TIME_EXTENDED})


def match_class(value: Any) -> int:
    """The storage class of a searchable value (int, str or bytes)."""
    if isinstance(value, int):
        return INTEGER_CLASS
    if isinstance(value, str):
        return TEXT_CLASS
    return BYTES_CLASS


@frozen
class MatchCondition:
    """What one attribute name must satisfy for an object to be located.

    Either equality (``equals``) or an inclusive range (``lower``/``upper``, None
    for an open end) within one storage class ``value_class``: one instance of the
    attribute must satisfy it.  ``rank`` estimates selectivity (lower is narrower), so
    a store can look the narrowest condition up first.
    """

    name: str
    value_class: int
    rank: int
    equals: Any = None
    lower: Any = None
    upper: Any = None

    @property
    def is_range(self) -> bool:
        """Whether this is a range rather than an equality."""
        return self.equals is None

    def accepts(self, value: Any) -> bool:
        """Whether the searchable form ``value`` of one instance satisfies this."""
        if match_class(value) != self.value_class:
            return False
        if self.equals is not None:
            return bool(value == self.equals)
        if self.lower is not None and value < self.lower:
            return False
        if self.upper is not None and value > self.upper:
            return False
        return True


def match_conditions(criteria: list[LocateCriterion]) -> list[MatchCondition] | None:
    """Turn Locate criteria into conditions, narrowest first; None when none can match.

    Every "=" criterion is its own condition.  The ">=" and "<=" criteria of one name
    form one range that a single instance must fall in (two instances of a date in a
    Locate select the objects between them); bounds of different storage classes can
    never hold together, hence None.
    """
    conditions: list[MatchCondition] = []
    ranges: dict[str, tuple[list[Any], list[Any]]] = {}
    for criterion in criteria:
        value = match_value(criterion.value)
        if criterion.operator == "=":
            if match_class(value) != INTEGER_CLASS:
                rank = 0
            elif criterion.value.type in _DATE_TYPES:
                rank = 1
            else:
                rank = 3
            conditions.append(
                MatchCondition(criterion.name, match_class(value), rank, equals=value)
            )
        elif criterion.operator in (">=", "<="):
            lowers, uppers = ranges.setdefault(criterion.name, ([], []))
            (lowers if criterion.operator == ">=" else uppers).append(value)
        else:
            raise ValueError(f"unknown Locate operator {criterion.operator!r}")
    for name, (lowers, uppers) in ranges.items():
        classes = {match_class(bound) for bound in lowers + uppers}
        if len(classes) != 1:
            return None
        lower = max(lowers) if lowers else None
        upper = min(uppers) if uppers else None
        if lower is not None and upper is not None and lower > upper:
            return None
        rank = 2 if lower is not None and upper is not None else 4
        conditions.append(MatchCondition(name, classes.pop(), rank, lower=lower, upper=upper))
    conditions.sort(key=lambda condition: condition.rank)
    return conditions
