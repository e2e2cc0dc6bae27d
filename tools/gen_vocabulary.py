#!/usr/bin/env python3
"""Generate the KMIP vocabulary modules from the OASIS KMIP specifications.

Usage::

    python tools/gen_vocabulary.py /work/shared/kmip/spec

reads ``kmip-spec-v1.1-os.html``, ``kmip-spec-v1.4-os.html`` and
``kmip-spec-v2.1-os.html`` (the Word-exported HTML of the OASIS standards) and
(re)writes ``kmiptwist/vocabulary/tags.py``, ``enums.py`` and ``attributes.py``.
The output is deterministic: the same specs always give the same bytes, and a
test checks that the checked-in modules are what this script produces.

Options: ``--output-dir DIR`` writes somewhere else, ``--check`` writes nothing
and exits 1 when a checked-in module differs, ``--quiet`` hides the report of
differences between spec versions (printed to stderr otherwise).

Standard library only (``html.parser`` and ``re``), so it runs anywhere.
"""

from __future__ import annotations

import argparse
import html.parser
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The specification versions read, oldest first; the newest wins on conflicts.
VERSIONS = ("1.1", "1.4", "2.1")
SPEC_FILES = {version: f"kmip-spec-v{version}-os.html" for version in VERSIONS}
SPEC_ENCODING = "cp1252"  # the Word export declares charset=windows-1252

COMMAND = "python tools/gen_vocabulary.py /work/shared/kmip/spec"

# Member names that the uppercase rule cannot produce as Python identifiers.
# Keyed by the spec name; the XML-encoding name is still derived from the spec name
# ("3DES" -> "DES3", as the test cases spell it).
IDENTIFIER_RENAMES = {
    "3DES": "TRIPLE_DES",
}

# Tags whose value is an enumeration that does not share the tag's name: tag spec
# name -> enumeration name. Checked by hand against each field's "Enumeration, see
# ..." reference in the specs; every other enumeration-valued tag shares its name
# with its enumeration.
ENUM_TAG_EXCEPTIONS = {
    "Attribute Reference": "Tag",  # 2.x: "Enumeration (Tag)"
    "Mask Generator Hashing Algorithm": "Hashing Algorithm",
    "Extension Type": "Item Type",  # 1.x Extension Information: "Enumeration, see Item Type"
}

# Typos in a spec's value tables, corrected: (version, enumeration, spec name) -> name.
ERRATA = {
    ("2.1", "Mask Generator", "MFG1"): "MGF1",  # 1.4 and the test cases say MGF1
}

# Enumerations the KMIP spec defines by reference to PKCS#11 (2.1 sections 11.38
# and 11.39) instead of by a table. PKCS#11 Function: "the 1-based offset count of
# the function in the CK_FUNCTION_LIST_3_0 structure"; PKCS#11 Return Code: "the
# CK_RV values". Transcribed from the OASIS PKCS#11 3.0 headers: all functions in
# pkcs11f.h order; the CKR_* return codes of PKCS#11 2.40 (3.0-only codes are left to
# hex). XML names are the C names ("C_Initialize") and the CKR_ names without the
# prefix ("OK"), as the 2.1 test cases spell them.
PKCS11_FUNCTIONS = (
    "C_Initialize C_Finalize C_GetInfo C_GetFunctionList C_GetSlotList C_GetSlotInfo"
    " C_GetTokenInfo C_GetMechanismList C_GetMechanismInfo C_InitToken C_InitPIN"
    " C_SetPIN C_OpenSession C_CloseSession C_CloseAllSessions C_GetSessionInfo"
    " C_GetOperationState C_SetOperationState C_Login C_Logout C_CreateObject"
    " C_CopyObject C_DestroyObject C_GetObjectSize C_GetAttributeValue"
    " C_SetAttributeValue C_FindObjectsInit C_FindObjects C_FindObjectsFinal"
    " C_EncryptInit C_Encrypt C_EncryptUpdate C_EncryptFinal C_DecryptInit C_Decrypt"
    " C_DecryptUpdate C_DecryptFinal C_DigestInit C_Digest C_DigestUpdate C_DigestKey"
    " C_DigestFinal C_SignInit C_Sign C_SignUpdate C_SignFinal C_SignRecoverInit"
    " C_SignRecover C_VerifyInit C_Verify C_VerifyUpdate C_VerifyFinal"
    " C_VerifyRecoverInit C_VerifyRecover C_DigestEncryptUpdate C_DecryptDigestUpdate"
    " C_SignEncryptUpdate C_DecryptVerifyUpdate C_GenerateKey C_GenerateKeyPair"
    " C_WrapKey C_UnwrapKey C_DeriveKey C_SeedRandom C_GenerateRandom"
    " C_GetFunctionStatus C_CancelFunction C_WaitForSlotEvent C_GetInterfaceList"
    " C_GetInterface C_LoginUser C_SessionCancel C_MessageEncryptInit C_EncryptMessage"
    " C_EncryptMessageBegin C_EncryptMessageNext C_MessageEncryptFinal"
    " C_MessageDecryptInit C_DecryptMessage C_DecryptMessageBegin C_DecryptMessageNext"
    " C_MessageDecryptFinal C_MessageSignInit C_SignMessage C_SignMessageBegin"
    " C_SignMessageNext C_MessageSignFinal C_MessageVerifyInit C_VerifyMessage"
    " C_VerifyMessageBegin C_VerifyMessageNext C_MessageVerifyFinal"
).split()
PKCS11_RETURN_CODES = (
    ("OK", 0x000),
    ("CANCEL", 0x001),
    ("HOST_MEMORY", 0x002),
    ("SLOT_ID_INVALID", 0x003),
    ("GENERAL_ERROR", 0x005),
    ("FUNCTION_FAILED", 0x006),
    ("ARGUMENTS_BAD", 0x007),
    ("NO_EVENT", 0x008),
    ("NEED_TO_CREATE_THREADS", 0x009),
    ("CANT_LOCK", 0x00A),
    ("ATTRIBUTE_READ_ONLY", 0x010),
    ("ATTRIBUTE_SENSITIVE", 0x011),
    ("ATTRIBUTE_TYPE_INVALID", 0x012),
    ("ATTRIBUTE_VALUE_INVALID", 0x013),
    ("ACTION_PROHIBITED", 0x01B),
    ("DATA_INVALID", 0x020),
    ("DATA_LEN_RANGE", 0x021),
    ("DEVICE_ERROR", 0x030),
    ("DEVICE_MEMORY", 0x031),
    ("DEVICE_REMOVED", 0x032),
    ("ENCRYPTED_DATA_INVALID", 0x040),
    ("ENCRYPTED_DATA_LEN_RANGE", 0x041),
    ("FUNCTION_CANCELED", 0x050),
    ("FUNCTION_NOT_PARALLEL", 0x051),
    ("FUNCTION_NOT_SUPPORTED", 0x054),
    ("KEY_HANDLE_INVALID", 0x060),
    ("KEY_SIZE_RANGE", 0x062),
    ("KEY_TYPE_INCONSISTENT", 0x063),
    ("KEY_NOT_NEEDED", 0x064),
    ("KEY_CHANGED", 0x065),
    ("KEY_NEEDED", 0x066),
    ("KEY_INDIGESTIBLE", 0x067),
    ("KEY_FUNCTION_NOT_PERMITTED", 0x068),
    ("KEY_NOT_WRAPPABLE", 0x069),
    ("KEY_UNEXTRACTABLE", 0x06A),
    ("MECHANISM_INVALID", 0x070),
    ("MECHANISM_PARAM_INVALID", 0x071),
    ("OBJECT_HANDLE_INVALID", 0x082),
    ("OPERATION_ACTIVE", 0x090),
    ("OPERATION_NOT_INITIALIZED", 0x091),
    ("PIN_INCORRECT", 0x0A0),
    ("PIN_INVALID", 0x0A1),
    ("PIN_LEN_RANGE", 0x0A2),
    ("PIN_EXPIRED", 0x0A3),
    ("PIN_LOCKED", 0x0A4),
    ("SESSION_CLOSED", 0x0B0),
    ("SESSION_COUNT", 0x0B1),
    ("SESSION_HANDLE_INVALID", 0x0B3),
    ("SESSION_PARALLEL_NOT_SUPPORTED", 0x0B4),
    ("SESSION_READ_ONLY", 0x0B5),
    ("SESSION_EXISTS", 0x0B6),
    ("SESSION_READ_ONLY_EXISTS", 0x0B7),
    ("SESSION_READ_WRITE_SO_EXISTS", 0x0B8),
    ("SIGNATURE_INVALID", 0x0C0),
    ("SIGNATURE_LEN_RANGE", 0x0C1),
    ("TEMPLATE_INCOMPLETE", 0x0D0),
    ("TEMPLATE_INCONSISTENT", 0x0D1),
    ("TOKEN_NOT_PRESENT", 0x0E0),
    ("TOKEN_NOT_RECOGNIZED", 0x0E1),
    ("TOKEN_WRITE_PROTECTED", 0x0E2),
    ("UNWRAPPING_KEY_HANDLE_INVALID", 0x0F0),
    ("UNWRAPPING_KEY_SIZE_RANGE", 0x0F1),
    ("UNWRAPPING_KEY_TYPE_INCONSISTENT", 0x0F2),
    ("USER_ALREADY_LOGGED_IN", 0x100),
    ("USER_NOT_LOGGED_IN", 0x101),
    ("USER_PIN_NOT_INITIALIZED", 0x102),
    ("USER_TYPE_INVALID", 0x103),
    ("USER_ANOTHER_ALREADY_LOGGED_IN", 0x104),
    ("USER_TOO_MANY_TYPES", 0x105),
    ("WRAPPED_KEY_INVALID", 0x110),
    ("WRAPPED_KEY_LEN_RANGE", 0x112),
    ("WRAPPING_KEY_HANDLE_INVALID", 0x113),
    ("WRAPPING_KEY_SIZE_RANGE", 0x114),
    ("WRAPPING_KEY_TYPE_INCONSISTENT", 0x115),
    ("RANDOM_SEED_NOT_SUPPORTED", 0x120),
    ("RANDOM_NO_RNG", 0x121),
    ("DOMAIN_PARAMS_INVALID", 0x130),
    ("CURVE_NOT_SUPPORTED", 0x140),
    ("BUFFER_TOO_SMALL", 0x150),
    ("SAVED_STATE_INVALID", 0x160),
    ("INFORMATION_SENSITIVE", 0x170),
    ("STATE_UNSAVEABLE", 0x180),
    ("CRYPTOKI_NOT_INITIALIZED", 0x190),
    ("CRYPTOKI_ALREADY_INITIALIZED", 0x191),
    ("MUTEX_BAD", 0x1A0),
    ("MUTEX_NOT_LOCKED", 0x1A1),
    ("NEW_PIN_MODE", 0x1B0),
    ("NEXT_OTP", 0x1B1),
    ("EXCEEDED_MAX_ITERATIONS", 0x1B5),
    ("FIPS_SELF_TEST_FAILED", 0x1B6),
    ("LIBRARY_LOAD_FAILED", 0x1B7),
    ("PIN_TOO_WEAK", 0x1B8),
    ("PUBLIC_KEY_INVALID", 0x1B9),
    ("FUNCTION_REJECTED", 0x200),
)

