"""The KMIP operations this server implements, one handler each, by family."""

from __future__ import annotations

from kmiptwist.messages import ProtocolVersion
from kmiptwist.operations import attributes, discovery, lifecycle, locate, retrieval
from kmiptwist.operations.base import OperationHandler, RequestContext

__all__ = ["OPERATIONS", "RequestContext", "OperationHandler", "operations_for"]

OPERATIONS: dict[int, OperationHandler] = {}


def operations_for(version: ProtocolVersion) -> list[int]:
    """The operations a client speaking ``version`` may call, for Query."""
    return [operation for operation, handler in OPERATIONS.items() if handler.supports(version)]


for _module in (discovery, lifecycle, retrieval, attributes, locate):
    for _handler in _module.HANDLERS:
        OPERATIONS[_handler.operation] = _handler
_query = discovery.make_query(operations_for)
OPERATIONS[_query.operation] = _query
