"""Sign and Signature Verify: RSA (PSS, PKCS#1 v1.5), ECDSA, DSA, Ed25519 and Ed448.

Sign needs an Active private key before its Protect Stop Date whose usage mask
allows Sign; Signature Verify a public key that is Active, Deactivated or
Compromised, after its Process Start Date, whose mask allows Verify.  A signature
that does not verify is a successful Signature Verify answering Invalid.  Both take
the data in one request, as Digested Data, or by parts (the server hashes the parts
and signs or verifies the digest).
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from cryptography.hazmat.primitives import hashes

from kmiptwist import asymmetric, public_key_crypto, ttlv
from kmiptwist.cryptoparams import CryptographicParameters
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.messages import ProtocolVersion
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, uid_item
from kmiptwist.operations.keyuse import (
    KeyUse,
    byte_field,
    continue_stream,
    draw_usage,
    forget_stream,
    open_stream,
    parameters,
    parts_of,
    usable_key,
)
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import (
    CryptographicUsageMask,
    ObjectType,
    Operation,
    ValidityIndicator,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "SIGN", "VERIFY"]

SIGN = KeyUse(
    "Sign",
    CryptographicUsageMask.SIGN,
    protect=True,
    object_types=frozenset({ObjectType.PRIVATE_KEY}),
)
VERIFY = KeyUse(
    "Signature Verify",
    CryptographicUsageMask.VERIFY,
    protect=False,
    object_types=frozenset({ObjectType.PUBLIC_KEY}),
)


@define
class _Parts:
    """A signature over data that comes in parts: hashed as it comes, or gathered."""

    parameters: CryptographicParameters
    digest: hashes.Hash | None
    gathered: list[bytes] = field(factory=list)
    signature: bytes | None = None

    def update(self, data: bytes) -> None:
        if self.digest is not None:
            self.digest.update(data)
        else:
            self.gathered.append(data)

    def finish(self) -> tuple[bytes, bool]:
        """(what to sign or verify, whether it is a digest)."""
        if self.digest is not None:
            return self.digest.finalize(), True
        return b"".join(self.gathered), False


def _input(payload: Item, single: bool) -> tuple[bytes, bool]:
    """(Data or Digested Data, whether it is a digest) of a request."""
    data = byte_field(payload, Tag.DATA, "Data")
    digested = byte_field(payload, Tag.DIGESTED_DATA, "Digested Data")
    if data is not None and digested is not None:
        raise invalid_field("give Data or Digested Data, not both")
    if digested is not None:
        if not single:
            raise invalid_field("Digested Data is a whole digest: it cannot come by parts")
        return digested, True
    if data is None and single:
        raise invalid_field("the request needs Data or Digested Data")
    return data or b"", False


async def _run(context: RequestContext, payload: Item, use: KeyUse, operation: int) -> Payload:
    parts = parts_of(payload)
    named = context.unique_identifier(payload, required=parts.correlation is None)
    state: _Parts | None = None
    if parts.correlation is not None:
        unique_identifier, state = continue_stream(context, parts, named, operation)
    else:
        assert named is not None
        unique_identifier = named
    try:
        obj, stored = await usable_key(context, unique_identifier, use)
        key: Any = asymmetric.load_key(stored)
        data, digested = _input(payload, parts.single)
        signature = byte_field(payload, Tag.SIGNATURE_DATA, "Signature Data")
        out = [uid_item(unique_identifier)]
        if state is None:
            chosen = parameters(payload, obj)
            if not parts.single:
                digest = public_key_crypto.signature_digest(key, chosen)
                state = _Parts(chosen, hashes.Hash(digest) if digest is not None else None)
        if state is not None:
            state.update(data)
            if signature is not None:
                state.signature = signature
            if not parts.final:
                if use.protect:
                    await draw_usage(context, obj, len(data))
                if parts.init:
                    correlation = open_stream(context, unique_identifier, operation, state)
                    out.append(ttlv.byte_string(Tag.CORRELATION_VALUE, correlation))
                return out
            length = len(data)
            data, digested = state.finish()
            chosen, signature = state.parameters, state.signature
        else:
            length = len(data)
        if use.protect:
            result = public_key_crypto.sign(key, chosen, data, digested)
            # Drawn once the signature is made, before it is returned.
            await draw_usage(context, obj, length)
            return out + [ttlv.byte_string(Tag.SIGNATURE_DATA, result)]
        if signature is None:
            raise invalid_field("Signature Verify needs the Signature Data")
        valid = public_key_crypto.verify(key, chosen, data, signature, digested)
        return out + [
            ttlv.enumeration(
                Tag.VALIDITY_INDICATOR,
                ValidityIndicator.VALID if valid else ValidityIndicator.INVALID,
            ),
        ]
    except KMIPError:
        forget_stream(context, parts)
        raise


async def sign(context: RequestContext, payload: Item) -> Payload:
    """Sign: a signature of the data with an Active private key."""
    return await _run(context, payload, SIGN, Operation.SIGN)


async def signature_verify(context: RequestContext, payload: Item) -> Payload:
    """Signature Verify: Valid or Invalid, for the data and signature given."""
    return await _run(context, payload, VERIFY, Operation.SIGNATURE_VERIFY)


_SINCE = ProtocolVersion(1, 2)

HANDLERS = [
    OperationHandler(Operation.SIGN, sign, minimum=_SINCE),
    OperationHandler(Operation.SIGNATURE_VERIFY, signature_verify, minimum=_SINCE),
]
