"""The IKE engine: datagram dispatch, the exchanges in progress, the API to start SAs.

This module owns what isakmpd's ``message.c`` (message_recv), ``exchange.c``
(exchange lookup and setup) and ``sa.c`` (deleting SAs) do around the exchanges
(inventory §4.1, §4.6, DESIGN.md §3):

* :meth:`Engine.datagram_received` peeks at the header, picks the ISAKMP SA by its
  cookies and the exchange by its message ID, creates responder exchanges for a new
  phase 1 (zero responder cookie, message ID 0) or a new Quick Mode / informational
  exchange (fresh message ID on a ready ISAKMP SA), adopts the responder cookie of
  our own phase 1, and answers what it cannot use with at most one notification
  (never a notification in answer to a notification). Every bad message gets one
  log line; nothing raises out of it.
* :meth:`Engine.initiate_phase1` / :meth:`Engine.initiate_connection` start
  exchanges (one phase 1 per peer at a time; Quick Mode waits for it);
  :meth:`Engine.delete_ipsec_sa` / :meth:`Engine.delete_isakmp_sa` send DELETE and
  remove SAs; :meth:`Engine.shutdown` ends everything.
* Lifetimes (inventory §3.1, §3.2, §4.9): every ready SA gets a soft expiry at a
  random 85-95 % of its lifetime in seconds and a hard expiry at 100 % (phase 1
  without a negotiated lifetime: 28800 s; phase 2 without one: no timers). At soft
  expiry an SA whose connection is kept up (the connection checker's active list)
  and that is not REPLACED is renegotiated, otherwise it is marked fading; at hard
  expiry it is deleted with DELETE. A new SA for the same traffic marks older ones
  REPLACED. An IPsec SA replaced by one *we* initiated is deleted (with DELETE)
  ``REPLACED_GRACE`` seconds after the new one is ready, so the peer has time to
  install the new one first; otherwise the peer deletes it, or its hard expiry
  does. ISAKMP SAs are never deleted early (their IPsec SAs may still refer to
  them): a replaced one lives to its hard expiry. The kernel's own expiries
  (:meth:`Engine.kernel_sa_expired`, XFRM EXPIRE): a hard one removes our record
  without DELETE; a soft one runs the SA's soft expiry now if its timer is still
  pending (the kernel also counts bytes), else it is only noted. A kernel ACQUIRE
  (:meth:`Engine.kernel_acquire`) negotiates a dynamic connection
  (:mod:`isakmpd.ike.ondemand`, ``self.ondemand``); a soft EXPIRE of such an SA
  renegotiates it, and the connection goes with its last SA.
* NAT traversal around the exchanges (inventory §4.8, RFC 3947 §4, RFC 3948 §2.3):
  when our NAT-D did not match (we are behind a NAT), a NAT-keepalive (one 0xFF
  byte, ``ISender.send_keepalive``) goes from our NAT-T port to the peer's every
  ``[General] NAT-T-Keepalive`` seconds (default 20, values < 1 mean 20), the first
  one interval after the SA is ready, one stream per pair of endpoints for as long
  as a ready ISAKMP SA or IPsec SA with that peer exists (only the NATed side sends
  them). An authenticated message that arrives on the NAT-T port moves its ISAKMP
  SA there (replies and later exchanges use the peer's address and port as seen on
  that port, a translated one included); afterwards messages for that SA arriving
  on the plain port are dropped with one log line. When the peer is behind a NAT
  and an authenticated message of a ready SA comes from another public address or
  port (the NAT rebooted or timed out its mapping), the peer's SAs move there:
  ISAKMP SAs, IPsec SAs with their kernel SAs' addresses and encapsulation ports,
  keepalives (RFC 3947 §7, :meth:`Engine.move_peer`). With ``-T`` (``nat_t=False``)
  nothing arriving on the NAT-T port is accepted.
* Simultaneous negotiations: two IPsec SAs for the same traffic whose Quick Modes
  overlapped are twins; as in RFC 7296 §2.8.1, the one whose exchange has the
  lowest nonce is redundant. Both peers compute the same answer, and only the
  peer that initiated the redundant one deletes it, so they never delete both.
  Two ISAKMP SAs from simultaneous phase 1s are both kept (to hard expiry); both
  peers mark the one with the lower cookie pair replaced, so new phase 2s and the
  next phase 1 rekey use the same one on both sides. RESPONDER-LIFETIME (RFC 2407 §4.6.3.1) received by an
  initiator shortens an SA's lifetime and timers, never lengthens them.

* Watching messages (inventory §1.6, §1.1 ``-D``/``-v``): every message in clear
  (ours before encryption and only at its first transmission, the peer's after
  decryption) goes to ``capture`` (a :class:`~isakmpd.capture.PacketCapture`, when
  active) with the addresses and ports it was sent from and to, and is summarised
  in debug class Message (level 10 one line, 70 every payload). Debug lines name
  their class and level (:meth:`Engine.debug`); none carries key material. With
  ``-v`` (:func:`isakmpd.debug.verbose`) isakmpd's "phase 1 done", "quick mode
  done" and "Peer ... made us delete live SA" lines are logged.

Time comes from the injected ``clock`` (IReactorTime), randomness from ``rng``, the
network from an ISender, the kernel from an IKernel: nothing here touches the global
reactor or a socket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from isakmpd import debug
from isakmpd.debug import DebugClass
from isakmpd.ike import policy
from isakmpd.ike.exchange import Exchange, ExchangeFailed, FinishedExchange
from isakmpd.ike.ondemand import OnDemand
from isakmpd.ike.sa import ZERO_COOKIE, Address, IpsecSA, IsakmpSA, SaDatabase, SaState
from isakmpd.kernel.interface import KernelError
from isakmpd.log import info as log_info
from isakmpd.transport.interface import IDatagramHandler
from isakmpd.wire import addresses
from isakmpd.wire.constants import (
    COOKIE_SIZE,
    HEADER_SIZE,
    ISAKMP_PORT,
    NAT_T_PORT,
    ExchangeType,
    Flag,
    NotifyType,
    ProtocolId,
)
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.message import Header, Message, decode_header
from isakmpd.wire.payloads import DeletePayload, IdPayload, NotifyPayload, format_id_data

__all__ = ["Engine"]

_PHASE1_TYPES = (ExchangeType.ID_PROT, ExchangeType.AGGRESSIVE)
# Members the per-message paths compare with, as module names (an enum class
# attribute costs a Python-level call in 3.11; see wire.constants.value_map).
_INFO = ExchangeType.INFO
_QUICK_MODE = ExchangeType.QUICK_MODE
_DEAD = SaState.DEAD
_READY = SaState.READY
_ENC_BIT = int(Flag.ENC)
_DEBUG_MESSAGE = DebugClass.MESSAGE
_DEBUG_SA = DebugClass.SA
# The live debug levels (see debug.LEVELS) and the indexes per-message paths use.
_LEVELS = debug.LEVELS
_DEBUG_MESSAGE_I = int(_DEBUG_MESSAGE)
_DEBUG_SA_I = int(_DEBUG_SA)
_FINISHED_KEPT = 16          # finished exchanges remembered per ISAKMP SA (duplicates)
_KEPT_UP_MEMO = ("engine-kept-up",)   # store.memo key: the configured connections, lower
_ERROR_NOTIFY_MAX = 16383    # RFC 2408 §3.14.1: error types are 1..16383
DEFAULT_PHASE1_LIFETIME = 28800   # seconds, when phase 1 negotiated none (inventory §3.1)
SOFT_EXPIRY_PERMILLE = (850, 950)  # soft expiry at a random 85-95 % (sa.c)
REPLACED_GRACE = 10          # seconds an IPsec SA outlives its successor we initiated
DEFAULT_NAT_T_KEEPALIVE = 20  # seconds between NAT-keepalives (nat_traversal.c)


def _canonical_ip(text: str) -> str:
    """A numeric address in canonical text (IPv6 compressed, lower case); other text
    as it is."""
    try:
        return addresses.canonical(text.strip())
    except ValueError:
        return text


def _id_text(identity: IdPayload | None) -> str:
    """An ID as isakmpd's ipsec_decode_id writes it (address, address/mask, name)."""
    if identity is None:
        return "<no ipsec id>"
    return format_id_data(identity.id_type, identity.data)


