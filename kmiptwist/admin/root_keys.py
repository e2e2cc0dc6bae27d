# -*- test-case-name: tests.test_keyprotect_admin -*-
"""Tenants' root keys: bind a tenant to a Key Protect root key, rewrap after a rotation.

``PUT /api/v1/tenants/{tenant}/root_key`` with ``{"kind": "keyprotect", "id": ...,
"instance_id": ..., "endpoint": ..., "token_url": ..., "api_key_file" | "api_key_env":
..., "ca_bundle": ..., "key_ring": ...}`` checks the binding with Key Protect and
stores it (:func:`kmiptwist.keyprotect.bind.bind_tenant`).
``POST /api/v1/tenants/{tenant}/rewrap`` rewraps every object of the tenant by its
root key's latest version (:func:`kmiptwist.keyprotect.rewrap.rewrap_tenant`).
"""

from __future__ import annotations

from typing import Any

from kmiptwist.admin.api import AdminError, Call, Reply, Router, bad_request, collection
from kmiptwist.admin.context import AdminContext
from kmiptwist.admin.tenants import require_tenant
from kmiptwist.keyprotect.bind import BindRefused, bind_tenant
from kmiptwist.keyprotect.rewrap import NotKeyProtect, rewrap_tenant
from kmiptwist.wrapping.errors import DENIED, WrappingError

__all__ = ["routes"]


def _root_keys(context: AdminContext) -> Any:
    root_keys = context.engine.root_keys
    if not hasattr(root_keys, "wrapper_for"):
        raise AdminError(
            409, "KEYPROTECT_UNAVAILABLE", "this server does not bind tenants to Key Protect"
        )
    return root_keys


def routes(router: Router, context: AdminContext) -> None:
    """Add the root-key routes to ``router``."""

    async def bind(call: Call) -> Reply:
        name = call.params["tenant"]
        await require_tenant(context, name)
        body = call.json()
        if body.get("kind", "keyprotect") != "keyprotect":
            raise bad_request(
                "INVALID_FIELD",
                "a tenant can be bound to a Key Protect root key ('kind': 'keyprotect')",
            )
        root_key_id = body.get("id")
        if not isinstance(root_key_id, str) or not root_key_id.strip():
            raise bad_request("MISSING_FIELD", "the body needs the root key's 'id' (ID or alias)")
        fields = {key: value for key, value in body.items() if key not in ("kind", "id")}
        try:
            bound = await bind_tenant(context.store, _root_keys(context), name, root_key_id, fields)
        except BindRefused as error:
            raise AdminError(409, "BIND_REFUSED", str(error)) from None
        await context.audited(
            call,
            "tenant.bind",
            tenant=name,
            root_key_kind=bound["root_key_kind"],
            root_key_id=bound["root_key_id"],
            instance_id=bound["instance_id"],
        )
        return Reply(200, collection("tenant_root_key", [bound]))

    async def rewrap(call: Call) -> Reply:
        name = call.params["tenant"]
        await require_tenant(context, name)
        try:
            report = await rewrap_tenant(context.store, _root_keys(context), name)
        except NotKeyProtect as error:
            raise AdminError(409, "NOT_KEYPROTECT", str(error)) from None
        except WrappingError as error:
            status, reason = (
                (409, "ROOT_KEY_REFUSED") if error.kind == DENIED else (502, "KEYPROTECT_FAILED")
            )
            raise AdminError(status, reason, str(error)) from None
        result = report.as_dict()
        await context.audited(
            call,
            "tenant.rewrap",
            tenant=name,
            root_key_id=report.root_key_id,
            key_version=report.latest_version,
            rewrapped=report.rewrapped,
            failed=len(report.failed),
        )
        return Reply(200, collection("rewrap_report", [result]))

    router.add("PUT", "/api/v1/tenants/{tenant}/root_key", bind)
    router.add("POST", "/api/v1/tenants/{tenant}/rewrap", rewrap)
