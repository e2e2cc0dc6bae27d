"""Operation tests: whole requests through the processor, over an in-memory store.

Each test sends TTLV a real client would send and reads the response the way a
client would, so what is checked here is what a KMIP client sees.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.engine import Engine, SingleRootKey
from kmiptwist.processor import KMIPProcessor, Peer
from kmiptwist.testing.fake_wrapper import FakeWrapper
from kmiptwist.testing.memory_store import MemoryStore
from kmiptwist.testing.messages import (
    Response,
    attribute_1x,
    name_1x,
    read_response,
    request,
    template_1x,
)
from kmiptwist.vocabulary.enums import (
    BatchErrorContinuationOption,
    CryptographicAlgorithm,
    KeyFormatType,
    ObjectType,
    Operation,
    QueryFunction,
    ResultReason,
    ResultStatus,
    SecretDataType,
    State,
)
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.wrapping.cache import MaterialCache

V11 = (1, 1)
V14 = (1, 4)
V20 = (2, 0)
QLKC = bytes.fromhex("514c4b4301000000")


def aes_template(
    length: int = 256, mask: int = 12, extra: list[ttlv.Item] | None = None
) -> ttlv.Item:
    """vCenter's Create template: AES, Encrypt|Decrypt, 256 bits."""
    return template_1x(
        [
            attribute_1x(
                "Cryptographic Algorithm", ttlv.enumeration(0, CryptographicAlgorithm.AES)
            ),
            attribute_1x("Cryptographic Usage Mask", ttlv.integer(0, mask)),
            attribute_1x("Cryptographic Length", ttlv.integer(0, length)),
            *(extra or []),
        ]
    )


