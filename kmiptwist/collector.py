"""The garbage collector's settings for a server process.

CPython collects its youngest generation every 700 net container allocations and
looks at every tracked object of the process in a full collection.  A KMIP server
allocates a few hundred containers per request (TTLV items are named tuples, which
the collector never untracks) and keeps tens of thousands of objects in its caches,
so with the defaults a Create spent more time in the collector than in its own code
(``bench/NOTES.md`` item 19: 730 against 280 µs of reactor CPU per Create).  Almost
everything a request allocates is freed by reference counting; the cycles the
collector exists for (Deferreds and Failures that reference each other, tracebacks)
are rare, so collecting them less often costs little memory.
"""

from __future__ import annotations

import gc

from twisted.internet.interfaces import IReactorTime

#: Net container allocations between collections of the youngest generation.
YOUNG_THRESHOLD = 50_000
#: Young collections between collections of the middle generation.
MIDDLE_THRESHOLD = 20
#: Middle collections between full collections (CPython also waits until a quarter
#: of the long-lived objects are new).
OLD_THRESHOLD = 10


def tune() -> None:
    """Once the server has started: move what exists now (modules, configuration,
    the reactor) out of the collector's sight, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


#: Seconds between collections of the youngest generation made for closed connections.
CLOSED_CONNECTIONS_INTERVAL = 1.0


class ClosedConnections:
    """Collects the youngest generation soon after connections close.

    A TLS connection that its peer drops without a close_notify leaves a cycle in
    Twisted (the EOF's Failure and the frames of its traceback), and through it the
    whole connection: its OpenSSL state, its protocol and buffers, about 15 kB.  The
    cycle is young, but with :data:`YOUNG_THRESHOLD` the next collection can be a
    thousand closed connections away, and memory freed that late, interleaved with
    new connections, is not reused: with 1,000 idle connections opened and dropped
    six times, the server held 108 MB with the first thousand and 180 MB after the
    sixth, against 108–112 MB with this and the protocol's own cycle broken
    (``bench/NOTES.md`` item 44).  At most once per ``interval`` seconds, when a
    connection opens or closes after others closed, the youngest generation is
    collected: 0.05 ms when it is nearly empty, tens of milliseconds when it is
    full, work the next automatic collection would otherwise have done.
    """

    def __init__(self, clock: IReactorTime, interval: float = CLOSED_CONNECTIONS_INTERVAL) -> None:
        self._clock = clock
        self._interval = interval
        self._pending = False
        self._last = float("-inf")

    def closed(self) -> None:
        """A connection closed: its garbage waits for the next collection."""
        self._pending = True
        self.collect_due()

    def collect_due(self) -> None:
        """Collect the youngest generation if connections closed since the last time
        and ``interval`` seconds have passed."""
        if not self._pending:
            return
        now = self._clock.seconds()
        if now - self._last < self._interval:
            return
        self._pending = False
        self._last = now
        gc.collect(0)
