"""Tests for the "vCenter root CA" trust method: client certificates that belong to a
tenant because they chain to a CA the tenant trusts.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import pki
from kmiptwist.interfaces import ClientCertificate, Tenant, TrustedCA
from kmiptwist.processor import Peer
from kmiptwist.protocol import KMIPServerFactory, KMIPServerProtocol
from kmiptwist.testing.admin import make_ca, self_signed, signed_by
from kmiptwist.testing.memory_store import MemoryStore
from kmiptwist.trust import NotACAError, TrustedCAs, check_ca_certificate

NOW = datetime.datetime.now(datetime.UTC)


def trusted(certificate: x509.Certificate, tenant: str) -> TrustedCA:
    return TrustedCA(
        pki.fingerprint(certificate),
        tenant,
        certificate.subject.rfc4514_string(),
        pki.certificate_pem(certificate).decode(),
        1,
    )


def intermediate(root: x509.Certificate, root_key, name: str):
    """An intermediate CA signed by ``root``."""
    ca, key = make_ca(name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca.subject)
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=100))
    )
    for extension in ca.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
    )
    return builder.sign(root_key, hashes.SHA256()), key


class MatchTests(SynchronousTestCase):
    """Which tenant a client chain belongs to."""

    def setUp(self) -> None:
        self.root, self.root_key = make_ca("vCenter root CA")
        self.trust = TrustedCAs()

    def test_signed_by_trusted_root(self) -> None:
        """A certificate the trusted root signed (no EKU at all) belongs to its tenant."""
        leaf, _ = signed_by(self.root, self.root_key, "vcenter.example")
        match = self.trust.match(leaf, [], [trusted(self.root, "alpha")], NOW)
        assert match is not None
        self.assertEqual(
            (match.tenant, match.ca_fingerprint), ("alpha", pki.fingerprint(self.root))
        )

    def test_remembered_verdict_ends(self) -> None:
        """A verified chain is remembered only for the same trusted CAs and not past
        the certificate's expiry."""
        leaf, _ = signed_by(self.root, self.root_key, "vcenter", days=30)
        anchors = [trusted(self.root, "alpha")]
        self.assertIsNotNone(self.trust.match(leaf, [], anchors, NOW))
        self.assertIsNotNone(
            self.trust.match(leaf, [], anchors, NOW + datetime.timedelta(seconds=60))
        )
        other, _ = make_ca("another root")
        self.assertIsNone(self.trust.match(leaf, [], [trusted(other, "beta")], NOW))
        self.assertIsNone(self.trust.match(leaf, [], anchors, NOW + datetime.timedelta(days=31)))

    def test_through_intermediate_sent_by_client(self) -> None:
        """The intermediate the client sends completes the path to the root."""
        middle, middle_key = intermediate(self.root, self.root_key, "VMCA intermediate")
        leaf, _ = signed_by(middle, middle_key, "esxi-1")
        anchors = [trusted(self.root, "alpha")]
        self.assertIsNone(self.trust.match(leaf, [], anchors, NOW))
        match = self.trust.match(leaf, [leaf, middle], anchors, NOW)
        assert match is not None
        self.assertEqual(match.tenant, "alpha")

    def test_nearest_trusted_ca_wins(self) -> None:
        """When beta trusts the intermediate and alpha the root, beta's clients are beta's."""
        middle, middle_key = intermediate(self.root, self.root_key, "beta's CA")
        leaf, _ = signed_by(middle, middle_key, "beta-client")
        anchors = [trusted(self.root, "alpha"), trusted(middle, "beta")]
        match = self.trust.match(leaf, [middle], anchors, NOW)
        assert match is not None
        self.assertEqual((match.tenant, match.ca_fingerprint), ("beta", pki.fingerprint(middle)))

    def test_refusals(self) -> None:
        """Another CA's certificate, a self-signed one, an expired one, one not yet
        valid, and a chain through a non-CA certificate all get no tenant."""
        anchors = [trusted(self.root, "alpha")]
        other_root, other_key = make_ca("someone else")
        stranger, _ = signed_by(other_root, other_key, "stranger")
        lonely, _ = self_signed("vcenter")
        expired, _ = signed_by(self.root, self.root_key, "old", days=-1, not_before_days=30)
        future, _ = signed_by(self.root, self.root_key, "future", not_before_days=-2)
        # A leaf the root signed, used to sign another leaf: not a CA.
        fake_ca, fake_key = signed_by(self.root, self.root_key, "not-a-ca")
        grandchild, _ = signed_by(fake_ca, fake_key, "grandchild")
        for leaf, chain in (
            (stranger, [other_root]),
            (lonely, []),
            (expired, []),
            (future, []),
            (grandchild, [fake_ca]),
        ):
            self.assertIsNone(self.trust.match(leaf, chain, anchors, NOW), leaf.subject)
        self.assertIsNone(self.trust.match(stranger, [], [], NOW))

    def test_check_ca_certificate(self) -> None:
        """Only a CA that may sign certificates can be trusted."""
        check_ca_certificate(self.root, NOW)
        leaf, _ = signed_by(self.root, self.root_key, "leaf")
        self.assertRaises(NotACAError, check_ca_certificate, leaf, NOW)
        no_sign, _ = make_ca("no sign", key_cert_sign=False)
        self.assertRaises(NotACAError, check_ca_certificate, no_sign, NOW)
        self.assertRaises(
            NotACAError, check_ca_certificate, self.root, NOW + datetime.timedelta(days=400)
        )


