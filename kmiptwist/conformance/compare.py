"""Compare a server's response with the one a test case expects, structurally.

Items must agree in tag, type and value, structures child by child, except for
these tolerated differences (README, "Conformance"; each is something the KMIP
specification leaves to the server, or that changes from run to run):

1. **Placeholders.** ``$UNIQUE_IDENTIFIER_0``, ``$IV_COUNTER_NONCE``, ``$DATA_1``...
   in an expected response take the value the server sent the first time they
   appear; every later appearance, in responses or in requests, must be that value.
   A request's ``$TAG_n`` that no expected response holds is the n-th value of that
   tag the server sent (see :class:`Bindings`).
2. **Times.** ``$NOW``, ``$NOW-3600``, ``$NOW+3600`` match a time within
   ``time_tolerance`` seconds (default 300) of now, moved by the offset; dates
   written out in the case are compared exactly.
3. **Result Message and Server Correlation Value** are the server's free text:
   their wording and presence are not compared (Result Status and Reason are).
4. **Random values.** The Key Material and Digest Value of an object the server
   generated during the case (Create, Create Key Pair, Re-key, Derive Key) are the
   server's random choice: they must have the same shape (tags, types, lengths)
   but not the same bytes.  So are the outputs (Data, MAC Data, Signature Data,
   Authenticated Encryption Tag) of a cryptographic operation that uses such a key
   (the cases were recorded with a server whose RNG gave other keys); the IV/Counter/
   Nonce an Encrypt chose itself because the request had none (Random IV), and the
   Data and tag made with it; the ciphertext of an Encrypt with a public key (RSA
   OAEP and PKCS#1 v1.5 pad with random bytes); and the Data of RNG Retrieve.
5. **Attributes that always have a value.** Listing every attribute of an object
   (Get Attributes naming none, Get Attribute List), the server may include ones the
   specification says always have a value that the case leaves out (TL-M-3-14 lists
   Sensitive and Extractable in Get Attribute List and leaves them out of Get
   Attributes for the same key).
6. **Order of unordered lists.** The attributes of a response (1.x ``Attribute``,
   the members of 2.x ``Attributes``), attribute names and references, and the
   lists Query returns may come in any order.
7. **Query answers about the server itself.** Vendor Identification and Server
   Information are the server's own (present when the case expects them); the
   Operations, Object Types and Profiles of a Query response must include every
   one the case lists, and may include more.
8. **Attribute names** are compared with their whitespace artefacts folded
   ("Cryptographic  Usage Mask").
9. **Which random number generator.** The value of a Random Number Generator
   attribute names the server's own RNG (kmiptwist: the operating system's,
   "Unspecified"); it must be present where expected.
10. **Protocol Version** of a response is checked against the request's, which the
   specification says a server answers in (OMOS-O-1-14 expects 1.3 in answer to a
   1.4 request: an error in that file).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
from attrs import define, field, frozen

from kmiptwist.ttlv import Item, ItemType
from kmiptwist.vocabulary.attributes import ATTRIBUTES_BY_NAME, ATTRIBUTES_BY_TAG
from kmiptwist.vocabulary.enums import ObjectType, Operation, enum_xml_name
from kmiptwist.vocabulary.tags import TAG_XML_NAME, Tag
from kmiptwist.xml_encoding import item_to_element, normalise_attribute_name

__all__ = [
    "Placeholder",
    "Bindings",
    "Difference",
    "Comparison",
    "UnboundPlaceholder",
    "DEFAULT_TIME_TOLERANCE",
]

DEFAULT_TIME_TOLERANCE = 300

#: Children whose order carries no meaning, by parent tag (None: under any parent).
_UNORDERED_ANYWHERE = frozenset({Tag.ATTRIBUTE, Tag.ATTRIBUTE_NAME, Tag.ATTRIBUTE_REFERENCE})
#: Free text the server chooses, never compared.
_SERVER_TEXT = frozenset({Tag.RESULT_MESSAGE, Tag.SERVER_CORRELATION_VALUE})
#: Query answers that are the server's own: present when expected, content free.
_SERVER_OWN_IN_QUERY = frozenset({Tag.VENDOR_IDENTIFICATION, Tag.SERVER_INFORMATION})
#: Query lists where the server may claim more than the case lists.
_SUPERSET_IN_QUERY = frozenset({Tag.OPERATION, Tag.OBJECT_TYPE, Tag.PROFILE_INFORMATION})
#: What is random in an object the server generated.
_RANDOM_SUBTREES = frozenset({Tag.KEY_MATERIAL, Tag.DIGEST_VALUE})
#: The outputs of a cryptographic operation, random when its key or IV was.
_RANDOM_OUTPUTS = frozenset(
    {
        Tag.DATA,
        Tag.MAC_DATA,
        Tag.SIGNATURE_DATA,
        Tag.AUTHENTICATED_ENCRYPTION_TAG,
        Tag.IV_COUNTER_NONCE,
    }
)
#: Operations whose outputs depend on their key.
_KEYED_OPERATIONS = frozenset({"Encrypt", "Decrypt", "Sign", "MAC"})
#: Operations whose response names objects with server-generated material.
GENERATING_OPERATIONS = frozenset({"Create", "CreateKeyPair", "ReKey", "ReKeyKeyPair", "DeriveKey"})
_GENERATED_ID_TAGS = (
    Tag.UNIQUE_IDENTIFIER,
    Tag.PRIVATE_KEY_UNIQUE_IDENTIFIER,
    Tag.PUBLIC_KEY_UNIQUE_IDENTIFIER,
)


class UnboundPlaceholder(LookupError):
    """A request uses a placeholder no earlier response has given a value."""


@frozen
class Placeholder:
    """A ``$NAME`` (or ``$NOW±n``) value of an expected response."""

    text: str

    @property
    def time_offset(self) -> int | None:
        """The offset of a ``$NOW``/``$NOW±n`` placeholder, None for other names."""
        if not self.text.startswith("$NOW"):
            return None
        rest = self.text[len("$NOW") :]
        if not rest:
            return 0
        try:
            return int(rest)
        except ValueError:
            return None


_INDEXED = re.compile(r"^\$([A-Z][A-Z0-9_]*?)(?:_(\d+))?$")


@define
class Bindings:
    """The values placeholders took in one case run.

    A placeholder an expected response holds is bound to what the server sent there.
    Some cases write a value the server chose literally in the expected response and
    name it in a later request (``$DATA_0``, ``$IV_COUNTER_NONCE``); such a name is the
    tag's name, and stands for the n-th distinct value (without a number, the latest)
    of that tag in the server's responses so far.
    """

    values: dict[str, tuple[int, Any]] = field(factory=dict)
    seen: dict[int, list[Any]] = field(factory=dict)

    def for_request(self, text: str, item_type: int, now: int) -> Any:
        """The value a request's placeholder stands for."""
        offset = Placeholder(text).time_offset
        if offset is not None:
            if item_type == ItemType.DATE_TIME_EXTENDED:
                return (now + offset) * 1_000_000
            return now + offset
        found = self.values.get(text)
        if found is not None:
            return found[1]
        seen = self._seen_value(text)
        if seen is not None:
            return seen
        raise UnboundPlaceholder(f"{text} is used before any response gave it a value")

    def _seen_value(self, text: str) -> Any:
        match = _INDEXED.match(text)
        if match is None:
            return None
        tag = getattr(Tag, match[1], None)
        if tag is None:
            return None
        values = self.seen.get(int(tag), [])
        if match[2] is None:
            return values[-1] if values else None
        index = int(match[2])
        return values[index] if index < len(values) else None

    def observe(self, response: Item) -> None:
        """Remember every value the server sent, by tag, for ``$TAG_n`` placeholders."""
        for item in response.walk():
            if item.type == ItemType.STRUCTURE:
                continue
            values = self.seen.setdefault(item.tag, [])
            if item.value not in values:
                values.append(item.value)

    def copy(self) -> Bindings:
        """A copy to try a match on without committing its bindings."""
        return Bindings(dict(self.values), self.seen)


