"""The benchmark report: the results as JSON, and Markdown tables with the targets.

The JSON holds everything measured (latency summaries of every kind, error kinds and
examples, generator CPU); the Markdown shows one row per scenario and concurrency with
each server side by side, the ratios of kmiptwist to PyKMIP and to the canned-reply
limit, and the issue's targets read off those figures, met or missed.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["markdown", "targets"]

SERVERS = ("kmiptwist", "pykmip", "canned")


def _number(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ratio(top: Any, bottom: Any) -> float | None:
    if top is None or bottom is None or not bottom:
        return None
    if (
        isinstance(top, float)
        and math.isnan(top)
        or isinstance(bottom, float)
        and math.isnan(bottom)
    ):
        return None
    return float(top) / float(bottom)


def _rows(results: dict[str, Any]) -> list[str]:
    """Scenario keys in the order they were run by the first server that ran them."""
    order: list[str] = []
    for server in results["servers"].values():
        for key in server["scenarios"]:
            if key not in order:
                order.append(key)
    return order


def _cell(result: dict[str, Any] | None) -> list[str]:
    if result is None:
        return ["", "", "", "", "", ""]
    if "failed" in result:
        return ["failed", "", "", "", "", ""]
    if "idle_connections" in result:
        loaded = result["get_with_idle"]
        return [
            _number(loaded["ops_per_s"]),
            _number(loaded["p50_ms"], 2),
            _number(loaded["p99_ms"], 2),
            _number(result["errors"]),
            _number(loaded.get("server_cpu_us_per_op")),
            f"{_number(result['server_rss_idle_mb'])} idle",
        ]
    return [
        _number(result["ops_per_s"]),
        _number(result["p50_ms"], 2),
        _number(result["p99_ms"], 2),
        _number(result["errors"]),
        _number(result.get("server_cpu_us_per_op")),
        _number(result.get("server_peak_rss_mb")),
    ]


def markdown(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    machine = results["machine"]
    servers = [name for name in results["servers"] if name in SERVERS] + [
        name for name in results["servers"] if name not in SERVERS
    ]
    lines = [
        f"Measured {results['date']} on {machine['nproc']} cores ({machine['cpu']}), "
        f"Python {machine['python']}, {machine['openssl']} (client and PyKMIP), "
        f"pyOpenSSL over {machine['pyopenssl_openssl']} (Twisted servers); "
        f"TLS 1.2 {results['settings']['cipher']} with client certificates for every server; "
        f"{results['settings']['duration']} s windows after {results['settings']['warmup']} s "
        f"of warm-up.  Command: `{results['command']}`.",
        "",
        "Throughput is requests/s (vcenter: TLS connections/s, each one vCenter step; "
        "boot-storm: requests/s over the storm's completion time, p50/p99 per host).  "
        "Latency in ms.  CPU is the server's CPU time per request (µs, from "
        "/proc/<pid>/stat of the server and its children); RSS its peak (MB, VmHWM).",
        "",
    ]
    header = ["scenario"]
    for name in servers:
        header += [f"{name} ops/s", "p50", "p99", "err", "CPU µs", "RSS MB"]
    if "kmiptwist" in servers and "pykmip" in servers:
        header.append("× PyKMIP")
    if "kmiptwist" in servers and "canned" in servers:
        header.append("of limit")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for key in _rows(results):
        row = [key]
        found = {name: results["servers"][name]["scenarios"].get(key) for name in servers}
        for name in servers:
            row += _cell(found[name])
        mine, theirs, limit = found.get("kmiptwist"), found.get("pykmip"), found.get("canned")
        if "kmiptwist" in servers and "pykmip" in servers:
            ratio = _speed_ratio(mine, theirs)
            row.append(f"{ratio:.1f}×" if ratio is not None else "")
        if "kmiptwist" in servers and "canned" in servers:
            ratio = _speed_ratio(mine, limit)
            row.append(f"{ratio:.0%}" if ratio is not None else "")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", _generator_note(results), ""]
    checks = targets(results)
    if checks:
        lines += ["| target | measured | |", "|---|---|---|"]
        for check in checks:
            lines.append(f"| {check['target']} | {check['measured']} | {check['verdict']} |")
        lines.append("")
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def _speed_ratio(mine: dict[str, Any] | None, theirs: dict[str, Any] | None) -> float | None:
    if mine is None or theirs is None or "failed" in mine or "failed" in theirs:
        return None
    if "completion_s" in mine and "completion_s" in theirs:
        return _ratio(theirs["completion_s"], mine["completion_s"])
    if "idle_connections" in mine:
        return _ratio(mine["get_with_idle"]["ops_per_s"], theirs["get_with_idle"]["ops_per_s"])
    return _ratio(mine.get("ops_per_s"), theirs.get("ops_per_s"))


def _generator_note(results: dict[str, Any]) -> str:
    shares = []
    for name, server in results["servers"].items():
        values = [
            result.get("generator_cpu_share")
            for result in server["scenarios"].values()
            if isinstance(result, dict) and result.get("generator_cpu_share") is not None
        ]
        others = [
            result.get("other_cpu_share")
            for result in server["scenarios"].values()
            if isinstance(result, dict) and result.get("other_cpu_share") is not None
        ]
        if values:
            shares.append(
                f"{name}: generator up to {max(values):.0%} of one core"
                + (f", other processes up to {max(others):.0%}" if others else "")
            )
    return "Load generator CPU (the machine's other core): " + "; ".join(shares) + "."


def _get(results: dict[str, Any], server: str, key: str) -> dict[str, Any] | None:
    found = results["servers"].get(server, {}).get("scenarios", {}).get(key)
    return found if isinstance(found, dict) and "failed" not in found else None


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's targets, each with what was measured and whether it was met."""
    checks: list[dict[str, str]] = []
    top = results["settings"]["concurrency"][-1]

    def add(target: str, measured: str, ok: bool | None) -> None:
        checks.append({"target": target, "measured": measured, "verdict": _verdict(ok)})

    mine, theirs, limit = (
        _get(results, "kmiptwist", f"get c={top}"),
        _get(results, "pykmip", f"get c={top}"),
        _get(results, "canned", f"get c={top}"),
    )
    if mine and theirs:
        ratio = _ratio(mine["ops_per_s"], theirs["ops_per_s"])
        add(
            f"get {top} conns ≥ 20× PyKMIP",
            f"{_number(ratio, 1)}×",
            ratio is not None and ratio >= 20,
        )
        ratio = _ratio(theirs["p99_ms"], mine["p99_ms"])
        add(
            f"get {top} conns p99 ≤ 1/10 of PyKMIP's",
            f"{_number(mine['p99_ms'], 2)} ms vs {_number(theirs['p99_ms'], 2)} ms",
            ratio is not None and ratio >= 10,
        )
    if mine and limit:
        ratio = _ratio(mine["ops_per_s"], limit["ops_per_s"])
        add(
            f"get {top} conns ≥ 50% of the canned limit",
            f"{_number((ratio or 0) * 100)}%",
            ratio is not None and ratio >= 0.5,
        )
    if mine:
        cpu = mine.get("server_cpu_us_per_op")
        add("server CPU per get ≤ 150 µs", f"{_number(cpu)} µs", cpu is not None and cpu <= 150)
    mine, theirs = (
        _get(results, "kmiptwist", f"create c={top}"),
        _get(results, "pykmip", f"create c={top}"),
    )
    if mine and theirs:
        ratio = _ratio(mine["ops_per_s"], theirs["ops_per_s"])
        add(
            f"create {top} conns ≥ 10× PyKMIP (durable)",
            f"{_number(ratio, 1)}×",
            ratio is not None and ratio >= 10,
        )
    for resume in ("on", "off"):
        key = f"vcenter c={top} resumption {resume}"
        mine, theirs = _get(results, "kmiptwist", key), _get(results, "pykmip", key)
        if mine and theirs:
            ratio = _ratio(mine["ops_per_s"], theirs["ops_per_s"])
            add(
                f"vcenter {top} clients, resumption {resume}: ≥ 2.5× PyKMIP, 0 errors",
                f"{_number(ratio, 1)}×, {mine['errors']} errors",
                ratio is not None and ratio >= 2.5 and mine["errors"] == 0,
            )
    for kind in ("cold", "warm"):
        key = f"boot-storm {kind}"
        mine, theirs = _get(results, "kmiptwist", key), _get(results, "pykmip", key)
        if mine and theirs:
            ratio = _ratio(theirs["completion_s"], mine["completion_s"])
            add(
                f"boot-storm ({kind} TLS sessions): ≥ 2.5× faster than PyKMIP, 0 errors",
                f"{_number(mine['completion_s'], 2)} s vs {_number(theirs['completion_s'], 2)} s "
                f"({_number(ratio, 1)}×), {mine['errors']} errors",
                ratio is not None and ratio >= 2.5 and mine["errors"] == 0,
            )
    big = results["settings"].get("big_store")
    small = results["settings"].get("small_store")
    for scenario in ("get", "locate"):
        worst = None
        for connections in results["settings"]["concurrency"]:
            low = _get(results, "kmiptwist", f"{scenario} c={connections}")
            high = _get(results, "kmiptwist", f"{scenario} c={connections} @{big}")
            ratio = _ratio(high and high["p99_ms"], low and low["p99_ms"])
            if ratio is not None and (worst is None or ratio > worst[0]):
                worst = (ratio, connections)
        if worst is not None:
            add(
                f"{scenario} p99 with {big:,} objects within 20% of {small:,}",
                f"worst ×{worst[0]:.2f} (c={worst[1]})",
                worst[0] <= 1.2,
            )
    idle = _get(results, "kmiptwist", "idle")
    if idle:
        rss = idle["server_rss_idle_mb"]
        add(
            f"idle: {idle['idle_connections']:,} connections in ≤ 150 MB RSS",
            f"{_number(rss)} MB ({_number(idle['kb_per_idle_connection'], 1)} kB each)",
            rss <= 150 and idle["idle_connections"] >= results["settings"]["idle_connections"],
        )
        throughput = idle.get("throughput_ratio_with_idle")
        p99 = idle.get("p99_ratio_with_idle")
        if throughput is not None and p99 is not None:
            add(
                "idle connections do not slow active ones (throughput ≥ 90%, p99 ≤ 120%)",
                f"throughput {throughput:.0%}, p99 {p99:.0%}",
                throughput >= 0.9 and p99 <= 1.2,
            )
    return checks
