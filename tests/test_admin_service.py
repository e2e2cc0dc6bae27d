"""Tests for the admin API's listeners on real sockets: the unix socket (mode 0600, the
caller named by uid, long paths) and mutual TLS (admin client certificates only).
"""

from __future__ import annotations

import os
import stat
from typing import Any, cast

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from kmiptwist import pki
from kmiptwist.admin.client import AdminClient, AdminUnavailable
from kmiptwist.admin.listener import AdminListeners, AdminTLSOptions
from kmiptwist.config import ConfigurationError, load_configuration
from kmiptwist.testing.admin import AdminHarness


def _reactor() -> Any:
    from twisted.internet import reactor

    return cast(Any, reactor)


class ListenerTests(TestCase):
    """The admin API as an operator's tools reach it."""

    def setUp(self) -> None:
        self.admin = AdminHarness(self)
        # The harness names every caller "admin:test"; the listeners name them for real.
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    async def listen(self, **options: Any) -> AdminListeners:
        listeners = AdminListeners(_reactor(), self.admin.context, **options)
        await listeners.listen()
        self.addCleanup(listeners.stopService)
        return listeners

    async def test_unix_socket(self) -> None:
        """The socket is 0600, answers the API, and the audit names the caller's uid;
        a path longer than a unix address holds still works."""
        long_directory = os.path.join(self.directory, "d" * 60, "e" * 60)
        os.makedirs(long_directory)
        path = os.path.join(long_directory, "admin.sock")
        self.assertGreater(len(path), 107)
        await self.listen(socket_path=path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        client = AdminClient(socket_path=path)
        answer = await deferToThread(client.request, "POST", "/api/v1/tenants", {"name": "alpha"})
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(
            self.admin.audit.records[-1]["actor"].split("(")[0], f"admin:uid={os.getuid()}"
        )

    async def test_mutual_tls(self) -> None:
        """Over TCP only a client with a certificate from the admin CA gets in, and the
        audit names it by fingerprint."""
        admin_ca, admin_ca_key = pki.create_ca("admin CA", key_kind="ec")
        operator, operator_key = pki.issue_client_certificate(
            admin_ca, admin_ca_key, "operator", key_kind="ec"
        )
        server_certificate = self.admin.tls_options.certificate
        files = {
            "ca.pem": pki.certificate_pem(self.admin.ca_certificate),
            "admin-ca.pem": pki.certificate_pem(admin_ca),
            "operator.pem": pki.certificate_pem(operator),
            "operator-key.pem": pki.private_key_pem(operator_key),
        }
        for name, data in files.items():
            with open(os.path.join(self.directory, name), "wb") as handle:
                handle.write(data)
        options = AdminTLSOptions(
            server_certificate, self.admin.server_key, os.path.join(self.directory, "admin-ca.pem")
        )
        listeners = await self.listen(socket_path=None, tls_port=0, tls_options=options)
        port = listeners.ports[0].getHost().port

        def client(with_certificate: bool) -> AdminClient:
            return AdminClient(
                url=f"https://localhost:{port}",
                certificate=os.path.join(self.directory, "operator.pem")
                if with_certificate
                else None,
                private_key=os.path.join(self.directory, "operator-key.pem")
                if with_certificate
                else None,
                ca_certificate=os.path.join(self.directory, "ca.pem"),
            )

        answer = await deferToThread(
            client(True).request, "POST", "/api/v1/tenants", {"name": "alpha"}
        )
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(
            self.admin.audit.records[-1]["actor"], f"admin:cert:{pki.fingerprint(operator)}"
        )
        with self.assertRaises(AdminUnavailable):
            await deferToThread(client(False).request, "GET", "/api/v1/tenants")

    def test_configuration(self) -> None:
        """The admin TLS listener needs an admin CA and never takes the KMIP port; the
        socket defaults to the data directory and can be turned off."""
        self.assertRaises(ConfigurationError, load_configuration, None, {"admin_tls_port": "8443"})
        self.assertRaises(
            ConfigurationError,
            load_configuration,
            None,
            {"admin_tls_port": "5696", "admin_client_ca": "ca.pem"},
        )
        defaults = load_configuration(None, {"data_dir": "/var/lib/kmiptwist"})
        self.assertEqual(defaults.admin_socket_path, "/var/lib/kmiptwist/admin.sock")
        self.assertEqual(defaults.audit_path, "/var/lib/kmiptwist/audit.log")
        self.assertIsNone(load_configuration(None, {"admin_socket": "off"}).admin_socket_path)
