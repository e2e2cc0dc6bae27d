"""Tests for the Key Protect emulator: it answers as keyprotect-api.md says Key Protect does.

Each test speaks HTTP to the emulator's resource through ``treq.testing.StubTreq``
and checks status codes, headers and bodies against the reference, so that code
tested against the emulator meets the same answers from the real service.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import urlencode

import treq
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.testing.keyprotect.tap import Options, makeService
from kmiptwist.testing.keyprotect_emulator import APIKeyGrant, KeyProtectEmulator

INSTANCE = "a1b2c3d4-0000-4000-8000-000000000001"
OTHER_INSTANCE = "a1b2c3d4-0000-4000-8000-000000000002"
BASE = "http://kp.test"
GRANT = "urn:ibm:params:oauth:grant-type:apikey"


class Answer:
    """One HTTP answer: status, headers, parsed JSON body (or None)."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = body
        self.json: Any = json.loads(body) if body else None

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[-1] if values else None

    @property
    def error(self) -> dict[str, Any]:
        """The one error resource of a Key Protect error body."""
        assert self.json["metadata"]["collectionType"] == "application/vnd.ibm.kms.error+json"
        assert self.json["metadata"]["collectionTotal"] == 1
        resource: dict[str, Any] = self.json["resources"][0]
        return resource

    @property
    def code(self) -> str | None:
        reasons = self.error.get("reasons")
        return reasons[0]["code"] if reasons else None


class EmulatorCase(SynchronousTestCase):
    """An emulator with one API key and one root key, spoken to over StubTreq."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.emulator = KeyProtectEmulator(
            self.clock,
            api_keys={
                "manager-key": APIKeyGrant(),
                "reader-key": APIKeyGrant("Reader"),
                "other-instance-key": APIKeyGrant("Manager", (OTHER_INSTANCE,)),
            },
            rotation_interval=3600,
            state_change_delay=30,
        )
        self.stub = StubTreq(self.emulator.resource())
        self.root_key = self.emulator.create_root_key(INSTANCE, "crk").id
        self.token = self.issue("manager-key").json["access_token"]

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        advance: float = 0.0,
    ) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        pending = self.stub.request(method, BASE + path, headers=headers or {}, data=data)
        answers: list[Any] = []
        pending.addBoth(answers.append)
        self.stub.flush()
        if advance:
            self.clock.advance(advance)
            self.stub.flush()
        self.assertTrue(answers, f"no answer to {method} {path}")
        response = answers[0]
        if isinstance(response, Failure):
            response.raiseException()
        content: list[Any] = []
        treq.content(response).addBoth(content.append)
        self.stub.flush()
        return Answer(response.code, response.headers, content[0])

    def kp(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        instance: str | None = INSTANCE,
        extra: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if instance is not None:
            headers["Bluemix-Instance"] = instance
        headers.update(extra or {})
        return self.send(method, "/api/v2/keys" + path, body, headers, raw)

    def issue(self, api_key: str, path: str = "/identity/token") -> Answer:
        form = urlencode({"grant_type": GRANT, "apikey": api_key}).encode()
        return self.send(
            "POST", path, raw=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )

    def advance(self, seconds: float) -> None:
        """Let time pass, and get a new token (the old one may have expired)."""
        self.clock.advance(seconds)
        self.token = self.issue("manager-key").json["access_token"]

    def wrap(self, key: str | None = None, **body: Any) -> Answer:
        return self.kp("POST", f"/{key or self.root_key}/actions/wrap", body)

    def unwrap(
        self, ciphertext: str, aad: list[str] | None = None, key: str | None = None
    ) -> Answer:
        body: dict[str, Any] = {"ciphertext": ciphertext}
        if aad is not None:
            body["aad"] = aad
        return self.kp("POST", f"/{key or self.root_key}/actions/unwrap", body)


class IAMTests(EmulatorCase):
    """The token endpoint."""

    def test_token(self) -> None:
        """An API key the emulator knows gets a Bearer token valid an hour, in IAM's shape."""
        answer = self.issue("manager-key")
        self.assertEqual(answer.status, 200)
        token = answer.json
        self.assertEqual(token["token_type"], "Bearer")
        self.assertEqual(token["refresh_token"], "not_supported")
        self.assertEqual(token["expires_in"], 3600)
        self.assertEqual(token["expiration"], int(self.clock.seconds()) + 3600)
        self.assertEqual(token["scope"], "ibm openid")
        self.assertEqual(len(token["access_token"].split(".")), 3)
        self.assertEqual(self.issue("manager-key", "/oidc/token").status, 200)

    def test_unknown_api_key(self) -> None:
        """An unknown API key gets IAM's 400 BXNIM0415E body."""
        answer = self.issue("nobody")
        self.assertEqual(answer.status, 400)
        self.assertEqual(answer.json["errorCode"], "BXNIM0415E")
        self.assertEqual(answer.json["errorMessage"], "Provided API key could not be found.")
        self.assertIn("requestId", answer.json["context"])

    def test_missing_fields(self) -> None:
        """A grant without apikey, or of another type, is a 400 naming what is wrong."""
        for form, code in (
            ({"grant_type": GRANT}, "BXNIM0109E"),
            ({"grant_type": "password", "apikey": "manager-key"}, "BXNIM0103E"),
        ):
            answer = self.send("POST", "/identity/token", raw=urlencode(form).encode())
            self.assertEqual((answer.status, answer.json["errorCode"]), (400, code))
        self.assertEqual(self.send("GET", "/identity/token").status, 405)

    def test_token_expires(self) -> None:
        """An expired token gets 401 with the errorMsg-only body; a new one works."""
        self.clock.advance(3601)
        answer = self.kp("GET", f"/{self.root_key}/metadata")
        self.assertEqual(answer.status, 401)
        self.assertEqual(
            answer.error,
            {"errorMsg": "Unauthorized: The user does not have access to the specified resource"},
        )
        fresh = self.issue("manager-key").json["access_token"]
        self.assertEqual(self.kp("GET", f"/{self.root_key}/metadata", token=fresh).status, 200)

    def test_removed_api_key(self) -> None:
        """An API key removed through the control API gets no new token."""
        self.assertEqual(self.send("DELETE", "/_emulator/api-keys/reader-key").status, 200)
        self.assertEqual(self.issue("reader-key").json["errorCode"], "BXNIM0415E")


