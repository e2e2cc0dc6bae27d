"""Start the real ``twistd -n kmip`` in a subprocess on loopback, for end-to-end
tests and benchmarks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from attrs import define

__all__ = [
    "RunningServer",
    "free_port",
    "read_log",
    "repository_root",
    "start_twistd",
    "stop_process",
    "wait_for_port",
]


def repository_root() -> str:
    """The directory holding ``kmiptwist/`` and ``twisted/plugins/``."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_twistd(
    arguments: list[str],
    log_path: str,
    port: int,
    cwd: str,
    what: str,
    timeout: float,
    niceness: int = 0,
) -> subprocess.Popen[bytes]:
    """Run ``twistd -n`` with ``arguments`` (a plugin and its options), logging to
    ``log_path``, with this repository importable; return once it accepts TCP
    connections on 127.0.0.1:``port``.

    If it exits or does not listen within ``timeout`` seconds, raise RuntimeError
    naming ``what`` and holding its log (it is stopped first when still running).
    ``niceness`` lowers its CPU priority.
    """
    environment = dict(os.environ)
    root = repository_root()
    environment["PYTHONPATH"] = os.pathsep.join(
        [root] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    command = [
        *(["nice", "-n", str(niceness)] if niceness else []),
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "--logfile",
        log_path,
        *arguments,
    ]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    why_not = wait_for_port(port, process, timeout)
    if why_not is None:
        return process
    stop_process(process)
    raise RuntimeError(f"{what} {why_not}:\n{read_log(log_path)}")


def read_log(path: str) -> str:
    """The text of a log file, or "" when there is none yet."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return log.read()
    except OSError:
        return ""


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> str | None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``: None once
    it does, else why not (``process`` exited, or ``timeout`` seconds passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return None
        except OSError:
            time.sleep(0.05)
    return f"did not listen on {port} within {timeout} s"


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """Stop ``process`` (SIGTERM, then SIGKILL after ``timeout`` s); its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@define
class RunningServer:
    """A ``twistd -n kmip`` process and where to reach it."""

    process: subprocess.Popen[bytes]
    data_dir: str
    port: int
    log_path: str

    @classmethod
    def start(
        cls,
        data_dir: str,
        extra_arguments: list[str] | None = None,
        timeout: float = 60.0,
        port: int | None = None,
    ) -> RunningServer:
        """Start the server and wait until it accepts TCP connections."""
        port = port or free_port()
        os.makedirs(data_dir, exist_ok=True)
        log_path = os.path.abspath(os.path.join(data_dir, "..", f"twistd-{port}.log"))
        data_dir = os.path.abspath(data_dir)
        process = start_twistd(
            [
                "kmip",
                "--data-dir",
                data_dir,
                "--interface",
                "127.0.0.1",
                "--port",
                str(port),
                *(extra_arguments or []),
            ],
            log_path,
            port,
            os.path.dirname(data_dir),
            "twistd kmip",
            timeout,
        )
        return cls(process, data_dir, port, log_path)

    def path(self, *parts: str) -> str:
        """A path inside the data directory."""
        return os.path.join(self.data_dir, *parts)

    @property
    def client_bundle(self) -> tuple[str, str, str]:
        """(certificate, key, CA) of the default tenant's client."""
        base = self.path("clients", "default")
        return (
            os.path.join(base, "client.pem"),
            os.path.join(base, "client-key.pem"),
            os.path.join(base, "ca.pem"),
        )

    def log(self) -> str:
        """What the server logged so far."""
        return read_log(self.log_path)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """Stop the server (SIGTERM, then SIGKILL) and return its exit code."""
        return stop_process(self.process, timeout)
