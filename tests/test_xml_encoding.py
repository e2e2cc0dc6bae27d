"""Tests for kmiptwist.xml_encoding: the KMIP XML encoding, checked against the TTLV
codec and against every message of the OASIS test cases."""

from __future__ import annotations

import os
import unittest
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import (
    CryptographicAlgorithm,
    CryptographicUsageMask,
    ObjectType,
    State,
)
from kmiptwist.vocabulary.tags import TAG_VERSIONS, Tag
from kmiptwist.xml_encoding import (
    XMLEncodingError,
    dumps,
    element_to_item,
    item_to_element,
    loads,
)

REPO_ROOT = FilePath(__file__).parent().parent()

_INT32 = st.integers(-(1 << 31), (1 << 31) - 1)
_INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
_UINT32 = st.integers(0, (1 << 32) - 1)
# Text an XML 1.0 document can carry (no C0 controls but tab, newline, return).
_TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="".join(chr(c) for c in range(32) if c not in (9, 10, 13))
        + "\ufffe\uffff",
    ),
    max_size=20,
)
_TAGS = st.one_of(
    st.sampled_from(sorted(TAG_VERSIONS)),
    st.integers(0x540000, 0x54FFFF),  # extension tags: no name, <TTLV tag="...">
)

_LEAVES = st.one_of(
    st.builds(ttlv.integer, _TAGS, _INT32),
    st.builds(ttlv.long_integer, _TAGS, _INT64),
    st.builds(ttlv.big_integer, _TAGS, st.integers(-(1 << 300), 1 << 300)),
    st.builds(ttlv.enumeration, _TAGS, _UINT32),
    st.builds(ttlv.boolean, _TAGS, st.booleans()),
    st.builds(ttlv.text_string, _TAGS, _TEXT),
    st.builds(ttlv.byte_string, _TAGS, st.binary(max_size=24)),
    st.builds(ttlv.date_time, _TAGS, _INT64),
    st.builds(ttlv.interval, _TAGS, _UINT32),
    st.builds(ttlv.date_time_extended, _TAGS, _INT64),
    # Masks and 1.x attribute values, whose XML names depend on their context.
    st.builds(ttlv.integer, st.just(int(Tag.CRYPTOGRAPHIC_USAGE_MASK)), _INT32),
    st.builds(
        lambda name, value: ttlv.structure(
            Tag.ATTRIBUTE,
            [ttlv.text_string(Tag.ATTRIBUTE_NAME, name), Item(Tag.ATTRIBUTE_VALUE, *value)],
        ),
        st.sampled_from(["Cryptographic Usage Mask", "State", "Object Type", "x-Custom"]),
        st.one_of(
            st.tuples(st.just(ItemType.INTEGER), _INT32),
            st.tuples(st.just(ItemType.ENUMERATION), _UINT32),
        ),
    ),
)
_ITEMS = st.recursive(
    _LEAVES,
    lambda children: st.builds(ttlv.structure, _TAGS, st.lists(children, max_size=4)),
    max_leaves=12,
)


class RoundTripTests(SynchronousTestCase):
    """Any item survives XML and TTLV in either order, so the two encodings are one."""

    @settings(max_examples=300, deadline=None)
    @given(_ITEMS)
    def test_xml_round_trip(self, item: Item) -> None:
        """An item written as XML reads back as the same item."""
        self.assertEqual(loads(dumps(item)), item)

    @settings(max_examples=200, deadline=None)
    @given(_ITEMS)
    def test_agrees_with_ttlv(self, item: Item) -> None:
        """XML read back encodes to the very TTLV bytes of the original item."""
        encoded = ttlv.encode(item)
        self.assertEqual(ttlv.encode(loads(dumps(ttlv.decode(encoded)))), encoded)