@implementer(IDatagramHandler)
class Engine:
    """Runs every exchange of one daemon."""

    def __init__(self, store: Any, clock: Any, rng: Any, sender: Any, kernel: Any,
                 source_address: Callable[[str], str], *, port: int = ISAKMP_PORT,
                 nat_t_port: int = NAT_T_PORT, nat_t: bool = True,
                 log: Logger | None = None, local_port: int | None = None,
                 acquire_only: bool = False) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng
        self.sender = sender
        self.kernel = kernel
        self.source_address = source_address
        self.port = port
        self.nat_t_port = nat_t_port
        self.nat_t = nat_t
        # -P: our port when we initiate phase 1 (the transport listens there too).
        self.local_port = local_port or port
        # -a: negotiated SAs are installed without flows (as [General] Acquire-Only).
        self.acquire_only = acquire_only
        self.log = log if log is not None else Logger()
        self.sadb = SaDatabase()
        self._exchanges: dict[tuple[IsakmpSA, int], Exchange] = {}
        # Per ISAKMP SA, its finished exchanges by message ID, oldest first (a plain
        # dict, insertion-ordered: half the size of an OrderedDict, and one per
        # tunnel is kept).
        self._finished: dict[IsakmpSA, dict[int, FinishedExchange]] = {}
        # Called with every exchange that ends, before it is reduced to a
        # FinishedExchange (tests and reports look at what was negotiated).
        self.on_exchange_done: list[Callable[[Exchange], None]] = []
        self._phase1_running: dict[str, Exchange] = {}   # peer section (lower) -> exchange
        self.contacted: set[str] = set()                  # peer IPs sent INITIAL-CONTACT
        self.running = True
        # The connection checker registers itself here (its active list says which
        # connections are kept up); without one, [Phase 2] Connections is used.
        self.connection_manager: Any = None
        self._seq = 0                                     # orders negotiations
        self._renegotiating: set[str] = set()            # connections (lower) we rekey
        # NAT-keepalive timers by (our NAT-T endpoint, the peer's NAT-T endpoint).
        self._keepalives: dict[tuple[Address, Address], Any] = {}
        # Packet capture (isakmpd.capture.PacketCapture or None): sees every message
        # in clear while it is active.
        self.capture: Any = None
        # Dynamic connections made from kernel ACQUIREs (inventory §4.9).
        self.ondemand = OnDemand(self)
        # The SA expiry callbacks, bound once: a method bound per callLater would be
        # one more object every ready SA keeps (with its timer) for the collector.
        self._soft_expired_call = self._soft_expired
        self._hard_expired_call = self._hard_expired

    # -- configuration -----------------------------------------------------------

    @property
    def retransmits(self) -> int:
        return self.store.get_num("General", "Retransmits", 3)

    @property
    def max_exchange_time(self) -> int:
        # Read at every exchange start: remembered until the configuration changes.
        return self.store.memo(("exchange-max-time",), self._read_max_exchange_time)

    def _read_max_exchange_time(self) -> int:
        value = self.store.get_num("General", "Exchange-max-time", 120)
        return value if value > 0 else 120

    def warn(self, fmt: str, **kwargs: Any) -> None:
        """Log at the warning level (what an operator should read)."""
        self.log.emit(LogLevel.warn, fmt, **kwargs)

    def debug(self, debug_class: DebugClass, level: int, fmt: str, **kwargs: Any) -> None:
        """A debug line of ``debug_class`` at ``level``, built only when it is wanted."""
        if _LEVELS[debug_class] >= level:      # (debug.enabled, without the call)
            self.log.debug(fmt, **debug.fields(debug_class, level), **kwargs)

    def now(self) -> float:
        return float(self.clock.seconds())

    def new_cookie(self) -> bytes:
        while True:
            cookie = self.rng.random_bytes(COOKIE_SIZE)
            if cookie != ZERO_COOKIE:
                return cookie

    def next_seq(self) -> int:
        """A number later than every one handed out before (orders SAs in one tick)."""
        self._seq += 1
        return self._seq

    def new_message_id(self, sa: IsakmpSA) -> int:
        """A random non-zero message ID not in use on ``sa`` (inventory §4.1)."""
        while True:
            mid = int.from_bytes(self.rng.random_bytes(4), "big")
            if mid and (sa, mid) not in self._exchanges and mid not in sa.used_message_ids:
                return mid

    # -- sending -------------------------------------------------------------------

    def transmit(self, data: bytes, local: Address, remote: Address) -> None:
        try:
            self.sender.send(data, local, remote)
        except Exception as error:  # noqa: BLE001 - a sender must not break an exchange
            self.warn("sending {size} bytes to {ip}:{port} failed: {error}",
                          size=len(data), ip=remote[0], port=remote[1], error=error)

    # -- watching messages (capture, debug class Message) ----------------------------

    @property
    def watching(self) -> bool:
        """Does anybody want messages in clear (capture on, or Message debugging)?"""
        capture = self.capture
        return (capture is not None and capture.active) or \
            _LEVELS[_DEBUG_MESSAGE_I] >= 10        # (debug.enabled, without the call)

    def _marker(self, local: Address) -> bool:
        """Did a message to or from ``local`` travel on our NAT-T port (non-ESP marker)?"""
        return self.nat_t and local[1] == self.nat_t_port and self.nat_t_port != self.port

    def message_out(self, message: Message, clear: bytes, local: Address,
                    remote: Address) -> None:
        """Our ``message`` (``clear``: its datagram unencrypted), sent for the first time."""
        self._watched(message, clear, local, remote, local, "sending to", remote)

    def message_in(self, message: Message, data: bytes, local: Address,
                   remote: Address) -> None:
        """The peer's ``message`` (``data`` as received), decrypted and decoded."""
        clear = data
        if message.flags & Flag.ENC and message.body is not None:
            clear = data[:HEADER_SIZE] + message.body + message.padding
        self._watched(message, clear, remote, local, local, "received from", remote)

    def _watched(self, message: Message, clear: bytes, src: Address, dst: Address,
                 local: Address, verb: str, peer: Address) -> None:
        capture = self.capture
        if capture is not None and capture.active:
            capture.record(clear, src, dst, marker=self._marker(local))
        if debug.enabled(DebugClass.MESSAGE, 10):
            self.debug(DebugClass.MESSAGE, 10, "{verb} {ip}:{port}: {message}", verb=verb,
                       ip=peer[0], port=peer[1], message=message.describe())
        if debug.enabled(DebugClass.MESSAGE, 70):
            self.debug(DebugClass.MESSAGE, 70, "{payloads}", payloads=message.describe_long())

    def send_unprotected_notify(self, icookie: bytes, rcookie: bytes, notify: int,
                                local: Address, remote: Address, *, spi: bytes = b"",
                                ) -> None:
        """An unprotected one-message informational exchange (no ISAKMP SA keys)."""
        payload = NotifyPayload(notify, ProtocolId.ISAKMP, spi)
        message = Message(icookie, rcookie, ExchangeType.INFO, [payload])
        self.debug(DebugClass.MESSAGE, 20, "sending {notify} to {ip}:{port}",
                   notify=NotifyType.describe(notify), ip=remote[0], port=remote[1])
        data = message.encode()
        if self.watching:
            self.message_out(message, data, local, remote)
        self.transmit(data, local, remote)

    def send_exchange_notification(self, exchange: Exchange, notify: int) -> None:
        """Tell the peer why ``exchange`` failed: protected once the SA is ready."""
        sa = exchange.sa
        if sa.ready and exchange.PHASE != 1:
            self.send_protected_notify(sa, notify)
        else:
            self.send_unprotected_notify(sa.icookie, sa.rcookie, notify, exchange.local,
                                         exchange.remote, spi=sa.cookies)

    def send_protected_notify(self, sa: IsakmpSA, notify: int, *, protocol: int = ProtocolId.ISAKMP,
                              spi: bytes | None = None, data: bytes = b"") -> None:
        payload = NotifyPayload(notify, protocol, sa.cookies if spi is None else spi, data)
        self.send_informational(sa, [payload])

    def send_informational(self, sa: IsakmpSA, payloads: list[Any]) -> None:
        """A protected informational exchange (HASH(1), random M-ID) on ready ``sa``."""
        from isakmpd.ike.informational import Informational
        exchange = Informational(self, sa, initiator=True, message_id=self.new_message_id(sa),
                                 local=sa.local, remote=sa.remote, payloads=payloads)
        self._register(exchange)
        exchange.start()

    # -- exchanges -----------------------------------------------------------------

    def _register(self, exchange: Exchange) -> None:
        key = (exchange.sa, exchange.message_id)
        self._exchanges[key] = exchange
        if exchange.message_id:
            exchange.sa.remember_message_id(exchange.message_id)
        exchange.on_done.append(self._exchange_done)

    def _exchange_done(self, exchange: Exchange) -> None:
        sa = exchange.sa
        key = (sa, exchange.message_id)
        if self._exchanges.get(key) is exchange:
            del self._exchanges[key]
        phase1 = exchange.PHASE == 1
        if phase1:
            name = sa.name.lower()
            if self._phase1_running.get(name) is exchange:
                del self._phase1_running[name]
        for observer in self.on_exchange_done:
            observer(exchange)
        if sa.state is not _DEAD and not (phase1 and exchange.failed):
            kept = self._finished.get(sa)
            if kept is None:        # (not setdefault: it would make a dict every time)
                kept = self._finished[sa] = {}
            kept[exchange.message_id] = FinishedExchange(exchange)
            while len(kept) > _FINISHED_KEPT:
                del kept[next(iter(kept))]          # the oldest

    def exchanges(self) -> list[Exchange]:
        """The exchanges in progress."""
        return list(self._exchanges.values())

    def _finished_exchange(self, sa: IsakmpSA, message_id: int) -> FinishedExchange | None:
        return self._finished.get(sa, {}).get(message_id)

    # -- API: starting SAs ---------------------------------------------------------

    def initiate_phase1(self, peer_section: str, *, force: bool = False,
                        ) -> Deferred[IsakmpSA]:
        """Negotiate an ISAKMP SA with ``peer_section`` (or reuse a ready one).

        ``force`` negotiates a new one even when one is ready (phase 1 rekey).
        """
        ready = self.sadb.isakmp_for_peer(peer_section)
        if ready is not None and not force:
            return succeed(ready)
        running = self._phase1_running.get(peer_section.lower())
        if running is not None:
            return running.wait()
        if self.passive:
            return self._refuse_passive(f"phase 1 with {peer_section}")
        try:
            exchange = self._new_phase1_initiator(peer_section)
        except (policy.NegotiationError, ValueError, KeyError) as error:
            message = getattr(error, "message", None) or str(error)
            self.warn("cannot start phase 1 with {peer}: {error}", peer=peer_section,
                          error=message)
            return fail(ExchangeFailed(f"cannot start phase 1 with {peer_section}: "
                                       f"{message}"))
        d = exchange.wait()
        exchange.start()
        return d

    def _new_phase1_initiator(self, peer_section: str) -> Exchange:
        from isakmpd.ike.phase1 import phase1_class
        if not self.store.has(peer_section):
            raise ValueError(f"there is no [{peer_section}] section")
        address = self.store.get_str(peer_section, "Address")
        if not address:
            raise ValueError(f"[{peer_section}] has no Address")
        # The canonical text a socket reports (2001:0DB8::2 -> 2001:db8::2), so the
        # replies' source matches the SA's remote address.
        address = _canonical_ip(address)
        port = self.store.get_num(peer_section, "Port", self.port) or self.port
        local_ip = _canonical_ip(self.store.get_str(peer_section, "Local-address")
                                 or self.source_address(address))
        exchange_type = policy.exchange_type(self.store, peer_section)
        sa = IsakmpSA(self.new_cookie(), ZERO_COOKIE, (local_ip, self.local_port),
                      (address, port), True, peer_section, self.now(),
                      exchange_type=exchange_type, started_seq=self.next_seq())
        self.sadb.add_isakmp(sa)
        exchange = phase1_class(exchange_type)(self, sa, initiator=True, message_id=0,
                                                local=sa.local, remote=sa.remote)
        self._register(exchange)
        self._phase1_running[peer_section.lower()] = exchange
        return exchange

    def initiate_connection(self, connection: str) -> Deferred[IpsecSA]:
        """Negotiate the IPsec SA of ``connection`` (phase 1 first when needed)."""
        try:
            peer = policy.connection_peer(self.store, connection)
        except (policy.NegotiationError, ValueError, KeyError) as error:
            message = getattr(error, "message", None) or str(error)
            self.warn("cannot start connection {name}: {error}", name=connection,
                          error=message)
            return fail(ExchangeFailed(message))
        d = self.initiate_phase1(peer)
        d.addCallback(self._start_quick_mode, connection)
        return d

    @property
    def passive(self) -> bool:
        """Passive mode (``-S``, FIFO ``M passive``): we initiate no exchange.

        As isakmpd's exchange_establish: phase 1 and Quick Mode are not started,
        rekeys included; peers' exchanges are still answered, and DELETEs and
        notifications still sent.
        """
        manager = self.connection_manager
        return manager is not None and bool(manager.passive)

    def _refuse_passive(self, what: str) -> Deferred[Any]:
        message = f"passive mode: not starting {what}"
        self.log.info("{message}", message=message)
        return fail(ExchangeFailed(message))

    def _start_quick_mode(self, sa: IsakmpSA, connection: str) -> Deferred[IpsecSA]:
        if self.passive:
            return self._refuse_passive(f"Quick Mode for {connection}")
        from isakmpd.ike.quick import QuickMode
        if not sa.ready:
            return fail(ExchangeFailed(f"ISAKMP SA for {connection} is gone"))
        exchange = QuickMode(self, sa, initiator=True, message_id=self.new_message_id(sa),
                             local=sa.local, remote=sa.remote, connection=connection)
        self._register(exchange)
        d = exchange.wait()
        exchange.start()
        return d

    # -- API: deleting SAs ---------------------------------------------------------

    def delete_ipsec_sa(self, ipsec: IpsecSA, *, notify: bool = True) -> None:
        """Remove an IPsec SA from the kernel, telling the peer with DELETE."""
        if notify:
            carrier = ipsec.isakmp_sa if ipsec.isakmp_sa.ready else \
                self.sadb.isakmp_for_peer(ipsec.isakmp_sa.name)
            if carrier is not None:
                for pair in ipsec.spis:
                    self.send_informational(carrier, [DeletePayload(
                        pair.protocol, len(pair.our_spi), [pair.our_spi])])   # IPCOMP: 2
            else:
                self.log.info("no ISAKMP SA with {peer}, {name} deleted without DELETE",
                              peer=ipsec.remote[0], name=ipsec.name)
        self.remove_ipsec_sa(ipsec)

    def remove_ipsec_sa(self, ipsec: IpsecSA) -> None:
        """Take an IPsec SA out of the kernel and the database (no message)."""
        if ipsec.state is SaState.DEAD:
            return
        for flow in ipsec.flows:
            # After a rekey the successor installed the same policy (the kernel
            # replaced it): hand the policy to the newest other SA rather than
            # deleting the successor's traffic protection.
            heirs = [f for other in self.sadb.ipsec_by_address(ipsec.remote[0])
                     if other is not ipsec and other.name.lower() == ipsec.name.lower() and other.state is not SaState.DEAD
                     for f in other.flows if f.selector() == flow.selector()]
            try:
                if heirs:
                    self.kernel.add_flow(heirs[-1])
                else:
                    self.kernel.delete_flow(flow)
            except KernelError as error:
                self.warn("removing flow of {name}: {error}", name=ipsec.name,
                              error=error)
        for kernel_sa in ipsec.kernel_sas:
            try:
                self.kernel.delete_sa(kernel_sa.protocol, kernel_sa.spi, kernel_sa.dst)
            except KernelError as error:
                self.warn("removing SA of {name}: {error}", name=ipsec.name, error=error)
        self.sadb.remove_ipsec(ipsec)
        self.log.info("IPsec SA deleted: {sa}", sa=ipsec.describe())
        if (ipsec.local, ipsec.remote) in self._keepalives:
            self._update_keepalive(ipsec.local, ipsec.remote)
        self.ondemand.sa_removed(ipsec)

    def delete_isakmp_sa(self, sa: IsakmpSA, *, notify: bool = True) -> None:
        """Remove an ISAKMP SA, telling the peer with DELETE when it is ready."""
        if notify and sa.ready:
            self.send_informational(sa, [DeletePayload(ProtocolId.ISAKMP, 16, [sa.cookies])])
        self.remove_isakmp_sa(sa)

    def remove_isakmp_sa(self, sa: IsakmpSA) -> None:
        """Forget an ISAKMP SA and end its exchanges (no message)."""
        if sa.state is SaState.DEAD:
            return
        was_ready = sa.ready
        self.sadb.remove_isakmp(sa)
        if (sa.local, sa.remote) in self._keepalives:
            self._update_keepalive(sa.local, sa.remote)
        for key, exchange in list(self._exchanges.items()):
            if key[0] is sa:
                exchange.abort(f"ISAKMP SA {sa.name} deleted")
                self._exchanges.pop(key, None)
        self._finished.pop(sa, None)
        if was_ready:
            self.log.info("ISAKMP SA deleted: {sa}", sa=sa.describe())

    def initial_contact(self, sa: IsakmpSA, *, later: bool = False) -> None:
        """INITIAL-CONTACT from ``sa``'s peer: drop every older SA with it (§4.6).

        Older means ready before ``sa``'s negotiation began (a simultaneous phase 1
        with the same peer is not old state), or, for a notification sent ``later``
        on a ready SA, ready before now.
        """
        before = self.next_seq() if later else sa.started_seq
        for other in self.sadb.isakmp_by_address(sa.remote[0]):
            if other is not sa and other.ready and other.established_seq < before:
                self.log.info("INITIAL-CONTACT from {ip}: removing {sa}", ip=sa.remote[0],
                              sa=other.describe())
                self.remove_isakmp_sa(other)
        for ipsec in self.sadb.ipsec_by_address(sa.remote[0]):
            if ipsec.ready and ipsec.established_seq < before:
                self.log.info("INITIAL-CONTACT from {ip}: removing {sa}", ip=sa.remote[0],
                              sa=ipsec.describe())
                self.remove_ipsec_sa(ipsec)

    def peer_deleted(self, sa: IsakmpSA | IpsecSA, protocol: int) -> None:
        """The peer's authenticated DELETE is about to remove ``sa``.

        With ``-v``, an SA that has not reached its soft expiry gets isakmpd's line
        (ipsec.c ipsec_delete_spi_list): the peer made us delete a live SA.
        """
        if not debug.verbose() or not sa.ready or sa.fading:
            return
        if sa.soft_at is not None and self.now() >= sa.soft_at:
            return
        id_i, id_r = (sa.local_id, sa.remote_id) if sa.initiator else \
            (sa.remote_id, sa.local_id)
        self.log.info("isakmpd: Peer {peer} made us delete live SA {name} for proto "
                      "{proto}, initiator id: {id_i}, responder id: {id_r}",
                      peer=sa.remote[0], name=sa.name or "<unnamed>", proto=int(protocol),
                      id_i=_id_text(id_i), id_r=_id_text(id_r))

    def peer_refused(self, sa: IsakmpSA, kind: str) -> None:
        """An authenticated error notification: fail our Quick Modes awaiting QM2."""
        from isakmpd.ike.exchange import ExchangeError
        from isakmpd.ike.quick import QuickMode
        for (owner, _mid), exchange in list(self._exchanges.items()):
            if (owner is sa and isinstance(exchange, QuickMode) and exchange.initiator
                    and exchange.current_step == "recv_qm2"):
                exchange.fail(ExchangeError(
                    None, f"{exchange.describe()}: peer {sa.remote[0]} refused with {kind}"))

    def shutdown(self, *, send_deletes: bool = True) -> None:
        """Delete every SA (with DELETE unless told otherwise) and end every exchange."""
        self.running = False
        delete = send_deletes and not (self.store.get_str("General", "Delete-SAs", "yes")
                                       or "yes").lower().startswith("no")
        for ipsec in self.sadb.ipsec_sas():
            self.delete_ipsec_sa(ipsec, notify=delete)
        for sa in self.sadb.isakmp_sas():
            self.delete_isakmp_sa(sa, notify=delete)
        for exchange in list(self._exchanges.values()):
            exchange.abort("shutting down")
        self._exchanges.clear()
        self._finished.clear()
        for call in self._keepalives.values():
            if call.active():
                call.cancel()
        self._keepalives.clear()

    # -- receiving -----------------------------------------------------------------

    def datagram_received(self, data: bytes, local: Address, remote: Address) -> None:
        """One ISAKMP message from the transport. Never raises."""
        # The dispatch runs in this frame (no second method): every message takes it.
        try:
            if data.__class__ is not bytes:
                data = bytes(data)
            if not self.running:
                return
            if not self.nat_t and local[1] == self.nat_t_port and self.nat_t_port != self.port:
                self._bad(remote, "NAT-T is disabled (-T), nothing is accepted on port "
                          "{nat_t_port}", nat_t_port=self.nat_t_port)
                return
            try:
                header = decode_header(data)
            except DecodeError as error:
                self._bad(remote, "{error}", error=error.message)
                # Answer a bad header at most once, never a notification with one.
                if not error.silent and len(data) >= HEADER_SIZE \
                        and data[18] != ExchangeType.INFO:
                    self.send_unprotected_notify(data[:8], data[8:16], error.notify, local,
                                                 remote)
                return
            if header.rcookie == ZERO_COOKIE:
                self._setup_message(data, header, local, remote)
                return
            sa = self.sadb.find_isakmp(header.icookie, header.rcookie)
            if sa is None:
                sa = self._adopt_rcookie(header, remote)
            if sa is None:
                if header.exchange_type == ExchangeType.INFO:
                    own = self.sadb.find_isakmp_by_icookie(header.icookie, initiator=True)
                    if own is not None and not header.encrypted:
                        self._unprotected_info(own, data, header, remote)
                        return
                    self._bad(remote, "notification with unknown cookies {cookies}",
                              cookies=header.icookie.hex() + ":" + header.rcookie.hex())
                    return
                self._bad(remote, "unknown cookies {cookies}",
                          cookies=header.icookie.hex() + ":" + header.rcookie.hex())
                self.send_unprotected_notify(header.icookie, header.rcookie,
                                             NotifyType.INVALID_COOKIE, local, remote)
                return
            if sa.nat.floated and local[1] != self.nat_t_port:
                # RFC 3947 §4: after the move, the plain port is not used for this SA.
                self._bad(remote, "ISAKMP SA {name} has moved to port {nat_t_port}",
                          name=sa.name, nat_t_port=self.nat_t_port)
                return
            if header.message_id == 0:
                self._phase1_message(sa, data, header, local, remote)
            else:
                self._phase2_message(sa, data, header, local, remote)
            if local[1] == self.nat_t_port:       # (_follow_float's first test, without a call)
                self._follow_float(sa, data, local, remote)
        except Exception:  # noqa: BLE001 - nothing may escape into the transport
            self.log.failure("internal error handling {size} bytes from {ip}:{port}",
                             size=len(data), ip=remote[0], port=remote[1])

    def _bad(self, remote: Address, text: str, **kw: Any) -> None:
        self.log.info("message from {ip}:{port} dropped: " + text, ip=remote[0],
                      port=remote[1], **kw)

    def _follow_float(self, sa: IsakmpSA, data: bytes, local: Address,
                      remote: Address) -> None:
        """An accepted message on the NAT-T port moves its SA there (inventory §4.8).

        Accepted means an exchange of the SA took it (it is that exchange's last
        received message), so a forged datagram with the right cookies cannot move
        an SA. Replies and new exchanges then go to the address and port the
        message came from, which is the NAT's translation of the peer's port.
        """
        if (sa.nat.floated or not self.nat_t or local[1] != self.nat_t_port
                or self.nat_t_port == self.port or sa.state is SaState.DEAD):
            return
        accepted = any(exchange.sa is sa and exchange.received_last(data)
                       for exchange in self._exchanges_of(sa))
        if not accepted:
            return
        sa.nat.floated = True
        self.sadb.move_isakmp(sa, local, remote)
        self.log.info("{sa}: peer {ip} talks on port {port}: moved to the NAT-T port",
                      sa=sa.describe(), ip=remote[0], port=local[1])

    def peer_authenticated(self, sa: IsakmpSA, local: Address, remote: Address) -> None:
        """A phase 2 or informational message on ``sa`` passed its HASH.

        Quick Mode and Informational steps call this once a received message is
        authenticated (it decrypted and its HASH matched; replays of finished
        exchanges and of used message IDs never reach a step), before they act on it.

        RFC 3947 §7: when a NAT drops or changes its mapping (reboot, timeout), the
        end that is not behind that NAT SHOULD use the address and port of the last
        valid authenticated IKE or ESP packet from the peer; keepalives, which are
        not authenticated, cannot be used (the transport drops them anyway). So such
        a message on ready ``sa`` from another address or port moves the SA and
        everything with the peer there (:meth:`move_peer`) before anything is sent
        in answer; a forged or garbage datagram with the right cookies never gets
        here and moves nothing. Only when the peer is behind a NAT (its NAT-D did not
        match): with no NAT, or only us behind one, the peer's address cannot change
        this way and the RFC says the NATed host MUST NOT follow (a DoS), so the SA
        stays (each exchange still answers where its message came from).

        isakmpd adopts a message's transport for its ISAKMP SA in phase 1 only
        (message.c message_recv), so its DELETEs and Quick Modes keep going to the
        old mapping; strongSwan's charon in IKEv1 (task_manager_v1.c
        process_message) calls ike_sa.c update_hosts for every message that parses,
        which moves the IKE SA and updates its CHILD_SAs in the kernel, as done here.
        """
        if (remote != sa.remote and local == sa.local and sa.ready
                and sa.nat.peer_is_behind):
            self.move_peer(sa, remote)

    def move_peer(self, sa: IsakmpSA, remote: Address) -> None:
        """The NAT in front of ``sa``'s peer now shows it as ``remote`` (RFC 3947 §7).

        Every SA with that peer (same section) on the old endpoints follows: its
        ISAKMP SAs and their exchanges (replies, retransmissions, DELETE, our Quick
        Modes go to ``remote``), its IPsec SAs
        and their kernel SAs (``IKernel.update_sa``: addresses and UDP encapsulation
        ports) and flows (tunnel endpoints), and our NAT-keepalives when we are
        behind a NAT too. One log line at the default level.
        """
        local, old = sa.local, sa.remote
        name = sa.name.lower()
        isakmps = [o for o in self.sadb.isakmp_by_address(old[0])
                   if o.local == local and o.remote == old and o.name.lower() == name]
        ipsecs = [i for i in self.sadb.ipsec_by_address(old[0])
                  if i.local == local and i.remote == old and i.state is not SaState.DEAD
                  and i.isakmp_sa.name.lower() == name]
        self.log.info("peer {peer}: NAT mapping changed from {oip}:{oport} to {ip}:{port}, "
                      "moving {n} ISAKMP SA(s) and {m} IPsec SA(s) there", peer=sa.name,
                      oip=old[0], oport=old[1], ip=remote[0], port=remote[1],
                      n=len(isakmps), m=len(ipsecs))
        for other in isakmps:
            self.sadb.move_isakmp(other, local, remote)
            for exchange in self._exchanges_of(other):     # retransmissions, resends
                if exchange.remote == old:
                    exchange.remote = remote
        for ipsec in ipsecs:
            self.sadb.move_ipsec(ipsec, local, remote)
            self._remap_kernel(ipsec, old)
        if (local, old) in self._keepalives:
            self._update_keepalive(local, old)
        self._update_keepalive(local, remote)

    def _remap_kernel(self, ipsec: IpsecSA, old: Address) -> None:
        """Give a moved IPsec SA's kernel SAs and flows the peer's new endpoint."""
        from isakmpd.ike import natt
        local, remote = ipsec.local, ipsec.remote
        updated = []
        for kernel_sa in ipsec.kernel_sas:
            inbound = ipsec.our_spi(kernel_sa.protocol) == kernel_sa.spi
            new = natt.remapped_sa(kernel_sa, inbound=inbound, local=local, remote=remote)
            try:
                if new != kernel_sa:
                    self.kernel.update_sa(kernel_sa, new)
            except KernelError as error:
                self.warn("updating SA of {name} for the new NAT mapping: {error}",
                          name=ipsec.name, error=error)
                new = kernel_sa
            updated.append(new)
        ipsec.kernel_sas = updated
        flows = []
        for flow in ipsec.flows:
            new_flow = natt.remapped_flow(flow, old[0], remote[0])
            try:
                if new_flow.selector() != flow.selector():
                    self.kernel.delete_flow(flow)
                if new_flow != flow:
                    self.kernel.add_flow(new_flow)     # same selector: replaced
            except KernelError as error:
                self.warn("updating flow of {name} for the new NAT mapping: {error}",
                          name=ipsec.name, error=error)
                new_flow = flow
            flows.append(new_flow)
        ipsec.flows = flows
        ipsec.local_id = natt.remapped_id(ipsec.local_id, old[0], remote[0])
        ipsec.remote_id = natt.remapped_id(ipsec.remote_id, old[0], remote[0])

    def _exchanges_of(self, sa: IsakmpSA) -> list[Exchange | FinishedExchange]:
        running: list[Exchange | FinishedExchange] = [
            exchange for (owner, _mid), exchange in self._exchanges.items() if owner is sa]
        return running + list(self._finished.get(sa, {}).values())

    def _adopt_rcookie(self, header: Header, remote: Address) -> IsakmpSA | None:
        """The first reply to our own phase 1 carries the responder cookie (§4.1)."""
        if header.message_id != 0 or header.exchange_type not in _PHASE1_TYPES:
            return None
        sa = self.sadb.find_isakmp(header.icookie, ZERO_COOKIE)
        if (sa is None or not sa.initiator or sa.exchange_type != header.exchange_type
                or remote[0] != sa.remote[0]):
            return None
        sa.rcookie = header.rcookie
        return sa

    def _setup_message(self, data: bytes, header: Header, local: Address,
                       remote: Address) -> None:
        """A message with a zero responder cookie: a new phase 1, or a notification."""
        if header.exchange_type == _INFO:
            own = self.sadb.find_isakmp_by_icookie(header.icookie, initiator=True)
            if own is not None and not header.encrypted:
                self._unprotected_info(own, data, header, remote)
            else:
                self._bad(remote, "notification without an ISAKMP SA")
            return
        if header.exchange_type not in _PHASE1_TYPES:
            self._bad(remote, "{type} with an empty responder cookie",
                      type=ExchangeType.describe(header.exchange_type))
            self.send_unprotected_notify(header.icookie, header.rcookie,
                                         NotifyType.INVALID_EXCHANGE_TYPE, local, remote)
            return
        if header.message_id != 0:
            self._bad(remote, "phase 1 setup with message ID {mid:08x}",
                      mid=header.message_id)
            self.send_unprotected_notify(header.icookie, header.rcookie,
                                         NotifyType.INVALID_MESSAGE_ID, local, remote)
            return
        existing = self.sadb.find_isakmp_by_icookie(header.icookie, initiator=False)
        if existing is not None and existing.remote[0] == remote[0]:
            exchange = self._exchanges.get((existing, 0)) \
                or self._finished_exchange(existing, 0)
            if exchange is not None:
                exchange.receive(data, header, local, remote)
            return
        if self.sadb.find_isakmp_by_icookie(header.icookie, initiator=True) is not None:
            self._bad(remote, "phase 1 setup carrying our own initiator cookie")
            return
        self._new_phase1_responder(data, header, local, remote)

    def _new_phase1_responder(self, data: bytes, header: Header, local: Address,
                              remote: Address) -> None:
        section = policy.find_peer_section(self.store, remote[0])
        if section is None:
            self._bad(remote, "no [Phase 1] section names this peer and there is no Default")
            return
        try:
            configured = policy.exchange_type(self.store, section)
        except policy.NegotiationError as error:
            self._bad(remote, "{error}", error=error.message)
            return
        if configured != header.exchange_type:
            self._bad(remote, "peer started {got}, [{section}] is configured for {want}",
                      got=ExchangeType.describe(header.exchange_type), section=section,
                      want=ExchangeType.describe(configured))
            self.send_unprotected_notify(header.icookie, header.rcookie,
                                         NotifyType.INVALID_EXCHANGE_TYPE, local, remote)
            return
        sa = IsakmpSA(header.icookie, self.new_cookie(), local, remote, False, section,
                      self.now(), exchange_type=header.exchange_type,
                      started_seq=self.next_seq())
        self.sadb.add_isakmp(sa)
        exchange = _responder_class(header.exchange_type)(self, sa, initiator=False,
                                                          message_id=0, local=local,
                                                          remote=remote)
        self._register(exchange)
        exchange.start()
        exchange.receive(data, header, local, remote)
        self._forget_if_unused(exchange)

    def _forget_if_unused(self, exchange: Exchange) -> None:
        """A responder exchange whose first message was refused leaves no trace."""
        if exchange.step == 0 and not exchange.done:
            exchange.abort("first message refused")
        if exchange.failed:
            self._finished.pop(exchange.sa, None)

    def _phase1_message(self, sa: IsakmpSA, data: bytes, header: Header, local: Address,
                        remote: Address) -> None:
        if header.exchange_type == _INFO:
            if header.encrypted:
                self._bad(remote, "encrypted notification with message ID 0")
            else:
                self._unprotected_info(sa, data, header, remote)
            return
        exchange = self._exchanges.get((sa, 0)) or self._finished_exchange(sa, 0)
        if exchange is None:
            self._bad(remote, "phase 1 message for {sa}, which has no phase 1 exchange",
                      sa=sa.describe())
            return
        if header.exchange_type != exchange.EXCHANGE_TYPE:
            self._bad(remote, "{got} message on a {want} exchange",
                      got=ExchangeType.describe(header.exchange_type),
                      want=ExchangeType.describe(exchange.EXCHANGE_TYPE))
            return
        exchange.receive(data, header, local, remote)

    def _phase2_message(self, sa: IsakmpSA, data: bytes, header: Header, local: Address,
                        remote: Address) -> None:
        mid = header.message_id
        exchange = self._exchanges.get((sa, mid))
        if exchange is None:
            kept = self._finished.get(sa)        # (_finished_exchange, without a call)
            exchange = kept.get(mid) if kept else None
        if exchange is not None:
            if header.exchange_type != exchange.EXCHANGE_TYPE:
                self._bad(remote, "{got} message with the message ID of a {want} exchange",
                          got=ExchangeType.describe(header.exchange_type),
                          want=ExchangeType.describe(exchange.EXCHANGE_TYPE))
                return
            exchange.receive(data, header, local, remote)
            return
        if mid in sa.used_message_ids:
            self._bad(remote, "message ID {mid:08x} was used before (replay?)", mid=mid)
            return
        # sa.ready, header.encrypted and _responder_class() below without their calls
        # (every Quick Mode starts here).
        if sa.state is not _READY:
            self._bad(remote, "{type} on {sa}, which is not ready",
                      type=ExchangeType.describe(header.exchange_type), sa=sa.describe())
            return
        if not int(header.flags) & _ENC_BIT:
            self._bad(remote, "cleartext {type} on an ISAKMP SA",
                      type=ExchangeType.describe(header.exchange_type))
            return
        exchange_type = header.exchange_type
        if exchange_type not in (_QUICK_MODE, _INFO):
            self._bad(remote, "{type} exchanges are not supported",
                      type=ExchangeType.describe(exchange_type))
            return
        cls = _RESPONDERS.get(exchange_type) or _responder_class(exchange_type)
        exchange = cls(self, sa, initiator=False, message_id=mid, local=local, remote=remote)
        # The ID is not "used" until a message of it authenticates.
        self._exchanges[(sa, mid)] = exchange
        exchange.on_done.append(self._exchange_done)
        exchange.start()
        exchange.receive(data, header, local, remote)
        if exchange.step == 0 and not exchange.done:
            # Dropped without authentication: leave no trace (an attacker must not be
            # able to use up message IDs or memory).
            exchange.abort("first message dropped")
            self._exchanges.pop((sa, mid), None)
            kept = self._finished.get(sa)
            if kept is not None:
                # Its record, just made: the ID was unused before (checked above).
                kept.pop(mid, None)
        else:
            sa.remember_message_id(mid)

    def _unprotected_info(self, sa: IsakmpSA, data: bytes, header: Header,
                          remote: Address) -> None:
        """An unauthenticated notification: it may end a phase 1 in progress only.

        An error notification from the peer's address carrying the cookies of a phase 1
        that has not finished ends that exchange (the peer has given up on it anyway);
        it never touches a ready SA.
        """
        try:
            message = Message.from_body(header, data[HEADER_SIZE:])
        except DecodeError as error:
            self._bad(remote, "malformed notification: {error}", error=error.message)
            return
        if self.watching:
            self.message_in(message, data, sa.local, remote)
        notes = [p for p in message.payloads if isinstance(p, NotifyPayload)]
        if not notes:
            self._bad(remote, "unprotected informational without a notification")
            return
        for note in notes:
            kind = NotifyType.describe(note.notify_type)
            running = self._exchanges.get((sa, 0))
            if (running is not None and not sa.ready
                    and remote[0] == sa.remote[0]
                    and 0 < int(note.notify_type) <= _ERROR_NOTIFY_MAX):
                from isakmpd.ike.exchange import ExchangeError
                running.fail(ExchangeError(
                    None, f"{running.describe()}: peer {remote[0]} refused with {kind}"))
                self.sadb.remove_isakmp(sa)
                return
            self.log.info("unauthenticated {kind} from {ip}:{port} ignored", kind=kind,
                          ip=remote[0], port=remote[1])

    # -- results -------------------------------------------------------------------

    def phase1_established(self, sa: IsakmpSA) -> None:
        sa.state = _READY
        sa.established = self.now()
        sa.established_seq = self.next_seq()
        life = sa.suite.life_seconds if sa.suite is not None else None
        sa.life_seconds = life if life else DEFAULT_PHASE1_LIFETIME
        log_info(self.log, "ISAKMP SA established: {sa}", sa=sa.describe())
        if debug.verbose():
            # exchange.c exchange_finalize.
            id_i, id_r = (sa.local_id, sa.remote_id) if sa.initiator else \
                (sa.remote_id, sa.local_id)
            self.log.info("isakmpd: phase 1 done{role}: initiator id {id_i}, responder id "
                          "{id_r}, src: {src} dst: {dst}",
                          role="" if sa.initiator else " (as responder)",
                          id_i=_id_text(id_i), id_r=_id_text(id_r), src=sa.local[0],
                          dst=sa.remote[0])
        self._arm(sa)
        if sa.nat.we_are_behind:
            self._update_keepalive(sa.local, sa.remote)
        for other in self.sadb.isakmp_live_by_peer(sa.name, sa.remote[0]):
            if other is sa or not other.ready:
                continue
            # A rekey replaces the older SA. Twins from simultaneous phase 1s: both
            # peers call the one with the lower cookie pair replaced, so both keep
            # using (and later rekey) the same one.
            loser = other
            if other.established_seq >= sa.started_seq and sa.cookies < other.cookies:
                loser = sa
            self.sadb.mark_replaced(loser)
            log_info(self.log, "{old} replaced by {new}", old=loser.describe(),
                     new=(sa if loser is other else other).describe())
            if loser is sa:
                break

    def ipsec_established(self, ipsec: IpsecSA) -> None:
        ipsec.state = _READY
        ipsec.established_seq = self.next_seq()
        text = ipsec.describe()             # also its "replaced by" line's, below
        log_info(self.log, "IPsec SA established: {sa}", sa=text)
        if debug.verbose():
            # ike_quick_mode.c post_quick_mode: the ISAKMP SA's transport.
            carrier = ipsec.isakmp_sa
            self.log.info("isakmpd: quick mode done{role}: src: {src} dst: {dst}",
                          role="" if ipsec.initiator else " (as responder)",
                          src=carrier.local[0], dst=carrier.remote[0])
        if ipsec.isakmp_sa.nat.we_are_behind:
            self._update_keepalive(ipsec.local, ipsec.remote)
        if self.keep_up(ipsec.name):
            ipsec.stay_alive = True
            ipsec.isakmp_sa.stay_alive = True
        self._arm(ipsec)
        for other in self.sadb.ipsec_live_by_peer(ipsec.name, ipsec.remote[0]):
            # (other.ready without the property's call)
            if other is ipsec or other.state is not _READY or not other.same_traffic(ipsec):
                continue
            if other.established_seq < ipsec.started_seq:
                # A rekey: ``other`` was up before this negotiation began.
                self._replace(other, ipsec, delete=ipsec.initiator, new_text=text)
            else:
                # Twins from simultaneous Quick Modes: the lowest nonce loses.
                loser = other if min(other.nonces) < min(ipsec.nonces) else ipsec
                winner = ipsec if loser is other else other
                self._replace(loser, winner, delete=loser.initiator)
                if loser is ipsec:
                    break

    # -- NAT-keepalives (inventory §4.8, RFC 3948 §2.3) ------------------------------

    @property
    def keepalive_interval(self) -> int:
        value = self.store.get_num("General", "NAT-T-Keepalive", DEFAULT_NAT_T_KEEPALIVE)
        return value if value >= 1 else DEFAULT_NAT_T_KEEPALIVE

    def _keepalive_wanted(self, local: Address, remote: Address) -> bool:
        """Does a ready SA whose side of the NAT is ours use these endpoints?"""
        if not self.nat_t or not self.running or local[1] != self.nat_t_port:
            return False
        for sa in self.sadb.isakmp_by_address(remote[0]):
            if (sa.ready and sa.nat.we_are_behind and sa.local == local
                    and sa.remote == remote):
                return True
        return any(ipsec.ready and ipsec.isakmp_sa.nat.we_are_behind
                   and ipsec.local == local and ipsec.remote == remote
                   for ipsec in self.sadb.ipsec_by_address(remote[0]))

    def _update_keepalive(self, local: Address, remote: Address) -> None:
        """Start or stop the keepalives between two endpoints as the SAs say."""
        key = (local, remote)
        wanted = self._keepalive_wanted(local, remote)
        call = self._keepalives.get(key)
        if wanted and call is None:
            interval = self.keepalive_interval
            self._keepalives[key] = self.clock.callLater(interval, self._send_keepalive, key)
            self.log.info("behind a NAT: NAT-keepalives from {lip}:{lport} to {ip}:{port} "
                          "every {interval} s", lip=local[0], lport=local[1], ip=remote[0],
                          port=remote[1], interval=interval)
        elif not wanted and call is not None:
            del self._keepalives[key]
            if call.active():
                call.cancel()
            self.log.info("NAT-keepalives to {ip}:{port} stopped", ip=remote[0],
                          port=remote[1])

    def _send_keepalive(self, key: tuple[Address, Address]) -> None:
        self._keepalives.pop(key, None)
        local, remote = key
        if not self._keepalive_wanted(local, remote):
            return
        try:
            self.sender.send_keepalive(local, remote)
        except Exception as error:  # noqa: BLE001 - a sender must not stop the timer
            self.warn("sending a NAT-keepalive to {ip}:{port} failed: {error}",
                      ip=remote[0], port=remote[1], error=error)
        else:
            self.debug(DebugClass.TRANSPORT, 50, "NAT-keepalive sent to {ip}:{port}",
                       ip=remote[0], port=remote[1])
        self._keepalives[key] = self.clock.callLater(self.keepalive_interval,
                                                     self._send_keepalive, key)

    # -- lifetimes, expiry and rekeying (inventory §3.1, §3.2, §4.9) ------------------

    def _active_connections(self) -> list[str]:
        """The checker's active list, or [Phase 2] Connections when there is no checker."""
        manager = self.connection_manager
        if manager is not None:
            return list(manager.active)
        return self.store.get_list("Phase 2", "Connections")

    def keep_up(self, connection: str) -> bool:
        """Should ``connection`` stay up (is it in the checker's active list)?"""
        # Asked for every IPsec SA that becomes ready: a set lookup, not a scan of
        # the list (which, without a checker, is parsed from the store each time).
        manager = self.connection_manager
        if manager is not None:
            return manager.is_active(connection)
        return connection.lower() in self.store.memo(_KEPT_UP_MEMO, self._configured_lower)

    def _configured_lower(self) -> frozenset[str]:
        """``[Phase 2] Connections``, lower-cased (kept up when there is no checker)."""
        return frozenset(name.lower() for name in self.store.get_list("Phase 2", "Connections"))

    def _peer_kept_up(self, sa: IsakmpSA) -> bool:
        """Does an ISAKMP SA carry connections that are kept up?"""
        if any(ipsec.stay_alive and self.keep_up(ipsec.name)
               for ipsec in self.sadb.ipsec_for_isakmp(sa)):
            return True
        for name in self._active_connections():
            try:
                if policy.connection_peer(self.store, name).lower() == sa.name.lower():
                    return True
            except (policy.NegotiationError, ValueError, KeyError):
                continue
        return False

    def _arm(self, sa: IsakmpSA | IpsecSA, *, since: float | None = None) -> None:
        """(Re)schedule soft and hard expiry of a ready SA from ``since`` (now).

        ``soft_at``/``hard_at`` say when; only the next of the two has a timer (the
        soft one schedules the hard one), which halves what thousands of SAs keep.
        """
        call = sa.soft_call                 # (a new SA has neither call)
        if call is not None:
            sa.soft_call = None
            if call.active():
                call.cancel()
        call = sa.hard_call
        if call is not None:
            sa.hard_call = None
            if call.active():
                call.cancel()
        lifetime = sa.life_seconds
        if not lifetime or lifetime <= 0:
            sa.soft_at = sa.hard_at = None
            return
        now = float(self.clock.seconds())     # (self.now(), a frame less per new SA)
        start = now if since is None else since
        low, high = SOFT_EXPIRY_PERMILLE
        sa.soft_at = start + lifetime * (low + self.rng.randbelow(high - low + 1)) / 1000
        sa.hard_at = start + lifetime
        sa.soft_call = self.clock.callLater(max(0.0, sa.soft_at - now),
                                            self._soft_expired_call, sa)
        if _LEVELS[_DEBUG_SA_I] >= 30:         # (every new SA comes here)
            self.debug(_DEBUG_SA, 30, "{sa.describe()}: soft expiry in {soft:.0f} s, hard "
                       "expiry in {hard:.0f} s", sa=sa, soft=sa.soft_at - now,
                       hard=sa.hard_at - now)

    def _replace(self, old: IpsecSA, new: IpsecSA, *, delete: bool,
                 new_text: str | None = None) -> None:
        """``new`` takes over from ``old`` (``new_text``: its describe(), if made)."""
        self.sadb.mark_replaced(old)
        log_info(self.log, "{old} replaced by {new}", old=old.describe(),
                 new=new.describe() if new_text is None else new_text)
        if delete and old.replaced_call is None:
            old.replaced_call = self.clock.callLater(REPLACED_GRACE, self._drop_replaced, old)

    def _drop_replaced(self, ipsec: IpsecSA) -> None:
        ipsec.replaced_call = None
        if ipsec.state is SaState.DEAD:
            return
        self.log.info("deleting replaced {sa}", sa=ipsec.describe())
        self.delete_ipsec_sa(ipsec)

    def _soft_expired(self, sa: IsakmpSA | IpsecSA) -> None:
        sa.soft_call = None
        if sa.state is not SaState.DEAD and sa.hard_at is not None:
            sa.hard_call = self.clock.callLater(max(0.0, sa.hard_at - self.now()),
                                                self._hard_expired_call, sa)
        if not sa.ready or not self.running:
            return
        if isinstance(sa, IsakmpSA):
            if not sa.replaced and self._peer_kept_up(sa):
                self.log.info("soft expiry of {sa}: renegotiating phase 1", sa=sa.describe())
                self._renegotiate_phase1(sa)
                return
        elif not sa.replaced and self.keep_up(sa.name):
            self.log.info("soft expiry of {sa}: renegotiating", sa=sa.describe())
            self._renegotiate(sa.name)
            return
        sa.fading = True
        self.log.info("soft expiry of {sa}: fading, not renegotiated", sa=sa.describe())

    def _hard_expired(self, sa: IsakmpSA | IpsecSA) -> None:
        sa.hard_call = None
        if sa.state is SaState.DEAD:
            return
        self.log.info("hard expiry of {sa}: deleting it", sa=sa.describe())
        if isinstance(sa, IsakmpSA):
            again = not sa.replaced and self._peer_kept_up(sa)
            self.delete_isakmp_sa(sa)
            if again and self.sadb.isakmp_for_peer(sa.name) is None:
                self._renegotiate_phase1(sa)
            return
        again = not sa.replaced and self.keep_up(sa.name)
        self.delete_ipsec_sa(sa)
        if again and not any(o.ready for o in self.sadb.ipsec_by_name(sa.name)):
            self._renegotiate(sa.name)

    def _negotiating(self, connection: str) -> bool:
        """Is a negotiation we started for ``connection`` under way?"""
        from isakmpd.ike.quick import QuickMode
        key = connection.lower()
        manager = self.connection_manager
        if key in self._renegotiating or (manager is not None and manager.negotiating(key)):
            return True
        return any(isinstance(exchange, QuickMode) and exchange.initiator
                   and (exchange.connection or "").lower() == key
                   for exchange in self._exchanges.values())

    def _renegotiate(self, connection: str) -> None:
        if self._negotiating(connection):
            return
        key = connection.lower()
        self._renegotiating.add(key)

        def done(result: Any) -> None:
            self._renegotiating.discard(key)
            if isinstance(result, Failure):
                self.log.info("renegotiating {name} failed: {error}", name=connection,
                              error=result.getErrorMessage())

        self.initiate_connection(connection).addBoth(done)

    def renegotiate_now(self) -> int:
        """``[General] Renegotiate-on-HUP`` at reinitialisation (``sa.c`` sa_reinit).

        Every ready IPsec SA whose soft expiry is still pending and whose
        connection has no negotiation of ours under way is soft-expired now
        (renegotiated when kept up, else marked fading). Returns how many.
        """
        count = 0
        for ipsec in self.sadb.ipsec_sas():
            call = ipsec.soft_call
            if not ipsec.ready or call is None or not call.active():
                continue
            if self._negotiating(ipsec.name):
                continue
            call.cancel()
            self._soft_expired(ipsec)
            count += 1
        return count

    # -- kernel events (inventory §4.9) ---------------------------------------------

    def _installed(self, protocol: int, spi: bytes, dst: str) -> tuple[IpsecSA, Any] | None:
        """Our IPsec SA holding the kernel SA (protocol, SPI, destination), if any."""
        dst = _canonical_ip(dst)
        for ipsec in self.sadb.ipsec_sas():
            for kernel_sa in ipsec.kernel_sas:
                if (kernel_sa.protocol == protocol and bytes(kernel_sa.spi) == bytes(spi)
                        and _canonical_ip(kernel_sa.dst) == dst):
                    return ipsec, kernel_sa
        return None

    def kernel_sa_expired(self, protocol: int | None, spi: bytes, dst: str, *,
                          hard: bool, bytes_used: int | None = None) -> None:
        """The kernel says a lifetime of its SA (protocol, SPI, destination) ran out.

        Only SAs we installed count: an SPI we only reserved (its larval state timed
        out) or a state that is not ours is ignored. A hard expiry means the kernel
        has deleted that SA already: our record goes (the other kernel SAs and the
        flows with it), without DELETE, as isakmpd on SADB_EXPIRE. A soft expiry is
        the engine's own soft expiry brought forward when its timer is still
        pending (the kernel's soft limits include bytes, which the engine does not
        count): kept-up connections are renegotiated, others fade. When the
        engine's timer has already fired it is only noted. An SA of an on-demand
        connection is renegotiated unless it is replaced or ``bytes_used`` (the
        kernel SA's byte counter) is 0 (:meth:`OnDemand.kernel_soft_expired`).
        """
        found = self._installed(protocol, spi, dst) if protocol is not None else None
        if found is None:
            self.debug(DebugClass.SYSDEP, 50, "kernel {kind} expiry of SPI 0x{spi} to {dst}: "
                       "not an SA we installed, ignored", kind="hard" if hard else "soft",
                       spi=bytes(spi).hex(), dst=dst)
            return
        ipsec, kernel_sa = found
        if hard:
            self.log.info("kernel hard expiry of SPI 0x{spi} to {dst}: removing {sa} "
                          "(no DELETE)", spi=bytes(spi).hex(), dst=dst, sa=ipsec.describe())
            ipsec.kernel_sas = [k for k in ipsec.kernel_sas if k is not kernel_sa]
            ipsec.cancel_timers()
            self.remove_ipsec_sa(ipsec)
            return
        if self.ondemand.kernel_soft_expired(ipsec, bytes_used):
            return
        call = ipsec.soft_call
        if not ipsec.ready or call is None or not call.active():
            self.debug(DebugClass.SA, 30, "kernel soft expiry of {sa}: already handled by "
                       "its own soft expiry", sa=ipsec.describe())
            return
        call.cancel()
        self.log.info("kernel soft expiry of SPI 0x{spi} to {dst}", spi=bytes(spi).hex(),
                      dst=dst)
        self._soft_expired(ipsec)

    def kernel_acquire(self, event: Any) -> None:
        """The kernel wants an SA for traffic matching a policy without one: negotiate
        a dynamic connection for it (:meth:`OnDemand.acquire`; ``event`` is an
        :class:`~isakmpd.kernel.xfrm.AcquireEvent` or anything with its fields).
        Passive mode negotiates nothing."""
        if not self.running:
            return
        if self.passive:
            self.debug(DebugClass.SYSDEP, 30, "kernel ACQUIRE for {src} -> {dst} ignored in "
                       "passive mode", src=event.policy_src, dst=event.policy_dst)
            return
        self.ondemand.acquire(event)

    def _renegotiate_phase1(self, sa: IsakmpSA) -> None:
        newer = [o for o in self.sadb.isakmp_live_by_peer(sa.name, sa.remote[0])
                 if o is not sa and o.ready]
        if newer:
            return
        d = self.initiate_phase1(sa.name, force=True)
        d.addErrback(lambda failure: self.log.info(
            "renegotiating phase 1 with {peer} failed: {error}", peer=sa.name,
            error=failure.getErrorMessage()))

    def shorten_lifetime(self, sa: IsakmpSA | IpsecSA, seconds: int | None,
                         kilobytes: int | None = None) -> bool:
        """RESPONDER-LIFETIME: the peer chose shorter lifetimes; never lengthen.

        Returns True when something changed. The timers count from establishment.
        """
        changed = False
        if seconds is not None and seconds > 0 and (sa.life_seconds is None
                                                    or seconds < sa.life_seconds):
            sa.life_seconds = seconds
            changed = True
        if isinstance(sa, IpsecSA) and kilobytes is not None and kilobytes > 0 and (
                sa.life_kilobytes is None or kilobytes < sa.life_kilobytes):
            sa.life_kilobytes = kilobytes
            changed = True
        if not changed:
            return False
        self.log.info("peer's RESPONDER-LIFETIME shortens {sa} to {seconds} s "
                      "{kb} KB", sa=sa.describe(), seconds=sa.life_seconds,
                      kb=getattr(sa, "life_kilobytes", None))
        if sa.ready:
            since = sa.established if isinstance(sa, IsakmpSA) else sa.created
            self._arm(sa, since=since)
        return True

    def reinstall_lifetimes(self, ipsec: IpsecSA) -> None:
        """Give an installed IPsec SA's kernel SAs its (shortened) lifetimes.

        IKernel has no update, so each SA is replaced (delete, add): a moment
        without it, which only a RESPONDER-LIFETIME sent after Quick Mode causes.
        """
        updated = []
        for kernel_sa in ipsec.kernel_sas:
            new = dataclasses.replace(kernel_sa, life_seconds=ipsec.life_seconds,
                                      life_kilobytes=ipsec.life_kilobytes)
            try:
                self.kernel.delete_sa(kernel_sa.protocol, kernel_sa.spi, kernel_sa.dst)
                self.kernel.add_sa(new)
            except KernelError as error:
                self.warn("updating the lifetime of {name}: {error}", name=ipsec.name,
                          error=error)
                continue
            updated.append(new)
        ipsec.kernel_sas = updated


# The exchanges a peer starts, by exchange type, for the dispatcher. Filled on first
# use (this module does not import the exchange modules when it loads), not by an
# import statement on the per-message path, which costs about a microsecond each time.
_RESPONDERS: dict[int, type[Exchange]] = {}


def _responder_class(exchange_type: int) -> type[Exchange]:
    """The class that answers an exchange of ``exchange_type`` (Main, Aggressive,
    Quick Mode or Informational)."""
    cls = _RESPONDERS.get(exchange_type)
    if cls is None:
        from isakmpd.ike.informational import Informational
        from isakmpd.ike.phase1 import AggressiveMode, MainMode
        from isakmpd.ike.quick import QuickMode
        _RESPONDERS.update({ExchangeType.ID_PROT: MainMode,
                            ExchangeType.AGGRESSIVE: AggressiveMode,
                            _QUICK_MODE: QuickMode, _INFO: Informational})
        cls = _RESPONDERS[exchange_type]
    return cls
