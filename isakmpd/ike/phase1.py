"""Phase 1: Main Mode (ID_PROT) and Aggressive Mode with pre-shared keys, both roles.

This module owns the phase 1 scripts of isakmpd's ``exchange.c`` and the steps of
``ike_main_mode.c``, ``ike_aggressive.c`` and ``ike_phase_1.c`` (inventory §4.2-§4.4,
§4.8, §4.12), written as data plus small steps that share one base class:

Main Mode (RFC 2409 §5)::

    I: SA VID...            -> R     R: SA VID...           -> I   (MM1, MM2)
    I: KE NONCE [NAT-D NAT-D] -> R   R: KE NONCE [NAT-D NAT-D] -> I (MM3, MM4)
    I: *ID HASH_I [N(IC)]   -> R     R: *ID HASH_R [N(IC)]  -> I   (MM5, MM6)

Aggressive Mode::

    I: SA VID... KE NONCE ID -> R
    R: SA VID... KE NONCE [NAT-D NAT-D] ID HASH_R -> I
    I: *HASH_I [NAT-D NAT-D] -> R

(* = encrypted.) NAT-D follows RFC 3947 in both modes (DESIGN.md §4): sent when both
sides sent a NAT-T vendor ID, checked on receipt; when a NAT is detected the
initiator moves to the NAT-T port for MM5 / AM3, and the responder follows the
initiator there. INITIAL-CONTACT goes with MM5/MM6 to a peer not contacted since
start; a received one (Main Mode only, authenticated) removes older SAs with that
peer. A refusal raises :class:`~isakmpd.ike.exchange.ExchangeError` with the RFC
2408 notify and one log line naming the peer. A responder that cut the initiator's
lifetime sends RESPONDER-LIFETIME in a protected informational exchange once the
SA is ready.
"""

from __future__ import annotations

from functools import lru_cache
from operator import attrgetter
from typing import Any, ClassVar

