# -*- test-case-name: tests.test_admin_api -*-
"""Client certificates of a tenant, the CAs it trusts, and pending certificates.

A certificate is pinned by its SHA-256 fingerprint; a trusted CA makes every client
certificate that chains to it the tenant's (vCenter's "root CA" trust method).
Removing either cuts the clients it let in off at once, open connections included.
A pending certificate is one that tried KMIP unregistered: approving registers it to
a tenant, dismissing forgets it (it comes back if it connects again).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from cryptography import x509

from kmiptwist import pki
from kmiptwist.admin.api import AdminError, Call, Reply, Router, bad_request, collection, not_found
from kmiptwist.admin.context import AdminContext, iso
from kmiptwist.admin.tenants import require_tenant
from kmiptwist.interfaces import ClientCertificate, PendingCertificate, TrustedCA
from kmiptwist.store.errors import CertificateConflict, UnknownTenant
from kmiptwist.trust import NotACAError, TrustedCAs, check_ca_certificate

__all__ = ["routes", "parse_certificate", "register_certificate", "normalize_fingerprint"]

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as lowercase hex without colons, or 400 INVALID_FINGERPRINT."""
    value = text.replace(":", "").strip().lower()
    if not _FINGERPRINT.fullmatch(value):
        raise bad_request(
            "INVALID_FINGERPRINT",
            f"{text!r} is not a SHA-256 certificate fingerprint (64 hex digits, colons allowed)",
        )
    return value


