"""Asymmetric keys through the processor, over an in-memory store: Create Key Pair in
KMIP 1.4 and 2.1, Get in every key format, Sign and Signature Verify, RSA OAEP, and
what Destroy and Revoke do to each half of a pair.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.processor import KMIPProcessor
from kmiptwist.testing.messages import attribute_1x, name_1x, request
from kmiptwist.vocabulary.enums import (
    CryptographicAlgorithm,
    KeyFormatType,
    LinkType,
    ObjectType,
    Operation,
    ResultReason,
    State,
    ValidityIndicator,
)
from kmiptwist.vocabulary.tags import Tag
from tests.test_crypto_operations import data, iso, params, run
from tests.test_operations import V14, Harness, uid_payload
from tests.test_profile_operations import V21, attributes_2x, uid


def pair_2x(
    h: Harness,
    algorithm: str = "RSA",
    length: int | None = 1024,
    private: str = '<CryptographicUsageMask type="Integer" value="Sign Decrypt"/>',
    public: str = '<CryptographicUsageMask type="Integer" value="Verify Encrypt"/>',
    common: str = "",
    active: bool = True,
) -> tuple[str, str]:
    """Create Key Pair (2.1); (private, public) identifiers."""
    when = f'<ActivationDate type="DateTime" value="{iso(h.engine.now() - 60)}"/>'
    body = (
        "<CommonAttributes>"
        f'<CryptographicAlgorithm type="Enumeration" value="{algorithm}"/>'
        + (f'<CryptographicLength type="Integer" value="{length}"/>' if length else "")
        + (when if active else "")
        + common
        + f"</CommonAttributes><PrivateKeyAttributes>{private}</PrivateKeyAttributes>"
        f"<PublicKeyAttributes>{public}</PublicKeyAttributes>"
    )
    item = run(h, Operation.CREATE_KEY_PAIR, body)
    assert item.ok, item.message
    return item.get(Tag.PRIVATE_KEY_UNIQUE_IDENTIFIER), item.get(Tag.PUBLIC_KEY_UNIQUE_IDENTIFIER)


def get_key(h: Harness, identifier: str, key_format: int | None = None, version=V21):
    """Get; the Key Block of the key returned."""
    payload = uid_payload(identifier)
    if key_format is not None:
        payload.append(ttlv.enumeration(Tag.KEY_FORMAT_TYPE, key_format))
    item = h.one(version, Operation.GET, payload)
    assert item.ok, item.message
    tag = Tag.PRIVATE_KEY if item.get(Tag.OBJECT_TYPE) == ObjectType.PRIVATE_KEY else Tag.PUBLIC_KEY
    return item.payload.find(tag).find(Tag.KEY_BLOCK)


def material(block) -> object:
    return block.find(Tag.KEY_VALUE).find(Tag.KEY_MATERIAL)


class CreateKeyPairTests(SynchronousTestCase):
    """Create Key Pair makes two linked keys from one request."""

    def test_audit_record_names_both_keys(self) -> None:
        """The audit record of a Create Key Pair names the private key as its object
        and the public key in a detail."""
        h = Harness(self)
        records: list[dict[str, object]] = []

        class Sink:
            def record_nowait(self, **fields: object) -> None:
                records.append(fields)

        h.processor = KMIPProcessor(h.engine, audit=Sink())
        private, public = pair_2x(h)
        self.assertEqual(records[-1]["operation"], "kmip.create_key_pair")
        self.assertEqual(records[-1]["unique_identifier"], private)
        self.assertEqual(records[-1]["public_key"], public)

    def test_rsa_pair_2x(self) -> None:
        """An RSA pair: each key links to the other, both are Pre-Active with the request's
        names and masks, stored as PKCS#1, and the halves match."""
        h = Harness(self)
        private, public = pair_2x(
            h,
            private='<Name><NameValue type="TextString" value="p"/><NameType type="Enumeration" value="UninterpretedTextString"/></Name>'
            '<CryptographicUsageMask type="Integer" value="Sign"/>',
            public='<CryptographicUsageMask type="Integer" value="Verify"/>',
            active=False,
        )
        mine = attributes_2x(
            h,
            private,
            "Link",
            "State",
            "CryptographicUsageMask",
            "Digest",
            "KeyFormatType",
            "ObjectType",
        )
        theirs = attributes_2x(h, public, "Link", "State", "CryptographicLength", "ObjectType")
        link = ttlv.structure(Tag.LINK, mine[Tag.LINK][0])
        self.assertEqual(
            (link.get(Tag.LINK_TYPE), link.get(Tag.LINKED_OBJECT_IDENTIFIER)),
            (LinkType.PUBLIC_KEY_LINK, public),
        )
        back = ttlv.structure(Tag.LINK, theirs[Tag.LINK][0])
        self.assertEqual(
            (back.get(Tag.LINK_TYPE), back.get(Tag.LINKED_OBJECT_IDENTIFIER)),
            (LinkType.PRIVATE_KEY_LINK, private),
        )
        self.assertEqual(mine[Tag.STATE], [State.PRE_ACTIVE])
        self.assertEqual(theirs[Tag.STATE], [State.PRE_ACTIVE])
        self.assertEqual(mine[Tag.OBJECT_TYPE], [ObjectType.PRIVATE_KEY])
        self.assertEqual(theirs[Tag.OBJECT_TYPE], [ObjectType.PUBLIC_KEY])
        self.assertEqual(mine[Tag.CRYPTOGRAPHIC_USAGE_MASK], [1])
        self.assertEqual(mine[Tag.KEY_FORMAT_TYPE], [KeyFormatType.PKCS_1])
        self.assertEqual(theirs[Tag.CRYPTOGRAPHIC_LENGTH], [1024])
        key = serialization.load_der_private_key(material(get_key(h, private)).value, None)
        published = serialization.load_der_public_key(material(get_key(h, public)).value)
        self.assertEqual(key.public_key().public_numbers(), published.public_numbers())
        stored = self.successResultOf(h.store.get_object("alpha", private))
        self.assertNotIn(material(get_key(h, private)).value[:64], stored.wrapped_material)

    def test_1x_template_attributes_and_placeholder(self) -> None:
        """KMIP 1.4's Common/Private/Public Template-Attribute; the private key becomes the
        ID Placeholder, so a Get in the same batch returns it."""
        h = Harness(self)
        payload = [
            ttlv.structure(
                Tag.COMMON_TEMPLATE_ATTRIBUTE,
                [
                    attribute_1x(
                        "Cryptographic Algorithm", ttlv.enumeration(0, CryptographicAlgorithm.EC)
                    ),
                    attribute_1x("Cryptographic Length", ttlv.integer(0, 256)),
                ],
            ),
            ttlv.structure(
                Tag.PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
                [
                    attribute_1x("Name", name_1x("ec-private")),
                    attribute_1x("Cryptographic Usage Mask", ttlv.integer(0, 1)),
                ],
            ),
            ttlv.structure(
                Tag.PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
                [
                    attribute_1x("Name", name_1x("ec-public")),
                    attribute_1x("Cryptographic Usage Mask", ttlv.integer(0, 2)),
                ],
            ),
        ]
        answer = h.send(
            request(V14, [(Operation.CREATE_KEY_PAIR, payload, None), (Operation.GET, [], None)])
        )
        created, got = answer.items
        self.assertTrue(created.ok, created.message)
        self.assertEqual(
            got.get(Tag.UNIQUE_IDENTIFIER), created.get(Tag.PRIVATE_KEY_UNIQUE_IDENTIFIER)
        )
        block = got.payload.find(Tag.PRIVATE_KEY).find(Tag.KEY_BLOCK)
        self.assertEqual(block.get(Tag.KEY_FORMAT_TYPE), KeyFormatType.PKCS_8)
        key = serialization.load_der_private_key(material(block).value, None)
        self.assertIsInstance(key.curve, ec.SECP256R1)

    def test_refusals(self) -> None:
        """No algorithm, an algorithm that is not asymmetric, keys given different lengths,
        or a name already in use: refused, and nothing is stored."""
        h = Harness(self)
        cases = [
            ("", ResultReason.INVALID_ATTRIBUTE_VALUE),
            (
                '<CryptographicAlgorithm type="Enumeration" value="AES"/>',
                ResultReason.INVALID_ATTRIBUTE_VALUE,
            ),
            (
                '<CryptographicAlgorithm type="Enumeration" value="RSA"/>'
                '<CryptographicLength type="Integer" value="100"/>',
                ResultReason.INVALID_ATTRIBUTE_VALUE,
            ),
        ]
        for common, reason in cases:
            item = run(
                h, Operation.CREATE_KEY_PAIR, f"<CommonAttributes>{common}</CommonAttributes>"
            )
            self.assertEqual(item.reason, reason, common)
        differ = run(
            h,
            Operation.CREATE_KEY_PAIR,
            '<CommonAttributes><CryptographicAlgorithm type="Enumeration" value="RSA"/></CommonAttributes>'
            '<PrivateKeyAttributes><CryptographicLength type="Integer" value="1024"/></PrivateKeyAttributes>'
            '<PublicKeyAttributes><CryptographicLength type="Integer" value="2048"/></PublicKeyAttributes>',
        )
        self.assertEqual(differ.reason, ResultReason.INVALID_FIELD)
        named = '<Name><NameValue type="TextString" value="same"/><NameType type="Enumeration" value="UninterpretedTextString"/></Name>'
        twice = run(
            h,
            Operation.CREATE_KEY_PAIR,
            '<CommonAttributes><CryptographicAlgorithm type="Enumeration" value="EC"/>'
            f'<CryptographicLength type="Integer" value="256"/>{named}</CommonAttributes>',
        )
        self.assertEqual(twice.reason, ResultReason.NON_UNIQUE_NAME_ATTRIBUTE)
        self.assertEqual(self.successResultOf(h.store.locate("alpha", [], 0, 10)), [])

    def test_destroy_and_revoke_each_half(self) -> None:
        """Each half of a pair has its own lifecycle: an Active private key must be revoked
        before it is destroyed; its Pre-Active public key can be destroyed at once."""
        h = Harness(self)
        private, public = pair_2x(h, active=False)
        self.assertTrue(run(h, Operation.ACTIVATE, uid(private)).ok)
        self.assertEqual(attributes_2x(h, public, "State")[Tag.STATE], [State.PRE_ACTIVE])
        refused = run(h, Operation.DESTROY, uid(private))
        self.assertEqual(refused.reason, ResultReason.WRONG_KEY_LIFECYCLE_STATE)
        self.assertTrue(run(h, Operation.DESTROY, uid(public)).ok)
        revoke = '<RevocationReason><RevocationReasonCode type="Enumeration" value="KeyCompromise"/></RevocationReason>'
        self.assertTrue(run(h, Operation.REVOKE, uid(private) + revoke).ok)
        self.assertEqual(attributes_2x(h, private, "State")[Tag.STATE], [State.COMPROMISED])
        self.assertTrue(run(h, Operation.DESTROY, uid(private)).ok)
        self.assertEqual(
            attributes_2x(h, private, "State")[Tag.STATE], [State.DESTROYED_COMPROMISED]
        )


