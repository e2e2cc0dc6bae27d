"""The ``kmiptwist`` operator command: tenants and their client certificates.

This first form works on the data directory's database directly (sqlite lets it
run beside a live server: a certificate added here gets service on its next
connection).  The admin HTTP API will become its transport; the commands stay.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from kmiptwist import pki
from kmiptwist.datadir import DataDirectory
from kmiptwist.interfaces import ClientCertificate, Tenant

__all__ = ["main"]


class CommandError(Exception):
    """A command that cannot be carried out; its message is for the operator."""


def _certificate_record(certificate: x509.Certificate, tenant: str) -> ClientCertificate:
    return ClientCertificate(
        fingerprint=pki.fingerprint(certificate),
        tenant=tenant,
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        not_after=int(certificate.not_valid_after_utc.timestamp()),
        added=int(time.time()),
    )


async def _run(arguments: argparse.Namespace, store: Any, data: DataDirectory) -> Any:
    """Carry out one command against a running store; return what to print."""
    from kmiptwist.store.sqlite import StoreError

    command = (arguments.noun, arguments.verb)
    try:
        if command == ("tenant", "add"):
            await store.add_tenant(Tenant(arguments.name, "local", "default", int(time.time())))
            return {"tenant": arguments.name, "created": True}
        if command == ("tenant", "list"):
            return [
                {"name": t.name, "root_key_kind": t.root_key_kind, "root_key_id": t.root_key_id}
                for t in await store.list_tenants()
            ]
        if command == ("client", "issue"):
            if await store.get_tenant(arguments.tenant) is None:
                raise CommandError(f"tenant {arguments.tenant!r} does not exist")
            ca_certificate, ca_key = data.certificate_authority()
            certificate, key = pki.issue_client_certificate(
                ca_certificate,
                ca_key,
                arguments.common_name or f"kmip-client-{arguments.tenant}",
                arguments.validity_days,
            )
            await store.add_certificate(_certificate_record(certificate, arguments.tenant))
            os.makedirs(arguments.out, mode=0o700, exist_ok=True)
            pki.write_public(
                os.path.join(arguments.out, "client.pem"), pki.certificate_pem(certificate)
            )
            pki.write_private_key(os.path.join(arguments.out, "client-key.pem"), key)
            pki.write_public(
                os.path.join(arguments.out, "ca.pem"), pki.certificate_pem(ca_certificate)
            )
            return {
                "tenant": arguments.tenant,
                "fingerprint": pki.fingerprint(certificate),
                "out": arguments.out,
            }
        if command == ("client", "add"):
            with open(arguments.certificate, "rb") as handle:
                try:
                    certificate = pki.load_certificate(handle.read())
                except pki.PKIError as error:
                    raise CommandError(f"{arguments.certificate}: {error}") from None
            record = _certificate_record(certificate, arguments.tenant)
            await store.add_certificate(record)
            return {"tenant": arguments.tenant, "fingerprint": record.fingerprint}
        if command == ("client", "approve"):
            pending = {p.fingerprint: p for p in await store.list_pending()}
            found = pending.get(arguments.fingerprint)
            if found is None:
                raise CommandError(
                    f"no pending certificate has fingerprint {arguments.fingerprint}"
                )
            certificate = pki.load_certificate(found.certificate_pem.encode())
            await store.add_certificate(_certificate_record(certificate, arguments.tenant))
            return {
                "tenant": arguments.tenant,
                "fingerprint": arguments.fingerprint,
                "approved": True,
            }
        if command == ("client", "list"):
            return [
                {
                    "fingerprint": c.fingerprint,
                    "subject": c.subject,
                    "issuer": c.issuer,
                    "not_after": c.not_after,
                }
                for c in await store.list_certificates(arguments.tenant)
            ]
        if command == ("client", "remove"):
            if not await store.remove_certificate(arguments.fingerprint):
                raise CommandError(
                    f"no registered certificate has fingerprint {arguments.fingerprint}"
                )
            return {"fingerprint": arguments.fingerprint, "removed": True}
        if command == ("client", "pending"):
            return [
                {
                    "fingerprint": p.fingerprint,
                    "subject": p.subject,
                    "issuer": p.issuer,
                    "first_seen": p.first_seen,
                    "last_seen": p.last_seen,
                    "address": p.address,
                    "count": p.count,
                }
                for p in await store.list_pending()
            ]
    except StoreError as error:
        raise CommandError(str(error)) from None
    raise CommandError(f"unknown command {' '.join(command)}")


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    rows = result if isinstance(result, list) else [result]
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="kmiptwist", description=__doc__.splitlines()[0])
    top.add_argument("--data-dir", default="./kmiptwist-data", help="the server's data directory")
    top.add_argument("--json", action="store_true", help="print JSON for scripts")
    nouns = top.add_subparsers(dest="noun", required=True)

    tenant = nouns.add_parser("tenant", help="tenants").add_subparsers(dest="verb", required=True)
    tenant.add_parser("add", help="create a tenant (local root key)").add_argument("name")
    tenant.add_parser("list", help="list tenants")

    client = nouns.add_parser("client", help="client certificates").add_subparsers(
        dest="verb", required=True
    )
    issue = client.add_parser("issue", help="issue a certificate and key from the built-in CA")
    issue.add_argument("--tenant", required=True)
    issue.add_argument(
        "--out", required=True, help="directory for client.pem, client-key.pem, ca.pem"
    )
    issue.add_argument("--common-name")
    issue.add_argument("--validity-days", type=int, default=825)
    add = client.add_parser("add", help="register a PEM certificate to a tenant")
    add.add_argument("--tenant", required=True)
    add.add_argument("certificate")
    approve = client.add_parser("approve", help="register a pending certificate to a tenant")
    approve.add_argument("fingerprint")
    approve.add_argument("--tenant", required=True)
    client.add_parser("list", help="a tenant's certificates").add_argument(
        "--tenant", required=True
    )
    client.add_parser("remove", help="unregister a certificate").add_argument("fingerprint")
    client.add_parser("pending", help="certificates that tried to connect unregistered")
    for sub in (tenant, client):
        for choice in sub.choices.values():
            choice.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; exit 0 on success, 1 on a refused command, 2 on bad usage."""
    arguments = parser().parse_args(argv)
    data = DataDirectory(arguments.data_dir)
    database = data.database_path.path
    if not os.path.exists(database):
        print(f"kmiptwist: no database at {database}; start the server once first", file=sys.stderr)
        return 1

    from twisted.internet import task

    from kmiptwist.store.sqlite import SQLiteStore

    outcome: dict[str, Any] = {}

    async def work(reactor: Any) -> None:
        store = SQLiteStore(database, reactor)
        store.startService()
        try:
            outcome["result"] = await _run(arguments, store, data)
        except CommandError as error:
            outcome["error"] = str(error)
        finally:
            await store.stopService()

    from twisted.internet.defer import Deferred

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(work(reactor)))
    except SystemExit as exit_status:
        if exit_status.code not in (0, None):
            return int(exit_status.code)  # type: ignore[arg-type]
    if "error" in outcome:
        print(f"kmiptwist: {outcome['error']}", file=sys.stderr)
        return 1
    _print(outcome["result"], arguments.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
