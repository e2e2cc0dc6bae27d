# -*- test-case-name: tests.test_cli -*-
"""What each ``kmiptwist`` command does: one function per (noun, verb), over the admin API.

A command takes the parsed arguments and a :class:`~kmiptwist.admin.client.Requester`
and returns what to print (a dict, a list of dicts for a table, or :class:`Raw` text),
or raises :class:`CommandFailed` with the message and exit status.  Add a command by
writing its function, listing it in :data:`COMMANDS` and giving it a parser entry in
:mod:`kmiptwist.cli`.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from kmiptwist.admin.client import Answer, Requester

__all__ = [
    "COMMANDS",
    "LOCAL_COMMANDS",
    "CommandFailed",
    "NotReady",
    "Raw",
    "OK",
    "REFUSED",
    "USAGE",
    "UNREACHABLE",
    "SERVER_FAILED",
]

OK, REFUSED, USAGE, UNREACHABLE, SERVER_FAILED = 0, 1, 2, 3, 4
"""Exit statuses: done; refused or check failed; bad usage; unreachable; server error."""

API = "/api/v1"


class CommandFailed(Exception):
    """A command that did not succeed: a message for the operator and an exit status."""

    def __init__(self, message: str, status: int = REFUSED) -> None:
        super().__init__(message)
        self.status = status


def _check(answer: Answer) -> Any:
    """The answer's body when it succeeded; CommandFailed with the API's reason if not."""
    if answer.ok:
        return answer.body
    error = (answer.body or {}).get("error", {}) if isinstance(answer.body, dict) else {}
    message = error.get("message") or f"the server answered HTTP {answer.status}"
    reason = error.get("reason")
    status = SERVER_FAILED if answer.status >= 500 else REFUSED
    raise CommandFailed(f"{message} ({reason})" if reason else message, status)


def _resources(body: Any) -> list[dict[str, Any]]:
    return list(body.get("resources", [])) if isinstance(body, dict) else []


def _one(body: Any) -> dict[str, Any]:
    resources = _resources(body)
    return resources[0] if resources else {}


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError as error:
        raise CommandFailed(f"cannot read the {what} {path}: {error.strerror}") from None


def _write(path: str, data: bytes, secret: bool = False) -> None:
    """Write a file (0600 for secrets, 0644 otherwise), replacing an older one."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        descriptor = os.open(path, flags, 0o600 if secret else 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            if secret:
                os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
    except OSError as error:
        raise CommandFailed(f"cannot write {path}: {error.strerror}") from None


# -- the commands -------------------------------------------------------------------------

Command = Callable[[argparse.Namespace, Requester], Any]


def _keyprotect_root_key(arguments: argparse.Namespace) -> dict[str, Any]:
    """The Key Protect root key the options name (paths made absolute for the server)."""
    root_key: dict[str, Any] = {"kind": "keyprotect", "id": arguments.root_key_id}
    for field in (
        "endpoint",
        "token_url",
        "api_key",
        "api_key_file",
        "api_key_env",
        "ca_bundle",
        "key_ring",
    ):
        value = getattr(arguments, field, None)
        if value is not None:
            if field in ("api_key_file", "ca_bundle"):
                value = os.path.abspath(value)
            root_key[field] = value
    if arguments.keyprotect_instance is not None:
        root_key["instance_id"] = arguments.keyprotect_instance
    return root_key


def tenant_add(arguments: argparse.Namespace, api: Requester) -> Any:
    """Create a tenant bound to the local root key or to a Key Protect root key."""
    root_key: dict[str, Any] = {"kind": "local"}
    if arguments.keyprotect_instance is not None or arguments.root_key_id is not None:
        root_key = _keyprotect_root_key(arguments)
    body = {"name": arguments.name, "root_key": root_key}
    return _one(_check(api.request("POST", f"{API}/tenants", body)))


def tenant_bind(arguments: argparse.Namespace, api: Requester) -> Any:
    """Bind a tenant to a Key Protect root key (checked with Key Protect first)."""
    path = f"{API}/tenants/{arguments.name}/root_key"
    return _one(_check(api.request("PUT", path, _keyprotect_root_key(arguments))))


def tenant_rewrap(arguments: argparse.Namespace, api: Requester) -> Any:
    """Rewrap every object of a tenant by its root key's latest version."""
    path = f"{API}/tenants/{arguments.name}/rewrap"
    report = _one(_check(api.request("POST", path, {})))
    if report.get("failed"):
        failed = report["failed"]
        raise CommandFailed(
            f"{len(failed)} of {report.get('objects')} objects could not be rewrapped; the "
            f"first: {failed[0]['unique_identifier']}: {failed[0]['error']}"
        )
    return report


