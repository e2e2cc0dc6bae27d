"""Reaching a server to replay cases against: mutual TLS to a running one, or a fresh
``twistd -n kmip`` started for the run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kmiptwist.conformance.runner import Transport
from kmiptwist.testing.client import RawKMIPClient, client_context
from kmiptwist.testing.server import RunningServer

__all__ = ["tls_connector", "started_server", "INTEROP_ARGUMENTS"]

#: What ``twistd kmip`` needs to answer the Interop operation the 2.x cases send.
INTEROP_ARGUMENTS = ["--interop-testing", "yes"]


def tls_connector(
    host: str, port: int, cert: str, key: str, ca: str, timeout: float = 30.0
) -> Callable[[], Transport]:
    """Opens mutual-TLS connections to the server, one per case."""
    context = client_context(cert, key, ca)

    def connect() -> Transport:
        return RawKMIPClient(host, port, context, timeout=timeout)

    return connect


@contextmanager
def started_server() -> Iterator[RunningServer]:
    """A fresh ``twistd -n kmip`` on loopback with a throw-away data directory, with
    the Interop operation of the test cases turned on."""
    workdir = tempfile.mkdtemp(prefix="kmiptwist-conformance-")
    server = RunningServer.start(os.path.join(workdir, "data"), extra_arguments=INTEROP_ARGUMENTS)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
