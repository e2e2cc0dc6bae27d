"""The processor: one whole KMIP request in, one whole response out.

It owns what spans batch items: protocol version negotiation, batch semantics
(order, error continuation, ID Placeholder), mapping errors to Result Status and
Reason, and refusing peers that have no tenant.  It knows nothing of sockets.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any
from typing import Protocol as TypingProtocol

from attrs import define, field, frozen
from twisted.logger import Logger

from kmiptwist import ttlv
from kmiptwist.audit import audit_notes
from kmiptwist.engine import Engine
from kmiptwist.errors import KMIPError, invalid_message
from kmiptwist.messages import (
    SUPPORTED_VERSIONS,
    LoneRequest,
    ProtocolVersion,
    RequestHeader,
    RequestMessage,
    ResponseBatchItem,
    encode_response,
    encode_success,
    error_response,
    guess_version,
    lone_get_identifier,
    parse_lone_request,
    parse_request,
)
from kmiptwist.operations import OPERATIONS, RequestContext
from kmiptwist.operations.base import Payload, reason_for
from kmiptwist.operations.lifecycle import create_from, read_create
from kmiptwist.operations.retrieval import answer_again, answer_now
from kmiptwist.operations.templates import refers_to_templates
from kmiptwist.ttlv import ItemType, Limits, TTLVError
from kmiptwist.vocabulary.enums import (
    BatchErrorContinuationOption,
    Operation,
    ResultReason,
    ResultStatus,
)
from kmiptwist.vocabulary.tags import Tag

__all__ = ["Peer", "KMIPProcessor", "AuditSink"]

log = Logger()


@frozen
class Peer:
    """Who is on the other end of a connection, as the TLS layer established it."""

    address: str
    fingerprint: str | None = None
    tenant: str | None = None
    subject: str | None = None
    trusted_ca: str | None = None
    """The fingerprint of the tenant's trusted CA the certificate chains to, when it
    belongs to the tenant that way rather than by its own fingerprint."""


class AuditSink(TypingProtocol):
    """Where the processor records each KMIP operation (``kmiptwist.audit.AuditLog``)."""

    def record_nowait(
        self,
        *,
        actor: str,
        operation: str,
        result: str,
        tenant: str | None = None,
        unique_identifier: str | None = None,
        correlation_id: str | None = None,
        **details: Any,
    ) -> None:
        """Queue one audit record; never blocks, never raises for a full disk."""
        ...


_AUDIT_NAMES = {int(member): f"kmip.{member.name.lower()}" for member in Operation}
"""The audit log's name of each operation (``kmip.get_attributes``)."""

_CONTINUE = int(BatchErrorContinuationOption.CONTINUE)
_UNDO = int(BatchErrorContinuationOption.UNDO)
_SUCCESS = int(ResultStatus.SUCCESS)
_GET = int(Operation.GET)
_CREATE = int(Operation.CREATE)

MAX_REMEMBERED_CREATES = 64
"""Distinct Create payloads whose reading is remembered (``KMIPProcessor._lone_create``)."""
MAX_REMEMBERED_CREATE_SIZE = 4096
"""The largest Create payload, in bytes, whose reading is remembered."""

MAX_REFUSALS_AUDITED = 100
"""Refused requests (peers without a tenant) audited per second; the rest are counted."""


def _audited_identifier(request: ttlv.Item | None, response: list[ttlv.Item] | None) -> str | None:
    """The object an operation acted on: the request's Unique Identifier, else the one
    the response names (Create, Register, or an ID Placeholder that was used)."""
    if request is not None:
        found = request.find(Tag.UNIQUE_IDENTIFIER)
        if found is not None and found.type == ItemType.TEXT_STRING:
            return str(found.value)
    if response:
        identifiers = [item for item in response if item.tag == Tag.UNIQUE_IDENTIFIER]
        if len(identifiers) == 1 and identifiers[0].type == ItemType.TEXT_STRING:
            return str(identifiers[0].value)
    return None


def _key_pair(response: list[ttlv.Item]) -> tuple[str, str] | None:
    """(private, public) Unique Identifiers of a response that names a key pair."""
    private = public = None
    for item in response:
        if item.type == ItemType.TEXT_STRING:
            if item.tag == Tag.PRIVATE_KEY_UNIQUE_IDENTIFIER:
                private = str(item.value)
            elif item.tag == Tag.PUBLIC_KEY_UNIQUE_IDENTIFIER:
                public = str(item.value)
    if private is None or public is None:
        return None
    return private, public


