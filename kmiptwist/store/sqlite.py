# -*- test-case-name: tests.test_store -*-
"""The sqlite key store: managed objects and tenancy in one WAL database (the
tenancy half is :mod:`kmiptwist.store.tenancy`).

Writes go to one writer thread that commits in groups: every write queued while the
previous commit was being made to disk is run in the next transaction, each in its
own savepoint, and acknowledged only after that transaction's COMMIT has returned.
Reads run on a second connection in the reactor thread; in WAL mode they take
microseconds, less than a hop to a thread would cost, and they see every write whose
Deferred has fired because that write was committed first.

An object is one row: its attributes are one blob in it (``schema.encode_attributes``),
and what Locate compares is in ``attribute_index``, one row per distinct searchable
value of each attribute name, keyed by the object's integer ``seq``.  An update
rewrites the blob and only the index rows of the names whose instances changed.

Reading an object decodes its attributes once: the decoded attributes of recently
used objects are kept by (row, revision), and every read still checks the object's
row first, so a change committed by anyone sharing the database (another worker
process included) is seen by the next read.
"""

from __future__ import annotations

import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import define
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kmiptwist import ttlv
from kmiptwist.interfaces import (
    ConcurrentModification,
    IKeyStore,
    ITenancy,
    LocateCriterion,
    Tenant,
)
from kmiptwist.objects import ManagedObject
from kmiptwist.store import schema
from kmiptwist.store.errors import ObjectExists, StoreError, StoreNotRunning
from kmiptwist.store.schema import BYTES_CLASS, INTEGER_CLASS, MatchCondition, match_class
from kmiptwist.store.tenancy import SQLiteTenancy

__all__ = [
    "SQLiteStore",
    "WAL_PAGES_BETWEEN_CHECKPOINTS",
    "install_functions",
    "locate_sql",
]


_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

#: How many queued writes one transaction takes at most, to bound its size.
_MAX_GROUP = 1000

_STOP = object()

_IndexEntry = tuple[str, Any]
"""(attribute name, searchable form): one row of ``attribute_index`` for one object."""


@define
class _WriteJob:
    """One write waiting for the writer thread, and where its outcome goes."""

    run: Callable[[sqlite3.Connection], Any]
    deferred: Deferred[Any]
    on_success: Callable[[Any], None] | None = None
    after_commit: Callable[[sqlite3.Connection], None] | None = None
    """Run in the writer thread after the COMMIT, outside any transaction (checkpoints)."""
    new_object: _NewObject | None = None
    """For the insertion of a new object: its row (without ``seq``) and index entries,
    so that consecutive insertions are written together (:func:`_insert_objects`);
    ``run`` writes it alone (in its own savepoint) and returns the object's ``seq``."""


_NewObject = tuple[tuple[Any, ...], list[_IndexEntry]]


WAL_PAGES_BETWEEN_CHECKPOINTS = 10_000
"""How long the write-ahead log grows (in pages of 4 KiB: about 40 MB) before a
commit copies it into the database file and syncs that (sqlite's default: 1,000).
Every group commit rewrites the same few index pages, so a longer log is copied with
far fewer pages per commit, and the database file is synced a tenth as often:
alternating runs of ``create`` at 32 connections gave a median 15% more Creates/s
(``bench/NOTES.md`` item 28).  Durability is the log's, synced at every commit."""


GROUP_WAIT = 0.002
"""Seconds the writer waits before a group when the last group was busy (at least
:data:`GROUP_WAIT_AFTER` writes): many clients are writing, so more writes are on
their way, and one commit (its log pages and its sync) then serves more of them.
Like PostgreSQL's ``commit_delay`` with ``commit_siblings``.  The wait lets the GIL
go, which the reactor thread, the other stage of a Create, needs most.  Create at 32
connections on a store of 100,000 objects, alternating pairs against no wait: a wait
after every busy group made more Creates/s in 6 of 8 (median +7%, 10–20% less server
CPU per Create); this rule, which skips the wait when enough writes are queued, in 4
of 4 (+4 to +13%) (``bench/NOTES.md`` item 31).  A lone writer never waits."""

GROUP_WAIT_AFTER = 4


def group_wait(last_group: int, queued: int) -> float:
    """How long the writer waits before its next group, the last one having had
    ``last_group`` writes and ``queued`` writes (the first included) being queued."""
    if last_group >= GROUP_WAIT_AFTER and queued < last_group:
        return GROUP_WAIT
    return 0.0


def _configure(connection: sqlite3.Connection, busy_timeout: float) -> None:
    """Durable WAL settings; every connection of the store gets them."""
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA synchronous = FULL")
    # Each write of a group commit runs in a savepoint, whose journal (a copy of every
    # page the write changes) otherwise spills to a temporary file past 64 KiB: a
    # Create wrote ~25 pages there, a pwrite each (bench/NOTES.md item 20).
    connection.execute("PRAGMA temp_store = MEMORY")


_Frozen = tuple[tuple[str, tuple[ttlv.Item, ...], bool, bytes | None], ...]
"""Attributes as (name, instances, whether any instance is a structure, the attribute's
stored form when known), in order."""

