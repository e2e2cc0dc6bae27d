"""Tests for the admin HTTP API: the real twisted.web resources over a memory store,
driven in memory through treq's StubTreq.
"""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import pki, ttlv
from kmiptwist.testing.admin import AdminHarness, make_ca, self_signed, signed_by
from kmiptwist.vocabulary.enums import Operation, State
from kmiptwist.vocabulary.tags import Tag

API = "/api/v1"


def pem(certificate: x509.Certificate) -> str:
    return pki.certificate_pem(certificate).decode()


def csr_for(common_name: str, key=None) -> tuple[str, object]:
    """A PEM CSR (and its key) as vCenter's "Generate CSR" makes one."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode(), key


def tamper(csr_pem: str) -> str:
    """The CSR with one byte of its signature changed."""
    der = bytearray(
        x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    )
    der[-3] ^= 0x01
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


class _AdminTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.admin = AdminHarness(self)
        self.call = self.admin.call

    def tenant(self, name: str) -> None:
        status, body = self.call("POST", f"{API}/tenants", {"name": name})
        self.assertEqual(status, 201, body)

    def error(self, status_and_body: tuple[int, object], status: int, reason: str) -> str:
        """Assert a JSON error; return its message."""
        got_status, body = status_and_body
        self.assertEqual(got_status, status, body)
        assert isinstance(body, dict)
        self.assertEqual(body["error"]["reason"], reason, body)
        self.assertTrue(body["error"]["message"])
        return str(body["error"]["message"])


class TenantTests(_AdminTestCase):
    """Tenants: create, list, show, delete."""

    def test_create_list_show(self) -> None:
        """A created tenant is listed and shown with its root key and counts, and the
        creation is audited with who did it."""
        status, body = self.call("POST", f"{API}/tenants", {"name": "finance"})
        self.assertEqual(status, 201)
        self.assertEqual(body["resources"][0]["root_key"], {"kind": "local", "id": "default"})
        self.assertEqual(
            body["metadata"]["collectionType"], "application/vnd.kmiptwist.tenant+json"
        )
        self.tenant("alpha")
        status, listed = self.call(
            "GET", f"{API}/tenants", query={"totalCount": "true", "limit": 1}
        )
        self.assertEqual(status, 200)
        self.assertEqual([t["name"] for t in listed["resources"]], ["alpha"])
        self.assertEqual(listed["metadata"]["totalCount"], 2)
        self.assertEqual(listed["metadata"]["collectionTotal"], 1)
        _, second_page = self.call("GET", f"{API}/tenants", query={"limit": 1, "offset": 1})
        self.assertEqual([t["name"] for t in second_page["resources"]], ["finance"])
        self.admin.create_key("finance")
        _, shown = self.call("GET", f"{API}/tenants/finance")
        self.assertEqual(shown["resources"][0]["objects"], 1)
        record = self.admin.audit.records[0]
        self.assertEqual(
            (record["operation"], record["actor"], record["tenant"]),
            ("admin.tenant.create", "admin:test", "finance"),
        )

    def test_key_protect_binding_is_checked_and_stored(self) -> None:
        """A Key Protect tenant keeps what the binding check returns; a binding the
        check refuses is a 400 and no tenant is made."""

        def check(root_key_id, binding):
            if "bad" in binding.get("instance_id", ""):
                raise ValueError("the Key Protect instance id 'bad' is not a UUID")
            return {**binding, "endpoint": "https://kp.example"}

        self.admin.context.check_binding = check
        root_key = {"kind": "keyprotect", "id": "crk-1", "instance_id": "i-1", "api_key": "env:KP"}
        status, body = self.call("POST", f"{API}/tenants", {"name": "kp", "root_key": root_key})
        self.assertEqual(status, 201, body)
        tenant = self.successResultOf(self.admin.store.get_tenant("kp"))
        self.assertEqual((tenant.root_key_kind, tenant.root_key_id), ("keyprotect", "crk-1"))
        self.assertEqual(
            dict(tenant.root_key_binding),
            {"instance_id": "i-1", "api_key": "env:KP", "endpoint": "https://kp.example"},
        )
        bad = dict(root_key, instance_id="bad")
        message = self.error(
            self.call("POST", f"{API}/tenants", {"name": "kp2", "root_key": bad}),
            400,
            "INVALID_ROOT_KEY",
        )
        self.assertIn("UUID", message)
        self.assertIsNone(self.successResultOf(self.admin.store.get_tenant("kp2")))

    def test_bad_tenant_requests(self) -> None:
        """Malformed requests are refused with a reason and create nothing."""
        cases = [
            ({"name": "no/slash"}, 400, "INVALID_TENANT_NAME"),
            ({}, 400, "MISSING_FIELD"),
            ({"name": 5}, 400, "INVALID_FIELD"),
            ({"name": "x", "root_key": {"kind": "hsm"}}, 400, "INVALID_FIELD"),
            ({"name": "x", "root_key": {"kind": "keyprotect"}}, 400, "MISSING_FIELD"),
            ({"name": "x", "root_key": {"kind": "local", "endpoint": "e"}}, 400, "INVALID_FIELD"),
            ({"name": "x", "root_key": {"kind": "local", "id": "other"}}, 400, "INVALID_FIELD"),
        ]
        for body, status, reason in cases:
            self.error(self.call("POST", f"{API}/tenants", body), status, reason)
        self.error(self.call("POST", f"{API}/tenants", raw=b"{not json"), 400, "INVALID_JSON")
        self.error(self.call("POST", f"{API}/tenants", raw=b"[1, 2]"), 400, "INVALID_BODY")
        self.tenant("x")
        self.error(self.call("POST", f"{API}/tenants", {"name": "x"}), 409, "TENANT_EXISTS")
        self.assertEqual(
            [t.name for t in self.successResultOf(self.admin.store.list_tenants())], ["x"]
        )
        self.error(self.call("GET", f"{API}/tenants/nobody"), 404, "TENANT_NOT_FOUND")

    def test_delete_refused_while_objects_remain(self) -> None:
        """A tenant with keys is not deleted without force; nothing changes."""
        self.tenant("alpha")
        uid = self.admin.create_key("alpha")
        message = self.error(self.call("DELETE", f"{API}/tenants/alpha"), 409, "TENANT_HAS_OBJECTS")
        self.assertIn("1 object", message)
        self.assertIsNotNone(self.successResultOf(self.admin.store.get_tenant("alpha")))
        self.assertIsNotNone(self.successResultOf(self.admin.store.get_object("alpha", uid)))
        self.assertEqual(self.admin.connections.cut, [])
        self.assertNotIn("admin.tenant.delete", self.admin.audit.operations())

    def test_forced_delete_shreds_and_audits(self) -> None:
        """A forced delete removes every object, cuts the tenant's connections and
        audits each destroyed key; other tenants keep theirs."""
        self.tenant("alpha")
        self.tenant("beta")
        doomed = [self.admin.create_key("alpha"), self.admin.create_key("alpha")]
        kept = self.admin.create_key("beta")
        status, _ = self.call("DELETE", f"{API}/tenants/alpha", query={"force": "true"})
        self.assertEqual(status, 204)
        for uid in doomed:
            self.assertIsNone(self.successResultOf(self.admin.store.get_object("alpha", uid)))
        self.assertIsNotNone(self.successResultOf(self.admin.store.get_object("beta", kept)))
        self.assertEqual(self.admin.connections.cut, [("tenant", "alpha")])
        shredded = [
            r["unique_identifier"]
            for r in self.admin.audit.records
            if r["operation"] == "admin.object.shred"
        ]
        self.assertEqual(sorted(shredded), sorted(doomed))
        deletion = self.admin.audit.records[-1]
        self.assertEqual(
            (deletion["operation"], deletion["forced"], deletion["objects_destroyed"]),
            ("admin.tenant.delete", True, 2),
        )
        self.error(self.call("GET", f"{API}/tenants/alpha"), 404, "TENANT_NOT_FOUND")


class CertificateTests(_AdminTestCase):
    """Pinned certificates and trusted CAs of a tenant."""

    def setUp(self) -> None:
        super().setUp()
        self.tenant("alpha")
        self.tenant("beta")
        self.certificate, _ = self_signed("vcenter.example")
        self.fingerprint = pki.fingerprint(self.certificate)

    def test_register_list_show_remove(self) -> None:
        """A registered certificate is pinned by fingerprint, listed, shown with its
        PEM; removing it cuts its connections and is audited."""
        status, body = self.call(
            "POST", f"{API}/tenants/alpha/certificates", {"certificate": pem(self.certificate)}
        )
        self.assertEqual(status, 201, body)
        self.assertEqual(body["resources"][0]["fingerprint"], self.fingerprint)
        self.assertEqual(
            self.successResultOf(self.admin.store.tenant_for_fingerprint(self.fingerprint)), "alpha"
        )
        _, listed = self.call("GET", f"{API}/tenants/alpha/certificates")
        self.assertEqual([c["fingerprint"] for c in listed["resources"]], [self.fingerprint])
        self.assertNotIn("certificate", listed["resources"][0])
        colons = ":".join(self.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
        _, shown = self.call("GET", f"{API}/tenants/alpha/certificates/{colons}")
        self.assertEqual(
            pki.load_certificate(shown["resources"][0]["certificate"]), self.certificate
        )
        # Another tenant does not see it, nor can it remove it.
        self.error(
            self.call("GET", f"{API}/tenants/beta/certificates/{self.fingerprint}"),
            404,
            "CERTIFICATE_NOT_FOUND",
        )
        self.error(
            self.call("DELETE", f"{API}/tenants/beta/certificates/{self.fingerprint}"),
            404,
            "CERTIFICATE_NOT_FOUND",
        )
        status, _ = self.call("DELETE", f"{API}/tenants/alpha/certificates/{self.fingerprint}")
        self.assertEqual(status, 204)
        self.assertIsNone(
            self.successResultOf(self.admin.store.tenant_for_fingerprint(self.fingerprint))
        )
        self.assertEqual(self.admin.connections.cut, [("fingerprint", self.fingerprint)])
        self.assertEqual(
            self.admin.audit.operations()[-2:],
            ["admin.certificate.add", "admin.certificate.remove"],
        )
        self.error(
            self.call("DELETE", f"{API}/tenants/alpha/certificates/{self.fingerprint}"),
            404,
            "CERTIFICATE_NOT_FOUND",
        )

    def test_bad_certificates_change_nothing(self) -> None:
        """Malformed PEM, an expired certificate, an unknown tenant and a certificate of
        another tenant (409) are refused and nothing is registered."""
        url = f"{API}/tenants/alpha/certificates"
        self.error(self.call("POST", url, {"certificate": "hello"}), 400, "MALFORMED_PEM")
        broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        self.error(self.call("POST", url, {"certificate": broken}), 400, "MALFORMED_PEM")
        self.error(self.call("POST", url, {}), 400, "MISSING_FIELD")
        expired, _ = self_signed("old", days=-1)
        self.error(
            self.call("POST", url, {"certificate": pem(expired)}), 400, "CERTIFICATE_EXPIRED"
        )
        self.error(
            self.call(
                "POST", f"{API}/tenants/nobody/certificates", {"certificate": pem(self.certificate)}
            ),
            404,
            "TENANT_NOT_FOUND",
        )
        self.assertEqual(self.successResultOf(self.admin.store.list_certificates("alpha")), [])
        self.call(
            "POST", f"{API}/tenants/beta/certificates", {"certificate": pem(self.certificate)}
        )
        message = self.error(
            self.call("POST", url, {"certificate": pem(self.certificate)}),
            409,
            "CERTIFICATE_CONFLICT",
        )
        self.assertIn("beta", message)
        self.assertEqual(
            self.successResultOf(self.admin.store.tenant_for_fingerprint(self.fingerprint)), "beta"
        )
        self.error(
            self.call("GET", f"{API}/tenants/alpha/certificates/xyz"), 400, "INVALID_FINGERPRINT"
        )

    def test_trusted_ca(self) -> None:
        """A CA is trusted by one tenant; removing it cuts off the clients it let in."""
        ca, _ = make_ca("vCenter root CA")
        ca_fingerprint = pki.fingerprint(ca)
        url = f"{API}/tenants/alpha/trusted_cas"
        status, body = self.call("POST", url, {"certificate": pem(ca)})
        self.assertEqual(status, 201, body)
        self.assertEqual(body["resources"][0]["subject"], "CN=vCenter root CA")
        _, listed = self.call("GET", url)
        self.assertEqual([c["fingerprint"] for c in listed["resources"]], [ca_fingerprint])
        self.error(
            self.call("POST", f"{API}/tenants/beta/trusted_cas", {"certificate": pem(ca)}),
            409,
            "CERTIFICATE_CONFLICT",
        )
        status, _ = self.call("DELETE", f"{url}/{ca_fingerprint}")
        self.assertEqual(status, 204)
        self.assertEqual(self.admin.connections.cut, [("ca", ca_fingerprint)])
        self.assertEqual(self.successResultOf(self.admin.store.list_trusted_cas(None)), [])

    def test_trusting_a_ca_resolves_pending(self) -> None:
        """Certificates that were pending and chain to a newly trusted CA leave the
        pending list; others stay."""
        ca, ca_key = make_ca("vCenter root CA")
        leaf, _ = signed_by(ca, ca_key, "vcenter")
        for certificate in (leaf, self.certificate):
            self.successResultOf(
                self.admin.store.record_pending(
                    pki.fingerprint(certificate), "CN=x", "CN=y", "a", pem(certificate), 1
                )
            )
        status, body = self.call(
            "POST", f"{API}/tenants/alpha/trusted_cas", {"certificate": pem(ca)}
        )
        self.assertEqual(body["metadata"]["pendingResolved"], 1)
        self.assertEqual(
            [p.fingerprint for p in self.successResultOf(self.admin.store.list_pending())],
            [self.fingerprint],
        )

    def test_not_a_ca(self) -> None:
        """A leaf certificate, or a CA that may not sign certificates, is not trusted."""
        url = f"{API}/tenants/alpha/trusted_cas"
        self.error(self.call("POST", url, {"certificate": pem(self.certificate)}), 400, "NOT_A_CA")
        no_sign, _ = make_ca("no keyCertSign", key_cert_sign=False)
        message = self.error(self.call("POST", url, {"certificate": pem(no_sign)}), 400, "NOT_A_CA")
        self.assertIn("keyCertSign", message)
        self.assertEqual(self.successResultOf(self.admin.store.list_trusted_cas(None)), [])


class PendingTests(_AdminTestCase):
    """Certificates that tried KMIP unregistered."""

    def setUp(self) -> None:
        super().setUp()
        self.tenant("alpha")
        self.certificate, _ = self_signed("kmipClient20161127094708")
        self.fingerprint = pki.fingerprint(self.certificate)
        now = int(self.admin.clock.seconds())
        for offset, address in ((0, "10.0.0.1:4000"), (60, "10.0.0.2:4001")):
            self.successResultOf(
                self.admin.store.record_pending(
                    self.fingerprint,
                    self.certificate.subject.rfc4514_string(),
                    self.certificate.issuer.rfc4514_string(),
                    address,
                    pem(self.certificate),
                    now + offset,
                )
            )

    def test_list(self) -> None:
        """The list says who tried, from where, when first and last, and how often."""
        _, body = self.call("GET", f"{API}/pending_certificates")
        [entry] = body["resources"]
        self.assertEqual(entry["fingerprint"], self.fingerprint)
        self.assertEqual(entry["subject"], "CN=kmipClient20161127094708")
        self.assertEqual((entry["count"], entry["address"]), (2, "10.0.0.2:4001"))
        self.assertLess(entry["first_seen"], entry["last_seen"])

    def test_approve(self) -> None:
        """Approving registers the certificate to the tenant and takes it off the list."""
        self.error(
            self.call(
                "POST",
                f"{API}/pending_certificates/{self.fingerprint}/approve",
                {"tenant": "nobody"},
            ),
            404,
            "TENANT_NOT_FOUND",
        )
        self.assertEqual(len(self.successResultOf(self.admin.store.list_pending())), 1)
        status, body = self.call(
            "POST", f"{API}/pending_certificates/{self.fingerprint}/approve", {"tenant": "alpha"}
        )
        self.assertEqual(status, 201, body)
        self.assertEqual(
            self.successResultOf(self.admin.store.tenant_for_fingerprint(self.fingerprint)), "alpha"
        )
        self.assertEqual(self.successResultOf(self.admin.store.list_pending()), [])
        self.assertEqual(self.admin.audit.operations()[-1], "admin.certificate.approve")
        self.error(
            self.call(
                "POST",
                f"{API}/pending_certificates/{self.fingerprint}/approve",
                {"tenant": "alpha"},
            ),
            404,
            "PENDING_NOT_FOUND",
        )

    def test_dismiss(self) -> None:
        """Dismissing forgets the certificate without registering it."""
        status, _ = self.call("DELETE", f"{API}/pending_certificates/{self.fingerprint}")
        self.assertEqual(status, 204)
        self.assertEqual(self.successResultOf(self.admin.store.list_pending()), [])
        self.assertIsNone(
            self.successResultOf(self.admin.store.tenant_for_fingerprint(self.fingerprint))
        )


class ObjectTests(_AdminTestCase):
    """A tenant's objects: listed, shown, revoked and destroyed, never another's."""

    def setUp(self) -> None:
        super().setUp()
        self.tenant("alpha")
        self.tenant("beta")
        self.vm = self.admin.create_key(
            "alpha", name="vm-key", custom={"x-Product": "VMware vSphere"}
        )
        self.host = self.admin.create_key("alpha", name="host-key")
        self.other = self.admin.create_key("beta", name="vm-key")
        item = self.admin.kmip(
            "alpha", Operation.ACTIVATE, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, self.host)]
        )
        self.assertTrue(item.ok)

    def ids(self, tenant: str, **query: object) -> list[str]:
        status, body = self.call("GET", f"{API}/tenants/{tenant}/objects", query=query)
        self.assertEqual(status, 200, body)
        return [o["id"] for o in body["resources"]]

    def test_isolation(self) -> None:
        """One tenant's objects are never listed or shown under another."""
        self.assertEqual(self.ids("alpha"), [self.host, self.vm])
        self.assertEqual(self.ids("beta"), [self.other])
        self.assertEqual(self.ids("beta", name="vm-key"), [self.other])
        self.error(
            self.call("GET", f"{API}/tenants/beta/objects/{self.vm}"), 404, "OBJECT_NOT_FOUND"
        )
        self.error(
            self.call("POST", f"{API}/tenants/beta/objects/{self.vm}/revoke", {}),
            404,
            "OBJECT_NOT_FOUND",
        )
        self.error(self.call("GET", f"{API}/tenants/nobody/objects"), 404, "TENANT_NOT_FOUND")

    def test_state_filter_follows_dates(self) -> None:
        """A key whose Activation Date has passed is listed as Active, not Pre-Active,
        though nothing wrote it since."""
        activation = int(self.admin.clock.seconds()) + 10
        item = self.admin.kmip(
            "alpha",
            Operation.ADD_ATTRIBUTE,
            [
                ttlv.text_string(Tag.UNIQUE_IDENTIFIER, self.vm),
                ttlv.structure(
                    Tag.ATTRIBUTE,
                    [
                        ttlv.text_string(Tag.ATTRIBUTE_NAME, "Activation Date"),
                        ttlv.date_time(Tag.ATTRIBUTE_VALUE, activation),
                    ],
                ),
            ],
        )
        self.assertTrue(item.ok, item.message)
        self.assertEqual(self.ids("alpha", state="1"), [self.vm])
        self.admin.clock.advance(20)
        self.assertEqual(self.ids("alpha", state="active"), [self.host, self.vm])
        self.assertEqual(self.ids("alpha", state="1"), [])

    def test_filters_and_paging(self) -> None:
        """Filters by state, type, name and custom attribute; limit/offset/totalCount."""
        self.assertEqual(self.ids("alpha", state="active"), [self.host])
        self.assertEqual(self.ids("alpha", state="1"), [self.vm])
        self.assertEqual(self.ids("alpha", state="1-2"), [self.host, self.vm])
        self.assertEqual(self.ids("alpha", object_type="SymmetricKey"), [self.host, self.vm])
        self.assertEqual(self.ids("alpha", object_type="SecretData"), [])
        self.assertEqual(self.ids("alpha", name="host-key"), [self.host])
        self.assertEqual(self.ids("alpha", attribute="x-Product=VMware vSphere"), [self.vm])
        _, body = self.call(
            "GET",
            f"{API}/tenants/alpha/objects",
            query={"limit": 1, "offset": 1, "totalCount": "true"},
        )
        self.assertEqual([o["id"] for o in body["resources"]], [self.vm])
        self.assertEqual(body["metadata"]["totalCount"], 2)
        for query, reason in (
            ({"state": "2,4"}, "INVALID_QUERY"),
            ({"state": "sleepy"}, "INVALID_QUERY"),
            ({"limit": "0"}, "INVALID_QUERY"),
            ({"limit": "many"}, "INVALID_QUERY"),
            ({"attribute": "Name=x"}, "INVALID_QUERY"),
        ):
            self.error(self.call("GET", f"{API}/tenants/alpha/objects", query=query), 400, reason)

    def test_show_has_attributes_not_material(self) -> None:
        """Show gives the attributes as JSON and never the key material."""
        status, body = self.call("GET", f"{API}/tenants/alpha/objects/{self.vm}")
        self.assertEqual(status, 200)
        shown = body["resources"][0]
        self.assertEqual(shown["state_name"], "Pre-Active")
        self.assertEqual(shown["cryptographic_algorithm"], "AES")
        self.assertEqual(shown["attributes"]["x-Product"], ["VMware vSphere"])
        self.assertEqual(shown["attributes"]["Name"][0]["Name Value"], "vm-key")
        self.assertTrue(shown["key_material_present"])
        got = self.admin.kmip(
            "alpha", Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, self.vm)]
        )
        material = (
            got.payload.find(Tag.SYMMETRIC_KEY)
            .find(Tag.KEY_BLOCK)
            .find(Tag.KEY_VALUE)
            .find(Tag.KEY_MATERIAL)
            .value
        )
        text = str(body)
        self.assertNotIn(material.hex(), text)
        self.assertNotIn("Key Material", text)

    def test_revoke_and_destroy(self) -> None:
        """Revoke and destroy follow the KMIP state machine and are audited."""
        message = self.error(
            self.call("POST", f"{API}/tenants/alpha/objects/{self.host}/destroy"),
            409,
            "WRONG_STATE",
        )
        self.assertIn("Active", message)
        status, body = self.call(
            "POST", f"{API}/tenants/alpha/objects/{self.host}/revoke", {"reason": "KeyCompromise"}
        )
        self.assertEqual(status, 200, body)
        self.assertEqual(body["resources"][0]["state_name"], "Compromised")
        status, body = self.call("POST", f"{API}/tenants/alpha/objects/{self.host}/destroy")
        self.assertEqual(body["resources"][0]["state"], State.DESTROYED_COMPROMISED)
        self.assertFalse(body["resources"][0]["key_material_present"])
        self.error(
            self.call("POST", f"{API}/tenants/alpha/objects/{self.host}/destroy"),
            409,
            "WRONG_STATE",
        )
        self.error(
            self.call("POST", f"{API}/tenants/alpha/objects/{self.vm}/revoke", {"reason": "Bored"}),
            400,
            "INVALID_QUERY",
        )
        self.assertEqual(
            self.admin.audit.operations()[-2:], ["admin.object.revoke", "admin.object.destroy"]
        )
        self.assertEqual(self.admin.audit.records[-1]["unique_identifier"], self.host)
        # Destroyed objects are hidden by default, listed on request.
        self.assertEqual(self.ids("alpha"), [self.vm])
        self.assertEqual(self.ids("alpha", state="all"), [self.host, self.vm])

    def test_forced_delete_of_active_key(self) -> None:
        """DELETE with force revokes an Active key first, then destroys it."""
        status, _ = self.call(
            "DELETE", f"{API}/tenants/alpha/objects/{self.host}", query={"force": "true"}
        )
        self.assertEqual(status, 204)
        obj = self.successResultOf(self.admin.store.get_object("alpha", self.host))
        self.assertEqual(obj.state, State.DESTROYED)
        self.assertIsNone(obj.wrapped_material)


