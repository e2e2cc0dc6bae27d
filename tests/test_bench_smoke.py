"""The benchmark still runs: ``python bench/run.py --smoke`` against all three servers.

Speed is never asserted here (it belongs to the full benchmark's report); this only
checks that the benchmark works and that its report has the shape the README's
Performance section is made from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.testing.server import repository_root

SCENARIOS = {
    "get c=2",
    "locate c=2",
    "idle",
    "boot-storm cold",
    "boot-storm warm",
    "get c=2 @60",
    "locate c=2 @60",
    "create c=2",
    "vcenter c=2 resumption on",
    "vcenter c=2 resumption off",
}
MEASURES = ("ops_per_s", "p50_ms", "p99_ms", "errors", "server_cpu_us_per_op", "server_peak_rss_mb")


class BenchSmokeTests(SynchronousTestCase):
    """The short form of the benchmark, run for real."""

    def test_smoke_run_reports_every_scenario_for_every_server(self) -> None:
        """A maintainer can run ``bench/run.py``: it starts kmiptwist, PyKMIP's server and
        the canned-reply server, runs every scenario against each, and writes a JSON and
        a Markdown report with every measure; kmiptwist answers every request."""
        out = tempfile.mkdtemp(prefix="bench-smoke-", dir=os.getcwd())
        root = repository_root()
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [root] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
        )
        completed = subprocess.run(
            [sys.executable, os.path.join(root, "bench", "run.py"), "--smoke", "--out", out],
            capture_output=True,
            env=environment,
            timeout=600,
            check=False,
        )
        output = completed.stderr.decode(errors="replace")[-5000:]
        self.assertEqual(completed.returncode, 0, output)
        with open(os.path.join(out, "results.json"), encoding="utf-8") as results_file:
            results = json.load(results_file)
        self.assertEqual(set(results["servers"]), {"kmiptwist", "pykmip", "canned"}, output)
        for name, server in results["servers"].items():
            # The canned server has no store: it has no rows of a big store.
            expected = (
                {key for key in SCENARIOS if "@" not in key} if name == "canned" else SCENARIOS
            )
            self.assertEqual(set(server["scenarios"]), expected, name)
            for key, result in server["scenarios"].items():
                self.assertNotIn("failed", result, f"{name} {key}")
                measured = result["get_with_idle"] if key == "idle" else result
                for measure in MEASURES:
                    self.assertIsInstance(
                        measured[measure], (int, float), f"{name} {key} {measure}"
                    )
                self.assertGreater(measured["ops_per_s"], 0, f"{name} {key}")
        for key, result in results["servers"]["kmiptwist"]["scenarios"].items():
            self.assertEqual(
                result["errors"], 0, f"kmiptwist {key}: {result.get('error_examples')}"
            )
        self.assertEqual(
            results["servers"]["kmiptwist"]["scenarios"]["boot-storm warm"]["resumed_fraction"],
            1.0,
            "the warm boot storm resumes every TLS session",
        )
        idle = results["servers"]["kmiptwist"]["scenarios"]["idle"]
        self.assertEqual(idle["idle_connections"], results["settings"]["idle_connections"])
        with open(os.path.join(out, "results.md"), encoding="utf-8") as report_file:
            report = report_file.read()
        self.assertIn("| scenario | kmiptwist | PyKMIP | limit | × PyKMIP | of limit |", report)
        self.assertIn("| scenario | server | p50 | p95 | p99 |", report)
        self.assertIn("server CPU per get ≤ 150 µs", report)
