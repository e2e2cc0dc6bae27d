"""A Key Protect REST API v2 client on treq: wrap, unwrap, rewrap and key management.

One :class:`KeyProtectClient` talks to one instance (``Bluemix-Instance``) at one
endpoint, with tokens from an :class:`~kmiptwist.keyprotect.iam.IAMTokenManager`.
Every call carries its own ``Correlation-Id`` (returned with the answer and named in
every error), goes through an :class:`~kmiptwist.keyprotect.transport.HTTPTransport`
(timeout, retries, in-flight bound) and, when Key Protect answers 401, is tried once
more with a fresh token.  Errors are :class:`~kmiptwist.keyprotect.errors.KeyProtectError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any
from urllib.parse import quote, urlencode

from attrs import frozen

from kmiptwist.keyprotect.errors import (
    REJECTED,
    UNAUTHORIZED,
    KeyProtectError,
    describe_error_body,
    kind_for,
)
from kmiptwist.keyprotect.iam import IAMTokenManager
from kmiptwist.keyprotect.transport import HTTPAnswer, HTTPTransport

__all__ = [
    "KeyProtectClient",
    "WrapResponse",
    "UnwrapResponse",
    "RewrapResponse",
    "KeyPage",
    "ACTIVE",
    "SUSPENDED",
    "DEACTIVATED",
    "DESTROYED",
]

#: Key states (keyprotect-api.md §3.6).
ACTIVE, SUSPENDED, DEACTIVATED, DESTROYED = 1, 2, 3, 5

_KEY_TYPE = "application/vnd.ibm.kms.key+json"


@frozen
class WrapResponse:
    """A wrap's answer; ``plaintext`` only when Key Protect generated it."""

    ciphertext: str
    key_version: str
    correlation_id: str
    plaintext: bytes | None = None


@frozen
class UnwrapResponse:
    """An unwrap's answer; after a rotation also the ciphertext under the latest version."""

    plaintext: bytes
    key_version: str
    correlation_id: str
    rewrapped: str | None = None
    rewrapped_key_version: str | None = None


@frozen
class RewrapResponse:
    """A rewrap's answer: the ciphertext under the latest version."""

    ciphertext: str
    key_version: str
    rewrapped_key_version: str
    correlation_id: str


@frozen
class KeyPage:
    """One page of a key listing, and the total when it was asked for."""

    keys: list[dict[str, Any]]
    total: int | None
    correlation_id: str


