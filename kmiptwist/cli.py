# -*- test-case-name: tests.test_cli -*-
"""The ``kmiptwist`` operator command: tenants, certificates, CA, objects, server, audit.

Every command but ``audit verify`` is a request to the running server's admin API,
over the unix socket in the data directory (``--data-dir``, or ``--socket``) or over
TCP with mutual TLS (``--url`` with ``--cert``/``--key``/``--ca``).  Tables for
people, ``--json`` for scripts.  What each command does is in
:mod:`kmiptwist.commands`; this module is the command line and the output.

Exit status: 0 done; 1 refused (the message says why) or the check failed (``audit
verify``, ``server health``); 2 bad usage; 3 the server cannot be reached; 4 the
server failed (see its log).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from kmiptwist.admin.client import AdminClient, AdminUnavailable, Requester
from kmiptwist.commands import (
    COMMANDS,
    LOCAL_COMMANDS,
    OK,
    UNREACHABLE,
    USAGE,
    CommandFailed,
    NotReady,
    Raw,
)

__all__ = ["main", "parser"]


# -- output -----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _print(result: Any, as_json: bool) -> None:
    """JSON for scripts; a table (lists) or ``key: value`` lines (one resource) for people."""
    if isinstance(result, Raw):
        if as_json:
            print(json.dumps(str(result)))
        else:
            sys.stdout.write(str(result))
        return
    if as_json:
        print(json.dumps(result, indent=2))
        return
    if isinstance(result, dict):
        width = max((len(key) for key in result), default=0)
        for key, value in result.items():
            if key == "attributes" and isinstance(value, dict):
                print(f"{key}:")
                for name, values in value.items():
                    print(f"  {name}: {', '.join(_cell(v) for v in values)}")
                continue
            print(f"{key.ljust(width)}  {_cell(value)}")
        return
    rows = list(result)
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns).rstrip())


# -- the command line ---------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The command line: ``kmiptwist [connection options] NOUN VERB ...``."""
    top = argparse.ArgumentParser(
        prog="kmiptwist",
        description="Manage a running kmiptwist server through its admin API.",
        epilog="Exit status: 0 done, 1 refused or check failed, 2 bad usage, "
        "3 server unreachable, 4 server error.",
    )
    top.add_argument(
        "--data-dir",
        default="./kmiptwist-data",
        help="the server's data directory (its admin socket is admin.sock in it)",
    )
    top.add_argument("--socket", help="the admin socket, when not in the data directory")
    top.add_argument("--url", help="the admin API over mutual TLS, https://host:port")
    top.add_argument("--cert", help="admin client certificate (PEM) for --url")
    top.add_argument("--key", help="admin client private key (PEM) for --url")
    top.add_argument("--ca", help="CA certificate (PEM) that issued the server's, for --url")
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    top.add_argument("--json", action="store_true", help="print JSON for scripts")
    nouns = top.add_subparsers(dest="noun", required=True, metavar="NOUN")

    def verbs(name: str, help: str) -> Any:
        return nouns.add_parser(name, help=help).add_subparsers(
            dest="verb", required=True, metavar="VERB"
        )

    def verb(group: Any, name: str, help: str) -> argparse.ArgumentParser:
        found: argparse.ArgumentParser = group.add_parser(name, help=help, parents=[json_flag])
        return found

    tenant = verbs("tenant", "tenants and their root keys")
    add = verb(tenant, "add", "create a tenant (local root key unless Key Protect is named)")
    bind = verb(tenant, "bind", "bind a tenant to a Key Protect root key (checked first)")
    for command in (add, bind):
        required = command is bind
        command.add_argument("name")
        command.add_argument(
            "--root-key-id", required=required, help="the Key Protect root key's ID or alias"
        )
        command.add_argument(
            "--keyprotect-instance", required=required, help="the Key Protect instance GUID"
        )
        command.add_argument(
            "--endpoint", help="Key Protect endpoint (default: [keyprotect] endpoint)"
        )
        command.add_argument("--token-url", help="IAM token URL (default: [keyprotect] token_url)")
        command.add_argument("--api-key", help="where the API key is read: file:/path or env:NAME")
        command.add_argument("--api-key-file", help="the file the server reads the API key from")
        command.add_argument("--api-key-env", help="the server's environment variable with it")
        command.add_argument("--ca-bundle", help="CA bundle (PEM) for Key Protect's certificates")
        command.add_argument("--key-ring", help="the root key's key ring")
    verb(tenant, "rewrap", "rewrap a tenant's keys by its root key's latest version").add_argument(
        "name"
    )
    verb(tenant, "list", "list tenants")
    verb(tenant, "show", "a tenant and its counts").add_argument("name")
    delete = verb(tenant, "delete", "delete a tenant (refused while it has objects)")
    delete.add_argument("name")
    delete.add_argument(
        "--force", action="store_true", help="destroy its objects too (crypto-shredding)"
    )
    delete.add_argument("--yes", action="store_true", help="confirm --force without asking")

    cert = verbs("cert", "client certificates, trusted CAs, pending certificates")
    for name, help in (
        ("add", "pin a client certificate (PEM file) to a tenant"),
        ("add-ca", "trust a CA (PEM file): certificates it signed belong to the tenant"),
    ):
        command = verb(cert, name, help)
        command.add_argument("--tenant", required=True)
        command.add_argument("certificate", help="PEM file")
    verb(cert, "list", "a tenant's certificates and trusted CAs").add_argument(
        "--tenant", required=True
    )
    remove = verb(cert, "remove", "remove a certificate or trusted CA (cuts its clients off)")
    remove.add_argument("fingerprint")
    remove.add_argument("--tenant", required=True)
    verb(cert, "pending", "certificates that tried KMIP unregistered")
    approve = verb(cert, "approve", "register a pending certificate to a tenant")
    approve.add_argument("fingerprint")
    approve.add_argument("--tenant", required=True)
    verb(cert, "dismiss", "forget a pending certificate").add_argument("fingerprint")

    ca = verbs("ca", "the built-in certificate authority")
    issue = verb(ca, "issue", "issue a client certificate + key (registered to the tenant)")
    issue.add_argument("--tenant", required=True)
    issue.add_argument(
        "--out", required=True, help="directory for client.pem, client-key.pem, ca.pem"
    )
    issue.add_argument("--common-name")
    issue.add_argument("--validity-days", type=int)
    issue.add_argument("--key-type", choices=("rsa", "ec"), default="rsa")
    issue.add_argument(
        "--pkcs12", action="store_true", help="also write client.p12 (asks a passphrase)"
    )
    issue.add_argument("--pkcs12-passphrase-file", help="read the PKCS#12 passphrase from a file")
    sign = verb(ca, "sign-csr", "sign a client's CSR (the certificate is registered to the tenant)")
    sign.add_argument("--tenant", required=True)
    sign.add_argument("csr", help="PEM file")
    sign.add_argument("--out", help="write the certificate here (default: print it)")
    sign.add_argument("--chain-out", help="write the CA certificate here")
    sign.add_argument("--validity-days", type=int)
    verb(ca, "export", "the CA certificate").add_argument("--out")

    objects = verbs("objects", "a tenant's managed objects (never key material)")
    listing = verb(objects, "list", "list objects, newest first")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--state", help="e.g. active, 2, 1-4 or all (default: not destroyed)")
    listing.add_argument("--type", dest="object_type", help="e.g. SymmetricKey or 2")
    listing.add_argument("--name")
    listing.add_argument("--attribute", action="append", help="x-Name=value (repeatable)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--offset", type=int, default=0)
    for name, help in (
        ("show", "an object's metadata and attributes"),
        ("revoke", "revoke an object"),
        ("destroy", "destroy an object's key material"),
    ):
        command = verb(objects, name, help)
        command.add_argument("--tenant", required=True)
        command.add_argument("id", help="the object's Unique Identifier")
        if name == "revoke":
            command.add_argument("--reason", default="CessationOfOperation")
            command.add_argument("--message")
        if name == "destroy":
            command.add_argument(
                "--force", action="store_true", help="revoke an Active object first"
            )

    server = verbs("server", "the server certificate and health")
    verb(server, "cert", "the server certificate and fingerprint").add_argument("--out")
    replace = verb(server, "replace-cert", "serve a new certificate without a restart")
    replace.add_argument("--certificate", required=True, help="PEM file (chain after the leaf)")
    replace.add_argument("--key", required=True, help="PEM private key file")
    verb(server, "reload-cert", "read the certificate files again without a restart")
    verb(server, "health", "readiness: store, KMIP listener, audit log")

    audit = verbs("audit", "the audit log")
    verb(audit, "verify", "check the hash chain of the audit log").add_argument(
        "file", nargs="?", help="default: audit.log in the data directory"
    )
    return top