class HeaderTests(EmulatorCase):
    """What every Key Protect request must carry."""

    def test_instance_header(self) -> None:
        """No or a malformed Bluemix-Instance is 400 with the observed message."""
        for instance in (None, "not-a-uuid"):
            answer = self.kp("GET", f"/{self.root_key}/metadata", instance=instance)
            self.assertEqual(answer.status, 400)
            self.assertEqual(
                answer.error["errorMsg"],
                "Bad Request: Request requires valid Bluemix-Instance Header containing a valid UUID",
            )

    def test_authorization(self) -> None:
        """No token or a forged one is 401; a token for another instance is 401 there."""
        answer = self.send(
            "GET", f"/api/v2/keys/{self.root_key}/metadata", headers={"Bluemix-Instance": INSTANCE}
        )
        self.assertEqual(answer.status, 401)
        self.assertNotIn("reasons", answer.error)
        forged = self.token[:-4] + "AAAA"
        self.assertEqual(self.kp("GET", f"/{self.root_key}/metadata", token=forged).status, 401)
        other = self.issue("other-instance-key").json["access_token"]
        self.assertEqual(self.kp("GET", f"/{self.root_key}/metadata", token=other).status, 401)

    def test_role(self) -> None:
        """A Reader wraps and unwraps but may not disable: 403."""
        reader = self.issue("reader-key").json["access_token"]
        wrapped = self.kp("POST", f"/{self.root_key}/actions/wrap", {}, token=reader)
        self.assertEqual(wrapped.status, 200)
        answer = self.kp("POST", f"/{self.root_key}/actions/disable", token=reader)
        self.assertEqual(answer.status, 403)
        self.assertTrue(answer.error["errorMsg"].startswith("Forbidden: "))

    def test_correlation_id(self) -> None:
        """The Correlation-Id sent comes back; one is made up when none was sent."""
        answer = self.kp("GET", f"/{self.root_key}/metadata", extra={"Correlation-Id": "c-1"})
        self.assertEqual(answer.header("correlation-id"), "c-1")
        self.assertTrue(self.kp("GET", f"/{self.root_key}/metadata").header("correlation-id"))

    def test_content_types(self) -> None:
        """The vnd type, application/json and no Content-Type at all are accepted."""
        for content_type in (
            "application/vnd.ibm.kms.key_action_wrap+json",
            "application/vnd.ibm.kms.key_action+json",
            "application/json",
            None,
        ):
            extra = {} if content_type is None else {"Content-Type": content_type}
            answer = self.kp("POST", f"/{self.root_key}/actions/wrap", {}, extra=extra)
            self.assertEqual(answer.status, 200, content_type)


