"""Creates per second with Key Protect as the root key, latency added in the emulator.

    python bench/keyprotect_create.py                  # 64 clients, 50 ms, 15 s
    python bench/keyprotect_create.py --latency 0.05 --clients 64 --seconds 15

Starts the Key Protect emulator (``twistd kmip-keyprotect-emulator --latency``) and
``twistd kmip`` on loopback, binds a tenant to a root key in the emulator with
``kmiptwist tenant add``, and runs closed-loop KMIP clients (persistent TLS
connections, one Create request encoded once and sent again and again) spread over
several processes.  The same load runs against the default tenant (local root key)
in the same run, so the cost of Key Protect shows as a ratio.  Every answer is
checked for Result Status Success.  CPU time of the server, the emulator and the
load generator over the measured window is reported, so that a load generator
saturating the machine would show.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

INSTANCE = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"
API_KEY = "bench-service-id-api-key"
_SUCCESS = b"\x42\x00\x7f\x05\x00\x00\x00\x04\x00\x00\x00\x00"  # Result Status: Success


def create_request() -> bytes:
    """vCenter's Create (AES-256, KMIP 1.1), encoded once."""
    from kmiptwist import ttlv
    from kmiptwist.testing.messages import attribute_1x, request, template_1x
    from kmiptwist.vocabulary.enums import CryptographicAlgorithm, ObjectType, Operation
    from kmiptwist.vocabulary.tags import Tag

    template = template_1x(
        [
            attribute_1x(
                "Cryptographic Algorithm", ttlv.enumeration(0, CryptographicAlgorithm.AES)
            ),
            attribute_1x("Cryptographic Length", ttlv.integer(0, 256)),
            attribute_1x("Cryptographic Usage Mask", ttlv.integer(0, 12)),
        ]
    )
    payload = [ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY), template]
    return request((1, 1), [(Operation.CREATE, payload, None)])


def kmiptwist_cli(data_dir: str, *arguments: str) -> str:
    """Run the ``kmiptwist`` operator command against the server of ``data_dir``."""
    import subprocess

    environment = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "kmiptwist.cli", "--data-dir", data_dir, *arguments],
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"kmiptwist {' '.join(arguments)} failed: {result.stderr.decode()}")
    return result.stdout.decode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker(
    port: int,
    bundle: tuple[str, str, str],
    connections: int,
    start_at: float,
    end_at: float,
    results: Any,
) -> None:
    """One load-generator process: ``connections`` threads, each a persistent connection."""
    from kmiptwist.testing.client import RawKMIPClient, client_context

    os.nice(10)  # the server under test comes first
    message = create_request()
    context = client_context(*bundle)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    cpu_start = [0.0]

    def run() -> None:
        mine: list[float] = []
        try:
            client = RawKMIPClient("127.0.0.1", port, context, timeout=30)
        except OSError as error:
            with lock:
                failures.append(f"connect: {error}")
            return
        with client:
            while True:
                sent = time.time()
                if sent >= end_at:
                    break
                try:
                    answer = client.call(message)
                except (OSError, ConnectionError) as error:
                    with lock:
                        failures.append(f"io: {error}")
                    return
                done = time.time()
                if _SUCCESS not in answer:
                    with lock:
                        failures.append(answer.hex()[:200])
                    continue
                if start_at <= sent and done <= end_at:
                    mine.append(done - sent)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_start[0] = time.process_time()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu_start[0]
    results.put({"latencies": latencies, "failures": failures, "cpu": cpu})