class Harness:
    """A processor over a memory store, with helpers to speak to it as a tenant."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.case = case
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore()
        self.wrapper = FakeWrapper()
        self.engine = Engine(
            store=self.store,
            tenancy=self.store,
            root_keys=SingleRootKey(self.wrapper),
            cache=MaterialCache(100, 60, self.clock),
            clock=self.clock,
        )
        self.processor = KMIPProcessor(self.engine)

    def send(
        self, data: bytes, tenant: str | None = "alpha", fingerprint: str | None = "aa" * 32
    ) -> Response:
        """Process one request as ``tenant``; return the decoded response."""
        peer = Peer(address="127.0.0.1", fingerprint=fingerprint, tenant=tenant)
        result = self.case.successResultOf(
            Deferred.fromCoroutine(self.processor.process(data, peer))
        )
        return read_response(result)

    def one(self, version, operation, payload, tenant="alpha", batch_id=None):
        """Send one operation; return its batch item."""
        response = self.send(request(version, [(operation, payload, batch_id)]), tenant=tenant)
        self.case.assertEqual(response.version, version)
        self.case.assertEqual(len(response.items), 1)
        return response.items[0]

    def create(self, version=V11, tenant="alpha", template=None) -> str:
        """Create an AES key; return its identifier."""
        item = self.one(
            version,
            Operation.CREATE,
            [
                ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
                template or aes_template(),
            ],
            tenant=tenant,
        )
        self.case.assertTrue(item.ok, item.message)
        return item.get(Tag.UNIQUE_IDENTIFIER)

    def attributes_1x(self, uid: str, *names: str, version=V11, tenant="alpha") -> dict:
        """Get Attributes (1.x); return name -> list of values."""
        item = self.one(
            version,
            Operation.GET_ATTRIBUTES,
            [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)]
            + [ttlv.text_string(Tag.ATTRIBUTE_NAME, n) for n in names],
            tenant=tenant,
        )
        self.case.assertTrue(item.ok, item.message)
        found: dict = {}
        for attribute in item.payload.find_all(Tag.ATTRIBUTE):
            found.setdefault(attribute.get(Tag.ATTRIBUTE_NAME), []).append(
                attribute.get(Tag.ATTRIBUTE_VALUE)
            )
        return found


def uid_payload(uid: str) -> list[ttlv.Item]:
    return [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)]


def revoke_payload(uid: str) -> list[ttlv.Item]:
    """Revoke ``uid`` with Revocation Reason Code 5 (Cessation of Operation)."""
    return [
        *uid_payload(uid),
        ttlv.structure(Tag.REVOCATION_REASON, [ttlv.enumeration(Tag.REVOCATION_REASON_CODE, 5)]),
    ]


class VCenterFlowTests(SynchronousTestCase):
    """vCenter's VM-encryption flow (reference §1.3 d) works item by item."""

    def test_vm_encryption_flow(self) -> None:
        """Create, probe x- attributes, add three in one batch, get, activate."""
        h = Harness(self)
        dv = h.send(request(V11, [(Operation.DISCOVER_VERSIONS, [], None)]))
        self.assertTrue(dv.items[0].ok)
        self.assertIsNone(dv.items[0].batch_id)
        uid = h.create()
        for name in ("x-Product_Version", "x-Vendor", "x-Product"):
            item = h.one(
                V11,
                Operation.GET_ATTRIBUTES,
                uid_payload(uid) + [ttlv.text_string(Tag.ATTRIBUTE_NAME, name)],
                batch_id=QLKC,
            )
            self.assertTrue(item.ok)
            self.assertEqual(item.batch_id, QLKC)
            self.assertEqual(item.payload.find_all(Tag.ATTRIBUTE), [])
        values = [
            ("x-Product_Version", "7.0.3 build-19480866"),
            ("x-Vendor", "VMware, Inc."),
            ("x-Product", "VMware vSphere"),
        ]
        batch = [
            (
                Operation.ADD_ATTRIBUTE,
                uid_payload(uid) + [attribute_1x(name, ttlv.text_string(0, value))],
                bytes.fromhex(f"514c4b43{n:02x}000000"),
            )
            for n, (name, value) in enumerate(values, 1)
        ]
        response = h.send(request(V11, batch))
        self.assertEqual([i.ok for i in response.items], [True, True, True])
        self.assertEqual([i.batch_id for i in response.items], [b[2] for b in batch])
        found = h.attributes_1x(uid, "x-Product_Version", "x-Vendor", "x-Product")
        self.assertEqual(found, {name: [value] for name, value in values})
        got = h.one(V11, Operation.GET, uid_payload(uid))
        self.assertTrue(got.ok, got.message)
        block = got.payload.find(Tag.SYMMETRIC_KEY).find(Tag.KEY_BLOCK)
        self.assertEqual(block.get(Tag.KEY_FORMAT_TYPE), KeyFormatType.RAW)
        self.assertEqual(len(block.find(Tag.KEY_VALUE).get(Tag.KEY_MATERIAL)), 32)
        self.assertEqual(block.get(Tag.CRYPTOGRAPHIC_ALGORITHM), CryptographicAlgorithm.AES)
        self.assertEqual(h.attributes_1x(uid, "State")["State"], [State.PRE_ACTIVE])
        self.assertTrue(h.one(V11, Operation.ACTIVATE, uid_payload(uid)).ok)
        self.assertEqual(h.attributes_1x(uid, "State")["State"], [State.ACTIVE])

    def test_query_server_information(self) -> None:
        """Query Server Information names the vendor, as vCenter asks."""
        h = Harness(self)
        item = h.one(
            V11,
            Operation.QUERY,
            [ttlv.enumeration(Tag.QUERY_FUNCTION, QueryFunction.QUERY_SERVER_INFORMATION)],
        )
        self.assertTrue(item.ok)
        self.assertEqual(item.get(Tag.VENDOR_IDENTIFICATION), "kmiptwist")

    def test_query_operations_lists_only_implemented(self) -> None:
        """Query Operations lists what works, and no 2.x-only operation to a 1.1 client."""
        h = Harness(self)
        item = h.one(
            V11,
            Operation.QUERY,
            [ttlv.enumeration(Tag.QUERY_FUNCTION, QueryFunction.QUERY_OPERATIONS)],
        )
        operations = {i.value for i in item.payload.find_all(Tag.OPERATION)}
        self.assertIn(Operation.CREATE, operations)
        self.assertIn(Operation.ADD_ATTRIBUTE, operations)
        self.assertNotIn(Operation.SET_ATTRIBUTE, operations)
        self.assertNotIn(Operation.ENCRYPT, operations)


