"""What the OASIS server profiles ask of the operations, over an in-memory store:
Check, Obtain Lease, Log, Interop, templates, certificates and registered asymmetric
keys, unique names, Sensitive / Extractable / Fresh, lifecycle-bound dates, Result
Reasons per version, Maximum Response Size, and Locate's defaults.

Request payloads are written in the KMIP XML encoding, as the OASIS cases are.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.testing.messages import request
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import (
    BatchErrorContinuationOption,
    KeyFormatType,
    ObjectType,
    Operation,
    ResultReason,
    ResultStatus,
    State,
)
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.xml_encoding import loads
from tests.test_operations import V11, V14, Harness, uid_payload

V21 = (2, 1)


def xml(text: str) -> list[Item]:
    """The children of a <RequestPayload> written in the KMIP XML encoding."""
    return list(loads(f"<RequestPayload>{text}</RequestPayload>").value)


def uid(value: str) -> str:
    return f'<UniqueIdentifier type="TextString" value="{value}"/>'


AES_KEY = (
    '<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="{format}"/>'
    "<KeyValue>{material}</KeyValue>"
    '<CryptographicAlgorithm type="Enumeration" value="AES"/>'
    '<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>'
)
RAW_MATERIAL = '<KeyMaterial type="ByteString" value="00112233445566778899aabbccddeeff"/>'


def name_2x(text: str) -> str:
    return (
        f'<Name><NameValue type="TextString" value="{text}"/>'
        '<NameType type="Enumeration" value="UninterpretedTextString"/></Name>'
    )


def register_2x(h: Harness, attributes: str, obj: str, object_type: str = "SymmetricKey"):
    return h.one(
        V21,
        Operation.REGISTER,
        xml(
            f'<ObjectType type="Enumeration" value="{object_type}"/>'
            f"<Attributes>{attributes}</Attributes>{obj}"
        ),
    )


def aes_2x(h: Harness, attributes: str = "") -> str:
    """Register an AES-128 key in KMIP 2.1; return its identifier."""
    item = register_2x(
        h,
        '<CryptographicUsageMask type="Integer" value="Encrypt"/>' + attributes,
        AES_KEY.format(format="Raw", material=RAW_MATERIAL),
    )
    assert item.ok, item.message
    return item.get(Tag.UNIQUE_IDENTIFIER)


def attributes_2x(h: Harness, identifier: str, *references: str) -> dict[int, list]:
    """Get Attributes (2.1); tag -> list of values."""
    item = h.one(
        V21,
        Operation.GET_ATTRIBUTES,
        xml(
            uid(identifier)
            + "".join(f'<AttributeReference type="Enumeration" value="{r}"/>' for r in references)
        ),
    )
    assert item.ok, item.message
    found: dict[int, list] = {}
    for attribute in item.payload.find(Tag.ATTRIBUTES).value:
        found.setdefault(attribute.tag, []).append(attribute.value)
    return found


class CheckAndLeaseTests(SynchronousTestCase):
    """Check tells a client whether it may use a key so; Obtain Lease for how long."""

    def test_check_usage_mask(self) -> None:
        """A usage the key allows passes; another is refused, with the reason the
        client's version has, and a Get batched after it does not run."""
        h = Harness(self)
        key = aes_2x(h)
        allowed = h.one(
            V21,
            Operation.CHECK,
            xml(uid(key) + '<CryptographicUsageMask type="Integer" value="Encrypt"/>'),
        )
        self.assertTrue(allowed.ok, allowed.message)
        self.assertEqual(allowed.get(Tag.UNIQUE_IDENTIFIER), key)
        denied = h.one(
            V21,
            Operation.CHECK,
            xml(uid(key) + '<CryptographicUsageMask type="Integer" value="Decrypt"/>'),
        )
        self.assertEqual(denied.reason, ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK)
        old = h.one(
            V14,
            Operation.CHECK,
            xml(uid(key) + '<CryptographicUsageMask type="Integer" value="Decrypt"/>'),
        )
        self.assertEqual(old.reason, ResultReason.PERMISSION_DENIED)
        batch = h.send(
            request(
                V21,
                [
                    (
                        Operation.LOCATE,
                        xml(
                            "<Attributes>"
                            + '<ObjectType type="Enumeration" value="SymmetricKey"/>'
                            + "</Attributes>"
                        ),
                        None,
                    ),
                    (
                        Operation.CHECK,
                        xml('<CryptographicUsageMask type="Integer" value="Decrypt"/>'),
                        None,
                    ),
                    (Operation.GET, [], None),
                ],
                header_extra=[
                    ttlv.enumeration(
                        Tag.BATCH_ERROR_CONTINUATION_OPTION, BatchErrorContinuationOption.CONTINUE
                    )
                ],
            )
        )
        self.assertEqual([i.ok for i in batch.items], [True, False, False])
        self.assertEqual(batch.items[2].reason, ResultReason.INVALID_FIELD)

    def test_obtain_lease(self) -> None:
        """Obtain Lease gives the object's Lease Time and Last Change Date; a destroyed
        object gets no lease."""
        h = Harness(self)
        key = aes_2x(h)
        lease = h.one(V14, Operation.OBTAIN_LEASE, uid_payload(key))
        self.assertTrue(lease.ok, lease.message)
        self.assertEqual(lease.get(Tag.LEASE_TIME), 3600)
        self.assertEqual(lease.get(Tag.LAST_CHANGE_DATE), 1_800_000_000)
        self.assertTrue(h.one(V14, Operation.DESTROY, uid_payload(key)).ok)
        self.assertEqual(
            h.one(V21, Operation.OBTAIN_LEASE, uid_payload(key)).reason,
            ResultReason.OBJECT_DESTROYED,
        )


