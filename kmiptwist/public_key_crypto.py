"""Public-key operations for Encrypt, Decrypt, Sign and Signature Verify.

RSA encryption with OAEP (hash, MGF1 hash and label from the Cryptographic
Parameters; SHA-1 by default, as the specification says) or PKCS#1 v1.5; signatures
with RSA PSS or PKCS#1 v1.5, ECDSA (DER-encoded), DSA, Ed25519 and Ed448.  The
parameters come as a :class:`~kmiptwist.cryptoparams.CryptographicParameters`; a
Digital Signature Algorithm there names the scheme and hash in one value.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kmiptwist.asymmetric import PrivateKey, PublicKey
from kmiptwist.cryptoparams import CryptographicParameters, hash_algorithm, unsupported
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.vocabulary.enums import (
    DigitalSignatureAlgorithm,
    HashingAlgorithm,
    MaskGenerator,
    PaddingMethod,
    ResultReason,
)

__all__ = ["encrypt", "decrypt", "sign", "verify", "signature_digest"]

_DSA = DigitalSignatureAlgorithm
#: Digital Signature Algorithm → (padding for RSA or None, Hashing Algorithm).
_SIGNATURE_ALGORITHMS: dict[int, tuple[int | None, int | None]] = {
    _DSA.MD5_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.MD5),
    _DSA.SHA_1_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.SHA_1),
    _DSA.SHA_224_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.SHA_224),
    _DSA.SHA_256_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.SHA_256),
    _DSA.SHA_384_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.SHA_384),
    _DSA.SHA_512_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.SHA_512),
    _DSA.SHA3_256_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.SHA3_256),
    _DSA.SHA3_384_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.SHA3_384),
    _DSA.SHA3_512_WITH_RSA_ENCRYPTION: (PaddingMethod.PKCS1_V1_5, HashingAlgorithm.SHA3_512),
    _DSA.RSASSA_PSS: (PaddingMethod.PSS, None),
    _DSA.DSA_WITH_SHA_1: (None, HashingAlgorithm.SHA_1),
    _DSA.DSA_WITH_SHA224: (None, HashingAlgorithm.SHA_224),
    _DSA.DSA_WITH_SHA256: (None, HashingAlgorithm.SHA_256),
    _DSA.ECDSA_WITH_SHA_1: (None, HashingAlgorithm.SHA_1),
    _DSA.ECDSA_WITH_SHA224: (None, HashingAlgorithm.SHA_224),
    _DSA.ECDSA_WITH_SHA256: (None, HashingAlgorithm.SHA_256),
    _DSA.ECDSA_WITH_SHA384: (None, HashingAlgorithm.SHA_384),
    _DSA.ECDSA_WITH_SHA512: (None, HashingAlgorithm.SHA_512),
}


def _padding_name(value: int | None) -> str:
    try:
        return PaddingMethod(value).name if value is not None else "none"
    except ValueError:
        return f"0x{value:08X}"


def _encryption_padding(parameters: CryptographicParameters) -> padding.AsymmetricPadding:
    method = parameters.padding_method
    if method == PaddingMethod.OAEP:
        if parameters.mask_generator not in (None, MaskGenerator.MGF1):
            raise unsupported("OAEP supports the MGF1 mask generator only")
        digest = hash_algorithm(parameters.hashing_algorithm, HashingAlgorithm.SHA_1)
        mask_digest = hash_algorithm(
            parameters.mask_generator_hashing_algorithm, HashingAlgorithm.SHA_1
        )
        return padding.OAEP(
            mgf=padding.MGF1(mask_digest), algorithm=digest, label=parameters.p_source or None
        )
    if method == PaddingMethod.PKCS1_V1_5:
        return padding.PKCS1v15()
    if method is None:
        raise KMIPError(
            ResultReason.BAD_CRYPTOGRAPHIC_PARAMETERS,
            "RSA encryption needs a Padding Method (OAEP or PKCS1 v1.5) in the request's or the "
            "key's Cryptographic Parameters",
        )
    raise unsupported(
        f"RSA encryption with Padding Method {_padding_name(method)} is not supported; "
        "supported: OAEP, PKCS1 v1.5"
    )


def encrypt(key: PublicKey, parameters: CryptographicParameters, data: bytes) -> bytes:
    """Encrypt ``data`` with an RSA public key."""
    if not isinstance(key, rsa.RSAPublicKey):
        raise unsupported("public-key encryption is supported with RSA keys")
    try:
        return key.encrypt(data, _encryption_padding(parameters))
    except ValueError as error:
        raise invalid_field(f"RSA cannot encrypt this data with this key: {error}") from None
    except UnsupportedAlgorithm as error:
        raise unsupported(str(error)) from None


def decrypt(key: PrivateKey, parameters: CryptographicParameters, data: bytes) -> bytes:
    """Decrypt ``data`` with an RSA private key; a bad ciphertext is Cryptographic Failure."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise unsupported("public-key decryption is supported with RSA keys")
    scheme = _encryption_padding(parameters)
    try:
        return key.decrypt(data, scheme)
    except ValueError:
        raise KMIPError(
            ResultReason.CRYPTOGRAPHIC_FAILURE,
            "decryption failed: the data is not a ciphertext of this key with these parameters",
        ) from None
    except UnsupportedAlgorithm as error:
        raise unsupported(str(error)) from None


