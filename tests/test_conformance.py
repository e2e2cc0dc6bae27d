"""Conformance: the OASIS KMIP profile test cases replayed against the real server,
and the runner's own rules (placeholders, tolerated differences, skips, the report).

``ConformanceCaseTests`` has one test per case of each profile kmiptwist claims
(kmiptwist.conformance.profiles.CLAIMED_PROFILES); they share one ``twistd -n kmip``
started on first use.  Without the case directory ($KMIP_TESTCASES_DIR, default
../shared/kmip/testcases) those tests are skipped and say so.
"""

from __future__ import annotations

import atexit
import os
import re
import tempfile
import unittest
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist import ttlv
from kmiptwist.conformance.cases import Case, CaseFileError, find_cases, load_steps, parse_name
from kmiptwist.conformance.compare import Bindings, Comparison, Placeholder
from kmiptwist.conformance.connect import INTEROP_ARGUMENTS, tls_connector
from kmiptwist.conformance.profiles import CLAIMED_PROFILES
from kmiptwist.conformance.report import markdown_table, tally, text_report
from kmiptwist.conformance.runner import CaseResult, Outcome, Session, run_case
from kmiptwist.testing.client import RawKMIPClient, client_context
from kmiptwist.testing.messages import read_response, request
from kmiptwist.testing.server import RunningServer
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import Operation, ProfileName, QueryFunction
from kmiptwist.vocabulary.tags import Tag
from kmiptwist.xml_encoding import element_to_item, loads

REPO_ROOT = FilePath(__file__).parent().parent()
NOW = 1_900_000_000


def _cases_directory() -> str | None:
    """The OASIS case directory, or None when it is absent."""
    configured = os.environ.get("KMIP_TESTCASES_DIR")
    path = configured or os.path.join(REPO_ROOT.parent().path, "shared", "kmip", "testcases")
    return path if os.path.isdir(path) else None


def expected(xml: str) -> Item:
    """An expected response as the runner reads it (placeholders kept)."""
    return element_to_item(ElementTree.fromstring(xml), lambda text, _type, _tag: Placeholder(text))


def response(payload: str, operation: str = "GetAttributes", status: str = "Success") -> str:
    """A 1.4 Response Message around one batch item."""
    return (
        "<ResponseMessage><ResponseHeader><ProtocolVersion>"
        '<ProtocolVersionMajor type="Integer" value="1"/>'
        '<ProtocolVersionMinor type="Integer" value="4"/></ProtocolVersion>'
        '<TimeStamp type="DateTime" value="$NOW"/>'
        '<BatchCount type="Integer" value="1"/></ResponseHeader>'
        f'<BatchItem><Operation type="Enumeration" value="{operation}"/>'
        f'<ResultStatus type="Enumeration" value="{status}"/>{payload}</BatchItem>'
        "</ResponseMessage>"
    )


def actual(xml: str) -> Item:
    """A server response: the same XML with $NOW filled in."""
    return loads(xml.replace("$NOW", "2030-03-17T17:46:40+00:00"))


def attribute(name: str, value: str) -> str:
    return f'<Attribute><AttributeName type="TextString" value="{name}"/>{value}</Attribute>'


