"""What auditing costs a KMIP operation, side by side in one run.

Runs a cached Get through the processor (memory store, in process, no sockets)
with the audit log off and on, and the audit writer's work per record (chaining,
JSON, hash, write, one fsync per batch of 500), each single-threaded so the three
CPU times add up.  Prints medians of 7 rounds of 20000 operations.

    python bench/audit_cost.py
"""

from __future__ import annotations

import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402

from kmiptwist import ttlv  # noqa: E402
from kmiptwist.audit import AuditLog  # noqa: E402
from kmiptwist.interfaces import Tenant  # noqa: E402
from kmiptwist.processor import Peer  # noqa: E402
from kmiptwist.testing.admin import AdminHarness  # noqa: E402
from kmiptwist.testing.messages import request  # noqa: E402
from kmiptwist.vocabulary.enums import Operation  # noqa: E402
from kmiptwist.vocabulary.tags import Tag  # noqa: E402

OPERATIONS = 20_000
ROUNDS = 7
BATCH = 500


class _Case:
    """Just enough of a TestCase for the harness: Deferreds here fire at once."""

    def successResultOf(self, deferred: Any) -> Any:  # noqa: N802
        out: list[Any] = []
        deferred.addBoth(out.append)
        return out[0]


def main() -> None:
    """Measure and print."""
    harness = AdminHarness(_Case())
    harness.case.successResultOf(harness.store.add_tenant(Tenant("alpha")))
    uid = harness.create_key("alpha")
    get = request((1, 1), [(Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)], None)])
    peer = Peer("127.0.0.1:1", "ab" * 32, "alpha")
    directory = tempfile.mkdtemp()
    log = AuditLog(os.path.join(directory, "audit.log"), reactor, reactor)  # type: ignore[arg-type]
    log._thread = threading.current_thread()  # enqueue only; the writer is timed apart
    descriptor = os.open(
        os.path.join(directory, "writer.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
    )

    def processor(audit: Any, count: int) -> float:
        harness.processor.audit = audit
        start = time.process_time()
        for _ in range(count):
            coroutine = harness.processor.process(get, peer)
            try:
                coroutine.send(None)
            except StopIteration:
                pass
        return time.process_time() - start

    def writer() -> float:
        entries = []
        while True:
            try:
                entries.append(log._queue.get_nowait())
            except queue.Empty:
                break
        start = time.process_time()
        log._write(descriptor, entries)
        return time.process_time() - start

    off, on, written = [], [], []
    for _ in range(ROUNDS):
        # In batches, as the writer thread drains the queue while the server runs.
        times = [0.0, 0.0, 0.0]
        for _ in range(OPERATIONS // BATCH):
            times[0] += processor(None, BATCH)
            times[1] += processor(log, BATCH)
            times[2] += writer()
        off.append(times[0] / OPERATIONS * 1e6)
        on.append(times[1] / OPERATIONS * 1e6)
        written.append(times[2] / OPERATIONS * 1e6)
    base, audited, record = (statistics.median(v) for v in (off, on, written))
    total = audited - base + record
    print(
        f"cached Get, CPU per operation: {base:.1f} us without audit; audit adds "
        f"{audited - base:.1f} us on the reactor thread and {record:.1f} us in the writer "
        f"thread ({total:.1f} us, {total / base * 100:.0f}% of the operation)"
    )


if __name__ == "__main__":
    main()
