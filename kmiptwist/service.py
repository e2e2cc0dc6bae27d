# -*- test-case-name: tests.test_service -*-
"""The whole server as one service: data directory, store, root key, engine, listener.

:func:`make_kmip_service` wires the parts together from a :class:`Configuration`.
The service starts them in dependency order -- the store is open (and the default
tenant in place) before the listener accepts its first connection -- and stops them in
reverse: the listener closes and its connections are cut before the store closes.
"""

from __future__ import annotations

import inspect
import os
import socket
from typing import Any

from attrs import frozen
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorTCP,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    jsonFileLogObserver,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from kmiptwist import __version__, pki, ttlv
from kmiptwist.admin.assemble import make_admin
from kmiptwist.audit import AuditLog
from kmiptwist.config import Configuration
from kmiptwist.datadir import (
    DEFAULT_TENANT,
    DataDirectory,
    DataDirectoryError,
    InitReport,
    Outcome,
    connect_hint,
)
from kmiptwist.engine import Engine, ServerInformation
from kmiptwist.interfaces import ClientCertificate, Tenant
from kmiptwist.keyprotect.binding import make_binding, settings_from
from kmiptwist.keyprotect.root_keys import TenantRootKeys
from kmiptwist.processor import KMIPProcessor
from kmiptwist.protocol import ConnectionLimits, KMIPServerFactory
from kmiptwist.store.errors import StoreError
from kmiptwist.store.sqlite import SQLiteStore
from kmiptwist.tls import ServerTLSOptions, server_tls_options
from kmiptwist.workers import (
    LISTEN_BACKLOG,
    InheritedPortEndpoint,
    ReusePortEndpoint,
    WorkerPool,
    worker_audit_path,
)
from kmiptwist.wrapping.cache import MaterialCache
from kmiptwist.wrapping.local import LocalRootKeyWrapper, RootKeyError, load_root_key

__all__ = ["KMIPService", "StartupError", "make_kmip_service", "tls_server_endpoint"]

_log = Logger()


class StartupError(Exception):
    """The server cannot be built from this configuration; the message says why."""


def tls_server_endpoint(
    reactor: IReactorTCP,
    port: int,
    interface: str,
    tls_options: ServerTLSOptions,
    clock: IReactorTime | None = None,
) -> IStreamServerEndpoint:
    """A TCP endpoint (IPv4 or IPv6 by ``interface``) with TLS on top.

    Not the ``ssl:`` endpoint string: it cannot request client certificates.
    """
    endpoint: IStreamServerEndpoint
    if ":" in interface:
        endpoint = TCP6ServerEndpoint(reactor, port, backlog=LISTEN_BACKLOG, interface=interface)
    else:
        endpoint = TCP4ServerEndpoint(reactor, port, backlog=LISTEN_BACKLOG, interface=interface)
    return tls_over(endpoint, tls_options, clock)


def tls_over(
    endpoint: IStreamServerEndpoint, tls_options: ServerTLSOptions, clock: IReactorTime | None
) -> IStreamServerEndpoint:
    """``endpoint`` with TLS on top."""
    try:
        from twisted.internet.endpoints import wrapServerTLS
    except ImportError:  # Twisted < 26.4
        return _WrappedTLSEndpoint(endpoint, tls_options, clock)
    return wrapServerTLS(tls_options, endpoint, clock)


@implementer(IStreamServerEndpoint)
@frozen
class _WrappedTLSEndpoint:
    """TLS over another server endpoint, for Twisted releases without ``wrapServerTLS``."""

    wrapped: IStreamServerEndpoint
    tls_options: ServerTLSOptions
    clock: IReactorTime | None = None

    def listen(self, protocolFactory: Any) -> Deferred[Any]:
        """Listen on the wrapped endpoint with every connection wrapped in TLS."""
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self.wrapped.listen(TLSMemoryBIOFactory(self.tls_options, False, protocolFactory))


class _JSONLogService(Service):
    """Copies every log event at or above a level to a file, one JSON object a line."""

    def __init__(self, path: str, level: str) -> None:
        """Write to ``path`` (appending) the events of ``level`` and above."""
        self.path = path
        self.level = LogLevel.levelWithName(level)
        self._file: Any = None
        self._observer: ILogObserver | None = None

    def startService(self) -> None:
        """Open the file and start copying events to it."""
        Service.startService(self)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed on stop)
        self._observer = FilteringLogObserver(
            jsonFileLogObserver(self._file, recordSeparator=""),
            [LogLevelFilterPredicate(defaultLogLevel=self.level)],
        )
        globalLogPublisher.addObserver(self._observer)

    def stopService(self) -> None:
        """Stop copying events and close the file."""
        Service.stopService(self)
        if self._observer is not None:
            globalLogPublisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None


