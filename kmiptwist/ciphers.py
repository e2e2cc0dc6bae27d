"""Symmetric encryption and decryption for Encrypt and Decrypt, through ``cryptography``.

Algorithms: AES, Triple DES, Camellia, SM4 (block ciphers); ChaCha20 and
ChaCha20-Poly1305.  Block cipher modes: ECB and CBC (with Padding Method None,
PKCS5, ANSI X9.23 or ISO 10126), CFB, OFB, CTR, XTS, GCM (AAD, tag lengths 4, 8,
12-16 bytes), CCM, and the AES key wraps of RFC 3394 / 5649.  An operation is a
:class:`CipherStream` fed by parts and finished once, so the same code serves a
single-part request and a by-parts one (Init Indicator ... Final Indicator).

Every failure is a :class:`~kmiptwist.errors.KMIPError` with the Result Reason the
OASIS cases expect: a missing IV is Invalid Message, a tag length the mode does not
allow is General Failure, a wrong tag or padding is Cryptographic Failure.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from attrs import define, field
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
from cryptography.hazmat.primitives import keywrap, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, ChaCha20Poly1305

from kmiptwist.cryptoparams import CryptographicParameters, unsupported
from kmiptwist.errors import KMIPError, invalid_field, invalid_message
from kmiptwist.vocabulary.enums import (
    BlockCipherMode,
    CryptographicAlgorithm,
    PaddingMethod,
    ResultReason,
)

__all__ = [
    "CipherStream",
    "start",
    "STREAMABLE_MODES",
    "STREAMABLE_ALGORITHMS",
    "SYMMETRIC_ALGORITHMS",
    "BLOCK_CIPHERS",
]

# Camellia, CFB and OFB moved to the "decrepit" module in cryptography 46-47; the
# older releases this package allows still have them in the primitives.
try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB, OFB
except ImportError:  # pragma: no cover - cryptography < 47
    from cryptography.hazmat.primitives.ciphers.modes import CFB, OFB  # type: ignore[assignment]
_Camellia: Any = getattr(decrepit, "Camellia", None) or algorithms.Camellia  # type: ignore[attr-defined]

#: The block cipher of each symmetric algorithm this server encrypts with.
BLOCK_CIPHERS: dict[int, Callable[[bytes], Any]] = {
    CryptographicAlgorithm.AES: algorithms.AES,
    CryptographicAlgorithm.TRIPLE_DES: decrepit.TripleDES,
    CryptographicAlgorithm.CAMELLIA: _Camellia,
    CryptographicAlgorithm.SM4: algorithms.SM4,
}
SYMMETRIC_ALGORITHMS = frozenset(BLOCK_CIPHERS) | {
    CryptographicAlgorithm.CHACHA20,
    CryptographicAlgorithm.CHACHA20POLY1305,
}

#: Modes whose work can be split into parts (the others need all the data at once).
STREAMABLE_MODES = frozenset(
    {
        BlockCipherMode.ECB,
        BlockCipherMode.CBC,
        BlockCipherMode.CFB,
        BlockCipherMode.OFB,
        BlockCipherMode.CTR,
        BlockCipherMode.GCM,
    }
)
#: Algorithms that stream whatever the mode (a stream cipher has none).
STREAMABLE_ALGORITHMS = frozenset({CryptographicAlgorithm.CHACHA20})
_PADDED_MODES = frozenset({BlockCipherMode.ECB, BlockCipherMode.CBC})
#: Modes whose IV is one cipher block.
_IV_MODES: dict[int, Any] = {
    BlockCipherMode.CBC: modes.CBC,
    BlockCipherMode.CFB: CFB,
    BlockCipherMode.OFB: OFB,
    BlockCipherMode.CTR: modes.CTR,
}
_GCM_TAG_LENGTHS = frozenset({4, 8, 12, 13, 14, 15, 16})
_POLY1305_TAG_LENGTHS = frozenset({12, 13, 14, 15, 16})
_CCM_TAG_LENGTHS = frozenset({4, 6, 8, 10, 12, 14, 16})


class CipherStream(Protocol):
    """One encryption or decryption, fed in parts."""

    def update(self, data: bytes) -> bytes:
        """Process the next part; return what is ready of the output."""

    def finish(self) -> tuple[bytes, bytes | None]:
        """The rest of the output, and the authentication tag when encrypting with AEAD."""


def _name(enum: Any, value: int | None) -> str:
    try:
        return enum(value).name
    except ValueError:
        return f"0x{value:08X}" if isinstance(value, int) else "none"


def _tag_length_error(length: int, allowed: frozenset[int], what: str) -> KMIPError:
    return KMIPError(
        ResultReason.GENERAL_FAILURE,
        f"invalid tag length {length} for {what}; allowed: "
        + ", ".join(str(n) for n in sorted(allowed))
        + " bytes",
    )


def _missing_iv(mode: str) -> KMIPError:
    return invalid_message(
        f"{mode} needs an IV/Counter/Nonce: send one, or ask the server for a Random IV "
        "(encryption only)"
    )


# -- block cipher modes -----------------------------------------------------------------


@define
class _ContextStream:
    """A ``cryptography`` cipher context, with padding for ECB and CBC."""

    context: Any
    padder: Any = None
    unpadder: Any = None
    aead_tag_length: int | None = None

    def update(self, data: bytes) -> bytes:
        if self.padder is not None:
            data = self.padder.update(data)
        out = self.context.update(data)
        if self.unpadder is not None:
            out = self.unpadder.update(out)
        return out

    def finish(self) -> tuple[bytes, bytes | None]:
        tail = self.padder.finalize() if self.padder is not None else b""
        try:
            out = self.context.update(tail) + self.context.finalize()
        except InvalidTag:
            raise KMIPError(
                ResultReason.CRYPTOGRAPHIC_FAILURE,
                "authentication failed: the tag does not match the data, IV and additional data",
            ) from None
        except ValueError as error:
            raise invalid_field(f"the data does not fit the cipher: {error}") from None
        if self.unpadder is not None:
            try:
                out = self.unpadder.update(out) + self.unpadder.finalize()
            except ValueError:
                raise KMIPError(
                    ResultReason.CRYPTOGRAPHIC_FAILURE,
                    "decryption failed: the padding is not valid (wrong key, IV or data)",
                ) from None
        tag = None
        if self.aead_tag_length is not None:
            tag = self.context.tag[: self.aead_tag_length]
        return out, tag


@define
class _ISO10126Padder:
    """ISO 10126 padding: random bytes, then the pad length ( ``cryptography`` has none)."""

    block_bytes: int
    buffered: bytes = b""

    def update(self, data: bytes) -> bytes:
        self.buffered += data
        keep = len(self.buffered) % self.block_bytes
        out, self.buffered = (
            self.buffered[: len(self.buffered) - keep],
            self.buffered[len(self.buffered) - keep :],
        )
        return out

    def finalize(self) -> bytes:
        count = self.block_bytes - len(self.buffered)
        return self.buffered + secrets.token_bytes(count - 1) + bytes([count])


@define
class _ISO10126Unpadder:
    """Strips ISO 10126 padding: only the last byte, the count, carries meaning."""

    block_bytes: int
    buffered: bytes = b""

    def update(self, data: bytes) -> bytes:
        self.buffered += data
        if len(self.buffered) <= self.block_bytes:
            return b""
        out = self.buffered[: -self.block_bytes]
        self.buffered = self.buffered[-self.block_bytes :]
        return out

    def finalize(self) -> bytes:
        if len(self.buffered) != self.block_bytes:
            raise ValueError("not a whole block")
        count = self.buffered[-1]
        if not 1 <= count <= self.block_bytes:
            raise ValueError("bad padding")
        return self.buffered[:-count]


def _paddings(method: int | None, block_bits: int, encrypt: bool) -> tuple[Any, Any]:
    """(padder, unpadder) for ECB/CBC; both None for Padding Method None."""
    if method in (None, PaddingMethod.NONE):
        return None, None
    if method == PaddingMethod.PKCS5:
        scheme: Any = padding.PKCS7(block_bits)
    elif method == PaddingMethod.ANSI_X9_23:
        scheme = padding.ANSIX923(block_bits)
    elif method == PaddingMethod.ISO_10126:
        if encrypt:
            return _ISO10126Padder(block_bits // 8), None
        return None, _ISO10126Unpadder(block_bits // 8)
    else:
        raise unsupported(
            f"Padding Method {_name(PaddingMethod, method)} is not supported for block cipher "
            "modes; supported: None, PKCS5, ANSI X9.23, ISO 10126"
        )
    return (scheme.padder(), None) if encrypt else (None, scheme.unpadder())


def _iv_for(
    iv: bytes | None, length: int, encrypt: bool, random_iv: bool, what: str
) -> tuple[bytes, bytes | None]:
    """(IV to use, IV to return to the client when the server chose it)."""
    if iv is None:
        if encrypt and random_iv:
            generated = secrets.token_bytes(length)
            return generated, generated
        raise _missing_iv(what)
    if len(iv) != length:
        raise invalid_field(f"{what} needs a {length}-byte IV/Counter/Nonce, not {len(iv)} bytes")
    return iv, None


def _block_stream(
    algorithm: int,
    key: bytes,
    parameters: CryptographicParameters,
    encrypt: bool,
    iv: bytes | None,
    aad: bytes | None,
    tag: bytes | None,
) -> tuple[CipherStream, bytes | None]:
    try:
        cipher = BLOCK_CIPHERS[algorithm](key)
    except ValueError as error:
        raise invalid_field(
            f"the key does not suit {_name(CryptographicAlgorithm, algorithm)}: {error}"
        ) from None
    mode = parameters.block_cipher_mode
    if mode is None:
        raise KMIPError(
            ResultReason.BAD_CRYPTOGRAPHIC_PARAMETERS,
            f"{_name(CryptographicAlgorithm, algorithm)} needs a Block Cipher Mode: give it in the "
            "request's Cryptographic Parameters or in the key's Cryptographic Parameters attribute",
        )
    block = cipher.block_size // 8
    random_iv = parameters.random_iv is True
    mode_name = _name(BlockCipherMode, mode)
    returned: bytes | None = None
    tag_length: int | None = None
    if mode == BlockCipherMode.ECB:
        mode_object: Any = modes.ECB()
    elif mode in _IV_MODES:
        chosen, returned = _iv_for(iv, block, encrypt, random_iv, mode_name)
        mode_object = _IV_MODES[mode](chosen)
    elif mode == BlockCipherMode.XTS:
        chosen, returned = _iv_for(iv, 16, encrypt, random_iv, mode_name)
        mode_object = modes.XTS(chosen)
    elif mode == BlockCipherMode.GCM:
        if block != 16:
            raise unsupported("GCM needs a 128-bit block cipher (AES, Camellia, SM4)")
        tag_length = parameters.tag_length if parameters.tag_length is not None else 16
        if tag_length not in _GCM_TAG_LENGTHS:
            raise _tag_length_error(tag_length, _GCM_TAG_LENGTHS, "GCM")
        if iv is None and encrypt and random_iv:
            iv = returned = secrets.token_bytes(parameters.iv_length or 12)
        if iv is None:
            raise _missing_iv(mode_name)
        if not 8 <= len(iv) <= 128:
            raise invalid_field("a GCM IV must be 8 to 128 bytes long")
        if encrypt:
            mode_object = modes.GCM(iv)
        else:
            tag = _received_tag(tag, parameters.tag_length, _GCM_TAG_LENGTHS, "GCM")
            mode_object = modes.GCM(iv, tag, min_tag_length=len(tag))
    else:
        raise unsupported(
            f"Block Cipher Mode {mode_name} is not supported; supported: ECB, CBC, CFB, OFB, "
            "CTR, XTS, GCM, CCM, NIST Key Wrap, AES Key Wrap with Padding"
        )
    try:
        context = (
            Cipher(cipher, mode_object).encryptor()
            if encrypt
            else Cipher(cipher, mode_object).decryptor()
        )
    except ValueError as error:
        raise invalid_field(f"{mode_name} cannot use this key: {error}") from None
    if aad is not None:
        if mode != BlockCipherMode.GCM:
            raise invalid_field(
                f"Authenticated Encryption Additional Data does not apply to {mode_name}"
            )
        context.authenticate_additional_data(aad)
    padder, unpadder = (None, None)
    if mode in _PADDED_MODES:
        padder, unpadder = _paddings(parameters.padding_method, cipher.block_size, encrypt)
    elif parameters.padding_method not in (None, PaddingMethod.NONE):
        raise invalid_field(f"{mode_name} takes no Padding Method")
    stream = _ContextStream(
        context, padder, unpadder, tag_length if encrypt and tag_length is not None else None
    )
    return stream, returned


def _received_tag(
    tag: bytes | None, tag_length: int | None, allowed: frozenset[int], what: str
) -> bytes:
    """The Authenticated Encryption Tag of a decryption, checked against its length."""
    if tag is None:
        raise invalid_field(f"{what} decryption needs the Authenticated Encryption Tag")
    if len(tag) not in allowed:
        raise _tag_length_error(len(tag), allowed, what)
    if tag_length is not None and tag_length != len(tag):
        raise invalid_field(
            f"the Authenticated Encryption Tag has {len(tag)} bytes but Tag Length says {tag_length}"
        )
    return tag


# -- whole-message modes ----------------------------------------------------------------


@define
class _WholeStream:
    """Modes that need all of the data at once: the parts are gathered, then processed."""

    process: Callable[[bytes], tuple[bytes, bytes | None]]
    parts: list[bytes] = field(factory=list)

    def update(self, data: bytes) -> bytes:
        self.parts.append(data)
        return b""

    def finish(self) -> tuple[bytes, bytes | None]:
        return self.process(b"".join(self.parts))


def _crypto_failure(what: str) -> KMIPError:
    return KMIPError(ResultReason.CRYPTOGRAPHIC_FAILURE, what)


def _chacha20_nonce(iv: bytes, initial_counter: int | None) -> bytes:
    """``cryptography``'s 16-byte ChaCha20 nonce: the block counter, then the nonce."""
    counter = initial_counter or 0
    if len(iv) == 16:
        return iv
    if len(iv) == 12:  # RFC 8439: 32-bit counter
        return counter.to_bytes(4, "little") + iv
    if len(iv) == 8:  # the original ChaCha20: 64-bit counter
        return counter.to_bytes(8, "little") + iv
    raise invalid_field("a ChaCha20 nonce must be 8, 12 or 16 bytes long")


