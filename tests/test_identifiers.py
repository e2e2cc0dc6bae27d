"""Tests for the identifiers the server gives new objects."""

from __future__ import annotations

import hashlib
import time
import uuid

from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.identifiers import new_unique_identifier, short_unique_identifier
from kmiptwist.vocabulary.enums import Operation
from tests.test_operations import V20, Harness, uid_payload


class UniqueIdentifierTests(SynchronousTestCase):
    """Unique Identifiers are UUIDs of version 7, in the order they were made."""

    def test_canonical_version_7(self) -> None:
        """The text is a UUID's canonical form, version 7, RFC 9562 variant, holding
        the time it was made in milliseconds."""
        before = time.time_ns() // 1_000_000
        made = new_unique_identifier()
        after = time.time_ns() // 1_000_000
        parsed = uuid.UUID(made)
        self.assertEqual(str(parsed), made)
        self.assertEqual(parsed.version, 7)
        self.assertEqual(parsed.variant, uuid.RFC_4122)
        self.assertTrue(before <= parsed.int >> 80 <= after)

    def test_later_sorts_after(self) -> None:
        """An identifier made later sorts after one made before, as text and as bytes,
        down to a fraction of a millisecond (the store appends to its indexes)."""
        start = 1_800_000_000_123_456_789
        made = [new_unique_identifier(start + step * 250) for step in range(2_000)]
        self.assertEqual(made, sorted(made))
        shorts = [short_unique_identifier(uid) for uid in made]
        self.assertEqual(shorts, sorted(shorts))

    def test_same_moment_differs(self) -> None:
        """Identifiers made at the same moment differ in their random bits."""
        made = {new_unique_identifier(1_800_000_000_000_000_000) for _ in range(1_000)}
        self.assertEqual(len(made), 1_000)


class ShortUniqueIdentifierTests(SynchronousTestCase):
    """The Short Unique Identifier: a UUID's 16 bytes, or the SHA-256 of other text."""

    def test_uuid_bytes(self) -> None:
        made = new_unique_identifier()
        self.assertEqual(short_unique_identifier(made), uuid.UUID(made).bytes)

    def test_other_texts_hashed(self) -> None:
        """Any other text, including another spelling of a UUID, is hashed: no two
        texts share a Short Unique Identifier."""
        made = new_unique_identifier()
        for text in (made.upper(), "{" + made + "}", made.replace("-", ""), "key-1", ""):
            self.assertEqual(short_unique_identifier(text), hashlib.sha256(text.encode()).digest())
        self.assertNotEqual(short_unique_identifier(made), short_unique_identifier(made.upper()))

    def test_create_gives_both(self) -> None:
        """A created object's identifier is a version 7 UUID, and its Short Unique
        Identifier attribute is that UUID's bytes."""
        h = Harness(self)
        uid = h.create(version=V20)
        self.assertEqual(uuid.UUID(uid).version, 7)
        stored = self.successResultOf(h.store.get_object("alpha", uid))
        self.assertEqual(stored.value("Short Unique Identifier"), uuid.UUID(uid).bytes)
        self.assertTrue(h.one(V20, Operation.GET_ATTRIBUTES, uid_payload(uid)).ok)
