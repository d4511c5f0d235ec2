"""Informational exchanges on a ready ISAKMP SA: notifications and DELETE.

This module owns what isakmpd's ``message.c`` (send_info, send_delete) and
``ipsec.c`` (ipsec_responder / ipsec_handle_leftover_payload) do with protected
informational exchanges (inventory §4.6, RFC 2409 §5.7):

* sending: one encrypted message with a random message ID whose IV is
  hash(last phase 1 IV | M-ID), carrying HASH(1) = prf(SKEYID_a, M-ID | N/D) first
  and then the notification or DELETE payloads; it is never retransmitted;
* receiving: the HASH must come first and match, otherwise the message is dropped
  with one log line and no answer (it cannot be authenticated). An authenticated one
  from a new NAT mapping of the peer moves the SAs first (``Engine.peer_authenticated``,
  RFC 3947 §7). Only then does a
  DELETE remove our SAs: protocol ISAKMP with 16-byte SPIs (the cookie pair), ESP/AH
  with 4-byte SPIs naming the sender's inbound SAs, i.e. our outbound ones, IPCOMP
  with the sender's 2-byte CPI (or 4 bytes, RFC 2407 §4.4.5), and only SAs with
  the sending peer; a DELETE of one protocol removes the whole bundle. INITIAL-CONTACT removes older SAs with the peer;
  other notifications are logged.

Unprotected notifications (before an ISAKMP SA exists) are sent and read by the
engine, and never tear anything down.

RESPONDER-LIFETIME (RFC 2407 §4.6.3.1): its data is an attribute list of
LIFE_TYPE/LIFE_DURATION pairs (IKE attribute numbers 11/12 for an ISAKMP SA, whose
SPI is the cookie pair; IPsec SA_LIFE_TYPE/SA_LIFE_DURATION 1/2 for an ESP/AH SA,
whose SPI is the sender's inbound SPI). :func:`lifetime_data` builds it and
:func:`read_lifetime` reads it; a protected one received here shortens the named SA
of which we were the initiator (the engine never lengthens a lifetime).
"""

from __future__ import annotations

from typing import Any, ClassVar

