"""The admin API in memory, for tests: a memory store, a fake audit log, StubTreq.

:class:`AdminHarness` builds the real admin resource over a :class:`MemoryStore`,
a processor (to create objects as a KMIP client would), a CA and TLS options, and
answers requests synchronously; :class:`HarnessRequester` lets the ``kmiptwist``
command talk to it.
"""

from __future__ import annotations

import datetime
import json
from typing import Any
from urllib.parse import urlencode

from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from kmiptwist import pki, ttlv
from kmiptwist.admin.client import Answer
from kmiptwist.admin.context import AdminContext
from kmiptwist.admin.listener import admin_resource
from kmiptwist.audit import AuditError
from kmiptwist.engine import Engine, SingleRootKey
from kmiptwist.processor import KMIPProcessor, Peer
from kmiptwist.testing.fake_wrapper import FakeWrapper
from kmiptwist.testing.memory_store import MemoryStore
from kmiptwist.testing.messages import attribute_1x, name_1x, read_response, request, template_1x
from kmiptwist.tls import ServerTLSOptions
from kmiptwist.vocabulary.enums import CryptographicAlgorithm, ObjectType, Operation
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.wrapping.cache import MaterialCache

__all__ = [
    "AdminHarness",
    "FakeAudit",
    "FakeConnections",
    "HarnessRequester",
    "self_signed",
    "make_ca",
    "signed_by",
]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def self_signed(
    common_name: str, days: int = 30, now: datetime.datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed client certificate with no extensions (like vCenter 6.5's)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def make_ca(
    common_name: str, days: int = 365, key_cert_sign: bool = True
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A root CA like vCenter's VMCA (basic constraints, key usage, key identifier)."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, key_cert_sign, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def signed_by(
    ca_certificate: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    days: int = 30,
    not_before_days: int = 1,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client certificate the CA signed (no EKU, as vCenter's machine certificates)."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=not_before_days))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return certificate, key


@define
class FakeAudit:
    """Collects audit records; ``fail`` makes the next records fail to be written."""

    records: list[dict[str, Any]] = field(factory=list)
    healthy: bool = True
    fail: bool = False

    def record(self, **fields: Any) -> Deferred[None]:
        """Keep the record; fire at once (or fail when ``fail`` is set)."""
        if self.fail:
            return fail(AuditError("disk full"))
        self.records.append(fields)
        return succeed(None)

    def record_nowait(self, **fields: Any) -> None:
        """Keep the record."""
        self.records.append(fields)

    def operations(self) -> list[str]:
        """The operation of every record, in order."""
        return [record["operation"] for record in self.records]


@define
class FakeConnections:
    """Remembers which connections the admin API asked to cut off."""

    cut: list[tuple[str, str]] = field(factory=list)

    def disconnect_fingerprint(self, certificate_fingerprint: str) -> int:
        """Record a certificate cut-off."""
        self.cut.append(("fingerprint", certificate_fingerprint))
        return 1

    def disconnect_trusted_ca(self, ca_fingerprint: str) -> int:
        """Record a CA cut-off."""
        self.cut.append(("ca", ca_fingerprint))
        return 2

    def disconnect_tenant(self, tenant: str) -> int:
        """Record a tenant cut-off."""
        self.cut.append(("tenant", tenant))
        return 0


class AdminHarness:
    """The admin API over a memory store, answered synchronously through StubTreq.

    ``case`` is the running test (its ``successResultOf`` collects answers).
    """

    def __init__(self, case: Any) -> None:
        """Build the store, engine, CA, TLS options and the admin resource."""
        self.case = case
        self.clock = Clock()
        self.clock.advance(datetime.datetime.now(datetime.UTC).timestamp())
        self.store = MemoryStore()
        self.store.startService()
        self.engine = Engine(
            store=self.store,
            tenancy=self.store,
            root_keys=SingleRootKey(FakeWrapper()),
            cache=MaterialCache(100, 60, self.clock),
            clock=self.clock,
        )
        self.processor = KMIPProcessor(self.engine)
        self.audit = FakeAudit()
        self.connections = FakeConnections()
        self.ca_certificate, self.ca_key = pki.create_ca("harness CA", key_kind="ec")
        server_certificate, server_key = pki.issue_server_certificate(
            self.ca_certificate, self.ca_key, ["localhost"], ["127.0.0.1"], "server", key_kind="ec"
        )
        self.server_key = server_key
        self.tls_options = ServerTLSOptions(server_certificate, server_key)
        self.ca_offline = False
        self.saved: list[Any] = []
        self.context = AdminContext(
            store=self.store,
            engine=self.engine,
            connections=self.connections,
            audit=self.audit,
            clock=self.clock,
            tls_options=self.tls_options,
            certificate_authority=self._certificate_authority,
            ca_certificate=lambda: self.ca_certificate,
            server_credentials=lambda: ([server_certificate], server_key),
            save_server_credentials=self._save,
            readiness=lambda: {"store": True, "kmip_listener": True},
        )
        self.resource = admin_resource(self.context, lambda request: "admin:test")
        self.http: Any = StubTreq(self.resource)  # its methods are made at run time

    def _certificate_authority(self) -> tuple[x509.Certificate, pki.PrivateKey]:
        if self.ca_offline:
            raise OSError("ca-key.pem: No such file or directory")
        return self.ca_certificate, self.ca_key

    def _save(self, chain: list[x509.Certificate], key: pki.PrivateKey) -> str:
        self.saved.append(chain[0])
        return "/data/server/server.pem"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """One request; (status, decoded JSON body or None)."""
        url = "http://admin" + path
        if query:
            url += "?" + urlencode(query, doseq=True)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        response = self.case.successResultOf(self.http.request(method, url, data=data))
        content = self.case.successResultOf(response.content())
        self.http.flush()
        return response.code, json.loads(content) if content.strip() else None

    # -- KMIP clients' side ------------------------------------------------------------

    def create_key(
        self, tenant: str, name: str | None = None, custom: dict[str, str] | None = None
    ) -> str:
        """Create an AES-256 key as a KMIP 1.1 client of ``tenant``; its identifier."""
        attributes = [
            attribute_1x(
                "Cryptographic Algorithm", ttlv.enumeration(0, CryptographicAlgorithm.AES)
            ),
            attribute_1x("Cryptographic Length", ttlv.integer(0, 256)),
        ]
        if name is not None:
            attributes.append(attribute_1x("Name", name_1x(name)))
        for key, value in (custom or {}).items():
            attributes.append(attribute_1x(key, ttlv.text_string(0, value)))
        payload = [
            ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
            template_1x(attributes),
        ]
        item = self.kmip(tenant, Operation.CREATE, payload)
        assert item.ok, item.message
        return str(item.get(Tag.UNIQUE_IDENTIFIER))

    def kmip(self, tenant: str, operation: int, payload: list[Any]) -> Any:
        """Run one KMIP 1.1 operation as a client of ``tenant``; its batch item."""
        peer = Peer("127.0.0.1:1", "ab" * 32, tenant)
        data = self.case.successResultOf(
            Deferred.fromCoroutine(
                self.processor.process(request((1, 1), [(operation, payload, None)]), peer)
            )
        )
        return read_response(data).items[0]


@define
class HarnessRequester:
    """The ``kmiptwist`` command's client, answered by an :class:`AdminHarness`."""

    harness: AdminHarness
    sent: list[tuple[str, str, Any, Any]] = field(factory=list)

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Answer:
        """Send through the harness."""
        self.sent.append((method, path, body, query))
        cleaned = {key: value for key, value in (query or {}).items() if value is not None}
        status, answer = self.harness.call(method, path, body, cleaned)
        return Answer(status, answer)
