"""What can go wrong talking to Key Protect or IAM, said precisely.

A :class:`KeyProtectError` names the call, the root key, what the service answered
(HTTP status, reason code, ``errorMsg`` and reasons) and the ``Correlation-Id`` of
the call, so an operator can find it in Key Protect's activity log.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "KeyProtectError",
    "UNAVAILABLE",
    "RATE_LIMITED",
    "SERVER_ERROR",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "NOT_FOUND",
    "INVALID_STATE",
    "DELETED",
    "BAD_CIPHERTEXT",
    "IAM_REJECTED",
    "REJECTED",
    "kind_for",
    "describe_error_body",
]

# What kind of failure, so that callers decide without parsing messages.
UNAVAILABLE = "unavailable"  # no answer: connection refused or lost, timeout
RATE_LIMITED = "rate limited"  # 429 after every retry
SERVER_ERROR = "server error"  # 5xx after every retry
UNAUTHORIZED = "unauthorized"  # 401 even with a fresh token
FORBIDDEN = "forbidden"  # 403: the service ID lacks a role
NOT_FOUND = "not found"  # 404: no such root key (or instance)
INVALID_STATE = "invalid state"  # 409 KEY_ACTION_INVALID_STATE_ERR: disabled / expired
DELETED = "deleted"  # 410: the root key was deleted
BAD_CIPHERTEXT = "bad ciphertext"  # 400/422 on unwrap: not this key's, altered, wrong AAD
IAM_REJECTED = "iam rejected"  # IAM 400: unknown API key
REJECTED = "rejected"  # any other 4xx

_TRANSIENT = frozenset({UNAVAILABLE, RATE_LIMITED, SERVER_ERROR})


def kind_for(status: int, code: str | None, action: str) -> str:
    """The kind of a Key Protect error answer."""
    if status == 429:
        return RATE_LIMITED
    if status >= 500 and status != 501:
        return SERVER_ERROR
    if status == 401:
        return UNAUTHORIZED
    if status == 403:
        return FORBIDDEN
    if status == 404:
        return NOT_FOUND
    if status == 410:
        return DELETED
    if status == 409 and code == "KEY_ACTION_INVALID_STATE_ERR":
        return INVALID_STATE
    if action in ("unwrap", "rewrap") and (
        status == 422 or (status == 400 and code == "INVALID_FIELD_ERR")
    ):
        return BAD_CIPHERTEXT
    return REJECTED


def describe_error_body(body: bytes) -> tuple[str | None, str, list[dict[str, Any]]]:
    """(reason code, message, reasons) of a Key Protect or IAM error body.

    Key Protect's ``resources[0].errorMsg`` (and its ``reasons``) or IAM's
    ``errorCode``/``errorMessage``; a body that is neither is quoted, shortened.
    """
    try:
        document = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return None, (text[:200] + "…") if len(text) > 200 else text, []
    if isinstance(document, dict):
        if "errorCode" in document:
            return str(document["errorCode"]), str(document.get("errorMessage", "")), []
        resources = document.get("resources")
        if isinstance(resources, list) and resources and isinstance(resources[0], dict):
            resource = resources[0]
            reasons = [r for r in resource.get("reasons") or [] if isinstance(r, dict)]
            code = reasons[0].get("code") if reasons else None
            return (
                None if code is None else str(code),
                str(resource.get("errorMsg", "")),
                reasons,
            )
        if isinstance(document.get("errors"), list) and document["errors"]:
            first = document["errors"][0]
            if isinstance(first, dict):
                return first.get("code"), str(first.get("message", "")), []
    text = json.dumps(document)
    return None, (text[:200] + "…") if len(text) > 200 else text, []


class KeyProtectError(Exception):
    """A Key Protect or IAM call failed; ``str()`` says which, how and where to look.

    ``kind`` is one of the constants of this module; ``status`` is None when no
    answer came (connection refused, lost, timed out).
    """

    def __init__(
        self,
        kind: str,
        action: str,
        detail: str,
        key_id: str | None = None,
        status: int | None = None,
        code: str | None = None,
        reasons: list[dict[str, Any]] | None = None,
        correlation_id: str | None = None,
        service: str = "Key Protect",
    ) -> None:
        self.kind = kind
        self.action = action
        self.detail = detail
        self.key_id = key_id
        self.status = status
        self.code = code
        self.reasons = reasons or []
        self.correlation_id = correlation_id
        self.service = service
        super().__init__(self.describe())

    @property
    def transient(self) -> bool:
        """Whether the same call may succeed later (no answer, 429, 5xx)."""
        return self.kind in _TRANSIENT

    def describe(self) -> str:
        """One sentence: the call, the root key, the answer, the correlation id."""
        subject = f"{self.service} {self.action}"
        if self.key_id is not None:
            subject += f" with root key {self.key_id}"
        if self.status is None:
            answer = self.detail
        else:
            answer = f"HTTP {self.status}"
            if self.code:
                answer += f" {self.code}"
            if self.detail:
                answer += f": {self.detail}"
            extra = [
                str(r.get("message"))
                for r in self.reasons
                if r.get("message") and str(r.get("message")) not in self.detail
            ]
            if extra:
                answer += f" ({'; '.join(extra)})"
        text = f"{subject} failed: {answer}"
        if self.correlation_id is not None:
            text += f" [correlation id {self.correlation_id}]"
        return text
