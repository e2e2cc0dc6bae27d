"""How the benchmark keeps one result of a scenario measured in alternating rounds."""

from __future__ import annotations

import importlib.util
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.testing.server import repository_root


def _bench_module(test: SynchronousTestCase, name: str):
    """bench/<name>.py, loaded as a module (bench/ is not a package), with bench/ on
    the import path while ``test`` runs (the modules import one another by name)."""
    bench = os.path.join(repository_root(), "bench")
    sys.path.insert(0, bench)
    test.addCleanup(sys.path.remove, bench)
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", os.path.join(bench, f"{name}.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    test.addCleanup(sys.modules.pop, spec.name)
    spec.loader.exec_module(module)
    return module


def _window(ops: float, errors: int = 0, **more: object) -> dict[str, object]:
    return {"ops_per_s": ops, "p99_ms": ops / 100, "errors": errors, **more}


class MedianRoundTests(SynchronousTestCase):
    """``median_round``: the median round's figures, every round's throughput, all errors."""

    def setUp(self) -> None:
        self.median_round = _bench_module(self, "run").median_round

    def test_median_of_odd_and_even(self) -> None:
        """The middle round by throughput; of an even number, the lower middle one."""
        result = self.median_round([_window(300), _window(100), _window(200)])
        self.assertEqual((result["ops_per_s"], result["p99_ms"]), (200, 2.0))
        self.assertEqual(result["rounds"], [300, 100, 200])
        self.assertEqual(self.median_round([_window(40), _window(10)])["ops_per_s"], 10)

    def test_errors_of_every_round(self) -> None:
        """Errors in any round show, with their kinds and an example of each."""
        result = self.median_round(
            [
                _window(100, 2, error_kinds={"reset": 2}, error_examples={"reset": "a"}),
                _window(200),
                _window(300, 1, error_kinds={"reset": 1}, error_examples={"reset": "b"}),
            ]
        )
        self.assertEqual(result["ops_per_s"], 200)
        self.assertEqual(result["errors"], 3)
        self.assertEqual(result["error_kinds"], {"reset": 3})
        self.assertEqual(result["error_examples"], {"reset": "a"})

    def test_failed_round_fails_the_scenario(self) -> None:
        """A round that failed fails the scenario, saying which round."""
        result = self.median_round([_window(100), {"failed": "RuntimeError('no')"}])
        self.assertEqual(result["failed"], "round 2 of 2: RuntimeError('no')")
        self.assertEqual(self.median_round([{"failed": "x"}])["failed"], "x")


def _rounds(*p99s: float) -> dict[str, object]:
    return {"round_results": [{"p99_ms": p99} for p99 in p99s]}


class PairedRatioTests(SynchronousTestCase):
    """``paired_ratio``: two results measured in the same rounds, compared round by round."""

    def setUp(self) -> None:
        self.paired_ratio = _bench_module(self, "report").paired_ratio

    def test_median_of_the_rounds_ratios(self) -> None:
        """Each round's ratio, in run order, and their median: a slow round moves both
        sides of its own ratio, not the comparison."""
        ratio, each = self.paired_ratio(_rounds(1.0, 4.0, 2.0), _rounds(1.1, 4.0, 3.0))
        self.assertEqual(each, [1.1, 1.0, 1.5])
        self.assertEqual(ratio, 1.1)
        ratio, each = self.paired_ratio(_rounds(1.0, 2.0), _rounds(1.0, 3.0))
        self.assertEqual(ratio, 1.25)

    def test_rounds_that_do_not_pair(self) -> None:
        """Rounds of different numbers (a server not measured again after a failure), a
        missing figure or a zero: no paired ratio."""
        self.assertIsNone(self.paired_ratio(_rounds(1.0, 2.0), _rounds(1.0)))
        self.assertIsNone(self.paired_ratio({}, {}))
        self.assertIsNone(self.paired_ratio(_rounds(0.0), _rounds(1.0)))
        self.assertIsNone(self.paired_ratio({"round_results": [{"p99_ms": None}]}, _rounds(1.0)))


class _Server:
    def __init__(self, name: str) -> None:
        self.name = name


