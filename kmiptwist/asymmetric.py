"""Asymmetric keys: RSA and elliptic-curve key pairs, and the formats KMIP carries them in.

Generated pairs are stored as PKCS#1 (RSA, both halves) or PKCS#8 / X.509
SubjectPublicKeyInfo (EC, Ed25519, Ed448); a registered key stays in the format the
client gave.  Get converts between PKCS#1, PKCS#8, SEC1 ECPrivateKey, X.509
SubjectPublicKeyInfo and the Transparent RSA, EC (1.x: ECDSA/ECDH/ECMQV) and DSA
structures, through ``cryptography`` key objects.  Nothing here touches storage: the
caller wraps what it stores.
"""

from __future__ import annotations

from attrs import frozen
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from kmiptwist import ttlv
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import (
    CryptographicAlgorithm,
    KeyFormatType,
    RecommendedCurve,
    ResultReason,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = [
    "PrivateKey",
    "PublicKey",
    "GeneratedPair",
    "generate_key_pair",
    "load_key",
    "key_material",
    "convert",
    "check_registered",
    "format_name",
    "RSA_LENGTHS",
    "EC_ALGORITHMS",
]

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | dsa.DSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
PublicKey = (
    rsa.RSAPublicKey
    | ec.EllipticCurvePublicKey
    | dsa.DSAPublicKey
    | ed25519.Ed25519PublicKey
    | ed448.Ed448PublicKey
)

#: RSA modulus sizes Create Key Pair generates (bits).
RSA_LENGTHS = range(1024, 8192 + 1, 8)
#: Algorithms whose keys are elliptic-curve keys over a named curve.
EC_ALGORITHMS = frozenset(
    {
        CryptographicAlgorithm.EC,
        CryptographicAlgorithm.ECDSA,
        CryptographicAlgorithm.ECDH,
        CryptographicAlgorithm.ECMQV,
    }
)

#: The named curves this server generates and reads.
_CURVES: dict[int, type[ec.EllipticCurve]] = {
    RecommendedCurve.P_192: ec.SECP192R1,
    RecommendedCurve.P_224: ec.SECP224R1,
    RecommendedCurve.P_256: ec.SECP256R1,
    RecommendedCurve.P_384: ec.SECP384R1,
    RecommendedCurve.P_521: ec.SECP521R1,
    RecommendedCurve.SECP256K1: ec.SECP256K1,
    RecommendedCurve.BRAINPOOLP256R1: ec.BrainpoolP256R1,
    RecommendedCurve.BRAINPOOLP384R1: ec.BrainpoolP384R1,
    RecommendedCurve.BRAINPOOLP512R1: ec.BrainpoolP512R1,
}
_CURVE_BY_NAME: dict[str, int] = {curve().name: value for value, curve in _CURVES.items()}
#: The NIST curve a Create Key Pair means when it gives only a Cryptographic Length.
_CURVE_BY_LENGTH = {
    224: RecommendedCurve.P_224,
    256: RecommendedCurve.P_256,
    384: RecommendedCurve.P_384,
    521: RecommendedCurve.P_521,
}

_TRANSPARENT_EC_PRIVATE = frozenset(
    {
        KeyFormatType.TRANSPARENT_EC_PRIVATE_KEY,
        KeyFormatType.TRANSPARENT_ECDSA_PRIVATE_KEY,
        KeyFormatType.TRANSPARENT_ECDH_PRIVATE_KEY,
        KeyFormatType.TRANSPARENT_ECMQV_PRIVATE_KEY,
    }
)
_TRANSPARENT_EC_PUBLIC = frozenset(
    {
        KeyFormatType.TRANSPARENT_EC_PUBLIC_KEY,
        KeyFormatType.TRANSPARENT_ECDSA_PUBLIC_KEY,
        KeyFormatType.TRANSPARENT_ECDH_PUBLIC_KEY,
        KeyFormatType.TRANSPARENT_ECMQV_PUBLIC_KEY,
    }
)
_DER = serialization.Encoding.DER


def format_name(key_format_type: int) -> str:
    """The enumeration name of a Key Format Type, for messages."""
    try:
        return KeyFormatType(key_format_type).name
    except ValueError:
        return f"0x{key_format_type:08X}"


def _not_supported(message: str) -> KMIPError:
    return KMIPError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED, message)


# -- generation -------------------------------------------------------------------


