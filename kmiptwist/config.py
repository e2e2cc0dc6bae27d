# -*- test-case-name: tests.test_config -*-
"""The server's configuration: every setting with its default, from an INI file and flags.

One :class:`Configuration` value describes a whole server.  It is read from an INI file
(``etc/kmiptwist.conf.example`` lists every setting) and command-line flags override the
file.  Unknown sections or keys and bad values are errors that name the file, the
section and the key, so a typo never silently falls back to a default.

Relative paths in the file are relative to the file's directory (so a config file works
whatever the working directory of the service); relative paths given as flags or left
at their defaults are relative to the working directory.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from attrs import frozen

from kmiptwist.datadir import DataDirectory

__all__ = [
    "Configuration",
    "ConfigurationError",
    "SETTINGS",
    "Setting",
    "load_configuration",
    "parse_configuration",
]

MiB = 1 << 20


class ConfigurationError(ValueError):
    """A setting is unknown or has a value the server cannot use; the message says which."""


@frozen
class Configuration:
    """Every setting of one kmiptwist server.

    Paths left as ``None`` are derived from ``data_dir`` (see the ``*_path``
    properties); the TLS certificate and key default to the ones the data directory
    creates on first start.
    """

    data_dir: str = "./kmiptwist-data"
    interface: str = "0.0.0.0"
    port: int = 5696
    server_names: tuple[str, ...] = ()
    interop_testing: bool = False
    workers: int = 1
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    database: str | None = None
    root_key_file: str | None = None
    cache_max_entries: int = 10_000
    cache_ttl: float = 300.0
    cache_verify_on_get: bool = False
    cache_verify_interval: float = 1.0
    keyprotect_endpoint: str = "https://us-south.kms.cloud.ibm.com"
    keyprotect_token_url: str = "https://iam.cloud.ibm.com/identity/token"
    keyprotect_api_key: str | None = None
    keyprotect_ca_bundle: str | None = None
    keyprotect_timeout: float = 5.0
    keyprotect_deadline: float = 15.0
    keyprotect_max_retries: int = 4
    keyprotect_max_in_flight: int = 128
    max_message_size: int = MiB
    max_ttlv_depth: int = 32
    max_ttlv_items: int = 100_000
    max_connections: int = 10_000
    max_requests_in_flight: int = 32
    idle_timeout: float = 300.0
    handshake_timeout: float = 30.0
    log_json_file: str | None = None
    log_json_level: str = "info"
    admin_socket: str | None = None
    admin_tls_port: int = 0
    admin_tls_interface: str = "127.0.0.1"
    admin_tls_certificate: str | None = None
    admin_tls_private_key: str | None = None
    admin_client_ca: str | None = None
    client_validity_days: int = 825
    audit_file: str | None = None
    audit_sync_interval: float = 0.01

    @property
    def database_path(self) -> str:
        """The sqlite database file: ``database``, else the data directory's."""
        if self.database is not None:
            return self.database
        return DataDirectory(self.data_dir).database_path.path

    @property
    def root_key_path(self) -> str:
        """The local root key file: ``root_key_file``, else the data directory's."""
        if self.root_key_file is not None:
            return self.root_key_file
        return DataDirectory(self.data_dir).root_key_path.path

    @property
    def admin_socket_path(self) -> str | None:
        """The admin API's unix socket: ``admin_socket``, else ``<data_dir>/admin.sock``;
        None when it is turned off (``socket = off``)."""
        if self.admin_socket is None:
            return DataDirectory(self.data_dir).path.child("admin.sock").path
        if self.admin_socket.lower() in ("off", "none"):
            return None
        return self.admin_socket

    @property
    def audit_path(self) -> str:
        """The audit log: ``audit_file``, else ``<data_dir>/audit.log``."""
        if self.audit_file is not None:
            return self.audit_file
        return DataDirectory(self.data_dir).path.child("audit.log").path

    def replace(self, **changes: Any) -> Configuration:
        """A copy with some settings changed (used for command-line overrides)."""
        return attrs.evolve(self, **changes)


# -- value parsers: text from the file or a flag -> the setting's value ---------------


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""), 10)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise ValueError(f"{value} is out of range; it must be {bound}")
        return value

    return parse


_SIZE_SUFFIXES = {"k": 1 << 10, "kib": 1 << 10, "m": MiB, "mib": MiB, "g": 1 << 30, "gib": 1 << 30}


