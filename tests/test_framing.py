"""Tests for the sans-IO framer: any chunking gives the same messages."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.framing import FramingError, TTLVFramer


def _message(size: int) -> bytes:
    return ttlv.encode(ttlv.structure(0x420078, [ttlv.byte_string(0x420094, b"x" * size)]))


class FramerTests(SynchronousTestCase):
    """The framer splits a stream into messages exactly as the peer sent them."""

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(0, 100), min_size=1, max_size=6), st.data())
    def test_any_chunking(self, sizes: list[int], data: st.DataObject) -> None:
        """However TCP splits the bytes, the same messages come out in order."""
        messages = [_message(size) for size in sizes]
        stream = b"".join(messages)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        framer = TTLVFramer(1 << 16)
        out: list[bytes] = []
        previous = 0
        for cut in cuts + [len(stream)]:
            out.extend(framer.feed(stream[previous:cut]))
            previous = cut
        self.assertEqual(out, messages)
        self.assertEqual(framer.buffered, 0)

    def test_too_large(self) -> None:
        """A header announcing more than the maximum is refused before buffering."""
        framer = TTLVFramer(1024)
        header = bytes.fromhex("42007801") + (10**9).to_bytes(4, "big")
        error = self.assertRaises(FramingError, framer.feed, header)
        self.assertIn("exceeds the maximum", str(error))

    def test_not_a_structure(self) -> None:
        """A stream that does not start with a TTLV structure is refused."""
        framer = TTLVFramer(1024)
        self.assertRaises(FramingError, framer.feed, b"GET / HTTP/1.1\r\n\r\n")

    def test_truncated_header_waits(self) -> None:
        """Fewer than 8 bytes is not an error: the rest may still come."""
        framer = TTLVFramer(1024)
        self.assertEqual(framer.feed(b"\x42\x00"), [])
        self.assertEqual(framer.buffered, 2)

    def test_messages_before_bad_header_kept(self) -> None:
        """Whole messages read together with a bad header are handed over with the error."""
        framer = TTLVFramer(1024)
        good = _message(3)
        error = self.assertRaises(FramingError, framer.feed, good + good + b"GET / HTTP/1.1\r\n")
        self.assertEqual(error.messages, [good, good])