@frozen
class Difference:
    """The first place where the response differs from the expected one."""

    path: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, got {self.actual}"


def _name(tag: int) -> str:
    return TAG_XML_NAME.get(tag, f"0x{tag:06X}")


def _show(item: Item | None, attribute_name: str | None = None) -> str:
    """A short XML rendering of an item, for a difference report."""
    if item is None:
        return "nothing"
    if item.type != ItemType.STRUCTURE:
        value = item.value
        if isinstance(value, Placeholder):
            return f"<{_name(item.tag)} value={value.text}>"
        try:
            element = item_to_element(item, attribute_name)
            return f"<{_name(item.tag)} value={element.get('value')!r}>"
        except ValueError:
            return f"<{_name(item.tag)} value={value!r}>"
    return f"<{_name(item.tag)}> with {len(item.value)} items"


@define
class Comparison:
    """Compares one case's responses, carrying placeholder bindings between them."""

    bindings: Bindings
    now: Callable[[], float]
    time_tolerance: int = DEFAULT_TIME_TOLERANCE
    generated: set[str] = field(factory=set)
    #: Public keys the case registered or created (their encryptions are random).
    public_keys: set[str] = field(factory=set)
    _request_items: list[Item] = field(factory=list)

    # -- entry point ---------------------------------------------------------

    def compare_response(
        self, expected: Item, actual: Item, request: Item | None = None
    ) -> Difference | None:
        """The first difference between two Response Messages, None when they match.

        With ``request``, the response must carry the request's Protocol Version (the
        spec's rule; one case file expects 1.3 in answer to a 1.4 request).
        """
        self._request_items = []
        if request is not None:
            expected = _answering_version(expected, request)
            self._request_items = request.find_all(Tag.BATCH_ITEM)
            self._note_public_keys(self._request_items, actual)
        self._note_generated(actual)
        self.bindings.observe(actual)
        return self._item(expected, actual, _name(expected.tag), _Scope())

    def _enter(self, scope: _Scope, expected: Item, actual: Item) -> _Scope:
        """The scope of the children of ``expected``/``actual``."""
        tag = expected.tag
        if tag == Tag.BATCH_ITEM:
            request = None
            if self._request_items:
                request = self._request_items.pop(0).find(Tag.REQUEST_PAYLOAD)
            operation = _operation_name(expected.get(Tag.OPERATION))
            names_none = request is None or not any(
                c.tag in (Tag.ATTRIBUTE_NAME, Tag.ATTRIBUTE_REFERENCE) for c in request.value
            )
            return _Scope(
                operation=operation,
                listing_all=operation in ("GetAttributes", "GetAttributeList") and names_none,
                request_payload=request,
            )
        if tag == Tag.RESPONSE_PAYLOAD:
            identifier = actual.get(Tag.UNIQUE_IDENTIFIER)
            generated = isinstance(identifier, str) and identifier in self.generated
            return _Scope(
                operation=scope.operation,
                random=generated,
                query_payload=scope.operation == "Query",
                listing_all=scope.listing_all,
                random_output=self._random_output(scope, actual, generated),
            )
        if scope.random and tag in _RANDOM_SUBTREES:
            return _Scope(scope.operation, True, True)
        if tag == Tag.ATTRIBUTE:
            name = expected.get(Tag.ATTRIBUTE_NAME)
            return attrs.evolve(scope, attribute_name=name if isinstance(name, str) else None)
        return scope

    def _random_output(self, scope: _Scope, actual: Item, generated: bool) -> bool:
        """Whether the outputs in this response payload are the server's random choice."""
        operation = scope.operation
        if operation == "RNGRetrieve":
            return True
        if operation in _KEYED_OPERATIONS and generated:
            return True
        if operation != "Encrypt":
            return False
        identifier = actual.get(Tag.UNIQUE_IDENTIFIER)
        if isinstance(identifier, str) and identifier in self.public_keys:
            return True
        request = scope.request_payload
        chose_iv = request is not None and request.find(Tag.IV_COUNTER_NONCE) is None
        return chose_iv and actual.find(Tag.IV_COUNTER_NONCE) is not None

    def _note_public_keys(self, requests: list[Item], actual: Item) -> None:
        """Remember the public keys a Register or Create Key Pair of this case made."""
        if actual.type != ItemType.STRUCTURE:
            return
        for request, response in zip(requests, actual.find_all(Tag.BATCH_ITEM), strict=False):
            payload = response.find(Tag.RESPONSE_PAYLOAD)
            asked = request.find(Tag.REQUEST_PAYLOAD)
            if payload is None or asked is None:
                continue
            operation = _operation_name(response.get(Tag.OPERATION))
            found = None
            if operation == "Register" and asked.get(Tag.OBJECT_TYPE) == ObjectType.PUBLIC_KEY:
                found = payload.get(Tag.UNIQUE_IDENTIFIER)
            elif operation == "CreateKeyPair":
                found = payload.get(Tag.PUBLIC_KEY_UNIQUE_IDENTIFIER)
            if isinstance(found, str):
                self.public_keys.add(found)

    def _note_generated(self, actual: Item) -> None:
        """Remember the objects a generating operation made (their material is random)."""
        if actual.type != ItemType.STRUCTURE:
            return
        for batch_item in actual.find_all(Tag.BATCH_ITEM):
            operation = batch_item.get(Tag.OPERATION)
            if _operation_name(operation) not in GENERATING_OPERATIONS:
                continue
            payload = batch_item.find(Tag.RESPONSE_PAYLOAD)
            if payload is None:
                continue
            for tag in _GENERATED_ID_TAGS:
                for found in payload.find_all(tag):
                    if isinstance(found.value, str):
                        self.generated.add(found.value)

    # -- items -----------------------------------------------------------------

    def _item(self, expected: Item, actual: Item, path: str, scope: _Scope) -> Difference | None:
        if expected.tag != actual.tag:
            return Difference(path, _show(expected), _show(actual))
        if expected.type != actual.type:
            return Difference(
                path,
                f"type {ItemType.NAMES.get(expected.type)}",
                f"type {ItemType.NAMES.get(actual.type)}",
            )
        if expected.tag == Tag.RANDOM_NUMBER_GENERATOR:
            return None
        if _is_rng_attribute(expected):
            if _is_rng_attribute(actual):
                return None
            return Difference(path, _show_labelled(expected), _show_labelled(actual))
        if expected.type == ItemType.STRUCTURE:
            return self._structure(expected, actual, path, self._enter(scope, expected, actual))
        if isinstance(expected.value, Placeholder):
            return self._placeholder(expected, actual, path)
        if scope.random and expected.tag in _RANDOM_SUBTREES or scope.random_leaf:
            return self._same_shape(expected, actual, path)
        if scope.random_output and expected.tag in _RANDOM_OUTPUTS:
            return self._same_shape(expected, actual, path)
        if expected.tag == Tag.ATTRIBUTE_NAME and isinstance(expected.value, str):
            if normalise_attribute_name(expected.value) == normalise_attribute_name(
                str(actual.value)
            ):
                return None
        elif expected.value == actual.value:
            return None
        return Difference(
            path, _show(expected, scope.attribute_name), _show(actual, scope.attribute_name)
        )

    def _placeholder(self, expected: Item, actual: Item, path: str) -> Difference | None:
        placeholder: Placeholder = expected.value
        offset = placeholder.time_offset
        if offset is not None and expected.type in (
            ItemType.DATE_TIME,
            ItemType.DATE_TIME_EXTENDED,
        ):
            value = actual.value
            if expected.type == ItemType.DATE_TIME_EXTENDED:
                value //= 1_000_000
            target = int(self.now()) + offset
            if abs(value - target) <= self.time_tolerance:
                return None
            return Difference(
                path,
                f"a time within {self.time_tolerance} s of {placeholder.text}",
                f"{_show(actual)} ({value - target:+d} s)",
            )
        bound = self.bindings.values.get(placeholder.text)
        if bound is None:
            self.bindings.values[placeholder.text] = (actual.type, actual.value)
            return None
        if bound == (actual.type, actual.value):
            return None
        return Difference(path, f"{placeholder.text} (= {bound[1]!r})", _show(actual))

    def _same_shape(self, expected: Item, actual: Item, path: str) -> Difference | None:
        """Random bytes: only their length must match."""
        if isinstance(expected.value, (bytes, str)) and len(expected.value) != len(actual.value):
            return Difference(
                path,
                f"{len(expected.value)} random bytes",
                f"{len(actual.value)} bytes",
            )
        return None

    # -- structures ------------------------------------------------------------

    def _structure(
        self, expected: Item, actual: Item, path: str, scope: _Scope
    ) -> Difference | None:
        wanted = [c for c in expected.value if c.tag not in _SERVER_TEXT]
        got = [c for c in actual.value if c.tag not in _SERVER_TEXT]
        if scope.query_payload:
            return self._query_payload(wanted, got, path, scope)
        unordered = _UNORDERED_ANYWHERE | (
            frozenset(c.tag for c in wanted + got)
            if expected.tag == Tag.ATTRIBUTES
            else frozenset()
        )
        difference = self._in_order(
            [c for c in wanted if c.tag not in unordered],
            [c for c in got if c.tag not in unordered],
            path,
            scope,
        )
        if difference is not None:
            return difference
        listing = scope.listing_all and expected.tag in (Tag.RESPONSE_PAYLOAD, Tag.ATTRIBUTES)
        for tag in sorted({c.tag for c in wanted + got if c.tag in unordered}):
            difference = self._any_order(
                [c for c in wanted if c.tag == tag],
                [c for c in got if c.tag == tag],
                path,
                scope,
                extra_allowed=_always_present if listing else _never,
            )
            if difference is not None:
                return difference
        return None

    def _in_order(
        self, wanted: list[Item], got: list[Item], path: str, scope: _Scope
    ) -> Difference | None:
        counts: dict[int, int] = {}
        for position, expected in enumerate(wanted):
            index = counts.get(expected.tag, 0)
            counts[expected.tag] = index + 1
            child_path = f"{path}/{_name(expected.tag)}" + (f"[{index}]" if index else "")
            if position >= len(got):
                return Difference(child_path, _show(expected), "nothing (missing)")
            actual = got[position]
            if actual.tag != expected.tag:
                if any(c.tag == expected.tag for c in got[position:]):
                    return Difference(
                        f"{path}/{_name(actual.tag)}", "nothing", f"{_show(actual)} (unexpected)"
                    )
                return Difference(child_path, _show(expected), "nothing (missing)")
            difference = self._item(expected, actual, child_path, scope)
            if difference is not None:
                return difference
        if len(got) > len(wanted):
            extra = got[len(wanted)]
            return Difference(
                f"{path}/{_name(extra.tag)}", "nothing", f"{_show(extra)} (unexpected)"
            )
        return None

    def _any_order(
        self,
        wanted: list[Item],
        got: list[Item],
        path: str,
        scope: _Scope,
        extra_allowed: Callable[[Item], bool],
    ) -> Difference | None:
        """Match every expected item with a distinct actual one, in any order."""
        remaining = list(got)
        for expected in wanted:
            label = _label(expected)
            child_path = f"{path}/{label}"
            match = None
            first_difference: Difference | None = None
            for candidate in remaining:
                trial = Comparison(
                    self.bindings.copy(),
                    self.now,
                    self.time_tolerance,
                    self.generated,
                    self.public_keys,
                )
                difference = trial._item(expected, candidate, child_path, scope)
                if difference is None:
                    self.bindings = trial.bindings
                    match = candidate
                    break
                if first_difference is None or _same_label(candidate, expected):
                    first_difference = difference
            if match is None:
                if (
                    first_difference is not None
                    and expected.type == ItemType.STRUCTURE
                    and any(_same_label(c, expected) for c in remaining)
                ):
                    return first_difference
                return Difference(child_path, _show_labelled(expected), "nothing (missing)")
            remaining.remove(match)
        remaining = [item for item in remaining if not extra_allowed(item)]
        if remaining:
            extra = remaining[0]
            return Difference(
                f"{path}/{_label(extra)}", "nothing", f"{_show_labelled(extra)} (unexpected)"
            )
        return None

    def _query_payload(
        self, wanted: list[Item], got: list[Item], path: str, scope: _Scope
    ) -> Difference | None:
        for own in sorted(_SERVER_OWN_IN_QUERY):
            if any(c.tag == own for c in wanted) and not any(c.tag == own for c in got):
                return Difference(f"{path}/{_name(own)}", f"<{_name(own)}>", "nothing (missing)")
        wanted = [c for c in wanted if c.tag not in _SERVER_OWN_IN_QUERY]
        got = [c for c in got if c.tag not in _SERVER_OWN_IN_QUERY]
        for tag in sorted({c.tag for c in wanted + got}):
            difference = self._any_order(
                [c for c in wanted if c.tag == tag],
                [c for c in got if c.tag == tag],
                path,
                scope,
                extra_allowed=_always if tag in _SUPERSET_IN_QUERY else _never,
            )
            if difference is not None:
                return difference
        return None


