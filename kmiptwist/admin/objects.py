# -*- test-case-name: tests.test_admin_api -*-
"""A tenant's managed objects: list (filters, paging), show metadata, revoke, destroy.

Never key material: only attributes leave through here.  Listing goes through the
store's Locate index, scoped to the tenant in the path, so one tenant's objects are
never listed under another.  Revoke and Destroy run the KMIP operations' own code
(state machine, locks, cache invalidation), as a KMIP 2.1 client of that tenant would.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from kmiptwist import ttlv
from kmiptwist.admin.api import AdminError, Call, Reply, Router, bad_request, collection, not_found
from kmiptwist.admin.context import AdminContext
from kmiptwist.admin.tenants import require_tenant
from kmiptwist.errors import KMIPError
from kmiptwist.interfaces import LocateCriterion
from kmiptwist.messages import ProtocolVersion
from kmiptwist.objects import ManagedObject, apply_time, state_name
from kmiptwist.operations import OPERATIONS, RequestContext
from kmiptwist.operations.locate import catch_up_states
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary import ENUM_BY_TAG, TAG_SPEC_NAME, enum_from_xml_name, enum_xml_name
from kmiptwist.vocabulary.enums import (
    NameType,
    ObjectType,
    Operation,
    ResultReason,
    RevocationReasonCode,
    State,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["routes", "item_json", "object_resource", "DEFAULT_STATES"]

DEFAULT_STATES = (State.PRE_ACTIVE, State.ACTIVE, State.DEACTIVATED, State.COMPROMISED)
"""Listed when no ``state`` filter is given (as Key Protect: destroyed objects hidden)."""

_ADMIN_VERSION = ProtocolVersion(2, 1)

_HTTP_FOR_REASON: dict[int, tuple[int, str]] = {
    ResultReason.ITEM_NOT_FOUND: (404, "OBJECT_NOT_FOUND"),
    ResultReason.WRONG_KEY_LIFECYCLE_STATE: (409, "WRONG_STATE"),
    ResultReason.PERMISSION_DENIED: (409, "WRONG_STATE"),
    ResultReason.INVALID_FIELD: (400, "INVALID_FIELD"),
}


def _iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def item_json(item: Item) -> Any:
    """An attribute value as JSON: enumerations by their KMIP name, dates in ISO 8601,
    byte strings in hex, structures as objects keyed by field name."""
    item_type = item.type
    if item_type == ItemType.STRUCTURE:
        fields: dict[str, Any] = {}
        for child in item.value:
            name = TAG_SPEC_NAME.get(child.tag, f"0x{child.tag:06X}")
            value = item_json(child)
            if name in fields:
                previous = fields[name]
                fields[name] = (
                    [*previous, value] if isinstance(previous, list) else [previous, value]
                )
            else:
                fields[name] = value
        return fields
    if item_type == ItemType.ENUMERATION:
        enum = ENUM_BY_TAG.get(item.tag)
        if enum is not None:
            try:
                return enum_xml_name(enum, item.value)
            except (KeyError, ValueError):
                pass
        return item.value
    if item_type in (ItemType.DATE_TIME, ItemType.DATE_TIME_EXTENDED):
        seconds = item.value if item_type == ItemType.DATE_TIME else item.value // 1_000_000
        return _iso(seconds)
    if item_type == ItemType.BYTE_STRING:
        return bytes(item.value).hex()
    if item_type == ItemType.BIG_INTEGER:
        return str(item.value)
    return item.value


def object_resource(obj: ManagedObject, full: bool = False) -> dict[str, Any]:
    """An object as the API shows it: a summary, plus every attribute when ``full``."""
    names = [
        instance.get(Tag.NAME_VALUE)
        for instance in obj.values("Name")
        if instance.type == ItemType.STRUCTURE
    ]
    resource: dict[str, Any] = {
        "id": obj.unique_identifier,
        "kmip_object_type": obj.object_type,
        "object_type": item_json(ttlv.enumeration(Tag.OBJECT_TYPE, obj.object_type)),
        "state": obj.state,
        "state_name": state_name(obj.state),
        "names": names,
    }
    for attribute, key in (
        ("Cryptographic Algorithm", "cryptographic_algorithm"),
        ("Cryptographic Length", "cryptographic_length"),
        ("Initial Date", "created_at"),
        ("Last Change Date", "updated_at"),
        ("Destroy Date", "destroyed_at"),
    ):
        instances = obj.values(attribute)
        if instances:
            resource[key] = item_json(instances[0])
    resource["key_material_present"] = obj.wrapped_material is not None
    if full:
        resource["attributes"] = {
            name: [item_json(instance) for instance in instances]
            for name, instances in obj.attributes.items()
        }
    return resource


def _enum_value(enum: Any, text: str, what: str) -> int:
    """An enumeration value from a number or a KMIP name (any case, dashes allowed)."""
    cleaned = text.strip()
    if cleaned.isdigit():
        return int(cleaned)
    wanted = cleaned.replace("-", "").replace("_", "").replace(" ", "").lower()
    for member in enum:
        if enum_xml_name(enum, member.value).lower() == wanted:
            return int(member.value)
    try:
        return enum_from_xml_name(enum, cleaned)
    except (KeyError, ValueError):
        raise bad_request("INVALID_QUERY", f"{text!r} is not a {what}") from None


def _state_criteria(call: Call) -> list[LocateCriterion]:
    """The ``state`` filter: one state or a contiguous range (default 1-4, 'all': any)."""
    raw = call.argument("state")
    if raw is not None and raw.strip().lower() == "all":
        return []
    chosen: set[int] = set(int(s) for s in DEFAULT_STATES) if raw is None else set()
    for part in (raw or "").split(","):
        span = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", part)
        if span is not None:
            chosen.update(range(int(span.group(1)), int(span.group(2)) + 1))
        elif part.strip():
            chosen.add(_enum_value(State, part, "state"))
    states = sorted(chosen)
    if not states:
        return []
    if any(state not in State._value2member_map_ for state in states):
        raise bad_request("INVALID_QUERY", f"unknown state in {raw!r}; states are 1 to 6")
    if states != list(range(states[0], states[-1] + 1)):
        raise bad_request(
            "INVALID_QUERY",
            "state must be one state or a contiguous range, such as 2 or 1,2,3,4 (or 1-4)",
        )
    if len(states) == 1:
        return [LocateCriterion("State", ttlv.enumeration(Tag.STATE, states[0]))]
    return [
        LocateCriterion("State", ttlv.enumeration(Tag.STATE, states[0]), ">="),
        LocateCriterion("State", ttlv.enumeration(Tag.STATE, states[-1]), "<="),
    ]


def _criteria(call: Call) -> list[LocateCriterion]:
    """Every list filter as Locate criteria, all of which must hold."""
    criteria = _state_criteria(call)
    object_type = call.argument("object_type")
    if object_type is not None:
        value = _enum_value(ObjectType, object_type, "object type")
        criteria.append(LocateCriterion("Object Type", ttlv.enumeration(Tag.OBJECT_TYPE, value)))
    name = call.argument("name")
    if name is not None:
        criteria.append(
            LocateCriterion(
                "Name",
                ttlv.structure(
                    Tag.NAME,
                    [
                        ttlv.text_string(Tag.NAME_VALUE, name),
                        ttlv.enumeration(Tag.NAME_TYPE, NameType.UNINTERPRETED_TEXT_STRING),
                    ],
                ),
            )
        )
    for condition in call.arguments("attribute"):
        attribute, equals, wanted = condition.partition("=")
        if not equals or not attribute.startswith(("x-", "y-")):
            raise bad_request(
                "INVALID_QUERY",
                f"attribute filter {condition!r} must read x-Name=value (a custom attribute)",
            )
        criteria.append(LocateCriterion(attribute, ttlv.text_string(Tag.ATTRIBUTE_VALUE, wanted)))
    return criteria


def _revocation_code(text: str | None) -> int:
    if text is None:
        return RevocationReasonCode.CESSATION_OF_OPERATION
    return _enum_value(RevocationReasonCode, text, "revocation reason")


def routes(router: Router, context: AdminContext) -> None:
    """Add the object routes to ``router``."""

    async def list_objects(call: Call) -> Reply:
        tenant = await require_tenant(context, call.params["tenant"])
        limit, offset, want_total = call.paging(default=100, maximum=1000)
        criteria = _criteria(call)
        if any(criterion.name == "State" for criterion in criteria):
            await catch_up_states(
                RequestContext(engine=context.engine, tenant=tenant.name, version=_ADMIN_VERSION)
            )
        identifiers = await context.store.locate(tenant.name, criteria, offset, limit)
        resources = []
        for unique_identifier in identifiers:
            obj = await context.store.get_object(tenant.name, unique_identifier)
            if obj is not None:
                apply_time(obj, context.now())
                resources.append(object_resource(obj))
        total = await context.store.locate_count(tenant.name, criteria) if want_total else None
        return Reply(200, collection("kmip_object", resources, total))

    async def load(call: Call) -> tuple[str, ManagedObject]:
        tenant = await require_tenant(context, call.params["tenant"])
        unique_identifier = call.params["id"]
        obj = await context.store.get_object(tenant.name, unique_identifier)
        if obj is None:
            raise not_found(
                "OBJECT_NOT_FOUND",
                f"tenant {tenant.name!r} has no object with Unique Identifier {unique_identifier!r}",
            )
        apply_time(obj, context.now())
        return tenant.name, obj

    async def show_object(call: Call) -> Reply:
        _, obj = await load(call)
        return Reply(200, collection("kmip_object", [object_resource(obj, full=True)]))

    async def run(tenant: str, operation: int, payload: list[Item]) -> None:
        """Run a KMIP operation for the tenant; KMIP errors become HTTP errors."""
        request = RequestContext(engine=context.engine, tenant=tenant, version=_ADMIN_VERSION)
        try:
            await OPERATIONS[operation].run(request, ttlv.structure(Tag.REQUEST_PAYLOAD, payload))
        except KMIPError as error:
            status, reason = _HTTP_FOR_REASON.get(error.reason, (502, "OPERATION_FAILED"))
            if getattr(ResultReason, "OBJECT_DESTROYED", None) == error.reason:
                status, reason = 409, "WRONG_STATE"
            raise AdminError(status, reason, error.message) from None

    async def revoke(call: Call) -> Reply:
        tenant, obj = await load(call)
        code = _revocation_code(call.text("reason", required=False))
        message = call.text("message", required=False)
        reason = [ttlv.enumeration(Tag.REVOCATION_REASON_CODE, code)]
        if message:
            reason.append(ttlv.text_string(Tag.REVOCATION_MESSAGE, message))
        await run(
            tenant,
            Operation.REVOKE,
            [
                ttlv.text_string(Tag.UNIQUE_IDENTIFIER, obj.unique_identifier),
                ttlv.structure(Tag.REVOCATION_REASON, reason),
            ],
        )
        await context.audited(
            call,
            "object.revoke",
            tenant=tenant,
            unique_identifier=obj.unique_identifier,
            reason=enum_xml_name(RevocationReasonCode, code),
        )
        return await show_object(call)

    async def destroy(call: Call) -> Reply:
        tenant, obj = await load(call)
        uid = [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, obj.unique_identifier)]
        revoked = False
        if call.flag("force") and obj.state == State.ACTIVE:
            # As Key Protect's force delete: an Active key is revoked, then destroyed.
            reason = ttlv.structure(
                Tag.REVOCATION_REASON,
                [
                    ttlv.enumeration(
                        Tag.REVOCATION_REASON_CODE, RevocationReasonCode.CESSATION_OF_OPERATION
                    )
                ],
            )
            await run(tenant, Operation.REVOKE, [*uid, reason])
            revoked = True
        await run(tenant, Operation.DESTROY, uid)
        await context.audited(
            call,
            "object.destroy",
            tenant=tenant,
            unique_identifier=obj.unique_identifier,
            revoked_first=revoked or None,
        )
        if call.method == "DELETE":
            return Reply(204)
        return await show_object(call)

    base = "/api/v1/tenants/{tenant}/objects"
    router.add("GET", base, list_objects)
    router.add("GET", f"{base}/{{id}}", show_object)
    router.add("POST", f"{base}/{{id}}/revoke", revoke)
    router.add("POST", f"{base}/{{id}}/destroy", destroy)
    router.add("DELETE", f"{base}/{{id}}", destroy)