class DiagnosticTests(SynchronousTestCase):
    """Log is a 2.x operation; Interop exists only on a server set up for testing."""

    def test_log(self) -> None:
        """A 2.x client's Log message is accepted; 1.x has no Log operation."""
        h = Harness(self)
        payload = xml('<LogMessage type="TextString" value="Registered a key."/>')
        self.assertTrue(h.one(V21, Operation.LOG, payload).ok)
        self.assertEqual(
            h.one(V14, Operation.LOG, payload).reason, ResultReason.OPERATION_NOT_SUPPORTED
        )

    def test_interop_only_when_turned_on(self) -> None:
        """A production server neither offers nor answers Interop; a test server does."""
        h = Harness(self)
        payload = xml(
            '<InteropFunction type="Enumeration" value="Begin"/>'
            '<InteropIdentifier type="TextString" value="BL-M-1-21"/>'
        )
        query = xml('<QueryFunction type="Enumeration" value="QueryOperations"/>')

        def offered() -> list[int]:
            answer = h.one(V21, Operation.QUERY, query)
            return [i.value for i in answer.payload.find_all(Tag.OPERATION)]

        self.assertEqual(
            h.one(V21, Operation.INTEROP, payload).reason, ResultReason.OPERATION_NOT_SUPPORTED
        )
        self.assertNotIn(Operation.INTEROP, offered())
        self.assertIn(Operation.CHECK, offered())
        h.engine.interop_testing = True
        self.assertTrue(h.one(V21, Operation.INTEROP, payload).ok)
        self.assertIn(Operation.INTEROP, offered())


class QueryTests(SynchronousTestCase):
    """Query answers in the client's version."""

    def test_objects_and_server_information_per_version(self) -> None:
        """Templates are listed to 1.x clients only; a 1.x client gets an empty Server
        Information, a 2.x one the 2.x fields; 2.1 Query Profiles names the profiles."""
        h = Harness(self)
        functions = xml(
            '<QueryFunction type="Enumeration" value="QueryObjects"/>'
            '<QueryFunction type="Enumeration" value="QueryServerInformation"/>'
            '<QueryFunction type="Enumeration" value="QueryProfiles"/>'
        )
        old = h.one(V14, Operation.QUERY, functions).payload
        new = h.one(V21, Operation.QUERY, functions).payload
        self.assertIn(ObjectType.TEMPLATE, [i.value for i in old.find_all(Tag.OBJECT_TYPE)])
        self.assertNotIn(ObjectType.TEMPLATE, [i.value for i in new.find_all(Tag.OBJECT_TYPE)])
        self.assertIn(ObjectType.CERTIFICATE, [i.value for i in new.find_all(Tag.OBJECT_TYPE)])
        self.assertEqual(old.find(Tag.SERVER_INFORMATION).value, [])
        self.assertIsNotNone(new.find(Tag.SERVER_INFORMATION).find(Tag.SERVER_NAME))
        self.assertEqual(len(new.find_all(Tag.PROFILE_INFORMATION)), 10)
        self.assertEqual(len(old.find_all(Tag.PROFILE_INFORMATION)), 10)

    def test_maximum_response_size(self) -> None:
        """A response larger than the request's Maximum Response Size is refused with
        Response Too Large; a large enough limit changes nothing."""
        h = Harness(self)
        query = xml('<QueryFunction type="Enumeration" value="QueryOperations"/>')
        for limit, status in ((64, ResultStatus.OPERATION_FAILED), (4096, ResultStatus.SUCCESS)):
            answer = h.send(
                request(
                    V14,
                    [(Operation.QUERY, query, None)],
                    header_extra=[ttlv.integer(Tag.MAXIMUM_RESPONSE_SIZE, limit)],
                )
            )
            self.assertEqual(answer.items[0].status, status)
        self.assertEqual(answer.items[0].reason, None)


