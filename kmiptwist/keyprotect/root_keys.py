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

from kmiptwist.interfaces import IKeyWrapper
from kmiptwist.keyprotect.binding import (
    KEYPROTECT,
    LOCAL,
    KeyProtectBinding,
    KeyProtectSettings,
    make_binding,
)
from kmiptwist.keyprotect.client import KeyProtectClient
from kmiptwist.keyprotect.iam import IAMTokenManager
from kmiptwist.keyprotect.transport import HTTPTransport
from kmiptwist.keyprotect.wrapper import KeyProtectWrapper
from kmiptwist.wrapping.errors import SERVICE, WrappingError

__all__ = ["TenantRootKeys", "https_client"]

_log = Logger()


def _trust_root(ca_bundle: str) -> Any:
    """The twisted trust root of every certificate in the PEM file ``ca_bundle``."""
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    from kmiptwist import pki

    with open(ca_bundle, "rb") as handle:
        certificates = pki.load_certificates(handle.read())
    return trustRootFromCertificates(
        [Certificate.loadPEM(pki.certificate_pem(certificate)) for certificate in certificates]
    )


def https_client(
    reactor: Any, ca_bundle: str | None, max_connections: int, connect_timeout: float
) -> tuple[Any, Any]:
    """A treq client with its own persistent connection pool, verifying TLS against
    ``ca_bundle`` (None: the system's CAs); returns (client, pool)."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max_connections
    pool.retryAutomatically = False
    policy = BrowserLikePolicyForHTTPS(None if ca_bundle is None else _trust_root(ca_bundle))
    agent = Agent(reactor, contextFactory=policy, pool=pool, connectTimeout=connect_timeout)
    return HTTPClient(agent), pool


class TenantRootKeys(Service):
    """The ``RootKeys`` of a server whose tenants may each bind a Key Protect root key.

    ``tenancy`` gives tenant records; ``local`` wraps for tenants of kind "local";
    ``cache`` (the material cache) forgets a tenant's material when Key Protect says
    its root key is disabled or deleted.  ``http_for(ca_bundle)`` makes the HTTP
    client of a CA bundle (tests pass a ``StubTreq``); by default a treq client with
    a persistent pool on ``reactor``.
    """

    def __init__(
        self,
        tenancy: Any,
        local: IKeyWrapper,
        settings: KeyProtectSettings,
        reactor: IReactorTime,
        cache: Any = None,
        http_for: Callable[[str | None], Any] | None = None,
    ) -> None:
        self.tenancy = tenancy
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
        self._wrappers: dict[str, tuple[KeyProtectBinding, KeyProtectWrapper]] = {}

    async def for_tenant(self, tenant: str) -> IKeyWrapper:
        """The wrapper of ``tenant``'s root key; WrappingError when it cannot be used."""
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
        try:
            binding = make_binding(
                record.root_key_id, _mapping(record.root_key_binding), self.settings
            )
        except ValueError as error:
            raise WrappingError(
                f"tenant {tenant!r} has a Key Protect binding that cannot be used: {error}",
                permanent=True,
                kind=SERVICE,
            ) from None
        known = self._wrappers.get(tenant)
        if known is not None and known[0] == binding:
            return known[1]
        try:
            wrapper = self._wrapper(tenant, binding)
        except (OSError, ValueError) as error:
            raise WrappingError(
                f"tenant {tenant!r}: cannot set up Key Protect root key {binding.root_key_id}: {error}",
                permanent=True,
                kind=SERVICE,
            ) from None
        self._wrappers[tenant] = (binding, wrapper)
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
                http, pool = https_client(
                    self.reactor, binding.ca_bundle, settings.max_in_flight, settings.timeout
                )
                self._pools.append(pool)
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
        """Close the pooled HTTPS connections."""
        Service.stopService(self)
        pools, self._pools = self._pools, []
        return DeferredList([pool.closeCachedConnections() for pool in pools])


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