def _reason_name(reason: int | None) -> str | None:
    """The Result Reason's enumeration name for the audit log."""
    if reason is None:
        return None
    if reason in ResultReason._value2member_map_:
        return ResultReason(reason).name
    return f"0x{reason:08X}"


def _too_large(results: list[ResponseBatchItem], limit: int) -> list[ResponseBatchItem]:
    """The batch items again, those with a payload failed: the client's Maximum
    Response Size is too small for them."""
    error = KMIPError(
        ResultReason.RESPONSE_TOO_LARGE,
        f"the response would exceed the request's Maximum Response Size of {limit} bytes",
    )
    return [
        ResponseBatchItem.failure(result.operation, result.unique_batch_item_id, error)
        if result.payload
        else result
        for result in results
    ]


def _operation_name(operation: int | None) -> str:
    try:
        return Operation(operation).name if operation is not None else "?"
    except ValueError:
        return f"0x{operation:08X}"


@define
class KMIPProcessor:
    """Turn request bytes into response bytes for one peer."""

    engine: Engine
    limits: Limits = Limits()
    audit: AuditSink | None = None
    """Records every batch item (operation, peer, tenant, identifier, result)."""
    _refusal_second: int = field(default=0, init=False, repr=False)
    _refusals_audited: int = field(default=0, init=False, repr=False)
    _refusals_suppressed: int = field(default=0, init=False, repr=False)
    _creates: dict[tuple[ProtocolVersion, bytes], tuple[int, tuple[tuple[str, ttlv.Item], ...]]] = (
        field(factory=dict, init=False, repr=False)
    )

    async def process(self, data: bytes, peer: Peer) -> bytes:
        """Answer one request message; never raises for anything the peer sent."""
        answer = self.respond(data, peer)
        return answer if isinstance(answer, bytes) else await answer

    def respond(self, data: bytes, peer: Peer) -> bytes | Coroutine[Any, Any, bytes]:
        """What :meth:`process` answers: the response itself when it needs nothing
        waited for (a lone Get of a kept answer, :meth:`_get_now`), else a coroutine
        that answers.  The connection calls this, so that such a Get costs no
        coroutine; never raises for anything the peer sent."""
        lone = parse_lone_request(data) if peer.tenant is not None else None
        if lone is not None and lone[2] == _GET:
            unique_identifier = lone_get_identifier(lone[3])
            if unique_identifier is not None:
                answer = self._get_now(lone[0], lone[1], unique_identifier, peer)
                if answer is not None:
                    return answer
        return self._answer(data, peer, lone)

    async def _answer(self, data: bytes, peer: Peer, lone: LoneRequest | None) -> bytes:
        """Answer a request message (``lone``: what ``parse_lone_request`` read of it,
        None for a peer with no tenant or a message it does not read)."""
        if lone is not None:
            version, batch_id, operation, payload = lone
            answer = None
            if operation == _GET:
                unique_identifier = lone_get_identifier(payload)
                if unique_identifier is not None:
                    answer = await self._get_again(version, batch_id, unique_identifier, peer)
            elif operation == _CREATE:
                answer = await self._lone_create(lone, data, peer)
            if answer is not None:
                return answer
        now = self.engine.now()
        try:
            item = ttlv.decode(data, self.limits)
        except TTLVError as error:
            return error_response(
                ProtocolVersion(1, 0), now, invalid_message(f"malformed TTLV: {error}")
            )
        try:
            request = parse_request(item)
        except KMIPError as error:
            return error_response(self._answer_version(guess_version(item)), now, error)
        version = request.header.protocol_version
        answer_version = self._answer_version(version)
        if answer_version != version:
            return error_response(
                answer_version,
                now,
                KMIPError(
                    ResultReason.INVALID_MESSAGE,
                    f"protocol version {version} is not supported; this server speaks "
                    + ", ".join(str(v) for v in SUPPORTED_VERSIONS),
                ),
            )
        if peer.tenant is None:
            self._audit_refusal(request, peer)
            return encode_response(version, now, self._refuse(request, peer))
        if request.header.asynchronous_indicator:
            # Operations complete before the response; asynchronous replies are never
            # needed, and the spec lets a server answer synchronously.
            pass
        results = await self._run_batch(request, version, peer)
        response = encode_response(version, self.engine.now(), results)
        limit = request.header.maximum_response_size
        if limit is not None and len(response) > limit:
            response = encode_response(version, self.engine.now(), _too_large(results, limit))
        return response

    @staticmethod
    def _answer_version(requested: ProtocolVersion | None) -> ProtocolVersion:
        """The version to answer in: the request's if supported, else the nearest below."""
        if requested is None:
            return ProtocolVersion(1, 0)
        if requested in SUPPORTED_VERSIONS:
            return requested
        for candidate in SUPPORTED_VERSIONS:
            if candidate < requested:
                return candidate
        return SUPPORTED_VERSIONS[-1]

    @staticmethod
    def _refuse(request: RequestMessage, peer: Peer) -> list[ResponseBatchItem]:
        """Answer every item of a peer with no tenant: no KMIP service, said clearly."""
        if peer.fingerprint is None:
            message = (
                "no client certificate was presented; this server gives KMIP service only "
                "to registered client certificates"
            )
        else:
            message = (
                f"client certificate {peer.fingerprint} is not registered with this server; "
                "it is listed as pending and an administrator can approve it into a tenant"
            )
        error = KMIPError(ResultReason.AUTHENTICATION_NOT_SUCCESSFUL, message)
        return [
            ResponseBatchItem.failure(item.operation, item.unique_batch_item_id, error)
            for item in request.batch_items
        ]

    def _audit_refusal(self, request: RequestMessage, peer: Peer) -> None:
        """Record the refused items of a peer that has no tenant.

        At most ``MAX_REFUSALS_AUDITED`` a second: peers without a tenant are not
        accountable, and must not fill the disk; the rest are counted in one record.
        """
        if self.audit is None:
            return
        now = self.engine.now()
        if now != self._refusal_second:
            if self._refusals_suppressed:
                self.audit.record_nowait(
                    actor="server",
                    operation="kmip.refusals_suppressed",
                    result="failure",
                    count=self._refusals_suppressed,
                    second=self._refusal_second,
                )
            self._refusal_second, self._refusals_audited, self._refusals_suppressed = now, 0, 0
        for item in request.batch_items:
            if self._refusals_audited >= MAX_REFUSALS_AUDITED:
                self._refusals_suppressed += 1
                continue
            self._refusals_audited += 1
            self.audit.record_nowait(
                actor=f"cert:{peer.fingerprint}" if peer.fingerprint else "anonymous",
                operation=_AUDIT_NAMES.get(item.operation or 0)
                or f"kmip.{_operation_name(item.operation)}",
                result="failure",
                reason="AUTHENTICATION_NOT_SUCCESSFUL",
                peer=peer.address,
            )

    def _context(self, peer: Peer, header: RequestHeader) -> RequestContext:
        """The context of one request of a peer with a tenant."""
        assert peer.tenant is not None
        return RequestContext(
            engine=self.engine,
            tenant=peer.tenant,
            version=header.protocol_version,
            peer_fingerprint=peer.fingerprint,
            header=header,
        )

    async def _run_batch(
        self, request: RequestMessage, version: ProtocolVersion, peer: Peer
    ) -> list[ResponseBatchItem]:
        """Run the batch items in order, honouring the error continuation option."""
        context = self._context(peer, request.header)
        option = request.header.batch_error_continuation_option
        stop_on_error = option != _CONTINUE
        undo = option == _UNDO
        if undo:
            context.hold_writes()
        results: list[ResponseBatchItem] = []
        for batch_item in request.batch_items:
            result = await self._run_item(context, batch_item.operation, batch_item.payload, peer)
            result.unique_batch_item_id = batch_item.unique_batch_item_id
            results.append(result)
            if stop_on_error and result.result_status != _SUCCESS:
                break
        if undo:
            await self._finish_undoable(context, results, peer)
        return results

    async def _finish_undoable(
        self, context: RequestContext, results: list[ResponseBatchItem], peer: Peer
    ) -> None:
        """End a batch sent with Undo: write its changes, or none of them.

        The batch's writes were held back; after a failure they are dropped and the
        items that had succeeded are reported as undone.
        """
        if any(result.result_status != ResultStatus.SUCCESS for result in results):
            context.held = None
            for result in results:
                if result.result_status == ResultStatus.SUCCESS:
                    result.result_status = ResultStatus.OPERATION_UNDONE
            return
        try:
            await context.commit_held()
        except Exception:
            log.failure(
                "writing an undoable batch failed for {tenant}",
                tenant=context.tenant,
                peer=peer.address,
            )
            error = KMIPError(
                ResultReason.GENERAL_FAILURE,
                "the batch could not be written; some of its changes may not have been kept",
            )
            for index, result in enumerate(results):
                results[index] = ResponseBatchItem.failure(
                    result.operation, result.unique_batch_item_id, error
                )

    async def _run_item(
        self, context: RequestContext, operation: int, payload: ttlv.Item | None, peer: Peer
    ) -> ResponseBatchItem:
        """Run one operation and record it in the audit log."""
        if self.audit is None:
            return await self._execute(context, operation, payload, peer)
        notes = audit_notes()
        result = await self._execute(context, operation, payload, peer)
        unique_identifier = _audited_identifier(payload, result.payload)
        public_key = None
        if unique_identifier is None and result.payload:
            pair = _key_pair(result.payload)
            if pair is not None:
                # Create Key Pair makes two objects: the record names both.
                unique_identifier, public_key = pair
        self._record(
            context.tenant,
            operation,
            unique_identifier,
            result.result_status,
            result.result_reason,
            peer,
            notes,
            public_key,
        )
        return result

    def _record(
        self,
        tenant: str,
        operation: int,
        unique_identifier: str | None,
        result_status: int,
        result_reason: int | None,
        peer: Peer,
        notes: dict[str, Any] | None,
        public_key: str | None = None,
    ) -> None:
        """The audit record of one batch item: ``notes`` are what the operation noted
        (Key Protect correlation ids), ``public_key`` the second object a Create Key
        Pair made.  Every detail is passed by name, even when None (then the record
        leaves it out): a ``**`` of details would cost a Get more than the rest of it."""
        assert self.audit is not None
        succeeded = result_status == _SUCCESS
        self.audit.record_nowait(
            actor=f"cert:{peer.fingerprint}",
            operation=_AUDIT_NAMES.get(operation) or f"kmip.{_operation_name(operation)}",
            result="success" if succeeded else "failure",
            tenant=tenant,
            unique_identifier=unique_identifier,
            correlation_id=",".join(notes["correlation_ids"])
            if notes and "correlation_ids" in notes
            else None,
            reason=None if succeeded else _reason_name(result_reason),
            peer=peer.address,
            via_ca=peer.trusted_ca,
            public_key=public_key,
        )

    def _get_now(
        self, version: ProtocolVersion, batch_id: bytes | None, unique_identifier: str, peer: Peer
    ) -> bytes | None:
        """The response to a lone Get (``messages.parse_lone_request`` and ``lone_get_identifier``) whose kept answer
        needs nothing waited for (``retrieval.answer_now``): no coroutine, no request
        context, the same response and audit record as :meth:`_get_again` makes; None
        when it must go that way (or the general one)."""
        if version not in SUPPORTED_VERSIONS:
            return None
        tenant = peer.tenant
        assert tenant is not None
        try:
            payload = answer_now(self.engine, tenant, unique_identifier, (version, None))
        except Exception:
            return None  # the way that waits meets it again, and reports it
        if payload is None:
            return None
        response = encode_success(version, self.engine.now(), _GET, batch_id, payload[0].value)
        if self.audit is not None:
            self._record(tenant, _GET, unique_identifier, _SUCCESS, None, peer, None)
        return response

    async def _get_again(
        self, version: ProtocolVersion, batch_id: bytes | None, unique_identifier: str, peer: Peer
    ) -> bytes | None:
        """The response to a lone Get (``messages.parse_lone_request`` and ``lone_get_identifier``) whose answer is kept
        (``retrieval.answer_again``: same stamp and root key checks), made and audited
        as the general path makes and audits it, without decoding the request or
        running the batch machinery; None when the general path must answer (nothing
        kept, or anything amiss, which it then reports)."""
        if version not in SUPPORTED_VERSIONS:
            return None
        context = self._context(peer, RequestHeader(version, 1))
        notes = audit_notes() if self.audit is not None else {}
        try:
            payload = await answer_again(context, unique_identifier, (version, None))
        except Exception:
            return None
        if payload is None:
            return None
        response = encode_success(version, self.engine.now(), _GET, batch_id, payload[0].value)
        if self.audit is not None:
            self._record(context.tenant, _GET, unique_identifier, _SUCCESS, None, peer, notes)
        return response

    async def _lone_create(self, lone: LoneRequest, data: bytes, peer: Peer) -> bytes | None:
        """The response to a lone Create (``messages.parse_lone_request``), its payload
        read once per distinct payload; None when the general path must answer.

        vCenter sends the same Create payload every time (AES, 256 bits, Encrypt and
        Decrypt: byte for byte in every capture).  What a payload asks for
        (``lifecycle.read_create``) is remembered by its bytes and the protocol
        version, unless it names a Template (then it depends on the store too); the
        next Create with those bytes is not decoded.  The Create itself runs, is
        answered and audited as the general path runs, answers and audits it.  A
        payload that cannot be read is left to the general path, which reports why.
        """
        version = lone.version
        handler = OPERATIONS.get(_CREATE)
        if (
            version not in SUPPORTED_VERSIONS
            or handler is None
            or not handler.offered(version, self.engine)
        ):
            return None
        context = self._context(peer, RequestHeader(version, 1))
        notes = audit_notes() if self.audit is not None else {}
        key = (version, lone.payload)
        known = self._creates.get(key)
        if known is not None:
            object_type = known[0]
            attributes = [(name, ttlv.copied(value)) for name, value in known[1]]
        else:
            try:
                payload = parse_request(ttlv.decode(data, self.limits)).batch_items[0].payload
                assert payload is not None
                object_type, attributes = await read_create(context, payload)
            except Exception:
                return None
            if len(lone.payload) <= MAX_REMEMBERED_CREATE_SIZE and not refers_to_templates(payload):
                if len(self._creates) >= MAX_REMEMBERED_CREATES:
                    self._creates.clear()
                self._creates[key] = (
                    object_type,
                    tuple([(name, ttlv.copied(value)) for name, value in attributes]),
                )
        result = await self._outcome(
            context, _CREATE, create_from(context, object_type, attributes), peer
        )
        result.unique_batch_item_id = lone.batch_id
        response = encode_response(version, self.engine.now(), [result])
        if self.audit is not None:
            identifier = _audited_identifier(None, result.payload)
            self._record(
                context.tenant,
                _CREATE,
                identifier,
                result.result_status,
                result.result_reason,
                peer,
                notes,
            )
        return response

    async def _execute(
        self, context: RequestContext, operation: int, payload: ttlv.Item | None, peer: Peer
    ) -> ResponseBatchItem:
        """Run one operation and turn any failure into a failed batch item."""
        handler = OPERATIONS.get(operation)
        if handler is None or not handler.supports(context.version):
            error = KMIPError(
                ResultReason.OPERATION_NOT_SUPPORTED,
                f"operation {_operation_name(operation)} is not supported"
                + (f" in KMIP {context.version}" if handler is not None else ""),
            )
            return ResponseBatchItem.failure(operation, None, error)
        if payload is None:
            payload = ttlv.structure(0x420079, [])  # an empty Request Payload
        return await self._outcome(context, operation, handler.run(context, payload), peer)

    async def _outcome(
        self,
        context: RequestContext,
        operation: int,
        running: Coroutine[Any, Any, Payload],
        peer: Peer,
    ) -> ResponseBatchItem:
        """Await an operation's run; turn any failure into a failed batch item."""
        try:
            response_payload = await running
        except KMIPError as error:
            log.info(
                "{operation} failed for {tenant}: {message}",
                operation=_operation_name(operation),
                tenant=context.tenant,
                peer=peer.address,
                result=ResultReason(error.reason).name
                if error.reason in ResultReason._value2member_map_
                else error.reason,
                message=error.message,
            )
            # Never a Result Reason the client's version does not define.
            error.reason = reason_for(context.version, error.reason)
            return ResponseBatchItem.failure(operation, None, error)
        except Exception:
            log.failure(
                "{operation} raised an unexpected error for {tenant}",
                operation=_operation_name(operation),
                tenant=context.tenant,
                peer=peer.address,
            )
            internal = KMIPError(
                ResultReason.GENERAL_FAILURE,
                f"{_operation_name(operation)} failed on an internal error; the server log has details",
            )
            return ResponseBatchItem.failure(operation, None, internal)
        return ResponseBatchItem(operation, _SUCCESS, payload=response_payload)