from isakmpd.crypto import prf as _prf
from isakmpd.crypto.ipsec_keys import informational_hash
from isakmpd.ike.exchange import Exchange, ExchangeError, MessageSpec
from isakmpd.ike.sa import Address
from isakmpd.wire.attributes import Attribute, decode_attributes, encode_attributes
from isakmpd.wire.constants import (
    ExchangeType,
    IkeAttr,
    IpsecAttr,
    LifeType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.message import Message, encode_payload_chain
from isakmpd.wire.payloads import DeletePayload, HashPayload, NotifyPayload, Payload

__all__ = ["Informational", "lifetime_data", "read_lifetime"]


def _life_attrs(protocol: int) -> tuple[int, int]:
    if protocol == ProtocolId.ISAKMP:
        return IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION
    return IpsecAttr.SA_LIFE_TYPE, IpsecAttr.SA_LIFE_DURATION


def lifetime_data(protocol: int, seconds: int | None, kilobytes: int | None) -> bytes:
    """The data of a RESPONDER-LIFETIME notification for an SA of ``protocol``."""
    type_attr, duration_attr = _life_attrs(protocol)
    attributes: list[Attribute] = []
    for life_type, value in ((LifeType.SECONDS, seconds), (LifeType.KILOBYTES, kilobytes)):
        if value is not None:
            attributes += [Attribute(type_attr, int(life_type)), Attribute(duration_attr, value)]
    return encode_attributes(attributes)


def read_lifetime(protocol: int, data: bytes) -> tuple[int | None, int | None]:
    """(seconds, kilobytes) of a RESPONDER-LIFETIME's data. Raises ValueError."""
    type_attr, duration_attr = _life_attrs(protocol)
    try:
        attributes = decode_attributes(data, context="RESPONDER-LIFETIME")
        seconds = kilobytes = None
        pending: int | None = None
        for attribute in attributes:
            if attribute.type == type_attr:
                pending = attribute.as_int()
            elif attribute.type == duration_attr and pending is not None:
                if pending == LifeType.SECONDS:
                    seconds = attribute.as_int()
                elif pending == LifeType.KILOBYTES:
                    kilobytes = attribute.as_int()
                pending = None
    except DecodeError as error:
        raise ValueError(str(error)) from None
    if seconds is None and kilobytes is None:
        raise ValueError("no lifetime in its data")
    return seconds, kilobytes


class Informational(Exchange):
    """A one-message protected informational exchange, either direction."""

    EXCHANGE_TYPE = ExchangeType.INFO
    NAME = "Informational"
    INITIATOR_STEPS = ("send_info",)
    RESPONDER_STEPS = ("recv_info",)
    MESSAGES: ClassVar[dict[str, MessageSpec]] = {
        "recv_info": ((PayloadType.HASH,), (PayloadType.NOTIFY, PayloadType.DELETE)),
    }
    ENCRYPTED = frozenset({"send_info", "recv_info"})

    def __init__(self, *args: Any, payloads: list[Payload] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payloads = list(payloads or [])
        self._remove_own_sa = False

    def succeed(self, result: Any) -> None:
        super().succeed(result)
        if self._remove_own_sa:
            self.engine.remove_isakmp_sa(self.sa)

    def _hash(self, rest: bytes) -> bytes:
        keys = self.sa.keys
        assert keys is not None
        return informational_hash(self.sa.suite.hash, keys.skeyid_a, self.message_id, rest)

    def send_info(self) -> list[Payload]:
        rest = encode_payload_chain(self.payloads)[1]
        self.engine.log.info("{exchange}: sending {what}", exchange=self.describe(),
                             what=", ".join(p.describe() for p in self.payloads))
        return [HashPayload(self._hash(rest)), *self.payloads]

    def recv_info(self, message: Message, local: Address, remote: Address) -> None:
        first = message.payloads[0] if message.payloads else None
        if not isinstance(first, HashPayload):
            raise ExchangeError(None, f"{self.describe()}: HASH is not the first payload, "
                                      "message dropped", fatal=False)
        if not _prf.equal(self._hash(message.bytes_after(0)), first.body_bytes()):
            raise ExchangeError(None, f"{self.describe()}: HASH(1) does not match, "
                                      "message dropped", fatal=False)
        self.engine.peer_authenticated(self.sa, local, remote)
        for payload in message.payloads[1:]:
            if isinstance(payload, DeletePayload):
                self._delete(payload)
            elif isinstance(payload, NotifyPayload):
                self._notify(payload)

    def _delete(self, payload: DeletePayload) -> None:
        peer = self.sa.remote[0]
        protocol = payload.protocol_id
        if protocol == ProtocolId.ISAKMP:
            if payload.spi_size != 16:
                self.engine.log.info("{exchange}: ISAKMP DELETE with {size}-byte SPIs "
                                     "ignored", exchange=self.describe(),
                                     size=payload.spi_size)
                return
            for spi in payload.spis:
                target = self.engine.sadb.find_isakmp_by_cookies(spi)
                if target is None or target.remote[0] != peer:
                    self.engine.log.info("{exchange}: DELETE of unknown ISAKMP SA {spi}",
                                         exchange=self.describe(), spi=spi.hex())
                    continue
                self.engine.log.info("{exchange}: peer deleted {sa}",
                                     exchange=self.describe(), sa=target.describe())
                self.engine.peer_deleted(target, protocol)
                if target is self.sa:
                    # This exchange runs on it: remove it once the exchange is done.
                    self._remove_own_sa = True
                else:
                    self.engine.remove_isakmp_sa(target)
            return
        sizes = (2, 4) if protocol == ProtocolId.IPCOMP else (4,)    # a CPI: RFC 2407 §4.4.5
        if protocol not in (ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH, ProtocolId.IPCOMP) \
                or payload.spi_size not in sizes:
            self.engine.log.info("{exchange}: DELETE for {protocol} with {size}-byte SPIs "
                                 "ignored", exchange=self.describe(),
                                 protocol=ProtocolId.describe(protocol),
                                 size=payload.spi_size)
            return
        for spi in payload.spis:
            if protocol == ProtocolId.IPCOMP:
                spi = spi[-2:]
            ipsec = self.engine.sadb.ipsec_by_peer_spi(protocol, spi, peer)
            if ipsec is None:
                self.engine.log.info("{exchange}: DELETE of unknown {protocol} SA {spi}",
                                     exchange=self.describe(),
                                     protocol=ProtocolId.describe(protocol), spi=spi.hex())
                continue
            self.engine.log.info("{exchange}: peer deleted {sa}", exchange=self.describe(),
                                 sa=ipsec.describe())
            self.engine.peer_deleted(ipsec, protocol)
            self.engine.remove_ipsec_sa(ipsec)

    def _responder_lifetime(self, payload: NotifyPayload) -> None:
        """The peer (responder) shortened the lifetime of an SA we initiated."""
        engine = self.engine
        try:
            seconds, kilobytes = read_lifetime(payload.protocol_id, payload.data)
        except ValueError as error:
            engine.log.info("{exchange}: RESPONDER-LIFETIME ignored: {error}",
                            exchange=self.describe(), error=error)
            return
        target: Any = None
        if payload.protocol_id == ProtocolId.ISAKMP:
            target = engine.sadb.find_isakmp_by_cookies(payload.spi)
        elif payload.protocol_id in (ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH):
            peer = self.sa.remote[0]
            target = (engine.sadb.ipsec_by_peer_spi(payload.protocol_id, payload.spi, peer)
                      or engine.sadb.ipsec_by_our_spi(payload.protocol_id, payload.spi))
        if target is None or target.remote[0] != self.sa.remote[0] or not target.initiator:
            engine.log.info("{exchange}: RESPONDER-LIFETIME for no SA we initiated with this "
                            "peer ({spi}), ignored", exchange=self.describe(),
                            spi=payload.spi.hex())
            return
        if engine.shorten_lifetime(target, seconds, kilobytes) \
                and payload.protocol_id != ProtocolId.ISAKMP:
            engine.reinstall_lifetimes(target)

    def _notify(self, payload: NotifyPayload) -> None:
        kind = NotifyType.describe(payload.notify_type)
        if payload.notify_type == NotifyType.INITIAL_CONTACT:
            if self.sa.exchange_type == ExchangeType.AGGRESSIVE:
                self.engine.log.info("{exchange}: INITIAL-CONTACT on an Aggressive Mode SA "
                                     "ignored", exchange=self.describe())
                return
            self.engine.initial_contact(self.sa, later=True)
            return
        if payload.notify_type == NotifyType.RESPONDER_LIFETIME:
            self._responder_lifetime(payload)
            return
        if payload.notify_type == NotifyType.R_U_THERE:
            # RFC 3706 §5: answer with the same sequence number (we send the DPD VID).
            self.engine.log.debug("{exchange}: R-U-THERE, answering", exchange=self.describe())
            self.engine.send_protected_notify(self.sa, NotifyType.R_U_THERE_ACK,
                                              spi=self.sa.cookies, data=payload.data)
            return
        self.engine.log.info("{exchange}: peer {ip} notified {kind}",
                             exchange=self.describe(), ip=self.sa.remote[0], kind=kind)
        if 0 < int(payload.notify_type) < NotifyType.CONNECTED:
            # An authenticated refusal: our Quick Modes still waiting for an answer on
            # this SA will not get one.
            self.engine.peer_refused(self.sa, kind)
