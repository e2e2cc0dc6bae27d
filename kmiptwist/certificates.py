"""The attributes a server derives from a registered X.509 certificate.

KMIP sets them when a certificate is registered, and no client may change them:
Certificate Type and Length, the X.509 Certificate Identifier / Subject / Issuer
structures, Digital Signature Algorithm, the algorithm and length of the certified
public key, the 1.x text forms (Certificate Identifier / Subject / Issuer) and the
2.x per-field ones (Certificate Subject CN, Certificate Issuer O, ...).  Which of
them a client sees depends on its KMIP version.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from kmiptwist import ttlv
from kmiptwist.errors import invalid_field
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import (
    CertificateType,
    CryptographicAlgorithm,
    DigitalSignatureAlgorithm,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["certificate_attributes"]

_SIGNATURE_ALGORITHMS = {
    SignatureAlgorithmOID.RSA_WITH_MD5: DigitalSignatureAlgorithm.MD5_WITH_RSA_ENCRYPTION,
    SignatureAlgorithmOID.RSA_WITH_SHA1: DigitalSignatureAlgorithm.SHA_1_WITH_RSA_ENCRYPTION,
    SignatureAlgorithmOID.RSA_WITH_SHA224: DigitalSignatureAlgorithm.SHA_224_WITH_RSA_ENCRYPTION,
    SignatureAlgorithmOID.RSA_WITH_SHA256: DigitalSignatureAlgorithm.SHA_256_WITH_RSA_ENCRYPTION,
    SignatureAlgorithmOID.RSA_WITH_SHA384: DigitalSignatureAlgorithm.SHA_384_WITH_RSA_ENCRYPTION,
    SignatureAlgorithmOID.RSA_WITH_SHA512: DigitalSignatureAlgorithm.SHA_512_WITH_RSA_ENCRYPTION,
    SignatureAlgorithmOID.RSASSA_PSS: DigitalSignatureAlgorithm.RSASSA_PSS,
    SignatureAlgorithmOID.DSA_WITH_SHA1: DigitalSignatureAlgorithm.DSA_WITH_SHA_1,
    SignatureAlgorithmOID.DSA_WITH_SHA224: DigitalSignatureAlgorithm.DSA_WITH_SHA224,
    SignatureAlgorithmOID.DSA_WITH_SHA256: DigitalSignatureAlgorithm.DSA_WITH_SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: DigitalSignatureAlgorithm.ECDSA_WITH_SHA_1,
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: DigitalSignatureAlgorithm.ECDSA_WITH_SHA224,
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: DigitalSignatureAlgorithm.ECDSA_WITH_SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: DigitalSignatureAlgorithm.ECDSA_WITH_SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: DigitalSignatureAlgorithm.ECDSA_WITH_SHA512,
}

#: The 2.x name-field attributes: (attribute name suffix, OID).
_NAME_FIELDS = (
    ("CN", NameOID.COMMON_NAME),
    ("O", NameOID.ORGANIZATION_NAME),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("Email", NameOID.EMAIL_ADDRESS),
    ("C", NameOID.COUNTRY_NAME),
    ("ST", NameOID.STATE_OR_PROVINCE_NAME),
    ("L", NameOID.LOCALITY_NAME),
    ("UID", NameOID.USER_ID),
    ("Serial Number", NameOID.SERIAL_NUMBER),
    ("Title", NameOID.TITLE),
    ("DC", NameOID.DOMAIN_COMPONENT),
    ("DN Qualifier", NameOID.DN_QUALIFIER),
)


def _tag(name: str) -> int:
    return int(getattr(Tag, name.upper().replace(" ", "_").replace(".", "_")))


def _serial(certificate: x509.Certificate) -> bytes:
    serial = certificate.serial_number
    return serial.to_bytes(max(1, (serial.bit_length() + 8) // 8), "big", signed=True)


def _alternative_names(
    certificate: x509.Certificate, extension: type[x509.ExtensionType]
) -> list[x509.Extension[x509.ExtensionType]]:
    try:
        return [certificate.extensions.get_extension_for_class(extension)]
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        return []


def _key_algorithm(certificate: x509.Certificate) -> tuple[int | None, int | None]:
    """The certified public key's Cryptographic Algorithm and Length."""
    try:
        key = certificate.public_key()
    except ValueError:
        return None, None
    if isinstance(key, rsa.RSAPublicKey):
        return CryptographicAlgorithm.RSA, key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return CryptographicAlgorithm.DSA, key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return CryptographicAlgorithm.EC, key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return getattr(CryptographicAlgorithm, "ED25519", None), 256
    if isinstance(key, ed448.Ed448PublicKey):
        return getattr(CryptographicAlgorithm, "ED448", None), 456
    return None, None


