"""``twistd kmip-keyprotect-emulator``: the emulator as its own process on loopback.

    twistd -n kmip-keyprotect-emulator --port 18443 --api-key KEY --latency 0.05 \\
        --state-file kp-state.json --create-root-key <instance-uuid>:kmip-root

Plain HTTP by default (loopback); ``--tls-certificate``/``--tls-key`` serve HTTPS.
With ``--state-file`` keys and API keys survive a restart.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

__all__ = ["Options", "makeService"]

_log = Logger()


class Options(usage.Options):
    """Options of ``twistd kmip-keyprotect-emulator``."""

    synopsis = "[options]"
    longdesc = (
        "Run an emulated IBM Key Protect (REST API v2) and IAM token endpoint, for tests, "
        "demos and benchmarks.  Never for real keys: the key material is in memory and in "
        "the state file."
    )
    optParameters: list[list[Any]] = [
        ["port", None, 18443, "TCP port.", int],
        ["interface", None, "127.0.0.1", "Address to listen on."],
        ["latency", None, 0.0, "Seconds added before every answer.", float],
        ["rate-429", None, 0.0, "Chance (0-1) that a request is answered 429.", float],
        ["rate-5xx", None, 0.0, "Chance (0-1) that a request is answered 503.", float],
        ["state-file", None, None, "Keep keys and API keys in this JSON file across restarts."],
        ["tls-certificate", None, None, "Serve HTTPS with this PEM certificate (chain)."],
        ["tls-key", None, None, "The private key (PEM) of --tls-certificate."],
        ["token-lifetime", None, 3600, "Seconds an IAM token is valid.", int],
        ["rotation-interval", None, 3600.0, "Seconds between two rotations of a key.", float],
        ["state-change-delay", None, 30.0, "Seconds between disable/enable/restore.", float],
        ["seed", None, None, "Seed of the fault knobs' random numbers.", int],
    ]

    def __init__(self) -> None:
        """Options with no API key and no root key yet."""
        super().__init__()
        self["api-keys"] = []
        self["root-keys"] = []

    def opt_api_key(self, value: str) -> None:
        """An API key IAM knows: KEY[:ROLE[:INSTANCE,...]] (repeatable; role Manager)."""
        from kmiptwist.testing.keyprotect.iam import APIKeyGrant

        try:
            self["api-keys"].append(APIKeyGrant.parse(value))
        except ValueError as error:
            raise usage.UsageError(f"--api-key: {error}") from None

    def opt_create_root_key(self, value: str) -> None:
        """Create a root key at start: INSTANCE-UUID[:NAME] (repeatable); its id is logged."""
        instance, _, name = value.partition(":")
        try:
            uuid.UUID(instance)
        except ValueError:
            raise usage.UsageError(f"--create-root-key: {instance!r} is not a UUID") from None
        self["root-keys"].append((instance, name or "kmip-root-key"))

    def postOptions(self) -> None:
        """Check the TLS pair."""
        if (self["tls-certificate"] is None) != (self["tls-key"] is None):
            raise usage.UsageError("--tls-certificate and --tls-key go together")


class _QuietSite(Site):
    """A Site that does not write an access-log line per request (benchmarks)."""

    def log(self, request: Any) -> None:
        """No access log."""


def makeService(options: Options) -> IService:
    """The emulator listening on ``--interface``/``--port``."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

    from kmiptwist.testing.keyprotect.emulator import KeyProtectEmulator, Knobs

    emulator = KeyProtectEmulator(
        reactor,
        state_file=options["state-file"],
        api_keys=dict(options["api-keys"]),
        knobs=Knobs(
            latency=options["latency"], rate_429=options["rate-429"], rate_5xx=options["rate-5xx"]
        ),
        rotation_interval=options["rotation-interval"],
        state_change_delay=options["state-change-delay"],
        token_lifetime=options["token-lifetime"],
        seed=options["seed"],
    )
    for instance, name in options["root-keys"]:
        key = emulator.create_root_key(instance, name)
        _log.info(
            "Created root key {key_id} ({name}) in instance {instance}",
            key_id=key.id,
            name=name,
            instance=instance,
        )
    interface = options["interface"]
    endpoint: Any
    if ":" in interface:
        endpoint = TCP6ServerEndpoint(reactor, options["port"], interface=interface)
    else:
        endpoint = TCP4ServerEndpoint(reactor, options["port"], interface=interface)
    scheme = "http"
    if options["tls-certificate"] is not None:
        from twisted.internet.endpoints import wrapServerTLS
        from twisted.internet.ssl import PrivateCertificate

        with open(options["tls-certificate"], "rb") as certificate_file:
            certificate_pem = certificate_file.read()
        with open(options["tls-key"], "rb") as key_file:
            key_pem = key_file.read()
        tls = PrivateCertificate.loadPEM(certificate_pem + b"\n" + key_pem).options()
        endpoint = wrapServerTLS(tls, endpoint)
        scheme = "https"
    site = _QuietSite(emulator.resource())
    site.displayTracebacks = False
    top = MultiService()
    listener = StreamServerEndpointService(endpoint, site)
    listener._raiseSynchronously = True
    listener.setServiceParent(top)
    _log.info(
        "Key Protect emulator on {scheme}://{interface}:{port} (IAM token URL "
        "{scheme}://{interface}:{port}/identity/token)",
        scheme=scheme,
        interface=interface,
        port=options["port"],
    )
    top.emulator = emulator  # type: ignore[attr-defined]
    return top
