"""IKE over IPv6 between two engines on task.Clock (issue 3: "IPv4 and IPv6").

The IPv6 pair of tests/support/ikepair.py: west at 2001:db8::1 protecting
2001:db8:1::/64, east at 2001:db8::2 protecting 2001:db8:2::/64, with
IPV6_ADDR_SUBNET IDs (RFC 2407 §4.6.2.1). Covered: Main Mode and Aggressive Mode
each followed by Quick Mode, both kernels holding the same SAs crosswise with IPv6
endpoints and /64 flows; a transport-mode suite between the gateways with IPV6_ADDR
host IDs (/128 selectors); NAT-T over IPv6 (NAT-D hashes of 16-byte addresses,
RFC 3947 §3.2; the float to 4500; UDP-encapsulated tunnel and transport modes with
IPv6 NAT-OA payloads, RFC 3947 §5.2); a peer Address written in a non-canonical
IPv6 form (``2001:0DB8:0::2``), which the replies from ``2001:db8::2`` must match;
DELETE of the IPsec SA and of the ISAKMP SA over IPv6.
"""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike.sa import IpsecSA
from isakmpd.wire.constants import (
    EncapsulationMode,
    ExchangeType,
    IdType,
    IpsecAttr,
    PayloadType,
    ProtocolId,
)
from tests.support.ikepair import (
    EAST6,
    EAST6_NET,
    WEST6,
    WEST6_NET,
    Nat,
    collect,
    decode,
    exchange_calls,
    keepalive_calls,
    kernel_sa_mismatches,
    make_pair,
)

NAT6_PUBLIC = "2001:db8:ffff::100"
TRANSPORT = "QM-ESP-TRP-AES-128-SHA-SUITE"
SUBNET_IDS = {"id_type": "IPV6_ADDR_SUBNET"}
HOST_IDS = {"id_type": "IPV6_ADDR", "suites": TRANSPORT}


def pair6(*, west: dict | None = None, east: dict | None = None, host_ids: bool = False):
    """The IPv6 pair; ``host_ids`` makes the IDs the gateways' own addresses (/128)."""
    ids = HOST_IDS if host_ids else SUBNET_IDS
    west_net, east_net = (f"{WEST6}/128", f"{EAST6}/128") if host_ids \
        else (WEST6_NET, EAST6_NET)
    return make_pair(west={**ids, **(west or {})}, east={**ids, **(east or {})},
                     west_ip=WEST6, east_ip=EAST6, west_net=west_net, east_net=east_net)



