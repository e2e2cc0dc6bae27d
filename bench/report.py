"""The benchmark report: the results as JSON, and Markdown tables with the targets.

The JSON holds everything measured (latency summaries of every kind, error kinds and
examples, generator CPU, every round's throughput); the Markdown has three tables:
throughput side by side with the ratios the targets are stated in, latency and cost
per server, and the issue's targets read off those figures, met or missed.  A timed
scenario's figures are those of each server's median round; the targets that compare
two figures of kmiptwist measured in the same rounds (p99 at two store sizes, without
and with idle connections) read the median of the rounds' own ratios.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["markdown", "targets"]

MAIN = ("kmiptwist", "pykmip", "canned")


def _number(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ratio(top: Any, bottom: Any) -> float | None:
    if top is None or bottom is None or not bottom:
        return None
    if any(isinstance(value, float) and math.isnan(value) for value in (top, bottom)):
        return None
    return float(top) / float(bottom)


def _rows(results: dict[str, Any]) -> list[str]:
    """Scenario keys in the order they were run."""
    order: list[str] = []
    for server in results["servers"].values():
        for key in server["scenarios"]:
            if key not in order:
                order.append(key)
    return order


def _get(results: dict[str, Any], server: str, key: str) -> dict[str, Any] | None:
    found = results["servers"].get(server, {}).get("scenarios", {}).get(key)
    return found if isinstance(found, dict) and "failed" not in found else None


def _limit(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The canned server's figure for ``key``.  It has no store: for a big store's row
    it is the small store's row, measured in the same rounds."""
    found = _get(results, "canned", key)
    if found is None and " @" in key:
        found = _get(results, "canned", key.split(" @", 1)[0])
    return found


def paired_ratio(
    low: dict[str, Any], high: dict[str, Any], measure: str = "p99_ms"
) -> tuple[float, list[float]] | None:
    """``high``'s ``measure`` against ``low``'s, round by round, for two results measured
    in the same alternating rounds: the median of the rounds' ratios, and the ratios.

    Each round's two windows ran a few seconds apart, so a ratio within a round is not
    moved by the machine's drift between rounds; the median round of each result by
    throughput may be different rounds.  None when the rounds do not pair up.
    """
    lows = [window.get(measure) for window in low.get("round_results", ())]
    highs = [window.get(measure) for window in high.get("round_results", ())]
    if not lows or len(lows) != len(highs):
        return None
    if any(value is None for value in lows + highs) or not all(lows):
        return None
    ratios = [top / bottom for bottom, top in zip(lows, highs, strict=True)]
    return statistics.median(ratios), ratios


def _workers(results: dict[str, Any]) -> str | None:
    """The multi-worker kmiptwist of the run, if any."""
    for name in results["servers"]:
        if name.startswith("kmiptwist-workers"):
            return name
    return None


def _throughput(result: dict[str, Any] | None) -> float | None:
    if result is None:
        return None
    if "idle_connections" in result:
        value: float = result["get_with_idle"]["ops_per_s"]
        return value
    return result.get("ops_per_s")


def _speed(mine: dict[str, Any] | None, theirs: dict[str, Any] | None) -> float | None:
    """How many times faster ``mine`` is (storms: by completion time)."""
    if mine is None or theirs is None:
        return None
    if "completion_s" in mine and "completion_s" in theirs:
        return _ratio(theirs["completion_s"], mine["completion_s"])
    return _ratio(_throughput(mine), _throughput(theirs))


def _headline_cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return ""
    if "completion_s" in result:
        return f"{_number(result['completion_s'], 2)} s"
    return _number(_throughput(result))


def _rounds_cell(result: dict[str, Any] | None) -> str:
    """Every round's throughput, in run order, when there was more than one."""
    if result is None or len(result.get("rounds", ())) < 2:
        return ""
    return " / ".join(_number(throughput) for throughput in result["rounds"])


def _windows(settings: dict[str, Any]) -> str:
    """How the throughput figures were measured."""
    rounds = settings.get("rounds", 1)
    if rounds < 2:
        return (
            f"{settings['duration']} s windows after {settings['warmup']} s of warm-up; "
            "each scenario ran against every server in turn."
        )
    return (
        f"Each throughput figure is the median of {rounds} alternating "
        f"{settings['duration']} s windows (after {settings['warmup']} s of warm-up each): "
        f"every scenario ran against every server in turn, {rounds} times (boot-storm: "
        "once; idle: its two windows, without and with the idle connections, in "
        f"{rounds} rounds).  The rows of a big store (@N) ran in the same rounds as "
        "the small store's, on a second instance of each server measured right after "
        "the first; the limit has no store, and its small-store figure stands for both."
    )