class KMIPService(MultiService):
    """The KMIP server: starts the store, then the listener; stops them in reverse.

    Its children are the store, the listener and (optionally) the JSON log; unlike a
    plain ``MultiService`` it waits for the store before it listens.
    """

    def __init__(
        self,
        reactor: Any,
        store: Any,
        listener: StreamServerEndpointService,
        factory: KMIPServerFactory,
        tls_options: ServerTLSOptions,
        report: InitReport,
        configuration: Configuration,
        extra_services: tuple[IService, ...] = (),
    ) -> None:
        """Assemble the service; nothing runs until ``startService``."""
        super().__init__()
        self.reactor = reactor
        self.tls_options = tls_options
        """The listener's TLS settings; ``tls_options.replace`` swaps the certificate live."""
        self.store = store
        self.listener = listener
        self.factory = factory
        self.report = report
        self.configuration = configuration
        for service in extra_services:
            service.setServiceParent(self)
        store.setServiceParent(self)
        listener.setServiceParent(self)
        self._extra = extra_services
        self.stop_reactor_on_failure = True
        """Stop the reactor when the start fails (so twistd exits); tests turn it off."""
        self.port: IListeningPort | None = None
        """The listening port, once the server accepts connections."""
        self._starting: Deferred[None] | None = None
        self._start_failure: Failure | None = None
        self._listening_waiters: list[Deferred[IListeningPort]] = []
        self.admin: Any = None
        """The admin API listeners (``kmiptwist.admin.listener.AdminListeners``), started
        once KMIP listens and stopped first; None: no admin API."""

    def privilegedStartService(self) -> None:
        """Nothing needs privileges: the listener binds only after the store is open."""
        Service.privilegedStartService(self)

    def startService(self) -> None:
        """Start everything in order; a failure stops the process with a clear log."""
        Service.startService(self)
        starting: Deferred[IListeningPort] = Deferred.fromCoroutine(self._start())
        self._starting = starting.addCallbacks(self._started, self._start_failed)

    def when_listening(self) -> Deferred[IListeningPort]:
        """A Deferred that fires with the listening port once the server accepts
        connections (at once if it already does), or fails if the start failed."""
        waiter: Deferred[IListeningPort] = Deferred()
        if self.port is not None:
            waiter.callback(self.port)
        elif self._start_failure is not None:
            waiter.errback(self._start_failure)
        else:
            self._listening_waiters.append(waiter)
        return waiter

    async def _start(self) -> IListeningPort:
        """Log, store, default tenant, then listen."""
        for service in self._extra:
            service.startService()
        await _resolve(self.store.startService())
        await self._ensure_default_tenant()
        self.listener.startService()
        # StreamServerEndpointService documents _waitingForPort as the Deferred of
        # the port; a bind failure has already raised above (_raiseSynchronously).
        waiting = self.listener._waitingForPort
        assert waiting is not None
        port: IListeningPort = await waiting
        if self.admin is not None:
            await self.admin.listen()
        number = getattr(port.getHost(), "port", self.configuration.port)
        _log.info(
            "kmiptwist KMIP listener on {interface} port {port}, TLS certificate SHA-256 "
            "{certificate}\n{hint}",
            interface=self.configuration.interface,
            port=number,
            certificate=pki.fingerprint(self.tls_options.certificate),
            hint=connect_hint(self.report, self.configuration.interface, number),
        )
        return port

    def _started(self, port: IListeningPort) -> None:
        """Remember the port and tell whoever waits for it."""
        self.port = port
        waiters, self._listening_waiters = self._listening_waiters, []
        for waiter in waiters:
            waiter.callback(port)

    def _start_failed(self, failure: Failure) -> None:
        """A server that cannot start should not look alive: stop the reactor."""
        _log.failure("kmiptwist could not start", failure, log_level=LogLevel.critical)
        self._start_failure = failure
        waiters, self._listening_waiters = self._listening_waiters, []
        for waiter in waiters:
            waiter.errback(failure)
        if self.stop_reactor_on_failure and IReactorCore.providedBy(self.reactor):
            # twistd starts services before the reactor runs: stop once it does.
            self.reactor.callWhenRunning(self.reactor.stop)

    async def _ensure_default_tenant(self) -> None:
        """Put the default client bundle in tenant ``default`` on a first start.

        A first start is one whose database has no tenant yet, or whose data directory
        has just made a new default client bundle.  Later starts change nothing: a
        tenant or certificate an administrator removed stays removed.
        """
        directory = self.report.directory
        certificate = pki.load_certificate(directory.client_certificate_path.getContent())
        fingerprint = pki.fingerprint(certificate)
        owner = await _resolve(self.store.tenant_for_fingerprint(fingerprint))
        new_bundle = self.report.default_client.outcome is not Outcome.REUSED
        if not new_bundle and await _resolve(self.store.list_tenants()):
            if owner is None:
                _log.info(
                    "The default client certificate {fingerprint} is not registered to any "
                    "tenant (an administrator removed it); it gets no KMIP service",
                    fingerprint=fingerprint,
                )
            return
        now = int(self.reactor.seconds())
        if await _resolve(self.store.get_tenant(DEFAULT_TENANT)) is None:
            await _resolve(self.store.add_tenant(Tenant(DEFAULT_TENANT, "local", "default", now)))
            _log.info("Created tenant {tenant}", tenant=DEFAULT_TENANT)
        if owner is None:
            await _resolve(
                self.store.add_certificate(
                    ClientCertificate(
                        fingerprint=fingerprint,
                        tenant=DEFAULT_TENANT,
                        subject=certificate.subject.rfc4514_string(),
                        issuer=certificate.issuer.rfc4514_string(),
                        not_after=int(certificate.not_valid_after_utc.timestamp()),
                        added=now,
                    )
                )
            )
            _log.info(
                "Registered the default client certificate {fingerprint} to tenant {tenant}",
                fingerprint=fingerprint,
                tenant=DEFAULT_TENANT,
            )
        elif owner != DEFAULT_TENANT:
            _log.warn(
                "The default client certificate {fingerprint} is registered to tenant "
                "{tenant}, not {default}; leaving it there",
                fingerprint=fingerprint,
                tenant=owner,
                default=DEFAULT_TENANT,
            )

    def stopService(self) -> Deferred[None]:
        """Stop listening, cut the open connections, then close the store."""
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """See :meth:`stopService`."""
        if self._starting is not None and not self._starting.called:
            # Still starting: let it finish (or fail) so nothing is left half-open.
            await self._starting
        if self.admin is not None and self.admin.running:
            await _resolve(self.admin.stopService())
        if self.listener.running:
            await _resolve(self.listener.stopService())
        self.port = None
        for connection in self.factory.connections():
            connection.cut_off("the server is stopping")
        if self.store.running:
            await _resolve(self.store.stopService())
        for service in reversed(self._extra):
            if service.running:
                # Awaited: the audit log writes its last records before the reactor stops.
                await _resolve(service.stopService())