class KeyManagementTests(EmulatorCase):
    """Create, read, list, rotate, disable, enable, delete, restore, purge."""

    def create(self, resource: dict[str, Any], total: int = 1, **headers: str) -> Answer:
        body = {
            "metadata": {
                "collectionType": "application/vnd.ibm.kms.key+json",
                "collectionTotal": total,
            },
            "resources": [resource],
        }
        return self.kp("POST", "", body, extra=headers)

    def test_create(self) -> None:
        """A created root key comes back (201) in the reference's representation."""
        answer = self.create(
            {"type": "application/vnd.ibm.kms.key+json", "name": "k", "aliases": ["kmip-crk"]}
        )
        self.assertEqual(answer.status, 201)
        key = answer.json["resources"][0]
        self.assertEqual(answer.json["metadata"]["collectionTotal"], 1)
        self.assertEqual((key["state"], key["extractable"], key["deleted"]), (1, False, False))
        self.assertEqual(key["keyVersion"]["id"], key["id"])
        self.assertTrue(key["crn"].endswith(f":{INSTANCE}:key:{key['id']}"))
        self.assertNotIn("payload", key)
        by_alias = self.kp("GET", "/kmip-crk/metadata")
        self.assertEqual(by_alias.json["resources"][0]["id"], key["id"])
        minimal = self.create({"name": "m"}, **{"Prefer": "return=minimal"})
        self.assertEqual((minimal.status, minimal.raw), (201, b""))

    def test_create_refusals(self) -> None:
        """Bad create bodies get the reference's 400 codes."""
        self.assertEqual(self.create({"name": "k"}, total=2).code, "COLLECTION_TOTAL_MISMATCH_ERR")
        unknown = self.create({"name": "k", "colour": "red"})
        self.assertEqual((unknown.status, unknown.code), (400, "BAD_BODY_ERR"))
        self.assertIn('unknown field "colour"', unknown.error["reasons"][0]["message"])
        for alias in ("x", "rotate", "02fd6835-6001-4482-a892-13bd2085f75d"):
            answer = self.create({"name": "k", "aliases": [alias]})
            self.assertEqual(answer.code, "INVALID_FIELD_ERR", alias)
            self.assertEqual(
                answer.error["reasons"][0]["target"], {"type": "field", "name": "aliases"}
            )
        self.assertEqual(self.create({"name": "x" * 91}).code, "INVALID_FIELD_ERR")
        self.assertEqual(self.create({"name": "k", "payload": "%%%"}).code, "INVALID_FIELD_ERR")

    def test_standard_key(self) -> None:
        """A standard key shows its payload and cannot wrap (400 KEY_ROOT_REQ_ERR)."""
        payload = base64.b64encode(b"standard key material").decode()
        key = self.create({"name": "s", "extractable": True, "payload": payload}).json["resources"][
            0
        ]
        self.assertEqual(self.kp("GET", f"/{key['id']}").json["resources"][0]["payload"], payload)
        answer = self.wrap(key["id"])
        self.assertEqual((answer.status, answer.code), (400, "KEY_ROOT_REQ_ERR"))

    def test_list(self) -> None:
        """Listing pages with limit/offset, counts with totalCount and HEAD's Key-Total."""
        created = [self.emulator.create_root_key(INSTANCE, f"k{n}") for n in range(4)]
        self.emulator.create_root_key(OTHER_INSTANCE, "elsewhere")
        page = self.kp("GET", "?limit=2&offset=1&totalCount=true").json
        self.assertEqual(page["metadata"]["collectionTotal"], 2)
        self.assertEqual(page["metadata"]["totalCount"], 5)
        self.assertEqual([k["name"] for k in page["resources"]], ["k0", "k1"])
        self.assertNotIn("totalCount", self.kp("GET", "").json["metadata"])
        self.assertEqual(self.kp("HEAD", "").header("key-total"), "5")
        self.assertEqual(self.kp("GET", "?limit=5001").status, 400)
        self.kp("POST", f"/{created[2].id}/actions/disable")
        suspended = self.kp("GET", "?state=2").json["resources"]
        self.assertEqual([k["name"] for k in suspended], ["k2"])

    def test_unknown_key(self) -> None:
        """A key that does not exist (or is another instance's) is 404 KEY_NOT_FOUND_ERR."""
        other = self.emulator.create_root_key(OTHER_INSTANCE, "theirs").id
        for key in ("0e6a3b5c-1111-4222-8333-944455556666", other):
            answer = self.kp("GET", f"/{key}/metadata")
            self.assertEqual((answer.status, answer.code), (404, "KEY_NOT_FOUND_ERR"))
            self.assertEqual(self.wrap(key).status, 404)
        self.assertEqual(
            self.kp("GET", f"/{other}/metadata").error["errorMsg"],
            "Not Found: Key metadata could not be retrieved: Please see `reasons` for more details (KEY_NOT_FOUND_ERR)",
        )

    def test_disable_enable(self) -> None:
        """Disabled: wrap and unwrap are 409 KEY_ACTION_INVALID_STATE_ERR; enabling
        within 30 s is 409 REQ_TOO_EARLY_ERR; enabled again, both work."""
        ciphertext = self.wrap().json["ciphertext"]
        self.assertEqual(self.kp("POST", f"/{self.root_key}/actions/disable").status, 204)
        self.assertEqual(
            self.kp("GET", f"/{self.root_key}/metadata").json["resources"][0]["state"], 2
        )
        for answer in (self.wrap(), self.unwrap(ciphertext)):
            self.assertEqual((answer.status, answer.code), (409, "KEY_ACTION_INVALID_STATE_ERR"))
            self.assertEqual(answer.error["reasons"][0]["message"], "Key is not in a valid state")
        self.assertEqual(
            self.unwrap(ciphertext).error["errorMsg"],
            "Conflict: Unwrap with key could not be performed: Please see `reasons` for more details (KEY_ACTION_INVALID_STATE_ERR)",
        )
        too_early = self.kp("POST", f"/{self.root_key}/actions/enable")
        self.assertEqual((too_early.status, too_early.code), (409, "REQ_TOO_EARLY_ERR"))
        self.clock.advance(31)
        self.assertEqual(self.kp("POST", f"/{self.root_key}/actions/enable").status, 204)
        self.assertEqual(self.unwrap(ciphertext).status, 200)
        self.assertEqual(
            self.kp("POST", f"/{self.root_key}/actions/enable").code, "KEY_ACTION_INVALID_STATE_ERR"
        )

    def test_delete_restore_purge(self) -> None:
        """Deleted: 410 KEY_DELETED_ERR for wrap and unwrap, metadata shows state 5;
        restore brings it back; purge (4 h after a delete) makes it 404 for good."""
        ciphertext = self.wrap().json["ciphertext"]
        deleted = self.kp("DELETE", f"/{self.root_key}", extra={"Prefer": "return=representation"})
        self.assertEqual(deleted.status, 200)
        self.assertEqual(deleted.json["resources"][0]["state"], 5)
        for answer in (
            self.wrap(),
            self.unwrap(ciphertext),
            self.kp("DELETE", f"/{self.root_key}"),
        ):
            self.assertEqual((answer.status, answer.code), (410, "KEY_DELETED_ERR"))
        metadata = self.kp("GET", f"/{self.root_key}/metadata").json["resources"][0]
        self.assertEqual((metadata["state"], metadata["deleted"]), (5, True))
        self.clock.advance(31)
        self.assertEqual(self.kp("POST", f"/{self.root_key}/restore").status, 201)
        self.assertEqual(self.unwrap(ciphertext).status, 200)
        self.clock.advance(31)
        self.assertEqual(self.kp("DELETE", f"/{self.root_key}").status, 204)
        self.assertEqual(self.kp("DELETE", f"/{self.root_key}/purge").code, "REQ_TOO_EARLY_ERR")
        self.advance(4 * 3600)
        self.assertEqual(self.kp("DELETE", f"/{self.root_key}/purge").status, 204)
        self.assertEqual(self.unwrap(ciphertext).code, "KEY_NOT_FOUND_ERR")

    def test_expired_key(self) -> None:
        """Past its expiration date a key is Deactivated: no wrap (409), unwrap still works."""
        key = self.create({"name": "e", "expirationDate": "2028-01-15T00:00:00Z"}).json[
            "resources"
        ][0]
        ciphertext = self.wrap(key["id"]).json["ciphertext"]
        self.advance(1_900_000_000 - self.clock.seconds())
        self.assertEqual(self.kp("GET", f"/{key['id']}/metadata").json["resources"][0]["state"], 3)
        self.assertEqual(self.wrap(key["id"]).code, "KEY_ACTION_INVALID_STATE_ERR")
        self.assertEqual(self.unwrap(ciphertext, key=key["id"]).status, 200)

    def test_rotate(self) -> None:
        """Rotation: a new version wraps; old ciphertexts unwrap with a rewrapped
        ciphertext and rewrappedKeyVersion; a second rotation within the hour is 409."""
        old = self.wrap(aad=["a"]).json
        self.assertEqual(old["keyVersion"]["id"], self.root_key)
        too_soon = self.kp("POST", f"/{self.root_key}/actions/rotate", {})
        self.assertEqual((too_soon.status, too_soon.code), (409, "KEY_ROTATION_NOT_PERMITTED"))
        self.advance(3600)
        self.assertEqual(self.kp("POST", f"/{self.root_key}/actions/rotate", {}).status, 204)
        metadata = self.kp("GET", f"/{self.root_key}/metadata").json["resources"][0]
        latest = metadata["keyVersion"]["id"]
        self.assertNotEqual(latest, self.root_key)
        self.assertIn("lastRotateDate", metadata)
        self.assertEqual(self.wrap().json["keyVersion"]["id"], latest)
        unwrapped = self.unwrap(old["ciphertext"], ["a"]).json
        self.assertEqual(unwrapped["plaintext"], old["plaintext"])
        self.assertEqual(unwrapped["keyVersion"]["id"], self.root_key)
        self.assertEqual(unwrapped["rewrappedKeyVersion"]["id"], latest)
        again = self.unwrap(unwrapped["ciphertext"], ["a"]).json
        self.assertEqual(again["plaintext"], old["plaintext"])
        self.assertNotIn("ciphertext", again)
        versions = self.kp("GET", f"/{self.root_key}/versions?totalCount=true").json
        self.assertEqual([v["id"] for v in versions["resources"]], [latest, self.root_key])
        self.assertEqual(versions["metadata"]["totalCount"], 2)

    def test_rotate_imported(self) -> None:
        """An imported root key rotates only with a new payload (400 KEY_PAYLOAD_REQ_ERR)."""
        key = self.emulator.create_root_key(
            INSTANCE, "i", base64.b64encode(os.urandom(32)).decode()
        )
        self.advance(3600)
        self.assertEqual(
            self.kp("POST", f"/{key.id}/actions/rotate", {}).code, "KEY_PAYLOAD_REQ_ERR"
        )
        payload = base64.b64encode(os.urandom(32)).decode()
        self.assertEqual(
            self.kp("POST", f"/{key.id}/actions/rotate", {"payload": payload}).status, 204
        )

    def test_dual_authorization_not_set(self) -> None:
        """setKeyForDeletion on a key without a dual-authorization policy is 409."""
        answer = self.kp("POST", f"/{self.root_key}/actions/setKeyForDeletion")
        self.assertEqual((answer.status, answer.code), (409, "NOT_DUAL_AUTH_ERR"))


