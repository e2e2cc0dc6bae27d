"""One HTTP call to Key Protect or IAM, bounded: timeout, retries with backoff, slots.

Every attempt has a timeout; failed attempts that may succeed later (no answer, 429,
5xx except 501) are retried with exponential backoff and jitter, honouring
``Retry-After``, at most ``max_retries`` times and never past the call's
``deadline``; at most ``max_in_flight`` attempts are on the wire at once (waiting for
a slot counts against the deadline).  It speaks to a
:class:`~kmiptwist.keyprotect.http11.LeanHTTP` (``exchange``) or to anything with
treq's ``request(method, url, ...)``: a ``treq.client.HTTPClient`` or a
``treq.testing.StubTreq``.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable, Mapping
from typing import Any

import treq
from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.error import ConnectError, ConnectionRefusedError, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from kmiptwist.keyprotect.errors import UNAVAILABLE, KeyProtectError

__all__ = ["RetryPolicy", "HTTPAnswer", "HTTPTransport", "retryable_status"]

_log = Logger()


@frozen
class RetryPolicy:
    """How long one call may take and how it retries.

    ``timeout``: seconds one attempt may take (connect, send, whole answer).
    ``deadline``: seconds the whole call may take, attempts and waits included.
    ``max_retries``: attempts after the first.  ``backoff``: the first wait, doubled
    each retry up to ``max_backoff``; each wait is drawn between half and all of it.
    """

    timeout: float = 5.0
    deadline: float = 15.0
    max_retries: int = 4
    backoff: float = 0.2
    max_backoff: float = 3.0

    def backoff_delay(self, retry: int, draw: Callable[[], float]) -> float:
        """The wait before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.max_backoff, self.backoff * (2**retry))
        return ceiling / 2 + draw() * ceiling / 2


def retryable_status(status: int) -> bool:
    """Whether an answer with this status may be different if asked again (GOKP's rule)."""
    return status == 429 or (status >= 500 and status != 501)