class KeyFormatTests(SynchronousTestCase):
    """Get returns a key in the format asked for."""

    def test_rsa_formats(self) -> None:
        """PKCS#1, PKCS#8 and Transparent RSA for the private key; PKCS#1, X.509 and
        Transparent RSA for the public key; all the same key.  A format that does not
        fit (X.509 for a private key) is Key Format Type Not Supported."""
        h = Harness(self)
        private, public = pair_2x(h, active=False)
        key = serialization.load_der_private_key(material(get_key(h, private)).value, None)
        numbers = key.private_numbers()
        pkcs8 = serialization.load_der_private_key(
            material(get_key(h, private, KeyFormatType.PKCS_8)).value, None
        )
        self.assertEqual(pkcs8.private_numbers(), numbers)
        transparent = material(get_key(h, private, KeyFormatType.TRANSPARENT_RSA_PRIVATE_KEY))
        self.assertEqual(transparent.get(Tag.PRIVATE_EXPONENT), numbers.d)
        self.assertEqual(transparent.get(Tag.MODULUS), numbers.public_numbers.n)
        spki = serialization.load_der_public_key(
            material(get_key(h, public, KeyFormatType.X_509)).value
        )
        self.assertEqual(spki.public_numbers(), numbers.public_numbers)
        open_public = material(get_key(h, public, KeyFormatType.TRANSPARENT_RSA_PUBLIC_KEY))
        self.assertEqual(open_public.get(Tag.PUBLIC_EXPONENT), 65537)
        block = get_key(h, public, KeyFormatType.X_509)
        self.assertEqual(block.get(Tag.CRYPTOGRAPHIC_LENGTH), 1024)
        refused = h.one(
            V21,
            Operation.GET,
            uid_payload(private) + [ttlv.enumeration(Tag.KEY_FORMAT_TYPE, KeyFormatType.X_509)],
        )
        self.assertEqual(refused.reason, ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED)

    def test_ec_formats_and_registered_transparent_key(self) -> None:
        """An EC pair as ECPrivateKey and Transparent EC keys; a Transparent EC private
        key a client registers comes back as PKCS#8 when asked."""
        h = Harness(self)
        private, public = pair_2x(h, algorithm="ECDSA", length=384, active=False)
        open_private = material(get_key(h, private, KeyFormatType.TRANSPARENT_EC_PRIVATE_KEY))
        open_public = material(get_key(h, public, KeyFormatType.TRANSPARENT_EC_PUBLIC_KEY))
        derived = ec.derive_private_key(open_private.get(Tag.D), ec.SECP384R1())
        self.assertEqual(
            derived.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            ),
            open_public.get(Tag.Q_STRING),
        )
        sec1 = material(get_key(h, private, KeyFormatType.ECPRIVATEKEY)).value
        self.assertEqual(
            serialization.load_der_private_key(sec1, None).private_numbers().private_value,
            open_private.get(Tag.D),
        )
        mine = ec.generate_private_key(ec.SECP256R1())
        registered = run(
            h,
            Operation.REGISTER,
            '<ObjectType type="Enumeration" value="PrivateKey"/><Attributes>'
            '<CryptographicUsageMask type="Integer" value="Sign"/></Attributes>'
            '<PrivateKey><KeyBlock><KeyFormatType type="Enumeration" value="TransparentECPrivateKey"/>'
            '<KeyValue><KeyMaterial><RecommendedCurve type="Enumeration" value="P_256"/>'
            f'<D type="BigInteger" value="00{mine.private_numbers().private_value:064x}"/>'
            "</KeyMaterial></KeyValue>"
            '<CryptographicAlgorithm type="Enumeration" value="EC"/>'
            '<CryptographicLength type="Integer" value="256"/></KeyBlock></PrivateKey>',
        )
        self.assertTrue(registered.ok, registered.message)
        pkcs8 = material(
            get_key(h, registered.get(Tag.UNIQUE_IDENTIFIER), KeyFormatType.PKCS_8)
        ).value
        self.assertEqual(
            serialization.load_der_private_key(pkcs8, None).private_numbers(),
            mine.private_numbers(),
        )

    def test_register_refuses_material_that_is_not_a_key(self) -> None:
        """A PKCS#1 private key whose bytes are not one is refused at Register."""
        h = Harness(self)
        item = run(
            h,
            Operation.REGISTER,
            '<ObjectType type="Enumeration" value="PrivateKey"/><Attributes/>'
            '<PrivateKey><KeyBlock><KeyFormatType type="Enumeration" value="PKCS_1"/>'
            '<KeyValue><KeyMaterial type="ByteString" value="3003020100"/></KeyValue>'
            '<CryptographicAlgorithm type="Enumeration" value="RSA"/>'
            '<CryptographicLength type="Integer" value="2048"/></KeyBlock></PrivateKey>',
        )
        self.assertEqual(item.reason, ResultReason.INVALID_FIELD)


