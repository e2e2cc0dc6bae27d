"""Cryptographic services through the processor, over an in-memory store: Encrypt and
Decrypt (AES modes, paddings, GCM, ChaCha20, by parts), MAC, MAC Verify, Hash, RNG
Retrieve and RNG Seed, and the rules every keyed operation follows (lifecycle state,
usage mask, Process Start / Protect Stop Dates, Usage Limits).

Known-answer vectors are from NIST SP 800-38A/D, RFC 4231, RFC 4493 and RFC 8439;
requests are written in the KMIP XML encoding, as the OASIS cases are.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

from cryptography.hazmat.primitives import keywrap
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.testing.messages import request
from kmiptwist.vocabulary.enums import (
    Operation,
    ResultReason,
    State,
    ValidityIndicator,
)
from kmiptwist.vocabulary.tags import Tag
from tests.test_operations import V11, V14, Harness
from tests.test_profile_operations import V21, attributes_2x, register_2x, uid, xml

NIST_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
NIST_PLAINTEXT = "6bc1bee22e409f96e93d7e117393172a"


def iso(seconds: int) -> str:
    """A KMIP XML Date-Time value."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def key_2x(
    h: Harness,
    material: str,
    algorithm: str = "AES",
    mask: str = "Encrypt Decrypt",
    attributes: str = "",
    active: bool = True,
) -> str:
    """Register a symmetric key (2.1), Active unless told otherwise; its identifier."""
    when = f'<ActivationDate type="DateTime" value="{iso(h.engine.now() - 3600)}"/>'
    item = register_2x(
        h,
        f'<CryptographicUsageMask type="Integer" value="{mask}"/>'
        + (when if active else "")
        + attributes,
        '<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>'
        f'<KeyValue><KeyMaterial type="ByteString" value="{material}"/></KeyValue>'
        f'<CryptographicAlgorithm type="Enumeration" value="{algorithm}"/>'
        f'<CryptographicLength type="Integer" value="{len(material) * 4}"/>'
        "</KeyBlock></SymmetricKey>",
    )
    assert item.ok, item.message
    return item.get(Tag.UNIQUE_IDENTIFIER)


def params(**fields: str) -> str:
    """A Cryptographic Parameters structure: BlockCipherMode="CBC", TagLength=12..."""
    types = {"TagLength": "Integer", "RandomIV": "Boolean", "InitialCounterValue": "Integer"}
    inner = "".join(
        f'<{name} type="{types.get(name, "Enumeration")}" value="{value}"/>'
        for name, value in fields.items()
    )
    return f"<CryptographicParameters>{inner}</CryptographicParameters>"


def data(tag: str, value: str) -> str:
    return f'<{tag} type="ByteString" value="{value}"/>'


def run(h: Harness, operation: int, body: str, version=V21):
    return h.one(version, operation, xml(body))


