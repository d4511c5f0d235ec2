"""ISAKMP payloads (RFC 2408 §3.4–3.16, RFC 2407 §4.6, RFC 3947 §3–5, mode-config §3.2).

This module owns the body of every payload: one dataclass per payload type with
``encode_body()`` (the bytes after the 4-byte generic payload header) and a
``decode_body(body, offset)`` class method that validates every length before
using it and raises only :class:`~isakmpd.wire.errors.DecodeError`. Chaining
payloads, the generic header and the message header belong to
:mod:`isakmpd.wire.message`; the SA payload's nested proposal and transform
chains are handled here because they live inside the SA body.

Every decoded payload keeps ``raw`` (its body exactly as received, without the
generic header) and ``offset`` (where its generic header starts in the
datagram): HASH computations need exact bytes, e.g. the SA body for HASH_I
(RFC 2409 §5) and ID bodies. Both take no part in equality, so a decoded payload
compares equal to the same payload built locally.

Fields that may carry values we do not know (private transform IDs, vendor
notify types, ...) are decoded to the enum member when known and kept as a plain
``int`` otherwise: whether such a value is acceptable is the exchange's call.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NoReturn, Self

from isakmpd.wire import addresses
from isakmpd.wire.attributes import (
    Attribute,
    decode_attributes,
    decode_tv_attributes,
    encode_attributes,
    enum_or_int,
    tv_names,
)
from isakmpd.wire.constants import (
    GENERIC_HEADER_SIZE,
    AhTransform,
    AuthAlgorithm,
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgMessageType,
    Doi,
    EncapsulationMode,
    EncryptionAlgorithm,
    EspTransform,
    GroupDescription,
    HashAlgorithm,
    IdType,
    IkeAttr,
    IpcompTransform,
    IpsecAttr,
    IsakmpTransform,
    LifeType,
    NotifyType,
    PayloadType,
    ProtocolId,
    Situation,
    member,
    value_map,
)
from isakmpd.wire.errors import DecodeError

__all__ = [
    "AttributePayload",
    "CertPayload",
    "CertRequestPayload",
    "DeletePayload",
    "HashPayload",
    "IdPayload",
    "KeyExchangePayload",
    "NatDPayload",
    "NatOaPayload",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "ProposalPayload",
    "RawPayload",
    "SaPayload",
    "SignaturePayload",
    "TransformPayload",
    "VendorPayload",
    "decode_payload_body",
    "encode_generic",
    "format_id_data",
    "payload_label",
]

# Certificate encodings 12..200 are reserved (RFC 2408 §3.9 lists 0..10; isakmpd
# uses 11 for KeyNote; 201..255 are private use).
_CERT_RESERVED = range(12, 201)
# RFC 2408 §3.5 / RFC 2407 §4.4.1: SPI sizes each protocol may use. An ISAKMP
# "SPI" is the cookie pair (16 bytes) or absent; IPCOMP carries a 2-byte CPI,
# which RFC 2393 §4.1 lets be sent as 4 bytes.
_SPI_SIZES: dict[int, tuple[int, ...]] = {
    ProtocolId.ISAKMP: (0, 16),
    ProtocolId.IPSEC_AH: (4,),
    ProtocolId.IPSEC_ESP: (4,),
    ProtocolId.IPCOMP: (2, 4),
}
_TRANSFORM_IDS: dict[int, type[enum.IntEnum]] = {
    ProtocolId.ISAKMP: IsakmpTransform,
    ProtocolId.IPSEC_AH: AhTransform,
    ProtocolId.IPSEC_ESP: EspTransform,
    ProtocolId.IPCOMP: IpcompTransform,
}
# RFC 2407 §4.6.2.2-.9: fixed data sizes of the address ID types.
_ID_DATA_SIZES: dict[int, int] = {
    IdType.IPV4_ADDR: 4,
    IdType.IPV4_ADDR_SUBNET: 8,
    IdType.IPV4_RANGE: 8,
    IdType.IPV6_ADDR: 16,
    IdType.IPV6_ADDR_SUBNET: 32,
    IdType.IPV6_RANGE: 32,
}


_PAYLOAD_TYPES = value_map(PayloadType)
_ID_TYPES = value_map(IdType)
_PROTOCOL_IDS = value_map(ProtocolId)
_IKE_TV_NAMES = tv_names(IkeAttr)
_IPSEC_TV_NAMES = tv_names(IpsecAttr)
_DOIS = value_map(Doi)
_NOTIFY_TYPES = value_map(NotifyType)
# Per protocol, the value -> member table of its transform IDs.
_TRANSFORM_ID_MAPS = {protocol: value_map(ids) for protocol, ids in _TRANSFORM_IDS.items()}
_NO_NAMES: dict[object, enum.Enum] = {}


def payload_label(payload_type: int) -> str:
    """isakmpd's name of a payload type, or ``'private (N)'`` / ``'unknown (N)'``."""
    member = _PAYLOAD_TYPES.get(payload_type)
    if member is not None:
        return member.label  # type: ignore[attr-defined, no-any-return]
    kind = "private" if payload_type >= 128 else "unknown"
    return f"{kind} ({payload_type})"


def _name(value: int) -> str:
    label = getattr(value, "label", None)
    return label if label is not None else str(int(value))


def _fail(notify: NotifyType, offset: int, message: str, *, silent: bool = False) -> NoReturn:
    raise DecodeError(notify, offset, f"{message} (offset {offset})", silent=silent)


def _too_short(body: bytes, size: int, offset: int, what: str) -> NoReturn:
    """PAYLOAD_MALFORMED: ``body`` is shorter than the ``size`` bytes it needs.

    Decoders test the length inline (one comparison on every payload decoded) and
    call this only to fail."""
    _fail(NotifyType.PAYLOAD_MALFORMED, offset,
          f"{what} body is {len(body)} bytes, needs at least {size}")


def _check_u8(value: int, what: str) -> int:
    if not 0 <= int(value) <= 0xff:
        raise ValueError(f"{what} {value} does not fit in one byte")
    return int(value)


