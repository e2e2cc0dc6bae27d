"""The identifiers the server gives new objects: Unique Identifier and Short Unique
Identifier.

A Unique Identifier is a UUID of version 7 (RFC 9562 §5.7): the time in
milliseconds, then a fraction of the millisecond (§6.2, method 3), then 62 random
bits.  Identifiers made later sort after those made before, so the store adds each
new object's identifier at the end of its indexes (the objects' identifiers, the
Locate index) instead of at a random place in them: in a store of 100,000 objects
every random place is another page written by the commit.  The time is no secret:
every object's Initial Date holds it.

The Short Unique Identifier (KMIP 2.x, 4.56: assigned by the server, unique, SHOULD
be globally unique) is the UUID's 16 bytes, which sort the same way; an identifier
that is not a UUID in canonical form gets the SHA-256 of its text (32 bytes, so the
two kinds never meet).
"""

from __future__ import annotations

import hashlib
import os
import re
import time

__all__ = ["new_unique_identifier", "short_unique_identifier"]

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62
_RAND_B = (1 << 62) - 1
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def new_unique_identifier(now_ns: int | None = None) -> str:
    """A new UUID of version 7, as its canonical text, for the time ``now_ns``
    (nanoseconds since the epoch; the clock's when None)."""
    milliseconds, rest = divmod(time.time_ns() if now_ns is None else now_ns, 1_000_000)
    fraction = rest * 4096 // 1_000_000  # 12 bits of the millisecond
    random_bits = int.from_bytes(os.urandom(8), "big") & _RAND_B
    value = (milliseconds << 80) | _VERSION_7 | (fraction << 64) | _VARIANT_RFC | random_bits
    digits = f"{value:032x}"  # as str(uuid.UUID(int=value)), without making one
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def short_unique_identifier(unique_identifier: str) -> bytes:
    """The Short Unique Identifier of the object called ``unique_identifier``."""
    # Only the canonical text: uuid.UUID would also read braces, "urn:uuid:", upper
    # case and no hyphens, several texts for one UUID.
    if _CANONICAL.fullmatch(unique_identifier):
        return bytes.fromhex(unique_identifier.replace("-", ""))
    return hashlib.sha256(unique_identifier.encode()).digest()
