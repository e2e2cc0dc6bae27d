"""KMIP request and response messages: typed headers and batch items over item trees.

Payloads stay item trees: each operation reads the fields it needs.  Only the
envelope (header and batch items) is typed here, because the processor acts on it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from attrs import define, field

from kmiptwist import ttlv
from kmiptwist.errors import KMIPError, invalid_message
from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.enums import (
    BatchErrorContinuationOption,
    CredentialType,
    ResultReason,
    ResultStatus,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = [
    "ProtocolVersion",
    "Credential",
    "RequestHeader",
    "RequestBatchItem",
    "RequestMessage",
    "ResponseBatchItem",
    "parse_request",
    "encode_response",
    "encode_success",
    "SUPPORTED_VERSIONS",
]


class ProtocolVersion(NamedTuple):
    """A KMIP protocol version, ordered (1.1 < 1.4 < 2.0)."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def is_2x(self) -> bool:
        """True for KMIP 2.0 and later, whose attributes and payloads differ from 1.x."""
        return self.major >= 2

    @property
    def spec(self) -> str:
        """The specification whose vocabulary this version speaks ("1.1", "1.4", "2.1")."""
        if self.major >= 2:
            return "2.1"
        if self.minor >= 2:
            return "1.4"
        return "1.1"

    def to_item(self) -> Item:
        """The Protocol Version structure."""
        return ttlv.structure(
            Tag.PROTOCOL_VERSION,
            [
                ttlv.integer(Tag.PROTOCOL_VERSION_MAJOR, self.major),
                ttlv.integer(Tag.PROTOCOL_VERSION_MINOR, self.minor),
            ],
        )

    @classmethod
    def from_item(cls, item: Item) -> ProtocolVersion:
        """Read a Protocol Version structure, strictly."""
        if item.type != ItemType.STRUCTURE:
            raise invalid_message("Protocol Version must be a structure")
        major = item.find(Tag.PROTOCOL_VERSION_MAJOR)
        minor = item.find(Tag.PROTOCOL_VERSION_MINOR)
        if (
            major is None
            or minor is None
            or major.type != ItemType.INTEGER
            or minor.type != ItemType.INTEGER
        ):
            raise invalid_message("Protocol Version needs an Integer major and minor")
        return cls(major.value, minor.value)


#: Newest first, as Discover Versions lists them.
SUPPORTED_VERSIONS: tuple[ProtocolVersion, ...] = (
    ProtocolVersion(2, 1),
    ProtocolVersion(2, 0),
    ProtocolVersion(1, 4),
    ProtocolVersion(1, 3),
    ProtocolVersion(1, 2),
    ProtocolVersion(1, 1),
    ProtocolVersion(1, 0),
)


@define
class Credential:
    """A Credential from the request's Authentication (recorded, not a substitute for TLS)."""

    credential_type: int
    username: str | None = None


@define
class RequestHeader:
    """The Request Header fields the server acts on."""

    protocol_version: ProtocolVersion
    batch_count: int
    maximum_response_size: int | None = None
    asynchronous_indicator: bool = False
    batch_order_option: bool | None = None
    batch_error_continuation_option: int = BatchErrorContinuationOption.STOP
    time_stamp: int | None = None
    credentials: list[Credential] = field(factory=list)
    client_correlation_value: str | None = None


@define
class RequestBatchItem:
    """One operation of a request."""

    operation: int
    payload: Item | None
    unique_batch_item_id: bytes | None = None


@define
class RequestMessage:
    """A whole request: its header and its batch items."""

    header: RequestHeader
    batch_items: list[RequestBatchItem]


@define
class ResponseBatchItem:
    """One operation's answer."""

    operation: int | None
    result_status: int
    unique_batch_item_id: bytes | None = None
    result_reason: int | None = None
    result_message: str | None = None
    payload: list[Item] | None = None

    @classmethod
    def failure(
        cls, operation: int | None, unique_batch_item_id: bytes | None, error: KMIPError
    ) -> ResponseBatchItem:
        """The answer for an operation that raised ``error``."""
        return cls(
            operation=operation,
            result_status=error.status,
            unique_batch_item_id=unique_batch_item_id,
            result_reason=error.reason,
            result_message=error.message,
        )


def _expect(item: Item, tag: int, item_type: int, what: str) -> None:
    if item.type != item_type:
        raise invalid_message(
            f"{what} must be of type {ItemType.NAMES[item_type]}, not {ItemType.NAMES.get(item.type, item.type)}"
        )