class LifecycleTests(SynchronousTestCase):
    """The state machine as a client meets it."""

    def test_destroy_active_refused_then_revoke_destroy(self) -> None:
        """An Active key must be revoked before it can be destroyed; then Get fails."""
        h = Harness(self)
        uid = h.create()
        self.assertTrue(h.one(V14, Operation.ACTIVATE, uid_payload(uid)).ok)
        refused = h.one(V14, Operation.DESTROY, uid_payload(uid))
        self.assertEqual(refused.reason, ResultReason.PERMISSION_DENIED)
        revoke = h.one(
            V14,
            Operation.REVOKE,
            revoke_payload(uid),
        )
        self.assertTrue(revoke.ok, revoke.message)
        self.assertEqual(h.attributes_1x(uid, "State", version=V14)["State"], [State.DEACTIVATED])
        self.assertTrue(h.one(V14, Operation.DESTROY, uid_payload(uid)).ok)
        attributes = h.attributes_1x(uid, version=V14)
        self.assertEqual(attributes["State"], [State.DESTROYED])
        self.assertIn("Destroy Date", attributes)
        got = h.one(V14, Operation.GET, uid_payload(uid))
        self.assertEqual(got.status, ResultStatus.OPERATION_FAILED)
        stored = self.successResultOf(h.store.get_object("alpha", uid))
        self.assertIsNone(stored.wrapped_material)

    def test_activate_twice(self) -> None:
        """Activating an Active key says Wrong Key Lifecycle State in KMIP 2.x, and
        Permission Denied to a 1.x client, whose version has no such reason."""
        h = Harness(self)
        uid = h.create()
        h.one(V11, Operation.ACTIVATE, uid_payload(uid))
        again = h.one(V11, Operation.ACTIVATE, uid_payload(uid))
        self.assertEqual(again.reason, ResultReason.PERMISSION_DENIED)
        again = h.one(V20, Operation.ACTIVATE, uid_payload(uid))
        self.assertEqual(again.reason, ResultReason.WRONG_KEY_LIFECYCLE_STATE)

    def test_compromise(self) -> None:
        """Revoke with Key Compromise makes the key Compromised, with its dates."""
        h = Harness(self)
        uid = h.create()
        item = h.one(
            V14,
            Operation.REVOKE,
            uid_payload(uid)
            + [
                ttlv.structure(
                    Tag.REVOCATION_REASON, [ttlv.enumeration(Tag.REVOCATION_REASON_CODE, 2)]
                )
            ],
        )
        self.assertTrue(item.ok, item.message)
        attributes = h.attributes_1x(uid, version=V14)
        self.assertEqual(attributes["State"], [State.COMPROMISED])
        self.assertIn("Compromise Date", attributes)

    def test_standard_attributes_after_create(self) -> None:
        """Create sets the attributes the SKLC profile expects, Pre-Active, with a digest."""
        h = Harness(self)
        uid = h.create(version=V14)
        attributes = h.attributes_1x(uid, version=V14)
        for name in (
            "Unique Identifier",
            "Object Type",
            "Cryptographic Algorithm",
            "Cryptographic Length",
            "Cryptographic Usage Mask",
            "State",
            "Digest",
            "Initial Date",
            "Last Change Date",
            "Original Creation Date",
            "Sensitive",
            "Extractable",
            "Always Sensitive",
            "Never Extractable",
            "Fresh",
            "Lease Time",
            "Random Number Generator",
        ):
            self.assertIn(name, attributes)
        self.assertEqual(attributes["Initial Date"], [1_800_000_000])
        self.assertEqual(attributes["Fresh"], [True])
        # A KMIP 1.1 client is never shown attributes its version does not define.
        old_client = h.attributes_1x(uid, version=V11)
        for name in ("Original Creation Date", "Sensitive", "Random Number Generator"):
            self.assertNotIn(name, old_client)
        self.assertIn("Lease Time", old_client)

    def test_activation_date_in_the_past(self) -> None:
        """A key created with a past Activation Date is Active at once."""
        h = Harness(self)
        template = aes_template(
            extra=[attribute_1x("Activation Date", ttlv.date_time(0, 1_700_000_000))]
        )
        uid = h.create(template=template)
        self.assertEqual(h.attributes_1x(uid, "State")["State"], [State.ACTIVE])

    def test_unsupported_length(self) -> None:
        """AES-100 is refused with Invalid Field and says which lengths work."""
        h = Harness(self)
        item = h.one(
            V14,
            Operation.CREATE,
            [ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY), aes_template(length=100)],
        )
        self.assertEqual(item.reason, ResultReason.INVALID_FIELD)
        self.assertIn("128, 192, 256", item.message)

    def test_hmac_and_3des(self) -> None:
        """HMAC-SHA256 and 3DES keys can be created."""
        h = Harness(self)
        for algorithm, length, size in (
            (CryptographicAlgorithm.HMAC_SHA256, 256, 32),
            (CryptographicAlgorithm.TRIPLE_DES, 168, 24),
        ):
            template = template_1x(
                [
                    attribute_1x("Cryptographic Algorithm", ttlv.enumeration(0, algorithm)),
                    attribute_1x("Cryptographic Length", ttlv.integer(0, length)),
                ]
            )
            uid = h.create(version=V14, template=template)
            got = h.one(V14, Operation.GET, uid_payload(uid))
            material = (
                got.payload.find(Tag.SYMMETRIC_KEY)
                .find(Tag.KEY_BLOCK)
                .find(Tag.KEY_VALUE)
                .get(Tag.KEY_MATERIAL)
            )
            self.assertEqual(len(material), size)