def make_kmip_service(
    configuration: Configuration,
    reactor: Any,
    worker: int | None = None,
    listen_descriptor: tuple[int, socket.AddressFamily] | None = None,
) -> KMIPService:
    """Build the server described by ``configuration`` on ``reactor``.

    The data directory is initialised now (synchronously, before the reactor runs), so
    that a problem with it stops ``twistd`` before it daemonises.  ``worker`` and
    ``listen_descriptor`` build worker ``worker`` (1 to N-1) of ``[kmip] workers = N``,
    on the socket it inherited (:mod:`kmiptwist.workers`): no admin API, its own audit
    log, no workers of its own.
    """
    directory = DataDirectory(configuration.data_dir)
    if os.path.exists(configuration.database_path) and not os.path.exists(
        configuration.root_key_path
    ):
        # A new root key would silently orphan every key in the database.
        raise StartupError(
            f"the database {configuration.database_path} exists but its root key "
            f"{configuration.root_key_path} does not; restore the root key from backup"
        )
    try:
        report = directory.initialize(configuration.server_names)
    except (DataDirectoryError, pki.PKIError, OSError, ValueError) as error:
        raise StartupError(
            f"cannot initialise the data directory {directory.path.path}: {error}"
        ) from None

    try:
        if configuration.tls_certificate is not None and configuration.tls_private_key is not None:
            with open(configuration.tls_certificate, "rb") as certificate_file:
                chain = pki.load_certificates(certificate_file.read())
            with open(configuration.tls_private_key, "rb") as key_file:
                private_key = pki.load_private_key(key_file.read())
            certificate, extra_chain = chain[0], chain[1:]
        else:
            certificate, private_key = directory.server_credentials()
            extra_chain = []
        tls_options = server_tls_options(certificate, private_key, extra_chain)
    except (pki.PKIError, OSError, ValueError, IndexError) as error:
        raise StartupError(f"cannot load the TLS server certificate and key: {error}") from None

    root_key_path = configuration.root_key_path
    try:
        root_key = LocalRootKeyWrapper(load_root_key(root_key_path))
    except (RootKeyError, OSError, ValueError) as error:
        raise StartupError(f"cannot load the root key {root_key_path}: {error}") from None

    database = configuration.database_path
    # One process alone trusts its own cache; workers check every read (see SQLiteStore).
    store = SQLiteStore(
        database, reactor, sole_writer=worker is None and configuration.workers <= 1
    )
    try:
        # Before anything starts: a second server must not share the audit log either.
        store.lock()
    except StoreError as error:
        raise StartupError(str(error)) from None
    cache = MaterialCache(configuration.cache_max_entries, configuration.cache_ttl, reactor)
    try:
        keyprotect = settings_from(configuration)
    except ValueError as error:
        raise StartupError(str(error)) from None
    root_keys = TenantRootKeys(store, root_key, keyprotect, reactor, cache)
    engine = Engine(
        store=store,
        tenancy=store,
        root_keys=root_keys,
        cache=cache,
        clock=reactor,
        server_information=ServerInformation(server_version=__version__),
        interop_testing=configuration.interop_testing,
        # RSA key pair generation takes up to seconds: never on the reactor thread.
        run_blocking=lambda function: deferToThreadPool(reactor, reactor.getThreadPool(), function),
    )
    audit = AuditLog(
        worker_audit_path(configuration, worker or 0),
        reactor,
        reactor,
        configuration.audit_sync_interval,
    )
    processor = KMIPProcessor(
        engine,
        ttlv.Limits(
            max_length=configuration.max_message_size,
            max_depth=configuration.max_ttlv_depth,
            max_items=configuration.max_ttlv_items,
        ),
        audit=audit,
    )
    factory = KMIPServerFactory(
        processor,
        store,
        reactor,
        ConnectionLimits(
            max_message_size=configuration.max_message_size,
            max_connections=configuration.max_connections,
            max_requests_in_flight=configuration.max_requests_in_flight,
            idle_timeout=configuration.idle_timeout,
            handshake_timeout=configuration.handshake_timeout,
        ),
    )
    pool: WorkerPool | None = None
    if listen_descriptor is not None:
        descriptor, family = listen_descriptor
        endpoint = tls_over(
            InheritedPortEndpoint(reactor, descriptor, family), tls_options, reactor
        )
    elif configuration.workers > 1:
        endpoint = tls_over(
            ReusePortEndpoint(reactor, configuration.interface, configuration.port),
            tls_options,
            reactor,
        )
        pool = WorkerPool(configuration, reactor, lambda: service.when_listening())
        factory.relays.append(pool.relay)
    else:
        endpoint = tls_server_endpoint(
            reactor, configuration.port, configuration.interface, tls_options, reactor
        )
    listener = StreamServerEndpointService(endpoint, factory)
    # A port already in use fails startService (and so the start) instead of being
    # logged while the server pretends to run.
    listener._raiseSynchronously = True
    extra: tuple[IService, ...] = ()
    if configuration.log_json_file is not None:
        extra = (_JSONLogService(configuration.log_json_file, configuration.log_json_level),)
    extra += (root_keys,)
    # The audit log starts first and stops last, so it sees everything in between.
    extra = (audit, *extra)
    if pool is not None:
        # Stopped first among the extras' (reverse order): workers end before the log.
        extra += (pool,)
    service = KMIPService(
        reactor, store, listener, factory, tls_options, report, configuration, extra
    )
    if worker is not None:
        return service
    try:
        service.admin = make_admin(
            configuration,
            service,
            engine,
            audit,
            reactor,
            check_binding=lambda root_key_id, binding: make_binding(
                root_key_id, binding, keyprotect
            ).stored(),
        )
    except (OSError, pki.PKIError, ValueError) as error:
        raise StartupError(f"cannot set up the admin API: {error}") from None
    return service


async def _resolve(value: object) -> Any:
    """Await ``value`` if it is awaitable (a Deferred or coroutine), else return it."""
    if inspect.isawaitable(value):
        return await value
    return value
