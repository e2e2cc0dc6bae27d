"""A minimal Twisted TLS KMIP server that answers every request with a prepared reply.

It has kmiptwist's TLS settings (``kmiptwist.tls``: same certificate, suites,
session cache and tickets, client certificate requested) and Twisted's TLS
transport, and does the least a KMIP server can do per message: frame it, look at
its version, operation and batch count, and write a valid reply made in advance.
What it reaches is the limit any Python server on Twisted can reach on this
machine; the benchmark reports kmiptwist as a fraction of it.

    python bench/canned_server.py --port 5696 --certificate server.pem --key server-key.pem
"""

from __future__ import annotations

import argparse
import struct
import sys
from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint, wrapServerTLS
from twisted.internet.protocol import Factory, Protocol

from kmiptwist import pki, ttlv
from kmiptwist.tls import server_tls_options
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import (
    CryptographicAlgorithm,
    KeyFormatType,
    ObjectType,
    Operation,
    ResultStatus,
    State,
)
from kmiptwist.vocabulary.tags import Tag

_OPERATION = struct.pack(">I", (Tag.OPERATION << 8) | ttlv.ItemType.ENUMERATION)
_BATCH_COUNT = struct.pack(">I", (Tag.BATCH_COUNT << 8) | ttlv.ItemType.INTEGER)
_UID = "0c4b3a2e-5d6f-4a1b-9c8d-7e6f5a4b3c2d"


def _payload(operation: int) -> list[Item]:
    """A plausible successful payload for ``operation``."""
    uid = ttlv.text_string(Tag.UNIQUE_IDENTIFIER, _UID)
    if operation == Operation.DISCOVER_VERSIONS:
        return [
            ttlv.structure(
                Tag.PROTOCOL_VERSION,
                [
                    ttlv.integer(Tag.PROTOCOL_VERSION_MAJOR, 1),
                    ttlv.integer(Tag.PROTOCOL_VERSION_MINOR, minor),
                ],
            )
            for minor in (4, 3, 2, 1, 0)
        ]
    if operation == Operation.GET:
        block = ttlv.structure(
            Tag.KEY_BLOCK,
            [
                ttlv.enumeration(Tag.KEY_FORMAT_TYPE, KeyFormatType.RAW),
                ttlv.structure(
                    Tag.KEY_VALUE, [ttlv.byte_string(Tag.KEY_MATERIAL, bytes(range(32)))]
                ),
                ttlv.enumeration(Tag.CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm.AES),
                ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, 256),
            ],
        )
        return [
            ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
            uid,
            ttlv.structure(Tag.SYMMETRIC_KEY, [block]),
        ]
    if operation == Operation.CREATE:
        return [ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY), uid]
    if operation == Operation.GET_ATTRIBUTES:
        state = ttlv.structure(
            Tag.ATTRIBUTE,
            [
                ttlv.text_string(Tag.ATTRIBUTE_NAME, "State"),
                ttlv.enumeration(Tag.ATTRIBUTE_VALUE, State.PRE_ACTIVE),
            ],
        )
        return [uid, state]
    if operation == Operation.LOCATE:
        return [ttlv.integer(Tag.LOCATED_ITEMS, 1), uid]
    return [uid]


def _reply(minor: int, operation: int, count: int) -> bytes:
    """The reply to a request of ``count`` items of ``operation`` in KMIP 1.``minor``."""
    header = ttlv.structure(
        Tag.RESPONSE_HEADER,
        [
            ttlv.structure(
                Tag.PROTOCOL_VERSION,
                [
                    ttlv.integer(Tag.PROTOCOL_VERSION_MAJOR, 1),
                    ttlv.integer(Tag.PROTOCOL_VERSION_MINOR, minor),
                ],
            ),
            ttlv.date_time(Tag.TIME_STAMP, 1_800_000_000),
            ttlv.integer(Tag.BATCH_COUNT, count),
        ],
    )
    items = []
    for index in range(count):
        fields = [ttlv.enumeration(Tag.OPERATION, operation)]
        if count > 1 or operation != Operation.DISCOVER_VERSIONS:
            fields.append(
                ttlv.byte_string(Tag.UNIQUE_BATCH_ITEM_ID, b"QLKC" + bytes([index + 1, 0, 0, 0]))
            )
        fields.append(ttlv.enumeration(Tag.RESULT_STATUS, ResultStatus.SUCCESS))
        fields.append(ttlv.structure(Tag.RESPONSE_PAYLOAD, _payload(operation)))
        items.append(ttlv.structure(Tag.BATCH_ITEM, fields))
    return ttlv.encode(ttlv.structure(Tag.RESPONSE_MESSAGE, [header, *items]))


class CannedReplies:
    """Prepared replies by (version minor, operation, batch count), made on first use."""

    def __init__(self) -> None:
        self._replies: dict[tuple[int, int, int], bytes] = {}

    def for_request(self, message: bytes) -> bytes:
        """The reply to ``message`` (a whole request)."""
        minor = int.from_bytes(message[48:52], "big") if len(message) >= 52 else 1
        at = message.find(_OPERATION)
        operation = int.from_bytes(message[at + 8 : at + 12], "big") if at >= 0 else 0
        at = message.find(_BATCH_COUNT)
        count = int.from_bytes(message[at + 8 : at + 12], "big") if at >= 0 else 1
        key = (minor, operation, count)
        reply = self._replies.get(key)
        if reply is None:
            reply = self._replies[key] = _reply(minor if minor <= 4 else 1, operation, count)
        return reply


class CannedProtocol(Protocol):
    """Frame requests (8-byte TTLV header) and write the canned reply to each."""

    def __init__(self, replies: CannedReplies) -> None:
        self.replies = replies
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """Answer every whole message received."""
        buffer = self.buffer + data if self.buffer else data
        out = []
        while len(buffer) >= 8:
            size = 8 + int.from_bytes(buffer[4:8], "big")
            if len(buffer) < size:
                break
            out.append(self.replies.for_request(buffer[:size]))
            buffer = buffer[size:]
        self.buffer = buffer
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]


class CannedFactory(Factory):
    """One :class:`CannedProtocol` per connection, sharing the replies."""

    noisy = False

    def __init__(self) -> None:
        self.replies = CannedReplies()

    def buildProtocol(self, addr: Any) -> CannedProtocol:  # noqa: N802 - Twisted's name
        return CannedProtocol(self.replies)


def main(argv: list[str] | None = None) -> None:
    """Listen on 127.0.0.1 with kmiptwist's TLS settings until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certificate", required=True)
    parser.add_argument("--key", required=True)
    arguments = parser.parse_args(argv)
    from twisted.internet import reactor

    with open(arguments.certificate, "rb") as certificate_file:
        certificate = pki.load_certificate(certificate_file.read())
    with open(arguments.key, "rb") as key_file:
        key = pki.load_private_key(key_file.read())
    options = server_tls_options(certificate, key)
    endpoint = wrapServerTLS(
        options, TCP4ServerEndpoint(reactor, arguments.port, interface="127.0.0.1", backlog=1024)
    )
    endpoint.listen(CannedFactory())
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