def _parse_credentials(authentication: Item) -> list[Credential]:
    _expect(authentication, Tag.AUTHENTICATION, ItemType.STRUCTURE, "Authentication")
    credentials = []
    for credential in authentication.find_all(Tag.CREDENTIAL):
        _expect(credential, Tag.CREDENTIAL, ItemType.STRUCTURE, "Credential")
        credential_type = credential.get(Tag.CREDENTIAL_TYPE)
        if not isinstance(credential_type, int):
            raise invalid_message("Credential needs a Credential Type")
        username = None
        value = credential.find(Tag.CREDENTIAL_VALUE)
        if (
            credential_type == CredentialType.USERNAME_AND_PASSWORD
            and value is not None
            and value.type == ItemType.STRUCTURE
        ):
            found = value.get(Tag.USERNAME)
            username = found if isinstance(found, str) else None
        credentials.append(Credential(credential_type, username))
    return credentials


def parse_header(item: Item) -> RequestHeader:
    """Read a Request Header; raise Invalid Message on anything malformed."""
    if item.type != _STRUCTURE:
        _expect(item, Tag.REQUEST_HEADER, ItemType.STRUCTURE, "Request Header")
    version: ProtocolVersion | None = None
    batch_count = -1
    fields: dict[str, object] | None = None
    for child in item.value:
        tag = child.tag
        if tag == Tag.PROTOCOL_VERSION:
            version = _protocol_version(child)
        elif tag == Tag.BATCH_COUNT:
            if child.type != _INTEGER:
                _expect(child, tag, ItemType.INTEGER, "Batch Count")
            batch_count = child.value
        else:
            if fields is None:
                fields = {}
            known = _HEADER_FIELDS.get(tag)
            if known is not None:
                name, item_type, what = known
                _expect(child, tag, item_type, what)
                fields[name] = child.value
            elif tag == Tag.AUTHENTICATION:
                fields["credentials"] = _parse_credentials(child)
        # Other header fields (attestation, server correlation value) are optional
        # and do not change what this server does.
    if version is None:
        raise invalid_message("Request Header has no Protocol Version")
    if batch_count < 0:
        raise invalid_message("Request Header has no Batch Count")
    if fields is None:
        return RequestHeader(version, batch_count)
    return RequestHeader(version, batch_count, **fields)  # type: ignore[arg-type]


def _protocol_version(item: Item) -> ProtocolVersion:
    """A Protocol Version structure; the common two-field form read without searching."""
    children = item.value
    if item.type == _STRUCTURE and len(children) == 2:
        major, minor = children
        if (
            major.tag == Tag.PROTOCOL_VERSION_MAJOR
            and minor.tag == Tag.PROTOCOL_VERSION_MINOR
            and major.type == _INTEGER
            and minor.type == _INTEGER
        ):
            return ProtocolVersion(major.value, minor.value)
    return ProtocolVersion.from_item(item)


_HEADER_FIELDS: dict[int, tuple[str, int, str]] = {
    Tag.MAXIMUM_RESPONSE_SIZE: ("maximum_response_size", ItemType.INTEGER, "Maximum Response Size"),
    Tag.ASYNCHRONOUS_INDICATOR: (
        "asynchronous_indicator",
        ItemType.BOOLEAN,
        "Asynchronous Indicator",
    ),
    Tag.BATCH_ORDER_OPTION: ("batch_order_option", ItemType.BOOLEAN, "Batch Order Option"),
    Tag.BATCH_ERROR_CONTINUATION_OPTION: (
        "batch_error_continuation_option",
        ItemType.ENUMERATION,
        "Batch Error Continuation Option",
    ),
    Tag.TIME_STAMP: ("time_stamp", ItemType.DATE_TIME, "Time Stamp"),
    Tag.CLIENT_CORRELATION_VALUE: (
        "client_correlation_value",
        ItemType.TEXT_STRING,
        "Client Correlation Value",
    ),
}
"""Optional Request Header fields the server reads: RequestHeader field, type, name."""


def guess_version(item: Item) -> ProtocolVersion | None:
    """The protocol version of a request that may not parse, to answer in kind."""
    try:
        header = item.find(Tag.REQUEST_HEADER) if item.type == ItemType.STRUCTURE else None
        if header is not None and header.type == ItemType.STRUCTURE:
            version = header.find(Tag.PROTOCOL_VERSION)
            if version is not None:
                return ProtocolVersion.from_item(version)
    except KMIPError:
        pass
    return None