class ComparisonTests(SynchronousTestCase):
    """What the runner tolerates, and that it tolerates nothing else."""

    def compare(
        self,
        wanted: str,
        got: str,
        comparison: Comparison | None = None,
        request: Item | None = None,
    ) -> str | None:
        comparison = comparison or Comparison(Bindings(), lambda: NOW)
        difference = comparison.compare_response(expected(wanted), actual(got), request)
        return None if difference is None else str(difference)

    def test_identical(self) -> None:
        """A response equal to the expected one passes, its time stamp within $NOW."""
        text = response(
            '<ResponsePayload><UniqueIdentifier type="TextString" value="a"/></ResponsePayload>'
        )
        self.assertIsNone(self.compare(text, text))

    def test_value_difference_is_reported_with_its_path(self) -> None:
        """A different value fails, and the report says where and what."""
        wanted = response(
            "<ResponsePayload>"
            + attribute("State", '<AttributeValue type="Enumeration" value="Active"/>')
            + "</ResponsePayload>"
        )
        got = wanted.replace('"Active"', '"PreActive"')
        difference = self.compare(wanted, got)
        assert difference is not None
        self.assertIn("Attribute['State']/AttributeValue", difference)
        self.assertIn("Active", difference)

    def test_placeholders_bind_once(self) -> None:
        """$UNIQUE_IDENTIFIER_0 takes the first value the server sends, and must keep it;
        the bound value is what a later request sends."""
        comparison = Comparison(Bindings(), lambda: NOW)
        wanted = response(
            '<ResponsePayload><UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/></ResponsePayload>'
        )
        first = wanted.replace("$UNIQUE_IDENTIFIER_0", "uid-1")
        self.assertIsNone(self.compare(wanted, first, comparison))
        self.assertIsNone(self.compare(wanted, first, comparison))
        self.assertIn(
            "$UNIQUE_IDENTIFIER_0",
            self.compare(wanted, wanted.replace("$UNIQUE_IDENTIFIER_0", "uid-2"), comparison) or "",
        )
        self.assertEqual(comparison.bindings.for_request("$UNIQUE_IDENTIFIER_0", 7, NOW), "uid-1")
        self.assertEqual(comparison.bindings.for_request("$NOW-3600", 9, NOW), NOW - 3600)

    def test_tag_named_placeholders(self) -> None:
        """A request's $DATA_0 or $IV_COUNTER_NONCE that no expected response names is
        the value of that tag the server sent (the cases write it out literally)."""
        comparison = Comparison(Bindings(), lambda: NOW)
        sent = actual(
            response(
                '<ResponsePayload><Data type="ByteString" value="aa"/>'
                '<IVCounterNonce type="ByteString" value="01"/></ResponsePayload>',
                operation="Encrypt",
            )
        )
        comparison.compare_response(expected(response("", operation="Encrypt")), sent)
        self.assertEqual(comparison.bindings.for_request("$DATA_0", 8, NOW), b"\xaa")
        self.assertEqual(comparison.bindings.for_request("$IV_COUNTER_NONCE", 8, NOW), b"\x01")
        self.assertRaises(LookupError, comparison.bindings.for_request, "$DATA_1", 8, NOW)
        self.assertRaises(LookupError, comparison.bindings.for_request, "$NO_SUCH_TAG", 8, NOW)

    def test_now_within_tolerance_only(self) -> None:
        """$NOW-3600 matches an hour ago give or take the tolerance, not a day ago."""
        wanted = response(
            "<ResponsePayload>"
            + attribute("Activation Date", '<AttributeValue type="DateTime" value="$NOW-3600"/>')
            + "</ResponsePayload>"
        )
        comparison = Comparison(Bindings(), lambda: 1_900_003_600, time_tolerance=60)
        got = wanted.replace("$NOW-3600", "2030-03-17T17:46:40+00:00").replace(
            "$NOW", "2030-03-17T18:46:40+00:00"
        )
        self.assertIsNone(self.compare(wanted, got, comparison))
        stale = got.replace("2030-03-17T17:46:40", "2030-03-16T17:46:40")
        self.assertIn("within 60 s", self.compare(wanted, stale, comparison) or "")

    def test_result_message_is_free_text(self) -> None:
        """Result Message wording and presence are the server's."""
        wanted = response(
            '<ResultReason type="Enumeration" value="PermissionDenied"/><ResultMessage type="TextString" value="DENIED"/>',
            status="OperationFailed",
        )
        self.assertIsNone(self.compare(wanted, wanted.replace('DENIED"', 'no, because"')))
        self.assertIsNone(self.compare(wanted, re.sub("<ResultMessage[^>]*/>", "", wanted)))
        self.assertIsNotNone(
            self.compare(wanted, wanted.replace("PermissionDenied", "ItemNotFound"))
        )

    def test_attribute_order_is_free_but_not_content(self) -> None:
        """Attributes may come in any order; a missing or extra one fails."""
        state = attribute("State", '<AttributeValue type="Enumeration" value="Active"/>')
        length = attribute("Cryptographic Length", '<AttributeValue type="Integer" value="256"/>')
        wanted = response(f"<ResponsePayload>{state}{length}</ResponsePayload>")
        self.assertIsNone(
            self.compare(wanted, response(f"<ResponsePayload>{length}{state}</ResponsePayload>"))
        )
        self.assertIn(
            "missing",
            self.compare(wanted, response(f"<ResponsePayload>{length}</ResponsePayload>")) or "",
        )
        extra = attribute("x-Extra", '<AttributeValue type="TextString" value="1"/>')
        self.assertIn(
            "unexpected",
            self.compare(
                wanted, response(f"<ResponsePayload>{state}{length}{extra}</ResponsePayload>")
            )
            or "",
        )

    def test_always_present_extras_only_when_listing_everything(self) -> None:
        """Listing every attribute, the server may add one that always has a value
        (Sensitive); when the client named attributes, it may not."""
        state = attribute("State", '<AttributeValue type="Enumeration" value="Active"/>')
        sensitive = attribute("Sensitive", '<AttributeValue type="Boolean" value="false"/>')
        wanted = response(f"<ResponsePayload>{state}</ResponsePayload>")
        got = response(f"<ResponsePayload>{state}{sensitive}</ResponsePayload>")
        everything = self.request("")
        named = self.request('<AttributeName type="TextString" value="State"/>')
        self.assertIsNone(self.compare(wanted, got, request=everything))
        self.assertIn("unexpected", self.compare(wanted, got, request=named) or "")
        custom = attribute("x-Extra", '<AttributeValue type="TextString" value="1"/>')
        got = response(f"<ResponsePayload>{state}{custom}</ResponsePayload>")
        self.assertIn("unexpected", self.compare(wanted, got, request=everything) or "")

    def request(self, payload: str) -> Item:
        return loads(
            "<RequestMessage><RequestHeader><ProtocolVersion>"
            '<ProtocolVersionMajor type="Integer" value="1"/>'
            '<ProtocolVersionMinor type="Integer" value="4"/></ProtocolVersion>'
            '<BatchCount type="Integer" value="1"/></RequestHeader>'
            '<BatchItem><Operation type="Enumeration" value="GetAttributes"/>'
            f'<RequestPayload><UniqueIdentifier type="TextString" value="a"/>{payload}'
            "</RequestPayload></BatchItem></RequestMessage>"
        )

    def test_protocol_version_is_the_requests(self) -> None:
        """The response must be in the request's version, whatever the case file says."""
        wanted = response("")
        older = wanted.replace(
            'ProtocolVersionMinor type="Integer" value="4"',
            'ProtocolVersionMinor type="Integer" value="3"',
        )
        self.assertIsNone(self.compare(older, wanted, request=self.request("")))
        self.assertIsNotNone(self.compare(wanted, older, request=self.request("")))

    def test_random_material_only_of_generated_objects(self) -> None:
        """Key material differs freely for a key the server created in the case, not for
        one the client registered; its length must still match."""
        get = (
            '<ResponsePayload><ObjectType type="Enumeration" value="SymmetricKey"/>'
            '<UniqueIdentifier type="TextString" value="k"/><SymmetricKey><KeyBlock>'
            '<KeyFormatType type="Enumeration" value="Raw"/><KeyValue>'
            '<KeyMaterial type="ByteString" value="2a2a2a2a"/></KeyValue></KeyBlock>'
            "</SymmetricKey></ResponsePayload>"
        )
        wanted = response(get, operation="Get")
        other = wanted.replace("2a2a2a2a", "01020304")
        self.assertIsNotNone(self.compare(wanted, other))
        generated = Comparison(Bindings(), lambda: NOW, generated={"k"})
        self.assertIsNone(self.compare(wanted, other, generated))
        self.assertIn(
            "random bytes",
            self.compare(wanted, wanted.replace("2a2a2a2a", "0102"), generated) or "",
        )

    def test_outputs_random_only_where_the_server_chose(self) -> None:
        """Encrypt's Data may differ (same length) when the key was generated in the case,
        when the server chose the IV, when the key is a public key (RSA padding is
        random) and for RNG Retrieve; never for a key and IV the client gave."""
        body = (
            '<ResponsePayload><UniqueIdentifier type="TextString" value="k"/>'
            '<Data type="ByteString" value="2a2a2a2a"/>{iv}</ResponsePayload>'
        )
        wanted = response(body.format(iv=""), operation="Encrypt")
        other = wanted.replace("2a2a2a2a", "01020304")
        shorter = wanted.replace("2a2a2a2a", "0102")
        with_iv = self.crypto_request("Encrypt", '<IVCounterNonce type="ByteString" value="00"/>')
        self.assertIsNotNone(self.compare(wanted, other, request=with_iv))
        generated = Comparison(Bindings(), lambda: NOW, generated={"k"})
        self.assertIsNone(self.compare(wanted, other, generated, with_iv))
        self.assertIn("random bytes", self.compare(wanted, shorter, generated, with_iv) or "")
        public = Comparison(Bindings(), lambda: NOW, public_keys={"k"})
        self.assertIsNone(self.compare(wanted, other, public, with_iv))
        chose = body.format(iv='<IVCounterNonce type="ByteString" value="ff"/>')
        without_iv = self.crypto_request("Encrypt", "")
        self.assertIsNone(
            self.compare(
                response(chose, operation="Encrypt"),
                response(chose.replace("2a2a2a2a", "01020304").replace('"ff"', '"ee"'), "Encrypt"),
                request=without_iv,
            )
        )
        self.assertIsNotNone(
            self.compare(
                response(chose, operation="Encrypt"),
                response(chose.replace("2a2a2a2a", "01020304"), "Encrypt"),
                request=with_iv,
            )
        )
        rng = response(
            '<ResponsePayload><Data type="ByteString" value="2a2a"/></ResponsePayload>',
            "RNGRetrieve",
        )
        self.assertIsNone(
            self.compare(
                rng, rng.replace("2a2a", "0102"), request=self.crypto_request("RNGRetrieve", "")
            )
        )

    def test_public_keys_are_noted_from_register(self) -> None:
        """A public key the case registered makes its later Encrypt outputs random."""
        comparison = Comparison(Bindings(), lambda: NOW)
        registered = response(
            '<ResponsePayload><UniqueIdentifier type="TextString" value="pk"/></ResponsePayload>',
            "Register",
        )
        comparison.compare_response(
            expected(registered),
            actual(registered),
            self.crypto_request("Register", '<ObjectType type="Enumeration" value="PublicKey"/>'),
        )
        self.assertEqual(comparison.public_keys, {"pk"})

    def crypto_request(self, operation: str, payload: str) -> Item:
        return loads(
            "<RequestMessage><RequestHeader><ProtocolVersion>"
            '<ProtocolVersionMajor type="Integer" value="1"/>'
            '<ProtocolVersionMinor type="Integer" value="4"/></ProtocolVersion>'
            '<BatchCount type="Integer" value="1"/></RequestHeader>'
            f'<BatchItem><Operation type="Enumeration" value="{operation}"/>'
            f'<RequestPayload><UniqueIdentifier type="TextString" value="k"/>{payload}'
            "</RequestPayload></BatchItem></RequestMessage>"
        )

    def test_query_lists_may_say_more(self) -> None:
        """Query may list more operations than the case, never fewer; Vendor
        Identification is the server's own."""
        wanted = response(
            '<ResponsePayload><Operation type="Enumeration" value="Get"/>'
            '<VendorIdentification type="TextString" value="server-vendor.com"/></ResponsePayload>',
            operation="Query",
        )
        more = wanted.replace(
            '<Operation type="Enumeration" value="Get"/>',
            '<Operation type="Enumeration" value="Locate"/><Operation type="Enumeration" value="Get"/>',
        ).replace("server-vendor.com", "kmiptwist")
        self.assertIsNone(self.compare(wanted, more))
        fewer = more.replace('<Operation type="Enumeration" value="Get"/>', "")
        self.assertIn("Get", self.compare(wanted, fewer) or "")
        anonymous = more.replace('<VendorIdentification type="TextString" value="kmiptwist"/>', "")
        self.assertIn("VendorIdentification", self.compare(wanted, anonymous) or "")

    def test_random_number_generator_value_is_the_servers(self) -> None:
        """Which RNG made a key is the server's; the attribute must still be there."""
        rng = attribute(
            "Random Number Generator",
            '<AttributeValue><RNGAlgorithm type="Enumeration" value="ANSIX9_31"/></AttributeValue>',
        )
        ours = rng.replace("ANSIX9_31", "Unspecified")
        state = attribute("State", '<AttributeValue type="Enumeration" value="Active"/>')
        wanted = response(f"<ResponsePayload>{rng}{state}</ResponsePayload>")
        self.assertIsNone(
            self.compare(wanted, response(f"<ResponsePayload>{state}{ours}</ResponsePayload>"))
        )
        self.assertIsNotNone(
            self.compare(wanted, response(f"<ResponsePayload>{state}</ResponsePayload>"))
        )