@frozen
class _Scope:
    """Where the comparison is: inside a Query payload, an object with random material,
    a listing of every attribute of an object."""

    operation: str | None = None
    random: bool = False
    random_leaf: bool = False
    query_payload: bool = False
    listing_all: bool = False
    attribute_name: str | None = None
    #: The outputs of a cryptographic operation are random (see the module docstring).
    random_output: bool = False
    request_payload: Item | None = None


def _never(item: Item) -> bool:
    return False


def _always(item: Item) -> bool:
    return True


def _always_present(item: Item) -> bool:
    """Whether ``item`` names or holds an attribute the spec says always has a value."""
    rule = None
    if item.tag == Tag.ATTRIBUTE and item.type == ItemType.STRUCTURE:
        name = item.get(Tag.ATTRIBUTE_NAME)
        rule = (
            ATTRIBUTES_BY_NAME.get(normalise_attribute_name(name))
            if isinstance(name, str)
            else None
        )
    elif item.tag == Tag.ATTRIBUTE_NAME and isinstance(item.value, str):
        rule = ATTRIBUTES_BY_NAME.get(normalise_attribute_name(item.value))
    elif item.tag == Tag.ATTRIBUTE_REFERENCE and item.type == ItemType.ENUMERATION:
        rule = ATTRIBUTES_BY_TAG.get(item.value)
    else:
        rule = ATTRIBUTES_BY_TAG.get(item.tag)
    return rule is not None and rule.always_present


