"""Replay test cases against a running server and judge each response.

A case runs on one TLS connection, step by step: its request is read from XML with
placeholders replaced by what earlier responses said (``$UNIQUE_IDENTIFIER_0``) or
by the clock (``$NOW-3600``), encoded as TTLV, sent, and the response compared with
the expected one (:mod:`kmiptwist.conformance.compare`).  The first difference
fails the case.  A case is *skipped*, not failed, only when the server refuses an
operation with Operation Not Supported and its Query does not list that operation:
it honestly does not claim it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from attrs import define, field, frozen

from kmiptwist import ttlv
from kmiptwist.conformance.cases import Case, CaseFileError, Step, load_steps
from kmiptwist.conformance.compare import (
    DEFAULT_TIME_TOLERANCE,
    Bindings,
    Comparison,
    Difference,
    Placeholder,
    UnboundPlaceholder,
)
from kmiptwist.ttlv import Item, ItemType, TTLVError
from kmiptwist.vocabulary.enums import (
    Operation,
    QueryFunction,
    ResultReason,
    ResultStatus,
    enum_xml_name,
)
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.xml_encoding import XMLEncodingError, dumps, element_to_item

__all__ = [
    "Transport",
    "CaseResult",
    "Outcome",
    "run_case",
    "Session",
]


class Transport(Protocol):
    """A connection to the server that answers one TTLV request at a time."""

    def call(self, request: bytes) -> bytes:
        """Send a request message and return the response message."""

    def close(self) -> None:
        """Close the connection."""


class Outcome:
    """How a case ended."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"


@frozen
class CaseResult:
    """The outcome of one case, and why when it did not pass."""

    case: Case
    outcome: str
    steps: int
    step: int | None = None
    reason: str = ""
    #: The server's response at the failing step, in the XML encoding.
    response_xml: str = ""

    @property
    def passed(self) -> bool:
        """Whether every response matched."""
        return self.outcome == Outcome.PASSED

    def describe(self) -> str:
        """One line for a report: the case, its outcome, and the first difference."""
        where = f" at step {self.step + 1} of {self.steps}" if self.step is not None else ""
        text = f"{self.case.name}: {self.outcome}{where}"
        return f"{text}: {self.reason}" if self.reason else text


def _batch_items(message: Item) -> list[Item]:
    if message.type != ItemType.STRUCTURE:
        return []
    return message.find_all(Tag.BATCH_ITEM)


def _unsupported_operation(expected: Item, actual: Item) -> int | None:
    """The operation the server refused as not supported where the case expected it to run."""
    wanted = _batch_items(expected)
    for position, item in enumerate(_batch_items(actual)):
        if item.get(Tag.RESULT_REASON) != ResultReason.OPERATION_NOT_SUPPORTED:
            continue
        if position < len(wanted):
            if wanted[position].get(Tag.RESULT_REASON) == ResultReason.OPERATION_NOT_SUPPORTED:
                continue
        operation = item.get(Tag.OPERATION)
        if isinstance(operation, int):
            return operation
    return None


def _version(request: Item) -> tuple[int, int]:
    header = request.find(Tag.REQUEST_HEADER)
    version = header.find(Tag.PROTOCOL_VERSION) if header is not None else None
    if version is None:
        return (1, 0)
    return (version.get(Tag.PROTOCOL_VERSION_MAJOR, 1), version.get(Tag.PROTOCOL_VERSION_MINOR, 0))


def _query_operations_request(version: tuple[int, int]) -> bytes:
    header = ttlv.structure(
        Tag.REQUEST_HEADER,
        [
            ttlv.structure(
                Tag.PROTOCOL_VERSION,
                [
                    ttlv.integer(Tag.PROTOCOL_VERSION_MAJOR, version[0]),
                    ttlv.integer(Tag.PROTOCOL_VERSION_MINOR, version[1]),
                ],
            ),
            ttlv.integer(Tag.BATCH_COUNT, 1),
        ],
    )
    item = ttlv.structure(
        Tag.BATCH_ITEM,
        [
            ttlv.enumeration(Tag.OPERATION, Operation.QUERY),
            ttlv.structure(
                Tag.REQUEST_PAYLOAD,
                [ttlv.enumeration(Tag.QUERY_FUNCTION, QueryFunction.QUERY_OPERATIONS)],
            ),
        ],
    )
    return ttlv.encode(ttlv.structure(Tag.REQUEST_MESSAGE, [header, item]))


