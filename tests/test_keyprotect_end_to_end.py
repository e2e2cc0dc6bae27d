"""End-to-end: the real ``twistd kmip`` with tenants bound to Key Protect root keys in the
real ``twistd kmip-keyprotect-emulator``, over HTTP on loopback, with PyKMIP clients.

One emulator and one server run for the whole class.  Each test binds its own tenant
to its own root key with the ``kmiptwist`` command, as an operator would, and manages
the root key in the emulator as an IBM Cloud user would (rotate, disable, delete).
The last tests run the server's Key Protect client over real HTTPS to the emulator.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import tempfile
import time
from typing import Any

from kmip.core import enums as pykmip_enums
from kmip.core.enums import KMIPVersion
from kmip.pie.client import ProxyKmipClient
from kmip.pie.exceptions import KmipOperationFailure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kmiptwist import pki
from kmiptwist.interfaces import Tenant
from kmiptwist.keyprotect.binding import KeyProtectSettings
from kmiptwist.keyprotect.root_keys import TenantRootKeys
from kmiptwist.keyprotect.wrapper import WrappedForm
from kmiptwist.testing.keyprotect.process import RunningEmulator
from kmiptwist.testing.memory_store import MemoryStore
from kmiptwist.testing.server import RunningServer
from kmiptwist.wrapping import aad_for
from kmiptwist.wrapping.errors import WrappingError
from tests.test_end_to_end import kmiptwist_cli

INSTANCE = "5e1b2c3d-4e5f-4061-8273-8495a6b7c8d9"
API_KEY = "e2e-service-id-api-key-5f2d9c"
DEADLINE = 3.0


class KeyProtectEndToEndTests(SynchronousTestCase):
    """What KMIP clients of Key Protect tenants see."""

    emulator: RunningEmulator
    server: RunningServer
    workdir: str
    api_key_file: str

    @classmethod
    def _shared(cls) -> None:
        """Start the emulator and the server once for the class (trial has no setUpClass)."""
        if getattr(cls, "server", None) is not None:
            return
        cls.workdir = tempfile.mkdtemp(prefix="kp-e2e-", dir=os.getcwd())
        cls.emulator = RunningEmulator.start(
            os.path.join(cls.workdir, "emulator"),
            api_key=API_KEY,
            extra_arguments=["--state-change-delay", "0", "--rotation-interval", "0"],
        )
        atexit.register(cls.emulator.stop)
        cls.api_key_file = os.path.join(cls.workdir, "api-key")
        with open(os.open(cls.api_key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
            handle.write(API_KEY + "\n")
        config = os.path.join(cls.workdir, "kmiptwist.conf")
        with open(config, "w") as handle:
            handle.write(
                "[keyprotect]\n"
                f"endpoint = {cls.emulator.url}\n"
                f"token_url = {cls.emulator.token_url}\n"
                "timeout = 1\n"
                f"deadline = {DEADLINE:g}\n"
                "max_retries = 2\n"
                "[cache]\n"
                "verify_on_get = true\n"
                "verify_interval = 0\n"
            )
        cls.server = RunningServer.start(os.path.join(cls.workdir, "data"), ["--config", config])
        atexit.register(cls.server.stop)

    def setUp(self) -> None:
        self._shared()
        self.assertTrue(self.server.alive(), self.server.log())
        if not self.emulator.alive():
            self.emulator.restart()

    def tearDown(self) -> None:
        self.assertTrue(self.server.alive(), self.server.log())

    # -- helpers ------------------------------------------------------------------------------

    def tenant(self, name: str) -> tuple[str, tuple[str, str, str]]:
        """A tenant bound to a new root key, and a client bundle of it."""
        root_key = self.emulator.create_root_key(INSTANCE, f"crk-{name}")
        kmiptwist_cli(
            self.server.data_dir,
            "tenant",
            "add",
            name,
            "--root-key-id",
            root_key,
            "--keyprotect-instance",
            INSTANCE,
            "--api-key-file",
            self.api_key_file,
        )
        out = os.path.join(self.workdir, f"client-{name}")
        kmiptwist_cli(self.server.data_dir, "ca", "issue", "--tenant", name, "--out", out)
        bundle = tuple(os.path.join(out, f) for f in ("client.pem", "client-key.pem", "ca.pem"))
        return root_key, (bundle[0], bundle[1], bundle[2])

    def client(self, bundle: tuple[str, str, str] | None = None) -> ProxyKmipClient:
        cert, key, ca = bundle or self.server.client_bundle
        config = os.path.join(self.workdir, "pykmip.conf")
        if not os.path.exists(config):
            with open(config, "w") as out:
                out.write("[client]\n")
        client = ProxyKmipClient(
            hostname="127.0.0.1",
            port=self.server.port,
            cert=cert,
            key=key,
            ca=ca,
            config_file=config,
            kmip_version=KMIPVersion.KMIP_1_2,
        )
        client.open()
        self.addCleanup(client.close)
        return client

    def create(self, client: ProxyKmipClient) -> str:
        uid: str = client.create(pykmip_enums.CryptographicAlgorithm.AES, 256)
        return uid

    def refused(self, call: Any, *arguments: Any) -> tuple[KmipOperationFailure, float]:
        """The KMIP error ``call`` fails with, and how long it took."""
        started = time.monotonic()
        with self.assertRaises(KmipOperationFailure) as caught:
            call(*arguments)
        return caught.exception, time.monotonic() - started

    def row(self, uid: str) -> tuple[bytes, str | None]:
        """(wrapped material, root key version) of the object in the server's database."""
        database = sqlite3.connect(self.server.path("kmiptwist.sqlite3"))
        try:
            found = database.execute(
                "SELECT wrapped_material, root_key_version FROM objects WHERE unique_identifier = ?",
                (uid,),
            ).fetchone()
        finally:
            database.close()
        return bytes(found[0]), found[1]

    # -- tests ---------------------------------------------------------------------------------

    def test_create_and_get(self) -> None:
        """A Key Protect tenant creates and gets keys; the database holds Key Protect's
        wrapped form and the root key version, the emulator saw the wraps."""
        root_key, bundle = self.tenant("e2e-create")
        client = self.client(bundle)
        uid = self.create(client)
        self.assertEqual(len(client.get(uid).value), 32)
        wrapped, version = self.row(uid)
        form = WrappedForm.decode(wrapped)
        assert form is not None
        self.assertEqual((form.root_key_id, version), (root_key, root_key))
        self.assertGreaterEqual(self.emulator.control()["calls"].get("wrap", 0), 1)
        # The audit record of the Create names the Key Protect call's correlation id.
        record = self.audit_record("kmip.create", uid)
        self.assertEqual(len(str(record.get("correlation_id"))), 36)

    def audit_record(self, operation: str, uid: str) -> dict[str, Any]:
        """The audit record of ``operation`` on ``uid`` (written within moments)."""
        import json

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(self.server.path("audit.log"), encoding="utf-8") as log:
                for line in log:
                    record: dict[str, Any] = json.loads(line)
                    if (
                        record.get("operation") == operation
                        and record.get("unique_identifier") == uid
                    ):
                        return record
            time.sleep(0.05)
        raise AssertionError(f"no audit record of {operation} on {uid}")

    def test_rotation(self) -> None:
        """After a rotation old keys stay readable; the Get stores the rewrapped form and
        the new version; ``kmiptwist tenant rewrap`` moves the others."""
        root_key, bundle = self.tenant("e2e-rotate")
        client = self.client(bundle)
        first, second = self.create(client), self.create(client)
        before = {uid: self.row(uid) for uid in (first, second)}
        self.emulator.action(INSTANCE, root_key, "rotate")
        latest = self.emulator.metadata(INSTANCE, root_key)["keyVersion"]["id"]
        self.assertEqual(len(client.get(first).value), 32)
        wrapped, version = self.row(first)
        self.assertNotEqual(wrapped, before[first][0])
        self.assertEqual(version, latest)
        self.assertEqual(self.row(second), before[second])
        report = kmiptwist_cli(self.server.data_dir, "--json", "tenant", "rewrap", "e2e-rotate")
        self.assertIn('"rewrapped": 1', report)
        self.assertIn('"already_current": 1', report)
        self.assertEqual(self.row(second)[1], latest)
        self.assertEqual(len(client.get(second).value), 32)

    def test_disable_and_enable(self) -> None:
        """Disabled root key: Get (even of a cached key) and Create fail at once with
        Permission Denied naming the root key; enabled again, both work."""
        root_key, bundle = self.tenant("e2e-disable")
        client = self.client(bundle)
        uid = self.create(client)
        key = client.get(uid).value
        self.emulator.action(INSTANCE, root_key, "disable")
        error, elapsed = self.refused(client.get, uid)
        self.assertEqual(error.reason, pykmip_enums.ResultReason.PERMISSION_DENIED)
        self.assertIn(root_key, error.message)
        self.assertIn("disabled", error.message)
        self.assertLess(elapsed, DEADLINE)
        error, _ = self.refused(self.create, client)
        self.assertEqual(error.reason, pykmip_enums.ResultReason.PERMISSION_DENIED)
        self.emulator.action(INSTANCE, root_key, "enable")
        self.assertEqual(client.get(uid).value, key)
        self.create(client)

    def test_delete_shreds(self) -> None:
        """Deleting the root key makes the tenant's keys unreadable for good; the default
        tenant (local root key) is unaffected."""
        root_key, bundle = self.tenant("e2e-delete")
        client = self.client(bundle)
        uid = self.create(client)
        local = self.client()
        local_uid = self.create(local)
        self.emulator.action(INSTANCE, root_key, "delete")
        error, _ = self.refused(client.get, uid)
        self.assertEqual(error.reason, pykmip_enums.ResultReason.PERMISSION_DENIED)
        self.assertIn("KEY_DELETED_ERR", error.message)
        self.assertEqual(len(local.get(local_uid).value), 32)

    def test_outage_and_restart(self) -> None:
        """Key Protect down: Gets fail with General Failure within the deadline, the
        server keeps serving the local tenant; restarted later, every key is readable."""
        _, bundle = self.tenant("e2e-outage")
        client = self.client(bundle)
        uids = [self.create(client) for _ in range(3)]
        keys = {uid: client.get(uid).value for uid in uids}
        local = self.client()
        self.emulator.stop()
        try:
            error, elapsed = self.refused(client.get, uids[0])
            self.assertEqual(error.reason, pykmip_enums.ResultReason.GENERAL_FAILURE)
            self.assertIn("unreachable", error.message)
            self.assertLess(elapsed, DEADLINE + 1.0)
            self.assertEqual(len(local.get(self.create(local)).value), 32)
        finally:
            self.emulator.restart()
        for uid, key in keys.items():
            self.assertEqual(self.client(bundle).get(uid).value, key)

    def test_no_secrets_on_disk(self) -> None:
        """The database holds neither key material in plaintext nor the API key."""
        _, bundle = self.tenant("e2e-secrets")
        client = self.client(bundle)
        keys = [client.get(self.create(client)).value for _ in range(3)]
        local = self.client()
        keys.append(local.get(self.create(local)).value)
        stored = b""
        for suffix in ("", "-wal"):
            path = self.server.path("kmiptwist.sqlite3" + suffix)
            if os.path.exists(path):
                with open(path, "rb") as handle:
                    stored += handle.read()
        self.assertIn(b"keyprotect-v1", stored)  # the Key Protect objects are there
        for key in keys:
            self.assertNotIn(bytes(key), stored)
        self.assertNotIn(API_KEY.encode(), stored)
        self.assertNotIn(API_KEY, self.server.log())