_CachedObject = tuple[int, int, int, _Frozen, str]
"""(seq, revision, object type, attributes, tenant) of an object as it was committed."""


def _frozen(
    name: str, instances: Sequence[ttlv.Item], encoding: bytes | None
) -> tuple[str, tuple[ttlv.Item, ...], bool, bytes | None]:
    """One attribute as kept: its instances share nothing mutable with ``instances``."""
    for item in instances:
        if item.type == _STRUCTURE:
            return name, tuple(map(ttlv.copied, instances)), True, encoding
    return name, tuple(instances), False, encoding


def _freeze(attributes: dict[str, list[ttlv.Item]]) -> _Frozen:
    """Attributes to keep, sharing nothing mutable with ``attributes``."""
    return tuple(_frozen(name, items, None) for name, items in attributes.items())


def _thaw(attributes: _Frozen) -> dict[str, list[ttlv.Item]]:
    """Kept attributes for a caller who may change them (structures copied)."""
    return {
        name: list(map(ttlv.copied, items)) if nested else list(items)
        for name, items, nested, _ in attributes
    }


_NO_TAG = bytes(3)

_ENCODED: dict[ttlv.Item, tuple[bytes, Any]] = {}
"""Encoding and searchable form of recent attribute values.  Most attributes of most
objects hold the same values (Object Type, Cryptographic Algorithm, State, Sensitive,
the dates of the current second...), and every write stores all of an object's
attributes."""


def _encoded(item: ttlv.Item) -> tuple[bytes, Any]:
    """(TTLV encoding, searchable form) of an attribute value."""
    if item.type == ttlv.ItemType.STRUCTURE:  # its list of children cannot be a key
        encoding = ttlv.encode(item)
        # schema.match_value: the encoding under tag 0, which only the tag tells apart.
        return encoding, _NO_TAG + encoding[3:]
    found = _ENCODED.get(item)
    if found is None:
        found = (ttlv.encode(item), schema.match_value(item))
        if len(_ENCODED) >= 4096:
            _ENCODED.clear()
        _ENCODED[item] = found
    return found


_KeptAttribute = tuple[
    bytes, tuple[_IndexEntry, ...], tuple[str, tuple[ttlv.Item, ...], bool, bytes | None]
]
"""An attribute's stored form, its index entries (one per distinct searchable form of
its instances) and the attribute as kept (:func:`_frozen`, with its stored form)."""

_ATTRIBUTES: dict[tuple[str, Any], _KeptAttribute] = {}
"""The same for recent single-valued attributes: most of them are the same in most
objects, and every write of an object stores all of its attributes."""

_UNIQUE_TO_EACH_OBJECT = frozenset(
    {"Unique Identifier", "Short Unique Identifier", "Digest", "Name", "Link"}
)
"""Attributes whose values no two objects share (or seldom do): remembering them would
only push the shared values out of :data:`_ATTRIBUTES`."""

_STRUCTURE = ttlv.ItemType.STRUCTURE


def _structure_key(item: ttlv.Item) -> Any:
    """A structure as a hashable value that tells it apart from any other item."""
    return (
        item.tag,
        _STRUCTURE,
        tuple([_structure_key(c) if c.type == _STRUCTURE else c for c in item.value]),
    )


def _attribute(name: str, instances: Sequence[ttlv.Item]) -> _KeptAttribute:
    """(stored form, index entries, kept form) of attribute ``name``."""
    if len(instances) == 1:
        item = instances[0]
        if item.type != _STRUCTURE:
            key = (name, item)
            found = _ATTRIBUTES.get(key)
            if found is None:
                encoding, match = _encoded(item)
                encoding = schema.encode_attribute(name, (encoding,))
                found = (encoding, ((name, match),), (name, (item,), False, encoding))
                if name not in _UNIQUE_TO_EACH_OBJECT:
                    _remember_attribute(key, found)
            return found
        if name not in _UNIQUE_TO_EACH_OBJECT:
            # Its list cannot be a key; a key made of it can.  The kept form holds a
            # copy (:func:`_frozen`), which every object with this value shares.
            key = (name, _structure_key(item))
            found = _ATTRIBUTES.get(key)
            if found is None:
                found = _fresh_attribute(name, instances)
                _remember_attribute(key, found)
            return found
    return _fresh_attribute(name, instances)


def _remember_attribute(key: tuple[str, Any], found: _KeptAttribute) -> None:
    if len(_ATTRIBUTES) >= 4096:
        _ATTRIBUTES.clear()
    _ATTRIBUTES[key] = found


def _fresh_attribute(name: str, instances: Sequence[ttlv.Item]) -> _KeptAttribute:
    """:func:`_attribute`, worked out."""
    encodings = []
    matches: list[Any] = []
    for item in instances:
        encoding, match = _encoded(item)
        encodings.append(encoding)
        if match not in matches:
            matches.append(match)
    encoding = schema.encode_attribute(name, encodings)
    return (
        encoding,
        tuple([(name, match) for match in matches]),
        _frozen(name, instances, encoding),
    )