class RegisterTests(SynchronousTestCase):
    """Register keeps what the client gave and returns it byte for byte."""

    def test_register_symmetric_key_and_transparent_get(self) -> None:
        """A registered key comes back Raw, or Transparent on request."""
        h = Harness(self)
        key = bytes(range(16))
        item = h.one(
            V14,
            Operation.REGISTER,
            [
                ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
                template_1x([attribute_1x("Cryptographic Usage Mask", ttlv.integer(0, 12))]),
                ttlv.structure(
                    Tag.SYMMETRIC_KEY,
                    [
                        ttlv.structure(
                            Tag.KEY_BLOCK,
                            [
                                ttlv.enumeration(Tag.KEY_FORMAT_TYPE, KeyFormatType.RAW),
                                ttlv.structure(
                                    Tag.KEY_VALUE, [ttlv.byte_string(Tag.KEY_MATERIAL, key)]
                                ),
                                ttlv.enumeration(
                                    Tag.CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm.AES
                                ),
                                ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, 128),
                            ],
                        )
                    ],
                ),
            ],
        )
        self.assertTrue(item.ok, item.message)
        uid = item.get(Tag.UNIQUE_IDENTIFIER)
        got = h.one(V14, Operation.GET, uid_payload(uid))
        block = got.payload.find(Tag.SYMMETRIC_KEY).find(Tag.KEY_BLOCK)
        self.assertEqual(block.find(Tag.KEY_VALUE).get(Tag.KEY_MATERIAL), key)
        transparent = h.one(
            V14,
            Operation.GET,
            uid_payload(uid)
            + [ttlv.enumeration(Tag.KEY_FORMAT_TYPE, KeyFormatType.TRANSPARENT_SYMMETRIC_KEY)],
        )
        material = (
            transparent.payload.find(Tag.SYMMETRIC_KEY)
            .find(Tag.KEY_BLOCK)
            .find(Tag.KEY_VALUE)
            .find(Tag.KEY_MATERIAL)
        )
        self.assertEqual(material.get(Tag.KEY), key)
        pkcs = h.one(
            V14,
            Operation.GET,
            uid_payload(uid) + [ttlv.enumeration(Tag.KEY_FORMAT_TYPE, KeyFormatType.PKCS_8)],
        )
        self.assertEqual(pkcs.reason, ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED)
        attributes = h.attributes_1x(uid, version=V14)
        self.assertEqual(attributes["Cryptographic Length"], [128])
        self.assertEqual(attributes["State"], [State.PRE_ACTIVE])

    def test_register_secret_data_and_opaque(self) -> None:
        """Secret data and opaque objects round-trip."""
        h = Harness(self)
        secret = h.one(
            V14,
            Operation.REGISTER,
            [
                ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SECRET_DATA),
                template_1x([]),
                ttlv.structure(
                    Tag.SECRET_DATA,
                    [
                        ttlv.enumeration(Tag.SECRET_DATA_TYPE, SecretDataType.PASSWORD),
                        ttlv.structure(
                            Tag.KEY_BLOCK,
                            [
                                ttlv.enumeration(Tag.KEY_FORMAT_TYPE, KeyFormatType.OPAQUE),
                                ttlv.structure(
                                    Tag.KEY_VALUE, [ttlv.byte_string(Tag.KEY_MATERIAL, b"hunter2")]
                                ),
                            ],
                        ),
                    ],
                ),
            ],
        )
        self.assertTrue(secret.ok, secret.message)
        got = h.one(V14, Operation.GET, uid_payload(secret.get(Tag.UNIQUE_IDENTIFIER)))
        self.assertEqual(got.get(Tag.OBJECT_TYPE), ObjectType.SECRET_DATA)
        data = got.payload.find(Tag.SECRET_DATA)
        self.assertEqual(data.get(Tag.SECRET_DATA_TYPE), SecretDataType.PASSWORD)
        self.assertEqual(
            data.find(Tag.KEY_BLOCK).find(Tag.KEY_VALUE).get(Tag.KEY_MATERIAL), b"hunter2"
        )
        opaque = h.one(
            V14,
            Operation.REGISTER,
            [
                ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.OPAQUE_OBJECT),
                template_1x([]),
                ttlv.structure(
                    Tag.OPAQUE_OBJECT,
                    [
                        ttlv.enumeration(Tag.OPAQUE_DATA_TYPE, 0x80000000),
                        ttlv.byte_string(Tag.OPAQUE_DATA_VALUE, b"blob"),
                    ],
                ),
            ],
        )
        self.assertTrue(opaque.ok, opaque.message)
        got = h.one(V14, Operation.GET, uid_payload(opaque.get(Tag.UNIQUE_IDENTIFIER)))
        self.assertEqual(got.payload.find(Tag.OPAQUE_OBJECT).get(Tag.OPAQUE_DATA_VALUE), b"blob")

    def test_material_is_wrapped_with_aad(self) -> None:
        """The store holds only wrapped material, never the bytes Get returns."""
        h = Harness(self)
        uid = h.create()
        got = h.one(V11, Operation.GET, uid_payload(uid))
        key = (
            got.payload.find(Tag.SYMMETRIC_KEY)
            .find(Tag.KEY_BLOCK)
            .find(Tag.KEY_VALUE)
            .get(Tag.KEY_MATERIAL)
        )
        stored = self.successResultOf(h.store.get_object("alpha", uid))
        self.assertNotIn(key, stored.wrapped_material)


