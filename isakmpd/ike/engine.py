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

Time comes from the injected ``clock`` (IReactorTime), randomness from ``rng``, the
network from an ISender, the kernel from an IKernel: nothing here touches the global
reactor or a socket.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from isakmpd.ike import policy
from isakmpd.ike.exchange import Exchange, ExchangeFailed
from isakmpd.ike.sa import ZERO_COOKIE, Address, IpsecSA, IsakmpSA, SaDatabase, SaState
from isakmpd.kernel.interface import KernelError
from isakmpd.transport.interface import IDatagramHandler
from isakmpd.wire.constants import (
    COOKIE_SIZE,
    HEADER_SIZE,
    ISAKMP_PORT,
    NAT_T_PORT,
    ExchangeType,
    NotifyType,
    ProtocolId,
)
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.message import Header, Message, decode_header
from isakmpd.wire.payloads import DeletePayload, NotifyPayload

__all__ = ["Engine"]

_PHASE1_TYPES = (ExchangeType.ID_PROT, ExchangeType.AGGRESSIVE)
_FINISHED_KEPT = 16          # finished exchanges remembered per ISAKMP SA (duplicates)
_ERROR_NOTIFY_MAX = 16383    # RFC 2408 §3.14.1: error types are 1..16383


@implementer(IDatagramHandler)
class Engine:
    """Runs every exchange of one daemon."""

    def __init__(self, store: Any, clock: Any, rng: Any, sender: Any, kernel: Any,
                 source_address: Callable[[str], str], *, port: int = ISAKMP_PORT,
                 nat_t_port: int = NAT_T_PORT, nat_t: bool = True,
                 log: Logger | None = None) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng
        self.sender = sender
        self.kernel = kernel
        self.source_address = source_address
        self.port = port
        self.nat_t_port = nat_t_port
        self.nat_t = nat_t
        self.log = log if log is not None else Logger()
        self.sadb = SaDatabase()
        self._exchanges: dict[tuple[IsakmpSA, int], Exchange] = {}
        self._finished: dict[IsakmpSA, OrderedDict[int, Exchange]] = {}
        self._phase1_running: dict[str, Exchange] = {}   # peer section (lower) -> exchange
        self.contacted: set[str] = set()                  # peer IPs sent INITIAL-CONTACT
        self.running = True

    # -- configuration -----------------------------------------------------------

    @property
    def retransmits(self) -> int:
        return self.store.get_num("General", "Retransmits", 3)

    @property
    def max_exchange_time(self) -> int:
        value = self.store.get_num("General", "Exchange-max-time", 120)
        return value if value > 0 else 120

    def warn(self, fmt: str, **kwargs: Any) -> None:
        """Log at the warning level (what an operator should read)."""
        self.log.emit(LogLevel.warn, fmt, **kwargs)

    def now(self) -> float:
        return float(self.clock.seconds())

    def new_cookie(self) -> bytes:
        while True:
            cookie = self.rng.random_bytes(COOKIE_SIZE)
            if cookie != ZERO_COOKIE:
                return cookie

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

    def send_unprotected_notify(self, icookie: bytes, rcookie: bytes, notify: int,
                                local: Address, remote: Address, *, spi: bytes = b"",
                                ) -> None:
        """An unprotected one-message informational exchange (no ISAKMP SA keys)."""
        payload = NotifyPayload(notify, ProtocolId.ISAKMP, spi)
        message = Message(icookie, rcookie, ExchangeType.INFO, [payload])
        self.log.debug("sending {notify} to {ip}:{port}", notify=NotifyType.describe(notify),
                       ip=remote[0], port=remote[1])
        self.transmit(message.encode(), local, remote)

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
        key = (exchange.sa, exchange.message_id)
        if self._exchanges.get(key) is exchange:
            del self._exchanges[key]
        if exchange.PHASE == 1:
            running = self._phase1_running.get(exchange.sa.name.lower())
            if running is exchange:
                del self._phase1_running[exchange.sa.name.lower()]
        if exchange.sa.state is not SaState.DEAD and not (exchange.PHASE == 1
                                                          and exchange.failed):
            kept = self._finished.setdefault(exchange.sa, OrderedDict())
            kept[exchange.message_id] = exchange
            while len(kept) > _FINISHED_KEPT:
                kept.popitem(last=False)

    def exchanges(self) -> list[Exchange]:
        """The exchanges in progress."""
        return list(self._exchanges.values())

    def _finished_exchange(self, sa: IsakmpSA, message_id: int) -> Exchange | None:
        return self._finished.get(sa, {}).get(message_id)

    # -- API: starting SAs ---------------------------------------------------------

    def initiate_phase1(self, peer_section: str) -> Deferred[IsakmpSA]:
        """Negotiate an ISAKMP SA with ``peer_section`` (or reuse a ready one)."""
        ready = self.sadb.isakmp_for_peer(peer_section)
        if ready is not None:
            return succeed(ready)
        running = self._phase1_running.get(peer_section.lower())
        if running is not None:
            return running.wait()
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
        port = self.store.get_num(peer_section, "Port", self.port) or self.port
        local_ip = self.store.get_str(peer_section, "Local-address") \
            or self.source_address(address)
        exchange_type = policy.exchange_type(self.store, peer_section)
        sa = IsakmpSA(self.new_cookie(), ZERO_COOKIE, (local_ip, self.port), (address, port),
                      True, peer_section, self.now(), exchange_type=exchange_type)
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

    def _start_quick_mode(self, sa: IsakmpSA, connection: str) -> Deferred[IpsecSA]:
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
                    self.send_informational(carrier, [DeletePayload(pair.protocol, 4,
                                                                    [pair.our_spi])])
            else:
                self.log.info("no ISAKMP SA with {peer}, {name} deleted without DELETE",
                              peer=ipsec.remote[0], name=ipsec.name)
        self.remove_ipsec_sa(ipsec)

    def remove_ipsec_sa(self, ipsec: IpsecSA) -> None:
        """Take an IPsec SA out of the kernel and the database (no message)."""
        if ipsec.state is SaState.DEAD:
            return
        for flow in ipsec.flows:
            try:
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
        for key, exchange in list(self._exchanges.items()):
            if key[0] is sa:
                exchange.abort(f"ISAKMP SA {sa.name} deleted")
                self._exchanges.pop(key, None)
        self._finished.pop(sa, None)
        if was_ready:
            self.log.info("ISAKMP SA deleted: {sa}", sa=sa.describe())

    def initial_contact(self, sa: IsakmpSA) -> None:
        """INITIAL-CONTACT from ``sa``'s peer: drop every older SA with it (§4.6)."""
        for other in self.sadb.isakmp_by_address(sa.remote[0]):
            if other is not sa and other.ready:
                self.log.info("INITIAL-CONTACT from {ip}: removing {sa}", ip=sa.remote[0],
                              sa=other.describe())
                self.remove_isakmp_sa(other)
        for ipsec in self.sadb.ipsec_by_address(sa.remote[0]):
            if ipsec.ready and ipsec.created <= sa.created:
                self.log.info("INITIAL-CONTACT from {ip}: removing {sa}", ip=sa.remote[0],
                              sa=ipsec.describe())
                self.remove_ipsec_sa(ipsec)

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

    # -- receiving -----------------------------------------------------------------

    def datagram_received(self, data: bytes, local: Address, remote: Address) -> None:
        """One ISAKMP message from the transport. Never raises."""
        try:
            self._datagram(bytes(data), local, remote)
        except Exception:  # noqa: BLE001 - nothing may escape into the transport
            self.log.failure("internal error handling {size} bytes from {ip}:{port}",
                             size=len(data), ip=remote[0], port=remote[1])

    def _bad(self, remote: Address, text: str, **kw: Any) -> None:
        self.log.info("message from {ip}:{port} dropped: " + text, ip=remote[0],
                      port=remote[1], **kw)

    def _datagram(self, data: bytes, local: Address, remote: Address) -> None:
        if not self.running:
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
            self._bad(remote, "ISAKMP SA {name} has moved to port {port}", name=sa.name,
                      port=self.nat_t_port)
            return
        if header.message_id == 0:
            self._phase1_message(sa, data, header, local, remote)
        else:
            self._phase2_message(sa, data, header, local, remote)

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
        if header.exchange_type == ExchangeType.INFO:
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
        from isakmpd.ike.phase1 import phase1_class
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
                      self.now(), exchange_type=header.exchange_type)
        self.sadb.add_isakmp(sa)
        exchange = phase1_class(header.exchange_type)(self, sa, initiator=False,
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
        if header.exchange_type == ExchangeType.INFO:
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
        exchange = self._exchanges.get((sa, mid)) or self._finished_exchange(sa, mid)
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
        if not sa.ready:
            self._bad(remote, "{type} on {sa}, which is not ready",
                      type=ExchangeType.describe(header.exchange_type), sa=sa.describe())
            return
        if not header.encrypted:
            self._bad(remote, "cleartext {type} on an ISAKMP SA",
                      type=ExchangeType.describe(header.exchange_type))
            return
        if header.exchange_type == ExchangeType.QUICK_MODE:
            from isakmpd.ike.quick import QuickMode
            exchange = QuickMode(self, sa, initiator=False, message_id=mid, local=local,
                                 remote=remote)
        elif header.exchange_type == ExchangeType.INFO:
            from isakmpd.ike.informational import Informational
            exchange = Informational(self, sa, initiator=False, message_id=mid, local=local,
                                     remote=remote)
        else:
            self._bad(remote, "{type} exchanges are not supported",
                      type=ExchangeType.describe(header.exchange_type))
            return
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
            if kept is not None and kept.get(mid) is exchange:
                del kept[mid]
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
        sa.state = SaState.READY
        self.log.info("ISAKMP SA established: {sa}", sa=sa.describe())

    def ipsec_established(self, ipsec: IpsecSA) -> None:
        ipsec.state = SaState.READY
        self.log.info("IPsec SA established: {sa}", sa=ipsec.describe())