class CATests(_AdminTestCase):
    """The built-in CA: export, issue, sign."""

    def setUp(self) -> None:
        super().setUp()
        self.tenant("alpha")

    def test_export(self) -> None:
        """The CA certificate is there for clients to verify the server with."""
        _, body = self.call("GET", f"{API}/ca")
        ca = body["resources"][0]
        self.assertEqual(pki.load_certificate(ca["certificate"]), self.admin.ca_certificate)
        self.assertTrue(ca["issuing"])

    def test_issue(self) -> None:
        """An issued bundle is registered to the tenant; the PKCS#12 opens with its
        passphrase and holds the same certificate and key."""
        status, body = self.call(
            "POST",
            f"{API}/ca/issue",
            {
                "tenant": "alpha",
                "common_name": "vcenter-kms",
                "validity_days": 30,
                "pkcs12_passphrase": "s3cret",
            },
        )
        self.assertEqual(status, 201, body)
        issued = body["resources"][0]
        certificate = pki.load_certificate(issued["certificate"])
        key = pki.load_private_key(issued["private_key"])
        self.assertTrue(pki.key_matches_certificate(key, certificate))
        self.assertTrue(pki.is_issued_by(certificate, self.admin.ca_certificate))
        self.assertEqual(certificate.subject.rfc4514_string(), "CN=vcenter-kms")
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        self.assertLess(lifetime, datetime.timedelta(days=31))
        self.assertEqual(
            self.successResultOf(
                self.admin.store.tenant_for_fingerprint(pki.fingerprint(certificate))
            ),
            "alpha",
        )
        p12_key, p12_certificate, _ = pkcs12.load_key_and_certificates(
            base64.b64decode(issued["pkcs12"]), b"s3cret"
        )
        self.assertEqual(p12_certificate, certificate)
        self.assertTrue(pki.key_matches_certificate(p12_key, certificate))
        self.assertEqual(self.admin.audit.operations()[-1], "admin.certificate.issue")

    def test_issue_refusals(self) -> None:
        """Unknown tenant, bad validity, offline CA key: refused, nothing registered."""
        self.error(
            self.call("POST", f"{API}/ca/issue", {"tenant": "nobody"}), 404, "TENANT_NOT_FOUND"
        )
        self.error(
            self.call("POST", f"{API}/ca/issue", {"tenant": "alpha", "validity_days": 0}),
            400,
            "INVALID_FIELD",
        )
        self.error(
            self.call("POST", f"{API}/ca/issue", {"tenant": "alpha", "key_type": "dsa"}),
            400,
            "INVALID_FIELD",
        )
        self.admin.ca_offline = True
        self.error(self.call("POST", f"{API}/ca/issue", {"tenant": "alpha"}), 503, "CA_UNAVAILABLE")
        self.assertEqual(self.successResultOf(self.admin.store.list_certificates("alpha")), [])

    def test_sign_csr(self) -> None:
        """A signed CSR keeps its subject and key, gets client key usages, the asked
        validity, and is registered to the tenant."""
        csr, key = csr_for("vcenter.example.com")
        status, body = self.call(
            "POST", f"{API}/ca/sign", {"tenant": "alpha", "csr": csr, "validity_days": 90}
        )
        self.assertEqual(status, 201, body)
        certificate = pki.load_certificate(body["resources"][0]["certificate"])
        self.assertEqual(certificate.subject.rfc4514_string(), "CN=vcenter.example.com")
        self.assertTrue(pki.key_matches_certificate(key, certificate))
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.digital_signature)
        self.assertFalse(usage.key_cert_sign)
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertFalse(
            certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        )
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        self.assertGreater(lifetime, datetime.timedelta(days=89))
        self.assertLess(lifetime, datetime.timedelta(days=91))
        self.assertEqual(
            self.successResultOf(
                self.admin.store.tenant_for_fingerprint(pki.fingerprint(certificate))
            ),
            "alpha",
        )

    def test_bad_csrs_change_nothing(self) -> None:
        """A malformed CSR, a CSR whose signature is wrong, and a weak key are 400s."""
        csr, _ = csr_for("vcenter")
        for body, reason in (
            ({"tenant": "alpha", "csr": "not a csr"}, "MALFORMED_CSR"),
            (
                {
                    "tenant": "alpha",
                    "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                },
                "MALFORMED_CSR",
            ),
            ({"tenant": "alpha", "csr": tamper(csr)}, "CSR_SIGNATURE_INVALID"),
        ):
            self.error(self.call("POST", f"{API}/ca/sign", body), 400, reason)
        weak, _ = csr_for("weak", rsa.generate_private_key(public_exponent=65537, key_size=1024))
        self.error(
            self.call("POST", f"{API}/ca/sign", {"tenant": "alpha", "csr": weak}), 400, "WEAK_KEY"
        )
        self.error(
            self.call("POST", f"{API}/ca/sign", {"tenant": "nobody", "csr": csr}),
            404,
            "TENANT_NOT_FOUND",
        )
        self.assertEqual(self.successResultOf(self.admin.store.list_certificates("alpha")), [])
        self.assertEqual(self.admin.audit.records[1:], [])


class ServerTests(_AdminTestCase):
    """The server certificate and health."""

    def test_certificate_and_replacement(self) -> None:
        """The server certificate's fingerprint is shown; a replacement is served at
        once and saved; a key that does not match changes nothing."""
        _, body = self.call("GET", f"{API}/server/certificate")
        details = body["resources"][0]
        self.assertEqual(
            details["fingerprint"], pki.fingerprint(self.admin.tls_options.certificate)
        )
        self.assertEqual(
            details["fingerprint_sha256"].replace(":", "").lower(), details["fingerprint"]
        )
        self.assertIn("127.0.0.1", details["names"])
        new_certificate, new_key = pki.issue_server_certificate(
            self.admin.ca_certificate,
            self.admin.ca_key,
            ["kms.example.com"],
            [],
            "kms",
            key_kind="ec",
        )
        other_key = pki.new_private_key("ec")
        before = self.admin.tls_options.certificate
        self.error(
            self.call(
                "PUT",
                f"{API}/server/certificate",
                {
                    "certificate": pem(new_certificate),
                    "private_key": pki.private_key_pem(other_key).decode(),
                },
            ),
            400,
            "KEY_MISMATCH",
        )
        self.error(
            self.call("PUT", f"{API}/server/certificate", {"certificate": "x", "private_key": "y"}),
            400,
            "MALFORMED_PEM",
        )
        self.assertIs(self.admin.tls_options.certificate, before)
        status, body = self.call(
            "PUT",
            f"{API}/server/certificate",
            {
                "certificate": pem(new_certificate),
                "private_key": pki.private_key_pem(new_key).decode(),
            },
        )
        self.assertEqual(status, 200, body)
        self.assertEqual(self.admin.tls_options.certificate, new_certificate)
        self.assertEqual(self.admin.saved, [new_certificate])
        self.assertEqual(body["resources"][0]["saved_to"], "/data/server/server.pem")
        status, body = self.call("POST", f"{API}/server/certificate/reload")
        self.assertEqual(status, 200)
        self.assertIs(self.admin.tls_options.certificate, before)

    def test_health(self) -> None:
        """Liveness always answers; readiness is 503 naming the failing check."""
        self.assertEqual(self.call("GET", "/healthz"), (200, {"status": "ok"}))
        self.assertEqual(self.call("GET", "/readyz")[0], 200)
        self.admin.audit.healthy = False
        status, body = self.call("GET", "/readyz")
        self.assertEqual(status, 503)
        self.assertEqual(body["checks"]["audit"], False)
        self.assertFalse(body["ready"])


class PlumbingTests(_AdminTestCase):
    """Routing, limits and audit failures."""

    def test_routing_errors(self) -> None:
        """Unknown paths are 404 and wrong methods 405, both as JSON errors."""
        self.error(self.call("GET", "/nowhere"), 404, "NOT_FOUND")
        self.error(self.call("PATCH", f"{API}/tenants"), 405, "METHOD_NOT_ALLOWED")
        self.error(
            self.call("POST", f"{API}/tenants", raw=b"x" * (1024 * 1024 + 10)),
            413,
            "BODY_TOO_LARGE",
        )

    def test_unwritable_audit_fails_loudly(self) -> None:
        """When the audit record cannot be written, the caller hears of it (500)."""
        self.admin.audit.fail = True
        message = self.error(
            self.call("POST", f"{API}/tenants", {"name": "alpha"}), 500, "AUDIT_FAILED"
        )
        self.assertIn("the change was made", message)
