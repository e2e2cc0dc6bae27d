# -*- test-case-name: tests.test_workers -*-
"""Several worker processes serving one KMIP port: ``[kmip] workers = N``.

One Python process serves one core.  With ``workers = N`` the ``twistd`` process is
worker 0 and starts workers 1 to N-1 once it listens; every worker has its own
listening socket on the same port (``SO_REUSEPORT``: the kernel spreads new
connections over them), its own reactor, its own connection to the shared sqlite
database (one writer thread each; sqlite's lock and ``busy_timeout`` order their
commits) and its own caches.

The caches stay correct across workers because every request reads the object's row
(its revision) and the tenant's record is checked against sqlite's ``data_version``:
a Destroy or Revoke committed by one worker is seen by the next request in every
other.  An administrator's disconnects (a certificate, tenant or CA removed) are
relayed from worker 0, which runs the admin API, to the others over their standard
input.  Each worker writes its own audit log (``<audit file>.worker<n>``), since one
hash chain cannot have several writers.  A worker that dies is started again.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from kmiptwist.config import Configuration

__all__ = [
    "LISTEN_BACKLOG",
    "InheritedPortEndpoint",
    "ReusePortEndpoint",
    "WorkerPool",
    "configuration_from_json",
    "configuration_to_json",
    "main",
    "reuse_port_socket",
]

_log = Logger()

LISTEN_BACKLOG = 1024
"""Connections the kernel queues before they are accepted.  When a vSAN cluster
reboots, every host connects at once; past the backlog a SYN is dropped and retried
a second later."""

_FIRST_RESTART_DELAY = 1.0
_LONGEST_RESTART_DELAY = 30.0
_STOP_TIMEOUT = 20.0


def _family(interface: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in interface else socket.AF_INET


def reuse_port_socket(interface: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A listening, non-blocking ``SO_REUSEPORT`` socket on ``interface``:``port``."""
    listener = socket.socket(_family(interface), socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((interface, port))
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


def _unused_port(interface: str, port: int) -> int:
    """Check that nothing listens on ``port`` (another kmiptwist included: a socket
    without SO_REUSEPORT cannot join its group); return the port (the one the kernel
    picked for 0)."""
    probe = socket.socket(_family(interface), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((interface, port))
        bound: int = probe.getsockname()[1]
        return bound
    finally:
        probe.close()


@implementer(IStreamServerEndpoint)
@attrs.define
class ReusePortEndpoint:
    """Listens on a new ``SO_REUSEPORT`` socket of ``port``, after checking that no other
    process listens there (worker 0; the other workers join its port)."""

    reactor: Any
    interface: str
    port: int
    backlog: int = LISTEN_BACKLOG

    def listen(self, protocolFactory: Any) -> Deferred[IListeningPort]:  # noqa: N803
        """Bind, listen and hand the socket to the reactor."""
        try:
            port = _unused_port(self.interface, self.port)
            listener = reuse_port_socket(self.interface, port, self.backlog)
        except OSError as error:
            return fail(CannotListenError(self.interface, self.port, error))
        try:
            listening: IListeningPort = self.reactor.adoptStreamPort(
                listener.fileno(), listener.family, protocolFactory
            )
        finally:
            listener.close()  # the reactor holds its own duplicate
        return succeed(listening)


@implementer(IStreamServerEndpoint)
@attrs.define
class InheritedPortEndpoint:
    """Listens on a socket file descriptor this process inherited (workers 1 to N-1)."""

    reactor: Any
    descriptor: int
    family: socket.AddressFamily = socket.AF_INET

    def listen(self, protocolFactory: Any) -> Deferred[IListeningPort]:  # noqa: N803
        """Hand the inherited socket to the reactor."""
        try:
            listening: IListeningPort = self.reactor.adoptStreamPort(
                self.descriptor, self.family, protocolFactory
            )
        except OSError as error:
            return fail(CannotListenError("inherited", self.descriptor, error))
        os.close(self.descriptor)
        return succeed(listening)


def configuration_to_json(configuration: Configuration) -> str:
    """The configuration as one line of JSON, for a worker process."""
    return json.dumps(attrs.asdict(configuration))


def configuration_from_json(text: str) -> Configuration:
    """The configuration :func:`configuration_to_json` wrote."""
    values = json.loads(text)
    for field in attrs.fields(Configuration):
        if isinstance(field.default, tuple) and isinstance(values.get(field.name), list):
            values[field.name] = tuple(values[field.name])
    return Configuration(**values)


def worker_audit_path(configuration: Configuration, worker: int) -> str:
    """The audit log of worker ``worker`` (worker 0 keeps the configured one)."""
    return configuration.audit_path if worker == 0 else f"{configuration.audit_path}.worker{worker}"


class _WorkerProcess(ProcessProtocol):
    """One worker child: relays its log events and tells the pool when it ends."""

    def __init__(self, pool: WorkerPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.ended: Deferred[None] = Deferred()
        self._out = b""
        self._err = b""

    def outReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """The worker's log, one JSON event a line: publish each as ours."""
        self._out += data
        *lines, self._out = self._out.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                event = eventFromJSON(line.decode("utf-8"))
            except ValueError:
                _log.warn("worker {worker}: {line}", worker=self.number, line=line)
                continue
            event["log_system"] = f"worker {self.number}"
            event["worker"] = self.number
            globalLogPublisher(event)

    def errReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """What the worker wrote before its log started (a traceback)."""
        self._err += data
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            if line.strip():
                _log.error(
                    "worker {worker}: {line}",
                    worker=self.number,
                    line=line.decode("utf-8", "replace"),
                )

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        """Tell the pool; it restarts the worker unless it is stopping."""
        self.ended.callback(None)
        self.pool.ended(self, reason)

    def send(self, command: dict[str, str]) -> None:
        """Write one command line to the worker's standard input."""
        if self.transport is not None:
            self.transport.write(json.dumps(command).encode("utf-8") + b"\n")


class WorkerPool(Service):
    """Starts workers 1 to N-1 once worker 0 listens; restarts one that dies.

    ``listening`` fires with worker 0's port (``KMIPService.when_listening``); the
    workers join that port.  ``relay`` is registered with worker 0's connection
    factory, so that an administrator's disconnects reach every worker.
    """

    def __init__(
        self,
        configuration: Configuration,
        reactor: Any,
        listening: Callable[[], Deferred[IListeningPort]],
        python: str = sys.executable,
    ) -> None:
        self.configuration = configuration
        self.reactor = reactor
        self._listening = listening
        self.python = python
        self.workers: dict[int, _WorkerProcess] = {}
        self._port: int | None = None
        self._delays: dict[int, float] = {}
        self._pending: dict[int, Any] = {}

    @property
    def count(self) -> int:
        """How many workers in all, worker 0 included."""
        return self.configuration.workers

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        """Start the workers as soon as worker 0 listens."""
        super().startService()
        waiting = self._listening()
        waiting.addCallback(self._start_all)
        waiting.addErrback(lambda failure: None)  # worker 0's failure is logged by it

    def _start_all(self, port: IListeningPort) -> None:
        self._port = port.getHost().port  # type: ignore[attr-defined]
        for number in range(1, self.count):
            self._start(number)

    def _start(self, number: int) -> None:
        """Start worker ``number`` on a new socket of the port."""
        self._pending.pop(number, None)
        if not self.running or self._port is None:
            return
        try:
            listener = reuse_port_socket(self.configuration.interface, self._port)
        except OSError as error:
            _log.error(
                "Cannot open a socket on port {port} for worker {worker}: {error}",
                port=self._port,
                worker=number,
                error=str(error),
            )
            self._later(number)
            return
        worker = _WorkerProcess(self, number)
        environment = dict(os.environ)
        paths = [entry for entry in sys.path if entry]
        environment["PYTHONPATH"] = os.pathsep.join(paths)
        try:
            self.reactor.spawnProcess(
                worker,
                self.python,
                [
                    self.python,
                    "-m",
                    "kmiptwist.workers",
                    "--worker",
                    str(number),
                    "--descriptor",
                    "3",
                    "--family",
                    str(int(listener.family)),
                ],
                env=environment,
                childFDs={0: "w", 1: "r", 2: "r", 3: listener.fileno()},
            )
        finally:
            listener.close()
        self.workers[number] = worker
        worker.transport.write(  # type: ignore[union-attr]
            configuration_to_json(self.configuration).encode("utf-8") + b"\n"
        )
        _log.info(
            "Started KMIP worker {worker} (pid {pid}) on port {port}",
            worker=number,
            pid=worker.transport.pid,  # type: ignore[union-attr]
            port=self._port,
        )

    def ended(self, worker: _WorkerProcess, reason: Failure) -> None:
        """A worker process ended: start it again unless the pool is stopping."""
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if not self.running:
            return
        _log.error(
            "KMIP worker {worker} ended unexpectedly ({reason}); starting it again",
            worker=worker.number,
            reason=reason.getErrorMessage(),
        )
        self._later(worker.number)

    def _later(self, number: int) -> None:
        delay = self._delays.get(number, _FIRST_RESTART_DELAY / 2) * 2
        self._delays[number] = min(delay, _LONGEST_RESTART_DELAY)
        self._pending[number] = self.reactor.callLater(self._delays[number], self._start, number)

    def relay(self, kind: str, value: str) -> None:
        """Tell every worker to cut the connections of ``kind`` (fingerprint, tenant,
        trusted_ca) ``value``."""
        for worker in self.workers.values():
            worker.send({"disconnect": kind, "value": value})

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - Twisted's name
        """Stop every worker (SIGTERM; SIGKILL after 20 seconds) and wait for them."""
        super().stopService()
        for pending in self._pending.values():
            if pending.active():
                pending.cancel()
        self._pending.clear()
        waits = []
        for worker in list(self.workers.values()):
            waits.append(worker.ended)
            try:
                worker.transport.signalProcess("TERM")  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - already gone
                continue
            kill = self.reactor.callLater(_STOP_TIMEOUT, _kill, worker)
            worker.ended.addBoth(_cancel, kill)
        return DeferredList(waits)


def _cancel(result: object, call: Any) -> object:
    """Cancel ``call`` if it is still due; pass ``result`` on."""
    if call.active():
        call.cancel()
    return result


def _kill(worker: _WorkerProcess) -> None:
    try:
        worker.transport.signalProcess("KILL")  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - already gone
        pass


# -- the worker process ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """A worker process: ``python -m kmiptwist.workers --worker N --descriptor 3``.

    Reads its configuration (one JSON line) from standard input, serves KMIP on the
    inherited socket until SIGTERM, logs JSON events to standard output, and obeys
    disconnect commands arriving on standard input.
    """
    import argparse

    from twisted.internet import reactor, stdio
    from twisted.logger import globalLogBeginner, jsonFileLogObserver
    from twisted.protocols.basic import LineOnlyReceiver

    from kmiptwist import collector
    from kmiptwist.service import StartupError, make_kmip_service

    parser = argparse.ArgumentParser(description="a kmiptwist KMIP worker process")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--descriptor", type=int, required=True)
    parser.add_argument("--family", type=int, default=int(socket.AF_INET))
    arguments = parser.parse_args(argv)
    line = sys.stdin.buffer.readline()
    configuration = configuration_from_json(line.decode("utf-8"))
    globalLogBeginner.beginLoggingTo(
        [jsonFileLogObserver(sys.stdout, recordSeparator="")], redirectStandardIO=False
    )
    try:
        service = make_kmip_service(
            configuration,
            reactor,
            worker=arguments.worker,
            listen_descriptor=(arguments.descriptor, socket.AddressFamily(arguments.family)),
        )
    except StartupError as error:
        _log.critical(
            "worker {worker} cannot start: {error}", worker=arguments.worker, error=str(error)
        )
        return 1
    service.when_listening().addCallbacks(lambda _: collector.tune(), lambda _: None)
    factory = service.factory

    class Commands(LineOnlyReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:  # noqa: N802 - Twisted's name
            try:
                command = json.loads(line)
                kind, value = command["disconnect"], command["value"]
            except (ValueError, KeyError, TypeError):
                _log.warn("worker ignored a malformed command: {line!r}", line=line)
                return
            cut = {
                "fingerprint": factory.disconnect_fingerprint,
                "tenant": factory.disconnect_tenant,
                "trusted_ca": factory.disconnect_trusted_ca,
            }.get(kind)
            if cut is not None:
                cut(value)

        def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
            # Worker 0 went away without stopping us: stop rather than serve alone.
            if reactor.running:  # type: ignore[attr-defined]
                reactor.stop()  # type: ignore[attr-defined]

    # Commands come on standard input; standard output carries the log.
    stdio.StandardIO(  # type: ignore[call-arg]
        Commands(), stdin=0, stdout=os.open(os.devnull, os.O_WRONLY)
    )
    failed: list[Failure] = []
    service.startService()
    service.when_listening().addErrback(failed.append)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
