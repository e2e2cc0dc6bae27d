"""The Key Protect emulator: keys, IAM, fault knobs and the state file, in one object.

:class:`KeyProtectEmulator` is what tests, demos and benchmarks hold: its
:meth:`~KeyProtectEmulator.resource` is the twisted.web resource that answers like
Key Protect and IAM (serve it on loopback, or drive it with ``treq.testing.StubTreq``);
its :class:`Knobs` add latency, 429s, 5xx and outages; with a ``state_file`` its keys
and API keys survive a restart.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, deque
from typing import Any

from attrs import asdict, define
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource

from kmiptwist.testing.keyprotect.iam import APIKeyGrant, IAMEmulator
from kmiptwist.testing.keyprotect.keys import Key, KeyModel

__all__ = ["KeyProtectEmulator", "Knobs", "OUTAGES"]

#: What an outage does: nothing, close the connection at once, never answer, or 503.
OUTAGES = ("off", "drop", "hang", "503")


@define
class Knobs:
    """Faults and delays the emulator adds to Key Protect and IAM answers.

    ``latency`` seconds before each answer; ``rate_429`` / ``rate_5xx`` the chance
    that a request is refused with 429 / 503; ``outage`` one of :data:`OUTAGES`;
    ``retry_after`` the Retry-After header (seconds) of the 429s and 503s, if any.
    """

    latency: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    outage: str = "off"
    retry_after: int | None = None

    def update(self, changes: dict[str, Any]) -> None:
        """Set the knobs named in ``changes``; ValueError for a bad name or value."""
        for name, value in changes.items():
            if name in ("latency", "rate_429", "rate_5xx"):
                number = float(value)
                if number < 0 or (name != "latency" and number > 1):
                    raise ValueError(f"{name} out of range: {value!r}")
                setattr(self, name, number)
            elif name == "outage":
                if value not in OUTAGES:
                    raise ValueError(f"outage must be one of {', '.join(OUTAGES)}")
                self.outage = value
            elif name == "retry_after":
                self.retry_after = None if value is None else int(value)
            else:
                raise ValueError(f"unknown knob {name!r}")


class _OffsetClock:
    """The reactor's clock moved ``offset`` seconds (to test expiry in a live process)."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.offset = 0.0

    def seconds(self) -> float:
        return self.clock.seconds() + self.offset

    def callLater(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.clock.callLater(delay, function, *args, **kwargs)

    def getDelayedCalls(self) -> Any:  # noqa: N802
        return self.clock.getDelayedCalls()


@define(init=False)
class KeyProtectEmulator:
    """An emulated Key Protect service with its IAM, for tests and benchmarks."""

    clock: IReactorTime
    model: KeyModel
    iam: IAMEmulator
    knobs: Knobs
    state_file: str | None
    random: random.Random
    calls: Counter[str]
    injected: deque[tuple[int, int | None]]
    in_flight: int = 0
    max_in_flight: int = 0

    def __init__(
        self,
        clock: IReactorTime,
        state_file: str | None = None,
        api_keys: dict[str, APIKeyGrant] | None = None,
        knobs: Knobs | None = None,
        rotation_interval: float = 3600.0,
        state_change_delay: float = 30.0,
        token_lifetime: int = 3600,
        seed: int | None = None,
    ) -> None:
        """An emulator on ``clock``; the state file is read now if it exists."""
        offset_clock: Any = _OffsetClock(clock)
        self.clock = offset_clock
        self.model = KeyModel(
            offset_clock, rotation_interval=rotation_interval, state_change_delay=state_change_delay
        )
        self.iam = IAMEmulator(offset_clock, token_lifetime=token_lifetime)
        self.knobs = knobs or Knobs()
        self.state_file = state_file
        self.random = random.Random(seed)
        self.calls = Counter()
        self.injected = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        if state_file is not None and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as handle:
                saved = json.load(handle)
            self.iam.load_json(saved["iam"])
            self.model.load_json(saved["keys"])
        for key, grant in (api_keys or {}).items():
            self.iam.add_api_key(key, grant)
        self.save()

    # -- for tests ------------------------------------------------------------------------

    def resource(self) -> Resource:
        """The twisted.web resource answering as Key Protect, IAM and the control API."""
        from kmiptwist.testing.keyprotect.web import EmulatorResource

        return EmulatorResource(self)

    def add_api_key(
        self, key: str, role: str = "Manager", instances: list[str] | None = None
    ) -> None:
        """Let ``key`` get tokens with ``role`` on ``instances`` (None: every instance)."""
        self.iam.add_api_key(
            key, APIKeyGrant(role, None if instances is None else tuple(instances))
        )
        self.save()

    def create_root_key(
        self, instance: str, name: str = "kmip-root-key", payload: str | None = None
    ) -> Key:
        """Create a root key directly (no HTTP, no IAM): for test set-up."""
        resource: dict[str, Any] = {"type": "application/vnd.ibm.kms.key+json", "name": name}
        if payload is not None:
            resource["payload"] = payload
        key = self.model.create(
            instance,
            {"metadata": {"collectionTotal": 1}, "resources": [resource]},
            "ServiceId-emulator",
        )
        self.save()
        return key

    def inject(self, status: int, count: int = 1, retry_after: int | None = None) -> None:
        """Answer the next ``count`` Key Protect or IAM requests with ``status``.

        0 closes the connection without an answer; -1 never answers.
        """
        for _ in range(count):
            self.injected.append((status, retry_after))

    def advance_time(self, seconds: float) -> None:
        """Move the emulator's clock forward (token and key expiry) without waiting."""
        assert isinstance(self.clock, _OffsetClock)
        self.clock.offset += seconds

    def status(self) -> dict[str, Any]:
        """Knobs and counters, as the control API reports them."""
        return {
            "knobs": asdict(self.knobs),
            "calls": dict(self.calls),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "tokens_issued": self.iam.tokens_issued,
            "injected": len(self.injected),
            "keys": len(self.model.keys),
        }

    # -- persistence ------------------------------------------------------------------------

    def save(self) -> None:
        """Write keys and API keys to the state file (atomically), if there is one."""
        if self.state_file is None:
            return
        data = {"format": 1, "iam": self.iam.to_json(), "keys": self.model.to_json()}
        temporary = f"{self.state_file}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.state_file)
