"""Discover Versions and Query: what the server speaks and what it can do."""

from __future__ import annotations

from collections.abc import Callable

from kmiptwist import ttlv
from kmiptwist.engine import Engine
from kmiptwist.errors import invalid_field
from kmiptwist.messages import SUPPORTED_VERSIONS, ProtocolVersion
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import (
    ENUM_VALUE_VERSIONS,
    ObjectType,
    Operation,
    ProfileName,
    QueryFunction,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS", "make_query", "server_profiles", "OBJECT_TYPES"]


async def discover_versions(context: RequestContext, payload: Item) -> Payload:
    """Discover Versions: the versions we speak, limited to those the client listed."""
    offered = [ProtocolVersion.from_item(child) for child in payload.find_all(Tag.PROTOCOL_VERSION)]
    versions = [v for v in SUPPORTED_VERSIONS if not offered or v in offered]
    return [v.to_item() for v in versions]


#: The object types this server stores (Templates for KMIP 1.x clients only).
OBJECT_TYPES = (
    ObjectType.CERTIFICATE,
    ObjectType.SYMMETRIC_KEY,
    ObjectType.PUBLIC_KEY,
    ObjectType.PRIVATE_KEY,
    ObjectType.TEMPLATE,
    ObjectType.SECRET_DATA,
    ObjectType.OPAQUE_OBJECT,
)

#: The KMIP server profiles whose OASIS test cases this server passes, as Profile
#: Name enumeration names; a 1.x client is told the ones of its own version
#: ("..._KMIP_V1_4"; KMIP 1.x names no AES XTS profile).  Kept in step with
#: kmiptwist.conformance.profiles.
SERVER_PROFILES_2X = (
    "BASELINE_SERVER",
    "SYMMETRIC_KEY_LIFECYCLE_SERVER",
    "SYMMETRIC_KEY_FOUNDRY_SERVER",
    "STORAGE_ARRAY_WITH_SELF_ENCRYPTING_DRIVE_SERVER",
    "TAPE_LIBRARY_SERVER",
    "OPAQUE_MANAGED_OBJECT_STORE_SERVER",
    "ASYMMETRIC_KEY_LIFECYCLE_SERVER",
    "BASIC_CRYPTOGRAPHIC_SERVER",
    "ADVANCED_CRYPTOGRAPHIC_SERVER",
    "AES_XTS_SERVER",
)
SERVER_PROFILES_1X = (
    "BASELINE_SERVER_BASIC",
    "BASELINE_SERVER_TLS_V1_2",
    "SYMMETRIC_KEY_LIFECYCLE_SERVER",
    "SYMMETRIC_KEY_FOUNDRY_SERVER",
    "STORAGE_ARRAY_WITH_SELF_ENCRYPTING_DRIVE_SERVER",
    "TAPE_LIBRARY_SERVER",
    "OPAQUE_MANAGED_OBJECT_STORE_SERVER",
    "ASYMMETRIC_KEY_LIFECYCLE_SERVER",
    "BASIC_CRYPTOGRAPHIC_SERVER",
    "ADVANCED_CRYPTOGRAPHIC_SERVER",
)


def server_profiles(version: ProtocolVersion) -> list[int]:
    """The Profile Name values this server claims to a client of ``version``."""
    if version.is_2x:
        names = list(SERVER_PROFILES_2X)
    else:
        names = [f"{name}_KMIP_V{version.major}_{version.minor}" for name in SERVER_PROFILES_1X]
    found = [getattr(ProfileName, name, None) for name in names]
    return [int(p) for p in found if p is not None and _defined("ProfileName", p, version)]


def _defined(enum_class: str, value: int, version: ProtocolVersion) -> bool:
    versions = ENUM_VALUE_VERSIONS.get((enum_class, int(value)))
    return versions is None or version.spec in versions


def make_query(operations: Callable[[ProtocolVersion, Engine], list[int]]) -> OperationHandler:
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
                for op in operations(version, context.engine)
                if _defined("Operation", op, version)
            )
        if QueryFunction.QUERY_OBJECTS in functions:
            out.extend(
                ttlv.enumeration(Tag.OBJECT_TYPE, t)
                for t in OBJECT_TYPES
                if _defined("ObjectType", t, version)
            )
        if QueryFunction.QUERY_SERVER_INFORMATION in functions:
            info = context.engine.server_information
            out.append(ttlv.text_string(Tag.VENDOR_IDENTIFICATION, info.vendor_identification))
            if version.is_2x:
                details = [ttlv.text_string(Tag.SERVER_NAME, info.server_name)]
                if info.server_version:
                    details.append(ttlv.text_string(Tag.SERVER_VERSION, info.server_version))
                out.append(ttlv.structure(Tag.SERVER_INFORMATION, details))
            else:
                # 1.x leaves Server Information's content to the vendor; the tags
                # that 2.x puts in it do not exist in 1.x.
                out.append(ttlv.structure(Tag.SERVER_INFORMATION, []))
        if QueryFunction.QUERY_PROFILES in functions and _defined(
            "QueryFunction", QueryFunction.QUERY_PROFILES, version
        ):
            out.extend(
                ttlv.structure(
                    Tag.PROFILE_INFORMATION, [ttlv.enumeration(Tag.PROFILE_NAME, profile)]
                )
                for profile in server_profiles(version)
            )
        # Application namespaces, extensions, attestation types, RNGs, validations
        # and capabilities: this server claims none, so it lists none.
        return out

    return OperationHandler(Operation.QUERY, query)


HANDLERS = [OperationHandler(Operation.DISCOVER_VERSIONS, discover_versions)]
