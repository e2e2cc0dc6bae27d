# -*- test-case-name: tests.test_audit -*-
"""The audit log: one hash-chained JSON line per admin change and per KMIP operation.

Every record carries ``prev``, the ``hash`` of the record before it, and its own
``hash`` (SHA-256 of the record's canonical JSON without ``hash``), plus a ``seq``
that counts up from 1.  An edited line no longer matches its hash; a removed or
inserted line breaks the chain and the count at the next line.  :func:`verify_file`
(``kmiptwist audit verify``) checks a whole file and names the first bad line.  What a
chain cannot show is lines cut off the *end* of the file: compare the last ``seq``
and ``hash`` with a copy kept elsewhere (the server logs them when it stops).

Durability, honestly: appends are written and fsynced by a writer thread, in groups
(everything queued while the previous fsync ran goes into the next one), with at
most one fsync every ``sync_interval`` seconds.  :meth:`AuditLog.record` returns a
Deferred that fires once its record is on disk; the admin API waits for it before
answering, so an acknowledged admin change is always audited.  KMIP operations do
not wait (an fsync per operation would cap throughput at the disk's fsync rate):
their records reach the disk within about ``sync_interval`` plus one fsync of the
response, and a crash in that window can lose them.

Cost, since every KMIP operation pays it: the reactor thread only appends a tuple of
the record's values to a list; the writer thread, woken once per ``sync_interval``
under load, formats a whole batch with :class:`_Formatter` (a template per set of
detail names, strings escaped by ``json``'s C function, the time text cached per
second), which writes exactly the bytes :func:`canonical` would, so every log written
before or after verifies the same way.

A Key Protect call made while a KMIP operation runs can attach its correlation id to
that operation's record with :func:`note_correlation_id`.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring_ascii
from queue import SimpleQueue
from typing import Any

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger

__all__ = [
    "AuditError",
    "AuditLog",
    "GENESIS",
    "Verification",
    "audit_notes",
    "canonical",
    "note_correlation_id",
    "record_hash",
    "verify_file",
    "verify_lines",
]

GENESIS = "0" * 64
"""The ``prev`` of the first record of a log."""

_TAIL_CHUNK = 1 << 16

_log = Logger()


class AuditError(Exception):
    """The audit log cannot be opened, continued or written; the message says why."""


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes a record is hashed and written as: sorted keys, no spaces, ASCII."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical form without its ``hash`` field."""
    content = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical(content)).hexdigest()


# -- correlation ids from the wrapping layer -------------------------------------------

_notes: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "kmiptwist_audit_notes", default=None
)


def audit_notes() -> dict[str, Any]:
    """Start collecting notes (correlation ids) for the operation running in this context.

    The processor calls it before each batch item and reads the dict afterwards;
    Twisted runs a coroutine and the Deferreds it awaits in one context, so code
    called during the operation reaches the same dict.
    """
    notes: dict[str, Any] = {}
    _notes.set(notes)
    return notes


def note_correlation_id(correlation_id: str) -> None:
    """Attach a Key Protect ``Correlation-Id`` to the audit record of the running operation.

    Does nothing outside an audited operation (a background rewrap, a test).
    """
    notes = _notes.get()
    if notes is not None:
        notes.setdefault("correlation_ids", []).append(correlation_id)


def _iso(seconds: float) -> str:
    """UTC ISO 8601 with milliseconds and a Z (``time.gmtime``: twice as fast as datetime)."""
    whole, milliseconds = divmod(int(round(seconds * 1000)), 1000)
    t = time.gmtime(whole)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 (the fastest form)
        t.tm_year,
        t.tm_mon,
        t.tm_mday,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
        milliseconds,
    )


_Entry = tuple[float, Any, Any, Any, Any, Any, Any, dict[str, Any], "Deferred[None] | None"]
"""One record waiting for the writer thread: time, actor, operation, result, tenant,
unique_identifier, correlation_id, details, and the Deferred of whoever waits for it."""

_BASE = (
    "actor",
    "correlation_id",
    "operation",
    "prev",
    "result",
    "seq",
    "tenant",
    "time",
    "unique_identifier",
)
"""The fields of every record but ``hash``, in sorted order: a template's first slots."""

_RESERVED = frozenset({*_BASE, "hash"})
"""Names a detail cannot have in a template (the writer sets prev, seq, time and hash:
such a detail takes the slow path, and is overwritten)."""

