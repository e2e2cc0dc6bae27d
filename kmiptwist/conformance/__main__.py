"""``python -m kmiptwist.conformance``: run the OASIS test cases, print the pass table.

Against a server that is already running (``--server host:port`` with a client
certificate, key and CA), or against a fresh ``twistd -n kmip`` it starts on
loopback with an empty data directory (``--start``, the default).  Exit status: 0
when every case of the claimed profiles passed, 1 when one did not, 2 on a usage
error.
"""

from __future__ import annotations

import argparse
import os
import sys

from kmiptwist.conformance.cases import find_cases, testcases_dir
from kmiptwist.conformance.connect import started_server, tls_connector
from kmiptwist.conformance.profiles import CLAIMED_PROFILES
from kmiptwist.conformance.report import markdown_table, text_report
from kmiptwist.conformance.runner import Session
from kmiptwist.testing.server import repository_root

__all__ = ["main"]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kmiptwist.conformance",
        description="Replay the OASIS KMIP profile test cases against a kmiptwist server.",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--start", action="store_true", help="start a fresh twistd -n kmip (the default)"
    )
    target.add_argument("--server", metavar="HOST:PORT", help="a server that is running")
    parser.add_argument("--cert", help="client certificate (PEM), with --server")
    parser.add_argument("--key", help="client private key (PEM), with --server")
    parser.add_argument("--ca", help="CA certificate that signed the server's, with --server")
    parser.add_argument(
        "--cases",
        metavar="DIR",
        help="test case directory (default: $KMIP_TESTCASES_DIR or ../shared/kmip/testcases)",
    )
    parser.add_argument(
        "--profile", action="append", metavar="NAME", help="only this profile (repeatable)"
    )
    parser.add_argument(
        "--version", action="append", choices=("1.4", "2.1"), help="only this KMIP version"
    )
    parser.add_argument(
        "--claimed", action="store_true", help="only the profiles kmiptwist claims to pass"
    )
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    parser.add_argument(
        "--show-responses",
        action="store_true",
        help="print the server's response (XML) at each failing step",
    )
    arguments = parser.parse_args(argv)
    if arguments.server and not (arguments.cert and arguments.key and arguments.ca):
        parser.error("--server needs --cert, --key and --ca")
    if arguments.server and ":" not in arguments.server:
        parser.error("--server takes HOST:PORT")
    return arguments


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print the report; the exit status says whether claims hold."""
    arguments = _arguments(argv)
    directory = arguments.cases or testcases_dir(repository_root())
    if not os.path.isdir(directory):
        print(f"no KMIP test cases at {directory}; set KMIP_TESTCASES_DIR", file=sys.stderr)
        return 2
    cases = find_cases(directory)
    if arguments.claimed:
        cases = [case for case in cases if case.profile in CLAIMED_PROFILES]
    if arguments.profile:
        cases = [case for case in cases if case.profile in arguments.profile]
    if arguments.version:
        cases = [case for case in cases if case.version in arguments.version]
    if not cases:
        print(f"no test case matches under {directory}", file=sys.stderr)
        return 2
    if arguments.server:
        host, _, port = arguments.server.rpartition(":")
        connect = tls_connector(host, int(port), arguments.cert, arguments.key, arguments.ca)
        results = Session(cases, connect).run_all()
    else:
        with started_server() as server:
            cert, key, ca = server.client_bundle
            results = Session(
                cases, tls_connector("127.0.0.1", server.port, cert, key, ca)
            ).run_all()
    sys.stdout.write(text_report(results))
    if arguments.show_responses:
        for result in results:
            if result.response_xml and result.step is not None:
                sys.stdout.write(f"\n--- {result.case.name}, step {result.step + 1}:\n")
                sys.stdout.write(result.response_xml + "\n")
    if arguments.markdown:
        with open(arguments.markdown, "w", encoding="utf-8") as out:
            out.write(markdown_table(results))
    claimed_failures = [
        result
        for result in results
        if result.case.profile in CLAIMED_PROFILES and not result.passed
    ]
    return 1 if claimed_failures else 0


if __name__ == "__main__":
    sys.exit(main())
