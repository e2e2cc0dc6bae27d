"""Run ``twistd -n kmip-keyprotect-emulator`` as a process on loopback, and manage keys
in it the way an IBM Cloud user would (rotate, disable, enable, delete), for
end-to-end tests, demos and benchmarks.  Blocking (stdlib ``urllib``).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from attrs import define, field

from kmiptwist.testing.server import free_port, read_log, start_twistd, stop_process

__all__ = ["RunningEmulator"]

_GRANT = "urn:ibm:params:oauth:grant-type:apikey"


@define
class RunningEmulator:
    """An emulator process, where it listens, and an API key it knows (role Manager)."""

    directory: str
    port: int
    api_key: str
    state_file: str
    extra_arguments: list[str] = field(factory=list)
    ca_bundle: str | None = None
    niceness: int = 0
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        directory: str,
        api_key: str = "emulator-manager-api-key",
        extra_arguments: list[str] | None = None,
        port: int | None = None,
        timeout: float = 30.0,
        tls: tuple[str, str, str] | None = None,
        niceness: int = 0,
    ) -> RunningEmulator:
        """Start an emulator keeping its state in ``directory``; wait until it listens.

        ``tls`` (certificate, key, CA bundle PEM files) serves HTTPS instead of HTTP;
        ``niceness`` lowers its CPU priority (benchmarks: the server under test first).
        """
        os.makedirs(directory, exist_ok=True)
        arguments = list(extra_arguments or [])
        if tls is not None:
            arguments += ["--tls-certificate", tls[0], "--tls-key", tls[1]]
        emulator = cls(
            os.path.abspath(directory),
            port or free_port(),
            api_key,
            os.path.join(os.path.abspath(directory), "keyprotect-state.json"),
            arguments,
            None if tls is None else tls[2],
            niceness,
        )
        emulator.restart(timeout)
        return emulator

    @property
    def url(self) -> str:
        """The emulator's base URL (Key Protect endpoint)."""
        scheme = "http" if self.ca_bundle is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        """Its IAM token URL."""
        return f"{self.url}/identity/token"

    @property
    def log_path(self) -> str:
        """Where the process logs."""
        return os.path.join(self.directory, f"emulator-{self.port}.log")

    def restart(self, timeout: float = 30.0) -> None:
        """Start the process (again, on the same port and state file)."""
        self.process = start_twistd(
            [
                "kmip-keyprotect-emulator",
                "--port",
                str(self.port),
                "--state-file",
                self.state_file,
                "--api-key",
                self.api_key,
                *self.extra_arguments,
            ],
            self.log_path,
            self.port,
            self.directory,
            "the emulator",
            timeout,
            self.niceness,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        if self.process is not None:
            stop_process(self.process, timeout)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What the process logged."""
        return read_log(self.log_path)

    # -- HTTP -------------------------------------------------------------------------------

    def _http(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        context = None
        if self.ca_bundle is not None:
            import ssl

            context = ssl.create_default_context(cafile=self.ca_bundle)
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, data = error.code, error.read()
        return status, json.loads(data) if data else None

    def token(self) -> str:
        """A bearer token for the API key (fetched once per process start)."""
        form = urllib.parse.urlencode({"grant_type": _GRANT, "apikey": self.api_key}).encode()
        status, body = self._http(
            "POST", "/identity/token", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 200:
            raise RuntimeError(f"no token: {status} {body}")
        return str(body["access_token"])

    def call(
        self, method: str, path: str, instance: str, body: Any = None, **headers: str
    ) -> tuple[int, Any]:
        """A Key Protect call (``path`` after ``/api/v2/keys``); (status, JSON body)."""
        all_headers = {
            "Authorization": f"Bearer {self.token()}",
            "Bluemix-Instance": instance,
            **headers,
        }
        data = None if body is None else json.dumps(body).encode()
        return self._http(method, "/api/v2/keys" + path, data, all_headers)

    def create_root_key(self, instance: str, name: str) -> str:
        """Create a root key; its id."""
        body = {
            "metadata": {
                "collectionType": "application/vnd.ibm.kms.key+json",
                "collectionTotal": 1,
            },
            "resources": [{"type": "application/vnd.ibm.kms.key+json", "name": name}],
        }
        status, answer = self.call("POST", "", instance, body)
        if status != 201:
            raise RuntimeError(f"cannot create a root key: {status} {answer}")
        return str(answer["resources"][0]["id"])

    def action(self, instance: str, key_id: str, action: str) -> None:
        """rotate, disable, enable (or delete) the root key; RuntimeError if refused."""
        if action == "delete":
            status, answer = self.call("DELETE", f"/{key_id}", instance)
        else:
            status, answer = self.call("POST", f"/{key_id}/actions/{action}", instance, {})
        if status not in (200, 204):
            raise RuntimeError(f"{action} refused: {status} {answer}")

    def metadata(self, instance: str, key_id: str) -> dict[str, Any]:
        """The root key's metadata."""
        status, answer = self.call("GET", f"/{key_id}/metadata", instance)
        if status != 200:
            raise RuntimeError(f"no metadata: {status} {answer}")
        resource: dict[str, Any] = answer["resources"][0]
        return resource

    def control(self, path: str = "", body: Any = None) -> Any:
        """The control API: ``control()`` status, ``control("knobs", {...})``, ..."""
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if body is None else "POST"
        status, answer = self._http(method, "/_emulator" + (f"/{path}" if path else ""), data, {})
        if status != 200:
            raise RuntimeError(f"control {path} refused: {status} {answer}")
        return answer
