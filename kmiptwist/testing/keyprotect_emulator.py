"""A faithful IBM Key Protect + IAM emulator, for tests, demos and benchmarks.

Serve :meth:`KeyProtectEmulator.resource` with twisted.web on loopback, drive it with
``treq.testing.StubTreq``, or run it as its own process with
``twistd -n kmip-keyprotect-emulator --port 18443 --api-key KEY``.  It follows
``keyprotect-api.md`` (IAM tokens, root keys and their states, wrap / unwrap / rewrap in
both URL forms, key versions after rotation, the exact error bodies) and has knobs for
latency, 429s, 5xx and outages.  The state file holds root key material: test
infrastructure only.
"""

from __future__ import annotations

from kmiptwist.testing.keyprotect.emulator import OUTAGES, KeyProtectEmulator, Knobs
from kmiptwist.testing.keyprotect.errors import IAMError, KPError, error_body
from kmiptwist.testing.keyprotect.iam import ROLES, APIKeyGrant, IAMEmulator
from kmiptwist.testing.keyprotect.keys import (
    ACTIVE,
    DEACTIVATED,
    DESTROYED,
    SUSPENDED,
    Key,
    KeyModel,
    KeyVersion,
)

__all__ = [
    "ACTIVE",
    "APIKeyGrant",
    "DEACTIVATED",
    "DESTROYED",
    "IAMEmulator",
    "IAMError",
    "KPError",
    "Key",
    "KeyModel",
    "KeyProtectEmulator",
    "KeyVersion",
    "Knobs",
    "OUTAGES",
    "ROLES",
    "SUSPENDED",
    "error_body",
]
