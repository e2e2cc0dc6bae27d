# -*- test-case-name: tests.test_admin_service -*-
"""Wire the admin API into a running server: its context, listeners and TLS settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509

from kmiptwist import pki
from kmiptwist.admin.context import AdminContext
from kmiptwist.admin.listener import AdminListeners, AdminTLSOptions
from kmiptwist.config import Configuration
from kmiptwist.datadir import DataDirectory

__all__ = ["make_admin"]


def _save_pair(
    certificate_path: str, key_path: str, certificate: bytes, key: pki.PrivateKey
) -> None:
    """Replace a certificate and key file pair; on failure the old pair is put back."""
    with open(key_path, "rb") as old_key_file:
        old_key = old_key_file.read()
    pki.write_secret(key_path, pki.private_key_pem(key), replace=True)
    try:
        pki.write_public(certificate_path, certificate)
    except OSError:
        pki.write_secret(key_path, old_key, replace=True)
        raise


def _credentials_files(
    configuration: Configuration, directory: DataDirectory
) -> tuple[
    Callable[[], tuple[list[x509.Certificate], pki.PrivateKey]],
    Callable[[list[x509.Certificate], pki.PrivateKey], str | None],
]:
    """Reload and save the server certificate where the server reads it at start.

    With ``[tls]`` files configured, those files.  With the data directory's own
    certificate, its files, but only for a certificate its CA issued (the data
    directory reissues any other at the next start); another is used until restart.
    """
    certificate_path = configuration.tls_certificate
    key_path = configuration.tls_private_key

    def reload() -> tuple[list[x509.Certificate], pki.PrivateKey]:
        if certificate_path is not None and key_path is not None:
            with open(certificate_path, "rb") as certificate_file:
                chain = pki.load_certificates(certificate_file.read())
            with open(key_path, "rb") as key_file:
                return chain, pki.load_private_key(key_file.read())
        certificate, key = directory.server_credentials()
        return [certificate], key

    def save(chain: list[x509.Certificate], key: pki.PrivateKey) -> str | None:
        if certificate_path is not None and key_path is not None:
            _save_pair(certificate_path, key_path, pki.certificates_pem(chain), key)
            return certificate_path
        ca_certificate = pki.load_certificate(directory.ca_certificate_path.getContent())
        if len(chain) > 1 or not pki.is_issued_by(chain[0], ca_certificate):
            return None
        _save_pair(
            directory.server_certificate_path.path,
            directory.server_private_key_path.path,
            pki.certificate_pem(chain[0]),
            key,
        )
        return directory.server_certificate_path.path

    return reload, save


def _admin_tls(configuration: Configuration, directory: DataDirectory) -> AdminTLSOptions | None:
    """The admin listener's TLS settings, or None when it listens on the socket only."""
    if not configuration.admin_tls_port:
        return None
    assert configuration.admin_client_ca is not None
    if configuration.admin_tls_certificate is not None:
        assert configuration.admin_tls_private_key is not None
        with open(configuration.admin_tls_certificate, "rb") as certificate_file:
            chain = pki.load_certificates(certificate_file.read())
        with open(configuration.admin_tls_private_key, "rb") as key_file:
            key = pki.load_private_key(key_file.read())
    else:
        chain, key = _credentials_files(configuration, directory)[0]()
    return AdminTLSOptions(chain[0], key, configuration.admin_client_ca, chain[1:])


def make_admin(
    configuration: Configuration,
    service: Any,
    engine: Any,
    audit: Any,
    reactor: Any,
    check_binding: Callable[[str, dict[str, Any]], Mapping[str, Any]] | None = None,
) -> AdminListeners:
    """The admin listeners of ``service`` (a :class:`kmiptwist.service.KMIPService`).

    Raises OSError or PKIError (the caller reports them) when the admin TLS files
    cannot be used.
    """
    from twisted.internet.threads import deferToThreadPool

    directory = DataDirectory(configuration.data_dir)
    reload, save = _credentials_files(configuration, directory)
    context = AdminContext(
        store=service.store,
        engine=engine,
        connections=service.factory,
        audit=audit,
        clock=reactor,
        tls_options=service.tls_options,
        certificate_authority=directory.certificate_authority,
        ca_certificate=lambda: pki.load_certificate(directory.ca_certificate_path.getContent()),
        client_validity_days=configuration.client_validity_days,
        server_credentials=reload,
        save_server_credentials=save,
        readiness=lambda: {
            "store": bool(service.store.running),
            "kmip_listener": service.port is not None,
        },
        check_binding=check_binding,
        run_in_thread=lambda function: deferToThreadPool(
            reactor, reactor.getThreadPool(), function
        ),
    )
    return AdminListeners(
        reactor,
        context,
        configuration.admin_socket_path,
        configuration.admin_tls_port,
        configuration.admin_tls_interface,
        _admin_tls(configuration, directory),
    )