class IsolationTests(SynchronousTestCase):
    """A tenant's objects do not exist for another tenant."""

    def test_other_tenant_sees_nothing(self) -> None:
        """Get, Get Attributes, Locate, Destroy from tenant B: Item Not Found / nothing."""
        h = Harness(self)
        uid = h.create(tenant="alpha")
        for operation in (
            Operation.GET,
            Operation.GET_ATTRIBUTES,
            Operation.DESTROY,
            Operation.ACTIVATE,
        ):
            item = h.one(V14, operation, uid_payload(uid), tenant="beta")
            self.assertEqual(item.reason, ResultReason.ITEM_NOT_FOUND, operation)
        located = h.one(V14, Operation.LOCATE, [], tenant="beta")
        self.assertEqual(located.payload.find_all(Tag.UNIQUE_IDENTIFIER), [])
        self.assertEqual(h.attributes_1x(uid, "State")["State"], [State.PRE_ACTIVE])

    def test_unregistered_peer_refused(self) -> None:
        """A certificate with no tenant gets Authentication Not Successful and a reason."""
        h = Harness(self)
        response = h.send(
            request(V11, [(Operation.DISCOVER_VERSIONS, [], None)]),
            tenant=None,
            fingerprint="ab" * 32,
        )
        self.assertEqual(response.items[0].reason, ResultReason.AUTHENTICATION_NOT_SUCCESSFUL)
        self.assertIn("ab" * 32, response.items[0].message)
        self.assertIn("pending", response.items[0].message)


class LocateTests(SynchronousTestCase):
    """Locate finds by any attribute, pages, and stays in the tenant."""

    def _named(self, h: Harness, name: str, version=V14) -> str:
        return h.create(
            version=version, template=aes_template(extra=[attribute_1x("Name", name_1x(name))])
        )

    def test_by_name_custom_and_paging(self) -> None:
        """Locate by Name, by an x- attribute, with Maximum and Offset Items."""
        h = Harness(self)
        first = self._named(h, "disk-1")
        second = self._named(h, "disk-2")
        h.one(
            V14,
            Operation.ADD_ATTRIBUTE,
            uid_payload(second) + [attribute_1x("x-Component", ttlv.text_string(0, "ESXi Server"))],
        )
        by_name = h.one(V14, Operation.LOCATE, [attribute_1x("Name", name_1x("disk-1"))])
        self.assertEqual(
            [i.value for i in by_name.payload.find_all(Tag.UNIQUE_IDENTIFIER)], [first]
        )
        # Located Items comes with paging (Maximum/Offset Items), as OASIS clients expect.
        self.assertIsNone(by_name.get(Tag.LOCATED_ITEMS))
        by_custom = h.one(
            V14, Operation.LOCATE, [attribute_1x("x-Component", ttlv.text_string(0, "ESXi Server"))]
        )
        self.assertEqual(
            [i.value for i in by_custom.payload.find_all(Tag.UNIQUE_IDENTIFIER)], [second]
        )
        everything = h.one(
            V14,
            Operation.LOCATE,
            [attribute_1x("Object Type", ttlv.enumeration(0, ObjectType.SYMMETRIC_KEY))],
        )
        self.assertEqual(
            [i.value for i in everything.payload.find_all(Tag.UNIQUE_IDENTIFIER)], [second, first]
        )
        page = h.one(
            V14,
            Operation.LOCATE,
            [ttlv.integer(Tag.MAXIMUM_ITEMS, 1), ttlv.integer(Tag.OFFSET_ITEMS, 1)],
        )
        self.assertEqual([i.value for i in page.payload.find_all(Tag.UNIQUE_IDENTIFIER)], [first])
        self.assertEqual(page.get(Tag.LOCATED_ITEMS), 2)

    def test_by_state_and_date_range(self) -> None:
        """Locate by State, and by Initial Date between two bounds."""
        h = Harness(self)
        early = h.create(version=V14)
        h.clock.advance(100)
        late = h.create(version=V14)
        h.one(V14, Operation.ACTIVATE, uid_payload(late))
        active = h.one(
            V14, Operation.LOCATE, [attribute_1x("State", ttlv.enumeration(0, State.ACTIVE))]
        )
        self.assertEqual([i.value for i in active.payload.find_all(Tag.UNIQUE_IDENTIFIER)], [late])
        window = h.one(
            V14,
            Operation.LOCATE,
            [
                attribute_1x("Initial Date", ttlv.date_time(0, 1_800_000_000 - 1)),
                attribute_1x("Initial Date", ttlv.date_time(0, 1_800_000_050)),
            ],
        )
        self.assertEqual([i.value for i in window.payload.find_all(Tag.UNIQUE_IDENTIFIER)], [early])

    def test_by_state_as_time_moves_it(self) -> None:
        """Locate by State finds an object in the state its Activation and Deactivation
        Dates have moved it to, though nothing wrote it since."""
        h = Harness(self)
        now = 1_800_000_000

        def dated(*dates: tuple[str, int]) -> str:
            extra = [attribute_1x(name, ttlv.date_time(0, when)) for name, when in dates]
            return h.create(version=V14, template=aes_template(extra=extra))

        def located(state: int) -> list[str]:
            item = h.one(V14, Operation.LOCATE, [attribute_1x("State", ttlv.enumeration(0, state))])
            self.assertTrue(item.ok, item.message)
            return [i.value for i in item.payload.find_all(Tag.UNIQUE_IDENTIFIER)]

        first = dated(("Activation Date", now + 100))
        second = dated(("Activation Date", now + 100), ("Deactivation Date", now + 200))
        plain = dated()
        self.assertEqual(located(State.PRE_ACTIVE), [plain, second, first])
        self.assertEqual(located(State.ACTIVE), [])
        h.clock.advance(150)
        self.assertEqual(located(State.ACTIVE), [second, first])
        self.assertEqual(located(State.PRE_ACTIVE), [plain])
        h.clock.advance(100)
        self.assertEqual(located(State.DEACTIVATED), [second])
        self.assertEqual(located(State.ACTIVE), [first])
        self.assertEqual(h.attributes_1x(second, "State")["State"], [State.DEACTIVATED])

    def test_locate_2x(self) -> None:
        """KMIP 2.0 Locate with an Attributes structure."""
        h = Harness(self)
        uid = h.create(version=V14)
        item = h.one(
            V20,
            Operation.LOCATE,
            [
                ttlv.structure(
                    Tag.ATTRIBUTES, [ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY)]
                )
            ],
        )
        self.assertTrue(item.ok, item.message)
        self.assertEqual([i.value for i in item.payload.find_all(Tag.UNIQUE_IDENTIFIER)], [uid])


