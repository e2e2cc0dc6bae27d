"""
The embedded default's data directory: CA, server certificate, local root key and a
ready-to-use client bundle, created on the first run and reused on every later one.

``twistd -n kmip`` with no configuration calls :meth:`DataDirectory.initialize` and
prints :func:`connect_hint` (DESIGN.md decision 12).  Plain files only: no reactor.

Layout (every directory 0700, every private key and the root key 0600)::

    ca/ca.pem  ca/ca-key.pem
    server/server.pem  server/server-key.pem
    root-key/local-root-key
    clients/default/client.pem  clients/default/client-key.pem  clients/default/ca.pem
    kmiptwist.sqlite3  (the store's database: named here, written by the store)
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import json
import os
import re
import secrets
import shlex
import socket
import stat
from collections.abc import Sequence

from attrs import field, frozen
from cryptography import x509
from twisted.python.filepath import FilePath

from . import pki

ROOT_KEY_SIZE = 32
"""Bytes of the local root key (an AES-256 key)."""

DEFAULT_TENANT = "default"
"""The tenant the default client bundle belongs to."""

RENEWAL_WARNING = datetime.timedelta(days=30)
"""A server certificate that expires sooner than this is reported in the warnings."""

_UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::")
_DNS_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class DataDirectoryError(Exception):
    """The data directory is in a state kmiptwist must not repair on its own."""


class Outcome(enum.Enum):
    """What :meth:`DataDirectory.initialize` did with one part of the directory."""

    CREATED = "created"
    REUSED = "reused"
    REISSUED = "reissued"


@frozen
class PartReport:
    """The outcome for one part (CA, server certificate, root key, client bundle)."""

    outcome: Outcome
    paths: tuple[FilePath[str], ...]
    reason: str = ""


@frozen
class InitReport:
    """What a data directory initialisation found, made and warns about."""

    directory: DataDirectory
    ca: PartReport
    server: PartReport
    root_key: PartReport
    default_client: PartReport
    server_fingerprint: str
    default_client_fingerprint: str
    server_names: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def parts(self) -> dict[str, PartReport]:
        """Return every part by its human name, in the order they are printed."""
        return {
            "CA": self.ca,
            "server certificate": self.server,
            "root key": self.root_key,
            "default client": self.default_client,
        }

    @property
    def created(self) -> tuple[str, ...]:
        """Names of the parts made from nothing on this run."""
        return self._named(Outcome.CREATED)

    @property
    def reused(self) -> tuple[str, ...]:
        """Names of the parts kept as they were."""
        return self._named(Outcome.REUSED)

    @property
    def reissued(self) -> tuple[str, ...]:
        """Names of the parts that existed but were replaced (see their reasons)."""
        return self._named(Outcome.REISSUED)

    def _named(self, outcome: Outcome) -> tuple[str, ...]:
        """Names of the parts with ``outcome``."""
        return tuple(name for name, part in self.parts().items() if part.outcome is outcome)


def _file_path(value: FilePath[str] | str | os.PathLike[str]) -> FilePath[str]:
    """Accept a FilePath or anything os.fspath understands, as an absolute FilePath."""
    if isinstance(value, FilePath):
        return value
    return FilePath(os.path.abspath(os.fspath(value)))


@frozen
class DataDirectory:
    """The embedded default's files, under one directory."""

    path: FilePath[str] = field(converter=_file_path)

    @property
    def ca_certificate_path(self) -> FilePath[str]:
        """The built-in CA's certificate (public)."""
        return self.path.child("ca").child("ca.pem")

    @property
    def ca_private_key_path(self) -> FilePath[str]:
        """The built-in CA's private key (0600; may be moved offline after setup)."""
        return self.path.child("ca").child("ca-key.pem")

    @property
    def server_certificate_path(self) -> FilePath[str]:
        """The KMIP server's certificate, the leaf only."""
        return self.path.child("server").child("server.pem")

    @property
    def server_private_key_path(self) -> FilePath[str]:
        """The KMIP server's private key (0600)."""
        return self.path.child("server").child("server-key.pem")

    @property
    def root_key_path(self) -> FilePath[str]:
        """The local root key wrapping every key of local tenants (0600)."""
        return self.path.child("root-key").child("local-root-key")

    @property
    def default_client_directory(self) -> FilePath[str]:
        """The bundle a first KMIP client uses: certificate, key and the CA."""
        return self.path.child("clients").child(DEFAULT_TENANT)

    @property
    def client_certificate_path(self) -> FilePath[str]:
        """The default client's certificate."""
        return self.default_client_directory.child("client.pem")

    @property
    def client_private_key_path(self) -> FilePath[str]:
        """The default client's private key (0600)."""
        return self.default_client_directory.child("client-key.pem")

    @property
    def client_ca_certificate_path(self) -> FilePath[str]:
        """A copy of the CA for the client, to verify the server with."""
        return self.default_client_directory.child("ca.pem")

    @property
    def database_path(self) -> FilePath[str]:
        """Where the embedded default keeps its sqlite database.

        Its presence stops :meth:`initialize` from making a new root key: that would
        silently orphan every wrapped key in the database.
        """
        return self.path.child("kmiptwist.sqlite3")

    def certificate_authority(self) -> tuple[x509.Certificate, pki.PrivateKey]:
        """Load the built-in CA and its key (for the admin API's issuing and signing)."""
        certificate = pki.load_certificate(_read(self.ca_certificate_path))
        return certificate, pki.load_private_key(_read(self.ca_private_key_path))

    def server_credentials(self) -> tuple[x509.Certificate, pki.PrivateKey]:
        """Load the server certificate and key, ready for ``tls.server_tls_options``."""
        certificate = pki.load_certificate(_read(self.server_certificate_path))
        return certificate, pki.load_private_key(_read(self.server_private_key_path))

    def root_key(self) -> bytes:
        """Load the local root key."""
        material = _read(self.root_key_path)
        if len(material) != ROOT_KEY_SIZE:
            raise DataDirectoryError(
                f"{self.root_key_path.path} holds {len(material)} bytes, not {ROOT_KEY_SIZE}"
            )
        return material

    def initialize(
        self, server_names: Sequence[str] = (), *, now: datetime.datetime | None = None
    ) -> InitReport:
        """Create what is missing, reuse what exists, and report which was which.

        ``server_names`` are the extra DNS names and IP addresses clients dial; the
        server certificate is reissued (same key) when one of them is not in its SAN.
        Nothing that holds data is ever replaced: an existing root key or CA key is
        reused or the call fails with :class:`DataDirectoryError`.
        """
        if now is None:
            now = datetime.datetime.now(datetime.UTC)
        configured_dns, configured_ips = _classify(server_names, strict=True)
        warnings: list[str] = []
        _make_private_directory(self.path, warnings)
        for directory in (
            self.ca_certificate_path.parent(),
            self.server_certificate_path.parent(),
            self.root_key_path.parent(),
            self.default_client_directory.parent(),
            self.default_client_directory,
        ):
            _make_private_directory(directory, warnings)

        # The root key first: if it cannot be trusted, nothing else should change.
        root_key_part = self._ensure_root_key()
        ca_part, ca_certificate, ca_key = self._ensure_ca(now)
        server_part, server_certificate = self._ensure_server(
            ca_certificate, ca_key, configured_dns, configured_ips, now, warnings
        )
        client_part, client_certificate = self._ensure_default_client(ca_certificate, ca_key, now)
        for key_path in (
            self.ca_private_key_path,
            self.server_private_key_path,
            self.root_key_path,
            self.client_private_key_path,
        ):
            if key_path.exists() and stat.S_IMODE(os.stat(key_path.path).st_mode) & 0o077:
                warnings.append(f"{key_path.path} is readable by other users; run chmod 600 on it")
        return InitReport(
            directory=self,
            ca=ca_part,
            server=server_part,
            root_key=root_key_part,
            default_client=client_part,
            server_fingerprint=pki.fingerprint(server_certificate),
            default_client_fingerprint=pki.fingerprint(client_certificate),
            server_names=_san_names(server_certificate),
            warnings=tuple(warnings),
        )

    def _ensure_ca(
        self, now: datetime.datetime
    ) -> tuple[PartReport, x509.Certificate, pki.PrivateKey | None]:
        """Reuse the CA, or create one when neither of its files exists."""
        paths = (self.ca_certificate_path, self.ca_private_key_path)
        have_certificate = self.ca_certificate_path.exists()
        have_key = self.ca_private_key_path.exists()
        if have_certificate:
            certificate = _load_certificate(self.ca_certificate_path)
            if not have_key:
                # An admin may take the CA key offline once the bundles are issued.
                return (
                    PartReport(Outcome.REUSED, paths, "the CA private key is offline"),
                    certificate,
                    None,
                )
            key = _load_private_key(self.ca_private_key_path)
            if not pki.key_matches_certificate(key, certificate):
                raise DataDirectoryError(
                    f"{self.ca_private_key_path.path} is not the key of "
                    f"{self.ca_certificate_path.path}; restore the matching pair"
                )
            return PartReport(Outcome.REUSED, paths), certificate, key
        if have_key:
            raise DataDirectoryError(
                f"{self.ca_private_key_path.path} exists without "
                f"{self.ca_certificate_path.path}: restore the CA certificate, or remove "
                "the key to create a new CA"
            )
        common_name = f"kmiptwist CA {_short_hostname()}"[:55] + " " + secrets.token_hex(4)
        certificate, key = pki.create_ca(common_name, now=now)
        pki.write_private_key(self.ca_private_key_path.path, key)
        pki.write_public(self.ca_certificate_path.path, pki.certificate_pem(certificate))
        return PartReport(Outcome.CREATED, paths), certificate, key

    def _ensure_server(
        self,
        ca_certificate: x509.Certificate,
        ca_key: pki.PrivateKey | None,
        configured_dns: list[str],
        configured_ips: list[str],
        now: datetime.datetime,
        warnings: list[str],
    ) -> tuple[PartReport, x509.Certificate]:
        """Reuse the server certificate unless it is missing, foreign, expired or lacks a
        configured name; then (re)issue it, keeping an existing key."""
        paths = (self.server_certificate_path, self.server_private_key_path)
        default_dns, default_ips = _classify(default_server_names(), strict=False)
        key = (
            _load_private_key(self.server_private_key_path)
            if self.server_private_key_path.exists()
            else None
        )
        certificate = (
            _load_certificate(self.server_certificate_path)
            if self.server_certificate_path.exists()
            else None
        )
        existing_dns: list[str] = []
        existing_ips: list[str] = []
        reasons: list[str] = []
        if certificate is None:
            reasons.append("the certificate was missing")
        else:
            existing_dns, existing_ips = _classify(_san_names(certificate), strict=False)
            missing = [
                name
                for name in configured_dns + configured_ips
                if not _covers(existing_dns, existing_ips, name)
            ]
            if key is None:
                reasons.append("its private key was missing")
            elif not pki.key_matches_certificate(key, certificate):
                reasons.append("it did not match the private key")
            if not pki.is_issued_by(certificate, ca_certificate):
                reasons.append("it was not issued by this data directory's CA")
            if certificate.not_valid_after_utc <= now:
                reasons.append("it had expired")
            if missing:
                reasons.append("configured names were not in it: " + ", ".join(missing))
        if not reasons:
            assert certificate is not None
            if certificate.not_valid_after_utc - now < RENEWAL_WARNING:
                warnings.append(
                    f"the server certificate expires on {certificate.not_valid_after_utc:%Y-%m-%d}"
                    f"; remove {self.server_certificate_path.path} to reissue it"
                )
            absent = [
                name
                for name in default_dns + default_ips
                if not _covers(existing_dns, existing_ips, name)
            ]
            if absent:
                warnings.append(
                    "the server certificate does not name "
                    + ", ".join(absent)
                    + "; configure them as server names to reissue it"
                )
            return PartReport(Outcome.REUSED, paths), certificate

        if ca_key is None:
            raise DataDirectoryError(
                f"cannot issue the server certificate ({'; '.join(reasons)}): the CA "
                f"private key {self.ca_private_key_path.path} is absent"
            )
        dns_names = _unique(existing_dns + default_dns + configured_dns)
        ip_addresses = _unique(existing_ips + default_ips + configured_ips)
        new_key = key is None
        certificate, key = pki.issue_server_certificate(
            ca_certificate,
            ca_key,
            dns_names,
            ip_addresses,
            f"kmiptwist {_short_hostname()}"[:64],
            key=key,
            now=now,
        )
        if new_key:
            pki.write_private_key(self.server_private_key_path.path, key)
        pki.write_public(self.server_certificate_path.path, pki.certificate_pem(certificate))
        if reasons == ["the certificate was missing"] and new_key:
            return PartReport(Outcome.CREATED, paths), certificate
        return (
            PartReport(
                Outcome.REISSUED,
                paths,
                "; ".join(reasons) + ". Clients that pinned the old server certificate (vCenter's "
                "'Make vCenter trust KMS') must trust the new one",
            ),
            certificate,
        )

    def _ensure_root_key(self) -> PartReport:
        """Reuse the local root key; create one only if no database could depend on it."""
        paths = (self.root_key_path,)
        if self.root_key_path.exists():
            self.root_key()  # validates the length
            return PartReport(Outcome.REUSED, paths)
        if self.database_path.exists():
            raise DataDirectoryError(
                f"the local root key {self.root_key_path.path} is missing but the database "
                f"{self.database_path.path} exists: its keys can only be unwrapped with the "
                "old root key. Restore it from backup; a new one would not open them"
            )
        pki.write_secret(self.root_key_path.path, secrets.token_bytes(ROOT_KEY_SIZE))
        return PartReport(Outcome.CREATED, paths)

    def _ensure_default_client(
        self,
        ca_certificate: x509.Certificate,
        ca_key: pki.PrivateKey | None,
        now: datetime.datetime,
    ) -> tuple[PartReport, x509.Certificate]:
        """Reuse the default client bundle, completing or reissuing what is missing."""
        paths = (
            self.client_certificate_path,
            self.client_private_key_path,
            self.client_ca_certificate_path,
        )
        ca_pem = pki.certificate_pem(ca_certificate)
        notes: list[str] = []
        if (
            not self.client_ca_certificate_path.exists()
            or _read(self.client_ca_certificate_path) != ca_pem
        ):
            if self.client_ca_certificate_path.exists():
                notes.append("its ca.pem was updated to the current CA")
            pki.write_public(self.client_ca_certificate_path.path, ca_pem)

        key = (
            _load_private_key(self.client_private_key_path)
            if self.client_private_key_path.exists()
            else None
        )
        certificate = (
            _load_certificate(self.client_certificate_path)
            if self.client_certificate_path.exists()
            else None
        )
        if certificate is not None and key is not None:
            if pki.key_matches_certificate(key, certificate):
                # Identity is the fingerprint, so a bundle from an older CA still works.
                return PartReport(Outcome.REUSED, paths, "; ".join(notes)), certificate
            notes.append("its certificate did not match its private key")
        elif certificate is not None:
            notes.append("its private key was missing")
        elif key is not None:
            notes.append("its certificate was missing")

        if ca_key is None:
            raise DataDirectoryError(
                "cannot issue the default client certificate: the CA private key "
                f"{self.ca_private_key_path.path} is absent"
            )
        new_key = key is None
        if key is None:
            key = pki.new_private_key()
        certificate = pki.sign_client_certificate(
            ca_certificate,
            ca_key,
            key.public_key(),
            x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "kmiptwist default client")]),
            now=now,
        )
        if new_key:
            # A certificate without its key is useless: it is replaced below.
            pki.write_private_key(self.client_private_key_path.path, key)
        pki.write_public(self.client_certificate_path.path, pki.certificate_pem(certificate))
        if not notes:
            return PartReport(Outcome.CREATED, paths), certificate
        return PartReport(Outcome.REISSUED, paths, "; ".join(notes)), certificate


