"""What the operations act on: store, tenants' root keys, material cache, clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from attrs import define, field
from twisted.internet.interfaces import IReactorTime

from kmiptwist.interfaces import IKeyStore, IKeyWrapper, IRemoteRootKey, ITenancy
from kmiptwist.streams import CryptoStreams

__all__ = ["Engine", "RootKeys", "SingleRootKey", "ServerInformation"]


class RootKeys(Protocol):
    """Finds the root key that wraps a tenant's material."""

    async def for_tenant(self, tenant: str) -> IKeyWrapper:
        """The wrapper bound to ``tenant``; a WrappingError when its binding cannot be used."""

    def usable_now(self, tenant: str) -> bool:
        """True when ``tenant``'s root key is known, without a look-up or a wait, to
        allow serving material it wrapped (what :meth:`for_tenant` and the wrapper's
        ``check_usable`` would conclude at once); False when finding out takes either."""


@define
class SingleRootKey:
    """Every tenant's material wrapped by one root key (the embedded default)."""

    wrapper: IKeyWrapper

    async def for_tenant(self, tenant: str) -> IKeyWrapper:
        """The one wrapper, whatever the tenant."""
        return self.wrapper

    def usable_now(self, tenant: str) -> bool:
        """True unless the one wrapper is a remote root key with a check due."""
        wrapper: Any = self.wrapper
        return not IRemoteRootKey.providedBy(wrapper) or bool(wrapper.usable_now())


@define
class ServerInformation:
    """What Query reports about the server."""

    vendor_identification: str = "kmiptwist"
    server_name: str = "kmiptwist"
    server_version: str = ""


@define
class Engine:
    """The collaborators one request needs, shared by every connection."""

    store: IKeyStore
    tenancy: ITenancy
    root_keys: RootKeys
    cache: object  # kmiptwist.wrapping.cache.MaterialCache
    clock: IReactorTime
    server_information: ServerInformation = field(factory=ServerInformation)
    max_locate_items: int = 10_000
    #: The Lease Time given to new cryptographic objects (seconds): the longest a
    #: client may use one before it renews its lease with Obtain Lease.
    lease_time: int = 3600
    #: Whether the Interop operation (conformance testing only) is offered.
    interop_testing: bool = False
    #: By-parts cryptographic operations in progress (Correlation Values).
    streams: CryptoStreams = field(factory=CryptoStreams)
    #: Runs CPU-heavy work (key pair generation) off the reactor thread; None: inline.
    run_blocking: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None

    def now(self) -> int:
        """The current time in whole seconds, from the injected clock."""
        return int(self.clock.seconds())