class PlanSessionsTests(SynchronousTestCase):
    """``plan_sessions``: a server with a big store runs as two instances, side by side."""

    def setUp(self) -> None:
        self.plan_sessions = _bench_module(self, "run").plan_sessions

    def test_big_store_instance_follows_its_small_one(self) -> None:
        """The big store's instance comes right after the small one's in every round,
        reports as the same server with its rows suffixed, and takes Get and Locate of
        the big store, Create and vCenter's steps; the small one the rest."""
        plan = ["get", "locate", "idle", "boot-storm", "big", "create", "vcenter"]
        small, big, canned = _Server("kmiptwist"), _Server("kmiptwist @100"), _Server("canned")
        sessions = self.plan_sessions([(small, big), (canned, None)], plan, None, print, 100)
        self.assertEqual([session.server for session in sessions], [small, big, canned])
        self.assertEqual(
            [session.reports_as for session in sessions], ["kmiptwist"] * 2 + ["canned"]
        )
        self.assertEqual([session.suffix for session in sessions], ["", " @100", ""])
        self.assertEqual(sessions[0].plan, ["get", "locate", "idle", "boot-storm"])
        self.assertEqual(sessions[1].plan, ["big", "create", "vcenter"])
        self.assertEqual(
            sessions[2].plan, ["get", "locate", "idle", "boot-storm", "create", "vcenter"]
        )

    def test_without_a_big_store_one_instance_runs_everything(self) -> None:
        """Without the big step, a server has one session with the whole plan."""
        sessions = self.plan_sessions(
            [(_Server("kmiptwist"), None)], ["get", "create"], None, print, 100
        )
        self.assertEqual(len(sessions), 1)
        self.assertEqual(sessions[0].plan, ["get", "create"])


def _idle_round(throughput: float, p99: float, rss: float, opened: int = 10) -> dict:
    return {
        "idle_connections": opened,
        "idle_failures": 10 - opened,
        "open_seconds": 1.0,
        "server_rss_before_mb": rss - 5,
        "server_rss_idle_mb": rss,
        "server_peak_rss_mb": rss + 1,
        "server_rss_loaded_mb": rss + 0.5,
        "kb_per_idle_connection": 500 / opened,
        "get_without_idle": {"ops_per_s": 100.0, "p99_ms": 1.0, "errors": 0},
        "get_with_idle": {"ops_per_s": 100.0 * throughput, "p99_ms": p99, "errors": 1},
        "throughput_ratio_with_idle": throughput,
        "p99_ratio_with_idle": p99,
    }


class IdleSummaryTests(SynchronousTestCase):
    """``idle_summary``: the idle scenario's rounds, each a pair of windows, as one result."""

    def setUp(self) -> None:
        self.idle_summary = _bench_module(self, "scenarios").idle_summary

    def test_median_ratios_and_the_most_memory(self) -> None:
        """The ratios are the medians of the rounds' own; the windows shown are the round
        with the median p99 ratio; memory is the most any round held, connections the
        fewest any round opened, errors those of every round."""
        result = self.idle_summary(
            [_idle_round(0.9, 1.5, 120), _idle_round(1.0, 1.1, 130, 9), _idle_round(1.1, 0.9, 125)],
            8,
        )
        self.assertEqual(result["throughput_ratio_with_idle"], 1.0)
        self.assertEqual(result["p99_ratio_with_idle"], 1.1)
        self.assertEqual(result["get_with_idle"]["p99_ms"], 1.1)
        self.assertEqual(result["server_rss_idle_mb"], 130)
        self.assertEqual(result["kb_per_idle_connection"], 50, "the first round's")
        self.assertEqual(result["server_peak_rss_mb"], 131)
        self.assertEqual(result["idle_connections"], 9)
        self.assertEqual(result["errors"], 1 + 3)
        self.assertEqual([one["p99"] for one in result["round_ratios"]], [1.5, 1.1, 0.9])
        self.assertEqual([one["rss_idle_mb"] for one in result["round_ratios"]], [120, 130, 125])
        self.assertEqual(result["active_connections"], 8)
