"""Tests for kmiptwist.datadir: the embedded default's first and later runs."""

from __future__ import annotations

import os
import shlex
import socket
import ssl
import stat

from cryptography import x509
from OpenSSL import SSL
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import pki
from kmiptwist.datadir import (
    DataDirectory,
    DataDirectoryError,
    InitReport,
    Outcome,
    connect_hint,
)
from kmiptwist.tls import server_tls_options

_ALL_PARTS = ("CA", "server certificate", "root key", "default client")


def _mode(path: FilePath[str]) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(os.stat(path.path).st_mode)


def _tree(directory: DataDirectory) -> dict[str, bytes]:
    """Every file under the data directory, by relative path, with its content."""
    root = directory.path.path
    files = {}
    for parent, _, names in os.walk(root):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = handle.read()
    return files


def _pykmip_handshake(
    directory: DataDirectory, server_hostname: str | None = None
) -> x509.Certificate | None:
    """Handshake, in memory, between the data directory's server credentials and a
    Python ``ssl`` client configured the way PyKMIP's ``KmipClient`` configures it from
    ``cert=``, ``key=`` and ``ca=`` (verify the server against ``ca``, no host name
    check).  With ``server_hostname`` the client also checks the host name, as strict
    clients do.  Returns the client certificate the server saw."""
    if server_hostname is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # PyKMIP's PROTOCOL_SSLv23 context does not check
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(directory.client_ca_certificate_path.path)
    context.load_cert_chain(
        directory.client_certificate_path.path, directory.client_private_key_path.path
    )
    to_client, to_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(to_client, to_server, server_hostname=server_hostname)
    server = server_tls_options(*directory.server_credentials()).serverConnectionForTLS(None)
    server.set_accept_state()
    client_done = server_done = False
    for _ in range(10):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        if to_server.pending:
            server.bio_write(to_server.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except SSL.WantReadError:
                pass
        try:
            to_client.write(server.bio_read(1 << 16))
        except SSL.WantReadError:
            pass
        if client_done and server_done:
            return server.get_peer_certificate(as_cryptography=True)
    raise AssertionError("the handshake did not finish")


class DataDirectoryTestCase(SynchronousTestCase):
    """Each test gets an empty data directory under a permissive umask."""

    def setUp(self) -> None:
        """Choose a fresh path (not created yet) and clear the umask."""
        self.directory = DataDirectory(FilePath(self.mktemp()).child("kmiptwist-data"))
        previous = os.umask(0)
        self.addCleanup(os.umask, previous)

    def initialize(self, *names: str) -> InitReport:
        """Run the embedded default's initialisation with extra server names."""
        return self.directory.initialize(list(names))

    def server_names(self) -> set[str]:
        """The DNS names and IP addresses in the server certificate's SAN."""
        certificate = pki.load_certificate(self.directory.server_certificate_path.getContent())
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return set(san.get_values_for_type(x509.DNSName)) | {
            str(ip) for ip in san.get_values_for_type(x509.IPAddress)
        }


class FirstRunTests(DataDirectoryTestCase):
    """The first `twistd -n kmip` creates a complete, private data directory."""

    def test_creates_everything(self) -> None:
        """Every part is created and reported as created, with its paths."""
        report = self.initialize()
        self.assertEqual(report.created, _ALL_PARTS)
        self.assertEqual(report.reused, ())
        self.assertEqual(report.warnings, ())
        d = self.directory
        for path in [
            d.ca_certificate_path,
            d.ca_private_key_path,
            d.server_certificate_path,
            d.server_private_key_path,
            d.root_key_path,
            d.client_certificate_path,
            d.client_private_key_path,
            d.client_ca_certificate_path,
        ]:
            self.assertTrue(path.isfile(), path.path)
        self.assertEqual(report.ca.paths, (d.ca_certificate_path, d.ca_private_key_path))
        self.assertIn(d.client_certificate_path, report.default_client.paths)

    def test_modes(self) -> None:
        """Directories are 0700 and secrets 0600 even with umask 000; certificates are
        world-readable."""
        self.initialize()
        d = self.directory
        for directory in [
            d.path,
            d.ca_certificate_path.parent(),
            d.server_certificate_path.parent(),
            d.root_key_path.parent(),
            d.default_client_directory.parent(),
            d.default_client_directory,
        ]:
            self.assertEqual(_mode(directory), 0o700, directory.path)
        for secret in [
            d.ca_private_key_path,
            d.server_private_key_path,
            d.root_key_path,
            d.client_private_key_path,
        ]:
            self.assertEqual(_mode(secret), 0o600, secret.path)
        for public in [d.ca_certificate_path, d.server_certificate_path, d.client_certificate_path]:
            self.assertEqual(_mode(public), 0o644, public.path)

    def test_root_key(self) -> None:
        """The local root key is 32 random bytes (two directories never share one)."""
        self.initialize()
        material = self.directory.root_key()
        self.assertEqual(len(material), 32)
        other = DataDirectory(FilePath(self.mktemp()))
        other.initialize()
        self.assertNotEqual(other.root_key(), material)

    def test_certificates(self) -> None:
        """server.pem is the leaf alone, issued by the CA; the client bundle carries the
        CA and the reported fingerprint is the client certificate's."""
        report = self.initialize()
        d = self.directory
        ca = pki.load_certificate(d.ca_certificate_path.getContent())
        servers = pki.load_certificates(d.server_certificate_path.getContent())
        self.assertEqual(len(servers), 1)
        self.assertTrue(pki.is_issued_by(servers[0], ca))
        self.assertEqual(report.server_fingerprint, pki.fingerprint(servers[0]))
        client = pki.load_certificate(d.client_certificate_path.getContent())
        self.assertTrue(pki.is_issued_by(client, ca))
        self.assertEqual(report.default_client_fingerprint, pki.fingerprint(client))
        self.assertEqual(
            d.client_ca_certificate_path.getContent(), d.ca_certificate_path.getContent()
        )
        ca_again, ca_key = d.certificate_authority()
        self.assertEqual(ca_again, ca)
        self.assertTrue(pki.key_matches_certificate(ca_key, ca))

    def test_server_names(self) -> None:
        """The server certificate names this host, the loopback addresses and the
        configured names, IPs as IP entries and the rest as DNS entries."""
        report = self.initialize(
            "kms.example.com",
            "10.1.2.3",
            "KMS2.Example.com.",
            "*.kms.example.com",
            "bücher.example",
        )
        expected = {
            "localhost",
            socket.gethostname().lower(),
            socket.getfqdn().lower(),
            "127.0.0.1",
            "::1",
            "kms.example.com",
            "10.1.2.3",
            "kms2.example.com",
            "*.kms.example.com",
            "xn--bcher-kva.example",
        }
        self.assertEqual(self.server_names(), expected)
        self.assertEqual(set(report.server_names), expected)
        self.assertEqual(len(report.server_names), len(expected))

    def test_pykmip_client_connects(self) -> None:
        """A client given client.pem, client-key.pem and ca.pem (PyKMIP's cert/key/ca)
        verifies the server and is seen by the server as the default client."""
        report = self.initialize()
        seen = _pykmip_handshake(self.directory)
        assert seen is not None
        self.assertEqual(pki.fingerprint(seen), report.default_client_fingerprint)

    def test_strict_client_connects_by_name(self) -> None:
        """Clients that check the host name accept the server at 127.0.0.1, localhost
        and a configured name."""
        self.initialize("kms.example.com")
        for name in ["127.0.0.1", "localhost", "kms.example.com", "::1"]:
            self.assertIsNotNone(_pykmip_handshake(self.directory, server_hostname=name))

    def test_string_path(self) -> None:
        """A data directory can be given as a plain (relative) string path."""
        directory = DataDirectory(self.mktemp())
        self.assertTrue(os.path.isabs(directory.path.path))
        self.assertEqual(directory.initialize().created, _ALL_PARTS)

    def test_invalid_name(self) -> None:
        """A configured server name that cannot go in a certificate is an error that
        names it, and nothing is half-created."""
        error = self.assertRaises(DataDirectoryError, self.initialize, "bad..name")
        self.assertIn("bad..name", str(error))
        for bad in ["", "-kms.example.com", "*.com", "kms example"]:
            self.assertRaises(DataDirectoryError, self.initialize, bad)
        self.assertFalse(self.directory.path.exists())


class LaterRunTests(DataDirectoryTestCase):
    """Restarts reuse the data directory instead of regenerating it."""

    def setUp(self) -> None:
        """Initialise once, as the first run did."""
        super().setUp()
        self.first = self.initialize("kms.example.com")
        self.files = _tree(self.directory)

    def test_reuses_everything(self) -> None:
        """A second run changes no file and reports the same identities."""
        second = self.initialize("kms.example.com")
        self.assertEqual(second.reused, _ALL_PARTS)
        self.assertEqual(second.created + second.reissued, ())
        self.assertEqual(second.default_client_fingerprint, self.first.default_client_fingerprint)
        self.assertEqual(second.server_fingerprint, self.first.server_fingerprint)
        self.assertEqual(_tree(self.directory), self.files)

    def test_reuses_without_names(self) -> None:
        """Dropping a configured name does not reissue: names are never taken away."""
        self.assertEqual(self.initialize().reused, _ALL_PARTS)
        self.assertEqual(_tree(self.directory), self.files)

    def test_missing_server_certificate(self) -> None:
        """A deleted server.pem is reissued for the same key; nothing else changes."""
        self.directory.server_certificate_path.remove()
        report = self.initialize("kms.example.com")
        self.assertEqual(report.reissued, ("server certificate",))
        self.assertIn("missing", report.server.reason)
        self.assertEqual(report.reused, ("CA", "root key", "default client"))
        after = _tree(self.directory)
        changed = {name for name in after if after[name] != self.files.get(name)}
        self.assertEqual(changed, {os.path.join("server", "server.pem")})
        certificate, key = self.directory.server_credentials()
        ca, _ = self.directory.certificate_authority()
        self.assertTrue(pki.is_issued_by(certificate, ca))
        self.assertIsNotNone(_pykmip_handshake(self.directory))

    def test_missing_server_files(self) -> None:
        """With both server files gone the server certificate is created anew."""
        self.directory.server_certificate_path.remove()
        self.directory.server_private_key_path.remove()
        report = self.initialize()
        self.assertEqual(report.created, ("server certificate",))
        self.assertEqual(_mode(self.directory.server_private_key_path), 0o600)
        self.assertNotEqual(report.server_fingerprint, self.first.server_fingerprint)

    def test_added_server_name(self) -> None:
        """A newly configured name reissues the server certificate with the old names
        plus the new one, keeps its key, and the report says why and what to redo."""
        _, old_key = self.directory.server_credentials()
        report = self.initialize("kms.example.com", "kms-vip.example.com", "192.0.2.7")
        self.assertEqual(report.reissued, ("server certificate",))
        self.assertIn("kms-vip.example.com", report.server.reason)
        self.assertIn("192.0.2.7", report.server.reason)
        self.assertIn("trust the new one", report.server.reason)
        self.assertTrue(
            {"kms.example.com", "kms-vip.example.com", "192.0.2.7", "localhost"}
            <= self.server_names()
        )
        certificate, key = self.directory.server_credentials()
        self.assertTrue(pki.key_matches_certificate(old_key, certificate))
        self.assertEqual(report.default_client_fingerprint, self.first.default_client_fingerprint)
        self.assertEqual(self.initialize("kms-vip.example.com").reused, _ALL_PARTS)

    def test_missing_client_key(self) -> None:
        """A lost client key means a new client bundle, with a new fingerprint to
        register; the CA and server stay."""
        self.directory.client_private_key_path.remove()
        report = self.initialize("kms.example.com")
        self.assertEqual(report.reissued, ("default client",))
        self.assertNotEqual(
            report.default_client_fingerprint, self.first.default_client_fingerprint
        )
        self.assertEqual(_mode(self.directory.client_private_key_path), 0o600)

    def test_offline_ca_key(self) -> None:
        """The CA key may be moved offline: restarts still work, and only issuing
        something new needs it back."""
        self.directory.ca_private_key_path.remove()
        report = self.initialize("kms.example.com")
        self.assertEqual(report.reused, _ALL_PARTS)
        self.assertIn("offline", report.ca.reason)
        self.directory.server_certificate_path.remove()
        error = self.assertRaises(DataDirectoryError, self.initialize)
        self.assertIn("ca-key.pem", str(error))

    def test_ca_key_without_certificate(self) -> None:
        """A CA key without its certificate is not silently replaced by a new CA."""
        self.directory.ca_certificate_path.remove()
        error = self.assertRaises(DataDirectoryError, self.initialize)
        self.assertIn("ca.pem", str(error))

    def test_root_key_never_replaced(self) -> None:
        """A lost root key next to an existing database is an error, not a fresh key
        that would make every stored key unreadable."""
        self.directory.database_path.setContent(b"")
        self.directory.root_key_path.remove()
        error = self.assertRaises(DataDirectoryError, self.initialize)
        self.assertIn("Restore it from backup", str(error))
        self.assertFalse(self.directory.root_key_path.exists())

    def test_corrupt_root_key(self) -> None:
        """A root key of the wrong length is reported, never overwritten."""
        os.chmod(self.directory.root_key_path.path, 0o600)
        with open(self.directory.root_key_path.path, "ab") as handle:
            handle.write(b"x")
        self.assertRaises(DataDirectoryError, self.initialize)
        self.assertEqual(len(self.directory.root_key_path.getContent()), 33)

    def test_open_permissions_warned(self) -> None:
        """A data directory or key another user can read is named in the warnings."""
        os.chmod(self.directory.path.path, 0o755)
        os.chmod(self.directory.server_private_key_path.path, 0o644)
        warnings = self.initialize("kms.example.com").warnings
        self.assertTrue(any(self.directory.path.path in w and "chmod 700" in w for w in warnings))
        self.assertTrue(any(self.directory.server_private_key_path.path in w for w in warnings))


class ConnectHintTests(DataDirectoryTestCase):
    """The text printed at startup tells the operator how to connect."""

    def test_mentions_paths_and_identities(self) -> None:
        """The hint names every file, the fingerprints and the tenant."""
        report = self.initialize()
        hint = connect_hint(report, "127.0.0.1", 5696)
        d = self.directory
        for path in [
            d.path,
            d.ca_certificate_path,
            d.server_certificate_path,
            d.root_key_path,
            d.client_certificate_path,
            d.client_private_key_path,
            d.client_ca_certificate_path,
        ]:
            self.assertIn(path.path, hint)
        self.assertIn(report.default_client_fingerprint, hint)
        self.assertIn(report.server_fingerprint, hint)
        self.assertIn("'default'", hint)

    def _command(self, hint: str) -> list[str]:
        """The PyKMIP command line of the hint, split as a POSIX shell would."""
        line = next(line for line in hint.splitlines() if "python -c" in line)
        return shlex.split(line)

    def test_pykmip_one_liner(self) -> None:
        """The hint's PyKMIP command is valid Python for PyKMIP 0.11's client, pointed
        at the client bundle and the address given."""
        report = self.initialize()
        argv = self._command(connect_hint(report, "0.0.0.0", 5697))
        self.assertEqual(argv[:2], ["python", "-c"])
        code = argv[2]
        compile(code, "<hint>", "exec")
        self.assertIn('hostname="127.0.0.1"', code)
        self.assertIn("port=5697", code)
        self.assertIn(f'cert="{self.directory.client_certificate_path.path}"', code)
        self.assertIn(f'key="{self.directory.client_private_key_path.path}"', code)
        self.assertIn(f'ca="{self.directory.client_ca_certificate_path.path}"', code)
        import kmip

        self.assertTrue(hasattr(kmip.enums.CryptographicAlgorithm, "AES"))
        self.assertTrue(callable(kmip.KmipClient.create))

    def test_awkward_path(self) -> None:
        """Paths with spaces and quotes still give a command that shells and Python
        read back exactly."""
        self.directory = DataDirectory(FilePath(self.mktemp()).child('it\'s a "dir"'))
        report = self.initialize()
        code = self._command(connect_hint(report, "kms.example.com", 5696))[2]
        namespace: dict[str, object] = {}
        # Run only the argument part of the call, to read the values back.
        arguments = code[code.index("(") + 1 : code.index(")")]
        exec(f"values = dict({arguments})", namespace)  # noqa: S102
        self.assertEqual(
            namespace["values"],
            {
                "hostname": "kms.example.com",
                "port": 5696,
                "cert": self.directory.client_certificate_path.path,
                "key": self.directory.client_private_key_path.path,
                "ca": self.directory.client_ca_certificate_path.path,
            },
        )

    def test_reissue_in_hint(self) -> None:
        """A reissued server certificate is explained in the hint."""
        self.initialize()
        report = self.initialize("kms.example.com")
        self.assertEqual(report.server.outcome, Outcome.REISSUED)
        self.assertIn("server certificate (reissued)", connect_hint(report, "", 5696))
        self.assertIn("kms.example.com", connect_hint(report, "", 5696))