class Ipv6ExchangeTests(SynchronousTestCase):
    """Phase 1 + Quick Mode over IPv6, and what the memory kernels hold afterwards."""

    def establish(self, network, initiator) -> IpsecSA:
        box = collect(initiator.engine.initiate_connection("conn"))
        network.run()
        self.assertEqual(len(box), 1)
        west, east = network.nodes[WEST6], network.nodes[EAST6]
        self.assertIsInstance(box[0], IpsecSA, west.log_text() + "\n" + east.log_text())
        self.assertEqual(exchange_calls(network.clock), [])
        return box[0]

    def check_crosswise(self, west, east, *, west_outer=WEST6, east_seen=EAST6,
                        west_seen=WEST6) -> None:
        """Same SAs crosswise; IPv6 endpoints; ``*_seen`` are the addresses each side
        sees for the other (NAT), ``west_outer`` west's own."""
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertEqual(len(west.kernel.sas), 2)
        [wipsec] = west.engine.sadb.ipsec_sas()
        [eipsec] = east.engine.sadb.ipsec_sas()
        [wpair] = wipsec.spis
        [epair] = eipsec.spis
        self.assertEqual((wpair.our_spi, wpair.peer_spi), (epair.peer_spi, epair.our_spi))
        inbound = west.kernel.sas[(ProtocolId.IPSEC_ESP, wpair.our_spi, west_outer)]
        outbound = west.kernel.sas[(ProtocolId.IPSEC_ESP, wpair.peer_spi, east_seen)]
        self.assertEqual((inbound.src, inbound.dst), (east_seen, west_outer))
        self.assertEqual((outbound.src, outbound.dst), (west_outer, east_seen))
        east_in = east.kernel.sas[(ProtocolId.IPSEC_ESP, epair.our_spi, EAST6)]
        self.assertEqual(east_in.src, west_seen)
        self.assertEqual(east_in.enc_key, outbound.enc_key)
        for sa in (*west.kernel.sas.values(), *east.kernel.sas.values()):
            self.assertEqual(ipaddress.ip_address(sa.src).version, 6)
            self.assertEqual(ipaddress.ip_address(sa.dst).version, 6)

    def check_flows(self, node, local_net: str, remote_net: str, *, tunnel: bool,
                    local_ip: str | None = None, remote_ip: str | None = None) -> None:
        flows = {f.direction: f for f in node.kernel.flows}
        self.assertEqual(sorted(flows), ["fwd", "in", "out"] if tunnel else ["in", "out"])
        self.assertEqual((flows["out"].src_net, flows["out"].dst_net), (local_net, remote_net))
        self.assertEqual((flows["in"].src_net, flows["in"].dst_net), (remote_net, local_net))
        if tunnel:
            self.assertEqual((flows["out"].tunnel_src, flows["out"].tunnel_dst),
                             (local_ip, remote_ip))
        else:
            self.assertTrue(all(f.tunnel_src is None for f in node.kernel.flows))

    def check_quick_mode_ids(self, node, id_type: IdType, local_net: str,
                             remote_net: str) -> None:
        [exchange] = node.finished_of(ExchangeType.QUICK_MODE)
        ours, theirs = (exchange.idci, exchange.idcr) if exchange.initiator \
            else (exchange.idcr, exchange.idci)
        self.assertEqual((ours.id_type, theirs.id_type), (id_type, id_type))
        self.assertEqual(len(ours.data), 32 if id_type == IdType.IPV6_ADDR_SUBNET else 16)
        self.assertEqual(ipaddress.ip_network(local_net).network_address.packed,
                         bytes(ours.data[:16]))
        self.assertEqual(ipaddress.ip_network(remote_net).network_address.packed,
                         bytes(theirs.data[:16]))

    def check_phase1(self, node, local: str, remote: str) -> None:
        [sa] = node.engine.sadb.isakmp_sas()
        self.assertEqual((sa.local[0], sa.remote[0]), (local, remote))
        self.assertEqual(sa.local_id.id_type, IdType.IPV6_ADDR)
        self.assertEqual(bytes(sa.local_id.data), ipaddress.ip_address(local).packed)
        self.assertFalse(sa.nat.detected)

    def run_tunnel(self, mode: str) -> None:
        network, west, east = pair6(west={"mode": mode}, east={"mode": mode})
        ipsec = self.establish(network, west)
        self.assertEqual(ipsec.suite.pfs_group, 19)
        self.check_crosswise(west, east)
        self.check_phase1(west, WEST6, EAST6)
        self.check_phase1(east, EAST6, WEST6)
        self.check_flows(west, WEST6_NET, EAST6_NET, tunnel=True, local_ip=WEST6,
                         remote_ip=EAST6)
        self.check_flows(east, EAST6_NET, WEST6_NET, tunnel=True, local_ip=EAST6,
                         remote_ip=WEST6)
        self.check_quick_mode_ids(west, IdType.IPV6_ADDR_SUBNET, WEST6_NET, EAST6_NET)
        self.check_quick_mode_ids(east, IdType.IPV6_ADDR_SUBNET, EAST6_NET, WEST6_NET)
        sa = next(iter(west.kernel.sas.values()))
        self.assertEqual((sa.mode, sa.encap), (EncapsulationMode.TUNNEL, None))
        self.assertEqual({f.reqid for f in west.kernel.flows}, {ipsec.reqid})
        # Everything travelled on port 500 between the two IPv6 addresses.
        self.assertTrue(all({d.src, d.dst} == {(WEST6, 500), (EAST6, 500)}
                            for d in network.delivered))

    def test_main_mode_quick_mode(self) -> None:
        self.run_tunnel("ID_PROT")

    def test_aggressive_mode_quick_mode(self) -> None:
        self.run_tunnel("AGGRESSIVE")

    def test_east_initiates(self) -> None:
        network, west, east = pair6()
        self.establish(network, east)
        self.check_crosswise(west, east)
        self.check_quick_mode_ids(east, IdType.IPV6_ADDR_SUBNET, EAST6_NET, WEST6_NET)

    def test_transport_mode_host_ids(self) -> None:
        network, west, east = pair6(host_ids=True)
        self.establish(network, west)
        self.check_crosswise(west, east)
        sa = next(iter(west.kernel.sas.values()))
        self.assertEqual(sa.mode, EncapsulationMode.TRANSPORT)
        self.check_flows(west, f"{WEST6}/128", f"{EAST6}/128", tunnel=False)
        self.check_flows(east, f"{EAST6}/128", f"{WEST6}/128", tunnel=False)
        self.check_quick_mode_ids(west, IdType.IPV6_ADDR, f"{WEST6}/128", f"{EAST6}/128")
        self.check_quick_mode_ids(east, IdType.IPV6_ADDR, f"{EAST6}/128", f"{WEST6}/128")

    def test_delete_reaches_the_peer(self) -> None:
        # DELETE (RFC 2408 §3.15) over IPv6: the peer finds the IPsec SA by its
        # IPv6 address and SPI, then the ISAKMP SA by its cookies.
        network, west, east = pair6()
        ipsec = self.establish(network, west)
        west.engine.delete_ipsec_sa(ipsec)
        network.run()
        self.assertEqual((west.kernel.sas, east.kernel.sas), ({}, {}))
        self.assertEqual((west.kernel.flows, east.kernel.flows), ([], []))
        self.assertEqual(east.engine.sadb.ipsec_sas(), [])
        [sa] = west.engine.sadb.isakmp_sas()
        west.engine.delete_isakmp_sa(sa)
        network.run()
        self.assertEqual(east.engine.sadb.isakmp_sas(), [])

    def test_peer_address_in_non_canonical_form(self) -> None:
        # The peer's Address and its [Phase 1] tag spelled differently from what a
        # socket reports: replies from 2001:db8::2 belong to the SA all the same.
        spelled = "2001:0DB8:0:0::2"
        network, west, east = pair6(west={"peer_ip_for_phase1": spelled})
        west.engine.store.set("peer", "Address", spelled, force=True)
        self.establish(network, west)
        self.check_crosswise(west, east)
        self.check_phase1(west, WEST6, EAST6)