def register_aes_template(case: SynchronousTestCase, h: Harness, name: str) -> str:
    """Register a KMIP 1.4 Template called ``name`` (AES, 128 bits, Encrypt); its id."""
    registered = h.one(
        V14,
        Operation.REGISTER,
        xml(
            '<ObjectType type="Enumeration" value="Template"/>'
            "<TemplateAttribute><Attribute>"
            '<AttributeName type="TextString" value="Name"/><AttributeValue>'
            f'<NameValue type="TextString" value="{name}"/>'
            '<NameType type="Enumeration" value="UninterpretedTextString"/>'
            "</AttributeValue></Attribute></TemplateAttribute>"
            "<Template>"
            '<Attribute><AttributeName type="TextString" value="Cryptographic Algorithm"/>'
            '<AttributeValue type="Enumeration" value="AES"/></Attribute>'
            '<Attribute><AttributeName type="TextString" value="Cryptographic Length"/>'
            '<AttributeValue type="Integer" value="128"/></Attribute>'
            '<Attribute><AttributeName type="TextString" value="Cryptographic Usage Mask"/>'
            '<AttributeValue type="Integer" value="Encrypt"/></Attribute>'
            "</Template>"
        ),
    )
    case.assertTrue(registered.ok, registered.message)
    return str(registered.get(Tag.UNIQUE_IDENTIFIER))


class TemplateTests(SynchronousTestCase):
    """KMIP 1.x Templates: registered once, named in Create."""

    def test_create_from_template(self) -> None:
        """A Create naming a template gets its attributes; its own attributes win."""
        h = Harness(self)
        register_aes_template(self, h, "aes-template")
        created = h.one(
            V14,
            Operation.CREATE,
            xml(
                '<ObjectType type="Enumeration" value="SymmetricKey"/><TemplateAttribute>'
                '<Name><NameValue type="TextString" value="aes-template"/>'
                '<NameType type="Enumeration" value="UninterpretedTextString"/></Name>'
                '<Attribute><AttributeName type="TextString" value="Cryptographic Length"/>'
                '<AttributeValue type="Integer" value="256"/></Attribute>'
                "</TemplateAttribute>"
            ),
        )
        self.assertTrue(created.ok, created.message)
        attributes = h.attributes_1x(created.get(Tag.UNIQUE_IDENTIFIER), version=V14)
        self.assertEqual(attributes["Cryptographic Length"], [256])
        self.assertEqual(attributes["Cryptographic Usage Mask"], [4])
        self.assertNotIn("Name", attributes)
        missing = h.one(
            V14,
            Operation.CREATE,
            xml(
                '<ObjectType type="Enumeration" value="SymmetricKey"/><TemplateAttribute>'
                '<Name><NameValue type="TextString" value="no-such-template"/>'
                '<NameType type="Enumeration" value="UninterpretedTextString"/></Name>'
                "</TemplateAttribute>"
            ),
        )
        self.assertEqual(missing.reason, ResultReason.ITEM_NOT_FOUND)

    def test_templates_are_1x_only(self) -> None:
        """A 2.x client cannot register a Template (2.x removed them)."""
        h = Harness(self)
        item = h.one(
            V21,
            Operation.REGISTER,
            [
                ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.TEMPLATE),
                ttlv.structure(Tag.TEMPLATE, []),
            ],
        )
        self.assertEqual(item.status, ResultStatus.OPERATION_FAILED)


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "tape-library"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
        ]
    )
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(4242)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