def _stored_form(
    attributes: dict[str, list[ttlv.Item]],
) -> tuple[bytes, list[_IndexEntry], _Frozen]:
    """The blob of ``attributes``, their index entries (one per distinct searchable
    value of each name) and the attributes as kept (:func:`_freeze`, with each one's
    stored form), in one pass."""
    encodings = []
    entries: list[_IndexEntry] = []
    frozen = []
    for name, instances in attributes.items():
        encoding, named, kept = _attribute(name, instances)
        encodings.append(encoding)
        entries += named
        frozen.append(kept)
    return schema.join_attributes(encodings), entries, tuple(frozen)


def _matches(instances: Sequence[ttlv.Item]) -> list[Any]:
    """The distinct searchable forms of an attribute's instances, in order."""
    matches: list[Any] = []
    for item in instances:
        match = _encoded(item)[1]
        if match not in matches:
            matches.append(match)
    return matches


def _index_changes(
    stored: Mapping[str, Sequence[ttlv.Item]], attributes: Mapping[str, Sequence[ttlv.Item]]
) -> tuple[list[_IndexEntry], list[_IndexEntry]]:
    """The index entries to delete and to insert to turn the stored attributes' index
    into that of ``attributes``."""
    _, stale, fresh, _ = _changes(
        tuple((name, tuple(items), False, None) for name, items in stored.items()), attributes
    )
    return stale, fresh


def _changes(
    stored: _Frozen, attributes: Mapping[str, Sequence[ttlv.Item]]
) -> tuple[bytes, list[_IndexEntry], list[_IndexEntry], _Frozen]:
    """The blob of ``attributes``, the index entries to delete and to insert to turn
    the index of the stored attributes ``stored`` (as kept by :func:`_freeze`) into
    theirs, and the attributes as kept.

    A name whose instances are unchanged is not touched, whatever its position: most
    updates (a state change, an added attribute) change two or three of an object's
    twenty-odd attributes.  Its stored form is reused when known.
    """
    before = {kept[0]: kept for kept in stored}
    encodings = []
    stale: list[_IndexEntry] = []
    fresh: list[_IndexEntry] = []
    frozen: list[tuple[str, tuple[ttlv.Item, ...], bool, bytes | None]] = []
    for name, instances in attributes.items():
        previous = before.pop(name, None)
        if previous is not None and previous[1] == tuple(instances):
            encoding = previous[3]
            if encoding is None:
                encoding = _attribute(name, instances)[0]
                previous = _frozen(name, previous[1], encoding)
            encodings.append(encoding)
            frozen.append(previous)
            continue
        encoding, named, kept = _attribute(name, instances)
        if previous is None:
            fresh += named
        else:
            old = _matches(previous[1])
            stale.extend((name, match) for match in old if (name, match) not in named)
            fresh.extend(entry for entry in named if entry[1] not in old)
        encodings.append(encoding)
        frozen.append(kept)
    for gone, items, _, _ in before.values():  # names the object no longer has
        stale.extend((gone, match) for match in _matches(items))
    return schema.join_attributes(encodings), stale, fresh, tuple(frozen)


_MULTI_ROW: dict[tuple[str, int, int], str] = {}

#: sqlite's oldest limit on the parameters of one statement.
_MAX_PARAMETERS = 999


def _insert_rows(
    connection: sqlite3.Connection,
    into: str,
    width: int,
    parameters: list[Any],
    round_to: int = 1,
) -> None:
    """Insert rows of ``width`` columns (``parameters`` row after row) with as few
    statements as sqlite allows.

    One statement for many rows costs far less than a statement per row: the sqlite3
    module lets the GIL go around every step, the reactor thread takes it in between,
    and the writer thread waits to get it back (ten Creates committed together made
    some fifty such hand-offs).  With ``round_to``, the last row is repeated to make
    the count a multiple of it (for ``INSERT OR IGNORE``): fewer different statements
    stay prepared (sqlite3's statement cache), and preparing one costs more than
    running it.
    """
    rows = len(parameters) // width
    if rows % round_to:
        parameters = parameters + parameters[-width:] * (round_to - rows % round_to)
    per_statement = _MAX_PARAMETERS // (width * round_to) * width * round_to
    for start in range(0, len(parameters), per_statement):
        chunk = parameters[start : start + per_statement]
        key = (into, width, len(chunk))
        sql = _MULTI_ROW.get(key)
        if sql is None:
            row = "(" + ", ".join(["?"] * width) + ")"
            verb = "INSERT OR IGNORE" if round_to > 1 else "INSERT"
            sql = _MULTI_ROW[key] = f"{verb} INTO {into} VALUES " + ", ".join(
                [row] * (len(chunk) // width)
            )
        connection.execute(sql, chunk)


_INDEX_COLUMNS = 'attribute_index (tenant, name, "match", seq)'
#: An object's index rows are its key (no two alike), so repeating one changes nothing.
_INDEX_ROWS_ROUNDED_TO = 8


def _insert_index(
    connection: sqlite3.Connection, tenant: str, seq: int, entries: list[_IndexEntry]
) -> None:
    """Insert the index rows of object ``seq`` of ``tenant``."""
    rows: list[Any] = []
    for name, match in entries:
        rows += (tenant, name, match, seq)
    _insert_rows(connection, _INDEX_COLUMNS, 4, rows, _INDEX_ROWS_ROUNDED_TO)


def _insert_objects(connection: sqlite3.Connection, objects: Sequence[_NewObject]) -> list[int]:
    """Insert new objects (rows and index entries) with a few statements for them all;
    return their ``seq`` in order.  The caller runs this in a savepoint: a failure (a
    Unique Identifier in use) must leave nothing behind.
    """
    (last,) = connection.execute(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'objects'),"
        " (SELECT max(seq) FROM objects), 0)"
    ).fetchone()
    seqs = list(range(last + 1, last + 1 + len(objects)))
    rows: list[Any] = []
    index: list[Any] = []
    for seq, (values, entries) in zip(seqs, objects, strict=True):
        rows.append(seq)
        rows += values
        tenant = values[1]
        for name, match in entries:
            index += (tenant, name, match, seq)
    _insert_rows(
        connection,
        "objects (seq, unique_identifier, tenant, object_type, wrapped_material, revision,"
        " created, root_key_version, attributes)",
        9,
        rows,
    )
    _insert_rows(connection, _INDEX_COLUMNS, 4, index, _INDEX_ROWS_ROUNDED_TO)
    return seqs