def _chacha20(
    key: bytes, parameters: CryptographicParameters, encrypt: bool, iv: bytes | None
) -> tuple[CipherStream, bytes | None]:
    returned = None
    if iv is None and encrypt and parameters.random_iv is True:
        iv = returned = secrets.token_bytes(12)
    if iv is None:
        raise _missing_iv("ChaCha20")
    try:
        cipher = algorithms.ChaCha20(key, _chacha20_nonce(iv, parameters.initial_counter_value))
    except ValueError as error:
        raise invalid_field(f"the key does not suit ChaCha20: {error}") from None
    context = Cipher(cipher, None).encryptor()
    return _ContextStream(context), returned


def _chacha20_poly1305(
    key: bytes,
    parameters: CryptographicParameters,
    encrypt: bool,
    iv: bytes | None,
    aad: bytes | None,
    tag: bytes | None,
) -> tuple[CipherStream, bytes | None]:
    if parameters.block_cipher_mode not in (None, BlockCipherMode.AEAD):
        raise unsupported("ChaCha20-Poly1305 takes Block Cipher Mode AEAD or none")
    tag_length = parameters.tag_length if parameters.tag_length is not None else 16
    if tag_length not in _POLY1305_TAG_LENGTHS:
        raise _tag_length_error(tag_length, _POLY1305_TAG_LENGTHS, "ChaCha20-Poly1305")
    returned = None
    if iv is None and encrypt and parameters.random_iv is True:
        iv = returned = secrets.token_bytes(12)
    if iv is None:
        raise _missing_iv("ChaCha20-Poly1305")
    if len(iv) != 12:
        raise invalid_field("a ChaCha20-Poly1305 nonce must be 12 bytes long")
    try:
        aead = ChaCha20Poly1305(key)
    except ValueError as error:
        raise invalid_field(f"the key does not suit ChaCha20-Poly1305: {error}") from None
    nonce = iv
    if encrypt:

        def seal(data: bytes) -> tuple[bytes, bytes | None]:
            sealed = aead.encrypt(nonce, data, aad)
            return sealed[:-16], sealed[-16:][:tag_length]

        return _WholeStream(seal), returned
    expected = _received_tag(tag, parameters.tag_length, _POLY1305_TAG_LENGTHS, "ChaCha20-Poly1305")

    def open_(data: bytes) -> tuple[bytes, bytes | None]:
        if len(expected) == 16:
            try:
                return aead.decrypt(nonce, data + expected, aad), None
            except InvalidTag:
                raise _crypto_failure("authentication failed: the tag does not match") from None
        # A truncated tag: decrypt with the keystream (block 1 onwards, RFC 8439),
        # recompute the full tag and compare its first bytes before releasing anything.
        keystream = Cipher(algorithms.ChaCha20(key, (1).to_bytes(4, "little") + nonce), None)
        plaintext = keystream.encryptor().update(data)
        full = aead.encrypt(nonce, plaintext, aad)[-16:]
        if not hmac.compare_digest(full[: len(expected)], expected):
            raise _crypto_failure("authentication failed: the tag does not match")
        return plaintext, None

    return _WholeStream(open_), returned


