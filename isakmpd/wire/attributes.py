"""ISAKMP data attributes (RFC 2408 §3.3): the TV and TLV forms, encode and decode.

An attribute is a 2-byte type word followed by either a 2-byte value (TV, the
"Attribute Format" bit AF=1 is set in the type word) or a 2-byte length and that
many value bytes (TLV, AF=0). Transforms (RFC 2409 appendix A, RFC 2407 §4.5) and
mode-config ATTRIBUTE payloads (draft-ietf-ipsec-isakmp-mode-cfg-05 §3.2) carry
lists of them.

:class:`Attribute` is the model: decoding gives an ``int`` value for TV and
``bytes`` for TLV; :meth:`Attribute.as_int` reads either as a number. Encoding an
``int`` uses TV when it fits in 16 bits and otherwise TLV of at least 4 bytes,
which is how isakmpd sends a LIFE_DURATION above 0xffff (a 32-bit value).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from isakmpd.wire.constants import NotifyType, value_map
from isakmpd.wire.errors import DecodeError

AF_TV = 0x8000                 # RFC 2408 §3.3: Attribute Format bit
ATTRIBUTE_TYPE_MAX = 0x7fff    # the type is the low 15 bits of the first word
TV_VALUE_MAX = 0xffff
TLV_LENGTH_MAX = 0xffff
_TYPE_AND_VALUE = struct.Struct("!HH")


def enum_or_int(enum_class: type[enum.IntEnum] | None, value: int) -> int:
    """``enum_class(value)`` when the value is a known member, else the plain int.

    Decoders use this everywhere a field may carry private or future values: an
    unknown number is kept, never refused (the exchange layer decides).
    """
    if enum_class is None:
        return value
    # The enum's own value -> member table: cls(value) costs a call through
    # EnumMeta for every field of every payload decoded.
    return value_map(enum_class).get(value, value)  # type: ignore[return-value]


def _label(attr_type: int) -> str:
    return getattr(attr_type, "label", None) or f"attribute type {int(attr_type)}"


@dataclass(frozen=True, eq=False)
class Attribute:
    """One data attribute. ``value`` is an int (TV, or TLV when encoded from an
    int too large for 16 bits) or bytes (always TLV).

    ``offset`` is where the attribute started in the decoded buffer (None when
    built locally); it takes no part in equality.

    Two attributes are equal when they put the same bytes on the wire: a
    LIFE_DURATION built as ``86400`` equals the one decoded from the peer's
    4-byte TLV (which decodes to ``bytes``), but a TV differs from a TLV.
    """

    type: int
    value: int | bytes
    offset: int | None = field(default=None, compare=False, repr=False)

    def _key(self) -> tuple[int, bool, int | bytes]:
        value = self.value
        if isinstance(value, int) and value > TV_VALUE_MAX:
            value = value.to_bytes(max(4, (value.bit_length() + 7) // 8), "big")
        tv = isinstance(value, int)
        return (int(self.type), tv, value if tv else bytes(value))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Attribute):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def is_tv(self) -> bool:
        """True when this attribute goes (or came) on the wire in TV form."""
        return isinstance(self.value, int) and 0 <= self.value <= TV_VALUE_MAX

    def encode(self) -> bytes:
        """Wire form. Raises ValueError for values no attribute can carry."""
        attr_type = int(self.type)
        if not 0 <= attr_type <= ATTRIBUTE_TYPE_MAX:
            raise ValueError(f"attribute type {attr_type} does not fit in 15 bits")
        value = self.value
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"{_label(self.type)}: negative value {value}")
            if value <= TV_VALUE_MAX:
                return struct.pack("!HH", AF_TV | attr_type, value)
            # Too big for TV: a TLV of the minimal length, but never below 4
            # bytes, so a lifetime goes out as the 32-bit number isakmpd sends.
            size = max(4, (value.bit_length() + 7) // 8)
            value = value.to_bytes(size, "big")
        if len(value) > TLV_LENGTH_MAX:
            raise ValueError(f"{_label(self.type)}: value of {len(value)} bytes is too long")
        return struct.pack("!HH", attr_type, len(value)) + bytes(value)

    def as_int(self, max_bytes: int = 8) -> int:
        """The value as an unsigned integer, whatever its form.

        A TLV value must be 1..``max_bytes`` bytes long; otherwise raises
        :class:`DecodeError` (ATTRIBUTES_NOT_SUPPORTED) naming the attribute.
        """
        if isinstance(self.value, int):
            return self.value
        if not 1 <= len(self.value) <= max_bytes:
            offset = -1 if self.offset is None else self.offset
            raise DecodeError(
                NotifyType.ATTRIBUTES_NOT_SUPPORTED, offset,
                f"{_label(self.type)} at offset {offset}: a {len(self.value)}-byte value "
                f"is not a number of 1 to {max_bytes} bytes")
        return int.from_bytes(self.value, "big")


def encode_attributes(attributes: list[Attribute] | tuple[Attribute, ...]) -> bytes:
    """Concatenated wire form of ``attributes``, in the given order."""
    return b"".join(attribute.encode() for attribute in attributes)


_new = object.__new__


def _decoded(attr_type: int, value: int | bytes, offset: int) -> Attribute:
    """``Attribute(attr_type, value, offset=offset)``, made by filling the new
    instance's ``__dict__``: the frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, at three times the cost, and every received
    transform carries several attributes."""
    attribute = _new(Attribute)
    fields = attribute.__dict__
    fields["type"] = attr_type
    fields["value"] = value
    fields["offset"] = offset
    return attribute


# Per size in bytes, the unpack_from of that many 16-bit words (the TV fast path);
# sizes up to _TV_CACHE_LIMIT only, so a peer cannot make the table grow much.
_WORDS: dict[int, Callable[[bytes, int], tuple[int, ...]]] = {}
_TV_CACHE_LIMIT = 128


def tv_names(types: type[enum.IntEnum]) -> dict[int, enum.IntEnum]:
    """``types``' members by the first word of their TV form (AF bit set), for
    :func:`decode_tv_attributes`: one lookup names the type and tells a known
    TV attribute from anything else."""
    return {AF_TV | int(member): member for member in value_map(types).values()}


def decode_tv_attributes(data: bytes, pos: int, base_offset: int,
                         names: Mapping[int, object]) -> list[Attribute] | None:
    """The attributes in ``data[pos:]`` when every one of them is TV, else None.

    The common case: transforms carry a handful of TV attributes. All their
    words are unpacked by one call and no bounds check can fail; when anything
    is not a well-formed TV list (a TLV, an odd size, a long list) this returns
    None and the caller runs :func:`decode_attributes`, which decodes the
    general case and raises its errors. ``base_offset`` is the offset of
    ``data[0]``, ``names`` the :func:`tv_names` table of the attribute types.
    """
    size = len(data) - pos
    if size & 3:
        return None
    unpack = _WORDS.get(size)
    if unpack is None:
        if size > _TV_CACHE_LIMIT:
            return None
        unpack = _WORDS[size] = struct.Struct(f"!{size // 2}H").unpack_from
    attributes: list[Attribute] = []
    append = attributes.append
    at = base_offset + pos
    get = names.get
    new = _new
    pairs = iter(unpack(data, pos))
    for word, value in zip(pairs, pairs):
        attr_type = get(word)
        if attr_type is None:           # not a known type in TV form
            if word < AF_TV:
                return None             # a TLV: the general case after all
            attr_type = word - AF_TV
        # _decoded(...), without the call.
        attribute = new(Attribute)
        fields = attribute.__dict__
        fields["type"] = attr_type
        fields["value"] = value
        fields["offset"] = at
        append(attribute)
        at += 4
    return attributes


def decode_attributes(data: bytes, base_offset: int = 0, *,
                      types: type[enum.IntEnum] | None = None,
                      notify: NotifyType = NotifyType.PAYLOAD_MALFORMED,
                      context: str = "attributes") -> list[Attribute]:
    """Decode a list of attributes that fills ``data`` exactly.

    ``types`` is the enum to name known attribute types with (e.g. IkeAttr);
    unknown types are kept as ints. ``notify`` is what a truncated or overlong
    attribute is reported as: transforms use ATTRIBUTES_NOT_SUPPORTED, which is
    what isakmpd's message_validate_transform sends when attribute_map fails.
    ``context`` names the container in error messages.
    """
    attributes: list[Attribute] = []
    pos = 0
    end = len(data)
    names = value_map(types) if types is not None else {}
    unpack = _TYPE_AND_VALUE.unpack_from
    while pos < end:
        at = base_offset + pos
        if end - pos < 4:
            raise DecodeError(
                notify, at,
                f"{context}: attribute at offset {at} is truncated: {end - pos} bytes left, "
                f"an attribute needs at least 4")
        word, length_or_value = unpack(data, pos)
        number = word & ATTRIBUTE_TYPE_MAX
        attr_type = names.get(number, number)
        if word & AF_TV:
            # _decoded(attr_type, length_or_value, at), without the call.
            attribute = _new(Attribute)
            fields = attribute.__dict__
            fields["type"] = attr_type
            fields["value"] = length_or_value
            fields["offset"] = at
            attributes.append(attribute)
            pos += 4
            continue
        value_end = pos + 4 + length_or_value
        if value_end > end:
            raise DecodeError(
                notify, at,
                f"{context}: {_label(attr_type)} at offset {at}: TLV length "
                f"{length_or_value} runs past the end ({end - pos - 4} bytes left)")
        attributes.append(_decoded(attr_type, bytes(data[pos + 4:value_end]), at))
        pos = value_end
    return attributes
