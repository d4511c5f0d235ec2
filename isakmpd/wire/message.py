"""ISAKMP messages: the 28-byte header (RFC 2408 §3.1) and the top-level payload chain.

This module owns the header codec, the generic payload header walk (RFC 2408
§3.2) and the :class:`Message` model. It does no encryption: a dispatcher first
calls :func:`decode_header`, which works whether or not the body is encrypted
(cookies select the ISAKMP SA, the message ID the exchange), the exchange then
decrypts ``data[HEADER_SIZE:]`` and calls :meth:`Message.from_body` with
``allow_padding=True`` (RFC 2409 appendix B pads the plaintext with zeros to the
cipher block size; like isakmpd we ignore whatever follows the last payload of
a decrypted body). Outgoing, :meth:`Message.encode_body` gives the plaintext the
caller encrypts, and :meth:`Header.encode` the header to put in front.

Checks follow RFC 2408 §5.1–5.2 and isakmpd's message.c (message_recv,
message_parse_payloads); each failure is a :class:`DecodeError` carrying the
notify to send and the offset in the datagram.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from isakmpd.wire.constants import (
    COOKIE_SIZE,
    GENERIC_HEADER_SIZE,
    HEADER_SIZE,
    ISAKMP_VERSION,
    PRIVATE_PAYLOAD_MIN,
    VALID_FLAGS,
    ExchangeType,
    Flag,
    NotifyType,
    PayloadType,
    value_map,
)
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.payloads import (
    DATA_PAYLOAD_CLASSES,
    TOP_LEVEL_DECODERS,
    TOP_LEVEL_TYPES,
    NatDPayload,
    Payload,
    RawPayload,
    encode_generic,
    payload_label,
)

__all__ = [
    "HEADER_SIZE",
    "Header",
    "Message",
    "decode_header",
    "decode_payloads",
    "encode_payload_chain",
    "pack_header",
]

_HEADER = struct.Struct("!8s8sBBBBII")
# RFC 2408 §3.1 exchange types 7..31 are reserved; 0 is NONE. 6 is mode-config's
# TRANSACTION, 32..255 are DOI-specific or private (the exchange layer decides).
_RESERVED_EXCHANGES = range(7, 32)
_NO_FLAGS = Flag(0)
# Every combination of the flags a valid header may carry, built once.
_FLAG_VALUES = [Flag(value) for value in range(int(VALID_FLAGS) + 1)]
_INVALID_FLAG_BITS = 0xff ^ int(VALID_FLAGS)
# Plain values for the per-message paths (an enum class attribute costs a call
# through EnumType's __getattr__ slot; see constants.value_map).
_ENC = int(Flag.ENC)
_NONE = int(PayloadType.NONE)
_EXCHANGE_NONE = int(ExchangeType.NONE)
_PAYLOAD_TYPES = value_map(PayloadType)
_EXCHANGE_TYPES = value_map(ExchangeType)


@dataclass(frozen=True)
class Header:
    """The fixed ISAKMP header. ``length`` is the whole datagram's length."""

    icookie: bytes
    rcookie: bytes
    next_payload: int
    exchange_type: int
    flags: Flag
    message_id: int
    length: int
    version: int = ISAKMP_VERSION

    @property
    def encrypted(self) -> bool:
        return bool(int(self.flags) & _ENC)

    @property
    def major(self) -> int:
        return self.version >> 4

    @property
    def minor(self) -> int:
        return self.version & 0x0f

    def encode(self) -> bytes:
        """The 28 header bytes. Raises ValueError for fields that do not fit."""
        # The struct packs fixed-size strings by padding or cutting, so the cookies
        # are checked here; out-of-range numbers make it raise (then say which).
        if len(self.icookie) != COOKIE_SIZE or len(self.rcookie) != COOKIE_SIZE:
            for name, cookie in (("icookie", self.icookie), ("rcookie", self.rcookie)):
                if len(cookie) != COOKIE_SIZE:
                    raise ValueError(f"{name} must be {COOKIE_SIZE} bytes, not {len(cookie)}")
        try:
            return _HEADER.pack(self.icookie, self.rcookie, self.next_payload, self.version,
                                self.exchange_type, self.flags, self.message_id, self.length)
        except struct.error:
            pass
        for name, value, limit in (("next payload", self.next_payload, 0xff),
                                   ("version", self.version, 0xff),
                                   ("exchange type", self.exchange_type, 0xff),
                                   ("flags", int(self.flags), 0xff),
                                   ("message id", self.message_id, 0xffffffff),
                                   ("length", self.length, 0xffffffff)):
            if not 0 <= int(value) <= limit:
                raise ValueError(f"header {name} {value} is out of range")
        raise ValueError(f"header fields do not fit: {self!r}")

    def describe(self) -> str:
        return (f"{ExchangeType.describe(self.exchange_type)} icookie {self.icookie.hex()} "
                f"rcookie {self.rcookie.hex()} msgid {self.message_id:08x} "
                f"flags {_flag_names(self.flags)} len {self.length}")

    __str__ = describe