class AttributeTests(SynchronousTestCase):
    """Attribute operations in 1.x and 2.x forms."""

    def test_single_valued_add_refused(self) -> None:
        """Adding a second Cryptographic Usage Mask is refused; a second x- value is fine."""
        h = Harness(self)
        uid = h.create(version=V14)
        refused = h.one(
            V14,
            Operation.ADD_ATTRIBUTE,
            uid_payload(uid) + [attribute_1x("Cryptographic Usage Mask", ttlv.integer(0, 4))],
        )
        self.assertEqual(refused.status, ResultStatus.OPERATION_FAILED)
        for value in ("a", "b"):
            item = h.one(
                V14,
                Operation.ADD_ATTRIBUTE,
                uid_payload(uid) + [attribute_1x("x-tag", ttlv.text_string(0, value))],
            )
            self.assertTrue(item.ok)
        self.assertEqual(h.attributes_1x(uid, "x-tag", version=V14)["x-tag"], ["a", "b"])

    def test_server_only_attribute_refused(self) -> None:
        """A client cannot set State or Unique Identifier."""
        h = Harness(self)
        uid = h.create(version=V14)
        item = h.one(
            V14,
            Operation.ADD_ATTRIBUTE,
            uid_payload(uid) + [attribute_1x("State", ttlv.enumeration(0, 2))],
        )
        self.assertEqual(item.reason, ResultReason.PERMISSION_DENIED)
        self.assertEqual(h.attributes_1x(uid, "State", version=V14)["State"], [State.PRE_ACTIVE])

    def test_modify_delete_1x(self) -> None:
        """Modify then Delete an x- attribute by index (1.x)."""
        h = Harness(self)
        uid = h.create(version=V14)
        h.one(
            V14,
            Operation.ADD_ATTRIBUTE,
            uid_payload(uid) + [attribute_1x("x-Name", ttlv.text_string(0, "old"))],
        )
        modified = h.one(
            V14,
            Operation.MODIFY_ATTRIBUTE,
            uid_payload(uid) + [attribute_1x("x-Name", ttlv.text_string(0, "new"))],
        )
        self.assertTrue(modified.ok, modified.message)
        self.assertEqual(h.attributes_1x(uid, "x-Name", version=V14)["x-Name"], ["new"])
        deleted = h.one(
            V14,
            Operation.DELETE_ATTRIBUTE,
            uid_payload(uid) + [ttlv.text_string(Tag.ATTRIBUTE_NAME, "x-Name")],
        )
        self.assertTrue(deleted.ok, deleted.message)
        self.assertNotIn("x-Name", h.attributes_1x(uid, version=V14))
        again = h.one(
            V14,
            Operation.DELETE_ATTRIBUTE,
            uid_payload(uid) + [ttlv.text_string(Tag.ATTRIBUTE_NAME, "x-Name")],
        )
        self.assertEqual(again.status, ResultStatus.OPERATION_FAILED)

    def test_wrong_type_for_known_attribute(self) -> None:
        """Cryptographic Length sent as a Text String is refused with Invalid Field."""
        h = Harness(self)
        uid = h.create(version=V14)
        item = h.one(
            V14,
            Operation.MODIFY_ATTRIBUTE,
            uid_payload(uid) + [attribute_1x("Contact Information", ttlv.integer(0, 5))],
        )
        self.assertEqual(item.reason, ResultReason.INVALID_FIELD)

    def test_2x_vendor_attributes_and_set(self) -> None:
        """2.0 clients see x- attributes as vendor attributes and can Set Attribute."""
        h = Harness(self)
        uid = h.create(version=V14)
        h.one(
            V14,
            Operation.ADD_ATTRIBUTE,
            uid_payload(uid) + [attribute_1x("x-Vendor", ttlv.text_string(0, "VMware, Inc."))],
        )
        item = h.one(V20, Operation.GET_ATTRIBUTES, uid_payload(uid))
        self.assertTrue(item.ok, item.message)
        attributes = item.payload.find(Tag.ATTRIBUTES)
        vendor = [
            a for a in attributes.find_all(Tag.ATTRIBUTE) if a.get(Tag.ATTRIBUTE_NAME) == "Vendor"
        ]
        self.assertEqual(vendor[0].get(Tag.VENDOR_IDENTIFICATION), "x")
        self.assertEqual(attributes.get(Tag.STATE), State.PRE_ACTIVE)
        set_item = h.one(
            V20,
            Operation.SET_ATTRIBUTE,
            uid_payload(uid)
            + [
                ttlv.structure(
                    Tag.NEW_ATTRIBUTE,
                    [ttlv.text_string(Tag.CONTACT_INFORMATION, "ops@example.com")],
                )
            ],
        )
        self.assertTrue(set_item.ok, set_item.message)
        self.assertEqual(
            h.attributes_1x(uid, "Contact Information", version=V14)["Contact Information"],
            ["ops@example.com"],
        )
        names = h.one(V20, Operation.GET_ATTRIBUTE_LIST, uid_payload(uid))
        references = names.payload.find_all(Tag.ATTRIBUTE_REFERENCE)
        self.assertIn(
            Tag.STATE, [r.value for r in references if r.type == ttlv.ItemType.ENUMERATION]
        )

    def test_set_attribute_not_in_1x(self) -> None:
        """Set Attribute does not exist in KMIP 1.4: Operation Not Supported."""
        h = Harness(self)
        item = h.one(V14, Operation.SET_ATTRIBUTE, [])
        self.assertEqual(item.reason, ResultReason.OPERATION_NOT_SUPPORTED)


