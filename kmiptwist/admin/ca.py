# -*- test-case-name: tests.test_admin_api -*-
"""The built-in CA: show it, issue a client certificate and key, sign a client's CSR.

Both issuing and signing register the new certificate to the tenant at once, so the
bundle or the signed certificate gets KMIP service on its first connection (vCenter's
"KMS certificate and private key" and "New Certificate Signing Request" methods).
The private key of an issued bundle is made here and handed over in the answer only;
the server keeps no copy.  A PKCS#12 file (base64) comes with it when a passphrase
is given.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509

from kmiptwist import pki
from kmiptwist.admin.api import AdminError, Call, Reply, Router, bad_request, collection
from kmiptwist.admin.certificates import certificate_resource, register_certificate
from kmiptwist.admin.context import AdminContext, iso
from kmiptwist.admin.tenants import require_tenant

__all__ = ["routes", "MAX_VALIDITY_DAYS"]

MAX_VALIDITY_DAYS = 3650
"""The longest validity the CA grants a client certificate (it is capped by the CA's)."""


def _unavailable(error: Exception) -> AdminError:
    return AdminError(
        503,
        "CA_UNAVAILABLE",
        f"the built-in CA cannot sign now (its private key may be offline): {error}",
    )


def _ca_resource(certificate: x509.Certificate, issuing: bool) -> dict[str, Any]:
    return {
        "certificate": pki.certificate_pem(certificate).decode("ascii"),
        "fingerprint": pki.fingerprint(certificate),
        "subject": certificate.subject.rfc4514_string(),
        "not_before": iso(certificate.not_valid_before_utc.timestamp()),
        "not_after": iso(certificate.not_valid_after_utc.timestamp()),
        "issuing": issuing,
    }


def routes(router: Router, context: AdminContext) -> None:
    """Add the CA routes to ``router``."""

    def load_ca() -> tuple[x509.Certificate, pki.PrivateKey]:
        try:
            return context.certificate_authority()
        except (OSError, pki.PKIError, ValueError) as error:
            raise _unavailable(error) from None

    async def show_ca(call: Call) -> Reply:
        try:
            certificate = context.ca_certificate()
        except (OSError, pki.PKIError, ValueError) as error:
            raise _unavailable(error) from None
        try:
            context.certificate_authority()
            issuing = True
        except (OSError, pki.PKIError, ValueError):
            issuing = False
        return Reply(200, collection("ca", [_ca_resource(certificate, issuing)]))

    def validity(call: Call) -> int:
        return call.number("validity_days", context.client_validity_days, 1, MAX_VALIDITY_DAYS)

    async def issue(call: Call) -> Reply:
        tenant_name = call.text("tenant")
        assert tenant_name is not None
        tenant = await require_tenant(context, tenant_name)
        days = validity(call)
        common_name = call.text("common_name", required=False) or f"kmip-client-{tenant.name}"
        key_type = call.text("key_type", required=False) or "rsa"
        if key_type not in pki.KEY_KINDS:
            raise bad_request(
                "INVALID_FIELD", f"key_type must be one of {', '.join(pki.KEY_KINDS)}"
            )
        passphrase = call.text("pkcs12_passphrase", required=False)
        if passphrase is not None and len(passphrase) < 4:
            raise bad_request("INVALID_FIELD", "pkcs12_passphrase must have at least 4 characters")
        if not 1 <= len(common_name) <= 64:
            raise bad_request("INVALID_FIELD", "common_name must be 1 to 64 characters")
        ca_certificate, ca_key = load_ca()

        def make() -> tuple[x509.Certificate, pki.PrivateKey, bytes | None]:
            certificate, key = pki.issue_client_certificate(
                ca_certificate, ca_key, common_name, days, key_kind=key_type
            )
            bundle = None
            if passphrase is not None:
                bundle = pki.pkcs12_bundle(
                    certificate, key, ca_certificate, passphrase.encode("utf-8"), common_name
                )
            return certificate, key, bundle

        try:
            certificate, key, bundle = await context.blocking(make)
        except pki.KeyMismatchError as error:
            raise _unavailable(error) from None
        except pki.PKIError as error:
            raise bad_request("INVALID_FIELD", str(error)) from None
        record = await register_certificate(context, call, tenant.name, certificate, "issue")
        resource = certificate_resource(record, full=True)
        resource["private_key"] = pki.private_key_pem(key).decode("ascii")
        resource["ca_certificate"] = pki.certificate_pem(ca_certificate).decode("ascii")
        if bundle is not None:
            resource["pkcs12"] = base64.b64encode(bundle).decode("ascii")
        return Reply(201, collection("client_certificate", [resource]))

    async def sign(call: Call) -> Reply:
        tenant_name = call.text("tenant")
        assert tenant_name is not None
        tenant = await require_tenant(context, tenant_name)
        csr = call.text("csr")
        assert csr is not None
        days = validity(call)
        if "-----BEGIN CERTIFICATE REQUEST-----" not in csr:
            raise bad_request(
                "MALFORMED_CSR",
                "'csr' must be a PEM certificate signing request "
                "(-----BEGIN CERTIFICATE REQUEST----- ...)",
            )
        try:
            pki.load_csr(csr)
        except pki.CSRSignatureError as error:
            raise bad_request("CSR_SIGNATURE_INVALID", str(error)) from None
        except pki.PKIError as error:
            raise bad_request("MALFORMED_CSR", str(error)) from None
        ca_certificate, ca_key = load_ca()
        try:
            certificate = pki.sign_csr(ca_certificate, ca_key, csr, days)
        except pki.WeakKeyError as error:
            raise bad_request("WEAK_KEY", str(error)) from None
        except pki.KeyMismatchError as error:
            raise _unavailable(error) from None
        except pki.PKIError as error:
            raise bad_request("MALFORMED_CSR", str(error)) from None
        record = await register_certificate(context, call, tenant.name, certificate, "sign")
        resource = certificate_resource(record, full=True)
        resource["ca_certificate"] = pki.certificate_pem(ca_certificate).decode("ascii")
        return Reply(201, collection("client_certificate", [resource]))

    router.add("GET", "/api/v1/ca", show_ca)
    router.add("POST", "/api/v1/ca/issue", issue)
    router.add("POST", "/api/v1/ca/sign", sign)