def pack_header(icookie: bytes, rcookie: bytes, next_payload: int, exchange_type: int,
                flags: int, message_id: int, length: int) -> bytes:
    """``Header(...).encode()`` for these fields (version 1.0), packed without a Header.

    ``length`` is the whole datagram's. Raises ValueError, naming the field, for
    fields that do not fit.
    """
    if len(icookie) == COOKIE_SIZE and len(rcookie) == COOKIE_SIZE:
        try:
            return _HEADER.pack(icookie, rcookie, next_payload, ISAKMP_VERSION,
                                exchange_type, flags, message_id, length)
        except struct.error:
            pass
    value = int(flags)
    return Header(bytes(icookie), bytes(rcookie), next_payload, exchange_type,
                  _FLAG_VALUES[value] if 0 <= value < len(_FLAG_VALUES) else Flag(value),
                  message_id, length).encode()      # raises, naming the field


def _flag_names(flags: int) -> str:
    names = [flag.name for flag in Flag if flags & flag and flag.name]
    return "|".join(names) if names else "0"


def _fail(notify: NotifyType, offset: int, message: str, *, silent: bool = False) -> DecodeError:
    return DecodeError(notify, offset, f"{message} (offset {offset})", silent=silent)


def decode_header(data: bytes, *, check_length: bool = True) -> Header:
    """Decode and validate the 28-byte header of datagram ``data``.

    Works on encrypted messages too (nothing after the header is read). With
    ``check_length`` (the default) the header's length must equal
    ``len(data)``; a mismatch is UNEQUAL_PAYLOAD_LENGTHS and, as in isakmpd's
    message_recv, ``silent`` (no notification is sent). The same goes for a
    datagram shorter than a header: there are no cookies to answer to.
    """
    if len(data) < HEADER_SIZE:
        raise _fail(NotifyType.UNEQUAL_PAYLOAD_LENGTHS, len(data),
                    f"message of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte "
                    "ISAKMP header", silent=True)
    (icookie, rcookie, next_payload, version, exchange_type, flags, message_id,
     length) = _HEADER.unpack_from(data)
    if check_length and length != len(data):
        raise _fail(NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 24,
                    f"header length {length} differs from the datagram size {len(data)}",
                    silent=True)
    # RFC 2408 §5.1: version first, then exchange type and flags.
    if version >> 4 != 1:
        raise _fail(NotifyType.INVALID_MAJOR_VERSION, 17,
                    f"ISAKMP major version {version >> 4}, we speak 1")
    if version & 0x0f != 0:
        raise _fail(NotifyType.INVALID_MINOR_VERSION, 17,
                    f"ISAKMP minor version {version & 0x0f}, we speak 0")
    if exchange_type == _EXCHANGE_NONE or exchange_type in _RESERVED_EXCHANGES:
        raise _fail(NotifyType.INVALID_EXCHANGE_TYPE, 18,
                    f"exchange type {exchange_type} is reserved")
    if flags & _INVALID_FLAG_BITS:
        raise _fail(NotifyType.INVALID_FLAGS, 19,
                    f"flags {flags:#04x} have bits other than ENC, COMMIT and AUTH_ONLY")
    if next_payload not in _ALLOWED_NEXT:
        _check_top_level_type(next_payload, 16, "ISAKMP header")
    # Header(...) of a frozen dataclass sets each field through object.__setattr__;
    # filling the new instance's __dict__ makes the same object at a third of the
    # cost (every received datagram has one).
    header = _new_header(Header)
    fields = header.__dict__            # (stores: cheaper than update() with keywords)
    fields["icookie"] = icookie
    fields["rcookie"] = rcookie
    fields["next_payload"] = _PAYLOAD_TYPES.get(next_payload, next_payload)
    fields["exchange_type"] = _EXCHANGE_TYPES.get(exchange_type, exchange_type)
    fields["flags"] = _FLAG_VALUES[flags]
    fields["message_id"] = message_id
    fields["length"] = length
    fields["version"] = version
    return header


