# -*- test-case-name: tests.test_admin_api -*-
"""The server: its certificate (for "Make vCenter Trust KMS"), replacing it live, health.

``/healthz`` answers while the process serves HTTP (liveness); ``/readyz`` answers 200
only when the store is open, the KMIP listener accepts connections and the audit log
is being written (readiness), else 503 naming the failing check.

A replaced certificate is used by new KMIP connections at once; open connections
keep the one they were made with.  It is saved where the server reads its
certificate at start, when it can be (see :class:`kmiptwist.admin.context.AdminContext`).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from kmiptwist import pki
from kmiptwist.admin.api import AdminError, Call, Reply, Router, bad_request, collection
from kmiptwist.admin.context import AdminContext, iso
from kmiptwist.tls import server_tls_options

__all__ = ["routes", "certificate_details"]


def certificate_details(certificate: x509.Certificate) -> dict[str, Any]:
    """What an operator compares with what vCenter shows: fingerprints, names, dates."""
    fingerprint = pki.fingerprint(certificate)
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(name) for name in san.get_values_for_type(x509.DNSName)]
        names += [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    return {
        "fingerprint": fingerprint,
        "fingerprint_sha256": ":".join(
            fingerprint[i : i + 2].upper() for i in range(0, len(fingerprint), 2)
        ),
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "not_before": iso(certificate.not_valid_before_utc.timestamp()),
        "not_after": iso(certificate.not_valid_after_utc.timestamp()),
        "names": names,
        "certificate": pki.certificate_pem(certificate).decode("ascii"),
    }


def routes(router: Router, context: AdminContext) -> None:
    """Add the server and health routes to ``router``."""

    async def healthz(call: Call) -> Reply:
        return Reply(200, {"status": "ok"})

    async def readyz(call: Call) -> Reply:
        checks = context.readiness() if context.readiness is not None else {}
        checks["audit"] = bool(getattr(context.audit, "healthy", True))
        ready = all(checks.values())
        return Reply(200 if ready else 503, {"ready": ready, "checks": checks})

    async def show_certificate(call: Call) -> Reply:
        details = certificate_details(context.tls_options.certificate)
        return Reply(200, collection("server_certificate", [details]))

    def install(chain: list[x509.Certificate], key: pki.PrivateKey) -> None:
        try:
            context.tls_options.replace(chain[0], key, chain[1:])
        except (ValueError, TypeError) as error:
            raise bad_request("INVALID_CERTIFICATE", f"the server cannot use it: {error}") from None

    async def replace_certificate(call: Call) -> Reply:
        certificate_text = call.text("certificate")
        key_text = call.text("private_key")
        assert certificate_text is not None and key_text is not None
        try:
            chain = pki.load_certificates(certificate_text)
        except pki.PKIError as error:
            raise bad_request("MALFORMED_PEM", f"certificate: {error}") from None
        try:
            key = pki.load_private_key(key_text)
        except pki.PKIError as error:
            raise bad_request("MALFORMED_PEM", f"private_key: {error}") from None
        if not pki.key_matches_certificate(key, chain[0]):
            raise bad_request(
                "KEY_MISMATCH", "the private key does not belong to the (first) certificate"
            )
        if chain[0].not_valid_after_utc.timestamp() <= context.now():
            raise bad_request("CERTIFICATE_EXPIRED", "the certificate has expired")
        # Check that TLS accepts the pair before anything is saved or swapped.
        try:
            server_tls_options(chain[0], key, chain[1:])
        except (ValueError, TypeError) as error:
            raise bad_request("INVALID_CERTIFICATE", f"the server cannot use it: {error}") from None
        saved_to = None
        if context.save_server_credentials is not None:
            try:
                saved_to = context.save_server_credentials(chain, key)
            except OSError as error:
                raise AdminError(
                    500,
                    "SAVE_FAILED",
                    f"the certificate could not be saved ({error}); nothing was changed",
                ) from None
        install(chain, key)
        details = certificate_details(chain[0])
        await context.audited(
            call, "server.certificate.replace", fingerprint=details["fingerprint"], saved=saved_to
        )
        details["saved_to"] = saved_to
        return Reply(200, collection("server_certificate", [details]))

    async def reload_certificate(call: Call) -> Reply:
        if context.server_credentials is None:
            raise AdminError(
                409, "NOT_RELOADABLE", "this server has no certificate files to reload"
            )
        try:
            chain, key = context.server_credentials()
        except (OSError, pki.PKIError, ValueError, IndexError) as error:
            raise bad_request(
                "INVALID_CERTIFICATE", f"the certificate files cannot be used: {error}"
            ) from None
        install(chain, key)
        details = certificate_details(chain[0])
        await context.audited(call, "server.certificate.reload", fingerprint=details["fingerprint"])
        return Reply(200, collection("server_certificate", [details]))

    router.add("GET", "/healthz", healthz)
    router.add("GET", "/readyz", readyz)
    router.add("GET", "/api/v1/server/certificate", show_certificate)
    router.add("PUT", "/api/v1/server/certificate", replace_certificate)
    router.add("POST", "/api/v1/server/certificate/reload", reload_certificate)
