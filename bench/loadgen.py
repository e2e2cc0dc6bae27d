"""The load generator: closed-loop KMIP clients on non-blocking TLS sockets.

One process runs many client *slots* (a connection each, or a sequence of short
connections) on one epoll loop.  A slot is a Python generator that yields what it
waits for -- a new connection or the reply to a request -- and the :class:`Driver`
resumes it when that is ready.  Requests are bytes encoded beforehand; replies are
checked for Result Status without decoding (:func:`wire.all_succeeded`) and decoded
in full for a sample.

Latencies are kept per kind ("op" for a request, "step" for one vCenter connection,
"host" for one boot-storm host) only for what completes inside the measurement
window; the process also measures its own CPU time over that window, so the report
can say how much of the machine the generator took.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import resource
import selectors
import socket
import ssl
import time
from array import array
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import wire

__all__ = [
    "CONNECT",
    "Connection",
    "Driver",
    "Stats",
    "TLSSettings",
    "WorkerResult",
    "client_context",
]

CONNECT = ("connect",)
"""Yielded by a slot to get a new connection (handshake completed)."""

SAMPLE_EVERY = 97
"""One reply in this many is decoded in full (a prime, so it walks every key list)."""

now_ns = time.perf_counter_ns
"""CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the run."""


class BenchIOError(Exception):
    """A connection failed; ``kind`` names how (connect, tls, closed, timeout)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class TLSSettings:
    """What every generator connection presents and accepts."""

    certificate: str
    private_key: str
    ca: str
    cipher: str = "AES128-SHA256"
    tls13: bool = False


@functools.cache
def client_context(settings: TLSSettings) -> ssl.SSLContext:
    """A client context with the benchmark's one TLS version and cipher suite.

    One per process and settings: a TLS session resumes only on the context it came from.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(settings.ca)
    context.load_cert_chain(settings.certificate, settings.private_key)
    if settings.tls13:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(settings.cipher)
    return context


@dataclass
class Stats:
    """What one process measured inside the window [start, end) (perf_counter ns)."""

    start: int = 0
    end: int = 1 << 62
    latencies: dict[str, array] = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    handshakes: int = 0
    resumed: int = 0
    replies: int = 0

    def record(self, kind: str, started: int, ended: int) -> None:
        """Keep a latency if it ended inside the window."""
        if self.start <= ended < self.end:
            found = self.latencies.get(kind)
            if found is None:
                found = self.latencies[kind] = array("q")
            found.append(ended - started)

    def error(self, kind: str, detail: str = "", when: int | None = None) -> None:
        """Count a failure of ``kind`` if it happened inside the window."""
        when = now_ns() if when is None else when
        if self.start <= when < self.end:
            self.errors[kind] += 1
            self.error_examples.setdefault(kind, detail[:300])

    def check(self, reply: bytes, items: int, operations: list[int]) -> bool:
        """Check a reply's Result Status; decode one in :data:`SAMPLE_EVERY` in full."""
        self.replies += 1
        ok = wire.all_succeeded(reply, items)
        if not ok:
            problem = wire.check_decoded(reply, operations) or "Result Status not Success"
            self.error("status", problem)
        elif self.replies % SAMPLE_EVERY == 1:
            problem = wire.check_decoded(reply, operations)
            if problem is not None:
                self.error("decode", problem)
                ok = False
        return ok


@dataclass
class WorkerResult:
    """What a generator process sends back to the runner."""

    latencies: dict[str, bytes]
    errors: dict[str, int]
    error_examples: dict[str, str]
    handshakes: int
    resumed: int
    cpu_seconds: float
    window_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def process_cpu() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_CONNECTING, _HANDSHAKING, _READY, _WAITING = range(4)