def tenant_list(arguments: argparse.Namespace, api: Requester) -> Any:
    """Every tenant."""
    tenants = _resources(_check(api.request("GET", f"{API}/tenants", query={"limit": 200})))
    return [
        {
            "name": t["name"],
            "root_key": t["root_key"]["kind"],
            "root_key_id": t["root_key"]["id"],
            "created_at": t["created_at"],
        }
        for t in tenants
    ]


def tenant_show(arguments: argparse.Namespace, api: Requester) -> Any:
    """One tenant with its counts."""
    return _one(_check(api.request("GET", f"{API}/tenants/{arguments.name}")))


def tenant_delete(arguments: argparse.Namespace, api: Requester) -> Any:
    """Delete a tenant; with --force its keys are destroyed (asks unless --yes)."""
    if arguments.force and not arguments.yes:
        if not sys.stdin.isatty():
            raise CommandFailed(
                "--force destroys every key of the tenant; add --yes to confirm", USAGE
            )
        typed = input(
            f"This destroys every key of tenant {arguments.name!r} for good. "
            "Type the tenant name to confirm: "
        )
        if typed.strip() != arguments.name:
            raise CommandFailed("not confirmed; nothing was deleted")
    query = {"force": "true"} if arguments.force else None
    _check(api.request("DELETE", f"{API}/tenants/{arguments.name}", query=query))
    return {"tenant": arguments.name, "deleted": True}


def cert_add(arguments: argparse.Namespace, api: Requester) -> Any:
    """Pin a client certificate (PEM file) to a tenant."""
    body = {"certificate": _read(arguments.certificate, "certificate")}
    path = f"{API}/tenants/{arguments.tenant}/certificates"
    resource = _one(_check(api.request("POST", path, body)))
    resource.pop("certificate", None)
    return resource


def cert_add_ca(arguments: argparse.Namespace, api: Requester) -> Any:
    """Trust a CA (PEM file) for a tenant: certificates it signed belong to the tenant."""
    body = {"certificate": _read(arguments.certificate, "CA certificate")}
    path = f"{API}/tenants/{arguments.tenant}/trusted_cas"
    resource = _one(_check(api.request("POST", path, body)))
    resource.pop("certificate", None)
    return resource


def cert_list(arguments: argparse.Namespace, api: Requester) -> Any:
    """A tenant's pinned certificates and trusted CAs."""
    base = f"{API}/tenants/{arguments.tenant}"
    rows = []
    for kind, path in (("certificate", "certificates"), ("trusted CA", "trusted_cas")):
        for resource in _resources(
            _check(api.request("GET", f"{base}/{path}", query={"limit": 200}))
        ):
            rows.append(
                {
                    "kind": kind,
                    "fingerprint": resource["fingerprint"],
                    "subject": resource["subject"],
                    "not_after": resource.get("not_after"),
                }
            )
    return rows


def cert_remove(arguments: argparse.Namespace, api: Requester) -> Any:
    """Remove a pinned certificate or a trusted CA; its clients are cut off at once."""
    base = f"{API}/tenants/{arguments.tenant}"
    for kind, path in (("certificate", "certificates"), ("trusted CA", "trusted_cas")):
        answer = api.request("DELETE", f"{base}/{path}/{arguments.fingerprint}")
        reason = (answer.body or {}).get("error", {}).get("reason") if answer.body else None
        if answer.status == 404 and reason == "CERTIFICATE_NOT_FOUND":
            continue
        _check(answer)
        return {"tenant": arguments.tenant, "fingerprint": arguments.fingerprint, "removed": kind}
    raise CommandFailed(
        f"tenant {arguments.tenant!r} has no certificate or trusted CA {arguments.fingerprint}"
    )


def cert_pending(arguments: argparse.Namespace, api: Requester) -> Any:
    """Certificates that tried KMIP without being registered."""
    return _resources(
        _check(api.request("GET", f"{API}/pending_certificates", query={"limit": 200}))
    )


def cert_approve(arguments: argparse.Namespace, api: Requester) -> Any:
    """Register a pending certificate to a tenant."""
    path = f"{API}/pending_certificates/{arguments.fingerprint}/approve"
    resource = _one(_check(api.request("POST", path, {"tenant": arguments.tenant})))
    resource.pop("certificate", None)
    return resource


def cert_dismiss(arguments: argparse.Namespace, api: Requester) -> Any:
    """Forget a pending certificate (it is listed again if it connects again)."""
    _check(api.request("DELETE", f"{API}/pending_certificates/{arguments.fingerprint}"))
    return {"fingerprint": arguments.fingerprint, "dismissed": True}