class Ipv6NatTraversalTests(SynchronousTestCase):
    """NAT-T over IPv6: west behind a (simulated) translator at NAT6_PUBLIC."""

    def establish(self, **kw) -> tuple:
        west_kw = kw.pop("west", {})
        east_kw = {"peer_ip_for_phase1": NAT6_PUBLIC, **kw.pop("east", {})}
        network, west, east = pair6(west=west_kw, east=east_kw, **kw)
        network.nats.append(Nat(inside=WEST6, public=NAT6_PUBLIC))
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text() + "\n" + east.log_text())
        self.assert_same_sas(west, east)
        [wsa] = west.engine.sadb.isakmp_sas()
        [esa] = east.engine.sadb.isakmp_sas()
        # NAT-D over 16-byte addresses: each side saw the translation correctly.
        self.assertEqual((wsa.nat.we_are_behind, wsa.nat.peer_is_behind), (True, False))
        self.assertEqual((esa.nat.we_are_behind, esa.nat.peer_is_behind), (False, True))
        self.assertTrue(wsa.nat.floated and esa.nat.floated)
        self.assertEqual(wsa.local, (WEST6, 4500))
        self.assertEqual(wsa.remote, (EAST6, 4500))
        self.assertEqual(esa.local, (EAST6, 4500))
        self.assertEqual(esa.remote[0], NAT6_PUBLIC)
        self.assertNotEqual(esa.remote[1], 4500)          # the translator's mapped port
        # Quick Mode travelled on 4500 in both directions, with the marker stripped.
        qm = [d for d in network.delivered
              if decode(d).exchange_type == ExchangeType.QUICK_MODE]
        self.assertEqual(len(qm), 3)
        self.assertTrue(all(4500 in (d.src[1], d.dst[1]) for d in qm))
        # The NATed side keeps the mapping open (RFC 3948 §2.3).
        self.assertEqual(len(keepalive_calls(network.clock)), 1)
        return network, west, east, box[0]

    def assert_same_sas(self, west, east) -> None:
        """Crosswise by SPI: east knows west by its translated address, so the kernels'
        (protocol, SPI, destination) keys differ there; keys and algorithms may not."""
        west_sas = {sa.spi: sa for sa in west.kernel.sas.values()}
        east_sas = {sa.spi: sa for sa in east.kernel.sas.values()}
        self.assertEqual(len(west_sas), 2)
        self.assertEqual(set(west_sas), set(east_sas))
        seen_as = {WEST6: NAT6_PUBLIC, EAST6: EAST6}
        for spi, w in west_sas.items():
            e = east_sas[spi]
            self.assertEqual((seen_as[w.src], seen_as[w.dst]), (e.src, e.dst))
            self.assertEqual((w.protocol, w.mode, w.enc_transform, w.enc_key,
                              w.auth_algorithm, w.auth_key, w.life_seconds),
                             (e.protocol, e.mode, e.enc_transform, e.enc_key,
                              e.auth_algorithm, e.auth_key, e.life_seconds))

    def test_tunnel_mode_udp_encapsulated(self) -> None:
        _network, west, east, wipsec = self.establish()
        [eipsec] = east.engine.sadb.ipsec_sas()
        out = west.kernel.sas[(ProtocolId.IPSEC_ESP, wipsec.spis[0].peer_spi, EAST6)]
        self.assertEqual((out.src, out.dst), (WEST6, EAST6))
        self.assertEqual((out.mode, out.encap), (EncapsulationMode.TUNNEL, (4500, 4500)))
        east_out = east.kernel.sas[(ProtocolId.IPSEC_ESP, eipsec.spis[0].peer_spi,
                                    NAT6_PUBLIC)]
        self.assertEqual(east_out.src, EAST6)
        self.assertEqual(east_out.encap[0], 4500)
        self.assertNotEqual(east_out.encap[1], 4500)
        [initiator] = west.finished_of(ExchangeType.QUICK_MODE)
        attribute = initiator.offer.proposals[0].transforms[0].attribute(
            IpsecAttr.ENCAPSULATION_MODE)
        self.assertEqual(attribute.value, EncapsulationMode.UDP_ENCAP_TUNNEL)
        east_flows = {f.direction: f for f in east.kernel.flows}
        self.assertEqual((east_flows["out"].src_net, east_flows["out"].dst_net),
                         (EAST6_NET, WEST6_NET))
        self.assertEqual(east_flows["out"].tunnel_dst, NAT6_PUBLIC)

    def test_transport_mode_nat_oa(self) -> None:
        _network, west, east, wipsec = self.establish(host_ids=True)
        [eipsec] = east.engine.sadb.ipsec_sas()
        [initiator] = west.finished_of(ExchangeType.QUICK_MODE)
        [responder] = east.finished_of(ExchangeType.QUICK_MODE)
        # RFC 3947 §5.2: NAT-OA carries IPV6_ADDR original addresses.
        sent = initiator._nat_oa + responder._nat_oa
        self.assertEqual([p.payload_type for p in sent], [PayloadType.NAT_OA] * 4)
        self.assertEqual(responder.nat_oa_received, (WEST6, EAST6))
        self.assertEqual(initiator.nat_oa_received, (NAT6_PUBLIC, EAST6))
        self.assertEqual(eipsec.peer_original_address, WEST6)
        out = west.kernel.sas[(ProtocolId.IPSEC_ESP, wipsec.spis[0].peer_spi, EAST6)]
        self.assertEqual((out.mode, out.encap), (EncapsulationMode.TRANSPORT, (4500, 4500)))
        attribute = initiator.offer.proposals[0].transforms[0].attribute(
            IpsecAttr.ENCAPSULATION_MODE)
        self.assertEqual(attribute.value, EncapsulationMode.UDP_ENCAP_TRANSPORT)
