"""MAC, MAC Verify and Hash: HMAC and CMAC with a symmetric key, and plain digests.

MAC needs an Active key before its Protect Stop Date whose usage mask allows MAC
Generate; MAC Verify an Active, Deactivated or Compromised key, after its Process
Start Date, whose mask allows MAC Verify.  A MAC that does not match is a successful
MAC Verify answering Invalid.  Hash uses no key.  All three take their data in one
request or by parts (Init Indicator, Correlation Value, Final Indicator).
"""

from __future__ import annotations

from typing import Any

from attrs import define

from kmiptwist import digests, ttlv
from kmiptwist.cryptoparams import CryptographicParameters
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.messages import ProtocolVersion
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
    ValidityIndicator,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "MAC", "MAC_VERIFY"]

MAC = KeyUse(
    "MAC",
    CryptographicUsageMask.MAC_GENERATE,
    protect=True,
    object_types=frozenset({ObjectType.SYMMETRIC_KEY}),
)
MAC_VERIFY = KeyUse(
    "MAC Verify",
    CryptographicUsageMask.MAC_VERIFY,
    protect=False,
    object_types=frozenset({ObjectType.SYMMETRIC_KEY}),
)


@define
class _MACParts:
    """A MAC in progress, and the MAC to check it against once it is finished."""

    context: Any
    expected: bytes | None = None


def _data(payload: Item, parts: Parts) -> bytes:
    data = byte_field(payload, Tag.DATA, "Data", required=parts.single)
    return data or b""


async def _mac(context: RequestContext, payload: Item, use: KeyUse, operation: int) -> Payload:
    parts = parts_of(payload)
    named = context.unique_identifier(payload, required=parts.correlation is None)
    state: _MACParts | None = None
    if parts.correlation is not None:
        unique_identifier, state = continue_stream(context, parts, named, operation)
    else:
        assert named is not None
        unique_identifier = named
    try:
        obj, stored = await usable_key(context, unique_identifier, use)
        data = _data(payload, parts)
        given = byte_field(payload, Tag.MAC_DATA, "MAC Data")
        if state is None:
            algorithm = obj.value("Cryptographic Algorithm")
            state = _MACParts(
                digests.mac_context(algorithm, symmetric_material(stored), parameters(payload, obj))
            )
        state.context.update(data)
        if given is not None:
            state.expected = given
        out = [uid_item(unique_identifier)]
        if use.protect:
            # Drawn once the request is known to be good, before anything is returned.
            await draw_usage(context, obj, len(data))
        if not (parts.single or parts.final):
            if parts.init:
                correlation = open_stream(context, unique_identifier, operation, state)
                out.append(ttlv.byte_string(Tag.CORRELATION_VALUE, correlation))
            return out
        computed = state.context.finalize()
        if use.protect:
            return out + [ttlv.byte_string(Tag.MAC_DATA, computed)]
        if state.expected is None:
            raise invalid_field("MAC Verify needs the MAC Data to check")
        valid = digests.same_mac(computed, state.expected)
        return out + [
            ttlv.enumeration(
                Tag.VALIDITY_INDICATOR,
                ValidityIndicator.VALID if valid else ValidityIndicator.INVALID,
            )
        ]
    except KMIPError:
        forget_stream(context, parts)
        raise


async def mac(context: RequestContext, payload: Item) -> Payload:
    """MAC: the HMAC or CMAC of the data under a symmetric key."""
    return await _mac(context, payload, MAC, Operation.MAC)


async def mac_verify(context: RequestContext, payload: Item) -> Payload:
    """MAC Verify: Valid or Invalid, for the data and MAC given."""
    return await _mac(context, payload, MAC_VERIFY, Operation.MAC_VERIFY)


async def hash_operation(context: RequestContext, payload: Item) -> Payload:
    """Hash: the digest of the data with the Hashing Algorithm of the parameters."""
    parts = parts_of(payload)
    data = _data(payload, parts)
    if parts.correlation is not None:
        _, digest = continue_stream(context, parts, "", Operation.HASH)
    else:
        found = payload.find(Tag.CRYPTOGRAPHIC_PARAMETERS)
        if found is None:
            raise invalid_field("Hash needs Cryptographic Parameters with a Hashing Algorithm")
        digest = digests.hash_context(CryptographicParameters.from_item(found))
    digest.update(data)
    if parts.single or parts.final:
        return [ttlv.byte_string(Tag.DATA, digest.finalize())]
    if parts.init:
        correlation = open_stream(context, "", Operation.HASH, digest)
        return [ttlv.byte_string(Tag.CORRELATION_VALUE, correlation)]
    return []


_SINCE = ProtocolVersion(1, 2)

HANDLERS = [
    OperationHandler(Operation.MAC, mac, minimum=_SINCE),
    OperationHandler(Operation.MAC_VERIFY, mac_verify, minimum=_SINCE),
    OperationHandler(Operation.HASH, hash_operation, minimum=_SINCE),
]
