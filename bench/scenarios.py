"""The benchmark scenarios: what each client slot does, and how a run is measured.

A run forks generator processes (each an epoll :class:`loadgen.Driver` over its
share of the slots), starts them together, and samples the server's CPU time and
peak RSS from /proc at the edges of the measurement window.  Only what completes
inside the window counts.
"""

from __future__ import annotations

import multiprocessing
import socket
import ssl
import statistics
import time
from array import array
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import wire
from loadgen import (
    CONNECT,
    Driver,
    Slot,
    Stats,
    TLSSettings,
    WorkerResult,
    client_context,
    now_ns,
    shuffled,
)
from servers import CLOCK_TICKS, Server

from kmiptwist.vocabulary.enums import Operation

__all__ = ["Settings", "boot_storm", "create", "get", "idle", "locate", "vcenter"]

_FORK = multiprocessing.get_context("fork")


@dataclass(frozen=True)
class Settings:
    """How long and how hard to run."""

    tls: TLSSettings
    warmup: float = 1.0
    duration: float = 8.0
    processes: int = 0
    """Generator processes; 0: one per 16 connections, at most two (2-core machine)."""
    request_timeout: float = 60.0
    storm_hosts: int = 64
    storm_keys: int = 20
    storm_repeats: int = 5
    idle_connections: int = 1000
    start_delay: float = 0.2
    """Seconds between the generator processes being ready and the common start."""


Build = Callable[[int, int, Stats], list[Slot]]
"""(process index, process count, stats) -> this process's slots."""


