# -*- test-case-name: tests.test_wrapping -*-
"""Root keys that wrap key material, and the cache of unwrapped material.

The store only ever sees wrapped material.  The additional authenticated data of
every wrap names the material's owner (:func:`aad_for`), so wrapped material copied
to another object, or another tenant, does not unwrap.
"""

from __future__ import annotations

import struct

__all__ = ["aad_for", "owner_of"]

_AAD_LABEL = b"kmiptwist material v1"
_pack_length = struct.Struct(">I").pack


def aad_for(tenant: str, unique_identifier: str) -> bytes:
    """The AAD binding material to (tenant, unique identifier), unambiguously.

    Each part is length-prefixed, so no two different pairs give the same bytes.
    """
    parts = (_AAD_LABEL, tenant.encode("utf-8"), unique_identifier.encode("utf-8"))
    return b"".join(_pack_length(len(part)) + part for part in parts)


def owner_of(aad: bytes) -> tuple[str, str] | None:
    """The (tenant, unique identifier) an :func:`aad_for` AAD names, or None (for logs)."""
    parts: list[bytes] = []
    offset = 0
    while offset + 4 <= len(aad) and len(parts) < 3:
        (length,) = struct.unpack_from(">I", aad, offset)
        parts.append(aad[offset + 4 : offset + 4 + length])
        offset += 4 + length
    if len(parts) != 3 or offset != len(aad) or parts[0] != _AAD_LABEL:
        return None
    try:
        return parts[1].decode("utf-8"), parts[2].decode("utf-8")
    except UnicodeDecodeError:
        return None