class WrapTests(EmulatorCase):
    """wrap, unwrap and rewrap, in both URL forms."""

    def test_generated_key(self) -> None:
        """Wrap without plaintext (empty body, {} or aad only) returns a new 32-byte key."""
        for answer in (
            self.kp("POST", f"/{self.root_key}/actions/wrap"),
            self.wrap(),
            self.wrap(aad=["x"]),
            self.wrap(plaintext=""),
        ):
            self.assertEqual(answer.status, 200)
            self.assertEqual(len(base64.b64decode(answer.json["plaintext"])), 32)
            self.assertEqual(answer.json["keyVersion"]["id"], self.root_key)

    def test_round_trip_and_ciphertext_form(self) -> None:
        """Given plaintext comes back from unwrap; the ciphertext is base64 JSON with
        ciphertext, iv, version and the key version as handle; plaintext is not echoed."""
        plaintext = base64.b64encode(b"data encryption key").decode()
        wrapped = self.wrap(plaintext=plaintext, aad=["tenant", "uid"]).json
        self.assertNotIn("plaintext", wrapped)
        document = json.loads(base64.b64decode(wrapped["ciphertext"]))
        self.assertEqual(set(document), {"ciphertext", "iv", "version", "handle"})
        self.assertEqual(document["handle"], self.root_key)
        self.assertNotIn(b"data encryption key", base64.b64decode(wrapped["ciphertext"]))
        self.assertEqual(
            self.unwrap(wrapped["ciphertext"], ["tenant", "uid"]).json["plaintext"], plaintext
        )

    def test_legacy_action_form(self) -> None:
        """The deprecated ?action= form wraps and unwraps the same way."""
        wrapped = self.kp("POST", f"/{self.root_key}?action=wrap", {"aad": ["a"]})
        self.assertEqual(wrapped.status, 200)
        unwrapped = self.kp(
            "POST",
            f"/{self.root_key}?action=unwrap",
            {"ciphertext": wrapped.json["ciphertext"], "aad": ["a"]},
        )
        self.assertEqual(unwrapped.json["plaintext"], wrapped.json["plaintext"])
        self.assertEqual(self.emulator.calls["wrap"], 1)

    def test_aad_checked(self) -> None:
        """A different, missing or reordered AAD is 400 INVALID_FIELD_ERR on ciphertext."""
        ciphertext = self.wrap(aad=["one", "two"]).json["ciphertext"]
        for aad in (["one", "three"], ["one"], ["two", "one"], None):
            answer = self.unwrap(ciphertext, aad)
            self.assertEqual((answer.status, answer.code), (400, "INVALID_FIELD_ERR"), aad)
            self.assertEqual(answer.error["reasons"][0]["target"]["name"], "ciphertext")
        self.assertEqual(self.unwrap(ciphertext, ["one", "two"]).status, 200)

    def test_bad_inputs(self) -> None:
        """Bad base64 plaintext, oversized fields, a corrupted ciphertext, another key's
        ciphertext and a missing body get the reference's codes."""
        bad = self.wrap(plaintext="not base64!")
        self.assertEqual((bad.status, bad.code), (400, "INVALID_FIELD_ERR"))
        self.assertEqual(bad.error["reasons"][0]["target"], {"type": "field", "name": "plaintext"})
        self.assertEqual(self.wrap(plaintext="A" * 4100).code, "INVALID_FIELD_ERR")
        self.assertEqual(self.wrap(aad=["x"] * 127).code, "INVALID_FIELD_ERR")
        self.assertEqual(self.wrap(aad=["x" * 256]).code, "INVALID_FIELD_ERR")
        self.assertEqual(self.wrap(colour="red").code, "BAD_BODY_ERR")
        self.assertEqual(self.unwrap("%%%").code, "INVALID_FIELD_ERR")
        corrupted = self.unwrap(base64.b64encode(b"not json").decode())
        self.assertEqual((corrupted.status, corrupted.code), (422, "UNPROCESSABLE_CIPHERTEXT_ERR"))
        other = self.emulator.create_root_key(INSTANCE, "other").id
        foreign = self.wrap(other).json["ciphertext"]
        self.assertEqual(self.unwrap(foreign).status, 422)
        empty = self.kp("POST", f"/{self.root_key}/actions/unwrap")
        self.assertEqual((empty.status, empty.code), (400, "NO_BODY_ERR"))
        self.assertEqual(self.kp("POST", f"/{self.root_key}/actions/rewrap").code, "NO_BODY_ERR")

    def test_same_material_unwraps(self) -> None:
        """Two root keys imported with the same material unwrap each other's ciphertexts."""
        payload = base64.b64encode(os.urandom(32)).decode()
        first = self.emulator.create_root_key(INSTANCE, "first", payload).id
        second = self.emulator.create_root_key(INSTANCE, "second", payload).id
        wrapped = self.wrap(first).json
        self.assertEqual(
            self.unwrap(wrapped["ciphertext"], key=second).json["plaintext"], wrapped["plaintext"]
        )

    def test_rewrap(self) -> None:
        """Rewrap returns the ciphertext under the latest version, no plaintext."""
        wrapped = self.wrap(aad=["a"]).json
        self.advance(3600)
        self.kp("POST", f"/{self.root_key}/actions/rotate")
        answer = self.kp(
            "POST",
            f"/{self.root_key}/actions/rewrap",
            {"ciphertext": wrapped["ciphertext"], "aad": ["a"]},
        )
        self.assertEqual(answer.status, 200)
        self.assertNotIn("plaintext", answer.json)
        self.assertEqual(answer.json["keyVersion"]["id"], self.root_key)
        latest = answer.json["rewrappedKeyVersion"]["id"]
        self.assertNotEqual(latest, self.root_key)
        again = self.unwrap(answer.json["ciphertext"], ["a"]).json
        self.assertEqual(
            (again["plaintext"], again["keyVersion"]["id"]), (wrapped["plaintext"], latest)
        )