def run_load(
    port: int,
    bundle: tuple[str, str, str],
    clients: int,
    processes: int,
    warmup: float,
    seconds: float,
    watched: dict[str, int],
) -> dict[str, Any]:
    """Run the load; completed Creates in the window, latencies, CPU of each party."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + warmup + 1.0
    end_at = start_at + seconds
    per_process = [
        clients // processes + (1 if n < clients % processes else 0) for n in range(processes)
    ]
    workers = [
        context.Process(target=_worker, args=(port, bundle, count, start_at, end_at, results))
        for count in per_process
        if count
    ]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    time.sleep(max(0.0, end_at - time.time()))
    cpu_after = {name: cpu_seconds(pid) for name, pid in watched.items()}
    gathered = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    latencies = sorted(latency for result in gathered for latency in result["latencies"])
    failures = [failure for result in gathered for failure in result["failures"]]

    def percentile(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    cpu = {name: (cpu_after[name] - cpu_before[name]) / seconds for name in watched}
    cpu["load generator"] = sum(result["cpu"] for result in gathered) / seconds
    server = next(iter(watched))
    return {
        "creates": len(latencies),
        "per_second": len(latencies) / seconds,
        "server_cpu_ms_per_create": cpu[server] * seconds * 1000 / max(len(latencies), 1),
        "p50_ms": percentile(0.50),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "cpu_cores": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally save) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent KMIP clients")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added by Key Protect")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time first")
    parser.add_argument("--max-in-flight", type=int, default=128, help="[keyprotect] max_in_flight")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument(
        "--skip-local", action="store_true", help="do not run the local-root-key load"
    )
    arguments = parser.parse_args(argv)

    from kmiptwist.testing.keyprotect.process import RunningEmulator
    from kmiptwist.testing.server import RunningServer

    workdir = tempfile.mkdtemp(prefix="kp-bench-")
    emulator = RunningEmulator.start(
        os.path.join(workdir, "emulator"),
        api_key=API_KEY,
        extra_arguments=["--latency", str(arguments.latency)],
        niceness=10,
    )
    server = None
    try:
        root_key = emulator.create_root_key(INSTANCE, "bench-root-key")
        api_key_file = os.path.join(workdir, "api-key")
        with open(os.open(api_key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
            handle.write(API_KEY)
        config = os.path.join(workdir, "kmiptwist.conf")
        with open(config, "w") as handle:
            handle.write(
                f"[keyprotect]\nendpoint = {emulator.url}\ntoken_url = {emulator.token_url}\n"
                f"max_in_flight = {arguments.max_in_flight}\n"
            )
        server = RunningServer.start(os.path.join(workdir, "data"), ["--config", config])
        kmiptwist_cli(
            server.data_dir, "tenant", "add", "kp-bench", "--root-key-id", root_key,
            "--keyprotect-instance", INSTANCE, "--api-key-file", api_key_file,
        )  # fmt: skip
        out = os.path.join(workdir, "client")
        kmiptwist_cli(server.data_dir, "ca", "issue", "--tenant", "kp-bench", "--out", out)
        bundle = (
            os.path.join(out, "client.pem"),
            os.path.join(out, "client-key.pem"),
            os.path.join(out, "ca.pem"),
        )
        assert emulator.process is not None
        watched = {"kmip server": server.process.pid, "emulator": emulator.process.pid}
        before = emulator.control()
        keyprotect = run_load(
            server.port, bundle, arguments.clients, arguments.processes,
            arguments.warmup, arguments.seconds, watched,
        )  # fmt: skip
        after = emulator.control()
        keyprotect["emulator_max_in_flight"] = after["max_in_flight"]
        keyprotect["wraps"] = after["calls"].get("wrap", 0) - before["calls"].get("wrap", 0)
        report: dict[str, Any] = {
            "clients": arguments.clients,
            "processes": arguments.processes,
            "latency_s": arguments.latency,
            "seconds": arguments.seconds,
            "cores": os.cpu_count(),
            "keyprotect": keyprotect,
        }
        if not arguments.skip_local:
            local = run_load(
                server.port, server.client_bundle, arguments.clients, arguments.processes,
                arguments.warmup, arguments.seconds, watched,
            )  # fmt: skip
            report["local"] = local
            report["keyprotect_over_local"] = keyprotect["per_second"] / max(
                local["per_second"], 1e-9
            )
    finally:
        if server is not None:
            server.stop()
        emulator.stop()
    print(json.dumps(report, indent=2))
    if arguments.out:
        with open(arguments.out, "w") as handle:
            json.dump(report, handle, indent=2)
    ok = keyprotect["failures"] == 0 and keyprotect["per_second"] >= 500
    print(
        f"Key Protect ({arguments.latency * 1000:.0f} ms): {keyprotect['per_second']:.0f} Creates/s "
        f"with {arguments.clients} clients, p50 {keyprotect['p50_ms']:.1f} ms, p99 "
        f"{keyprotect['p99_ms']:.1f} ms, {keyprotect['failures']} failures, server "
        f"{keyprotect['server_cpu_ms_per_create']:.2f} ms CPU per Create on "
        f"{keyprotect['cpu_cores']['kmip server']:.2f} cores"
        + (
            f"; local root key: {report['local']['per_second']:.0f}/s (ratio "
            f"{report['keyprotect_over_local']:.2f})"
            if "local" in report
            else ""
        )
        + ("" if ok else "  [below 500/s or failures]"),
        file=sys.stderr,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