def _passphrase(arguments: argparse.Namespace) -> str | None:
    if arguments.pkcs12_passphrase_file:
        return _read(arguments.pkcs12_passphrase_file, "passphrase file").rstrip("\r\n")
    if arguments.pkcs12:
        first = getpass.getpass("PKCS#12 passphrase: ")
        if first != getpass.getpass("Again: "):
            raise CommandFailed("the passphrases differ")
        return first
    return None


def ca_issue(arguments: argparse.Namespace, api: Requester) -> Any:
    """Issue a client certificate and key for a tenant into a directory."""
    body: dict[str, Any] = {"tenant": arguments.tenant, "key_type": arguments.key_type}
    if arguments.common_name:
        body["common_name"] = arguments.common_name
    if arguments.validity_days:
        body["validity_days"] = arguments.validity_days
    passphrase = _passphrase(arguments)
    if passphrase is not None:
        body["pkcs12_passphrase"] = passphrase
    issued = _one(_check(api.request("POST", f"{API}/ca/issue", body)))
    try:
        os.makedirs(arguments.out, mode=0o700, exist_ok=True)
    except OSError as error:
        raise CommandFailed(f"cannot create {arguments.out}: {error.strerror}") from None
    files = {
        "client.pem": (issued["certificate"].encode(), False),
        "client-key.pem": (issued["private_key"].encode(), True),
        "ca.pem": (issued["ca_certificate"].encode(), False),
    }
    if "pkcs12" in issued:
        files["client.p12"] = (base64.b64decode(issued["pkcs12"]), True)
    for name, (data, secret) in files.items():
        _write(os.path.join(arguments.out, name), data, secret)
    return {
        "tenant": arguments.tenant,
        "fingerprint": issued["fingerprint"],
        "subject": issued["subject"],
        "not_after": issued["not_after"],
        "files": ", ".join(os.path.join(arguments.out, name) for name in files),
    }


def ca_sign_csr(arguments: argparse.Namespace, api: Requester) -> Any:
    """Sign a client's CSR for a tenant; the certificate goes to --out (or is printed)."""
    body: dict[str, Any] = {"tenant": arguments.tenant, "csr": _read(arguments.csr, "CSR")}
    if arguments.validity_days:
        body["validity_days"] = arguments.validity_days
    signed = _one(_check(api.request("POST", f"{API}/ca/sign", body)))
    if arguments.out:
        _write(arguments.out, signed["certificate"].encode())
    if arguments.chain_out:
        _write(arguments.chain_out, signed["ca_certificate"].encode())
    if not arguments.out and not arguments.json:
        return Raw(signed["certificate"])
    if arguments.out:
        del signed["certificate"]
    signed.pop("ca_certificate", None)
    return signed


def ca_export(arguments: argparse.Namespace, api: Requester) -> Any:
    """The built-in CA certificate (to give to clients that verify the server)."""
    ca = _one(_check(api.request("GET", f"{API}/ca")))
    if arguments.out:
        _write(arguments.out, ca["certificate"].encode())
        ca.pop("certificate")
        return ca
    return ca if arguments.json else Raw(ca["certificate"])


def objects_list(arguments: argparse.Namespace, api: Requester) -> Any:
    """A tenant's objects, filtered, newest first (never key material)."""
    query: dict[str, Any] = {
        "limit": arguments.limit,
        "offset": arguments.offset,
        "state": arguments.state,
        "object_type": arguments.object_type,
        "name": arguments.name,
        "attribute": arguments.attribute or None,
        "totalCount": "true",
    }
    body = _check(api.request("GET", f"{API}/tenants/{arguments.tenant}/objects", query=query))
    if arguments.json:
        return body
    return [
        {
            "id": o["id"],
            "type": o["object_type"],
            "state": o["state_name"],
            "names": ", ".join(str(n) for n in o.get("names", [])),
            "algorithm": o.get("cryptographic_algorithm", ""),
            "length": o.get("cryptographic_length", ""),
            "created_at": o.get("created_at", ""),
        }
        for o in _resources(body)
    ]


def objects_show(arguments: argparse.Namespace, api: Requester) -> Any:
    """One object's metadata and attributes."""
    return _one(
        _check(api.request("GET", f"{API}/tenants/{arguments.tenant}/objects/{arguments.id}"))
    )