class KnobTests(EmulatorCase):
    """Latency, injected failures, outages and the control API."""

    def test_latency(self) -> None:
        """With latency set, the answer comes only once that much time has passed."""
        self.assertEqual(self.send("POST", "/_emulator/knobs", {"latency": 0.05}).status, 200)
        pending = self.stub.request(
            "GET",
            f"{BASE}/api/v2/keys/{self.root_key}/metadata",
            headers={"Authorization": f"Bearer {self.token}", "Bluemix-Instance": INSTANCE},
        )
        answers: list[Any] = []
        pending.addBoth(answers.append)
        self.stub.flush()
        self.assertEqual(answers, [])
        self.assertEqual(self.emulator.in_flight, 1)
        self.clock.advance(0.05)
        self.stub.flush()
        self.assertEqual(answers[0].code, 200)
        self.assertEqual(self.emulator.max_in_flight, 1)

    def test_injected_statuses(self) -> None:
        """Injected 429 (with Retry-After) and 503 answers come first, then normal ones."""
        self.send("POST", "/_emulator/inject", {"status": 429, "count": 1, "retry_after": 2})
        self.emulator.inject(503)
        limited = self.wrap()
        self.assertEqual((limited.status, limited.header("retry-after")), (429, "2"))
        self.assertEqual(
            limited.error["errorMsg"], "Too Many Requests: Please wait a few minutes and try again."
        )
        self.assertEqual(self.wrap().status, 503)
        self.assertEqual(self.wrap().status, 200)

    def test_outage(self) -> None:
        """An outage answers 503, or drops the connection, until it is turned off."""
        self.emulator.knobs.update({"outage": "503"})
        self.assertEqual(self.wrap().status, 503)
        self.assertEqual(self.issue("manager-key").status, 503)
        self.emulator.knobs.update({"outage": "drop"})
        from twisted.web.client import ResponseNeverReceived

        self.assertRaises(ResponseNeverReceived, self.wrap)
        self.emulator.knobs.update({"outage": "off"})
        self.assertEqual(self.wrap().status, 200)

    def test_rates(self) -> None:
        """A 429 rate of 1 refuses every request; bad knob values are a 400."""
        self.emulator.knobs.update({"rate_429": 1.0})
        self.assertEqual(self.wrap().status, 429)
        self.assertEqual(self.send("POST", "/_emulator/knobs", {"rate_5xx": 2}).status, 400)
        self.assertEqual(self.send("POST", "/_emulator/knobs", {"colour": 1}).status, 400)
        status = self.send("GET", "/_emulator").json
        self.assertEqual(status["knobs"]["rate_429"], 1.0)
        self.assertEqual(status["calls"]["wrap"], 1)


