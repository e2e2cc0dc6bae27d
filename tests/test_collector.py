"""The garbage collector's settings: made once a server listens (kmiptwist.collector)."""

from __future__ import annotations

import gc

from twisted.trial.unittest import TestCase

from kmiptwist import collector
from kmiptwist.tap import Options, makeService


class CollectorTests(TestCase):
    """``twistd kmip`` tunes the collector once it listens, not before."""

    def setUp(self) -> None:
        thresholds = gc.get_threshold()

        def restore() -> None:
            gc.unfreeze()
            gc.set_threshold(*thresholds)

        self.addCleanup(restore)

    def test_tune(self) -> None:
        """What exists is frozen and the thresholds are raised."""
        gc.set_threshold(700, 10, 10)
        collector.tune()
        self.assertEqual(
            gc.get_threshold(),
            (collector.YOUNG_THRESHOLD, collector.MIDDLE_THRESHOLD, collector.OLD_THRESHOLD),
        )
        self.assertGreater(gc.get_freeze_count(), 0)

    async def test_tuned_once_listening(self) -> None:
        """The service ``makeService`` builds tunes the collector when it listens."""
        gc.set_threshold(700, 10, 10)
        options = Options()
        options.parseOptions(
            ["--data-dir", self.mktemp(), "--interface", "127.0.0.1", "--port", "0"]
        )
        service = makeService(options)
        self.assertEqual(gc.get_threshold(), (700, 10, 10))
        service.startService()
        self.addCleanup(service.stopService)
        await service.when_listening()  # type: ignore[attr-defined]
        self.assertEqual(gc.get_threshold()[0], collector.YOUNG_THRESHOLD)
