"""Tests for kmiptwist.pki: the built-in CA, CSR signing and key files."""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import os
import stat
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    DNSName,
    ExtensionPolicy,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import pki

_E = TypeVar("_E", bound=x509.ExtensionType)


@functools.cache
def _ca() -> tuple[x509.Certificate, pki.PrivateKey]:
    """One CA for the whole module: an RSA-3072 key takes a noticeable time to make."""
    return pki.create_ca("kmiptwist test CA")


def _client_verifier(ca: x509.Certificate) -> ClientVerifier:
    """A verifier for TLS client certificates issued by ``ca`` (SAN not required)."""
    leaf_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return (
        PolicyBuilder()
        .store(Store([ca]))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=leaf_policy)
        .build_client_verifier()
    )


def _csr(common_name: str = "vcenter.example.com", key: pki.PrivateKey | None = None) -> bytes:
    """A PEM CSR as vCenter's "Generate CSR" would make it."""
    key = key or pki.new_private_key()
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VMware"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def _extension(certificate: x509.Certificate, kind: type[_E]) -> x509.Extension[_E]:
    """Return one extension of ``certificate`` by class."""
    return certificate.extensions.get_extension_for_class(kind)


class FingerprintTests(SynchronousTestCase):
    """A client's identity is the SHA-256 of its DER certificate."""

    def test_sha256_of_der_in_lowercase_hex(self) -> None:
        """The fingerprint is what `openssl x509 -fingerprint -sha256` shows, without
        colons and in lowercase, so admins can compare it with any tool."""
        certificate, _ = _ca()
        der = certificate.public_bytes(serialization.Encoding.DER)
        value = pki.fingerprint(certificate)
        self.assertEqual(value, hashlib.sha256(der).hexdigest())
        self.assertEqual(len(value), 64)
        self.assertEqual(value, value.lower())

    def test_distinct_certificates_same_subject(self) -> None:
        """Two certificates with the same subject (vCenter's arbitrary CNs) are two
        different identities."""
        ca, ca_key = _ca()
        first, _ = pki.issue_client_certificate(ca, ca_key, "kmipClient")
        second, _ = pki.issue_client_certificate(ca, ca_key, "kmipClient")
        self.assertNotEqual(pki.fingerprint(first), pki.fingerprint(second))


class KeyTests(SynchronousTestCase):
    """Key generation offers RSA and EC keys of safe sizes."""

    def test_rsa(self) -> None:
        """The default key is RSA-2048, which every KMIP client can use."""
        key = pki.new_private_key()
        self.assertIsInstance(key, rsa.RSAPrivateKey)
        self.assertEqual(key.key_size, 2048)

    def test_ec(self) -> None:
        """An "ec" key is ECDSA P-256."""
        key = pki.new_private_key("ec")
        self.assertIsInstance(key, ec.EllipticCurvePrivateKey)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.assertEqual(key.curve.name, "secp256r1")

    def test_unknown_kind(self) -> None:
        """A typo in a key kind is an error, not a silent default."""
        self.assertRaises(ValueError, pki.new_private_key, "dsa")

    def test_small_rsa_refused(self) -> None:
        """RSA keys below 2048 bits are never generated."""
        self.assertRaises(pki.WeakKeyError, pki.new_private_key, "rsa", rsa_key_size=1024)