@frozen
class HTTPAnswer:
    """A complete answer: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class _NoAnswer(Exception):
    """An attempt ended without an answer; the message says how."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class HTTPTransport:
    """Calls through ``http`` with the limits of ``policy``; ``clock`` times them.

    ``semaphore`` bounds the attempts in flight (shared by every transport that
    should count against one bound); ``draw`` gives the jitter (random in [0, 1)).
    """

    def __init__(
        self,
        http: Any,
        clock: IReactorTime,
        policy: RetryPolicy,
        semaphore: DeferredSemaphore | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.http = http
        self.clock = clock
        self.policy = policy
        self.semaphore = semaphore
        self._draw = draw

    async def call(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        action: str,
        key_id: str | None = None,
        correlation_id: str | None = None,
        service: str = "Key Protect",
        idempotent: bool = True,
    ) -> HTTPAnswer:
        """The answer to one call, after the retries it deserves.

        Returns the last answer, whatever its status (a 429 or 5xx once the retries
        are spent); raises :class:`KeyProtectError` (kind ``unavailable``) when no
        attempt got an answer.  A call that is not ``idempotent`` is retried only
        when it was certainly not sent (connection refused) or was refused (429).
        """
        policy = self.policy
        start = self.clock.seconds()
        retry = 0

        def failed(detail: str) -> KeyProtectError:
            return KeyProtectError(
                UNAVAILABLE,
                action,
                detail,
                key_id=key_id,
                correlation_id=correlation_id,
                service=service,
            )

        while True:
            remaining = policy.deadline - (self.clock.seconds() - start)
            if remaining <= 0:
                raise failed(f"no answer within the deadline of {policy.deadline:g} s")
            wait: float | None = None
            try:
                answer = await self._attempt(
                    method, url, headers, body, min(policy.timeout, remaining), idempotent
                )
            except _NoAnswer as error:
                if retry >= policy.max_retries or (error.sent and not idempotent):
                    attempts = retry + 1
                    raise failed(
                        f"{error} (after {attempts} attempt{'s' * (attempts > 1)})"
                    ) from None
                outcome = str(error)
                last: HTTPAnswer | None = None
            else:
                if not retryable_status(answer.status) or retry >= policy.max_retries:
                    return answer
                if answer.status != 429 and not idempotent:
                    return answer
                outcome = f"HTTP {answer.status}"
                last = answer
                wait = _retry_after(answer.headers.get("retry-after"), self.clock.seconds())
            delay = policy.backoff_delay(retry, self._draw)
            if wait is not None:
                delay = max(delay, wait)
            remaining = policy.deadline - (self.clock.seconds() - start)
            if delay >= remaining:
                if last is not None:
                    return last
                raise failed(
                    f"{outcome}; no time left within the deadline of {policy.deadline:g} s "
                    "for another attempt"
                )
            _log.info(
                "{service} {action} attempt {attempt} failed ({outcome}); retrying in "
                "{delay:.2f} s [correlation id {correlation_id}]",
                service=service,
                action=action,
                attempt=retry + 1,
                outcome=outcome,
                delay=delay,
                key_id=key_id,
                correlation_id=correlation_id,
            )
            await deferLater(self.clock, delay)
            retry += 1

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
        idempotent: bool = True,
    ) -> HTTPAnswer:
        """One attempt within ``timeout`` seconds, the wait for a slot included."""
        deadline = self.clock.seconds() + timeout
        if self.semaphore is not None and self.semaphore.tokens:
            self.semaphore.tokens -= 1  # a free slot: taken at once, no timer needed
        elif self.semaphore is not None:
            acquiring = self.semaphore.acquire()
            acquiring.addTimeout(timeout, self.clock)
            try:
                await acquiring
            except (CancelledError, DeferredTimeoutError, ConnectTimeoutError):
                raise _NoAnswer(
                    f"{self.semaphore.limit} calls already in flight and none finished within "
                    f"{timeout:.3g} s",
                    sent=False,
                ) from None
        try:
            left = deadline - self.clock.seconds()
            if left <= 0:
                raise _NoAnswer(f"no free slot for a call within {timeout:.3g} s", sent=False)
            exchange = Deferred.fromCoroutine(
                self._exchange(method, url, headers, body, idempotent)
            )
            timed_out = False

            def expire() -> None:
                nonlocal timed_out
                timed_out = True
                exchange.cancel()

            timer = self.clock.callLater(left, expire)
            try:
                return await exchange
            except (ConnectionRefusedError, DNSLookupError, ConnectError) as error:
                if timed_out:
                    raise _NoAnswer(f"cannot connect within {timeout:.3g} s", sent=False) from None
                raise _NoAnswer(f"cannot connect: {_describe(error)}", sent=False) from None
            except Exception as error:
                if timed_out:
                    raise _NoAnswer(f"no answer within {timeout:.3g} s", sent=True) from None
                raise _NoAnswer(f"connection failed: {_describe(error)}", sent=True) from None
            finally:
                if timer.active():
                    timer.cancel()
        finally:
            if self.semaphore is not None:
                self.semaphore.release()

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        idempotent: bool = True,
    ) -> HTTPAnswer:
        exchange = getattr(self.http, "exchange", None)
        if exchange is not None:
            answer: HTTPAnswer = await exchange(method, url, headers, body, idempotent)
            return answer
        response = await self.http.request(
            method, url, headers=dict(headers), data=body, allow_redirects=False
        )
        content = await treq.content(response)
        answer_headers = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in response.headers.getAllRawHeaders()
        }
        return HTTPAnswer(response.code, answer_headers, content)


def _describe(error: BaseException) -> str:
    """A short description of a connection failure (treq wraps the reasons in lists)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        inner = [
            _describe(reason.value) if hasattr(reason, "value") else str(reason)
            for reason in reasons
        ]
        return "; ".join(inner)
    text = str(error).strip() or type(error).__name__
    return text