def _processes(settings: Settings, slots: int) -> int:
    if settings.processes:
        return max(1, min(settings.processes, slots))
    return max(1, min(2, slots // 16))


def _worker(
    pipe: Any, build: Build, index: int, count: int, settings: Settings, address: Any
) -> None:
    """A generator process: build its slots, wait for the start time, run, report."""
    stats = Stats()
    try:
        slots = build(index, count, stats)
        driver = Driver(address, client_context(settings.tls), stats, settings.request_timeout)
        pipe.send("ready")
        start_at, window_start, window_end, until, restart = pipe.recv()
        driver.restart_failed = restart
        stats.start, stats.end = window_start, window_end
        driver.run(slots, start_at, until)
        window = (min(now_ns(), window_end) - window_start) / 1e9
        cpu = driver.cpu_marks["end"] - driver.cpu_marks["start"]
        pipe.send(
            WorkerResult(
                latencies={kind: values.tobytes() for kind, values in stats.latencies.items()},
                errors=dict(stats.errors),
                error_examples=stats.error_examples,
                handshakes=stats.handshakes,
                resumed=stats.resumed,
                cpu_seconds=cpu,
                window_seconds=window,
                extra={"abandoned": driver.abandoned},
            )
        )
    except BaseException as error:  # noqa: BLE001 - report any failure to the runner
        pipe.send(error)
        raise


def percentile(values: list[int], fraction: float) -> float:
    """The value below which ``fraction`` of sorted ``values`` fall (nearest rank)."""
    if not values:
        return float("nan")
    rank = max(0, min(len(values) - 1, int(round(fraction * len(values) + 0.5)) - 1))
    return float(values[rank])


def _summary(latencies: array, seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        "rate": len(ordered) / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(ordered, 0.50) / 1e6,
        "p95_ms": percentile(ordered, 0.95) / 1e6,
        "p99_ms": percentile(ordered, 0.99) / 1e6,
        "max_ms": (ordered[-1] / 1e6) if ordered else float("nan"),
    }


def run_load(
    server: Server,
    settings: Settings,
    build: Build,
    slots: int,
    primary: str,
    window: tuple[float, float] | None = None,
    finite: bool = False,
) -> dict[str, Any]:
    """Run ``build``'s slots against ``server``; return the measurement as a dict.

    ``window`` is (warmup, duration) in seconds; the settings' by default.  ``primary``
    is the latency kind whose rate is the scenario's throughput.  ``finite`` slots end
    by themselves (a storm): a failed one is not restarted, and the window closes when
    they are all done.
    """
    warmup, duration = window or (settings.warmup, settings.duration)
    count = _processes(settings, slots)
    address = ("127.0.0.1", server.port)
    pipes, workers = [], []
    for index in range(count):
        parent, child = _FORK.Pipe()
        process = _FORK.Process(
            target=_worker, args=(child, build, index, count, settings, address), daemon=True
        )
        process.start()
        pipes.append(parent)
        workers.append(process)
    for pipe in pipes:
        message = pipe.recv()
        if message != "ready":
            raise RuntimeError(f"generator failed to start: {message!r}")
    tree = server.tree
    tree.reset_peak()
    start_at = now_ns() + int(settings.start_delay * 1e9)
    window_start = start_at + int(warmup * 1e9)
    window_end = window_start + int(duration * 1e9)
    for pipe in pipes:
        pipe.send((start_at, window_start, window_end, window_end, not finite))
    _sleep_until(window_start)
    cpu_before = tree.cpu_seconds()
    machine_before = machine_busy_seconds()
    answers: dict[int, Any] = {}
    pending = list(range(count))
    while pending:
        timeout = max(0.0, (window_end - now_ns()) / 1e9)
        ready = wait([pipes[index] for index in pending], timeout)
        if not ready:
            break
        for index in [i for i in pending if pipes[i] in ready]:
            answers[index] = pipes[index].recv()
            pending.remove(index)
    cpu_after = tree.cpu_seconds()
    machine_after = machine_busy_seconds()
    elapsed = (min(now_ns(), window_end) - window_start) / 1e9
    peak = tree.peak_rss()
    for index in pending:
        answers[index] = pipes[index].recv()
    results: list[WorkerResult] = []
    for index, process in enumerate(workers):
        result = answers[index]
        if isinstance(result, BaseException):
            raise RuntimeError(f"generator failed: {result!r}")
        results.append(result)
        process.join(10)
    duration = elapsed if finite else duration
    merged = _merge(results, primary, duration, cpu_after - cpu_before, peak, count)
    other = (machine_after - machine_before) - merged["server_cpu_s"] - merged["generator_cpu_s"]
    merged["other_cpu_share"] = max(0.0, other / elapsed) if elapsed > 0 else None
    return merged


def _merge(
    results: list[WorkerResult],
    primary: str,
    duration: float,
    server_cpu: float,
    peak: int,
    processes: int,
) -> dict[str, Any]:
    kinds: dict[str, array] = {}
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    handshakes = resumed = abandoned = 0
    generator_cpu = 0.0
    for result in results:
        for kind, raw in result.latencies.items():
            values = array("q")
            values.frombytes(raw)
            kinds.setdefault(kind, array("q")).extend(values)
        errors.update(result.errors)
        for kind, example in result.error_examples.items():
            examples.setdefault(kind, example)
        handshakes += result.handshakes
        resumed += result.resumed
        generator_cpu += result.cpu_seconds
        abandoned += result.extra.get("abandoned", 0)
    summaries = {kind: _summary(values, duration) for kind, values in kinds.items()}
    main = summaries.get(primary, _summary(array("q"), duration))
    operations = summaries.get("op", main)["count"]
    return {
        "unit": primary,
        "ops_per_s": main["rate"],
        "p50_ms": main["p50_ms"],
        "p95_ms": main["p95_ms"],
        "p99_ms": main["p99_ms"],
        "completed": main["count"],
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_examples": examples,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_op": server_cpu / main["count"] * 1e6 if main["count"] else None,
        "server_cpu_us_per_request": server_cpu / operations * 1e6 if operations else None,
        "server_peak_rss_mb": peak / 1e6,
        "generator_cpu_s": generator_cpu,
        "generator_cpu_share": generator_cpu / duration if duration else None,
        "generator_processes": processes,
        "handshakes": handshakes,
        "resumed_fraction": resumed / handshakes if handshakes else None,
        "abandoned_in_flight": abandoned,
        "window_s": duration,
        "latency": summaries,
    }


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has been busy (/proc/stat), to show what
    else ran during a window."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def _sleep_until(deadline_ns: int) -> None:
    delay = (deadline_ns - now_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def _share(items: list[Any], index: int, count: int) -> list[Any]:
    """This process's share of the slots (round robin)."""
    return items[index::count]


# -- persistent connections: get, create, locate ----------------------------------------


def _persistent(
    stats: Stats, requests: list[bytes], operation: int, offset: int
) -> Callable[[], Generator[Any, Any, None]]:
    """A slot that keeps one connection and sends ``requests`` in turn, forever."""

    def run() -> Generator[Any, Any, None]:
        connection = yield CONNECT
        position, size = offset, len(requests)
        operations = [operation]
        while True:
            data = requests[position % size]
            position += 1
            started = now_ns()
            reply = yield ("send", connection, data)
            ended = now_ns()
            if stats.check(reply, 1, operations):
                stats.record("op", started, ended)

    return run


def _persistent_run(
    server: Server, settings: Settings, requests: list[bytes], operation: int, connections: int
) -> dict[str, Any]:
    spacing = max(1, len(requests) // connections)

    def build(index: int, count: int, stats: Stats) -> list[Slot]:
        slots = [
            Slot(_persistent(stats, requests, operation, number * spacing))
            for number in range(connections)
        ]
        return _share(slots, index, count)

    result = run_load(server, settings, build, connections, "op")
    result["connections"] = connections
    return result


def prime(server: Server, settings: Settings, uids: list[str], connections: int = 8) -> None:
    """Get every key once, unmeasured: the steady state of keys that have been served.

    kmiptwist clears a key's Fresh attribute (a committed write) on its first Get;
    clients fetch keys they have fetched before, so the write is not what a Get costs.
    """
    requests = [wire.get_request(uid) for uid in uids]

    def build(index: int, count: int, stats: Stats) -> list[Slot]:
        shares = [requests[number::connections] for number in range(connections)]
        return _share([Slot(_once(stats, share)) for share in shares if share], index, count)

    run_load(server, settings, build, connections, "op", window=(0.0, 600.0), finite=True)


def _once(stats: Stats, requests: list[bytes]) -> Callable[[], Generator[Any, Any, None]]:
    """A slot that sends each of ``requests`` once on one connection."""

    def run() -> Generator[Any, Any, None]:
        connection = yield CONNECT
        for data in requests:
            yield ("send", connection, data)
        connection.close()

    return run


def get(server: Server, settings: Settings, uids: list[str], connections: int) -> dict[str, Any]:
    """Get over persistent connections, cycling through ``uids`` in a shuffled order."""
    requests = [wire.get_request(uid) for uid in shuffled(uids, 1)]
    return _persistent_run(server, settings, requests, Operation.GET, connections)


def create(server: Server, settings: Settings, connections: int) -> dict[str, Any]:
    """vCenter's Create (AES-256) over persistent connections; durable before the reply."""
    return _persistent_run(server, settings, [wire.create_request()], Operation.CREATE, connections)


def locate(
    server: Server, settings: Settings, names: list[str], connections: int
) -> dict[str, Any]:
    """Locate by Name (one match each) over persistent connections."""
    requests = [wire.locate_by_name(name) for name in shuffled(names, 2)]
    return _persistent_run(server, settings, requests, Operation.LOCATE, connections)


# -- vCenter: a fresh TLS connection per step -------------------------------------------


def _step(
    stats: Stats,
    box: list[ssl.SSLSession | None],
    resume: bool,
    exchanges: list[tuple[bytes, int, list[int]]],
) -> Generator[Any, Any, list[bytes]]:
    """One vCenter step: connect, ID-less Discover Versions, the step's requests, close."""
    started = now_ns()
    connection = yield ("connect", box[0] if resume else None)
    if resume:
        box[0] = connection.ssl_session
    replies = []
    for data, items, operations in [(_DV, 1, [Operation.DISCOVER_VERSIONS]), *exchanges]:
        sent = now_ns()
        reply = yield ("send", connection, data)
        stats.record("op", sent, now_ns())
        stats.check(reply, items, operations)
        replies.append(reply)
    connection.close()
    stats.record("step", started, now_ns())
    return replies


_DV = wire.discover_versions()
_TEMPLATES = wire.vcenter_templates()
_CREATE = wire.create_request()


def _vcenter(stats: Stats, resume: bool) -> Callable[[], Generator[Any, Any, None]]:
    """A vCenter encrypting VMs one after another (reference §1.3 (b)-(d))."""
    box: list[ssl.SSLSession | None] = [None]
    templates = _TEMPLATES

    def exchange(name: str, uid: str) -> tuple[bytes, int, list[int]]:
        template = templates[name]
        return template.render(uid), len(template.operations), template.operations

    def run() -> Generator[Any, Any, None]:
        while True:
            # A probe: TLS handshake, no KMIP (certificate fetch / health check).
            started = now_ns()
            connection = yield ("connect", box[0] if resume else None)
            if resume:
                box[0] = connection.ssl_session
            connection.close()
            stats.record("step", started, now_ns())
            (_, created) = yield from _step(stats, box, resume, [(_CREATE, 1, [Operation.CREATE])])
            uid = wire.extract_uid(created)
            if uid is None:
                continue
            yield from _step(
                stats,
                box,
                resume,
                [
                    exchange("describe", uid),
                    exchange("describe-2", uid),
                    exchange("describe-3", uid),
                    exchange("tag", uid),
                ],
            )
            yield from _step(
                stats,
                box,
                resume,
                [exchange("get", uid), exchange("state", uid), exchange("activate", uid)],
            )

    return run


def vcenter(server: Server, settings: Settings, connections: int, resume: bool) -> dict[str, Any]:
    """``connections`` vCenter clients at once, each a fresh TLS connection per step."""

    def build(index: int, count: int, stats: Stats) -> list[Slot]:
        slots = [Slot(_vcenter(stats, resume)) for _ in range(connections)]
        return _share(slots, index, count)

    result = run_load(server, settings, build, connections, "step")
    result["connections"] = connections
    result["resumption"] = resume
    return result


# -- boot storm -------------------------------------------------------------------------


def _host(
    stats: Stats, session: ssl.SSLSession | None, requests: list[bytes]
) -> Callable[[], Generator[Any, Any, None]]:
    """An ESXi host after a reboot: DV, the shared key, its own keys, close."""

    def run() -> Generator[Any, Any, None]:
        started = now_ns()
        connection = yield ("connect", session)
        for position, data in enumerate(requests):
            sent = now_ns()
            reply = yield ("send", connection, data)
            stats.record("op", sent, now_ns())
            operation = Operation.DISCOVER_VERSIONS if position == 0 else Operation.GET
            stats.check(reply, 1, [operation])
        connection.close()
        ended = now_ns()
        stats.record("host", started, ended)
        # From the moment the storm started: the largest is the storm's completion time.
        stats.record("done", stats.start, ended)

    return run


def _sessions(settings: Settings, address: tuple[str, int], count: int) -> list[ssl.SSLSession]:
    """One TLS session per host, from a connection made before the storm."""
    context = client_context(settings.tls)
    sessions = []
    for _ in range(count):
        with socket.create_connection(address) as raw, context.wrap_socket(raw) as sock:
            sessions.append(sock.session)
    return sessions


def boot_storm(
    server: Server,
    settings: Settings,
    shared: str,
    own: list[list[str]],
    resume: bool,
) -> dict[str, Any]:
    """``len(own)`` hosts connect at once; completion time of the whole storm, repeated."""
    hosts = len(own)
    dv = wire.discover_versions()
    shared_request = wire.get_request(shared)
    plans = [[dv, shared_request, *(wire.get_request(uid) for uid in keys)] for keys in own]
    storms = []
    for _ in range(settings.storm_repeats):

        def build(index: int, count: int, stats: Stats) -> list[Slot]:
            mine = _share(list(range(hosts)), index, count)
            sessions: list[ssl.SSLSession | None] = [None] * len(mine)
            if resume:
                sessions = list(_sessions(settings, ("127.0.0.1", server.port), len(mine)))
            return [
                Slot(_host(stats, session, plans[host]))
                for host, session in zip(mine, sessions, strict=True)
            ]

        storms.append(
            run_load(
                server,
                settings,
                build,
                hosts,
                "host",
                window=(0.0, settings.request_timeout),
                finite=True,
            )
        )
        wait_idle(server)

    def completion(storm: dict[str, Any]) -> float:
        done = storm["latency"].get("done")
        if not done or done["count"] < hosts:
            return float("inf")  # a host failed: the storm never completed
        return float(done["max_ms"]) / 1e3

    completions = [completion(storm) for storm in storms]
    ordered = sorted(range(len(storms)), key=lambda index: completions[index])
    median_index = ordered[len(ordered) // 2]
    result = dict(storms[median_index])
    host_ms = result["latency"].get("host", {})
    requests = hosts * len(plans[0]) if plans else 0
    median_completion = completions[median_index]
    result.update(
        {
            "hosts": hosts,
            "keys_per_host": len(own[0]) if own else 0,
            "resumption": resume,
            "completion_s": median_completion,
            "completion_s_all": completions,
            "ops_per_s": requests / median_completion if median_completion else 0.0,
            "unit": "request",
            "p50_ms": host_ms.get("p50_ms"),
            "p95_ms": host_ms.get("p95_ms"),
            "p99_ms": host_ms.get("p99_ms"),
            "errors": sum(storm["errors"] for storm in storms),
            "error_kinds": dict(
                sum((Counter(storm["error_kinds"]) for storm in storms), Counter())
            ),
            "server_cpu_us_per_op": (result["server_cpu_s"] / requests * 1e6 if requests else None),
        }
    )
    result["server_cpu_us_per_request"] = result["server_cpu_us_per_op"]
    return result


# -- idle connections -------------------------------------------------------------------


def _hold(pipe: Any, settings: Settings, address: tuple[str, int], count: int) -> None:
    """Open ``count`` mutual-TLS connections (one Discover Versions each) and hold them."""
    context = client_context(settings.tls)
    held, failures = [], 0
    dv = wire.discover_versions()
    for _ in range(count):
        try:
            raw = socket.create_connection(address, timeout=30)
            sock = context.wrap_socket(raw)
            sock.sendall(dv)
            reply = b""
            while len(reply) < 8 or len(reply) < 8 + int.from_bytes(reply[4:8], "big"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                reply += chunk
            held.append(sock)
        except (OSError, ssl.SSLError):
            failures += 1
    pipe.send((len(held), failures))
    pipe.recv()
    for sock in held:
        sock.close()
    pipe.send("closed")


def _idle_round(server: Server, settings: Settings, uids: list[str], active: int) -> dict[str, Any]:
    """A Get load, then ``settings.idle_connections`` idle connections opened and the
    same load again while they are held; the server's RSS before and with them."""
    baseline = get(server, settings, uids, active)
    tree = server.tree
    rss_before = tree.rss()
    tree.reset_peak()
    parent, child = _FORK.Pipe()
    address = ("127.0.0.1", server.port)
    started = time.monotonic()
    holder = _FORK.Process(
        target=_hold, args=(child, settings, address, settings.idle_connections), daemon=True
    )
    holder.start()
    opened, failures = parent.recv()
    open_seconds = time.monotonic() - started
    time.sleep(min(1.0, settings.start_delay * 5))  # let the server settle
    rss_idle = tree.rss()
    peak_idle = tree.peak_rss()
    loaded = get(server, settings, uids, active)
    rss_loaded = tree.rss()
    parent.send("close")
    parent.recv()
    holder.join(30)
    wait_idle(server)
    return {
        "idle_connections": opened,
        "idle_failures": failures,
        "open_seconds": open_seconds,
        "server_rss_before_mb": rss_before / 1e6,
        "server_rss_idle_mb": rss_idle / 1e6,
        "server_peak_rss_mb": max(peak_idle, loaded["server_peak_rss_mb"] * 1e6) / 1e6,
        "server_rss_loaded_mb": rss_loaded / 1e6,
        "kb_per_idle_connection": (rss_idle - rss_before) / max(1, opened) / 1e3,
        "get_without_idle": baseline,
        "get_with_idle": loaded,
        "throughput_ratio_with_idle": (
            loaded["ops_per_s"] / baseline["ops_per_s"] if baseline["ops_per_s"] else None
        ),
        "p99_ratio_with_idle": (
            loaded["p99_ms"] / baseline["p99_ms"] if baseline["p99_ms"] else None
        ),
    }


def idle(
    server: Server, settings: Settings, uids: list[str], active: int, rounds: int = 1
) -> dict[str, Any]:
    """Hold ``settings.idle_connections`` idle connections; measure RSS, and a Get load
    just before and while they are open, in ``rounds`` rounds.

    Each round compares its two windows, measured seconds apart; the ratios reported
    are the medians of the rounds' ratios, and the windows shown those of the round
    with the median p99 ratio.  Memory is the most any round held (what an idle
    connection adds: the first round's, on a server that never had them), and the
    idle connections the fewest any round opened.
    """
    measured = [_idle_round(server, settings, uids, active) for _ in range(rounds)]
    return idle_summary(measured, active)


def idle_summary(measured: list[dict[str, Any]], active: int) -> dict[str, Any]:
    """The idle scenario's result from its rounds (see :func:`idle`)."""
    p99s = [one["p99_ratio_with_idle"] for one in measured]
    throughputs = [one["throughput_ratio_with_idle"] for one in measured]
    shown = sorted(
        measured,
        key=lambda one: (
            float("inf") if one["p99_ratio_with_idle"] is None else one["p99_ratio_with_idle"]
        ),
    )[(len(measured) - 1) // 2]
    most = max(measured, key=lambda one: one["server_rss_idle_mb"])
    return {
        "unit": "connection",
        **shown,
        "idle_connections": min(one["idle_connections"] for one in measured),
        "idle_failures": sum(one["idle_failures"] for one in measured),
        "server_rss_before_mb": most["server_rss_before_mb"],
        "server_rss_idle_mb": most["server_rss_idle_mb"],
        "kb_per_idle_connection": measured[0]["kb_per_idle_connection"],
        "server_peak_rss_mb": max(one["server_peak_rss_mb"] for one in measured),
        "server_rss_loaded_mb": max(one["server_rss_loaded_mb"] for one in measured),
        "active_connections": active,
        "errors": sum(one["idle_failures"] + one["get_with_idle"]["errors"] for one in measured),
        "throughput_ratio_with_idle": None
        if None in throughputs
        else statistics.median(throughputs),
        "p99_ratio_with_idle": None if None in p99s else statistics.median(p99s),
        "round_ratios": [
            {
                "throughput": throughput,
                "p99": p99,
                "rss_before_mb": one["server_rss_before_mb"],
                "rss_idle_mb": one["server_rss_idle_mb"],
            }
            for throughput, p99, one in zip(throughputs, p99s, measured, strict=True)
        ],
    }


def wait_idle(server: Server, settle: float = 0.1, timeout: float = 15.0) -> bool:
    """Wait until the server stops using CPU (abandoned requests done); False on timeout."""
    tree = server.tree
    deadline = time.monotonic() + timeout
    previous = tree.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(settle)
        current = tree.cpu_seconds()
        if current - previous < settle * 0.05:
            return True
        previous = current
    return False


def fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted``; return the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target
