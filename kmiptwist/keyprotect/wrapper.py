"""A Key Protect root key as an :class:`~kmiptwist.interfaces.IKeyWrapper`.

Material is wrapped by ``POST /api/v2/keys/{root_key_id}/actions/wrap`` with the AAD
:func:`~kmiptwist.wrapping.aad_for` (tenant, unique identifier) sent as base64
strings; what the store keeps is a small JSON document naming the format, the root
key, the root key version and Key Protect's opaque ciphertext (never parsed).  Every
Key Protect failure becomes a :class:`~kmiptwist.wrapping.errors.WrappingError`
whose message names the root key, what Key Protect said and the correlation id, and
whose kind tells the operations layer what to answer: a disabled or deleted root
key is Permission Denied; material that does not unwrap is Cryptographic Failure;
anything else (unreachable, slow, not authorised, misconfigured) General Failure.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kmiptwist.audit import note_correlation_id
from kmiptwist.interfaces import IKeyWrapper, IRemoteRootKey, UnwrapResult
from kmiptwist.keyprotect import errors as kp
from kmiptwist.keyprotect.client import DESTROYED, SUSPENDED, KeyProtectClient
from kmiptwist.keyprotect.errors import KeyProtectError
from kmiptwist.wrapping import owner_of
from kmiptwist.wrapping.errors import DENIED, MATERIAL, SERVICE, WrappingError

__all__ = ["KeyProtectWrapper", "WrappedForm", "FORMAT", "MAX_MATERIAL", "aad_strings"]

_log = Logger()

#: The ``format`` of the stored document.
FORMAT = "keyprotect-v1"

#: The most material one wrap takes: 4096 base64 characters (keyprotect-api.md §2.4).
MAX_MATERIAL = 3072

_AAD_CHUNK = 252  # base64 characters per AAD string: a multiple of 4, at most 255


def aad_strings(aad: bytes) -> list[str]:
    """The AAD as Key Protect takes it: base64, in strings of at most 255 characters."""
    text = base64.b64encode(aad).decode("ascii")
    return [text[i : i + _AAD_CHUNK] for i in range(0, len(text), _AAD_CHUNK)] or [""]


@frozen
class WrappedForm:
    """What the store keeps for material wrapped by Key Protect."""

    root_key_id: str
    key_version: str
    ciphertext: str

    def encode(self) -> bytes:
        """The stored bytes (compact JSON)."""
        document = {
            "format": FORMAT,
            "rootKeyId": self.root_key_id,
            "keyVersion": self.key_version,
            "ciphertext": self.ciphertext,
        }
        return json.dumps(document, separators=(",", ":")).encode("ascii")

    @staticmethod
    def version_of(wrapped: bytes) -> str | None:
        """The key version of a stored form (without decoding all of it when it is as
        :meth:`encode` writes it), or None."""
        marker = b'"keyVersion":"'
        start = wrapped.find(marker)
        if wrapped.startswith(b'{"format":"keyprotect-v1",') and start > 0:
            end = wrapped.find(b'"', start + len(marker))
            if end > 0:
                return wrapped[start + len(marker) : end].decode("ascii", "replace") or None
        form = WrappedForm.decode(wrapped)
        return None if form is None else form.key_version or None

    @classmethod
    def decode(cls, wrapped: bytes) -> WrappedForm | None:
        """The form stored in ``wrapped``, or None when it is not one."""
        if not wrapped.startswith(b"{"):
            return None
        try:
            document = json.loads(wrapped)
            if document.get("format") != FORMAT:
                return None
            return cls(
                str(document["rootKeyId"]), str(document["keyVersion"]), str(document["ciphertext"])
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@implementer(IKeyWrapper, IRemoteRootKey)
class KeyProtectWrapper:
    """Wrap and unwrap with one Key Protect root key through ``client``.

    ``verify_on_get``: :meth:`check_usable` asks Key Protect for the root key's state
    (at most once every ``verify_interval`` seconds; concurrent checks share one call)
    instead of trusting the material cache.  ``on_refused`` is called whenever Key
    Protect says the root key is disabled, deleted or unknown (the tenant's cached
    material is then dropped).  ``fallback`` (the local root key) unwraps material
    stored before the tenant was bound to Key Protect; such material comes back
    rewrapped by Key Protect, so it moves over as it is used (or all at once with
    :func:`kmiptwist.keyprotect.rewrap.rewrap_tenant`).
    """

    def __init__(
        self,
        client: KeyProtectClient,
        root_key_id: str,
        clock: IReactorTime,
        verify_on_get: bool = False,
        verify_interval: float = 1.0,
        on_refused: Callable[[], None] | None = None,
        fallback: IKeyWrapper | None = None,
    ) -> None:
        self.client = client
        self.fallback = fallback
        self.root_key_id = root_key_id
        self.clock = clock
        self.verify_on_get = verify_on_get
        self.verify_interval = verify_interval
        self.on_refused = on_refused
        self.name = f"Key Protect root key {root_key_id}"
        self._usable_until = float("-inf")
        self._checks: list[Deferred[None]] | None = None

    def __repr__(self) -> str:
        return f"<KeyProtectWrapper {self.root_key_id} via {self.client!r}>"

    # -- IKeyWrapper -------------------------------------------------------------------------

    def wrap(self, material: bytes, aad: bytes) -> Deferred[bytes]:
        """The stored form of ``material`` wrapped by the root key's latest version."""
        return Deferred.fromCoroutine(self._wrap(bytes(material), aad))

    async def _wrap(self, material: bytes, aad: bytes) -> bytes:
        if len(material) > MAX_MATERIAL:
            raise WrappingError(
                f"the key material is {len(material)} bytes; Key Protect wraps at most "
                f"{MAX_MATERIAL} bytes",
                permanent=True,
                kind=SERVICE,
            )
        try:
            answer = await self.client.wrap(self.root_key_id, material, aad_strings(aad))
        except KeyProtectError as error:
            raise self._failure(error, "wrap") from None
        note_correlation_id(answer.correlation_id)
        return WrappedForm(self.root_key_id, answer.key_version, answer.ciphertext).encode()

    def unwrap(self, wrapped: bytes, aad: bytes) -> Deferred[UnwrapResult]:
        """The material, and its rewrapped stored form if the root key was rotated."""
        return Deferred.fromCoroutine(self._unwrap(bytes(wrapped), aad))

    async def _unwrap(self, wrapped: bytes, aad: bytes) -> UnwrapResult:
        if self.fallback is not None and WrappedForm.decode(wrapped) is None:
            return await self._unwrap_fallback(wrapped, aad)
        form = self._form(wrapped)
        try:
            answer = await self.client.unwrap(self.root_key_id, form.ciphertext, aad_strings(aad))
        except KeyProtectError as error:
            raise self._failure(error, "unwrap", form) from None
        note_correlation_id(answer.correlation_id)
        rewrapped = None
        if answer.rewrapped is not None:
            version = answer.rewrapped_key_version or ""
            rewrapped = WrappedForm(self.root_key_id, version, answer.rewrapped).encode()
        return UnwrapResult(answer.plaintext, rewrapped)

    async def _unwrap_fallback(self, wrapped: bytes, aad: bytes) -> UnwrapResult:
        """Material from before the Key Protect binding: unwrap it locally, wrap it anew."""
        assert self.fallback is not None
        result = await self.fallback.unwrap(wrapped, aad)
        try:
            rewrapped = await self._wrap(result.material, aad)
        except WrappingError as error:
            owner = owner_of(aad)
            _log.warn(
                "Material of {tenant}/{uid} is still wrapped by the local root key: {error}",
                tenant=owner[0] if owner else None,
                uid=owner[1] if owner else None,
                error=error,
            )
            return UnwrapResult(result.material)
        return UnwrapResult(result.material, rewrapped)

    async def latest_version(self) -> str:
        """The root key's current version; WrappingError when it is disabled or deleted."""
        metadata = await self._usable_metadata()
        version = metadata.get("keyVersion")
        return str(version.get("id", "")) if isinstance(version, dict) else ""

    # -- IRemoteRootKey ------------------------------------------------------------------------

    def key_version(self, wrapped: bytes) -> str | None:
        """The root key version recorded in a stored form."""
        return WrappedForm.version_of(bytes(wrapped))

    def rewrap(self, wrapped: bytes, aad: bytes) -> Deferred[bytes]:
        """The stored form wrapped again by the latest version (the material stays in KP)."""
        return Deferred.fromCoroutine(self._rewrap(bytes(wrapped), aad))

    async def _rewrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if self.fallback is not None and WrappedForm.decode(wrapped) is None:
            result = await self.fallback.unwrap(wrapped, aad)
            return await self._wrap(result.material, aad)
        form = self._form(wrapped)
        try:
            answer = await self.client.rewrap(self.root_key_id, form.ciphertext, aad_strings(aad))
        except KeyProtectError as error:
            raise self._failure(error, "rewrap", form) from None
        note_correlation_id(answer.correlation_id)
        return WrappedForm(
            self.root_key_id, answer.rewrapped_key_version, answer.ciphertext
        ).encode()

    def check_usable(self) -> Deferred[None]:
        """With ``verify_on_get``, ask Key Protect whether the root key is still usable."""
        waiter: Deferred[None] = Deferred()
        if self.usable_now():
            waiter.callback(None)
            return waiter
        if self._checks is not None:
            self._checks.append(waiter)
            return waiter
        self._checks = [waiter]
        Deferred.fromCoroutine(self._check()).addBoth(self._checked)
        return waiter

    def usable_now(self) -> bool:
        """True when :meth:`check_usable` succeeds at once: no check is due (or
        ``verify_on_get`` is off)."""
        return not self.verify_on_get or self.clock.seconds() < self._usable_until

    def _checked(self, outcome: Any) -> None:
        checks, self._checks = self._checks or [], None
        for waiter in checks:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(None)

    async def _check(self) -> None:
        started = self.clock.seconds()
        await self._usable_metadata()
        self._usable_until = started + self.verify_interval

    async def _usable_metadata(self) -> dict[str, Any]:
        """The root key's metadata; WrappingError when it is disabled or deleted."""
        correlation_id = str(uuid.uuid4())
        note_correlation_id(correlation_id)
        try:
            metadata = await self.client.key_metadata(self.root_key_id, correlation_id)
        except KeyProtectError as error:
            raise self._failure(error, "check") from None
        state = metadata.get("state")
        where = f"Key Protect instance {self.client.instance_id}, correlation id {correlation_id}"
        if metadata.get("deleted") or state == DESTROYED:
            self._refused()
            raise WrappingError(
                f"the root key {self.root_key_id} was deleted ({where}); every key it wrapped "
                "is gone",
                permanent=True,
                kind=DENIED,
            )
        if state == SUSPENDED:
            self._refused()
            raise WrappingError(
                f"the root key {self.root_key_id} is disabled ({where}); enable it to use its "
                "keys again",
                permanent=False,
                kind=DENIED,
            )
        return metadata

    # -- failures and logs ----------------------------------------------------------------------

    def _form(self, wrapped: bytes) -> WrappedForm:
        form = WrappedForm.decode(wrapped)
        if form is None:
            origin = "the local root key" if wrapped[:1] == b"\x01" else "an unknown root key"
            raise WrappingError(
                f"the stored material was wrapped by {origin}, not by Key Protect root key "
                f"{self.root_key_id}; run `kmiptwist tenant rewrap` after changing a tenant's "
                "root key",
                permanent=True,
                kind=MATERIAL,
            )
        return form

    def _refused(self) -> None:
        self._usable_until = float("-inf")
        if self.on_refused is not None:
            self.on_refused()

    def _failure(
        self, error: KeyProtectError, action: str, form: WrappedForm | None = None
    ) -> WrappingError:
        """The WrappingError for a failed Key Protect call."""
        if error.correlation_id is not None:
            note_correlation_id(error.correlation_id)
        where = f"Key Protect instance {self.client.instance_id}"
        if error.key_id is None:
            where = f"root key {self.root_key_id}, {where}"
        kind = error.kind
        if kind == kp.INVALID_STATE:
            self._refused()
            return WrappingError(
                f"the root key is disabled or expired ({where}): {error}",
                permanent=False,
                kind=DENIED,
            )
        if kind == kp.DELETED:
            self._refused()
            return WrappingError(
                f"the root key was deleted ({where}); every key it wrapped is gone: {error}",
                permanent=True,
                kind=DENIED,
            )
        if kind == kp.NOT_FOUND:
            self._refused()
            return WrappingError(
                f"the root key does not exist ({where}; purged, or the tenant's binding names "
                f"the wrong key or instance): {error}",
                permanent=True,
                kind=SERVICE,
            )
        if kind == kp.BAD_CIPHERTEXT:
            note = ""
            if form is not None and form.root_key_id != self.root_key_id:
                note = f" (it was wrapped by root key {form.root_key_id})"
            return WrappingError(
                f"the stored material does not unwrap{note}: it was altered, belongs to another "
                f"object, or another root key wrapped it: {error}",
                permanent=True,
                kind=MATERIAL,
            )
        if kind in (kp.UNAUTHORIZED, kp.FORBIDDEN, kp.IAM_REJECTED):
            return WrappingError(
                f"Key Protect refused the service ID's credentials ({where}): {error}",
                permanent=True,
                kind=SERVICE,
            )
        if error.transient:
            return WrappingError(
                f"Key Protect is unreachable or too slow ({where}): {error}",
                permanent=False,
                kind=SERVICE,
            )
        return WrappingError(f"Key Protect refused to {action} ({where}): {error}", True, SERVICE)