class _CannedTransport:
    """Answers requests with prepared responses, recording what it was sent."""

    def __init__(self, answers: list[Callable[[Item], bytes]]) -> None:
        self.answers = answers
        self.sent: list[Item] = []

    def call(self, request: bytes) -> bytes:
        item = ttlv.decode(request)
        self.sent.append(item)
        return self.answers.pop(0)(item)

    def close(self) -> None:
        pass


def _case_file(directory: str, name: str, body: str) -> Case:
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as out:
        out.write(f"<KMIP>{body}</KMIP>")
    case = parse_name(path)
    assert case is not None
    return case


_REQUEST = (
    "<RequestMessage><RequestHeader><ProtocolVersion>"
    '<ProtocolVersionMajor type="Integer" value="2"/><ProtocolVersionMinor type="Integer" value="1"/>'
    '</ProtocolVersion><BatchCount type="Integer" value="1"/></RequestHeader>'
    '<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>{payload}</RequestPayload>'
    "</BatchItem></RequestMessage>"
)


def _response_21(operation: str, body: str) -> str:
    return (
        "<ResponseMessage><ResponseHeader><ProtocolVersion>"
        '<ProtocolVersionMajor type="Integer" value="2"/><ProtocolVersionMinor type="Integer" value="1"/>'
        '</ProtocolVersion><TimeStamp type="DateTime" value="$NOW"/><BatchCount type="Integer" value="1"/>'
        f'</ResponseHeader><BatchItem><Operation type="Enumeration" value="{operation}"/>{body}'
        "</BatchItem></ResponseMessage>"
    )