class SymmetricEncryptionTests(SynchronousTestCase):
    """Encrypt and Decrypt with symmetric keys give the standard answers."""

    def test_aes_ecb_and_cbc_known_answers(self) -> None:
        """AES-128 ECB and CBC match NIST SP 800-38A; PKCS5 padding adds a block."""
        h = Harness(self)
        key = key_2x(h, NIST_KEY)
        ecb = run(
            h,
            Operation.ENCRYPT,
            uid(key) + params(BlockCipherMode="ECB") + data("Data", NIST_PLAINTEXT),
        )
        self.assertTrue(ecb.ok, ecb.message)
        self.assertEqual(ecb.get(Tag.DATA).hex(), "3ad77bb40d7a3660a89ecaf32466ef97")
        cbc = run(
            h,
            Operation.ENCRYPT,
            uid(key)
            + params(BlockCipherMode="CBC")
            + data("Data", NIST_PLAINTEXT)
            + data("IVCounterNonce", "000102030405060708090a0b0c0d0e0f"),
        )
        self.assertEqual(cbc.get(Tag.DATA).hex(), "7649abac8119b246cee98e9b12e9197d")
        padded = run(
            h,
            Operation.ENCRYPT,
            uid(key)
            + params(BlockCipherMode="CBC", PaddingMethod="PKCS5")
            + data("Data", NIST_PLAINTEXT)
            + data("IVCounterNonce", "000102030405060708090a0b0c0d0e0f"),
        )
        self.assertEqual(len(padded.get(Tag.DATA)), 32)
        back = run(
            h,
            Operation.DECRYPT,
            uid(key)
            + params(BlockCipherMode="CBC", PaddingMethod="PKCS5")
            + data("Data", padded.get(Tag.DATA).hex())
            + data("IVCounterNonce", "000102030405060708090a0b0c0d0e0f"),
        )
        self.assertEqual(back.get(Tag.DATA).hex(), NIST_PLAINTEXT)

    def test_parameters_from_the_key_and_unaligned_data(self) -> None:
        """Parameters left out of the request come from the key's attribute; data that is
        not whole blocks without padding is refused, not silently padded."""
        h = Harness(self)
        key = key_2x(h, NIST_KEY, attributes=params(BlockCipherMode="ECB"))
        done = run(h, Operation.ENCRYPT, uid(key) + data("Data", NIST_PLAINTEXT))
        self.assertEqual(done.get(Tag.DATA).hex(), "3ad77bb40d7a3660a89ecaf32466ef97")
        short = run(h, Operation.ENCRYPT, uid(key) + data("Data", "0102"))
        self.assertEqual(short.reason, ResultReason.INVALID_FIELD)
        bare = key_2x(h, NIST_KEY)
        self.assertEqual(
            run(h, Operation.ENCRYPT, uid(bare) + data("Data", NIST_PLAINTEXT)).reason,
            ResultReason.BAD_CRYPTOGRAPHIC_PARAMETERS,
        )

    def test_random_iv_and_missing_iv(self) -> None:
        """With Random IV the server picks the IV and returns it; decrypting needs it
        back (Invalid Message without it, as the OASIS cases expect)."""
        h = Harness(self)
        key = key_2x(h, NIST_KEY, attributes=params(BlockCipherMode="CBC", PaddingMethod="PKCS5"))
        sealed = run(
            h, Operation.ENCRYPT, uid(key) + params(RandomIV="true") + data("Data", "41" * 20)
        )
        self.assertTrue(sealed.ok, sealed.message)
        iv = sealed.get(Tag.IV_COUNTER_NONCE)
        self.assertEqual(len(iv), 16)
        missing = run(h, Operation.DECRYPT, uid(key) + data("Data", sealed.get(Tag.DATA).hex()))
        self.assertEqual(missing.reason, ResultReason.INVALID_MESSAGE)
        opened = run(
            h,
            Operation.DECRYPT,
            uid(key) + data("Data", sealed.get(Tag.DATA).hex()) + data("IVCounterNonce", iv.hex()),
        )
        self.assertEqual(opened.get(Tag.DATA), b"A" * 20)
        no_iv = run(h, Operation.ENCRYPT, uid(key) + data("Data", "41"))
        self.assertEqual(no_iv.reason, ResultReason.INVALID_MESSAGE)

    def test_gcm_known_answer_tag_lengths_and_bad_tags(self) -> None:
        """AES-GCM matches NIST test case 2 with full and truncated tags; a wrong tag,
        IV or ciphertext is a Cryptographic Failure; tag lengths GCM forbids fail."""
        h = Harness(self)
        key = key_2x(h, "00" * 16)
        gcm = params(BlockCipherMode="GCM", TagLength="16")
        sealed = run(
            h,
            Operation.ENCRYPT,
            uid(key) + gcm + data("Data", "00" * 16) + data("IVCounterNonce", "00" * 12),
        )
        self.assertEqual(sealed.get(Tag.DATA).hex(), "0388dace60b6a392f328c2b971b2fe78")
        tag = sealed.get(Tag.AUTHENTICATED_ENCRYPTION_TAG).hex()
        self.assertEqual(tag, "ab6e47d42cec13bdf53a67b21257bddf")

        def open_(body: str):
            return run(h, Operation.DECRYPT, uid(key) + body)

        good = (
            gcm
            + data("Data", "0388dace60b6a392f328c2b971b2fe78")
            + data("IVCounterNonce", "00" * 12)
        )
        self.assertEqual(
            open_(good + data("AuthenticatedEncryptionTag", tag)).get(Tag.DATA), bytes(16)
        )
        truncated = good.replace('value="16"', 'value="12"')
        self.assertTrue(open_(truncated + data("AuthenticatedEncryptionTag", tag[:24])).ok)
        self.assertEqual(
            open_(good + data("AuthenticatedEncryptionTag", "00" + tag[2:])).reason,
            ResultReason.CRYPTOGRAPHIC_FAILURE,
        )
        for bad_length in ("1", "32"):
            refused = run(
                h,
                Operation.ENCRYPT,
                uid(key)
                + params(BlockCipherMode="GCM", TagLength=bad_length)
                + data("Data", "00")
                + data("IVCounterNonce", "00" * 12),
            )
            self.assertEqual(refused.reason, ResultReason.GENERAL_FAILURE)

    def test_gcm_by_parts_equals_one_part(self) -> None:
        """Init Indicator, Correlation Value, Final Indicator: the parts give the same
        ciphertext and tag as one request; an unknown or another tenant's Correlation
        Value is refused."""
        h = Harness(self)
        key = key_2x(h, "feffe9928665731c6d6a8f9467308308")
        gcm = params(BlockCipherMode="GCM", TagLength="16")
        iv, aad = (
            data("IVCounterNonce", "cafebabefacedbaddecaf888"),
            data("AuthenticatedEncryptionAdditionalData", "feedface"),
        )
        plaintext = bytes(range(60))
        whole = run(h, Operation.ENCRYPT, uid(key) + gcm + iv + aad + data("Data", plaintext.hex()))
        first = run(
            h,
            Operation.ENCRYPT,
            uid(key)
            + gcm
            + iv
            + aad
            + data("Data", plaintext[:32].hex())
            + '<InitIndicator type="Boolean" value="true"/>',
        )
        correlation = first.get(Tag.CORRELATION_VALUE)
        self.assertIsNotNone(correlation)
        stranger = h.one(
            V21,
            Operation.ENCRYPT,
            xml(uid(key) + data("CorrelationValue", correlation.hex()) + data("Data", "00")),
            tenant="beta",
        )
        self.assertEqual(stranger.reason, ResultReason.INVALID_CORRELATION_VALUE)
        last = run(
            h,
            Operation.ENCRYPT,
            uid(key)
            + data("Data", plaintext[32:].hex())
            + data("CorrelationValue", correlation.hex())
            + '<FinalIndicator type="Boolean" value="true"/>',
        )
        self.assertEqual(first.get(Tag.DATA) + last.get(Tag.DATA), whole.get(Tag.DATA))
        self.assertEqual(
            last.get(Tag.AUTHENTICATED_ENCRYPTION_TAG), whole.get(Tag.AUTHENTICATED_ENCRYPTION_TAG)
        )
        again = run(
            h,
            Operation.ENCRYPT,
            uid(key) + data("Data", "00") + data("CorrelationValue", correlation.hex()),
        )
        self.assertEqual(again.reason, ResultReason.INVALID_CORRELATION_VALUE)
        self.assertEqual(len(h.engine.streams), 0)

    def test_chacha20_and_chacha20_poly1305(self) -> None:
        """ChaCha20 with an 8-byte nonce is the original cipher (RFC 8439 A.1 keystream);
        ChaCha20-Poly1305 matches RFC 8439 2.8.2 and refuses a forged tag."""
        h = Harness(self)
        stream = key_2x(h, "00" * 32, algorithm="ChaCha20")
        out = run(
            h,
            Operation.ENCRYPT,
            uid(stream) + data("Data", "00" * 64) + data("IVCounterNonce", "00" * 8),
        )
        self.assertEqual(out.get(Tag.DATA).hex()[:32], "76b8e0ada0f13d90405d6ae55386bd28")
        aead = key_2x(
            h,
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
            algorithm="ChaCha20Poly1305",
        )
        message = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
        common = (
            uid(aead)
            + params(BlockCipherMode="AEAD")
            + data("IVCounterNonce", "070000004041424344454647")
            + data("AuthenticatedEncryptionAdditionalData", "50515253c0c1c2c3c4c5c6c7")
        )
        sealed = run(h, Operation.ENCRYPT, common + data("Data", message.hex()))
        self.assertEqual(
            sealed.get(Tag.AUTHENTICATED_ENCRYPTION_TAG).hex(), "1ae10b594f09e26a7e902ecbd0600691"
        )
        body = common + data("Data", sealed.get(Tag.DATA).hex())
        self.assertEqual(
            run(
                h,
                Operation.DECRYPT,
                body + data("AuthenticatedEncryptionTag", "1ae10b594f09e26a7e902ecbd0600691"),
            ).get(Tag.DATA),
            message,
        )
        self.assertEqual(
            run(h, Operation.DECRYPT, body + data("AuthenticatedEncryptionTag", "00" * 16)).reason,
            ResultReason.CRYPTOGRAPHIC_FAILURE,
        )

    def test_key_wrap_mode(self) -> None:
        """Encrypt with NIST Key Wrap is RFC 3394 (its 4.1 vector); a tampered wrap fails."""
        h = Harness(self)
        key = key_2x(
            h, "000102030405060708090a0b0c0d0e0f", attributes=params(BlockCipherMode="NISTKeyWrap")
        )
        wrapped = run(
            h, Operation.ENCRYPT, uid(key) + data("Data", "00112233445566778899aabbccddeeff")
        )
        self.assertEqual(
            wrapped.get(Tag.DATA).hex(), "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5"
        )
        bad = run(
            h, Operation.DECRYPT, uid(key) + data("Data", "00" + wrapped.get(Tag.DATA).hex()[2:])
        )
        self.assertEqual(bad.reason, ResultReason.CRYPTOGRAPHIC_FAILURE)


