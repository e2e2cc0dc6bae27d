"""Tests for the ``kmiptwist`` command, talking to the real admin API in memory."""

from __future__ import annotations

import io
import json
import os
import stat
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import pki
from kmiptwist.cli import main
from kmiptwist.testing.admin import AdminHarness, HarnessRequester, make_ca, self_signed


class CLITests(SynchronousTestCase):
    """What an operator types and what they see."""

    def setUp(self) -> None:
        self.admin = AdminHarness(self)
        self.api = HarnessRequester(self.admin)
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def run_cli(self, *argv: str, api: object = None) -> tuple[int, str, str]:
        """Run the command; (exit status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = main(list(argv), api=self.api if api is None else api)  # type: ignore[arg-type]
        return status, out.getvalue(), err.getvalue()

    def ok(self, *argv: str) -> str:
        status, out, err = self.run_cli(*argv)
        self.assertEqual(status, 0, err)
        return out

    def json(self, *argv: str) -> object:
        return json.loads(self.ok("--json", *argv))

    def file(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def test_tenants(self) -> None:
        """Tenants are added, listed as a table or JSON, shown and deleted."""
        self.ok("tenant", "add", "finance")
        table = self.ok("tenant", "list")
        self.assertIn("NAME", table.splitlines()[0])
        self.assertIn("finance", table)
        [tenant] = self.json("tenant", "list")  # type: ignore[misc]
        self.assertEqual((tenant["name"], tenant["root_key"]), ("finance", "local"))
        self.assertEqual(self.json("tenant", "show", "finance")["objects"], 0)  # type: ignore[index]
        self.ok("tenant", "delete", "finance")
        self.assertEqual(self.json("tenant", "list"), [])

    def test_key_protect_tenant(self) -> None:
        """tenant add with Key Protect options sends a Key Protect binding."""
        self.ok(
            "tenant",
            "add",
            "kp",
            "--keyprotect-instance",
            "b0c5b2a4-0000-4000-8000-000000000001",
            "--root-key-id",
            "crk-1",
            "--api-key",
            "env:KP_API_KEY",
        )
        tenant = self.successResultOf(self.admin.store.get_tenant("kp"))
        self.assertEqual((tenant.root_key_kind, tenant.root_key_id), ("keyprotect", "crk-1"))
        self.assertEqual(tenant.root_key_binding["api_key"], "env:KP_API_KEY")

    def test_exit_statuses(self) -> None:
        """0 done, 1 refused (with the API's reason), 2 bad usage, 3 unreachable,
        4 server failure."""
        status, _, err = self.run_cli("tenant", "show", "nobody")
        self.assertEqual(status, 1)
        self.assertIn("tenant 'nobody' does not exist (TENANT_NOT_FOUND)", err)
        self.assertEqual(self.run_cli("tenant", "frobnicate")[0], 2)
        from kmiptwist.admin.client import AdminClient

        status, _, err = self.run_cli(
            "tenant", "list", api=AdminClient(socket_path=os.path.join(self.directory, "none.sock"))
        )
        self.assertEqual(status, 3)
        self.assertIn("is the server running", err)
        self.admin.audit.fail = True
        self.assertEqual(self.run_cli("tenant", "add", "x")[0], 4)

    def test_forced_delete_needs_confirmation(self) -> None:
        """A forced delete destroys keys: without --yes (and no terminal) it is refused."""
        self.ok("tenant", "add", "alpha")
        self.admin.create_key("alpha")
        self.patch(sys, "stdin", io.StringIO())
        status, _, err = self.run_cli("tenant", "delete", "alpha", "--force")
        self.assertEqual(status, 2)
        self.assertIn("--yes", err)
        self.assertEqual(self.run_cli("tenant", "delete", "alpha")[0], 1)
        self.ok("tenant", "delete", "alpha", "--force", "--yes")
        self.assertIsNone(self.successResultOf(self.admin.store.get_tenant("alpha")))

    def test_certificates_and_cas(self) -> None:
        """cert add / add-ca / list / remove, by fingerprint."""
        self.ok("tenant", "add", "alpha")
        certificate, _ = self_signed("vcenter")
        ca, _ = make_ca("vCenter root CA")
        self.ok(
            "cert",
            "add",
            "--tenant",
            "alpha",
            self.file("vc.pem", pki.certificate_pem(certificate)),
        )
        self.ok("cert", "add-ca", "--tenant", "alpha", self.file("ca.pem", pki.certificate_pem(ca)))
        rows = self.json("cert", "list", "--tenant", "alpha")
        self.assertEqual(
            [(r["kind"], r["fingerprint"]) for r in rows],  # type: ignore[union-attr]
            [("certificate", pki.fingerprint(certificate)), ("trusted CA", pki.fingerprint(ca))],
        )
        self.ok("cert", "remove", "--tenant", "alpha", pki.fingerprint(ca))
        self.ok("cert", "remove", "--tenant", "alpha", pki.fingerprint(certificate))
        self.assertEqual(self.json("cert", "list", "--tenant", "alpha"), [])
        status, _, err = self.run_cli("cert", "remove", "--tenant", "alpha", pki.fingerprint(ca))
        self.assertEqual(status, 1)
        self.assertIn("no certificate or trusted CA", err)
        status, _, err = self.run_cli(
            "cert", "add", "--tenant", "alpha", self.file("bad.pem", b"junk")
        )
        self.assertEqual(status, 1)
        self.assertIn("MALFORMED_PEM", err)

    def test_pending(self) -> None:
        """cert pending lists who tried; approve and dismiss act on them."""
        self.ok("tenant", "add", "alpha")
        first, _ = self_signed("kmipClient20161127094708")
        second, _ = self_signed("stranger")
        for certificate in (first, second):
            self.successResultOf(
                self.admin.store.record_pending(
                    pki.fingerprint(certificate),
                    certificate.subject.rfc4514_string(),
                    certificate.issuer.rfc4514_string(),
                    "10.0.0.1:1",
                    pki.certificate_pem(certificate).decode(),
                    100,
                )
            )
        subjects = {p["subject"] for p in self.json("cert", "pending")}  # type: ignore[union-attr]
        self.assertEqual(subjects, {"CN=kmipClient20161127094708", "CN=stranger"})
        self.ok("cert", "approve", pki.fingerprint(first), "--tenant", "alpha")
        self.ok("cert", "dismiss", pki.fingerprint(second))
        self.assertEqual(self.json("cert", "pending"), [])
        self.assertEqual(
            self.successResultOf(self.admin.store.tenant_for_fingerprint(pki.fingerprint(first))),
            "alpha",
        )

    def test_ca_issue_writes_a_bundle(self) -> None:
        """ca issue writes client.pem, a 0600 client-key.pem, ca.pem and a PKCS#12."""
        self.ok("tenant", "add", "alpha")
        out = os.path.join(self.directory, "bundle")
        passphrase = self.file("pass", b"correct horse\n")
        self.ok(
            "ca", "issue", "--tenant", "alpha", "--out", out, "--key-type", "ec",
            "--pkcs12-passphrase-file", passphrase,
        )  # fmt: skip
        with open(os.path.join(out, "client.pem"), "rb") as handle:
            certificate = pki.load_certificate(handle.read())
        with open(os.path.join(out, "client-key.pem"), "rb") as handle:
            key = pki.load_private_key(handle.read())
        self.assertTrue(pki.key_matches_certificate(key, certificate))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(out, "client-key.pem")).st_mode), 0o600)
        with open(os.path.join(out, "client.p12"), "rb") as handle:
            _, p12_certificate, _ = pkcs12.load_key_and_certificates(
                handle.read(), b"correct horse"
            )
        self.assertEqual(p12_certificate, certificate)
        with open(os.path.join(out, "ca.pem"), "rb") as handle:
            self.assertEqual(pki.load_certificate(handle.read()), self.admin.ca_certificate)
        self.assertEqual(
            self.successResultOf(
                self.admin.store.tenant_for_fingerprint(pki.fingerprint(certificate))
            ),
            "alpha",
        )

    def test_ca_sign_csr_and_export(self) -> None:
        """ca sign-csr writes the signed certificate; ca export prints the CA."""
        self.ok("tenant", "add", "alpha")
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcenter")]))
            .sign(key, hashes.SHA256())
        )
        csr_path = self.file("vc.csr", csr.public_bytes(serialization.Encoding.PEM))
        out = os.path.join(self.directory, "vc.pem")
        self.ok(
            "ca", "sign-csr", "--tenant", "alpha", csr_path, "--out", out, "--validity-days", "30"
        )
        with open(out, "rb") as handle:
            signed = pki.load_certificate(handle.read())
        self.assertTrue(pki.key_matches_certificate(key, signed))
        printed = self.ok("ca", "export")
        self.assertEqual(pki.load_certificate(printed.encode()), self.admin.ca_certificate)

    def test_objects(self) -> None:
        """objects list / show / revoke / destroy."""
        self.ok("tenant", "add", "alpha")
        uid = self.admin.create_key("alpha", name="disk-1")
        table = self.ok("objects", "list", "--tenant", "alpha")
        self.assertIn(uid, table)
        self.assertIn("Pre-Active", table)
        listed = self.json("objects", "list", "--tenant", "alpha", "--name", "disk-1")
        self.assertEqual(listed["metadata"]["totalCount"], 1)  # type: ignore[index]
        shown = self.ok("objects", "show", "--tenant", "alpha", uid)
        self.assertIn("Cryptographic Algorithm: AES", shown)
        self.assertEqual(
            self.json("objects", "revoke", "--tenant", "alpha", uid),
            {"id": uid, "state": "Deactivated"},
        )
        self.assertEqual(
            self.json("objects", "destroy", "--tenant", "alpha", uid),
            {"id": uid, "state": "Destroyed"},
        )

    def test_server(self) -> None:
        """server cert shows the fingerprint; server health exits 1 when not ready."""
        details = self.json("server", "cert")
        self.assertEqual(
            details["fingerprint"], pki.fingerprint(self.admin.tls_options.certificate)
        )  # type: ignore[index]
        self.assertEqual(self.run_cli("server", "health")[0], 0)
        self.admin.audit.healthy = False
        status, out, _ = self.run_cli("server", "health")
        self.assertEqual(status, 1)
        self.assertIn("audit", out)