def _check_u16(value: int, what: str) -> int:
    if not 0 <= int(value) <= 0xffff:
        raise ValueError(f"{what} {value} does not fit in two bytes")
    return int(value)


def _check_u32(value: int, what: str) -> int:
    if not 0 <= int(value) <= 0xffffffff:
        raise ValueError(f"{what} {value} does not fit in four bytes")
    return int(value)


def _short_hex(data: bytes, limit: int = 16) -> str:
    text = data[:limit].hex()
    return text + ("..." if len(data) > limit else "")


_GENERIC = struct.Struct("!BBH")
_new_payload = object.__new__
# Members the per-payload code uses, as module names (reading an enum class's
# attribute costs a Python-level call in 3.11; see constants.value_map).
_NONE = PayloadType.NONE
_PROPOSAL = PayloadType.PROPOSAL
_TRANSFORM = PayloadType.TRANSFORM
_NAT_D = PayloadType.NAT_D
_NAT_D_DRAFT = PayloadType.NAT_D_DRAFT
_NAT_OA = PayloadType.NAT_OA
_NAT_OA_DRAFT = PayloadType.NAT_OA_DRAFT
_ISAKMP = ProtocolId.ISAKMP
_DOI_IPSEC = Doi.IPSEC
_DOI_ISAKMP = Doi.ISAKMP
_IDENTITY_ONLY = Situation.IDENTITY_ONLY
_ATTRIBUTES_NOT_SUPPORTED = NotifyType.ATTRIBUTES_NOT_SUPPORTED
_IPV4_ADDR = IdType.IPV4_ADDR
_IPV6_ADDR = IdType.IPV6_ADDR
_TRANSFORMS_ONLY = frozenset({PayloadType.TRANSFORM})
_PROPOSALS_ONLY = frozenset({PayloadType.PROPOSAL})


def _chain_fail(notify: NotifyType, offset: int, proposal: int | None,
                message: str) -> NoReturn:
    """_fail with ``message`` prefixed by the chain's name (see _walk_chain)."""
    name = "SA" if proposal is None else f"proposal {proposal}"
    _fail(notify, offset, f"{name}: {message}")


def _walk_chain(data: bytes, pos: int, base_offset: int, first_type: int,
                allowed: frozenset[int], proposal: int | None,
                ) -> list[tuple[bytes, int]]:
    """Walk a nested payload chain (proposals in an SA, transforms in a proposal).

    The chain is ``data[pos:]`` (walked in place: no copy of the rest of the
    body); ``base_offset`` is the datagram offset of ``data[0]``. The chain must
    fill it exactly and contain only ``allowed`` types; returns ``(body, offset
    of generic header)`` per element (all of the one allowed type). Structural
    faults are BAD_PROPOSAL_SYNTAX (RFC 2408 §5.4–5.6), a non-zero reserved byte
    is PAYLOAD_MALFORMED as for every generic header. Errors name the chain
    ``SA``, or ``proposal N`` for the transforms of ``proposal`` number N (the
    text is made only for an error: formatting it costs as much as a walk step).
    """
    items: list[tuple[bytes, int]] = []
    end = len(data)
    current = first_type
    while True:
        at = base_offset + pos
        if end - pos < GENERIC_HEADER_SIZE:
            _chain_fail(NotifyType.BAD_PROPOSAL_SYNTAX, at, proposal,
                        f"{payload_label(current)} header truncated, {end - pos} bytes left")
        next_type, reserved, length = _GENERIC.unpack_from(data, pos)
        if reserved:
            _chain_fail(NotifyType.PAYLOAD_MALFORMED, at + 1, proposal,
                        f"{payload_label(current)} reserved byte is {reserved:#04x}, must be 0")
        if length < GENERIC_HEADER_SIZE or pos + length > end:
            _chain_fail(NotifyType.BAD_PROPOSAL_SYNTAX, at + 2, proposal,
                        f"{payload_label(current)} length {length} does not fit in the "
                        f"{end - pos} bytes left")
        items.append((bytes(data[pos + GENERIC_HEADER_SIZE:pos + length]), at))
        pos += length
        if next_type == _NONE:
            if pos != end:
                _chain_fail(NotifyType.BAD_PROPOSAL_SYNTAX, base_offset + pos, proposal,
                            f"{end - pos} bytes follow the last {payload_label(current)}")
            return items
        if next_type not in allowed:
            _chain_fail(NotifyType.BAD_PROPOSAL_SYNTAX, at, proposal,
                        f"next payload {payload_label(next_type)} is not allowed here")
        if pos == end:
            _chain_fail(NotifyType.BAD_PROPOSAL_SYNTAX, at, proposal,
                        f"next payload {payload_label(next_type)} announced but the data ends")
        current = next_type


# Packers of the fixed fields the codecs use. Our own payloads carry values that
# fit, so an encoder packs first and only when the struct refuses (a value out of
# range) runs the _check_* calls, which raise the ValueError naming the field.
_BBH = struct.Struct("!BBH")
_BBBB = struct.Struct("!BBBB")
_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")
_IBBH = struct.Struct("!IBBH")


def _append_chain(append: Callable[[bytes], None], items: Sequence[Payload],
                  more: int) -> None:
    """Append each of ``items`` as generic header and body, its next-payload field
    ``more`` but NONE for the last (proposals in an SA, transforms in a proposal).

    Each item's ``encode(next_type)`` without its frame, and the header joined with
    the rest instead of being put in front of the body first.
    """
    last = len(items) - 1
    for i, item in enumerate(items):
        body = item.encode_body()
        next_type = more if i < last else _NONE
        try:
            append(_GENERIC.pack(next_type, 0, GENERIC_HEADER_SIZE + len(body)))
        except struct.error:
            encode_generic(next_type, body)     # raises, naming the field
        append(body)


def encode_generic(next_type: int, body: bytes) -> bytes:
    """Generic header (RFC 2408 §3.2) and ``body``; ValueError naming what does not fit.

    The encoders pack the header directly and call this only when the struct
    refuses, to raise the error."""
    length = GENERIC_HEADER_SIZE + len(body)
    if length > 0xffff:
        raise ValueError(f"payload of {length} bytes exceeds the 16-bit length field")
    if not 0 <= next_type <= 0xff:
        raise ValueError(f"next payload {next_type} does not fit in one byte")
    return _GENERIC.pack(next_type, 0, length) + body


