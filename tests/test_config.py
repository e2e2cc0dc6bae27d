"""Tests for kmiptwist.config: the configuration file, flags and defaults."""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kmiptwist.config import (
    SETTINGS,
    Configuration,
    ConfigurationError,
    load_configuration,
    parse_configuration,
)
from kmiptwist.service import KMIPService, StartupError, make_kmip_service
from kmiptwist.tap import Options

EXAMPLE = FilePath(__file__).parent().parent().child("etc").child("kmiptwist.conf.example")


class DefaultsTests(SynchronousTestCase):
    """A server started with no configuration at all."""

    def test_defaults(self) -> None:
        """With no file and no flags, the server listens on 5696 on every IPv4 address
        and keeps everything in ./kmiptwist-data."""
        config = load_configuration()
        self.assertEqual(config, Configuration())
        self.assertEqual((config.interface, config.port), ("0.0.0.0", 5696))
        self.assertEqual(config.data_dir, "./kmiptwist-data")
        data_dir = os.path.abspath("kmiptwist-data")
        self.assertEqual(config.database_path, os.path.join(data_dir, "kmiptwist.sqlite3"))
        self.assertEqual(config.root_key_path, os.path.join(data_dir, "root-key", "local-root-key"))
        self.assertEqual(config.max_message_size, 1 << 20)
        self.assertEqual(config.max_connections, 10_000)
        self.assertEqual((config.idle_timeout, config.handshake_timeout), (300, 30))
        self.assertEqual((config.cache_max_entries, config.cache_ttl), (10_000, 300))
        self.assertIsNone(config.tls_certificate)

    def test_example_documents_every_setting(self) -> None:
        """The shipped example file names every setting with its real default, so an
        operator reading it learns exactly what the server does when it is left out."""
        text = EXAMPLE.getContent().decode("utf-8")
        defaults = Configuration()
        for setting in SETTINGS:
            self.assertIn(f"[{setting.section}]", text)
            self.assertIn(f"# {setting.key} =", text, setting.key)
        # Uncommenting every setting gives the defaults back.
        keys = {setting.key for setting in SETTINGS}
        uncommented = "\n".join(
            line[2:] if line.startswith("# ") and line[2:].split(" =")[0] in keys else line
            for line in text.splitlines()
        )
        values = parse_configuration(uncommented, base_dir="/etc/kmiptwist")
        paths = {setting.field for setting in SETTINGS if setting.is_path}
        for field, value in values.items():
            if field in paths and value is not None:
                continue
            self.assertEqual(value, getattr(defaults, field), field)


class FileTests(SynchronousTestCase):
    """Reading the configuration file."""

    def write(self, text: str) -> str:
        path = FilePath(self.mktemp())
        path.makedirs()
        config = path.child("kmiptwist.conf")
        config.setContent(text.encode("utf-8"))
        return config.path

    def test_values_from_file(self) -> None:
        """Every section of the file is read, with sizes and lists in friendly forms."""
        path = self.write(
            "[kmip]\nport = 15696\ninterface = ::\nserver_names = kms.example.com, 10.0.0.5\n"
            "[limits]\nmax_message_size = 64KiB\nidle_timeout = 60\n"
            "[cache]\nmax_entries = 0\n"
        )
        config = load_configuration(path)
        self.assertEqual(config.port, 15696)
        self.assertEqual(config.interface, "::")
        self.assertEqual(config.server_names, ("kms.example.com", "10.0.0.5"))
        self.assertEqual(config.max_message_size, 65536)
        self.assertEqual(config.idle_timeout, 60.0)
        self.assertEqual(config.cache_max_entries, 0)

    def test_relative_paths_from_file_directory(self) -> None:
        """Relative paths in the file are taken from the file's directory, so the
        service finds its data whatever its working directory."""
        path = self.write("[kmip]\ndata_dir = data\n[store]\ndatabase = db/kms.sqlite\n")
        config = load_configuration(path)
        base = os.path.dirname(os.path.abspath(path))
        self.assertEqual(config.data_dir, os.path.join(base, "data"))
        self.assertEqual(config.database_path, os.path.join(base, "db", "kms.sqlite"))
        self.assertEqual(
            config.root_key_path, os.path.join(base, "data", "root-key", "local-root-key")
        )

    def test_flags_override_file(self) -> None:
        """A command-line flag wins over the file; settings not flagged keep the
        file's value."""
        path = self.write("[kmip]\nport = 15696\ninterface = 127.0.0.1\n")
        config = load_configuration(path, {"port": "25696", "interface": None})
        self.assertEqual(config.port, 25696)
        self.assertEqual(config.interface, "127.0.0.1")

    def test_unknown_key(self) -> None:
        """A misspelt key is an error naming the file, section and key, not a silent
        default."""
        path = self.write("[limits]\nidle_timout = 60\n")
        error = self.assertRaises(ConfigurationError, load_configuration, path)
        self.assertIn(path, str(error))
        self.assertIn("'idle_timout'", str(error))
        self.assertIn("[limits]", str(error))
        self.assertIn("idle_timeout", str(error))

    def test_unknown_section(self) -> None:
        """A section the server does not know is an error."""
        path = self.write("[kmpi]\nport = 1\n")
        error = self.assertRaises(ConfigurationError, load_configuration, path)
        self.assertIn("[kmpi]", str(error))

    def test_bad_values(self) -> None:
        """Values the server cannot use are errors that say what is wrong."""
        cases = {
            "[kmip]\nport = http\n": "not a whole number",
            "[kmip]\nport = 70000\n": "out of range",
            "[limits]\nidle_timeout = -5\n": "too short",
            "[limits]\nmax_message_size = lots\n": "not a size",
            "[cache]\nttl = forever\n": "not a number of seconds",
            "[log]\njson_level = chatty\n": "not a log level",
            "[kmip]\nport = 1\nport = 2\n": "cannot read",
        }
        for text, expected in cases.items():
            error = self.assertRaises(ConfigurationError, load_configuration, self.write(text))
            self.assertIn(expected, str(error), text)

    def test_bad_flag(self) -> None:
        """A bad flag value is reported with the flag's name."""
        error = self.assertRaises(ConfigurationError, load_configuration, None, {"port": "x"})
        self.assertIn("port", str(error))

    def test_missing_file(self) -> None:
        """A configuration file that does not exist is an error, not the defaults."""
        error = self.assertRaises(ConfigurationError, load_configuration, self.mktemp())
        self.assertIn("cannot read configuration file", str(error))

    def test_certificate_without_key(self) -> None:
        """A TLS certificate without its private key is refused at start."""
        path = self.write("[tls]\ncertificate = /etc/kms/server.pem\n")
        error = self.assertRaises(ConfigurationError, load_configuration, path)
        self.assertIn("together", str(error))


