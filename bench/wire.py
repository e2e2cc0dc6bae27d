"""KMIP requests for the benchmark, encoded once, and cheap checks of the replies.

Requests are built with kmiptwist's TTLV codec and the test request builder (a
client's view, independent of the server's message layer) and kept as bytes.  A
request that names an object the generator learns only at run time (vCenter's
steps use the key its Create returned) is a :class:`UIDTemplate`: the bytes of the
request with the Unique Identifier spliced in and the enclosing lengths patched,
which costs a few microseconds instead of a full encode.

Every reply is checked by :func:`all_succeeded` (each batch item's Result Status is
Success, and there is one per request item) without decoding it; a sample of
replies is decoded in full by :func:`check_decoded`.
"""

from __future__ import annotations

import struct

from kmiptwist import ttlv
from kmiptwist.testing.messages import attribute_1x, name_1x, read_response, request, template_1x
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import CryptographicAlgorithm, ObjectType, Operation, ResultStatus
from kmiptwist.vocabulary.tags import Tag

__all__ = [
    "V11",
    "V14",
    "UIDTemplate",
    "all_succeeded",
    "check_decoded",
    "create_request",
    "discover_versions",
    "extract_uid",
    "get_request",
    "locate_by_name",
    "vcenter_templates",
]

V11 = (1, 1)
V14 = (1, 4)

_RESULT_STATUS = (
    struct.pack(">I", (Tag.RESULT_STATUS << 8) | ttlv.ItemType.ENUMERATION) + b"\0\0\0\x04"
)
_SUCCESS = _RESULT_STATUS + struct.pack(">I", ResultStatus.SUCCESS)
_UID_HEADER = struct.pack(">I", (Tag.UNIQUE_IDENTIFIER << 8) | ttlv.ItemType.TEXT_STRING)
_SENTINEL = "\x01kmiptwist-bench-uid\x01"


def batch_id(counter: int) -> bytes:
    """vCenter's Unique Batch Item ID: "QLKC" and a little-endian counter."""
    return b"QLKC" + struct.pack("<I", counter)


def all_succeeded(response: bytes, items: int) -> bool:
    """True when the reply holds exactly ``items`` Result Status fields, all Success.

    A byte search, not a decode: the 12-byte pattern of a successful Result Status
    field cannot be confused with key material in practice (2^-96 per position).
    """
    return response.count(_RESULT_STATUS) == items and response.count(_SUCCESS) == items


def extract_uid(response: bytes) -> str | None:
    """The first Unique Identifier text string in a reply (what Create returns)."""
    at = response.find(_UID_HEADER)
    if at < 0:
        return None
    (length,) = struct.unpack_from(">I", response, at + 4)
    return response[at + 8 : at + 8 + length].decode("utf-8")


def check_decoded(response: bytes, operations: list[int]) -> str | None:
    """Decode a reply in full and say what is wrong with it (None: nothing).

    It must be a Response Message with one successful batch item per request item,
    for the operations asked, and a Get must carry key material.
    """
    try:
        decoded = read_response(response)
    except Exception as error:  # noqa: BLE001 - any decoding problem is a finding
        return f"undecodable reply: {error!r}"
    if len(decoded.items) != len(operations):
        return f"{len(decoded.items)} batch items for {len(operations)} requested"
    for item, operation in zip(decoded.items, operations, strict=True):
        if not item.ok:
            return f"operation 0x{operation:x} failed: {item.reason} {item.message}"
        if item.operation is not None and item.operation != operation:
            return f"reply for operation 0x{item.operation:x}, expected 0x{operation:x}"
        if operation == Operation.GET:
            material = None
            if item.payload is not None:
                for child in item.payload.walk():
                    if child.tag == Tag.KEY_MATERIAL:
                        material = child
                        break
            if material is None:
                return "Get reply without Key Material"
    return None


def discover_versions(with_id: bool = False) -> bytes:
    """Discover Versions with an empty payload (vCenter's first request on a connection)."""
    return request(V11, [(Operation.DISCOVER_VERSIONS, [], batch_id(1) if with_id else None)])


def get_request(uid: str, version: tuple[int, int] = V11) -> bytes:
    """Get by Unique Identifier, as vCenter sends it (no format, batch item ID set)."""
    return request(
        version, [(Operation.GET, [ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid)], batch_id(1))]
    )


def create_request() -> bytes:
    """Create an AES-256 key with usage Encrypt|Decrypt: vCenter's template, byte for byte."""
    attributes = [
        attribute_1x(
            "Cryptographic Algorithm",
            ttlv.enumeration(Tag.CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm.AES),
        ),
        attribute_1x("Cryptographic Usage Mask", ttlv.integer(Tag.CRYPTOGRAPHIC_USAGE_MASK, 12)),
        attribute_1x("Cryptographic Length", ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, 256)),
    ]
    payload = [
        ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
        template_1x(attributes),
    ]
    return request(V11, [(Operation.CREATE, payload, batch_id(1))])


