"""The emulator over HTTP: Key Protect's REST API, IAM's token endpoint, a control API.

Routes (keyprotect-api.md §1-§3, both action forms of §2.3):

- ``POST /identity/token`` and ``/oidc/token``: IAM API-key grant.
- ``GET|HEAD|POST /api/v2/keys``; ``GET|DELETE /api/v2/keys/{id}``;
  ``GET /api/v2/keys/{id}/metadata`` and ``/versions``;
  ``POST /api/v2/keys/{id}/actions/{action}`` and ``POST /api/v2/keys/{id}?action=``;
  ``POST /api/v2/keys/{id}/restore``; ``DELETE /api/v2/keys/{id}/purge``.
- ``/_emulator``: ``GET`` status; ``POST /_emulator/knobs`` (JSON of :class:`Knobs`
  fields), ``/_emulator/inject`` (``{"status", "count", "retry_after"}``),
  ``/_emulator/api-keys`` (``{"api_key", "role", "instances"}``),
  ``/_emulator/advance`` (``{"seconds"}``); ``DELETE /_emulator/api-keys/{key}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from kmiptwist.testing.keyprotect.errors import IAMError, KPError, error_body
from kmiptwist.testing.keyprotect.keys import VERSION_TYPE, iso

if TYPE_CHECKING:
    from kmiptwist.testing.keyprotect.emulator import KeyProtectEmulator

__all__ = ["EmulatorResource"]

_log = Logger()

_INSTANCE_ERROR = "Request requires valid Bluemix-Instance Header containing a valid UUID"

#: Action -> the role it needs (keyprotect-api.md §3.9).
_ACTION_ROLES = {
    "wrap": "Reader",
    "unwrap": "Reader",
    "rewrap": "Reader",
    "rotate": "Writer",
    "disable": "Manager",
    "enable": "Manager",
    "sync": "Manager",
    "setKeyForDeletion": "Manager",
    "unsetKeyForDeletion": "Manager",
}

_Answer = tuple[int, Any, dict[str, str]]


def _integer(query: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        value = -1
    if value < 0 or value > maximum:
        raise KPError(
            400,
            "INVALID_QUERY_PARAM_ERR",
            "Key could not be retrieved",
            f"The query parameter `{name}` must be: an integer from 0 to {maximum}",
            name,
        )
    return value


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[0].lower() == "true"


class EmulatorResource(Resource):
    """Every route of the emulator; one instance per :class:`KeyProtectEmulator`."""

    isLeaf = True

    def __init__(self, emulator: KeyProtectEmulator) -> None:
        super().__init__()
        self.emulator = emulator

    # -- dispatch -----------------------------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        """Answer ``request`` (after the latency knob, unless a fault says otherwise)."""
        path = unquote((request.path or b"/").decode("utf-8", "replace"))
        method = (request.method or b"GET").decode("ascii", "replace")
        body = request.content.read() if request.content is not None else b""
        correlation = request.getHeader("correlation-id") or str(uuid.uuid4())
        request.setHeader("correlation-id", correlation)
        if path.startswith("/_emulator"):
            return self._finish(request, self._control(method, path, body))
        emulator = self.emulator
        emulator.calls[self._call_name(method, path, request)] += 1
        fault = self._fault(path)
        if fault is not None:
            status, retry_after = fault
            if status == 0:
                request.transport.abortConnection()  # type: ignore[union-attr]
                return NOT_DONE_YET
            if status < 0:
                return NOT_DONE_YET
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            if status == 429:
                error = KPError(
                    429, None, "Please wait a few minutes and try again.", headers=headers
                )
            else:
                error = KPError(
                    status, None, "The service is temporarily unavailable.", headers=headers
                )
            return self._finish(request, (status, error.body(), error.headers))
        emulator.in_flight += 1
        emulator.max_in_flight = max(emulator.max_in_flight, emulator.in_flight)

        def answer() -> None:
            emulator.in_flight -= 1
            if not finished:
                self._finish(request, self._answer(method, path, body, request))

        finished = False
        latency = emulator.knobs.latency
        if latency <= 0:
            emulator.in_flight -= 1
            return self._finish(request, self._answer(method, path, body, request))
        call = emulator.clock.callLater(latency, answer)

        def gone(_: Failure) -> None:
            nonlocal finished
            finished = True
            if call.active():
                call.cancel()
                emulator.in_flight -= 1

        request.notifyFinish().addErrback(gone)
        return NOT_DONE_YET

    @staticmethod
    def _call_name(method: str, path: str, request: Request) -> str:
        """The counter a request counts in: the action name, or method and route."""
        if path in ("/identity/token", "/oidc/token"):
            return "token"
        parts = path.strip("/").split("/")
        if len(parts) == 6 and parts[4] == "actions":
            return parts[5]
        action = request.args.get(b"action") if request.args else None
        if action:
            return action[0].decode("utf-8", "replace")
        return f"{method} {'/'.join(parts[:3] + ['{id}'] * (len(parts) > 3) + parts[4:])}"

    def _fault(self, path: str) -> tuple[int, int | None] | None:
        """The fault this request meets, if any: injected, outage, or random."""
        emulator = self.emulator
        knobs = emulator.knobs
        if emulator.injected:
            return emulator.injected.popleft()
        if knobs.outage != "off":
            return {"drop": (0, None), "hang": (-1, None), "503": (503, knobs.retry_after)}[
                knobs.outage
            ]
        if knobs.rate_429 and emulator.random.random() < knobs.rate_429:
            return 429, knobs.retry_after
        if knobs.rate_5xx and emulator.random.random() < knobs.rate_5xx:
            return 503, knobs.retry_after
        return None

    @staticmethod
    def _finish(request: Request, answer: _Answer) -> int:
        """Send ``answer`` (status, JSON body or None, headers) and end the request."""
        if request.finished or getattr(request, "_disconnected", False):
            return NOT_DONE_YET
        status, payload, headers = answer
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
            request.setHeader("content-type", "application/json")
            request.setHeader("content-length", str(len(data)))
            request.write(data)
        request.finish()
        return NOT_DONE_YET

    # -- routes ---------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, body: bytes, request: Request) -> _Answer:
        """The status, JSON body and headers for one Key Protect or IAM request."""
        try:
            if path in ("/identity/token", "/oidc/token"):
                return self._token(method, body, request)
            if path == "/api/v2/keys" or path.startswith("/api/v2/keys/"):
                return self._keys(method, path, body, request)
            raise KPError(404, None, f"No route for {method} {path}")
        except KPError as error:
            return error.status, error.body(), error.headers
        except Exception:
            _log.failure("Key Protect emulator failed on {method} {path}", method=method, path=path)
            return (
                500,
                error_body(500, "INCOMPLETE_METADATA_ERR", "Internal error", "emulator bug"),
                {},
            )

    def _token(self, method: str, body: bytes, request: Request) -> _Answer:
        if method != "POST":
            return 405, None, {"Allow": "POST"}
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        try:
            token = self.emulator.iam.issue(form)
        except IAMError as error:
            request_id = str(uuid.uuid4())
            host = (request.getHeader("host") or "iam.cloud.ibm.com").split(":")[0]
            return error.status, error.body(request_id, f"https://{host}"), {}
        return 200, token, {}

    def _keys(self, method: str, path: str, raw_body: bytes, request: Request) -> _Answer:
        emulator = self.emulator
        model = emulator.model
        instance = request.getHeader("bluemix-instance") or ""
        try:
            uuid.UUID(instance)
        except ValueError:
            raise KPError(400, None, _INSTANCE_ERROR) from None
        parts = path.strip("/").split("/")[3:]  # after api/v2/keys
        query = {
            k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs]
            for k, vs in (request.args or {}).items()
        }
        authorization = request.getHeader("authorization")
        prefer = (request.getHeader("prefer") or "").replace(" ", "")
        body: Any = None
        if raw_body.strip():
            try:
                body = json.loads(raw_body)
            except ValueError:
                raise KPError(
                    400,
                    "BAD_BODY_ERR",
                    "The request could not be read",
                    "Invalid body data was passed",
                ) from None

        def authorize(role: str) -> str:
            return emulator.iam.authorize(authorization, instance, role).subject

        def saved(answer: _Answer) -> _Answer:
            emulator.save()
            return answer

        if not parts:
            if method in ("GET", "HEAD"):
                authorize("Reader")
                limit = _integer(query, "limit", 200, 5000)
                offset = _integer(query, "offset", 0, 1 << 31)
                states = None
                if query.get("state"):
                    try:
                        states = {int(s) for s in query["state"][0].split(",")}
                    except ValueError:
                        raise KPError(
                            400,
                            "INVALID_QUERY_PARAM_ERR",
                            "Key could not be retrieved",
                            "The query parameter `state` must be: integers 0-5 separated by commas",
                            "state",
                        ) from None
                extractable = None
                if query.get("extractable"):
                    extractable = _flag(query, "extractable")
                page, total = model.list_keys(instance, limit, offset, states, extractable)
                if method == "HEAD":
                    return 204, None, {"Key-Total": str(total)}
                resources = [model.representation(key) for key in page]
                return (
                    200,
                    model.collection(resources, total if _flag(query, "totalCount") else None),
                    {},
                )
            if method == "POST":
                subject = authorize("Writer")
                key = model.create(instance, body, subject)
                if prefer == "return=minimal":
                    return saved((201, None, {}))
                return saved((201, model.collection([model.representation(key)]), {}))
            return 405, None, {"Allow": "GET, HEAD, POST"}
        key_id = parts[0]
        rest = parts[1:]
        if not rest:
            if method == "POST" and query.get("action"):
                return self._action(instance, key_id, query["action"][0], body, authorize, saved)
            if method == "GET":
                authorize("Writer")
                key = model.find(instance, key_id, "Key could not be retrieved")
                return 200, model.collection([model.representation(key, with_payload=True)]), {}
            if method == "DELETE":
                subject = authorize("Manager")
                key = model.delete(instance, key_id, subject)
                if prefer == "return=representation":
                    return saved((200, model.collection([model.representation(key)]), {}))
                return saved((204, None, {}))
            return 405, None, {"Allow": "GET, DELETE, POST"}
        if rest == ["metadata"] and method == "GET":
            authorize("Reader")
            key = model.find(
                instance, key_id, "Key metadata could not be retrieved", deleted_ok=True
            )
            return 200, model.collection([model.representation(key)]), {}
        if rest == ["versions"] and method == "GET":
            authorize("Reader")
            limit = _integer(query, "limit", 200, 5000)
            offset = _integer(query, "offset", 0, 1 << 31)
            versions, total = model.versions(
                instance, key_id, limit, offset, _flag(query, "allKeyStates")
            )
            metadata: dict[str, Any] = {
                "collectionType": VERSION_TYPE,
                "collectionTotal": len(versions),
            }
            if _flag(query, "totalCount"):
                metadata["totalCount"] = total
            resources = [{"id": v.id, "creationDate": iso(v.created)} for v in versions]
            return 200, {"metadata": metadata, "resources": resources}, {}
        if len(rest) == 2 and rest[0] == "actions" and method == "POST":
            return self._action(instance, key_id, rest[1], body, authorize, saved)
        if rest == ["restore"] and method == "POST":
            authorize("Manager")
            key = model.restore(instance, key_id)
            return saved((201, model.collection([model.representation(key)]), {}))
        if rest == ["purge"] and method == "DELETE":
            authorize("Manager")
            key = model.purge(instance, key_id)
            if prefer == "return=representation":
                return saved((200, model.collection([model.representation(key)]), {}))
            return saved((204, None, {}))
        raise KPError(404, None, f"No route for {method} {path}")

    def _action(
        self,
        instance: str,
        key_id: str,
        action: str,
        body: Any,
        authorize: Callable[[str], str],
        saved: Callable[[_Answer], _Answer],
    ) -> _Answer:
        model = self.emulator.model
        role = _ACTION_ROLES.get(action)
        if role is None:
            raise KPError(
                400,
                "INVALID_QUERY_PARAM_ERR",
                "Action could not be performed",
                f"The action `{action}` is not one of {', '.join(_ACTION_ROLES)}",
                "action",
            )
        authorize(role)
        if action == "wrap":
            return 200, model.wrap(instance, key_id, body), {}
        if action == "unwrap":
            return 200, model.unwrap(instance, key_id, body), {}
        if action == "rewrap":
            return 200, model.rewrap(instance, key_id, body), {}
        if action == "rotate":
            model.rotate(instance, key_id, body)
            return saved((204, None, {}))
        if action == "disable":
            model.disable(instance, key_id)
            return saved((204, None, {}))
        if action == "enable":
            model.enable(instance, key_id)
            return saved((204, None, {}))
        if action == "sync":
            model.find(instance, key_id, "Sync with key could not be performed")
            return 204, None, {}
        model.find(instance, key_id, "Dual authorization could not be set")
        raise KPError(
            409,
            "NOT_DUAL_AUTH_ERR",
            "Dual authorization could not be set",
            "The key does not have a dual authorization policy",
        )

    # -- control API ----------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> _Answer:
        emulator = self.emulator
        try:
            data = json.loads(body) if body.strip() else {}
            if method == "GET" and path.rstrip("/") == "/_emulator":
                return 200, emulator.status(), {}
            if method == "POST" and path == "/_emulator/knobs":
                emulator.knobs.update(data)
                return 200, emulator.status(), {}
            if method == "POST" and path == "/_emulator/inject":
                emulator.inject(
                    int(data["status"]), int(data.get("count", 1)), data.get("retry_after")
                )
                return 200, emulator.status(), {}
            if method == "POST" and path == "/_emulator/advance":
                emulator.advance_time(float(data["seconds"]))
                return 200, emulator.status(), {}
            if method == "POST" and path == "/_emulator/api-keys":
                emulator.add_api_key(
                    data["api_key"], data.get("role", "Manager"), data.get("instances")
                )
                return 200, {"added": True}, {}
            if method == "DELETE" and path.startswith("/_emulator/api-keys/"):
                removed = emulator.iam.remove_api_key(path[len("/_emulator/api-keys/") :])
                emulator.save()
                return (200 if removed else 404), {"removed": removed}, {}
        except (ValueError, KeyError, TypeError) as error:
            return 400, {"error": str(error)}, {}
        return 404, {"error": f"no control route {method} {path}"}, {}