def default_server_names() -> list[str]:
    """The names every embedded-default server certificate carries: this host's."""
    return [
        "localhost",
        socket.gethostname().lower(),
        socket.getfqdn().lower(),
        "127.0.0.1",
        "::1",
    ]


def connect_hint(report: InitReport, host: str, port: int) -> str:
    """Tell the operator where the files are and how to make a first KMIP request."""
    directory = report.directory
    if host in _UNSPECIFIED_HOSTS:
        host = "127.0.0.1"
    lines = [f"kmiptwist data directory: {directory.path.path}"]
    for name, part in report.parts().items():
        lines.append(f"  {name} ({part.outcome.value}): {', '.join(p.path for p in part.paths)}")
        if part.reason:
            lines.append(f"    {part.reason}")
    lines += [
        f"  server certificate SHA-256: {report.server_fingerprint}",
        f"    names: {', '.join(report.server_names)}",
        f"  default client certificate SHA-256: {report.default_client_fingerprint}"
        f" (tenant {DEFAULT_TENANT!r})",
    ]
    lines += [f"  warning: {warning}" for warning in report.warnings]
    code = (
        "import kmip; "
        f"c = kmip.KmipClient(hostname={_python_str(host)}, port={int(port)}, "
        f"cert={_python_str(directory.client_certificate_path.path)}, "
        f"key={_python_str(directory.client_private_key_path.path)}, "
        f"ca={_python_str(directory.client_ca_certificate_path.path)}); "
        "c.open(); print(c.create(kmip.enums.CryptographicAlgorithm.AES, 256)); c.close()"
    )
    lines += [
        "",
        f"Create a key with PyKMIP (pip install pykmip) against {host} port {port}:",
        f"  python -c {shlex.quote(code)}",
    ]
    if ":" in host:
        lines.append("  (PyKMIP 0.11 connects over IPv4 only: use an IPv4 address)")
    lines += [
        "vCenter: add a standard key provider at this address and port, check the server",
        "  certificate's SHA-256 above when trusting it, then make the KMS trust vCenter",
        "  (for example by uploading client.pem and client-key.pem as the KMS certificate",
        "  and private key).",
    ]
    return "\n".join(lines)


