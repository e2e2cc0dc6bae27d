"""A blocking KMIP client over stdlib ``ssl``, for end-to-end tests and benchmarks.

It speaks bytes, not objects: tests build requests with
:mod:`kmiptwist.testing.messages` and send exactly what a given client (vCenter,
a fuzzer) would.
"""

from __future__ import annotations

import socket
import ssl
import struct

__all__ = ["RawKMIPClient", "client_context"]


def client_context(cert: str | None, key: str | None, ca: str) -> ssl.SSLContext:
    """A TLS client context that verifies the server against ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


class RawKMIPClient:
    """One TLS connection that sends TTLV requests and reads whole responses."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        timeout: float = 10.0,
    ) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        self.socket = context.wrap_socket(raw)
        self.socket.settimeout(timeout)

    def send(self, data: bytes) -> None:
        """Send bytes as they are (a whole request, or anything else)."""
        self.socket.sendall(data)

    def receive(self) -> bytes:
        """Read one whole TTLV message; raise ConnectionError if the server closed."""
        header = self._read(8)
        length = struct.unpack(">I", header[4:])[0]
        return header + self._read(length)

    def call(self, data: bytes) -> bytes:
        """Send a request and read its response."""
        self.send(data)
        return self.receive()

    def closed_by_peer(self) -> bool:
        """True when the server has closed the connection (reads end of file)."""
        try:
            return self.socket.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = self.socket.recv(size)
            if not chunk:
                raise ConnectionError("server closed the connection")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close the connection."""
        try:
            self.socket.close()
        except OSError:
            pass

    def __enter__(self) -> RawKMIPClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
