"""The KMIP operations this server implements, one handler each, by family."""

from __future__ import annotations

from kmiptwist.engine import Engine
from kmiptwist.messages import ProtocolVersion
from kmiptwist.operations import (
    attributes,
    diagnostics,
    discovery,
    encryption,
    keypairs,
    lifecycle,
    locate,
    macs,
    retrieval,
    rng,
    signing,
    usage,
)
from kmiptwist.operations.base import OperationHandler, RequestContext

__all__ = ["OPERATIONS", "RequestContext", "OperationHandler", "operations_for"]

OPERATIONS: dict[int, OperationHandler] = {}


def operations_for(version: ProtocolVersion, engine: Engine | None = None) -> list[int]:
    """The operations a client speaking ``version`` may call, for Query.

    With ``engine``, only those its configuration turns on (Interop is off unless
    the server runs for conformance testing).
    """
    return [
        operation
        for operation, handler in OPERATIONS.items()
        if handler.supports(version) and (engine is None or handler.offered(version, engine))
    ]


for _module in (
    discovery,
    lifecycle,
    keypairs,
    encryption,
    signing,
    macs,
    rng,
    retrieval,
    attributes,
    locate,
    usage,
    diagnostics,
):
    for _handler in _module.HANDLERS:
        OPERATIONS[_handler.operation] = _handler
_query = discovery.make_query(operations_for)
OPERATIONS[_query.operation] = _query