def objects_revoke(arguments: argparse.Namespace, api: Requester) -> Any:
    """Revoke an object (Deactivated; Compromised for a compromise reason)."""
    body = {"reason": arguments.reason}
    if arguments.message:
        body["message"] = arguments.message
    path = f"{API}/tenants/{arguments.tenant}/objects/{arguments.id}/revoke"
    resource = _one(_check(api.request("POST", path, body)))
    return {"id": resource["id"], "state": resource["state_name"]}


def objects_destroy(arguments: argparse.Namespace, api: Requester) -> Any:
    """Destroy an object's key material (--force revokes an Active one first)."""
    path = f"{API}/tenants/{arguments.tenant}/objects/{arguments.id}/destroy"
    query = {"force": "true"} if arguments.force else None
    resource = _one(_check(api.request("POST", path, {}, query=query)))
    return {"id": resource["id"], "state": resource["state_name"]}


def server_cert(arguments: argparse.Namespace, api: Requester) -> Any:
    """The server certificate and its SHA-256 fingerprint (compare with vCenter's)."""
    details = _one(_check(api.request("GET", f"{API}/server/certificate")))
    if arguments.out:
        _write(arguments.out, details["certificate"].encode())
    details.pop("certificate")
    return details


def server_replace_cert(arguments: argparse.Namespace, api: Requester) -> Any:
    """Serve a new certificate and key (PEM files) without a restart."""
    body = {
        "certificate": _read(arguments.certificate, "certificate"),
        "private_key": _read(arguments.key, "private key"),
    }
    details = _one(_check(api.request("PUT", f"{API}/server/certificate", body)))
    details.pop("certificate")
    return details


def server_reload_cert(arguments: argparse.Namespace, api: Requester) -> Any:
    """Read the server certificate files again and serve them without a restart."""
    details = _one(_check(api.request("POST", f"{API}/server/certificate/reload", {})))
    details.pop("certificate")
    return details


def server_health(arguments: argparse.Namespace, api: Requester) -> Any:
    """Whether the server is ready (store, KMIP listener, audit log); exit 1 if not."""
    answer = api.request("GET", "/readyz")
    if answer.status not in (200, 503) or not isinstance(answer.body, dict):
        _check(answer)
    body = answer.body
    result = {"ready": body.get("ready", False), **body.get("checks", {})}
    if not result["ready"]:
        raise NotReady(result)
    return result


def audit_verify(arguments: argparse.Namespace, api: Requester | None) -> Any:
    """Check the audit log's hash chain; name the first bad line."""
    from kmiptwist.audit import verify_file

    path = arguments.file or os.path.join(arguments.data_dir, "audit.log")
    try:
        result = verify_file(path)
    except OSError as error:
        raise CommandFailed(f"cannot read the audit log {path}: {error.strerror}") from None
    if not result.ok:
        raise CommandFailed(
            f"{path} line {result.line}: {result.problem} "
            f"({result.records} records before it are intact)"
        )
    return {"file": path, "records": result.records, "intact": True, "last_hash": result.head}


class Raw(str):
    """Output printed as it is (a PEM), not as a table."""


class NotReady(CommandFailed):
    """``server health`` found the server not ready; the checks are printed."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("the server is not ready", REFUSED)
        self.result = result


COMMANDS: dict[tuple[str, str], Command] = {
    ("tenant", "add"): tenant_add,
    ("tenant", "list"): tenant_list,
    ("tenant", "show"): tenant_show,
    ("tenant", "delete"): tenant_delete,
    ("tenant", "bind"): tenant_bind,
    ("tenant", "rewrap"): tenant_rewrap,
    ("cert", "add"): cert_add,
    ("cert", "add-ca"): cert_add_ca,
    ("cert", "list"): cert_list,
    ("cert", "remove"): cert_remove,
    ("cert", "pending"): cert_pending,
    ("cert", "approve"): cert_approve,
    ("cert", "dismiss"): cert_dismiss,
    ("ca", "issue"): ca_issue,
    ("ca", "sign-csr"): ca_sign_csr,
    ("ca", "export"): ca_export,
    ("objects", "list"): objects_list,
    ("objects", "show"): objects_show,
    ("objects", "revoke"): objects_revoke,
    ("objects", "destroy"): objects_destroy,
    ("server", "cert"): server_cert,
    ("server", "replace-cert"): server_replace_cert,
    ("server", "reload-cert"): server_reload_cert,
    ("server", "health"): server_health,
}
"""(noun, verb) -> the function that carries the command out over the admin API."""

LOCAL_COMMANDS: dict[tuple[str, str], Callable[[argparse.Namespace, Any], Any]] = {
    ("audit", "verify"): audit_verify,
}
"""Commands that work on local files and need no server."""
