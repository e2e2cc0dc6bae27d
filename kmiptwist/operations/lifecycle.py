"""Operations that make objects and move them through their lifecycle:
Create, Register, Activate, Revoke, Destroy.
"""

from __future__ import annotations

from collections.abc import Sequence

from kmiptwist import keyblocks, server_attributes, ttlv
from kmiptwist.attributes import check_client_value, from_wire, rule_for
from kmiptwist.certificates import certificate_attributes
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.identifiers import new_unique_identifier
from kmiptwist.keyblocks import ObjectValue
from kmiptwist.keygen import default_length, generate_symmetric_key
from kmiptwist.objects import ManagedObject, state_name, transition
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, reason_in, uid_item
from kmiptwist.operations.naming import check_unique_names
from kmiptwist.operations.templates import request_attributes
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import (
    ObjectType,
    Operation,
    ResultReason,
    RevocationReasonCode,
    State,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "new_object", "read_create", "create_from"]

_COMPROMISE_REASONS = frozenset(
    {RevocationReasonCode.KEY_COMPROMISE, RevocationReasonCode.CA_COMPROMISE}
)


def _object_type(payload: Item) -> int:
    found = payload.find(Tag.OBJECT_TYPE)
    if found is None or found.type != ItemType.ENUMERATION:
        raise invalid_field("Object Type is required")
    return found.value


def new_object(
    context: RequestContext,
    object_type: int,
    client_attributes: list[tuple[str, Item]],
    derived: Sequence[tuple[str, Item]] = (),
) -> ManagedObject:
    """An object with the attributes the server sets, then the client's.

    ``derived`` are attributes the server reads off the object itself (a certificate's
    subject); a client may state them only with the same value.
    """
    now = context.now()
    obj = ManagedObject(
        unique_identifier=new_unique_identifier(),
        tenant=context.tenant,
        object_type=object_type,
    )
    obj.set("Unique Identifier", ttlv.text_string(Tag.UNIQUE_IDENTIFIER, obj.unique_identifier))
    obj.set("Object Type", ttlv.enumeration(Tag.OBJECT_TYPE, object_type))
    stated = {name: value for name, value in derived}
    for name, value in client_attributes:
        if name in stated:
            if (value.type, value.value) != (stated[name].type, stated[name].value):
                raise KMIPError(
                    reason_in(
                        context.version, "INVALID_ATTRIBUTE_VALUE", ResultReason.INVALID_FIELD
                    ),
                    f"attribute {name!r} does not match the object being registered",
                )
            continue
        check_client_value(name, context.version)
        found = rule_for(name)
        if found is not None and not found.multi_valued and name in obj.attributes:
            raise KMIPError(
                reason_in(context.version, "ATTRIBUTE_SINGLE_VALUED", ResultReason.INVALID_FIELD),
                f"attribute {name!r} is single-valued but was given more than once",
            )
        obj.add(name, value)
    for name, value in derived:
        obj.add(name, value)
    activation = obj.value("Activation Date")
    state = State.ACTIVE if activation is not None and activation <= now else State.PRE_ACTIVE
    obj.set("State", ttlv.enumeration(Tag.STATE, state))
    return obj


async def _store_new(
    context: RequestContext, obj: ManagedObject, value: ObjectValue, generated: bool = False
) -> None:
    """Wrap the value into the object, store it durably, and set the ID Placeholder."""
    server_attributes.set_initial(
        obj,
        context.now(),
        generated=generated,
        key_format_type=value.registered_format or value.key_format_type,
        lease_time=context.engine.lease_time,
    )
    if obj.object_type != ObjectType.TEMPLATE:
        obj.set("Digest", keyblocks.digest(value))
    await check_unique_names(context, obj.values("Name"))
    await context.wrap(obj, ttlv.encode(value.stored))
    await context.add(obj)
    context.id_placeholder = obj.unique_identifier