def _size(minimum: int) -> Callable[[str], int]:
    """A byte count; accepts a plain number or a ``KiB``/``MiB``/``GiB`` suffix."""

    def parse(text: str) -> int:
        cleaned = text.strip().lower().replace("_", "").replace(" ", "")
        multiplier = 1
        for suffix in sorted(_SIZE_SUFFIXES, key=len, reverse=True):
            if cleaned.endswith(suffix):
                multiplier = _SIZE_SUFFIXES[suffix]
                cleaned = cleaned[: -len(suffix)]
                break
        else:
            if cleaned.endswith("b"):
                cleaned = cleaned[:-1]
        try:
            value = int(cleaned, 10) * multiplier
        except ValueError:
            raise ValueError(f"{text!r} is not a size in bytes (e.g. 1048576 or 1MiB)") from None
        if value < minimum:
            raise ValueError(f"{value} bytes is too small; it must be at least {minimum}")
        return value

    return parse


def _seconds(minimum: float, allow_zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number of seconds") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{text!r} is not a finite number of seconds")
        if allow_zero and value == 0:
            return value
        if value < minimum:
            raise ValueError(f"{value} seconds is too short; it must be at least {minimum}")
        return value

    return parse


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _url(text: str) -> str:
    """An http(s) URL (https except to loopback, checked when the server starts)."""
    from urllib.parse import urlsplit

    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an https URL")
    return value


def _api_key_reference(text: str) -> str | None:
    """Where an API key is read: file:/path or env:NAME; never the key itself."""
    value = text.strip()
    if not value:
        return None
    kind, _, target = value.partition(":")
    if kind not in ("file", "env") or not target:
        raise ValueError(
            "give where the API key is read, file:/path or env:VARIABLE, never the key itself"
        )
    return value


