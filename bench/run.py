"""Benchmark kmiptwist against PyKMIP's server and a canned-reply limit, side by side.

    python bench/run.py            # the full run (about 15 minutes on 2 cores)
    python bench/run.py --smoke    # a short form that checks everything works

Starts each server under test on loopback with the same certificates (one after the
other, so that they never compete for the CPU), runs every scenario against each, and
writes ``results.json`` and ``results.md`` to ``--out`` (default ``bench/results``).
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
import subprocess
import sys
import time
import traceback
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
        default="kmiptwist,pykmip,canned",
        help="comma-separated: kmiptwist, pykmip, canned, kmiptwist-workersN",
    )
    parser.add_argument(
        "--scenarios",
        default="get,locate,idle,boot-storm,big,create,vcenter",
        help="comma-separated subset of get, locate, idle, boot-storm, big, create, vcenter",
    )
    parser.add_argument("--concurrency", default=None, help="e.g. 1,8,32")
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--small-store", type=int, default=None)
    parser.add_argument("--big-store", type=int, default=None)
    parser.add_argument("--generator-processes", type=int, default=0)
    parser.add_argument(
        "--cipher", default="AES128-SHA256", help="the one TLS 1.2 suite the generator offers"
    )
    return parser.parse_args(argv)


def settings_for(arguments: argparse.Namespace) -> dict[str, Any]:
    """Sizes and times of the run (the smoke form is tiny)."""
    if arguments.smoke:
        sizes = {
            "concurrency": [2],
            "warmup": 0.05,
            "duration": 0.25,
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
            "duration": 8.0,
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
    for name in ("warmup", "duration", "small_store", "big_store"):
        value = getattr(arguments, name)
        if value is not None:
            sizes[name] = value
    sizes["cipher"] = arguments.cipher
    sizes["generator_processes"] = arguments.generator_processes
    return sizes


def run_server(
    server: Any, sizes: dict[str, Any], plan: list[str], scenario_settings: Any, log: Any
) -> dict[str, Any]:
    """Every scenario of ``plan`` against one server; returns its results."""
    import random

    import scenarios

    results: dict[str, Any] = {}
    notes: list[str] = []
    concurrency = sizes["concurrency"]

    def record(key: str, function: Any, *args: Any) -> dict[str, Any] | None:
        started = time.monotonic()
        try:
            result = function(server, scenario_settings, *args)
        except Exception as error:  # noqa: BLE001 - one broken scenario is reported, not fatal
            traceback.print_exc()
            results[key] = {"failed": repr(error)}
            log(f"{server.name:10} {key:32} FAILED: {error!r}")
            return None
        results[key] = result
        summary = (
            f"{result['ops_per_s']:10,.0f}/s p50 {result['p50_ms']:8.2f} p99 {result['p99_ms']:8.2f} ms"
            if "ops_per_s" in result and result.get("p99_ms") is not None
            else ""
        )
        log(
            f"{server.name:10} {key:32} {summary} err {result.get('errors', 0)}"
            f"  ({time.monotonic() - started:.0f} s)"
        )
        if result.get("abandoned_in_flight") and not scenarios.wait_idle(server):
            notes.append(f"{key}: still busy with abandoned requests afterwards; restarted")
            server.restart()
        return result

    started = time.monotonic()
    server.start()
    log(f"{server.name:10} started in {time.monotonic() - started:.1f} s")
    try:
        small = sizes["small_store"]
        started = time.monotonic()
        small_uids = server.populate("bench-", small)
        scenarios.prime(server, scenario_settings, small_uids)
        log(f"{server.name:10} stored {small:,} keys in {time.monotonic() - started:.1f} s")
        names = [f"bench-{number:06d}" for number in range(small)]
        baseline = {}
        if "get" in plan:
            for connections in concurrency:
                baseline[connections] = record(
                    f"get c={connections}", scenarios.get, small_uids, connections
                )
        if "locate" in plan:
            for connections in concurrency:
                record(f"locate c={connections}", scenarios.locate, names, connections)
        if "idle" in plan:
            active = sizes["idle_active"]
            base = baseline.get(active) or record(
                f"get c={active}", scenarios.get, small_uids, active
            )
            record("idle", scenarios.idle, small_uids, active, base)
        if "boot-storm" in plan:
            hosts, keys = sizes["storm_hosts"], sizes["storm_keys"]
            host_uids = server.populate("host-", hosts * keys + 1)
            scenarios.prime(server, scenario_settings, host_uids)
            shared, own = (
                host_uids[0],
                [host_uids[1 + host * keys : 1 + (host + 1) * keys] for host in range(hosts)],
            )
            record("boot-storm cold", scenarios.boot_storm, shared, own, False)
            record("boot-storm warm", scenarios.boot_storm, shared, own, True)
        if "big" in plan:
            big = sizes["big_store"]
            have = server.object_count() if server.kind != "canned" else small
            started = time.monotonic()
            extra = server.populate("bench-", max(0, big - have), start=small)
            log(
                f"{server.name:10} stored {len(extra):,} more keys "
                f"({server.object_count() if server.kind != 'canned' else big:,} objects) "
                f"in {time.monotonic() - started:.1f} s"
            )
            every_uid = small_uids + extra
            every_name = [f"bench-{number:06d}" for number in range(small + len(extra))]
            sample = random.Random(3).sample(
                range(len(every_uid)), min(sizes["key_sample"], len(every_uid))
            )
            uids = [every_uid[index] for index in sample]
            picked = [every_name[index] for index in sample]
            scenarios.prime(server, scenario_settings, uids)
            for connections in concurrency:
                record(f"get c={connections} @{big}", scenarios.get, uids, connections)
            for connections in concurrency:
                record(f"locate c={connections} @{big}", scenarios.locate, picked, connections)
        if "create" in plan:
            for connections in concurrency:
                record(f"create c={connections}", scenarios.create, connections)
        if "vcenter" in plan:
            for resume in (True, False):
                for connections in concurrency:
                    record(
                        f"vcenter c={connections} resumption {'on' if resume else 'off'}",
                        scenarios.vcenter,
                        connections,
                        resume,
                    )
    finally:
        started = time.monotonic()
        server.stop()
        log(f"{server.name:10} stopped in {time.monotonic() - started:.1f} s")
    return {"kind": server.kind, "scenarios": results, "notes": notes + server.notes}


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
    work = os.path.join(arguments.out, "work")
    if os.path.exists(work):
        import shutil

        shutil.rmtree(work)
    os.makedirs(work)
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

    failed = False
    for name in arguments.servers.split(","):
        server = make_server(servers, name, os.path.join(work, name), pki, sizes["cipher"])
        log(f"== {name}")
        try:
            results["servers"][name] = run_server(server, sizes, plan, scenario_settings, log)
        except Exception as error:  # noqa: BLE001 - the other servers still run
            traceback.print_exc()
            results["servers"][name] = {"kind": name, "scenarios": {}, "failed": repr(error)}
            failed = True
        failed = failed or any(
            "failed" in result for result in results["servers"][name]["scenarios"].values()
        )
        results["notes"] += [
            f"{name}: {note}" for note in results["servers"][name].get("notes", [])
        ]
    results["notes"] += standing_notes(results)
    with open(os.path.join(arguments.out, "results.json"), "w", encoding="utf-8") as out:
        json.dump(results, out, indent=1, default=str)
    text = report.markdown(results)
    with open(os.path.join(arguments.out, "results.md"), "w", encoding="utf-8") as out:
        out.write(text)
    print(text)
    return 1 if failed else 0


def make_server(servers: Any, name: str, workdir: str, pki: Any, cipher: str) -> Any:
    """The server under test called ``name``."""
    if name == "kmiptwist":
        return servers.KmiptwistServer(name, workdir, pki)
    if name.startswith("kmiptwist-workers"):
        return servers.KmiptwistServer(
            name, workdir, pki, workers=int(name.rsplit("workers", 1)[1])
        )
    if name == "pykmip":
        return servers.PyKMIPServer(name, workdir, pki, cipher=cipher)
    if name == "canned":
        return servers.CannedServer(name, workdir, pki)
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