# Enums naming the values of transform attributes, per attribute enum class.
_VALUE_NAMES: dict[tuple[type, int], type[enum.IntEnum]] = {
    (IkeAttr, IkeAttr.ENCRYPTION_ALGORITHM): EncryptionAlgorithm,
    (IkeAttr, IkeAttr.HASH_ALGORITHM): HashAlgorithm,
    (IkeAttr, IkeAttr.AUTHENTICATION_METHOD): AuthMethod,
    (IkeAttr, IkeAttr.GROUP_DESCRIPTION): GroupDescription,
    (IkeAttr, IkeAttr.LIFE_TYPE): LifeType,
    (IpsecAttr, IpsecAttr.SA_LIFE_TYPE): LifeType,
    (IpsecAttr, IpsecAttr.GROUP_DESCRIPTION): GroupDescription,
    (IpsecAttr, IpsecAttr.ENCAPSULATION_MODE): EncapsulationMode,
    (IpsecAttr, IpsecAttr.AUTHENTICATION_ALGORITHM): AuthAlgorithm,
}


def _attribute_text(attribute: Attribute) -> str:
    """``NAME=VALUE`` with the value named where an enum says what it means."""
    value = attribute.value
    if isinstance(value, bytes):
        text = str(int.from_bytes(value, "big")) if 0 < len(value) <= 8 else value.hex()
    else:
        names = _VALUE_NAMES.get((type(attribute.type), int(attribute.type)))
        text = _name(enum_or_int(names, value))
    return f"{_name(attribute.type)}={text}"


# --- base ------------------------------------------------------------------


@dataclass(slots=True)
class Payload:
    """A payload body. Subclasses set ``TYPE`` and implement the two codecs."""

    TYPE: ClassVar[int] = PayloadType.NONE

    raw: bytes | None = field(default=None, kw_only=True, compare=False, repr=False)
    offset: int | None = field(default=None, kw_only=True, compare=False, repr=False)

    def __init_subclass__(cls) -> None:
        # (No super() call: object's does nothing, and the zero-argument form fails
        # in the classes @dataclass(slots=True) re-creates.)
        # A class with a fixed TYPE gets ``payload_type`` as a plain class attribute:
        # it is read for every payload of every message encoded, decoded and
        # checked, and a property costs a call each time. Classes whose type
        # depends on a field (NAT-D, NAT-OA, raw) keep their property.
        if "TYPE" in cls.__dict__ and "payload_type" not in cls.__dict__:
            cls.payload_type = cls.TYPE  # type: ignore[assignment, misc]

    @property
    def payload_type(self) -> int:
        """The number that goes into the previous next-payload field."""
        return self.TYPE

    @property
    def label(self) -> str:
        return payload_label(self.payload_type)

    def encode_body(self) -> bytes:
        raise NotImplementedError

    def encode(self, next_type: int = PayloadType.NONE) -> bytes:
        """Generic header (RFC 2408 §3.2) followed by the body."""
        body = self.encode_body()
        try:
            return _GENERIC.pack(next_type, 0, GENERIC_HEADER_SIZE + len(body)) + body
        except struct.error:
            return encode_generic(next_type, body)      # raises, naming the field

    def body_bytes(self) -> bytes:
        """The body as received when decoded, else as we would send it.

        This is what HASH_I/HASH_R take for SAi_b and IDii_b (RFC 2409 §5).
        """
        return self.raw if self.raw is not None else self.encode_body()

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        """Decode a body; ``offset`` is that of the generic header in the datagram."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short one-line summary for logs."""
        return self.label



# --- SA, proposal, transform (RFC 2408 §3.4–3.6, RFC 2407 §4.6.1) ------------


@dataclass(slots=True)
class TransformPayload(Payload):
    """Transform: number, transform ID and data attributes (RFC 2408 §3.6).

    ``attributes`` are named with IkeAttr for an ISAKMP proposal and IpsecAttr
    for AH/ESP/IPCOMP (RFC 2407 §4.5). ``verbatim``, when set, is sent as the body
    instead of an encoding of the fields: a responder returns the transform it
    chose exactly as it was received (RFC 2408 §4.2), which is
    :func:`echo` of the received one.
    """

    TYPE: ClassVar[int] = PayloadType.TRANSFORM

    number: int
    transform_id: int
    attributes: list[Attribute] = field(default_factory=list)
    verbatim: bytes | None = field(default=None, kw_only=True, compare=False, repr=False)

    def echo(self) -> TransformPayload:
        """A copy to send back as received (its bytes, when it was decoded)."""
        return TransformPayload(self.number, self.transform_id, list(self.attributes),
                                verbatim=self.raw)

    def encode_body(self) -> bytes:
        if self.verbatim is not None:
            return self.verbatim
        try:
            head = _BBH.pack(self.number, self.transform_id, 0)
        except struct.error:
            head = _BBH.pack(_check_u8(self.number, "transform number"),
                             _check_u8(self.transform_id, "transform id"), 0)
        return head + encode_attributes(self.attributes)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, protocol_id: int = ProtocolId.ISAKMP,
                    ) -> Self:
        start = offset + GENERIC_HEADER_SIZE
        if len(body) < 4:
            _too_short(body, 4, offset, "transform")
        number, transform_id, reserved = _BBH.unpack_from(body)
        if reserved:
            # isakmpd message_validate_transform: RESERVED2 must be zero.
            _fail(NotifyType.PAYLOAD_MALFORMED, start + 2,
                  f"transform {number}: reserved field is {reserved:#06x}, must be 0")
        isakmp = protocol_id == _ISAKMP
        # Nearly every transform's attributes are all TV: decoded by the fast path
        # without a slice or the general loop's per-attribute checks; anything else
        # goes the general way, which raises the errors. isakmpd reports attributes
        # it cannot parse as ATTRIBUTES_NOT_SUPPORTED (message_validate_transform
        # after attribute_map fails).
        attributes = decode_tv_attributes(body, 4, start,
                                          _IKE_TV_NAMES if isakmp else _IPSEC_TV_NAMES)
        if attributes is None:
            attributes = decode_attributes(
                body[4:], start + 4, types=IkeAttr if isakmp else IpsecAttr,
                notify=_ATTRIBUTES_NOT_SUPPORTED, context=f"transform {number}")
        transform_id = _TRANSFORM_ID_MAPS.get(protocol_id, _NO_NAMES).get(transform_id,
                                                                          transform_id)
        # cls(number, transform_id, attributes, raw=body, offset=offset), each slot
        # stored directly (see _DataPayload.decode_body).
        transform = _new_payload(cls)
        transform.number = number
        transform.transform_id = transform_id
        transform.attributes = attributes
        transform.verbatim = None
        transform.raw = body
        transform.offset = offset
        return transform

    def attribute(self, attr_type: int) -> Attribute | None:
        """The first attribute of ``attr_type``, or None."""
        for attribute in self.attributes:
            if attribute.type == attr_type:
                return attribute
        return None

    def describe(self) -> str:
        attrs = ", ".join(_attribute_text(a) for a in self.attributes)
        return f"T#{self.number} {_name(self.transform_id)}({attrs})"


