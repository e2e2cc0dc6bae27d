"""The KMIP vocabulary: tags, enumerations and attribute rules.

Generated from the OASIS KMIP 1.1, 1.4 and 2.1 specifications by
``tools/gen_vocabulary.py`` (1.0 is a subset of 1.1, 2.0 of 2.1), so every name,
value and rule here is the spec's. Each table says which versions define an entry,
so that a response never carries a tag or value the client's version lacks. Pure
data and small helpers: no Twisted, nothing computed at import beyond the enums.
"""

from kmiptwist.vocabulary import enums
from kmiptwist.vocabulary.attributes import (
    ATTRIBUTES,
    ATTRIBUTES_BY_NAME,
    ATTRIBUTES_BY_TAG,
    AttributeRule,
)
from kmiptwist.vocabulary.enums import (
    ENUM_BY_TAG,
    ENUM_VALUE_VERSIONS,
    enum_from_xml_name,
    enum_xml_name,
)
from kmiptwist.vocabulary.tags import (
    TAG_BY_XML_NAME,
    TAG_SPEC_NAME,
    TAG_VERSIONS,
    TAG_XML_NAME,
    Tag,
)

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTES_BY_NAME",
    "ATTRIBUTES_BY_TAG",
    "ENUM_BY_TAG",
    "ENUM_VALUE_VERSIONS",
    "TAG_BY_XML_NAME",
    "TAG_SPEC_NAME",
    "TAG_VERSIONS",
    "TAG_XML_NAME",
    "AttributeRule",
    "Tag",
    "enum_from_xml_name",
    "enum_xml_name",
    "enums",
]