class StateFileTests(SynchronousTestCase):
    """The emulator with a state file, as a process restarted later."""

    def test_restart_keeps_keys_and_tokens(self) -> None:
        """Keys, their versions and state, API keys and issued tokens survive a restart."""
        path = self.mktemp()
        clock = Clock()
        first = KeyProtectEmulator(
            clock, state_file=path, api_keys={"k": APIKeyGrant()}, rotation_interval=0
        )
        key = first.create_root_key(INSTANCE, "crk")
        token = first.iam.issue({"grant_type": [GRANT], "apikey": ["k"]})["access_token"]
        wrapped = first.model.wrap(INSTANCE, key.id, {"aad": ["a"]})
        first.model.rotate(INSTANCE, key.id, {})
        first.save()
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        second = KeyProtectEmulator(clock, state_file=path)
        second.iam.authorize(f"Bearer {token}", INSTANCE, "Reader")
        unwrapped = second.model.unwrap(
            INSTANCE, key.id, {"ciphertext": wrapped["ciphertext"], "aad": ["a"]}
        )
        self.assertEqual(unwrapped["plaintext"], wrapped["plaintext"])
        self.assertIn("rewrappedKeyVersion", unwrapped)


class PluginTests(SynchronousTestCase):
    """``twistd kmip-keyprotect-emulator`` options."""

    def test_options(self) -> None:
        """API keys with roles, root keys to create, knobs; the service carries the emulator."""
        options = Options()
        options.parseOptions(
            [
                "--port",
                "0",
                "--api-key",
                "k1",
                "--api-key",
                f"k2:Reader:{INSTANCE}",
                "--create-root-key",
                f"{INSTANCE}:crk",
                "--latency",
                "0.05",
                "--state-change-delay",
                "0",
            ]
        )
        self.assertEqual(options["api-keys"][1], ("k2", APIKeyGrant("Reader", (INSTANCE,))))
        service: Any = makeService(options)
        emulator = service.emulator
        self.assertEqual(emulator.knobs.latency, 0.05)
        self.assertEqual([k.name for k in emulator.model.keys.values()], ["crk"])
        self.assertEqual(emulator.model.state_change_delay, 0)

    def test_bad_options(self) -> None:
        """A bad role, a bad instance id or half a TLS pair is a usage error."""
        from twisted.python.usage import UsageError

        for arguments in (
            ["--api-key", "k:Owner"],
            ["--create-root-key", "nope:crk"],
            ["--tls-certificate", "c.pem"],
        ):
            self.assertRaises(UsageError, Options().parseOptions, arguments)
