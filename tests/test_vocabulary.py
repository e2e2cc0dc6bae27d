"""Tests for kmiptwist.vocabulary: spot values from the specs, coverage of every
name the OASIS test cases use, and the generator reproducing the checked-in files."""

from __future__ import annotations

import enum
import importlib.util
import os
import sys
import unittest
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import cast

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from kmiptwist.vocabulary import (
    ATTRIBUTES,
    ATTRIBUTES_BY_NAME,
    ATTRIBUTES_BY_TAG,
    ENUM_BY_TAG,
    ENUM_VALUE_VERSIONS,
    TAG_BY_XML_NAME,
    TAG_SPEC_NAME,
    TAG_VERSIONS,
    TAG_XML_NAME,
    Tag,
    enum_from_xml_name,
    enum_xml_name,
)
from kmiptwist.vocabulary.enums import (
    ENUM_CLASSES,
    ENUM_XML_NAMES,
    BatchErrorContinuationOption,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    HashingAlgorithm,
    KeyRoleType,
    ObjectType,
    Operation,
    ResultReason,
    RevocationReasonCode,
    State,
    StorageStatusMask,
)

REPO_ROOT = FilePath(__file__).parent().parent()
VERSIONS = frozenset({"1.1", "1.4", "2.1"})


def _shared_dir(variable: str, default: str) -> FilePath:
    """A directory named by an environment variable, or *default* under ../shared."""
    configured = os.environ.get(variable)
    if configured:
        return FilePath(configured)
    return REPO_ROOT.parent().preauthChild(default)


def _testcases_dir() -> FilePath:
    """The OASIS test-case directory, or SkipTest if it is absent."""
    path = _shared_dir("KMIP_TESTCASES_DIR", "shared/kmip/testcases")
    if not path.isdir():
        raise unittest.SkipTest(f"KMIP test cases not found at {path.path}")
    return path


def _spec_dir() -> FilePath:
    """The OASIS spec directory, or SkipTest if it is absent."""
    path = _shared_dir("KMIP_SPEC_DIR", "shared/kmip/spec")
    if not path.isdir():
        raise unittest.SkipTest(f"KMIP specifications not found at {path.path}")
    return path


def _testcase_documents() -> Iterator[tuple[str, ElementTree.Element]]:
    """(relative path, root element) of every test-case XML file."""
    base = _testcases_dir()
    paths = sorted(Path(base.path).rglob("*.xml"))
    if not paths:
        raise unittest.SkipTest(f"no KMIP test cases (*.xml) under {base.path}")
    for path in paths:
        yield str(path.relative_to(base.path)), ElementTree.parse(path).getroot()


def _messages(root: ElementTree.Element) -> list[ElementTree.Element]:
    """The KMIP messages of a test case (the <KMIP> wrapper is not a KMIP tag)."""
    return list(root) if root.tag == "KMIP" else [root]


def _value_enum(
    element: ElementTree.Element, parent: ElementTree.Element | None
) -> type[int] | None:
    """The enumeration an element's value belongs to, by its tag or 1.x Attribute Name."""
    tag = TAG_BY_XML_NAME[element.tag]
    if tag is Tag.ATTRIBUTE_VALUE and parent is not None:
        name = parent.find("AttributeName")
        if name is not None:
            rule = ATTRIBUTES_BY_NAME.get(name.get("value", ""))
            return None if rule is None else ENUM_BY_TAG.get(rule.tag)
    return ENUM_BY_TAG.get(tag)