_DELETE_INDEX = (
    'DELETE FROM attribute_index WHERE tenant = ? AND name = ? AND "match" = ? AND seq = ?'
)


def _in_range(stored: bytes | None, name: str, value_class: int, lower: Any, upper: Any) -> int:
    """SQL function ``kmiptwist_in_range``: 1 when an instance of attribute ``name`` of
    the stored attributes is in the inclusive range (None: open) within its storage
    class, else 0.

    Locate checks ranges that do not drive its query with it, per candidate: through
    the index, such a range would be a scan of every value in the range.
    """
    if stored is None:
        return 0
    for item in schema.attribute_instances(stored, name):
        value = schema.match_value(item)
        if match_class(value) != value_class:
            continue
        if lower is not None and value < lower:
            continue
        if upper is not None and value > upper:
            continue
        return 1
    return 0


def install_functions(connection: sqlite3.Connection) -> None:
    """Give ``connection`` the SQL functions that :func:`locate_sql` queries use."""
    connection.create_function("kmiptwist_in_range", 5, _in_range, deterministic=True)


def _range_sql(column: str, condition: MatchCondition) -> tuple[str, list[Any]]:
    """SQL bounding ``column`` to the condition's range inside its storage class.

    sqlite orders integers before text before blobs; bounding both ends to the class
    keeps a date range from matching a text value, and gives the index one range.
    """
    if condition.value_class == INTEGER_CLASS:
        lower = _INT64_MIN if condition.lower is None else condition.lower
        upper = _INT64_MAX if condition.upper is None else condition.upper
        return f"{column} BETWEEN ? AND ?", [lower, upper]
    class_minimum: Any = "" if condition.value_class != BYTES_CLASS else b""
    lower = class_minimum if condition.lower is None else condition.lower
    clauses, parameters = [f"{column} >= ?"], [lower]
    if condition.upper is not None:
        clauses.append(f"{column} <= ?")
        parameters.append(condition.upper)
    elif condition.value_class != BYTES_CLASS:
        # The smallest blob sorts after every text value.
        clauses.append(f"{column} < ?")
        parameters.append(b"")
    return " AND ".join(clauses), parameters


def _value_sql(column: str, condition: MatchCondition) -> tuple[str, list[Any]]:
    """SQL comparing ``column`` as the condition says."""
    if condition.is_range:
        return _range_sql(column, condition)
    return f"{column} = ?", [condition.equals]


def locate_sql(
    tenant: str, conditions: list[MatchCondition], offset: int, maximum: int | None
) -> tuple[str, list[Any]]:
    """The one query that answers a Locate, and its parameters.

    The narrowest condition drives the query through ``attribute_index``: an equality
    lists the tenant's objects with that value newest first straight from the key (no
    sort, and a small Maximum Items stops it early); a range lists them in value order,
    once each, to be sorted.  The objects' rows are joined by ``seq`` (CROSS JOIN keeps
    that order of the loops).  The other equalities are checked per candidate with one
    lookup of the full key each, the other ranges on the candidate's stored attributes
    (``kmiptwist_in_range``, see :func:`install_functions`).
    """
    limit = -1 if maximum is None else max(0, maximum)
    offset = max(0, offset)
    if not conditions:
        return (
            "SELECT o.unique_identifier FROM objects o WHERE o.tenant = ?"
            " ORDER BY o.seq DESC LIMIT ? OFFSET ?",
            [tenant, limit, offset],
        )
    first, rest = conditions[0], conditions[1:]
    if first.is_range:
        value, parameters = _range_sql('"match"', first)
        source = (
            "(SELECT DISTINCT seq FROM attribute_index"
            f" WHERE tenant = ? AND name = ? AND {value}) a"
        )
        clauses = []
        all_parameters: list[Any] = [tenant, first.name, *parameters]
    else:
        source = "attribute_index a"
        clauses = ["a.tenant = ?", "a.name = ?", 'a."match" = ?']
        all_parameters = [tenant, first.name, first.equals]
    clauses.append("o.tenant = ?")
    all_parameters.append(tenant)
    for condition in rest:
        if condition.is_range:
            clauses.append("kmiptwist_in_range(o.attributes, ?, ?, ?, ?)")
            all_parameters += [
                condition.name,
                condition.value_class,
                condition.lower,
                condition.upper,
            ]
        else:
            clauses.append(
                "EXISTS (SELECT 1 FROM attribute_index b WHERE b.tenant = ? AND b.name = ?"
                ' AND b."match" = ? AND b.seq = a.seq)'
            )
            all_parameters += [tenant, condition.name, condition.equals]
    sql = (
        f"SELECT o.unique_identifier FROM {source} CROSS JOIN objects o ON o.seq = a.seq"
        " WHERE " + " AND ".join(clauses) + " ORDER BY a.seq DESC LIMIT ? OFFSET ?"
    )
    return sql, [*all_parameters, limit, offset]