# "Applies to Object Types" phrases -> object type spec names. "Cryptographic
# objects" are the managed objects that carry key material (1.4 section 2.2): every
# object type but Template and Opaque Object (and the 2.x Certificate Request).
_CRYPTOGRAPHIC_OBJECTS = (
    "Certificate",
    "Symmetric Key",
    "Public Key",
    "Private Key",
    "Split Key",
    "Secret Data",
    "PGP Key",
)
APPLIES_TO_PHRASES = {
    "All Cryptographic Objects": _CRYPTOGRAPHIC_OBJECTS,
    "Managed Cryptographic Objects": _CRYPTOGRAPHIC_OBJECTS,
    "Opaque Object": ("Opaque Object",),
    "Opaque Objects": ("Opaque Object",),
    "Templates": ("Template",),
    "Asymmetric Keys": ("Public Key", "Private Key"),
    "Certificates": ("Certificate",),
    "X.509 Certificates": ("Certificate",),
    "PGP keys": ("PGP Key",),
    "Keys": ("Symmetric Key", "Public Key", "Private Key", "Split Key", "PGP Key"),
    "Symmetric Keys": ("Symmetric Key",),
    "Split Keys of symmetric keys": ("Split Key",),
    "Symmetric Key": ("Symmetric Key",),
    "Private Key": ("Private Key",),
    "Split Key": ("Split Key",),
    "Secret Data": ("Secret Data",),
    "Public Keys": ("Public Key",),
    "Private Keys": ("Private Key",),
}

# Chapter-3/4 sections that are not attributes with a tag of their own.
NOT_ATTRIBUTES = {
    "Custom Attribute",  # 1.x "x-"/"y-" attributes, by name only; handled elsewhere
    "Vendor Attribute",  # their 2.x form: an Attribute structure, no rules table
}

# Sections that define several attributes, one per row of the encoding table.
ATTRIBUTE_GROUPS = {
    "Certificate Attributes",  # Certificate Subject CN, ... Certificate Issuer DN Qualifier
}

# Attributes whose section has no encoding table: where the encoding is given instead.
ENCODING_FALLBACK = {
    "Usage Limits": "Structure",  # 2.1 4.59 points at the Usage Limits structure, 7.40
}

# Spec encoding names -> TTLV item type names used in the generated tables.
ITEM_TYPES = {
    "structure": "Structure",
    "integer": "Integer",
    "long integer": "LongInteger",
    "big integer": "BigInteger",
    "enumeration": "Enumeration",
    "boolean": "Boolean",
    "text string": "TextString",
    "byte string": "ByteString",
    "date-time": "DateTime",
    "date time": "DateTime",
    "interval": "Interval",
    "date-time extended": "DateTimeExtended",
    "date time extended": "DateTimeExtended",
    # Encodings given as the name of a structure defined elsewhere.
    "rng parameters": "Structure",
}


# --------------------------------------------------------------------------------------
# HTML -> blocks


@dataclass
class Heading:
    """A section heading: its level (h1 = 1), number ("9.1.3.2") and title."""

    level: int
    number: str
    title: str


@dataclass
class Table:
    """A table as rows of cell texts (whitespace collapsed)."""

    rows: list[list[str]]


Block = Heading | Table