def _load_generator() -> ModuleType:
    """Import tools/gen_vocabulary.py (tools/ is not a package)."""
    path = REPO_ROOT.child("tools").child("gen_vocabulary.py").path
    spec = importlib.util.spec_from_file_location("gen_vocabulary", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_vocabulary", module)
    spec.loader.exec_module(module)
    return module


class SpecValueTests(SynchronousTestCase):
    """Values a KMIP peer puts on the wire, checked against the spec text."""

    def test_tag_values(self) -> None:
        """Tags carry the spec's numbers, so our TTLV is readable by any KMIP peer."""
        self.assertEqual(Tag.UNIQUE_IDENTIFIER, 0x420094)
        self.assertEqual(Tag.UNIQUE_BATCH_ITEM_ID, 0x420093)
        self.assertEqual(Tag.ACTIVATION_DATE, 0x420001)
        self.assertEqual(Tag.REQUEST_MESSAGE, 0x420078)
        self.assertEqual(Tag.RESPONSE_MESSAGE, 0x42007B)
        self.assertEqual(Tag.BATCH_ITEM, 0x42000F)
        self.assertEqual(Tag.TEMPLATE_ATTRIBUTE, 0x420091)
        self.assertEqual(Tag.PRIVATE_KEY_TEMPLATE_ATTRIBUTE, 0x420065)
        self.assertEqual(Tag.X_509_CERTIFICATE_IDENTIFIER, 0x4200B5)
        self.assertEqual(Tag.ATTRIBUTES, 0x420125)
        self.assertEqual(Tag.ASYNCHRONOUS_CORRELATION_VALUES, 0x420176)

    def test_enumeration_values(self) -> None:
        """Enumeration values are the spec's, so results and states mean the same to clients."""
        self.assertEqual(ResultReason.ITEM_NOT_FOUND, 1)
        self.assertEqual(ResultReason.GENERAL_FAILURE, 0x100)
        self.assertEqual(State.PRE_ACTIVE, 1)
        self.assertEqual(State.DESTROYED_COMPROMISED, 6)
        self.assertEqual(ObjectType.SYMMETRIC_KEY, 2)
        self.assertEqual(ObjectType.CERTIFICATE_REQUEST, 0x0A)
        self.assertEqual(Operation.CREATE, 1)
        self.assertEqual(Operation.DISCOVER_VERSIONS, 0x1E)
        self.assertEqual(CryptographicAlgorithm.AES, 3)
        self.assertEqual(CryptographicAlgorithm.TRIPLE_DES, 2)
        self.assertEqual(CryptographicAlgorithm.RSA, 4)
        self.assertEqual(HashingAlgorithm.SHA_256, 6)
        self.assertEqual(BatchErrorContinuationOption.UNDO, 3)
        self.assertEqual(RevocationReasonCode.KEY_COMPROMISE, 2)

    def test_masks_are_flags(self) -> None:
        """Bit masks combine with "|", as Cryptographic Usage Mask values do on the wire."""
        self.assertTrue(issubclass(CryptographicUsageMask, enum.IntFlag))
        self.assertTrue(issubclass(StorageStatusMask, enum.IntFlag))
        usage = CryptographicUsageMask.ENCRYPT | CryptographicUsageMask.DECRYPT
        self.assertEqual(usage, 0x0C)
        self.assertFalse(issubclass(State, enum.IntFlag))

    def test_versions(self) -> None:
        """Version tables say what each version lacks, so a 1.1 client is never sent 2.x-only
        items and a 2.x client never gets removed 1.x ones."""
        self.assertEqual(TAG_VERSIONS[Tag.UNIQUE_IDENTIFIER], VERSIONS)
        self.assertEqual(TAG_VERSIONS[Tag.ATTRIBUTE_INDEX], {"1.1", "1.4"})
        self.assertEqual(TAG_VERSIONS[Tag.TEMPLATE_ATTRIBUTE], {"1.1", "1.4"})
        self.assertEqual(TAG_VERSIONS[Tag.ATTRIBUTES], {"2.1"})
        self.assertEqual(TAG_VERSIONS[Tag.SENSITIVE], {"1.4", "2.1"})
        self.assertEqual(ENUM_VALUE_VERSIONS[("ObjectType", ObjectType.TEMPLATE)], {"1.1", "1.4"})
        self.assertEqual(ENUM_VALUE_VERSIONS[("ObjectType", ObjectType.PGP_KEY)], {"1.4", "2.1"})
        self.assertEqual(
            ENUM_VALUE_VERSIONS[("ResultReason", ResultReason.ITEM_NOT_FOUND)], VERSIONS
        )
        tags = {value for name, value in vars(Tag).items() if name.isupper()}
        self.assertEqual(set(TAG_VERSIONS), tags)
        self.assertTrue(all(type(value) is int for value in tags))
        for versions in TAG_VERSIONS.values():
            self.assertTrue(versions and versions <= VERSIONS)

    def test_spec_names(self) -> None:
        """Display names are the spec's, for logs and the 1.x Attribute Name text."""
        self.assertEqual(TAG_SPEC_NAME[Tag.UNIQUE_IDENTIFIER], "Unique Identifier")
        self.assertEqual(TAG_SPEC_NAME[Tag.TEMPLATE_ATTRIBUTE], "Template-Attribute")
        # The Profiles' rule keeps "_" before a digit: "X.509" -> "X_509".
        self.assertEqual(
            TAG_XML_NAME[Tag.X_509_CERTIFICATE_IDENTIFIER], "X_509CertificateIdentifier"
        )


class EnumerationMappingTests(SynchronousTestCase):
    """Which enumeration a tag carries, and the XML/JSON spellings of values."""

    def test_enum_by_tag(self) -> None:
        """A decoder knows how to name every Enumeration it reads, including the tags whose
        enumeration has another name."""
        self.assertIs(ENUM_BY_TAG[Tag.OBJECT_TYPE], ObjectType)
        self.assertIs(ENUM_BY_TAG[Tag.CRYPTOGRAPHIC_USAGE_MASK], CryptographicUsageMask)
        self.assertIs(ENUM_BY_TAG[Tag.RESULT_REASON], ResultReason)
        self.assertIs(
            ENUM_BY_TAG[Tag.BATCH_ERROR_CONTINUATION_OPTION], BatchErrorContinuationOption
        )
        self.assertIs(ENUM_BY_TAG[Tag.REVOCATION_REASON_CODE], RevocationReasonCode)
        self.assertIs(ENUM_BY_TAG[Tag.KEY_ROLE_TYPE], KeyRoleType)
        self.assertIs(ENUM_BY_TAG[Tag.MASK_GENERATOR_HASHING_ALGORITHM], HashingAlgorithm)
        self.assertIs(ENUM_BY_TAG[Tag.ATTRIBUTE_REFERENCE], Tag)

    def test_every_enumeration_has_a_tag(self) -> None:
        """No enumeration is unreachable from the wire."""
        reachable = set(ENUM_BY_TAG.values())
        for name, cls in ENUM_CLASSES.items():
            self.assertIn(cls, reachable, name)

    def test_xml_names(self) -> None:
        """XML/JSON value names follow the KMIP Profiles' normalisation rules."""
        self.assertEqual(enum_from_xml_name(ObjectType, "SymmetricKey"), 2)
        self.assertEqual(enum_from_xml_name(State, "PreActive"), 1)
        self.assertEqual(enum_from_xml_name(CryptographicAlgorithm, "DES3"), 2)
        self.assertEqual(enum_from_xml_name(HashingAlgorithm, "SHA_256"), 6)
        self.assertEqual(enum_from_xml_name(Operation, "ReKeyKeyPair"), Operation.RE_KEY_KEY_PAIR)
        self.assertEqual(enum_xml_name(ObjectType, ObjectType.SYMMETRIC_KEY), "SymmetricKey")
        self.assertEqual(enum_xml_name(CryptographicAlgorithm, 2), "DES3")
        self.assertEqual(enum_xml_name(Tag, Tag.UNIQUE_IDENTIFIER), "UniqueIdentifier")
        self.assertEqual(enum_from_xml_name(Tag, "UniqueIdentifier"), Tag.UNIQUE_IDENTIFIER)

    def test_xml_masks(self) -> None:
        """Masks read and write as space-separated flag names, unnamed bits as hex."""
        self.assertEqual(enum_from_xml_name(CryptographicUsageMask, "Encrypt Decrypt"), 0x0C)
        self.assertEqual(enum_from_xml_name(CryptographicUsageMask, "Encrypt|Decrypt"), 0x0C)
        self.assertEqual(enum_from_xml_name(CryptographicUsageMask, "Sign 0x00100000"), 0x100001)
        self.assertEqual(enum_xml_name(CryptographicUsageMask, 0x0C), "Encrypt Decrypt")
        self.assertEqual(enum_xml_name(CryptographicUsageMask, 0x40000004), "Encrypt 0x40000000")
        self.assertEqual(enum_xml_name(CryptographicUsageMask, 0), "0x00000000")

    def test_xml_extensions_and_errors(self) -> None:
        """Extension values travel as hex; an unknown name is an error, not a silent 0."""
        self.assertEqual(enum_from_xml_name(ObjectType, "0x80000001"), 0x80000001)
        self.assertEqual(enum_xml_name(ObjectType, 0x80000001), "0x80000001")
        self.assertRaises(ValueError, enum_from_xml_name, ObjectType, "NoSuchObject")
        self.assertRaises(ValueError, enum_from_xml_name, CryptographicUsageMask, "")
        self.assertRaises(TypeError, enum_from_xml_name, int, "x")

    def test_xml_round_trip(self) -> None:
        """Every named value survives XML encoding and decoding unchanged."""
        for name, cls in ENUM_CLASSES.items():
            members = [member.value for member in cast(type[enum.Enum], cls)]
            for member in members:
                text = enum_xml_name(cls, member)
                self.assertEqual(enum_from_xml_name(cls, text), member, (name, text))
            self.assertTrue(set(ENUM_XML_NAMES[name].values()) >= set(members), name)


class AttributeTableTests(SynchronousTestCase):
    """The attribute rules the server enforces."""

    def test_lookup(self) -> None:
        """An attribute is found by its 1.x name and by its 2.x tag, to the same rule."""
        rule = ATTRIBUTES_BY_NAME["Cryptographic Algorithm"]
        self.assertIs(ATTRIBUTES_BY_TAG[Tag.CRYPTOGRAPHIC_ALGORITHM], rule)
        self.assertEqual(rule.tag, Tag.CRYPTOGRAPHIC_ALGORITHM)
        self.assertEqual(rule.item_type, "Enumeration")
        self.assertEqual(len(ATTRIBUTES_BY_NAME), len(ATTRIBUTES))
        self.assertEqual(len(ATTRIBUTES_BY_TAG), len(ATTRIBUTES))

    def test_rules(self) -> None:
        """Rules match the spec, e.g. a client cannot set Unique Identifier or State but can
        add several Names."""
        unique_identifier = ATTRIBUTES_BY_NAME["Unique Identifier"]
        self.assertTrue(unique_identifier.server_set_only)
        self.assertFalse(unique_identifier.client_modifiable)
        self.assertFalse(unique_identifier.multi_valued)
        self.assertEqual(unique_identifier.item_type, "TextString")
        self.assertIsNone(unique_identifier.applies_to)
        self.assertTrue(ATTRIBUTES_BY_NAME["State"].server_set_only)
        name = ATTRIBUTES_BY_NAME["Name"]
        self.assertTrue(name.multi_valued)
        self.assertTrue(name.client_modifiable)
        self.assertTrue(name.client_deletable)
        self.assertEqual(name.item_type, "Structure")
        self.assertEqual(ATTRIBUTES_BY_NAME["Cryptographic Usage Mask"].item_type, "Integer")
        self.assertEqual(ATTRIBUTES_BY_NAME["Activation Date"].item_type, "DateTime")
        self.assertEqual(ATTRIBUTES_BY_NAME["Lease Time"].item_type, "Interval")
        self.assertEqual(ATTRIBUTES_BY_NAME["Certificate Length"].item_type, "Integer")

    def test_versions_and_applicability(self) -> None:
        """Attributes dropped by 2.x and added by 2.x are told apart, as are object types."""
        self.assertEqual(ATTRIBUTES_BY_NAME["Operation Policy Name"].versions, {"1.1", "1.4"})
        self.assertEqual(ATTRIBUTES_BY_NAME["Quantum Safe"].versions, {"2.1"})
        self.assertEqual(ATTRIBUTES_BY_NAME["Unique Identifier"].versions, VERSIONS)
        self.assertIsNone(ATTRIBUTES_BY_NAME["Quantum Safe"].client_modifiable_1x)
        self.assertEqual(
            ATTRIBUTES_BY_NAME["X.509 Certificate Subject"].applies_to,
            {ObjectType.CERTIFICATE},
        )
        valid = {
            "Structure",
            "Integer",
            "LongInteger",
            "BigInteger",
            "Enumeration",
            "Boolean",
            "TextString",
            "ByteString",
            "DateTime",
            "Interval",
            "DateTimeExtended",
        }
        for rule in ATTRIBUTES:
            self.assertIn(rule.item_type, valid, rule.name)
            self.assertTrue(rule.versions and rule.versions <= VERSIONS, rule.name)
            self.assertTrue(rule.versions <= TAG_VERSIONS[rule.tag], rule.name)
            self.assertFalse(rule.name.startswith(("x-", "y-")), rule.name)


class TestCaseCoverageTests(SynchronousTestCase):
    """Everything the OASIS 1.4 and 2.1 test cases say can be named by the vocabulary."""

    def test_element_names_resolve(self) -> None:
        """Every XML element of every test case is a known tag, so none of those messages
        holds an item we cannot name."""
        unknown = set()
        for path, root in _testcase_documents():
            for message in _messages(root):
                for element in message.iter():
                    if element.tag not in TAG_BY_XML_NAME:
                        unknown.add((element.tag, path))
        self.assertEqual(sorted(unknown), [])

    def test_enumeration_values_resolve(self) -> None:
        """Every Enumeration value and every symbolic mask in the test cases maps to a number
        of the right enumeration, so those requests can be built and checked."""
        failures = []
        checked = 0
        for path, root in _testcase_documents():
            for message in _messages(root):
                for parent in message.iter():
                    for element in parent:
                        kind, text = element.get("type"), element.get("value", "")
                        symbolic_integer = kind == "Integer" and not _is_number(text)
                        if kind != "Enumeration" and not symbolic_integer:
                            continue
                        checked += 1
                        cls = _value_enum(element, parent)
                        if cls is None:
                            failures.append((path, element.tag, text, "no enumeration"))
                            continue
                        if symbolic_integer and not issubclass(cls, enum.IntFlag):
                            failures.append((path, element.tag, text, "not a mask"))
                            continue
                        try:
                            enum_from_xml_name(cls, text)
                        except ValueError as error:
                            failures.append((path, element.tag, text, str(error)))
        self.assertEqual(failures, [])
        self.assertGreater(checked, 1000)

    def test_attribute_names_resolve(self) -> None:
        """Every Attribute Name in the test cases is in the attribute table, a custom x-/y-
        name, or a 2.x vendor attribute, so their attribute requests can be served."""
        unknown = set()
        checked = 0
        for path, root in _testcase_documents():
            for message in _messages(root):
                for parent in message.iter():
                    if parent.find("VendorIdentification") is not None:
                        continue  # a 2.x vendor attribute: any name goes
                    for name in parent.findall("AttributeName"):
                        checked += 1
                        text = name.get("value", "")
                        if text.startswith(("x-", "y-")) or text in ATTRIBUTES_BY_NAME:
                            continue
                        unknown.add((text, path))
        self.assertEqual(sorted(unknown), [])
        self.assertGreater(checked, 100)


def _is_number(text: str) -> bool:
    """Whether an XML Integer value is numeric (decimal or 0x hex) rather than symbolic."""
    try:
        int(text, 0)
    except ValueError:
        return False
    return True


class GeneratorTests(SynchronousTestCase):
    """The checked-in modules are exactly what the generator makes from the specs."""

    def test_reproducible(self) -> None:
        """Regenerating from the spec changes nothing, so nobody hand-edited the tables and
        the script in the repo is the one that made them."""
        spec_dir = _spec_dir()
        generator = _load_generator()
        files, _report = generator.generate(Path(spec_dir.path))
        vocabulary = REPO_ROOT.child("kmiptwist").child("vocabulary")
        self.assertEqual(sorted(files), ["attributes.py", "enums.py", "tags.py"])
        for name, source in files.items():
            checked_in = vocabulary.child(name).getContent().decode("utf-8")
            self.assertTrue(checked_in == source, f"{name} differs from the generator output")

    def test_xml_name_rule(self) -> None:
        """The generator's XML-name rule matches the KMIP Profiles examples."""
        xml_name = _load_generator().xml_name
        self.assertEqual(xml_name("Unique Identifier"), "UniqueIdentifier")
        self.assertEqual(xml_name("Template-Attribute"), "TemplateAttribute")
        self.assertEqual(xml_name("X.509 Certificate Identifier"), "X_509CertificateIdentifier")
        self.assertEqual(xml_name("PKCS#11 Function"), "PKCS_11Function")
        self.assertEqual(xml_name("3DES"), "DES3")
        self.assertEqual(xml_name("SHA-256"), "SHA_256")
        self.assertEqual(xml_name("Pre-Active"), "PreActive")
        self.assertEqual(xml_name("ANSI X9.31"), "ANSIX9_31")
        self.assertEqual(xml_name("Unique Batch Item ID"), "UniqueBatchItemID")