@implementer(IKeyStore, ITenancy)
class SQLiteStore(SQLiteTenancy, Service):
    """Managed objects and tenancy in a sqlite database, durable before acknowledged.

    ``reactor`` brings the writer thread's outcomes back to the reactor thread.  Every
    method returns a Deferred; writes fire only after their transaction is committed.
    ``commit_count`` counts the group commits made, for tests and metrics.
    """

    _log = Logger()

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads,
        busy_timeout: float = 5.0,
        max_pending: int = 10_000,
        object_cache_size: int = 10_000,
        sole_writer: bool = False,
    ) -> None:
        self.path = path
        self.sole_writer = sole_writer
        """Whether this store is the only one writing the database (one server process,
        ``[kmip] workers = 1``).  It then holds an exclusive lock on ``<path>.lock`` (a
        second server on the same database refuses to start) and trusts its object
        cache, which every write of this store keeps current, without asking sqlite
        whether another process changed an object.  Otherwise (several workers) it
        holds the lock shared, and every read checks the object's row."""
        self._lock_descriptor: int | None = None
        self.object_cache_size = object_cache_size
        """How many objects' decoded attributes are kept; 0 turns the cache off."""
        self._objects: OrderedDict[str, _CachedObject] = OrderedDict()
        self._tenants: dict[str, tuple[int, Tenant | None]] = {}
        self.commit_count = 0
        self._reactor = reactor
        self._busy_timeout = busy_timeout
        self.max_pending = max_pending
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: Deferred[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        """Open the database, bring its schema up to date and start the writer thread.

        Raises :class:`kmiptwist.store.schema.SchemaTooNew` for a database written by a
        newer kmiptwist (and leaves it untouched).
        """
        if not os.path.exists(self.path):
            # Owner-only from the start; sqlite gives the -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.lock()
        try:
            self._open()
        except BaseException:
            self._release_lock()
            raise

    def lock(self) -> None:
        """Lock ``<path>.lock`` now, exclusively when this store is the sole writer; a
        server calls it before it starts anything that another process using the same
        data directory would share (the audit log).  :meth:`startService` takes the lock
        if it is not held; stopping releases it.  Raises :class:`StoreError` when
        another process holds it."""
        if self._lock_descriptor is not None:
            return
        descriptor = os.open(self.path + ".lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(
                descriptor, (fcntl.LOCK_EX if self.sole_writer else fcntl.LOCK_SH) | fcntl.LOCK_NB
            )
        except BlockingIOError:
            os.close(descriptor)
            raise StoreError(
                f"another kmiptwist process is using the key store {self.path}; stop it first "
                "(several processes serve one store only as the workers of one server, "
                "[kmip] workers)"
            ) from None
        self._lock_descriptor = descriptor

    def _release_lock(self) -> None:
        if self._lock_descriptor is not None:
            os.close(self._lock_descriptor)
            self._lock_descriptor = None

    def _open(self) -> None:
        """Open the connections, migrate, and start the writer thread."""
        writer = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            # One INSERT per count of new objects in a group (up to 111) and per count
            # of index rows (in steps of _INDEX_ROWS_ROUNDED_TO), besides the rest.
            cached_statements=256,
        )
        try:
            _configure(writer, self._busy_timeout)
            # Migrate first: a database this code refuses is left exactly as it was.
            found = schema.current_version(writer)
            if 0 < found < schema.SCHEMA_VERSION:
                # Version 4 rewrites every object (about 25 s per 100,000 objects here).
                self._log.info(
                    "Upgrading key store {path} from schema version {previous} to {version}",
                    path=self.path,
                    previous=found,
                    version=schema.SCHEMA_VERSION,
                )
            previous = schema.migrate(writer)
            (mode,) = writer.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: sqlite refused WAL mode (journal_mode is {mode})")
        except BaseException:
            writer.close()
            raise
        writer.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES_BETWEEN_CHECKPOINTS}")
        reader = sqlite3.connect(self.path, isolation_level=None)
        _configure(reader, self._busy_timeout)
        install_functions(reader)
        self._writer, self._reader = writer, reader
        if previous != schema.SCHEMA_VERSION:
            self._log.info(
                "Key store {path} upgraded from schema version {previous} to {version}",
                path=self.path,
                previous=previous,
                version=schema.SCHEMA_VERSION,
            )
        self._thread = threading.Thread(
            target=self._write_loop, args=(writer,), name="kmiptwist-sqlite-writer", daemon=True
        )
        self._thread.start()
        super().startService()

    def stopService(self) -> Deferred[None]:  # noqa: N802
        """Commit and acknowledge every write queued so far, then close the database."""
        super().stopService()
        if self._thread is None:
            self._release_lock()
            return succeed(None)
        self._thread = None
        self._stopped = Deferred()
        self._queue.put(_STOP)
        return self._stopped

    def _writer_finished(self) -> None:
        """In the reactor thread, once the writer thread has closed its connection."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        # A new read connection numbers data_version afresh.
        self._tenants.clear()
        self._objects.clear()
        self._writer = None
        self._release_lock()
        stopped, self._stopped = self._stopped, None
        if stopped is not None:
            stopped.callback(None)

    # -- the writer thread -----------------------------------------------------------

    def _submit(
        self,
        run: Callable[[sqlite3.Connection], Any],
        on_success: Callable[[Any], None] | None = None,
        after_commit: Callable[[sqlite3.Connection], None] | None = None,
        new_object: _NewObject | None = None,
    ) -> Deferred[Any]:
        """Queue ``run(connection)`` for the next group commit; fires after COMMIT."""
        if self._thread is None:
            return fail(StoreNotRunning(f"the key store {self.path} is not running"))
        job = _WriteJob(run, Deferred(), on_success, after_commit, new_object)
        self._queue.put(job)
        return job.deferred

    def _write_loop(self, connection: sqlite3.Connection) -> None:
        """The writer thread: take what is queued, commit it as one group, repeat."""
        try:
            stopping = False
            last_group = 0
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                wait = group_wait(last_group, 1 + self._queue.qsize())
                if wait:
                    time.sleep(wait)
                jobs = [first]
                while len(jobs) < _MAX_GROUP:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stopping = True
                        break
                    jobs.append(job)
                last_group = len(jobs)
                outcomes = self._run_group(connection, jobs)
                self._reactor.callFromThread(self._deliver, outcomes)
        finally:
            connection.close()
            self._reactor.callFromThread(self._writer_finished)

    def _run_group(
        self, connection: sqlite3.Connection, jobs: list[_WriteJob]
    ) -> list[tuple[_WriteJob, bool, Any]]:
        """Run ``jobs`` in one transaction; commit once.

        The group's new objects are inserted first, together (insertions commute
        with the group's other writes: an update or removal never names an object
        that is not stored yet); then each other job runs.  A job that raises fails
        alone: it is rolled back to a savepoint, or, when nothing was written before
        it, with the transaction, which begins again (the first write needs no
        SAVEPOINT and RELEASE: two statements fewer per group, each a round for the
        GIL).  New objects whose insertion together
        fails are run one by one the same way, so a duplicate fails alone.  When the
        transaction itself fails (the commit, or an error that makes sqlite abandon
        it), every job of the group fails: none of them is durable.
        """
        outcomes: list[tuple[_WriteJob, bool, Any]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            written = False
            left = jobs
            together = [job for job in jobs if job.new_object is not None]
            if len(together) > 1:
                try:
                    seqs = _insert_objects(connection, [job.new_object for job in together])  # type: ignore[misc]
                except Exception:
                    self._begin_again(connection)
                else:
                    written = True
                    outcomes.extend(
                        (job, True, seq) for job, seq in zip(together, seqs, strict=True)
                    )
                    left = [job for job in jobs if job.new_object is None]
            for job in left:
                if written:
                    connection.execute("SAVEPOINT job")
                try:
                    value = job.run(connection)
                except Exception:
                    failure = Failure()
                    if not written:
                        self._begin_again(connection)
                    elif not connection.in_transaction:
                        raise
                    else:
                        connection.execute("ROLLBACK TO job")
                        connection.execute("RELEASE job")
                    outcomes.append((job, False, failure))
                else:
                    if written:
                        connection.execute("RELEASE job")
                    written = True
                    outcomes.append((job, True, value))
            connection.execute("COMMIT")
        except Exception:
            failure = Failure()
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            return [(job, False, failure) for job in jobs]
        self.commit_count += 1
        for job, succeeded, _ in outcomes:
            if succeeded and job.after_commit is not None:
                try:
                    job.after_commit(connection)
                except Exception:
                    # The job is committed; what follows is housekeeping.
                    self._log.failure("Housekeeping after a commit failed")
        return outcomes

    @staticmethod
    def _begin_again(connection: sqlite3.Connection) -> None:
        """After a failure in a transaction that has written nothing that must stay:
        roll it back and begin another."""
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.execute("BEGIN IMMEDIATE")

    def _deliver(self, outcomes: list[tuple[_WriteJob, bool, Any]]) -> None:
        """In the reactor thread: fire each job's Deferred with its committed outcome."""
        for job, succeeded, value in outcomes:
            if succeeded:
                if job.on_success is not None:
                    job.on_success(value)
                job.deferred.callback(value)
            else:
                job.deferred.errback(value)

    # -- reads ----------------------------------------------------------------------

    def _read(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        """All rows of one query on the read connection.

        Fetching every row ends the statement, so no read transaction stays open to
        pin an old snapshot.
        """
        if self._reader is None:
            raise StoreNotRunning(f"the key store {self.path} is not running")
        return self._reader.execute(sql, tuple(parameters)).fetchall()

    def _answer(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run a read now and return its outcome as a fired Deferred."""
        try:
            return succeed(function(*args))
        except Exception:
            return fail()

    # -- IKeyStore --------------------------------------------------------------------

    def add_object(self, obj: ManagedObject) -> Deferred[None]:
        """Store a new object; fails with :class:`ObjectExists` for a used identifier."""
        try:
            stored, entries, snapshot = _stored_form(obj.attributes)
        except Exception:
            return fail()
        tenant = obj.tenant
        values = (
            obj.unique_identifier,
            tenant,
            obj.object_type,
            None if obj.wrapped_material is None else bytes(obj.wrapped_material),
            obj.revision,
            int(time.time()),
            obj.root_key_version,
            stored,
        )

        def add(connection: sqlite3.Connection) -> int:
            try:
                return _insert_objects(connection, [(values, entries)])[0]
            except sqlite3.IntegrityError:
                if connection.execute(
                    "SELECT 1 FROM objects WHERE unique_identifier = ?", values[:1]
                ).fetchone():
                    raise ObjectExists(
                        f"an object with Unique Identifier {values[0]!r} exists"
                    ) from None
                raise

        def added(seq: int) -> None:
            self._remember(values[0], (seq, values[4], values[2], snapshot, tenant))

        return self._submit(add, added, new_object=(values, entries)).addCallback(lambda _: None)

    def get_object(self, tenant: str, unique_identifier: str) -> Deferred[ManagedObject | None]:
        """The tenant's object, or None (also when another tenant owns it)."""
        return self._answer(self._get_object, tenant, unique_identifier)

    def _get_object(self, tenant: str, unique_identifier: str) -> ManagedObject | None:
        if self._reader is None:
            raise StoreNotRunning(f"the key store {self.path} is not running")
        row = self._reader.execute(
            "SELECT seq, revision, object_type, wrapped_material, root_key_version"
            " FROM objects WHERE unique_identifier = ? AND tenant = ?",
            (unique_identifier, tenant),
        ).fetchone()
        if row is None:
            self._objects.pop(unique_identifier, None)
            return None
        seq, revision, object_type, wrapped_material, root_key_version = row
        cached = self._objects.get(unique_identifier)
        if cached is not None and cached[0] == seq and cached[1] == revision:
            self._objects.move_to_end(unique_identifier)
            attributes = _thaw(cached[3])
        else:
            # The blob only when it is needed, from the same row by its key; one
            # statement, so the row's columns come from one snapshot.
            row = self._reader.execute(
                "SELECT revision, object_type, wrapped_material, root_key_version, attributes"
                " FROM objects WHERE seq = ?",
                (seq,),
            ).fetchone()
            if row is None:
                self._objects.pop(unique_identifier, None)
                return None
            revision, object_type, wrapped_material, root_key_version, stored = row
            attributes = schema.decode_attributes(stored)
            self._remember(
                unique_identifier, (seq, revision, object_type, _freeze(attributes), tenant)
            )
        return ManagedObject(
            unique_identifier=unique_identifier,
            tenant=tenant,
            object_type=object_type,
            attributes=attributes,
            wrapped_material=wrapped_material,
            revision=revision,
            root_key_version=root_key_version,
        )

    def object_revision(
        self, tenant: str, unique_identifier: str
    ) -> Deferred[tuple[int, int] | None]:
        """(seq, revision) of the tenant's object, or None (also when another tenant owns
        it): whether a copy read earlier is still current, in one indexed lookup of the
        object's row, without reading its attributes or material."""
        return self._answer(self.revision_now, tenant, unique_identifier)

    def revision_now(self, tenant: str, unique_identifier: str) -> tuple[int, int] | None:
        """What :meth:`object_revision` answers, at once (it is read at once anyway)."""
        if self._reader is None:
            raise StoreNotRunning(f"the key store {self.path} is not running")
        if self.sole_writer:
            cached = self._objects.get(unique_identifier)
            if cached is not None and cached[4] == tenant:
                return (cached[0], cached[1])
        row = self._reader.execute(
            "SELECT seq, revision FROM objects WHERE unique_identifier = ? AND tenant = ?",
            (unique_identifier, tenant),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _remember(self, unique_identifier: str, entry: _CachedObject) -> None:
        """Keep an object's decoded attributes for the reads to come (LRU-bounded)."""
        if self.object_cache_size <= 0:
            return
        objects = self._objects
        objects[unique_identifier] = entry
        objects.move_to_end(unique_identifier)
        while len(objects) > self.object_cache_size:
            objects.popitem(last=False)

    def update_object(self, obj: ManagedObject) -> Deferred[None]:
        """Replace the object's attributes and material if nobody changed it meanwhile.

        Fails with :class:`ConcurrentModification` when the stored revision is not
        ``obj.revision`` (or the object is gone); on success ``obj.revision`` goes up
        by one.  The attributes' blob is rewritten; of the index, only the rows of
        names whose instances changed, found against the cached copy of the stored
        revision (or, without one, the stored blob).
        """
        revision = obj.revision
        unique_identifier, tenant = obj.unique_identifier, obj.tenant
        cached = self._objects.get(unique_identifier)
        try:
            if cached is not None and cached[1] == revision:
                # The stored revision is the cached one (if the CAS below holds).
                stored, stale, fresh, snapshot = _changes(cached[3], obj.attributes)
                known: tuple[int, list[_IndexEntry], list[_IndexEntry]] | None = (
                    cached[0],
                    stale,
                    fresh,
                )
            else:
                stored, _, snapshot = _stored_form(obj.attributes)
                known = None
        except Exception:
            return fail()
        object_type = obj.object_type
        values = (
            object_type,
            None if obj.wrapped_material is None else bytes(obj.wrapped_material),
            obj.root_key_version,
            stored,
        )

        def write(
            connection: sqlite3.Connection,
            seq: int,
            stale: list[_IndexEntry],
            fresh: list[_IndexEntry],
        ) -> bool:
            cursor = connection.execute(
                "UPDATE objects SET object_type = ?, wrapped_material = ?, root_key_version = ?,"
                " attributes = ?, revision = revision + 1"
                " WHERE seq = ? AND unique_identifier = ? AND tenant = ? AND revision = ?",
                (*values, seq, unique_identifier, tenant, revision),
            )
            if cursor.rowcount != 1:
                return False
            if stale:
                connection.executemany(
                    _DELETE_INDEX, [(tenant, name, match, seq) for name, match in stale]
                )
            if fresh:
                _insert_index(connection, tenant, seq, fresh)
            return True

        written: list[int] = []

        def update(connection: sqlite3.Connection) -> None:
            if known is not None and write(connection, *known):
                written.append(known[0])
                return
            # No cached copy of the stored revision (or not this row's): compare with
            # the stored blob.
            row = connection.execute(
                "SELECT seq, attributes FROM objects"
                " WHERE unique_identifier = ? AND tenant = ? AND revision = ?",
                (unique_identifier, tenant, revision),
            ).fetchone()
            if row is None:
                raise ConcurrentModification(
                    f"object {unique_identifier} changed since revision {revision} was read"
                    " (or is gone)"
                )
            seq = row[0]
            before = schema.decode_attributes(row[1])
            after = {name: items for name, items, _, _ in snapshot}
            if not write(connection, seq, *_index_changes(before, after)):
                raise AssertionError("the row read in this transaction changed")
            written.append(seq)

        def updated(_: None) -> None:
            obj.revision = revision + 1
            self._remember(
                unique_identifier, (written[-1], revision + 1, object_type, snapshot, obj.tenant)
            )

        return self._submit(update, updated)

    def replace_wrapped_material(
        self,
        tenant: str,
        unique_identifier: str,
        expected: bytes,
        wrapped_material: bytes,
        root_key_version: str | None,
    ) -> Deferred[bool]:
        """Swap the object's wrapped material for a rewrapped form of the same material.

        Only while the stored material is still ``expected`` (compare-and-swap): a
        destroyed or re-keyed object is left alone.  The revision and the attributes do
        not change, so no concurrent update fails because of it.  Fires True when
        swapped.
        """
        values = (
            bytes(wrapped_material),
            root_key_version,
            unique_identifier,
            tenant,
            bytes(expected),
        )

        def replace(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE objects SET wrapped_material = ?, root_key_version = ?"
                " WHERE unique_identifier = ? AND tenant = ? AND wrapped_material = ?",
                values,
            )
            return cursor.rowcount == 1

        return self._submit(replace)

    def locate(
        self,
        tenant: str,
        criteria: list[LocateCriterion],
        offset: int,
        maximum: int | None,
    ) -> Deferred[list[str]]:
        """The tenant's objects matching every criterion, newest first, in one query."""
        return self._answer(self._locate, tenant, criteria, offset, maximum)

    def _locate(
        self, tenant: str, criteria: list[LocateCriterion], offset: int, maximum: int | None
    ) -> list[str]:
        conditions = schema.match_conditions(criteria)
        if conditions is None:
            return []
        sql, parameters = locate_sql(tenant, conditions, offset, maximum)
        return [unique_identifier for (unique_identifier,) in self._read(sql, parameters)]

    def locate_count(self, tenant: str, criteria: list[LocateCriterion]) -> Deferred[int]:
        """How many of the tenant's objects match every criterion (Located Items)."""
        return self._answer(self._locate_count, tenant, criteria)

    def _locate_count(self, tenant: str, criteria: list[LocateCriterion]) -> int:
        conditions = schema.match_conditions(criteria)
        if conditions is None:
            return 0
        sql, parameters = locate_sql(tenant, conditions, 0, None)
        ((count,),) = self._read(f"SELECT count(*) FROM ({sql})", parameters)
        return int(count)

    def count_objects(self, tenant: str) -> Deferred[int]:
        """How many objects the tenant has, in any state."""
        return self._answer(self._count_objects, tenant)

    def _count_objects(self, tenant: str) -> int:
        ((count,),) = self._read("SELECT count(*) FROM objects WHERE tenant = ?", (tenant,))
        return int(count)
