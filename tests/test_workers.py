"""Several worker processes on one KMIP port (``[kmip] workers = N``).

The end-to-end tests start the real ``twistd -n kmip`` with two workers and find, from
/proc, which process serves each client connection, so that a change made through one
worker can be checked through the other.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import tempfile
import time

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.config import Configuration, load_configuration
from kmiptwist.protocol import KMIPServerFactory
from kmiptwist.testing.client import RawKMIPClient, client_context
from kmiptwist.testing.messages import read_response, request
from kmiptwist.testing.server import RunningServer
from kmiptwist.vocabulary.enums import (
    CryptographicAlgorithm,
    ObjectType,
    Operation,
    RevocationReasonCode,
    State,
)
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.workers import (
    ReusePortEndpoint,
    configuration_from_json,
    configuration_to_json,
    worker_audit_path,
)

V11 = (1, 1)


class WorkerSettingTests(SynchronousTestCase):
    """How the setting and its parts behave on their own."""

    def test_setting(self) -> None:
        """``[kmip] workers`` (and ``--workers``) takes 1 to 64 processes; 1 by default."""
        self.assertEqual(Configuration().workers, 1)
        self.assertEqual(load_configuration(None, {"workers": "4"}).workers, 4)
        self.assertRaises(ValueError, load_configuration, None, {"workers": "0"})

    def test_configuration_travels_to_workers(self) -> None:
        """A worker process gets exactly the configuration worker 0 runs with."""
        configuration = Configuration(
            data_dir="/srv/kmip", port=15696, workers=3, server_names=("kms.example", "10.0.0.5")
        )
        self.assertEqual(
            configuration_from_json(configuration_to_json(configuration)), configuration
        )

    def test_each_worker_has_its_own_audit_log(self) -> None:
        """One hash chain has one writer: worker 0 keeps the configured audit log, the
        others write beside it."""
        configuration = Configuration(audit_file="/var/log/kmip/audit.log")
        self.assertEqual(worker_audit_path(configuration, 0), "/var/log/kmip/audit.log")
        self.assertEqual(worker_audit_path(configuration, 2), "/var/log/kmip/audit.log.worker2")

    def test_disconnects_are_relayed(self) -> None:
        """An administrator's disconnect in worker 0 is passed on to the other workers."""
        factory = KMIPServerFactory(None, None, MemoryReactor())  # type: ignore[arg-type]
        relayed: list[tuple[str, str]] = []
        factory.relays.append(lambda kind, value: relayed.append((kind, value)))
        factory.disconnect_fingerprint("AB:CD")
        factory.disconnect_tenant("finance")
        factory.disconnect_trusted_ca("EF")
        self.assertEqual(
            relayed, [("fingerprint", "abcd"), ("tenant", "finance"), ("trusted_ca", "ef")]
        )

    def test_port_in_use_is_refused(self) -> None:
        """Workers never silently share a port another process listens on."""
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            endpoint = ReusePortEndpoint(MemoryReactor(), "127.0.0.1", other.getsockname()[1])
            self.failureResultOf(endpoint.listen(Factory()), CannotListenError)


def _owner(client: RawKMIPClient, server_port: int, pids: list[int]) -> int | None:
    """The pid of the worker serving ``client``'s connection (from /proc)."""
    local_port = client.socket.getsockname()[1]
    inode = None
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{server_port:04X}") and fields[2].endswith(
                f":{local_port:04X}"
            ):
                inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            for descriptor in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{descriptor}") == f"socket:[{inode}]":
                    return pid
        except OSError:
            continue
    return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == pid:
                found.append(int(entry))
    return found


def _create() -> bytes:
    attributes = [
        ttlv.structure(
            Tag.ATTRIBUTE,
            [
                ttlv.text_string(Tag.ATTRIBUTE_NAME, "Cryptographic Algorithm"),
                ttlv.enumeration(Tag.ATTRIBUTE_VALUE, CryptographicAlgorithm.AES),
            ],
        ),
        ttlv.structure(
            Tag.ATTRIBUTE,
            [
                ttlv.text_string(Tag.ATTRIBUTE_NAME, "Cryptographic Length"),
                ttlv.integer(Tag.ATTRIBUTE_VALUE, 256),
            ],
        ),
    ]
    payload = [
        ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
        ttlv.structure(Tag.TEMPLATE_ATTRIBUTE, attributes),
    ]
    return request(V11, [(Operation.CREATE, payload, None)])


def _on(uid: str, operation: int, *extra: ttlv.Item) -> bytes:
    return request(V11, [(operation, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid), *extra], None)])


