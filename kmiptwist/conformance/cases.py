"""The OASIS KMIP profile test cases: where they are, what each file is, its steps.

A case file (``SKLC-M-1-14.xml``) holds a ``<KMIP>`` element whose children are
alternating ``<RequestMessage>`` and ``<ResponseMessage>`` elements in the XML
encoding of the KMIP Profiles.  Its name says the profile (``SKLC``), whether the
case is Mandatory or Optional, an optional variant (``OAEP``, ``GCM``), its number and
the KMIP version (``14``: 1.4, ``21``: 2.1).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree

from attrs import frozen

__all__ = [
    "Case",
    "Step",
    "CaseFileError",
    "testcases_dir",
    "find_cases",
    "load_steps",
]

_NAME = re.compile(
    r"^(?P<profile>[A-Z0-9_]+(?:-[A-Z0-9_]+)?)-(?P<kind>[MO])-(?:(?P<variant>[A-Z0-9]+)-)?"
    r"(?P<number>\d+)-(?P<version>\d)(?P<minor>\d)\.xml$"
)


class CaseFileError(ValueError):
    """A case file that cannot be read as a sequence of requests and responses."""


@frozen
class Case:
    """One case file and what its name says about it."""

    path: str
    profile: str
    mandatory: bool
    variant: str | None
    number: int
    version: str

    @property
    def name(self) -> str:
        """The case's name, the file name without ``.xml`` ("SKLC-M-1-14")."""
        return os.path.basename(self.path)[: -len(".xml")]

    @property
    def sort_key(self) -> tuple[str, str, bool, str, int]:
        """Run order: by version and profile, mandatory before optional, then by number.

        Later cases of a profile may use objects earlier ones left (TL-M-3 reads the
        key TL-M-2 made), so this order is the one the cases were written for.
        """
        return (self.version, self.profile, not self.mandatory, self.variant or "", self.number)


@frozen
class Step:
    """One request of a case and the response the case expects."""

    index: int
    request: ElementTree.Element
    response: ElementTree.Element


def testcases_dir(repository_root: str) -> str:
    """The case directory: ``$KMIP_TESTCASES_DIR``, else ``../shared/kmip/testcases``."""
    configured = os.environ.get("KMIP_TESTCASES_DIR")
    if configured:
        return os.path.abspath(configured)
    return os.path.abspath(os.path.join(repository_root, "..", "shared", "kmip", "testcases"))


def parse_name(path: str) -> Case | None:
    """What a case file's name says, or None for a file that is not a case."""
    match = _NAME.match(os.path.basename(path))
    if match is None:
        return None
    return Case(
        path=path,
        profile=match["profile"],
        mandatory=match["kind"] == "M",
        variant=match["variant"],
        number=int(match["number"]),
        version=f"{match['version']}.{match['minor']}",
    )


def find_cases(directory: str) -> list[Case]:
    """Every case file under ``directory`` (any depth), in run order."""
    cases = []
    for parent, _directories, files in os.walk(directory):
        for file_name in files:
            case = parse_name(os.path.join(parent, file_name))
            if case is not None:
                cases.append(case)
    return sorted(cases, key=lambda case: case.sort_key)


def load_steps(case: Case) -> list[Step]:
    """The (request, expected response) pairs of a case file, in order."""
    try:
        root = ElementTree.parse(case.path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise CaseFileError(f"{case.path}: {error}") from None
    messages = list(root) if root.tag == "KMIP" else [root]
    steps: list[Step] = []
    pending: ElementTree.Element | None = None
    for message in messages:
        if message.tag == "RequestMessage":
            if pending is not None:
                raise CaseFileError(f"{case.path}: a request without a response")
            pending = message
        elif message.tag == "ResponseMessage":
            if pending is None:
                raise CaseFileError(f"{case.path}: a response without a request")
            steps.append(Step(len(steps), pending, message))
            pending = None
        else:
            raise CaseFileError(f"{case.path}: unexpected element <{message.tag}>")
    if pending is not None:
        raise CaseFileError(f"{case.path}: the last request has no response")
    if not steps:
        raise CaseFileError(f"{case.path}: no request")
    return steps