class CertificateAndKeyTests(SynchronousTestCase):
    """Registered certificates and asymmetric keys are kept as sent."""

    def test_certificate_attributes(self) -> None:
        """A certificate's subject, length and identifier become attributes no client
        can change, in each version's form."""
        h = Harness(self)
        der = _certificate()
        item = register_2x(
            h,
            '<CertificateType type="Enumeration" value="X_509"/>',
            f'<Certificate><CertificateType type="Enumeration" value="X_509"/>'
            f'<CertificateValue type="ByteString" value="{der.hex()}"/></Certificate>',
            object_type="Certificate",
        )
        self.assertTrue(item.ok, item.message)
        identifier = item.get(Tag.UNIQUE_IDENTIFIER)
        found = attributes_2x(
            h,
            identifier,
            "CertificateSubjectCN",
            "CertificateLength",
            "CertificateSubjectO",
            "CryptographicAlgorithm",
        )
        self.assertEqual(found[Tag.CERTIFICATE_SUBJECT_CN], ["tape-library"])
        self.assertEqual(found[Tag.CERTIFICATE_SUBJECT_O], ["Example"])
        self.assertEqual(found[Tag.CERTIFICATE_LENGTH], [len(der)])
        old = h.attributes_1x(
            identifier, "X.509 Certificate Identifier", "Certificate Subject", version=V14
        )
        serial = dict((i.tag, i.value) for i in old["X.509 Certificate Identifier"][0])
        self.assertEqual(serial[Tag.CERTIFICATE_SERIAL_NUMBER], (4242).to_bytes(2, "big"))
        self.assertIn("CN=tape-library", old["Certificate Subject"][0][0].value)
        changed = h.one(
            V21,
            Operation.MODIFY_ATTRIBUTE,
            xml(
                uid(identifier)
                + '<NewAttribute><CertificateLength type="Integer" value="1"/></NewAttribute>'
            ),
        )
        self.assertEqual(changed.reason, ResultReason.ATTRIBUTE_READ_ONLY)
        got = h.one(V21, Operation.GET, uid_payload(identifier))
        self.assertEqual(got.payload.find(Tag.CERTIFICATE).get(Tag.CERTIFICATE_VALUE), der)
        wrong = register_2x(
            h,
            '<CertificateType type="Enumeration" value="PGP"/>',
            f'<Certificate><CertificateType type="Enumeration" value="X_509"/>'
            f'<CertificateValue type="ByteString" value="{der.hex()}"/></Certificate>',
            object_type="Certificate",
        )
        self.assertEqual(wrong.status, ResultStatus.OPERATION_FAILED)

    def test_private_key_in_its_format(self) -> None:
        """A private key registered as PKCS#8 comes back as PKCS#8 unless another format
        is asked for; a public-key format is refused for it."""
        h = Harness(self)
        der = rsa.generate_private_key(65537, 1024).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        item = register_2x(
            h,
            '<CryptographicUsageMask type="Integer" value="Sign"/>',
            '<PrivateKey><KeyBlock><KeyFormatType type="Enumeration" value="PKCS_8"/>'
            f'<KeyValue><KeyMaterial type="ByteString" value="{der.hex()}"/></KeyValue>'
            '<CryptographicAlgorithm type="Enumeration" value="RSA"/>'
            '<CryptographicLength type="Integer" value="1024"/></KeyBlock></PrivateKey>',
            object_type="PrivateKey",
        )
        self.assertTrue(item.ok, item.message)
        identifier = item.get(Tag.UNIQUE_IDENTIFIER)
        block = (
            h.one(V21, Operation.GET, uid_payload(identifier))
            .payload.find(Tag.PRIVATE_KEY)
            .find(Tag.KEY_BLOCK)
        )
        self.assertEqual(block.get(Tag.KEY_FORMAT_TYPE), KeyFormatType.PKCS_8)
        self.assertEqual(block.find(Tag.KEY_VALUE).get(Tag.KEY_MATERIAL), der)
        other = h.one(
            V21,
            Operation.GET,
            uid_payload(identifier) + [ttlv.enumeration(Tag.KEY_FORMAT_TYPE, KeyFormatType.X_509)],
        )
        self.assertEqual(other.reason, ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED)

    def test_transparent_symmetric_key_comes_back_transparent(self) -> None:
        """A key registered as Transparent Symmetric Key is served in that format."""
        h = Harness(self)
        item = register_2x(
            h,
            "",
            AES_KEY.format(
                format="TransparentSymmetricKey",
                material='<KeyMaterial><Key type="ByteString" value="00112233445566778899aabbccddeeff"/></KeyMaterial>',
            ),
        )
        self.assertTrue(item.ok, item.message)
        got = h.one(V21, Operation.GET, uid_payload(item.get(Tag.UNIQUE_IDENTIFIER)))
        block = got.payload.find(Tag.SYMMETRIC_KEY).find(Tag.KEY_BLOCK)
        self.assertEqual(block.get(Tag.KEY_FORMAT_TYPE), KeyFormatType.TRANSPARENT_SYMMETRIC_KEY)