@frozen
class GeneratedPair:
    """A fresh key pair in its stored formats (DER), with its Cryptographic Length."""

    private_material: bytes
    private_format: int
    public_material: bytes
    public_format: int
    length: int


def _curve_for(length: int | None, curve: int | None) -> ec.EllipticCurve:
    if curve is None:
        if length is None or length not in _CURVE_BY_LENGTH:
            raise KMIPError(
                ResultReason.INVALID_ATTRIBUTE_VALUE,
                "an EC key pair needs a Recommended Curve (Cryptographic Domain Parameters) or a "
                "Cryptographic Length of 224, 256, 384 or 521",
            )
        curve = _CURVE_BY_LENGTH[length]
    found = _CURVES.get(curve)
    if found is None:
        raise KMIPError(
            ResultReason.INVALID_ATTRIBUTE_VALUE,
            f"Recommended Curve {_curve_name(curve)} is not supported; supported: "
            + ", ".join(_curve_name(c) for c in _CURVES),
        )
    instance = found()
    if length is not None and length != instance.key_size:
        raise KMIPError(
            ResultReason.INVALID_ATTRIBUTE_VALUE,
            f"Cryptographic Length {length} does not match curve {_curve_name(curve)} "
            f"({instance.key_size} bits)",
        )
    return instance


def _curve_name(curve: int) -> str:
    try:
        return RecommendedCurve(curve).name
    except ValueError:
        return f"0x{curve:08X}"


def generate_key_pair(algorithm: int, length: int | None, curve: int | None) -> GeneratedPair:
    """Generate a key pair from the OS CSPRNG (through OpenSSL)."""
    private: PrivateKey
    if algorithm == CryptographicAlgorithm.RSA:
        if length is None or length not in RSA_LENGTHS:
            raise KMIPError(
                ResultReason.INVALID_ATTRIBUTE_VALUE,
                f"an RSA key pair needs a Cryptographic Length from {RSA_LENGTHS.start} to "
                f"{RSA_LENGTHS.stop - 1} bits, a multiple of 8 (got {length})",
            )
        private = rsa.generate_private_key(public_exponent=65537, key_size=length)
        return GeneratedPair(
            key_bytes(private, KeyFormatType.PKCS_1),
            KeyFormatType.PKCS_1,
            key_bytes(private.public_key(), KeyFormatType.PKCS_1),
            KeyFormatType.PKCS_1,
            length,
        )
    if algorithm in EC_ALGORITHMS:
        private = ec.generate_private_key(_curve_for(length, curve))
        size = private.curve.key_size
    elif algorithm == CryptographicAlgorithm.ED25519:
        private, size = ed25519.Ed25519PrivateKey.generate(), 256
    elif algorithm == CryptographicAlgorithm.ED448:
        private, size = ed448.Ed448PrivateKey.generate(), 448
    else:
        raise KMIPError(
            ResultReason.INVALID_ATTRIBUTE_VALUE,
            f"Create Key Pair does not generate {_algorithm_name(algorithm)} keys; supported: "
            "RSA, EC (ECDSA, ECDH, ECMQV), Ed25519, Ed448",
        )
    return GeneratedPair(
        key_bytes(private, KeyFormatType.PKCS_8),
        KeyFormatType.PKCS_8,
        key_bytes(private.public_key(), KeyFormatType.X_509),
        KeyFormatType.X_509,
        size,
    )


def _algorithm_name(algorithm: int) -> str:
    try:
        return CryptographicAlgorithm(algorithm).name
    except ValueError:
        return f"0x{algorithm:08X}"


# -- reading --------------------------------------------------------------------------


def _big(material: Item, tag: int, required: bool = True) -> int | None:
    found = material.find(tag)
    if found is None:
        if required:
            raise invalid_field("the transparent key lacks a required field")
        return None
    if found.type not in (ItemType.BIG_INTEGER, ItemType.INTEGER, ItemType.LONG_INTEGER):
        raise invalid_field("a transparent key's numbers must be Big Integers")
    return int(found.value)


