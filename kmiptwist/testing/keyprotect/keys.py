"""The emulator's keys: root and standard keys per instance, their versions and states.

Everything here follows keyprotect-api.md: the states of §3.6 (Active 1, Suspended 2,
Deactivated 3 once expired, Destroyed 5) and what each allows; rotation adds a
version that wraps from then on while older versions still unwrap (§2.8); wrap,
unwrap and rewrap are AES-256-GCM under a version's material with the AAD strings
bound in order, and the ciphertext is base64 of JSON ``{ciphertext, iv, version,
handle}`` (§2.7).  Every refusal is a :class:`KPError` with the status and reason
code of the reference.  ``clock`` gives the time (a ``Clock`` in tests).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
import uuid
from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime

from kmiptwist.testing.keyprotect.envelope import WrapActions
from kmiptwist.testing.keyprotect.errors import KPError

__all__ = ["ACTIVE", "SUSPENDED", "DEACTIVATED", "DESTROYED", "Key", "KeyVersion", "KeyModel"]

ACTIVE, SUSPENDED, DEACTIVATED, DESTROYED = 1, 2, 3, 5

KEY_TYPE = "application/vnd.ibm.kms.key+json"
VERSION_TYPE = "application/vnd.ibm.kms.key.version+json"

#: Limits of the docs (keyprotect-api.md §3.1).
MAX_NAME = 90
MAX_ALIASES = 5
RESTORE_WINDOW = 30 * 86400

_RESERVED_ALIASES = frozenset(
    "allowed_ip key keys metadata policy policies registration registrations ring rings "
    "rotate wrap unwrap rewrap version versions".split()
)
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{2,90}$")
_KEY_FIELDS = frozenset(
    {"type", "name", "aliases", "description", "extractable", "expirationDate", "payload"}
    | {"encryptedNonce", "iv", "encryptionAlgorithm", "keyRingID"}
)


def iso(seconds: float) -> str:
    """Key Protect's date form, e.g. 2020-03-12T03:37:32Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _parse_iso(text: str) -> float:
    import calendar

    try:
        return float(calendar.timegm(time.strptime(text.replace(".000", ""), "%Y-%m-%dT%H:%M:%SZ")))
    except (ValueError, TypeError):
        raise ValueError(text) from None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise ValueError(str(error)) from None


@define
class KeyVersion:
    """One version of a key's material."""

    id: str
    created: float
    material: bytes = field(repr=False)


@define
class Key:
    """A root key (``extractable`` False) or standard key in one instance."""

    id: str
    instance: str
    name: str
    created: float
    created_by: str
    versions: list[KeyVersion]
    extractable: bool = False
    imported: bool = False
    description: str = ""
    aliases: list[str] = field(factory=list)
    expiration: float | None = None
    stored_state: int = ACTIVE
    updated: float = 0.0
    rotated: float | None = None
    state_changed: float | None = None
    deleted: float | None = None
    deleted_by: str | None = None
    key_ring: str = "default"

    def state(self, now: float) -> int:
        """The state now: an expired Active or Suspended key is Deactivated."""
        if self.stored_state in (ACTIVE, SUSPENDED) and self.expiration is not None:
            if now >= self.expiration:
                return DEACTIVATED
        return self.stored_state

    @property
    def latest(self) -> KeyVersion:
        """The version that wraps."""
        return self.versions[-1]

    def to_json(self) -> dict[str, Any]:
        """Everything, material included (the state file is test infrastructure)."""
        data = {name: getattr(self, name) for name in _PLAIN_FIELDS}
        data["versions"] = [
            {"id": v.id, "created": v.created, "material": base64.b64encode(v.material).decode()}
            for v in self.versions
        ]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Key:
        """The key :meth:`to_json` saved."""
        versions = [
            KeyVersion(v["id"], v["created"], base64.b64decode(v["material"]))
            for v in data["versions"]
        ]
        return cls(versions=versions, **{name: data[name] for name in _PLAIN_FIELDS})


_PLAIN_FIELDS = (
    "id instance name created created_by extractable imported description aliases expiration "
    "stored_state updated rotated state_changed deleted deleted_by key_ring"
).split()


