"""Get: return an object's value in the Key Format Type asked for, in the clear (over
TLS) or wrapped by another key when the request has a Key Wrapping Specification."""

from __future__ import annotations

from typing import Any

from kmiptwist import keyblocks, server_attributes, ttlv
from kmiptwist.engine import Engine
from kmiptwist.errors import KMIPError
from kmiptwist.objects import ManagedObject
from kmiptwist.operations.base import (
    OperationHandler,
    Payload,
    RequestContext,
    number,
    reason_in,
    uid_item,
)
from kmiptwist.operations.keywrapping import wrap_for_get
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import Operation, ResultReason
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "answer_again", "answer_now"]


async def get(context: RequestContext, payload: Item) -> Payload:
    """Get: any state that still has material (vCenter gets Pre-Active keys)."""
    unique_identifier = context.unique_identifier(payload)
    assert unique_identifier is not None
    requested_format = number(payload, Tag.KEY_FORMAT_TYPE, "Key Format Type", ItemType.ENUMERATION)
    wrapping = payload.find(Tag.KEY_WRAPPING_SPECIFICATION)
    if payload.find(Tag.KEY_COMPRESSION_TYPE) is not None:
        raise KMIPError(
            ResultReason.KEY_COMPRESSION_TYPE_NOT_SUPPORTED, "key compression is not supported"
        )
    form = (context.version, requested_format)
    # Kept answers are for a Get that names its object (the audit record takes the
    # identifier from the request) and asks for it in the clear.
    keep = wrapping is None and payload.find(Tag.UNIQUE_IDENTIFIER) is not None
    if keep:
        answer = await answer_again(context, unique_identifier, form)
        if answer is not None:
            return answer
    obj = await context.load(unique_identifier)
    if obj.value("Sensitive") is True and wrapping is None:
        raise KMIPError(
            reason_in(context.version, "SENSITIVE", ResultReason.PERMISSION_DENIED),
            f"{unique_identifier} is Sensitive: its value is never returned in the clear",
        )
    if obj.value("Extractable") is False:
        raise KMIPError(
            reason_in(context.version, "NOT_EXTRACTABLE", ResultReason.PERMISSION_DENIED),
            f"{unique_identifier} is not Extractable",
        )
    stored = ttlv.decode(await context.material(obj))
    if requested_format is None:
        # As the client registered it (a Transparent Symmetric Key comes back so).
        requested_format = obj.value("Key Format Type")
    value = keyblocks.for_get(stored, requested_format)
    if wrapping is not None:
        # A Sensitive key may leave the server wrapped, never in the clear.
        value = await wrap_for_get(context, obj, value, wrapping)
    answer = [
        ttlv.enumeration(Tag.OBJECT_TYPE, obj.object_type),
        uid_item(unique_identifier),
        value,
    ]
    if obj.value("Fresh") is not False:
        # The first Get serves the value: the object is no longer Fresh.
        async with context.lock(unique_identifier):
            current = await context.load(unique_identifier)
            if server_attributes.served(current):
                await context.save(current)
    elif keep:
        return await _keep_answer(context, obj, form, answer)
    return answer


# -- answering a Get again ----------------------------------------------------------------
#
# Most Gets ask again for a key that was fetched before: vCenter's hosts after a
# reboot, backup appliances every night.  Their answer is the same bytes as long as
# the object is unchanged and its material may still be served, so the encoded answer
# is kept with the cached material (``MaterialCache.derived``): it lives and dies with
# it (TTL, eviction, a root key disabled or deleted), and it is served only after the
# store confirms the object's revision — one indexed read that sees a change made by
# any process sharing the store — and the tenant's root key allows it.  Key material
# is in memory no longer and in no more places than the material cache already keeps
# it.  Answers with a Key Wrapping Specification, or that changed the object (Fresh),
# are not kept.


def _kept(
    engine: Engine, tenant: str, unique_identifier: str, form: tuple[object, int | None]
) -> tuple[dict[Any, Any], tuple[Any, Item]] | None:
    """The forms kept for the object's cached material and, in them, the answer kept
    for ``form`` (revision stamp and encoded payload); None when there is none."""
    cache: Any = engine.cache
    forms = cache.derived((tenant, unique_identifier))
    if not forms:
        return None
    kept = forms.get(form)
    return None if kept is None else (forms, kept)


async def answer_again(
    context: RequestContext, unique_identifier: str, form: tuple[object, int | None]
) -> Payload | None:
    """The answer kept for this Get of an unchanged object, or None."""
    if context.held is not None:
        return None  # an Undo batch may hold a change to the object
    found = _kept(context.engine, context.tenant, unique_identifier, form)
    if found is None:
        return None
    forms, kept = found
    stamp = await context.engine.store.object_revision(context.tenant, unique_identifier)
    if stamp != kept[0]:
        forms.clear()  # the object changed or is gone: every kept form is stale
        return None
    await context.check_root_key(f"cannot serve the key material of {unique_identifier}")
    return [kept[1]]


def answer_now(
    engine: Engine, tenant: str, unique_identifier: str, form: tuple[object, int | None]
) -> Payload | None:
    """:func:`answer_again` without waiting on anything: the kept answer when the
    object is unchanged (``revision_now``) and the tenant's root key needs no look-up
    or check (``usable_now``); None otherwise, and then :func:`answer_again` (or the
    whole Get) finds out, and reports any failure, the usual way."""
    found = _kept(engine, tenant, unique_identifier, form)
    if found is None:
        return None
    forms, kept = found
    if engine.store.revision_now(tenant, unique_identifier) != kept[0]:
        forms.clear()
        return None
    if not engine.root_keys.usable_now(tenant):
        return None
    return [kept[1]]


async def _keep_answer(
    context: RequestContext, obj: ManagedObject, form: tuple[object, int | None], answer: Payload
) -> Payload:
    """Encode ``answer`` once, keep it for the next Get of ``obj`` in ``form``, return it."""
    encoded = ttlv.encoded(answer)
    cache: Any = context.engine.cache
    forms = cache.derived((context.tenant, obj.unique_identifier))
    if forms is not None and context.held is None:
        stamp = await context.engine.store.object_revision(context.tenant, obj.unique_identifier)
        # Kept only if the store still holds the revision the answer was made from.
        if stamp is not None and stamp[1] == obj.revision:
            forms[form] = (stamp, encoded)
    return [encoded]


HANDLERS = [OperationHandler(Operation.GET, get)]
