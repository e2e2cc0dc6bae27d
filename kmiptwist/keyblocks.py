"""The value of a managed object: key blocks, secret data and opaque data.

What a client registers (or Create generates) is normalised to one stored form
— the object's structure with Raw / Opaque key material — encoded as TTLV and kept
only wrapped.  Get turns it back into the Key Format Type the client asks for.
"""

from __future__ import annotations

import hashlib

from attrs import frozen

from kmiptwist import asymmetric, ttlv
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import (
    HashingAlgorithm,
    KeyFormatType,
    ObjectType,
    ResultReason,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = [
    "ObjectValue",
    "symmetric_key",
    "parse_registered",
    "for_get",
    "digest",
    "OBJECT_TAGS",
]

#: The structure tag of each object type this server stores.
OBJECT_TAGS: dict[int, int] = {
    ObjectType.SYMMETRIC_KEY: Tag.SYMMETRIC_KEY,
    ObjectType.SECRET_DATA: Tag.SECRET_DATA,
    ObjectType.OPAQUE_OBJECT: Tag.OPAQUE_OBJECT,
    ObjectType.PUBLIC_KEY: Tag.PUBLIC_KEY,
    ObjectType.PRIVATE_KEY: Tag.PRIVATE_KEY,
    ObjectType.CERTIFICATE: Tag.CERTIFICATE,
    ObjectType.TEMPLATE: Tag.TEMPLATE,
}

#: Key formats whose Key Material is a byte string (the others are structures).
_BYTE_FORMATS = frozenset(
    {
        KeyFormatType.RAW,
        KeyFormatType.OPAQUE,
        KeyFormatType.PKCS_1,
        KeyFormatType.PKCS_8,
        KeyFormatType.X_509,
        KeyFormatType.ECPRIVATEKEY,
    }
)


@frozen
class ObjectValue:
    """A registered object's value: its stored structure, its material, and what it implies."""

    stored: Item
    material: bytes
    key_format_type: int | None
    cryptographic_algorithm: int | None = None
    cryptographic_length: int | None = None
    block_attributes: tuple[tuple[str, Item], ...] = ()
    #: The Key Format Type the client registered, when it is not the stored one
    #: (a Transparent Symmetric Key is stored Raw and served back as registered).
    registered_format: int | None = None


def _key_block(
    material: bytes, key_format_type: int, algorithm: int | None, length: int | None
) -> Item:
    children = [
        ttlv.enumeration(Tag.KEY_FORMAT_TYPE, key_format_type),
        ttlv.structure(Tag.KEY_VALUE, [ttlv.byte_string(Tag.KEY_MATERIAL, material)]),
    ]
    if algorithm is not None:
        children.append(ttlv.enumeration(Tag.CRYPTOGRAPHIC_ALGORITHM, algorithm))
    if length is not None:
        children.append(ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, length))
    return ttlv.structure(Tag.KEY_BLOCK, children)


def symmetric_key(material: bytes, algorithm: int, length: int) -> Item:
    """The stored form of a symmetric key: a Raw key block."""
    return ttlv.structure(
        Tag.SYMMETRIC_KEY, [_key_block(material, KeyFormatType.RAW, algorithm, length)]
    )


def _read_key_block(block: Item) -> tuple[bytes, int, int | None, int | None, list[Item]]:
    """(material, key format type, algorithm, length, 1.x attributes) of a key block."""
    if block.type != ItemType.STRUCTURE:
        raise invalid_field("Key Block must be a structure")
    if block.find(Tag.KEY_WRAPPING_DATA) is not None:
        raise KMIPError(
            ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
            "registering wrapped key material is not supported; register the key unwrapped over TLS",
        )
    if block.get(Tag.KEY_COMPRESSION_TYPE) is not None:
        raise KMIPError(
            ResultReason.KEY_COMPRESSION_TYPE_NOT_SUPPORTED, "key compression is not supported"
        )
    key_format_type = block.get(Tag.KEY_FORMAT_TYPE)
    if not isinstance(key_format_type, int):
        raise invalid_field("Key Block needs a Key Format Type")
    value = block.find(Tag.KEY_VALUE)
    if value is None:
        raise invalid_field("Key Block needs a Key Value")
    attributes: list[Item] = []
    if value.type == ItemType.BYTE_STRING:
        raise KMIPError(
            ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
            "wrapped Key Value byte strings are not supported",
        )
    if value.type != ItemType.STRUCTURE:
        raise invalid_field("Key Value must be a structure")
    key_material = value.find(Tag.KEY_MATERIAL)
    attributes = value.find_all(Tag.ATTRIBUTE)
    if key_material is None:
        raise invalid_field("Key Value needs Key Material")
    if key_format_type in (KeyFormatType.RAW, KeyFormatType.OPAQUE):
        if key_material.type != ItemType.BYTE_STRING:
            raise invalid_field("Raw and Opaque Key Material must be a Byte String")
        material = key_material.value
    elif key_format_type == KeyFormatType.TRANSPARENT_SYMMETRIC_KEY:
        if key_material.type != ItemType.STRUCTURE or not isinstance(
            key_material.get(Tag.KEY), bytes
        ):
            raise invalid_field("Transparent Symmetric Key material needs a Key byte string")
        material = key_material.get(Tag.KEY)
        key_format_type = KeyFormatType.RAW
    else:
        raise KMIPError(
            ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
            f"Key Format Type {_format_name(key_format_type)} is not supported for this object",
        )
    algorithm = block.get(Tag.CRYPTOGRAPHIC_ALGORITHM)
    length = block.get(Tag.CRYPTOGRAPHIC_LENGTH)
    return material, key_format_type, algorithm, length, attributes