def _transparent_rsa_private(material: Item) -> rsa.RSAPrivateKey:
    n = _big(material, Tag.MODULUS)
    e = _big(material, Tag.PUBLIC_EXPONENT, required=False)
    d = _big(material, Tag.PRIVATE_EXPONENT, required=False)
    p = _big(material, Tag.P, required=False)
    q = _big(material, Tag.Q, required=False)
    assert n is not None
    if e is None:
        raise invalid_field("a Transparent RSA Private Key needs its Public Exponent")
    if p is None or q is None:
        if d is None:
            raise invalid_field("a Transparent RSA Private Key needs P and Q or a Private Exponent")
        p, q = rsa.rsa_recover_prime_factors(n, e, d)
    if d is None:
        d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=_big(material, Tag.PRIME_EXPONENT_P, required=False) or rsa.rsa_crt_dmp1(d, p),
        dmq1=_big(material, Tag.PRIME_EXPONENT_Q, required=False) or rsa.rsa_crt_dmq1(d, q),
        iqmp=_big(material, Tag.CRT_COEFFICIENT, required=False) or rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, n),
    )
    return numbers.private_key()


def _curve_of(material: Item) -> ec.EllipticCurve:
    curve = material.get(Tag.RECOMMENDED_CURVE)
    found = _CURVES.get(curve) if isinstance(curve, int) else None
    if found is None:
        raise _not_supported(f"Recommended Curve {_curve_name(curve or 0)} is not supported")
    return found()


def _dsa_parameters(material: Item) -> dsa.DSAParameterNumbers:
    p, q, g = (_big(material, tag) for tag in (Tag.P, Tag.Q, Tag.G))
    assert p is not None and q is not None and g is not None
    return dsa.DSAParameterNumbers(p, q, g)


def _load_private(key_format_type: int, material: Item) -> PrivateKey:
    if key_format_type in (KeyFormatType.PKCS_1, KeyFormatType.PKCS_8, KeyFormatType.ECPRIVATEKEY):
        key = serialization.load_der_private_key(_bytes(material), password=None)
        if key_format_type == KeyFormatType.PKCS_1 and not isinstance(key, rsa.RSAPrivateKey):
            raise invalid_field("PKCS#1 key material must be an RSA private key")
        if key_format_type == KeyFormatType.ECPRIVATEKEY and not isinstance(
            key, ec.EllipticCurvePrivateKey
        ):
            raise invalid_field("ECPrivateKey key material must be an EC private key")
        return key  # type: ignore[return-value]
    if key_format_type == KeyFormatType.TRANSPARENT_RSA_PRIVATE_KEY:
        return _transparent_rsa_private(_structure(material))
    if key_format_type in _TRANSPARENT_EC_PRIVATE:
        structure = _structure(material)
        d = _big(structure, Tag.D)
        assert d is not None
        return ec.derive_private_key(d, _curve_of(structure))
    if key_format_type == KeyFormatType.TRANSPARENT_DSA_PRIVATE_KEY:
        structure = _structure(material)
        parameters = _dsa_parameters(structure)
        x = _big(structure, Tag.X)
        assert x is not None
        y = pow(parameters.g, x, parameters.p)
        return dsa.DSAPrivateNumbers(x, dsa.DSAPublicNumbers(y, parameters)).private_key()
    raise _not_supported(f"a private key in {format_name(key_format_type)} cannot be read")


def _load_public(key_format_type: int, material: Item) -> PublicKey:
    if key_format_type in (KeyFormatType.PKCS_1, KeyFormatType.X_509):
        key = serialization.load_der_public_key(_bytes(material))
        if key_format_type == KeyFormatType.PKCS_1 and not isinstance(key, rsa.RSAPublicKey):
            raise invalid_field("PKCS#1 key material must be an RSA public key")
        return key  # type: ignore[return-value]
    if key_format_type == KeyFormatType.TRANSPARENT_RSA_PUBLIC_KEY:
        structure = _structure(material)
        n, e = _big(structure, Tag.MODULUS), _big(structure, Tag.PUBLIC_EXPONENT)
        assert n is not None and e is not None
        return rsa.RSAPublicNumbers(e, n).public_key()
    if key_format_type in _TRANSPARENT_EC_PUBLIC:
        structure = _structure(material)
        point = structure.get(Tag.Q_STRING)
        if not isinstance(point, bytes):
            raise invalid_field("a transparent EC public key needs its Q String")
        return ec.EllipticCurvePublicKey.from_encoded_point(_curve_of(structure), point)
    if key_format_type == KeyFormatType.TRANSPARENT_DSA_PUBLIC_KEY:
        structure = _structure(material)
        y = _big(structure, Tag.Y)
        assert y is not None
        return dsa.DSAPublicNumbers(y, _dsa_parameters(structure)).public_key()
    raise _not_supported(f"a public key in {format_name(key_format_type)} cannot be read")


def _bytes(material: Item) -> bytes:
    if material.type != ItemType.BYTE_STRING:
        raise invalid_field("this Key Format Type's Key Material must be a Byte String")
    return material.value