from isakmpd.crypto import dh
from isakmpd.crypto import prf as _prf
from isakmpd.crypto.cipher import cipher_spec
from isakmpd.crypto.keys import IvChain, hash_i, hash_r, phase1_keys_and_prf
from isakmpd.crypto.prf import CryptoError
from isakmpd.ike import natt, policy
from isakmpd.ike.exchange import Exchange, ExchangeError, MessageSpec, Prehashed
from isakmpd.ike.informational import lifetime_data
from isakmpd.ike.sa import Address
from isakmpd.wire.constants import (
    NAT_T_VIDS,
    VID_DPD,
    VID_OPENBSD,
    AuthMethod,
    ExchangeType,
    IkeAttr,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from isakmpd.wire.message import Message, encode_payload_chain
from isakmpd.wire.payloads import (
    HashPayload,
    IdPayload,
    KeyExchangePayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    VendorPayload,
)

__all__ = ["AggressiveMode", "MainMode", "Phase1", "phase1_class"]

NONCE_SIZE = 16               # what an initiator sends (inventory §4.1)
# Seconds between the end of phase 1 and our RESPONDER-LIFETIME informational.
RESPONDER_LIFETIME_DELAY = 0.5
NONCE_MIN, NONCE_MAX = 8, 256  # RFC 2409 §5: 8..256 bytes
_NAT_D = (PayloadType.NAT_D, PayloadType.NAT_D_DRAFT)
# Members the per-message steps use, as module names (an enum class attribute
# costs a Python-level call in 3.11; see wire.constants.value_map).
_SA = PayloadType.SA
_VENDOR = PayloadType.VENDOR
_NONCE = PayloadType.NONCE
_KEY_EXCH = PayloadType.KEY_EXCH
_ID = PayloadType.ID
_HASH = PayloadType.HASH
_NOTIFY = PayloadType.NOTIFY
_INITIAL_CONTACT = NotifyType.INITIAL_CONTACT
_ISAKMP = ProtocolId.ISAKMP
_PRE_SHARED = AuthMethod.PRE_SHARED
_AGGRESSIVE = ExchangeType.AGGRESSIVE
_ID_PROT = ExchangeType.ID_PROT


# Vendor IDs we recognise, to share one bytes object among all SAs.
_KNOWN_VIDS = {vid: vid for vid in (*NAT_T_VIDS, *natt.DRAFT_VIDS, VID_DPD, VID_OPENBSD)}
# The VID payloads we send, by whether NAT-T is on: constants, built once (a
# payload is never changed once made; messages only encode them).
_OUR_VIDS = {nat_t: tuple(VendorPayload(v) for v in (VID_OPENBSD,
                                                      *(NAT_T_VIDS if nat_t else ()),
                                                      VID_DPD))
             for nat_t in (False, True)}
# ... and their chain, encoded once: MM1 and MM2 send it after the SA payload as a
# Prehashed tail (exchange.encode then encodes only the SA in front of it).
_OUR_VID_CHAINS = {nat_t: encode_payload_chain(vids) for nat_t, vids in _OUR_VIDS.items()}
_DATA = attrgetter("data")


# Peers of one kind send the same VIDs, so what a list of them means is looked up
# (bounded), not worked out per message.
@lru_cache(maxsize=64)
def _peer_vid_facts(have: tuple[bytes, ...], received: tuple[bytes, ...],
                    ) -> tuple[tuple[bytes, ...], bool, bool, bool]:
    """The peer's distinct VIDs once ``received`` joins ``have`` (in the order
    received, one shared copy of the well-known ones), whether ``received`` has
    OpenBSD's, and the NAT-T capability of the whole list: whether it can do NAT-T
    and whether with RFC 3947 (read here, once, rather than through the
    capability's properties per message)."""
    vids = list(have)
    for data in received:
        if data not in vids:
            vids.append(_KNOWN_VIDS.get(data, data))
    merged = tuple(vids)
    capability = natt.peer_capabilities(merged)
    return merged, VID_OPENBSD in received, capability.nat_t, capability.use_rfc


class Phase1(Exchange):
    """What Main Mode and Aggressive Mode share."""

    PHASE: ClassVar[int] = 1

    # What the steps fill in, starting from these class-level values (immutable), so
    # a new exchange needs no __init__ of its own (one for each new peer's MM1).
    offer: SaPayload | None = None                # initiator: our SA payload
    sai_b = b""                                   # the initiator's SA body
    dh_pair: dh.DHKeyPair | None = None
    g_xi = b""
    g_xr = b""
    ni_b = b""
    nr_b = b""
    our_id: IdPayload | None = None
    peer_id: IdPayload | None = None
    # prf(SKEYID, ·) keyed once, for HASH_I and HASH_R; only while the exchange runs.
    _skeyid_prf: _prf.KeyedPrf | None = None
    # NAT-D hashes (local, remote, (hash of local, hash of remote)) of the last
    # address pair: the two we send are usually the two we check (RFC 3947 §3.2).
    _nat_d: tuple[Address, Address, tuple[bytes, bytes]] | None = None
    # The reply SA the responder chose in its first step.
    _reply_sa: SaPayload | None = None

    @property
    def store(self) -> Any:
        return self.engine.store

    @property
    def peer(self) -> str:
        return self.remote[0]

    def describe(self) -> str:
        return f"{self.NAME} {self.role} with {self.peer} (peer {self.sa.name})"

    def failure_cleanup(self) -> None:
        if not self.sa.ready:
            self.engine.sadb.remove_isakmp(self.sa)

    def refuse(self, error: policy.NegotiationError) -> ExchangeError:
        return ExchangeError(error.notify, f"{self.describe()}: {error.message}")

    def undecodable(self, error: Exception) -> ExchangeError:
        return ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                             f"{self.describe()}: encrypted message does not decrypt to "
                             f"valid payloads ({error}); are the pre-shared keys the same "
                             "on both sides?")

    # -- SA payloads ---------------------------------------------------------------

    def make_offer(self) -> SaPayload:
        self.offer = policy.phase1_offer(self.store, self.sa.name)
        self.sai_b = self.offer.encode_body()
        return self.offer

    def the_sa(self, message: Message) -> SaPayload:
        found = message.find(_SA)
        if len(found) != 1 or not isinstance(found[0], SaPayload):
            raise ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                                f"{self.describe()}: {len(found)} SA payloads, exactly one "
                                "is allowed")
        sa_payload = found[0]
        if len(sa_payload.proposals) != 1:
            raise ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                                f"{self.describe()}: {len(sa_payload.proposals)} proposals "
                                "in the SA, phase 1 takes exactly one")
        return sa_payload

    def select(self, message: Message) -> SaPayload:
        """Responder: choose from the initiator's SA; return our reply SA."""
        offered = self.the_sa(message)
        self.sai_b = offered.body_bytes()
        try:
            reply, suite = policy.phase1_select(self.store, self.sa.name, offered, self.peer)
        except policy.NegotiationError as error:
            raise self.refuse(error) from None
        self.set_suite(suite)
        return reply

    def accept(self, message: Message) -> None:
        """Initiator: the responder's SA must be one of our transforms."""
        reply = self.the_sa(message)
        assert self.offer is not None
        try:
            suite = policy.phase1_accept(self.offer, reply, self.peer)
        except policy.NegotiationError as error:
            raise self.refuse(error) from None
        self.set_suite(suite)

    def set_suite(self, suite: Any) -> None:
        if suite.auth_method != _PRE_SHARED:
            raise ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN,
                                f"{self.describe()}: authentication method "
                                f"{AuthMethod.describe(suite.auth_method)} is not supported "
                                "yet (only PRE_SHARED)")
        self.sa.suite = suite

    # -- vendor IDs and NAT-T ------------------------------------------------------

    def vendor_payloads(self) -> tuple[Payload, ...]:
        return _OUR_VIDS[bool(self.engine.nat_t)]

    def with_vendor_ids(self, sa_payload: SaPayload) -> Prehashed:
        """``sa_payload`` followed by our VIDs, whose chain is encoded already."""
        nat_t = bool(self.engine.nat_t)
        tail_type, tail = _OUR_VID_CHAINS[nat_t]
        return [sa_payload, *_OUR_VIDS[nat_t]], tail_type, tail

    def take_vendor_ids(self, message: Message) -> None:
        sa = self.sa
        sa.peer_vids, openbsd, nat_t, use_rfc = _peer_vid_facts(
            sa.peer_vids, tuple(map(bytes, map(_DATA, message.find(_VENDOR)))))
        if openbsd:
            sa.openbsd_peer = True
        if nat_t and self.engine.nat_t:
            sa.nat.peer_capable = True
            sa.nat.rfc = use_rfc

    def nat_d_payloads(self) -> list[Payload]:
        """NAT-D of the peer's address, then of ours (RFC 3947 §3.2)."""
        nat = self.sa.nat
        if not nat.peer_capable:
            return []
        # natt.nat_d_payloads, with the hashes check_nat_d also needs.
        draft = not nat.rfc
        mine, theirs = self._nat_d_hashes(self.local, self.remote)
        return [NatDPayload(theirs, draft=draft), NatDPayload(mine, draft=draft)]

    def _nat_d_hashes(self, local: Address, remote: Address) -> tuple[bytes, bytes]:
        """natt.nat_d_hashes of ``local`` and ``remote`` with this SA's hash and
        cookies, worked out once per address pair (the responder checks in MM3
        the pair it sends in MM4)."""
        known = self._nat_d
        if known is not None and known[0] == local and known[1] == remote:
            return known[2]
        sa = self.sa
        hashes = natt.nat_d_hashes(sa.suite.hash, sa.icookie, sa.rcookie, local, remote)
        self._nat_d = (local, remote, hashes)
        return hashes

    def check_nat_d(self, message: Message, local: Address, remote: Address) -> None:
        """Compare received NAT-D with the addresses this message travelled between."""
        nat = self.sa.nat
        if not nat.peer_capable:
            return
        received = [p for p in message.payloads if p.__class__ is NatDPayload]
        if not received:
            return
        nat.we_are_behind, nat.peer_is_behind = natt.nat_d_verdict(
            *self._nat_d_hashes(local, remote), received)
        if nat.we_are_behind or nat.peer_is_behind:        # (nat.detected, without the call)
            where = "we are" if nat.we_are_behind else "the peer is"
            if nat.we_are_behind and nat.peer_is_behind:
                where = "both sides are"
            self.engine.log.info("{exchange}: NAT detected, {where} behind NAT",
                                 exchange=self.describe(), where=where)

    def float_ports(self) -> None:
        """Initiator: move to the NAT-T port when a NAT is in the way (RFC 3947 §4)."""
        nat = self.sa.nat
        if not nat.detected or nat.floated:
            return
        port = self.engine.nat_t_port
        remote_port = port if self.remote[1] == self.engine.port else self.remote[1]
        self.local = (self.local[0], port)
        self.remote = (self.remote[0], remote_port)
        self.engine.sadb.move_isakmp(self.sa, self.local, self.remote)
        nat.floated = True

    def note_float(self, local: Address, remote: Address) -> None:
        """Responder: an authenticated message on the NAT-T port moves the SA there."""
        if local[1] == self.engine.nat_t_port:
            self.sa.nat.floated = True
        self.engine.sadb.move_isakmp(self.sa, local, remote)

    # -- KE, NONCE, keys -------------------------------------------------------------

    def make_ke(self, group_number: int) -> KeyExchangePayload:
        try:
            self.dh_pair = dh.group(group_number).generate(self.engine.rng)
        except CryptoError as error:
            raise ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN,
                                f"{self.describe()}: {error}") from None
        return KeyExchangePayload(self.dh_pair.public_bytes)

    def make_nonce(self, size: int = NONCE_SIZE) -> NoncePayload:
        return NoncePayload(self.engine.rng.random_bytes(size))

    def take_nonce(self, message: Message) -> bytes:
        nonce = message.first(_NONCE)
        assert nonce is not None
        data = nonce.body_bytes()
        if not NONCE_MIN <= len(data) <= NONCE_MAX:
            raise ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                                f"{self.describe()}: nonce of {len(data)} bytes, "
                                f"{NONCE_MIN}..{NONCE_MAX} allowed")
        return data

    def take_ke(self, message: Message) -> bytes:
        ke = message.first(_KEY_EXCH)
        assert ke is not None
        data = ke.body_bytes()
        try:
            dh.group(self.sa.suite.group).check_public(data)
        except dh.DHError as error:
            raise ExchangeError(error.notify, f"{self.describe()}: {error}") from None
        return data

    def derive_keys(self) -> None:
        """SKEYID and descendants, the cipher key and the first IV (RFC 2409 §5)."""
        suite = self.sa.suite
        psk = policy.pre_shared_key(self.store, self.sa.name, self.peer_id)
        if psk is None:
            raise ExchangeError(NotifyType.AUTHENTICATION_FAILED,
                                f"{self.describe()}: no pre-shared key for this peer "
                                f"(set Authentication in [{self.sa.name}])")
        assert self.dh_pair is not None
        peer_ke = self.g_xr if self.initiator else self.g_xi
        try:
            g_xy = self.dh_pair.shared_secret(peer_ke)
            keys, self._skeyid_prf = phase1_keys_and_prf(
                suite.hash, suite.encryption, suite.key_length, g_xy, self.ni_b, self.nr_b,
                self.sa.icookie, self.sa.rcookie, psk=psk)
        except dh.DHError as error:
            raise ExchangeError(error.notify, f"{self.describe()}: {error}") from None
        except CryptoError as error:
            raise ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN,
                                f"{self.describe()}: {error}") from None
        self.sa.keys = keys
        block = cipher_spec(suite.encryption).block_size
        self.sa.iv = IvChain.phase1(keys.hash_algorithm, self.g_xi, self.g_xr, block)

    # -- IDs and HASH_I / HASH_R -------------------------------------------------------

    def make_id(self) -> IdPayload:
        self.our_id = policy.phase1_local_id(self.store, self.sa.name, self.local[0])
        self.sa.local_id = self.our_id
        return self.our_id

    def take_id(self, message: Message) -> IdPayload:
        found = message.first(_ID)
        assert isinstance(found, IdPayload)
        self.peer_id = found
        self.sa.remote_id = found
        return found

    def check_peer_id(self) -> None:
        assert self.peer_id is not None
        try:
            policy.check_remote_id(self.store, self.sa.name, self.peer_id)
        except policy.NegotiationError as error:
            raise self.refuse(error) from None

    def expected_hash(self, *, of_initiator: bool) -> bytes:
        keys = self.sa.keys
        assert keys is not None
        if of_initiator:
            id_payload = self.our_id if self.initiator else self.peer_id
            func = hash_i
        else:
            id_payload = self.peer_id if self.initiator else self.our_id
            func = hash_r
        assert id_payload is not None
        skeyid = self._skeyid_prf or keys.skeyid
        return func(self.sa.suite.hash, skeyid, self.g_xi, self.g_xr, self.sa.icookie,
                    self.sa.rcookie, self.sai_b, id_payload.body_bytes())

    def check_hash(self, message: Message) -> None:
        received = message.first(_HASH)
        assert received is not None
        expected = self.expected_hash(of_initiator=not self.initiator)
        if not _prf.equal(expected, received.body_bytes()):
            raise ExchangeError(NotifyType.INVALID_HASH_INFORMATION,
                                f"{self.describe()}: HASH_{'R' if self.initiator else 'I'} "
                                "does not match: the pre-shared keys differ or the peer is "
                                "not who it claims to be")

    def our_hash(self) -> HashPayload:
        return HashPayload(self.expected_hash(of_initiator=self.initiator))

    def initial_contact(self) -> list[Payload]:
        """INITIAL-CONTACT for a peer we have not talked to since start (§4.6)."""
        if self.peer in self.engine.contacted:
            return []
        self.engine.contacted.add(self.peer)
        return [NotifyPayload(_INITIAL_CONTACT, _ISAKMP, self.sa.cookies)]

    def take_initial_contact(self, message: Message, *, allowed: bool) -> None:
        for note in message.find(_NOTIFY):
            if note.notify_type != _INITIAL_CONTACT:
                self.engine.log.info("{exchange}: notification {kind} ignored",
                                     exchange=self.describe(),
                                     kind=NotifyType.describe(note.notify_type))
                continue
            if not allowed:
                self.engine.log.info("{exchange}: INITIAL-CONTACT in Aggressive Mode ignored",
                                     exchange=self.describe())
                continue
            self.engine.contacted.add(self.peer)
            self.engine.initial_contact(self.sa)

    def finish(self) -> Any:
        self.engine.phase1_established(self.sa)
        suite = self.sa.suite
        if not self.initiator and suite.responder_lifetime:
            # We cut the initiator's lifetime to our maximum: tell it, protected, in
            # an informational exchange after this one (RFC 2407 §4.6.3.1, the SPI
            # is the cookie pair). A moment later, not at once: a peer that handles
            # datagrams on several threads (charon) may otherwise take it before our
            # last phase 1 message, with the wrong IV, and drop it.
            self.engine.clock.callLater(RESPONDER_LIFETIME_DELAY,
                                        self._send_responder_lifetime)
        return self.sa

    def _send_responder_lifetime(self) -> None:
        suite = self.sa.suite
        if not self.sa.ready or not self.engine.running or suite is None:
            return
        self.engine.send_protected_notify(
            self.sa, NotifyType.RESPONDER_LIFETIME, protocol=ProtocolId.ISAKMP,
            spi=self.sa.cookies,
            data=lifetime_data(ProtocolId.ISAKMP, suite.life_seconds, suite.life_kilobytes))


