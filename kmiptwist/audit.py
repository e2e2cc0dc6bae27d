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

A Key Protect call made while a KMIP operation runs can attach its correlation id to
that operation's record with :func:`note_correlation_id`.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

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

_STOP = object()
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


class _Entry(NamedTuple):
    """One record waiting for the writer thread (``waiter`` None: nobody waits)."""

    fields: dict[str, Any]
    waiter: Deferred[None] | None


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
        self._clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: Deferred[None] | None = None
        self._descriptor: int | None = None
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
        self._descriptor = descriptor
        self._thread = threading.Thread(
            target=self._write_loop, name="kmiptwist-audit-writer", daemon=True
        )
        self._thread.start()
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
        if self._thread is None:
            super().stopService()
            done: Deferred[None] = Deferred()
            done.callback(None)
            return done
        self.record_nowait(actor="server", operation="server.stop", result="success")
        super().stopService()
        self._thread = None
        self._stopped = Deferred()
        self._queue.put(_STOP)
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
        waiter: Deferred[None] = Deferred()
        fields = self._fields(actor, operation, result, tenant, unique_identifier, correlation_id)
        if not self._enqueue(fields, details, waiter):
            return fail(AuditError(f"the audit log {self.path} is not running"))
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
        """Queue one record without waiting for the disk (the KMIP path)."""
        fields = self._fields(actor, operation, result, tenant, unique_identifier, correlation_id)
        self._enqueue(fields, details, None)

    def _fields(
        self,
        actor: str,
        operation: str,
        result: str,
        tenant: str | None,
        unique_identifier: str | None,
        correlation_id: str | None,
    ) -> dict[str, Any]:
        """The fields every record has, stamped with the clock's time."""
        # Formatted by the writer thread: the reactor thread only takes the time.
        return {
            "time": self._clock.seconds(),
            "actor": actor,
            "tenant": tenant,
            "operation": operation,
            "unique_identifier": unique_identifier,
            "result": result,
            "correlation_id": correlation_id,
        }

    def _enqueue(
        self, fields: dict[str, Any], details: dict[str, Any], waiter: Deferred[None] | None
    ) -> bool:
        """Hand a record to the writer thread; False when the log is not running."""
        if self._thread is None:
            return False
        for key, value in details.items():
            if value is not None:
                fields[key] = value
        self._queue.put(_Entry(fields, waiter))
        return True

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        """Take what is queued, chain it, write it in one go, fsync, repeat."""
        descriptor = self._descriptor
        assert descriptor is not None
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                entries = [first]
                while True:
                    try:
                        entry = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if entry is _STOP:
                        stopping = True
                        break
                    entries.append(entry)
                started = time.monotonic()
                error = self._write(descriptor, entries)
                self._reactor.callFromThread(self._deliver, entries, error)
                if not stopping and self.sync_interval > 0:
                    remaining = self.sync_interval - (time.monotonic() - started)
                    if remaining > 0:
                        time.sleep(remaining)
        finally:
            os.close(descriptor)
            self._descriptor = None
            self._reactor.callFromThread(self._writer_finished)

    def _write(self, descriptor: int, entries: list[_Entry]) -> str | None:
        """Append the entries' records and fsync; on failure undo and return why."""
        seq, head = self._seq, self._head
        lines = []
        for entry in entries:
            seq += 1
            fields = entry.fields
            fields["seq"], fields["prev"], fields["time"] = seq, head, _iso(fields["time"])
            body = canonical(fields)
            head = hashlib.sha256(body).hexdigest()
            # The hash goes last: verification re-sorts, so one encoding is enough.
            lines.append(body[:-1] + b',"hash":"' + head.encode("ascii") + b'"}\n')
        data = b"".join(lines)
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

    def _deliver(self, entries: list[_Entry], error: str | None) -> None:
        """In the reactor thread: tell the waiters, and keep ``healthy`` up to date."""
        if error is None:
            self.written += len(entries)
            if not self.healthy:
                _log.info("The audit log {path} is being written again", path=self.path)
            self.healthy, self.last_error = True, None
        else:
            if self.healthy:
                _log.critical(
                    "Cannot write the audit log {path}: {error}", path=self.path, error=error
                )
            self.healthy, self.last_error = False, error
        for entry in entries:
            if entry.waiter is None:
                continue
            if error is None:
                entry.waiter.callback(None)
            else:
                entry.waiter.errback(AuditError(f"cannot write the audit log {self.path}: {error}"))


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