@dataclass(slots=True)
class ProposalPayload(Payload):
    """Proposal: number, protocol ID, SPI (0–255 bytes) and transforms (RFC 2408 §3.5)."""

    TYPE: ClassVar[int] = PayloadType.PROPOSAL

    number: int
    protocol_id: int
    spi: bytes = b""
    transforms: list[TransformPayload] = field(default_factory=list)

    def encode_body(self) -> bytes:
        if not self.transforms:
            raise ValueError(f"proposal {self.number} has no transforms")
        if len(self.transforms) > 0xff:
            raise ValueError(f"proposal {self.number} has more than 255 transforms")
        transforms = self.transforms
        try:
            head = _BBBB.pack(self.number, self.protocol_id, len(self.spi), len(transforms))
        except struct.error:
            head = _BBBB.pack(_check_u8(self.number, "proposal number"),
                              _check_u8(self.protocol_id, "protocol id"),
                              _check_u8(len(self.spi), "SPI size"), len(transforms))
        spi = self.spi
        parts = [head, spi if spi.__class__ is bytes else bytes(spi)]
        _append_chain(parts.append, transforms, _TRANSFORM)
        return b"".join(parts)

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        start = offset + GENERIC_HEADER_SIZE
        if len(body) < 4:
            _too_short(body, 4, offset, "proposal")
        number, protocol_id, spi_size, count = _BBBB.unpack_from(body)
        if protocol_id not in _SPI_SIZES:
            # RFC 2408 §5.5; isakmpd ipsec_validate_proto.
            _fail(NotifyType.INVALID_PROTOCOL_ID, start + 1,
                  f"proposal {number}: protocol id {protocol_id} is not ISAKMP, AH, ESP "
                  "or IPCOMP")
        protocol_id = _PROTOCOL_IDS[protocol_id]       # a member: checked above
        if spi_size not in _SPI_SIZES[protocol_id]:
            _fail(NotifyType.INVALID_SPI, start + 2,
                  f"proposal {number}: SPI size {spi_size} is invalid for "
                  f"{protocol_id.label}")
        if 4 + spi_size > len(body):
            _fail(NotifyType.BAD_PROPOSAL_SYNTAX, start + 2,
                  f"proposal {number}: SPI of {spi_size} bytes runs past the proposal")
        spi = bytes(body[4:4 + spi_size])
        if count == 0:
            _fail(NotifyType.BAD_PROPOSAL_SYNTAX, start + 3,
                  f"proposal {number} has no transforms")
        items = _walk_chain(body, 4 + spi_size, start, _TRANSFORM, _TRANSFORMS_ONLY, number)
        if len(items) != count:
            _fail(NotifyType.BAD_PROPOSAL_SYNTAX, start + 3,
                  f"proposal {number} announces {count} transforms but carries {len(items)}")
        transforms: list[TransformPayload] = []
        for tbody, toffset in items:
            transform = _decode_transform(tbody, toffset, protocol_id)
            # isakmpd message_validate_transform: strictly increasing numbers.
            if transforms and transform.number <= transforms[-1].number:
                _fail(NotifyType.BAD_PROPOSAL_SYNTAX, toffset + GENERIC_HEADER_SIZE,
                      f"proposal {number}: transform number {transform.number} does not "
                      f"follow {transforms[-1].number}")
            transforms.append(transform)
        proposal = _new_payload(cls)       # cls(...), see _DataPayload.decode_body
        proposal.number = number
        proposal.protocol_id = protocol_id
        proposal.spi = spi
        proposal.transforms = transforms
        proposal.raw = body
        proposal.offset = offset
        return proposal

    def describe(self) -> str:
        spi = f" spi {self.spi.hex()}" if self.spi else ""
        inner = " ".join(t.describe() for t in self.transforms)
        return f"P#{self.number} {_name(self.protocol_id)}{spi} [{inner}]"


# Bound once: reading a classmethod through its class makes a bound method each time.
_decode_transform = TransformPayload.decode_body
_decode_proposal = ProposalPayload.decode_body


