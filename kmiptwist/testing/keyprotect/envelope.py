"""Wrap, unwrap and rewrap in the emulator: AES-256-GCM under a root key version.

The AAD strings are bound in order (length-prefixed); the ciphertext is base64 of JSON
``{ciphertext, iv, version, handle}`` with the version's id as ``handle``
(keyprotect-api.md §2.4-§2.7).  Errors are those of the reference: 400
``INVALID_FIELD_ERR`` for bad base64, a wrong AAD or a wrong field, 422
``UNPROCESSABLE_CIPHERTEXT_ERR`` for a broken ciphertext or one of another key, 409 for
a key whose state forbids the action, 410 for a deleted key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmiptwist.testing.keyprotect.errors import KPError

if TYPE_CHECKING:
    from kmiptwist.testing.keyprotect.keys import Key, KeyVersion

__all__ = [
    "WrapActions",
    "MAX_PLAINTEXT_CHARS",
    "MAX_AAD_ITEMS",
    "MAX_AAD_CHARS",
    "GENERATED_DEK_SIZE",
]

ACTIVE, SUSPENDED, DEACTIVATED, DESTROYED = 1, 2, 3, 5

#: Limits of OAS2019 and the docs (keyprotect-api.md §2.4).
MAX_PLAINTEXT_CHARS = 4096
MAX_AAD_ITEMS = 126
MAX_AAD_CHARS = 255
GENERATED_DEK_SIZE = 32

_ACTION_FIELDS = frozenset(
    {"plaintext", "aad", "ciphertext", "payload", "encryptedNonce", "iv", "encryptionAlgorithm"}
)
_CIPHERTEXT_MESSAGE = (
    "The field `ciphertext` must be: the original base64 encoded ciphertext from the wrap operation"
)


def _b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise ValueError(str(error)) from None


def _bind(aad: list[str]) -> bytes:
    """The AAD strings as one byte string, order and boundaries kept."""
    return b"".join(struct.pack(">I", len(part)) + part for part in (a.encode() for a in aad))


class WrapActions:
    """The data-plane actions of :class:`~kmiptwist.testing.keyprotect.keys.KeyModel`."""

    def now(self) -> float:
        raise NotImplementedError

    def find(self, instance: str, id_or_alias: str, what: str, deleted_ok: bool = False) -> Key:
        raise NotImplementedError

    @staticmethod
    def _root_only(key: Key, what: str) -> None:
        if key.extractable:
            raise KPError(
                400,
                "KEY_ROOT_REQ_ERR",
                what,
                "Requested action can only be completed with a root key",
            )

    @staticmethod
    def _fields(body: Any, what: str) -> dict[str, Any]:
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise KPError(400, "BAD_BODY_ERR", what, "Invalid body data was passed")
        for name in body:
            if name not in _ACTION_FIELDS:
                raise KPError(400, "BAD_BODY_ERR", what, f'json: unknown field "{name}"')
        return body

    @staticmethod
    def _aad(body: dict[str, Any], what: str) -> list[str]:
        aad = body.get("aad")
        if aad is None:
            return []
        if (
            not isinstance(aad, list)
            or len(aad) > MAX_AAD_ITEMS
            or not all(isinstance(a, str) and len(a) <= MAX_AAD_CHARS for a in aad)
        ):
            raise KPError(
                400,
                "INVALID_FIELD_ERR",
                what,
                "The field `aad` must be: an array of at most 126 strings of at most 255 characters",
                "aad",
            )
        return aad

    @staticmethod
    def _seal(version: KeyVersion, plaintext: bytes, aad: list[str]) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(version.material).encrypt(nonce, plaintext, _bind(aad))
        document = {
            "ciphertext": base64.b64encode(sealed).decode(),
            "iv": base64.b64encode(nonce).decode(),
            "version": "4.0.0",
            "handle": version.id,
        }
        return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()

    def _open(self, key: Key, body: dict[str, Any], what: str) -> tuple[bytes, KeyVersion]:
        """The plaintext a ciphertext holds, and the version that wrapped it."""
        aad = self._aad(body, what)
        try:
            raw = _b64decode(body.get("ciphertext"))
        except ValueError:
            raise KPError(
                400, "INVALID_FIELD_ERR", what, _CIPHERTEXT_MESSAGE, "ciphertext"
            ) from None
        try:
            document = json.loads(raw)
            sealed = base64.b64decode(document["ciphertext"], validate=True)
            nonce = base64.b64decode(document["iv"], validate=True)
            handle = str(document["handle"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise KPError(
                422,
                "UNPROCESSABLE_CIPHERTEXT_ERR",
                what,
                "The provided ciphertext is invalid or corrupted",
            ) from None
        by_handle = [v for v in key.versions if v.id == handle]
        # Keys holding the same material unwrap each other's ciphertexts (§2.7), so a
        # handle this key does not know is tried against every version.
        candidates = by_handle or key.versions
        for version in candidates:
            try:
                return AESGCM(version.material).decrypt(nonce, sealed, _bind(aad)), version
            except (InvalidTag, ValueError):
                continue
        if by_handle:
            # A wrong or missing AAD looks like this (ceph-csi PR #2865).
            raise KPError(400, "INVALID_FIELD_ERR", what, _CIPHERTEXT_MESSAGE, "ciphertext")
        raise KPError(
            422,
            "UNPROCESSABLE_CIPHERTEXT_ERR",
            what,
            "The ciphertext provided for the unwrap operation was not wrapped by this key",
        )

    def wrap(self, instance: str, id_or_alias: str, body: Any) -> dict[str, Any]:
        """``wrap``: seal the plaintext given, or a new 32-byte one returned with it."""
        what = "Wrap with key could not be performed"
        fields = self._fields(body, what)
        aad = self._aad(fields, what)
        plaintext_text = fields.get("plaintext")
        generated = not plaintext_text
        if generated:
            plaintext = os.urandom(GENERATED_DEK_SIZE)
        else:
            if not isinstance(plaintext_text, str) or len(plaintext_text) > MAX_PLAINTEXT_CHARS:
                raise KPError(
                    400,
                    "INVALID_FIELD_ERR",
                    what,
                    "The field `plaintext` must be: a base64 encoded key material of at most "
                    f"{MAX_PLAINTEXT_CHARS} characters",
                    "plaintext",
                )
            try:
                plaintext = _b64decode(plaintext_text)
            except ValueError as error:
                raise KPError(
                    400,
                    "INVALID_FIELD_ERR",
                    what,
                    f"The field `plaintext` must be: a base64 encoded key material: {error}",
                    "plaintext",
                ) from None
        key = self.find(instance, id_or_alias, what)
        self._root_only(key, what)
        if key.state(self.now()) != ACTIVE:
            raise KPError(409, "KEY_ACTION_INVALID_STATE_ERR", what, "Key is not in a valid state")
        answer: dict[str, Any] = {
            "ciphertext": self._seal(key.latest, plaintext, aad),
            "keyVersion": {"id": key.latest.id},
        }
        if generated:
            answer["plaintext"] = base64.b64encode(plaintext).decode()
        return answer

    def _usable_for_unwrap(self, instance: str, id_or_alias: str, body: Any, what: str) -> Key:
        if body is None:
            raise KPError(400, "NO_BODY_ERR", what, "No body was passed in the request")
        key = self.find(instance, id_or_alias, what)
        self._root_only(key, what)
        if key.state(self.now()) not in (ACTIVE, DEACTIVATED):
            raise KPError(409, "KEY_ACTION_INVALID_STATE_ERR", what, "Key is not in a valid state")
        return key

    def unwrap(self, instance: str, id_or_alias: str, body: Any) -> dict[str, Any]:
        """``unwrap``; after a rotation also the ciphertext rewrapped by the latest version."""
        what = "Unwrap with key could not be performed"
        key = self._usable_for_unwrap(instance, id_or_alias, body, what)
        fields = self._fields(body, what)
        plaintext, version = self._open(key, fields, what)
        answer: dict[str, Any] = {
            "plaintext": base64.b64encode(plaintext).decode(),
            "keyVersion": {"id": version.id},
        }
        if version is not key.latest:
            answer["ciphertext"] = self._seal(key.latest, plaintext, self._aad(fields, what))
            answer["rewrappedKeyVersion"] = {"id": key.latest.id}
        return answer

    def rewrap(self, instance: str, id_or_alias: str, body: Any) -> dict[str, Any]:
        """``rewrap``: the ciphertext sealed again by the latest version, no plaintext out."""
        what = "Rewrap with key could not be performed"
        key = self._usable_for_unwrap(instance, id_or_alias, body, what)
        fields = self._fields(body, what)
        plaintext, version = self._open(key, fields, what)
        return {
            "ciphertext": self._seal(key.latest, plaintext, self._aad(fields, what)),
            "keyVersion": {"id": version.id},
            "rewrappedKeyVersion": {"id": key.latest.id},
        }
