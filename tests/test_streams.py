"""By-parts operations in progress: per tenant, bounded, dropped when idle."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.streams import CryptoStreams, Stream


def stream(uid: str = "k") -> Stream:
    return Stream(uid, 31, object(), 0)


class CryptoStreamsTests(SynchronousTestCase):
    """What a client's Correlation Value finds."""

    def test_per_tenant(self) -> None:
        """A Correlation Value names an operation of its own tenant only."""
        streams = CryptoStreams()
        correlation = streams.open("alpha", stream(), 100)
        assert correlation is not None
        self.assertIsNotNone(streams.find("alpha", correlation, 100))
        self.assertIsNone(streams.find("beta", correlation, 100))
        streams.close("alpha", correlation)
        self.assertIsNone(streams.find("alpha", correlation, 100))

    def test_idle_operations_expire(self) -> None:
        """An operation left idle longer than the timeout is gone; using it keeps it."""
        streams = CryptoStreams(idle_timeout=60)
        kept = streams.open("alpha", stream(), 0)
        dropped = streams.open("alpha", stream(), 0)
        assert kept is not None and dropped is not None
        self.assertIsNotNone(streams.find("alpha", kept, 50))
        self.assertIsNotNone(streams.find("alpha", kept, 100))
        self.assertIsNone(streams.find("alpha", dropped, 100))
        self.assertEqual(len(streams), 1)

    def test_bounded(self) -> None:
        """The server holds a bounded number, and no tenant takes them all."""
        streams = CryptoStreams(max_streams=3, max_per_tenant=2)
        self.assertIsNotNone(streams.open("alpha", stream(), 0))
        self.assertIsNotNone(streams.open("alpha", stream(), 0))
        self.assertIsNone(streams.open("alpha", stream(), 0))
        self.assertIsNotNone(streams.open("beta", stream(), 0))
        self.assertIsNone(streams.open("gamma", stream(), 0))