def _classify(names: Sequence[str], *, strict: bool) -> tuple[list[str], list[str]]:
    """Split names into DNS names (lowercase, IDNA-encoded) and IP addresses.

    With ``strict`` a name that cannot go in a certificate raises; otherwise (host
    names read from the system) it is skipped.
    """
    dns_names: list[str] = []
    ip_addresses: list[str] = []
    for raw in names:
        name = raw.strip().rstrip(".").lower()
        if not name:
            if strict:
                raise DataDirectoryError("an empty server name was configured")
            continue
        try:
            # A zone ("fe80::1%eth0") is local to this host; a certificate has none.
            ip_addresses.append(str(ipaddress.ip_address(name.partition("%")[0])))
            continue
        except ValueError:
            pass
        try:
            encoded = name.encode("idna").decode("ascii")
        except UnicodeError:
            if strict:
                raise DataDirectoryError(f"{raw!r} is not a valid DNS name") from None
            continue
        if not _is_dns_name(encoded):
            if strict:
                raise DataDirectoryError(f"{raw!r} is not a valid DNS name")
            continue
        dns_names.append(encoded)
    return _unique(dns_names), _unique(ip_addresses)


def _is_dns_name(name: str) -> bool:
    """Tell whether an ASCII name is a host name a certificate may carry (``*.`` allowed
    as the first label of a name with at least two more)."""
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    return len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in labels)


