# -*- test-case-name: tests.test_admin_api -*-
"""Tenants: create one bound to a root key, list, show, delete (crypto-shredding).

A forced delete removes the tenant's objects entirely — wrapped material and
metadata, overwritten in the database — because nothing could ever use them again:
the tenant, its certificates and its root-key binding are gone with them.  Every
removed object gets its own audit record (``admin.object.shred``), so the log says
which keys were destroyed and when.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred

from kmiptwist.admin.api import AdminError, Call, Reply, Router, bad_request, collection, not_found
from kmiptwist.admin.context import AdminContext, iso
from kmiptwist.interfaces import Tenant
from kmiptwist.store.errors import TenantExists, TenantHasObjects, UnknownTenant

__all__ = ["routes", "TENANT_NAME", "require_tenant", "tenant_resource"]

TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Tenant names: 1 to 64 letters, digits, '.', '_' or '-', starting alphanumeric."""

ROOT_KEY_KINDS = ("local", "keyprotect")


async def require_tenant(context: AdminContext, name: str) -> Tenant:
    """The tenant, or 404 TENANT_NOT_FOUND."""
    tenant = await context.store.get_tenant(name)
    if tenant is None:
        raise not_found("TENANT_NOT_FOUND", f"tenant {name!r} does not exist")
    return tenant


def tenant_resource(tenant: Tenant, **extra: Any) -> dict[str, Any]:
    """A tenant as the API shows it."""
    root_key: dict[str, Any] = {"kind": tenant.root_key_kind, "id": tenant.root_key_id}
    root_key.update(tenant.root_key_binding)
    return {"name": tenant.name, "root_key": root_key, "created_at": iso(tenant.created), **extra}


def _root_key(context: AdminContext, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Kind, id and binding of the requested root key (default: the local root key).

    A Key Protect binding is checked by ``context.check_binding`` (instance id, HTTPS
    endpoints, an API key *reference* such as ``env:NAME`` — never a key), which also
    says what to store.
    """
    root_key = body.get("root_key", {"kind": "local"})
    if not isinstance(root_key, dict):
        raise bad_request("INVALID_FIELD", "'root_key' must be an object with a 'kind'")
    kind = root_key.get("kind", "local")
    if kind not in ROOT_KEY_KINDS:
        raise bad_request(
            "INVALID_FIELD",
            f"root_key kind {kind!r} is unknown; use one of {', '.join(ROOT_KEY_KINDS)}",
        )
    binding = {key: value for key, value in root_key.items() if key not in ("kind", "id")}
    for key, value in binding.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise bad_request("INVALID_FIELD", f"root_key {key!r} must be a string or a number")
    if kind == "local":
        if binding:
            raise bad_request(
                "INVALID_FIELD",
                "the local root key takes no settings besides 'id': " + ", ".join(sorted(binding)),
            )
        root_key_id = root_key.get("id", "default")
        if root_key_id != "default":
            raise bad_request(
                "INVALID_FIELD",
                f"there is no local root key {root_key_id!r}; this server has only the local "
                "root key 'default'",
            )
        return kind, root_key_id, {}
    root_key_id = root_key.get("id")
    if not isinstance(root_key_id, str) or not root_key_id.strip():
        raise bad_request(
            "MISSING_FIELD", "a Key Protect root key needs its 'id' (the root key's ID or alias)"
        )
    if context.check_binding is not None:
        try:
            binding = dict(context.check_binding(root_key_id, binding))
        except ValueError as error:
            raise bad_request("INVALID_ROOT_KEY", str(error)) from None
    elif not isinstance(binding.get("instance_id"), str):
        raise bad_request(
            "MISSING_FIELD", "a Key Protect root key needs 'instance_id' (the Key Protect instance)"
        )
    return kind, root_key_id.strip(), binding


def routes(router: Router, context: AdminContext) -> None:
    """Add the tenant routes to ``router``."""

    async def list_tenants(call: Call) -> Reply:
        limit, offset, want_total = call.paging()
        tenants = await context.store.list_tenants()
        page = [tenant_resource(tenant) for tenant in tenants[offset : offset + limit]]
        return Reply(200, collection("tenant", page, len(tenants) if want_total else None))

    async def create_tenant(call: Call) -> Reply:
        name = call.text("name")
        assert name is not None
        if not TENANT_NAME.fullmatch(name):
            raise bad_request(
                "INVALID_TENANT_NAME",
                f"{name!r} is not a tenant name: 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
            )
        kind, root_key_id, binding = _root_key(context, call.json())
        tenant = Tenant(name, kind, root_key_id, context.now(), binding)
        try:
            await context.store.add_tenant(tenant)
        except TenantExists:
            raise AdminError(409, "TENANT_EXISTS", f"tenant {name!r} already exists") from None
        await context.audited(
            call, "tenant.create", tenant=name, root_key_kind=kind, root_key_id=root_key_id
        )
        return Reply(201, collection("tenant", [tenant_resource(tenant)]))

    async def show_tenant(call: Call) -> Reply:
        tenant = await require_tenant(context, call.params["tenant"])
        counts = {
            "objects": await context.store.count_objects(tenant.name),
            "certificates": len(await context.store.list_certificates(tenant.name)),
            "trusted_cas": len(await context.store.list_trusted_cas(tenant.name)),
        }
        return Reply(200, collection("tenant", [tenant_resource(tenant, **counts)]))

    async def delete_tenant(call: Call) -> Reply:
        name = call.params["tenant"]
        force = call.flag("force")
        await require_tenant(context, name)
        try:
            removed = await context.store.remove_tenant(name, force)
        except UnknownTenant:
            raise not_found("TENANT_NOT_FOUND", f"tenant {name!r} does not exist") from None
        except TenantHasObjects as error:
            raise AdminError(
                409, "TENANT_HAS_OBJECTS", f"{error} (force=true; kmiptwist tenant delete --force)"
            ) from None
        disconnected = context.connections.disconnect_tenant(name)
        cache: Any = context.engine.cache
        for unique_identifier in removed:
            cache.invalidate((name, unique_identifier))
        # Queued together, the records share fsyncs; each is awaited so none is lost
        # without the caller hearing of it.
        records = [
            Deferred.fromCoroutine(
                context.audited(call, "object.shred", tenant=name, unique_identifier=uid)
            )
            for uid in removed
        ]
        failed: AdminError | None = None
        for record in records:
            try:
                await record
            except AdminError as error:
                failed = failed or error
        if failed is not None:
            raise failed
        await context.audited(
            call,
            "tenant.delete",
            tenant=name,
            forced=force,
            objects_destroyed=len(removed),
            connections_closed=disconnected,
        )
        return Reply(204)

    router.add("GET", "/api/v1/tenants", list_tenants)
    router.add("POST", "/api/v1/tenants", create_tenant)
    router.add("GET", "/api/v1/tenants/{tenant}", show_tenant)
    router.add("DELETE", "/api/v1/tenants/{tenant}", delete_tenant)