@dataclass(slots=True)
class SaPayload(Payload):
    """Security Association: DOI, situation and proposals (RFC 2408 §3.4).

    For the IPsec DOI the situation is a 4-byte bitmask (RFC 2407 §4.6.1); only
    IDENTITY_ONLY is supported, as in isakmpd (ipsec_validate_situation), since
    SECRECY/INTEGRITY add labelled-domain fields nobody implements. The generic
    ISAKMP DOI (0) has no situation field at all (isakmpd's isakmp_doi), so
    ``situation`` is None then.
    """

    TYPE: ClassVar[int] = PayloadType.SA

    doi: int = Doi.IPSEC
    situation: int | None = Situation.IDENTITY_ONLY
    proposals: list[ProposalPayload] = field(default_factory=list)

    def encode_body(self) -> bytes:
        if not self.proposals:
            raise ValueError("an SA payload needs at least one proposal")
        situation = self.situation
        try:
            head = (_U32.pack(self.doi) if situation is None
                    else _U32X2.pack(self.doi, situation))
        except struct.error:
            head = _U32.pack(_check_u32(self.doi, "DOI"))
            if situation is not None:
                head += _U32.pack(_check_u32(situation, "situation"))
        parts = [head]
        _append_chain(parts.append, self.proposals, _PROPOSAL)
        return b"".join(parts)

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        start = offset + GENERIC_HEADER_SIZE
        if len(body) < 4:
            _too_short(body, 4, offset, "SA")
        (doi,) = _U32.unpack_from(body)
        situation: int | None
        if doi == _DOI_IPSEC:
            if len(body) < 8:
                _too_short(body, 8, offset, "SA (IPsec DOI)")
            (situation,) = _U32.unpack_from(body, 4)
            if situation != _IDENTITY_ONLY:
                _fail(NotifyType.SITUATION_NOT_SUPPORTED, start + 4,
                      f"SA situation {situation:#x} is not IDENTITY_ONLY (1)")
            situation = _IDENTITY_ONLY
            pos = 8
        elif doi == _DOI_ISAKMP:
            situation = None
            pos = 4
        else:
            _fail(NotifyType.DOI_NOT_SUPPORTED, start, f"SA DOI {doi} is not supported")
        if pos == len(body):
            _fail(NotifyType.BAD_PROPOSAL_SYNTAX, start + pos, "SA payload has no proposals")
        items = _walk_chain(body, pos, start, _PROPOSAL, _PROPOSALS_ONLY, None)
        proposals: list[ProposalPayload] = []
        for pbody, poffset in items:
            proposal = _decode_proposal(pbody, poffset)
            # RFC 2408 §4.2 / isakmpd message_validate_proposal: proposal numbers
            # never decrease (equal numbers form one AND-ed protection suite).
            if proposals and proposal.number < proposals[-1].number:
                _fail(NotifyType.BAD_PROPOSAL_SYNTAX, poffset + GENERIC_HEADER_SIZE,
                      f"SA: proposal number {proposal.number} follows "
                      f"{proposals[-1].number}")
            proposals.append(proposal)
        sa = _new_payload(cls)             # cls(...), see _DataPayload.decode_body
        sa.doi = _DOIS[doi]
        sa.situation = situation
        sa.proposals = proposals
        sa.raw = body
        sa.offset = offset
        return sa

    def describe(self) -> str:
        return f"SA doi {_name(self.doi)} " + " ".join(p.describe() for p in self.proposals)


# --- simple payloads ---------------------------------------------------------


@dataclass(slots=True)
class _DataPayload(Payload):
    """A payload whose body is one opaque byte string."""

    data: bytes = b""

    def encode_body(self) -> bytes:
        data = self.data
        return data if data.__class__ is bytes else bytes(data)   # (bytes() is a call)

    def encode(self, next_type: int = PayloadType.NONE) -> bytes:
        """Generic header and the data: Payload.encode without the encode_body call
        (these are most of the payloads we send; a subclass that changes
        encode_body must change this too)."""
        data = self.data
        if data.__class__ is not bytes:         # (bytes(data) costs a call)
            data = bytes(data)
        try:
            return _GENERIC.pack(next_type, 0, GENERIC_HEADER_SIZE + len(data)) + data
        except struct.error:
            return encode_generic(next_type, data)      # raises, naming the field

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        # cls(bytes(body), raw=body, offset=offset) with each slot stored directly:
        # calling a class with keyword arguments costs about twice as much, and
        # every payload received is made here. (Every field must be stored; the
        # round-trip tests read them all. A subclass with more fields, NAT-D,
        # decodes itself.)
        payload = _new_payload(cls)
        payload.data = body if body.__class__ is bytes else bytes(body)
        payload.raw = body
        payload.offset = offset
        return payload

    def describe(self) -> str:
        return f"{self.label}({len(self.data)}: {_short_hex(self.data)})"


@dataclass(slots=True)
class KeyExchangePayload(_DataPayload):
    """KE: the DH public value (RFC 2408 §3.7); its length is checked by the exchange."""

    TYPE: ClassVar[int] = PayloadType.KEY_EXCH


@dataclass(slots=True)
class HashPayload(_DataPayload):
    """HASH (RFC 2408 §3.11)."""

    TYPE: ClassVar[int] = PayloadType.HASH


@dataclass(slots=True)
class SignaturePayload(_DataPayload):
    """SIG (RFC 2408 §3.12)."""

    TYPE: ClassVar[int] = PayloadType.SIG


@dataclass(slots=True)
class NoncePayload(_DataPayload):
    """NONCE (RFC 2408 §3.13); the 8–256 byte rule is the exchange's."""

    TYPE: ClassVar[int] = PayloadType.NONCE


@dataclass(slots=True)
class VendorPayload(_DataPayload):
    """VID (RFC 2408 §3.16)."""

    TYPE: ClassVar[int] = PayloadType.VENDOR


@dataclass(slots=True)
class NatDPayload(_DataPayload):
    """NAT-D: a hash of address and port (RFC 3947 §3.2). ``draft`` selects type 130."""

    draft: bool = False

    @property
    def payload_type(self) -> int:
        return _NAT_D_DRAFT if self.draft else _NAT_D

    @classmethod
    def decode_body(cls, body: bytes, offset: int, draft: bool = False) -> Self:
        payload = _new_payload(cls)        # cls(...), see _DataPayload.decode_body
        payload.data = body if body.__class__ is bytes else bytes(body)
        payload.draft = draft
        payload.raw = body
        payload.offset = offset
        return payload


# --- identification (RFC 2407 §4.6.2) ----------------------------------------


