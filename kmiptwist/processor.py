"""The processor: one whole KMIP request in, one whole response out.

It owns what spans batch items: protocol version negotiation, batch semantics
(order, error continuation, ID Placeholder), mapping errors to Result Status and
Reason, and refusing peers that have no tenant.  It knows nothing of sockets.
"""

from __future__ import annotations

from attrs import define, frozen
from twisted.logger import Logger

from kmiptwist import ttlv
from kmiptwist.engine import Engine
from kmiptwist.errors import KMIPError, invalid_message
from kmiptwist.messages import (
    SUPPORTED_VERSIONS,
    ProtocolVersion,
    RequestMessage,
    ResponseBatchItem,
    encode_response,
    error_response,
    guess_version,
    parse_request,
)
from kmiptwist.operations import OPERATIONS, RequestContext
from kmiptwist.ttlv import Limits, TTLVError
from kmiptwist.vocabulary.enums import (
    BatchErrorContinuationOption,
    Operation,
    ResultReason,
    ResultStatus,
)

__all__ = ["Peer", "KMIPProcessor"]

log = Logger()


@frozen
class Peer:
    """Who is on the other end of a connection, as the TLS layer established it."""

    address: str
    fingerprint: str | None = None
    tenant: str | None = None
    subject: str | None = None


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

    async def process(self, data: bytes, peer: Peer) -> bytes:
        """Answer one request message; never raises for anything the peer sent."""
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
            return encode_response(version, now, self._refuse(request, peer))
        if request.header.batch_error_continuation_option == BatchErrorContinuationOption.UNDO:
            return error_response(
                version,
                now,
                KMIPError(
                    ResultReason.FEATURE_NOT_SUPPORTED,
                    "Batch Error Continuation Option Undo is not supported; use Stop or Continue",
                ),
            )
        if request.header.asynchronous_indicator:
            # Operations complete before the response; asynchronous replies are never
            # needed, and the spec lets a server answer synchronously.
            pass
        results = await self._run_batch(request, version, peer)
        return encode_response(version, self.engine.now(), results)

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

    async def _run_batch(
        self, request: RequestMessage, version: ProtocolVersion, peer: Peer
    ) -> list[ResponseBatchItem]:
        """Run the batch items in order, honouring the error continuation option."""
        assert peer.tenant is not None
        context = RequestContext(
            engine=self.engine,
            tenant=peer.tenant,
            version=version,
            peer_fingerprint=peer.fingerprint,
            header=request.header,
        )
        stop_on_error = (
            request.header.batch_error_continuation_option != BatchErrorContinuationOption.CONTINUE
        )
        results: list[ResponseBatchItem] = []
        for batch_item in request.batch_items:
            result = await self._run_item(context, batch_item.operation, batch_item.payload, peer)
            result.unique_batch_item_id = batch_item.unique_batch_item_id
            results.append(result)
            if stop_on_error and result.result_status != ResultStatus.SUCCESS:
                break
        return results

    async def _run_item(
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
        try:
            response_payload = await handler.run(context, payload)
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
        return ResponseBatchItem(
            operation=operation, result_status=ResultStatus.SUCCESS, payload=response_payload
        )