def _ccm(
    key: bytes,
    parameters: CryptographicParameters,
    encrypt: bool,
    iv: bytes | None,
    aad: bytes | None,
    tag: bytes | None,
) -> tuple[CipherStream, bytes | None]:
    tag_length = parameters.tag_length if parameters.tag_length is not None else 16
    if tag_length not in _CCM_TAG_LENGTHS:
        raise _tag_length_error(tag_length, _CCM_TAG_LENGTHS, "CCM")
    returned = None
    if iv is None and encrypt and parameters.random_iv is True:
        iv = returned = secrets.token_bytes(parameters.iv_length or 12)
    if iv is None:
        raise _missing_iv("CCM")
    if not 7 <= len(iv) <= 13:
        raise invalid_field("a CCM nonce must be 7 to 13 bytes long")
    try:
        aead = AESCCM(key, tag_length=tag_length)
    except ValueError as error:
        raise invalid_field(f"the key does not suit AES-CCM: {error}") from None
    nonce = iv
    if encrypt:

        def seal(data: bytes) -> tuple[bytes, bytes | None]:
            sealed = aead.encrypt(nonce, data, aad)
            return sealed[:-tag_length], sealed[-tag_length:]

        return _WholeStream(seal), returned
    expected = _received_tag(tag, parameters.tag_length, _CCM_TAG_LENGTHS, "CCM")

    def open_(data: bytes) -> tuple[bytes, bytes | None]:
        try:
            return aead.decrypt(nonce, data + expected, aad), None
        except InvalidTag:
            raise _crypto_failure("authentication failed: the tag does not match") from None

    return _WholeStream(open_), returned


