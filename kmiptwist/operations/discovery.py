"""Discover Versions and Query: what the server speaks and what it can do."""

from __future__ import annotations

from collections.abc import Callable

from kmiptwist import ttlv
from kmiptwist.errors import invalid_field
from kmiptwist.messages import SUPPORTED_VERSIONS, ProtocolVersion
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import ENUM_VALUE_VERSIONS, ObjectType, Operation, QueryFunction
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "make_query"]


async def discover_versions(context: RequestContext, payload: Item) -> Payload:
    """Discover Versions: the versions we speak, limited to those the client listed."""
    offered = [ProtocolVersion.from_item(child) for child in payload.find_all(Tag.PROTOCOL_VERSION)]
    versions = [v for v in SUPPORTED_VERSIONS if not offered or v in offered]
    return [v.to_item() for v in versions]


#: The object types this server stores.
OBJECT_TYPES = (ObjectType.SYMMETRIC_KEY, ObjectType.SECRET_DATA, ObjectType.OPAQUE_OBJECT)


def _defined(enum_class: str, value: int, version: ProtocolVersion) -> bool:
    versions = ENUM_VALUE_VERSIONS.get((enum_class, int(value)))
    return versions is None or version.spec in versions


def make_query(operations: Callable[[ProtocolVersion], list[int]]) -> OperationHandler:
    """The Query handler, told which operations are registered for each version."""

    async def query(context: RequestContext, payload: Item) -> Payload:
        """Query: answer only what works — operations, objects, server information."""
        functions = []
        for child in payload.find_all(Tag.QUERY_FUNCTION):
            if child.type != ItemType.ENUMERATION:
                raise invalid_field("Query Function must be an Enumeration")
            functions.append(child.value)
        out: list[Item] = []
        version = context.version
        if QueryFunction.QUERY_OPERATIONS in functions:
            out.extend(
                ttlv.enumeration(Tag.OPERATION, op)
                for op in operations(version)
                if _defined("Operation", op, version)
            )
        if QueryFunction.QUERY_OBJECTS in functions:
            out.extend(ttlv.enumeration(Tag.OBJECT_TYPE, t) for t in OBJECT_TYPES)
        if QueryFunction.QUERY_SERVER_INFORMATION in functions:
            info = context.engine.server_information
            out.append(ttlv.text_string(Tag.VENDOR_IDENTIFICATION, info.vendor_identification))
            if version.is_2x:
                details = [ttlv.text_string(Tag.SERVER_NAME, info.server_name)]
                if info.server_version:
                    details.append(ttlv.text_string(Tag.SERVER_VERSION, info.server_version))
                out.append(ttlv.structure(Tag.SERVER_INFORMATION, details))
        # Application namespaces, extensions, attestation types, RNGs, validations,
        # profiles and capabilities: this server claims none, so it lists none.
        return out

    return OperationHandler(Operation.QUERY, query)


HANDLERS = [OperationHandler(Operation.DISCOVER_VERSIONS, discover_versions)]
