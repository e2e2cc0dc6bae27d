# -*- test-case-name: tests.test_trust -*-
"""Client certificates that belong to a tenant through a CA it trusts.

vCenter's "vCenter Root CA Certificate" trust method: an administrator registers a
CA with a tenant, and any client certificate that chains to it (through the
intermediates the client sends) belongs to that tenant.  The chain is checked with
``cryptography.x509.verification``: signatures, validity dates at the time of the
handshake, and the WebPKI rules for the CAs (basic constraints, key usage, path
length).  The client certificate itself is held to no extension profile, as for
pinned certificates: vCenter's certificates often lack the clientAuth EKU.

When the chain passes through several trusted CAs (a tenant trusting an
intermediate of another tenant's root), the CA nearest the client certificate wins.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from attrs import define, field, frozen
from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtensionOID

from kmiptwist import pki
from kmiptwist.interfaces import TrustedCA

__all__ = ["TrustedCAs", "TrustMatch", "check_ca_certificate", "NotACAError", "VERDICT_SECONDS"]

VERDICT_SECONDS = 300.0
"""How long a verified chain is trusted without checking it again (same trusted CAs)."""


class NotACAError(pki.PKIError):
    """A certificate registered as a trusted CA cannot sign client certificates."""


def check_ca_certificate(certificate: x509.Certificate, now: datetime.datetime) -> None:
    """Refuse, with a message for the administrator, a CA that can never vouch for a client.

    The chain check requires what the WebPKI requires of a CA: basic constraints with
    cA true, and a key usage that allows certificate signing.
    """
    try:
        constraints = certificate.extensions.get_extension_for_oid(
            ExtensionOID.BASIC_CONSTRAINTS
        ).value
    except x509.ExtensionNotFound:
        raise NotACAError(
            "the certificate has no basicConstraints extension, so it is not a CA; register "
            "it as a client certificate instead, or upload the root CA that issued it"
        ) from None
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise NotACAError(
            "the certificate is not a CA (basicConstraints cA is false); register it as a "
            "client certificate instead, or upload the CA that issued it"
        )
    try:
        usage = certificate.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        raise NotACAError(
            "the CA certificate has no keyUsage extension; a CA must allow keyCertSign"
        ) from None
    if not isinstance(usage, x509.KeyUsage) or not usage.key_cert_sign:
        raise NotACAError("the CA certificate's keyUsage does not allow keyCertSign")
    if certificate.not_valid_after_utc <= now:
        raise NotACAError(
            f"the CA certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
        )


@frozen
class TrustMatch:
    """A client certificate accepted through a trusted CA: the tenant and the CA."""

    tenant: str
    ca_fingerprint: str


@define
class TrustedCAs:
    """Checks client chains against every tenant's trusted CAs.

    The CA list is read from the tenancy on each check (a cheap indexed read, so a CA
    removed through the admin API stops counting at once); parsed certificates are
    kept by fingerprint, and a chain that verified is remembered for
    ``VERDICT_SECONDS`` (vCenter opens many short connections with one certificate)
    for the same set of trusted CAs only.
    """

    _parsed: dict[str, x509.Certificate] = field(factory=dict, init=False)
    _verdicts: dict[tuple[str, frozenset[str]], tuple[TrustMatch, float]] = field(
        factory=dict, init=False
    )

    def match(
        self,
        leaf: x509.Certificate,
        chain: Sequence[x509.Certificate],
        trusted: Sequence[TrustedCA],
        now: datetime.datetime,
    ) -> TrustMatch | None:
        """The tenant ``leaf`` belongs to through one of ``trusted``, or None.

        ``chain`` is what the client sent besides its own certificate (intermediates,
        perhaps the root); the anchors are only ever the ``trusted`` CAs.
        """
        if not trusted:
            return None
        anchors: dict[str, tuple[x509.Certificate, str]] = {}
        for ca in trusted:
            certificate = self._certificate(ca)
            if certificate is not None:
                anchors[ca.fingerprint] = (certificate, ca.tenant)
        if not anchors:
            return None
        leaf_fingerprint = pki.fingerprint(leaf)
        key = (leaf_fingerprint, frozenset(anchors))
        known = self._verdicts.get(key)
        if known is not None and now.timestamp() < known[1]:
            return known[0]
        intermediates = [c for c in chain if pki.fingerprint(c) != leaf_fingerprint]
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store([certificate for certificate, _ in anchors.values()]))
            .time(now)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, intermediates)
        except verification.VerificationError:
            return None
        for certificate in verified.chain[1:]:
            found = anchors.get(pki.fingerprint(certificate))
            if found is not None:
                match = TrustMatch(found[1], pki.fingerprint(certificate))
                # Never past the end of any certificate of the chain.
                expires = min(
                    now.timestamp() + VERDICT_SECONDS,
                    *(member.not_valid_after_utc.timestamp() for member in verified.chain),
                )
                if len(self._verdicts) >= 10_000:
                    self._verdicts.clear()
                self._verdicts[key] = (match, expires)
                return match
        return None

    def _certificate(self, ca: TrustedCA) -> x509.Certificate | None:
        """The parsed CA certificate (cached); None when the stored PEM is unreadable."""
        certificate = self._parsed.get(ca.fingerprint)
        if certificate is None:
            try:
                certificate = pki.load_certificate(ca.certificate_pem)
            except pki.PKIError:
                return None
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[ca.fingerprint] = certificate
        return certificate
