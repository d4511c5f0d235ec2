"""An in-memory network of IKE engines on one task.Clock, for exchange tests.

Each :class:`~isakmpd.ike.engine.Engine` gets a :class:`QueueSender` that puts its
datagrams on the shared :class:`Network` queue; a test delivers them one by one
(:meth:`Network.step`) or until the network is quiet (:meth:`Network.run`), and can
drop, duplicate, reorder, corrupt or rewrite them on the way (``network.filters``,
or by editing ``network.queue``). :class:`Nat` rewrites addresses and ports like a
NAT box does. :func:`make_config` writes the isakmpd.conf of one gateway of the
standard pair (west 192.0.2.1 with 203.0.113.0/25, east 198.51.100.1 with
203.0.113.128/25, or the IPv6 pair 2001:db8::1 with 2001:db8:1::/64 and 2001:db8::2
with 2001:db8:2::/64); :func:`make_pair` builds both engines.

Everything is deterministic: SeededRandom per engine, a task.Clock, log events
collected in lists.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from zope.interface import implementer

from isakmpd.config import load_config
from isakmpd.config.store import Store
from isakmpd.crypto.random import RandomSource, SeededRandom
from isakmpd.ike.engine import Engine
from isakmpd.kernel.memory import MemoryKernel
from isakmpd.transport.interface import ISender

__all__ = [
    "EAST",
    "EAST6",
    "EAST6_NET",
    "EAST_NET",
    "WEST",
    "WEST6",
    "WEST6_NET",
    "WEST_NET",
    "Datagram",
    "Nat",
    "Network",
    "Node",
    "make_config",
    "make_pair",
]

WEST = "192.0.2.1"
EAST = "198.51.100.1"
WEST_NET = "203.0.113.0/25"
EAST_NET = "203.0.113.128/25"
# The IPv6 pair (documentation prefix, RFC 3849).
WEST6 = "2001:db8::1"
EAST6 = "2001:db8::2"
WEST6_NET = "2001:db8:1::/64"
EAST6_NET = "2001:db8:2::/64"
PSK = "a shared secret of the test pair"

Address = tuple[str, int]


@dataclass(frozen=True)
class Datagram:
    data: bytes
    src: Address
    dst: Address

    def with_data(self, data: bytes) -> Datagram:
        return replace(self, data=data)


@implementer(ISender)
class QueueSender:
    """An ISender that puts datagrams on the network's queue."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.sent: list[Datagram] = []
        self.keepalives: list[tuple[Address, Address]] = []

    def send(self, data: bytes, local: Address, remote: Address) -> None:
        datagram = Datagram(bytes(data), tuple(local), tuple(remote))
        if self.network.record:
            self.sent.append(datagram)
        self.network.queue.append(datagram)

    def send_keepalive(self, local: Address, remote: Address) -> None:
        self.keepalives.append((local, remote))


@dataclass
class Nat:
    """A NAT box: ``inside`` hosts appear as ``public`` with translated ports.

    Outgoing (source inside): the source becomes (public, mapped port), a new mapping
    per (inside address, port). Incoming (destination public): mapped back. Ports
    listed in ``forward`` (public port -> (inside ip, port)) are port-forwarded, so a
    host behind the NAT can also be a responder.
    """

    inside: str
    public: str
    next_port: int = 40000
    forward: dict[int, Address] = field(default_factory=dict)
    mappings: dict[Address, int] = field(default_factory=dict)

    def outgoing(self, datagram: Datagram) -> Datagram:
        if datagram.src[0] != self.inside:
            return datagram
        for port, target in self.forward.items():
            if target == datagram.src:
                return replace(datagram, src=(self.public, port))
        if datagram.src not in self.mappings:
            self.mappings[datagram.src] = self.next_port
            self.next_port += 1
        return replace(datagram, src=(self.public, self.mappings[datagram.src]))

    def incoming(self, datagram: Datagram) -> Datagram:
        if datagram.dst[0] != self.public:
            return datagram
        for inside, port in self.mappings.items():
            if port == datagram.dst[1]:
                return replace(datagram, dst=inside)
        if datagram.dst[1] in self.forward:
            return replace(datagram, dst=self.forward[datagram.dst[1]])
        nowhere = "::" if ":" in self.public else "0.0.0.0"
        return replace(datagram, dst=(nowhere, 0))     # no mapping: dropped