def parse_batch_item(item: Item) -> RequestBatchItem:
    """Read a request Batch Item; raise Invalid Message on anything malformed."""
    if item.type != _STRUCTURE:
        _expect(item, Tag.BATCH_ITEM, ItemType.STRUCTURE, "Batch Item")
    operation = None
    payload = None
    batch_id = None
    for child in item.value:
        tag = child.tag
        if tag == Tag.OPERATION:
            if child.type != _ENUMERATION:
                _expect(child, tag, ItemType.ENUMERATION, "Operation")
            operation = child.value
        elif tag == Tag.REQUEST_PAYLOAD:
            if child.type != _STRUCTURE:
                _expect(child, tag, ItemType.STRUCTURE, "Request Payload")
            payload = child
        elif tag == Tag.UNIQUE_BATCH_ITEM_ID:
            if child.type != _BYTE_STRING:
                _expect(child, tag, ItemType.BYTE_STRING, "Unique Batch Item ID")
            batch_id = child.value
    if operation is None:
        raise invalid_message("Batch Item has no Operation")
    return RequestBatchItem(operation, payload, batch_id)


def parse_request(item: Item) -> RequestMessage:
    """Read a Request Message; raise Invalid Message on anything malformed.

    The Batch Count must match the number of batch items: a count that lies is a
    malformed message, not something to guess around.
    """
    if item.tag != Tag.REQUEST_MESSAGE or item.type != _STRUCTURE:
        raise invalid_message(f"expected a Request Message, got tag 0x{item.tag:06X}")
    header_item = None
    batch_children = []
    for child in item.value:
        tag = child.tag
        if tag == Tag.BATCH_ITEM:
            batch_children.append(child)
        elif tag == Tag.REQUEST_HEADER and header_item is None:
            header_item = child
    if header_item is None:
        raise invalid_message("Request Message has no Request Header")
    header = parse_header(header_item)
    batch_items = [parse_batch_item(child) for child in batch_children]
    if not batch_items:
        raise invalid_message("Request Message has no Batch Item")
    if header.batch_count != len(batch_items):
        raise invalid_message(
            f"Batch Count is {header.batch_count} but the message holds {len(batch_items)} batch items"
        )
    return RequestMessage(header, batch_items)


# Item types as module names: these are read for every request.
_STRUCTURE = ItemType.STRUCTURE
_INTEGER = ItemType.INTEGER
_ENUMERATION = ItemType.ENUMERATION
_BYTE_STRING = ItemType.BYTE_STRING


def encode_response(
    version: ProtocolVersion, time_stamp: int, batch_items: list[ResponseBatchItem]
) -> bytes:
    """Encode a Response Message for ``version``.

    The envelope is written as bytes directly (only the payloads go through the item
    codec): it is the same few fields on every response.
    """
    body = [_response_header(version, time_stamp, len(batch_items))]
    for batch_item in batch_items:
        fields = []
        if batch_item.operation is not None:
            fields.append(_pack_enumeration_item(_OPERATION_HEAD, 4, batch_item.operation))
        batch_id = batch_item.unique_batch_item_id
        if batch_id is not None:
            fields.append(_pack_structure_header(_UNIQUE_BATCH_ITEM_ID_HEAD, len(batch_id)))
            fields.append(batch_id)
            if len(batch_id) & 7:
                fields.append(_PAD[: -len(batch_id) & 7])
        fields.append(_pack_enumeration_item(_RESULT_STATUS_HEAD, 4, batch_item.result_status))
        if batch_item.result_reason is not None:
            fields.append(_pack_enumeration_item(_RESULT_REASON_HEAD, 4, batch_item.result_reason))
        if batch_item.result_message is not None:
            fields.append(
                ttlv.encode(ttlv.text_string(Tag.RESULT_MESSAGE, batch_item.result_message))
            )
        payload = batch_item.payload
        if payload is not None:
            if len(payload) == 1 and payload[0].type == _ENCODED:
                encoded_payload = payload[0].value
                fields.append(_pack_structure_header(_RESPONSE_PAYLOAD_HEAD, len(encoded_payload)))
                fields.append(encoded_payload)
            else:
                fields.append(ttlv.encode_structure(Tag.RESPONSE_PAYLOAD, payload))
        encoded = b"".join(fields)
        body.append(_pack_structure_header(_BATCH_ITEM_HEAD, len(encoded)))
        body.append(encoded)
    message = b"".join(body)
    return _pack_structure_header(_RESPONSE_MESSAGE_HEAD, len(message)) + message