class AttributeRuleTests(SynchronousTestCase):
    """The attribute rules of the specification, as the profiles test them."""

    def test_names_are_unique_among_live_objects(self) -> None:
        """A second object cannot take a name in use (nor an object a name twice); once
        the first is destroyed its name is free again."""
        h = Harness(self)
        first = aes_2x(h, name_2x("disk-1"))
        again = register_2x(
            h, name_2x("disk-1"), AES_KEY.format(format="Raw", material=RAW_MATERIAL)
        )
        self.assertEqual(again.reason, ResultReason.NON_UNIQUE_NAME_ATTRIBUTE)
        twice = h.one(
            V21,
            Operation.ADD_ATTRIBUTE,
            xml(uid(first) + f"<NewAttribute>{name_2x('disk-1')}</NewAttribute>"),
        )
        self.assertEqual(twice.reason, ResultReason.NON_UNIQUE_NAME_ATTRIBUTE)
        old = h.one(
            V14,
            Operation.ADD_ATTRIBUTE,
            xml(
                uid(first)
                + '<Attribute><AttributeName type="TextString" value="Name"/><AttributeValue>'
                '<NameValue type="TextString" value="disk-1"/>'
                '<NameType type="Enumeration" value="UninterpretedTextString"/></AttributeValue></Attribute>'
            ),
        )
        self.assertEqual(old.reason, ResultReason.INVALID_FIELD)
        self.assertTrue(h.one(V21, Operation.DESTROY, uid_payload(first)).ok)
        self.assertTrue(aes_2x(h, name_2x("disk-1")))

    def test_sensitive_and_extractable(self) -> None:
        """A Sensitive key's value is never served (and it was Always Sensitive); nor
        a key that is not Extractable."""
        h = Harness(self)
        sensitive = aes_2x(h, '<Sensitive type="Boolean" value="true"/>')
        self.assertEqual(
            h.one(V21, Operation.GET, uid_payload(sensitive)).reason, ResultReason.SENSITIVE
        )
        self.assertEqual(
            attributes_2x(h, sensitive, "AlwaysSensitive")[Tag.ALWAYS_SENSITIVE], [True]
        )
        kept = aes_2x(h, '<Extractable type="Boolean" value="false"/>')
        self.assertEqual(
            h.one(V21, Operation.GET, uid_payload(kept)).reason, ResultReason.NOT_EXTRACTABLE
        )
        self.assertEqual(attributes_2x(h, kept, "NeverExtractable")[Tag.NEVER_EXTRACTABLE], [True])
        made_extractable = h.one(
            V21,
            Operation.MODIFY_ATTRIBUTE,
            xml(
                uid(kept)
                + '<NewAttribute><Extractable type="Boolean" value="true"/></NewAttribute>'
            ),
        )
        self.assertTrue(made_extractable.ok, made_extractable.message)
        self.assertEqual(attributes_2x(h, kept, "NeverExtractable")[Tag.NEVER_EXTRACTABLE], [False])

    def test_fresh_until_served(self) -> None:
        """A key is Fresh until its value is first served by Get."""
        h = Harness(self)
        key = aes_2x(h)
        self.assertEqual(attributes_2x(h, key, "Fresh")[Tag.FRESH], [True])
        self.assertTrue(h.one(V21, Operation.GET, uid_payload(key)).ok)
        self.assertEqual(attributes_2x(h, key, "Fresh")[Tag.FRESH], [False])

    def test_activation_date_only_while_pre_active(self) -> None:
        """Activation Date can change while the key is Pre-Active, not after: KMIP 2.x
        says Wrong Key Lifecycle State, 1.x Permission Denied."""
        h = Harness(self)
        key = h.create(version=V14)
        new_date = xml(
            uid(key)
            + '<NewAttribute><ActivationDate type="DateTime" value="2030-01-01T00:00:00+00:00"/></NewAttribute>'
        )
        self.assertTrue(h.one(V21, Operation.SET_ATTRIBUTE, new_date).ok)
        self.assertTrue(h.one(V21, Operation.ACTIVATE, uid_payload(key)).ok)
        for operation in (Operation.SET_ATTRIBUTE, Operation.MODIFY_ATTRIBUTE):
            self.assertEqual(
                h.one(V21, operation, new_date).reason, ResultReason.WRONG_KEY_LIFECYCLE_STATE
            )
        old = xml(
            uid(key) + '<Attribute><AttributeName type="TextString" value="Activation Date"/>'
            '<AttributeValue type="DateTime" value="2030-01-01T00:00:00+00:00"/></Attribute>'
        )
        self.assertEqual(
            h.one(V14, Operation.MODIFY_ATTRIBUTE, old).reason, ResultReason.PERMISSION_DENIED
        )

    def test_reasons_per_version(self) -> None:
        """An unknown identifier is Object Not Found in 2.x and Item Not Found in 1.x;
        a 1.1 client is never sent a Result Reason 1.1 does not define."""
        h = Harness(self)
        self.assertEqual(
            h.one(V21, Operation.GET, uid_payload("nope")).reason, ResultReason.OBJECT_NOT_FOUND
        )
        self.assertEqual(
            h.one(V11, Operation.GET, uid_payload("nope")).reason, ResultReason.ITEM_NOT_FOUND
        )
        key = h.create()
        state = h.one(
            V11,
            Operation.MODIFY_ATTRIBUTE,
            uid_payload(key)
            + xml(
                '<Attribute><AttributeName type="TextString" value="State"/>'
                '<AttributeValue type="Enumeration" value="Active"/></Attribute>'
            ),
        )
        self.assertEqual(state.reason, ResultReason.PERMISSION_DENIED)