_new_header = object.__new__


def _check_top_level_type(payload_type: int, offset: int, where: str) -> None:
    """INVALID_PAYLOAD_TYPE for types that may not head a top-level payload.

    RFC 2408 §5.2 and isakmpd message_parse_payloads: 15..127 other than the
    NAT-T pair are reserved or have no meaning in IKEv1 (SAK..POP); PROPOSAL and
    TRANSFORM only live inside an SA. Private types (128..255) are accepted.
    """
    if payload_type == _NONE or payload_type in TOP_LEVEL_TYPES:
        return
    if payload_type >= PRIVATE_PAYLOAD_MIN:
        return
    raise _fail(NotifyType.INVALID_PAYLOAD_TYPE, offset,
                f"{where}: next payload {payload_label(payload_type)} is not allowed")


# What may follow a payload without further checks (the common case, decided by
# one set lookup; anything else goes through _check_top_level_type).
_ALLOWED_NEXT = frozenset({int(PayloadType.NONE), *(int(t) for t in TOP_LEVEL_TYPES),
                           *range(PRIVATE_PAYLOAD_MIN, 256)})


_GENERIC = struct.Struct("!BBH")
_unpack_generic = _GENERIC.unpack_from
_pack_generic = _GENERIC.pack
_DECODERS_GET = TOP_LEVEL_DECODERS.get
_DATA_CLASSES_GET = DATA_PAYLOAD_CLASSES.get
_decode_raw = RawPayload.decode_body
_new_payload = object.__new__
_NAT_D_DRAFT = int(PayloadType.NAT_D_DRAFT)


def _walk(first_type: int, body: bytes, base_offset: int,
          allow_padding: bool) -> tuple[list[Payload], int]:
    payloads: list[Payload] = []
    append = payloads.append
    pos = 0
    current = first_type
    if body.__class__ is not bytes:
        body = bytes(body)              # once: every slice below is then bytes
    end = len(body)
    while current:                      # until NONE (0)
        at = base_offset + pos
        left = end - pos
        if left < GENERIC_HEADER_SIZE:
            raise _fail(NotifyType.UNEQUAL_PAYLOAD_LENGTHS, at,
                        f"{payload_label(current)} payload header truncated: {left} bytes left")
        next_type, reserved, length = _unpack_generic(body, pos)
        if next_type not in _ALLOWED_NEXT:
            _check_top_level_type(next_type, at, f"{payload_label(current)} payload")
        if reserved:
            # isakmpd message_parse_payloads: "reserved field non-zero".
            raise _fail(NotifyType.PAYLOAD_MALFORMED, at + 1,
                        f"{payload_label(current)} payload reserved byte is {reserved:#04x}")
        if length < GENERIC_HEADER_SIZE:
            raise _fail(NotifyType.PAYLOAD_MALFORMED, at + 2,
                        f"{payload_label(current)} payload length {length} is shorter than "
                        "its generic header")
        if length > left:
            raise _fail(NotifyType.UNEQUAL_PAYLOAD_LENGTHS, at + 2,
                        f"{payload_label(current)} payload length {length} runs past the "
                        f"end ({left} bytes left)")
        chunk = body[pos + GENERIC_HEADER_SIZE:pos + length]
        cls = _DATA_CLASSES_GET(current)
        if cls is not None:
            # KE, NONCE, HASH, VID, NAT-D (most payloads received): the body is the
            # data, stored here rather than in _DataPayload.decode_body (one frame
            # less per payload, some 15 per tunnel).
            payload = _new_payload(cls)
            payload.data = payload.raw = chunk
            payload.offset = at
            if cls is NatDPayload:
                payload.draft = current == _NAT_D_DRAFT
            append(payload)
        else:
            # payloads.decode_payload_body, without its call: the decoder straight away.
            decoder = _DECODERS_GET(current)
            append(decoder(chunk, at) if decoder is not None
                   else _decode_raw(chunk, at, current))
        pos += length
        current = next_type
    if pos != end and not allow_padding:
        raise _fail(NotifyType.UNEQUAL_PAYLOAD_LENGTHS, base_offset + pos,
                    f"{end - pos} bytes follow the last payload")
    return payloads, pos