_MILLISECONDS = tuple(f".{milliseconds:03d}Z" for milliseconds in range(1000))
"""The end of a record's time text, by its milliseconds."""

_MAX_TEMPLATES = 256
"""Sets of detail names given a format function; more (names made up at run time) go
the slow way."""

_escape = encode_basestring_ascii

_NULLABLE = frozenset({"correlation_id", "tenant", "unique_identifier"})


def _compile(names: tuple[str, ...]) -> Callable[..., str] | None:
    """A function that formats records with these detail names as :func:`canonical`
    would; None for names the fast path does not handle.

    Generated once per set of names (as ``collections.namedtuple`` does), because a
    ``%`` template with the keys in :func:`canonical`'s sorted order and one
    expression per field is the fewest Python steps per record.  It takes the
    ``_BASE`` values and the details dict; a detail is written as ``,"name":value``,
    or left out when None (as :meth:`AuditLog.record` promises).  Only ``repr``
    literals of escaped names go into the source.  It raises ``TypeError`` (from
    ``encode_basestring_ascii``) for any value that is not a str (or None where
    allowed): the caller then formats that record through :func:`canonical`.
    """
    if _RESERVED.intersection(names) or (names and min(names) < _BASE[0]):
        # A detail that might sort first would decide whether "actor" needs a comma.
        return None
    template, values = [], []
    for key in sorted(_BASE + names):
        if key in names:
            index = names.index(key)
            prefix = repr("," + _escape(key) + ":")
            template.append("%s")
            values.append(f'"" if d{index} is None else {prefix} + escape(d{index})')
            continue
        template.append(("," if template else "") + _escape(key) + ":")
        if key in ("prev", "time"):
            template.append('"%s"')
            values.append(key)
        elif key == "seq":
            template.append("%d")
            values.append(key)
        else:
            template.append("%s")
            values.append(
                f'"null" if {key} is None else escape({key})'
                if key in _NULLABLE
                else f"escape({key})"
            )
    unpack = "".join(f"d{index}, " for index in range(len(names)))
    source = "\n".join(
        [
            f"def format_record({', '.join(_BASE)}, details):",
            f"    {unpack}= details.values()" if names else "",
            f"    return {'{' + ''.join(template) + '}'!r} % (",
            *(f"        {value}," for value in values),
            "    )",
        ]
    )
    namespace: dict[str, Any] = {"escape": _escape}
    exec(source, namespace)  # noqa: S102 (source made from repr literals, above)
    function: Callable[..., str] = namespace["format_record"]
    return function


def _no_template(*_: Any) -> str:
    """Stands in for a record's format function when its detail names have none."""
    raise TypeError("these detail names are formatted through canonical()")


def _canonical_text(entry: _Entry, seq: int, prev: str, stamp: str) -> str:
    """A record the way the original writer built it: a dict through :func:`canonical`.

    For what the templates do not cover (ints, floats, bools, lists, odd names).  A
    value JSON cannot encode is written as its ``repr`` rather than stopping the writer.
    """
    _, actor, operation, result, tenant, unique_identifier, correlation_id, details, _ = entry
    fields: dict[str, Any] = {
        "actor": actor,
        "tenant": tenant,
        "operation": operation,
        "unique_identifier": unique_identifier,
        "result": result,
        "correlation_id": correlation_id,
    }
    for key, value in details.items():
        if value is not None:
            fields[key] = value
    fields.pop("hash", None)
    fields["seq"], fields["prev"], fields["time"] = seq, prev, stamp
    try:
        return canonical(fields).decode("ascii")
    except (TypeError, ValueError):
        for key, value in fields.items():
            try:
                canonical(value)
            except (TypeError, ValueError):
                fields[key] = repr(value)
        return canonical(fields).decode("ascii")


