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