def parse_certificate(text: str | None, now: int) -> tuple[x509.Certificate, int]:
    """The first certificate of a PEM text and how many more it held; 400 when unusable."""
    if not text or "-----BEGIN CERTIFICATE-----" not in text:
        raise bad_request(
            "MALFORMED_PEM",
            "'certificate' must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)",
        )
    try:
        certificates = pki.load_certificates(text)
    except pki.PKIError as error:
        raise bad_request("MALFORMED_PEM", str(error)) from None
    certificate = certificates[0]
    if certificate.not_valid_after_utc.timestamp() <= now:
        raise bad_request(
            "CERTIFICATE_EXPIRED",
            f"the certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        )
    return certificate, len(certificates) - 1


def certificate_resource(record: ClientCertificate, full: bool = False) -> dict[str, Any]:
    """A registered certificate as the API shows it (the PEM only when ``full``)."""
    resource: dict[str, Any] = {
        "fingerprint": record.fingerprint,
        "tenant": record.tenant,
        "subject": record.subject,
        "issuer": record.issuer,
        "not_after": iso(record.not_after),
        "created_at": iso(record.added),
    }
    if full:
        resource["certificate"] = record.certificate_pem or None
    return resource


def ca_resource(record: TrustedCA, full: bool = False) -> dict[str, Any]:
    """A trusted CA as the API shows it (the PEM only when ``full``)."""
    resource: dict[str, Any] = {
        "fingerprint": record.fingerprint,
        "tenant": record.tenant,
        "subject": record.subject,
        "created_at": iso(record.added),
    }
    try:
        certificate = pki.load_certificate(record.certificate_pem)
        resource["not_after"] = iso(certificate.not_valid_after_utc.timestamp())
    except pki.PKIError:
        resource["not_after"] = None
    if full:
        resource["certificate"] = record.certificate_pem
    return resource


def pending_resource(record: PendingCertificate, full: bool = False) -> dict[str, Any]:
    """A pending certificate as the API shows it."""
    resource: dict[str, Any] = {
        "fingerprint": record.fingerprint,
        "subject": record.subject,
        "issuer": record.issuer,
        "first_seen": iso(record.first_seen),
        "last_seen": iso(record.last_seen),
        "address": record.address,
        "count": record.count,
    }
    if full:
        resource["certificate"] = record.certificate_pem
    return resource


async def register_certificate(
    context: AdminContext, call: Call, tenant: str, certificate: x509.Certificate, how: str
) -> ClientCertificate:
    """Pin ``certificate`` to ``tenant`` and audit it; 404/409 as the store says."""
    record = ClientCertificate(
        fingerprint=pki.fingerprint(certificate),
        tenant=tenant,
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        not_after=int(certificate.not_valid_after_utc.timestamp()),
        added=context.now(),
        certificate_pem=pki.certificate_pem(certificate).decode("ascii"),
    )
    try:
        await context.store.add_certificate(record)
    except UnknownTenant:
        raise not_found("TENANT_NOT_FOUND", f"tenant {tenant!r} does not exist") from None
    except CertificateConflict as error:
        raise AdminError(409, "CERTIFICATE_CONFLICT", str(error)) from None
    await context.audited(
        call,
        f"certificate.{how}",
        tenant=tenant,
        fingerprint=record.fingerprint,
        subject=record.subject,
    )
    return record


async def _resolve_pending(
    context: AdminContext, ca_certificate: x509.Certificate, record: TrustedCA
) -> int:
    """Take the pending certificates the new CA vouches for off the pending list."""
    now = datetime.datetime.fromtimestamp(context.now(), datetime.UTC)
    trust = TrustedCAs()
    resolved = 0
    for pending in await context.store.list_pending():
        try:
            chain = pki.load_certificates(pending.certificate_pem)
        except pki.PKIError:
            continue
        if not any(member.issuer == ca_certificate.subject for member in chain):
            continue
        if trust.match(chain[0], chain[1:], [record], now) is not None:
            await context.store.remove_pending(pending.fingerprint)
            resolved += 1
    return resolved


def routes(router: Router, context: AdminContext) -> None:
    """Add the certificate, trusted CA and pending certificate routes to ``router``."""

    async def list_certificates(call: Call) -> Reply:
        tenant = await require_tenant(context, call.params["tenant"])
        limit, offset, want_total = call.paging()
        records = await context.store.list_certificates(tenant.name)
        page = [certificate_resource(r) for r in records[offset : offset + limit]]
        return Reply(
            200, collection("client_certificate", page, len(records) if want_total else None)
        )

    async def add_certificate(call: Call) -> Reply:
        tenant = await require_tenant(context, call.params["tenant"])
        certificate, extra = parse_certificate(call.text("certificate"), context.now())
        record = await register_certificate(context, call, tenant.name, certificate, "add")
        body = collection("client_certificate", [certificate_resource(record, full=True)])
        if extra:
            body["metadata"]["ignoredCertificates"] = extra
        return Reply(201, body)

    async def find_certificate(call: Call) -> ClientCertificate:
        tenant = await require_tenant(context, call.params["tenant"])
        fingerprint = normalize_fingerprint(call.params["fingerprint"])
        for record in await context.store.list_certificates(tenant.name):
            if record.fingerprint == fingerprint:
                return record
        raise not_found(
            "CERTIFICATE_NOT_FOUND",
            f"no certificate {fingerprint} is registered to tenant {tenant.name!r}",
        )

    async def show_certificate(call: Call) -> Reply:
        record = await find_certificate(call)
        return Reply(200, collection("client_certificate", [certificate_resource(record, True)]))

    async def remove_certificate(call: Call) -> Reply:
        record = await find_certificate(call)
        await context.store.remove_certificate(record.fingerprint)
        closed = context.connections.disconnect_fingerprint(record.fingerprint)
        await context.audited(
            call,
            "certificate.remove",
            tenant=record.tenant,
            fingerprint=record.fingerprint,
            connections_closed=closed,
        )
        return Reply(204)

    async def list_cas(call: Call) -> Reply:
        tenant = await require_tenant(context, call.params["tenant"])
        limit, offset, want_total = call.paging()
        records = await context.store.list_trusted_cas(tenant.name)
        page = [ca_resource(r) for r in records[offset : offset + limit]]
        return Reply(200, collection("trusted_ca", page, len(records) if want_total else None))

    async def add_ca(call: Call) -> Reply:
        tenant = await require_tenant(context, call.params["tenant"])
        certificate, extra = parse_certificate(call.text("certificate"), context.now())
        try:
            check_ca_certificate(
                certificate, datetime.datetime.fromtimestamp(context.now(), datetime.UTC)
            )
        except NotACAError as error:
            raise bad_request("NOT_A_CA", str(error)) from None
        record = TrustedCA(
            fingerprint=pki.fingerprint(certificate),
            tenant=tenant.name,
            subject=certificate.subject.rfc4514_string(),
            certificate_pem=pki.certificate_pem(certificate).decode("ascii"),
            added=context.now(),
        )
        try:
            await context.store.add_trusted_ca(record)
        except UnknownTenant:
            raise not_found("TENANT_NOT_FOUND", f"tenant {tenant.name!r} does not exist") from None
        except CertificateConflict as error:
            raise AdminError(409, "CERTIFICATE_CONFLICT", str(error)) from None
        resolved = await _resolve_pending(context, certificate, record)
        await context.audited(
            call,
            "trusted_ca.add",
            tenant=tenant.name,
            fingerprint=record.fingerprint,
            subject=record.subject,
            pending_resolved=resolved or None,
        )
        body = collection("trusted_ca", [ca_resource(record, full=True)])
        body["metadata"]["pendingResolved"] = resolved
        if extra:
            body["metadata"]["ignoredCertificates"] = extra
        return Reply(201, body)

    async def find_ca(call: Call) -> TrustedCA:
        tenant = await require_tenant(context, call.params["tenant"])
        fingerprint = normalize_fingerprint(call.params["fingerprint"])
        for record in await context.store.list_trusted_cas(tenant.name):
            if record.fingerprint == fingerprint:
                return record
        raise not_found(
            "CERTIFICATE_NOT_FOUND", f"tenant {tenant.name!r} does not trust a CA {fingerprint}"
        )

    async def show_ca(call: Call) -> Reply:
        return Reply(200, collection("trusted_ca", [ca_resource(await find_ca(call), True)]))

    async def remove_ca(call: Call) -> Reply:
        record = await find_ca(call)
        await context.store.remove_trusted_ca(record.fingerprint)
        closed = context.connections.disconnect_trusted_ca(record.fingerprint)
        await context.audited(
            call,
            "trusted_ca.remove",
            tenant=record.tenant,
            fingerprint=record.fingerprint,
            connections_closed=closed,
        )
        return Reply(204)

    async def find_pending(fingerprint_text: str) -> PendingCertificate:
        fingerprint = normalize_fingerprint(fingerprint_text)
        for record in await context.store.list_pending():
            if record.fingerprint == fingerprint:
                return record
        raise not_found(
            "PENDING_NOT_FOUND", f"no pending certificate has fingerprint {fingerprint}"
        )

    async def list_pending(call: Call) -> Reply:
        limit, offset, want_total = call.paging()
        records = await context.store.list_pending()
        page = [pending_resource(r) for r in records[offset : offset + limit]]
        return Reply(
            200, collection("pending_certificate", page, len(records) if want_total else None)
        )

    async def show_pending(call: Call) -> Reply:
        record = await find_pending(call.params["fingerprint"])
        return Reply(200, collection("pending_certificate", [pending_resource(record, True)]))

    async def approve_pending(call: Call) -> Reply:
        pending = await find_pending(call.params["fingerprint"])
        tenant_name = call.text("tenant")
        assert tenant_name is not None
        tenant = await require_tenant(context, tenant_name)
        try:
            certificate = pki.load_certificate(pending.certificate_pem)
        except pki.PKIError as error:
            raise AdminError(
                409, "MALFORMED_PEM", f"the pending certificate cannot be read: {error}"
            ) from None
        record = await register_certificate(context, call, tenant.name, certificate, "approve")
        return Reply(201, collection("client_certificate", [certificate_resource(record, True)]))

    async def dismiss_pending(call: Call) -> Reply:
        pending = await find_pending(call.params["fingerprint"])
        await context.store.remove_pending(pending.fingerprint)
        await context.audited(
            call, "pending.dismiss", fingerprint=pending.fingerprint, subject=pending.subject
        )
        return Reply(204)

    base = "/api/v1/tenants/{tenant}"
    router.add("GET", f"{base}/certificates", list_certificates)
    router.add("POST", f"{base}/certificates", add_certificate)
    router.add("GET", f"{base}/certificates/{{fingerprint}}", show_certificate)
    router.add("DELETE", f"{base}/certificates/{{fingerprint}}", remove_certificate)
    router.add("GET", f"{base}/trusted_cas", list_cas)
    router.add("POST", f"{base}/trusted_cas", add_ca)
    router.add("GET", f"{base}/trusted_cas/{{fingerprint}}", show_ca)
    router.add("DELETE", f"{base}/trusted_cas/{{fingerprint}}", remove_ca)
    router.add("GET", "/api/v1/pending_certificates", list_pending)
    router.add("GET", "/api/v1/pending_certificates/{fingerprint}", show_pending)
    router.add("POST", "/api/v1/pending_certificates/{fingerprint}/approve", approve_pending)
    router.add("DELETE", "/api/v1/pending_certificates/{fingerprint}", dismiss_pending)