class Connection:
    """One client TLS connection driven by the :class:`Driver`."""

    __slots__ = (
        "driver",
        "slot",
        "sock",
        "raw",
        "state",
        "buffer",
        "needed",
        "deadline",
        "resumed",
        "session",
    )

    def __init__(self, driver: Driver, slot: Slot, session: ssl.SSLSession | None) -> None:
        self.driver = driver
        self.slot = slot
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.raw.setblocking(False)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: ssl.SSLSocket | None = None
        self.state = _CONNECTING
        self.buffer = bytearray()
        self.needed = 0
        self.deadline = 0
        self.resumed = False
        self.session = session

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        """Send close_notify if it can go at once, then close the socket."""
        self.driver.forget(self)
        if self.sock is not None:
            try:
                self.sock.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
            self.sock.close()
        self.raw.close()

    @property
    def ssl_session(self) -> ssl.SSLSession | None:
        """The TLS session, to resume on a later connection."""
        return self.sock.session if self.sock is not None else None


class Slot:
    """One client: a generator of actions and the connection it is waiting on."""

    __slots__ = ("generator", "factory", "waiting", "wake_at")

    def __init__(self, factory: Callable[[], Generator[Any, Any, None]]) -> None:
        self.factory = factory
        self.generator = factory()
        self.waiting: Connection | None = None
        self.wake_at = 0


