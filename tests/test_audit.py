"""Tests for the audit log: hash-chained JSON lines, written off the reactor thread,
verified line by line, and fed by every KMIP operation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from typing import Any, cast

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from kmiptwist import audit, ttlv
from kmiptwist.audit import (
    GENESIS,
    AuditError,
    AuditLog,
    canonical,
    note_correlation_id,
    record_hash,
    verify_file,
    verify_lines,
)
from kmiptwist.cli import main
from kmiptwist.engine import SingleRootKey
from kmiptwist.interfaces import IKeyWrapper, Tenant
from kmiptwist.processor import Peer
from kmiptwist.testing.admin import AdminHarness, FakeAudit
from kmiptwist.testing.fake_wrapper import FakeWrapper
from kmiptwist.testing.messages import request
from kmiptwist.vocabulary.enums import Operation
from kmiptwist.vocabulary.tags import Tag


def _reactor() -> Any:
    from twisted.internet import reactor

    return cast(Any, reactor)


class AuditLogTests(TestCase):
    """The writer: what lands in the file, durably and chained."""

    def make(self, path: str | None = None, sync_interval: float = 0.0) -> AuditLog:
        log = AuditLog(path or self.mktemp(), _reactor(), _reactor(), sync_interval)
        log.startService()
        self.addCleanup(lambda: log.stopService() if log.running else None)
        return log

    def lines(self, log: AuditLog) -> list[dict[str, Any]]:
        with open(log.path, "rb") as handle:
            return [json.loads(line) for line in handle]

    async def test_records_are_chained_and_verify(self) -> None:
        """Each record has the fields an auditor needs and the previous record's hash;
        the whole log verifies; the file is readable by its owner only."""
        log = self.make()
        await log.record(
            actor="admin:uid=0(root)",
            operation="admin.tenant.create",
            result="success",
            tenant="finance",
        )
        log.record_nowait(
            actor="cert:ab",
            operation="kmip.create",
            result="success",
            tenant="finance",
            unique_identifier="uid-1",
            correlation_id="c0ffee",
            peer="10.0.0.1:5000",
        )
        await log.stopService()
        records = self.lines(log)
        self.assertEqual(
            [r["operation"] for r in records],
            ["server.start", "admin.tenant.create", "kmip.create", "server.stop"],
        )
        self.assertEqual([r["seq"] for r in records], [1, 2, 3, 4])
        self.assertEqual(records[0]["prev"], GENESIS)
        for before, after in zip(records, records[1:], strict=False):
            self.assertEqual(after["prev"], before["hash"])
        kmip = records[2]
        self.assertEqual(
            (kmip["actor"], kmip["tenant"], kmip["unique_identifier"], kmip["correlation_id"]),
            ("cert:ab", "finance", "uid-1", "c0ffee"),
        )
        self.assertTrue(kmip["time"].endswith("Z"))
        result = verify_file(log.path)
        self.assertTrue(result.ok, result)
        self.assertEqual((result.records, result.head), (4, records[-1]["hash"]))
        self.assertEqual(os.stat(log.path).st_mode & 0o777, 0o600)

    async def test_restart_continues_the_chain(self) -> None:
        """A restarted server appends to the same chain; the log still verifies."""
        path = self.mktemp()
        first = self.make(path)
        await first.record(actor="a", operation="one", result="success")
        await first.stopService()
        second = self.make(path)
        await second.record(actor="a", operation="two", result="success")
        await second.stopService()
        records = [json.loads(line) for line in open(path, "rb")]
        self.assertEqual([r["seq"] for r in records], list(range(1, 7)))
        self.assertTrue(verify_file(path).ok)

    async def test_torn_tail_is_cut_and_recorded(self) -> None:
        """A line half-written by a crash is cut off at the next start, and the cut is
        itself audited, so the log verifies again."""
        path = self.mktemp()
        first = self.make(path)
        await first.stopService()
        with open(path, "ab") as handle:
            handle.write(b'{"actor":"half a rec')
        second = self.make(path)
        await second.stopService()
        records = [json.loads(line) for line in open(path, "rb")]
        self.assertEqual(records[2]["operation"], "audit.recover")
        self.assertEqual(records[2]["dropped"], 20)
        self.assertTrue(verify_file(path).ok)

    def test_foreign_last_line_refuses_to_start(self) -> None:
        """A log whose last line is not an intact record is not appended to."""
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(b'{"seq": 1, "hash": "x", "prev": "y"}\n')
        log = AuditLog(path, _reactor(), _reactor())
        error = self.assertRaises(AuditError, log.startService)
        self.assertIn("audit verify", str(error))
        self.assertFalse(log.running)

    async def test_write_failure_is_reported(self) -> None:
        """A full disk fails the waiting admin change and marks the log unhealthy."""
        if not os.path.exists("/dev/full"):
            raise self.skipTest("needs /dev/full")
        log = AuditLog("/dev/full", _reactor(), _reactor(), 0.0)
        log.startService()
        try:
            with self.assertRaises(AuditError):
                await log.record(actor="a", operation="x", result="success")
            self.assertFalse(log.healthy)
            self.assertIn("records not written", log.last_error or "")
        finally:
            await log.stopService()

    async def test_not_running(self) -> None:
        """Recording into a stopped log fails instead of vanishing."""
        log = self.make()
        await log.stopService()
        with self.assertRaises(AuditError):
            await log.record(actor="a", operation="x", result="success")

    async def test_burst_is_written_in_order(self) -> None:
        """A burst of KMIP records (written in batches, at most one fsync per
        sync_interval) all reach the file in order, before a later admin record is
        acknowledged; the log verifies."""
        log = self.make(sync_interval=0.01)
        for number in range(2000):
            log.record_nowait(
                actor="cert:ab",
                operation="kmip.get",
                result="success",
                tenant="finance",
                unique_identifier=f"uid-{number}",
                peer="10.0.0.1:5000",
                reason=None,
            )
        await log.record(actor="admin", operation="admin.tenant.create", result="success")
        records = self.lines(log)
        self.assertEqual(len(records), 2002)
        self.assertEqual(log.written, 2002)
        self.assertEqual(
            [r.get("unique_identifier") for r in records[1:-1]],
            [f"uid-{number}" for number in range(2000)],
        )
        self.assertNotIn("reason", records[1])
        self.assertEqual(records[-1]["operation"], "admin.tenant.create")
        await log.stopService()
        self.assertTrue(verify_file(log.path).ok)

    async def test_recovers_after_a_failed_write(self) -> None:
        """After a failed write the log is unhealthy and the waiting admin change
        fails; the next successful write, even of KMIP records nobody waits for,
        makes it healthy again, and the chain goes on from the last record on disk."""
        log = AuditLog(self.mktemp(), _reactor(), _reactor(), 0.0)
        real_write, broken = log._write, [False]

        def write(descriptor: int, entries: list[Any]) -> str | None:
            if broken[0]:
                return f"disk on fire ({len(entries)} records not written)"
            return real_write(descriptor, entries)

        log._write = write  # type: ignore[method-assign]
        log.startService()
        self.addCleanup(lambda: log.stopService() if log.running else None)
        await log.record(actor="a", operation="before", result="success")
        broken[0] = True
        with self.assertRaises(AuditError):
            await log.record(actor="a", operation="lost", result="success")
        self.assertFalse(log.healthy)
        self.assertIn("disk on fire", log.last_error or "")
        broken[0] = False
        log.record_nowait(actor="a", operation="after", result="success")
        await log.stopService()
        self.assertTrue(log.healthy)
        self.assertIsNone(log.last_error)
        records = self.lines(log)
        self.assertEqual(
            [r["operation"] for r in records], ["server.start", "before", "after", "server.stop"]
        )
        self.assertTrue(verify_file(log.path).ok)

    async def test_restart_of_the_same_service(self) -> None:
        """Stopping and starting the same audit service continues the chain."""
        log = self.make()
        await log.record(actor="a", operation="one", result="success")
        await log.stopService()
        log.startService()
        await log.record(actor="a", operation="two", result="success")
        await log.stopService()
        records = self.lines(log)
        self.assertEqual([r["seq"] for r in records], list(range(1, 7)))
        self.assertTrue(verify_file(log.path).ok)

    async def test_detail_json_cannot_encode(self) -> None:
        """A detail JSON cannot encode is written as its repr: the writer keeps
        going and the log verifies."""
        log = self.make()

        class Odd:
            def __repr__(self) -> str:
                return "<odd>"

        await log.record(actor="a", operation="odd", result="success", thing=Odd(), count=2)
        await log.record(actor="a", operation="next", result="success")
        await log.stopService()
        odd = self.lines(log)[1]
        self.assertEqual((odd["thing"], odd["count"]), ("<odd>", 2))
        self.assertTrue(verify_file(log.path).ok)


def _reference_chain(entries: list[tuple[Any, ...]], seq: int, head: str) -> tuple[bytes, int, str]:
    """How the writer formatted records before it had templates: a dict per record
    through canonical() (the code as it was, kept here as the specification)."""
    lines = []
    for seconds, actor, operation, result, tenant, uid, correlation, details, _ in entries:
        fields = {
            "time": seconds,
            "actor": actor,
            "tenant": tenant,
            "operation": operation,
            "unique_identifier": uid,
            "result": result,
            "correlation_id": correlation,
        }
        for key, value in details.items():
            if value is not None:
                fields[key] = value
        seq += 1
        fields["seq"], fields["prev"], fields["time"] = seq, head, audit._iso(fields["time"])
        body = canonical(fields)
        head = hashlib.sha256(body).hexdigest()
        lines.append(body[:-1] + b',"hash":"' + head.encode("ascii") + b'"}\n')
    return b"".join(lines), seq, head


_TRICKY = st.sampled_from(
    ['"', "\\", "\x00", "\n\t\x1f\x7f", "\u2028", "é", "\U0001d11e", "\ud800", "%s", "{0}", "null"]
)
_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    _TRICKY,
    st.lists(_TRICKY, max_size=3).map("".join),
)
_NAMES = st.one_of(
    st.sampled_from(
        ["peer", "reason", "via_ca", "count", "dropped", "zeta", "actors", "a", "", "é"]
    ),
    _TEXT,
).filter(lambda name: name not in audit._RESERVED)
_DETAIL = st.one_of(
    st.none(),
    _TEXT,
    st.integers(),
    st.booleans(),
    st.floats(),
    st.lists(st.one_of(st.integers(), _TEXT), max_size=3),
    st.dictionaries(_TEXT, st.integers(), max_size=2),
)
_SECONDS = st.one_of(
    st.floats(min_value=-1e9, max_value=4e9),
    st.integers(0, 4_000_000_000_000).map(lambda ms: ms / 1000 + 0.0005),
    st.integers(0, 4_000_000_000_000).map(lambda ms: ms / 1000 - 0.0004999),
    st.integers(0, 4_000_000_000),
)
_ANY_ENTRY = st.tuples(
    _SECONDS,
    st.one_of(_TEXT, st.none(), st.integers()),
    _TEXT,
    st.sampled_from(["success", "failure"]) | _TEXT,
    st.one_of(st.none(), _TEXT),
    st.one_of(st.none(), _TEXT),
    st.one_of(st.none(), _TEXT, st.integers()),
    st.dictionaries(_NAMES, _DETAIL, max_size=4),
    st.none(),
)
"""Any record, most of them for the slow path (ints, floats, names sorting first...)."""
_STRING_ENTRY = st.tuples(
    _SECONDS,
    _TEXT,
    _TEXT,
    _TEXT,
    st.one_of(st.none(), _TEXT),
    st.one_of(st.none(), _TEXT),
    st.one_of(st.none(), _TEXT),
    st.dictionaries(_NAMES.filter(lambda name: name > "actor"), st.none() | _TEXT, max_size=4),
    st.none(),
)
"""Records of strings and None, as the server makes them: the fast path."""
_ENTRY = st.one_of(_STRING_ENTRY, _STRING_ENTRY, _ANY_ENTRY)


def _kmip_entry(seconds: float, **overrides: Any) -> tuple[Any, ...]:
    """A record as the processor makes one, for a Get."""
    details = {"reason": None, "peer": "10.0.0.1:5000", "via_ca": None}
    details.update(overrides)
    return (
        seconds,
        "cert:" + "ab" * 32,
        "kmip.get",
        "success",
        "alpha",
        "uid-1",
        None,
        details,
        None,
    )


class FormatterTests(SynchronousTestCase):
    """The writer's fast formatting writes exactly the bytes canonical() would, so
    logs written before and after it verify the same way."""

    @settings(max_examples=400, deadline=None)
    @given(st.lists(_ENTRY, min_size=1, max_size=12), st.integers(0, 12), st.integers(0, 10**6))
    @example([_kmip_entry(1_700_000_000.9995), _kmip_entry(1_700_000_001.0004)], 1, 0)
    def test_same_bytes_as_canonical(
        self, entries: list[tuple[Any, ...]], split: int, seq: int
    ) -> None:
        """Any mix of fields, details (None, unicode, quotes, control characters,
        ints, floats, lists) and times, formatted in one or two batches, gives the
        lines the original writer gave."""
        head = hashlib.sha256(str(seq).encode()).hexdigest() if seq else GENESIS
        expected = _reference_chain(entries, seq, head)
        formatter = audit._Formatter()
        first, middle, middle_head = formatter.chain(entries[:split], seq, head)
        second, last, last_head = formatter.chain(entries[split:], middle, middle_head)
        self.assertEqual(((first + second).encode("ascii"), last, last_head), expected)
        if seq == 0:
            self.assertTrue(verify_lines(iter((first + second).encode().splitlines())).ok)

    def test_time_text(self) -> None:
        """Record times are written as before, across seconds and back again (a
        clock stepped back), rounding to the millisecond the same way."""
        times = [
            1_700_000_000.0,
            1_700_000_000.9994,
            1_700_000_000.9995,
            1_700_000_001.0004,
            1_700_000_000.5,
            1_699_999_999.5,
            0.0,
            0.0005,
            -0.0005,
            -1.2,
            86399.9999,
            4_102_444_799.999,
        ]
        formatter = audit._Formatter()
        text, _, _ = formatter.chain(
            [(t, "a", "x", "success", None, None, None, {}, None) for t in times], 0, GENESIS
        )
        self.assertEqual(
            [json.loads(line)["time"] for line in text.splitlines()],
            [audit._iso(t) for t in times],
        )

    def test_records_of_the_server_take_the_fast_path(self) -> None:
        """The processor's and the admin API's records never need the slow
        canonical() path (the reason for the templates)."""

        def slow(*_: Any) -> str:
            raise AssertionError("took the slow path")

        self.patch(audit, "_canonical_text", slow)
        entries = [
            _kmip_entry(1_700_000_000.25),
            _kmip_entry(1_700_000_000.5, reason="ITEM_NOT_FOUND", via_ca="cd" * 32),
            (
                1_700_000_001.0,
                "admin:uid=0(root)",
                "admin.tenant.create",
                "success",
                "t",
                None,
                None,
                {},
                None,
            ),
            (1_700_000_001.0, "server", "server.start", "success", None, None, "c1,c2", {}, None),
        ]
        text, _, _ = audit._Formatter().chain(entries, 0, GENESIS)
        self.assertEqual(text.encode("ascii"), _reference_chain(entries, 0, GENESIS)[0])

    def test_detail_names_made_up_at_run_time(self) -> None:
        """Records with ever new detail names are still written as canonical() would,
        and the writer keeps a bounded number of format functions."""
        entries = [
            (5.0, "a", "x", "success", None, None, None, {f"field{n}": "v"}, None)
            for n in range(audit._MAX_TEMPLATES + 20)
        ]
        formatter = audit._Formatter()
        text, _, _ = formatter.chain(entries, 0, GENESIS)
        self.assertEqual(text.encode("ascii"), _reference_chain(entries, 0, GENESIS)[0])
        self.assertEqual(len(formatter._functions), audit._MAX_TEMPLATES)

    def test_details_named_like_chain_fields(self) -> None:
        """A detail called seq, prev, time or hash cannot break the chain: the
        writer's own values win."""
        entry = (
            5.0,
            "a",
            "x",
            "success",
            None,
            None,
            None,
            {"seq": 9, "prev": "p", "time": 1, "hash": "h", "n": 1},
            None,
        )
        text, _, _ = audit._Formatter().chain([entry], 0, GENESIS)
        record = json.loads(text)
        self.assertEqual(
            (record["seq"], record["prev"], record["time"], record["n"]),
            (1, GENESIS, audit._iso(5.0), 1),
        )
        self.assertTrue(verify_lines(iter([text.encode()])).ok)