async def create(context: RequestContext, payload: Item) -> Payload:
    """Create: generate a symmetric key from the OS CSPRNG; it starts Pre-Active."""
    object_type, attributes = await read_create(context, payload)
    return await create_from(context, object_type, attributes)


async def read_create(context: RequestContext, payload: Item) -> tuple[int, list[tuple[str, Item]]]:
    """What a Create payload asks for: the Object Type and the new object's attributes
    (templates expanded).  It changes nothing; when the payload names no Template
    (``templates.refers_to_templates``), it depends on the payload and the protocol
    version alone."""
    object_type = _object_type(payload)
    if object_type != ObjectType.SYMMETRIC_KEY:
        raise KMIPError(
            ResultReason.INVALID_FIELD,
            "Create makes Symmetric Keys; use Register for Secret Data and Opaque Objects",
        )
    return object_type, await request_attributes(context, payload)


async def create_from(
    context: RequestContext, object_type: int, attributes: list[tuple[str, Item]]
) -> Payload:
    """The rest of Create, from what :func:`read_create` read (``attributes`` are the
    caller's to give: the new object keeps them)."""
    given = dict(attributes)
    algorithm_item = given.get("Cryptographic Algorithm")
    if algorithm_item is None:
        raise invalid_field("Create needs a Cryptographic Algorithm attribute")
    algorithm = algorithm_item.value
    length_item = given.get("Cryptographic Length")
    if length_item is None:
        length = default_length(algorithm)
        if length is None:
            raise invalid_field("Create needs a Cryptographic Length attribute")
        attributes.append(("Cryptographic Length", ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, length)))
    else:
        length = length_item.value
    material = generate_symmetric_key(algorithm, length)
    obj = new_object(context, object_type, attributes)
    value = ObjectValue(
        keyblocks.symmetric_key(material, algorithm, length),
        material,
        keyblocks.KeyFormatType.RAW,
        algorithm,
        length,
    )
    await _store_new(context, obj, value, generated=True)
    return [ttlv.enumeration(Tag.OBJECT_TYPE, object_type), uid_item(obj.unique_identifier)]


async def register(context: RequestContext, payload: Item) -> Payload:
    """Register: store a client's key, certificate, secret data, opaque object or template."""
    object_type = _object_type(payload)
    if object_type == ObjectType.TEMPLATE and context.version.is_2x:
        raise KMIPError(
            reason_in(context.version, "INVALID_OBJECT_TYPE", ResultReason.INVALID_FIELD),
            "Template objects exist in KMIP 1.x only",
        )
    value, block_attributes = keyblocks.parse_registered(object_type, payload)
    attributes = await request_attributes(context, payload)
    for item in block_attributes:
        name, _, attribute_value = from_wire(item, context.version)
        attributes.append((name, attribute_value))
    derived: list[tuple[str, Item]] = []
    if object_type == ObjectType.CERTIFICATE:
        certificate_type = value.stored.get(Tag.CERTIFICATE_TYPE)
        derived = certificate_attributes(certificate_type, value.material)
    elif object_type == ObjectType.TEMPLATE:
        # A template's content must be attributes a client may give a new object.
        for child in value.stored.value:
            name, _, _ = from_wire(child, context.version)
            check_client_value(name, context.version)
    names = {name for name, _ in attributes}
    if value.cryptographic_algorithm is not None and "Cryptographic Algorithm" not in names:
        attributes.append(
            (
                "Cryptographic Algorithm",
                ttlv.enumeration(Tag.CRYPTOGRAPHIC_ALGORITHM, value.cryptographic_algorithm),
            )
        )
    if value.cryptographic_length is not None and "Cryptographic Length" not in names:
        attributes.append(
            (
                "Cryptographic Length",
                ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, value.cryptographic_length),
            )
        )
    obj = new_object(context, object_type, attributes, derived)
    await _store_new(context, obj, value)
    return [uid_item(obj.unique_identifier)]


