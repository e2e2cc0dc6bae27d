# -*- test-case-name: tests.test_wrapping -*-
"""The one exception a root key raises, whatever holds it (local file, Key Protect)."""

from __future__ import annotations

__all__ = ["WrappingError"]


class WrappingError(Exception):
    """Material could not be wrapped or unwrapped.

    ``permanent`` is True when trying again cannot help: the wrapped material was
    tampered with, belongs to another object, or its root key is gone.  The operations
    layer answers Cryptographic Failure for those and General Failure for the others
    (a root key service that is unreachable now may answer later).
    """

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent

    def __repr__(self) -> str:
        return f"WrappingError({self.message!r}, permanent={self.permanent!r})"
