"""Quick Mode (phase 2): negotiating IPsec SAs and installing them in the kernel.

This module owns the script of isakmpd's ``ike_quick_mode.c`` and the SA
installation of ``ipsec.c`` finalize_exchange (inventory §4.5, RFC 2409 §5.5)::

    I: *HASH(1) SA Ni [KE] [IDci IDcr] -> R
    R: *HASH(2) SA Nr [KE] [IDci IDcr] -> I
    I: *HASH(3)                         -> R

HASH(1) = prf(SKEYID_a, M-ID | everything after HASH), HASH(2) = prf(SKEYID_a, M-ID |
Ni_b | everything after HASH), HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b). A
message whose HASH is missing, not first or wrong cannot be authenticated: it is
dropped with one log line and no answer; an authenticated one from a new NAT
mapping of the peer first moves the SAs there (``Engine.peer_authenticated``, RFC
3947 §7). Refusals of authenticated messages (no
acceptable proposal, unknown IDs) end the exchange with a protected notification.

The offer, the choice and the connection come from :mod:`isakmpd.ike.policy`; SPIs
from ``IKernel.allocate_spi``; KEYMAT from :mod:`isakmpd.crypto.ipsec_keys`. When
the script ends, both directions of every protocol go to ``IKernel.add_sa`` (inbound
with our SPI towards us, outbound with the peer's SPI towards it) and the flows
(out, in, and fwd in tunnel mode) to ``IKernel.add_flow``, tied by a new reqid. With
NAT-T the SAs carry the UDP encapsulation ports the ISAKMP SA uses. An on-demand
connection (a kernel ACQUIRE, :mod:`isakmpd.ike.ondemand`) installs no flows, uses
the policy template's reqid and puts the ACQUIRE's seq on the outbound SA. SPIs that end
up in no installed SA (the exchange failed, or the peer chose a proposal without
that protocol) are given back with ``IKernel.release_spi``.

NAT-T (RFC 3947 §5): with a NAT detected the modes are the UDP_ENCAP ones; without
one (or with ``-T``) a peer's UDP_ENCAP mode is refused, offered or answered. In
transport mode through a NAT both sides send NAT-OAi and NAT-OAr after the IDs, the
initiator's and the responder's original addresses as the sender knows them (type
21, or 131 with the drafts); the received ones are checked and kept on the IpsecSA
(:attr:`IpsecSA.nat_oa`).

IPComp (RFC 2407 §4.4.5, RFC 3173): an IPCOMP protocol rides in a proposal next to
ESP/AH (or alone) with a 2-byte CPI in the SPI field; the kernel allocates it (the
4-byte kernel form has two zero bytes first; a peer's 4-byte CPI is read from its
low two bytes). It has no KEYMAT (isakmpd's ike_quick_mode.c skips IPCOMP there).
Both directions are installed as IPComp SAs in the negotiated mode without
lifetimes of their own (they go with the bundle, as strongSwan installs them), the
ESP/AH SAs then in transport mode inside, and the flows name both (KernelFlow
``ipcomp``). DELETE names the IPCOMP CPI too, one per protocol, as isakmpd's
message_send_delete does.

RESPONDER-LIFETIME (RFC 2407 §4.6.3.1): when the responder cut a lifetime the
initiator offered to its own maximum (:attr:`Phase2Suite.responder_lifetime`), QM2
carries, after the IDs, one notification per protocol with the responder's inbound
SPI and the SA_LIFE_TYPE/SA_LIFE_DURATION attributes it will use (the reply SA
echoes the chosen transform as offered). The initiator takes the shorter lifetimes
before it installs the SAs (its kernel SAs and timers get them); an SPI naming
either direction is accepted. strongSwan logs and ignores the notification.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from isakmpd.crypto import dh
from isakmpd.crypto import prf as _prf
from isakmpd.crypto.ipsec_keys import (
    ISAKMPD_ESP_DEFAULT_KEY_BITS,
    KeymatLayout,
    ah_layout,
    derive_sa_key_bytes,
    esp_layout,
    quick_mode_hash1,
    quick_mode_hash2,
    quick_mode_hash3,
)
from isakmpd.crypto.prf import CryptoError
from isakmpd.debug import DebugClass
from isakmpd.ike import ids, natt, policy
from isakmpd.ike.exchange import Exchange, ExchangeError, MessageSpec, Prehashed
from isakmpd.ike.informational import lifetime_data, read_lifetime
from isakmpd.ike.sa import Address, IpsecSA, IsakmpSA, SpiPair
from isakmpd.kernel.interface import KernelError, KernelFlow, KernelSA
from isakmpd.wire.constants import (
    EncapsulationMode,
    ExchangeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    member,
)
from isakmpd.wire.message import Message, encode_payload_chain
from isakmpd.wire.payloads import (
    DeletePayload,
    HashPayload,
    IdPayload,
    KeyExchangePayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
)

if TYPE_CHECKING:
    from isakmpd.ike.engine import Engine

__all__ = ["QuickMode"]

# Members the per-message steps use, as module names (an enum class attribute
# costs a Python-level call in 3.11; see wire.constants.value_map).
_SA = PayloadType.SA
_NONCE = PayloadType.NONCE
_ID = PayloadType.ID
_KEY_EXCH = PayloadType.KEY_EXCH
_NOTIFY = PayloadType.NOTIFY
_ESP = ProtocolId.IPSEC_ESP
_IPCOMP = ProtocolId.IPCOMP
_TUNNEL = EncapsulationMode.TUNNEL
_TRANSPORT = EncapsulationMode.TRANSPORT
_RESPONDER_LIFETIME = NotifyType.RESPONDER_LIFETIME

NONCE_SIZE = 16
NONCE_MIN, NONCE_MAX = 8, 256
# Received ID types Quick Mode accepts (inventory §4.5); FQDN for NAT-T transport.
_ID_TYPES = frozenset({IdType.IPV4_ADDR, IdType.IPV6_ADDR, IdType.IPV4_ADDR_SUBNET,
                       IdType.IPV6_ADDR_SUBNET, IdType.FQDN})
# KEYMAT layouts by (protocol, transform, key length, auth algorithm): one per suite
# shape a configuration accepts (an unsupported one raises and is not kept).
_LAYOUTS: dict[tuple[int, int, int | None, int | None], KeymatLayout] = {}


class QuickMode(Exchange):
    """Quick Mode, both roles."""

    EXCHANGE_TYPE = ExchangeType.QUICK_MODE
    NAME = "Quick Mode"
    INITIATOR_STEPS = ("send_qm1", "recv_qm2", "send_qm3")
    RESPONDER_STEPS = ("recv_qm1", "send_qm2", "recv_qm3")
    MESSAGES: ClassVar[dict[str, MessageSpec]] = {
        "recv_qm1": ((PayloadType.HASH, PayloadType.SA, PayloadType.NONCE),
                     (PayloadType.KEY_EXCH, PayloadType.ID, PayloadType.NAT_OA,
                      PayloadType.NAT_OA_DRAFT)),
        "recv_qm2": ((PayloadType.HASH, PayloadType.SA, PayloadType.NONCE),
                     (PayloadType.KEY_EXCH, PayloadType.ID, PayloadType.NAT_OA,
                      PayloadType.NAT_OA_DRAFT, PayloadType.NOTIFY)),
        "recv_qm3": ((PayloadType.HASH,), ()),
    }
    ENCRYPTED = frozenset({"send_qm1", "recv_qm1", "send_qm2", "recv_qm2", "send_qm3",
                           "recv_qm3"})

    def __init__(self, engine: Engine, sa: IsakmpSA, *, initiator: bool, message_id: int,
                 local: Address, remote: Address, connection: str | None = None) -> None:
        # Parameters spelt out and Exchange.__init__ named, not *args/**kwargs and
        # super(): no tuple, dict and super object to build for every Quick Mode.
        # Every attribute is set here rather than left to class-level defaults: the
        # steps read them, and reading one the instance lacks is slower (measured:
        # class defaults cost more per Quick Mode than these stores).
        Exchange.__init__(self, engine, sa, initiator=initiator, message_id=message_id,
                          local=local, remote=remote)
        self.connection = connection
        self.offer: SaPayload | None = None
        self.reply_sa: SaPayload | None = None
        self.pfs_group: int | None = None
        self.suite: Any = None
        self.dh_pair: dh.DHKeyPair | None = None
        self.g_qm_xy: bytes | None = None
        self.ni_b = b""
        self.nr_b = b""
        self.idci: IdPayload | None = None
        self.idcr: IdPayload | None = None
        self._allocated: list[tuple[ProtocolId, bytes, str]] = []   # (protocol, SPI, dst)
        self._nat_oa: list[Payload] = []                  # NAT-OAi, NAT-OAr we send
        self.nat_oa_received: tuple[str, str] | None = None
        self.started_seq = engine.next_seq()        # orders it against other SAs
        # Responder: the SA record whose inbound SAs went to the kernel with QM2,
        # and the outbound SAs built with them, waiting for QM3.
        self._early: IpsecSA | None = None
        self._outbound: list[KernelSA] = []
        self._ondemand: tuple[int, int | None] | None = None

    @property
    def store(self) -> Any:
        return self.engine.store

    @property
    def peer(self) -> str:
        return self.sa.remote[0]

    def describe(self) -> str:
        name = f" for {self.connection}" if self.connection else ""
        return (f"Quick Mode {self.role}{name} with {self.peer} "
                f"(msgid {self.message_id:08x})")

    # -- helpers ---------------------------------------------------------------------

    def _spi_for(self, protocol: ProtocolId) -> bytes:
        dst = self.sa.local[0]
        try:
            spi = self.engine.kernel.allocate_spi(protocol, self.sa.remote[0], dst)
        except KernelError as error:
            raise ExchangeError(None, f"{self.describe()}: no SPI from the kernel: "
                                      f"{error}") from None
        spi = bytes(spi)
        self._allocated.append((member(ProtocolId, protocol), spi, dst))
        if protocol == _IPCOMP:
            return spi[-2:]                 # the CPI (RFC 2407 §4.4.5)
        return spi

    def failure_cleanup(self) -> None:
        """Give back SPIs we allocated for an SA that will not be installed, and take
        out inbound SAs installed with QM2 when QM3 never came."""
        if self._early is not None:
            self._undo(self._early)
            self._early = None
        self._release_spis(self.engine.sadb.ipsec_sas())

    def _release_spis(self, ipsecs: list[IpsecSA]) -> None:
        """Release the reserved SPIs no SA of ``ipsecs`` was installed with.

        IKernel.release_spi only for those: with XFRM it deletes the state with that
        (dst, SPI, protocol), which must never be an installed SA. An SPI whose SA
        was added and taken out again (a failed install) is no longer reserved; the
        kernel's error for it is expected.
        """
        installed = set()           # (a loop, not a comprehension: one frame fewer)
        for ipsec in ipsecs:
            for kernel_sa in ipsec.kernel_sas:
                installed.add((kernel_sa.protocol, kernel_sa.spi, kernel_sa.dst))
        for protocol, spi, dst in self._allocated:
            if (protocol, spi, dst) in installed:
                continue
            try:
                self.engine.kernel.release_spi(protocol, spi, dst)
            except KernelError:
                pass
        self._allocated = []

    def _hash_alg(self) -> int:
        return int(self.sa.suite.hash)

    def _skeyid_a(self) -> _prf.KeyedPrf:
        """prf(SKEYID_a, ·) for this exchange's three HASHes, keyed once per ISAKMP SA."""
        return self.sa.phase2_prfs()[0]

    def _check_hash(self, message: Message, which: int) -> None:
        """Drop ``message`` unless its first payload is HASH(``which``) (1, 2 or 3)
        as computed here (RFC 2409 §5.5)."""
        first = message.payloads[0] if message.payloads else None
        if not isinstance(first, HashPayload):
            raise ExchangeError(None, f"{self.describe()}: HASH is not the first payload, "
                                      "message dropped", fatal=False)
        # The three formulas here rather than a callable per message, and the SA's
        # prf(SKEYID_a, ·) fetched directly: fewer calls in both Quick Mode checks
        # every exchange makes.
        sa = self.sa
        hash_alg = int(sa.suite.hash)
        skeyid_a = sa.phase2_prfs()[0]
        if which == 1:
            expected = quick_mode_hash1(hash_alg, skeyid_a, self.message_id,
                                        message.bytes_after(0))
        elif which == 2:
            expected = quick_mode_hash2(hash_alg, skeyid_a, self.message_id, self.ni_b,
                                        message.bytes_after(0))
        else:
            expected = quick_mode_hash3(hash_alg, skeyid_a, self.message_id, self.ni_b,
                                        self.nr_b)
        if not _prf.equal(expected, first.body_bytes()):
            raise ExchangeError(None, f"{self.describe()}: HASH({which}) does not match, "
                                      "message dropped", fatal=False)

    def _one_sa(self, message: Message) -> SaPayload:
        found = message.find(_SA)
        if len(found) != 1 or not isinstance(found[0], SaPayload):
            raise ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                                f"{self.describe()}: {len(found)} SA payloads, Quick Mode "
                                "takes exactly one")
        return found[0]

    def _nonce(self, message: Message) -> bytes:
        nonce = message.first(_NONCE)
        assert nonce is not None
        data = nonce.body_bytes()
        if not NONCE_MIN <= len(data) <= NONCE_MAX:
            raise ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                                f"{self.describe()}: nonce of {len(data)} bytes, "
                                f"{NONCE_MIN}..{NONCE_MAX} allowed")
        return data

    def _ids(self, message: Message) -> tuple[IdPayload, IdPayload] | None:
        # (IdPayload is the ID type's class: one pass, without find())
        found = [p for p in message.payloads if isinstance(p, IdPayload)]
        if not found:
            return None
        if len(found) != 2:
            raise ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                                f"{self.describe()}: {len(found)} ID payloads, Quick Mode "
                                "takes none or two (IDci and IDcr)")
        for id_payload in found:
            if id_payload.id_type not in _ID_TYPES:
                raise ExchangeError(NotifyType.INVALID_ID_INFORMATION,
                                    f"{self.describe()}: ID type "
                                    f"{IdType.describe(id_payload.id_type)} is not allowed "
                                    "in Quick Mode")
        return found[0], found[1]

    def _refuse(self, error: policy.NegotiationError) -> ExchangeError:
        return ExchangeError(error.notify, f"{self.describe()}: {error.message}")

    def _pfs_secret(self, message: Message, group_number: int | None) -> None:
        """Check KE against the PFS decision and compute g(qm)^xy."""
        ke = message.first(_KEY_EXCH)
        if group_number is None:
            if ke is not None:
                raise ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN,
                                    f"{self.describe()}: peer sent KE but the chosen "
                                    "proposal has no PFS group")
            return
        if ke is None:
            raise ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN,
                                f"{self.describe()}: PFS group "
                                f"{group_number} chosen but the peer sent no KE")
        try:
            if self.dh_pair is None:
                self.dh_pair = dh.group(group_number).generate(self.engine.rng)
            self.g_qm_xy = self.dh_pair.shared_secret(ke.body_bytes())
        except dh.DHError as error:
            raise ExchangeError(error.notify, f"{self.describe()}: {error}") from None

    def _rest(self, sa_payload: SaPayload, nonce: bytes) -> list[Payload]:
        rest: list[Payload] = [sa_payload, NoncePayload(nonce)]
        if self.dh_pair is not None:
            rest.append(KeyExchangePayload(self.dh_pair.public_bytes))
        if self.idci is not None and self.idcr is not None:
            rest.extend([self.idci, self.idcr])
        rest.extend(self._nat_oa)
        return rest

    # -- NAT-T (RFC 3947 §5) ---------------------------------------------------------------

    def _udp_transport(self) -> bool:
        """Is the chosen suite UDP-encapsulated transport mode (NAT-OA needed)?"""
        return self.sa.nat.detected and self.suite is not None and any(
            natt.plain_mode(c.encapsulation) == _TRANSPORT
            for c in self.suite.protocols)

    def _nat_oa_for(self, initiator_ip: str, responder_ip: str) -> list[Payload]:
        return list(natt.nat_oa_payloads(initiator_ip, responder_ip, rfc=self.sa.nat.rfc))

    def _take_nat_oa(self, message: Message) -> None:
        """Check the peer's NAT-OA payloads (RFC 3947 §5.2) and remember them."""
        received = [p for p in message.payloads if isinstance(p, NatOaPayload)]
        if not received:
            return
        if not self.sa.nat.detected:
            self.engine.log.info("{exchange}: NAT-OA without a NAT detected, ignored",
                                 exchange=self.describe())
            return
        try:
            self.nat_oa_received = natt.read_nat_oa(received)
        except natt.NatOaError as error:
            raise ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                                f"{self.describe()}: {error}") from None

    def _check_reply_modes(self, reply: SaPayload) -> None:
        """RFC 3947 §5.1: UDP_ENCAP modes only when NAT-T found a NAT."""
        if self.sa.nat.detected:
            return
        encap = sorted(natt.sa_encapsulations(reply) & natt.UDP_ENCAP_MODES)
        if encap:
            raise ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN,
                                f"{self.describe()}: peer answered with encapsulation "
                                f"mode {EncapsulationMode.describe(encap[0])}, but no NAT "
                                "was detected (RFC 3947 §5.1)")

    # -- initiator ---------------------------------------------------------------------

    def send_qm1(self) -> list[Payload]:
        assert self.connection is not None
        nat = self.sa.nat
        try:
            if nat.detected:
                self.offer, self.pfs_group = policy.quick_mode_offer(
                    self.store, self.connection, self._spi_for, True,
                    nat_t_draft=not nat.rfc)
            else:
                self.offer, self.pfs_group = policy.quick_mode_offer(
                    self.store, self.connection, self._spi_for, False)
            ids_pair = policy.connection_ids(self.store, self.connection, self.sa.local[0])
        except policy.NegotiationError as error:
            raise ExchangeError(None, f"{self.describe()}: {error.message}") from None
        if ids_pair is not None:
            self.idci, self.idcr = ids_pair
        if nat.detected and natt.sa_encapsulations(self.offer) & {
                EncapsulationMode.UDP_ENCAP_TRANSPORT,
                EncapsulationMode.UDP_ENCAP_TRANSPORT_DRAFT}:
            # Transport mode through a NAT: our own address and the peer's as we
            # know it (RFC 3947 §5.2).
            self._nat_oa = self._nat_oa_for(self.sa.local[0], self.sa.remote[0])
        if self.pfs_group is not None:
            try:
                self.dh_pair = dh.group(self.pfs_group).generate(self.engine.rng)
            except CryptoError as error:
                raise ExchangeError(None, f"{self.describe()}: {error}") from None
        self.ni_b = self.engine.rng.random_bytes(NONCE_SIZE)
        rest = self._rest(self.offer, self.ni_b)
        digest = quick_mode_hash1(self._hash_alg(), self._skeyid_a(), self.message_id,
                                  encode_payload_chain(rest)[1])
        return [HashPayload(digest), *rest]

    def recv_qm2(self, message: Message, local: Address, remote: Address) -> None:
        self._check_hash(message, 2)
        self.engine.peer_authenticated(self.sa, local, remote)
        reply = self._one_sa(message)
        assert self.offer is not None
        self._check_reply_modes(reply)
        try:
            self.suite = policy.quick_mode_accept(self.offer, reply, self.peer)
        except policy.NegotiationError as error:
            raise self._refuse(error) from None
        numbers = sorted({p.number for p in reply.proposals})
        if len(numbers) > 1:
            self.engine.debug(DebugClass.EXCHANGE, 30, "{what}: the peer chose {count} "
                              "proposals; the first (#{first}) is taken, the others ignored",
                              what=self.describe(), count=len(numbers),
                              first=reply.proposals[0].number)
        if self.suite.pfs_group != self.pfs_group:
            raise ExchangeError(NotifyType.NO_PROPOSAL_CHOSEN,
                                f"{self.describe()}: peer answered with PFS group "
                                f"{self.suite.pfs_group}, we offered {self.pfs_group}")
        self.nr_b = self._nonce(message)
        self._pfs_secret(message, self.pfs_group)
        self._take_nat_oa(message)
        if self._udp_transport() and self.nat_oa_received is None:
            self.engine.log.info("{exchange}: transport mode through a NAT but the "
                                 "responder sent no NAT-OA", exchange=self.describe())
        for note in message.find(_NOTIFY):
            if isinstance(note, NotifyPayload) \
                    and note.notify_type == _RESPONDER_LIFETIME:
                self._take_responder_lifetime(note)
        echoed = self._ids(message)
        if (echoed is not None and self.idci is not None and self.idcr is not None
                and not (ids.ids_match(self.idci, echoed[0])
                         and ids.ids_match(self.idcr, echoed[1]))):
            raise ExchangeError(NotifyType.INVALID_ID_INFORMATION,
                                f"{self.describe()}: peer answered with IDs "
                                f"{ids.id_string(echoed[0])} / {ids.id_string(echoed[1])}, "
                                f"we sent {ids.id_string(self.idci)} / "
                                f"{ids.id_string(self.idcr)}")

    def _take_responder_lifetime(self, note: NotifyPayload) -> None:
        """Shorten (never lengthen) the chosen protocol's lifetimes before install."""
        try:
            seconds, kilobytes = read_lifetime(note.protocol_id, note.data)
        except ValueError as error:
            self.engine.log.info("{exchange}: RESPONDER-LIFETIME ignored: {error}",
                                 exchange=self.describe(), error=error)
            return
        choices = list(self.suite.protocols)
        for index, choice in enumerate(choices):
            if choice.protocol != note.protocol_id or \
                    bytes(note.spi) not in (choice.our_spi, choice.peer_spi):
                continue
            life_s, life_kb = choice.life_seconds, choice.life_kilobytes
            if seconds is not None and (life_s is None or seconds < life_s):
                life_s = seconds
            if kilobytes is not None and (life_kb is None or kilobytes < life_kb):
                life_kb = kilobytes
            if (life_s, life_kb) != (choice.life_seconds, choice.life_kilobytes):
                self.engine.log.info("{exchange}: peer's RESPONDER-LIFETIME: {protocol} "
                                     "lifetime {seconds} s {kb} KB",
                                     exchange=self.describe(), protocol=choice.protocol.label,
                                     seconds=life_s, kb=life_kb)
            choices[index] = dataclasses.replace(choice, life_seconds=life_s,
                                                 life_kilobytes=life_kb)
            self.suite = dataclasses.replace(self.suite, protocols=tuple(choices))
            return
        self.engine.log.info("{exchange}: RESPONDER-LIFETIME for unknown SPI {spi} ignored",
                             exchange=self.describe(), spi=bytes(note.spi).hex())

    def _responder_lifetimes(self) -> list[Payload]:
        """Responder: RESPONDER-LIFETIME per protocol when we shortened a lifetime."""
        if self.suite is None or not self.suite.responder_lifetime:
            return []
        return [NotifyPayload(_RESPONDER_LIFETIME, choice.protocol,
                              choice.our_spi,
                              lifetime_data(choice.protocol, choice.life_seconds,
                                            choice.life_kilobytes))
                for choice in self.suite.protocols
                if choice.life_seconds is not None or choice.life_kilobytes is not None]

    def send_qm3(self) -> list[Payload]:
        return [HashPayload(quick_mode_hash3(self._hash_alg(), self._skeyid_a(),
                                             self.message_id, self.ni_b, self.nr_b))]

    # -- responder -----------------------------------------------------------------------

    def recv_qm1(self, message: Message, local: Address, remote: Address) -> None:
        self._check_hash(message, 1)
        self.engine.peer_authenticated(self.sa, local, remote)
        offered = self._one_sa(message)
        self.ni_b = self._nonce(message)
        received = self._ids(message)
        if received is not None:
            self.idci, self.idcr = received
        nat = self.sa.nat.detected
        store = self.engine.store           # (not the property: a call each time)
        connection = policy.find_passive_connection(
            store, self.sa.name, self.idci, self.idcr, self.sa.local[0],
            self.sa.remote[0], nat_t=nat)
        if connection is None:
            wanted = (f"{ids.id_string(self.idci)} -> {ids.id_string(self.idcr)}"
                      if self.idci is not None and self.idcr is not None
                      else f"{self.sa.remote[0]} -> {self.sa.local[0]} (no IDs)")
            raise ExchangeError(NotifyType.INVALID_ID_INFORMATION,
                                f"{self.describe()}: no passive connection matches "
                                f"{wanted}")
        self.connection = connection
        try:
            self.reply_sa, self.suite = policy.quick_mode_select(
                store, connection, offered, self._spi_for, self.sa.remote[0], nat)
        except policy.NegotiationError as error:
            raise self._refuse(error) from None
        self.pfs_group = self.suite.pfs_group
        self._pfs_secret(message, self.pfs_group)
        self._take_nat_oa(message)
        if nat and self._udp_transport():
            if self.nat_oa_received is None:
                self.engine.log.info("{exchange}: transport mode through a NAT but the "
                                     "initiator sent no NAT-OA", exchange=self.describe())
            # Ours back: the initiator's address as we see it, and our own.
            self._nat_oa = self._nat_oa_for(self.sa.remote[0], self.sa.local[0])

    def send_qm2(self) -> Prehashed:
        assert self.reply_sa is not None
        self.nr_b = self.engine.rng.random_bytes(len(self.ni_b))
        # Our inbound SAs go in before QM2 leaves: the initiator starts sending on its
        # new outbound SA as soon as it has QM2, before QM3 reaches us (a rekey under
        # traffic would otherwise lose what it sends in between). The outbound SAs and
        # flows wait for QM3, the initiator's proof that it has installed its inbound
        # ones. libreswan's responder does the same.
        # If the kernel refuses them now, the exchange goes on and the install after
        # QM3 tries again and fails the usual way (DELETE for what the initiator
        # installed), so the initiator learns it at once instead of timing out.
        try:
            self._early = self._install(inbound_only=True)
        except (KernelError, CryptoError, ids.IdError) as error:
            self.engine.debug(DebugClass.EXCHANGE, 40, "{what}: installing the inbound "
                              "SAs before QM2 failed ({error}); trying again after QM3",
                              what=self.describe(), error=str(error))
        rest = self._rest(self.reply_sa, self.nr_b)
        if self.suite.responder_lifetime:
            rest += self._responder_lifetimes()
        rest_type, rest_bytes = encode_payload_chain(rest)
        sa = self.sa
        digest = quick_mode_hash2(int(sa.suite.hash), sa.phase2_prfs()[0], self.message_id,
                                  self.ni_b, rest_bytes)
        return [HashPayload(digest), *rest], rest_type, rest_bytes

    def recv_qm3(self, message: Message, local: Address, remote: Address) -> None:
        self._check_hash(message, 3)
        self.engine.peer_authenticated(self.sa, local, remote)

    # -- installing ----------------------------------------------------------------------

    def finish(self) -> Any:
        try:
            ipsec = self._install()
        except (KernelError, CryptoError, ids.IdError) as error:
            self._early = None          # _install took its SAs out again
            self._delete_unusable()
            raise ExchangeError(None, f"{self.describe()}: installing the SAs failed: "
                                      f"{error}") from None
        self.engine.sadb.add_ipsec(ipsec)
        # SPIs offered for protocols the peer did not choose were never installed.
        self._release_spis([ipsec])
        self.engine.ipsec_established(ipsec)
        return ipsec

    def _delete_unusable(self) -> None:
        """The peer installs its SAs when QM3 is sent or received, before ours fail:
        DELETE our SPIs (which it sends to) so it drops them (RFC 2408 §3.15)."""
        if self.suite is None or not self.sa.ready:
            return
        for choice in self.suite.protocols:
            if choice.our_spi:
                self.engine.send_informational(self.sa, [DeletePayload(
                    member(ProtocolId, choice.protocol), len(choice.our_spi),
                    [bytes(choice.our_spi)])])
        self.engine.log.info("{what}: the peer was sent DELETE for the SAs we could not "
                             "install", what=self.describe())

    def _selectors(self, nat: bool) -> tuple[IdPayload, IdPayload]:
        """(local, remote) traffic selectors: the IDs, else the SA's addresses.
        ``nat``: whether NAT-T found a NAT (the caller has asked already)."""
        local_ip, remote_ip = self.sa.local[0], self.sa.remote[0]
        # Transport mode is looked at only through a NAT, where it matters.
        if self.idci is None or self.idcr is None or (nat and all(
                natt.plain_mode(c.encapsulation) == _TRANSPORT for c in self.suite.protocols)):
            local_id = IdPayload.from_address(local_ip)
            remote_id = IdPayload.from_address(remote_ip)
            if self.idci is not None and self.idcr is not None:
                ours, theirs = ((self.idci, self.idcr) if self.initiator
                                else (self.idcr, self.idci))
                local_id = IdPayload.from_address(local_ip, ours.protocol, ours.port)
                remote_id = IdPayload.from_address(remote_ip, theirs.protocol, theirs.port)
            return local_id, remote_id
        return (self.idci, self.idcr) if self.initiator else (self.idcr, self.idci)

    def _install(self, *, inbound_only: bool = False) -> IpsecSA:
        """Install the negotiated SAs and flows; returns the SA record.

        ``inbound_only`` (the responder, before QM2): only our inbound SAs; the
        record is kept in ``self._early`` with the outbound SAs built and waiting,
        and the next call installs those and the flows. On an error everything the
        record holds is taken out again.
        """
        kernel = self.engine.kernel
        store = self.engine.store       # (not the property: a call each time)
        early = self._early
        if early is None:
            ipsec, inbound, self._outbound = self._build()
            todo = inbound if inbound_only else inbound + self._outbound
        else:
            ipsec, todo = early, self._outbound
        try:
            for kernel_sa in todo:
                kernel.add_sa(kernel_sa)
                ipsec.kernel_sas.append(kernel_sa)
            if inbound_only:
                return ipsec
            acquire_only, connections = _install_config(store)
            if self._ondemand is None and not (self.engine.acquire_only or acquire_only):
                for flow in self._flows(ipsec.local_id, ipsec.remote_id, ipsec.reqid):
                    kernel.add_flow(flow)
                    ipsec.flows.append(flow)
        except (KernelError, CryptoError, ids.IdError):
            self._undo(ipsec)
            raise
        ipsec.stay_alive = ipsec.name.lower() in connections
        return ipsec

    def _build(self) -> tuple[IpsecSA, list[KernelSA], list[KernelSA]]:
        """The SA record and the kernel SAs, (inbound ones, outbound ones), KEYMAT
        derived once for both directions; nothing is installed yet."""
        keys = self.sa.keys
        assert keys is not None and self.suite is not None
        local, remote = self.sa.local, self.sa.remote
        nat = self.sa.nat.detected
        in_encap = (remote[1], local[1]) if nat else None
        out_encap = (local[1], remote[1]) if nat else None
        local_sel, remote_sel = self._selectors(nat)
        # On demand (a kernel ACQUIRE): the template's reqid, its seq on the outbound
        # SA, and no flows (the administrator's policies are the flows). As responder
        # too: the peer may rekey our on-demand connection, and its SAs must not get
        # flows that would replace the administrator's policies.
        ondemand = self._ondemand = self.engine.ondemand.install_hints(self.connection)
        reqid = self.engine.kernel.new_reqid() if ondemand is None else ondemand[0]
        ipsec = IpsecSA(self.connection or "?", self.sa, local, remote, self.initiator,
                        self.engine.now())
        # Set here rather than passed by keyword: each keyword of a dataclass
        # __init__ is a search through its 26 parameter names.
        ipsec.suite = self.suite
        ipsec.reqid = reqid
        ipsec.local_id, ipsec.remote_id = local_sel, remote_sel
        ipsec.started_seq = self.started_seq
        ipsec.nonces = (self.ni_b, self.nr_b)
        if nat and self._udp_transport():
            ipsec.nat_oa = self.nat_oa_received
        inbound_sas: list[KernelSA] = []
        outbound_sas: list[KernelSA] = []
        pairs: list[SpiPair] = []
        # prf(SKEYID_d, ·), keyed once per ISAKMP SA for every KEYMAT block.
        skeyid_d = self.sa.phase2_prfs()[1]
        hash_alg = int(self.sa.suite.hash)
        compressed = len(self.suite.protocols) > 1 and any(
            c.protocol == _IPCOMP for c in self.suite.protocols)
        for choice in self.suite.protocols:
            # ProtocolChoice holds members and a plain TUNNEL/TRANSPORT mode already
            # (policy makes them so): no member() or plain_mode() call for them.
            protocol = choice.protocol
            if protocol == _IPCOMP:
                into, outof = self._ipcomp_sas(choice, reqid)
                inbound_sas.append(into)
                outbound_sas.append(outof)
                pairs.append(SpiPair(protocol, bytes(choice.our_spi)[-2:],
                                     bytes(choice.peer_spi)[-2:]))
                if not compressed:              # IPCOMP alone: its lifetimes
                    ipsec.life_seconds = choice.life_seconds
                    ipsec.life_kilobytes = choice.life_kilobytes
                continue
            shape = (protocol, choice.transform_id, choice.key_length, choice.auth_algorithm)
            layout = _LAYOUTS.get(shape)
            if layout is None:
                if protocol == _ESP:
                    layout = esp_layout(choice.transform_id, choice.key_length,
                                        choice.auth_algorithm, ISAKMPD_ESP_DEFAULT_KEY_BITS)
                else:
                    layout = ah_layout(choice.transform_id, choice.auth_algorithm)
                _LAYOUTS[shape] = layout
            inbound, outbound = derive_sa_key_bytes(
                hash_alg, skeyid_d, layout, choice.our_spi, choice.peer_spi,
                self.ni_b, self.nr_b, self.g_qm_xy)
            mode = choice.encapsulation
            if compressed:
                mode = _TRANSPORT                       # inside the IPComp SA
            auth = int(layout.auth_algorithm) if layout.auth_algorithm else None
            transform = int(choice.transform_id) if protocol == _ESP else None
            for (spi, enc_key, auth_key), src, dst, encap, seq, into in (
                    (inbound, remote[0], local[0], in_encap, None, inbound_sas),
                    (outbound, local[0], remote[0], out_encap,
                     ondemand[1] if ondemand is not None else None, outbound_sas)):
                # Every field by position (keywords cost a search each): lifetimes,
                # replay window, encap, acquire_seq.
                into.append(KernelSA(
                    protocol, spi, src, dst, mode, transform, enc_key, auth, auth_key,
                    reqid, choice.life_seconds, choice.life_kilobytes,
                    choice.replay_window, encap, seq))
            pairs.append(SpiPair(protocol, bytes(choice.our_spi), bytes(choice.peer_spi)))
            ipsec.life_seconds = choice.life_seconds
            ipsec.life_kilobytes = choice.life_kilobytes
        ipsec.spis = tuple(pairs)
        return ipsec, inbound_sas, outbound_sas

    def _ipcomp_sas(self, choice: Any, reqid: int) -> tuple[KernelSA, KernelSA]:
        """(inbound, outbound) IPComp SA: the CPIs widened to the kernel's 4 bytes,
        the compression transform, the bundle's mode; no keys, no replay window, no
        lifetimes of its own (RFC 3173; strongSwan's kernel-netlink)."""
        mode = natt.plain_mode(choice.encapsulation)
        local, remote = self.sa.local[0], self.sa.remote[0]
        return tuple(                                           # type: ignore[return-value]
            KernelSA(ProtocolId.IPCOMP, _kernel_cpi(cpi), src, dst, mode, None, b"", None,
                     b"", reqid, replay_window=0, comp_transform=int(choice.transform_id))
            for cpi, src, dst in ((choice.our_spi, remote, local),
                                  (choice.peer_spi, local, remote)))

    def _undo(self, ipsec: IpsecSA) -> None:
        for flow in ipsec.flows:
            try:
                self.engine.kernel.delete_flow(flow)
            except KernelError:
                pass
        for kernel_sa in ipsec.kernel_sas:
            try:
                self.engine.kernel.delete_sa(kernel_sa.protocol, kernel_sa.spi, kernel_sa.dst)
            except KernelError:
                pass
        ipsec.flows.clear()
        ipsec.kernel_sas.clear()

    def _flows(self, local_sel: IdPayload, remote_sel: IdPayload,
               reqid: int) -> list[KernelFlow]:
        choices = self.suite.protocols
        if len(choices) == 1:       # one protocol (ESP alone, usually): no bundle order
            outer, compressed = choices[0], False
        else:
            outer = next((c for c in choices if c.protocol == _ESP), choices[0])
            if outer.protocol == ProtocolId.IPCOMP:
                outer = choices[1]                  # IPCOMP + AH: AH inside IPComp
            compressed = outer.protocol != ProtocolId.IPCOMP and any(
                c.protocol == ProtocolId.IPCOMP for c in choices)
        mode = outer.encapsulation          # TUNNEL or TRANSPORT already (see _build)
        tunnel = mode == _TUNNEL
        local_ip, remote_ip = self.sa.local[0], self.sa.remote[0]
        local_net, remote_net = ids.id_selector(local_sel), ids.id_selector(remote_sel)
        proto = local_sel.protocol or remote_sel.protocol
        protocol_sa = member(ProtocolId, outer.protocol)
        local_port, remote_port = local_sel.port, remote_sel.port
        # By position (direction, protocol_sa, mode, tunnel_src, tunnel_dst, reqid,
        # protocol, src_port, dst_port, ipcomp): keywords cost a search each.
        flows = [KernelFlow(local_net, remote_net, "out", protocol_sa, mode,
                            local_ip if tunnel else None, remote_ip if tunnel else None,
                            reqid, proto, local_port, remote_port, compressed)]
        for direction in (("in", "fwd") if tunnel else ("in",)):
            flows.append(KernelFlow(remote_net, local_net, direction, protocol_sa, mode,
                                    remote_ip if tunnel else None,
                                    local_ip if tunnel else None, reqid, proto, remote_port,
                                    local_port, compressed))
        return flows


def _install_config(store: Any) -> tuple[bool, frozenset[str]]:
    """Whether ``[General] Acquire-Only`` is set, and ``[Phase 2] Connections``
    lower-cased: what every install asks of the configuration, remembered until it
    changes."""
    return store.memo(("quick-install",), lambda: (
        store.has("General", "Acquire-Only"),
        frozenset(name.lower() for name in store.get_list("Phase 2", "Connections"))))


def _kernel_cpi(cpi: bytes) -> bytes:
    """A CPI as the kernel keeps it: 4 bytes, the CPI in the low two (RFC 2407
    §4.4.5 lets a peer send it as 4 bytes already)."""
    return bytes(cpi)[-2:].rjust(4, b"\0")