class PublicKeyOperationTests(SynchronousTestCase):
    """Sign, Signature Verify, and RSA encryption with key pairs."""

    def test_rsa_pss_sign_and_verify(self) -> None:
        """A PSS signature from Sign verifies with the public key, here and with
        ``cryptography``; other data or another hash is Invalid, not an error."""
        h = Harness(self)
        pss = params(PaddingMethod="PSS", HashingAlgorithm="SHA_256", CryptographicAlgorithm="RSA")
        private, public = pair_2x(h)
        signed = run(h, Operation.SIGN, uid(private) + pss + data("Data", "0102"))
        signature = signed.get(Tag.SIGNATURE_DATA)
        published = serialization.load_der_public_key(material(get_key(h, public)).value)
        published.verify(
            signature,
            b"\x01\x02",
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )

        def verdict(body: str) -> int:
            item = run(h, Operation.SIGNATURE_VERIFY, uid(public) + body)
            self.assertTrue(item.ok, item.message)
            return item.get(Tag.VALIDITY_INDICATOR)

        sig = data("SignatureData", signature.hex())
        self.assertEqual(verdict(pss + data("Data", "0102") + sig), ValidityIndicator.VALID)
        self.assertEqual(verdict(pss + data("Data", "0103") + sig), ValidityIndicator.INVALID)
        sha1 = params(PaddingMethod="PSS", HashingAlgorithm="SHA_1", CryptographicAlgorithm="RSA")
        self.assertEqual(verdict(sha1 + data("Data", "0102") + sig), ValidityIndicator.INVALID)
        wrong = run(h, Operation.SIGN, uid(public) + pss + data("Data", "0102"))
        self.assertEqual(wrong.reason, ResultReason.INVALID_OBJECT_TYPE)

    def test_ecdsa_by_parts_and_digested(self) -> None:
        """ECDSA: a signature made by parts verifies over the whole data, and one over a
        client's digest (Digested Data) verifies too."""
        h = Harness(self)
        ecdsa = params(DigitalSignatureAlgorithm="ECDSAWithSHA256")
        private, public = pair_2x(h, algorithm="EC", length=256)
        first = run(
            h,
            Operation.SIGN,
            uid(private)
            + ecdsa
            + data("Data", b"hello ".hex())
            + '<InitIndicator type="Boolean" value="true"/>',
        )
        last = run(
            h,
            Operation.SIGN,
            uid(private)
            + data("Data", b"world".hex())
            + data("CorrelationValue", first.get(Tag.CORRELATION_VALUE).hex())
            + '<FinalIndicator type="Boolean" value="true"/>',
        )
        published = serialization.load_der_public_key(
            material(get_key(h, public, KeyFormatType.X_509)).value
        )
        published.verify(last.get(Tag.SIGNATURE_DATA), b"hello world", ec.ECDSA(hashes.SHA256()))
        digest = hashes.Hash(hashes.SHA256())
        digest.update(b"hello world")
        checked = run(
            h,
            Operation.SIGNATURE_VERIFY,
            uid(public)
            + ecdsa
            + data("DigestedData", digest.finalize().hex())
            + data("SignatureData", last.get(Tag.SIGNATURE_DATA).hex()),
        )
        self.assertEqual(checked.get(Tag.VALIDITY_INDICATOR), ValidityIndicator.VALID)

    def test_rsa_oaep(self) -> None:
        """OAEP with SHA-256 and a label: what Encrypt gives Decrypt opens, and
        ``cryptography`` too; a ciphertext from elsewhere is a Cryptographic Failure."""
        h = Harness(self)
        oaep = params(
            PaddingMethod="OAEP",
            HashingAlgorithm="SHA_256",
            MaskGenerator="MGF1",
            MaskGeneratorHashingAlgorithm="SHA_256",
        ).replace(
            "</CryptographicParameters>",
            data("PSource", "6c6162656c") + "</CryptographicParameters>",
        )
        private, public = pair_2x(h, common=oaep)
        sealed = run(h, Operation.ENCRYPT, uid(public) + data("Data", "73656372657421"))
        self.assertTrue(sealed.ok, sealed.message)
        key = serialization.load_der_private_key(material(get_key(h, private)).value, None)
        scheme = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"label"
        )
        self.assertEqual(key.decrypt(sealed.get(Tag.DATA), scheme), b"secret!")
        opened = run(h, Operation.DECRYPT, uid(private) + data("Data", sealed.get(Tag.DATA).hex()))
        self.assertEqual(opened.get(Tag.DATA), b"secret!")
        stranger = rsa.generate_private_key(65537, 1024).public_key().encrypt(b"x", scheme)
        failed = run(h, Operation.DECRYPT, uid(private) + data("Data", stranger.hex()))
        self.assertEqual(failed.reason, ResultReason.CRYPTOGRAPHIC_FAILURE)
        refused = run(h, Operation.ENCRYPT, uid(private) + data("Data", "00"))
        self.assertEqual(refused.reason, ResultReason.INVALID_OBJECT_TYPE)

    def test_get_wrapped_by_rsa_public_key(self) -> None:
        """Get can wrap a symmetric key under an RSA public key with OAEP; the private key
        holder unwraps it."""
        h = Harness(self)
        oaep = params(PaddingMethod="OAEP", HashingAlgorithm="SHA_256")
        private, public = pair_2x(
            h,
            public='<CryptographicUsageMask type="Integer" value="WrapKey"/>',
            common=oaep,
        )
        aes = run(
            h,
            Operation.REGISTER,
            '<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes/>'
            '<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>'
            '<KeyValue><KeyMaterial type="ByteString" value="00112233445566778899aabbccddeeff"/>'
            '</KeyValue><CryptographicAlgorithm type="Enumeration" value="AES"/>'
            '<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>',
        ).get(Tag.UNIQUE_IDENTIFIER)
        got = run(
            h,
            Operation.GET,
            uid(aes)
            + '<KeyWrappingSpecification><WrappingMethod type="Enumeration" value="Encrypt"/>'
            f"<EncryptionKeyInformation>{uid(public)}{oaep}</EncryptionKeyInformation>"
            '<EncodingOption type="Enumeration" value="NoEncoding"/></KeyWrappingSpecification>',
        )
        self.assertTrue(got.ok, got.message)
        wrapped = got.payload.find(Tag.SYMMETRIC_KEY).find(Tag.KEY_BLOCK).get(Tag.KEY_VALUE)
        key = serialization.load_der_private_key(material(get_key(h, private)).value, None)
        scheme = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA256(), label=None
        )
        self.assertEqual(key.decrypt(wrapped, scheme).hex(), "00112233445566778899aabbccddeeff")
