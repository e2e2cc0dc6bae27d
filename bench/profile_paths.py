"""Profile kmiptwist's request path in-process, without TLS or sockets.

    python bench/profile_paths.py get [--requests 20000] [--cprofile]
    python bench/profile_paths.py create|locate|get-attributes|discover

Builds the real processor over a real SQLiteStore (in a temporary directory), fills
it with 1,000 keys, then times ``KMIPProcessor.process`` on prepared requests, one at
a time: the microseconds printed are the processor's cost per request (decode,
operation, store, unwrap, encode) with none of Twisted's transport or TLS.  With
``--cprofile`` it prints the functions that took the time.  What these profiles
showed, and what changed because of them, is in ``bench/NOTES.md``.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import os
import pstats
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, os.path.dirname(BENCH))


_HZ = os.sysconf("SC_CLK_TCK")


def _thread_cpu() -> dict[int, tuple[int, int]]:
    """Clock ticks of user and system CPU used so far by each of this process's threads."""
    spent = {}
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        spent[int(name)] = (int(fields[11]), int(fields[12]))
    return spent


async def _main(reactor: object, arguments: argparse.Namespace) -> None:
    import wire
    from twisted.internet import defer

    from kmiptwist.engine import Engine, SingleRootKey
    from kmiptwist.interfaces import ClientCertificate, Tenant
    from kmiptwist.processor import KMIPProcessor, Peer
    from kmiptwist.store.sqlite import SQLiteStore
    from kmiptwist.testing.messages import read_response
    from kmiptwist.vocabulary.tags import Tag
    from kmiptwist.wrapping.cache import MaterialCache
    from kmiptwist.wrapping.local import LocalRootKeyWrapper

    directory = tempfile.mkdtemp(prefix="kmiptwist-profile-")
    store = SQLiteStore(
        os.path.join(directory, "store.sqlite3"),
        reactor,  # type: ignore[arg-type]
        object_cache_size=0 if arguments.no_object_cache else 10_000,
        sole_writer=True,  # as a server of one process (the default)
    )
    store.startService()
    await store.add_tenant(Tenant("default", "local", "default", 0))
    await store.add_certificate(ClientCertificate("ab" * 32, "default", "CN=x", "CN=x", 0, 0))
    engine = Engine(
        store=store,
        tenancy=store,
        root_keys=SingleRootKey(LocalRootKeyWrapper(os.urandom(32))),
        cache=MaterialCache(10_000, 300, reactor),  # type: ignore[arg-type]
        clock=reactor,  # type: ignore[arg-type]
    )
    audit = None
    if arguments.audit:
        from kmiptwist.audit import AuditLog

        audit = AuditLog(
            os.path.join(directory, "audit.log"),
            reactor,  # type: ignore[arg-type]
            reactor,  # type: ignore[arg-type]
            arguments.audit_sync_interval,
        )
        audit.startService()
    processor = KMIPProcessor(engine, audit=audit)
    peer = Peer("profile", "ab" * 32, "default")

    async def call(data: bytes) -> bytes:
        return await defer.Deferred.fromCoroutine(processor.process(data, peer))

    uids = []
    for _ in range(arguments.keys):
        reply = await call(wire.create_request())
        uids.append(read_response(reply).items[0].get(Tag.UNIQUE_IDENTIFIER))
    templates = wire.vcenter_templates()
    if arguments.path == "get":
        requests = [wire.get_request(uid) for uid in uids]
    elif arguments.path == "create":
        requests = [wire.create_request()]
    elif arguments.path == "locate":
        requests = [wire.locate_by_name("no-such-name")]
    elif arguments.path == "get-attributes":
        requests = [templates["state"].render(uid) for uid in uids]
    else:
        requests = [wire.discover_versions()]
    for data in requests:
        reply = await call(data)
        assert wire.all_succeeded(reply, 1), read_response(reply)
    if arguments.tune_collector:
        from kmiptwist import collector

        collector.tune()
    if arguments.garbage:
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
    profiler = cProfile.Profile() if arguments.cprofile else None
    threads = _thread_cpu()
    count = arguments.requests
    size = len(requests)
    started = time.perf_counter()
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    if arguments.path == "create":
        # Concurrent, as clients send them: the store commits them in groups.
        for first in range(0, count, 256):
            await defer.gatherResults(
                [
                    defer.Deferred.fromCoroutine(processor.process(requests[0], peer))
                    for _ in range(min(256, count - first))
                ]
            )
    elif arguments.through_protocol:
        # The connection's protocol over a transport that keeps what it is given: the
        # framing, ordering and timers a request passes through, without TLS or sockets.
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from kmiptwist.protocol import KMIPServerFactory, KMIPServerProtocol

        factory = KMIPServerFactory(processor, store, reactor)  # type: ignore[arg-type]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert isinstance(protocol, KMIPServerProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.peer, protocol._handshake_done = peer, True
        protocol.setTimeout(factory.limits.idle_timeout)
        for index in range(count):
            protocol.dataReceived(requests[index % size])
            if index % 64 == 0:
                if not transport.value():
                    raise SystemExit("--through-protocol: the path does not answer at once")
                transport.clear()
        protocol.connectionLost()
    else:
        for index in range(count):
            await call(requests[index % size])
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    print(
        f"{arguments.path}: {count} requests, {elapsed / count * 1e6:.1f} µs each "
        f"({cpu / count * 1e6:.1f} µs CPU)"
    )
    for tid, (user, system) in sorted(_thread_cpu().items()):
        user -= threads.get(tid, (0, 0))[0]
        system -= threads.get(tid, (0, 0))[1]
        if user or system:
            role = "reactor" if tid == os.getpid() else "other"
            print(
                f"  thread {tid} ({role}): {user / _HZ / count * 1e6:.1f} µs user, "
                f"{system / _HZ / count * 1e6:.1f} µs system CPU each"
            )
    if arguments.garbage:
        gc.collect()
        kinds = collections.Counter(type(thing).__qualname__ for thing in gc.garbage)
        gc.set_debug(0)
        gc.garbage.clear()
        print(f"cyclic garbage per request: {sum(kinds.values()) / count:.1f} objects")
        for kind, number in kinds.most_common(12):
            print(f"  {number / count:8.2f} {kind}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats(arguments.sort).print_stats(arguments.top)
    if audit is not None:
        await audit.stopService()
    await store.stopService()


def main() -> None:
    """Parse the command line and profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", choices=("get", "create", "locate", "get-attributes", "discover"), default="get"
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1000, help="keys created first")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument(
        "--no-object-cache", action="store_true", help="decode every object on every read"
    )
    parser.add_argument("--audit", action="store_true", help="write the audit log too")
    parser.add_argument("--audit-sync-interval", type=float, default=0.01)
    parser.add_argument("--tune-collector", action="store_true", help="as a server does")
    parser.add_argument(
        "--through-protocol",
        action="store_true",
        help="feed the requests to a connection's protocol (paths answered at once only)",
    )
    parser.add_argument(
        "--garbage", action="store_true", help="count the reference cycles the requests leave"
    )
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=30)
    arguments = parser.parse_args()
    from twisted.internet import defer, task

    task.react(lambda reactor: defer.Deferred.fromCoroutine(_main(reactor, arguments)))


if __name__ == "__main__":
    main()