def _format_name(key_format_type: int) -> str:
    try:
        return KeyFormatType(key_format_type).name
    except ValueError:
        return f"0x{key_format_type:08X}"


def _asymmetric_key(found: Item) -> tuple[ObjectValue, list[Item]]:
    """A Public or Private Key as registered: kept in its own format, whatever it is."""
    block = found.find(Tag.KEY_BLOCK)
    if block is None or block.type != ItemType.STRUCTURE:
        raise invalid_field("the key needs a Key Block")
    if block.find(Tag.KEY_WRAPPING_DATA) is not None:
        raise KMIPError(
            ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
            "registering wrapped key material is not supported; register the key unwrapped over TLS",
        )
    key_format_type = block.get(Tag.KEY_FORMAT_TYPE)
    if not isinstance(key_format_type, int):
        raise invalid_field("Key Block needs a Key Format Type")
    value = block.find(Tag.KEY_VALUE)
    if value is None or value.type != ItemType.STRUCTURE:
        raise invalid_field("Key Block needs a Key Value structure")
    key_material = value.find(Tag.KEY_MATERIAL)
    if key_material is None:
        raise invalid_field("Key Value needs Key Material")
    if key_format_type in _BYTE_FORMATS:
        if key_material.type != ItemType.BYTE_STRING or not key_material.value:
            raise invalid_field(
                f"{_format_name(key_format_type)} Key Material must be a byte string"
            )
        material = key_material.value
    else:
        if key_material.type != ItemType.STRUCTURE or not key_material.value:
            raise invalid_field(f"{_format_name(key_format_type)} Key Material must be a structure")
        material = ttlv.encode(key_material)
    asymmetric.check_registered(found.tag, key_format_type, key_material)
    attributes = value.find_all(Tag.ATTRIBUTE)
    kept = [c for c in value.value if c.tag != Tag.ATTRIBUTE]
    stored_block = ttlv.structure(
        Tag.KEY_BLOCK,
        [ttlv.structure(Tag.KEY_VALUE, kept) if c.tag == Tag.KEY_VALUE else c for c in block.value],
    )
    return (
        ObjectValue(
            ttlv.structure(found.tag, [stored_block]),
            material,
            key_format_type,
            block.get(Tag.CRYPTOGRAPHIC_ALGORITHM),
            block.get(Tag.CRYPTOGRAPHIC_LENGTH),
        ),
        attributes,
    )


def _certificate(found: Item) -> ObjectValue:
    """A Certificate as registered: its type and its encoded value."""
    certificate_type = found.find(Tag.CERTIFICATE_TYPE)
    certificate_value = found.find(Tag.CERTIFICATE_VALUE)
    if certificate_type is None or certificate_type.type != ItemType.ENUMERATION:
        raise invalid_field("Certificate needs a Certificate Type enumeration")
    if (
        certificate_value is None
        or certificate_value.type != ItemType.BYTE_STRING
        or not certificate_value.value
    ):
        raise invalid_field("Certificate needs a Certificate Value byte string")
    stored = ttlv.structure(Tag.CERTIFICATE, [certificate_type, certificate_value])
    return ObjectValue(stored, certificate_value.value, None)


