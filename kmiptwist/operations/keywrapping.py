"""Get with a Key Wrapping Specification: a key returned encrypted under another key.

The wrapping key is one of the tenant's: a symmetric key used with the AES key wraps
(NIST Key Wrap, RFC 3394; AES Key Wrap with Padding, RFC 5649) or an RSA public key
(OAEP or PKCS#1 v1.5).  It must be Active, before its Protect Stop Date, with Wrap
Key in its usage mask; Cryptographic Parameters named in the specification must match
one of the wrapping key's Cryptographic Parameters attributes (KMIP 2.1 section 7.18).
The Key Value is TTLV-encoded (with any attributes the specification names) before
wrapping, unless the specification asks for No Encoding, when the bare key material
is wrapped.  Wrapping Method Encrypt only.
"""

from __future__ import annotations

import attrs

from kmiptwist import asymmetric, ciphers, public_key_crypto, ttlv
from kmiptwist.attributes import to_wire
from kmiptwist.cryptoparams import CryptographicParameters
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.objects import ManagedObject
from kmiptwist.operations.base import RequestContext, reason_in
from kmiptwist.operations.keyuse import KeyUse, symmetric_material, usable_key
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import (
    BlockCipherMode,
    CryptographicUsageMask,
    EncodingOption,
    ObjectType,
    ResultReason,
    WrappingMethod,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["wrap_for_get", "WRAP"]

WRAP = KeyUse(
    "Wrap Key",
    CryptographicUsageMask.WRAP_KEY,
    protect=True,
    object_types=frozenset({ObjectType.SYMMETRIC_KEY, ObjectType.PUBLIC_KEY}),
)
_KEY_WRAP_MODES = frozenset({BlockCipherMode.NISTKEYWRAP, BlockCipherMode.AESKEYWRAPPADDING})


def _matches(given: CryptographicParameters, instance: CryptographicParameters) -> bool:
    """Every field the request gives has the instance's value."""
    return all(
        getattr(given, field.name) in (None, getattr(instance, field.name))
        for field in attrs.fields(CryptographicParameters)
    )


def _wrapping_parameters(
    context: RequestContext, key: ManagedObject, given: Item | None
) -> CryptographicParameters:
    """The parameters to wrap with: the request's, checked against the key's."""
    instances = [
        CryptographicParameters.from_item(i) for i in key.values("Cryptographic Parameters")
    ]
    if given is None:
        return instances[0] if instances else CryptographicParameters()
    asked = CryptographicParameters.from_item(given)
    for instance in instances:
        if _matches(asked, instance):
            return asked.over(instance)
    raise KMIPError(
        reason_in(context.version, "BAD_CRYPTOGRAPHIC_PARAMETERS", ResultReason.INVALID_FIELD),
        f"the Cryptographic Parameters of the Encryption Key Information match none of "
        f"{key.unique_identifier}'s Cryptographic Parameters attributes",
    )


def _plaintext(
    context: RequestContext, obj: ManagedObject, value: Item, spec: Item
) -> tuple[bytes, int | None]:
    """What is wrapped: the encoded Key Value, or the bare key material."""
    encoding = spec.get(Tag.ENCODING_OPTION)
    names = [c.value for c in spec.find_all(Tag.ATTRIBUTE_NAME) if c.type == ItemType.TEXT_STRING]
    if encoding == EncodingOption.NO_ENCODING:
        if names:
            raise invalid_field("attributes cannot be wrapped with No Encoding")
        material = value.find(Tag.KEY_MATERIAL)
        if material is None or material.type != ItemType.BYTE_STRING:
            raise KMIPError(
                ResultReason.ENCODING_OPTION_ERROR,
                "No Encoding wraps byte-string key material only; ask for TTLV Encoding",
            )
        return material.value, encoding
    children = [c for c in value.value if c.tag == Tag.KEY_MATERIAL]
    wanted = [
        to_wire(name, item, context.version, index)
        for name in names
        for index, item in enumerate(obj.values(name))
    ]
    if wanted:
        children += (
            wanted if not context.version.is_2x else [ttlv.structure(Tag.ATTRIBUTES, wanted)]
        )
    return ttlv.encode(ttlv.structure(Tag.KEY_VALUE, children)), encoding


async def wrap_for_get(
    context: RequestContext, obj: ManagedObject, value: Item, spec: Item
) -> Item:
    """``value`` (an object as Get returns it) with its Key Block's Key Value wrapped."""
    if spec.type != ItemType.STRUCTURE:
        raise invalid_field("Key Wrapping Specification must be a structure")
    method = spec.get(Tag.WRAPPING_METHOD)
    if method != WrappingMethod.ENCRYPT:
        raise KMIPError(
            ResultReason.FEATURE_NOT_SUPPORTED,
            "only Wrapping Method Encrypt is supported (no MAC/Sign wrapping)",
        )
    if spec.find(Tag.MAC_SIGNATURE_KEY_INFORMATION) is not None:
        raise KMIPError(
            ResultReason.FEATURE_NOT_SUPPORTED, "MAC/Signature Key Information is not supported"
        )
    information = spec.find(Tag.ENCRYPTION_KEY_INFORMATION)
    wrapping_id = information.get(Tag.UNIQUE_IDENTIFIER) if information is not None else None
    if not isinstance(wrapping_id, str):
        raise invalid_field(
            "the Encryption Key Information needs the wrapping key's Unique Identifier"
        )
    block = value.find(Tag.KEY_BLOCK)
    key_value = block.find(Tag.KEY_VALUE) if block is not None else None
    if block is None or key_value is None or key_value.type != ItemType.STRUCTURE:
        raise invalid_field("only an object with a Key Block can be returned wrapped")
    if wrapping_id == obj.unique_identifier:
        raise invalid_field("a key cannot wrap itself")
    wrapping, stored = await usable_key(context, wrapping_id, WRAP)
    assert information is not None
    chosen = _wrapping_parameters(context, wrapping, information.find(Tag.CRYPTOGRAPHIC_PARAMETERS))
    plaintext, encoding = _plaintext(context, obj, key_value, spec)
    if wrapping.object_type == ObjectType.SYMMETRIC_KEY:
        if chosen.block_cipher_mode not in _KEY_WRAP_MODES:
            raise KMIPError(
                ResultReason.FEATURE_NOT_SUPPORTED,
                "a symmetric wrapping key wraps with NIST Key Wrap or AES Key Wrap with Padding",
            )
        algorithm = wrapping.value("Cryptographic Algorithm")
        stream, _ = ciphers.start(algorithm, symmetric_material(stored), chosen, encrypt=True)
        wrapped = stream.update(plaintext) + stream.finish()[0]
    else:
        key = asymmetric.load_key(stored)
        wrapped = public_key_crypto.encrypt(key, chosen, plaintext)  # type: ignore[arg-type]
    wrapping_data = [ttlv.enumeration(Tag.WRAPPING_METHOD, method), information]
    if encoding is not None:
        wrapping_data.append(ttlv.enumeration(Tag.ENCODING_OPTION, encoding))
    children = [
        ttlv.byte_string(Tag.KEY_VALUE, wrapped) if c.tag == Tag.KEY_VALUE else c
        for c in block.value
    ] + [ttlv.structure(Tag.KEY_WRAPPING_DATA, wrapping_data)]
    return ttlv.structure(
        value.tag,
        [
            ttlv.structure(Tag.KEY_BLOCK, children) if c.tag == Tag.KEY_BLOCK else c
            for c in value.value
        ],
    )
