# -*- test-case-name: tests.test_admin_api -*-
"""The admin API's HTTP plumbing: routes, JSON bodies, errors, collections, paging.

Plain ``twisted.web``: one leaf :class:`AdminResource` matches the method and path
against a route table and runs the handler coroutine.  (Klein would route too, but
``import klein`` installs the global reactor and the routing here is a dozen lines.)

Every answer is JSON.  Lists are collections shaped like Key Protect's (``metadata``
with ``collectionType``, ``collectionTotal`` and, on request, ``totalCount``;
``resources``), paged with ``limit``/``offset``.  Every error is
``{"error": {"reason": "...", "message": "..."}}`` with a 4xx/5xx status; a refused
request changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

__all__ = [
    "AdminError",
    "AdminResource",
    "Call",
    "Handler",
    "Reply",
    "Router",
    "bad_request",
    "collection",
    "not_found",
]

_log = Logger()

MAX_BODY = 1 << 20
"""Largest request body accepted (a PEM chain or a CSR is a few KiB)."""

JSON_TYPE = b"application/json; charset=utf-8"


class AdminError(Exception):
    """A request the API refuses: HTTP ``status``, a ``reason`` code and a message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"reason": self.reason, "message": self.message}}


def bad_request(reason: str, message: str) -> AdminError:
    """400: the request itself is wrong."""
    return AdminError(400, reason, message)


def not_found(reason: str, message: str) -> AdminError:
    """404: what the path names does not exist."""
    return AdminError(404, reason, message)


@frozen
class Reply:
    """A handler's answer: a status and a JSON body (None: no body, as for 204)."""

    status: int
    body: Any = None


@define
class Call:
    """One request as a handler sees it: path parameters, query, body and who asks."""

    method: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    actor: str
    _parsed: Any = field(default=None, init=False)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; a Key Protect style ``{"resources": [x]}`` gives x."""
        if self._parsed is None:
            if not self.body.strip():
                self._parsed = {}
            else:
                try:
                    value = json.loads(self.body)
                except (ValueError, UnicodeDecodeError) as error:
                    raise bad_request("INVALID_JSON", f"the body is not JSON: {error}") from None
                if isinstance(value, dict) and isinstance(value.get("resources"), list):
                    resources = value["resources"]
                    if len(resources) != 1:
                        raise bad_request("INVALID_BODY", "a request carries exactly one resource")
                    value = resources[0]
                if not isinstance(value, dict):
                    raise bad_request("INVALID_BODY", "the body must be a JSON object")
                self._parsed = value
        return dict(self._parsed)

    def text(self, name: str, required: bool = True, default: str | None = None) -> str | None:
        """A string field of the JSON body."""
        value = self.json().get(name, default)
        if value is None:
            if required:
                raise bad_request("MISSING_FIELD", f"the body needs a {name!r} field")
            return None
        if not isinstance(value, str):
            raise bad_request("INVALID_FIELD", f"{name!r} must be a string")
        return value

    def number(self, name: str, default: int, minimum: int, maximum: int) -> int:
        """An integer field of the JSON body, bounded."""
        value = self.json().get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request("INVALID_FIELD", f"{name!r} must be a whole number")
        if not minimum <= value <= maximum:
            raise bad_request(
                "INVALID_FIELD", f"{name!r} must be from {minimum} to {maximum}, not {value}"
            )
        return value

    def argument(self, name: str) -> str | None:
        """The last value of a query argument, or None."""
        values = self.query.get(name)
        return values[-1] if values else None

    def arguments(self, name: str) -> list[str]:
        """Every value of a query argument."""
        return list(self.query.get(name, ()))

    def flag(self, name: str) -> bool:
        """A true/false query argument (absent: false)."""
        value = self.argument(name)
        if value is None:
            return False
        lowered = value.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no", ""):
            return False
        raise bad_request("INVALID_QUERY", f"{name} must be true or false, not {value!r}")

    def paging(self, default: int = 100, maximum: int = 200) -> tuple[int, int, bool]:
        """``limit``, ``offset`` and ``totalCount`` of a list request, checked."""
        limits = []
        for name, fallback, top in (("limit", default, maximum), ("offset", 0, None)):
            raw = self.argument(name)
            if raw is None:
                limits.append(fallback)
                continue
            try:
                value = int(raw)
            except ValueError:
                raise bad_request("INVALID_QUERY", f"{name} must be a whole number") from None
            if value < 0 or (top is not None and (value < 1 or value > top)):
                bound = f"from 1 to {top}" if top is not None else "0 or more"
                raise bad_request("INVALID_QUERY", f"{name} must be {bound}, not {value}")
            limits.append(value)
        return limits[0], limits[1], self.flag("totalCount")


Handler = Callable[[Call], Awaitable[Reply]]


def collection(
    kind: str, resources: list[dict[str, Any]], total: int | None = None
) -> dict[str, Any]:
    """A Key Protect style collection of ``resources`` (``total``: all that match)."""
    metadata: dict[str, Any] = {
        "collectionType": f"application/vnd.kmiptwist.{kind}+json",
        "collectionTotal": len(resources),
    }
    if total is not None:
        metadata["totalCount"] = total
    return {"metadata": metadata, "resources": resources}


@define
class Router:
    """Method + path pattern -> handler; ``{name}`` segments become path parameters."""

    _routes: list[tuple[str, tuple[str, ...], Handler]] = field(factory=list)

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Route ``method`` requests whose path matches ``pattern`` to ``handler``."""
        self._routes.append((method, tuple(pattern.strip("/").split("/")), handler))

    def resolve(self, method: str, segments: list[str]) -> tuple[Handler, dict[str, str]]:
        """The handler and parameters for a request; 404 or 405 as an AdminError."""
        allowed: list[str] = []
        for route_method, pattern, handler in self._routes:
            if len(pattern) != len(segments):
                continue
            params: dict[str, str] = {}
            for expected, actual in zip(pattern, segments, strict=True):
                if expected.startswith("{") and expected.endswith("}"):
                    if not actual:
                        break
                    params[expected[1:-1]] = actual
                elif expected != actual:
                    break
            else:
                if route_method == method:
                    return handler, params
                allowed.append(route_method)
        if allowed:
            raise AdminError(
                405,
                "METHOD_NOT_ALLOWED",
                f"{method} is not allowed here; use {', '.join(sorted(set(allowed)))}",
            )
        raise not_found("NOT_FOUND", "no such resource: " + "/" + "/".join(segments))


