"""The servers under test, started on loopback with the same certificates.

* ``kmiptwist``: the real ``twistd -n kmip`` (optionally with ``[kmip] workers``).
* ``pykmip``: PyKMIP's own ``pykmip-server`` with sqlite, TLS 1.2 and client
  certificates required (its ``TLS1.2`` auth suite; the benchmark's cipher suite is in
  its list), logging at WARNING so that its log file is not what is measured.
* ``canned``: a minimal Twisted TLS server (``canned_server.py``) answering every
  request with a prepared valid reply: the limit of a Python server on this machine.

Each one is measured from ``/proc``: CPU time (utime + stime of the process and its
children, e.g. PyKMIP's multiprocessing manager) and peak RSS (VmHWM, reset between
scenarios through ``clear_refs``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from cryptography.x509.oid import NameOID

from kmiptwist.datadir import DataDirectory
from kmiptwist.pki import load_certificate
from kmiptwist.testing.server import RunningServer, free_port, repository_root, wait_for_port

__all__ = [
    "CLOCK_TICKS",
    "Server",
    "KmiptwistServer",
    "PyKMIPServer",
    "CannedServer",
    "ProcessTree",
    "make_pki",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BENCH = os.path.dirname(os.path.abspath(__file__))


def make_pki(directory: str) -> DataDirectory:
    """A kmiptwist data directory whose CA, server certificate and client bundle every
    server under test uses (each kmiptwist run copies it without the database)."""
    data = DataDirectory(directory)
    data.initialize(("localhost", "127.0.0.1"))
    return data


@dataclass
class ProcessTree:
    """CPU and memory of a server process and its descendants, read from /proc."""

    pid: int

    def pids(self) -> list[int]:
        """The process and every live descendant."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
        found, queue = [], [self.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            queue.extend(children.get(pid, ()))
        return found

    def cpu_seconds(self) -> float:
        """utime + stime of the whole tree, in seconds."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS

    def _status(self, key: bytes) -> int:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status", "rb") as status:
                    for line in status:
                        if line.startswith(key):
                            total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def peak_rss(self) -> int:
        """Sum of VmHWM (bytes) over the tree since the last :meth:`reset_peak`."""
        return self._status(b"VmHWM:")

    def rss(self) -> int:
        """Sum of VmRSS (bytes) over the tree now."""
        return self._status(b"VmRSS:")

    def reset_peak(self) -> None:
        """Reset VmHWM to the current RSS (Linux clear_refs 5)."""
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as clear:
                    clear.write("5")
            except OSError:
                pass


def _listening(port: int, process: subprocess.Popen[bytes], timeout: float, log: str) -> None:
    """Wait until something accepts TCP connections on ``port``."""
    why_not = wait_for_port(port, process, timeout)
    if why_not is not None:
        raise RuntimeError(f"server {why_not}; log {log}")


@dataclass
class Server:
    """A server under test: how to start and stop it, and where it stores objects."""

    name: str
    workdir: str
    pki: DataDirectory
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    notes: list[str] = field(default_factory=list)

    kind = "server"

    @property
    def tree(self) -> ProcessTree:
        """The running process tree."""
        assert self.process is not None
        return ProcessTree(self.process.pid)

    def start(self) -> None:
        """Start the server; it listens on 127.0.0.1:``port`` when this returns."""
        raise NotImplementedError

    def exited(self) -> bool:
        """Whether the server was started and its process has since ended."""
        return self.process is not None and self.process.poll() is not None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            for pid in reversed(ProcessTree(process.pid).pids()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port, keeping the store."""
        self.stop()
        self.start()

    def populate(self, prefix: str, count: int, start: int = 0) -> list[str]:
        """Add ``count`` AES-256 keys named ``prefix`` + a number from ``start``; return
        their identifiers."""
        raise NotImplementedError

    def object_count(self) -> int:
        """How many objects the store holds."""
        raise NotImplementedError

    def _populate(self, arguments: list[str], processes: int = 1) -> list[str]:
        """Run populate.py (in ``processes`` processes, each a share of the numbers)."""
        count = int(arguments[arguments.index("--count") + 1])
        start = int(arguments[arguments.index("--start") + 1])
        if count == 0:
            return []
        shares = min(processes, max(1, count // 1000))
        running = []
        for share in range(shares):
            first = start + count * share // shares
            last = start + count * (share + 1) // shares
            numbered = list(arguments)
            numbered[numbered.index("--count") + 1] = str(last - first)
            numbered[numbered.index("--start") + 1] = str(first)
            out = os.path.join(self.workdir, f"populate-uids-{share}.json")
            command = [sys.executable, os.path.join(BENCH, "populate.py"), *numbered, "--out", out]
            running.append((subprocess.Popen(command, env=_environment()), out))
        result: list[str] = []
        for process, out in running:
            if process.wait() != 0:
                raise RuntimeError(f"populate.py failed with {process.returncode}")
            with open(out, encoding="utf-8") as uids:
                result += json.load(uids)
        return result


def _numbering(prefix: str, count: int, start: int) -> list[str]:
    return ["--prefix", prefix, "--count", str(count), "--start", str(start)]


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    root = repository_root()
    environment["PYTHONPATH"] = os.pathsep.join(
        [root] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    return environment


@dataclass
class KmiptwistServer(Server):
    """``twistd -n kmip`` on a copy of the shared data directory."""

    workers: int = 1
    running: RunningServer | None = None
    kind = "kmiptwist"

    @property
    def data_dir(self) -> str:
        return os.path.join(self.workdir, "data")

    def start(self) -> None:
        """Copy the certificates and root key (once), then start twistd."""
        if not os.path.exists(self.data_dir):
            shutil.copytree(
                self.pki.path.path,
                self.data_dir,
                ignore=shutil.ignore_patterns("*.sqlite3*"),
            )
        arguments = []
        if self.workers > 1:
            config = os.path.join(self.workdir, "kmiptwist.conf")
            with open(config, "w", encoding="utf-8") as out:
                out.write(f"[kmip]\nworkers = {self.workers}\n")
            arguments = ["--config", config]
        self.port = self.port or free_port()
        self.running = RunningServer.start(self.data_dir, arguments, port=self.port)
        self.process = self.running.process
        # RunningServer returns once the port accepts; with workers, wait for them too.
        if self.workers > 1:
            deadline = time.monotonic() + 60
            while len(self.tree.pids()) < self.workers and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)

    def populate(self, prefix: str, count: int, start: int = 0) -> list[str]:
        """Create the keys through kmiptwist's own Create, in two processes on the same
        store.  A single-process server holds its store exclusively (it trusts its own
        cache), so it is stopped meanwhile and started again on the same port."""
        running = self.process is not None and self.process.poll() is None
        if running:
            self.stop()
        try:
            return self._populate(
                ["kmiptwist", "--data-dir", self.data_dir, *_numbering(prefix, count, start)],
                processes=2,
            )
        finally:
            if running:
                self.start()

    def object_count(self) -> int:
        import sqlite3

        with sqlite3.connect(DataDirectory(self.data_dir).database_path.path) as database:
            ((count,),) = database.execute("SELECT count(*) FROM objects").fetchall()
        return int(count)


@dataclass
class PyKMIPServer(Server):
    """PyKMIP's ``pykmip-server`` with sqlite and client certificates required."""

    cipher: str = "AES128-SHA256"
    kind = "pykmip"

    @property
    def database(self) -> str:
        return os.path.join(self.workdir, "pykmip.sqlite")

    def stop(self) -> None:
        """Kill the server: its own shutdown waits ten seconds for its accept timeout."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for pid in reversed(ProcessTree(process.pid).pids()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        process.wait()

    def start(self) -> None:
        """Write server.conf (TLS1.2 suite, CA-verified client certificates), start it."""
        os.makedirs(self.workdir, exist_ok=True)
        policies = os.path.join(self.workdir, "policies")
        os.makedirs(policies, exist_ok=True)
        self.port = self.port or free_port()
        config = os.path.join(self.workdir, "server.conf")
        with open(config, "w", encoding="utf-8") as out:
            out.write(
                "[server]\n"
                "hostname=127.0.0.1\n"
                f"port={self.port}\n"
                f"certificate_path={self.pki.server_certificate_path.path}\n"
                f"key_path={self.pki.server_private_key_path.path}\n"
                f"ca_path={self.pki.ca_certificate_path.path}\n"
                "auth_suite=TLS1.2\n"
                f"policy_path={policies}\n"
                "enable_tls_client_auth=True\n"
                f"tls_cipher_suites={self.cipher}\n"
                "logging_level=WARNING\n"
                f"database_path={self.database}\n"
            )
        log = os.path.join(self.workdir, "pykmip-server.log")
        executable = shutil.which("pykmip-server", path=os.path.dirname(sys.executable))
        command = (
            [executable]
            if executable
            else [sys.executable, "-c", "from kmip.services.server.server import main; main()"]
        )
        self.process = subprocess.Popen(
            [*command, "-f", config, "-l", log],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.workdir, "pykmip-stderr.log"), "ab"),  # noqa: SIM115
        )
        _listening(self.port, self.process, 60, log)

    def populate(self, prefix: str, count: int, start: int = 0) -> list[str]:
        """Insert the keys through PyKMIP's own SQLAlchemy objects, owned by our client."""
        certificate = load_certificate(self.pki.client_certificate_path.getContent())
        (common_name,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return self._populate(
            [
                "pykmip",
                "--database",
                self.database,
                "--owner",
                str(common_name.value),
                *_numbering(prefix, count, start),
            ]
        )

    def object_count(self) -> int:
        import sqlite3

        with sqlite3.connect(self.database) as database:
            ((count,),) = database.execute("SELECT count(*) FROM managed_objects").fetchall()
        return int(count)


@dataclass
class CannedServer(Server):
    """The canned-reply Twisted TLS server: no store, every object exists."""

    kind = "canned"

    def start(self) -> None:
        """Start ``canned_server.py`` with the shared server certificate."""
        os.makedirs(self.workdir, exist_ok=True)
        self.port = self.port or free_port()
        log = os.path.join(self.workdir, "canned.log")
        self.process = subprocess.Popen(
            [
                sys.executable,
                os.path.join(BENCH, "canned_server.py"),
                "--port",
                str(self.port),
                "--certificate",
                self.pki.server_certificate_path.path,
                "--key",
                self.pki.server_private_key_path.path,
            ],
            cwd=self.workdir,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "ab"),  # noqa: SIM115
        )
        _listening(self.port, self.process, 60, log)

    def populate(self, prefix: str, count: int, start: int = 0) -> list[str]:
        """Nothing to store: the canned server knows every identifier."""
        return [f"{prefix}{index:06d}" for index in range(start, start + count)]

    def object_count(self) -> int:
        return 0