class KeyUseRuleTests(SynchronousTestCase):
    """Which keys an operation may use, and the Result Reasons when it may not."""

    def test_lifecycle_state(self) -> None:
        """A Pre-Active key encrypts nothing; once revoked it still decrypts but no longer
        encrypts; destroyed it does neither.  KMIP 1.x clients hear Permission Denied."""
        h = Harness(self)
        key = key_2x(h, NIST_KEY, attributes=params(BlockCipherMode="ECB"), active=False)
        body = uid(key) + data("Data", NIST_PLAINTEXT)
        self.assertEqual(
            run(h, Operation.ENCRYPT, body).reason, ResultReason.WRONG_KEY_LIFECYCLE_STATE
        )
        self.assertEqual(
            run(h, Operation.ENCRYPT, body, V14).reason, ResultReason.PERMISSION_DENIED
        )
        self.assertTrue(run(h, Operation.ACTIVATE, uid(key)).ok)
        sealed = run(h, Operation.ENCRYPT, body)
        self.assertTrue(sealed.ok, sealed.message)
        revoke = '<RevocationReason><RevocationReasonCode type="Enumeration" value="CessationOfOperation"/></RevocationReason>'
        self.assertTrue(run(h, Operation.REVOKE, uid(key) + revoke).ok)
        self.assertEqual(
            run(h, Operation.ENCRYPT, body).reason, ResultReason.WRONG_KEY_LIFECYCLE_STATE
        )
        opened = run(h, Operation.DECRYPT, uid(key) + data("Data", sealed.get(Tag.DATA).hex()))
        self.assertEqual(opened.get(Tag.DATA).hex(), NIST_PLAINTEXT)
        self.assertTrue(run(h, Operation.DESTROY, uid(key)).ok)
        self.assertEqual(
            run(h, Operation.DECRYPT, uid(key) + data("Data", sealed.get(Tag.DATA).hex())).reason,
            ResultReason.WRONG_KEY_LIFECYCLE_STATE,
        )

    def test_usage_mask(self) -> None:
        """A key whose usage mask lacks Decrypt cannot decrypt (2.x: Incompatible
        Cryptographic Usage Mask; 1.x: Permission Denied), nor a MAC key encrypt."""
        h = Harness(self)
        key = key_2x(h, NIST_KEY, mask="Encrypt", attributes=params(BlockCipherMode="ECB"))
        body = uid(key) + data("Data", NIST_PLAINTEXT)
        self.assertTrue(run(h, Operation.ENCRYPT, body).ok)
        self.assertEqual(
            run(h, Operation.DECRYPT, body).reason,
            ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK,
        )
        self.assertEqual(
            run(h, Operation.DECRYPT, body, V14).reason, ResultReason.PERMISSION_DENIED
        )
        self.assertEqual(
            run(h, Operation.MAC, body).reason, ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK
        )

    def test_process_start_and_protect_stop_dates(self) -> None:
        """Before its Process Start Date a key decrypts nothing; after its Protect Stop
        Date it encrypts nothing."""
        h = Harness(self)
        now = h.engine.now()
        key = key_2x(
            h,
            NIST_KEY,
            attributes=params(BlockCipherMode="ECB")
            + f'<ProcessStartDate type="DateTime" value="{iso(now + 3600)}"/>'
            + f'<ProtectStopDate type="DateTime" value="{iso(now + 60)}"/>',
        )
        body = uid(key) + data("Data", NIST_PLAINTEXT)
        self.assertTrue(run(h, Operation.ENCRYPT, body).ok)
        self.assertEqual(
            run(h, Operation.DECRYPT, body).reason, ResultReason.WRONG_KEY_LIFECYCLE_STATE
        )
        h.clock.advance(120)
        self.assertEqual(
            run(h, Operation.ENCRYPT, body).reason, ResultReason.WRONG_KEY_LIFECYCLE_STATE
        )
        h.clock.advance(3600)
        self.assertTrue(run(h, Operation.DECRYPT, body).ok)

    def test_usage_limits(self) -> None:
        """Usage Limits in bytes: encryption draws on them, decryption does not, and the
        count left is what Get Attributes shows."""
        h = Harness(self)
        limits = (
            '<UsageLimits><UsageLimitsTotal type="LongInteger" value="32"/>'
            '<UsageLimitsUnit type="Enumeration" value="Byte"/></UsageLimits>'
        )
        key = key_2x(h, NIST_KEY, attributes=params(BlockCipherMode="ECB") + limits)
        body = uid(key) + data("Data", NIST_PLAINTEXT)
        start = attributes_2x(h, key, "UsageLimits")[Tag.USAGE_LIMITS][0]
        self.assertEqual(ttlv.structure(Tag.USAGE_LIMITS, start).get(Tag.USAGE_LIMITS_COUNT), 32)
        self.assertTrue(run(h, Operation.ENCRYPT, body).ok)
        self.assertTrue(run(h, Operation.DECRYPT, body).ok)
        left = attributes_2x(h, key, "UsageLimits")[Tag.USAGE_LIMITS][0]
        self.assertEqual(ttlv.structure(Tag.USAGE_LIMITS, left).get(Tag.USAGE_LIMITS_COUNT), 16)
        self.assertTrue(run(h, Operation.ENCRYPT, body).ok)
        self.assertEqual(run(h, Operation.ENCRYPT, body).reason, ResultReason.PERMISSION_DENIED)

    def test_wrong_object_and_absent_key(self) -> None:
        """Encrypting with Secret Data is Invalid Object Type; another tenant's key does
        not exist."""
        h = Harness(self)
        secret = register_2x(
            h,
            "",
            '<SecretData><SecretDataType type="Enumeration" value="Password"/><KeyBlock>'
            '<KeyFormatType type="Enumeration" value="Opaque"/><KeyValue>'
            '<KeyMaterial type="ByteString" value="70617373"/></KeyValue></KeyBlock></SecretData>',
            object_type="SecretData",
        )
        body = uid(secret.get(Tag.UNIQUE_IDENTIFIER)) + data("Data", "00")
        self.assertEqual(run(h, Operation.ENCRYPT, body).reason, ResultReason.INVALID_OBJECT_TYPE)
        key = key_2x(h, NIST_KEY)
        other = h.one(V21, Operation.ENCRYPT, xml(uid(key) + data("Data", "00")), tenant="beta")
        self.assertEqual(other.reason, ResultReason.OBJECT_NOT_FOUND)

    def test_operations_by_version(self) -> None:
        """Query lists the cryptographic operations to KMIP 1.4 and 2.1 clients, not to
        1.1 clients, whose version does not have them."""
        h = Harness(self)

        def offered(version):
            payload = xml('<QueryFunction type="Enumeration" value="QueryOperations"/>')
            return [i.value for i in h.one(version, Operation.QUERY, payload).payload.value]

        wanted = {Operation.ENCRYPT, Operation.SIGN, Operation.MAC_VERIFY, Operation.RNG_RETRIEVE}
        self.assertLessEqual(wanted, set(offered(V14)))
        self.assertLessEqual(wanted | {Operation.CREATE_KEY_PAIR}, set(offered(V21)))
        self.assertFalse(wanted & set(offered(V11)))
        self.assertIn(Operation.CREATE_KEY_PAIR, offered(V11))


