"""Create Key Pair: generate an RSA or elliptic-curve key pair as two linked objects.

The request's Common attributes (1.x Common Template-Attribute, 2.x Common
Attributes) apply to both keys; Private and Public Key attributes apply to one
each and take precedence (a multi-valued attribute gets the union).  The private key
links to the public key and back; both start Pre-Active unless an Activation Date
has passed; the ID Placeholder becomes the private key.  RSA pairs are stored as
PKCS#1, the others as PKCS#8 / X.509 SubjectPublicKeyInfo — wrapped, like every key.
"""

from __future__ import annotations

from kmiptwist import asymmetric, keyblocks, server_attributes, ttlv
from kmiptwist.errors import KMIPError, invalid_field
from kmiptwist.keyblocks import ObjectValue
from kmiptwist.objects import ManagedObject
from kmiptwist.operations.base import OperationHandler, Payload, RequestContext, reason_in
from kmiptwist.operations.keyuse import run_blocking
from kmiptwist.operations.lifecycle import new_object
from kmiptwist.operations.naming import check_unique_names
from kmiptwist.operations.templates import merge_attributes, request_attributes
from kmiptwist.ttlv import Item
from kmiptwist.vocabulary.enums import LinkType, ObjectType, Operation, ResultReason
from kmiptwist.vocabulary.tags import Tag

__all__ = ["HANDLERS"]

_COMMON = (Tag.COMMON_TEMPLATE_ATTRIBUTE, Tag.COMMON_ATTRIBUTES)
_PRIVATE = (Tag.PRIVATE_KEY_TEMPLATE_ATTRIBUTE, Tag.PRIVATE_KEY_ATTRIBUTES)
_PUBLIC = (Tag.PUBLIC_KEY_TEMPLATE_ATTRIBUTE, Tag.PUBLIC_KEY_ATTRIBUTES)

#: Attributes both keys of a pair must agree on (KMIP 2.1 Table 191).
_SAME_FOR_BOTH = (
    "Cryptographic Algorithm",
    "Cryptographic Length",
    "Cryptographic Domain Parameters",
    "Cryptographic Parameters",
)


def _values(attributes: list[tuple[str, Item]], name: str) -> list[Item]:
    return [value for found, value in attributes if found == name]


def _agree(private: list[tuple[str, Item]], public: list[tuple[str, Item]]) -> None:
    """Refuse a pair whose keys were given different values of a shared attribute."""
    for name in _SAME_FOR_BOTH:
        mine = [ttlv.encode(v) for v in _values(private, name)]
        theirs = [ttlv.encode(v) for v in _values(public, name)]
        if mine and theirs and mine != theirs:
            raise invalid_field(
                f"{name} must be the same for the private and the public key of a pair"
            )


def _single(attributes: list[tuple[str, Item]], name: str) -> int | None:
    found = _values(attributes, name)
    return found[0].value if found else None


def _link(link_type: int, unique_identifier: str) -> Item:
    return ttlv.structure(
        Tag.LINK,
        [
            ttlv.enumeration(Tag.LINK_TYPE, link_type),
            ttlv.text_string(Tag.LINKED_OBJECT_IDENTIFIER, unique_identifier),
        ],
    )


async def create_key_pair(context: RequestContext, payload: Item) -> Payload:
    """Create Key Pair: a new private key and public key, linked to each other."""
    common = await request_attributes(context, payload, _COMMON)
    private_attributes = merge_attributes(
        common, await request_attributes(context, payload, _PRIVATE)
    )
    public_attributes = merge_attributes(
        common, await request_attributes(context, payload, _PUBLIC)
    )
    _agree(private_attributes, public_attributes)
    attributes = private_attributes or public_attributes
    algorithm = _single(private_attributes, "Cryptographic Algorithm") or _single(
        public_attributes, "Cryptographic Algorithm"
    )
    if algorithm is None:
        raise KMIPError(
            reason_in(context.version, "INVALID_ATTRIBUTE_VALUE", ResultReason.INVALID_FIELD),
            "Create Key Pair needs a Cryptographic Algorithm attribute",
        )
    length = _single(private_attributes, "Cryptographic Length") or _single(
        public_attributes, "Cryptographic Length"
    )
    domain = _values(attributes, "Cryptographic Domain Parameters")
    curve = domain[0].get(Tag.RECOMMENDED_CURVE) if domain else None
    # Every check on the request comes before the (costly) key generation.
    private = new_object(context, ObjectType.PRIVATE_KEY, private_attributes)
    public = new_object(context, ObjectType.PUBLIC_KEY, public_attributes)
    private.add("Link", _link(LinkType.PUBLIC_KEY_LINK, public.unique_identifier))
    public.add("Link", _link(LinkType.PRIVATE_KEY_LINK, private.unique_identifier))
    await check_unique_names(context, private.values("Name") + public.values("Name"))
    pair = await run_blocking(
        context, lambda: asymmetric.generate_key_pair(algorithm, length, curve)
    )
    if length is None:
        for obj in (private, public):
            obj.set("Cryptographic Length", ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, pair.length))
    values = (
        (private, Tag.PRIVATE_KEY, pair.private_material, pair.private_format),
        (public, Tag.PUBLIC_KEY, pair.public_material, pair.public_format),
    )
    for obj, tag, material, key_format_type in values:
        stored = asymmetric.key_structure(tag, material, key_format_type, algorithm, pair.length)
        await _store(context, obj, ObjectValue(stored, material, key_format_type))
    context.id_placeholder = private.unique_identifier
    return [
        ttlv.text_string(Tag.PRIVATE_KEY_UNIQUE_IDENTIFIER, private.unique_identifier),
        ttlv.text_string(Tag.PUBLIC_KEY_UNIQUE_IDENTIFIER, public.unique_identifier),
    ]


async def _store(context: RequestContext, obj: ManagedObject, value: ObjectValue) -> None:
    """Give one key of the pair its server attributes, wrap its value and store it."""
    server_attributes.set_initial(
        obj,
        context.now(),
        generated=True,
        key_format_type=value.key_format_type,
        lease_time=context.engine.lease_time,
    )
    obj.set("Digest", keyblocks.digest(value))
    await context.wrap(obj, ttlv.encode(value.stored))
    await context.add(obj)


HANDLERS = [OperationHandler(Operation.CREATE_KEY_PAIR, create_key_pair)]
