"""A request of one batch item read at fixed offsets (``messages.parse_lone_request``),
and a lone Create whose payload was seen before run without decoding it again
(``KMIPProcessor._lone_create``).

What is checked: the fixed-offset reading agrees with the general decoding on every
message it accepts (examples and hypothesis mutations); a Create answered this way
makes the same object, response and audit record as the general path; what is
remembered depends on the payload bytes and version alone (payloads naming a Template
are read every time), is bounded, and shares nothing mutable with the objects made.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import processor as processor_module
from kmiptwist import ttlv
from kmiptwist.messages import LoneRequest, ProtocolVersion, parse_lone_request, parse_request
from kmiptwist.processor import MAX_REMEMBERED_CREATES, Peer
from kmiptwist.testing.messages import read_response, request
from kmiptwist.vocabulary.enums import (
    BlockCipherMode,
    ObjectType,
    Operation,
    ResultReason,
    ResultStatus,
)
from kmiptwist.vocabulary.tags import Tag

from .test_lone_get import MUTATIONS, FastPathCase, mutated
from .test_operations import V11, V14, V20, aes_template, attribute_1x, uid_payload
from .test_profile_operations import register_aes_template, xml

_VERSIONS = [(1, 0), V11, (1, 2), (1, 3), V14, V20, (2, 1)]


def _create_payload(template: ttlv.Item | None = None) -> list[ttlv.Item]:
    return [
        ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
        template if template is not None else aes_template(),
    ]


def _general(data: bytes) -> LoneRequest | None:
    """What the general path reads, when it reads one batch item with a payload."""
    try:
        message = parse_request(ttlv.decode(data))
    except Exception:
        return None
    if len(message.batch_items) != 1:
        return None
    item = message.batch_items[0]
    if item.payload is None:
        return None
    return LoneRequest(
        message.header.protocol_version,
        item.unique_batch_item_id,
        item.operation,
        ttlv.encode(item.payload),
    )


class ParseLoneRequestTests(SynchronousTestCase):
    def test_reads_what_the_general_path_reads(self) -> None:
        """Every version, operations and payloads of several shapes, with and without
        a batch item id."""
        payloads = [[], uid_payload("k"), _create_payload(), uid_payload("clé-ü" * 5)]
        for version in _VERSIONS:
            for operation in (Operation.CREATE, Operation.GET, Operation.QUERY, 0xFFFFFFFF):
                for batch_id in (None, b"", b"\x01", bytes(range(13))):
                    for payload in payloads:
                        data = request(version, [(operation, payload, batch_id)])
                        found = parse_lone_request(data)
                        self.assertIsNotNone(found)
                        self.assertEqual(found, _general(data))
                        assert found is not None
                        self.assertEqual(found.version, ProtocolVersion(*version))
                        self.assertEqual(found.operation, operation)

    def test_anything_else_goes_the_general_way(self) -> None:
        """Two items, a header field more, no payload, a payload not last, a cut: None."""
        payload = _create_payload()
        one = request(V14, [(Operation.CREATE, payload, None)])
        others = [
            request(V14, [(Operation.CREATE, payload, None), (Operation.GET, [], None)]),
            request(V14, [(Operation.CREATE, payload, None)], batch_count=2),
            request(V14, [(Operation.CREATE, None, None)]),
            request(
                V14,
                [(Operation.CREATE, payload, None)],
                header_extra=[ttlv.integer(Tag.MAXIMUM_RESPONSE_SIZE, 100)],
            ),
            one[:-8],
            one + bytes(8),
            one[:-1],
            b"",
            one[:16],
        ]
        for data in others:
            self.assertIsNone(parse_lone_request(data), data.hex())

    @settings(max_examples=400, deadline=None)
    @given(
        version=st.sampled_from(_VERSIONS),
        operation=st.sampled_from([Operation.CREATE, Operation.GET, Operation.ACTIVATE]),
        batch_id=st.none() | st.binary(max_size=12),
        mutation=MUTATIONS,
    )
    def test_never_reads_otherwise(
        self, version: tuple[int, int], operation: int, batch_id: bytes | None, mutation: Any
    ) -> None:
        """Whatever bytes are changed, cut or added: what the fast reading accepts, the
        general path reads the same, or fails to read in the payload, which the fast
        reading does not decode."""
        data = mutated(request(version, [(operation, _create_payload(), batch_id)]), mutation)
        found = parse_lone_request(data)
        if found is not None:
            general = _general(data)
            if general is None:
                self.assertRaises(ttlv.TTLVError, ttlv.decode, found.payload)
            else:
                # The payload as sent (padding included) against the general reading's.
                payload = ttlv.encode(ttlv.decode(found.payload))
                self.assertEqual(found._replace(payload=payload), general)


class LoneCreateTests(FastPathCase):
    def setUp(self) -> None:
        super().setUp()
        self.h.processor = self.processor  # its helpers' requests share the remembered reads

    def described(self, uid: str) -> dict[str, Any]:
        """The object's attributes, but those no two objects share."""
        attributes = self.h.attributes_1x(uid, version=V14)
        for name in ("Unique Identifier", "Short Unique Identifier", "Digest"):
            attributes.pop(name, None)
        return attributes

    def test_same_object_response_and_record_as_the_general_path(self) -> None:
        """First and later sight of a payload, several versions, with and without a
        batch item id: the same response (but for the identifier), record and object."""
        for version, batch_id in ((V11, b"QLKC\x01\x00\x00\x00"), (V14, None), (V20, b"\x07")):
            data = request(version, [(Operation.CREATE, _create_payload(), batch_id)])
            general, general_record = self.general(data)
            for _ in range(2):
                fast, fast_record = self.answer(data)
                expected_uid = general_record["unique_identifier"]
                uid = fast_record["unique_identifier"]
                self.assertNotEqual(uid, expected_uid)
                self.assertEqual(fast, general.replace(expected_uid.encode(), uid.encode()))
                self.assertEqual(
                    {**fast_record, "unique_identifier": None},
                    {**general_record, "unique_identifier": None},
                )
                self.assertEqual(self.described(uid), self.described(expected_uid))
        self.assertEqual(len(self.processor._creates), 3)

    def test_seen_payload_is_not_decoded(self) -> None:
        """The second Create of a payload runs without the general decoding, and makes
        another key."""
        data = request(V11, [(Operation.CREATE, _create_payload(), b"QLKC\x01\x00\x00\x00")])
        first = self.answer(data)[1]["unique_identifier"]

        def refuse(item: Any) -> Any:
            raise AssertionError("the request was decoded")

        self.patch(processor_module, "parse_request", refuse)
        response, record = self.answer(data)
        self.assertEqual(record["result"], "success")
        self.assertNotEqual(record["unique_identifier"], first)
        self.assertIn(record["unique_identifier"].encode(), response)

    def test_objects_share_nothing_mutable(self) -> None:
        """A remembered structure value is copied for every object made from it."""
        parameters = ttlv.structure(
            0, [ttlv.enumeration(Tag.BLOCK_CIPHER_MODE, BlockCipherMode.GCM)]
        )
        template = aes_template(extra=[attribute_1x("Cryptographic Parameters", parameters)])
        data = request(V14, [(Operation.CREATE, _create_payload(template), None)])
        given: list[list[tuple[str, ttlv.Item]]] = []
        create_from = processor_module.create_from

        def keep(context: Any, object_type: int, attributes: Any) -> Any:
            given.append(attributes)
            return create_from(context, object_type, attributes)

        self.patch(processor_module, "create_from", keep)
        for _ in range(3):
            self.assertEqual(self.answer(data)[1]["result"], "success")
        ((_, remembered),) = self.processor._creates.values()
        kept = [dict(attributes)["Cryptographic Parameters"] for attributes in given]
        kept.append(dict(remembered)["Cryptographic Parameters"])
        self.assertEqual(len({id(item.value) for item in kept}), len(kept))
        self.assertEqual(len({tuple(item.value) for item in kept}), 1)

    def test_template_names_are_read_every_time(self) -> None:
        """A payload naming a Template is not remembered: once the template is
        destroyed, the same bytes fail as the general path fails them."""
        template_uid = register_aes_template(self, self.h, "aes-128")
        data = request(
            V14,
            [
                (
                    Operation.CREATE,
                    xml(
                        '<ObjectType type="Enumeration" value="SymmetricKey"/><TemplateAttribute>'
                        '<Name><NameValue type="TextString" value="aes-128"/>'
                        '<NameType type="Enumeration" value="UninterpretedTextString"/></Name>'
                        "</TemplateAttribute>"
                    ),
                    None,
                )
            ],
        )
        for _ in range(2):
            out, record = self.answer(data)
            self.assertEqual(record["result"], "success")
            created = self.described(record["unique_identifier"])
            self.assertEqual(created["Cryptographic Length"], [128])
        self.assertEqual(self.processor._creates, {})
        self.assertTrue(self.h.one(V14, Operation.DESTROY, uid_payload(template_uid)).ok)
        out, record = self.answer(data)
        self.assertEqual(record["result"], "failure")
        item = read_response(out).items[0]
        self.assertEqual(item.reason, ResultReason.ITEM_NOT_FOUND)
        self.assertEqual(out, self.general(data)[0])

    def test_failures_answer_as_the_general_path(self) -> None:
        """A payload Create refuses (another object type, no algorithm, an unknown
        attribute, no object type) or that is no TTLV gets the general path's bytes, on
        first and later sight."""
        no_algorithm = ttlv.structure(
            Tag.TEMPLATE_ATTRIBUTE,
            [attribute_1x("Cryptographic Length", ttlv.integer(0, 256))],
        )
        unknown = ttlv.structure(
            Tag.TEMPLATE_ATTRIBUTE, [attribute_1x("Colour", ttlv.text_string(0, "blue"))]
        )
        payloads = [
            [ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SECRET_DATA), aes_template()],
            _create_payload(no_algorithm),
            _create_payload(unknown),
            [aes_template()],
        ]
        malformed = request(V14, [(Operation.CREATE, _create_payload(), b"\x01")])
        object_type_head = bytes.fromhex("42005705")
        self.assertEqual(malformed.count(object_type_head), 1)
        malformed = malformed.replace(object_type_head, bytes.fromhex("4200570e"))
        messages = [request(V14, [(Operation.CREATE, p, b"\x01")]) for p in payloads]
        for data in [*messages, malformed]:
            expected, expected_record = self.general(data)
            self.assertEqual(read_response(expected).items[0].status, ResultStatus.OPERATION_FAILED)
            for _ in range(2):
                self.assertEqual(self.answer(data), (expected, expected_record))

    def test_remembered_payloads_are_bounded(self) -> None:
        """However many distinct payloads come, at most MAX_REMEMBERED_CREATES are kept;
        the same bytes in another version are another entry."""
        for mask in range(1, MAX_REMEMBERED_CREATES + 6):
            template = aes_template(mask=mask)
            data = request(V14, [(Operation.CREATE, _create_payload(template), None)])
            self.assertEqual(self.answer(data)[1]["result"], "success")
            self.assertLessEqual(len(self.processor._creates), MAX_REMEMBERED_CREATES)
        self.processor._creates.clear()
        for version in (V11, V14):
            self.answer(request(version, [(Operation.CREATE, _create_payload(), None)]))
        self.assertEqual(
            sorted(version for version, _ in self.processor._creates),
            [ProtocolVersion(*V11), ProtocolVersion(*V14)],
        )

    def test_peer_without_tenant_is_refused_as_before(self) -> None:
        """A lone Create from a certificate nobody registered makes nothing."""
        data = request(V11, [(Operation.CREATE, _create_payload(), None)])
        stranger = Peer(address="127.0.0.1:2", fingerprint="bb" * 32, tenant=None)
        out = self.successResultOf(Deferred.fromCoroutine(self.processor.process(data, stranger)))
        self.assertEqual(read_response(out).items[0].status, ResultStatus.OPERATION_FAILED)
        self.assertEqual(self.processor._creates, {})
