"""Tests for the small HTTP/1.1 client of the Key Protect calls: what it sends, how it
reads every answer form a Key Protect or IAM server (or a proxy in front) may use,
and when it keeps or drops a connection.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.keyprotect.http11 import HTTP11ClientProtocol, HTTPProtocolError, LeanHTTP
from kmiptwist.keyprotect.transport import HTTPAnswer


def connected() -> tuple[HTTP11ClientProtocol, StringTransport]:
    protocol = HTTP11ClientProtocol()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class ProtocolTests(SynchronousTestCase):
    """One connection's requests and answers."""

    def answer(self, *chunks: bytes, method: str = "POST") -> tuple[Any, HTTP11ClientProtocol]:
        protocol, _ = connected()
        pending = protocol.request(
            method, "/x", {"Host": "kp"}, b"{}" if method == "POST" else None
        )
        for chunk in chunks:
            protocol.dataReceived(chunk)
        outcome: list[Any] = []
        pending.addBoth(outcome.append)
        return (outcome[0] if outcome else None), protocol

    def test_request_bytes(self) -> None:
        """The request line, the headers given, Content-Length and the body."""
        protocol, transport = connected()
        protocol.request("POST", "/api/v2/keys/k/actions/wrap", {"Host": "kp", "A": "b"}, b"{}")
        self.assertEqual(
            transport.value(),
            b"POST /api/v2/keys/k/actions/wrap HTTP/1.1\r\nHost: kp\r\nA: b\r\n"
            b"Content-Length: 2\r\n\r\n{}",
        )

    def test_content_length(self) -> None:
        """An answer with Content-Length, in any number of pieces; headers lower-cased."""
        answer, protocol = self.answer(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCorre",
            b'lation-Id: c1\r\nContent-Length: 7\r\n\r\n{"a"',
            b":1}",
        )
        self.assertEqual(
            answer,
            HTTPAnswer(
                200,
                {"content-type": "application/json", "correlation-id": "c1", "content-length": "7"},
                b'{"a":1}',
            ),
        )
        self.assertTrue(protocol.reusable)

    def test_chunked(self) -> None:
        """A chunked answer (extensions and trailers ignored)."""
        answer, protocol = self.answer(
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n",
            b'4;x=y\r\n{"a"\r\n3\r\n:1}\r\n0\r\nTrailer: t\r\n\r\n',
        )
        self.assertEqual((answer.status, answer.body), (409, b'{"a":1}'))
        self.assertTrue(protocol.reusable)

    def test_until_close(self) -> None:
        """Without length or chunking the body ends with the connection (not reused)."""
        answer, protocol = self.answer(b"HTTP/1.1 200 OK\r\n\r\nabc")
        self.assertIsNone(answer)
        protocol.connectionLost(Failure(ConnectionLost()))
        protocol2, _ = connected()
        pending = protocol2.request("GET", "/", {}, None)
        protocol2.dataReceived(b"HTTP/1.0 200 OK\r\n\r\nxyz")
        protocol2.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.successResultOf(pending).body, b"xyz")

    def test_no_body(self) -> None:
        """204 and answers to HEAD have no body; 100 Continue is skipped."""
        answer, _ = self.answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual((answer.status, answer.body), (204, b""))
        answer, _ = self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method="HEAD")
        self.assertEqual((answer.status, answer.body), (200, b""))

    def test_connection_close(self) -> None:
        """``Connection: close`` answers are read, then the connection is closed."""
        answer, protocol = self.answer(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(answer.status, 200)
        self.assertFalse(protocol.reusable)
        self.assertTrue(protocol.transport.disconnecting)  # type: ignore[union-attr]

    def test_malformed(self) -> None:
        """Not HTTP, a broken header, a bad length or chunk: the request fails, the
        connection is dropped."""
        for data in (
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000,
        ):
            answer, protocol = self.answer(data)
            self.assertIsInstance(answer, Failure, data[:40])
            answer.trap(HTTPProtocolError)
            self.assertFalse(protocol.reusable)

    def test_lost_mid_answer(self) -> None:
        """A connection lost before the answer is complete fails the request."""
        answer, protocol = self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        self.assertIsNone(answer)
        protocol2, _ = connected()
        pending = protocol2.request("POST", "/", {}, b"")
        protocol2.connectionLost(Failure(ConnectionLost("gone")))
        self.failureResultOf(pending, ConnectionLost)

    def test_cancel_aborts(self) -> None:
        """Cancelling a request (a timeout) aborts the connection: it is never reused."""
        protocol, transport = connected()
        pending = protocol.request("POST", "/", {}, b"")
        pending.cancel()
        self.failureResultOf(pending)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(protocol.reusable)

    def test_unexpected_bytes(self) -> None:
        """Bytes nobody asked for close the connection."""
        protocol, transport = connected()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertTrue(transport.disconnecting)


class _Endpoint:
    """Connects a new protocol to a StringTransport at once; remembers them."""

    def __init__(self) -> None:
        self.made: list[HTTP11ClientProtocol] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.made.append(protocol)
        return succeed(protocol)


class PoolTests(SynchronousTestCase):
    """Connections kept per origin and reused."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = _Endpoint()
        self.origins: list[tuple[str, str, int]] = []

        def endpoint_for(scheme: str, host: str, port: int) -> _Endpoint:
            self.origins.append((scheme, host, port))
            return self.endpoint

        self.http = LeanHTTP(self.clock, endpoint_for, max_idle=2, idle_timeout=30)

    def exchange(self, url: str, idempotent: bool = True) -> HTTPAnswer:
        pending = Deferred.fromCoroutine(
            self.http.exchange("POST", url, {"A": "b"}, b"{}", idempotent)
        )
        protocol = self.endpoint.made[-1]
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        answer: HTTPAnswer = self.successResultOf(pending)
        return answer

    def test_reuse(self) -> None:
        """One connection serves consecutive requests of an origin; the Host header and
        the path and query are sent as given."""
        self.exchange("https://kp.example:8443/api/v2/keys?limit=1")
        self.exchange("https://kp.example:8443/api/v2/keys/k")
        self.assertEqual(len(self.endpoint.made), 1)
        self.assertEqual(self.origins, [("https", "kp.example", 8443)])
        sent = self.endpoint.made[0].transport.value()  # type: ignore[union-attr]
        self.assertIn(b"POST /api/v2/keys?limit=1 HTTP/1.1\r\nHost: kp.example:8443\r\n", sent)

    def test_not_idempotent_gets_new_connection(self) -> None:
        """A create or rotate never goes over a connection that sat idle."""
        self.exchange("http://127.0.0.1/a")
        self.exchange("http://127.0.0.1/b", idempotent=False)
        self.assertEqual(len(self.endpoint.made), 2)

    def test_idle_expiry_and_loss(self) -> None:
        """Idle connections close after idle_timeout; a closed one is not reused."""
        self.exchange("http://127.0.0.1/a")
        first = self.endpoint.made[0]
        self.clock.advance(30)
        self.assertTrue(first.transport.disconnecting)  # type: ignore[union-attr]
        first.connectionLost(Failure(ConnectionLost()))
        self.exchange("http://127.0.0.1/a")
        self.assertEqual(len(self.endpoint.made), 2)
        second = self.endpoint.made[1]
        second.connectionLost(Failure(ConnectionLost()))  # the server closed it while idle
        self.exchange("http://127.0.0.1/a")
        self.assertEqual(len(self.endpoint.made), 3)

    def test_close(self) -> None:
        """close() closes every connection and fires once they are gone."""
        self.exchange("http://127.0.0.1/a")
        closing = self.http.close()
        self.assertNoResult(closing)
        self.endpoint.made[0].connectionLost(Failure(ConnectionLost()))
        self.successResultOf(closing)