class _Formatter:
    """Chains and formats records exactly as :func:`canonical` would, in fewer steps.

    Only the writer thread uses it: it keeps the date and time text of the last
    second seen, and a compiled format function per set of detail names.
    """

    def __init__(self) -> None:
        """Nothing compiled yet; functions are made as records need them."""
        self._functions: dict[tuple[str, ...], Callable[..., str]] = {}
        # In milliseconds; its text is never used: this is before any time gmtime knows.
        self._second = -(1 << 63)
        self._second_text = ""

    def _learn(self, names: tuple[str, ...]) -> Callable[..., str]:
        """The format function for these detail names (kept, up to a bound; past it,
        new names go the slow way rather than compile a function per record)."""
        if len(self._functions) >= _MAX_TEMPLATES:
            return _no_template
        function = self._functions[names] = _compile(names) or _no_template
        return function

    def chain(self, entries: list[_Entry], seq: int, head: str) -> tuple[str, int, str]:
        """The lines of ``entries`` chained after record ``seq`` with hash ``head``, and
        the seq and hash of the last of them."""
        functions, sha256, milliseconds = self._functions, hashlib.sha256, _MILLISECONDS
        second, second_text = self._second, self._second_text
        lines: list[str] = []
        append = lines.append
        for entry in entries:
            seconds, actor, operation, result, tenant, uid, correlation, details, _ = entry
            seq += 1
            # The same arithmetic as _iso; the date and h:m:s change once a second.
            stamped = int(round(seconds * 1000))
            offset = stamped - second
            if not 0 <= offset < 1000:
                offset = stamped % 1000
                second = stamped - offset
                second_text = _iso(second // 1000)[:-5]
            stamp = second_text + milliseconds[offset]
            names = tuple(details)
            try:
                text = (functions.get(names) or self._learn(names))(
                    actor, correlation, operation, head, result, seq, tenant, stamp, uid, details
                )
            except TypeError:
                text = _canonical_text(entry, seq, head, stamp)
            head = sha256(text.encode("ascii")).hexdigest()
            # The hash goes last: verification re-sorts, so one encoding is enough.
            append(f'{text[:-1]},"hash":"{head}"}}\n')
        self._second, self._second_text = second, second_text
        return "".join(lines), seq, head


class _Run:
    """What the reactor thread and one writer thread share, from a start to its stop."""

    __slots__ = ("descriptor", "idle", "pending", "stopping", "wake")

    def __init__(self, descriptor: int) -> None:
        """Nothing pending; the writer is not waiting yet."""
        self.descriptor = descriptor
        self.pending: list[_Entry] = []
        """Records for the writer: the reactor thread appends, the writer takes from the front."""
        self.wake: SimpleQueue[None] = SimpleQueue()
        self.idle = False
        """True while the writer waits on ``wake`` for the next record."""
        self.stopping = False


class AuditLog(Service):
    """Appends hash-chained audit records to ``path`` from a writer thread.

    ``reactor`` gives the time of each record and brings the writer's outcomes back
    to the reactor thread.  ``healthy`` is False after a write failed (until a later
    write succeeds); readiness reports it.
    """

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads,
        clock: IReactorTime,
        sync_interval: float = 0.01,
    ) -> None:
        """An audit log at ``path``; nothing is opened before ``startService``."""
        self.path = path
        self.sync_interval = sync_interval
        self.healthy = True
        self.last_error: str | None = None
        self.written = 0
        """Records written and fsynced since the start (for tests and metrics)."""
        self._reactor = reactor
        self._now = clock.seconds
        self._formatter = _Formatter()
        self._run: _Run | None = None
        """Set while the service runs: where records go."""
        self._stopped: Deferred[None] | None = None
        self._seq = 0
        self._head = GENESIS
        self._size = 0

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record written: what a truncated log would lose."""
        return self._seq, self._head

    # -- lifecycle ---------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        """Open the file (0600), find the end of the chain, start the writer thread.

        A torn last line (a crash during a write) is cut off and the cut is recorded;
        a last line that is not an audit record stops the start with
        :class:`AuditError`, since appending to it would make a chain that never verifies.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(self.path, flags, 0o600)
        try:
            torn = self._find_head(descriptor)
        except BaseException:
            os.close(descriptor)
            raise
        self._run = _Run(descriptor)
        threading.Thread(
            target=self._write_loop, args=(self._run,), name="kmiptwist-audit-writer", daemon=True
        ).start()
        super().startService()
        if torn:
            _log.warn(
                "The audit log {path} ended in a torn line ({size} bytes, a crash during a "
                "write); it was cut off",
                path=self.path,
                size=torn,
            )
            self.record_nowait(
                actor="server", operation="audit.recover", result="success", dropped=torn
            )
        self.record_nowait(actor="server", operation="server.start", result="success")

    def _find_head(self, descriptor: int) -> int:
        """Read the last record's seq and hash; cut a torn tail; return bytes cut."""
        size = os.fstat(descriptor).st_size
        if size == 0:
            self._seq, self._head, self._size = 0, GENESIS, 0
            return 0
        tail, start = b"", size
        while start > 0:
            start = max(0, start - _TAIL_CHUNK)
            tail = os.pread(descriptor, size - start - len(tail), start) + tail
            if tail.count(b"\n") >= 2 or start == 0:
                break
        torn = 0
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n") + 1
            torn = len(tail) - cut
            os.ftruncate(descriptor, size - torn)
            os.fsync(descriptor)
            size -= torn
            tail = tail[:cut]
            if size == 0:
                self._seq, self._head, self._size = 0, GENESIS, 0
                return torn
        last = tail[:-1].rsplit(b"\n", 1)[-1]
        try:
            record = json.loads(last)
            seq, head = record["seq"], record["hash"]
            if not isinstance(seq, int) or record_hash(record) != head:
                raise ValueError("its hash does not match")
        except (ValueError, KeyError, TypeError) as error:
            raise AuditError(
                f"the last line of the audit log {self.path} is not an intact audit record "
                f"({error}); run 'kmiptwist audit verify {self.path}' and move the file aside "
                "to start a new log"
            ) from None
        self._seq, self._head, self._size = seq, head, size
        return torn

    def stopService(self) -> Deferred[None]:  # noqa: N802
        """Write what is queued (and a stop record), then close the file."""
        run = self._run
        if run is None:
            super().stopService()
            done: Deferred[None] = Deferred()
            done.callback(None)
            return done
        self.record_nowait(actor="server", operation="server.stop", result="success")
        super().stopService()
        self._run = None
        self._stopped = Deferred()
        run.stopping = True
        run.wake.put(None)
        return self._stopped

    def _writer_finished(self) -> None:
        """In the reactor thread, once the writer thread has closed the file."""
        _log.info(
            "Audit log {path} closed at record {seq}, hash {hash}",
            path=self.path,
            seq=self._seq,
            hash=self._head,
        )
        stopped, self._stopped = self._stopped, None
        if stopped is not None:
            stopped.callback(None)

    # -- recording ----------------------------------------------------------------------

    def record(
        self,
        *,
        actor: str,
        operation: str,
        result: str,
        tenant: str | None = None,
        unique_identifier: str | None = None,
        correlation_id: str | None = None,
        **details: Any,
    ) -> Deferred[None]:
        """Queue one record; the Deferred fires once it is on disk.

        ``details`` are extra JSON-able fields (peer address, reason, counts); None
        values are left out.  Fails with :class:`AuditError` when the log is not
        running or the write failed.
        """
        run = self._run
        if run is None:
            return fail(AuditError(f"the audit log {self.path} is not running"))
        waiter: Deferred[None] = Deferred()
        self._append(
            run,
            actor,
            operation,
            result,
            tenant,
            unique_identifier,
            correlation_id,
            details,
            waiter,
        )
        return waiter

    def record_nowait(
        self,
        *,
        actor: str,
        operation: str,
        result: str,
        tenant: str | None = None,
        unique_identifier: str | None = None,
        correlation_id: str | None = None,
        **details: Any,
    ) -> None:
        """Queue one record without waiting for the disk (the KMIP path).

        All it does is take the time and append the values: the writer thread
        formats them (see :class:`_Formatter`).
        """
        run = self._run
        if run is not None:
            self._append(
                run,
                actor,
                operation,
                result,
                tenant,
                unique_identifier,
                correlation_id,
                details,
                None,
            )

    def _append(
        self,
        run: _Run,
        actor: str,
        operation: str,
        result: str,
        tenant: str | None,
        unique_identifier: str | None,
        correlation_id: str | None,
        details: dict[str, Any],
        waiter: Deferred[None] | None,
    ) -> None:
        """Stamp a record with the time, queue it, and wake the writer if it sleeps."""
        run.pending.append(
            (
                self._now(),
                actor,
                operation,
                result,
                tenant,
                unique_identifier,
                correlation_id,
                details,
                waiter,
            )
        )
        if run.idle:
            run.idle = False
            run.wake.put(None)

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self, run: _Run) -> None:
        """Take what is queued, chain it, write it in one go, fsync, repeat.

        The writer sleeps out the rest of ``sync_interval`` after each write, and
        waits on ``run.wake`` only when nothing is pending: the reactor thread then
        pays one ``SimpleQueue.put`` for the first record, nothing for the others.
        """
        descriptor, pending, wake = run.descriptor, run.pending, run.wake
        failing = False
        try:
            while True:
                if not pending:
                    if run.stopping:
                        break
                    # Ask for a wake-up, then look again: a record appended before
                    # the flag was seen is found here, one appended after puts a token.
                    run.idle = True
                    if not pending and not run.stopping:
                        wake.get()
                    run.idle = False
                    continue
                # Only this thread removes entries, from the front, in two C calls
                # (atomic under the GIL); what the reactor thread appends meanwhile stays.
                entries = pending.copy()
                del pending[: len(entries)]
                started = time.monotonic()
                error = self._write(descriptor, entries)
                if error is None:
                    self.written += len(entries)
                waiters = [entry[8] for entry in entries if entry[8] is not None]
                # The reactor thread hears only of what it must act on: waiters,
                # failures and the recovery from one.
                if waiters or error is not None or failing:
                    self._reactor.callFromThread(self._deliver, waiters, error)
                failing = error is not None
                if not run.stopping and self.sync_interval > 0:
                    remaining = self.sync_interval - (time.monotonic() - started)
                    if remaining > 0:
                        time.sleep(remaining)
        finally:
            os.close(descriptor)
            self._reactor.callFromThread(self._writer_finished)

    def _write(self, descriptor: int, entries: list[_Entry]) -> str | None:
        """Append the entries' records and fsync; on failure undo and return why."""
        text, seq, head = self._formatter.chain(entries, self._seq, self._head)
        data = text.encode("ascii")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        except OSError as error:
            try:
                # Leave no partial line behind: the chain continues from the old head.
                os.ftruncate(descriptor, self._size)
            except OSError:
                pass
            return f"{error.strerror or error} ({len(entries)} records not written)"
        self._seq, self._head, self._size = seq, head, self._size + len(data)
        return None

    def _deliver(self, waiters: list[Deferred[None]], error: str | None) -> None:
        """In the reactor thread: tell the waiters, and keep ``healthy`` up to date."""
        if error is None:
            if not self.healthy:
                _log.info("The audit log {path} is being written again", path=self.path)
            self.healthy, self.last_error = True, None
        else:
            if self.healthy:
                _log.critical(
                    "Cannot write the audit log {path}: {error}", path=self.path, error=error
                )
            self.healthy, self.last_error = False, error
        for waiter in waiters:
            if error is None:
                waiter.callback(None)
            else:
                waiter.errback(AuditError(f"cannot write the audit log {self.path}: {error}"))


