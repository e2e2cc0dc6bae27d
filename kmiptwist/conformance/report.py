"""The conformance report: cases passed per profile and version, and every failure."""

from __future__ import annotations

from collections.abc import Iterable

from kmiptwist.conformance.profiles import CLAIMED_PROFILES, PROFILE_TITLES, profile_title
from kmiptwist.conformance.runner import CaseResult, Outcome

__all__ = ["VERSIONS", "tally", "text_report", "markdown_table"]

#: The KMIP versions the OASIS test cases are written for, as report columns.
VERSIONS = ("1.4", "2.1")


def _profile_order(profile: str) -> tuple[int, str]:
    names = list(PROFILE_TITLES)
    return (names.index(profile) if profile in names else len(names), profile)


def tally(results: Iterable[CaseResult]) -> dict[str, dict[str, dict[str, int]]]:
    """{profile: {version: {"passed", "skipped", "total"}}}, profiles in report order."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    for result in results:
        cell = table.setdefault(result.case.profile, {}).setdefault(
            result.case.version, {"passed": 0, "skipped": 0, "total": 0}
        )
        cell["total"] += 1
        if result.outcome == Outcome.PASSED:
            cell["passed"] += 1
        elif result.outcome == Outcome.SKIPPED:
            cell["skipped"] += 1
    return {profile: table[profile] for profile in sorted(table, key=_profile_order)}


def _cell(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "–"
    text = f"{counts['passed']}/{counts['total']}"
    if counts["skipped"]:
        text += f" ({counts['skipped']} skipped)"
    return text


def markdown_table(results: Iterable[CaseResult]) -> str:
    """The pass table as Markdown: one row per profile, one column per version."""
    lines = [
        "| profile | name | KMIP 1.4 | KMIP 2.1 |",
        "|---|---|---|---|",
    ]
    for profile, versions in tally(results).items():
        claimed = " (claimed)" if profile in CLAIMED_PROFILES else ""
        lines.append(
            f"| {profile} | {profile_title(profile)}{claimed} | "
            + " | ".join(_cell(versions.get(version)) for version in VERSIONS)
            + " |"
        )
    return "\n".join(lines) + "\n"


def text_report(results: list[CaseResult]) -> str:
    """What the command prints: the table, then each case that did not pass."""
    table = tally(results)
    width = max([len(profile) for profile in table] + [7])
    lines = [f"{'profile':<{width}}  " + "  ".join(f"{'KMIP ' + v:<22}" for v in VERSIONS)]
    for profile, versions in table.items():
        lines.append(
            f"{profile:<{width}}  "
            + "  ".join(f"{_cell(versions.get(version)):<22}" for version in VERSIONS).rstrip()
        )
    others = [result for result in results if not result.passed]
    if others:
        lines.append("")
        lines.extend(result.describe() for result in others)
    passed = sum(result.passed for result in results)
    skipped = sum(result.outcome == Outcome.SKIPPED for result in results)
    lines.append("")
    lines.append(f"{passed} of {len(results)} cases passed, {skipped} skipped")
    return "\n".join(lines) + "\n"