class TLSTests(TestCase):
    """The server's Key Protect client over real HTTPS: verification is always on."""

    emulator: RunningEmulator
    workdir: str

    @classmethod
    def _shared(cls) -> None:
        if getattr(cls, "emulator", None) is not None:
            return
        cls.workdir = tempfile.mkdtemp(prefix="kp-tls-", dir=os.getcwd())
        ca, ca_key = pki.create_ca("emulator test CA", key_kind="ec")
        certificate, key = pki.issue_server_certificate(
            ca, ca_key, ["localhost"], ["127.0.0.1"], "keyprotect emulator", key_kind="ec"
        )
        paths = [
            os.path.join(cls.workdir, name) for name in ("server.pem", "server-key.pem", "ca.pem")
        ]
        pki.write_public(paths[0], pki.certificate_pem(certificate))
        pki.write_private_key(paths[1], key)
        pki.write_public(paths[2], pki.certificate_pem(ca))
        other, _ = pki.create_ca("some other CA", key_kind="ec")
        cls.other_ca = os.path.join(cls.workdir, "other-ca.pem")
        pki.write_public(cls.other_ca, pki.certificate_pem(other))
        cls.emulator = RunningEmulator.start(
            os.path.join(cls.workdir, "emulator"),
            api_key=API_KEY,
            tls=(paths[0], paths[1], paths[2]),
        )
        atexit.register(cls.emulator.stop)

    def setUp(self) -> None:
        self._shared()
        os.environ["KMIPTWIST_E2E_KP_API_KEY"] = API_KEY
        self.root_key = self.emulator.create_root_key(INSTANCE, "tls-crk")

    async def _wrap_with(self, ca_bundle: str) -> bytes:
        from twisted.internet import reactor

        store = MemoryStore()
        binding = {
            "instance_id": INSTANCE,
            "api_key_env": "KMIPTWIST_E2E_KP_API_KEY",
            "ca_bundle": ca_bundle,
        }
        store.add_tenant(Tenant("tls", "keyprotect", self.root_key, 0, binding))
        settings = KeyProtectSettings(
            endpoint=self.emulator.url,
            token_url=self.emulator.token_url,
            timeout=2,
            deadline=4,
            max_retries=1,
        )
        root_keys = TenantRootKeys(store, None, settings, reactor)
        try:
            wrapper = await root_keys.for_tenant("tls")
            wrapped: bytes = await wrapper.wrap(b"material", aad_for("tls", "uid"))
            return wrapped
        finally:
            await root_keys.stopService()

    async def test_verified(self) -> None:
        """With the CA bundle that signed Key Protect's certificate, wrap works."""
        wrapped = await self._wrap_with(self.emulator.ca_bundle or "")
        self.assertIn(b"keyprotect-v1", wrapped)

    async def test_unverified_refused(self) -> None:
        """A certificate the CA bundle does not vouch for is refused: no call is made."""
        before = self.emulator.control()["calls"].get("token", 0)
        with self.assertRaises(WrappingError) as caught:
            await self._wrap_with(self.other_ca)
        self.assertIn("certificate verify failed", str(caught.exception))
        self.assertEqual(self.emulator.control()["calls"].get("token", 0), before)
