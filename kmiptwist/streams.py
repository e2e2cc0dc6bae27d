"""By-parts cryptographic operations in progress (Init Indicator ... Final Indicator).

A client that encrypts, decrypts, signs or MACs in several requests gets a
Correlation Value with the first part and names it in the next ones.  The state
between parts — a cipher, hash or MAC context — lives here, in memory only, per
tenant (another tenant's Correlation Value does not exist for a client), bounded in
number and dropped after an idle time.  Key material inside the contexts never
leaves this process.
"""

from __future__ import annotations

import secrets
from typing import Any

from attrs import define, field

__all__ = ["CryptoStreams", "Stream"]


@define
class Stream:
    """One operation in progress: which object and operation, and its context."""

    unique_identifier: str
    operation: int
    context: Any
    last_used: int


@define
class CryptoStreams:
    """The operations in progress of every tenant."""

    max_streams: int = 1024
    #: One tenant may not take the whole server's room.
    max_per_tenant: int = 128
    idle_timeout: int = 600
    _streams: dict[tuple[str, bytes], Stream] = field(factory=dict)

    def __len__(self) -> int:
        return len(self._streams)

    def _expire(self, now: int) -> None:
        stale = [
            key
            for key, stream in self._streams.items()
            if now - stream.last_used > self.idle_timeout
        ]
        for key in stale:
            del self._streams[key]

    def open(self, tenant: str, stream: Stream, now: int) -> bytes | None:
        """Keep ``stream``; its new Correlation Value, or None when the server is full."""
        self._expire(now)
        if len(self._streams) >= self.max_streams:
            return None
        if sum(1 for owner, _ in self._streams if owner == tenant) >= self.max_per_tenant:
            return None
        correlation = secrets.token_bytes(16)
        stream.last_used = now
        self._streams[(tenant, correlation)] = stream
        return correlation

    def find(self, tenant: str, correlation: bytes, now: int) -> Stream | None:
        """The tenant's operation with this Correlation Value, if it is still open."""
        self._expire(now)
        stream = self._streams.get((tenant, correlation))
        if stream is not None:
            stream.last_used = now
        return stream

    def close(self, tenant: str, correlation: bytes) -> None:
        """Forget an operation (finished, or failed)."""
        self._streams.pop((tenant, correlation), None)
