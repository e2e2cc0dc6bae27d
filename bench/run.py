"""Benchmark kmiptwist against PyKMIP's server and a canned-reply limit, side by side.

    python bench/run.py            # the full run (about 30 minutes on 2 cores)
    python bench/run.py --smoke    # a short form that checks everything works

Starts each server under test on loopback with the same certificates (one after the
other, so that they never compete for the CPU), runs every scenario against each, and
writes ``results.json`` and ``results.md`` to ``--out`` (default ``bench/results``).
The timed scenarios run in ``--rounds`` alternating rounds and each server reports its
median round, so that a slow minute of a shared machine does not decide a ratio.
On a clean clone it first installs what it needs (``pip install -e '.[test]'``)
when kmiptwist's dependencies or PyKMIP are missing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)


def ensure_dependencies() -> None:
    """Install the project with its test extra (PyKMIP) if anything is missing."""
    missing = []
    for module in ("twisted", "OpenSSL", "cryptography", "attrs", "kmip", "sqlalchemy"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        print(f"installing kmiptwist[test] ({', '.join(missing)} missing)", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True
        )
        importlib.invalidate_caches()


if ROOT not in sys.path:
    sys.path.insert(1, ROOT)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import ssl

    from OpenSSL import SSL

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "pyopenssl_openssl": SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(),
        "kernel": platform.release(),
    }


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run that checks it works")
    parser.add_argument("--out", default=os.path.join(BENCH, "results"))
    parser.add_argument(
        "--servers",
        default=None,
        help="comma-separated: kmiptwist, pykmip, canned, kmiptwist-workersN "
        "[default: all four with kmiptwist-workers2; --smoke: the first three]",
    )
    parser.add_argument(
        "--scenarios",
        default="get,locate,idle,boot-storm,big,create,vcenter",
        help="comma-separated subset of get, locate, idle, boot-storm, big, create, vcenter",
    )
    parser.add_argument("--concurrency", default=None, help="e.g. 1,8,32")
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternating rounds of every timed scenario; each server reports its median "
        "round [default: 3; --smoke: 1]",
    )
    parser.add_argument("--small-store", type=int, default=None)
    parser.add_argument("--big-store", type=int, default=None)
    parser.add_argument("--generator-processes", type=int, default=0)
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the servers' data directories and logs"
    )
    parser.add_argument(
        "--cipher", default="AES128-SHA256", help="the one TLS 1.2 suite the generator offers"
    )
    arguments = parser.parse_args(argv)
    if arguments.rounds is not None and arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    return arguments


def settings_for(arguments: argparse.Namespace) -> dict[str, Any]:
    """Sizes and times of the run (the smoke form is tiny)."""
    if arguments.smoke:
        sizes = {
            "concurrency": [2],
            "warmup": 0.05,
            "duration": 0.25,
            "rounds": 1,
            "small_store": 20,
            "big_store": 60,
            "storm_hosts": 4,
            "storm_keys": 2,
            "storm_repeats": 1,
            "idle_connections": 10,
            "idle_active": 2,
            "key_sample": 50,
            "start_delay": 0.05,
        }
    else:
        sizes = {
            "concurrency": [1, 8, 32],
            "warmup": 1.0,
            "duration": 4.0,
            "rounds": 3,
            "small_store": 1_000,
            "big_store": 100_000,
            "storm_hosts": 64,
            "storm_keys": 20,
            "storm_repeats": 5,
            "idle_connections": 1_000,
            "idle_active": 8,
            "key_sample": 5_000,
            "start_delay": 0.2,
        }
    if arguments.concurrency:
        sizes["concurrency"] = [int(value) for value in arguments.concurrency.split(",")]
    for name in ("warmup", "duration", "rounds", "small_store", "big_store"):
        value = getattr(arguments, name)
        if value is not None:
            sizes[name] = value
    sizes["cipher"] = arguments.cipher
    sizes["generator_processes"] = arguments.generator_processes
    return sizes


WORKER_PLAN = ("get", "boot-storm", "create", "vcenter")
"""What a multi-worker kmiptwist runs (the scaling comparison); the rest needs no repeat."""

ROUND_SUMMARY = (
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "errors",
    "server_cpu_us_per_request",
    "other_cpu_share",
)
"""What the JSON keeps of every round besides the median one."""


def median_round(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's result for a scenario measured in alternating rounds.

    It is the result of the median round by throughput (of an even number, the lower
    middle one), with every round's throughput in run order under ``rounds`` and a
    short summary of each under ``round_results``; its errors are those of all rounds,
    so that an error in any round shows.  If any round failed, the scenario failed.
    """
    throughputs = [window.get("ops_per_s") for window in windows]
    for number, window in enumerate(windows, 1):
        if "failed" in window:
            failed = window["failed"]
            if len(windows) > 1:
                failed = f"round {number} of {len(windows)}: {failed}"
            return {"failed": failed, "rounds": throughputs}
    by_throughput = sorted(windows, key=lambda window: window["ops_per_s"])
    median = dict(by_throughput[(len(windows) - 1) // 2])
    kinds: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for window in windows:
        kinds.update(window.get("error_kinds", {}))
        for kind, example in window.get("error_examples", {}).items():
            examples.setdefault(kind, example)
    median.update(
        errors=sum(window.get("errors", 0) for window in windows),
        error_kinds=dict(kinds),
        error_examples=examples,
        rounds=throughputs,
        round_results=[{name: window.get(name) for name in ROUND_SUMMARY} for window in windows],
    )
    return median


BIG_PLAN = ("big", "create", "vcenter")
"""What a store of ``big_store`` objects runs: Get and Locate in the same rounds as the
small store's, then Create and vCenter's steps, on the big store as a KMS holds one."""

BIG_KINDS = ("kmiptwist", "pykmip")
"""Servers measured on a big store too (the canned server has no store)."""


class Session:
    """One server under test and what the run has stored in it so far.

    A server whose store is measured at two sizes has two sessions, each on its own
    instance: the small store's (``suffix`` empty) and the big store's (``suffix``
    ``" @<big_store>"``), both reporting as ``reports_as``.  Both take part in the
    same alternating rounds of Get and Locate, so that the two sides of a comparison
    between store sizes are measured in the same minutes.
    """

    def __init__(
        self,
        server: Any,
        plan: list[str],
        settings: Any,
        log: Any,
        reports_as: str | None = None,
        suffix: str = "",
    ) -> None:
        self.server = server
        self.plan = [
            step
            for step in plan
            if not server.name.startswith("kmiptwist-workers") or step in WORKER_PLAN
        ]
        self.settings = settings
        self.log = log
        self.reports_as = reports_as or server.name
        self.suffix = suffix
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self.uids: list[str] = []
        self.names: list[str] = []
        self.host_keys: tuple[str, list[list[str]]] | None = None

    def record(self, key: str, function: Any, *args: Any) -> None:
        """Run one scenario once, keep its result, say how it went."""
        self.results[key] = self.measure(key, function, *args)

    def measure(
        self, key: str, function: Any, *args: Any, label: str | None = None
    ) -> dict[str, Any]:
        """Run one window of a scenario, say how it went (as ``label``, default ``key``),
        and return its result, or what it failed with.

        A server still busy with requests the window abandoned is restarted, so that the
        next window starts on an idle server.
        """
        import scenarios

        server = self.server
        label = label or key
        if server.exited():
            self.notes.append(f"{label}: the server had exited; started again before it")
            self.log(f"{server.name:18} {label:34} the server had exited: starting it again")
            server.restart()
        started = time.monotonic()
        try:
            result: dict[str, Any] = function(server, self.settings, *args)
        except Exception as error:  # noqa: BLE001 - one broken scenario is reported, not fatal
            traceback.print_exc()
            self.log(f"{server.name:18} {label:34} FAILED: {error!r}")
            return {"failed": repr(error)}
        summary = (
            f"{result['ops_per_s']:10,.0f}/s p50 {result['p50_ms']:8.2f} "
            f"p99 {result['p99_ms']:8.2f} ms"
            if "ops_per_s" in result and result.get("p99_ms") is not None
            else ""
        )
        self.log(
            f"{server.name:18} {label:34} {summary} err {result.get('errors', 0)}"
            f"  ({time.monotonic() - started:.0f} s)"
        )
        if result.get("abandoned_in_flight") and not scenarios.wait_idle(server):
            self.notes.append(f"{label}: still busy with abandoned requests afterwards; restarted")
            self.log(f"{server.name:18} {label:34} still busy afterwards: restarting it")
            server.restart()
            result["restarted"] = True
        return result

    def keep_median(self, key: str, windows: list[dict[str, Any]]) -> None:
        """Keep the median of a scenario's rounds as its result, and say which it was."""
        result = self.results[key] = median_round(windows)
        if len(windows) > 1 and "failed" not in result:
            rounds = " / ".join(f"{throughput:,.0f}" for throughput in result["rounds"])
            self.log(
                f"{self.server.name:18} {key:34} median {result['ops_per_s']:10,.0f}/s "
                f"of {rounds}, err {result['errors']}"
            )


def run_all(sessions: list[Session], sizes: dict[str, Any]) -> None:
    """Every scenario, each against every server in turn before the next scenario.

    Interleaving keeps each comparison within a minute or so: the speed of a shared
    virtual machine drifts over a long run, and the ratios are what the targets read.
    The timed scenarios go further: they run in alternating rounds, every server in
    turn in each round, and each server keeps its median round, so that one slow
    minute landing on one server's window does not decide a ratio.  Get and Locate
    take the big stores' sessions in the same rounds, each right after its small
    store's session.
    """
    import random

    import scenarios

    concurrency = sizes["concurrency"]
    rounds = sizes["rounds"]
    small, big = sizes["small_store"], sizes["big_store"]

    def each(step: str, action: Any) -> None:
        for session in sessions:
            if step in session.plan:
                action(session)

    def alternate(
        steps: tuple[str, ...],
        key: str,
        function: Any,
        arguments: Callable[..., tuple[Any, ...]],
        by_store: bool = False,
    ) -> None:
        """Measure ``function(server, settings, *arguments(session))`` in ``rounds``
        rounds, every session whose plan has one of ``steps`` in turn in each round,
        each keeping its result as ``key`` (``by_store``: followed by its suffix).

        A server whose window failed, or left it so busy that it was restarted
        (PyKMIP's Locate at 32 connections), is not measured again in this scenario:
        its rounds so far stand.  Restarting it under the same load round after round
        once left PyKMIP's server unable to answer for the rest of a run.
        """
        taking = [session for session in sessions if any(s in session.plan for s in steps)]
        windows: list[list[dict[str, Any]]] = [[] for _ in taking]
        keys = [key + session.suffix if by_store else key for session in taking]
        for number in range(1, rounds + 1):
            for session, named, measured in zip(taking, keys, windows, strict=True):
                if any("failed" in window or window.get("restarted") for window in measured):
                    continue
                label = named + (f" [{number}/{rounds}]" if rounds > 1 else "")
                measured.append(session.measure(named, function, *arguments(session), label=label))
        for session, named, measured in zip(taking, keys, windows, strict=True):
            session.keep_median(named, measured)

    def timed_populate(session: Session, prefix: str, count: int) -> list[str]:
        started = time.monotonic()
        uids = session.server.populate(prefix, count)
        session.log(
            f"{session.server.name:18} stored {len(uids):,} {prefix}keys "
            f"in {time.monotonic() - started:.1f} s"
        )
        return uids

    def setup_small(session: Session) -> None:
        session.uids = timed_populate(session, "bench-", small)
        scenarios.prime(session.server, session.settings, session.uids)
        session.names = [f"bench-{number:06d}" for number in range(small)]

    def setup_big(session: Session) -> None:
        """A store of ``big`` keys; Get and Locate draw on a sample of them."""
        server = session.server
        every_uid = timed_populate(session, "bench-", big)
        sample = random.Random(3).sample(
            range(len(every_uid)), min(sizes["key_sample"], len(every_uid))
        )
        session.uids = [every_uid[i] for i in sample]
        session.names = [f"bench-{i:06d}" for i in sample]
        scenarios.prime(server, session.settings, session.uids)
        session.notes.append(f"{server.object_count():,} objects stored for the @{big} rows")

    for session in sessions:
        if "big" in session.plan:
            setup_big(session)
        elif {"get", "locate", "idle"} & set(session.plan):
            setup_small(session)
    for connections in concurrency:
        alternate(
            ("get", "big"),
            f"get c={connections}",
            scenarios.get,
            lambda session, c=connections: (session.uids, c),
            by_store=True,
        )
    for connections in concurrency:
        alternate(
            ("locate", "big"),
            f"locate c={connections}",
            scenarios.locate,
            lambda session, c=connections: (session.names, c),
            by_store=True,
        )

    def idle(session: Session) -> None:
        session.record("idle", scenarios.idle, session.uids, sizes["idle_active"], sizes["rounds"])

    each("idle", idle)

    def setup_hosts(session: Session) -> None:
        hosts, keys = sizes["storm_hosts"], sizes["storm_keys"]
        uids = timed_populate(session, "host-", hosts * keys + 1)
        scenarios.prime(session.server, session.settings, uids)
        session.host_keys = (
            uids[0],
            [uids[1 + host * keys : 1 + (host + 1) * keys] for host in range(hosts)],
        )

    each("boot-storm", setup_hosts)
    for resume in (False, True):
        each(
            "boot-storm",
            lambda session, r=resume: session.record(
                f"boot-storm {'warm' if r else 'cold'}",
                scenarios.boot_storm,
                *session.host_keys,  # type: ignore[misc]
                r,
            ),
        )
    for connections in concurrency:
        alternate(
            ("create",), f"create c={connections}", scenarios.create, lambda _, c=connections: (c,)
        )
    for resume in (True, False):
        for connections in concurrency:
            alternate(
                ("vcenter",),
                f"vcenter c={connections} resumption {'on' if resume else 'off'}",
                scenarios.vcenter,
                lambda _, c=connections, r=resume: (c, r),
            )


def plan_sessions(
    servers: list[Any], plan: list[str], settings: Any, log: Any, big: int
) -> list[Session]:
    """The sessions of a run, in the order each round takes them.

    With ``big`` in the plan, a server with a store gets a second instance, right after
    the first, for the big store: it runs Get, Locate, Create and vCenter's steps; the
    small store's instance runs the rest.  Without it, one instance runs everything.
    """
    sessions: list[Session] = []
    for server, twin in servers:
        if twin is None:
            sessions.append(Session(server, [s for s in plan if s != "big"], settings, log))
            continue
        sessions.append(Session(server, [s for s in plan if s not in BIG_PLAN], settings, log))
        sessions.append(
            Session(
                twin,
                [s for s in plan if s in BIG_PLAN],
                settings,
                log,
                reports_as=server.name,
                suffix=f" @{big}",
            )
        )
    return sessions


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every scenario ran (whatever the targets say)."""
    arguments = parse(sys.argv[1:] if argv is None else argv)
    ensure_dependencies()
    import report
    import scenarios
    import servers
    from loadgen import TLSSettings

    sizes = settings_for(arguments)
    limit = scenarios.fd_limit(4 * sizes["idle_connections"] + 1024)
    os.makedirs(arguments.out, exist_ok=True)
    # Certificates, keys and databases of the servers under test: never in the output.
    work = tempfile.mkdtemp(prefix="kmiptwist-bench-")
    pki = servers.make_pki(os.path.join(work, "pki"))
    tls = TLSSettings(
        pki.client_certificate_path.path,
        pki.client_private_key_path.path,
        pki.client_ca_certificate_path.path,
        cipher=sizes["cipher"],
    )
    scenario_settings = scenarios.Settings(
        tls,
        warmup=sizes["warmup"],
        duration=sizes["duration"],
        processes=sizes["generator_processes"],
        storm_hosts=sizes["storm_hosts"],
        storm_keys=sizes["storm_keys"],
        storm_repeats=sizes["storm_repeats"],
        idle_connections=sizes["idle_connections"],
        start_delay=sizes["start_delay"],
        request_timeout=10.0 if arguments.smoke else 60.0,
    )
    plan = arguments.scenarios.split(",")
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(
            ["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine(),
        "settings": {**sizes, "fd_limit": limit},
        "servers": {},
        "notes": [],
    }

    began = time.monotonic()

    def log(line: str) -> None:
        print(f"{time.monotonic() - began:6.1f}  {line}", file=sys.stderr, flush=True)

    names = arguments.servers or (
        "kmiptwist,pykmip,canned"
        if arguments.smoke
        else "kmiptwist,pykmip,canned,kmiptwist-workers2"
    )
    started_servers: list[tuple[Any, Any]] = []
    running: list[Any] = []
    sessions: list[Session] = []
    try:
        for name in names.split(","):
            pair = []
            for instance, directory in (
                [(name, name), (f"{name} @{sizes['big_store']}", f"{name}-big")]
                if "big" in plan and name in BIG_KINDS
                else [(name, name)]
            ):
                server = make_server(
                    servers, name, instance, os.path.join(work, directory), pki, sizes["cipher"]
                )
                started = time.monotonic()
                running.append(server)
                server.start()
                log(f"{instance:18} started in {time.monotonic() - started:.1f} s")
                pair.append(server)
            started_servers.append((pair[0], pair[1] if len(pair) > 1 else None))
        sessions = plan_sessions(started_servers, plan, scenario_settings, log, sizes["big_store"])
        run_all(sessions, sizes)
    finally:
        for server in running:
            server.stop()
        if arguments.keep_work:
            log(f"servers' files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = False
    for session in sessions:
        name = session.reports_as
        entry = results["servers"].setdefault(
            name, {"kind": session.server.kind, "scenarios": {}, "notes": []}
        )
        entry["scenarios"].update(session.results)
        entry["notes"] += session.notes + session.server.notes
        failed = failed or any("failed" in result for result in session.results.values())
    for name, entry in results["servers"].items():
        results["notes"] += [f"{name}: {note}" for note in entry["notes"]]
    results["notes"] += standing_notes(results)
    with open(os.path.join(arguments.out, "results.json"), "w", encoding="utf-8") as out:
        json.dump(results, out, indent=1, default=str)
    text = report.markdown(results)
    with open(os.path.join(arguments.out, "results.md"), "w", encoding="utf-8") as out:
        out.write(text)
    print(text)
    return 1 if failed else 0


def make_server(servers: Any, name: str, instance: str, workdir: str, pki: Any, cipher: str) -> Any:
    """An instance, called ``instance``, of the server under test called ``name``."""
    if name == "kmiptwist":
        return servers.KmiptwistServer(instance, workdir, pki)
    if name.startswith("kmiptwist-workers"):
        return servers.KmiptwistServer(
            instance, workdir, pki, workers=int(name.rsplit("workers", 1)[1])
        )
    if name == "pykmip":
        return servers.PyKMIPServer(instance, workdir, pki, cipher=cipher)
    if name == "canned":
        return servers.CannedServer(instance, workdir, pki)
    raise SystemExit(f"unknown server {name!r}")


def standing_notes(results: dict[str, Any]) -> list[str]:
    """What a reader needs to know to read the table."""
    notes = [
        "PyKMIP 0.11 serialises every request on one engine lock and reads every object "
        "for Locate; its vCenter errors are its own (it does not implement the 3-item "
        "Add Attribute batch nor custom x- attributes the way vCenter sends them).",
        "The canned server answers from prepared bytes: no store, no crypto, nothing but "
        "Twisted, TLS and framing; 'of limit' is kmiptwist's throughput as a fraction of it.",
    ]
    if "pykmip" in results["servers"]:
        notes.append(
            "PyKMIP's store is filled through its own SQLAlchemy classes (plaintext key "
            "material, as PyKMIP stores it); kmiptwist's through its own Create on the "
            "running server's database (wrapped material)."
        )
    return notes


if __name__ == "__main__":
    sys.exit(main())
