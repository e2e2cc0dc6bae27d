# -*- test-case-name: tests.test_cli -*-
"""A small blocking client of the admin API, for the ``kmiptwist`` command.

The command runs one request and exits, so a blocking ``http.client`` connection over
the unix socket (or TCP with mutual TLS) is all it needs: no reactor to start, and it
starts in milliseconds.  Tests hand the command any object with the same
:meth:`AdminClient.request` method instead.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from attrs import frozen

__all__ = [
    "AdminClient",
    "AdminUnavailable",
    "Answer",
    "Requester",
    "short_unix_path",
    "MAX_UNIX_PATH",
]

MAX_UNIX_PATH = 107
"""Longest path (bytes) a unix socket address holds on Linux."""


class AdminUnavailable(Exception):
    """The admin API cannot be reached (server not running, no permission)."""


@frozen
class Answer:
    """An admin API answer: the HTTP status and the decoded JSON body (None if empty)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300


class Requester(Protocol):
    """What the command needs of a client: one request, one answer."""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
    ) -> Answer:
        """Send ``body`` as JSON to ``path``; return the answer."""
        ...


@contextlib.contextmanager
def short_unix_path(path: str) -> Iterator[str]:
    """A path that reaches the unix socket ``path`` even when it is too long for one.

    Unix socket addresses hold at most 107 bytes; a longer path is reached through
    ``/proc/self/fd/N/`` with N a descriptor of its directory (Linux).  The
    descriptor stays open until the ``with`` block ends.
    """
    absolute = os.path.abspath(path)
    if len(os.fsencode(absolute)) <= MAX_UNIX_PATH:
        yield absolute
        return
    directory = os.open(os.path.dirname(absolute), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        short = f"/proc/self/fd/{directory}/{os.path.basename(absolute)}"
        if not os.path.isdir(f"/proc/self/fd/{directory}") or len(short) > MAX_UNIX_PATH:
            raise OSError(f"the unix socket path {absolute} is too long; use a shorter one")
        yield short
    finally:
        os.close(directory)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        """Connect to the socket file (through a short path if it is long)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            with short_unix_path(self.socket_path) as address:
                sock.connect(address)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class AdminClient:
    """Talks to the admin API over its unix socket, or over TCP with mutual TLS.

    ``socket_path`` for the unix socket; or ``url`` (``https://host:port``) with the
    admin client certificate and key, and the CA that issued the server certificate.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        url: str | None = None,
        certificate: str | None = None,
        private_key: str | None = None,
        ca_certificate: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        """Set up where to connect; nothing connects before :meth:`request`."""
        if (socket_path is None) == (url is None):
            raise ValueError("give either socket_path or url")
        self.socket_path = socket_path
        self.url = url
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None
        if url is not None:
            context = ssl.create_default_context(cafile=ca_certificate)
            if certificate is not None:
                context.load_cert_chain(certificate, private_key)
            self._tls = context

    def _connection(self) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return _UnixHTTPConnection(self.socket_path, self.timeout)
        assert self.url is not None
        host = self.url.split("://", 1)[-1].rstrip("/")
        return http.client.HTTPSConnection(host, timeout=self.timeout, context=self._tls)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
    ) -> Answer:
        """Send one request and return its answer; AdminUnavailable when unreachable."""
        target = quote(path)
        if query:
            pairs = [
                (key, value)
                for key, values in query.items()
                for value in (values if isinstance(values, list) else [values])
                if value is not None
            ]
            if pairs:
                target += "?" + urlencode(pairs)
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        connection = self._connection()
        where = self.socket_path or self.url
        try:
            connection.request(method, target, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except FileNotFoundError:
            raise AdminUnavailable(
                f"no admin socket at {where}: is the server running with this data directory?"
            ) from None
        except ConnectionRefusedError:
            raise AdminUnavailable(f"nothing answers on {where}: is the server running?") from None
        except PermissionError:
            raise AdminUnavailable(
                f"no permission to use {where}: run as the user the server runs as"
            ) from None
        except (OSError, http.client.HTTPException) as error:
            raise AdminUnavailable(f"cannot reach the admin API at {where}: {error}") from None
        finally:
            connection.close()
        try:
            decoded = json.loads(data) if data.strip() else None
        except ValueError:
            decoded = {
                "error": {
                    "reason": "BAD_RESPONSE",
                    "message": data[:200].decode("utf-8", "replace"),
                }
            }
        return Answer(response.status, decoded)