def encode_success(
    version: ProtocolVersion,
    time_stamp: int,
    operation: int,
    batch_id: bytes | None,
    payload: bytes,
) -> bytes:
    """:func:`encode_response` of one successful batch item whose Response Payload
    ``payload`` (its children) is encoded already, in fewer steps (a kept Get's answer)."""
    if batch_id is None:
        batch_id_field = b""
    else:
        batch_id_field = b"".join(
            (
                _pack_structure_header(_UNIQUE_BATCH_ITEM_ID_HEAD, len(batch_id)),
                batch_id,
                _PAD[: -len(batch_id) & 7],
            )
        )
    item_length = 40 + len(batch_id_field) + len(payload)
    return b"".join(
        (
            _pack_structure_header(_RESPONSE_MESSAGE_HEAD, 88 + item_length),
            _response_header(version, time_stamp, 1),
            _pack_structure_header(_BATCH_ITEM_HEAD, item_length),
            _pack_enumeration_item(_OPERATION_HEAD, 4, operation),
            batch_id_field,
            _SUCCESS_STATUS,
            _pack_structure_header(_RESPONSE_PAYLOAD_HEAD, len(payload)),
            payload,
        )
    )


_HEADERS: dict[tuple[ProtocolVersion, int, int], bytes] = {}
"""Response Headers of the current second, by version and batch count."""


def _response_header(version: ProtocolVersion, time_stamp: int, count: int) -> bytes:
    """The Response Header: the same bytes for every response of a second."""
    key = (version, time_stamp, count)
    header = _HEADERS.get(key)
    if header is None:
        if len(_HEADERS) >= 64:
            _HEADERS.clear()
        header = _HEADERS[key] = b"".join(
            [
                _pack_structure_header(_RESPONSE_HEADER_HEAD, 72),
                _pack_structure_header(_PROTOCOL_VERSION_HEAD, 32),
                _pack_integer_item(_MAJOR_HEAD, 4, version.major),
                _pack_integer_item(_MINOR_HEAD, 4, version.minor),
                _pack_date_item(_TIME_STAMP_HEAD, 8, time_stamp),
                _pack_integer_item(_BATCH_COUNT_HEAD, 4, count),
            ]
        )
    return header


def _head(tag: int, item_type: int) -> int:
    return (tag << 8) | item_type


_pack_structure_header = struct.Struct(">II").pack
_pack_integer_item = struct.Struct(">IIi4x").pack
_pack_enumeration_item = struct.Struct(">III4x").pack
_pack_date_item = struct.Struct(">IIq").pack
_RESPONSE_MESSAGE_HEAD = _head(Tag.RESPONSE_MESSAGE, ItemType.STRUCTURE)
_RESPONSE_HEADER_HEAD = _head(Tag.RESPONSE_HEADER, ItemType.STRUCTURE)
_PROTOCOL_VERSION_HEAD = _head(Tag.PROTOCOL_VERSION, ItemType.STRUCTURE)
_MAJOR_HEAD = _head(Tag.PROTOCOL_VERSION_MAJOR, ItemType.INTEGER)
_MINOR_HEAD = _head(Tag.PROTOCOL_VERSION_MINOR, ItemType.INTEGER)
_TIME_STAMP_HEAD = _head(Tag.TIME_STAMP, ItemType.DATE_TIME)
_BATCH_COUNT_HEAD = _head(Tag.BATCH_COUNT, ItemType.INTEGER)
_BATCH_ITEM_HEAD = _head(Tag.BATCH_ITEM, ItemType.STRUCTURE)
_RESPONSE_PAYLOAD_HEAD = _head(Tag.RESPONSE_PAYLOAD, ItemType.STRUCTURE)
_ENCODED = ItemType.ENCODED
_UNIQUE_BATCH_ITEM_ID_HEAD = _head(Tag.UNIQUE_BATCH_ITEM_ID, ItemType.BYTE_STRING)
_PAD = bytes(8)
_OPERATION_HEAD = _head(Tag.OPERATION, ItemType.ENUMERATION)
_RESULT_STATUS_HEAD = _head(Tag.RESULT_STATUS, ItemType.ENUMERATION)
_RESULT_REASON_HEAD = _head(Tag.RESULT_REASON, ItemType.ENUMERATION)
_SUCCESS_STATUS = _pack_enumeration_item(_RESULT_STATUS_HEAD, 4, ResultStatus.SUCCESS)
_REQUEST_MESSAGE_HEAD = _head(Tag.REQUEST_MESSAGE, ItemType.STRUCTURE)
_REQUEST_PAYLOAD_HEAD = _head(Tag.REQUEST_PAYLOAD, ItemType.STRUCTURE)
_UNIQUE_IDENTIFIER_HEAD = _head(Tag.UNIQUE_IDENTIFIER, ItemType.TEXT_STRING)
# A lone request's fixed parts: Request Header (56 bytes: Protocol Version, Batch Count
# 1), Protocol Version Major (its value read at 32), Minor's head (value at 48), Batch
# Count 1 and the Batch Item's head (length checked apart), the Operation's head (its
# value read at 88).
_LONE_HEADER_START = struct.pack(
    ">IIIIII",
    _head(Tag.REQUEST_HEADER, ItemType.STRUCTURE),
    56,
    _head(Tag.PROTOCOL_VERSION, ItemType.STRUCTURE),
    32,
    _MAJOR_HEAD,
    4,
)
_LONE_MINOR_HEAD = struct.pack(">II", _MINOR_HEAD, 4)
_LONE_BATCH_COUNT = struct.pack(">IIi4x", _BATCH_COUNT_HEAD, 4, 1)
_LONE_OPERATION_HEAD = struct.pack(">II", _OPERATION_HEAD, 4)
_LONE_MINIMUM = 96 + 8  # ... Operation, Request Payload


