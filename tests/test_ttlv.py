"""Tests for the TTLV codec: the spec's examples, round trips and hostile bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.ttlv import Item, ItemType, Limits, TTLVError

TAG = 0x420020


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


SPEC_EXAMPLES = [
    (ttlv.integer(TAG, 8), "42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00"),
    (
        ttlv.long_integer(TAG, 123456789000000000),
        "42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00",
    ),
    (
        ttlv.big_integer(TAG, 1234567890000000000000000000),
        "42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00",
    ),
    (ttlv.enumeration(TAG, 255), "42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00"),
    (ttlv.boolean(TAG, True), "42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01"),
    (
        ttlv.text_string(TAG, "Hello World"),
        "42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00",
    ),
    (
        ttlv.byte_string(TAG, b"\x01\x02\x03"),
        "42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00",
    ),
    (ttlv.date_time(TAG, 0x47DA67F8), "42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8"),
    (ttlv.interval(TAG, 864000), "42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00"),
    (
        ttlv.structure(TAG, [ttlv.enumeration(0x420004, 254), ttlv.integer(0x420005, 255)]),
        "42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00"
        " | 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00",
    ),
]


def items(depth: int = 3) -> st.SearchStrategy[Item]:
    """Arbitrary valid items, nested up to ``depth`` structures."""
    tags = st.integers(0x420001, 0x42FFFF)
    leaves = st.one_of(
        st.builds(ttlv.integer, tags, st.integers(-(2**31), 2**31 - 1)),
        st.builds(ttlv.long_integer, tags, st.integers(-(2**63), 2**63 - 1)),
        st.builds(ttlv.big_integer, tags, st.integers(-(2**300), 2**300)),
        st.builds(ttlv.enumeration, tags, st.integers(0, 2**32 - 1)),
        st.builds(ttlv.boolean, tags, st.booleans()),
        st.builds(ttlv.text_string, tags, st.text(max_size=40)),
        st.builds(ttlv.byte_string, tags, st.binary(max_size=40)),
        st.builds(ttlv.date_time, tags, st.integers(-(2**63), 2**63 - 1)),
        st.builds(ttlv.interval, tags, st.integers(0, 2**32 - 1)),
    )
    return st.recursive(
        leaves,
        lambda children: st.builds(ttlv.structure, tags, st.lists(children, max_size=5)),
        max_leaves=30,
    )


class SpecExampleTests(SynchronousTestCase):
    """The encoding examples of KMIP 1.4 section 9.1.2 come out byte for byte."""

    def test_encode(self) -> None:
        """Each example item encodes to the spec's bytes, so other KMIP peers read us."""
        for item, text in SPEC_EXAMPLES:
            self.assertEqual(ttlv.encode(item).hex(), _hex(text).hex(), item)

    def test_decode(self) -> None:
        """Each example's bytes decode to the item, so we read other KMIP peers."""
        for item, text in SPEC_EXAMPLES:
            self.assertEqual(ttlv.decode(_hex(text)), item)


class RoundTripTests(SynchronousTestCase):
    """Whatever we encode, we decode to the same tree."""

    @settings(max_examples=300, deadline=None)
    @given(items())
    def test_round_trip(self, item: Item) -> None:
        """Arbitrary items survive encode and decode unchanged."""
        data = ttlv.encode(item)
        self.assertEqual(len(data) % 8, 0)
        self.assertEqual(ttlv.decode(data), item)

    @settings(max_examples=300, deadline=None)
    @given(items(), st.data())
    def test_mutated_bytes(self, item: Item, data: st.DataObject) -> None:
        """Flipping any byte gives an item or a TTLVError, never another exception."""
        encoded = bytearray(ttlv.encode(item))
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
        try:
            ttlv.decode(bytes(encoded))
        except TTLVError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(items(), st.data())
    def test_truncated(self, item: Item, data: st.DataObject) -> None:
        """Any strict prefix of a message is refused with a TTLVError."""
        encoded = ttlv.encode(item)
        cut = data.draw(st.integers(0, len(encoded) - 1))
        self.assertRaises(TTLVError, ttlv.decode, encoded[:cut])


class BoundsTests(SynchronousTestCase):
    """Hostile sizes are refused before they cost memory or stack."""

    def test_deep_nesting(self) -> None:
        """A structure nested 10,000 deep is refused with a clear message."""
        data = b""
        for _ in range(10_000):
            data = bytes.fromhex("42000101") + len(data).to_bytes(4, "big") + data
        error = self.assertRaises(TTLVError, ttlv.decode, data)
        self.assertIn("nested deeper", str(error))

    def test_length_beyond_data(self) -> None:
        """A structure whose length lies beyond the message is refused."""
        data = bytes.fromhex("4200780100000100") + bytes(16)
        error = self.assertRaises(TTLVError, ttlv.decode, data)
        self.assertIn("claims", str(error))

    def test_message_too_long(self) -> None:
        """A message longer than the configured maximum is refused."""
        item = ttlv.byte_string(TAG, bytes(100))
        self.assertRaises(TTLVError, ttlv.decode, ttlv.encode(item), Limits(max_length=64))

    def test_item_count(self) -> None:
        """A flood of tiny items is refused past the item bound."""
        item = ttlv.structure(TAG, [ttlv.boolean(TAG, True)] * 50)
        error = self.assertRaises(TTLVError, ttlv.decode, ttlv.encode(item), Limits(max_items=10))
        self.assertIn("more than 10 items", str(error))

    def test_wrong_fixed_length(self) -> None:
        """An Integer whose length is not 4 is refused."""
        data = bytes.fromhex("4200200200000008") + bytes(8)
        error = self.assertRaises(TTLVError, ttlv.decode, data)
        self.assertIn("expected 4", str(error))

    def test_bad_boolean(self) -> None:
        """A Boolean other than 0 or 1 is refused."""
        data = bytes.fromhex("420020060000000800000000000000FF")
        self.assertRaises(TTLVError, ttlv.decode, data)

    def test_unknown_type(self) -> None:
        """An unknown item type is refused by name."""
        data = bytes.fromhex("4200200F0000000400000000") + bytes(4)
        error = self.assertRaises(TTLVError, ttlv.decode, data)
        self.assertIn("unknown type 0x0F", str(error))

    def test_bad_utf8(self) -> None:
        """A Text String that is not UTF-8 is refused."""
        data = bytes.fromhex("4200200700000002FFFE000000000000")
        self.assertRaises(TTLVError, ttlv.decode, data)

    def test_trailing_bytes(self) -> None:
        """Bytes after the one top-level item are refused."""
        data = ttlv.encode(ttlv.integer(TAG, 1)) + bytes(8)
        self.assertRaises(TTLVError, ttlv.decode, data)

    def test_encode_out_of_range(self) -> None:
        """An Integer outside 32 bits cannot be encoded silently wrong."""
        self.assertRaises(TTLVError, ttlv.encode, ttlv.integer(TAG, 2**31))

    def test_item_helpers(self) -> None:
        """find/get/find_all look up children by tag."""
        item = ttlv.structure(TAG, [ttlv.integer(1, 5), ttlv.integer(2, 6), ttlv.integer(1, 7)])
        self.assertEqual(item.get(2), 6)
        self.assertEqual(item.get(3, "none"), "none")
        self.assertEqual([i.value for i in item.find_all(1)], [5, 7])
        self.assertIsNone(item.find(9))
        self.assertEqual(len(list(item.walk())), 4)
        self.assertEqual(ItemType.BY_NAME["TextString"], ItemType.TEXT_STRING)