def _canonical(datagram: Datagram) -> Datagram:
    """The datagram with numeric addresses in canonical text, as a socket reports them
    (``2001:0DB8::1`` -> ``2001:db8::1``); other text is left alone."""
    def fix(address: Address) -> Address:
        try:
            return (ipaddress.ip_address(address[0]).compressed, address[1])
        except ValueError:
            return address
    src, dst = fix(datagram.src), fix(datagram.dst)
    if (src, dst) == (datagram.src, datagram.dst):
        return datagram
    return replace(datagram, src=src, dst=dst)


@dataclass
class Node:
    """One engine on the network, with its kernel, sender and collected log lines."""

    name: str
    ip: str
    engine: Engine
    kernel: MemoryKernel
    sender: QueueSender
    events: list[dict]
    received: list[Datagram] = field(default_factory=list)
    diagnostics: list = field(default_factory=list)
    #: Every exchange that ended, as it was (the engine keeps only a summary).
    finished: list = field(default_factory=list)

    record: bool = True

    def __post_init__(self) -> None:
        if self.record:
            self.engine.on_exchange_done.append(self.finished.append)

    def finished_of(self, exchange_type: int) -> list:
        """The ended exchanges of one type, oldest first."""
        return [x for x in self.finished if x.EXCHANGE_TYPE == exchange_type]

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def log_text(self) -> str:
        return "\n".join(self.lines())


def _discard(event: dict) -> None:
    """A log observer that keeps nothing."""


class Network:
    """The shared queue and clock joining engines."""

    def __init__(self, clock: Clock | None = None, *, record: bool = True) -> None:
        """``record=False`` keeps no history (datagrams sent and delivered, log events,
        ended exchanges): for benchmarks, where it would be most of what is alive."""
        self.record = record
        self.clock = clock if clock is not None else Clock()
        self.queue: list[Datagram] = []
        self.nodes: dict[str, Node] = {}
        self.nats: list[Nat] = []
        self.delivered: list[Datagram] = []
        # Each filter maps one datagram to the datagrams to deliver instead.
        self.filters: list[Callable[[Datagram], list[Datagram]]] = []

    def add_node(self, name: str, ip: str, config_text: str, *, seed: int,
                 nat_t: bool = True, rng: RandomSource | None = None,
                 store: Store | None = None) -> Node:
        """An engine at ``ip``; its randomness is SeededRandom(seed) unless ``rng`` is given.

        ``store`` (optional) is used instead of loading ``config_text``: many engines
        with the same configuration can share one (engines only read it).
        """
        if store is None:
            store, diagnostics = load_config(config_text, f"<{name}>")
        else:
            diagnostics = []
        events: list[dict] = []
        log = Logger(namespace=f"isakmpd.{name}",
                     observer=events.append if self.record else _discard)
        kernel = MemoryKernel(rng or SeededRandom(seed + 1000))
        sender = QueueSender(self)
        engine = Engine(store, self.clock, rng or SeededRandom(seed), sender, kernel,
                        lambda remote, ip=ip: ip, nat_t=nat_t, log=log)
        node = Node(name, ip, engine, kernel, sender, events, diagnostics=diagnostics,
                    record=self.record)
        self.nodes[ip] = node
        return node

    def _route(self, datagram: Datagram) -> Datagram:
        for nat in self.nats:
            datagram = nat.outgoing(datagram)
        for nat in self.nats:
            datagram = nat.incoming(datagram)
        return datagram

    def step(self) -> Datagram | None:
        """Deliver the first queued datagram (after filters and NAT); return it."""
        if not self.queue:
            return None
        datagram = self.queue.pop(0)
        outputs = [datagram]
        for filt in self.filters:
            outputs = [out for item in outputs for out in filt(item)]
        for item in outputs:
            routed = self._route(_canonical(item))
            node = self.nodes.get(routed.dst[0])
            if node is None:
                continue
            if self.record:
                self.delivered.append(routed)
                node.received.append(routed)
            node.engine.datagram_received(routed.data, routed.dst, routed.src)
        return datagram

    def run(self, limit: int = 200) -> int:
        """Deliver until the queue is empty; return how many were taken."""
        count = 0
        while self.queue:
            if count >= limit:
                raise AssertionError(f"network still busy after {limit} datagrams")
            self.step()
            count += 1
        return count

    def drop_next(self, count: int = 1) -> list[Datagram]:
        dropped = self.queue[:count]
        del self.queue[:count]
        return dropped


