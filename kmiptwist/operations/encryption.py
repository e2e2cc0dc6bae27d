"""Encrypt and Decrypt: symmetric keys (AES, 3DES, Camellia, SM4, ChaCha20,
ChaCha20-Poly1305) and RSA (OAEP, PKCS#1 v1.5), single-part or by parts.

The server keeps no IV: a client gives one, or asks for a Random IV and gets the one
the server chose back as IV/Counter/Nonce.  By parts (symmetric keys), the first
request carries Init Indicator and gets a Correlation Value; the last carries Final
Indicator and, encrypting with GCM, gets the Authenticated Encryption Tag.
"""

from __future__ import annotations

from kmiptwist import asymmetric, ciphers, public_key_crypto, ttlv
from kmiptwist.ciphers import CipherStream
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.messages import ProtocolVersion
from kmiptwist.objects import ManagedObject
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, uid_item
from kmiptwist.operations.keyuse import (
    KeyUse,
    Parts,
    byte_field,
    continue_stream,
    draw_usage,
    forget_stream,
    open_stream,
    parameters,
    parts_of,
    symmetric_material,
    usable_key,
)
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import (
    CryptographicUsageMask,
    ObjectType,
    Operation,
    ResultReason,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS"]

ENCRYPT = KeyUse(
    "Encrypt",
    CryptographicUsageMask.ENCRYPT,
    protect=True,
    object_types=frozenset({ObjectType.SYMMETRIC_KEY, ObjectType.PUBLIC_KEY}),
)
DECRYPT = KeyUse(
    "Decrypt",
    CryptographicUsageMask.DECRYPT,
    protect=False,
    object_types=frozenset({ObjectType.SYMMETRIC_KEY, ObjectType.PRIVATE_KEY}),
)


def _algorithm(obj: ManagedObject, stored: Item) -> int:
    algorithm = obj.value("Cryptographic Algorithm")
    if algorithm is None:
        block = stored.find(Tag.KEY_BLOCK)
        algorithm = block.get(Tag.CRYPTOGRAPHIC_ALGORITHM) if block is not None else None
    if not isinstance(algorithm, int):
        raise invalid_field(f"{obj.unique_identifier} has no Cryptographic Algorithm")
    return algorithm


def _output(
    unique_identifier: str,
    data: bytes,
    iv: bytes | None = None,
    correlation: bytes | None = None,
    tag: bytes | None = None,
) -> Payload:
    """A response payload in the specification's field order."""
    out = [uid_item(unique_identifier), ttlv.byte_string(Tag.DATA, data)]
    if iv is not None:
        out.append(ttlv.byte_string(Tag.IV_COUNTER_NONCE, iv))
    if correlation is not None:
        out.append(ttlv.byte_string(Tag.CORRELATION_VALUE, correlation))
    if tag is not None:
        out.append(ttlv.byte_string(Tag.AUTHENTICATED_ENCRYPTION_TAG, tag))
    return out


async def _run(context: RequestContext, payload: Item, use: KeyUse, operation: int) -> Payload:
    encrypting = use.protect
    parts = parts_of(payload)
    data = byte_field(payload, Tag.DATA, "Data", required=parts.single)
    named = context.unique_identifier(payload, required=parts.correlation is None)
    if parts.correlation is not None:
        unique_identifier, stream = continue_stream(context, parts, named, operation)
    else:
        assert named is not None
        unique_identifier, stream = named, None
    try:
        obj, stored = await usable_key(context, unique_identifier, use)
        if stream is not None:
            result = _continue(unique_identifier, stream, data or b"", parts)
        elif obj.object_type != ObjectType.SYMMETRIC_KEY:
            result = _public_key(context, payload, obj, stored, data, parts, encrypting)
        else:
            result = _symmetric(context, payload, obj, stored, data or b"", parts, operation)
        if encrypting:
            # Drawn once the request is known to be good, before anything is returned.
            await draw_usage(context, obj, len(data or b""))
        return result
    except KMIPError:
        forget_stream(context, parts)
        raise


def _continue(unique_identifier: str, stream: CipherStream, data: bytes, parts: Parts) -> Payload:
    out = stream.update(data)
    if not parts.final:
        return _output(unique_identifier, out)
    rest, tag = stream.finish()
    return _output(unique_identifier, out + rest, tag=tag)


def _symmetric(
    context: RequestContext,
    payload: Item,
    obj: ManagedObject,
    stored: Item,
    data: bytes,
    parts: Parts,
    operation: int,
) -> Payload:
    chosen = parameters(payload, obj)
    algorithm = _algorithm(obj, stored)
    stream, generated_iv = ciphers.start(
        algorithm,
        symmetric_material(stored),
        chosen,
        encrypt=operation == Operation.ENCRYPT,
        iv=byte_field(payload, Tag.IV_COUNTER_NONCE, "IV/Counter/Nonce"),
        aad=byte_field(
            payload,
            Tag.AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA,
            "Authenticated Encryption Additional Data",
        ),
        tag=byte_field(payload, Tag.AUTHENTICATED_ENCRYPTION_TAG, "Authenticated Encryption Tag"),
    )
    if parts.single or parts.final:
        out = stream.update(data)
        rest, tag = stream.finish()
        return _output(obj.unique_identifier, out + rest, generated_iv, tag=tag)
    if chosen.block_cipher_mode not in ciphers.STREAMABLE_MODES and algorithm not in (
        ciphers.STREAMABLE_ALGORITHMS
    ):
        raise KMIPError(
            ResultReason.FEATURE_NOT_SUPPORTED,
            "this algorithm and mode need all the data in one request; by-parts operation is "
            "supported for ECB, CBC, CFB, OFB, CTR, GCM and ChaCha20",
        )
    out = stream.update(data)
    correlation = open_stream(context, obj.unique_identifier, operation, stream)
    return _output(obj.unique_identifier, out, generated_iv, correlation)


def _public_key(
    context: RequestContext,
    payload: Item,
    obj: ManagedObject,
    stored: Item,
    data: bytes | None,
    parts: Parts,
    encrypting: bool,
) -> Payload:
    if not parts.single:
        raise KMIPError(
            ResultReason.FEATURE_NOT_SUPPORTED,
            "public-key encryption takes the data in one request, not by parts",
        )
    assert data is not None
    key = asymmetric.load_key(stored)
    chosen = parameters(payload, obj)
    if encrypting:
        result = public_key_crypto.encrypt(key, chosen, data)  # type: ignore[arg-type]
    else:
        result = public_key_crypto.decrypt(key, chosen, data)  # type: ignore[arg-type]
    return _output(obj.unique_identifier, result)


async def encrypt(context: RequestContext, payload: Item) -> Payload:
    """Encrypt: with an Active key whose usage mask allows it, before its Protect Stop Date."""
    return await _run(context, payload, ENCRYPT, Operation.ENCRYPT)


async def decrypt(context: RequestContext, payload: Item) -> Payload:
    """Decrypt: with an Active, Deactivated or Compromised key, after its Process Start Date."""
    return await _run(context, payload, DECRYPT, Operation.DECRYPT)


_SINCE = ProtocolVersion(1, 2)

HANDLERS = [
    OperationHandler(Operation.ENCRYPT, encrypt, minimum=_SINCE),
    OperationHandler(Operation.DECRYPT, decrypt, minimum=_SINCE),
]

__all__ += ["ENCRYPT", "DECRYPT"]