def _answer(xml: str) -> Callable[[Item], bytes]:
    return lambda _request: ttlv.encode(loads(xml.replace("$NOW", "2030-03-17T17:46:40+00:00")))


class RunnerTests(SynchronousTestCase):
    """A case run against a scripted server: placeholders, failures and honest skips."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def test_placeholders_flow_from_responses_to_requests(self) -> None:
        """The identifier a response gave is what the next request sends."""
        case = _case_file(
            self.directory,
            "XX-M-1-21.xml",
            _REQUEST.format(op="Create", payload="")
            + _response_21(
                "Create",
                '<ResultStatus type="Enumeration" value="Success"/><ResponsePayload>'
                '<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/></ResponsePayload>',
            )
            + _REQUEST.format(
                op="Destroy",
                payload='<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>',
            )
            + _response_21(
                "Destroy",
                '<ResultStatus type="Enumeration" value="Success"/><ResponsePayload>'
                '<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/></ResponsePayload>',
            ),
        )
        server_uid = '<UniqueIdentifier type="TextString" value="server-uid"/>'
        transport = _CannedTransport(
            [
                _answer(
                    _response_21(
                        "Create",
                        f'<ResultStatus type="Enumeration" value="Success"/><ResponsePayload>{server_uid}</ResponsePayload>',
                    )
                ),
                _answer(
                    _response_21(
                        "Destroy",
                        f'<ResultStatus type="Enumeration" value="Success"/><ResponsePayload>{server_uid}</ResponsePayload>',
                    )
                ),
            ]
        )
        result = run_case(case, lambda: transport, now=lambda: NOW)
        self.assertEqual(result.outcome, Outcome.PASSED, result.describe())
        batch_item = transport.sent[1].find(Tag.BATCH_ITEM)
        assert batch_item is not None
        destroy = batch_item.find(Tag.REQUEST_PAYLOAD)
        assert destroy is not None
        self.assertEqual(destroy.get(Tag.UNIQUE_IDENTIFIER), "server-uid")

    def _unsupported_case(self) -> Case:
        return _case_file(
            self.directory,
            "XX-M-2-21.xml",
            _REQUEST.format(op="Interop", payload="")
            + _response_21(
                "Interop", '<ResultStatus type="Enumeration" value="Success"/><ResponsePayload/>'
            ),
        )

    def _refusal(self) -> Callable[[Item], bytes]:
        return _answer(
            _response_21(
                "Interop",
                '<ResultStatus type="Enumeration" value="OperationFailed"/>'
                '<ResultReason type="Enumeration" value="OperationNotSupported"/>',
            )
        )

    def _query(self, operations: str) -> Callable[[Item], bytes]:
        return _answer(
            _response_21(
                "Query",
                f'<ResultStatus type="Enumeration" value="Success"/><ResponsePayload>{operations}</ResponsePayload>',
            )
        )

    def test_skipped_when_query_does_not_claim_it(self) -> None:
        """An operation refused as not supported and absent from Query skips the case."""
        transport = _CannedTransport(
            [self._refusal(), self._query('<Operation type="Enumeration" value="Get"/>')]
        )
        result = run_case(self._unsupported_case(), lambda: transport, now=lambda: NOW)
        self.assertEqual(result.outcome, Outcome.SKIPPED)
        self.assertIn("does not support Interop", result.reason)

    def test_failed_when_query_claims_it(self) -> None:
        """Refusing an operation the server's Query claims is a failure, not a skip."""
        transport = _CannedTransport(
            [self._refusal(), self._query('<Operation type="Enumeration" value="Interop"/>')]
        )
        result = run_case(self._unsupported_case(), lambda: transport, now=lambda: NOW)
        self.assertEqual(result.outcome, Outcome.FAILED)
        self.assertIn("ResultStatus", result.reason)
        self.assertIn("OperationNotSupported", result.reason)

    def test_broken_case_file_is_an_error(self) -> None:
        """A case file that is not request/response pairs is reported, not run."""
        case = _case_file(self.directory, "XX-M-3-21.xml", _REQUEST.format(op="Query", payload=""))
        self.assertRaises(CaseFileError, load_steps, case)
        self.assertEqual(run_case(case, lambda: _CannedTransport([])).outcome, Outcome.ERROR)