class MainMode(Phase1):
    """Main Mode (ID_PROT, 6 messages)."""

    EXCHANGE_TYPE = ExchangeType.ID_PROT
    NAME = "Main Mode"
    INITIATOR_STEPS = ("send_mm1", "recv_mm2", "send_mm3", "recv_mm4", "send_mm5",
                       "recv_mm6")
    RESPONDER_STEPS = ("recv_mm1", "send_mm2", "recv_mm3", "send_mm4", "recv_mm5",
                       "send_mm6")
    MESSAGES: ClassVar[dict[str, MessageSpec]] = {
        "recv_mm1": ((PayloadType.SA,), ()),
        "recv_mm2": ((PayloadType.SA,), ()),
        "recv_mm3": ((PayloadType.KEY_EXCH, PayloadType.NONCE), _NAT_D),
        "recv_mm4": ((PayloadType.KEY_EXCH, PayloadType.NONCE), _NAT_D),
        "recv_mm5": ((PayloadType.ID, PayloadType.HASH), (PayloadType.NOTIFY,)),
        "recv_mm6": ((PayloadType.ID, PayloadType.HASH), (PayloadType.NOTIFY,)),
    }
    ENCRYPTED = frozenset({"send_mm5", "recv_mm5", "send_mm6", "recv_mm6"})
    UNTIMED = frozenset({"send_mm2"})

    # initiator
    def send_mm1(self) -> Prehashed:
        return self.with_vendor_ids(self.make_offer())

    def recv_mm2(self, message: Message, local: Address, remote: Address) -> None:
        self.accept(message)
        self.take_vendor_ids(message)

    def send_mm3(self) -> list[Payload]:
        ke = self.make_ke(self.sa.suite.group)
        nonce = self.make_nonce()
        self.g_xi, self.ni_b = ke.data, nonce.data
        return [ke, nonce, *self.nat_d_payloads()]

    def recv_mm4(self, message: Message, local: Address, remote: Address) -> None:
        self.g_xr = self.take_ke(message)
        self.nr_b = self.take_nonce(message)
        self.check_nat_d(message, local, remote)
        self.derive_keys()

    def send_mm5(self) -> list[Payload]:
        self.float_ports()
        return [self.make_id(), self.our_hash(), *self.initial_contact()]

    def recv_mm6(self, message: Message, local: Address, remote: Address) -> None:
        self.take_id(message)
        self.check_hash(message)
        self.check_peer_id()
        self.take_initial_contact(message, allowed=True)

    # responder
    def recv_mm1(self, message: Message, local: Address, remote: Address) -> None:
        self._reply_sa = self.select(message)
        self.take_vendor_ids(message)

    def send_mm2(self) -> Prehashed:
        assert self._reply_sa is not None
        return self.with_vendor_ids(self._reply_sa)

    def recv_mm3(self, message: Message, local: Address, remote: Address) -> None:
        self.g_xi = self.take_ke(message)
        self.ni_b = self.take_nonce(message)
        self.check_nat_d(message, local, remote)

    def send_mm4(self) -> list[Payload]:
        ke = self.make_ke(self.sa.suite.group)
        nonce = self.make_nonce(len(self.ni_b))
        self.g_xr, self.nr_b = ke.data, nonce.data
        payloads: list[Payload] = [ke, nonce, *self.nat_d_payloads()]
        # Keys are computed now; MM4 itself still travels in the clear.
        self.derive_keys()
        return payloads

    def recv_mm5(self, message: Message, local: Address, remote: Address) -> None:
        self.take_id(message)
        self.check_hash(message)
        self.check_peer_id()
        self.note_float(local, remote)
        self.local, self.remote = local, remote
        self.take_initial_contact(message, allowed=True)

    def send_mm6(self) -> list[Payload]:
        return [self.make_id(), self.our_hash(), *self.initial_contact()]


