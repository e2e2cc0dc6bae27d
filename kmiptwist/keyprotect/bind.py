"""Bind a tenant to a Key Protect root key, after checking that the root key can be used.

:func:`bind_tenant` is what ``kmiptwist tenant bind`` and the admin API's
``PUT /api/v1/tenants/{tenant}/root_key`` do: check the binding (instance, HTTPS
endpoints, an API key *reference*), ask Key Protect for the root key's metadata with
the service ID's credentials (so a wrong instance, key, endpoint, CA bundle or API key
is found now, not at the next KMIP request), and store it.  A tenant whose objects
the local root key wraps may be bound (its keys stay readable and move to Key Protect
as they are used, or all at once with ``kmiptwist tenant rewrap``); a tenant whose
objects another Key Protect root key wraps may not: they would become unreadable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kmiptwist.keyprotect.binding import KEYPROTECT, LOCAL, make_binding
from kmiptwist.keyprotect.errors import KeyProtectError

__all__ = ["BindRefused", "bind_tenant"]


class BindRefused(Exception):
    """The binding cannot be made; the message says why (nothing was changed)."""


async def bind_tenant(
    store: Any, root_keys: Any, tenant: str, root_key_id: str, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """Bind ``tenant`` to Key Protect root key ``root_key_id`` reached as ``fields`` say.

    ``root_keys`` is the server's :class:`~kmiptwist.keyprotect.root_keys.TenantRootKeys`.
    Raises :class:`BindRefused` (unknown tenant, bad binding, a root key Key Protect
    refuses, objects another root key wraps); returns what was bound.
    """
    record = await store.get_tenant(tenant)
    if record is None:
        raise BindRefused(f"tenant {tenant!r} does not exist")
    try:
        binding = make_binding(root_key_id, fields, root_keys.settings)
    except ValueError as error:
        raise BindRefused(str(error)) from None
    wrapper = root_keys.wrapper_for(tenant, binding)
    try:
        metadata = await wrapper.client.key_metadata(binding.root_key_id)
    except KeyProtectError as error:
        raise BindRefused(f"Key Protect refuses the binding: {error}") from None
    names = {str(metadata.get("id"))} | {str(alias) for alias in metadata.get("aliases") or []}
    state = metadata.get("state")
    if metadata.get("extractable"):
        raise BindRefused(f"{root_key_id} is a standard key; a tenant needs a root key")
    if state != 1:
        described = {2: "disabled", 3: "expired (Deactivated)", 5: "deleted"}.get(
            state, f"in state {state}"
        )
        raise BindRefused(f"the root key {root_key_id} is {described}; it cannot wrap new keys")
    objects = await store.count_objects(tenant)
    previous = dict(record.root_key_binding)
    if record.root_key_kind == KEYPROTECT and objects:
        same_key = record.root_key_id in names
        same_instance = previous.get("instance_id") == binding.instance_id
        if not (same_key and same_instance):
            raise BindRefused(
                f"tenant {tenant!r} has {objects} objects wrapped by root key "
                f"{record.root_key_id} of instance {previous.get('instance_id')}; bound to "
                f"another root key they could not be read"
            )
    await store.set_root_key(tenant, KEYPROTECT, binding.root_key_id, binding.stored())
    root_keys.forget(tenant)
    version = metadata.get("keyVersion")
    return {
        "tenant": tenant,
        "root_key_kind": KEYPROTECT,
        "root_key_id": binding.root_key_id,
        "instance_id": binding.instance_id,
        "endpoint": binding.endpoint,
        "key_version": version.get("id") if isinstance(version, dict) else None,
        "objects": objects,
        "objects_to_rewrap": objects if record.root_key_kind == LOCAL else 0,
    }