def format_id_data(id_type: int, data: bytes) -> str:
    """Readable form of ID data for logs: addresses, subnets, names, hex otherwise."""
    try:
        if id_type == IdType.IPV4_ADDR and len(data) == 4:
            return str(ipaddress.IPv4Address(data))
        if id_type == IdType.IPV6_ADDR and len(data) == 16:
            return str(ipaddress.IPv6Address(data))
        if id_type in (IdType.IPV4_ADDR_SUBNET, IdType.IPV4_RANGE) and len(data) == 8:
            first, second = ipaddress.IPv4Address(data[:4]), ipaddress.IPv4Address(data[4:])
            sep = "/" if id_type == IdType.IPV4_ADDR_SUBNET else "-"
            return f"{first}{sep}{second}"
        if id_type in (IdType.IPV6_ADDR_SUBNET, IdType.IPV6_RANGE) and len(data) == 32:
            first6 = ipaddress.IPv6Address(data[:16])
            second6 = ipaddress.IPv6Address(data[16:])
            sep = "/" if id_type == IdType.IPV6_ADDR_SUBNET else "-"
            return f"{first6}{sep}{second6}"
        if id_type in (IdType.FQDN, IdType.USER_FQDN):
            return data.decode("ascii", "backslashreplace")
    except ValueError:
        pass
    return data.hex()


@dataclass(slots=True)
class IdPayload(Payload):
    """ID: type, protocol, port and data (RFC 2407 §4.6.2; phase 1 uses the same layout).

    ``id_type`` must be a defined IPsec DOI ID type and address types must have
    their fixed data size, else INVALID_ID_INFORMATION (RFC 2408 §5.?, isakmpd
    ipsec_validate_id_information). Protocol/port rules depend on the phase and
    are checked by the exchange.
    """

    TYPE: ClassVar[int] = PayloadType.ID

    id_type: int
    data: bytes
    protocol: int = 0
    port: int = 0

    def encode_body(self) -> bytes:
        try:
            head = _BBH.pack(self.id_type, self.protocol, self.port)
        except struct.error:
            head = _BBH.pack(_check_u8(self.id_type, "ID type"),
                             _check_u8(self.protocol, "ID protocol"),
                             _check_u16(self.port, "ID port"))
        data = self.data
        return head + (data if data.__class__ is bytes else bytes(data))

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        start = offset + GENERIC_HEADER_SIZE
        if len(body) < 4:
            _too_short(body, 4, offset, "ID")
        id_type, protocol, port = _BBH.unpack_from(body)
        known = _ID_TYPES.get(id_type)
        if known is None:
            _fail(NotifyType.INVALID_ID_INFORMATION, start,
                  f"ID type {id_type} is not defined by the IPsec DOI")
        id_type = known
        data = bytes(body[4:])
        size = _ID_DATA_SIZES.get(id_type)
        if size is not None and len(data) != size:
            _fail(NotifyType.INVALID_ID_INFORMATION, start + 4,
                  f"{id_type.label} data is {len(data)} bytes, must be {size}")
        if size is None and not data:
            _fail(NotifyType.INVALID_ID_INFORMATION, start + 4, f"{id_type.label} data is empty")
        payload = _new_payload(cls)        # cls(...), see _DataPayload.decode_body
        payload.id_type = id_type
        payload.data = data
        payload.protocol = protocol
        payload.port = port
        payload.raw = body
        payload.offset = offset
        return payload

    @classmethod
    def from_address(cls, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
                     protocol: int = 0, port: int = 0) -> Self:
        """An IPV4_ADDR or IPV6_ADDR identity."""
        ip = addresses.ip(address) if isinstance(address, str) else address
        id_type = _IPV4_ADDR if ip.version == 4 else _IPV6_ADDR
        return cls(id_type, ip.packed, protocol, port)

    @classmethod
    def from_network(cls, network: str | ipaddress.IPv4Network | ipaddress.IPv6Network,
                     protocol: int = 0, port: int = 0) -> Self:
        """An IPV4_ADDR_SUBNET or IPV6_ADDR_SUBNET identity (address and mask)."""
        net = ipaddress.ip_network(network)
        id_type = IdType.IPV4_ADDR_SUBNET if net.version == 4 else IdType.IPV6_ADDR_SUBNET
        return cls(id_type, net.network_address.packed + net.netmask.packed, protocol, port)

    def describe(self) -> str:
        extra = f" proto {self.protocol} port {self.port}" if self.protocol or self.port else ""
        return f"ID {_name(self.id_type)} {format_id_data(self.id_type, self.data)}{extra}"


# --- certificates (RFC 2408 §3.9, §3.10) -------------------------------------


@dataclass(slots=True)
class CertPayload(Payload):
    """CERT: encoding and certificate data (RFC 2408 §3.9)."""

    TYPE: ClassVar[int] = PayloadType.CERT

    encoding: int
    data: bytes

    def encode_body(self) -> bytes:
        return bytes([_check_u8(self.encoding, "certificate encoding")]) + bytes(self.data)

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        if len(body) < 1:
            _too_short(body, 1, offset, "CERT")
        if body[0] in _CERT_RESERVED:
            # RFC 2408 §5.9; isakmpd message_validate_cert.
            _fail(NotifyType.INVALID_CERT_ENCODING, offset + GENERIC_HEADER_SIZE,
                  f"certificate encoding {body[0]} is reserved")
        return cls(enum_or_int(CertEncoding, body[0]), bytes(body[1:]), raw=body, offset=offset)

    def describe(self) -> str:
        return f"CERT {_name(self.encoding)} ({len(self.data)} bytes)"


@dataclass(slots=True)
class CertRequestPayload(Payload):
    """CR: certificate type and (possibly empty) authority (RFC 2408 §3.10)."""

    TYPE: ClassVar[int] = PayloadType.CERT_REQ

    encoding: int
    authority: bytes = b""

    def encode_body(self) -> bytes:
        return bytes([_check_u8(self.encoding, "certificate type")]) + bytes(self.authority)

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        if len(body) < 1:
            _too_short(body, 1, offset, "CR")
        if body[0] in _CERT_RESERVED:
            # isakmpd message_validate_cert_req uses INVALID_CERT_ENCODING here too.
            _fail(NotifyType.INVALID_CERT_ENCODING, offset + GENERIC_HEADER_SIZE,
                  f"certificate request type {body[0]} is reserved")
        return cls(enum_or_int(CertEncoding, body[0]), bytes(body[1:]), raw=body, offset=offset)

    def describe(self) -> str:
        return f"CR {_name(self.encoding)} ({len(self.authority)} bytes of authority)"


