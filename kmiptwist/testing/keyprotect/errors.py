"""Key Protect's error bodies, as the reference (keyprotect-api.md §3.7) shows them.

Every error is a ``application/vnd.ibm.kms.error+json`` collection of one resource
whose ``errorMsg`` reads "<HTTP reason>: <what failed>: Please see `reasons` for more
details (<CODE>)" and whose ``reasons`` carry code, message, status and moreInfo; a few
(401, 403, the Bluemix-Instance check) carry only ``errorMsg``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KPError", "IAMError", "error_body", "HTTP_REASONS", "MORE_INFO"]

MORE_INFO = "https://cloud.ibm.com/apidocs/key-protect"

#: The reason phrase Key Protect puts first in ``errorMsg``.
HTTP_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class KPError(Exception):
    """A Key Protect error answer: status, reason code, what failed and why.

    ``code`` None gives the short form with ``errorMsg`` only (``what`` is then the
    whole text after the reason phrase).  ``target`` names the field at fault.
    """

    def __init__(
        self,
        status: int,
        code: str | None,
        what: str,
        message: str = "",
        target: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {what}: {message}")
        self.status = status
        self.code = code
        self.what = what
        self.message = message
        self.target = target
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body Key Protect sends for this error."""
        return error_body(self.status, self.code, self.what, self.message, self.target)


def error_body(
    status: int, code: str | None, what: str, message: str = "", target: str | None = None
) -> dict[str, Any]:
    """The ``vnd.ibm.kms.error+json`` collection for one error."""
    phrase = HTTP_REASONS.get(status, "Error")
    resource: dict[str, Any]
    if code is None:
        resource = {"errorMsg": f"{phrase}: {what}"}
    else:
        reason: dict[str, Any] = {
            "code": code,
            "message": message,
            "status": status,
            "moreInfo": MORE_INFO,
        }
        if target is not None:
            reason["target"] = {"type": "field", "name": target}
        resource = {
            "errorMsg": f"{phrase}: {what}: Please see `reasons` for more details ({code})",
            "reasons": [reason],
        }
    return {
        "metadata": {"collectionType": "application/vnd.ibm.kms.error+json", "collectionTotal": 1},
        "resources": [resource],
    }


class IAMError(Exception):
    """An IAM token endpoint error, in IAM's "legacy" body (keyprotect-api.md §1.4)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self, request_id: str, url: str) -> dict[str, Any]:
        """The body IAM sends: errorCode, errorMessage and a context."""
        return {
            "errorCode": self.code,
            "errorMessage": self.message,
            "context": {
                "requestId": request_id,
                "requestType": "incoming.OIDC_Token",
                "userAgent": "",
                "url": url,
                "instanceId": "iamid-emulator",
                "threadId": "1",
                "host": "iam-emulator",
                "startTime": "",
                "endTime": "",
                "elapsedTime": "0",
                "locale": "en_US",
                "clusterName": "iam-emulator",
            },
        }