def _answering_version(expected: Item, request: Item) -> Item:
    """``expected`` with its header's Protocol Version replaced by the request's."""
    request_header = request.find(Tag.REQUEST_HEADER)
    version = None if request_header is None else request_header.find(Tag.PROTOCOL_VERSION)
    header = expected.find(Tag.RESPONSE_HEADER)
    if version is None or header is None:
        return expected
    new_header = Item(
        header.tag,
        header.type,
        [version if c.tag == Tag.PROTOCOL_VERSION else c for c in header.value],
    )
    return Item(
        expected.tag,
        expected.type,
        [new_header if c is header else c for c in expected.value],
    )


def _operation_name(operation: Any) -> str | None:
    if not isinstance(operation, int):
        return None
    return enum_xml_name(Operation, operation)


def _is_rng_attribute(item: Item) -> bool:
    """A 1.x Random Number Generator attribute (its value is the server's own RNG)."""
    if item.tag != Tag.ATTRIBUTE or item.type != ItemType.STRUCTURE:
        return False
    name = item.get(Tag.ATTRIBUTE_NAME)
    return isinstance(name, str) and normalise_attribute_name(name) == "Random Number Generator"


def _label(item: Item) -> str:
    """A child's name in a path, with the attribute it is when it is one."""
    if item.tag == Tag.ATTRIBUTE and item.type == ItemType.STRUCTURE:
        name = item.get(Tag.ATTRIBUTE_NAME)
        if isinstance(name, str):
            return f"Attribute[{normalise_attribute_name(name)!r}]"
    return _name(item.tag)


def _same_label(left: Item, right: Item) -> bool:
    return _label(left) == _label(right)


def _show_labelled(item: Item) -> str:
    if item.tag == Tag.ATTRIBUTE and item.type == ItemType.STRUCTURE:
        value = item.find(Tag.ATTRIBUTE_VALUE)
        name = item.get(Tag.ATTRIBUTE_NAME)
        return f"{_label(item)} = {_show(value, name if isinstance(name, str) else None)}"
    return _show(item)
