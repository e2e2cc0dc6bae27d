# -*- test-case-name: tests.test_wrapping -*-
"""The local root key: AES-256-GCM with a key read from a file only its owner can read.

This is the embedded default's root of trust.  Deleting the root-key file shreds every
key it wrapped, exactly as deleting a Key Protect root key would.
"""

from __future__ import annotations

import os
import stat

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from kmiptwist.interfaces import IKeyWrapper, UnwrapResult
from kmiptwist.wrapping.errors import WrappingError

__all__ = [
    "LocalRootKeyWrapper",
    "RootKeyError",
    "load_root_key",
    "ROOT_KEY_SIZE",
    "FORMAT_VERSION",
]

#: An AES-256 key.
ROOT_KEY_SIZE = 32

#: The first byte of every wrapped form, so the format can change without ambiguity.
FORMAT_VERSION = 1

_NONCE_SIZE = 12
_TAG_SIZE = 16
_MAX_ROOT_KEY_FILE = 4096


class RootKeyError(Exception):
    """The root-key file cannot be used; the message says why and what to do."""


def load_root_key(path: str) -> bytes:
    """Read the 32-byte root key from ``path``.

    Refuses a file that is not regular, has the wrong length, or that group or others
    may read or write: a root key anyone else can read protects nothing.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError as error:
        raise RootKeyError(f"cannot open the root-key file {path}: {error.strerror}") from None
    try:
        # fstat the open file, so the checks and the read are about the same file.
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise RootKeyError(f"the root-key file {path} is not a regular file")
        if status.st_mode & 0o077:
            raise RootKeyError(
                f"the root-key file {path} has mode {stat.S_IMODE(status.st_mode):04o}: group "
                f"and others must have no access; run: chmod 600 {path}"
            )
        material = os.read(descriptor, _MAX_ROOT_KEY_FILE)
    finally:
        os.close(descriptor)
    if len(material) != ROOT_KEY_SIZE:
        raise RootKeyError(
            f"the root-key file {path} holds {len(material)} bytes; a root key is exactly "
            f"{ROOT_KEY_SIZE} random bytes (AES-256)"
        )
    return material


@implementer(IKeyWrapper)
class LocalRootKeyWrapper:
    """Wrap material with a local AES-256 root key (AES-GCM, random 96-bit nonce).

    The wrapped form is ``b"\\x01" + nonce + ciphertext_and_tag``; the AAD binds it to
    its owner.  Both calls return already-fired Deferreds: AES-GCM takes microseconds.
    """

    name = "local root key"

    def __init__(self, root_key: bytes) -> None:
        if len(root_key) != ROOT_KEY_SIZE:
            raise RootKeyError(f"a root key is {ROOT_KEY_SIZE} bytes, not {len(root_key)}")
        self._aead = AESGCM(root_key)

    @classmethod
    def from_file(cls, path: str) -> LocalRootKeyWrapper:
        """A wrapper with the root key read (and checked) by :func:`load_root_key`."""
        return cls(load_root_key(path))

    def __repr__(self) -> str:
        return "<LocalRootKeyWrapper>"

    def wrap(self, material: bytes, aad: bytes) -> Deferred[bytes]:
        """The wrapped form of ``material``, bound to ``aad``."""
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, bytes(material), aad)
        return succeed(bytes([FORMAT_VERSION]) + nonce + sealed)

    def unwrap(self, wrapped: bytes, aad: bytes) -> Deferred[UnwrapResult]:
        """The material, or a permanent :class:`WrappingError` when it does not verify."""
        if len(wrapped) < 1 + _NONCE_SIZE + _TAG_SIZE:
            return fail(WrappingError("the wrapped material is truncated", permanent=True))
        if wrapped[0] != FORMAT_VERSION:
            return fail(
                WrappingError(
                    f"the wrapped material has format version {wrapped[0]}, this server reads "
                    f"version {FORMAT_VERSION}",
                    permanent=True,
                )
            )
        nonce = wrapped[1 : 1 + _NONCE_SIZE]
        try:
            material = self._aead.decrypt(nonce, wrapped[1 + _NONCE_SIZE :], aad)
        except InvalidTag:
            return fail(
                WrappingError(
                    "the wrapped material does not verify under the local root key: it was "
                    "altered, belongs to another object, or was wrapped by another root key",
                    permanent=True,
                )
            )
        return succeed(UnwrapResult(material))