# --- notification and delete (RFC 2408 §3.14, §3.15) -------------------------


def _check_doi_protocol(doi: int, protocol_id: int, start: int, what: str,
                        allow_zero_protocol: bool) -> None:
    # isakmpd message_validate_notify/_delete drop such messages without a
    # notification of their own: silent.
    if doi not in (_DOI_ISAKMP, _DOI_IPSEC):
        _fail(NotifyType.DOI_NOT_SUPPORTED, start, f"{what}: DOI {doi} is not supported",
              silent=True)
    if protocol_id not in _SPI_SIZES and not (allow_zero_protocol and protocol_id == 0):
        _fail(NotifyType.INVALID_PROTOCOL_ID, start + 4,
              f"{what}: protocol id {protocol_id} is not ISAKMP, AH, ESP or IPCOMP",
              silent=True)


@dataclass(slots=True)
class NotifyPayload(Payload):
    """N: DOI, protocol, SPI, notify type and data (RFC 2408 §3.14).

    Protocol 0 is accepted (with any SPI size) because some peers send it for
    notifications that concern no SA; the exchange decides what to do.
    """

    TYPE: ClassVar[int] = PayloadType.NOTIFY

    notify_type: int
    protocol_id: int = ProtocolId.ISAKMP
    spi: bytes = b""
    data: bytes = b""
    doi: int = Doi.IPSEC

    def encode_body(self) -> bytes:
        try:
            head = _IBBH.pack(self.doi, self.protocol_id, len(self.spi), self.notify_type)
        except struct.error:
            head = _IBBH.pack(_check_u32(self.doi, "DOI"),
                              _check_u8(self.protocol_id, "protocol id"),
                              _check_u8(len(self.spi), "SPI size"),
                              _check_u16(self.notify_type, "notify type"))
        return head + bytes(self.spi) + bytes(self.data)

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        start = offset + GENERIC_HEADER_SIZE
        if len(body) < 8:
            _too_short(body, 8, offset, "N")
        doi, protocol_id, spi_size, notify_type = _IBBH.unpack_from(body)
        _check_doi_protocol(doi, protocol_id, start, "N", allow_zero_protocol=True)
        if 8 + spi_size > len(body):
            _fail(NotifyType.PAYLOAD_MALFORMED, start + 5,
                  f"N: SPI size {spi_size} runs past the {len(body)}-byte body")
        # cls(...) with each slot stored directly (see _DataPayload.decode_body) and
        # the enums' tables read here (INITIAL_CONTACT comes with every tunnel).
        # _check_doi_protocol let only the two DOIs through.
        notify = _new_payload(cls)
        notify.notify_type = _NOTIFY_TYPES.get(notify_type, notify_type)
        notify.protocol_id = _PROTOCOL_IDS.get(protocol_id, protocol_id)
        notify.spi = bytes(body[8:8 + spi_size])
        notify.data = bytes(body[8 + spi_size:])
        notify.doi = _DOIS[doi]
        notify.raw = body
        notify.offset = offset
        return notify

    def describe(self) -> str:
        spi = f" spi {self.spi.hex()}" if self.spi else ""
        data = f" data {_short_hex(self.data)}" if self.data else ""
        return f"N {_name(self.notify_type)} {_name(self.protocol_id)}{spi}{data}"


@dataclass(slots=True)
class DeletePayload(Payload):
    """D: DOI, protocol, SPI size and SPIs (RFC 2408 §3.15)."""

    TYPE: ClassVar[int] = PayloadType.DELETE

    protocol_id: int
    spi_size: int
    spis: list[bytes] = field(default_factory=list)
    doi: int = Doi.IPSEC

    def encode_body(self) -> bytes:
        for spi in self.spis:
            if len(spi) != self.spi_size:
                raise ValueError(f"delete SPI {spi.hex()} is not {self.spi_size} bytes")
        return (struct.pack("!IBBH", _check_u32(self.doi, "DOI"),
                            _check_u8(self.protocol_id, "protocol id"),
                            _check_u8(self.spi_size, "SPI size"),
                            _check_u16(len(self.spis), "number of SPIs"))
                + b"".join(bytes(spi) for spi in self.spis))

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        start = offset + GENERIC_HEADER_SIZE
        if len(body) < 8:
            _too_short(body, 8, offset, "D")
        doi, protocol_id, spi_size, count = struct.unpack_from("!IBBH", body)
        _check_doi_protocol(doi, protocol_id, start, "D", allow_zero_protocol=False)
        if 8 + spi_size * count != len(body):
            _fail(NotifyType.PAYLOAD_MALFORMED, start + 6,
                  f"D: {count} SPIs of {spi_size} bytes need {8 + spi_size * count} bytes, "
                  f"the body has {len(body)}")
        spis = [bytes(body[8 + i * spi_size:8 + (i + 1) * spi_size]) for i in range(count)]
        return cls(member(ProtocolId, protocol_id), spi_size, spis, member(Doi, doi), raw=body, offset=offset)

    def describe(self) -> str:
        return f"D {_name(self.protocol_id)} " + ",".join(s.hex() for s in self.spis)


# --- mode-config ATTRIBUTE (draft-ietf-ipsec-isakmp-mode-cfg-05 §3.2) ---------


@dataclass(slots=True)
class AttributePayload(Payload):
    """ATTRIBUTE: message type, identifier and attributes (named with CfgAttr)."""

    TYPE: ClassVar[int] = PayloadType.ATTRIBUTE

    cfg_type: int
    identifier: int = 0
    attributes: list[Attribute] = field(default_factory=list)

    def encode_body(self) -> bytes:
        return (struct.pack("!BBH", _check_u8(self.cfg_type, "mode-config type"), 0,
                            _check_u16(self.identifier, "mode-config identifier"))
                + encode_attributes(self.attributes))

    @classmethod
    def decode_body(cls, body: bytes, offset: int) -> Self:
        start = offset + GENERIC_HEADER_SIZE
        if len(body) < 4:
            _too_short(body, 4, offset, "ATTRIBUTE")
        cfg_type, _reserved, identifier = struct.unpack_from("!BBH", body)
        attributes = decode_attributes(body[4:], start + 4, types=CfgAttr,
                                       context="ATTRIBUTE payload")
        return cls(enum_or_int(CfgMessageType, cfg_type), identifier,
                   attributes, raw=body, offset=offset)

    def describe(self) -> str:
        names = ",".join(_name(a.type) for a in self.attributes)
        return f"ATTR {_name(self.cfg_type)} id {self.identifier} [{names}]"


