"""A lone Get read at fixed offsets (``messages.parse_lone_request`` and
``lone_get_identifier``) and answered from its kept answer without the general path
(``KMIPProcessor._get_now`` and ``_get_again``).

What is checked: the fixed-offset reading agrees with the general decoding on every
message it accepts (examples and hypothesis mutations), leaves every other message to
the general path, and the response bytes and audit records are those the general path
makes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import processor as processor_module
from kmiptwist import ttlv
from kmiptwist.messages import (
    ProtocolVersion,
    ResponseBatchItem,
    encode_response,
    encode_success,
    lone_get_identifier,
    parse_lone_request,
    parse_request,
)
from kmiptwist.processor import KMIPProcessor, Peer
from kmiptwist.testing.messages import read_response, request
from kmiptwist.vocabulary.enums import KeyFormatType, Operation, ResultReason, ResultStatus
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.wrapping.errors import DENIED, WrappingError

from .test_operations import V11, V14, V20, Harness, uid_payload

_VERSIONS = [(1, 0), V11, (1, 2), (1, 3), V14, V20, (2, 1)]

MUTATIONS = st.tuples(
    st.lists(st.tuples(st.integers(min_value=0, max_value=300), st.integers(0, 255)), max_size=3),
    st.integers(min_value=-24, max_value=24),
)
"""Up to three bytes changed (position, value), then a cut (< 0) or zeros added (> 0)."""


def mutated(data: bytes, mutation: tuple[list[tuple[int, int]], int]) -> bytes:
    """``data`` changed as a :data:`MUTATIONS` example says."""
    edits, cut = mutation
    changed = bytearray(data)
    for position, value in edits:
        if position < len(changed):
            changed[position] = value
    if cut < 0:
        del changed[cut:]
    else:
        changed += bytes(cut)
    return bytes(changed)


def _lone_get(version: tuple[int, int], uid: str, batch_id: bytes | None = None) -> bytes:
    return request(version, [(Operation.GET, uid_payload(uid), batch_id)])


def parse_lone_get(data: bytes) -> tuple[ProtocolVersion, bytes | None, str] | None:
    """(version, Unique Batch Item ID, Unique Identifier) as the processor reads a lone
    Get: a lone request of Operation Get whose payload is only a text Unique Identifier."""
    lone = parse_lone_request(data)
    if lone is None or lone.operation != Operation.GET:
        return None
    unique_identifier = lone_get_identifier(lone.payload)
    if unique_identifier is None:
        return None
    return lone.version, lone.batch_id, unique_identifier


def _general(data: bytes) -> tuple[ProtocolVersion, bytes | None, str] | None:
    """What the general path reads, when it reads a lone Get naming its object."""
    try:
        message = parse_request(ttlv.decode(data))
    except Exception:
        return None
    header = message.header
    if len(message.batch_items) != 1:
        return None
    item = message.batch_items[0]
    if item.operation != Operation.GET or item.payload is None:
        return None
    children = item.payload.value
    if len(children) != 1 or children[0].tag != Tag.UNIQUE_IDENTIFIER:
        return None
    if children[0].type != ttlv.ItemType.TEXT_STRING:
        return None
    return header.protocol_version, item.unique_batch_item_id, children[0].value


class ParseLoneGetTests(SynchronousTestCase):
    def test_reads_what_the_general_path_reads(self) -> None:
        """Every version, with and without a batch item id, identifiers of every length
        modulo 8 and beyond ASCII."""
        for version in _VERSIONS:
            for batch_id in (None, b"", b"\x01", bytes(range(13))):
                for uid in ("", "a", "abcdefgh", "0c4b3a2e-5d6f-4a1b-9c8d-7e6f5a4b3c2d", "clé-ü"):
                    data = _lone_get(version, uid, batch_id)
                    expected = (ProtocolVersion(*version), batch_id, uid)
                    self.assertEqual(_general(data), expected)
                    self.assertEqual(parse_lone_get(data), expected)

    def test_anything_else_goes_the_general_way(self) -> None:
        """A field more, a field of another type, another operation or count: None."""
        uid = uid_payload("k")
        others = [
            request(V14, [(Operation.LOCATE, uid, None)]),
            request(V14, [(Operation.GET, uid, None), (Operation.GET, uid, None)]),
            request(V14, [(Operation.GET, uid, None)], batch_count=2),
            request(V14, [(Operation.GET, None, None)]),
            request(V14, [(Operation.GET, [], None)]),
            request(
                V14,
                [(Operation.GET, uid, None)],
                header_extra=[ttlv.integer(Tag.MAXIMUM_RESPONSE_SIZE, 100)],
            ),
            request(
                V14,
                [
                    (
                        Operation.GET,
                        [*uid, ttlv.enumeration(Tag.KEY_FORMAT_TYPE, KeyFormatType.RAW)],
                        None,
                    )
                ],
            ),
            request(V20, [(Operation.GET, [ttlv.enumeration(Tag.UNIQUE_IDENTIFIER, 1)], None)]),
            request(V14, [(Operation.GET, [ttlv.byte_string(Tag.UNIQUE_IDENTIFIER, b"k")], None)]),
        ]
        lone = _lone_get(V14, "k")
        others += [lone[:-8], lone + bytes(8), lone[:-1], b"", lone[:16]]
        invalid_utf8 = bytearray(_lone_get(V14, "k"))
        invalid_utf8[-8] = 0xFF
        others.append(bytes(invalid_utf8))
        for data in others:
            self.assertIsNone(parse_lone_get(data), data.hex())

    @settings(max_examples=400, deadline=None)
    @given(
        version=st.sampled_from(_VERSIONS),
        uid=st.text(max_size=20),
        batch_id=st.none() | st.binary(max_size=12),
        mutation=MUTATIONS,
    )
    def test_never_reads_otherwise(
        self, version: tuple[int, int], uid: str, batch_id: bytes | None, mutation: Any
    ) -> None:
        """Whatever bytes are changed, cut or added: what the fast reading accepts, the
        general path reads the same."""
        data = mutated(_lone_get(version, uid, batch_id), mutation)
        found = parse_lone_get(data)
        if found is not None:
            self.assertEqual(found, _general(data))


class EncodeSuccessTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(
        version=st.sampled_from(_VERSIONS),
        time_stamp=st.integers(min_value=0, max_value=2**40),
        operation=st.sampled_from([Operation.GET, Operation.CREATE, 0x12345678]),
        batch_id=st.none() | st.binary(max_size=20),
        texts=st.lists(st.text(max_size=40), max_size=3),
    )
    def test_the_bytes_of_encode_response(
        self,
        version: tuple[int, int],
        time_stamp: int,
        operation: int,
        batch_id: bytes | None,
        texts: list[str],
    ) -> None:
        """One successful item with an encoded payload: the bytes encode_response makes."""
        payload = ttlv.encoded([ttlv.text_string(Tag.UNIQUE_IDENTIFIER, t) for t in texts])
        item = ResponseBatchItem(operation, ResultStatus.SUCCESS, batch_id, payload=[payload])
        expected = encode_response(ProtocolVersion(*version), time_stamp, [item])
        self.assertEqual(
            encode_success(
                ProtocolVersion(*version), time_stamp, operation, batch_id, payload.value
            ),
            expected,
        )


class _Sink:
    """An audit sink keeping what it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record_nowait(self, **fields: Any) -> None:
        self.records.append(fields)