def markdown(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    machine = results["machine"]
    settings = results["settings"]
    workers = _workers(results)
    several_rounds = settings.get("rounds", 1) > 1
    lines = [
        f"Measured {results['date']} on {machine['nproc']} cores ({machine['cpu']}), "
        f"Python {machine['python']}; clients and PyKMIP on {machine['openssl']}, the "
        f"Twisted servers on pyOpenSSL over {machine['pyopenssl_openssl']}.  Every "
        f"server: TLS 1.2 {settings['cipher']} with client certificates, the same "
        f"certificates, loopback.  {_windows(settings)}  Command: `{results['command']}`.",
        "",
        "Throughput in requests/s (vcenter: TLS connections/s, each one vCenter step; "
        "boot-storm: seconds until every host has its keys).  'limit' is the canned-reply "
        "Twisted server, the most any Python server on Twisted reaches here."
        + (
            "  The last two columns give every round's throughput, in the order they ran."
            if several_rounds
            else ""
        ),
        "",
    ]
    header = ["scenario", "kmiptwist", "PyKMIP", "limit", "× PyKMIP", "of limit"]
    if workers:
        header += [workers.replace("kmiptwist-", "kmiptwist "), "scaling"]
    if several_rounds:
        header += ["kmiptwist rounds", "PyKMIP rounds"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for key in _rows(results):
        mine, theirs = (_get(results, name, key) for name in MAIN[:2])
        limit = _limit(results, key)
        row = [key, _headline_cell(mine), _headline_cell(theirs), _headline_cell(limit)]
        ratio = _speed(mine, theirs)
        row.append(f"{ratio:.1f}×" if ratio is not None else "")
        ratio = _speed(mine, limit)
        row.append(f"{ratio:.0%}" if ratio is not None else "")
        if workers:
            several = _get(results, workers, key)
            row.append(_headline_cell(several))
            ratio = _speed(several, mine)
            row.append(f"{ratio:.2f}×" if ratio is not None else "")
        if several_rounds:
            row += [_rounds_cell(mine), _rounds_cell(theirs)]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", _cost_table(results), "", _generator_note(results), ""]
    checks = targets(results)
    if checks:
        lines += ["| target | measured | |", "|---|---|---|"]
        for check in checks:
            lines.append(f"| {check['target']} | {check['measured']} | {check['verdict']} |")
        lines.append("")
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def _cost_table(results: dict[str, Any]) -> str:
    """Latency, errors and server cost of every scenario on every server."""
    lines = [
        "Latency in ms (vcenter: per step; boot-storm: per host), errors, the server's "
        "CPU time per request (µs; /proc/<pid>/stat of the server and its children) and "
        "peak RSS (MB; VmHWM, reset before each scenario)."
        + (
            "  Each from the server's median round; errors: all rounds together."
            if results["settings"].get("rounds", 1) > 1
            else ""
        ),
        "",
        "| scenario | server | p50 | p95 | p99 | errors | CPU µs/req | RSS MB | TLS resumed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in _rows(results):
        for name in results["servers"]:
            result = results["servers"][name]["scenarios"].get(key)
            if result is None:
                continue
            if "failed" in result:
                lines.append(f"| {key} | {name} | failed: {result['failed']} | | | | | | |")
                continue
            measured = result["get_with_idle"] if "idle_connections" in result else result
            rss = (
                f"{_number(result['server_rss_idle_mb'])} with {result['idle_connections']:,} idle"
                if "idle_connections" in result
                else _number(result.get("server_peak_rss_mb"))
            )
            resumed = measured.get("resumed_fraction")
            lines.append(
                "| "
                + " | ".join(
                    [
                        key,
                        name,
                        _number(measured.get("p50_ms"), 2),
                        _number(measured.get("p95_ms"), 2),
                        _number(measured.get("p99_ms"), 2),
                        _number(result.get("errors")),
                        _number(measured.get("server_cpu_us_per_request")),
                        rss,
                        "" if resumed is None else f"{resumed:.0%}",
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


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
                f"{name}: up to {max(values):.0%} of a core"
                + (f" (other processes: up to {max(others):.0%})" if others else "")
            )
    return "CPU of the load generator during the windows: " + "; ".join(shares) + "."


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's targets, each with what was measured and whether it was met."""
    checks: list[dict[str, str]] = []
    top = results["settings"]["concurrency"][-1]

    def add(target: str, measured: str, ok: bool | None) -> None:
        checks.append({"target": target, "measured": measured, "verdict": _verdict(ok)})

    mine, theirs, limit = (_get(results, name, f"get c={top}") for name in MAIN)
    if mine and theirs:
        ratio = _ratio(mine["ops_per_s"], theirs["ops_per_s"])
        add(f"get, {top} connections: ≥ 20× PyKMIP", f"{_number(ratio, 1)}×", _at_least(ratio, 20))
        ratio = _ratio(theirs["p99_ms"], mine["p99_ms"])
        add(
            f"get, {top} connections: p99 ≤ 1/10 of PyKMIP's",
            f"{_number(mine['p99_ms'], 2)} ms vs {_number(theirs['p99_ms'], 2)} ms",
            _at_least(ratio, 10),
        )
    if mine and limit:
        ratio = _ratio(mine["ops_per_s"], limit["ops_per_s"])
        add(
            f"get, {top} connections: ≥ 50% of the canned limit",
            f"{_number((ratio or 0) * 100)}%",
            _at_least(ratio, 0.5),
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
            f"create, {top} connections: ≥ 10× PyKMIP, every success durable",
            f"{_number(ratio, 1)}×",
            _at_least(ratio, 10),
        )
    for resume in ("on", "off"):
        key = f"vcenter c={top} resumption {resume}"
        mine, theirs = _get(results, "kmiptwist", key), _get(results, "pykmip", key)
        if mine and theirs:
            ratio = _ratio(mine["ops_per_s"], theirs["ops_per_s"])
            add(
                f"vcenter, {top} clients, client resumes TLS {resume}: ≥ 2.5× PyKMIP, 0 errors",
                f"{_number(ratio, 1)}×, {mine['errors']} errors",
                _at_least(ratio, 2.5) and mine["errors"] == 0,
            )
    for kind in ("cold", "warm"):
        key = f"boot-storm {kind}"
        mine, theirs = _get(results, "kmiptwist", key), _get(results, "pykmip", key)
        if mine and theirs:
            ratio = _ratio(theirs["completion_s"], mine["completion_s"])
            add(
                f"boot-storm ({kind}: {'resumed' if kind == 'warm' else 'new'} TLS sessions): "
                "≥ 2.5× faster than PyKMIP, 0 errors",
                f"{_number(mine['completion_s'], 2)} s vs {_number(theirs['completion_s'], 2)} s "
                f"({_number(ratio, 1)}×), {mine['errors']} errors",
                _at_least(ratio, 2.5) and mine["errors"] == 0,
            )
    big = results["settings"].get("big_store")
    small = results["settings"].get("small_store")
    for scenario in ("get", "locate"):
        worst = None
        for connections in results["settings"]["concurrency"]:
            low = _get(results, "kmiptwist", f"{scenario} c={connections}")
            high = _get(results, "kmiptwist", f"{scenario} c={connections} @{big}")
            if low is None or high is None:
                continue
            paired = paired_ratio(low, high)
            ratio, rounds = paired if paired else (_ratio(high["p99_ms"], low["p99_ms"]), [])
            if ratio is not None and (worst is None or ratio > worst[0]):
                worst = (ratio, connections, rounds)
        if worst is not None:
            each = " / ".join(f"×{ratio:.2f}" for ratio in worst[2])
            add(
                f"{scenario} p99 with {big:,} objects within 20% of {small:,} "
                "(median of the rounds' ratios)",
                f"worst ×{worst[0]:.2f} (c={worst[1]}" + (f"; rounds {each})" if each else ")"),
                worst[0] <= 1.2,
            )
    idle = _get(results, "kmiptwist", "idle")
    if idle:
        rss = idle["server_rss_idle_mb"]
        add(
            f"idle: {results['settings']['idle_connections']:,} connections in ≤ 150 MB RSS",
            f"{_number(rss)} MB ({_number(idle['kb_per_idle_connection'], 1)} kB each)",
            rss <= 150 and idle["idle_connections"] >= results["settings"]["idle_connections"],
        )
        throughput = idle.get("throughput_ratio_with_idle")
        p99 = idle.get("p99_ratio_with_idle")
        if throughput is not None and p99 is not None:
            add(
                "idle connections do not slow active ones (throughput ≥ 90%, p99 ≤ 120%; "
                "median of the rounds' ratios)",
                f"throughput {throughput:.0%}, p99 {p99:.0%}"
                + (
                    " (rounds: "
                    + " / ".join(
                        f"{one['throughput']:.0%}, {one['p99']:.0%}"
                        for one in idle["round_ratios"]
                        if one["throughput"] is not None and one["p99"] is not None
                    )
                    + ")"
                    if len(idle.get("round_ratios", ())) > 1
                    else ""
                ),
                throughput >= 0.9 and p99 <= 1.2,
            )
    return checks


def _at_least(ratio: float | None, bound: float) -> bool:
    return ratio is not None and ratio >= bound
