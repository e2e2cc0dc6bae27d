"""Hashes and MACs for Hash, MAC, MAC Verify and by-parts signing, through ``cryptography``.

Each is a context fed in parts and finished once.  A MAC is an HMAC when the
Cryptographic Parameters (or, failing them, the key) name an HMAC algorithm, and a
CMAC when the key is a block cipher key (AES, Triple DES, Camellia, SM4) and the
parameters name no HMAC.
"""

from __future__ import annotations

import hmac as constant_time
from typing import Any

from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives import hmac as hmac_primitive

from kmiptwist.ciphers import BLOCK_CIPHERS
from kmiptwist.cryptoparams import CryptographicParameters, hash_algorithm, unsupported
from kmiptwist.errors import invalid_field
from kmiptwist.vocabulary.enums import BlockCipherMode, CryptographicAlgorithm

__all__ = ["hash_context", "mac_context", "same_mac", "HMAC_ALGORITHMS"]

#: HMAC algorithm → the hash it is built on.
HMAC_ALGORITHMS: dict[int, type[hashes.HashAlgorithm]] = {
    CryptographicAlgorithm.HMAC_MD5: hashes.MD5,
    CryptographicAlgorithm.HMAC_SHA1: hashes.SHA1,
    CryptographicAlgorithm.HMAC_SHA224: hashes.SHA224,
    CryptographicAlgorithm.HMAC_SHA256: hashes.SHA256,
    CryptographicAlgorithm.HMAC_SHA384: hashes.SHA384,
    CryptographicAlgorithm.HMAC_SHA512: hashes.SHA512,
    CryptographicAlgorithm.HMAC_SHA3_224: hashes.SHA3_224,
    CryptographicAlgorithm.HMAC_SHA3_256: hashes.SHA3_256,
    CryptographicAlgorithm.HMAC_SHA3_384: hashes.SHA3_384,
    CryptographicAlgorithm.HMAC_SHA3_512: hashes.SHA3_512,
}

_CMAC_CIPHERS: dict[int, Any] = BLOCK_CIPHERS


def hash_context(parameters: CryptographicParameters) -> hashes.Hash:
    """A hash context for the parameters' Hashing Algorithm (required)."""
    return hashes.Hash(hash_algorithm(parameters.hashing_algorithm))


def mac_context(
    key_algorithm: int | None, key: bytes, parameters: CryptographicParameters
) -> hmac_primitive.HMAC | cmac.CMAC:
    """An HMAC or CMAC context keyed with ``key``."""
    named = parameters.cryptographic_algorithm
    for algorithm in (named, key_algorithm):
        if algorithm in HMAC_ALGORITHMS:
            return hmac_primitive.HMAC(key, HMAC_ALGORITHMS[algorithm]())
    algorithm = named if named in _CMAC_CIPHERS else key_algorithm
    if algorithm in _CMAC_CIPHERS and parameters.block_cipher_mode in (
        None,
        BlockCipherMode.CMAC,
    ):
        try:
            return cmac.CMAC(_CMAC_CIPHERS[algorithm](key))
        except ValueError as error:
            raise invalid_field(f"the key does not suit CMAC: {error}") from None
    raise unsupported(
        "MAC needs an HMAC algorithm (in the Cryptographic Parameters or as the key's "
        "algorithm) or a block cipher key for CMAC"
    )


def same_mac(computed: bytes, given: bytes) -> bool:
    """Whether a client's MAC is the one computed, in constant time."""
    return constant_time.compare_digest(computed, given)
