"""Two whole daemons (IsakmpdService) negotiating over real loopback UDP.

Each daemon reads its own isakmpd.conf from a file (mode 0600), binds its IKE and
NAT-T ports on 127.0.0.1 (different unprivileged ports, so both fit on one
address), and runs with the in-memory kernel (``-n``). West keeps its connection up
([Phase 2] Connections); east is passive (``-S``) and answers. The test passes when
both kernels hold the same SA pair crosswise: west's outbound SPI is east's inbound
one with the same keys and algorithms, and the other way round. The IPv6 case does
the same on ::1 with ``-6`` and IPV6_ADDR_SUBNET IDs (2001:db8:1::/64 and
2001:db8:2::/64), without Local-address, so the daemon picks its IPv6 source
address itself.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from isakmpd.kernel.interface import KernelSA
from isakmpd.service import DaemonSettings, IsakmpdService
from tests.support.ikepair import make_config

LOOPBACK = "127.0.0.1"
WEST_NET = "203.0.113.0/25"
EAST_NET = "203.0.113.128/25"


@dataclass(frozen=True)
class Family:
    """What differs between the IPv4 and the IPv6 runs."""

    loopback: str
    family: int
    west_net: str
    east_net: str
    id_type: str
    # Without Local-address the daemon asks the routing table for its source address.
    local_address: bool


IPV4 = Family(LOOPBACK, socket.AF_INET, WEST_NET, EAST_NET, "IPV4_ADDR_SUBNET", True)
IPV6 = Family("::1", socket.AF_INET6, "2001:db8:1::/64", "2001:db8:2::/64",
              "IPV6_ADDR_SUBNET", False)


def free_udp_ports(count: int, family: Family = IPV4) -> list[int]:
    """``count`` distinct UDP ports free on the loopback address right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(family.family, socket.SOCK_DGRAM)
            sock.bind((family.loopback, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class TwoDaemonsTests(TestCase):
    timeout = 30

    def start_daemon(self, name: str, config: str, port: int, nat_t_port: int,
                     passive: bool, family: Family = IPV4) -> IsakmpdService:
        path = os.path.join(self.mktemp() + "-" + name + ".conf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(config)
        settings = DaemonSettings(config_file=path, no_kernel=True, port=port,
                                  nat_t_port=nat_t_port, families=(family.family,),
                                  seed=f"loopback {name}".encode(), passive=passive)
        service = IsakmpdService(settings, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def config(self, *, peer_port: int, local_net: str, remote_net: str, mode: str,
               family: Family = IPV4) -> str:
        address = family.loopback
        pin = f"Local-address=\t\t{address}\n" if family.local_address else ""
        text = make_config(local=address, peer=address, local_net=local_net,
                           remote_net=remote_net, mode=mode, id_type=family.id_type,
                           transforms="AES-128-SHA-GRP14",
                           suites="QM-ESP-AES-128-SHA-PFS-GRP14-SUITE",
                           extra_peer=f"Port=\t\t\t{peer_port}\n{pin}")
        return text.replace("[General]\n", f"[General]\nListen-on=\t\t{address}\n", 1)

    @inlineCallbacks
    def wait_for(self, condition: Any, what: str, seconds: float = 15.0) -> Any:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}")
            yield deferLater(reactor, 0.02, lambda: None)

    @inlineCallbacks
    def establish(self, mode: str, family: Family = IPV4) -> Any:
        west_port, west_nat, east_port, east_nat = free_udp_ports(4, family)
        east = self.start_daemon(
            "east", self.config(peer_port=west_port, local_net=family.east_net,
                                remote_net=family.west_net, mode=mode, family=family),
            east_port, east_nat, passive=True, family=family)
        west = self.start_daemon(
            "west", self.config(peer_port=east_port, local_net=family.west_net,
                                remote_net=family.east_net, mode=mode, family=family),
            west_port, west_nat, passive=False, family=family)

        def both_up() -> bool:
            return len(west.kernel.sas) == 2 and len(east.kernel.sas) == 2

        yield self.wait_for(both_up, f"{mode} + Quick Mode between the two daemons")
        self.assert_crosswise(west.kernel.sas.values(), east.kernel.sas.values())
        self.assertTrue(any(sa.ready for sa in west.engine.sadb.ipsec_by_name("conn")))
        self.assertTrue(any(sa.ready for sa in east.engine.sadb.ipsec_by_name("conn")))
        for sa in (*west.kernel.sas.values(), *east.kernel.sas.values()):
            self.assertEqual((sa.src, sa.dst), (family.loopback, family.loopback))
        self.assertEqual({(f.src_net, f.dst_net) for f in west.kernel.flows
                          if f.direction == "out"}, {(family.west_net, family.east_net)})
        self.assertEqual(west.transport.addresses, [family.loopback])
        return west, east

    def assert_crosswise(self, west_sas: Any, east_sas: Any) -> None:
        west_by_spi = {sa.spi: sa for sa in west_sas}
        east_by_spi = {sa.spi: sa for sa in east_sas}
        self.assertEqual(set(west_by_spi), set(east_by_spi))
        for spi, w in west_by_spi.items():
            e: KernelSA = east_by_spi[spi]
            self.assertEqual((w.src, w.dst, w.protocol, w.enc_transform, w.enc_key,
                              w.auth_algorithm, w.auth_key),
                             (e.src, e.dst, e.protocol, e.enc_transform, e.enc_key,
                              e.auth_algorithm, e.auth_key))
            self.assertEqual(len(w.enc_key), 16)      # AES-128
            self.assertEqual(len(w.auth_key), 20)     # HMAC-SHA1

    def test_main_and_quick_mode(self) -> Deferred[Any]:
        return self.establish("ID_PROT")

    def test_main_and_quick_mode_ipv6(self) -> Deferred[Any]:
        return self.establish("ID_PROT", IPV6)

    def test_aggressive_and_quick_mode(self) -> Deferred[Any]:
        return self.establish("AGGRESSIVE")

    @inlineCallbacks
    def test_delete_on_stop_reaches_the_peer(self) -> Any:
        west, east = yield self.establish("ID_PROT")
        yield west.stopService()
        yield self.wait_for(lambda: len(east.kernel.sas) == 0,
                            "east to remove its SAs after west's DELETE")
        self.assertEqual(east.engine.sadb.ipsec_by_name("conn"), [])