def make_config(*, local: str, peer: str, local_net: str, remote_net: str,
                mode: str = "ID_PROT", psk: str = PSK,
                transforms: str = "AES-128-SHA-GRP19",
                suites: str = "QM-ESP-AES-128-SHA-PFS-GRP19-SUITE",
                retransmits: int = 3, max_time: int = 120, peer_ip_for_phase1: str | None = None,
                extra_peer: str = "", extra: str = "", id_type: str = "IPV4_ADDR_SUBNET") -> str:
    """The isakmpd.conf of one gateway with one connection to its peer.

    ``id_type="IPV4_ADDR"`` makes the connection's Local-ID and Remote-ID host IDs
    (``Address=`` the address part of ``local_net`` / ``remote_net``), e.g. for a
    transport-mode suite between the two gateways themselves. ``"IPV6_ADDR_SUBNET"``
    and ``"IPV6_ADDR"`` do the same for IPv6 (the netmask written in IPv6 form).
    """
    lnet, lbits = local_net.split("/")
    rnet, rbits = remote_net.split("/")

    def mask(bits: str) -> str:
        value = (0xffffffff << (32 - int(bits))) & 0xffffffff
        return ".".join(str((value >> s) & 0xff) for s in (24, 16, 8, 0))

    def id_section(net: str, bits: str) -> str:
        if id_type == "IPV4_ADDR_SUBNET":
            return f"ID-type=\t\t{id_type}\nNetwork=\t\t{net}\nNetmask=\t\t{mask(bits)}"
        if id_type == "IPV6_ADDR_SUBNET":
            netmask = ipaddress.IPv6Network(f"::/{bits}").netmask
            return f"ID-type=\t\t{id_type}\nNetwork=\t\t{net}\nNetmask=\t\t{netmask}"
        return f"ID-type=\t\t{id_type}\nAddress=\t\t{net}"

    return f"""[General]
Retransmits=		{retransmits}
Exchange-max-time=	{max_time}

[Phase 1]
{peer_ip_for_phase1 or peer}=		peer

[Phase 2]
Connections=		conn

[peer]
Phase=			1
Transport=		udp
Address=		{peer}
Configuration=		p1-config
Authentication=		{psk}
{extra_peer}
[p1-config]
DOI=			IPSEC
EXCHANGE_TYPE=		{mode}
Transforms=		{transforms}

[conn]
Phase=			2
ISAKMP-peer=		peer
Configuration=		p2-config
Local-ID=		local-net
Remote-ID=		remote-net

[p2-config]
DOI=			IPSEC
EXCHANGE_TYPE=		QUICK_MODE
Suites=			{suites}

[local-net]
{id_section(lnet, lbits)}

[remote-net]
{id_section(rnet, rbits)}
{extra}"""