class CATests(SynchronousTestCase):
    """The built-in CA is a proper, leaf-only certificate authority."""

    def test_ca_extensions(self) -> None:
        """Clients accept the CA as a trust anchor: CA:TRUE and keyCertSign, critical."""
        certificate, key = _ca()
        constraints = _extension(certificate, x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertTrue(constraints.value.ca)
        self.assertEqual(constraints.value.path_length, 0)
        usage = _extension(certificate, x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertTrue(usage.value.key_cert_sign)
        self.assertTrue(usage.value.crl_sign)
        self.assertEqual(
            _extension(certificate, x509.SubjectKeyIdentifier).value,
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
        )
        self.assertTrue(pki.is_issued_by(certificate, certificate))

    def test_validity(self) -> None:
        """The CA is valid from five minutes ago (clock skew) for the requested days."""
        now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
        certificate, _ = pki.create_ca("dated CA", validity_days=10, key_kind="ec", now=now)
        self.assertEqual(certificate.not_valid_before_utc, now - datetime.timedelta(minutes=5))
        self.assertEqual(certificate.not_valid_after_utc, now + datetime.timedelta(days=10))


class ServerCertificateTests(SynchronousTestCase):
    """The server certificate verifies for every name clients dial."""

    def setUp(self) -> None:
        """Issue a server certificate for DNS and IP names."""
        self.ca, self.ca_key = _ca()
        self.certificate, self.key = pki.issue_server_certificate(
            self.ca,
            self.ca_key,
            ["localhost", "kms.example.com"],
            ["127.0.0.1", "::1"],
            "kms.example.com",
        )

    def test_chain_verifies_for_each_name(self) -> None:
        """A client trusting the CA accepts the server at each DNS name and IP address."""
        subjects: list[DNSName | IPAddress] = [
            DNSName("localhost"),
            DNSName("kms.example.com"),
            IPAddress(ipaddress.ip_address("127.0.0.1")),
            IPAddress(ipaddress.ip_address("::1")),
        ]
        for subject in subjects:
            verifier = PolicyBuilder().store(Store([self.ca])).build_server_verifier(subject)
            chain = verifier.verify(self.certificate, [])
            self.assertEqual(chain, [self.certificate, self.ca])

    def test_other_name_refused(self) -> None:
        """A name the server does not hold is not accepted by a verifying client."""
        verifier = (
            PolicyBuilder()
            .store(Store([self.ca]))
            .build_server_verifier(DNSName("other.example.com"))
        )
        self.assertRaises(VerificationError, verifier.verify, self.certificate, [])

    def test_usages(self) -> None:
        """serverAuth (and clientAuth, as ESXi-era guides ask), RSA key usages, AKI."""
        eku = _extension(self.certificate, x509.ExtendedKeyUsage).value
        self.assertIn(ExtendedKeyUsageOID.SERVER_AUTH, eku)
        self.assertIn(ExtendedKeyUsageOID.CLIENT_AUTH, eku)
        usage = _extension(self.certificate, x509.KeyUsage).value
        self.assertTrue(usage.digital_signature)
        self.assertTrue(usage.key_encipherment)
        self.assertFalse(_extension(self.certificate, x509.BasicConstraints).value.ca)
        self.assertEqual(
            _extension(self.certificate, x509.AuthorityKeyIdentifier).value.key_identifier,
            _extension(self.ca, x509.SubjectKeyIdentifier).value.digest,
        )
        self.assertTrue(pki.key_matches_certificate(self.key, self.certificate))

    def test_ec_server_key(self) -> None:
        """An EC server key gets a certificate without the RSA-only keyEncipherment."""
        certificate, key = pki.issue_server_certificate(
            self.ca, self.ca_key, ["localhost"], [], "ec server", key_kind="ec"
        )
        self.assertIsInstance(key, ec.EllipticCurvePrivateKey)
        self.assertFalse(_extension(certificate, x509.KeyUsage).value.key_encipherment)
        verifier = (
            PolicyBuilder().store(Store([self.ca])).build_server_verifier(DNSName("localhost"))
        )
        verifier.verify(certificate, [])

    def test_reissue_keeps_key(self) -> None:
        """Reissuing with the existing key keeps the server's public key."""
        certificate, key = pki.issue_server_certificate(
            self.ca, self.ca_key, ["new.example.com"], [], "kms", key=self.key
        )
        self.assertIs(key, self.key)
        self.assertTrue(pki.key_matches_certificate(self.key, certificate))

    def test_needs_a_name(self) -> None:
        """A server certificate that no client could match is refused."""
        self.assertRaises(
            pki.PKIError, pki.issue_server_certificate, self.ca, self.ca_key, [], [], "x"
        )


class ClientCertificateTests(SynchronousTestCase):
    """Client certificates from the built-in CA work as TLS client certificates."""

    def test_issued_bundle(self) -> None:
        """An issued client certificate chains to the CA, is for clientAuth and is valid
        from five minutes ago."""
        ca, ca_key = _ca()
        before = datetime.datetime.now(datetime.UTC)
        certificate, key = pki.issue_client_certificate(ca, ca_key, "backup-appliance")
        chain = _client_verifier(ca).verify(certificate, []).chain
        self.assertEqual(chain, [certificate, ca])
        self.assertTrue(pki.key_matches_certificate(key, certificate))
        self.assertEqual(
            _extension(certificate, x509.ExtendedKeyUsage).value,
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
        )
        usage = _extension(certificate, x509.KeyUsage).value
        self.assertTrue(usage.digital_signature)
        self.assertTrue(usage.key_encipherment)
        self.assertEqual(
            certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            "backup-appliance",
        )
        skew = before - certificate.not_valid_before_utc
        self.assertTrue(
            datetime.timedelta(minutes=4) < skew <= datetime.timedelta(minutes=5, seconds=1)
        )
        self.assertIsNotNone(_extension(certificate, x509.SubjectKeyIdentifier))

    def test_ec_client(self) -> None:
        """An EC client certificate asks only for digitalSignature."""
        ca, ca_key = _ca()
        certificate, _ = pki.issue_client_certificate(ca, ca_key, "ec client", key_kind="ec")
        usage = _extension(certificate, x509.KeyUsage).value
        self.assertTrue(usage.digital_signature)
        self.assertFalse(usage.key_encipherment)
        _client_verifier(ca).verify(certificate, [])

    def test_sign_given_public_key(self) -> None:
        """The CA certifies a public key it never saw the private half of."""
        ca, ca_key = _ca()
        key = pki.new_private_key("ec")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsm-held key")])
        certificate = pki.sign_client_certificate(ca, ca_key, key.public_key(), subject)
        self.assertEqual(certificate.subject, subject)
        self.assertTrue(pki.key_matches_certificate(key, certificate))

    def test_random_serials(self) -> None:
        """Serial numbers are random, so two certificates never collide."""
        ca, ca_key = _ca()
        first, _ = pki.issue_client_certificate(ca, ca_key, "a", key_kind="ec")
        second, _ = pki.issue_client_certificate(ca, ca_key, "a", key_kind="ec")
        self.assertNotEqual(first.serial_number, second.serial_number)
        self.assertGreater(first.serial_number.bit_length(), 64)

    def test_not_beyond_ca(self) -> None:
        """A leaf never outlives the CA that signed it."""
        ca, ca_key = pki.create_ca("short CA", validity_days=30, key_kind="ec")
        certificate, _ = pki.issue_client_certificate(ca, ca_key, "c", validity_days=825)
        self.assertEqual(certificate.not_valid_after_utc, ca.not_valid_after_utc)

    def test_mismatched_ca_key(self) -> None:
        """Signing with a key that is not the CA's fails loudly instead of producing
        certificates no one can verify."""
        ca, _ = _ca()
        self.assertRaises(
            pki.KeyMismatchError,
            pki.issue_client_certificate,
            ca,
            pki.new_private_key("ec"),
            "c",
        )


class CSRTests(SynchronousTestCase):
    """vCenter's "New Certificate Signing Request" trust method."""

    def test_signs_valid_csr(self) -> None:
        """A valid CSR becomes a client certificate with its subject and key, and the
        CA's own extensions: a CSR asking for CA rights does not get them."""
        ca, ca_key = _ca()
        key = pki.new_private_key()
        certificate = pki.sign_csr(ca, ca_key, _csr(key=key), validity_days=365)
        self.assertEqual(
            certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            "vcenter.example.com",
        )
        self.assertTrue(pki.key_matches_certificate(key, certificate))
        self.assertFalse(_extension(certificate, x509.BasicConstraints).value.ca)
        self.assertIn(
            ExtendedKeyUsageOID.CLIENT_AUTH,
            _extension(certificate, x509.ExtendedKeyUsage).value,
        )
        _client_verifier(ca).verify(certificate, [])

    def test_csr_as_text(self) -> None:
        """A CSR pasted as text (from the admin API's JSON) is accepted too."""
        ca, ca_key = _ca()
        certificate = pki.sign_csr(ca, ca_key, _csr().decode("ascii"))
        self.assertTrue(pki.is_issued_by(certificate, ca))

    def test_altered_csr(self) -> None:
        """A CSR changed after signing is refused with a message saying so."""
        ca, ca_key = _ca()
        csr = x509.load_pem_x509_csr(_csr("vcenter.example.com"))
        der = csr.public_bytes(serialization.Encoding.DER)
        tampered = der.replace(b"vcenter.example.com", b"evilcorp.example.com"[:19])
        self.assertNotEqual(tampered, der)
        pem = x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM)
        error = self.assertRaises(pki.CSRSignatureError, pki.sign_csr, ca, ca_key, pem)
        self.assertIn("signature does not verify", str(error))

    def test_malformed_csr(self) -> None:
        """Garbage, truncated PEM and a certificate instead of a CSR are refused as
        malformed, not with a traceback from deep inside cryptography."""
        ca, ca_key = _ca()
        truncated = _csr()[:200] + b"\n-----END CERTIFICATE REQUEST-----\n"
        for bad in [b"hello", truncated, pki.certificate_pem(ca), b""]:
            error = self.assertRaises(pki.MalformedPEMError, pki.sign_csr, ca, ca_key, bad)
            self.assertIn("certificate signing request", str(error))
            self.assertIsInstance(error, pki.PKIError)

    def test_weak_key_csr(self) -> None:
        """A CSR for an RSA-1024 key is refused."""
        ca, ca_key = _ca()
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.assertRaises(pki.WeakKeyError, pki.sign_csr, ca, ca_key, _csr(key=weak))


class PEMTests(SynchronousTestCase):
    """Certificates and keys round-trip through PEM."""

    def test_round_trip(self) -> None:
        """What is written as PEM loads back as the same certificate and key."""
        ca, ca_key = _ca()
        self.assertEqual(pki.load_certificate(pki.certificate_pem(ca)), ca)
        loaded = pki.load_private_key(pki.private_key_pem(ca_key))
        self.assertTrue(pki.key_matches_certificate(loaded, ca))

    def test_chain(self) -> None:
        """A PEM chain loads in order."""
        ca, ca_key = _ca()
        leaf, _ = pki.issue_client_certificate(ca, ca_key, "c", key_kind="ec")
        self.assertEqual(pki.load_certificates(pki.certificates_pem([leaf, ca])), [leaf, ca])

    def test_malformed(self) -> None:
        """Unreadable certificates and keys raise MalformedPEMError."""
        self.assertRaises(pki.MalformedPEMError, pki.load_certificate, b"nope")
        self.assertRaises(pki.MalformedPEMError, pki.load_private_key, b"nope")


class FileTests(SynchronousTestCase):
    """Private keys never exist on disk with permissions wider than 0600."""

    def setUp(self) -> None:
        """Work in a fresh directory, with the most permissive umask."""
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        previous = os.umask(0)
        self.addCleanup(os.umask, previous)

    def _mode(self, path: str) -> int:
        """The permission bits of ``path``."""
        return stat.S_IMODE(os.stat(path).st_mode)

    def test_private_key_mode(self) -> None:
        """A private key file is 0600 even under umask 000."""
        path = os.path.join(self.directory, "key.pem")
        _, key = _ca()
        pki.write_private_key(path, key)
        self.assertEqual(self._mode(path), 0o600)
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(), pki.private_key_pem(key))

    def test_never_overwrites(self) -> None:
        """An existing file is never written through (no clobbering, no symlink trick)."""
        victim = os.path.join(self.directory, "victim")
        with open(victim, "wb") as handle:
            handle.write(b"precious")
        link = os.path.join(self.directory, "key.pem")
        os.symlink(victim, link)
        _, key = _ca()
        self.assertRaises(FileExistsError, pki.write_private_key, link, key)
        self.assertRaises(FileExistsError, pki.write_private_key, victim, key)
        with open(victim, "rb") as handle:
            self.assertEqual(handle.read(), b"precious")

    def test_replace(self) -> None:
        """Replacing a key swaps the whole file, still 0600, leaving no temporary file."""
        path = os.path.join(self.directory, "key.pem")
        pki.write_secret(path, b"old")
        key = pki.new_private_key("ec")
        pki.write_private_key(path, key, replace=True)
        self.assertEqual(self._mode(path), 0o600)
        self.assertEqual(os.listdir(self.directory), ["key.pem"])
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(), pki.private_key_pem(key))

    def test_public_file(self) -> None:
        """Certificates are world-readable (0644) and can be replaced."""
        path = os.path.join(self.directory, "ca.pem")
        pki.write_public(path, b"one")
        pki.write_public(path, b"two")
        self.assertEqual(self._mode(path), 0o644)
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(), b"two")


