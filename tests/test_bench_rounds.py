"""How the benchmark keeps one result of a scenario measured in alternating rounds."""

from __future__ import annotations

import importlib.util
import os

from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.testing.server import repository_root


def _run_module():
    """bench/run.py, loaded as a module (bench/ is not a package)."""
    path = os.path.join(repository_root(), "bench", "run.py")
    spec = importlib.util.spec_from_file_location("bench_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _window(ops: float, errors: int = 0, **more: object) -> dict[str, object]:
    return {"ops_per_s": ops, "p99_ms": ops / 100, "errors": errors, **more}


class MedianRoundTests(SynchronousTestCase):
    """``median_round``: the median round's figures, every round's throughput, all errors."""

    def setUp(self) -> None:
        self.median_round = _run_module().median_round

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