def _structure(material: Item) -> Item:
    if material.type != ItemType.STRUCTURE:
        raise invalid_field("a transparent key's Key Material must be a structure")
    return material


def load_key(stored: Item) -> PrivateKey | PublicKey:
    """The ``cryptography`` key of a stored Private Key or Public Key structure.

    Material that does not parse raises Invalid Field; a format this server cannot
    read raises Key Format Type Not Supported.
    """
    block = stored.find(Tag.KEY_BLOCK)
    if block is None:
        raise invalid_field("the key has no Key Block")
    key_format_type = block.get(Tag.KEY_FORMAT_TYPE)
    value = block.find(Tag.KEY_VALUE)
    material = value.find(Tag.KEY_MATERIAL) if value is not None else None
    if not isinstance(key_format_type, int) or material is None:
        raise invalid_field("the key's Key Block lacks its format or material")
    try:
        if stored.tag == Tag.PRIVATE_KEY:
            return _load_private(key_format_type, material)
        return _load_public(key_format_type, material)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise invalid_field(
            f"the key material is not a valid {format_name(key_format_type)} key: {error}"
        ) from None


def check_registered(object_tag: int, key_format_type: int, material: Item) -> None:
    """Refuse a registered RSA/EC/DSA key whose material does not parse in its format.

    Formats this server does not read (DH, PKCS#12...) are kept as they are, and so
    are transparent DSA keys: ``cryptography`` takes only the standard prime sizes,
    and a DSA key of another size is still a key a client may store.
    """
    if key_format_type in (
        KeyFormatType.TRANSPARENT_DSA_PRIVATE_KEY,
        KeyFormatType.TRANSPARENT_DSA_PUBLIC_KEY,
    ):
        return
    block = ttlv.structure(
        Tag.KEY_BLOCK,
        [
            ttlv.enumeration(Tag.KEY_FORMAT_TYPE, key_format_type),
            ttlv.structure(Tag.KEY_VALUE, [material]),
        ],
    )
    try:
        load_key(ttlv.structure(object_tag, [block]))
    except KMIPError as error:
        if error.reason != ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED:
            raise


# -- writing --------------------------------------------------------------------------