def locate_by_name(name: str) -> bytes:
    """Locate the objects called ``name`` (KMIP 1.4, so the reply counts the matches)."""
    payload = [attribute_1x("Name", name_1x(name))]
    return request(V14, [(Operation.LOCATE, payload, batch_id(1))])


class UIDTemplate:
    """A request whose Unique Identifiers are filled in at run time.

    The request is encoded once with a sentinel identifier; :meth:`render` puts the
    real one in its place and corrects the lengths of the structures around it.
    """

    def __init__(self, items: list[tuple[int, list[Item] | None, bytes | None]]) -> None:
        """Encode the request ``items`` (operation, payload, batch id) of KMIP 1.1."""
        encoded = request(V11, items)
        self.operations = [operation for operation, _, _ in items]
        sentinel_item = ttlv.encode(ttlv.text_string(Tag.UNIQUE_IDENTIFIER, _SENTINEL))
        self._sentinel_size = len(sentinel_item)
        self._pieces: list[bytes] = []
        starts: list[int] = []
        position = 0
        while (at := encoded.find(sentinel_item, position)) >= 0:
            self._pieces.append(encoded[position:at])
            starts.append(at)
            position = at + len(sentinel_item)
        self._pieces.append(encoded[position:])
        # (length field offset, sentinels before it, sentinels inside its structure)
        self._patches = [
            (offset, sum(1 for s in starts if s < offset), sum(1 for s in starts if low < s < high))
            for offset, low, high in _structures(encoded)
            if any(low < s < high for s in starts)
        ]

    def render(self, uid: str) -> bytes:
        """The request for ``uid``."""
        uid_item = ttlv.encode(ttlv.text_string(Tag.UNIQUE_IDENTIFIER, uid))
        delta = len(uid_item) - self._sentinel_size
        data = bytearray(uid_item.join(self._pieces))
        for offset, before, inside in self._patches:
            actual = offset + delta * before
            (length,) = struct.unpack_from(">I", data, actual)
            struct.pack_into(">I", data, actual, length + delta * inside)
        return bytes(data)


def _structures(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int]]:
    """Every structure in ``data``: (offset of its length field, start, end)."""
    end = len(data) if end is None else end
    found: list[tuple[int, int, int]] = []
    while start < end:
        word, length = struct.unpack_from(">II", data, start)
        item_end = start + 8 + ((length + 7) & ~7)
        if word & 0xFF == ttlv.ItemType.STRUCTURE:
            found.append((start + 4, start, item_end))
            found.extend(_structures(data, start + 8, item_end))
        start = item_end
    return found


def _uid(value: str = _SENTINEL) -> Item:
    return ttlv.text_string(Tag.UNIQUE_IDENTIFIER, value)


def _get_attributes(name: str) -> list[Item]:
    return [_uid(), ttlv.text_string(Tag.ATTRIBUTE_NAME, name)]


def _add_attribute(name: str, value: str) -> list[Item]:
    return [_uid(), attribute_1x(name, ttlv.text_string(Tag.ATTRIBUTE_VALUE, value))]


def vcenter_templates() -> dict[str, UIDTemplate]:
    """The per-key steps of vCenter's VM encryption (reference §1.3 (d)), by name.

    Each is sent on its own connection after an ID-less Discover Versions.
    """
    return {
        "describe": UIDTemplate(
            [
                (Operation.GET_ATTRIBUTES, _get_attributes("x-Product_Version"), batch_id(1)),
            ]
        ),
        "describe-2": UIDTemplate(
            [(Operation.GET_ATTRIBUTES, _get_attributes("x-Vendor"), batch_id(2))]
        ),
        "describe-3": UIDTemplate(
            [(Operation.GET_ATTRIBUTES, _get_attributes("x-Product"), batch_id(3))]
        ),
        "tag": UIDTemplate(
            [
                (
                    Operation.ADD_ATTRIBUTE,
                    _add_attribute("x-Product_Version", "7.0.3 build-19480866"),
                    batch_id(4),
                ),
                (Operation.ADD_ATTRIBUTE, _add_attribute("x-Vendor", "VMware, Inc."), batch_id(5)),
                (
                    Operation.ADD_ATTRIBUTE,
                    _add_attribute("x-Product", "VMware vSphere"),
                    batch_id(6),
                ),
            ]
        ),
        "get": UIDTemplate([(Operation.GET, [_uid()], batch_id(1))]),
        "state": UIDTemplate([(Operation.GET_ATTRIBUTES, _get_attributes("State"), batch_id(2))]),
        "activate": UIDTemplate([(Operation.ACTIVATE, [_uid()], batch_id(3))]),
    }
