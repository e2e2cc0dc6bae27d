"""End-to-end tests: the real ``twistd -n kmip`` on loopback, real TLS, real sqlite,
spoken to by PyKMIP's ProxyKmipClient and by a raw TTLV client.

One server runs for the whole class (started once, with a fresh data directory);
each test talks to it over new TLS connections, as clients do.
"""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from contextlib import closing

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kmip.core import enums as pykmip_enums
from kmip.core.enums import KMIPVersion
from kmip.pie.client import ProxyKmipClient
from kmip.pie.exceptions import KmipOperationFailure
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.testing.client import RawKMIPClient, client_context
from kmiptwist.testing.messages import attribute_1x, read_response, request, template_1x
from kmiptwist.testing.server import RunningServer, repository_root
from kmiptwist.vocabulary.enums import (
    CryptographicAlgorithm,
    ObjectType,
    Operation,
    QueryFunction,
    ResultReason,
    State,
)
from kmiptwist.vocabulary.tags import Tag

V11 = (1, 1)


def _self_signed(directory: str, name: str) -> tuple[str, str]:
    """A self-signed client certificate nobody registered (like vCenter's own)."""
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, f"{name}.pem")
    key_path = os.path.join(directory, f"{name}-key.pem")
    with open(cert_path, "wb") as out:
        out.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def kmiptwist_cli(data_dir: str, *arguments: str) -> str:
    """Run the ``kmiptwist`` operator command (it reaches the running server through the
    admin socket in ``data_dir``); return its standard output."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = repository_root()
    result = subprocess.run(
        [sys.executable, "-m", "kmiptwist.cli", "--data-dir", data_dir, *arguments],
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kmiptwist {' '.join(arguments)} failed: {result.stderr.decode()}")
    return result.stdout.decode()


class EndToEndTests(SynchronousTestCase):
    """What a KMIP client sees of the real server."""

    server: RunningServer
    workdir: str

    @classmethod
    def _shared_server(cls) -> None:
        """Start one server for the whole class on first use (trial has no setUpClass)."""
        if getattr(cls, "server", None) is None:
            cls.workdir = tempfile.mkdtemp(prefix="e2e-", dir=os.getcwd())
            cls.server = RunningServer.start(os.path.join(cls.workdir, "data"))
            atexit.register(cls.server.stop)

    def setUp(self) -> None:
        self._shared_server()
        self.assertTrue(self.server.alive(), self.server.log())

    def tearDown(self) -> None:
        # Whatever a test sent, the server is still up for everyone else.
        self.assertTrue(self.server.alive(), self.server.log())

    # -- helpers -------------------------------------------------------------

    def pykmip(
        self, version: KMIPVersion, bundle: tuple[str, str, str] | None = None
    ) -> ProxyKmipClient:
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
            kmip_version=version,
        )
        client.open()
        self.addCleanup(client.close)
        return client

    def raw(self, bundle: tuple[str | None, str | None, str] | None = None) -> RawKMIPClient:
        cert, key, ca = bundle or self.server.client_bundle
        client = RawKMIPClient("127.0.0.1", self.server.port, client_context(cert, key, ca))
        self.addCleanup(client.close)
        return client

    def step(self, items, first_dv: bool = True):
        """One vCenter step: a fresh TLS connection, an ID-less Discover Versions, then ``items``."""
        with self.raw() as client:
            if first_dv:
                dv = read_response(
                    client.call(request(V11, [(Operation.DISCOVER_VERSIONS, [], None)]))
                )
                self.assertTrue(dv.items[0].ok)
                self.assertEqual(dv.version, V11)
            response = read_response(client.call(request(V11, items)))
        self.assertEqual(response.version, V11)
        return response

    # -- PyKMIP ---------------------------------------------------------------

    def _lifecycle(self, version: KMIPVersion) -> None:
        client = self.pykmip(version)
        uid = client.create(
            pykmip_enums.CryptographicAlgorithm.AES, 256, name=f"e2e-{version.name}"
        )
        self.assertTrue(uid)
        client.activate(uid)
        key = client.get(uid)
        self.assertEqual(len(key.value), 32)
        attributes = client.get_attributes(uid, ["State", "Cryptographic Length"])
        by_name = {a.attribute_name.value: a.attribute_value.value for a in attributes[1]}
        self.assertEqual(by_name["State"], pykmip_enums.State.ACTIVE)
        self.assertEqual(by_name["Cryptographic Length"], 256)
        from kmip.core.factories.attributes import AttributeFactory

        name = AttributeFactory().create_attribute(
            pykmip_enums.AttributeType.NAME, f"e2e-{version.name}"
        )
        self.assertEqual(client.locate(attributes=[name]), [uid])
        client.revoke(pykmip_enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
        client.destroy(uid)
        state = client.get_attributes(uid, ["State"])[1][0].attribute_value.value
        self.assertEqual(state, pykmip_enums.State.DESTROYED)
        self.assertRaises(KmipOperationFailure, client.get, uid)

    def test_pykmip_lifecycle_kmip_1_2(self) -> None:
        """PyKMIP speaking 1.2: create, activate, get, attributes, locate, revoke, destroy."""
        self._lifecycle(KMIPVersion.KMIP_1_2)

    def test_pykmip_lifecycle_kmip_2_0(self) -> None:
        """PyKMIP speaking 2.0 goes through the same lifecycle."""
        self._lifecycle(KMIPVersion.KMIP_2_0)

    # -- vCenter ----------------------------------------------------------------

    def test_vcenter_vm_encryption_flow(self) -> None:
        """vCenter 7.0.3's VM-encryption sequence (reference §1.3 d), byte-level, 1.1."""
        create = [
            ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
            template_1x(
                [
                    attribute_1x(
                        "Cryptographic Algorithm", ttlv.enumeration(0, CryptographicAlgorithm.AES)
                    ),
                    attribute_1x("Cryptographic Usage Mask", ttlv.integer(0, 12)),
                    attribute_1x("Cryptographic Length", ttlv.integer(0, 256)),
                ]
            ),
        ]

        def qlkc(n: int) -> bytes:
            return bytes.fromhex(f"514c4b43{n:02x}000000")

        def uid(value: str) -> ttlv.Item:
            return ttlv.text_string(Tag.UNIQUE_IDENTIFIER, value)

        def get_attribute(key: str, name: str, n: int = 1):
            return (
                Operation.GET_ATTRIBUTES,
                [uid(key), ttlv.text_string(Tag.ATTRIBUTE_NAME, name)],
                qlkc(n),
            )

        def probe_and_add(key: str, values: list[tuple[str, str]]) -> None:
            for name, _ in values:
                response = self.step([get_attribute(key, name)])
                self.assertTrue(response.items[0].ok)
                self.assertEqual(response.items[0].batch_id, qlkc(1))
                self.assertEqual(response.items[0].payload.find_all(Tag.ATTRIBUTE), [])
            batch = [
                (
                    Operation.ADD_ATTRIBUTE,
                    [uid(key), attribute_1x(name, ttlv.text_string(0, value))],
                    qlkc(n),
                )
                for n, (name, value) in enumerate(values, 1)
            ]
            response = self.step(batch)
            self.assertEqual(
                [i.ok for i in response.items],
                [True, True, True],
                [i.message for i in response.items],
            )
            self.assertEqual([i.batch_id for i in response.items], [qlkc(1), qlkc(2), qlkc(3)])
            for name, value in values:
                found = self.step([get_attribute(key, name)]).items[0].payload.find(Tag.ATTRIBUTE)
                self.assertEqual(found.get(Tag.ATTRIBUTE_VALUE), value)

        def get_and_activate(key: str) -> None:
            got = self.step([(Operation.GET, [uid(key)], qlkc(1))]).items[0]
            self.assertTrue(got.ok, got.message)
            material = (
                got.payload.find(Tag.SYMMETRIC_KEY)
                .find(Tag.KEY_BLOCK)
                .find(Tag.KEY_VALUE)
                .get(Tag.KEY_MATERIAL)
            )
            self.assertEqual(len(material), 32)
            state = self.step([get_attribute(key, "State")]).items[0].payload.find(Tag.ATTRIBUTE)
            self.assertEqual(state.get(Tag.ATTRIBUTE_VALUE), State.PRE_ACTIVE)
            self.assertTrue(self.step([(Operation.ACTIVATE, [uid(key)], qlkc(1))]).items[0].ok)

        # Add KMS: probe connection with no KMIP at all, then DV; DV(id); Query.
        with self.raw():
            pass
        response = self.step([(Operation.DISCOVER_VERSIONS, [], qlkc(1))])
        self.assertIn(
            (1, 1),
            [
                (v.get(Tag.PROTOCOL_VERSION_MAJOR), v.get(Tag.PROTOCOL_VERSION_MINOR))
                for v in response.items[0].payload.value
            ],
        )
        query = self.step(
            [
                (
                    Operation.QUERY,
                    [ttlv.enumeration(Tag.QUERY_FUNCTION, QueryFunction.QUERY_SERVER_INFORMATION)],
                    qlkc(1),
                )
            ]
        )
        self.assertTrue(query.items[0].get(Tag.VENDOR_IDENTIFICATION))

        vm_key = (
            self.step([(Operation.CREATE, create, qlkc(1))]).items[0].get(Tag.UNIQUE_IDENTIFIER)
        )
        product = [
            ("x-Product_Version", "7.0.3 build-19480866"),
            ("x-Vendor", "VMware, Inc."),
            ("x-Product", "VMware vSphere"),
        ]
        probe_and_add(vm_key, product)
        host_key = (
            self.step([(Operation.CREATE, create, qlkc(1))]).items[0].get(Tag.UNIQUE_IDENTIFIER)
        )
        get_and_activate(host_key)
        probe_and_add(host_key, product)
        probe_and_add(
            host_key,
            [
                ("x-Identifier", "8c164d56-7f1c-5960-63e6-4451c6181844"),
                ("x-Component", "ESXi Server"),
                ("x-Name", "172.16.220.132"),
            ],
        )
        get_and_activate(vm_key)
        probe_and_add(
            vm_key,
            [
                ("x-Identifier", "4226f566-3ed5-1c8f-cda3-b0b037b6dc97"),
                ("x-Component", "Virtual Machine"),
                ("x-Name", "test01"),
            ],
        )

    # -- tenants and identity ----------------------------------------------------

    def test_tenant_isolation(self) -> None:
        """A certificate of tenant beta cannot see an object of tenant default at all."""
        # A fresh tenant name each run: the server is shared by the whole class.
        tenant = f"beta-{uuid.uuid4().hex[:8]}"
        bundle_dir = os.path.join(self.workdir, f"{tenant}-client")
        kmiptwist_cli(self.server.data_dir, "tenant", "add", tenant)
        kmiptwist_cli(self.server.data_dir, "ca", "issue", "--tenant", tenant, "--out", bundle_dir)
        beta = (
            os.path.join(bundle_dir, "client.pem"),
            os.path.join(bundle_dir, "client-key.pem"),
            os.path.join(bundle_dir, "ca.pem"),
        )
        alpha_client = self.pykmip(KMIPVersion.KMIP_1_2)
        uid = alpha_client.create(pykmip_enums.CryptographicAlgorithm.AES, 128, name="isolated")
        beta_client = self.raw(beta)
        for operation, payload in (
            (Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)]),
            (Operation.GET_ATTRIBUTES, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)]),
            (Operation.DESTROY, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)]),
        ):
            item = read_response(
                beta_client.call(request((1, 4), [(operation, payload, None)]))
            ).items[0]
            self.assertEqual(item.reason, ResultReason.ITEM_NOT_FOUND)
        located = read_response(
            beta_client.call(request((1, 4), [(Operation.LOCATE, [], None)]))
        ).items[0]
        self.assertTrue(located.ok)
        self.assertEqual(located.payload.find_all(Tag.UNIQUE_IDENTIFIER), [])
        # Beta's own objects work, and default cannot see them either.
        created = read_response(
            beta_client.call(
                request(
                    (1, 4),
                    [
                        (
                            Operation.CREATE,
                            [
                                ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
                                template_1x(
                                    [
                                        attribute_1x(
                                            "Cryptographic Algorithm",
                                            ttlv.enumeration(0, CryptographicAlgorithm.AES),
                                        ),
                                        attribute_1x("Cryptographic Length", ttlv.integer(0, 256)),
                                    ]
                                ),
                            ],
                            None,
                        )
                    ],
                )
            )
        ).items[0]
        self.assertTrue(created.ok, created.message)
        self.assertNotIn(created.get(Tag.UNIQUE_IDENTIFIER), alpha_client.locate())
        self.assertEqual(alpha_client.get(uid).value.__len__(), 16)

    def test_unregistered_certificate_is_pending(self) -> None:
        """A self-signed certificate nobody registered: TLS works, KMIP is refused, it is pending."""
        cert, key = _self_signed(self.workdir, "kmipClient20161127094708")
        ca = self.server.client_bundle[2]
        client = self.raw((cert, key, ca))
        response = read_response(
            client.call(request(V11, [(Operation.DISCOVER_VERSIONS, [], None)]))
        )
        self.assertEqual(response.items[0].reason, ResultReason.AUTHENTICATION_NOT_SUCCESSFUL)
        self.assertIn("not registered", response.items[0].message)
        pending = json.loads(kmiptwist_cli(self.server.data_dir, "cert", "pending", "--json"))
        subjects = [entry["subject"] for entry in pending]
        self.assertTrue(any("kmipClient20161127094708" in subject for subject in subjects), pending)

    def test_no_client_certificate(self) -> None:
        """Fetching the server certificate without a client certificate works; KMIP is refused."""
        client = self.raw((None, None, self.server.client_bundle[2]))
        self.assertIsNotNone(client.socket.getpeercert())
        response = read_response(
            client.call(request(V11, [(Operation.DISCOVER_VERSIONS, [], None)]))
        )
        self.assertEqual(response.items[0].reason, ResultReason.AUTHENTICATION_NOT_SUCCESSFUL)

    # -- key material on disk ------------------------------------------------------

    def test_no_plaintext_key_material_on_disk(self) -> None:
        """The database, its WAL and every file of the data directory lack the key bytes."""
        client = self.pykmip(KMIPVersion.KMIP_1_2)
        keys = []
        for _ in range(5):
            uid = client.create(pykmip_enums.CryptographicAlgorithm.AES, 256)
            keys.append(client.get(uid).value)
        seen = 0
        for directory, _, files in os.walk(self.server.data_dir):
            for name in files:
                if not os.path.isfile(os.path.join(directory, name)):
                    continue  # the admin socket and its lock
                with open(os.path.join(directory, name), "rb") as handle:
                    content = handle.read()
                seen += name.startswith("kmiptwist.sqlite3")
                for key in keys:
                    self.assertNotIn(key, content, os.path.join(directory, name))
        self.assertGreaterEqual(seen, 1)
        for key in keys:
            self.assertNotIn(key.hex(), self.server.log())

    # -- bad input --------------------------------------------------------------

    def _still_serving(self) -> None:
        with self.raw() as client:
            response = read_response(
                client.call(request(V11, [(Operation.DISCOVER_VERSIONS, [], None)]))
            )
            self.assertTrue(response.items[0].ok)

    def test_truncated_header_then_close(self) -> None:
        """Half a header then a hang-up does no harm."""
        client = self.raw()
        client.send(b"\x42\x00\x78")
        client.close()
        self._still_serving()

    def test_length_over_maximum(self) -> None:
        """A header announcing 1 GB gets an Invalid Message answer and a closed connection."""
        client = self.raw()
        client.send(bytes.fromhex("42007801") + (1 << 30).to_bytes(4, "big"))
        response = read_response(client.receive())
        self.assertEqual(response.items[0].reason, ResultReason.INVALID_MESSAGE)
        self.assertTrue(client.closed_by_peer())
        self._still_serving()

    def test_deep_nesting(self) -> None:
        """A structure nested 10,000 deep is refused with Invalid Message."""
        body = b""
        for _ in range(10_000):
            body = bytes.fromhex("42000101") + len(body).to_bytes(4, "big") + body
        message = bytes.fromhex("42007801") + len(body).to_bytes(4, "big") + body
        response = read_response(self.raw().call(message))
        self.assertEqual(response.items[0].reason, ResultReason.INVALID_MESSAGE)
        self._still_serving()

    def test_wrong_type_unknown_operation_lying_count(self) -> None:
        """Wrong type, unknown operation, lying batch count: each gets its own clear error."""
        client = self.raw()
        wrong_type = ttlv.encode(
            ttlv.structure(
                Tag.REQUEST_MESSAGE,
                [
                    ttlv.structure(
                        Tag.REQUEST_HEADER,
                        [
                            ttlv.structure(
                                Tag.PROTOCOL_VERSION,
                                [
                                    ttlv.integer(Tag.PROTOCOL_VERSION_MAJOR, 1),
                                    ttlv.integer(Tag.PROTOCOL_VERSION_MINOR, 1),
                                ],
                            ),
                            ttlv.integer(Tag.BATCH_COUNT, 1),
                        ],
                    ),
                    ttlv.structure(Tag.BATCH_ITEM, [ttlv.text_string(Tag.OPERATION, "Create")]),
                ],
            )
        )
        item = read_response(client.call(wrong_type)).items[0]
        self.assertEqual(item.reason, ResultReason.INVALID_MESSAGE)
        self.assertIn("Operation", item.message)
        item = read_response(client.call(request(V11, [(0x0000DEAD, [], None)]))).items[0]
        self.assertEqual(item.reason, ResultReason.OPERATION_NOT_SUPPORTED)
        item = read_response(
            client.call(request(V11, [(Operation.DISCOVER_VERSIONS, [], None)], batch_count=5))
        ).items[0]
        self.assertEqual(item.reason, ResultReason.INVALID_MESSAGE)
        # The same connection still works after three refusals.
        self.assertTrue(
            read_response(client.call(request(V11, [(Operation.DISCOVER_VERSIONS, [], None)])))
            .items[0]
            .ok
        )

    def test_not_kmip_at_all(self) -> None:
        """An HTTP request on the KMIP port gets Invalid Message and closes that connection only."""
        client = self.raw()
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_response(client.receive())
        self.assertEqual(response.items[0].reason, ResultReason.INVALID_MESSAGE)
        self.assertTrue(client.closed_by_peer())
        self._still_serving()