class OptionsTests(SynchronousTestCase):
    """``twistd kmip`` flags."""

    def test_flags_over_file(self) -> None:
        """Flags given to twistd kmip override the file; repeated --server-name flags
        add up."""
        path = FilePath(self.mktemp())
        path.setContent(
            b"[kmip]\nport = 15696\ninterface = 127.0.0.1\n[limits]\nidle_timeout = 5\n"
        )
        options = Options()
        options.parseOptions(
            [
                "--config",
                path.path,
                "--port",
                "25696",
                "--idle-timeout",
                "7",
                "--server-name",
                "kms.example.com",
                "--server-name",
                "10.0.0.5",
                "--data-dir",
                "somewhere",
            ]
        )
        config = options.configuration
        self.assertEqual(config.port, 25696)
        self.assertEqual(config.interface, "127.0.0.1")
        self.assertEqual(config.idle_timeout, 7)
        self.assertEqual(config.server_names, ("kms.example.com", "10.0.0.5"))
        self.assertEqual(config.data_dir, "somewhere")

    def test_no_flags(self) -> None:
        """twistd kmip with no flags runs the embedded default."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(options.configuration, Configuration())

    def test_bad_flag_is_usage_error(self) -> None:
        """A bad value or a bad file is reported as a usage error, not a traceback."""
        self.assertRaises(UsageError, Options().parseOptions, ["--port", "many"])
        self.assertRaises(UsageError, Options().parseOptions, ["--config", self.mktemp()])


class ServiceTests(TestCase):
    """The configuration builds a working server.

    A real reactor TestCase: the sqlite store commits on a thread that reports back with
    callFromThread, and the listener binds a real loopback port (port 0).
    """

    def make(self, data_dir: str) -> KMIPService:
        from twisted.internet import reactor

        config = Configuration(
            data_dir=data_dir, interface="127.0.0.1", port=0, idle_timeout=42, max_connections=7
        )
        service = make_kmip_service(config, reactor)
        service.stop_reactor_on_failure = False
        return service

    async def start_and_stop(self, service: KMIPService) -> str | None:
        """Start, check who the default client is, stop; return its tenant."""
        service.startService()
        try:
            port = await service.when_listening()
            self.assertEqual(port.getHost().host, "127.0.0.1")
            return await service.store.tenant_for_fingerprint(
                service.report.default_client_fingerprint
            )
        finally:
            await service.stopService()
            self.assertFalse(service.store.running)
            self.assertIsNone(service.port)

    def test_first_and_second_start(self) -> Deferred[None]:
        """The first start creates tenant default with the default client bundle in it;
        a restart reuses them, and a certificate an administrator removed stays removed
        across restarts."""
        data_dir = self.mktemp()

        async def run() -> None:
            first = self.make(data_dir)
            self.assertEqual(first.factory.limits.idle_timeout, 42)
            self.assertEqual(first.factory.limits.max_connections, 7)
            self.assertEqual(await self.start_and_stop(first), "default")
            second = self.make(data_dir)
            self.assertEqual(await self.start_and_stop(second), "default")
            third = self.make(data_dir)
            third.store.startService()
            await third.store.remove_certificate(third.report.default_client_fingerprint)
            await third.store.stopService()
            self.assertIsNone(await self.start_and_stop(self.make(data_dir)))

        return Deferred.fromCoroutine(run())

    def test_second_server_on_the_same_data_directory(self) -> Deferred[None]:
        """A second server on a running server's data directory is refused before it
        starts anything (it would append to the same audit log), with a clear message."""
        data_dir = self.mktemp()

        async def run() -> None:
            first = self.make(data_dir)
            first.startService()
            try:
                await first.when_listening()
                audit = first.configuration.audit_path
                with open(audit, "rb") as log:
                    before = log.read()
                with self.assertRaises(StartupError) as raised:
                    self.make(data_dir)
                self.assertIn("another kmiptwist process", str(raised.exception))
                with open(audit, "rb") as log:
                    self.assertEqual(log.read(), before)
            finally:
                await first.stopService()
            await self.start_and_stop(self.make(data_dir))  # the lock went with the server

        return Deferred.fromCoroutine(run())
