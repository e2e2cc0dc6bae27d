"""IAM bearer tokens for Key Protect: the API-key grant, cached, refreshed before expiry.

The API key is read from where the operator put it (a file or an environment
variable, :class:`APIKeySource`), at each token request, and is never logged or
stored.  The token is cached and refreshed in the background once 80 % of its life has
passed (one refresh at a time); callers wait only when there is no usable token, and
then share one request.  A Key Protect 401 drops the token (:meth:`invalidate`) so
the next call gets a fresh one.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any
from urllib.parse import urlencode

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from kmiptwist.keyprotect.errors import IAM_REJECTED, SERVER_ERROR, KeyProtectError
from kmiptwist.keyprotect.errors import describe_error_body as _describe_body
from kmiptwist.keyprotect.transport import HTTPTransport

__all__ = ["APIKeySource", "APIKeyError", "IAMTokenManager", "GRANT_TYPE", "DEFAULT_TOKEN_URL"]

GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"
DEFAULT_TOKEN_URL = "https://iam.cloud.ibm.com/identity/token"

_log = Logger()


class APIKeyError(Exception):
    """The API key cannot be read from where its reference points; the message says why."""


@frozen
class APIKeySource:
    """Where an API key is read: ``file:/path`` or ``env:NAME`` (never the key itself)."""

    reference: str

    @classmethod
    def parse(cls, reference: str) -> APIKeySource:
        """Check the form of a reference; ValueError names what is wrong."""
        kind, _, target = reference.partition(":")
        if kind not in ("file", "env") or not target:
            raise ValueError(
                "an API key reference is file:/path/to/file or env:VARIABLE (the API key itself "
                "is never stored in the configuration or the database)"
            )
        if kind == "env" and not target.replace("_", "").isalnum():
            raise ValueError(f"{target!r} is not an environment variable name")
        return cls(reference)

    def read(self) -> str:
        """The API key, stripped of surrounding white space."""
        kind, _, target = self.reference.partition(":")
        if kind == "env":
            value = os.environ.get(target, "").strip()
            if not value:
                raise APIKeyError(
                    f"the environment variable {target} holding the API key is not set"
                )
            return value
        try:
            with open(target, encoding="utf-8") as handle:
                if stat.S_IMODE(os.fstat(handle.fileno()).st_mode) & 0o077:
                    _log.warn(
                        "The API key file {path} can be read by group or others; "
                        "run chmod 600 {path}",
                        path=target,
                    )
                value = handle.read(4096).strip()
        except OSError as error:
            raise APIKeyError(f"cannot read the API key file {target}: {error.strerror}") from None
        if not value:
            raise APIKeyError(f"the API key file {target} is empty")
        return value


class IAMTokenManager:
    """Bearer tokens for one API key from one IAM token URL.

    ``refresh_fraction`` of a token's life before it expires, a new one is fetched
    in the background; ``expiry_margin`` seconds (at most a tenth of the life) before
    expiry the old one is no longer sent (a long request must not carry a token that
    expires on the way).
    """

    def __init__(
        self,
        transport: HTTPTransport,
        token_url: str,
        api_key: APIKeySource,
        refresh_fraction: float = 0.2,
        expiry_margin: float = 60.0,
    ) -> None:
        self.transport = transport
        self.token_url = token_url
        self.api_key = api_key
        self.refresh_fraction = refresh_fraction
        self.expiry_margin = expiry_margin
        self.fetch_count = 0
        self._authorization: str | None = None
        self._refresh_at = 0.0
        self._unusable_at = 0.0
        self._waiters: list[Deferred[str]] | None = None

    def __repr__(self) -> str:
        return f"<IAMTokenManager {self.token_url} api_key={self.api_key.reference}>"

    @property
    def _clock(self) -> IReactorTime:
        return self.transport.clock

    async def authorization(self) -> str:
        """The ``Authorization`` header value: ``Bearer <access token>``."""
        now = self._clock.seconds()
        current = self._authorization
        if current is not None and now < self._unusable_at:
            if now >= self._refresh_at and self._waiters is None:
                self._start_fetch().addErrback(self._refresh_failed)
            return current
        return await self._start_fetch()

    def invalidate(self, authorization: str) -> None:
        """Key Protect refused ``authorization`` (401): do not send it again."""
        if self._authorization == authorization:
            self._authorization = None

    def _refresh_failed(self, failure: Failure) -> None:
        _log.warn(
            "Refreshing the IAM token from {url} failed; the current token is used until "
            "it expires: {error}",
            url=self.token_url,
            error=failure.getErrorMessage(),
        )

    def _start_fetch(self) -> Deferred[str]:
        """A Deferred of the next token; concurrent callers share one request."""
        waiter: Deferred[str] = Deferred()
        if self._waiters is not None:
            self._waiters.append(waiter)
            return waiter
        self._waiters = [waiter]
        Deferred.fromCoroutine(self._fetch()).addBoth(self._landed)
        return waiter

    def _landed(self, outcome: Any) -> None:
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    async def _fetch(self) -> str:
        try:
            api_key = self.api_key.read()
        except APIKeyError as error:
            raise KeyProtectError(
                IAM_REJECTED, "token request", str(error), service="IAM"
            ) from None
        body = urlencode({"grant_type": GRANT_TYPE, "apikey": api_key}).encode("ascii")
        self.fetch_count += 1
        started = self._clock.seconds()
        answer = await self.transport.call(
            "POST",
            self.token_url,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            body,
            action="token request",
            service="IAM",
        )
        if answer.status != 200:
            code, message, _ = _describe_body(answer.body)
            kind = SERVER_ERROR if answer.status >= 500 or answer.status == 429 else IAM_REJECTED
            raise KeyProtectError(
                kind,
                "token request",
                f"{message} (API key from {self.api_key.reference}, token URL {self.token_url})",
                status=answer.status,
                code=code,
                service="IAM",
            )
        try:
            document = json.loads(answer.body)
            token = str(document["access_token"])
            token_type = str(document.get("token_type") or "Bearer")
            lifetime = float(document.get("expires_in") or 0)
        except (ValueError, KeyError, TypeError):
            raise KeyProtectError(
                SERVER_ERROR,
                "token request",
                "the answer has no access_token",
                status=200,
                service="IAM",
            ) from None
        if lifetime <= 0:
            lifetime = 3600.0
        self._authorization = f"{token_type} {token}"
        self._refresh_at = started + lifetime * (1 - self.refresh_fraction)
        self._unusable_at = started + lifetime - min(self.expiry_margin, lifetime / 10)
        _log.debug(
            "Got an IAM token from {url}, valid for {lifetime:.0f} s",
            url=self.token_url,
            lifetime=lifetime,
        )
        return self._authorization
