"""Each tenant's root key: the local root key, or the Key Protect root key it is bound to.

:class:`TenantRootKeys` is the engine's ``RootKeys``.  It reads the tenant's record
on every call (a change made by the operator command takes effect at the next
request) and keeps one wrapper per binding, one IAM token manager per API key and
token URL, one HTTP connection pool per CA bundle, and one bound on the Key Protect
calls in flight for the whole server.  Stopping it closes the pooled connections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kmiptwist.interfaces import IKeyWrapper, IRemoteRootKey
from kmiptwist.keyprotect.binding import (
    KEYPROTECT,
    LOCAL,
    KeyProtectBinding,
    KeyProtectSettings,
    make_binding,
)
from kmiptwist.keyprotect.client import KeyProtectClient
from kmiptwist.keyprotect.http import https_client
from kmiptwist.keyprotect.iam import IAMTokenManager
from kmiptwist.keyprotect.transport import HTTPTransport
from kmiptwist.keyprotect.wrapper import KeyProtectWrapper
from kmiptwist.wrapping.errors import SERVICE, WrappingError

__all__ = ["TenantRootKeys"]

_log = Logger()


class TenantRootKeys(Service):
    """The ``RootKeys`` of a server whose tenants may each bind a Key Protect root key.

    ``tenancy`` gives tenant records; ``local`` wraps for tenants of kind "local";
    ``cache`` (the material cache) forgets a tenant's material when Key Protect says
    its root key is disabled or deleted.  ``http_for(ca_bundle)`` makes the HTTP
    client of a CA bundle (tests pass a ``StubTreq``); by default a
    :class:`~kmiptwist.keyprotect.http11.LeanHTTP` with persistent connections.
    """

    def __init__(
        self,
        tenancy: Any,
        local: IKeyWrapper,
        settings: KeyProtectSettings,
        reactor: IReactorTime,
        cache: Any = None,
        http_for: Callable[[str | None], Any] | None = None,
        recheck_interval: float = 1.0,
    ) -> None:
        self.tenancy = tenancy
        self.recheck_interval = recheck_interval
        self.local = local
        self.settings = settings
        self.reactor = reactor
        self.cache = cache
        self._http_for = http_for
        self.semaphore = DeferredSemaphore(settings.max_in_flight)
        self._http: dict[str | None, Any] = {}
        self._pools: list[Any] = []
        self._tokens: dict[tuple[str, str, str | None], IAMTokenManager] = {}
        self._clients: dict[tuple[Any, ...], KeyProtectClient] = {}
        # Per tenant: the binding as stored, and the wrapper made of it.
        self._wrappers: dict[str, tuple[tuple[Any, ...], KeyProtectWrapper]] = {}
        # Per tenant: the wrapper found, until when it stands without a new look, and
        # whether it is a remote root key (asked once: providedBy costs a lone Get 3%).
        self._found: dict[str, tuple[IKeyWrapper, float, bool]] = {}

    def forget(self, tenant: str) -> None:
        """Look the tenant's record up again at its next request (it was just changed)."""
        self._found.pop(tenant, None)

    async def for_tenant(self, tenant: str) -> IKeyWrapper:
        """The wrapper of ``tenant``'s root key; WrappingError when it cannot be used.

        The tenant's record is read again at most every ``recheck_interval`` seconds
        (a read per request costs more than the rest of a local Create's bookkeeping);
        the admin API's changes take effect at once through :meth:`forget`, other
        processes' within the interval.
        """
        now = self.reactor.seconds()
        found = self._found.get(tenant)
        if found is not None and now < found[1]:
            return found[0]
        wrapper = await self._look_up(tenant)
        if len(self._found) >= 10_000:
            self._found.clear()
        self._found[tenant] = (
            wrapper,
            now + self.recheck_interval,
            IRemoteRootKey.providedBy(wrapper),
        )
        return wrapper

    def usable_now(self, tenant: str) -> bool:
        """True when the tenant's wrapper was found within ``recheck_interval`` and needs
        no check of Key Protect now (a lone Get of a kept answer then does not wait)."""
        found = self._found.get(tenant)
        if found is None or self.reactor.seconds() >= found[1]:
            return False
        wrapper: Any = found[0]
        return not found[2] or bool(wrapper.usable_now())

    async def _look_up(self, tenant: str) -> IKeyWrapper:
        """The wrapper of the tenant's current record."""
        record = await self.tenancy.get_tenant(tenant)
        if record is None:
            raise WrappingError(f"tenant {tenant!r} does not exist", permanent=True, kind=SERVICE)
        kind = record.root_key_kind
        if kind == LOCAL:
            if record.root_key_id != "default":
                raise WrappingError(
                    f"tenant {tenant!r} names local root key {record.root_key_id!r}; this server "
                    "has only the local root key 'default'",
                    permanent=True,
                    kind=SERVICE,
                )
            return self.local
        if kind != KEYPROTECT:
            raise WrappingError(
                f"tenant {tenant!r} has a root key of unknown kind {kind!r}", True, SERVICE
            )
        stored = _mapping(record.root_key_binding)
        as_read = (record.root_key_id, tuple(sorted((k, str(v)) for k, v in stored.items())))
        known = self._wrappers.get(tenant)
        if known is not None and known[0] == as_read:
            return known[1]
        try:
            binding = make_binding(record.root_key_id, stored, self.settings)
        except ValueError as error:
            raise WrappingError(
                f"tenant {tenant!r} has a Key Protect binding that cannot be used: {error}",
                permanent=True,
                kind=SERVICE,
            ) from None
        try:
            wrapper = self._wrapper(tenant, binding)
        except (OSError, ValueError) as error:
            raise WrappingError(
                f"tenant {tenant!r}: cannot set up Key Protect root key {binding.root_key_id}: {error}",
                permanent=True,
                kind=SERVICE,
            ) from None
        self._wrappers[tenant] = (as_read, wrapper)
        _log.info(
            "Tenant {tenant} uses Key Protect root key {root_key_id} in instance {instance} at "
            "{endpoint} (IAM {token_url}, API key from {api_key})",
            tenant=tenant,
            root_key_id=binding.root_key_id,
            instance=binding.instance_id,
            endpoint=binding.endpoint,
            token_url=binding.token_url,
            api_key=binding.api_key.reference,
        )
        return wrapper

    def wrapper_for(self, tenant: str, binding: KeyProtectBinding) -> KeyProtectWrapper:
        """A wrapper for ``binding`` (operator tools that bind before storing)."""
        return self._wrapper(tenant, binding)

    def _wrapper(self, tenant: str, binding: KeyProtectBinding) -> KeyProtectWrapper:
        settings = self.settings
        http = self._http.get(binding.ca_bundle)
        if http is None:
            if self._http_for is not None:
                http = self._http_for(binding.ca_bundle)
            else:
                http = https_client(
                    self.reactor, binding.ca_bundle, settings.max_in_flight, settings.timeout
                )
                self._pools.append(http)
            self._http[binding.ca_bundle] = http
        token_key = (binding.token_url, binding.api_key.reference, binding.ca_bundle)
        tokens = self._tokens.get(token_key)
        if tokens is None:
            tokens = self._tokens[token_key] = IAMTokenManager(
                HTTPTransport(http, self.reactor, settings.retry_policy),
                binding.token_url,
                binding.api_key,
            )
        client_key = (binding.endpoint, binding.instance_id, binding.key_ring, token_key)
        client = self._clients.get(client_key)
        if client is None:
            client = self._clients[client_key] = KeyProtectClient(
                HTTPTransport(http, self.reactor, settings.retry_policy, self.semaphore),
                tokens,
                binding.endpoint,
                binding.instance_id,
                binding.key_ring,
            )
        return KeyProtectWrapper(
            client,
            binding.root_key_id,
            self.reactor,
            verify_on_get=settings.verify_on_get,
            verify_interval=settings.verify_interval,
            on_refused=lambda: self._forget_material(tenant),
            fallback=self.local,
        )

    def _forget_material(self, tenant: str) -> None:
        if self.cache is not None and hasattr(self.cache, "invalidate_tenant"):
            self.cache.invalidate_tenant(tenant)

    def stopService(self) -> Deferred[Any]:  # noqa: N802
        """Close the persistent HTTPS connections."""
        Service.stopService(self)
        pools, self._pools = self._pools, []
        return DeferredList([pool.close() for pool in pools])


def _mapping(value: Any) -> Mapping[str, Any]:
    """A stored binding as a mapping (older records may hold JSON text)."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.strip():
        import json

        loaded = json.loads(value)
        if isinstance(loaded, Mapping):
            return loaded
    return {}