class MACHashRNGTests(SynchronousTestCase):
    """MAC, MAC Verify, Hash, RNG Retrieve and RNG Seed."""

    def test_hmac_and_verify(self) -> None:
        """HMAC-SHA256 is RFC 4231's; MAC Verify says Valid for it and Invalid for another."""
        h = Harness(self)
        key = key_2x(h, "0b" * 20, algorithm="HMAC_SHA256", mask="MACGenerate MACVerify")
        body = uid(key) + data("Data", b"Hi There".hex())
        mac = run(h, Operation.MAC, body)
        expected = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        self.assertEqual(mac.get(Tag.MAC_DATA).hex(), expected)
        self.assertEqual(
            run(h, Operation.MAC_VERIFY, body + data("MACData", expected)).get(
                Tag.VALIDITY_INDICATOR
            ),
            ValidityIndicator.VALID,
        )
        self.assertEqual(
            run(h, Operation.MAC_VERIFY, body + data("MACData", "00" * 32)).get(
                Tag.VALIDITY_INDICATOR
            ),
            ValidityIndicator.INVALID,
        )

    def test_hmac_named_in_parameters_and_cmac(self) -> None:
        """An AES key MACs as HMAC when the parameters name one (the OASIS cases do) and
        as CMAC otherwise (RFC 4493 example 2)."""
        h = Harness(self)
        key = key_2x(h, NIST_KEY, mask="MACGenerate")
        hmac_out = run(
            h,
            Operation.MAC,
            uid(key) + params(CryptographicAlgorithm="HMAC_SHA256") + data("Data", "01"),
        )
        self.assertEqual(
            hmac_out.get(Tag.MAC_DATA),
            hmac.new(bytes.fromhex(NIST_KEY), b"\x01", hashlib.sha256).digest(),
        )
        cmac_out = run(h, Operation.MAC, uid(key) + data("Data", NIST_PLAINTEXT))
        self.assertEqual(cmac_out.get(Tag.MAC_DATA).hex(), "070a16b46b4d4144f79bdd9dd04a287c")

    def test_hash_whole_and_by_parts(self) -> None:
        """Hash gives the digest of the data, in one request or in parts."""
        h = Harness(self)
        sha = params(HashingAlgorithm="SHA_256")
        whole = run(h, Operation.HASH, sha + data("Data", b"abcdef".hex()))
        self.assertEqual(whole.get(Tag.DATA), hashlib.sha256(b"abcdef").digest())
        first = run(
            h,
            Operation.HASH,
            sha + data("Data", b"abc".hex()) + '<InitIndicator type="Boolean" value="true"/>',
        )
        last = run(
            h,
            Operation.HASH,
            data("Data", b"def".hex())
            + data("CorrelationValue", first.get(Tag.CORRELATION_VALUE).hex())
            + '<FinalIndicator type="Boolean" value="true"/>',
        )
        self.assertEqual(last.get(Tag.DATA), whole.get(Tag.DATA))
        self.assertEqual(
            run(h, Operation.HASH, data("Data", "00")).reason, ResultReason.INVALID_FIELD
        )

    def test_rng(self) -> None:
        """RNG Retrieve returns the bytes asked for, within a bound; RNG Seed is refused
        (the server's generator is the operating system's)."""
        h = Harness(self)
        out = run(h, Operation.RNG_RETRIEVE, '<DataLength type="Integer" value="32"/>')
        self.assertEqual(len(out.get(Tag.DATA)), 32)
        again = run(h, Operation.RNG_RETRIEVE, '<DataLength type="Integer" value="32"/>')
        self.assertNotEqual(out.get(Tag.DATA), again.get(Tag.DATA))
        self.assertEqual(
            run(h, Operation.RNG_RETRIEVE, '<DataLength type="Integer" value="10000000"/>').reason,
            ResultReason.INVALID_FIELD,
        )
        self.assertEqual(
            run(h, Operation.RNG_SEED, data("Data", "00" * 32)).reason,
            ResultReason.PERMISSION_DENIED,
        )


