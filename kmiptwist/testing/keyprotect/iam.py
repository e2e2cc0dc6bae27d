"""The emulator's IAM: API keys it knows, and the bearer tokens it issues for them.

Tokens are JWTs signed (HS256) with a secret kept in the emulator's state, so they
verify after a restart like real IAM tokens do, and expire after ``token_lifetime``.
A token carries what the emulator needs to authorise a call: the API key's role on
Key Protect and the instances it may use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from typing import Any

from attrs import define, field, frozen
from twisted.internet.interfaces import IReactorTime

from kmiptwist.testing.keyprotect.errors import IAMError, KPError

__all__ = ["ROLES", "APIKeyGrant", "Grant", "IAMEmulator", "GRANT_TYPE"]

GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"

#: Key Protect service roles, weakest first (keyprotect-api.md §3.9).
ROLES = ("Reader", "Writer", "Manager")

_NO_ACCESS = "The user does not have access to the specified resource"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@frozen
class APIKeyGrant:
    """What an API key may do: its role and the instances it reaches (None: all)."""

    role: str = "Manager"
    instances: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> tuple[str, APIKeyGrant]:
        """``KEY[:ROLE[:INSTANCE,INSTANCE...]]`` as given on the command line."""
        key, _, rest = text.partition(":")
        role, _, instances = rest.partition(":")
        role = role or "Manager"
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if not key:
            raise ValueError("an API key cannot be empty")
        listed = tuple(i for i in instances.split(",") if i) if instances else None
        return key, cls(role, listed)


@frozen
class Grant:
    """An authorised caller of one request: who, with which role."""

    subject: str
    role: str

    def allows(self, needed: str) -> bool:
        """Whether the role is at least ``needed``."""
        return ROLES.index(self.role) >= ROLES.index(needed)


@define
class IAMEmulator:
    """API keys and tokens; ``clock`` dates them."""

    clock: IReactorTime
    token_lifetime: int = 3600
    secret: bytes = field(factory=lambda: os.urandom(32), repr=False)
    api_keys: dict[str, APIKeyGrant] = field(factory=dict, repr=False)
    tokens_issued: int = 0

    def add_api_key(self, key: str, grant: APIKeyGrant | None = None) -> None:
        """Know ``key`` from now on (replacing what it could do)."""
        self.api_keys[key] = grant or APIKeyGrant()

    def remove_api_key(self, key: str) -> bool:
        """Forget ``key``: it gets no new token (tokens issued stay valid until expiry)."""
        return self.api_keys.pop(key, None) is not None

    @staticmethod
    def _subject(key: str) -> str:
        return "ServiceId-" + str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16]))

    def issue(self, form: dict[str, list[str]]) -> dict[str, Any]:
        """Answer ``POST /identity/token`` with an API-key grant (form fields)."""
        grant_type = (form.get("grant_type") or [""])[0]
        api_key = (form.get("apikey") or [""])[0]
        if not grant_type:
            raise IAMError(400, "BXNIM0109E", "Property missing or empty. Property=grant_type")
        if grant_type != GRANT_TYPE:
            raise IAMError(400, "BXNIM0103E", f"Unsupported grant type: {grant_type}")
        if not api_key:
            raise IAMError(400, "BXNIM0109E", "Property missing or empty. Property=apikey")
        grant = self.api_keys.get(api_key)
        if grant is None:
            raise IAMError(400, "BXNIM0415E", "Provided API key could not be found.")
        now = int(self.clock.seconds())
        claims = {
            "iam_id": "iam-" + self._subject(api_key),
            "sub": self._subject(api_key),
            "role": grant.role,
            "instances": None if grant.instances is None else list(grant.instances),
            "iat": now,
            "exp": now + self.token_lifetime,
            "jti": str(uuid.uuid4()),
        }
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "emulator"}).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        self.tokens_issued += 1
        return {
            "access_token": f"{header}.{payload}.{_b64url(signature)}",
            "refresh_token": "not_supported",
            "ims_user_id": 1234567,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "expiration": now + self.token_lifetime,
            "scope": "ibm openid",
        }

    def authorize(self, authorization: str | None, instance: str, needed: str) -> Grant:
        """The caller of a Key Protect request, or the 401/403 Key Protect answers."""
        if not authorization or not authorization.startswith("Bearer "):
            raise KPError(401, None, _NO_ACCESS)
        token = authorization[len("Bearer ") :].strip()
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(
                self.secret, f"{header}.{payload}".encode(), hashlib.sha256
            ).digest()
            if not hmac.compare_digest(expected, _unb64url(signature)):
                raise ValueError("bad signature")
            claims = json.loads(_unb64url(payload))
        except (ValueError, TypeError):
            raise KPError(401, None, _NO_ACCESS) from None
        if int(claims.get("exp", 0)) <= self.clock.seconds():
            raise KPError(401, None, _NO_ACCESS)
        instances = claims.get("instances")
        if instances is not None and instance not in instances:
            raise KPError(401, None, _NO_ACCESS)
        grant = Grant(str(claims.get("sub")), str(claims.get("role")))
        if grant.role not in ROLES or not grant.allows(needed):
            raise KPError(403, None, _NO_ACCESS)
        return grant

    def to_json(self) -> dict[str, Any]:
        """What survives a restart: the signing secret and the API keys."""
        return {
            "secret": base64.b64encode(self.secret).decode(),
            "api_keys": {
                key: {
                    "role": grant.role,
                    "instances": None if grant.instances is None else list(grant.instances),
                }
                for key, grant in self.api_keys.items()
            },
        }

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`to_json` saved."""
        self.secret = base64.b64decode(data["secret"])
        for key, grant in data.get("api_keys", {}).items():
            instances = grant.get("instances")
            self.api_keys[key] = APIKeyGrant(
                grant.get("role", "Manager"), None if instances is None else tuple(instances)
            )