def key_bytes(key: PrivateKey | PublicKey, key_format_type: int) -> bytes:
    """The DER encoding of ``key`` in a byte-string Key Format Type."""
    if isinstance(key, rsa.RSAPrivateKey) and key_format_type == KeyFormatType.PKCS_1:
        return key.private_bytes(
            _DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    if isinstance(key, rsa.RSAPublicKey) and key_format_type == KeyFormatType.PKCS_1:
        return key.public_bytes(_DER, serialization.PublicFormat.PKCS1)
    if (
        isinstance(key, ec.EllipticCurvePrivateKey)
        and key_format_type == KeyFormatType.ECPRIVATEKEY
    ):
        return key.private_bytes(
            _DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    if isinstance(key, _PRIVATE_TYPES) and key_format_type == KeyFormatType.PKCS_8:
        return key.private_bytes(
            _DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    if isinstance(key, _PUBLIC_TYPES) and key_format_type == KeyFormatType.X_509:
        return key.public_bytes(_DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    raise _not_supported(f"this key cannot be given as {format_name(key_format_type)}")


_PRIVATE_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    dsa.DSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
_PUBLIC_TYPES = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    dsa.DSAPublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


def _numbers(tag: int, pairs: list[tuple[int, int]]) -> Item:
    return ttlv.structure(tag, [ttlv.big_integer(t, v) for t, v in pairs])


def key_material(key: PrivateKey | PublicKey, key_format_type: int) -> Item:
    """The Key Material item of ``key`` in ``key_format_type``."""
    if isinstance(key, rsa.RSAPrivateKey) and key_format_type == (
        KeyFormatType.TRANSPARENT_RSA_PRIVATE_KEY
    ):
        private = key.private_numbers()
        return _numbers(
            Tag.KEY_MATERIAL,
            [
                (Tag.MODULUS, private.public_numbers.n),
                (Tag.PRIVATE_EXPONENT, private.d),
                (Tag.PUBLIC_EXPONENT, private.public_numbers.e),
                (Tag.P, private.p),
                (Tag.Q, private.q),
                (Tag.PRIME_EXPONENT_P, private.dmp1),
                (Tag.PRIME_EXPONENT_Q, private.dmq1),
                (Tag.CRT_COEFFICIENT, private.iqmp),
            ],
        )
    if isinstance(key, rsa.RSAPublicKey) and key_format_type == (
        KeyFormatType.TRANSPARENT_RSA_PUBLIC_KEY
    ):
        public = key.public_numbers()
        return _numbers(
            Tag.KEY_MATERIAL, [(Tag.MODULUS, public.n), (Tag.PUBLIC_EXPONENT, public.e)]
        )
    if isinstance(key, ec.EllipticCurvePrivateKey) and key_format_type in _TRANSPARENT_EC_PRIVATE:
        return ttlv.structure(
            Tag.KEY_MATERIAL,
            [
                ttlv.enumeration(Tag.RECOMMENDED_CURVE, _recommended_curve(key.curve)),
                ttlv.big_integer(Tag.D, key.private_numbers().private_value),
            ],
        )
    if isinstance(key, ec.EllipticCurvePublicKey) and key_format_type in _TRANSPARENT_EC_PUBLIC:
        return ttlv.structure(
            Tag.KEY_MATERIAL,
            [
                ttlv.enumeration(Tag.RECOMMENDED_CURVE, _recommended_curve(key.curve)),
                ttlv.byte_string(
                    Tag.Q_STRING,
                    key.public_bytes(
                        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                    ),
                ),
            ],
        )
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)) and key_format_type in (
        KeyFormatType.TRANSPARENT_DSA_PRIVATE_KEY,
        KeyFormatType.TRANSPARENT_DSA_PUBLIC_KEY,
    ):
        return _dsa_material(key, key_format_type)
    return ttlv.byte_string(Tag.KEY_MATERIAL, key_bytes(key, key_format_type))


def _dsa_material(key: dsa.DSAPrivateKey | dsa.DSAPublicKey, key_format_type: int) -> Item:
    private = isinstance(key, dsa.DSAPrivateKey)
    if private != (key_format_type == KeyFormatType.TRANSPARENT_DSA_PRIVATE_KEY):
        raise _not_supported(f"this key cannot be given as {format_name(key_format_type)}")
    if isinstance(key, dsa.DSAPrivateKey):
        numbers = key.private_numbers()
        parameters = numbers.public_numbers.parameter_numbers
        last = (Tag.X, numbers.x)
    else:
        public = key.public_numbers()
        parameters = public.parameter_numbers
        last = (Tag.Y, public.y)
    return _numbers(
        Tag.KEY_MATERIAL,
        [(Tag.P, parameters.p), (Tag.Q, parameters.q), (Tag.G, parameters.g), last],
    )


def _recommended_curve(curve: ec.EllipticCurve) -> int:
    found = _CURVE_BY_NAME.get(curve.name)
    if found is None:
        raise _not_supported(f"curve {curve.name} has no KMIP Recommended Curve")
    return int(found)


def convert(stored: Item, requested_format: int) -> Item:
    """A stored Private/Public Key structure re-expressed in ``requested_format``.

    The Key Block keeps its Cryptographic Algorithm and Length; only the Key Format
    Type and Key Material change.
    """
    key = load_key(stored)
    material = key_material(key, requested_format)
    block = stored.find(Tag.KEY_BLOCK)
    assert block is not None
    children = [
        ttlv.enumeration(Tag.KEY_FORMAT_TYPE, requested_format),
        ttlv.structure(Tag.KEY_VALUE, [material]),
    ] + [c for c in block.value if c.tag in (Tag.CRYPTOGRAPHIC_ALGORITHM, Tag.CRYPTOGRAPHIC_LENGTH)]
    return ttlv.structure(stored.tag, [ttlv.structure(Tag.KEY_BLOCK, children)])


def key_structure(
    object_tag: int, material: bytes, key_format_type: int, algorithm: int, length: int
) -> Item:
    """A stored Private or Public Key structure with byte-string material."""
    return ttlv.structure(
        object_tag,
        [
            ttlv.structure(
                Tag.KEY_BLOCK,
                [
                    ttlv.enumeration(Tag.KEY_FORMAT_TYPE, key_format_type),
                    ttlv.structure(Tag.KEY_VALUE, [ttlv.byte_string(Tag.KEY_MATERIAL, material)]),
                    ttlv.enumeration(Tag.CRYPTOGRAPHIC_ALGORITHM, algorithm),
                    ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, length),
                ],
            )
        ],
    )


__all__ += ["key_bytes", "key_structure"]