class _Processor:
    def __init__(self) -> None:
        self.peers: list[Peer] = []

    async def respond(self, data: bytes, peer: Peer) -> bytes:
        self.peers.append(peer)
        return b"answer"


class ProtocolTrustTests(SynchronousTestCase):
    """The identity path of a KMIP connection uses the tenants' trusted CAs."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW.timestamp())
        self.store = MemoryStore()
        self.successResultOf(self.store.add_tenant(Tenant("alpha")))
        self.root, self.root_key = make_ca("vCenter root CA")
        self.successResultOf(self.store.add_trusted_ca(trusted(self.root, "alpha")))
        self.factory = KMIPServerFactory(_Processor(), self.store, self.clock)

    def connect(self, certificate: x509.Certificate, chain: list[x509.Certificate]):
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 1234))
        assert isinstance(protocol, KMIPServerProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.successResultOf(protocol.identify(certificate, chain))
        return protocol, transport

    def test_chained_certificate_gets_tenant(self) -> None:
        """A vCenter certificate signed by the trusted root is the tenant's, and is
        not listed as pending."""
        leaf, _ = signed_by(self.root, self.root_key, "vcenter")
        protocol, _ = self.connect(leaf, [leaf])
        assert protocol.peer is not None
        self.assertEqual(protocol.peer.tenant, "alpha")
        self.assertEqual(protocol.peer.trusted_ca, pki.fingerprint(self.root))
        self.assertEqual(self.successResultOf(self.store.list_pending()), [])

    def test_pinned_certificate_wins(self) -> None:
        """A certificate pinned to a tenant is that tenant's, whoever signed it."""
        self.successResultOf(self.store.add_tenant(Tenant("beta")))
        leaf, _ = signed_by(self.root, self.root_key, "pinned")
        self.successResultOf(
            self.store.add_certificate(
                ClientCertificate(pki.fingerprint(leaf), "beta", "CN=pinned", "CN=root", 0, 0)
            )
        )
        protocol, _ = self.connect(leaf, [])
        assert protocol.peer is not None
        self.assertEqual((protocol.peer.tenant, protocol.peer.trusted_ca), ("beta", None))

    def test_unknown_chain_is_pending(self) -> None:
        """A certificate no tenant trusts is recorded as pending and gets no tenant."""
        lonely, _ = self_signed("kmipClient")
        protocol, _ = self.connect(lonely, [])
        assert protocol.peer is not None
        self.assertIsNone(protocol.peer.tenant)
        [pending] = self.successResultOf(self.store.list_pending())
        self.assertEqual(pending.fingerprint, pki.fingerprint(lonely))

    def test_removing_the_ca_cuts_its_connections(self) -> None:
        """Removing a trusted CA drops the open connections it let in, not others."""
        first, _ = signed_by(self.root, self.root_key, "vcenter-1")
        _, first_transport = self.connect(first, [])
        lonely, _ = self_signed("other")
        _, other_transport = self.connect(lonely, [])
        self.assertEqual(self.factory.disconnect_trusted_ca(pki.fingerprint(self.root).upper()), 1)
        self.assertTrue(first_transport.disconnecting)
        self.assertFalse(other_transport.disconnecting)
        self.successResultOf(self.store.remove_trusted_ca(pki.fingerprint(self.root)))
        again, _ = self.connect(first, [])
        assert again.peer is not None
        self.assertIsNone(again.peer.tenant)