class PKCS12Tests(SynchronousTestCase):
    """Client bundles for tools that import PKCS#12 files."""

    def test_bundle(self) -> None:
        """The bundle opens with its passphrase and holds the key, certificate and CA."""
        ca, ca_key = _ca()
        certificate, key = pki.issue_client_certificate(ca, ca_key, "java client")
        bundle = pki.pkcs12_bundle(certificate, key, ca, b"s3cret", "java client")
        loaded = pkcs12.load_pkcs12(bundle, b"s3cret")
        assert loaded.cert is not None and loaded.key is not None
        self.assertEqual(loaded.cert.certificate, certificate)
        self.assertEqual(loaded.cert.friendly_name, b"java client")
        self.assertEqual([c.certificate for c in loaded.additional_certs], [ca])
        self.assertTrue(pki.key_matches_certificate(loaded.key, certificate))  # type: ignore[arg-type]
        self.assertRaises(ValueError, pkcs12.load_pkcs12, bundle, b"wrong")

    def test_empty_passphrase(self) -> None:
        """A bundle holding a private key is never written without a passphrase."""
        ca, ca_key = _ca()
        certificate, key = pki.issue_client_certificate(ca, ca_key, "c", key_kind="ec")
        self.assertRaises(ValueError, pki.pkcs12_bundle, certificate, key, ca, b"", "c")