class _SpecHTMLParser(html.parser.HTMLParser):
    """Reduce a Word-exported spec to its headings and tables, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._heading: tuple[int, list[str]] | None = None
        self._tables: list[list[list[list[str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open headings, tables, rows and cells."""
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = (int(tag[1]), [])
        elif tag == "table":
            self._tables.append([])
        elif tag == "tr" and self._tables:
            self._tables[-1].append([])
        elif tag in ("td", "th") and self._tables and self._tables[-1]:
            self._tables[-1][-1].append([])
        elif tag in ("p", "br") and self._in_cell():
            self._tables[-1][-1][-1].append(" ")

    def handle_endtag(self, tag: str) -> None:
        """Close headings and tables, emitting a block."""
        if self._heading is not None and tag == f"h{self._heading[0]}":
            level, parts = self._heading
            self._heading = None
            text = _clean("".join(parts))
            match = re.match(r"(\d+(?:\.\d+)*)\.?\s+(.*)", text)
            if match:
                self.blocks.append(Heading(level, match.group(1), match.group(2)))
            else:
                self.blocks.append(Heading(level, "", text))
        elif tag == "table" and self._tables:
            rows = self._tables.pop()
            cleaned = [[_clean("".join(cell)) for cell in row] for row in rows]
            self.blocks.append(Table([row for row in cleaned if any(row)]))

    def handle_data(self, data: str) -> None:
        """Collect text inside headings and table cells."""
        if self._heading is not None:
            self._heading[1].append(data)
        elif self._in_cell():
            self._tables[-1][-1][-1].append(data)

    def _in_cell(self) -> bool:
        """Whether the parser is inside a table cell."""
        return bool(self._tables and self._tables[-1] and self._tables[-1][-1])


def _clean(text: str) -> str:
    """Collapse whitespace (Word wraps lines and uses no-break spaces)."""
    return " ".join(text.replace("\xa0", " ").split())


def parse_blocks(path: Path) -> list[Block]:
    """Read one spec file into headings and tables."""
    parser = _SpecHTMLParser()
    parser.feed(path.read_text(encoding=SPEC_ENCODING))
    parser.close()
    return parser.blocks


def sections(blocks: list[Block], title: str) -> Iterator[tuple[Heading, list[Block]]]:
    """Yield the subsections (heading, body blocks) of the section called *title*."""
    index = _find_heading(blocks, title)
    heading = blocks[index]
    assert isinstance(heading, Heading)
    parent = heading.level
    current: Heading | None = None
    body: list[Block] = []
    for block in blocks[index + 1 :]:
        if isinstance(block, Heading) and block.level <= parent:
            break
        if isinstance(block, Heading) and block.level == parent + 1:
            if current is not None:
                yield current, body
            current, body = block, []
        else:
            body.append(block)
    if current is not None:
        yield current, body


def section_body(blocks: list[Block], title: str) -> list[Block]:
    """The blocks of the section called *title*, up to the next heading."""
    body: list[Block] = []
    for block in blocks[_find_heading(blocks, title) + 1 :]:
        if isinstance(block, Heading):
            break
        body.append(block)
    return body


def _find_heading(blocks: list[Block], title: str) -> int:
    """The index of the first heading called *title*."""
    for index, block in enumerate(blocks):
        if isinstance(block, Heading) and block.title == title:
            return index
    raise SystemExit(f"no section titled {title!r}")


# --------------------------------------------------------------------------------------
# Names


def identifier(spec_name: str) -> str:
    """The Python member name: uppercase, runs of other characters -> one "_"."""
    if spec_name in IDENTIFIER_RENAMES:
        return IDENTIFIER_RENAMES[spec_name]
    name = re.sub(r"[^A-Za-z0-9]+", "_", spec_name).strip("_").upper()
    if not name or name[0].isdigit():
        raise SystemExit(f"no identifier for {spec_name!r}: add it to IDENTIFIER_RENAMES")
    return name


def class_name(spec_name: str) -> str:
    """The Python class name: CamelCase words ("PKCS#11 Function" -> PKCS11Function)."""
    words = re.split(r"[^A-Za-z0-9]+", spec_name)
    return "".join(word[0].upper() + word[1:] for word in words if word)


def xml_name(spec_name: str) -> str:
    """The KMIP XML/JSON encoding name of a tag or enumeration value.

    The "Normalizing Names" rules of the KMIP Profiles (1.4 section 5.4.1.1):
    brackets become spaces; a non-word character before a letter and a lower-case
    letter becomes a space; other non-word characters become "_"; leading digits of
    the first word move to its end; each word is capitalised and the words joined.
    """
    name = spec_name.replace("(", " ").replace(")", " ")
    name = re.sub(r"[^A-Za-z0-9_]([a-zA-Z][a-z])", r" \1", name)
    name = re.sub(r"[^A-Za-z0-9_ ]", "_", name)
    words = name.split(" ")
    words[0] = re.sub(r"^(\d+)(.*)$", r"\2\1", words[0])
    return "".join(word[:1].upper() + word[1:] for word in words)


# --------------------------------------------------------------------------------------
# Extraction


@dataclass
class EnumSpec:
    """One enumeration or bit mask as one spec version defines it."""

    name: str
    mask: bool
    values: list[tuple[str, int]]


@dataclass
class AttributeSpec:
    """One attribute as one spec version defines it."""

    name: str
    item_type: str
    rules: dict[str, str]


@dataclass
class SpecData:
    """What one spec version defines."""

    version: str
    tags: list[tuple[str, int]] = field(default_factory=list)
    enums: dict[str, EnumSpec] = field(default_factory=dict)
    attributes: dict[str, AttributeSpec] = field(default_factory=dict)
    enum_fields: dict[str, str] = field(default_factory=dict)


def _value(text: str) -> int | None:
    """A hex value cell ("00000001", "0x42016A") as an int, None for ranges/"8XXXXXXX"."""
    # Notes may follow the value: "420014 (deprecated as of version 1.1)".
    match = re.fullmatch(r"(?:0x)?([0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})(?: \(.*\))?", text)
    return int(match.group(1), 16) if match else None


def _name_value_rows(tables: Iterable[Table]) -> Iterator[tuple[str, int]]:
    """(name, value) rows of "Name | Value" style tables, skipping placeholders."""
    for table in tables:
        header_seen = False
        for row in table.rows:
            if len(row) < 2:
                continue
            if row[0] in ("Name", "Object") and row[1] in ("Value", "Tag Value"):
                header_seen = True
                continue
            if not header_seen:
                continue
            name, value = row[0], _value(row[1])
            if name.startswith("(") or name == "Extensions":
                continue  # (Reserved), (Unused) and extension ranges
            if value is None:
                raise SystemExit(f"unreadable value row {row!r}")
            yield name, value


def extract(version: str, blocks: list[Block]) -> SpecData:
    """Pull the tag table, enumerations, masks and attributes out of one spec."""
    data = SpecData(version)
    tag_title = "Tags" if version.startswith("1.") else "Tag Enumeration"
    tables = [b for b in section_body(blocks, tag_title) if isinstance(b, Table)]
    data.tags = list(_name_value_rows(tables))
    if not data.tags:
        raise SystemExit(f"{version}: no tag table")

    for title, mask in (("Enumerations", False), ("Bit Masks", True)):
        for heading, body in sections(blocks, title):
            name = re.sub(r" Enumeration\b.*$", "", heading.title)
            if name == "Tag":
                continue  # the tag table itself, handled above
            values = [
                (ERRATA.get((version, name, value_name), value_name), value)
                for value_name, value in _name_value_rows(b for b in body if isinstance(b, Table))
            ]
            data.enums[name] = EnumSpec(name, mask, values)

    chapter = "Attributes" if version.startswith("1.") else "Object Attributes"
    for heading, body in sections(blocks, chapter):
        if heading.title in NOT_ATTRIBUTES:
            continue
        for attribute in _attributes(version, heading.title, body):
            data.attributes[attribute.name] = attribute

    for block in blocks:
        if isinstance(block, Table):
            for row in block.rows:
                if len(row) >= 2 and row[1].startswith("Enumeration"):
                    data.enum_fields.setdefault(_field_name(row[0]), row[1])
    return data


