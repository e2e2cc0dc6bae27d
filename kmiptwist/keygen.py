"""Symmetric key generation: which algorithms and lengths the server creates.

Only algorithms the ``cryptography`` library can use are offered, so that a key
this server creates is a key the server (and its clients) can also use.
Material comes from the operating system's CSPRNG.
"""

from __future__ import annotations

import secrets

from kmiptwist.errors import KMIPError
from kmiptwist.vocabulary.enums import CryptographicAlgorithm, ResultReason

__all__ = ["SYMMETRIC_LENGTHS", "generate_symmetric_key", "check_symmetric_length"]

_HMAC_DEFAULTS = {
    "HMAC_SHA1": 160,
    "HMAC_SHA224": 224,
    "HMAC_SHA256": 256,
    "HMAC_SHA384": 384,
    "HMAC_SHA512": 512,
    "HMAC_MD5": 128,
    "HMAC_SHA3_224": 224,
    "HMAC_SHA3_256": 256,
    "HMAC_SHA3_384": 384,
    "HMAC_SHA3_512": 512,
}

#: Allowed Cryptographic Length values (bits) per algorithm; None = any multiple
#: of 8 from 64 to 4096 bits (HMAC keys).
SYMMETRIC_LENGTHS: dict[int, frozenset[int] | None] = {
    CryptographicAlgorithm.AES: frozenset({128, 192, 256}),
    CryptographicAlgorithm.CAMELLIA: frozenset({128, 192, 256}),
    CryptographicAlgorithm.TRIPLE_DES: frozenset({112, 168, 192}),
    CryptographicAlgorithm.CHACHA20: frozenset({256}),
}
for _name in ("ARIA", "SM4"):
    if hasattr(CryptographicAlgorithm, _name):
        SYMMETRIC_LENGTHS[getattr(CryptographicAlgorithm, _name)] = (
            frozenset({128, 192, 256}) if _name == "ARIA" else frozenset({128})
        )
for _name in _HMAC_DEFAULTS:
    if hasattr(CryptographicAlgorithm, _name):
        SYMMETRIC_LENGTHS[getattr(CryptographicAlgorithm, _name)] = None


def _algorithm_name(algorithm: int) -> str:
    try:
        return CryptographicAlgorithm(algorithm).name
    except ValueError:
        return f"0x{algorithm:08X}"


def default_length(algorithm: int) -> int | None:
    """The length used when a Create names an HMAC algorithm but no length."""
    name = _algorithm_name(algorithm)
    return _HMAC_DEFAULTS.get(name)


def check_symmetric_length(algorithm: int, length: int) -> None:
    """Refuse an algorithm this server does not create, or a length it does not take."""
    if algorithm not in SYMMETRIC_LENGTHS:
        raise KMIPError(
            ResultReason.INVALID_FIELD,
            f"Create does not generate {_algorithm_name(algorithm)} symmetric keys; supported: "
            + ", ".join(_algorithm_name(a) for a in SYMMETRIC_LENGTHS),
        )
    allowed = SYMMETRIC_LENGTHS[algorithm]
    if allowed is None:
        if length % 8 or not 64 <= length <= 4096:
            raise KMIPError(
                ResultReason.INVALID_FIELD,
                f"{_algorithm_name(algorithm)} key length must be a multiple of 8 from 64 to 4096 bits, not {length}",
            )
    elif length not in allowed:
        raise KMIPError(
            ResultReason.INVALID_FIELD,
            f"{_algorithm_name(algorithm)} key length must be one of "
            + ", ".join(str(n) for n in sorted(allowed))
            + f" bits, not {length}",
        )


def material_bytes(algorithm: int, length: int) -> int:
    """How many bytes of material a key of ``length`` bits has (3DES carries parity)."""
    if algorithm == CryptographicAlgorithm.TRIPLE_DES:
        return 16 if length == 112 else 24
    return length // 8


def generate_symmetric_key(algorithm: int, length: int) -> bytes:
    """Fresh key material from the OS CSPRNG, checked against the supported set."""
    check_symmetric_length(algorithm, length)
    return secrets.token_bytes(material_bytes(algorithm, length))