def _version_id(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return ""


class KeyProtectClient:
    """Calls on one Key Protect instance.

    ``base_url`` is the endpoint without ``/api/v2`` (e.g.
    ``https://private.us-south.kms.cloud.ibm.com``); ``key_ring`` adds the
    ``X-Kms-Key-Ring`` header that lets Key Protect find keys without a search.
    """

    def __init__(
        self,
        transport: HTTPTransport,
        tokens: IAMTokenManager,
        base_url: str,
        instance_id: str,
        key_ring: str | None = None,
    ) -> None:
        self.transport = transport
        self.tokens = tokens
        self.base_url = base_url.rstrip("/")
        self.instance_id = instance_id
        self.key_ring = key_ring

    def __repr__(self) -> str:
        return f"<KeyProtectClient {self.base_url} instance {self.instance_id}>"

    # -- plumbing -------------------------------------------------------------------------

    def _url(
        self, key_id: str | None = None, *rest: str, query: dict[str, Any] | None = None
    ) -> str:
        url = f"{self.base_url}/api/v2/keys"
        if key_id is not None:
            url += "/" + quote(key_id, safe="")
        for part in rest:
            url += "/" + part
        if query:
            url += "?" + urlencode(query)
        return url

    async def _call(
        self,
        method: str,
        url: str,
        action: str,
        key_id: str | None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        idempotent: bool = True,
        prefer: str | None = None,
        correlation_id: str | None = None,
    ) -> tuple[HTTPAnswer, str]:
        """The answer (2xx only) and the correlation id; a KeyProtectError otherwise."""
        correlation_id = correlation_id or str(uuid.uuid4())
        data = None if body is None else json.dumps(body).encode("utf-8")
        for attempt in (1, 2):
            authorization = await self.tokens.authorization()
            headers = {
                "Authorization": authorization,
                "Bluemix-Instance": self.instance_id,
                "Correlation-Id": correlation_id,
                "Accept": "application/json",
            }
            if data is not None:
                headers["Content-Type"] = content_type
            if self.key_ring is not None:
                headers["X-Kms-Key-Ring"] = self.key_ring
            if prefer is not None:
                headers["Prefer"] = prefer
            answer = await self.transport.call(
                method,
                url,
                headers,
                data,
                action=action,
                key_id=key_id,
                correlation_id=correlation_id,
                idempotent=idempotent,
            )
            if answer.status == 401 and attempt == 1:
                # The token expired early or was revoked: one more try with a new one.
                self.tokens.invalidate(authorization)
                continue
            break
        if 200 <= answer.status < 300:
            return answer, correlation_id
        code, message, reasons = describe_error_body(answer.body)
        kind = kind_for(answer.status, code, action)
        if kind == UNAUTHORIZED:
            message += " (a fresh IAM token was refused too: check the service ID's access to the instance)"
        raise KeyProtectError(
            kind,
            action,
            message,
            key_id=key_id,
            status=answer.status,
            code=code,
            reasons=reasons,
            correlation_id=answer.headers.get("correlation-id", correlation_id),
        )

    @staticmethod
    def _json(answer: HTTPAnswer, action: str, key_id: str | None, correlation_id: str) -> Any:
        try:
            return json.loads(answer.body)
        except ValueError:
            raise KeyProtectError(
                REJECTED,
                action,
                "the answer is not JSON",
                key_id=key_id,
                status=answer.status,
                correlation_id=correlation_id,
            ) from None

    @staticmethod
    def _base64(
        value: Any, name: str, action: str, key_id: str | None, correlation_id: str
    ) -> bytes:
        try:
            return base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise KeyProtectError(
                REJECTED,
                action,
                f"the answer's {name} is not base64",
                key_id=key_id,
                status=200,
                correlation_id=correlation_id,
            ) from None

    def _resource(
        self, answer: HTTPAnswer, action: str, key_id: str | None, cid: str
    ) -> dict[str, Any]:
        document = self._json(answer, action, key_id, cid)
        resources = document.get("resources") if isinstance(document, dict) else None
        if not isinstance(resources, list) or not resources or not isinstance(resources[0], dict):
            raise KeyProtectError(
                REJECTED,
                action,
                "the answer has no key resource",
                key_id=key_id,
                correlation_id=cid,
            )
        return resources[0]

    # -- wrap, unwrap, rewrap ----------------------------------------------------------------

    async def wrap(
        self,
        key_id: str,
        plaintext: bytes | None,
        aad: list[str],
        correlation_id: str | None = None,
    ) -> WrapResponse:
        """Wrap ``plaintext`` with the root key; None asks Key Protect for a new 32-byte key."""
        body: dict[str, Any] = {"aad": aad} if aad else {}
        if plaintext is not None:
            body["plaintext"] = base64.b64encode(plaintext).decode("ascii")
        answer, cid = await self._call(
            "POST",
            self._url(key_id, "actions", "wrap"),
            "wrap",
            key_id,
            body,
            "application/vnd.ibm.kms.key_action_wrap+json",
            correlation_id=correlation_id,
        )
        document = self._json(answer, "wrap", key_id, cid)
        ciphertext = document.get("ciphertext") if isinstance(document, dict) else None
        if not isinstance(ciphertext, str) or not ciphertext:
            raise KeyProtectError(
                REJECTED, "wrap", "the answer has no ciphertext", key_id=key_id, correlation_id=cid
            )
        generated = None
        if plaintext is None:
            generated = self._base64(document.get("plaintext"), "plaintext", "wrap", key_id, cid)
        return WrapResponse(ciphertext, _version_id(document, "keyVersion"), cid, generated)

    async def unwrap(
        self, key_id: str, ciphertext: str, aad: list[str], correlation_id: str | None = None
    ) -> UnwrapResponse:
        """The plaintext of ``ciphertext``, and its rewrapped form if the key was rotated."""
        body: dict[str, Any] = {"ciphertext": ciphertext}
        if aad:
            body["aad"] = aad
        answer, cid = await self._call(
            "POST",
            self._url(key_id, "actions", "unwrap"),
            "unwrap",
            key_id,
            body,
            "application/vnd.ibm.kms.key_action_unwrap+json",
            correlation_id=correlation_id,
        )
        document = self._json(answer, "unwrap", key_id, cid)
        plaintext = self._base64(document.get("plaintext"), "plaintext", "unwrap", key_id, cid)
        rewrapped = document.get("ciphertext")
        return UnwrapResponse(
            plaintext,
            _version_id(document, "keyVersion"),
            cid,
            rewrapped if isinstance(rewrapped, str) and rewrapped else None,
            _version_id(document, "rewrappedKeyVersion") or None,
        )

    async def rewrap(
        self, key_id: str, ciphertext: str, aad: list[str], correlation_id: str | None = None
    ) -> RewrapResponse:
        """``ciphertext`` wrapped again by the latest version, without the plaintext leaving."""
        body: dict[str, Any] = {"ciphertext": ciphertext}
        if aad:
            body["aad"] = aad
        answer, cid = await self._call(
            "POST",
            self._url(key_id, "actions", "rewrap"),
            "rewrap",
            key_id,
            body,
            "application/vnd.ibm.kms.key_action_rewrap+json",
            correlation_id=correlation_id,
        )
        document = self._json(answer, "rewrap", key_id, cid)
        new = document.get("ciphertext")
        if not isinstance(new, str) or not new:
            raise KeyProtectError(
                REJECTED,
                "rewrap",
                "the answer has no ciphertext",
                key_id=key_id,
                correlation_id=cid,
            )
        return RewrapResponse(
            new,
            _version_id(document, "keyVersion"),
            _version_id(document, "rewrappedKeyVersion"),
            cid,
        )

    # -- keys -------------------------------------------------------------------------------

    async def key_metadata(self, key_id: str, correlation_id: str | None = None) -> dict[str, Any]:
        """The key's metadata (state, keyVersion, ...): needs only the Reader role."""
        answer, cid = await self._call(
            "GET", self._url(key_id, "metadata"), "metadata", key_id, correlation_id=correlation_id
        )
        return self._resource(answer, "metadata", key_id, cid)

    async def get_key(self, key_id: str) -> dict[str, Any]:
        """The key with its payload (standard keys only carry one)."""
        answer, cid = await self._call("GET", self._url(key_id), "get", key_id)
        return self._resource(answer, "get", key_id, cid)

    async def list_keys(
        self,
        limit: int = 200,
        offset: int = 0,
        total_count: bool = False,
        states: list[int] | None = None,
        extractable: bool | None = None,
    ) -> KeyPage:
        """One page of the instance's keys (Key Protect's default states unless ``states``)."""
        query: dict[str, Any] = {"limit": limit, "offset": offset}
        if total_count:
            query["totalCount"] = "true"
        if states is not None:
            query["state"] = ",".join(str(s) for s in states)
        if extractable is not None:
            query["extractable"] = "true" if extractable else "false"
        answer, cid = await self._call("GET", self._url(query=query), "list", None)
        document = self._json(answer, "list", None, cid)
        metadata = document.get("metadata") or {}
        total = metadata.get("totalCount")
        return KeyPage(
            [r for r in document.get("resources") or [] if isinstance(r, dict)],
            int(total) if total is not None else None,
            cid,
        )

    async def create_root_key(
        self,
        name: str,
        description: str = "",
        aliases: tuple[str, ...] = (),
        payload: bytes | None = None,
        expiration: str | None = None,
        extractable: bool = False,
    ) -> dict[str, Any]:
        """Create a root key (``extractable`` True: a standard key); its resource."""
        resource: dict[str, Any] = {
            "type": _KEY_TYPE,
            "name": name,
            "extractable": extractable,
        }
        if description:
            resource["description"] = description
        if aliases:
            resource["aliases"] = list(aliases)
        if payload is not None:
            resource["payload"] = base64.b64encode(payload).decode("ascii")
        if expiration is not None:
            resource["expirationDate"] = expiration
        body = {
            "metadata": {"collectionType": _KEY_TYPE, "collectionTotal": 1},
            "resources": [resource],
        }
        answer, cid = await self._call(
            "POST",
            self._url(),
            "create",
            None,
            body,
            _KEY_TYPE,
            idempotent=False,
            prefer="return=representation",
        )
        return self._resource(answer, "create", None, cid)

    async def _action(self, key_id: str, action: str, body: dict[str, Any] | None = None) -> str:
        _, cid = await self._call(
            "POST",
            self._url(key_id, "actions", action),
            action,
            key_id,
            body if body is not None else {},
            f"application/vnd.ibm.kms.key_action_{action}+json",
            idempotent=action != "rotate",
        )
        return cid

    async def rotate(self, key_id: str, payload: bytes | None = None) -> str:
        """Rotate the root key (imported keys need the new ``payload``); the correlation id."""
        body = None if payload is None else {"payload": base64.b64encode(payload).decode("ascii")}
        return await self._action(key_id, "rotate", body)

    async def disable(self, key_id: str) -> str:
        """Suspend the root key: wrap and unwrap are refused until it is enabled."""
        return await self._action(key_id, "disable")

    async def enable(self, key_id: str) -> str:
        """Make a disabled root key Active again."""
        return await self._action(key_id, "enable")

    async def delete(self, key_id: str, force: bool = False) -> dict[str, Any]:
        """Delete the key (crypto-shredding what it wrapped); its last representation."""
        query = {"force": "true"} if force else None
        answer, cid = await self._call(
            "DELETE",
            self._url(key_id, query=query),
            "delete",
            key_id,
            idempotent=False,
            prefer="return=representation",
        )
        if answer.status == 204 or not answer.body:
            return {}
        return self._resource(answer, "delete", key_id, cid)

    async def restore(self, key_id: str) -> dict[str, Any]:
        """Restore a key deleted less than 30 days ago."""
        answer, cid = await self._call(
            "POST", self._url(key_id, "restore"), "restore", key_id, {}, _KEY_TYPE, idempotent=False
        )
        return self._resource(answer, "restore", key_id, cid)

    async def versions(self, key_id: str, all_key_states: bool = False) -> list[dict[str, Any]]:
        """The key's versions, newest first: ``[{id, creationDate}]``."""
        query = {"allKeyStates": "true"} if all_key_states else None
        answer, cid = await self._call(
            "GET", self._url(key_id, "versions", query=query), "versions", key_id
        )
        document = self._json(answer, "versions", key_id, cid)
        return [r for r in document.get("resources") or [] if isinstance(r, dict)]
