"""Tests for the audit log: hash-chained JSON lines, written off the reactor thread,
verified line by line, and fed by every KMIP operation.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from kmiptwist import ttlv
from kmiptwist.audit import (
    GENESIS,
    AuditError,
    AuditLog,
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