def _key_wrap(key: bytes, mode: int, encrypt: bool) -> tuple[CipherStream, bytes | None]:
    padded = mode == BlockCipherMode.AESKEYWRAPPADDING

    def process(data: bytes) -> tuple[bytes, bytes | None]:
        try:
            if encrypt:
                wrap = keywrap.aes_key_wrap_with_padding if padded else keywrap.aes_key_wrap
                return wrap(key, data), None
            unwrap = keywrap.aes_key_unwrap_with_padding if padded else keywrap.aes_key_unwrap
            return unwrap(key, data), None
        except keywrap.InvalidUnwrap:
            raise _crypto_failure("unwrapping failed: the integrity check does not match") from None
        except ValueError as error:
            raise invalid_field(f"AES key wrap cannot take this data: {error}") from None

    return _WholeStream(process), None


# -- entry point ------------------------------------------------------------------------


def start(
    algorithm: int,
    key: bytes,
    parameters: CryptographicParameters,
    *,
    encrypt: bool,
    iv: bytes | None = None,
    aad: bytes | None = None,
    tag: bytes | None = None,
) -> tuple[CipherStream, bytes | None]:
    """Begin encrypting or decrypting with a symmetric key.

    Returns the stream and, when the server chose the IV/Counter/Nonce (Random IV),
    that value for the client.
    """
    if algorithm == CryptographicAlgorithm.CHACHA20:
        if aad is not None or tag is not None:
            raise invalid_field("ChaCha20 is not authenticated; use ChaCha20-Poly1305")
        return _chacha20(key, parameters, encrypt, iv)
    if algorithm == CryptographicAlgorithm.CHACHA20POLY1305:
        return _chacha20_poly1305(key, parameters, encrypt, iv, aad, tag)
    if algorithm not in BLOCK_CIPHERS:
        raise unsupported(
            f"encryption with {_name(CryptographicAlgorithm, algorithm)} keys is not supported; "
            "supported: AES, Triple DES, Camellia, SM4, ChaCha20, ChaCha20-Poly1305"
        )
    mode = parameters.block_cipher_mode
    if mode == BlockCipherMode.CCM:
        if algorithm != CryptographicAlgorithm.AES:
            raise unsupported("CCM is supported with AES keys")
        return _ccm(key, parameters, encrypt, iv, aad, tag)
    if mode in (BlockCipherMode.NISTKEYWRAP, BlockCipherMode.AESKEYWRAPPADDING):
        if algorithm != CryptographicAlgorithm.AES:
            raise unsupported("the AES key wraps need AES keys")
        return _key_wrap(key, mode, encrypt)
    return _block_stream(algorithm, key, parameters, encrypt, iv, aad, tag)