def _text(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("an empty value is not allowed here")
    return value


def _optional_path(text: str) -> str | None:
    value = text.strip()
    return value or None


def _names(text: str) -> tuple[str, ...]:
    """A list of names separated by commas and/or whitespace."""
    return tuple(name for name in text.replace(",", " ").split() if name)


_LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


def _log_level(text: str) -> str:
    value = text.strip().lower()
    if value == "warning":
        value = "warn"
    if value not in _LOG_LEVELS:
        raise ValueError(f"{text!r} is not a log level; use one of {', '.join(_LOG_LEVELS)}")
    return value


@frozen
class Setting:
    """How one setting appears in the INI file and which field it fills."""

    section: str
    key: str
    field: str
    parse: Callable[[str], Any]
    is_path: bool = False
    help: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "kmip",
        "data_dir",
        "data_dir",
        _text,
        True,
        "Directory of the embedded default: CA, server certificate, database, root key.",
    ),
    Setting(
        "kmip",
        "interface",
        "interface",
        _text,
        False,
        "Address the KMIP listener binds ('::' for IPv6 and, on most systems, IPv4).",
    ),
    Setting("kmip", "port", "port", _integer(0, 65535), False, "KMIP port (5696 is IANA's)."),
    Setting(
        "kmip",
        "server_names",
        "server_names",
        _names,
        False,
        "Extra DNS names / IP addresses for the server certificate's SAN.",
    ),
    Setting(
        "kmip",
        "workers",
        "workers",
        _integer(1, 64),
        False,
        "Processes serving the KMIP port, sharing the store (one per core).",
    ),
    Setting(
        "kmip",
        "interop_testing",
        "interop_testing",
        _boolean,
        False,
        "Answer the KMIP 2.x Interop operation of the OASIS test cases (never in production).",
    ),
    Setting(
        "tls",
        "certificate",
        "tls_certificate",
        _optional_path,
        True,
        "Server certificate (PEM, chain after the leaf); default: the data directory's.",
    ),
    Setting(
        "tls",
        "private_key",
        "tls_private_key",
        _optional_path,
        True,
        "Server private key (PEM); default: the data directory's.",
    ),
    Setting(
        "store",
        "database",
        "database",
        _optional_path,
        True,
        "sqlite database file; default: <data_dir>/kmiptwist.sqlite3.",
    ),
    Setting(
        "wrapping",
        "root_key_file",
        "root_key_file",
        _optional_path,
        True,
        "Local root key file; default: <data_dir>/root-key/local-root-key.",
    ),
    Setting(
        "cache",
        "max_entries",
        "cache_max_entries",
        _integer(0),
        False,
        "Unwrapped key materials kept in memory; 0 turns the cache off.",
    ),
    Setting(
        "cache",
        "ttl",
        "cache_ttl",
        _seconds(0, allow_zero=True),
        False,
        "Seconds an unwrapped material stays cached; 0 turns the cache off.",
    ),
    Setting(
        "cache",
        "verify_on_get",
        "cache_verify_on_get",
        _boolean,
        False,
        "Check with Key Protect that the root key is usable on every Get, cached or not.",
    ),
    Setting(
        "cache",
        "verify_interval",
        "cache_verify_interval",
        _seconds(0, allow_zero=True),
        False,
        "With verify_on_get: seconds one root key state check stands for; 0: every Get asks.",
    ),
    Setting(
        "keyprotect",
        "endpoint",
        "keyprotect_endpoint",
        _url,
        False,
        "Default Key Protect endpoint of tenants bound to Key Protect (public, private, regional).",
    ),
    Setting(
        "keyprotect",
        "token_url",
        "keyprotect_token_url",
        _url,
        False,
        "Default IAM token URL (e.g. https://private.iam.cloud.ibm.com/identity/token).",
    ),
    Setting(
        "keyprotect",
        "api_key",
        "keyprotect_api_key",
        _api_key_reference,
        False,
        "Default place of the service ID's API key: file:/path or env:NAME.",
    ),
    Setting(
        "keyprotect",
        "ca_bundle",
        "keyprotect_ca_bundle",
        _optional_path,
        True,
        "CA certificates (PEM) that sign Key Protect's and IAM's; default: the system's.",
    ),
    Setting(
        "keyprotect",
        "timeout",
        "keyprotect_timeout",
        _seconds(0.001),
        False,
        "Seconds one Key Protect or IAM attempt may take.",
    ),
    Setting(
        "keyprotect",
        "deadline",
        "keyprotect_deadline",
        _seconds(0.001),
        False,
        "Seconds one call may take with its retries; the KMIP answer comes within it.",
    ),
    Setting(
        "keyprotect",
        "max_retries",
        "keyprotect_max_retries",
        _integer(0, 20),
        False,
        "Retries of a call on no answer, 429 or 5xx (exponential backoff with jitter).",
    ),
    Setting(
        "keyprotect",
        "max_in_flight",
        "keyprotect_max_in_flight",
        _integer(1, 10_000),
        False,
        "Key Protect calls in flight at once, for the whole server.",
    ),
    Setting(
        "limits",
        "max_message_size",
        "max_message_size",
        _size(64),
        False,
        "Largest KMIP message accepted, in bytes (suffixes KiB/MiB allowed).",
    ),
    Setting(
        "limits",
        "max_ttlv_depth",
        "max_ttlv_depth",
        _integer(4, 1000),
        False,
        "Deepest nesting of TTLV structures accepted.",
    ),
    Setting(
        "limits",
        "max_ttlv_items",
        "max_ttlv_items",
        _integer(16),
        False,
        "Most TTLV items accepted in one message.",
    ),
    Setting(
        "limits",
        "max_connections",
        "max_connections",
        _integer(1),
        False,
        "Open KMIP connections; connections past it are closed at once.",
    ),
    Setting(
        "limits",
        "max_requests_in_flight",
        "max_requests_in_flight",
        _integer(1, 10_000),
        False,
        "Pipelined requests processed at once per connection; reading pauses past it.",
    ),
    Setting(
        "limits",
        "idle_timeout",
        "idle_timeout",
        _seconds(0.001),
        False,
        "Seconds a connection may sit without a request before it is closed.",
    ),
    Setting(
        "limits",
        "handshake_timeout",
        "handshake_timeout",
        _seconds(0.001),
        False,
        "Seconds a client has to complete the TLS handshake.",
    ),
    Setting(
        "log",
        "json_file",
        "log_json_file",
        _optional_path,
        True,
        "Also write every log event as one JSON line to this file; default: off.",
    ),
    Setting(
        "log",
        "json_level",
        "log_json_level",
        _log_level,
        False,
        "Lowest level written to json_file: debug, info, warn, error or critical.",
    ),
    Setting(
        "admin",
        "socket",
        "admin_socket",
        _optional_path,
        True,
        "Unix socket of the admin API (mode 0600); default: <data_dir>/admin.sock; 'off' to disable.",
    ),
    Setting(
        "admin",
        "tls_port",
        "admin_tls_port",
        _integer(0, 65535),
        False,
        "Also serve the admin API over TCP with mutual TLS on this port; 0 (default): off.",
    ),
    Setting(
        "admin",
        "tls_interface",
        "admin_tls_interface",
        _text,
        False,
        "Address the admin TLS listener binds; default 127.0.0.1.",
    ),
    Setting(
        "admin",
        "tls_certificate",
        "admin_tls_certificate",
        _optional_path,
        True,
        "Admin listener certificate (PEM, chain after the leaf); default: the KMIP server's.",
    ),
    Setting(
        "admin",
        "tls_private_key",
        "admin_tls_private_key",
        _optional_path,
        True,
        "Admin listener private key (PEM); default: the KMIP server's.",
    ),
    Setting(
        "admin",
        "client_ca",
        "admin_client_ca",
        _optional_path,
        True,
        "CA certificates (PEM) of the admin client certificates; required with tls_port.",
    ),
    Setting(
        "admin",
        "client_validity_days",
        "client_validity_days",
        _integer(1, 3650),
        False,
        "Default validity of client certificates the built-in CA issues or signs, in days.",
    ),
    Setting(
        "audit",
        "file",
        "audit_file",
        _optional_path,
        True,
        "Audit log (hash-chained JSON lines, mode 0600); default: <data_dir>/audit.log.",
    ),
    Setting(
        "audit",
        "sync_interval",
        "audit_sync_interval",
        _seconds(0, allow_zero=True),
        False,
        "Least time between two fsyncs of the audit log; KMIP records reach disk within it.",
    ),
)
"""Every setting: the INI section and key, the :class:`Configuration` field it sets."""