def decode_payloads(first_type: int, body: bytes, base_offset: int = HEADER_SIZE, *,
                    allow_padding: bool = False) -> list[Payload]:
    """Decode the payload chain in ``body`` that starts with type ``first_type``.

    ``base_offset`` is where ``body`` starts in the datagram (so offsets in
    errors and in ``payload.offset`` are datagram offsets). Bytes after the last
    payload are an error (UNEQUAL_PAYLOAD_LENGTHS) unless ``allow_padding``.
    """
    _check_top_level_type(first_type, base_offset, "payload chain")
    return _walk(first_type, body, base_offset, allow_padding)[0]


def encode_payload_chain(payloads: list[Payload] | tuple[Payload, ...]) -> tuple[int, bytes]:
    """``(type of the first payload, chained bytes)``; ``(NONE, b"")`` when empty."""
    # Last to first, each payload learning the type that follows it; a plain loop
    # (a comprehension makes a function object and a frame every time in 3.11).
    # Each payload's generic header is packed here and joined with the bodies:
    # payload.encode(next_type) would cost a frame and a copy of the body per
    # payload (every message we send).
    next_type = _NONE
    parts: list[bytes] = []
    append = parts.append
    for payload in payloads[::-1]:
        body = payload.encode_body()
        append(body)
        try:
            append(_pack_generic(next_type, 0, GENERIC_HEADER_SIZE + len(body)))
        except struct.error:
            encode_generic(next_type, body)     # raises, naming the field
        next_type = payload.payload_type
    parts.reverse()
    return next_type, b"".join(parts)