class CaseFileTests(SynchronousTestCase):
    """Case file names and the order cases run in."""

    def test_names(self) -> None:
        """Profile, kind, variant, number and version come from the file name."""
        case = parse_name("/x/CS-AC-M-OAEP-10-14.xml")
        assert case is not None
        self.assertEqual(
            (case.profile, case.mandatory, case.variant, case.number, case.version, case.name),
            ("CS-AC", True, "OAEP", 10, "1.4", "CS-AC-M-OAEP-10-14"),
        )
        case = parse_name("/x/SKLC-O-1-21.xml")
        assert case is not None
        self.assertEqual((case.profile, case.mandatory, case.version), ("SKLC", False, "2.1"))
        self.assertIsNone(parse_name("/x/index.html"))

    def test_order(self) -> None:
        """Cases run by version and profile, numbers in numeric order, optional last, so a
        case runs after the ones it builds on."""
        names = [
            "TL-M-10-14.xml",
            "TL-O-1-14.xml",
            "TL-M-2-14.xml",
            "BL-M-1-21.xml",
            "AX-M-1-14.xml",
        ]
        cases = sorted((parse_name(f"/x/{n}") for n in names), key=lambda c: c.sort_key)  # type: ignore[union-attr]
        self.assertEqual(
            [c.name for c in cases],  # type: ignore[union-attr]
            ["AX-M-1-14", "TL-M-2-14", "TL-M-10-14", "TL-O-1-14", "BL-M-1-21"],
        )


