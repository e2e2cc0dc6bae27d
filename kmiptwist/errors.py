"""KMIP errors: an exception that carries the Result Reason a client will see."""

from __future__ import annotations

from kmiptwist.vocabulary.enums import ResultReason, ResultStatus

__all__ = ["KMIPError", "ResultReason", "ResultStatus"]


class KMIPError(Exception):
    """An operation failed for a reason the client is told about.

    ``reason`` is the Result Reason enumeration; ``message`` is the Result Message,
    written for the person reading the client's log.
    """

    def __init__(
        self,
        reason: int,
        message: str,
        status: int = ResultStatus.OPERATION_FAILED,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"KMIPError({self.reason!r}, {self.message!r})"


def invalid_message(message: str) -> KMIPError:
    """The request is not a well-formed KMIP message."""
    return KMIPError(ResultReason.INVALID_MESSAGE, message)


def invalid_field(message: str) -> KMIPError:
    """A field of the request has a value or type the operation cannot take."""
    return KMIPError(ResultReason.INVALID_FIELD, message)


def item_not_found(unique_identifier: str) -> KMIPError:
    """No object with that identifier is visible to the caller's tenant."""
    return KMIPError(
        ResultReason.ITEM_NOT_FOUND, f"no object with Unique Identifier {unique_identifier!r}"
    )