# -- verification -------------------------------------------------------------------------


@frozen
class Verification:
    """The outcome of checking an audit log: how far it is intact, and the first fault."""

    records: int
    """How many records were checked and found intact (before the fault, if any)."""
    line: int | None = None
    """The number (from 1) of the first bad line, None when the log is intact."""
    problem: str | None = None
    """What is wrong with that line."""
    head: str = GENESIS
    """The hash of the last intact record (compare it with a copy kept elsewhere)."""

    @property
    def ok(self) -> bool:
        """True when every line is intact and chained."""
        return self.line is None


def verify_lines(lines: Iterator[bytes]) -> Verification:
    """Check an audit log given as lines (bytes, newline optional); see :func:`verify_file`."""
    head, seq, number = GENESIS, 0, 0
    for number, raw in enumerate(lines, 1):  # noqa: B007 (number is used after the loop)
        text = raw.rstrip(b"\n")
        try:
            record = json.loads(text)
        except ValueError:
            return Verification(number - 1, number, "not a JSON record", head)
        if not isinstance(record, dict) or not {"hash", "prev", "seq"} <= record.keys():
            return Verification(number - 1, number, "not an audit record", head)
        if record_hash(record) != record["hash"]:
            return Verification(
                number - 1, number, "the record does not match its hash: it was altered", head
            )
        if record["prev"] != head or record["seq"] != seq + 1:
            if isinstance(record["seq"], int) and record["seq"] > seq + 1:
                missing = record["seq"] - seq - 1
                what = f"{missing} record{'s' if missing > 1 else ''} before it {'were' if missing > 1 else 'was'} removed"
            elif number == 1:
                what = "the log does not start at the first record: its beginning was removed"
            else:
                what = (
                    f"it does not follow line {number - 1} (a line was altered, inserted or "
                    "reordered there)"
                )
            return Verification(
                number - 1, number, f"record {record['seq']} breaks the chain: {what}", head
            )
        head, seq = record["hash"], record["seq"]
    return Verification(seq, None, None, head)


def verify_file(path: str) -> Verification:
    """Check every line of the audit log at ``path``; name the first bad one.

    Raises ``OSError`` when the file cannot be read.
    """
    with open(path, "rb") as handle:
        return verify_lines(iter(handle))
