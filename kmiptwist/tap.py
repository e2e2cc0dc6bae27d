# -*- test-case-name: tests.test_tap -*-
"""``twistd kmip``: command-line options and the service they describe.

Importing this module must stay cheap and must not install a reactor: twistd imports
it to list and parse options before ``--reactor`` takes effect.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from kmiptwist.config import Configuration, ConfigurationError, load_configuration

__all__ = ["Options", "makeService"]

# (flag, Configuration field, help).  The defaults live in Configuration only; the
# help text names them so that --help tells the whole story.
_SETTING_FLAGS = (
    (
        "data-dir",
        "data_dir",
        "Data directory of the embedded default (CA, certificates, "
        "database, root key). [default: ./kmiptwist-data]",
    ),
    ("interface", "interface", "Address to listen on ('::' for IPv6). [default: 0.0.0.0]"),
    ("port", "port", "KMIP port. [default: 5696]"),
    (
        "workers",
        "workers",
        "Processes serving the KMIP port, sharing the store (one per core). [default: 1]",
    ),
    (
        "interop-testing",
        "interop_testing",
        "yes: answer the Interop operation of the OASIS conformance tests; never in "
        "production. [default: no]",
    ),
    (
        "max-message-size",
        "max_message_size",
        "Largest KMIP message accepted, in bytes (KiB/MiB suffixes allowed). [default: 1MiB]",
    ),
    ("max-connections", "max_connections", "Most open KMIP connections. [default: 10000]"),
    (
        "max-requests-in-flight",
        "max_requests_in_flight",
        "Pipelined requests processed at once per connection. [default: 32]",
    ),
    ("idle-timeout", "idle_timeout", "Seconds before an idle connection is closed. [default: 300]"),
    (
        "handshake-timeout",
        "handshake_timeout",
        "Seconds a client has to complete the TLS handshake. [default: 30]",
    ),
)


class Options(usage.Options):
    """Options of ``twistd kmip``; each overrides the same setting of ``--config``."""

    synopsis = "[options]"
    longdesc = (
        "Run a KMIP key server.  With no options it initialises ./kmiptwist-data (a CA, "
        "a server certificate, a local root key, a database and a default client "
        "certificate bundle) on first start and prints how to connect."
    )
    optParameters: list[list[Any]] = [
        ["config", None, None, "Configuration file (INI, see etc/kmiptwist.conf.example)."],
        *[[flag, None, None, text] for flag, _, text in _SETTING_FLAGS],
    ]

    def __init__(self) -> None:
        """Options with no server names yet."""
        super().__init__()
        self["server-names"] = []

    def opt_server_name(self, name: str) -> None:
        """Extra DNS name or IP address for the server certificate (repeatable)."""
        self["server-names"].append(name)

    def postOptions(self) -> None:
        """Read the configuration file and apply the flags to it."""
        overrides: dict[str, str | None] = {field: self[flag] for flag, field, _ in _SETTING_FLAGS}
        if self["server-names"]:
            overrides["server_names"] = ",".join(self["server-names"])
        try:
            self["configuration"] = load_configuration(self["config"], overrides)
        except ConfigurationError as error:
            raise usage.UsageError(str(error)) from None

    @property
    def configuration(self) -> Configuration:
        """The configuration these options describe (after parsing)."""
        configuration: Configuration = self["configuration"]
        return configuration


def makeService(options: Options) -> IService:
    """Build the KMIP server service; the reactor is imported only now."""
    from twisted.internet import reactor

    from kmiptwist import collector
    from kmiptwist.service import StartupError, make_kmip_service

    try:
        service = make_kmip_service(options.configuration, reactor)
    except StartupError as error:
        raise SystemExit(f"kmiptwist: {error}") from None
    # A failed start is logged and stops the reactor (KMIPService._start_failed).
    service.when_listening().addCallbacks(lambda _: collector.tune(), _exit_failing)
    return service


def _exit_failing(_: object) -> None:
    """The start failed after twistd began running the service: make the process
    exit 1 once twistd has stopped and cleaned up.

    twistd has no exit status of its own (it ends 0 however the reactor stopped), so
    a supervisor (systemd's ``Restart=on-failure``, a container runtime) would take a
    server that never listened for one that stopped on request.  This runs in the
    interpreter's exit, after twistd's own cleanup (pid file, log).
    """
    atexit.register(_exit_with_failure)


def _exit_with_failure() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(1)