def _field_name(cell: str) -> str:
    """A structure-table field name without its ", see 3.1" style references."""
    return re.sub(r",? see .*$", "", cell).strip()


RULE_LABELS = (
    "SHALL always have a value",
    "Initially set by",
    "Modifiable by server",
    "Modifiable by client",
    "Deletable by client",
    "Multiple instances permitted",
    "When implicitly set",
    "Applies to Object Types",
)


def _rule_label(text: str) -> str:
    """A rules-table row label in its canonical spelling."""
    for label in RULE_LABELS:
        if text.lower() == label.lower():
            return label
    return text


def _attributes(version: str, title: str, body: list[Block]) -> list[AttributeSpec]:
    """Read an attribute section's encoding table and rules table."""
    tables = [block for block in body if isinstance(block, Table)]
    encoding_rows: list[list[str]] = []
    for table in tables:
        # Some tables have empty spacer columns ("NIST Key Type |  | Enumeration").
        rows = [[cell for cell in row if cell] for row in table.rows]
        header = rows[0] if rows else []
        if len(header) >= 2 and header[0] in ("Object", "Item") and header[1] == "Encoding":
            encoding_rows = [row for row in rows[1:] if len(row) >= 2]
            break
    if not encoding_rows and title in ENCODING_FALLBACK:
        encoding_rows = [[title, ENCODING_FALLBACK[title]]]
    rules: dict[str, str] = {}
    for table in tables:
        if table.rows and table.rows[0][0].lower() == "shall always have a value":
            # Labels are spelt with varying case ("Shall always have a value").
            rules = {_rule_label(row[0]): row[1] for row in table.rows if len(row) >= 2}
            break
    if not encoding_rows or not rules:
        raise SystemExit(f"{version}: attribute {title!r} lacks an encoding or rules table")
    if title in ATTRIBUTE_GROUPS:
        # One attribute per row, all sharing the section's rules.
        named = [(row[0], row[1]) for row in encoding_rows]
    else:
        named = [(title, encoding_rows[0][1])]
    found = []
    for name, encoding in named:
        kind = re.split(r"[,(]| see ", encoding)[0].strip().lower()
        if kind not in ITEM_TYPES:
            raise SystemExit(f"{version}: attribute {name!r} has unknown encoding {encoding!r}")
        found.append(AttributeSpec(name, ITEM_TYPES[kind], rules))
    return found


# --------------------------------------------------------------------------------------
# Merging the versions


@dataclass
class Member:
    """One enum member (a value) across the versions."""

    value: int
    names: dict[str, str]  # version -> spec name
    identifier: str = ""
    aliases: list[str] = field(default_factory=list)

    @property
    def spec_name(self) -> str:
        """The newest spec name."""
        return self.names[max(self.names, key=VERSIONS.index)]

    @property
    def versions(self) -> tuple[str, ...]:
        """The versions that define this value, oldest first."""
        return tuple(v for v in VERSIONS if v in self.names)


@dataclass
class Merged:
    """An enumeration (or the tag table) merged over the versions."""

    spec_name: str
    class_name: str
    mask: bool
    members: list[Member]
    xml_names: dict[str, int]
    notes: list[str]
    versions: tuple[str, ...]
    per_version: dict[str, dict[str, int]] | None = None


def merge(
    spec_name: str,
    mask: bool,
    by_version: dict[str, list[tuple[str, int]]],
    defined_in: tuple[str, ...],
    report: list[str],
) -> Merged:
    """Merge one value table over the versions, recording every disagreement."""
    members: dict[int, Member] = {}
    notes: list[str] = []
    for version in VERSIONS:
        seen: dict[int, str] = {}
        for name, value in by_version.get(version, []):
            if value in seen and seen[value] != name:
                notes.append(
                    f"{version} lists 0x{value:X} twice, as {seen[value]!r} and {name!r};"
                    f" {seen[value]!r} kept"
                )
                continue
            seen[value] = name
            members.setdefault(value, Member(value, {})).names[version] = name

    # Same name, different values in different versions.
    values_by_name: dict[str, dict[str, int]] = {}
    for member in members.values():
        for version, name in member.names.items():
            values_by_name.setdefault(identifier(name), {})[version] = member.value
    moved = {
        ident: by_ver
        for ident, by_ver in sorted(values_by_name.items())
        if len(set(by_ver.values())) > 1
    }
    for ident, by_ver in moved.items():
        described = ", ".join(f"{v}: 0x{by_ver[v]:X}" for v in VERSIONS if v in by_ver)
        notes.append(f"{ident} has different values in different versions ({described})")

    used: set[str] = set()
    ordered = [members[value] for value in sorted(members)]

    # Canonical identifiers first (newest spec name), so aliases never steal them; a
    # name two values share goes to the value the newest spec gives it.
    def recency(member: Member) -> tuple[int, int]:
        return (-max(VERSIONS.index(v) for v in member.names), member.value)

    for member in sorted(ordered, key=recency):
        ident = identifier(member.spec_name)
        if ident in used:
            ident = f"{ident}_{member.value:X}"
            notes.append(f"0x{member.value:X} renamed {ident} (name taken by another value)")
        member.identifier = ident
        used.add(ident)
    for member in ordered:
        renamed = []
        for version in member.versions:
            name = member.names[version]
            ident = identifier(name)
            if ident == member.identifier or ident in member.aliases:
                continue
            if ident in used:
                notes.append(
                    f"{version} name {name!r} of 0x{member.value:X} not kept as an alias:"
                    f" {ident} names another value"
                )
                continue
            member.aliases.append(ident)
            used.add(ident)
            renamed.append(f"{version} {name!r}")
        if renamed:
            notes.append(
                f"0x{member.value:X} {member.spec_name!r} was {', '.join(renamed)}"
                f" (kept as alias{'es' if len(renamed) > 1 else ''})"
            )

    # XML names: every name of every version resolves; the newest wins a clash.
    xml_names: dict[str, int] = {}
    for version in VERSIONS:
        for name, value in by_version.get(version, []):
            xml = xml_name(name)
            if xml in xml_names and xml_names[xml] != value:
                notes.append(
                    f"XML name {xml!r} meant 0x{xml_names[xml]:X} before {version},"
                    f" 0x{value:X} from {version} on"
                )
            xml_names[xml] = value

    newest = max(by_version, key=VERSIONS.index)
    dropped = [m for m in ordered if newest not in m.names]
    if dropped and by_version.get(newest):
        listed = ", ".join(repr(m.spec_name) for m in dropped)
        if len(dropped) > 20:
            table = "TAG_VERSIONS" if spec_name == "Tag" else "ENUM_VALUE_VERSIONS"
            listed = f"{len(dropped)} values (see {table})"
        notes.append(f"not in {newest} (older versions only): {listed}")

    per_version = None
    if moved:
        per_version = {
            version: {identifier(name): value for name, value in by_version[version]}
            for version in VERSIONS
            if version in by_version
        }
    merged = Merged(
        spec_name,
        class_name(spec_name),
        mask,
        ordered,
        xml_names,
        notes,
        defined_in,
        per_version,
    )
    for note in notes:
        report.append(f"{merged.class_name}: {note}")
    return merged