class Driver:
    """Runs slots on one epoll loop until they finish or the deadline passes."""

    def __init__(
        self,
        address: tuple[str, int],
        context: ssl.SSLContext,
        stats: Stats,
        request_timeout: float = 60.0,
        restart_failed: bool = True,
    ) -> None:
        self.address = address
        self.context = context
        self.stats = stats
        self.request_timeout_ns = int(request_timeout * 1e9)
        self.restart_failed = restart_failed
        self.selector = selectors.DefaultSelector()
        self.connections: set[Connection] = set()
        self.sleeping: list[Slot] = []
        self.live = 0
        self.abandoned = 0
        """Requests still unanswered when the run ended."""
        self.cpu_marks: dict[str, float] = {}
        """This process's CPU seconds when the window started and when the run ended."""

    # -- what slots yield -------------------------------------------------------------

    def _advance(self, slot: Slot, value: Any = None, error: BaseException | None = None) -> None:
        """Resume ``slot`` and start what it asks for next."""
        try:
            action = slot.generator.send(value) if error is None else slot.generator.throw(error)
        except StopIteration:
            self.live -= 1
            return
        except BenchIOError as failure:
            self.stats.error(failure.kind, failure.detail)
            if self.restart_failed:
                slot.generator = slot.factory()
                slot.wake_at = now_ns() + 50_000_000
                self.sleeping.append(slot)
            else:
                self.live -= 1
            return
        if action is CONNECT:
            self._connect(slot, None)
        elif action[0] == "connect":
            self._connect(slot, action[1])
        elif action[0] == "send":
            self._send(action[1], action[2])
        elif action[0] == "sleep":
            slot.wake_at = now_ns() + int(action[1] * 1e9)
            self.sleeping.append(slot)
        else:
            raise ValueError(f"unknown action {action!r}")

    def _connect(self, slot: Slot, session: ssl.SSLSession | None) -> None:
        connection = Connection(self, slot, session)
        self.connections.add(connection)
        connection.deadline = now_ns() + self.request_timeout_ns
        code = connection.raw.connect_ex(self.address)
        if code in (0, errno.EINPROGRESS):
            self.selector.register(connection.raw, selectors.EVENT_WRITE, connection)
        else:
            self._fail(connection, BenchIOError("connect", os.strerror(code)))

    def _send(self, connection: Connection, data: bytes) -> None:
        connection.buffer.clear()
        connection.needed = 0
        connection.state = _WAITING
        connection.deadline = now_ns() + self.request_timeout_ns
        sock = connection.sock
        assert sock is not None
        try:
            view = memoryview(data)
            while view:
                sent = sock.send(view)
                view = view[sent:]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            self._fail(connection, BenchIOError("closed", "send buffer full"))
        except (OSError, ssl.SSLError) as error:
            self._fail(connection, BenchIOError("closed", f"send: {error}"))

    # -- events -----------------------------------------------------------------------

    def forget(self, connection: Connection) -> None:
        """Stop watching ``connection`` (it is being closed)."""
        if connection in self.connections:
            self.connections.discard(connection)
            try:
                self.selector.unregister(connection.raw)
            except (KeyError, ValueError):
                pass

    def _fail(self, connection: Connection, error: BenchIOError) -> None:
        slot = connection.slot
        connection.close()
        self._advance(slot, error=error)

    def _handshake(self, connection: Connection) -> None:
        sock = connection.sock
        assert sock is not None
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self.selector.modify(connection.raw, selectors.EVENT_READ, connection)
            return
        except ssl.SSLWantWriteError:
            self.selector.modify(connection.raw, selectors.EVENT_WRITE, connection)
            return
        except (ssl.SSLError, OSError) as error:
            self._fail(connection, BenchIOError("tls", str(error)))
            return
        self.stats.handshakes += 1
        connection.resumed = sock.session_reused
        if connection.resumed:
            self.stats.resumed += 1
        connection.state = _READY
        self.selector.modify(connection.raw, selectors.EVENT_READ, connection)
        self._advance(connection.slot, connection)

    def _on_event(self, connection: Connection) -> None:
        state = connection.state
        if state == _WAITING:
            self._receive(connection)
        elif state == _CONNECTING:
            code = connection.raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._fail(connection, BenchIOError("connect", os.strerror(code)))
                return
            connection.sock = self.context.wrap_socket(
                connection.raw,
                do_handshake_on_connect=False,
                session=connection.session,
            )
            connection.state = _HANDSHAKING
            self._handshake(connection)
        elif state == _HANDSHAKING:
            self._handshake(connection)
        else:
            # Readable while no request is out: the server closed (or sent junk).
            self._receive(connection)

    def _receive(self, connection: Connection) -> None:
        sock = connection.sock
        assert sock is not None
        buffer = connection.buffer
        while True:
            try:
                chunk = sock.recv(65536)
            except ssl.SSLWantReadError:
                return
            except (ssl.SSLError, OSError) as error:
                self._fail(connection, BenchIOError("closed", f"recv: {error}"))
                return
            if not chunk:
                self._fail(connection, BenchIOError("closed", "server closed the connection"))
                return
            if connection.state != _WAITING:
                self._fail(connection, BenchIOError("closed", "unexpected data"))
                return
            buffer += chunk
            if not connection.needed and len(buffer) >= 8:
                connection.needed = 8 + int.from_bytes(buffer[4:8], "big")
            if connection.needed and len(buffer) >= connection.needed:
                reply = bytes(buffer)
                connection.state = _READY
                self._advance(connection.slot, reply)
                return

    # -- the loop ---------------------------------------------------------------------

    def run(self, slots: list[Slot], start_at: int, until: int) -> None:
        """Start every slot at ``start_at`` and run until they end or ``until`` passes."""
        delay = (start_at - now_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        self.live = len(slots)
        for slot in slots:
            self._advance(slot)
        select = self.selector.select
        next_check = now_ns() + 200_000_000
        window_start = self.stats.start
        marks = self.cpu_marks
        while self.live > 0:
            current = now_ns()
            if current >= until:
                break
            if current >= window_start and "start" not in marks:
                marks["start"] = process_cpu()
            for key, _ in select(min(0.1, (until - current) / 1e9)):
                self._on_event(key.data)
            current = now_ns()
            if self.sleeping:
                due = [slot for slot in self.sleeping if slot.wake_at <= current]
                if due:
                    self.sleeping = [slot for slot in self.sleeping if slot.wake_at > current]
                    for slot in due:
                        self._advance(slot)
            if current >= next_check:
                next_check = current + 200_000_000
                for connection in [c for c in self.connections if c.deadline < current]:
                    if connection.state != _READY:
                        self._fail(connection, BenchIOError("timeout", "no reply in time"))
        marks.setdefault("start", process_cpu())
        marks["end"] = process_cpu()
        self.abandoned = sum(1 for c in self.connections if c.state == _WAITING)
        for connection in list(self.connections):
            connection.close()


def shuffled(items: list[Any], seed: int) -> list[Any]:
    """A copy of ``items`` in a seeded random order."""
    copy = list(items)
    random.Random(seed).shuffle(copy)
    return copy