class BatchTests(SynchronousTestCase):
    """Batches: ID Placeholder, error continuation, malformed envelopes."""

    def test_id_placeholder(self) -> None:
        """Create then Activate and Get with no identifier use the one just created."""
        h = Harness(self)
        response = h.send(
            request(
                V14,
                [
                    (
                        Operation.CREATE,
                        [
                            ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
                            aes_template(),
                        ],
                        b"1",
                    ),
                    (Operation.ACTIVATE, [], b"2"),
                    (Operation.GET, [], b"3"),
                ],
            )
        )
        self.assertEqual([i.ok for i in response.items], [True, True, True])
        self.assertEqual(
            response.items[0].get(Tag.UNIQUE_IDENTIFIER),
            response.items[2].get(Tag.UNIQUE_IDENTIFIER),
        )

    def test_stop_and_continue(self) -> None:
        """Stop (the default) ends at the first failure; Continue goes on."""
        h = Harness(self)
        items = [
            (Operation.GET, uid_payload("missing"), b"1"),
            (Operation.DISCOVER_VERSIONS, [], b"2"),
        ]
        stopped = h.send(request(V14, items))
        self.assertEqual(len(stopped.items), 1)
        self.assertEqual(stopped.items[0].reason, ResultReason.ITEM_NOT_FOUND)
        header = [
            ttlv.enumeration(
                Tag.BATCH_ERROR_CONTINUATION_OPTION, BatchErrorContinuationOption.CONTINUE
            )
        ]
        continued = h.send(request(V14, items, header_extra=header))
        self.assertEqual([i.ok for i in continued.items], [False, True])
        self.assertEqual([i.batch_id for i in continued.items], [b"1", b"2"])

    def _create_payload(self) -> list[ttlv.Item]:
        return [ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY), aes_template()]

    def _undo_header(self) -> list[ttlv.Item]:
        return [
            ttlv.enumeration(Tag.BATCH_ERROR_CONTINUATION_OPTION, BatchErrorContinuationOption.UNDO)
        ]

    def test_undo_rolls_back_the_batch(self) -> None:
        """With Undo, a failing item undoes the items before it: a client's batch takes
        effect whole or not at all, and the undone items say so."""
        h = Harness(self)
        uid = h.create(version=V14)
        items = [
            (Operation.ACTIVATE, uid_payload(uid), b"1"),
            (Operation.CREATE, self._create_payload(), b"2"),
            (Operation.GET, uid_payload("missing"), b"3"),
            (Operation.DESTROY, uid_payload(uid), b"4"),
        ]
        response = h.send(request(V14, items, header_extra=self._undo_header()))
        self.assertEqual(
            [i.status for i in response.items],
            [
                ResultStatus.OPERATION_UNDONE,
                ResultStatus.OPERATION_UNDONE,
                ResultStatus.OPERATION_FAILED,
            ],
        )
        self.assertEqual(h.attributes_1x(uid, "State")["State"], [State.PRE_ACTIVE])
        created = response.items[1].get(Tag.UNIQUE_IDENTIFIER)
        self.assertIsNone(self.successResultOf(h.store.get_object("alpha", created)))

    def test_undo_batch_that_succeeds_is_kept(self) -> None:
        """With Undo, a batch whose items all succeed is written, later items seeing the
        earlier ones (a key created and activated in one batch is Active)."""
        h = Harness(self)
        items = [
            (Operation.CREATE, self._create_payload(), b"1"),
            (Operation.ACTIVATE, [], b"2"),
        ]
        response = h.send(request(V14, items, header_extra=self._undo_header()))
        self.assertEqual([i.ok for i in response.items], [True, True])
        uid = response.items[0].get(Tag.UNIQUE_IDENTIFIER)
        self.assertEqual(h.attributes_1x(uid, "State")["State"], [State.ACTIVE])

    def test_batch_count_lies(self) -> None:
        """A Batch Count that does not match the items is an Invalid Message."""
        h = Harness(self)
        response = h.send(request(V14, [(Operation.DISCOVER_VERSIONS, [], None)], batch_count=3))
        self.assertEqual(response.items[0].reason, ResultReason.INVALID_MESSAGE)
        self.assertIn("Batch Count", response.items[0].message)

    def test_unknown_operation(self) -> None:
        """An operation the server does not know gets Operation Not Supported."""
        h = Harness(self)
        item = h.one(V14, 0x7777, [])
        self.assertEqual(item.reason, ResultReason.OPERATION_NOT_SUPPORTED)

    def test_malformed_ttlv(self) -> None:
        """Bytes that are not TTLV get an Invalid Message response."""
        h = Harness(self)
        response = h.send(bytes.fromhex("4200780100000010") + b"\xff" * 16)
        self.assertEqual(response.items[0].reason, ResultReason.INVALID_MESSAGE)

    def test_wrong_type_in_header(self) -> None:
        """A Batch Count sent as a Text String is an Invalid Message, named."""
        h = Harness(self)
        message = ttlv.encode(
            ttlv.structure(
                Tag.REQUEST_MESSAGE,
                [
                    ttlv.structure(
                        Tag.REQUEST_HEADER,
                        [
                            ttlv.structure(
                                Tag.PROTOCOL_VERSION,
                                [
                                    ttlv.integer(Tag.PROTOCOL_VERSION_MAJOR, 1),
                                    ttlv.integer(Tag.PROTOCOL_VERSION_MINOR, 4),
                                ],
                            ),
                            ttlv.text_string(Tag.BATCH_COUNT, "1"),
                        ],
                    ),
                    ttlv.structure(
                        Tag.BATCH_ITEM,
                        [ttlv.enumeration(Tag.OPERATION, Operation.DISCOVER_VERSIONS)],
                    ),
                ],
            )
        )
        response = h.send(message)
        self.assertEqual(response.version, (1, 4))
        self.assertEqual(response.items[0].reason, ResultReason.INVALID_MESSAGE)
        self.assertIn("Batch Count", response.items[0].message)

    def test_unsupported_version(self) -> None:
        """KMIP 3.0 gets an answer in 2.1 that names the versions spoken."""
        h = Harness(self)
        response = h.send(request((3, 0), [(Operation.DISCOVER_VERSIONS, [], None)]))
        self.assertEqual(response.version, (2, 1))
        self.assertIn("1.1", response.items[0].message)

    def test_discover_versions_filters(self) -> None:
        """Discover Versions answers with the client's versions we speak, newest first."""
        h = Harness(self)
        offered = [
            ttlv.structure(
                Tag.PROTOCOL_VERSION,
                [
                    ttlv.integer(Tag.PROTOCOL_VERSION_MAJOR, 1),
                    ttlv.integer(Tag.PROTOCOL_VERSION_MINOR, m),
                ],
            )
            for m in (1, 2, 9)
        ]
        item = h.one(V14, Operation.DISCOVER_VERSIONS, offered)
        versions = [
            (v.get(Tag.PROTOCOL_VERSION_MAJOR), v.get(Tag.PROTOCOL_VERSION_MINOR))
            for v in item.payload.value
        ]
        self.assertEqual(versions, [(1, 2), (1, 1)])