class LoneRequest(NamedTuple):
    """A request message of one batch item, as :func:`parse_lone_request` reads it."""

    version: ProtocolVersion
    batch_id: bytes | None
    """The Unique Batch Item ID, or None."""
    operation: int
    payload: bytes
    """The Request Payload structure, whole (its own header included), as sent."""


def parse_lone_request(data: bytes) -> LoneRequest | None:
    """The parts of a request message that is one batch item and nothing more, read at
    fixed offsets without decoding the message; None for any other message.

    Most requests are such (vCenter's every one but the Add Attribute batch): a
    Request Header of Protocol Version and Batch Count 1 only, and one Batch Item of
    an Operation, an optional Unique Batch Item ID and a Request Payload.  Anything
    else, including any field this reading does not check, is None, and the message
    goes the general way (:func:`parse_request`), which reads it the same.  The
    payload is not decoded: only its place is checked.
    """
    size = len(data)
    if size < _LONE_MINIMUM or size % 8 or _words(data, 0) != (_REQUEST_MESSAGE_HEAD, size - 8):
        return None
    # startswith at an offset compares in place, without slicing a copy.
    if not (
        data.startswith(_LONE_HEADER_START, 8)
        and data.startswith(_LONE_MINOR_HEAD, 40)
        and data.startswith(_LONE_BATCH_COUNT, 56)
        and data.startswith(_LONE_OPERATION_HEAD, 80)
    ):
        return None
    if _words(data, 72) != (_BATCH_ITEM_HEAD, size - 80):
        return None
    major, minor = _major_minor(data, 32)
    at = 96
    batch_id = None
    head, length = _words(data, at)
    if head == _UNIQUE_BATCH_ITEM_ID_HEAD:
        end = at + 8 + length
        batch_id = data[at + 8 : end]
        at = end + (-length & 7)
        if at + 8 > size:
            return None
        head, length = _words(data, at)
    if head != _REQUEST_PAYLOAD_HEAD or at + 8 + length != size:
        return None
    # The NamedTuples made without their Python-level __new__ (as ttlv makes Items).
    version = _new_tuple(ProtocolVersion, (major, minor))
    return _new_tuple(LoneRequest, (version, batch_id, _uint32(data, 88)[0], data[at:]))


def lone_get_identifier(payload: bytes) -> str | None:
    """The Unique Identifier of a lone Get's Request Payload (``LoneRequest.payload``)
    that holds that and nothing more; None for any other payload."""
    size = len(payload)
    if size < 16:
        return None
    head, length = _words(payload, 8)
    if head != _UNIQUE_IDENTIFIER_HEAD or 16 + length + (-length & 7) != size:
        return None
    try:
        return payload[16 : 16 + length].decode("utf-8")
    except UnicodeDecodeError:
        return None


_words = struct.Struct(">II").unpack_from
_uint32 = struct.Struct(">I").unpack_from
_major_minor = struct.Struct(">i12xi").unpack_from
_new_tuple = tuple.__new__


def error_response(version: ProtocolVersion, time_stamp: int, error: KMIPError) -> bytes:
    """A response of one failed batch item, for a request that could not be read."""
    return encode_response(version, time_stamp, [ResponseBatchItem.failure(None, None, error)])


__all__ += [
    "parse_header",
    "parse_batch_item",
    "guess_version",
    "error_response",
    "ResultReason",
    "ResultStatus",
]