@define
class KeyModel(WrapActions):
    """Every instance's keys and what Key Protect lets a caller do with them.

    ``rotation_interval`` (one rotation per hour in Key Protect) and
    ``state_change_delay`` (30 s between disable/enable/restore) are settable so tests
    need not wait; ``purge_delay`` is the 4 h between delete and purge.
    """

    clock: IReactorTime
    region: str = "us-south"
    account: str = "f047b55a3362ac06afad8a3f2f5586ea"
    rotation_interval: float = 3600.0
    state_change_delay: float = 30.0
    purge_delay: float = 4 * 3600.0
    keys: dict[str, Key] = field(factory=dict, repr=False)

    def now(self) -> float:
        """The current time."""
        return self.clock.seconds()

    # -- lookups -----------------------------------------------------------------------

    def find(self, instance: str, id_or_alias: str, what: str, deleted_ok: bool = False) -> Key:
        """The instance's key by id or alias; 404 when unknown, 410 when deleted."""
        key = self.keys.get(id_or_alias)
        if key is None or key.instance != instance:
            key = next(
                (
                    k
                    for k in self.keys.values()
                    if k.instance == instance and id_or_alias in k.aliases
                ),
                None,
            )
        if key is None or key.instance != instance:
            raise KPError(404, "KEY_NOT_FOUND_ERR", what, "Key does not exist")
        if key.stored_state == DESTROYED and not deleted_ok:
            raise KPError(
                410,
                "KEY_DELETED_ERR",
                what,
                "Key has already been deleted. Please delete references to this key.",
            )
        return key

    def representation(self, key: Key, with_payload: bool = False) -> dict[str, Any]:
        """The key resource, as GET metadata (or GET with ``with_payload``) shows it."""
        now = self.now()
        data: dict[str, Any] = {
            "type": KEY_TYPE,
            "id": key.id,
            "name": key.name,
            "aliases": list(key.aliases),
            "description": key.description,
            "state": key.state(now),
            "extractable": key.extractable,
            "crn": f"crn:v1:bluemix:public:kms:{self.region}:a/{self.account}:{key.instance}:key:{key.id}",
            "imported": key.imported,
            "creationDate": iso(key.created),
            "createdBy": key.created_by,
            "algorithmType": "AES",
            "algorithmMetadata": {"bitLength": str(len(key.latest.material) * 8), "mode": "GCM"},
            "algorithmBitSize": len(key.latest.material) * 8,
            "algorithmMode": "GCM",
            "lastUpdateDate": iso(key.updated or key.created),
            "keyVersion": {"id": key.latest.id, "creationDate": iso(key.latest.created)},
            "keyRingID": key.key_ring,
            "dualAuthDelete": {"enabled": False},
            "deleted": key.stored_state == DESTROYED,
        }
        if key.rotated is not None:
            data["lastRotateDate"] = iso(key.rotated)
        if key.expiration is not None:
            data["expirationDate"] = iso(key.expiration)
        if key.deleted is not None:
            data["deletionDate"] = iso(key.deleted)
            data["deletedBy"] = key.deleted_by
            data["purgeAllowed"] = now >= key.deleted + self.purge_delay
            data["purgeAllowedFrom"] = iso(key.deleted + self.purge_delay)
            data["purgeScheduledOn"] = iso(key.deleted + 90 * 86400)
        if with_payload and key.extractable and key.stored_state != DESTROYED:
            data["payload"] = base64.b64encode(key.latest.material).decode()
        return data

    @staticmethod
    def collection(resources: list[dict[str, Any]], total: int | None = None) -> dict[str, Any]:
        """A ``vnd.ibm.kms.key+json`` collection."""
        metadata: dict[str, Any] = {"collectionType": KEY_TYPE, "collectionTotal": len(resources)}
        if total is not None:
            metadata["totalCount"] = total
        return {"metadata": metadata, "resources": resources}

    # -- create, list --------------------------------------------------------------------

    def create(self, instance: str, body: Any, created_by: str) -> Key:
        """``POST /api/v2/keys``: one resource in a collection envelope (§3.1)."""
        what = "Key could not be created"
        if not isinstance(body, dict) or not isinstance(body.get("resources"), list):
            raise KPError(400, "BAD_BODY_ERR", what, "Invalid body data was passed: resources")
        resources = body["resources"]
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or metadata.get("collectionTotal") != len(resources):
            raise KPError(
                400,
                "COLLECTION_TOTAL_MISMATCH_ERR",
                what,
                "The value specified for 'collectionTotal' does not match the number of resources",
            )
        if len(resources) != 1 or not isinstance(resources[0], dict):
            raise KPError(400, "BAD_BODY_ERR", what, "Only one key may be created per request")
        resource = resources[0]
        for name in resource:
            if name not in _KEY_FIELDS:
                raise KPError(400, "BAD_BODY_ERR", what, f'json: unknown field "{name}"')
        name = resource.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
            raise KPError(
                400,
                "INVALID_FIELD_ERR",
                what,
                "The field `name` must be: 1 to 90 characters",
                "name",
            )
        aliases = resource.get("aliases", [])
        if not isinstance(aliases, list) or len(aliases) > MAX_ALIASES:
            raise KPError(
                400,
                "INVALID_FIELD_ERR",
                what,
                "The field `aliases` must be: at most 5 aliases",
                "aliases",
            )
        for alias in aliases:
            if (
                not isinstance(alias, str)
                or not _ALIAS.match(alias)
                or _is_uuid(alias)
                or alias in _RESERVED_ALIASES
            ):
                raise KPError(
                    400,
                    "INVALID_FIELD_ERR",
                    what,
                    "The field `aliases` must be: 2 to 90 alphanumeric, '-' or '_' characters, "
                    "not a UUID and not a reserved word",
                    "aliases",
                )
            if any(alias in k.aliases for k in self.keys.values() if k.instance == instance):
                raise KPError(
                    400,
                    "INVALID_FIELD_ERR",
                    what,
                    f"The alias {alias!r} is already in use",
                    "aliases",
                )
        extractable = resource.get("extractable", False)
        if not isinstance(extractable, bool):
            raise KPError(
                400,
                "INVALID_FIELD_ERR",
                what,
                "The field `extractable` must be: a boolean",
                "extractable",
            )
        expiration = None
        if resource.get("expirationDate") is not None:
            try:
                expiration = _parse_iso(resource["expirationDate"])
            except ValueError:
                raise KPError(
                    400,
                    "INVALID_FIELD_ERR",
                    what,
                    "The field `expirationDate` must be: an RFC 3339 date",
                    "expirationDate",
                ) from None
        payload = resource.get("payload")
        if payload is not None:
            try:
                material = _b64decode(payload)
            except ValueError:
                raise KPError(
                    400, "INVALID_FIELD_ERR", what, "The field `payload` must be: base64", "payload"
                ) from None
            if not extractable and len(material) not in (16, 24, 32):
                raise KPError(
                    400,
                    "INVALID_FIELD_ERR",
                    what,
                    "The field `payload` must be: 128, 192 or 256 bits for a root key",
                    "payload",
                )
        else:
            material = os.urandom(32)
        now = self.now()
        key_id = str(uuid.uuid4())
        key = Key(
            id=key_id,
            instance=instance,
            name=name,
            created=now,
            created_by=created_by,
            # The first version's id is the key's (keyprotect-api.md §2.5, observed).
            versions=[KeyVersion(key_id, now, material)],
            extractable=extractable,
            imported=payload is not None,
            description=str(resource.get("description", "")),
            aliases=list(aliases),
            expiration=expiration,
            updated=now,
            key_ring=str(resource.get("keyRingID", "default")),
        )
        self.keys[key_id] = key
        return key

    def list_keys(
        self,
        instance: str,
        limit: int,
        offset: int,
        states: set[int] | None,
        extractable: bool | None,
    ) -> tuple[list[Key], int]:
        """The instance's keys (oldest first), one page of them, and how many match."""
        now = self.now()
        wanted = states if states is not None else {0, ACTIVE, SUSPENDED, DEACTIVATED}
        matching = [
            k
            for k in self.keys.values()
            if k.instance == instance
            and k.state(now) in wanted
            and (extractable is None or k.extractable == extractable)
        ]
        matching.sort(key=lambda k: k.created)  # stable: creation order within a second
        return matching[offset : offset + limit], len(matching)

    # -- lifecycle actions ---------------------------------------------------------------

    def _check_state_change(self, key: Key, what: str) -> None:
        now = self.now()
        if key.state_changed is not None and now - key.state_changed < self.state_change_delay:
            raise KPError(
                409,
                "REQ_TOO_EARLY_ERR",
                what,
                f"The key was updated recently. Please wait {int(self.state_change_delay)} "
                "seconds and try again",
            )

    def rotate(self, instance: str, id_or_alias: str, body: Any) -> Key:
        """``rotate``: a new version wraps from now on; old versions still unwrap."""
        what = "Rotate with key could not be performed"
        key = self.find(instance, id_or_alias, what)
        self._root_only(key, what)
        if key.state(self.now()) == SUSPENDED:
            raise KPError(409, "KEY_ACTION_INVALID_STATE_ERR", what, "Key is not in a valid state")
        now = self.now()
        if now - key.latest.created < self.rotation_interval:
            raise KPError(
                409,
                "KEY_ROTATION_NOT_PERMITTED",
                what,
                "This root key has been rotated within the last hour. Only one 'rotate' "
                "action per hour is permitted",
            )
        payload = body.get("payload") if isinstance(body, dict) else None
        if key.imported:
            if payload is None:
                raise KPError(
                    400,
                    "KEY_PAYLOAD_REQ_ERR",
                    what,
                    "This root key was created with user-supplied key material; a payload is "
                    "required to rotate it",
                )
            try:
                material = _b64decode(payload)
            except ValueError:
                material = b""
            if len(material) not in (16, 24, 32):
                raise KPError(
                    400,
                    "INVALID_FIELD_ERR",
                    what,
                    "The field `payload` must be: base64 of 128, 192 or 256 bits",
                    "payload",
                )
        else:
            material = os.urandom(32)
        key.versions.append(KeyVersion(str(uuid.uuid4()), now, material))
        key.rotated = key.updated = now
        return key

    def disable(self, instance: str, id_or_alias: str) -> Key:
        """``disable``: Active to Suspended; nothing wraps or unwraps with it."""
        what = "Disable with key could not be performed"
        key = self.find(instance, id_or_alias, what)
        if key.state(self.now()) != ACTIVE:
            raise KPError(409, "KEY_ACTION_INVALID_STATE_ERR", what, "Key is not in a valid state")
        self._check_state_change(key, what)
        key.stored_state = SUSPENDED
        key.state_changed = key.updated = self.now()
        return key

    def enable(self, instance: str, id_or_alias: str) -> Key:
        """``enable``: Suspended back to Active (not an expired key)."""
        what = "Enable with key could not be performed"
        key = self.find(instance, id_or_alias, what)
        if key.state(self.now()) != SUSPENDED:
            raise KPError(409, "KEY_ACTION_INVALID_STATE_ERR", what, "Key is not in a valid state")
        self._check_state_change(key, what)
        key.stored_state = ACTIVE
        key.state_changed = key.updated = self.now()
        return key

    def delete(self, instance: str, id_or_alias: str, deleted_by: str) -> Key:
        """``DELETE``: the key is Destroyed; nothing it wrapped unwraps any more."""
        key = self.find(instance, id_or_alias, "Key could not be deleted")
        key.stored_state = DESTROYED
        key.deleted = key.updated = key.state_changed = self.now()
        key.deleted_by = deleted_by
        return key

    def restore(self, instance: str, id_or_alias: str) -> Key:
        """``restore`` within 30 days of a delete: Active again."""
        what = "Key could not be restored"
        key = self.find(instance, id_or_alias, what, deleted_ok=True)
        if key.stored_state != DESTROYED or key.deleted is None:
            raise KPError(409, "KEY_ACTION_INVALID_STATE_ERR", what, "Key is not in a valid state")
        if self.now() - key.deleted > RESTORE_WINDOW:
            raise KPError(
                400, "KEY_RESTORE_EXPIRED", what, "The key cannot be restored after 30 days"
            )
        self._check_state_change(key, what)
        key.stored_state = ACTIVE
        key.deleted = key.deleted_by = None
        key.state_changed = key.updated = self.now()
        return key

    def purge(self, instance: str, id_or_alias: str) -> Key:
        """``purge`` a deleted key (4 h after the delete): it is gone, 404 from then on."""
        what = "Key could not be purged"
        key = self.find(instance, id_or_alias, what, deleted_ok=True)
        if key.stored_state != DESTROYED or key.deleted is None:
            raise KPError(409, "KEY_ACTION_INVALID_STATE_ERR", what, "Key is not in a valid state")
        if self.now() - key.deleted < self.purge_delay:
            raise KPError(
                409, "REQ_TOO_EARLY_ERR", what, "A key can be purged 4 hours after it was deleted"
            )
        del self.keys[key.id]
        return key

    def versions(
        self, instance: str, id_or_alias: str, limit: int, offset: int, all_states: bool
    ) -> tuple[list[KeyVersion], int]:
        """The key's versions, newest first, one page of them, and how many there are."""
        what = "Key versions could not be retrieved"
        key = self.find(instance, id_or_alias, what, deleted_ok=all_states)
        if not all_states and key.state(self.now()) != ACTIVE:
            raise KPError(409, "KEY_ACTION_INVALID_STATE_ERR", what, "Key is not in a valid state")
        ordered = list(reversed(key.versions))
        return ordered[offset : offset + limit], len(ordered)

    # -- persistence ---------------------------------------------------------------------

    def to_json(self) -> list[dict[str, Any]]:
        """Every key, for the state file."""
        return [key.to_json() for key in self.keys.values()]

    def load_json(self, data: list[dict[str, Any]]) -> None:
        """Restore the keys :meth:`to_json` saved."""
        for item in data:
            key = Key.from_json(item)
            self.keys[key.id] = key
