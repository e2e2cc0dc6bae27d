"""Tests for the operator's Key Protect commands: ``kmiptwist tenant bind`` and
``kmiptwist tenant rewrap``, through the admin API, against the emulator.

The command line runs in-process (``kmiptwist.cli.main`` with a requester that calls
the admin resource through ``StubTreq``); the server's root keys reach the emulator
through another ``StubTreq``; everything runs on one ``Clock``.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from kmiptwist import cli
from kmiptwist.admin.client import Answer
from kmiptwist.admin.context import AdminContext
from kmiptwist.admin.listener import admin_resource
from kmiptwist.interfaces import Tenant
from kmiptwist.keyprotect.binding import make_binding
from kmiptwist.keyprotect.wrapper import WrappedForm
from kmiptwist.testing.admin import FakeAudit, FakeConnections
from tests.keyprotect_harness import API_KEY_ENV, INSTANCE
from tests.test_keyprotect_wrapper import KMIPCase


class Requester:
    """The ``kmiptwist`` command's client, answered by the admin resource in memory."""

    def __init__(self, case: AdminCase) -> None:
        self.case = case

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        response = self.case.settle(
            self.case.admin.request(method, "http://admin" + path, data=data)
        )
        content = self.case.settle(response.content())
        return Answer(response.code, json.loads(content) if content.strip() else None)


class AdminCase(KMIPCase):
    """The KMIP case of the wrapper tests, with the admin API and the command line."""

    def setUp(self) -> None:
        super().setUp()
        self.audit = FakeAudit()
        context = AdminContext(
            store=self.store,
            engine=self.engine,
            connections=FakeConnections(),
            audit=self.audit,
            clock=self.clock,
            tls_options=None,  # type: ignore[arg-type]
            certificate_authority=lambda: (None, None),  # type: ignore[arg-type,return-value]
            ca_certificate=lambda: None,  # type: ignore[arg-type,return-value]
            check_binding=lambda root_key_id, binding: make_binding(
                root_key_id, binding, self.root_keys.settings
            ).stored(),
        )
        self.admin: Any = StubTreq(admin_resource(context, lambda request: "admin:test"))

    def settle(self, deferred: Deferred[Any]) -> Any:
        """Run ``deferred`` to its end, flushing both in-memory HTTP servers."""
        outcome: list[Any] = []
        deferred.addBoth(outcome.append)
        for _ in range(10_000):
            self.admin.flush()
            self.harness.stub.flush()
            if outcome:
                break
            calls = [call.getTime() for call in self.clock.getDelayedCalls() if call.active()]
            if calls:
                self.clock.advance(max(0.0, min(calls) - self.clock.seconds()))
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]

    def command(self, *argv: str) -> tuple[int, Any, str]:
        """Run ``kmiptwist --json ARGV``; (exit status, JSON output, error output)."""
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            status = cli.main(["--json", *argv], api=Requester(self))  # type: ignore[arg-type]
        finally:
            sys.stdout, sys.stderr = saved
        printed = out.getvalue()
        return status, json.loads(printed) if printed.strip() else None, err.getvalue()


class BindTests(AdminCase):
    """``kmiptwist tenant bind`` and ``tenant add`` with a Key Protect root key."""

    def bind_arguments(self, name: str, root_key: str | None = None) -> list[str]:
        return [
            "tenant",
            "bind",
            name,
            "--root-key-id",
            root_key or self.harness.root_key,
            "--keyprotect-instance",
            INSTANCE,
            "--api-key-env",
            API_KEY_ENV,
        ]

    def test_bind_local_tenant(self) -> None:
        """A local tenant with keys is bound after Key Protect confirmed the root key;
        its keys stay readable and the command says how many to rewrap."""
        uid = self.created("local")
        status, result, _ = self.command(*self.bind_arguments("local"))
        self.assertEqual(status, 0)
        self.assertEqual(
            (result["root_key_id"], result["objects_to_rewrap"]), (self.harness.root_key, 1)
        )
        tenant = self.harness.result(self.store.get_tenant("local"))
        self.assertEqual(tenant.root_key_kind, "keyprotect")
        self.assertEqual(tenant.root_key_binding["api_key_env"], API_KEY_ENV)
        self.assertNotIn("api_key", tenant.root_key_binding)
        self.assertTrue(self.get(uid, "local").ok)
        self.assertEqual(self.audit.operations()[-1], "admin.tenant.bind")
        status, report, _ = self.command("tenant", "rewrap", "local")
        self.assertEqual((status, report["objects"]), (0, 1))
        self.assertIsNotNone(WrappedForm.decode(self.stored(uid, "local").wrapped_material))

    def test_refusals(self) -> None:
        """Unknown or disabled root keys, a bad binding, an unknown tenant and a
        rebinding that would orphan keys are refused and change nothing."""
        self.created()  # finance has a key wrapped by the harness root key
        other = self.harness.emulator.create_root_key(INSTANCE, "other").id
        status, _, error = self.command(*self.bind_arguments("finance", other))
        self.assertEqual(status, 1)
        self.assertIn("could not be read", error)
        status, _, error = self.command(
            *self.bind_arguments("local", "c0ffee00-0000-4000-8000-000000000000")
        )
        self.assertIn("KEY_NOT_FOUND_ERR", error)
        self.harness.emulator.model.disable(INSTANCE, other)
        status, _, error = self.command(*self.bind_arguments("local", other))
        self.assertIn("disabled", error)
        status, _, error = self.command(*self.bind_arguments("nobody"))
        self.assertIn("does not exist", error)
        status, _, error = self.command(
            "tenant", "bind", "local", "--root-key-id", other, "--keyprotect-instance", "x",
            "--api-key-env", API_KEY_ENV,
        )  # fmt: skip
        self.assertIn("not a UUID", error)
        self.assertEqual(self.harness.result(self.store.get_tenant("local")).root_key_kind, "local")

    def test_add_with_key_protect(self) -> None:
        """``tenant add`` with a root key stores the binding with an API key reference."""
        status, result, error = self.command(
            "tenant", "add", "payroll", "--root-key-id", self.harness.root_key,
            "--keyprotect-instance", INSTANCE, "--api-key", f"env:{API_KEY_ENV}",
        )  # fmt: skip
        self.assertEqual(status, 0, error)
        self.assertEqual(result["root_key"]["api_key_env"], API_KEY_ENV)
        self.assertTrue(self.create("payroll").ok)


class RewrapCommandTests(AdminCase):
    """``kmiptwist tenant rewrap``."""

    def test_rewrap(self) -> None:
        """After a rotation every key moves to the new version; the audit says so."""
        uids = [self.created() for _ in range(3)]
        self.harness.manage("rotate")
        status, report, _ = self.command("tenant", "rewrap", "finance")
        self.assertEqual((status, report["rewrapped"], report["failed"]), (0, 3, []))
        for uid in uids:
            self.assertEqual(self.stored(uid).root_key_version, report["latest_version"])
        self.assertEqual(self.audit.operations()[-1], "admin.tenant.rewrap")

    def test_refused(self) -> None:
        """A local tenant, a disabled root key and an unknown tenant are refused."""
        self.store._tenants["plain"] = Tenant("plain")
        status, _, error = self.command("tenant", "rewrap", "plain")
        self.assertEqual(status, 1)
        self.assertIn("no versions", error)
        self.harness.manage("disable")
        status, _, error = self.command("tenant", "rewrap", "finance")
        self.assertIn("disabled", error)
        status, _, error = self.command("tenant", "rewrap", "nobody")
        self.assertIn("does not exist", error)
