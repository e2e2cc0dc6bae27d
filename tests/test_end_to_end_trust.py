"""End-to-end: vCenter's four "Make KMS trust vCenter" methods against the real
``twistd -n kmip``, set up with the real ``kmiptwist`` command over the admin socket,
used by PyKMIP over TLS.  Also: removal cuts off open connections, the admin API
keeps tenants apart and refuses bad input, and the audit log of the run verifies.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kmip.core import enums as pykmip_enums
from kmip.core.enums import KMIPVersion
from kmip.pie.client import ProxyKmipClient
from kmip.pie.exceptions import KmipOperationFailure
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import pki
from kmiptwist.testing.admin import make_ca, self_signed, signed_by
from kmiptwist.testing.client import RawKMIPClient, client_context
from kmiptwist.testing.messages import read_response, request
from kmiptwist.testing.server import RunningServer, repository_root
from kmiptwist.vocabulary.enums import Operation, ResultReason


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TrustMethodTests(SynchronousTestCase):
    """Each way vCenter can be made trusted gets KMIP service, until it is removed."""

    server: RunningServer
    workdir: str

    @classmethod
    def _shared_server(cls) -> None:
        """One server for the class, started on first use (trial has no setUpClass)."""
        if getattr(cls, "server", None) is None:
            cls.workdir = tempfile.mkdtemp(prefix="trust-", dir=os.getcwd())
            cls.server = RunningServer.start(os.path.join(cls.workdir, "data"))
            atexit.register(cls.server.stop)

    def setUp(self) -> None:
        self._shared_server()
        self.assertTrue(self.server.alive(), self.server.log())
        self.directory = tempfile.mkdtemp(dir=self.workdir)

    def tearDown(self) -> None:
        self.assertTrue(self.server.alive(), self.server.log())

    # -- helpers -------------------------------------------------------------------

    def cli(self, *arguments: str, expect: int = 0) -> str:
        """Run ``kmiptwist --data-dir DATA ...``; check its exit status; its output."""
        environment = dict(os.environ, PYTHONPATH=repository_root())
        result = subprocess.run(
            [sys.executable, "-m", "kmiptwist.cli", "--data-dir", self.server.data_dir, *arguments],
            capture_output=True,
            env=environment,
            timeout=60,
            check=False,
        )
        output = result.stdout.decode() + result.stderr.decode()
        self.assertEqual(result.returncode, expect, f"kmiptwist {' '.join(arguments)}: {output}")
        return output

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    @property
    def server_ca(self) -> str:
        return self.server.client_bundle[2]

    def pykmip(self, cert: str, key: str) -> ProxyKmipClient:
        config = self.write("pykmip.conf", b"[client]\n")
        client = ProxyKmipClient(
            hostname="127.0.0.1",
            port=self.server.port,
            cert=cert,
            key=key,
            ca=self.server_ca,
            config_file=config,
            kmip_version=KMIPVersion.KMIP_1_2,
        )
        client.open()
        self.addCleanup(client.close)
        return client

    def assert_service(self, cert: str, key: str) -> str:
        """A key can be created and read back with this certificate; its identifier."""
        client = self.pykmip(cert, key)
        uid = client.create(pykmip_enums.CryptographicAlgorithm.AES, 256)
        self.assertEqual(len(client.get(uid).value), 32)
        return uid

    def assert_no_service(self, cert: str, key: str) -> None:
        """KMIP requests with this certificate are refused."""
        with RawKMIPClient(
            "127.0.0.1", self.server.port, client_context(cert, key, self.server_ca)
        ) as raw:
            item = read_response(
                raw.call(request((1, 1), [(Operation.DISCOVER_VERSIONS, [], None)]))
            ).items[0]
        self.assertEqual(item.reason, ResultReason.AUTHENTICATION_NOT_SUCCESSFUL)

    def open_connection(self, cert: str, key: str) -> RawKMIPClient:
        """A connection that got service and stays open."""
        raw = RawKMIPClient(
            "127.0.0.1", self.server.port, client_context(cert, key, self.server_ca)
        )
        self.addCleanup(raw.close)
        item = read_response(
            raw.call(request((1, 1), [(Operation.DISCOVER_VERSIONS, [], None)]))
        ).items[0]
        self.assertTrue(item.ok, item.message)
        return raw

    # -- the four methods ------------------------------------------------------------

    def test_vcenter_root_ca(self) -> None:
        """(1) The tenant trusts vCenter's root CA: a client whose certificate it signed
        (through an intermediate the client sends) gets service; removing the CA cuts
        off the open connection and ends service."""
        self.cli("tenant", "add", "method-root-ca")
        root, root_key = make_ca("VMCA root")
        middle, middle_key = make_ca("VMCA intermediate")
        middle = (
            x509.CertificateBuilder()
            .subject_name(middle.subject)
            .issuer_name(root.subject)
            .public_key(middle_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(middle.not_valid_before_utc)
            .not_valid_after(middle.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                middle.extensions.get_extension_for_class(x509.KeyUsage).value, critical=True
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(middle_key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        leaf, leaf_key = signed_by(middle, middle_key, "vcenter.example.com")
        cert = self.write("vcenter-chain.pem", pki.certificates_pem([leaf, middle]))
        key = self.write("vcenter-key.pem", _key_pem(leaf_key))
        self.assert_no_service(cert, key)
        self.cli(
            "cert",
            "add-ca",
            "--tenant",
            "method-root-ca",
            self.write("root.pem", pki.certificate_pem(root)),
        )
        self.assert_service(cert, key)
        # A certificate signed by the root directly works as well.
        direct, direct_key = signed_by(root, root_key, "esxi-01")
        direct_cert = self.write("esxi.pem", pki.certificate_pem(direct))
        direct_key_path = self.write("esxi-key.pem", _key_pem(direct_key))
        self.assert_service(direct_cert, direct_key_path)
        pending = json.loads(self.cli("cert", "pending", "--json"))
        self.assertNotIn(pki.fingerprint(leaf), [p["fingerprint"] for p in pending])
        held = self.open_connection(cert, key)
        self.cli("cert", "remove", "--tenant", "method-root-ca", pki.fingerprint(root))
        self.assertTrue(held.closed_by_peer())
        self.assert_no_service(cert, key)

    def test_self_signed_pending_then_approved(self) -> None:
        """(2) vCenter's own self-signed certificate shows up as pending after it tries,
        and gets service once approved."""
        self.cli("tenant", "add", "method-pending")
        certificate, key = self_signed("kmipClient20161127094708")
        cert = self.write("vc.pem", pki.certificate_pem(certificate))
        key_path = self.write("vc-key.pem", _key_pem(key))
        client = self.pykmip(cert, key_path)
        self.assertRaises(
            KmipOperationFailure, client.create, pykmip_enums.CryptographicAlgorithm.AES, 256
        )
        pending = json.loads(self.cli("cert", "pending", "--json"))
        [entry] = [p for p in pending if p["fingerprint"] == pki.fingerprint(certificate)]
        self.assertEqual(entry["subject"], "CN=kmipClient20161127094708")
        self.assertTrue(entry["address"].startswith("127.0.0.1:"))
        self.cli("cert", "approve", entry["fingerprint"], "--tenant", "method-pending")
        self.assert_service(cert, key_path)

    def test_kms_certificate_and_key(self) -> None:
        """(3) A certificate and key issued by ``kmiptwist ca issue`` get service; removing
        the certificate cuts off the connection that stays open and ends service."""
        self.cli("tenant", "add", "method-issued")
        out = os.path.join(self.directory, "bundle")
        issued = json.loads(
            self.cli("--json", "ca", "issue", "--tenant", "method-issued", "--out", out)
        )
        cert, key = os.path.join(out, "client.pem"), os.path.join(out, "client-key.pem")
        self.assert_service(cert, key)
        held = self.open_connection(cert, key)
        self.cli("cert", "remove", "--tenant", "method-issued", issued["fingerprint"])
        self.assertTrue(held.closed_by_peer())
        self.assert_no_service(cert, key)

    def test_csr_signed_by_kms(self) -> None:
        """(4) A CSR the client made, signed by ``kmiptwist ca sign-csr``, gets service
        with the client's own key."""
        self.cli("tenant", "add", "method-csr")
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcenter-csr")]))
            .sign(key, hashes.SHA256())
        )
        csr_path = self.write("vc.csr", csr.public_bytes(serialization.Encoding.PEM))
        cert = os.path.join(self.directory, "vc-signed.pem")
        self.cli("ca", "sign-csr", "--tenant", "method-csr", csr_path, "--out", cert)
        self.assert_service(cert, self.write("vc-key.pem", _key_pem(key)))

    # -- the admin API around them ------------------------------------------------------

    def test_isolation_and_bad_input(self) -> None:
        """Objects are listed only under their tenant; bad input is refused with a reason
        and changes nothing."""
        self.cli("tenant", "add", "iso-a")
        self.cli("tenant", "add", "iso-b")
        out = os.path.join(self.directory, "iso-a")
        self.cli("ca", "issue", "--tenant", "iso-a", "--out", out)
        uid = self.assert_service(
            os.path.join(out, "client.pem"), os.path.join(out, "client-key.pem")
        )
        listed_a = json.loads(self.cli("--json", "objects", "list", "--tenant", "iso-a"))
        self.assertEqual([o["id"] for o in listed_a["resources"]], [uid])
        listed_b = json.loads(self.cli("--json", "objects", "list", "--tenant", "iso-b"))
        self.assertEqual(listed_b["resources"], [])
        self.assertIn(
            "OBJECT_NOT_FOUND", self.cli("objects", "show", "--tenant", "iso-b", uid, expect=1)
        )
        # Bad input: a 4xx with a reason, and nothing changed.
        self.assertIn(
            "MALFORMED_PEM",
            self.cli("cert", "add", "--tenant", "iso-b", self.write("junk.pem", b"junk"), expect=1),
        )
        stranger = self.write("stranger.pem", pki.certificate_pem(self_signed("stranger")[0]))
        self.assertIn(
            "TENANT_NOT_FOUND", self.cli("cert", "add", "--tenant", "nobody", stranger, expect=1)
        )
        self.assertIn(
            "CERTIFICATE_CONFLICT",
            self.cli("cert", "add", "--tenant", "iso-b", os.path.join(out, "client.pem"), expect=1),
        )
        self.assertIn("TENANT_HAS_OBJECTS", self.cli("tenant", "delete", "iso-a", expect=1))
        self.assertIn('"objects": 1', self.cli("--json", "tenant", "show", "iso-a"))
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
            .sign(key, hashes.SHA256())
        )
        der = bytearray(csr.public_bytes(serialization.Encoding.DER))
        der[-3] ^= 1
        forged = (
            b"-----BEGIN CERTIFICATE REQUEST-----\n"
            + base64.encodebytes(bytes(der))
            + b"-----END CERTIFICATE REQUEST-----\n"
        )
        self.assertIn(
            "CSR_SIGNATURE_INVALID",
            self.cli(
                "ca", "sign-csr", "--tenant", "iso-b", self.write("forged.csr", forged), expect=1
            ),
        )
        self.assertEqual(json.loads(self.cli("--json", "cert", "list", "--tenant", "iso-b")), [])
        # A forced delete shreds the key: its client has no service any more.
        self.cli("tenant", "delete", "iso-a", "--force", "--yes")
        self.assert_no_service(os.path.join(out, "client.pem"), os.path.join(out, "client-key.pem"))

    def test_audit_log_of_the_run_verifies(self) -> None:
        """The server's audit log holds the admin changes and KMIP operations, verifies,
        and a copy with one line removed fails naming the line."""
        self.cli("tenant", "add", "audited")
        out = os.path.join(self.directory, "audited")
        issued = json.loads(self.cli("--json", "ca", "issue", "--tenant", "audited", "--out", out))
        uid = self.assert_service(
            os.path.join(out, "client.pem"), os.path.join(out, "client-key.pem")
        )
        self.assertTrue(json.loads(self.cli("--json", "server", "health"))["ready"])
        log = os.path.join(self.server.data_dir, "audit.log")
        # KMIP records are flushed within the sync interval; the admin change above
        # (server health changes nothing) is answered only after its own fsync.
        self.cli("tenant", "add", "audited-flush")
        with open(log, "rb") as handle:
            records = [json.loads(line) for line in handle]
        creates = [
            r for r in records if r["operation"] == "kmip.create" and r["unique_identifier"] == uid
        ]
        self.assertEqual(len(creates), 1)
        self.assertEqual(
            (creates[0]["actor"], creates[0]["tenant"]),
            ("cert:" + issued["fingerprint"], "audited"),
        )
        self.assertIn("admin.certificate.issue", [r["operation"] for r in records])
        self.assertIn("intact", self.cli("audit", "verify"))
        with open(log, "rb") as handle:
            lines = handle.readlines()
        del lines[2]
        copy = self.write("audit-copy.log", b"".join(lines))
        self.assertIn("line 3", self.cli("audit", "verify", copy, expect=1))
