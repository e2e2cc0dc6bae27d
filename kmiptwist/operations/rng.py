"""RNG Retrieve and RNG Seed: random bytes from the server's generator.

The server's random numbers come from the operating system's CSPRNG (the one its
keys come from).  RNG Retrieve returns up to :data:`MAX_RANDOM_BYTES` of it per
request.  RNG Seed is refused with Permission Denied: a client cannot seed the
operating system's generator, and the server keeps no generator of its own that a
client could steer.
"""

from __future__ import annotations

import secrets

from kmiptwist import ttlv
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.messages import ProtocolVersion
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, number
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import Operation, ResultReason
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "MAX_RANDOM_BYTES"]

#: The most random bytes one RNG Retrieve returns.
MAX_RANDOM_BYTES = 65536


async def rng_retrieve(context: RequestContext, payload: Item) -> Payload:
    """RNG Retrieve: Data Length random bytes from the OS CSPRNG."""
    length = number(payload, Tag.DATA_LENGTH, "Data Length")
    if length is None:
        raise invalid_field("RNG Retrieve needs a Data Length")
    if not 0 < length <= MAX_RANDOM_BYTES:
        raise invalid_field(f"Data Length must be from 1 to {MAX_RANDOM_BYTES} bytes, not {length}")
    return [ttlv.byte_string(Tag.DATA, secrets.token_bytes(length))]


async def rng_seed(context: RequestContext, payload: Item) -> Payload:
    """RNG Seed: refused; the server's generator is the operating system's."""
    raise KMIPError(
        ResultReason.PERMISSION_DENIED,
        "the server's random numbers come from the operating system's CSPRNG, which clients "
        "cannot seed",
    )


_SINCE = ProtocolVersion(1, 2)

HANDLERS = [
    OperationHandler(Operation.RNG_RETRIEVE, rng_retrieve, minimum=_SINCE),
    OperationHandler(Operation.RNG_SEED, rng_seed, minimum=_SINCE),
]
