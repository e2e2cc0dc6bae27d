"""Cryptographic Parameters: how a key is to be used (mode, padding, hash, tag length...).

A cryptographic operation takes its parameters from the request and, for every
field the request leaves out, from the key's Cryptographic Parameters attribute —
so a client that stored "CBC, PKCS5" with the key need not repeat it.  This module
reads the structure and maps KMIP's hashing algorithms to ``cryptography``'s.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import frozen
from cryptography.hazmat.primitives import hashes

from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import HashingAlgorithm, ResultReason
from kmiptwist.vocabulary.tags import Tag

__all__ = [
    "CryptographicParameters",
    "hash_algorithm",
    "HASHES",
    "unsupported",
]

#: KMIP Hashing Algorithm → the ``cryptography`` hash it names.
HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    HashingAlgorithm.MD5: hashes.MD5,
    HashingAlgorithm.SHA_1: hashes.SHA1,
    HashingAlgorithm.SHA_224: hashes.SHA224,
    HashingAlgorithm.SHA_256: hashes.SHA256,
    HashingAlgorithm.SHA_384: hashes.SHA384,
    HashingAlgorithm.SHA_512: hashes.SHA512,
    HashingAlgorithm.SHA_512_224: hashes.SHA512_224,
    HashingAlgorithm.SHA_512_256: hashes.SHA512_256,
    HashingAlgorithm.SHA3_224: hashes.SHA3_224,
    HashingAlgorithm.SHA3_256: hashes.SHA3_256,
    HashingAlgorithm.SHA3_384: hashes.SHA3_384,
    HashingAlgorithm.SHA3_512: hashes.SHA3_512,
}

#: Field tag → (attribute name, TTLV type) of the Cryptographic Parameters structure.
_FIELDS: dict[int, tuple[str, int]] = {
    Tag.BLOCK_CIPHER_MODE: ("block_cipher_mode", ItemType.ENUMERATION),
    Tag.PADDING_METHOD: ("padding_method", ItemType.ENUMERATION),
    Tag.HASHING_ALGORITHM: ("hashing_algorithm", ItemType.ENUMERATION),
    Tag.KEY_ROLE_TYPE: ("key_role_type", ItemType.ENUMERATION),
    Tag.DIGITAL_SIGNATURE_ALGORITHM: ("digital_signature_algorithm", ItemType.ENUMERATION),
    Tag.CRYPTOGRAPHIC_ALGORITHM: ("cryptographic_algorithm", ItemType.ENUMERATION),
    Tag.RANDOM_IV: ("random_iv", ItemType.BOOLEAN),
    Tag.IV_LENGTH: ("iv_length", ItemType.INTEGER),
    Tag.TAG_LENGTH: ("tag_length", ItemType.INTEGER),
    Tag.FIXED_FIELD_LENGTH: ("fixed_field_length", ItemType.INTEGER),
    Tag.INVOCATION_FIELD_LENGTH: ("invocation_field_length", ItemType.INTEGER),
    Tag.COUNTER_LENGTH: ("counter_length", ItemType.INTEGER),
    Tag.INITIAL_COUNTER_VALUE: ("initial_counter_value", ItemType.INTEGER),
    Tag.SALT_LENGTH: ("salt_length", ItemType.INTEGER),
    Tag.MASK_GENERATOR: ("mask_generator", ItemType.ENUMERATION),
    Tag.MASK_GENERATOR_HASHING_ALGORITHM: (
        "mask_generator_hashing_algorithm",
        ItemType.ENUMERATION,
    ),
    Tag.P_SOURCE: ("p_source", ItemType.BYTE_STRING),
    Tag.TRAILER_FIELD: ("trailer_field", ItemType.INTEGER),
}


@frozen
class CryptographicParameters:
    """The fields of one Cryptographic Parameters structure (None: not given)."""

    block_cipher_mode: int | None = None
    padding_method: int | None = None
    hashing_algorithm: int | None = None
    key_role_type: int | None = None
    digital_signature_algorithm: int | None = None
    cryptographic_algorithm: int | None = None
    random_iv: bool | None = None
    iv_length: int | None = None
    tag_length: int | None = None
    fixed_field_length: int | None = None
    invocation_field_length: int | None = None
    counter_length: int | None = None
    initial_counter_value: int | None = None
    salt_length: int | None = None
    mask_generator: int | None = None
    mask_generator_hashing_algorithm: int | None = None
    p_source: bytes | None = None
    trailer_field: int | None = None

    @classmethod
    def from_item(cls, item: Item | None) -> CryptographicParameters:
        """Read a Cryptographic Parameters structure (None gives no parameters)."""
        if item is None:
            return cls()
        if item.type != ItemType.STRUCTURE:
            raise invalid_field("Cryptographic Parameters must be a structure")
        values: dict[str, Any] = {}
        for child in item.value:
            found = _FIELDS.get(child.tag)
            if found is None:
                continue
            name, item_type = found
            if child.type != item_type:
                raise invalid_field(
                    f"Cryptographic Parameters field {name.replace('_', ' ')} has the wrong type"
                )
            values.setdefault(name, child.value)
        return cls(**values)

    def over(self, defaults: CryptographicParameters) -> CryptographicParameters:
        """These parameters, with every field they leave out taken from ``defaults``."""
        given = {
            field.name: getattr(self, field.name)
            for field in attrs.fields(CryptographicParameters)
            if getattr(self, field.name) is not None
        }
        return attrs.evolve(defaults, **given)


def unsupported(message: str) -> KMIPError:
    """A parameter this server does not implement (2.x: Unsupported Cryptographic Parameters)."""
    return KMIPError(ResultReason.UNSUPPORTED_CRYPTOGRAPHIC_PARAMETERS, message)


def hash_algorithm(value: int | None, default: int | None = None) -> hashes.HashAlgorithm:
    """The ``cryptography`` hash for a KMIP Hashing Algorithm (``default`` when None)."""
    if value is None:
        value = default
    if value is None:
        raise KMIPError(
            ResultReason.BAD_CRYPTOGRAPHIC_PARAMETERS,
            "the operation needs a Hashing Algorithm in its Cryptographic Parameters",
        )
    found = HASHES.get(value)
    if found is None:
        try:
            name = HashingAlgorithm(value).name
        except ValueError:
            name = f"0x{value:08X}"
        raise unsupported(f"Hashing Algorithm {name} is not supported")
    return found()