class RestartTests(SynchronousTestCase):
    """A key acknowledged before a restart is there after it."""

    def test_failed_start_exits_1(self) -> None:
        """A server that cannot start once twistd runs it (here: a database written
        by a newer kmiptwist) says why and exits 1, so that a supervisor sees the
        failure; the database is left as it was."""
        workdir = tempfile.mkdtemp(prefix="too-new-", dir=os.getcwd())
        data_dir = os.path.join(workdir, "data")
        server = RunningServer.start(data_dir)
        self.assertIn(server.stop(), (0, -15), server.log())
        database = os.path.join(data_dir, "kmiptwist.sqlite3")
        with closing(sqlite3.connect(database)) as connection:
            connection.execute("PRAGMA user_version = 999")
        with self.assertRaises(RuntimeError) as raised:
            RunningServer.start(data_dir, timeout=30)
        self.assertIn("twistd kmip exited with 1", str(raised.exception))
        self.assertIn("kmiptwist could not start", str(raised.exception))
        self.assertIn("schema version 999", str(raised.exception))
        with closing(sqlite3.connect(database)) as connection:
            self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (999,))

    def test_restart_keeps_keys_and_identity(self) -> None:
        """Stop and start on the same data directory: same CA, same client bundle, same keys."""
        workdir = tempfile.mkdtemp(prefix="restart-", dir=os.getcwd())
        data_dir = os.path.join(workdir, "data")
        server = RunningServer.start(data_dir)
        try:
            with open(server.client_bundle[0], "rb") as handle:
                first_certificate = handle.read()
            config = os.path.join(workdir, "pykmip.conf")
            with open(config, "w") as out:
                out.write("[client]\n")
            cert, key, ca = server.client_bundle
            client = ProxyKmipClient(
                hostname="127.0.0.1",
                port=server.port,
                cert=cert,
                key=key,
                ca=ca,
                config_file=config,
            )
            client.open()
            uid = client.create(pykmip_enums.CryptographicAlgorithm.AES, 256)
            material = client.get(uid).value
            client.close()
        finally:
            # twistd ends on SIGTERM by re-raising it once the reactor has stopped.
            self.assertIn(server.stop(), (0, -15), server.log())
        server = RunningServer.start(data_dir, port=server.port)
        try:
            with open(server.client_bundle[0], "rb") as handle:
                self.assertEqual(handle.read(), first_certificate)
            client = ProxyKmipClient(
                hostname="127.0.0.1",
                port=server.port,
                cert=cert,
                key=key,
                ca=ca,
                config_file=config,
            )
            client.open()
            self.assertEqual(client.get(uid).value, material)
            client.close()
        finally:
            server.stop()