class _RootKeyToCheck:
    """The tenant's root key when it must be asked about before each use (a Key Protect
    root key with ``verify_on_get`` and a check due), and the answer is: disabled."""

    def __init__(self) -> None:
        self.looked_up = 0

    def usable_now(self, tenant: str) -> bool:
        return False

    async def for_tenant(self, tenant: str) -> Any:
        self.looked_up += 1
        raise WrappingError("root key crk-1 is disabled", permanent=True, kind=DENIED)


class FastPathCase(SynchronousTestCase):
    """A processor with an audit sink, answering as the fast paths or the general one."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.sink = _Sink()
        self.processor = KMIPProcessor(self.h.engine, audit=self.sink)
        self.peer = Peer(address="127.0.0.1:1", fingerprint="aa" * 32, tenant="alpha")

    def answer(self, data: bytes) -> tuple[bytes, dict[str, Any]]:
        """The response to ``data`` and its audit record."""
        out = self.successResultOf(Deferred.fromCoroutine(self.processor.process(data, self.peer)))
        return out, self.sink.records[-1]

    def general(self, data: bytes) -> tuple[bytes, dict[str, Any]]:
        """:meth:`answer`, with every message read the general way."""
        self.patch(processor_module, "parse_lone_request", lambda data: None)
        try:
            return self.answer(data)
        finally:
            self.patch(processor_module, "parse_lone_request", parse_lone_request)


class LoneGetTests(FastPathCase):
    def setUp(self) -> None:
        super().setUp()
        self.uid = self.h.create()
        for _ in range(2):  # the first Get clears Fresh, the second keeps its answer
            self.assertTrue(self.h.one(V14, Operation.GET, uid_payload(self.uid)).ok)

    def test_same_bytes_and_record_as_the_general_path(self) -> None:
        """Kept answers in several versions, with and without a batch item id."""
        for version, batch_id in ((V14, None), (V14, b"\x07"), (V11, b"QLKC"), (V20, None)):
            data = _lone_get(version, self.uid, batch_id)
            general = self.general(data)  # also keeps this version's answer
            self.assertEqual(self.answer(data), general)
            self.assertEqual(general[1]["unique_identifier"], self.uid)

    def test_answered_without_decoding(self) -> None:
        """A kept answer is served without the general path's decoding."""
        data = _lone_get(V14, self.uid)

        def refuse(item: Any) -> Any:
            raise AssertionError("the general path ran")

        self.patch(processor_module, "parse_request", refuse)
        response, record = self.answer(data)
        self.assertEqual(record["result"], "success")
        self.assertIn(self.uid.encode(), response)

    def test_answered_at_once(self) -> None:
        """A kept answer whose checks need no waiting is the response itself, not a
        coroutine: the same bytes and record as the general path."""
        for version, batch_id in ((V14, b"\x01"), (V20, None)):
            data = _lone_get(version, self.uid, batch_id)
            general = self.general(data)
            response = self.processor.respond(data, self.peer)
            self.assertIsInstance(response, bytes)
            self.assertEqual((response, self.sink.records[-1]), general)

    def test_a_root_key_to_check_is_waited_for(self) -> None:
        """When the tenant's root key must be checked first, the Get is not answered at
        once; the check runs, and its failure is the answer."""
        root_keys = _RootKeyToCheck()
        self.h.engine.root_keys = root_keys
        answer = self.processor.respond(_lone_get(V14, self.uid), self.peer)
        self.assertNotIsInstance(answer, bytes)
        assert not isinstance(answer, bytes)
        item = read_response(self.successResultOf(Deferred.fromCoroutine(answer))).items[0]
        self.assertGreater(root_keys.looked_up, 0)
        self.assertFalse(item.ok)
        self.assertEqual(item.reason, ResultReason.PERMISSION_DENIED)
        self.assertIn("disabled", item.message or "")
        self.assertEqual(self.sink.records[-1]["result"], "failure")

    def test_an_object_changed_elsewhere_is_read_again(self) -> None:
        """An object updated in the store behind this process's back (by another
        worker) is not served from the kept answer: the Get reads it again, and the
        next one is answered at once from the new answer."""
        obj = self.successResultOf(self.h.store.get_object("alpha", self.uid))
        self.successResultOf(self.h.store.update_object(obj))
        data = _lone_get(V14, self.uid)
        answer = self.processor.respond(data, self.peer)
        self.assertNotIsInstance(answer, bytes)
        assert not isinstance(answer, bytes)
        read_again = self.successResultOf(Deferred.fromCoroutine(answer))
        self.assertTrue(read_response(read_again).items[0].ok)
        self.assertEqual(self.processor.respond(data, self.peer), read_again)

    def test_other_gets_are_answered_by_the_general_path(self) -> None:
        """Nothing kept (another key, another tenant, a changed object): the general
        path answers and audits, the same as without the fast reading."""
        other = self.h.create()
        gone = self.h.create()
        self.assertTrue(self.h.one(V14, Operation.GET, uid_payload(gone)).ok)
        self.assertTrue(self.h.one(V14, Operation.DESTROY, uid_payload(gone)).ok)
        for uid in (other, gone, "no-such-key"):
            data = _lone_get(V14, uid)
            fast = self.answer(data)
            self.assertEqual(fast, self.general(data))
        stranger = Peer(address="127.0.0.1:2", fingerprint="bb" * 32, tenant="beta")
        out = self.successResultOf(
            Deferred.fromCoroutine(self.processor.process(_lone_get(V14, self.uid), stranger))
        )
        self.assertNotIn(b"\x42\x00\x43", out)  # no Key Material for another tenant
        self.assertEqual(self.sink.records[-1]["result"], "failure")
