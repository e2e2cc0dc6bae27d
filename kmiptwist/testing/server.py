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

__all__ = ["RunningServer", "free_port", "repository_root"]


def repository_root() -> str:
    """The directory holding ``kmiptwist/`` and ``twisted/plugins/``."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
        log_path = os.path.join(data_dir, "..", f"twistd-{port}.log")
        log_path = os.path.abspath(log_path)
        environment = dict(os.environ)
        root = repository_root()
        environment["PYTHONPATH"] = os.pathsep.join(
            [root] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
        )
        command = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "--logfile",
            log_path,
            "kmip",
            "--data-dir",
            data_dir,
            "--interface",
            "127.0.0.1",
            "--port",
            str(port),
            *(extra_arguments or []),
        ]
        process = subprocess.Popen(
            command,
            cwd=os.path.dirname(os.path.abspath(data_dir)),
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(process, os.path.abspath(data_dir), port, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"twistd kmip exited with {process.returncode}:\n{server.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return server
            except OSError:
                time.sleep(0.05)
        server.stop()
        raise RuntimeError(
            f"twistd kmip did not listen on {port} within {timeout} s:\n{server.log()}"
        )

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
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """Stop the server (SIGTERM, then SIGKILL) and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