@define
class _CaseRun:
    """The state of one case while it runs."""

    case: Case
    connect: Callable[[], Transport]
    now: Callable[[], float]
    time_tolerance: int
    transport: Transport | None = None
    steps: int = 0
    comparison: Comparison = field(init=False)

    generated: set[str] = field(factory=set)

    def __attrs_post_init__(self) -> None:
        self.comparison = Comparison(Bindings(), self.now, self.time_tolerance, self.generated)

    def call(self, request: bytes) -> bytes:
        """Send on the case's connection, reconnecting once if the server closed it."""
        for attempt in (1, 2):
            if self.transport is None:
                self.transport = self.connect()
            try:
                return self.transport.call(request)
            except (ConnectionError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the case's connection."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def resolve_request(self, text: str, item_type: int, tag: int) -> object:
        """A request placeholder's value: the clock, or what a response said."""
        return self.comparison.bindings.for_request(text, item_type, int(self.now()))

    def claims(self, operation: int, version: tuple[int, int]) -> bool:
        """Whether the server's Query lists ``operation`` for ``version``."""
        response = ttlv.decode(self.call(_query_operations_request(version)))
        for item in _batch_items(response):
            payload = item.find(Tag.RESPONSE_PAYLOAD)
            if payload is not None and operation in [
                c.value for c in payload.find_all(Tag.OPERATION)
            ]:
                return True
        return False

    def step(self, step: Step) -> CaseResult | None:
        """Run one step; a result when the case ends here, None to go on."""
        request = element_to_item(step.request, self.resolve_request)
        expected = element_to_item(step.response, lambda text, _type, _tag: Placeholder(text))
        actual = ttlv.decode(self.call(ttlv.encode(request)))
        difference = self.comparison.compare_response(expected, actual, request)
        if difference is None:
            return None
        unsupported = _unsupported_operation(expected, actual)
        if unsupported is not None and not self.claims(unsupported, _version(request)):
            name = enum_xml_name(Operation, unsupported)
            return self.result(
                Outcome.SKIPPED, step, f"the server does not support {name} (not in its Query)"
            )
        return self.result(
            Outcome.FAILED, step, str(difference) + _server_said(actual), _xml(actual)
        )

    def result(
        self, outcome: str, step: Step | None, reason: str = "", response_xml: str = ""
    ) -> CaseResult:
        """The case's result."""
        return CaseResult(
            self.case,
            outcome,
            self.steps,
            None if step is None else step.index,
            reason,
            response_xml,
        )


def _xml(item: Item) -> str:
    try:
        return dumps(item)
    except XMLEncodingError as error:
        return f"(cannot show the response as XML: {error})"


def _server_said(actual: Item) -> str:
    """The server's own explanation of any failed batch item, for the report."""
    for item in _batch_items(actual):
        if item.get(Tag.RESULT_STATUS) == ResultStatus.OPERATION_FAILED:
            reason = item.get(Tag.RESULT_REASON)
            name = enum_xml_name(ResultReason, reason) if isinstance(reason, int) else "?"
            message = item.get(Tag.RESULT_MESSAGE)
            return f" (server: {name}" + (f", {message!r})" if message else ")")
    return ""


def run_case(
    case: Case,
    connect: Callable[[], Transport],
    now: Callable[[], float] = time.time,
    time_tolerance: int = DEFAULT_TIME_TOLERANCE,
    generated: set[str] | None = None,
) -> CaseResult:
    """Run one case on a new connection; never raises for what the server does.

    ``generated`` collects the objects whose material the server generated (their
    key material is random), shared with the cases that build on this one.
    """
    run = _CaseRun(case, connect, now, time_tolerance, generated=generated or set())
    if generated is not None:
        run.generated = generated
        run.comparison.generated = generated
    try:
        steps = load_steps(case)
    except CaseFileError as error:
        return run.result(Outcome.ERROR, None, str(error))
    run.steps = len(steps)
    current: Step | None = None
    try:
        for current in steps:
            result = run.step(current)
            if result is not None:
                return result
    except (XMLEncodingError, UnboundPlaceholder) as error:
        return run.result(Outcome.ERROR, current, f"cannot build the request: {error}")
    except TTLVError as error:
        return run.result(Outcome.FAILED, current, f"the response is not valid TTLV: {error}")
    except (ConnectionError, OSError) as error:
        return run.result(Outcome.FAILED, current, f"connection failed: {error}")
    finally:
        run.close()
    return run.result(Outcome.PASSED, None)


@define
class Session:
    """Runs cases against one server, each after the earlier cases of its profile.

    Cases of one profile and version build on each other (TL-M-3 uses the key TL-M-2
    made), so asking for a case's result first runs the cases before it.
    """

    cases: list[Case]
    connect: Callable[[], Transport]
    now: Callable[[], float] = time.time
    time_tolerance: int = DEFAULT_TIME_TOLERANCE
    results: dict[str, CaseResult] = field(factory=dict)
    generated: set[str] = field(factory=set)

    def result(self, case: Case) -> CaseResult:
        """The result of ``case``, running it (and the cases it builds on) if needed."""
        for earlier in self.cases:
            if earlier.version == case.version and earlier.profile == case.profile:
                if earlier.sort_key >= case.sort_key:
                    break
                self._run(earlier)
        return self._run(case)

    def _run(self, case: Case) -> CaseResult:
        found = self.results.get(case.path)
        if found is None:
            found = run_case(case, self.connect, self.now, self.time_tolerance, self.generated)
            self.results[case.path] = found
        return found

    def run_all(self) -> list[CaseResult]:
        """Every case's result, in run order."""
        return [self.result(case) for case in self.cases]


__all__ += ["Difference"]