class BatchTests(SynchronousTestCase):
    """Cryptographic operations inside batches."""

    def test_encrypt_uses_the_id_placeholder(self) -> None:
        """Encrypt without a Unique Identifier uses the key the batch just registered."""
        h = Harness(self)
        register = xml(
            '<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes>'
            '<CryptographicUsageMask type="Integer" value="Encrypt"/>'
            f'<ActivationDate type="DateTime" value="{iso(h.engine.now() - 10)}"/>'
            + params(BlockCipherMode="ECB")
            + "</Attributes><SymmetricKey><KeyBlock>"
            '<KeyFormatType type="Enumeration" value="Raw"/><KeyValue>'
            f'<KeyMaterial type="ByteString" value="{NIST_KEY}"/></KeyValue>'
            '<CryptographicAlgorithm type="Enumeration" value="AES"/>'
            '<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>'
        )
        answer = h.send(
            request(
                V21,
                [
                    (Operation.REGISTER, register, None),
                    (Operation.ENCRYPT, xml(data("Data", NIST_PLAINTEXT)), None),
                ],
            )
        )
        self.assertTrue(answer.items[1].ok, answer.items[1].message)
        self.assertEqual(answer.items[1].get(Tag.DATA).hex(), "3ad77bb40d7a3660a89ecaf32466ef97")
        self.assertEqual(
            answer.items[1].get(Tag.UNIQUE_IDENTIFIER), answer.items[0].get(Tag.UNIQUE_IDENTIFIER)
        )
        self.assertEqual(
            State.ACTIVE,
            attributes_2x(h, answer.items[0].get(Tag.UNIQUE_IDENTIFIER), "State")[Tag.STATE][0],
        )