class ReportTests(SynchronousTestCase):
    """The table the command prints and the README shows."""

    def results(self) -> list[CaseResult]:
        def result(name: str, outcome: str) -> CaseResult:
            case = parse_name(f"/x/{name}.xml")
            assert case is not None
            return CaseResult(case, outcome, 3, None if outcome == Outcome.PASSED else 1, "why")

        return [
            result("SKLC-M-1-14", Outcome.PASSED),
            result("SKLC-M-2-14", Outcome.FAILED),
            result("SKLC-M-1-21", Outcome.PASSED),
            result("QS-M-1-21", Outcome.SKIPPED),
        ]

    def test_tally_and_tables(self) -> None:
        """Per profile and version: passed / total, with skips said; failures listed."""
        results = self.results()
        self.assertEqual(tally(results)["SKLC"]["1.4"], {"passed": 1, "skipped": 0, "total": 2})
        table = markdown_table(results)
        self.assertIn("| SKLC | Symmetric Key Lifecycle (claimed) | 1/2 | 1/1 |", table)
        self.assertIn("| QS | Quantum Safe | – | 0/1 (1 skipped) |", table)
        text = text_report(results)
        self.assertIn("SKLC-M-2-14: failed at step 2 of 3: why", text)
        self.assertIn("2 of 4 cases passed, 1 skipped", text)


# -- the real server ------------------------------------------------------------------

_DIRECTORY = _cases_directory()
_CASES = find_cases(_DIRECTORY) if _DIRECTORY else []


