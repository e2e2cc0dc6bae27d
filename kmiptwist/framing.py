"""Sans-IO framing of a KMIP byte stream into whole TTLV messages.

A KMIP message is one top-level structure: a 3-byte tag, the type byte 0x01 and a
4-byte length, then that many bytes.  The framer only reads the header, so that a
hostile length is refused before anything is buffered.
"""

from __future__ import annotations

import struct

__all__ = ["FramingError", "TTLVFramer"]

_unpack_header = struct.Struct(">II").unpack_from


class FramingError(ValueError):
    """The stream cannot be split into messages any more; the connection must close.

    ``messages`` holds the whole messages that came before the bad header in the
    same feed, so that they can still be answered.
    """

    messages: list[bytes] = []


class TTLVFramer:
    """Split a byte stream into complete TTLV messages, bounded in size."""

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete message are waiting."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every message it completes, in order."""
        messages: list[bytes] = []
        try:
            if not self._buffer and len(data) >= 8 and self._split(data, messages):
                # The common case: whole messages in one read, no copying.
                return messages
            messages.clear()
            buffer = self._buffer
            buffer += data
            while len(buffer) >= 8:
                size = self._message_size(buffer)
                if len(buffer) < size:
                    break
                messages.append(bytes(buffer[:size]))
                del buffer[:size]
        except FramingError as error:
            error.messages = messages
            raise
        return messages

    def _split(self, data: bytes, messages: list[bytes]) -> bool:
        """Split ``data`` into ``messages``; False when it does not end on a boundary."""
        offset = 0
        total = len(data)
        while offset < total:
            if total - offset < 8:
                return False
            size = self._message_size(data, offset)
            if offset + size > total:
                return False
            messages.append(data[offset : offset + size] if offset or size != total else data)
            offset += size
        return True

    def _message_size(self, data: bytes | bytearray, offset: int = 0) -> int:
        """The whole size of the message whose header starts at ``offset``."""
        word, length = _unpack_header(data, offset)
        if word >> 24 != 0x42 or word & 0xFF != 0x01:
            raise FramingError(f"stream does not start with a TTLV structure (header 0x{word:08X})")
        size = 8 + length
        if size > self.max_message_size:
            raise FramingError(
                f"message of {size} bytes exceeds the maximum of {self.max_message_size}"
            )
        return size