def _names(prefix: str, name: x509.Name) -> list[tuple[str, Item]]:
    out = []
    for suffix, oid in _NAME_FIELDS:
        attribute = f"{prefix} {suffix}"
        for field in name.get_attributes_for_oid(oid):
            out.append((attribute, ttlv.text_string(_tag(attribute), str(field.value))))
    return out


def certificate_attributes(certificate_type: int, der: bytes) -> list[tuple[str, Item]]:
    """The attributes of a registered certificate, in the server's internal form."""
    out: list[tuple[str, Item]] = [
        ("Certificate Type", ttlv.enumeration(Tag.CERTIFICATE_TYPE, certificate_type)),
        ("Certificate Length", ttlv.integer(Tag.CERTIFICATE_LENGTH, len(der))),
    ]
    if certificate_type != CertificateType.X_509:
        return out
    try:
        certificate = x509.load_der_x509_certificate(der)
        subject, issuer = certificate.subject, certificate.issuer
    except ValueError as error:
        raise invalid_field(
            f"the Certificate Value is not a DER X.509 certificate: {error}"
        ) from None
    subject_alternative = _alternative_names(certificate, x509.SubjectAlternativeName)
    issuer_alternative = _alternative_names(certificate, x509.IssuerAlternativeName)
    out += [
        (
            "X.509 Certificate Identifier",
            ttlv.structure(
                Tag.X_509_CERTIFICATE_IDENTIFIER,
                [
                    ttlv.byte_string(Tag.ISSUER_DISTINGUISHED_NAME, issuer.public_bytes()),
                    ttlv.byte_string(Tag.CERTIFICATE_SERIAL_NUMBER, _serial(certificate)),
                ],
            ),
        ),
        (
            "X.509 Certificate Subject",
            ttlv.structure(
                Tag.X_509_CERTIFICATE_SUBJECT,
                [ttlv.byte_string(Tag.SUBJECT_DISTINGUISHED_NAME, subject.public_bytes())]
                + [
                    ttlv.byte_string(Tag.SUBJECT_ALTERNATIVE_NAME, e.value.public_bytes())
                    for e in subject_alternative
                ],
            ),
        ),
        (
            "X.509 Certificate Issuer",
            ttlv.structure(
                Tag.X_509_CERTIFICATE_ISSUER,
                [ttlv.byte_string(Tag.ISSUER_DISTINGUISHED_NAME, issuer.public_bytes())]
                + [
                    ttlv.byte_string(Tag.ISSUER_ALTERNATIVE_NAME, e.value.public_bytes())
                    for e in issuer_alternative
                ],
            ),
        ),
        (
            "Certificate Identifier",
            ttlv.structure(
                Tag.CERTIFICATE_IDENTIFIER,
                [
                    ttlv.text_string(Tag.ISSUER, issuer.rfc4514_string()),
                    ttlv.text_string(Tag.SERIAL_NUMBER, str(certificate.serial_number)),
                ],
            ),
        ),
        (
            "Certificate Subject",
            ttlv.structure(
                Tag.CERTIFICATE_SUBJECT,
                [
                    ttlv.text_string(
                        Tag.CERTIFICATE_SUBJECT_DISTINGUISHED_NAME, subject.rfc4514_string()
                    )
                ],
            ),
        ),
        (
            "Certificate Issuer",
            ttlv.structure(
                Tag.CERTIFICATE_ISSUER,
                [
                    ttlv.text_string(
                        Tag.CERTIFICATE_ISSUER_DISTINGUISHED_NAME, issuer.rfc4514_string()
                    )
                ],
            ),
        ),
    ]
    signature = _SIGNATURE_ALGORITHMS.get(certificate.signature_algorithm_oid)
    if signature is not None:
        out.append(
            (
                "Digital Signature Algorithm",
                ttlv.enumeration(Tag.DIGITAL_SIGNATURE_ALGORITHM, signature),
            )
        )
    algorithm, length = _key_algorithm(certificate)
    if algorithm is not None and length is not None:
        out.append(
            ("Cryptographic Algorithm", ttlv.enumeration(Tag.CRYPTOGRAPHIC_ALGORITHM, algorithm))
        )
        out.append(("Cryptographic Length", ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, length)))
    out += _names("Certificate Subject", subject)
    out += _names("Certificate Issuer", issuer)
    return out