class LocateDefaultTests(SynchronousTestCase):
    """Locate searches live objects unless asked otherwise, and sets the ID Placeholder."""

    def test_destroyed_objects(self) -> None:
        """A destroyed key is not found by default, but is by its State or by a 2.x
        Storage Status Mask asking for destroyed objects."""
        h = Harness(self)
        live = aes_2x(h)
        gone = aes_2x(h)
        self.assertTrue(h.one(V21, Operation.DESTROY, uid_payload(gone)).ok)

        def locate(extra: str, attributes: str = "") -> list[str]:
            item = h.one(
                V21, Operation.LOCATE, xml(f"{extra}<Attributes>{attributes}</Attributes>")
            )
            self.assertTrue(item.ok, item.message)
            return [i.value for i in item.payload.find_all(Tag.UNIQUE_IDENTIFIER)]

        self.assertEqual(locate(""), [live])
        self.assertEqual(locate("", '<State type="Enumeration" value="Destroyed"/>'), [gone])
        destroyed_storage = '<StorageStatusMask type="Integer" value="DestroyedStorage"/>'
        self.assertEqual(locate(destroyed_storage), [gone])
        both = '<StorageStatusMask type="Integer" value="OnLineStorage DestroyedStorage"/>'
        self.assertEqual(sorted(locate(both)), sorted([live, gone]))

    def test_located_object_is_the_placeholder(self) -> None:
        """A Locate that finds one object lets the next batch item omit its identifier."""
        h = Harness(self)
        key = aes_2x(h, name_2x("tape-7"))
        batch = h.send(
            request(
                V21,
                [
                    (Operation.LOCATE, xml(f"<Attributes>{name_2x('tape-7')}</Attributes>"), None),
                    (
                        Operation.GET_ATTRIBUTES,
                        xml('<AttributeReference type="Enumeration" value="State"/>'),
                        None,
                    ),
                ],
            )
        )
        self.assertEqual([i.ok for i in batch.items], [True, True])
        self.assertEqual(batch.items[1].get(Tag.UNIQUE_IDENTIFIER), key)
        state = batch.items[1].payload.find(Tag.ATTRIBUTES).get(Tag.STATE)
        self.assertEqual(state, State.PRE_ACTIVE)
