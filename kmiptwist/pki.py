"""
The built-in certificate authority: keys, certificates, CSR signing and PEM files.

Pure ``cryptography``, no Twisted: the data directory, the admin API and the tests all
mint certificates with these functions.  A client's identity everywhere in kmiptwist is
the :func:`fingerprint` of its certificate, never its subject.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
"""The private keys kmiptwist generates and accepts for its own CA and server."""

SignablePublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
"""The public keys the CA will put in a client certificate (from a CSR, for example)."""

KEY_KINDS = ("rsa", "ec")
"""The values :func:`new_private_key` accepts: RSA-2048 (or larger) and ECDSA P-256."""

MINIMUM_RSA_KEY_SIZE = 2048
"""RSA keys smaller than this are refused, in CSRs too."""

CLOCK_SKEW = datetime.timedelta(minutes=5)
"""How far in the past notBefore is put, so peers with a slow clock accept new certs."""

_SIGNATURE_HASH = hashes.SHA256()


class PKIError(Exception):
    """A certificate, key or CSR could not be used; the message says why, for an admin."""


class MalformedPEMError(PKIError):
    """The input is not a readable PEM certificate, key or CSR."""


class CSRSignatureError(PKIError):
    """The CSR's self-signature does not verify: it was altered or is not a proof of key."""


class WeakKeyError(PKIError):
    """The key is of a type or size the CA refuses to certify."""


class KeyMismatchError(PKIError):
    """A private key does not belong to the certificate it is paired with."""