def _scheme(
    key: PrivateKey | PublicKey, parameters: CryptographicParameters, signing: bool
) -> tuple[Any, hashes.HashAlgorithm | None]:
    """(RSA padding or None, hash) for a signature with ``key``."""
    method = parameters.padding_method
    hashing = parameters.hashing_algorithm
    if parameters.digital_signature_algorithm is not None:
        found = _SIGNATURE_ALGORITHMS.get(parameters.digital_signature_algorithm)
        if found is None:
            raise unsupported("this Digital Signature Algorithm is not supported")
        method = found[0] if found[0] is not None else method
        hashing = found[1] if found[1] is not None else hashing
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)) or isinstance(
        key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)
    ):
        return None, None
    digest = hash_algorithm(hashing)
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if method == PaddingMethod.PSS:
            if parameters.mask_generator not in (None, MaskGenerator.MGF1):
                raise unsupported("PSS supports the MGF1 mask generator only")
            # The mask hash defaults to the signature's hash (RFC 8017's advice, and
            # what the OASIS PSS cases were signed with), not the SHA-1 of OAEP.
            mask = hash_algorithm(parameters.mask_generator_hashing_algorithm, hashing)
            if parameters.salt_length is not None:
                salt: Any = parameters.salt_length
            else:
                salt = padding.PSS.DIGEST_LENGTH if signing else padding.PSS.AUTO
            return padding.PSS(mgf=padding.MGF1(mask), salt_length=salt), digest
        if method == PaddingMethod.PKCS1_V1_5:
            return padding.PKCS1v15(), digest
        if method is None:
            raise KMIPError(
                ResultReason.BAD_CRYPTOGRAPHIC_PARAMETERS,
                "an RSA signature needs a Padding Method (PSS or PKCS1 v1.5) or a Digital "
                "Signature Algorithm",
            )
        raise unsupported(
            f"RSA signatures with Padding Method {_padding_name(method)} are not supported"
        )
    return None, digest


def signature_digest(
    key: PrivateKey | PublicKey, parameters: CryptographicParameters
) -> hashes.HashAlgorithm | None:
    """The hash a signature with ``key`` is over (None: EdDSA signs the data itself)."""
    return _scheme(key, parameters, signing=True)[1]


def _signing_input(data: bytes, digested: bool, digest: hashes.HashAlgorithm | None) -> Any:
    if not digested:
        return None
    if digest is None:
        raise invalid_field("Ed25519 and Ed448 sign the data itself, not a digest")
    if len(data) != digest.digest_size:
        raise invalid_field(
            f"Digested Data must be a {digest.name} digest ({digest.digest_size} bytes)"
        )
    return Prehashed(digest)


def sign(
    key: PrivateKey, parameters: CryptographicParameters, data: bytes, digested: bool = False
) -> bytes:
    """Sign ``data`` (or, with ``digested``, the digest a client computed)."""
    scheme, digest = _scheme(key, parameters, signing=True)
    prehashed = _signing_input(data, digested, digest)
    algorithm: Any = prehashed or digest
    try:
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, scheme, algorithm)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(algorithm))
        if isinstance(key, dsa.DSAPrivateKey):
            return key.sign(data, algorithm)
        return key.sign(data)
    except ValueError as error:
        raise invalid_field(f"cannot sign with these parameters: {error}") from None
    except UnsupportedAlgorithm as error:
        raise unsupported(str(error)) from None


def verify(
    key: PublicKey,
    parameters: CryptographicParameters,
    data: bytes,
    signature: bytes,
    digested: bool = False,
) -> bool:
    """Whether ``signature`` is a valid signature of ``data`` by ``key``'s private key."""
    scheme, digest = _scheme(key, parameters, signing=False)
    prehashed = _signing_input(data, digested, digest)
    algorithm: Any = prehashed or digest
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, scheme, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, algorithm)
        else:
            key.verify(signature, data)
    except InvalidSignature:
        return False
    except UnsupportedAlgorithm as error:
        raise unsupported(str(error)) from None
    return True
