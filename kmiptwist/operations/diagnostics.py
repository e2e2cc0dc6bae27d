"""Operations that only tell the server something: Log (a client's message for the
server log) and Interop (where an OASIS conformance test case begins and ends).

The specification says a production server SHALL NOT offer Interop, so it is
answered only when the ``interop_testing`` setting is on.
"""

from __future__ import annotations

from twisted.logger import Logger

from kmiptwist.errors import invalid_field
from kmiptwist.messages import ProtocolVersion
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, text
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import InteropFunction, Operation, enum_xml_name
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "MAX_LOG_MESSAGE"]

log = Logger()

#: The longest client log message written out; longer ones are cut.
MAX_LOG_MESSAGE = 4096


async def log_operation(context: RequestContext, payload: Item) -> Payload:
    """Log: write the client's message to the server log, attributed to its tenant."""
    message = text(payload, Tag.LOG_MESSAGE, "Log Message", required=True)
    assert message is not None
    log.info(
        "KMIP client log message from {tenant}: {message}",
        tenant=context.tenant,
        fingerprint=context.peer_fingerprint,
        message=message[:MAX_LOG_MESSAGE],
        operation="Log",
    )
    return []


async def interop(context: RequestContext, payload: Item) -> Payload:
    """Interop: note where a conformance test case begins, ends or is reset."""
    function = payload.get(Tag.INTEROP_FUNCTION)
    if not isinstance(function, int) or function not in InteropFunction._value2member_map_:
        raise invalid_field("Interop needs an Interop Function: Begin, End or Reset")
    identifier = text(payload, Tag.INTEROP_IDENTIFIER, "Interop Identifier", required=True)
    log.info(
        "Interop {function} {identifier} for {tenant}",
        function=enum_xml_name(InteropFunction, function),
        identifier=identifier,
        tenant=context.tenant,
        operation="Interop",
    )
    return []


_V2 = ProtocolVersion(2, 0)

HANDLERS = [
    OperationHandler(Operation.LOG, log_operation, minimum=_V2),
    OperationHandler(
        Operation.INTEROP,
        interop,
        minimum=_V2,
        enabled=lambda engine: bool(getattr(engine, "interop_testing", False)),
    ),
]
