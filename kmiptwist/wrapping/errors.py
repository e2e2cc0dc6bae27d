# -*- test-case-name: tests.test_wrapping -*-
"""The one exception a root key raises, whatever holds it (local file, Key Protect)."""

from __future__ import annotations

__all__ = ["WrappingError", "MATERIAL", "DENIED", "SERVICE"]

#: The wrapped material itself is at fault: altered, another object's, another root key's.
MATERIAL = "material"
#: The root key refuses: it was disabled or deleted (crypto-shredded).
DENIED = "denied"
#: The root key service failed: unreachable, slow, misconfigured, not authorised.
SERVICE = "service"


class WrappingError(Exception):
    """Material could not be wrapped or unwrapped.

    ``permanent`` is True when trying again cannot help: the wrapped material was
    tampered with, belongs to another object, or its root key is gone.  The operations
    layer answers Cryptographic Failure for those and General Failure for the others
    (a root key service that is unreachable now may answer later).

    ``kind`` says whose fault it is: :data:`MATERIAL` (Cryptographic Failure),
    :data:`DENIED` (the root key is disabled or deleted: Permission Denied) or
    :data:`SERVICE` (General Failure); left out, it is :data:`MATERIAL` for a
    permanent error and :data:`SERVICE` otherwise.
    """

    def __init__(self, message: str, permanent: bool, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.kind = kind if kind is not None else (MATERIAL if permanent else SERVICE)

    def __repr__(self) -> str:
        return f"WrappingError({self.message!r}, permanent={self.permanent!r}, kind={self.kind!r})"