_BY_FIELD = {setting.field: setting for setting in SETTINGS}
_BY_SECTION: dict[str, dict[str, Setting]] = {}
for _setting in SETTINGS:
    _BY_SECTION.setdefault(_setting.section, {})[_setting.key] = _setting
del _setting


def _resolve(path: str | None, base: str) -> str | None:
    if path is None:
        return None
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def parse_configuration(text: str, source: str = "<config>", base_dir: str = ".") -> dict[str, Any]:
    """Parse INI ``text`` into field values; relative paths are taken from ``base_dir``.

    Raises :class:`ConfigurationError` naming ``source``, the section and the key for
    an unknown section, an unknown key, a repeated key or a bad value.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=True, default_section="\0")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(text, source=source)
    except configparser.Error as error:
        raise ConfigurationError(f"{source}: cannot read the file: {error}") from None
    values: dict[str, Any] = {}
    for section in parser.sections():
        known = _BY_SECTION.get(section)
        if known is None:
            raise ConfigurationError(
                f"{source}: unknown section [{section}]; the sections are "
                + ", ".join(f"[{name}]" for name in _BY_SECTION)
            )
        for key, raw in parser.items(section):
            setting = known.get(key)
            if setting is None:
                raise ConfigurationError(
                    f"{source}: unknown setting {key!r} in [{section}]; it takes "
                    + ", ".join(known)
                )
            try:
                value = setting.parse(raw)
            except ValueError as error:
                raise ConfigurationError(f"{source}: [{section}] {key}: {error}") from None
            if setting.is_path:
                value = _resolve(value, base_dir)
            values[setting.field] = value
    return values


def _check(configuration: Configuration) -> Configuration:
    """Refuse combinations of settings that cannot work together."""
    if (configuration.tls_certificate is None) != (configuration.tls_private_key is None):
        raise ConfigurationError(
            "[tls] certificate and private_key must be set together (or both left to the "
            "data directory's)"
        )
    if (configuration.admin_tls_certificate is None) != (
        configuration.admin_tls_private_key is None
    ):
        raise ConfigurationError(
            "[admin] tls_certificate and tls_private_key must be set together (or both left "
            "to the KMIP server's)"
        )
    if configuration.admin_tls_port:
        if configuration.admin_client_ca is None:
            raise ConfigurationError(
                "[admin] tls_port needs client_ca: the admin API over TCP accepts only "
                "clients whose certificates that CA issued"
            )
        if configuration.admin_tls_port == configuration.port:
            raise ConfigurationError(
                f"[admin] tls_port {configuration.admin_tls_port} is the KMIP port; the admin "
                "API never shares the KMIP listener"
            )
    return configuration


def load_configuration(
    path: str | None = None, overrides: Mapping[str, str | None] | None = None
) -> Configuration:
    """Read the file at ``path`` (if any), then apply command-line ``overrides``.

    ``overrides`` maps :class:`Configuration` field names to the flag's text, parsed
    like the file's; ``None`` values (flag not given) are skipped.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as config_file:
                text = config_file.read()
        except OSError as error:
            raise ConfigurationError(
                f"cannot read configuration file {path}: {error.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"configuration file {path} is not UTF-8 text") from None
        values.update(
            parse_configuration(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))
        )
    for field, raw in (overrides or {}).items():
        if raw is None:
            continue
        setting = _BY_FIELD.get(field)
        if setting is None:
            raise ConfigurationError(f"unknown setting {field!r}")
        try:
            value = setting.parse(raw)
        except ValueError as error:
            raise ConfigurationError(f"{field.replace('_', '-')}: {error}") from None
        if setting.is_path and value is not None:
            value = os.path.expanduser(value)
        values[field] = value
    return _check(Configuration(**values))