@dataclass
class Message:
    """An ISAKMP message: header fields and payloads, in order.

    A decoded message also keeps ``body`` (the payload chain bytes exactly as
    received, padding excluded) and ``padding`` (what followed the last
    payload); neither takes part in equality.
    """

    icookie: bytes
    rcookie: bytes
    exchange_type: int
    payloads: list[Payload] = field(default_factory=list)
    flags: Flag = _NO_FLAGS
    message_id: int = 0
    body: bytes | None = field(default=None, compare=False, repr=False)
    padding: bytes = field(default=b"", compare=False, repr=False)

    # -- encoding ---------------------------------------------------------

    def encode_body(self) -> bytes:
        """The payload chain (the plaintext an encrypting caller pads and encrypts)."""
        return encode_payload_chain(self.payloads)[1]

    def header(self, body_length: int | None = None, *, flags: Flag | None = None) -> Header:
        """The header for a body of ``body_length`` bytes (default: our plaintext)."""
        first = self.payloads[0].payload_type if self.payloads else PayloadType.NONE
        size = len(self.encode_body()) if body_length is None else body_length
        value = int(self.flags if flags is None else flags)
        return Header(bytes(self.icookie), bytes(self.rcookie), first, self.exchange_type,
                      _FLAG_VALUES[value] if 0 <= value < len(_FLAG_VALUES) else Flag(value),
                      self.message_id, HEADER_SIZE + size)

    def header_bytes(self, body_length: int, *, flags: int | None = None) -> bytes:
        """``header(body_length, flags=flags).encode()``, packed without a Header."""
        payloads = self.payloads
        return pack_header(self.icookie, self.rcookie,
                           payloads[0].payload_type if payloads else _NONE,
                           self.exchange_type, self.flags if flags is None else flags,
                           self.message_id, HEADER_SIZE + body_length)

    def encode(self) -> bytes:
        """Header and cleartext payloads, flags as set (no encryption here)."""
        body = self.encode_body()
        return self.header_bytes(len(body)) + body

    # -- decoding ---------------------------------------------------------

    @classmethod
    def decode(cls, data: bytes) -> Message:
        """Decode a cleartext datagram (header and payloads).

        The ENC flag is not interpreted: a caller holding an encrypted message
        uses :func:`decode_header` and :meth:`from_body` instead.
        """
        header = decode_header(data)
        return cls.from_body(header, data[HEADER_SIZE:])

    @classmethod
    def from_body(cls, header: Header, body: bytes, *, allow_padding: bool = False,
                  ) -> Message:
        """Build a message from a decoded header and its (decrypted) body."""
        if body.__class__ is not bytes:
            body = bytes(body)
        payloads, end = _walk(header.next_payload, body, HEADER_SIZE, allow_padding)
        if cls is not Message:
            return cls(header.icookie, header.rcookie, header.exchange_type, payloads,
                       header.flags, header.message_id, body=bytes(body[:end]),
                       padding=bytes(body[end:]))
        # Message(...) filled in without the generated __init__ (every received
        # message makes one).
        message = _new_message(Message)
        message.icookie = header.icookie
        message.rcookie = header.rcookie
        message.exchange_type = header.exchange_type
        message.payloads = payloads
        message.flags = header.flags
        message.message_id = header.message_id
        message.body = body[:end]
        message.padding = body[end:]
        return message

    # -- helpers for exchanges ------------------------------------------------

    def find(self, payload_type: int) -> list[Payload]:
        """All payloads of ``payload_type``, in message order."""
        found = []
        for payload in self.payloads:
            if payload.payload_type == payload_type:
                found.append(payload)
        return found

    def first(self, payload_type: int) -> Payload | None:
        """The first payload of ``payload_type``, or None."""
        for payload in self.payloads:
            if payload.payload_type == payload_type:
                return payload
        return None

    def bytes_after(self, index: int) -> bytes:
        """The chain bytes after payload ``index``, including their generic headers.

        This is what Quick Mode's HASH(1)/HASH(2) and the informational HASH
        cover (RFC 2409 §5.5, §5.7): "the entire message that follows the hash
        payload". A decoded message uses the bytes as received.
        """
        if not 0 <= index < len(self.payloads):
            raise IndexError(f"no payload number {index} in a message of "
                             f"{len(self.payloads)}")
        payload = self.payloads[index]
        if self.body is not None and payload.offset is not None and payload.raw is not None:
            start = payload.offset - HEADER_SIZE + GENERIC_HEADER_SIZE + len(payload.raw)
            return self.body[start:]
        return encode_payload_chain(self.payloads[index + 1:])[1]

    def with_flags(self, flags: Flag) -> Message:
        return replace(self, flags=Flag(flags))

    def describe(self) -> str:
        """One line for logs: exchange, cookies, message ID, flags and payloads."""
        payloads = ", ".join(p.label for p in self.payloads) or "no payloads"
        return (f"{ExchangeType.describe(self.exchange_type)} "
                f"{bytes(self.icookie).hex()}:{bytes(self.rcookie).hex()} "
                f"msgid {self.message_id:08x} flags {_flag_names(self.flags)}: {payloads}")

    def describe_long(self) -> str:
        """Several lines, one per payload with its contents summarised."""
        lines = [self.describe()]
        lines.extend(f"  {p.describe()}" for p in self.payloads)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


_new_message = object.__new__