class ConformanceCaseTests(SynchronousTestCase):
    """Each case of a claimed profile passes against the real ``twistd -n kmip``."""

    session: Session | None = None
    server: RunningServer | None = None

    @classmethod
    def _session(cls) -> Session:
        """One server and one session for every test of the class (no setUpClass in trial)."""
        if _DIRECTORY is None:
            raise unittest.SkipTest(
                "KMIP test cases not found at ../shared/kmip/testcases; set KMIP_TESTCASES_DIR"
            )
        if cls.session is None:
            workdir = tempfile.mkdtemp(prefix="conformance-", dir=os.getcwd())
            server = RunningServer.start(
                os.path.join(workdir, "data"), extra_arguments=INTEROP_ARGUMENTS
            )
            atexit.register(server.stop)
            cert, key, ca = server.client_bundle
            cls.server = server
            cls.session = Session(_CASES, tls_connector("127.0.0.1", server.port, cert, key, ca))
        return cls.session

    def check(self, case: Case) -> None:
        result = self._session().result(case)
        self.assertEqual(result.outcome, Outcome.PASSED, result.describe())

    def test_readme_table(self) -> None:
        """The README's Conformance table is what the runner reports for every case."""
        results = self._session().run_all()
        readme = REPO_ROOT.child("README.md").getContent().decode("utf-8")
        found = re.search(
            r"<!-- conformance-table:start -->\n(.*?)<!-- conformance-table:end -->", readme, re.S
        )
        self.assertIsNotNone(found, "README.md has no conformance table markers")
        assert found is not None
        self.assertEqual(found.group(1), markdown_table(results))

    def test_claimed_profiles_are_in_query(self) -> None:
        """Query Profiles (2.1) names exactly the server profiles this suite holds
        passing, so a client reading it is told no more and no less."""
        self._session()
        server = self.server
        assert server is not None
        cert, key, ca = server.client_bundle
        with RawKMIPClient("127.0.0.1", server.port, client_context(cert, key, ca)) as client:
            payload = [ttlv.enumeration(Tag.QUERY_FUNCTION, QueryFunction.QUERY_PROFILES)]
            answer = read_response(client.call(request((2, 1), [(Operation.QUERY, payload, None)])))
        item = answer.items[0]
        self.assertTrue(item.ok, item.message)
        assert item.payload is not None
        claimed = {
            ProfileName(profile.get(Tag.PROFILE_NAME)).name
            for profile in item.payload.find_all(Tag.PROFILE_INFORMATION)
        }
        names = {
            "BL": "BASELINE_SERVER",
            "SKLC": "SYMMETRIC_KEY_LIFECYCLE_SERVER",
            "SKFF": "SYMMETRIC_KEY_FOUNDRY_SERVER",
            "SASED": "STORAGE_ARRAY_WITH_SELF_ENCRYPTING_DRIVE_SERVER",
            "TL": "TAPE_LIBRARY_SERVER",
            "OMOS": "OPAQUE_MANAGED_OBJECT_STORE_SERVER",
            "AKLC": "ASYMMETRIC_KEY_LIFECYCLE_SERVER",
            "CS-BC": "BASIC_CRYPTOGRAPHIC_SERVER",
            "CS-AC": "ADVANCED_CRYPTOGRAPHIC_SERVER",
            "CS-RNG": "RNG_CRYPTOGRAPHIC_SERVER",
            "AX": "AES_XTS_SERVER",
            "QS": "QUANTUM_SAFE_SERVER",
            "PKCS11": "PKCS_11_SERVER",
        }
        self.assertEqual(claimed, {names[p] for p in CLAIMED_PROFILES if p in names})


def _method_name(case: Case) -> str:
    return "test_" + re.sub(r"[^A-Za-z0-9]", "_", f"{case.version}_{case.name}")


def _case_test(case: Case) -> Callable[[ConformanceCaseTests], None]:
    def test(self: ConformanceCaseTests) -> None:
        self.check(case)

    test.__doc__ = f"OASIS case {case.name} passes: kmiptwist answers as the profile requires."
    return test


for _case in _CASES:
    if _case.profile in CLAIMED_PROFILES:
        setattr(ConformanceCaseTests, _method_name(_case), _case_test(_case))

if not _CASES:

    def test_cases_absent(self: ConformanceCaseTests) -> None:
        """Without the OASIS case directory the conformance cases cannot run."""
        raise unittest.SkipTest(
            "KMIP test cases not found at ../shared/kmip/testcases; set KMIP_TESTCASES_DIR"
        )

    ConformanceCaseTests.test_cases_absent = test_cases_absent  # type: ignore[attr-defined]