def _record(seq: int, prev: str, operation: str) -> dict[str, Any]:
    record: dict[str, Any] = {"seq": seq, "prev": prev, "operation": operation, "actor": "a"}
    record["hash"] = record_hash(record)
    return record


def _log(count: int) -> list[bytes]:
    lines, prev = [], GENESIS
    for seq in range(1, count + 1):
        record = _record(seq, prev, f"op-{seq}")
        prev = record["hash"]
        lines.append(json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return lines


class VerifyTests(SynchronousTestCase):
    """``verify``: an intact log passes; any removed or altered line is named."""

    def test_intact(self) -> None:
        """A chain of records verifies, and an empty log too."""
        self.assertTrue(verify_lines(iter(_log(5))).ok)
        self.assertEqual(verify_lines(iter([])).records, 0)

    def test_edited_line(self) -> None:
        """Changing a field of line 3 is found at line 3."""
        lines = _log(5)
        lines[2] = lines[2].replace(b'"actor":"a"', b'"actor":"b"')
        result = verify_lines(iter(lines))
        self.assertEqual((result.ok, result.line, result.records), (False, 3, 2))
        self.assertIn("altered", result.problem or "")

    def test_edited_line_with_recomputed_hash(self) -> None:
        """A forger who recomputes the edited line's hash is caught at the next line."""
        lines = _log(5)
        record = json.loads(lines[2])
        record["operation"] = "nothing to see"
        record["hash"] = record_hash(record)
        lines[2] = json.dumps(record).encode() + b"\n"
        result = verify_lines(iter(lines))
        self.assertEqual(result.line, 4)
        self.assertIn("does not follow line 3", result.problem or "")

    def test_removed_line(self) -> None:
        """Removing line 3 is found at the line that now follows line 2."""
        lines = _log(5)
        del lines[2]
        result = verify_lines(iter(lines))
        self.assertEqual(result.line, 3)
        self.assertIn("1 record before it was removed", result.problem or "")

    def test_removed_first_line(self) -> None:
        """Removing the start of the log is found at line 1."""
        result = verify_lines(iter(_log(3)[1:]))
        self.assertEqual(result.line, 1)

    def test_garbage_line(self) -> None:
        """A line that is not JSON is named."""
        lines = _log(3)
        lines.insert(1, b"hello\n")
        result = verify_lines(iter(lines))
        self.assertEqual((result.line, result.problem), (2, "not a JSON record"))

    def test_cli(self) -> None:
        """``kmiptwist audit verify FILE`` exits 0 on an intact log and 1, naming the
        line, on a tampered one."""
        path = self.mktemp()
        lines = _log(4)
        with open(path, "wb") as handle:
            handle.writelines(lines)
        self.patch(sys, "stdout", io.StringIO())
        self.assertEqual(main(["--json", "audit", "verify", path]), 0)
        del lines[1]
        with open(path, "wb") as handle:
            handle.writelines(lines)
        captured = io.StringIO()
        self.patch(sys, "stderr", captured)
        self.assertEqual(main(["audit", "verify", path]), 1)
        self.assertIn("line 2", captured.getvalue())
        self.assertEqual(main(["audit", "verify", path + ".missing"]), 1)


class ProcessorAuditTests(SynchronousTestCase):
    """Every KMIP batch item becomes one audit record."""

    def setUp(self) -> None:
        self.harness = AdminHarness(self)
        self.successResultOf(self.harness.store.add_tenant(Tenant("alpha")))
        self.audit = FakeAudit()
        self.harness.processor.audit = self.audit

    def test_operations_are_recorded(self) -> None:
        """Create and Get record the operation, tenant, object and result; a failure
        records its Result Reason."""
        uid = self.harness.create_key("alpha")
        self.harness.kmip("alpha", Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)])
        self.harness.kmip("alpha", Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, "nope")])
        create, get, missing = self.audit.records
        self.assertEqual(
            (create["operation"], create["tenant"], create["unique_identifier"], create["result"]),
            ("kmip.create", "alpha", uid, "success"),
        )
        self.assertEqual(create["actor"], "cert:" + "ab" * 32)
        self.assertEqual((get["operation"], get["unique_identifier"]), ("kmip.get", uid))
        self.assertEqual(
            (missing["result"], missing["reason"], missing["unique_identifier"]),
            ("failure", "ITEM_NOT_FOUND", "nope"),
        )

    def test_refused_peer_is_recorded(self) -> None:
        """A certificate without a tenant is refused, and the refusal is audited."""
        peer = Peer("10.1.1.1:9", "cd" * 32, None)
        data = request((1, 1), [(Operation.DISCOVER_VERSIONS, [], None)])
        self.successResultOf(Deferred.fromCoroutine(self.harness.processor.process(data, peer)))
        [record] = self.audit.records
        self.assertEqual(
            (record["actor"], record["result"], record["reason"], record["peer"]),
            ("cert:" + "cd" * 32, "failure", "AUTHENTICATION_NOT_SUCCESSFUL", "10.1.1.1:9"),
        )

    def test_refusals_are_bounded(self) -> None:
        """A flood of requests from a peer without a tenant cannot fill the disk: past
        100 a second the refusals are counted in one record."""
        peer = Peer("10.1.1.1:9", None, None)
        data = request((1, 1), [(Operation.DISCOVER_VERSIONS, [], None)])
        for _ in range(250):
            self.successResultOf(Deferred.fromCoroutine(self.harness.processor.process(data, peer)))
        self.assertEqual(len(self.audit.records), 100)
        self.assertEqual(self.audit.records[0]["actor"], "anonymous")
        self.harness.clock.advance(1)
        self.successResultOf(Deferred.fromCoroutine(self.harness.processor.process(data, peer)))
        summary, next_one = self.audit.records[100:]
        self.assertEqual(
            (summary["operation"], summary["count"]), ("kmip.refusals_suppressed", 150)
        )
        self.assertEqual(next_one["operation"], "kmip.discover_versions")

    def test_correlation_id_reaches_the_record(self) -> None:
        """A Key Protect correlation id noted during an operation lands in its record."""
        fake = FakeWrapper()

        @implementer(IKeyWrapper)
        class NotingWrapper:
            name = "Key Protect (noting)"

            def wrap(self, material: bytes, aad: bytes) -> Deferred[bytes]:
                note_correlation_id("corr-1")
                return fake.wrap(material, aad)

            def unwrap(self, wrapped: bytes, aad: bytes) -> Deferred[Any]:
                return fake.unwrap(wrapped, aad)

        self.harness.engine.root_keys = SingleRootKey(NotingWrapper())
        self.harness.create_key("alpha")
        self.assertEqual(self.audit.records[-1]["correlation_id"], "corr-1")
        self.harness.kmip("alpha", Operation.DISCOVER_VERSIONS, [])
        self.assertIsNone(self.audit.records[-1]["correlation_id"])