class WrappedGetTests(SynchronousTestCase):
    """Get with a Key Wrapping Specification returns the key encrypted under another."""

    def wrap_spec(self, wrapping: str, extra: str = "", mode: str = "NISTKeyWrap") -> str:
        return (
            '<KeyWrappingSpecification><WrappingMethod type="Enumeration" value="Encrypt"/>'
            f"<EncryptionKeyInformation>{uid(wrapping)}{params(BlockCipherMode=mode)}"
            f"</EncryptionKeyInformation>{extra}</KeyWrappingSpecification>"
        )

    def test_nist_key_wrap(self) -> None:
        """The Key Value comes back AES-wrapped (RFC 3394) around its TTLV encoding, with
        Key Wrapping Data saying how; a Sensitive key may leave only so; No Encoding
        wraps the bare key."""
        h = Harness(self)
        kek = key_2x(h, "00" * 32, mask="WrapKey", attributes=params(BlockCipherMode="NISTKeyWrap"))
        key = key_2x(h, NIST_KEY, attributes='<Sensitive type="Boolean" value="true"/>')
        self.assertEqual(run(h, Operation.GET, uid(key)).reason, ResultReason.SENSITIVE)
        got = run(h, Operation.GET, uid(key) + self.wrap_spec(kek))
        self.assertTrue(got.ok, got.message)
        block = got.payload.find(Tag.SYMMETRIC_KEY).find(Tag.KEY_BLOCK)
        wrapping_data = block.find(Tag.KEY_WRAPPING_DATA)
        self.assertEqual(
            wrapping_data.find(Tag.ENCRYPTION_KEY_INFORMATION).get(Tag.UNIQUE_IDENTIFIER), kek
        )
        inner = ttlv.decode(keywrap.aes_key_unwrap(bytes(32), block.get(Tag.KEY_VALUE)))
        self.assertEqual(inner.get(Tag.KEY_MATERIAL).hex(), NIST_KEY)
        bare = run(
            h,
            Operation.GET,
            uid(key)
            + self.wrap_spec(kek, '<EncodingOption type="Enumeration" value="NoEncoding"/>'),
        )
        value = bare.payload.find(Tag.SYMMETRIC_KEY).find(Tag.KEY_BLOCK).get(Tag.KEY_VALUE)
        self.assertEqual(keywrap.aes_key_unwrap(bytes(32), value).hex(), NIST_KEY)

    def test_wrapping_key_rules(self) -> None:
        """The wrapping key needs Wrap Key in its usage mask and parameters that match its
        own; a key of another tenant cannot wrap."""
        h = Harness(self)
        key = key_2x(h, NIST_KEY)
        plain = key_2x(
            h, "00" * 32, mask="Encrypt", attributes=params(BlockCipherMode="NISTKeyWrap")
        )
        self.assertEqual(
            run(h, Operation.GET, uid(key) + self.wrap_spec(plain)).reason,
            ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK,
        )
        kek = key_2x(h, "00" * 32, mask="WrapKey", attributes=params(BlockCipherMode="NISTKeyWrap"))
        self.assertEqual(
            run(h, Operation.GET, uid(key) + self.wrap_spec(kek, mode="AESKeyWrapPadding")).reason,
            ResultReason.BAD_CRYPTOGRAPHIC_PARAMETERS,
        )
        other = h.one(V21, Operation.GET, xml(uid(key) + self.wrap_spec(kek)), tenant="beta")
        self.assertEqual(other.reason, ResultReason.OBJECT_NOT_FOUND)
