"""Get answers kept with the cached material (``operations/retrieval.py``).

A repeated Get of an unchanged object is answered with the bytes encoded for the
previous one; these tests check that such an answer is never served once it would
differ from what the full path answers, or once the material may no longer be served.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.vocabulary.enums import KeyFormatType, Operation, ResultReason, ResultStatus
from kmiptwist.vocabulary.tags import Tag

from .test_operations import V11, V14, V20, Harness, revoke_payload, uid_payload


class CountingHarness(Harness):
    """A harness that counts full loads of objects from the store."""

    def __init__(self, case: SynchronousTestCase) -> None:
        super().__init__(case)
        self.loads = 0
        load = self.store.get_object

        def counted(*args: Any) -> Any:
            self.loads += 1
            return load(*args)

        self.store.get_object = counted  # type: ignore[method-assign]

    def get(self, uid: str, version: tuple[int, int] = V14, **fields: int) -> Any:
        payload = uid_payload(uid)
        if "key_format_type" in fields:
            payload.append(ttlv.enumeration(Tag.KEY_FORMAT_TYPE, fields["key_format_type"]))
        return self.one(version, Operation.GET, payload)


def served(h: CountingHarness, uid: str) -> CountingHarness:
    """Get ``uid`` twice (the first clears Fresh, the second keeps its answer)."""
    for _ in range(2):
        item = h.get(uid)
        h.case.assertTrue(item.ok, item.message)
    return h


class KeptAnswerTests(SynchronousTestCase):
    def test_repeated_get_is_answered_again(self) -> None:
        """The third Get of an unchanged key loads nothing and answers the same value."""
        h = CountingHarness(self)
        uid = h.create()
        first = served(h, uid).get(uid)
        loads = h.loads
        again = h.get(uid)
        self.assertTrue(again.ok, again.message)
        self.assertEqual(h.loads, loads)
        self.assertEqual(again.payload, first.payload)
        self.assertEqual(again.get(Tag.UNIQUE_IDENTIFIER), uid)

    def test_forms_are_kept_apart(self) -> None:
        """Another version or Key Format Type is its own answer, made by the full path."""
        h = CountingHarness(self)
        uid = h.create()
        served(h, uid)
        raw = h.get(uid, key_format_type=KeyFormatType.RAW)
        transparent = h.get(uid, key_format_type=KeyFormatType.TRANSPARENT_SYMMETRIC_KEY)
        self.assertTrue(raw.ok and transparent.ok)
        self.assertNotEqual(raw.payload, transparent.payload)
        self.assertEqual(h.get(uid, key_format_type=KeyFormatType.RAW).payload, raw.payload)
        self.assertEqual(
            h.get(uid, key_format_type=KeyFormatType.TRANSPARENT_SYMMETRIC_KEY).payload,
            transparent.payload,
        )
        in_20 = h.get(uid, version=V20)
        in_11 = h.get(uid, version=V11)
        self.assertTrue(in_20.ok and in_11.ok)

    def test_a_change_is_seen_at_once(self) -> None:
        """Revoke and Destroy change the object: the next Get takes the full path."""
        h = CountingHarness(self)
        uid = h.create()
        served(h, uid)
        revoke = h.one(
            V14,
            Operation.REVOKE,
            revoke_payload(uid),
        )
        self.assertTrue(revoke.ok, revoke.message)
        self.assertTrue(h.one(V14, Operation.DESTROY, uid_payload(uid)).ok)
        got = h.get(uid)
        self.assertEqual(got.status, ResultStatus.OPERATION_FAILED)

    def test_a_change_by_another_process_is_seen(self) -> None:
        """A write that bypasses this processor (another worker) changes the revision:
        the kept answer is not served; the new attribute value is honoured."""
        h = CountingHarness(self)
        uid = h.create()
        served(h, uid)
        obj = self.successResultOf(h.store.get_object("alpha", uid))
        obj.attributes["Extractable"] = [ttlv.boolean(Tag.EXTRACTABLE, False)]
        self.successResultOf(h.store.update_object(obj))
        got = h.get(uid)
        self.assertEqual(got.status, ResultStatus.OPERATION_FAILED)
        self.assertIn("not Extractable", got.message)

    def test_dropped_with_the_material(self) -> None:
        """Invalidating the tenant's material (root key disabled) or the TTL passing
        drops the kept answer with it."""
        h = CountingHarness(self)
        uid = h.create()
        served(h, uid)
        h.engine.cache.invalidate_tenant("alpha")  # type: ignore[attr-defined]
        loads = h.loads
        self.assertTrue(h.get(uid).ok)
        self.assertEqual(h.loads, loads + 1)
        self.assertTrue(h.get(uid).ok)  # kept again
        loads = h.loads
        h.clock.advance(61)  # the harness's material TTL is 60 s
        self.assertTrue(h.get(uid).ok)
        self.assertEqual(h.loads, loads + 1)

    def test_other_tenant_never_served(self) -> None:
        """Another tenant asking for the identifier gets Item Not Found, kept answer or not."""
        h = CountingHarness(self)
        uid = h.create()
        served(h, uid)
        item = h.one(V14, Operation.GET, uid_payload(uid), tenant="beta")
        self.assertEqual(item.reason, ResultReason.ITEM_NOT_FOUND)
