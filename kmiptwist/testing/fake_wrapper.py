# -*- test-case-name: tests.test_wrapping -*-
"""A root key for unit tests: reversible, checks the AAD, counts calls, fails on demand.

Not cryptography: the material is XORed with a fixed pad so that the wrapped form
never contains the plaintext, and the AAD is stored alongside and compared.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import cycle
from typing import TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from kmiptwist.interfaces import IKeyWrapper, UnwrapResult
from kmiptwist.wrapping.errors import WrappingError

__all__ = ["FakeWrapper"]

_T = TypeVar("_T")

_MAGIC = b"FAKE"
_PAD = bytes(range(0x5A, 0x5A + 32))
_header = struct.Struct(">4sII")


def _xor(data: bytes) -> bytes:
    return bytes(byte ^ pad for byte, pad in zip(data, cycle(_PAD)))


@implementer(IKeyWrapper)
@define
class FakeWrapper:
    """An :class:`IKeyWrapper` whose behaviour a test controls.

    ``failure``: when set, every call fails with it (e.g. ``WrappingError("Key
    Protect is unreachable", permanent=False)``).  ``version``: bump it (or call
    :meth:`rotate`) and older wrapped forms unwrap with a ``rewrapped`` form, as after
    a root key rotation.  ``wrap_calls``/``unwrap_calls`` count the calls.
    """

    name: str = "fake root key"
    failure: WrappingError | None = None
    version: int = 1
    wrap_calls: int = 0
    unwrap_calls: int = 0
    held: list[Deferred[None]] | None = field(default=None, repr=False)

    def rotate(self) -> None:
        """Start wrapping with a new root key version."""
        self.version += 1

    def fail_with(
        self, message: str = "the root key service is unavailable", permanent: bool = False
    ) -> None:
        """Make every following call fail with a :class:`WrappingError`."""
        self.failure = WrappingError(message, permanent)

    def hold(self) -> None:
        """Make calls return unfired Deferreds, kept in ``held``, until :meth:`release`."""
        self.held = []

    def release(self) -> None:
        """Stop holding and fire the held calls' Deferreds, oldest first."""
        held, self.held = self.held or [], None
        for deferred in held:
            deferred.callback(None)

    def _answer(self, compute: Callable[[], _T]) -> Deferred[_T]:
        """Fire now, or once released when holding; ``compute`` runs at firing time."""

        def outcome(_: object = None) -> _T:
            if self.failure is not None:
                raise self.failure
            return compute()

        if self.held is not None:
            gate: Deferred[None] = Deferred()
            self.held.append(gate)
            return gate.addCallback(outcome)
        try:
            return succeed(outcome())
        except Exception:
            return fail()

    def _seal(self, material: bytes, aad: bytes) -> bytes:
        return _header.pack(_MAGIC, self.version, len(aad)) + aad + _xor(material)

    def wrap(self, material: bytes, aad: bytes) -> Deferred[bytes]:
        """The reversible wrapped form of ``material``, carrying ``aad`` and the version."""
        self.wrap_calls += 1
        return self._answer(lambda: self._seal(material, aad))

    def unwrap(self, wrapped: bytes, aad: bytes) -> Deferred[UnwrapResult]:
        """An :class:`UnwrapResult`; a permanent WrappingError for a wrong AAD or garbage."""
        self.unwrap_calls += 1

        def unseal() -> UnwrapResult:
            if len(wrapped) < _header.size:
                raise WrappingError("not a fake-wrapped material", permanent=True)
            magic, version, aad_length = _header.unpack_from(wrapped)
            stored_aad = wrapped[_header.size : _header.size + aad_length]
            if magic != _MAGIC or version > self.version:
                raise WrappingError("not a fake-wrapped material", permanent=True)
            if stored_aad != aad:
                raise WrappingError(
                    "the AAD does not match: material of another object", permanent=True
                )
            material = _xor(wrapped[_header.size + aad_length :])
            rewrapped = self._seal(material, aad) if version < self.version else None
            return UnwrapResult(material, rewrapped)

        return self._answer(unseal)