def parse_registered(object_type: int, payload: Item) -> tuple[ObjectValue, list[Item]]:
    """Read the object of a Register request; return its value and 1.x block attributes."""
    tag = OBJECT_TAGS.get(object_type)
    if tag is None:
        raise KMIPError(
            ResultReason.INVALID_FIELD,
            "Register takes Symmetric Keys, Public and Private Keys, Certificates, Secret Data, "
            "Opaque Objects and (KMIP 1.x) Templates",
        )
    found = payload.find(tag)
    if found is None or found.type != ItemType.STRUCTURE:
        raise invalid_field("the Register payload does not hold an object of its Object Type")
    if object_type in (ObjectType.PUBLIC_KEY, ObjectType.PRIVATE_KEY):
        return _asymmetric_key(found)
    if object_type == ObjectType.CERTIFICATE:
        return _certificate(found), []
    if object_type == ObjectType.TEMPLATE:
        stored = ttlv.structure(Tag.TEMPLATE, found.find_all(Tag.ATTRIBUTE))
        return ObjectValue(stored, ttlv.encode(stored), None), []
    if object_type == ObjectType.OPAQUE_OBJECT:
        data_type = found.find(Tag.OPAQUE_DATA_TYPE)
        data_value = found.find(Tag.OPAQUE_DATA_VALUE)
        if data_type is None or data_type.type != ItemType.ENUMERATION:
            raise invalid_field("Opaque Object needs an Opaque Data Type enumeration")
        if data_value is None or data_value.type != ItemType.BYTE_STRING:
            raise invalid_field("Opaque Object needs an Opaque Data Value byte string")
        stored = ttlv.structure(Tag.OPAQUE_OBJECT, [data_type, data_value])
        return ObjectValue(stored, data_value.value, None), []
    block = found.find(Tag.KEY_BLOCK)
    if block is None:
        raise invalid_field("the object needs a Key Block")
    registered_format = block.get(Tag.KEY_FORMAT_TYPE)
    material, key_format_type, algorithm, length, attributes = _read_key_block(block)
    if object_type == ObjectType.SYMMETRIC_KEY:
        if key_format_type != KeyFormatType.RAW:
            raise KMIPError(
                ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                "a Symmetric Key is registered as Raw or Transparent Symmetric Key",
            )
        if not material:
            raise invalid_field("a Symmetric Key needs key material")
        if algorithm is None:
            raise invalid_field("a Symmetric Key's Key Block needs a Cryptographic Algorithm")
        if length is None:
            length = len(material) * 8
        stored = symmetric_key(material, algorithm, length)
        return (
            ObjectValue(
                stored,
                material,
                KeyFormatType.RAW,
                algorithm,
                length,
                registered_format=registered_format,
            ),
            attributes,
        )
    # Secret Data
    secret_type = found.find(Tag.SECRET_DATA_TYPE)
    if secret_type is None or secret_type.type != ItemType.ENUMERATION:
        raise invalid_field("Secret Data needs a Secret Data Type enumeration")
    stored = ttlv.structure(
        Tag.SECRET_DATA, [secret_type, _key_block(material, key_format_type, algorithm, length)]
    )
    return ObjectValue(stored, material, key_format_type, algorithm, length), attributes


def for_get(stored: Item, requested_format: int | None) -> Item:
    """The object as Get returns it, in ``requested_format`` (None: as stored)."""
    if stored.tag in (Tag.OPAQUE_OBJECT, Tag.CERTIFICATE, Tag.TEMPLATE):
        if requested_format not in (None, KeyFormatType.OPAQUE, KeyFormatType.RAW):
            raise KMIPError(
                ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                "this object has no key format to convert",
            )
        return stored
    if requested_format is None:
        return stored
    block = stored.find(Tag.KEY_BLOCK)
    assert block is not None
    current = block.get(Tag.KEY_FORMAT_TYPE)
    if requested_format == current:
        return stored
    if stored.tag in (Tag.PUBLIC_KEY, Tag.PRIVATE_KEY):
        return asymmetric.convert(stored, requested_format)
    material = block.find(Tag.KEY_VALUE).get(Tag.KEY_MATERIAL)  # type: ignore[union-attr]
    if (
        stored.tag == Tag.SYMMETRIC_KEY
        and requested_format == KeyFormatType.TRANSPARENT_SYMMETRIC_KEY
    ):
        children = [
            ttlv.enumeration(Tag.KEY_FORMAT_TYPE, requested_format),
            ttlv.structure(
                Tag.KEY_VALUE,
                [ttlv.structure(Tag.KEY_MATERIAL, [ttlv.byte_string(Tag.KEY, material)])],
            ),
        ]
        children += [
            c
            for c in block.value
            if c.tag in (Tag.CRYPTOGRAPHIC_ALGORITHM, Tag.CRYPTOGRAPHIC_LENGTH)
        ]
        return ttlv.structure(Tag.SYMMETRIC_KEY, [ttlv.structure(Tag.KEY_BLOCK, children)])
    if {requested_format, current} <= {
        KeyFormatType.RAW,
        KeyFormatType.OPAQUE,
    } and stored.tag == Tag.SECRET_DATA:
        children = [ttlv.enumeration(Tag.KEY_FORMAT_TYPE, requested_format)] + [
            c for c in block.value if c.tag != Tag.KEY_FORMAT_TYPE
        ]
        return ttlv.structure(
            Tag.SECRET_DATA,
            [stored.find(Tag.SECRET_DATA_TYPE), ttlv.structure(Tag.KEY_BLOCK, children)],  # type: ignore[list-item]
        )
    raise KMIPError(
        ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
        f"cannot return this object as {_format_name(requested_format)}; it is available as "
        f"{_format_name(current)}"
        + (" or TRANSPARENT_SYMMETRIC_KEY" if stored.tag == Tag.SYMMETRIC_KEY else ""),
    )


def digest(value: ObjectValue) -> Item:
    """The Digest attribute: SHA-256 over the material, naming its key format."""
    children = [
        ttlv.enumeration(Tag.HASHING_ALGORITHM, HashingAlgorithm.SHA_256),
        ttlv.byte_string(Tag.DIGEST_VALUE, hashlib.sha256(value.material).digest()),
    ]
    if value.key_format_type is not None:
        children.append(ttlv.enumeration(Tag.KEY_FORMAT_TYPE, value.key_format_type))
    return ttlv.structure(Tag.DIGEST, children)