async def activate(context: RequestContext, payload: Item) -> Payload:
    """Activate: Pre-Active to Active (vCenter activates the keys it hands out)."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    async with context.lock(unique_identifier):
        obj = await context.load(unique_identifier)
        if obj.state != State.PRE_ACTIVE:
            raise KMIPError(
                ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                f"only a Pre-Active object can be activated; {unique_identifier} is {state_name(obj.state)}",
            )
        transition(obj, State.ACTIVE, context.now())
        await context.save(obj)
    return [uid_item(unique_identifier)]


async def revoke(context: RequestContext, payload: Item) -> Payload:
    """Revoke: to Deactivated, or Compromised when the reason is a compromise."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    reason = payload.find(Tag.REVOCATION_REASON)
    if reason is None or reason.type != ItemType.STRUCTURE:
        raise invalid_field("Revoke needs a Revocation Reason")
    code = reason.get(Tag.REVOCATION_REASON_CODE)
    if not isinstance(code, int):
        raise invalid_field("Revocation Reason needs a Revocation Reason Code")
    occurrence = payload.find(Tag.COMPROMISE_OCCURRENCE_DATE)
    now = context.now()
    async with context.lock(unique_identifier):
        obj = await context.load(unique_identifier)
        state = obj.state
        if code in _COMPROMISE_REASONS:
            target = State.DESTROYED_COMPROMISED if state == State.DESTROYED else State.COMPROMISED
            if state == target:
                raise KMIPError(
                    ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                    f"{unique_identifier} is already {state_name(state)}",
                )
            transition(obj, target, now)
            obj.set(
                "Compromise Occurrence Date",
                ttlv.date_time(
                    Tag.COMPROMISE_OCCURRENCE_DATE,
                    occurrence.value if occurrence is not None else now,
                ),
            )
        else:
            if state != State.ACTIVE:
                if state == State.PRE_ACTIVE:
                    # A key never used can be revoked for any reason: it goes straight
                    # to Deactivated, as a Deactivation Date in the past would put it.
                    obj.set("State", ttlv.enumeration(Tag.STATE, State.DEACTIVATED))
                    obj.set_date("Deactivation Date", now)
                    obj.set_date("Last Change Date", now)
                else:
                    raise KMIPError(
                        ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                        f"{unique_identifier} is {state_name(state)}; only Active or Pre-Active objects "
                        "can be revoked for a reason other than compromise",
                    )
            else:
                transition(obj, State.DEACTIVATED, now)
        obj.set("Revocation Reason", ttlv.structure(Tag.REVOCATION_REASON, reason.value))
        await context.save(obj)
    return [uid_item(unique_identifier)]


async def destroy(context: RequestContext, payload: Item) -> Payload:
    """Destroy: remove the key material for good; the metadata stays, Destroyed."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    async with context.lock(unique_identifier):
        obj = await context.load(unique_identifier)
        state = obj.state
        if state == State.ACTIVE:
            raise KMIPError(
                ResultReason.WRONG_KEY_LIFECYCLE_STATE
                if context.version.is_2x
                else ResultReason.PERMISSION_DENIED,
                f"{unique_identifier} is Active; revoke it before destroying it",
            )
        if state in (State.DESTROYED, State.DESTROYED_COMPROMISED):
            raise KMIPError(
                reason_in(context.version, "OBJECT_DESTROYED", ResultReason.PERMISSION_DENIED),
                f"{unique_identifier} is already destroyed",
            )
        target = State.DESTROYED_COMPROMISED if state == State.COMPROMISED else State.DESTROYED
        transition(obj, target, context.now())
        obj.wrapped_material = None
        await context.save(obj)
        context.forget_material(obj)
    return [uid_item(unique_identifier)]


HANDLERS = [
    OperationHandler(Operation.CREATE, create),
    OperationHandler(Operation.REGISTER, register),
    OperationHandler(Operation.ACTIVATE, activate),
    OperationHandler(Operation.REVOKE, revoke),
    OperationHandler(Operation.DESTROY, destroy),
]