class ValueFormTests(SynchronousTestCase):
    """Each item type in the form the KMIP Profiles give (and the test cases use)."""

    def element(self, text: str) -> ElementTree.Element:
        return ElementTree.fromstring(text)

    def test_enumerations_by_name_and_hex(self) -> None:
        """Enumeration values are read by name or as hex, and written by name."""
        item = loads('<ObjectType type="Enumeration" value="SymmetricKey"/>')
        self.assertEqual(item, ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY))
        self.assertEqual(loads('<ObjectType type="Enumeration" value="0x00000002"/>'), item)
        self.assertEqual(item_to_element(item).get("value"), "SymmetricKey")
        extension = ttlv.enumeration(Tag.OPAQUE_DATA_TYPE, 0x80000001)
        self.assertEqual(item_to_element(extension).get("value"), "0x80000001")

    def test_masks(self) -> None:
        """Integer masks read as flag names (space or | separated), in any order."""
        for text in ("Encrypt Decrypt", "Decrypt Encrypt", "Encrypt|Decrypt", "12", "0x0000000C"):
            item = loads(f'<CryptographicUsageMask type="Integer" value="{text}"/>')
            self.assertEqual(
                item.value, CryptographicUsageMask.ENCRYPT | CryptographicUsageMask.DECRYPT
            )

    def test_attribute_value_named_by_attribute_name(self) -> None:
        """A 1.x Attribute Value's enumeration is the one its Attribute Name says."""
        item = loads(
            "<Attribute>"
            '<AttributeName type="TextString" value="Cryptographic  Algorithm"/>'
            '<AttributeValue type="Enumeration" value="AES"/>'
            "</Attribute>"
        )
        self.assertEqual(item.find(Tag.ATTRIBUTE_VALUE).value, CryptographicAlgorithm.AES)
        state = ttlv.structure(
            Tag.ATTRIBUTE,
            [
                ttlv.text_string(Tag.ATTRIBUTE_NAME, "State"),
                Item(Tag.ATTRIBUTE_VALUE, ItemType.ENUMERATION, State.PRE_ACTIVE),
            ],
        )
        self.assertIn('value="PreActive"', dumps(state))

    def test_dates_bytes_big_integers(self) -> None:
        """Dates are ISO 8601 (any offset), byte strings and big integers hex."""
        self.assertEqual(
            loads('<ActivationDate type="DateTime" value="2000-01-01T00:00:00+10:00"/>').value,
            946648800,
        )
        self.assertEqual(
            item_to_element(ttlv.date_time(Tag.ACTIVATION_DATE, 0)).get("value"),
            "1970-01-01T00:00:00+00:00",
        )
        self.assertEqual(loads('<KeyMaterial type="ByteString" value="00ff"/>').value, b"\x00\xff")
        exponent = loads('<PublicExponent type="BigInteger" value="0000000000010001"/>')
        self.assertEqual(exponent.value, 65537)
        self.assertEqual(item_to_element(exponent).get("value"), "0000000000010001")
        self.assertEqual(item_to_element(ttlv.big_integer(Tag.MODULUS, -1)).get("value"), "f" * 16)

    def test_tag_by_number(self) -> None:
        """A tag may be given by number; one with no name is written <TTLV tag=...>."""
        self.assertEqual(
            loads('<Anything tag="0x420094" type="TextString" value="x"/>'),
            ttlv.text_string(Tag.UNIQUE_IDENTIFIER, "x"),
        )
        extension = ttlv.text_string(0x540001, "vendor")
        self.assertEqual(
            dumps(extension), '<TTLV tag="0x540001" type="TextString" value="vendor" />'
        )
        self.assertEqual(loads(dumps(extension)), extension)

    def test_placeholders_are_resolved_only_on_request(self) -> None:
        """Values starting with "$" are literal text unless a resolver is given."""
        element = self.element('<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>')
        self.assertEqual(element_to_item(element).value, "$UNIQUE_IDENTIFIER_0")
        resolved = element_to_item(element, lambda text, item_type, tag: "uid-1")
        self.assertEqual(resolved.value, "uid-1")

    def test_errors(self) -> None:
        """Malformed XML encodings are refused with a reason, never guessed at."""
        for text in (
            "<NoSuchTag/>",
            '<ObjectType type="Enumeration" value="NoSuchObject"/>',
            '<ObjectType type="Nonsense" value="1"/>',
            '<BatchCount type="Integer" value="many"/>',
            '<BatchCount type="Integer" value="4294967296"/>',
            '<BatchCount type="Integer"/>',
            '<KeyMaterial type="ByteString" value="abc"/>',
            '<RequestHeader value="1"/>',
            '<ActivationDate type="DateTime" value="yesterday"/>',
            "<not-closed>",
        ):
            self.assertRaises(XMLEncodingError, loads, text)
        self.assertRaises(XMLEncodingError, dumps, ttlv.text_string(Tag.NAME_VALUE, "a\x00b"))


def _testcase_files() -> list[Path]:
    configured = os.environ.get("KMIP_TESTCASES_DIR")
    base = (
        Path(configured) if configured else Path(REPO_ROOT.parent().path) / "shared/kmip/testcases"
    )
    if not base.is_dir():
        raise unittest.SkipTest(f"KMIP test cases not found at {base}; set KMIP_TESTCASES_DIR")
    return sorted(base.rglob("*.xml"))


class TestCaseMessageTests(SynchronousTestCase):
    """Every message of the OASIS test cases reads, and writes back to the same item."""

    def test_every_message(self) -> None:
        """All request and response messages parse (placeholders stood in for) and
        survive XML → TTLV → XML unchanged, so the runner sends what the cases say."""

        def stand_in(text: str, item_type: int, tag: int) -> object:
            return {
                ItemType.TEXT_STRING: text,
                ItemType.BYTE_STRING: b"\x01",
                ItemType.BOOLEAN: False,
            }.get(item_type, 1)

        count = 0
        for path in _testcase_files():
            root = ElementTree.parse(path).getroot()
            for message in list(root) if root.tag == "KMIP" else [root]:
                item = element_to_item(message, stand_in)
                again = ttlv.decode(ttlv.encode(item))
                self.assertEqual(loads(dumps(again)), item, f"{path.name}: {message.tag}")
                count += 1
        self.assertGreater(count, 2000)