def _covers(dns_names: list[str], ip_addresses: list[str], name: str) -> bool:
    """Tell whether a SAN of ``dns_names`` and ``ip_addresses`` names ``name`` exactly."""
    try:
        return ipaddress.ip_address(name) in {ipaddress.ip_address(ip) for ip in ip_addresses}
    except ValueError:
        return name in dns_names


def _san_names(certificate: x509.Certificate) -> tuple[str, ...]:
    """The DNS names and IP addresses of a certificate's SAN, as strings."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names = [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    names += [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return tuple(names)


def _unique(items: list[str]) -> list[str]:
    """Drop repeats, keeping the first occurrence's place."""
    return list(dict.fromkeys(items))


def _short_hostname() -> str:
    """This host's name for certificate subjects (never empty)."""
    return socket.gethostname() or "localhost"


def _make_private_directory(path: FilePath[str], warnings: list[str]) -> None:
    """Create a directory only its owner can enter, or note that an existing one is open."""
    try:
        os.makedirs(path.path, mode=0o700)
    except FileExistsError:
        if not path.isdir():
            raise DataDirectoryError(f"{path.path} exists and is not a directory") from None
        mode = stat.S_IMODE(os.stat(path.path).st_mode)
        if mode & 0o077:
            warnings.append(
                f"{path.path} is open to other users (mode {mode:o}); run chmod 700 on it"
            )
        return
    # Still empty: the umask may have taken more than group/other bits away.
    os.chmod(path.path, 0o700)


def _read(path: FilePath[str]) -> bytes:
    """Read a file of the data directory, naming it when it cannot be read."""
    try:
        return path.getContent()
    except OSError as error:
        raise DataDirectoryError(f"cannot read {path.path}: {error.strerror}") from None


def _load_certificate(path: FilePath[str]) -> x509.Certificate:
    """Load a certificate file, naming the file when it is unreadable."""
    try:
        return pki.load_certificate(_read(path))
    except pki.PKIError as error:
        raise DataDirectoryError(f"{path.path}: {error}") from None


def _load_private_key(path: FilePath[str]) -> pki.PrivateKey:
    """Load a private key file, naming the file when it is unreadable."""
    try:
        return pki.load_private_key(_read(path))
    except pki.PKIError as error:
        raise DataDirectoryError(f"{path.path}: {error}") from None


def _python_str(value: str) -> str:
    """A Python string literal for ``value`` in double quotes (shell-quotes cleanly)."""
    return json.dumps(value, ensure_ascii=False)
