"""What auditing costs a KMIP operation, side by side in one run.

Runs a cached Get through the processor (memory store, in process, no sockets)
with the audit log off and on, and the audit writer's work per record (taking the
batch, chaining, JSON, hash, write, one fsync per batch of 500), each
single-threaded so the three CPU times add up.  It also formats the same records
the way the writer did before its templates (a dict per record through
``canonical()``), to show what the templates save.  Prints medians of 7 rounds of
20000 operations.

    python bench/audit_cost.py
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402

from kmiptwist import ttlv  # noqa: E402
from kmiptwist.audit import AuditLog, _canonical_text, _iso, _Run  # noqa: E402
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


def _by_dict(entries: list[Any], seq: int, head: str) -> bytes:
    """The records formatted as the writer did before its templates: a dict per record
    through ``canonical()`` (what ``_canonical_text`` still does for odd records)."""
    lines = []
    for entry in entries:
        seq += 1
        text = _canonical_text(entry, seq, head, _iso(entry[0]))
        head = hashlib.sha256(text.encode("ascii")).hexdigest()
        lines.append(f'{text[:-1]},"hash":"{head}"}}\n')
    return "".join(lines).encode("ascii")


def main() -> None:
    """Measure and print."""
    harness = AdminHarness(_Case())
    harness.case.successResultOf(harness.store.add_tenant(Tenant("alpha")))
    uid = harness.create_key("alpha")
    get = request((1, 1), [(Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)], None)])
    peer = Peer("127.0.0.1:1", "ab" * 32, "alpha")
    directory = tempfile.mkdtemp()
    log = AuditLog(os.path.join(directory, "audit.log"), reactor, reactor)  # type: ignore[arg-type]
    descriptor = os.open(
        os.path.join(directory, "writer.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
    )
    # Enqueue only (no writer thread): the writer's work is timed apart.
    log._run = run = _Run(descriptor)

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

    def writer() -> tuple[float, float]:
        start = time.process_time()
        # As the writer thread takes a batch (timed too: it is the writer's work).
        entries = run.pending.copy()
        del run.pending[: len(entries)]
        log._write(descriptor, entries)
        middle = time.process_time()
        _by_dict(entries, 0, "0" * 64)
        return middle - start, time.process_time() - middle

    off, on, written, by_dict = [], [], [], []
    for _ in range(ROUNDS):
        # In batches, as the writer thread drains the queue while the server runs.
        times = [0.0, 0.0, 0.0, 0.0]
        for _ in range(OPERATIONS // BATCH):
            times[0] += processor(None, BATCH)
            times[1] += processor(log, BATCH)
            write, formatted = writer()
            times[2] += write
            times[3] += formatted
        off.append(times[0] / OPERATIONS * 1e6)
        on.append(times[1] / OPERATIONS * 1e6)
        written.append(times[2] / OPERATIONS * 1e6)
        by_dict.append(times[3] / OPERATIONS * 1e6)
    base, audited, record, old = (statistics.median(v) for v in (off, on, written, by_dict))
    total = audited - base + record
    print(
        f"cached Get, CPU per operation: {base:.1f} us without audit; audit adds "
        f"{audited - base:.1f} us on the reactor thread and {record:.1f} us in the writer "
        f"thread ({total:.1f} us, {total / base * 100:.0f}% of the operation)"
    )
    print(
        f"formatting and hashing the same records through a dict and canonical(), as "
        f"before the templates: {old:.1f} us per record (no write)"
    )


if __name__ == "__main__":
    main()