class AggressiveMode(Phase1):
    """Aggressive Mode (3 messages)."""

    EXCHANGE_TYPE = ExchangeType.AGGRESSIVE
    NAME = "Aggressive Mode"
    INITIATOR_STEPS = ("send_am1", "recv_am2", "send_am3")
    RESPONDER_STEPS = ("recv_am1", "send_am2", "recv_am3")
    MESSAGES: ClassVar[dict[str, MessageSpec]] = {
        "recv_am1": ((PayloadType.SA, PayloadType.KEY_EXCH, PayloadType.NONCE,
                      PayloadType.ID), ()),
        "recv_am2": ((PayloadType.SA, PayloadType.KEY_EXCH, PayloadType.NONCE,
                      PayloadType.ID, PayloadType.HASH), _NAT_D),
        "recv_am3": ((PayloadType.HASH,), (*_NAT_D, PayloadType.NOTIFY)),
    }
    ENCRYPTED = frozenset({"send_am3", "recv_am3"})
    UNTIMED = frozenset({"send_am2"})

    def _offer_group(self, offer: SaPayload) -> int:
        """The one DH group every transform of the offer uses (inventory §4.3)."""
        groups = set()
        for transform in offer.proposals[0].transforms:
            attribute = transform.attribute(IkeAttr.GROUP_DESCRIPTION)
            if attribute is not None and isinstance(attribute.value, int):
                groups.add(attribute.value)
        if len(groups) != 1:
            raise ExchangeError(None, f"{self.describe()}: Aggressive Mode needs one DH "
                                      f"group in all Transforms of [{self.sa.name}], found "
                                      f"{sorted(groups) or 'none'}")
        return groups.pop()

    # initiator
    def send_am1(self) -> list[Payload]:
        offer = self.make_offer()
        ke = self.make_ke(self._offer_group(offer))
        nonce = self.make_nonce()
        self.g_xi, self.ni_b = ke.data, nonce.data
        return [offer, *self.vendor_payloads(), ke, nonce, self.make_id()]

    def recv_am2(self, message: Message, local: Address, remote: Address) -> None:
        self.accept(message)
        self.take_vendor_ids(message)
        self.g_xr = self.take_ke(message)
        self.nr_b = self.take_nonce(message)
        self.take_id(message)
        self.derive_keys()
        self.check_hash(message)
        self.check_peer_id()
        self.check_nat_d(message, local, remote)

    def send_am3(self) -> list[Payload]:
        # NAT-D hashes the addresses AM3 travels between (after a float).
        self.float_ports()
        return [self.our_hash(), *self.nat_d_payloads()]

    # responder
    def recv_am1(self, message: Message, local: Address, remote: Address) -> None:
        self._reply_sa = self.select(message)
        self.take_vendor_ids(message)
        self.g_xi = self.take_ke(message)
        self.ni_b = self.take_nonce(message)
        self.take_id(message)
        self.check_peer_id()

    def send_am2(self) -> list[Payload]:
        assert self._reply_sa is not None
        ke = self.make_ke(self.sa.suite.group)
        nonce = self.make_nonce(len(self.ni_b))
        self.g_xr, self.nr_b = ke.data, nonce.data
        self.derive_keys()
        our_id = self.make_id()
        return [self._reply_sa, *self.vendor_payloads(), ke, nonce, *self.nat_d_payloads(),
                our_id, self.our_hash()]

    def recv_am3(self, message: Message, local: Address, remote: Address) -> None:
        self.check_hash(message)
        self.check_nat_d(message, local, remote)
        self.note_float(local, remote)
        self.take_initial_contact(message, allowed=False)


def phase1_class(exchange_type: int) -> type[Phase1]:
    if exchange_type == _AGGRESSIVE:
        return AggressiveMode
    if exchange_type == _ID_PROT:
        return MainMode
    raise ValueError(f"{ExchangeType.describe(exchange_type)} is not a phase 1 exchange")