# --------------------------------------------------------------------------------------
# Rendering helpers


def _versions_literal(versions: Iterable[str]) -> str:
    """The name of the module constant holding this set of versions."""
    return "_V_" + "_".join(v.replace(".", "") for v in versions)


def _version_constants(sets: Iterable[tuple[str, ...]]) -> list[str]:
    """Module constants for the version sets used, so tables stay short."""
    lines = []
    for versions in sorted(set(sets), key=lambda vs: [VERSIONS.index(v) for v in vs]):
        items = ", ".join(f'"{v}"' for v in versions)
        lines.append(f"{_versions_literal(versions)} = frozenset({{{items}}})")
    return lines


def _header(what: str) -> list[str]:
    """The generated-file banner."""
    return [
        "# GENERATED FILE - DO NOT EDIT.",
        f"# Generated by tools/gen_vocabulary.py from the OASIS KMIP specifications"
        f" {', '.join(VERSIONS)};",
        "# regenerate with:",
        f"#     {COMMAND}",
        f'"""{what}"""',
        "",
        "from __future__ import annotations",
        "",
    ]


def _comment(text: str, first: str = "# - ", rest: str = "#   ") -> list[str]:
    """Wrap *text* as comment lines no longer than 96 characters."""
    lines: list[str] = []
    line = first
    for word in text.split():
        if line not in (first, rest) and len(line) + 1 + len(word) > 96:
            lines.append(line)
            line = rest
        line += word if line in (first, rest) else " " + word
    lines.append(line)
    return lines