# --- NAT-OA (RFC 3947 §5.2) ----------------------------------------------------


@dataclass(slots=True)
class NatOaPayload(Payload):
    """NAT-OA: original address, IPV4_ADDR or IPV6_ADDR (RFC 3947 §5.2).

    ``draft`` selects payload type 131 (draft-ietf-ipsec-nat-t-ike-02/03).
    """

    id_type: int
    address: bytes
    draft: bool = False

    @property
    def payload_type(self) -> int:
        return _NAT_OA_DRAFT if self.draft else _NAT_OA

    def encode_body(self) -> bytes:
        return bytes([_check_u8(self.id_type, "NAT-OA ID type"), 0, 0, 0]) + bytes(self.address)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, draft: bool = False) -> Self:
        start = offset + GENERIC_HEADER_SIZE
        if len(body) < 4:
            _too_short(body, 4, offset, "NAT-OA")
        sizes = {IdType.IPV4_ADDR: 4, IdType.IPV6_ADDR: 16}
        id_type = body[0]
        if id_type not in sizes:
            _fail(NotifyType.PAYLOAD_MALFORMED, start,
                  f"NAT-OA ID type {id_type} is not IPV4_ADDR or IPV6_ADDR")
        id_type = member(IdType, id_type)
        if len(body) - 4 != sizes[id_type]:
            _fail(NotifyType.PAYLOAD_MALFORMED, start + 4,
                  f"NAT-OA {id_type.label} address is {len(body) - 4} bytes, "
                  f"must be {sizes[id_type]}")
        return cls(id_type, bytes(body[4:]), draft, raw=body, offset=offset)

    @classmethod
    def from_address(cls, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
                     draft: bool = False) -> Self:
        ip = ipaddress.ip_address(address)
        return cls(_IPV4_ADDR if ip.version == 4 else _IPV6_ADDR, ip.packed, draft)

    def describe(self) -> str:
        return f"{self.label} {format_id_data(self.id_type, self.address)}"


# --- anything else -------------------------------------------------------------


@dataclass(slots=True)
class RawPayload(Payload):
    """A payload of a private type (128–255) we do not interpret, kept verbatim."""

    type: int
    body: bytes = b""

    @property
    def payload_type(self) -> int:
        return self.type

    def encode_body(self) -> bytes:
        return bytes(self.body)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, payload_type: int = 0) -> Self:
        return cls(payload_type, bytes(body), raw=body, offset=offset)

    def describe(self) -> str:
        return f"{self.label}({len(self.body)} bytes)"


_DECODERS: dict[int, type[Payload]] = {
    PayloadType.SA: SaPayload,
    PayloadType.KEY_EXCH: KeyExchangePayload,
    PayloadType.ID: IdPayload,
    PayloadType.CERT: CertPayload,
    PayloadType.CERT_REQ: CertRequestPayload,
    PayloadType.HASH: HashPayload,
    PayloadType.SIG: SignaturePayload,
    PayloadType.NONCE: NoncePayload,
    PayloadType.NOTIFY: NotifyPayload,
    PayloadType.DELETE: DeletePayload,
    PayloadType.VENDOR: VendorPayload,
    PayloadType.ATTRIBUTE: AttributePayload,
}

# Payload types that may appear in a message's top-level chain.
TOP_LEVEL_TYPES = frozenset(_DECODERS) | {
    PayloadType.NAT_D, PayloadType.NAT_OA, PayloadType.NAT_D_DRAFT, PayloadType.NAT_OA_DRAFT}


# Every top-level type's decoder, called as ``decode(body, offset)`` (message's
# payload walk uses it directly; other types are RawPayload).
TOP_LEVEL_DECODERS: dict[int, Callable[[bytes, int], Payload]] = {
    **{payload_type: decoder.decode_body for payload_type, decoder in _DECODERS.items()},
    PayloadType.NAT_D: lambda body, offset: NatDPayload.decode_body(body, offset, False),
    PayloadType.NAT_D_DRAFT: lambda body, offset: NatDPayload.decode_body(body, offset, True),
    PayloadType.NAT_OA: lambda body, offset: NatOaPayload.decode_body(body, offset, False),
    PayloadType.NAT_OA_DRAFT: lambda body, offset: NatOaPayload.decode_body(body, offset,
                                                                            True),
}


# Top-level types whose body is one opaque byte string, by class: message's
# payload walk makes these itself (``_DataPayload.decode_body`` without its frame,
# since they are most of the payloads received), storing ``data``, ``raw`` and
# ``offset`` (and NAT-D's ``draft``). A class whose decoding does more must not
# be listed here.
DATA_PAYLOAD_CLASSES: dict[int, type[Payload]] = {
    PayloadType.KEY_EXCH: KeyExchangePayload,
    PayloadType.HASH: HashPayload,
    PayloadType.SIG: SignaturePayload,
    PayloadType.NONCE: NoncePayload,
    PayloadType.VENDOR: VendorPayload,
    PayloadType.NAT_D: NatDPayload,
    PayloadType.NAT_D_DRAFT: NatDPayload,
}


def decode_payload_body(payload_type: int, body: bytes, offset: int) -> Payload:
    """Decode one top-level payload body of ``payload_type``.

    ``offset`` is that of the payload's generic header in the datagram. Types
    that may not appear at top level must be refused by the caller;
    :mod:`isakmpd.wire.message` does so before calling this.
    """
    decoder = TOP_LEVEL_DECODERS.get(payload_type)
    if decoder is None:
        return RawPayload.decode_body(body, offset, payload_type)
    return decoder(body, offset)