def make_pair(*, west: dict | None = None, east: dict | None = None, seed: int = 1,
              nat_t: tuple[bool, bool] = (True, True), west_ip: str = WEST,
              east_ip: str = EAST, west_net: str = WEST_NET, east_net: str = EAST_NET,
              ) -> tuple[Network, Node, Node]:
    """A network with west and east configured for each other.

    The gateways' addresses and protected networks default to the IPv4 pair; pass
    e.g. :data:`WEST6`/:data:`EAST6`/:data:`WEST6_NET`/:data:`EAST6_NET` (with an
    IPv6 ``id_type`` in ``west``/``east``) for the IPv6 pair.
    """
    network = Network()
    west_conf = make_config(local=west_ip, peer=east_ip, local_net=west_net,
                            remote_net=east_net, **(west or {}))
    east_conf = make_config(local=east_ip, peer=west_ip, local_net=east_net,
                            remote_net=west_net, **(east or {}))
    w = network.add_node("west", west_ip, west_conf, seed=seed, nat_t=nat_t[0])
    e = network.add_node("east", east_ip, east_conf, seed=seed + 1, nat_t=nat_t[1])
    return network, w, e


def collect(deferred) -> list:
    """A list that receives the Deferred's result (or Failure) when it fires."""
    box: list = []
    deferred.addBoth(box.append)
    return box


def decode(datagram: Datagram):
    """The header of a datagram (works on encrypted ones too)."""
    from isakmpd.wire.message import decode_header
    return decode_header(datagram.data)


def kernel_sa_mismatches(one: MemoryKernel, other: MemoryKernel) -> list[str]:
    """What differs between two kernels that should hold the same SAs crosswise."""
    problems = []
    if set(one.sas) != set(other.sas):
        problems.append(f"SA keys differ: {sorted(one.sas)} vs {sorted(other.sas)}")
        return problems
    for key, mine in one.sas.items():
        theirs = other.sas[key]
        for attr in ("protocol", "spi", "src", "dst", "mode", "enc_transform", "enc_key",
                     "auth_algorithm", "auth_key", "life_seconds", "life_kilobytes",
                     "comp_transform"):
            if getattr(mine, attr) != getattr(theirs, attr):
                problems.append(f"{key}: {attr} differs")
    return problems


LIFETIME_TIMERS = ("_soft_expired", "_hard_expired", "_drop_replaced")


#: Timers that live as long as SAs do: lifetimes, and NAT-keepalives behind a NAT.
SA_TIMERS = (*LIFETIME_TIMERS, "_send_keepalive")


def exchange_calls(clock: Clock) -> list:
    """The clock's pending calls except SA timers (every ready SA has some)."""
    return [call for call in clock.getDelayedCalls()
            if getattr(call.func, "__name__", "") not in SA_TIMERS]


def establish(test, **kw) -> tuple[Network, Node, Node, object]:
    """make_pair(**kw), then west brings "conn" up: (network, west, east, west's IpsecSA).

    Fails *test* (a TestCase) with both logs when no IPsec SA results, or when an
    exchange timer is left behind.
    """
    from isakmpd.ike.sa import IpsecSA
    network, west, east = make_pair(**kw)
    box = collect(west.engine.initiate_connection("conn"))
    network.run()
    test.assertEqual(len(box), 1)
    test.assertIsInstance(box[0], IpsecSA, west.log_text() + east.log_text())
    test.assertEqual(exchange_calls(network.clock), [])
    return network, west, east, box[0]


def keepalive_calls(clock: Clock) -> list:
    """The clock's pending NAT-keepalive timers."""
    return [call for call in clock.getDelayedCalls()
            if getattr(call.func, "__name__", "") == "_send_keepalive"]


def lifetime_calls(clock: Clock, sa: object | None = None) -> list:
    """The clock's pending SA lifetime timers (of ``sa`` only, when given)."""
    return [call for call in clock.getDelayedCalls()
            if getattr(call.func, "__name__", "") in LIFETIME_TIMERS
            and (sa is None or call.args[:1] == (sa,))]


def advance(network: Network, seconds: float, step: float = 1.0) -> None:
    """Move the clock ``seconds`` forward in ``step``s, delivering after each."""
    network.run(1000)
    remaining = seconds
    while remaining > 0:
        delta = min(step, remaining)
        network.clock.advance(delta)
        remaining -= delta
        network.run(1000)


def ready_ipsec(node: Node, name: str = "conn") -> list:
    """The node's ready IPsec SAs of connection ``name``."""
    return [sa for sa in node.engine.sadb.ipsec_by_name(name) if sa.ready]