def _client(arguments: argparse.Namespace) -> Requester:
    if arguments.url:
        try:
            return AdminClient(
                url=arguments.url,
                certificate=arguments.cert,
                private_key=arguments.key,
                ca_certificate=arguments.ca,
            )
        except OSError as error:
            raise CommandFailed(f"cannot load the TLS files: {error}", USAGE) from None
    path = arguments.socket or os.path.join(arguments.data_dir, "admin.sock")
    return AdminClient(socket_path=path)


def main(argv: Sequence[str] | None = None, api: Requester | None = None) -> int:
    """Run one command; return the exit status (see the module docstring).

    ``api`` replaces the admin API client (tests pass one over an in-memory server).
    """
    try:
        arguments = parser().parse_args(argv)
    except SystemExit as exit_status:
        return int(exit_status.code or 0) if isinstance(exit_status.code, int) else USAGE
    command = (arguments.noun, arguments.verb)
    try:
        local = LOCAL_COMMANDS.get(command)
        if local is not None:
            result = local(arguments, api)
        else:
            result = COMMANDS[command](arguments, api if api is not None else _client(arguments))
    except NotReady as not_ready:
        _print(not_ready.result, arguments.json)
        return not_ready.status
    except CommandFailed as failure:
        print(f"kmiptwist: {failure}", file=sys.stderr)
        return failure.status
    except AdminUnavailable as error:
        print(f"kmiptwist: {error}", file=sys.stderr)
        return UNREACHABLE
    _print(result, arguments.json)
    return OK


if __name__ == "__main__":
    sys.exit(main())