def _state(uid: str) -> bytes:
    return _on(uid, Operation.GET_ATTRIBUTES, ttlv.text_string(Tag.ATTRIBUTE_NAME, "State"))


class TwoWorkersTests(SynchronousTestCase):
    """What clients see of a server running two worker processes."""

    server: RunningServer | None = None

    @classmethod
    def _shared_server(cls) -> RunningServer:
        if cls.server is None:
            workdir = tempfile.mkdtemp(prefix="workers-", dir=os.getcwd())
            config = os.path.join(workdir, "kmiptwist.conf")
            with open(config, "w", encoding="utf-8") as out:
                out.write("[kmip]\nworkers = 2\n")
            cls.server = RunningServer.start(os.path.join(workdir, "data"), ["--config", config])
            atexit.register(cls.server.stop)
        return cls.server

    def setUp(self) -> None:
        self.running = self._shared_server()
        self.assertTrue(self.running.alive(), self.running.log())
        cert, key, ca = self.running.client_bundle
        self.context = client_context(cert, key, ca)
        deadline = time.monotonic() + 30
        while len(self.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(self.pids()), 2, self.running.log())

    def pids(self) -> list[int]:
        return [self.running.process.pid, *_children(self.running.process.pid)]

    def clients_by_worker(self) -> dict[int, RawKMIPClient]:
        """One connected client served by each worker (new connections until both)."""
        found: dict[int, RawKMIPClient] = {}
        pids = self.pids()
        for _ in range(64):
            client = RawKMIPClient("127.0.0.1", self.running.port, self.context)
            self.addCleanup(client.close)
            # The first request proves the connection is up (and identified).
            self.assertTrue(
                read_response(client.call(request(V11, [(Operation.QUERY, [], None)]))).items[0].ok
            )
            owner = _owner(client, self.running.port, pids)
            if owner is not None and owner not in found:
                found[owner] = client
            if len(found) == 2:
                return found
        self.fail(f"64 connections all went to the same worker: {found}")

    def call(self, client: RawKMIPClient, data: bytes) -> ttlv.Item | None:
        (item,) = read_response(client.call(data)).items
        return item

    def test_both_workers_serve(self) -> None:
        """Connections to the port are served by both processes."""
        self.assertEqual(len(self.clients_by_worker()), 2)

    def test_destroy_in_one_worker_is_seen_by_the_other_at_once(self) -> None:
        """A key destroyed through one worker cannot be fetched through the other, even
        right after that worker served it (its caches hold the object and material)."""
        first, second = self.clients_by_worker().values()
        created = self.call(first, _create())
        uid = created.get(Tag.UNIQUE_IDENTIFIER)
        self.assertTrue(self.call(second, _on(uid, Operation.GET)).ok)
        self.assertTrue(self.call(first, _on(uid, Operation.DESTROY)).ok)
        refused = self.call(second, _on(uid, Operation.GET))
        self.assertFalse(refused.ok)
        state = self.call(second, _state(uid))
        attribute = state.payload.find(Tag.ATTRIBUTE)
        self.assertEqual(attribute.get(Tag.ATTRIBUTE_VALUE), State.DESTROYED)

    def test_revoke_in_one_worker_is_seen_by_the_other_at_once(self) -> None:
        """A key revoked (compromised) through one worker is Compromised through the other
        at its next request."""
        first, second = self.clients_by_worker().values()
        uid = self.call(second, _create()).get(Tag.UNIQUE_IDENTIFIER)
        self.assertEqual(
            self.call(second, _state(uid)).payload.find(Tag.ATTRIBUTE).get(Tag.ATTRIBUTE_VALUE),
            State.PRE_ACTIVE,
        )
        reason = ttlv.structure(
            Tag.REVOCATION_REASON,
            [ttlv.enumeration(Tag.REVOCATION_REASON_CODE, RevocationReasonCode.KEY_COMPROMISE)],
        )
        self.assertTrue(self.call(first, _on(uid, Operation.REVOKE, reason)).ok)
        self.assertEqual(
            self.call(second, _state(uid)).payload.find(Tag.ATTRIBUTE).get(Tag.ATTRIBUTE_VALUE),
            State.COMPROMISED,
        )

    def test_worker_that_dies_is_started_again(self) -> None:
        """Should a worker process die, worker 0 starts a new one and clients are served
        by two processes again."""
        (worker,) = _children(self.running.process.pid)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = _children(self.running.process.pid)
            if children and children != [worker]:
                break
            time.sleep(0.05)
        self.assertNotEqual(_children(self.running.process.pid), [worker])
        self.assertEqual(len(self.clients_by_worker()), 2)
        self.assertIn("ended unexpectedly", self.running.log())