def _py_str(text: str) -> str:
    """A double-quoted Python string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------------------
# tags.py


def render_tags(tags: Merged) -> str:
    """The source of kmiptwist/vocabulary/tags.py."""
    out = _header(
        "KMIP tags (the 3-byte item tags of TTLV), from the tag tables of KMIP 1.1, 1.4"
        " and 2.1.\n\n"
        "``Tag`` has one member per tag value defined by any of those versions, named by\n"
        "the newest spec that defines it; names used by older versions for the same value\n"
        "are aliases. ``TAG_VERSIONS`` says which versions define each value (a server\n"
        "must not send a client a tag its version lacks), ``TAG_BY_XML_NAME`` maps the\n"
        "KMIP XML/JSON encoding names (every version's) to tags, ``TAG_XML_NAME`` and\n"
        "``TAG_SPEC_NAME`` give a tag's newest XML and display names.\n"
    )
    out += [
        '__all__ = ["Tag", "TAG_VERSIONS", "TAG_BY_XML_NAME", "TAG_XML_NAME", "TAG_SPEC_NAME"]',
        "",
    ]
    out += _version_constants(m.versions for m in tags.members)
    out += ["", ""]
    out += ["# Differences between the spec versions' tag tables:"]
    for note in tags.notes:
        out += _comment(note)
    if not any(member.aliases for member in tags.members):
        out += ["# - No tag value was renamed between versions."]
    if tags.per_version is None:
        out += ["# - No tag name has different values in different versions."]
    out += ["", ""]
    out += [
        "class Tag:",
        '    """The KMIP tags (0x42XXXX) by name; names follow the spec, uppercased.',
        "",
        "    Plain ints, not an enumeration: tags are read on every item a request makes",
        "    or reads, and a member of an ``IntEnum`` costs four times a class attribute",
        "    to look up (CPython 3.11).  ``TAG_SPEC_NAME`` names a tag value.",
        '    """',
        "",
    ]
    for member in tags.members:
        out.append(f"    {member.identifier} = 0x{member.value:06X}")
    aliased = [m for m in tags.members if m.aliases]
    if aliased:
        out += ["", "    # Names older versions gave these values."]
        for member in aliased:
            for alias in member.aliases:
                out.append(f"    {alias} = 0x{member.value:06X}  # now {member.identifier}")
    out += ["", ""]
    out += [
        "# Which spec versions define each tag value.",
        "TAG_VERSIONS: dict[int, frozenset[str]] = {",
    ]
    for member in tags.members:
        out.append(f"    0x{member.value:06X}: {_versions_literal(member.versions)},")
    out += ["}", ""]
    out += [
        "# KMIP XML/JSON encoding element names (all versions' spellings) -> tag.",
        "TAG_BY_XML_NAME: dict[str, int] = {",
    ]
    by_value = {m.value: m for m in tags.members}
    for xml, value in sorted(tags.xml_names.items()):
        out.append(f"    {_py_str(xml)}: Tag.{by_value[value].identifier},")
    out += ["}", ""]
    out += [
        "# Tag -> its XML/JSON encoding element name (newest spec name).",
        "TAG_XML_NAME: dict[int, str] = {",
    ]
    for member in tags.members:
        out.append(f"    0x{member.value:06X}: {_py_str(xml_name(member.spec_name))},")
    out += ["}", ""]
    out += [
        "# Tag -> its display name in the newest spec that defines it.",
        "TAG_SPEC_NAME: dict[int, str] = {",
    ]
    for member in tags.members:
        out.append(f"    0x{member.value:06X}: {_py_str(member.spec_name)},")
    out += ["}", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# enums.py


def render_enums(enums: list[Merged], enum_by_tag: list[tuple[Member, Merged | None]]) -> str:
    """The source of kmiptwist/vocabulary/enums.py."""
    out = _header(
        "KMIP enumerations and bit masks, from KMIP 1.1, 1.4 and 2.1.\n\n"
        "One ``enum.IntEnum`` per enumeration (``enum.IntFlag`` per bit mask), with a\n"
        "member for every value any of those versions defines, named by the newest spec\n"
        "(older names are aliases). ``ENUM_VALUE_VERSIONS`` says which versions define\n"
        "each value, ``ENUM_BY_TAG`` which enumeration a tag's value belongs to, and\n"
        "``enum_from_xml_name``/``enum_xml_name`` convert to and from the KMIP XML/JSON\n"
        'encoding names ("SymmetricKey", masks as "Encrypt Decrypt").\n'
    )
    out += [
        "import enum",
        "from collections.abc import Mapping",
        "",
        "from kmiptwist.vocabulary.tags import TAG_BY_XML_NAME, TAG_XML_NAME, Tag",
        "",
    ]
    names = sorted(merged.class_name for merged in enums)
    out += ["__all__ = ["]
    for name in names + [
        "ENUM_BY_TAG",
        "ENUM_CLASSES",
        "ENUM_SPEC_NAME",
        "ENUM_VALUE_VERSIONS",
        "ENUM_VALUES_BY_VERSION",
        "ENUM_XML_NAMES",
        "enum_from_xml_name",
        "enum_xml_name",
    ]:
        out.append(f"    {_py_str(name)},")
    out += ["]", ""]
    out += _version_constants([m.versions for merged in enums for m in merged.members])
    out += [""]
    notes = [(merged, note) for merged in enums for note in merged.notes]
    if IDENTIFIER_RENAMES or notes:
        out += [""]
        out += ["# Member names the uppercase rule could not give (not identifiers):"]
        for spec_name, ident in sorted(IDENTIFIER_RENAMES.items()):
            out += [f"#   {spec_name!r} -> {ident}"]
        out += ["#", "# Differences between the spec versions (see also ENUM_VALUES_BY_VERSION):"]
        for merged, note in notes:
            out += _comment(f"{merged.class_name}: {note}")
    for merged in enums:
        base = "enum.IntFlag" if merged.mask else "enum.IntEnum"
        kind = "bit mask" if merged.mask else "enumeration"
        versions = ", ".join(merged.versions)
        out += ["", ""]
        out += [f"class {merged.class_name}({base}):"]
        out += [f'    """The {merged.spec_name} {kind} (KMIP {versions})."""']
        if merged.spec_name in ("PKCS#11 Function", "PKCS#11 Return Code"):
            out += ["", "    # Values defined by PKCS#11 3.0, not by a KMIP table (see generator)."]
        if merged.members:
            out += [""]
        else:
            out += ["", "    # The specs define only the extension range 8XXXXXXX."]
        for member in merged.members:
            out.append(f"    {member.identifier} = 0x{member.value:08X}")
        if any(member.aliases for member in merged.members):
            out += ["", "    # Names older versions gave these values (aliases)."]
        for member in merged.members:
            for alias in member.aliases:
                out.append(f"    {alias} = 0x{member.value:08X}")
    out += ["", ""]
    out += ["# Every enumeration class, by class name.", "ENUM_CLASSES: dict[str, type[int]] = {"]
    for name in names:
        out.append(f"    {_py_str(name)}: {name},")
    out += ["}", ""]
    out += [
        "# Class -> the spec's name for the enumeration.",
        "ENUM_SPEC_NAME: dict[type[int], str] = {",
    ]
    for merged in sorted(enums, key=lambda m: m.class_name):
        out.append(f"    {merged.class_name}: {_py_str(merged.spec_name)},")
    out += ["}", ""]
    out += [
        "# (class name, value) -> the spec versions that define the value.",
        "ENUM_VALUE_VERSIONS: dict[tuple[str, int], frozenset[str]] = {",
    ]
    for merged in enums:
        for member in merged.members:
            out.append(
                f"    ({_py_str(merged.class_name)}, 0x{member.value:08X}):"
                f" {_versions_literal(member.versions)},"
            )
    out += ["}", ""]
    out += [
        "# Enumerations whose member names have different values in different versions:",
        "# class name -> version -> member name -> value, exactly as each spec lists it.",
        "ENUM_VALUES_BY_VERSION: dict[str, dict[str, dict[str, int]]] = {",
    ]
    if not any(merged.per_version for merged in enums):
        out[-1:] = [
            "# (Empty: in these specs no member name has different values in different versions.)",
            out[-1].replace("{", "{}"),
        ]
    for merged in enums:
        if merged.per_version:
            out.append(f"    {_py_str(merged.class_name)}: {{")
            for version, table in merged.per_version.items():
                out.append(f"        {_py_str(version)}: {{")
                for ident, value in table.items():
                    out.append(f"            {_py_str(ident)}: 0x{value:08X},")
                out.append("        },")
            out.append("    },")
    if any(merged.per_version for merged in enums):
        out += ["}"]
    out += [""]
    out += [
        "# Tag -> the enumeration (or mask) its value belongs to. Attribute Reference",
        "# (2.x) is an Enumeration whose values are tags.",
        "ENUM_BY_TAG: dict[int, type] = {",
    ]
    for tag, value_enum in enum_by_tag:
        target = "Tag" if value_enum is None else value_enum.class_name
        out.append(f"    Tag.{tag.identifier}: {target},")
    out += ["}", ""]
    out += [
        "# Class name -> XML/JSON encoding value name (every version's spelling) -> value.",
        "ENUM_XML_NAMES: dict[str, dict[str, int]] = {",
    ]
    for merged in enums:
        out.append(f"    {_py_str(merged.class_name)}: {{")
        for xml, value in sorted(merged.xml_names.items()):
            out.append(f"        {_py_str(xml)}: 0x{value:08X},")
        out.append("    },")
    out += ["}", ""]
    out += [
        "# Class name -> value -> XML/JSON encoding name of the newest spec name.",
        "_XML_NAME_BY_VALUE: dict[str, dict[int, str]] = {",
    ]
    for merged in enums:
        out.append(f"    {_py_str(merged.class_name)}: {{")
        for member in merged.members:
            out.append(f"        0x{member.value:08X}: {_py_str(xml_name(member.spec_name))},")
        out.append("    },")
    out += ["}", ""]
    out += [_HELPERS]
    return "\n".join(out)


_HELPERS = '''
def _xml_names_of(cls: type) -> Mapping[str, int]:
    """The XML name table of an enumeration class (or of Tag)."""
    if cls is Tag:
        return TAG_BY_XML_NAME
    try:
        return ENUM_XML_NAMES[cls.__name__]
    except KeyError:
        raise TypeError(f"{cls!r} is not a KMIP enumeration") from None


def enum_from_xml_name(cls: type, text: str) -> int:
    """The value of *text* in the KMIP XML/JSON encoding of enumeration *cls*.

    *text* is a value name ("SymmetricKey", "PreActive") or a hex value ("0x80000001",
    for extensions); for a bit mask, names and hex values separated by spaces or "|"
    ("Encrypt Decrypt") are OR-ed together. Raises ``ValueError`` for an unknown name.
    """
    names = _xml_names_of(cls)
    tokens = text.replace("|", " ").split() if issubclass(cls, enum.IntFlag) else [text]
    if not tokens:
        raise ValueError(f"empty {cls.__name__} value")
    result = 0
    for token in tokens:
        token = token.strip()
        if token in names:
            result |= names[token]
        elif token[:2].lower() == "0x":
            try:
                result |= int(token, 16)
            except ValueError:
                raise ValueError(f"bad hex {cls.__name__} value {token!r}") from None
        else:
            raise ValueError(f"unknown {cls.__name__} value name {token!r}")
    return result


def enum_xml_name(cls: type, value: int) -> str:
    """The KMIP XML/JSON encoding name of *value* of enumeration *cls*.

    Unknown values (extensions) come out as "0x%08X"; a bit mask comes out as its
    flag names separated by spaces, any unnamed bits as one trailing hex value.
    """
    if cls is Tag:
        return TAG_XML_NAME.get(value, f"0x{value:06X}")
    try:
        by_value = _XML_NAME_BY_VALUE[cls.__name__]
    except KeyError:
        raise TypeError(f"{cls!r} is not a KMIP enumeration") from None
    if not issubclass(cls, enum.IntFlag):
        return by_value.get(value, f"0x{value:08X}")
    if value in by_value:
        return by_value[value]
    parts, rest = [], value
    for flag, name in sorted(by_value.items()):
        if flag and value & flag == flag:
            parts.append(name)
            rest &= ~flag
    if rest or not parts:
        parts.append(f"0x{rest:08X}")
    return " ".join(parts)
'''


# --------------------------------------------------------------------------------------
# attributes.py


@dataclass
class AttributeRow:
    """One merged attribute, ready to render."""

    name: str
    tag: Member
    item_type: str
    multi_valued: bool
    versions: tuple[str, ...]
    applies_to: tuple[str, ...] | None
    server_set_only: bool
    client_modifiable: bool
    client_deletable: bool
    always_present: bool
    client_modifiable_1x: bool | None
    client_deletable_1x: bool | None
    multi_valued_1x: bool | None
    applies_to_1x: tuple[str, ...] | None
    conditions: tuple[tuple[str, str], ...]


def _yes(text: str) -> bool:
    """Whether a rules cell starts with "Yes"."""
    return text.strip().lower().startswith("yes")


def _applies_to(version: str, name: str, text: str) -> tuple[str, ...] | None:
    """Object type spec names an "Applies to Object Types" cell lists; None for all."""
    if text == "All Objects":
        return None
    found: list[str] = []
    for phrase in (part.strip() for part in text.split(",")):
        if phrase not in APPLIES_TO_PHRASES:
            raise SystemExit(f"{version}: {name}: unknown object types phrase {phrase!r}")
        found += [t for t in APPLIES_TO_PHRASES[phrase] if t not in found]
    return tuple(found)


def merge_attributes(
    specs: dict[str, SpecData], tags: Merged, report: list[str]
) -> list[AttributeRow]:
    """Merge the attribute chapters, newest version's rules first."""
    tag_by_ident = {m.identifier: m for m in tags.members}
    for member in tags.members:
        for alias in member.aliases:
            tag_by_ident.setdefault(alias, member)
    names = sorted({name for spec in specs.values() for name in spec.attributes})
    rows = []
    for name in names:
        defined = [v for v in VERSIONS if name in specs[v].attributes]
        newest = specs[defined[-1]].attributes[name]
        old = [v for v in defined if v.startswith("1.")]
        older = specs[old[-1]].attributes[name] if old else None
        tag = tag_by_ident.get(identifier(name))
        if tag is None:
            raise SystemExit(f"attribute {name!r} has no tag")
        rules = newest.rules
        types = {specs[v].attributes[name].item_type for v in defined}
        if len(types) > 1:
            report.append(
                f"attribute {name!r}: item type differs: "
                + ", ".join(f"{v} {specs[v].attributes[name].item_type}" for v in defined)
            )
        for label in (
            "SHALL always have a value",
            "Modifiable by client",
            "Deletable by client",
            "Multiple instances permitted",
            "Initially set by",
            "Applies to Object Types",
        ):
            texts = {v: specs[v].attributes[name].rules.get(label, "") for v in defined}
            meanings: set[object]
            if label == "Initially set by":
                meanings = {"Client" in text for text in texts.values()}
            elif label == "Applies to Object Types":
                meanings = {_applies_to(v, name, texts[v]) for v in defined}
            else:
                meanings = {_yes(text) for text in texts.values()}
            if len(meanings) > 1:
                report.append(
                    f"attribute {name!r}: {label!r} differs: "
                    + "; ".join(f"{v} {texts[v]!r}" for v in defined)
                )
        conditions = tuple(
            (label, rules[label])
            for label in (
                "SHALL always have a value",
                "Initially set by",
                "Modifiable by server",
                "Modifiable by client",
                "Deletable by client",
                "Multiple instances permitted",
            )
            if label in rules
            and rules[label]
            not in ("Yes", "No", "Server", "Client", "Server or Client", "Client or Server")
        )
        rows.append(
            AttributeRow(
                name=name,
                tag=tag,
                item_type=newest.item_type,
                multi_valued=_yes(rules["Multiple instances permitted"]),
                versions=tuple(defined),
                applies_to=_applies_to(defined[-1], name, rules["Applies to Object Types"]),
                server_set_only="Client" not in rules["Initially set by"],
                client_modifiable=_yes(rules["Modifiable by client"]),
                client_deletable=_yes(rules["Deletable by client"]),
                always_present=_yes(rules["SHALL always have a value"]),
                client_modifiable_1x=_yes(older.rules["Modifiable by client"]) if older else None,
                client_deletable_1x=_yes(older.rules["Deletable by client"]) if older else None,
                multi_valued_1x=(
                    _yes(older.rules["Multiple instances permitted"]) if older else None
                ),
                applies_to_1x=(
                    _applies_to(old[-1], name, older.rules["Applies to Object Types"])
                    if older
                    else None
                ),
                conditions=conditions,
            )
        )
    return rows


def render_attributes(rows: list[AttributeRow], object_types: Merged, notes: list[str]) -> str:
    """The source of kmiptwist/vocabulary/attributes.py."""
    ot_ident = {}
    for member in object_types.members:
        for name in member.names.values():
            ot_ident[name] = member.identifier
    out = _header(
        "The KMIP attribute table, from the attribute chapters of KMIP 1.1, 1.4 and 2.1.\n\n"
        'One ``AttributeRule`` per attribute with a tag of its own (custom "x-"/"y-"\n'
        "attributes are handled elsewhere). Where versions disagree the 2.1 rule wins and\n"
        "the newest 1.x rule is kept in the ``*_1x`` fields. In 1.x an attribute travels\n"
        "as Attribute{Attribute Name (its spec name), Attribute Index, Attribute Value};\n"
        "in 2.x as an item with the attribute's own tag inside Attributes.\n"
    )
    out += [
        "from typing import NamedTuple",
        "",
        "from kmiptwist.vocabulary.enums import ObjectType",
        "from kmiptwist.vocabulary.tags import Tag",
        "",
        '__all__ = ["AttributeRule", "ATTRIBUTES", "ATTRIBUTES_BY_NAME", "ATTRIBUTES_BY_TAG"]',
        "",
    ]
    out += _version_constants(row.versions for row in rows)
    out += ["", ""]
    if notes:
        out += ["# Where the versions' attribute rules differ (the rule below takes 2.1's):"]
        for note in notes:
            out += _comment(note)
        out += ["", ""]
    out += [
        "class AttributeRule(NamedTuple):",
        '    """What the specs say about one attribute."""',
        "",
        "    #: The spec name, also the 1.x Attribute Name text.",
        "    name: str",
        "    #: The tag of the attribute value (2.x encodes the attribute with it).",
        "    tag: int",
        '    #: TTLV item type of the value: "Structure", "Integer", "LongInteger",',
        '    #: "BigInteger", "Enumeration", "Boolean", "TextString", "ByteString",',
        '    #: "DateTime", "Interval" or "DateTimeExtended".',
        "    item_type: str",
        '    #: "Multiple instances permitted" (2.1 where defined).',
        "    multi_valued: bool",
        "    #: The spec versions that define the attribute.",
        "    versions: frozenset[str]",
        "    #: Object types it applies to; None for all object types.",
        "    applies_to: frozenset[ObjectType] | None",
        '    #: "Initially set by" names only the server.',
        "    server_set_only: bool",
        '    #: "Modifiable by client" starts with Yes (see ``conditions`` for the ifs).',
        "    client_modifiable: bool",
        '    #: "Deletable by client" starts with Yes.',
        "    client_deletable: bool",
        '    #: "SHALL always have a value".',
        "    always_present: bool",
        '    #: The newest 1.x spec\'s "Modifiable by client"; None if no 1.x defines it.',
        "    client_modifiable_1x: bool | None",
        '    #: The newest 1.x spec\'s "Deletable by client"; None if no 1.x defines it.',
        "    client_deletable_1x: bool | None",
        '    #: The newest 1.x spec\'s "Multiple instances permitted".',
        "    multi_valued_1x: bool | None",
        "    #: The newest 1.x spec's object types (1.x often restricts what 2.x allows);",
        "    #: None for all object types or if no 1.x spec defines the attribute.",
        "    applies_to_1x: frozenset[ObjectType] | None",
        "    #: Rules-table rows with qualifications, (row label, text) from the newest spec.",
        "    conditions: tuple[tuple[str, str], ...] = ()",
        "",
        "",
        "ATTRIBUTES: tuple[AttributeRule, ...] = (",
    ]
    for row in rows:
        out += [
            "    AttributeRule(",
            f"        name={_py_str(row.name)},",
            f"        tag=Tag.{row.tag.identifier},",
            f"        item_type={_py_str(row.item_type)},",
            f"        multi_valued={row.multi_valued},",
            f"        versions={_versions_literal(row.versions)},",
        ]
        out += _object_types("applies_to", row.applies_to, ot_ident)
        out += [
            f"        server_set_only={row.server_set_only},",
            f"        client_modifiable={row.client_modifiable},",
            f"        client_deletable={row.client_deletable},",
            f"        always_present={row.always_present},",
            f"        client_modifiable_1x={row.client_modifiable_1x},",
            f"        client_deletable_1x={row.client_deletable_1x},",
            f"        multi_valued_1x={row.multi_valued_1x},",
        ]
        out += _object_types("applies_to_1x", row.applies_to_1x, ot_ident)
        if row.conditions:
            out.append("        conditions=(")
            for label, text in row.conditions:
                literal = f"            ({_py_str(label)}, {_py_str(text)}),"
                if len(literal) <= 100:
                    out.append(literal)
                else:
                    out.append(f"            (\n                {_py_str(label)},")
                    out += _wrapped_string(text, "                ")
                    out.append("            ),")
            out.append("        ),")
        out.append("    ),")
    out += [")", ""]
    out += [
        "# Spec name -> rule.",
        "ATTRIBUTES_BY_NAME: dict[str, AttributeRule] = {rule.name: rule for rule in ATTRIBUTES}",
        "",
        "# Tag value -> rule.",
        "ATTRIBUTES_BY_TAG: dict[int, AttributeRule] = {rule.tag: rule for rule in ATTRIBUTES}",
        "",
    ]
    return "\n".join(out)


def _object_types(
    keyword: str, types: tuple[str, ...] | None, ot_ident: dict[str, str]
) -> list[str]:
    """A keyword argument holding a frozenset of ObjectType members (or None)."""
    if types is None:
        return [f"        {keyword}=None,"]
    members = [f"ObjectType.{ot_ident[t]}" for t in types]
    line = f"        {keyword}=frozenset({{{', '.join(members)}}}),"
    if len(line) <= 100:
        return [line]
    return (
        [f"        {keyword}=frozenset({{"]
        + [f"            {member}," for member in members]
        + ["        }),"]
    )


def _wrapped_string(text: str, indent: str) -> list[str]:
    """A long string literal split over implicitly-concatenated lines."""
    lines, chunk = [], ""
    for word in text.split(" "):
        candidate = f"{chunk} {word}" if chunk else word
        if len(indent) + len(_py_str(candidate + " ")) > 98:
            lines.append(f"{indent}{_py_str(chunk + ' ')}")
            chunk = word
        else:
            chunk = candidate
    lines.append(f"{indent}{_py_str(chunk)},")
    return lines


# --------------------------------------------------------------------------------------
# Driver


def _enum_by_tag(
    tags: Merged, enums: list[Merged], specs: dict[str, SpecData], report: list[str]
) -> list[tuple[Member, Merged | None]]:
    """Map each enumeration-valued tag to its enumeration (None: the Tag enumeration)."""
    by_spec_name = {}
    for merged in enums:
        by_spec_name[merged.spec_name] = merged
    tag_by_name: dict[str, Member] = {}
    for member in tags.members:
        for name in member.names.values():
            tag_by_name.setdefault(name, member)
    mapping: dict[int, tuple[Member, Merged | None]] = {}
    for merged in enums:
        tag = tag_by_name.get(merged.spec_name)
        if tag is not None:
            mapping[tag.value] = (tag, merged)
    for tag_name, enum_name in ENUM_TAG_EXCEPTIONS.items():
        tag = tag_by_name.get(tag_name)
        if tag is None:
            raise SystemExit(f"ENUM_TAG_EXCEPTIONS: no tag {tag_name!r}")
        if enum_name == "Tag":
            mapping[tag.value] = (tag, None)
        elif enum_name in by_spec_name:
            mapping[tag.value] = (tag, by_spec_name[enum_name])
        else:
            raise SystemExit(f"ENUM_TAG_EXCEPTIONS: no enumeration {enum_name!r}")
    # Every field the specs encode as an Enumeration should now be mapped.
    unmapped = set()
    for spec in specs.values():
        for field_name in spec.enum_fields:
            tag = tag_by_name.get(field_name)
            if tag is not None and tag.value not in mapping:
                unmapped.add(tag.spec_name)
    for name in sorted(unmapped):
        report.append(f"ENUM_BY_TAG: enumeration-encoded tag {name!r} has no enumeration")
    unused = sorted(
        merged.class_name
        for merged in enums
        if not any(target is merged for _, target in mapping.values())
    )
    for name in unused:
        report.append(f"ENUM_BY_TAG: enumeration {name} is the value of no tag")
    return [mapping[value] for value in sorted(mapping)]


def generate(spec_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Read the specs in *spec_dir*; return {file name: source} and the report lines."""
    report: list[str] = []
    specs = {
        version: extract(version, parse_blocks(spec_dir / SPEC_FILES[version]))
        for version in VERSIONS
    }
    tags = merge("Tag", False, {v: specs[v].tags for v in VERSIONS}, VERSIONS, report)

    enum_names = sorted({name for spec in specs.values() for name in spec.enums})
    enums = []
    for name in enum_names:
        by_version = {v: specs[v].enums[name].values for v in VERSIONS if name in specs[v].enums}
        defined_in = tuple(v for v in VERSIONS if name in specs[v].enums)
        masks = {specs[v].enums[name].mask for v in defined_in}
        if name == "PKCS#11 Function":
            by_version = {"2.1": [(f, i) for i, f in enumerate(PKCS11_FUNCTIONS, 1)]}
        elif name == "PKCS#11 Return Code":
            by_version = {"2.1": list(PKCS11_RETURN_CODES)}
        if not any(by_version.values()):
            # Opaque Data Type: only the extension range (8XXXXXXX) is defined.
            report.append(f"enumeration {name!r} defines no values, only extensions")
        enums.append(merge(name, masks == {True}, by_version, defined_in, report))
    enums.sort(key=lambda merged: merged.class_name)
    classes = [merged.class_name for merged in enums]
    if len(set(classes)) != len(classes):
        raise SystemExit("two enumerations have the same class name")

    enum_by_tag = _enum_by_tag(tags, enums, specs, report)
    object_types = next(m for m in enums if m.class_name == "ObjectType")
    attribute_notes: list[str] = []
    attributes = merge_attributes(specs, tags, attribute_notes)
    report += attribute_notes

    files = {
        "tags.py": render_tags(tags),
        "enums.py": render_enums(enums, enum_by_tag),
        "attributes.py": render_attributes(attributes, object_types, attribute_notes),
    }
    report.append(
        f"counts: {len(tags.members)} tag values, {len(enums)} enumerations"
        f" ({sum(m.mask for m in enums)} bit masks), {len(attributes)} attributes"
    )
    return files, report


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec_dir", type=Path, help="directory holding the spec HTML files")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "kmiptwist" / "vocabulary",
    )
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--quiet", action="store_true", help="do not print the report")
    args = parser.parse_args(argv)
    files, report = generate(args.spec_dir)
    if not args.quiet:
        for line in report:
            print(line, file=sys.stderr)
    stale = []
    for name, source in files.items():
        path = args.output_dir / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != source:
                stale.append(name)
        else:
            path.write_text(source, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