def _actor_anonymous(request: Request) -> str:
    return "admin"


class AdminResource(Resource):
    """The whole admin API as one leaf resource over a :class:`Router`.

    ``actor_of`` names who sent a request (the unix peer's uid, the TLS client
    certificate); handlers put it in the audit log.
    """

    isLeaf = True

    def __init__(
        self, router: Router, actor_of: Callable[[Request], str] = _actor_anonymous
    ) -> None:
        """Serve ``router``; identify callers with ``actor_of``."""
        super().__init__()
        self.router = router
        self.actor_of = actor_of

    def render(self, request: Request) -> int:  # type: ignore[override]
        """Run the request's handler; the answer is written when it is ready."""
        finished: list[bool] = []
        request.notifyFinish().addBoth(lambda _: finished.append(True))
        answer = Deferred.fromCoroutine(self._answer(request))
        answer.addErrback(self._unexpected, request)
        answer.addCallback(self._write, request, finished)
        return NOT_DONE_YET

    async def _answer(self, request: Request) -> Reply:
        """Route, read the body, call the handler; errors become replies."""
        method = (request.method or b"GET").decode("ascii", "replace").upper()
        path = (request.path or b"/").decode("utf-8", "replace")
        segments = [unquote(part) for part in path.strip("/").split("/")] if path != "/" else []
        try:
            handler, params = self.router.resolve(method, segments)
            body = b""
            if request.content is not None:
                body = request.content.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise AdminError(413, "BODY_TOO_LARGE", f"the body is larger than {MAX_BODY} bytes")
            query = {
                key.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in values]
                for key, values in (request.args or {}).items()
            }
            call = Call(method, params, query, body, self.actor_of(request))
            return await handler(call)
        except AdminError as error:
            return Reply(error.status, error.body())

    def _unexpected(self, failure: Failure, request: Request) -> Reply:
        """A handler bug: log it, answer 500 without details."""
        _log.failure(
            "Admin request {method} {path} failed unexpectedly",
            failure,
            method=request.method,
            path=request.path,
        )
        return Reply(
            500,
            AdminError(
                500, "INTERNAL_ERROR", "the request failed on an internal error; see the server log"
            ).body(),
        )

    def _write(self, reply: Reply, request: Request, finished: list[bool]) -> None:
        """Write the reply unless the client has gone."""
        if finished:
            return
        request.setResponseCode(reply.status)
        request.setHeader(b"cache-control", b"no-store")
        if reply.body is not None:
            request.setHeader(b"content-type", JSON_TYPE)
            request.write(json.dumps(reply.body, indent=2).encode("utf-8") + b"\n")
        request.finish()