def fingerprint(certificate: x509.Certificate) -> str:
    """Return the SHA-256 of the DER certificate as lowercase hex: the client identity."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def new_private_key(kind: str = "rsa", *, rsa_key_size: int = MINIMUM_RSA_KEY_SIZE) -> PrivateKey:
    """Generate a fresh key with the OS CSPRNG: ``"rsa"`` (RSA-2048) or ``"ec"`` (P-256)."""
    if kind == "rsa":
        if rsa_key_size < MINIMUM_RSA_KEY_SIZE:
            raise WeakKeyError(f"RSA keys must be at least {MINIMUM_RSA_KEY_SIZE} bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key kind {kind!r}; expected one of {', '.join(KEY_KINDS)}")


def key_matches_certificate(private_key: PrivateKey, certificate: x509.Certificate) -> bool:
    """Tell whether ``private_key`` is the key of ``certificate`` (compares public keys)."""
    return _public_der(private_key.public_key()) == _public_der(certificate.public_key())


def is_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Tell whether ``issuer`` signed ``certificate`` (names match and signature verifies)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def create_ca(
    common_name: str,
    validity_days: int = 3650,
    *,
    key_kind: str = "rsa",
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """Create a self-signed CA (RSA-3072 or P-256) that may sign leaf certificates only."""
    key = new_private_key(key_kind, rsa_key_size=3072)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kmiptwist"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    not_before, not_after = _validity(validity_days, now)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # path_length=0: this CA signs leaves, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=False, key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, _SIGNATURE_HASH)
    )
    return certificate, key


def issue_server_certificate(
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    common_name: str,
    validity_days: int = 825,
    *,
    key: PrivateKey | None = None,
    key_kind: str = "rsa",
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """Issue the KMIP server's certificate, with the names clients dial in its SAN.

    A new key of ``key_kind`` is made unless ``key`` is given (reissuing for new names
    keeps the key, so clients pinning the public key keep trusting the server).
    """
    general_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    general_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if not general_names:
        raise PKIError("a server certificate needs at least one DNS name or IP address")
    if key is None:
        key = new_private_key(key_kind)
    builder = _leaf_builder(
        ca_certificate,
        ca_key,
        key.public_key(),
        _common_name_subject(common_name),
        validity_days,
        now,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    ).add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    return builder.sign(ca_key, _SIGNATURE_HASH), key


def sign_client_certificate(
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    public_key: SignablePublicKey,
    subject: x509.Name,
    validity_days: int = 825,
    *,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """Certify someone else's public key as a KMIP client (EKU clientAuth)."""
    _check_key_strength(public_key)
    builder = _leaf_builder(
        ca_certificate,
        ca_key,
        public_key,
        subject,
        validity_days,
        now,
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return builder.sign(ca_key, _SIGNATURE_HASH)


def issue_client_certificate(
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    validity_days: int = 825,
    *,
    key_kind: str = "rsa",
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """Make a client key and certify it: the bundle handed to a KMIP client."""
    key = new_private_key(key_kind)
    certificate = sign_client_certificate(
        ca_certificate,
        ca_key,
        key.public_key(),
        _common_name_subject(common_name),
        validity_days,
        now=now,
    )
    return certificate, key


def load_csr(csr_pem: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its self-signature (the requester holds the key)."""
    try:
        csr = x509.load_pem_x509_csr(_as_bytes(csr_pem))
    except ValueError as error:
        raise MalformedPEMError(f"not a PEM certificate signing request: {error}") from None
    try:
        signature_valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as error:
        raise MalformedPEMError(f"the CSR signature cannot be checked: {error}") from None
    if not signature_valid:
        raise CSRSignatureError(
            "the CSR signature does not verify: it was altered after signing or was not "
            "signed with the key it contains"
        )
    return csr


def sign_csr(
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    csr_pem: bytes | str,
    validity_days: int = 825,
    *,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """Sign a client's CSR (vCenter's "New Certificate Signing Request" trust method).

    The subject and public key come from the CSR; every extension is the CA's own
    client profile, so a CSR cannot ask for CA rights or extra names.
    """
    csr = load_csr(csr_pem)
    try:
        public_key = csr.public_key()
    except UnsupportedAlgorithm as error:
        raise WeakKeyError(f"the CSR's key cannot be certified: {error}") from None
    if not isinstance(
        public_key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        raise WeakKeyError(f"the CSR's {type(public_key).__name__} key cannot be certified")
    return sign_client_certificate(
        ca_certificate, ca_key, public_key, csr.subject, validity_days, now=now
    )


def load_certificate(data: bytes | str) -> x509.Certificate:
    """Parse the first certificate of a PEM text."""
    return load_certificates(data)[0]


def load_certificates(data: bytes | str) -> list[x509.Certificate]:
    """Parse every certificate of a PEM text (a chain or a CA bundle), in order."""
    try:
        return x509.load_pem_x509_certificates(_as_bytes(data))
    except ValueError as error:
        raise MalformedPEMError(f"not a PEM certificate: {error}") from None


def load_private_key(data: bytes | str, passphrase: bytes | None = None) -> PrivateKey:
    """Parse a PEM private key (PKCS#8 or traditional) of a kind kmiptwist can serve with."""
    try:
        key = serialization.load_pem_private_key(_as_bytes(data), password=passphrase)
    except (ValueError, TypeError) as error:
        raise MalformedPEMError(f"not a usable PEM private key: {error}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise WeakKeyError(f"{type(key).__name__} keys are not supported; use RSA or EC")
    return key


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """Encode a certificate as PEM."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def certificates_pem(certificates: Iterable[x509.Certificate]) -> bytes:
    """Encode several certificates as one PEM text (a chain or a bundle)."""
    return b"".join(certificate_pem(certificate) for certificate in certificates)


def private_key_pem(private_key: PrivateKey) -> bytes:
    """Encode a private key as unencrypted PKCS#8 PEM (protect it with file modes)."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_secret(path: str | os.PathLike[str], data: bytes, *, replace: bool = False) -> None:
    """Write secret bytes to a file that is mode 0600 from its first byte.

    The file is created with ``O_EXCL``, so an existing file (or a planted symlink) is
    never written through.  With ``replace=True`` a temporary sibling is written and
    renamed over ``path``, so readers see the old or the new content, never a mix.
    """
    target = os.fspath(path)
    if not replace:
        _write_new_file(target, data, 0o600)
        return
    temporary = target + ".new"
    try:
        os.unlink(temporary)  # left over by a crash during an earlier replacement
    except FileNotFoundError:
        pass
    _write_new_file(temporary, data, 0o600)
    os.replace(temporary, target)
    _fsync_directory(os.path.dirname(target) or ".")


def write_private_key(
    path: str | os.PathLike[str], private_key: PrivateKey, *, replace: bool = False
) -> None:
    """Write a private key as PEM to a file that is mode 0600 from the start."""
    write_secret(path, private_key_pem(private_key), replace=replace)


def write_public(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write or replace a public file (certificate, CA bundle), mode 0644."""
    target = os.fspath(path)
    temporary = target + ".new"
    try:
        os.unlink(temporary)
    except FileNotFoundError:
        pass
    _write_new_file(temporary, data, 0o644)
    os.replace(temporary, target)
    _fsync_directory(os.path.dirname(target) or ".")


def pkcs12_bundle(
    certificate: x509.Certificate,
    private_key: PrivateKey,
    ca_certificate: x509.Certificate,
    passphrase: bytes,
    friendly_name: str | bytes,
) -> bytes:
    """Pack a client's certificate, key and CA into a passphrase-protected PKCS#12 file."""
    if not passphrase:
        raise ValueError("a PKCS#12 bundle holds a private key: its passphrase must not be empty")
    if not key_matches_certificate(private_key, certificate):
        raise KeyMismatchError("the private key does not belong to the certificate")
    name = friendly_name.encode("utf-8") if isinstance(friendly_name, str) else friendly_name
    return pkcs12.serialize_key_and_certificates(
        name,
        private_key,
        certificate,
        [ca_certificate],
        serialization.BestAvailableEncryption(passphrase),
    )


def _leaf_builder(
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    public_key: SignablePublicKey,
    subject: x509.Name,
    validity_days: int,
    now: datetime.datetime | None,
    extended_key_usages: list[x509.ObjectIdentifier],
) -> x509.CertificateBuilder:
    """Start a leaf certificate signed by the CA, with the extensions every leaf has."""
    if not key_matches_certificate(ca_key, ca_certificate):
        raise KeyMismatchError("the CA private key does not belong to the CA certificate")
    not_before, not_after = _validity(validity_days, now)
    # A leaf must not outlive the CA that vouches for it.
    not_after = min(not_after, ca_certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(
                digital_signature=True,
                # Only RSA keys can encrypt a premaster secret (TLS 1.2 RSA key exchange).
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(extended_key_usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_identifier(ca_certificate), critical=False)
    )


def _authority_key_identifier(ca_certificate: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """Point at the CA's key the way the CA itself names it (its SKI when it has one)."""
    try:
        ski = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_certificate.public_key()  # type: ignore[arg-type]
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _key_usage(
    *,
    digital_signature: bool,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """Build a KeyUsage naming only the bits kmiptwist uses."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _common_name_subject(common_name: str) -> x509.Name:
    """Make a subject of one CN (X.509 limits a CN to 64 characters)."""
    if not 1 <= len(common_name) <= 64:
        raise PKIError(f"a common name must be 1 to 64 characters, not {len(common_name)}")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(
    validity_days: int, now: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    """Return (notBefore, notAfter): notBefore allows for clock skew."""
    if validity_days < 1:
        raise PKIError("a certificate must be valid for at least one day")
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    return now - CLOCK_SKEW, now + datetime.timedelta(days=validity_days)


def _check_key_strength(public_key: SignablePublicKey) -> None:
    """Refuse keys that a production CA must not certify."""
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MINIMUM_RSA_KEY_SIZE:
        raise WeakKeyError(
            f"an RSA key of {public_key.key_size} bits is too weak; "
            f"at least {MINIMUM_RSA_KEY_SIZE} bits are required"
        )
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size < 256:
        raise WeakKeyError(f"the {public_key.curve.name} curve is too weak; use P-256 or larger")


def _public_der(public_key: PublicKeyTypes) -> bytes:
    """Encode any public key as SubjectPublicKeyInfo DER, for comparisons."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _as_bytes(data: bytes | str) -> bytes:
    """Accept PEM as text (from JSON) or bytes (from a file)."""
    return data.encode("ascii", "replace") if isinstance(data, str) else data


def _write_new_file(path: str, data: bytes, mode: int) -> None:
    """Create ``path`` (never an existing file) with ``mode``, write, and fsync it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        os.unlink(path)
        raise
    os.close(descriptor)


def _fsync_directory(path: str) -> None:
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
