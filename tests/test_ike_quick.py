"""Quick Mode between two engines, and what ends up in their memory kernels.

Covers isakmpd/ike/quick.py (inventory §4.5, RFC 2409 §5.5): after Main or
Aggressive Mode, with and without PFS, both kernels hold the same SAs crosswise
(same SPIs, keys and algorithms), flows out/in/fwd with one reqid; transport mode,
AH, NAT-T encapsulation, a proposal mismatch refused with NO_PROPOSAL_CHOSEN, loss
and duplicates of Quick Mode messages, several Quick Modes on one ISAKMP SA; SPIs
reserved and never installed are released (failed install, time-outs, a protocol
the responder did not choose).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike.exchange import ExchangeFailed
from isakmpd.ike.sa import IpsecSA
from isakmpd.kernel.interface import KernelError
from isakmpd.wire.constants import EncapsulationMode, ExchangeType, IpsecAttr, ProtocolId
from tests.support.ikepair import (
    EAST,
    EAST_NET,
    WEST,
    WEST_NET,
    Nat,
    collect,
    decode,
    establish,
    exchange_calls,
    kernel_sa_mismatches,
    make_pair,
)

NAT_PUBLIC = "198.51.100.200"
NO_PFS = "QM-ESP-AES-128-SHA-SUITE"


def both(**kw):
    return {"west": dict(kw), "east": dict(kw)}


class QuickModeTests(SynchronousTestCase):

    def establish(self, **kw) -> tuple:
        return establish(self, **kw)

    def check_crosswise(self, west, east, *, protocols=1) -> None:
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertEqual(len(west.kernel.sas), 2 * protocols)
        [wipsec] = west.engine.sadb.ipsec_sas()
        [eipsec] = east.engine.sadb.ipsec_sas()
        for wpair, epair in zip(wipsec.spis, eipsec.spis, strict=True):
            self.assertEqual(wpair.our_spi, epair.peer_spi)
            self.assertEqual(wpair.peer_spi, epair.our_spi)
            inbound = west.kernel.sas[(wpair.protocol, wpair.our_spi, WEST)]
            self.assertEqual((inbound.src, inbound.dst), (EAST, WEST))
            outbound = west.kernel.sas[(wpair.protocol, wpair.peer_spi, EAST)]
            self.assertEqual((outbound.src, outbound.dst), (WEST, EAST))
            self.assertNotEqual(inbound.enc_key + inbound.auth_key,
                                outbound.enc_key + outbound.auth_key)

    def test_main_mode_quick_mode_pfs(self) -> None:
        network, west, east, ipsec = self.establish()
        self.check_crosswise(west, east)
        self.assertEqual(ipsec.suite.pfs_group, 19)
        sa = next(iter(west.kernel.sas.values()))
        self.assertEqual(sa.mode, EncapsulationMode.TUNNEL)
        self.assertEqual(len(sa.enc_key), 16)
        self.assertEqual(len(sa.auth_key), 20)
        self.assertIsNone(sa.encap)
        self.assertEqual(sa.life_seconds, 1200)
        directions = sorted(f.direction for f in west.kernel.flows)
        self.assertEqual(directions, ["fwd", "in", "out"])
        out = next(f for f in west.kernel.flows if f.direction == "out")
        self.assertEqual((out.src_net, out.dst_net), (WEST_NET, EAST_NET))
        self.assertEqual((out.tunnel_src, out.tunnel_dst), (WEST, EAST))
        self.assertEqual({f.reqid for f in west.kernel.flows}, {ipsec.reqid})
        east_out = next(f for f in east.kernel.flows if f.direction == "out")
        self.assertEqual((east_out.src_net, east_out.dst_net), (EAST_NET, WEST_NET))
        qm = [decode(d) for d in network.delivered
              if decode(d).exchange_type == ExchangeType.QUICK_MODE]
        self.assertEqual(len(qm), 3)
        self.assertTrue(all(h.encrypted for h in qm))
        self.assertEqual(len({h.message_id for h in qm}), 1)

    def test_main_mode_quick_mode_without_pfs(self) -> None:
        _network, west, east, ipsec = self.establish(**both(suites=NO_PFS))
        self.check_crosswise(west, east)
        self.assertIsNone(ipsec.suite.pfs_group)

    def test_aggressive_quick_mode_pfs(self) -> None:
        _network, west, east, ipsec = self.establish(**both(mode="AGGRESSIVE"))
        self.check_crosswise(west, east)
        self.assertEqual(ipsec.suite.pfs_group, 19)

    def test_aggressive_quick_mode_without_pfs(self) -> None:
        _network, west, east, _ipsec = self.establish(**both(mode="AGGRESSIVE",
                                                            suites=NO_PFS))
        self.check_crosswise(west, east)

    def test_other_algorithms(self) -> None:
        _network, west, east, ipsec = self.establish(**both(
            transforms="3DES-SHA-GRP2", suites="QM-ESP-3DES-SHA-PFS-GRP14-SUITE"))
        self.check_crosswise(west, east)
        sa = next(iter(east.kernel.sas.values()))
        self.assertEqual(len(sa.enc_key), 24)
        self.assertEqual(ipsec.suite.pfs_group, 14)

    def test_transport_mode(self) -> None:
        _network, west, east, _ipsec = self.establish(**both(
            suites="QM-ESP-TRP-AES-128-SHA-SUITE"))
        self.check_crosswise(west, east)
        sa = next(iter(west.kernel.sas.values()))
        self.assertEqual(sa.mode, EncapsulationMode.TRANSPORT)
        self.assertEqual(sorted(f.direction for f in west.kernel.flows), ["in", "out"])
        self.assertTrue(all(f.tunnel_src is None for f in west.kernel.flows))

    def test_ah(self) -> None:
        _network, west, east, _ipsec = self.establish(**both(suites="QM-AH-SHA-SUITE"))
        self.check_crosswise(west, east)
        sa = next(iter(west.kernel.sas.values()))
        self.assertEqual(sa.protocol, ProtocolId.IPSEC_AH)
        self.assertIsNone(sa.enc_transform)

    def test_responder_takes_first_acceptable_suite(self) -> None:
        _network, west, east, _ipsec = self.establish(
            west={"suites": "QM-ESP-AES-256-SHA2-256-SUITE,QM-ESP-AES-128-SHA-SUITE"},
            east={"suites": "QM-ESP-AES-128-SHA-SUITE"})
        self.check_crosswise(west, east)
        sa = next(iter(west.kernel.sas.values()))
        self.assertEqual(len(sa.enc_key), 16)

    def test_proposal_mismatch(self) -> None:
        network, west, east = make_pair(east={"suites": "QM-ESP-3DES-SHA-SUITE"})
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertEqual(len(box), 1)
        box[0].trap(ExchangeFailed)
        self.assertIn("NO_PROPOSAL_CHOSEN", box[0].value.message)
        self.assertIn(WEST, east.log_text())
        self.assertEqual(west.kernel.sas, {})
        self.assertEqual(east.kernel.sas, {})
        self.assertEqual(west.kernel.flows, [])
        # Phase 1 stays up.
        self.assertEqual(len(west.engine.sadb.isakmp_sas()), 1)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_several_quick_modes_one_phase1(self) -> None:
        network, west, east = make_pair()
        first = collect(west.engine.initiate_connection("conn"))
        second = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(first[0], IpsecSA)
        self.assertIsInstance(second[0], IpsecSA)
        mm1 = [d for d in network.delivered if decode(d).exchange_type == ExchangeType.ID_PROT]
        self.assertEqual(len(mm1), 6)
        self.assertEqual(len(west.kernel.sas), 4)
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertNotEqual(first[0].spis, second[0].spis)
        # A later Quick Mode reuses the ISAKMP SA.
        third = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(third[0], IpsecSA)
        self.assertEqual(len(west.engine.sadb.isakmp_sas()), 1)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_east_initiates(self) -> None:
        network, west, east = make_pair()
        box = collect(east.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA)
        self.check_crosswise(west, east)

    def test_qm1_lost_resent_identical(self) -> None:
        network, west, _east = make_pair()
        box = collect(west.engine.initiate_connection("conn"))
        for _ in range(6):
            network.step()
        [qm1] = network.drop_next()
        self.assertEqual(decode(qm1).exchange_type, ExchangeType.QUICK_MODE)
        network.clock.advance(7)
        self.assertEqual(network.queue[0].data, qm1.data)
        network.run()
        self.assertIsInstance(box[0], IpsecSA)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_qm3_lost_peer_retransmits_qm2(self) -> None:
        network, west, east = make_pair()
        box = collect(west.engine.initiate_connection("conn"))
        for _ in range(8):
            network.step()
        [_qm3] = network.drop_next()
        self.assertIsInstance(box[0], IpsecSA)
        self.assertEqual(east.engine.sadb.ipsec_sas(), [])
        network.clock.advance(7)      # east resends QM2, west answers with QM3 again
        network.run()
        self.assertEqual(len(east.engine.sadb.ipsec_sas()), 1)
        self.assertEqual(len(west.engine.sadb.ipsec_sas()), 1)
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertEqual(exchange_calls(network.clock), [])

    def test_nat_t_udp_encapsulation(self) -> None:
        network, west, east = make_pair(east={"peer_ip_for_phase1": NAT_PUBLIC})
        network.nats.append(Nat(inside=WEST, public=NAT_PUBLIC))
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, east.log_text())
        out = west.kernel.sas[(ProtocolId.IPSEC_ESP, box[0].spis[0].peer_spi, EAST)]
        self.assertEqual(out.encap, (4500, 4500))
        self.assertEqual(out.mode, EncapsulationMode.TUNNEL)
        [eipsec] = east.engine.sadb.ipsec_sas()
        east_out = east.kernel.sas[(ProtocolId.IPSEC_ESP, eipsec.spis[0].peer_spi,
                                    NAT_PUBLIC)]
        self.assertEqual(east_out.encap[0], 4500)
        self.assertNotEqual(east_out.encap[1], 4500)       # the NAT's mapped port
        self.assertEqual(east_out.enc_key, west.kernel.sas[
            (ProtocolId.IPSEC_ESP, eipsec.spis[0].peer_spi, WEST)].enc_key)
        # QM travelled on 4500 in both directions.
        qm = [d for d in network.delivered if decode(d).exchange_type == ExchangeType.QUICK_MODE]
        self.assertTrue(all(4500 in (d.src[1], d.dst[1]) for d in qm))
        # The offer and the answer said UDP_ENCAP_TUNNEL (RFC 3947 §5.1).
        self.assertEqual(len(west.engine.sadb.isakmp_sas()), 1)
        [exchange] = west.finished_of(ExchangeType.QUICK_MODE)
        attribute = exchange.offer.proposals[0].transforms[0].attribute(
            IpsecAttr.ENCAPSULATION_MODE)
        self.assertEqual(attribute.value, EncapsulationMode.UDP_ENCAP_TUNNEL)
        [responder] = east.finished_of(ExchangeType.QUICK_MODE)
        attribute = responder.reply_sa.proposals[0].transforms[0].attribute(
            IpsecAttr.ENCAPSULATION_MODE)
        self.assertEqual(attribute.value, EncapsulationMode.UDP_ENCAP_TUNNEL)


class SpiReleaseTests(SynchronousTestCase):
    """SPIs reserved with allocate_spi and never installed go back (IKernel.release_spi)."""

    def test_responder_install_fails(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()

        def refuse(sa):
            raise KernelError("Requested type not found")

        self.patch(east.kernel, "add_sa", refuse)
        collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIn("installing the SAs failed: Requested type not found", east.log_text())
        self.assertEqual(east.engine.sadb.ipsec_sas(), [])
        self.assertEqual(east.kernel.sas, {})
        self.assertEqual(east.kernel.reserved, set())
        self.assertNotIn("not yet used", east.kernel.describe())
        # West's install worked; east's DELETE for the SPIs west sends to made it
        # remove them again, and west reserves nothing either.
        self.assertIn("the peer was sent DELETE", east.log_text())
        self.assertEqual(west.engine.sadb.ipsec_sas(), [])
        self.assertEqual(west.kernel.sas, {})
        self.assertEqual(west.kernel.reserved, set())
        # The ISAKMP SA stays usable: the next attempt succeeds once the kernel works.
        self.patch(east.kernel, "add_sa", type(east.kernel).add_sa.__get__(east.kernel))
        collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertEqual(len(west.kernel.sas), 2)
        self.assertEqual(len(east.kernel.sas), 2)

    def test_initiator_times_out(self) -> None:
        network, west, _east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        network.filters.append(
            lambda d: [] if decode(d).exchange_type == ExchangeType.QUICK_MODE else [d])
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertEqual(len(west.kernel.reserved), 1)       # QM1 is on its way
        for _ in range(13):
            network.clock.advance(10)
            network.run()
        box[0].trap(ExchangeFailed)
        self.assertIn("timed out", box[0].value.message)
        self.assertEqual(west.kernel.reserved, set())
        self.assertEqual(exchange_calls(network.clock), [])

    def test_responder_times_out_waiting_for_qm3(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        seen: list = []

        def drop_qm3(datagram):
            if decode(datagram).exchange_type != ExchangeType.QUICK_MODE:
                return [datagram]
            seen.append(datagram)
            return [] if datagram.src[0] == WEST and len(seen) > 1 else [datagram]

        network.filters.append(drop_qm3)
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA)
        # East installed its inbound SA before sending QM2 (west may send on its
        # new outbound SA before QM3 arrives), nothing outbound and no flows yet.
        [ours] = box[0].spis
        self.assertEqual(east.kernel.reserved, set())
        [early] = east.kernel.sas.values()
        self.assertEqual((early.spi, early.dst), (ours.peer_spi, EAST))
        self.assertEqual(east.kernel.flows, [])
        for _ in range(13):
            network.clock.advance(10)
            network.run()
        self.assertEqual(east.engine.sadb.ipsec_sas(), [])
        self.assertEqual(east.kernel.reserved, set())
        self.assertEqual(east.kernel.sas, {})

    def test_protocol_not_chosen_is_released(self) -> None:
        network, west, east = make_pair(
            west={"suites": "QM-AH-SHA-SUITE,QM-ESP-AES-128-SHA-SUITE"},
            east={"suites": "QM-ESP-AES-128-SHA-SUITE"})
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, east.log_text())
        self.assertEqual([p.protocol for p in box[0].spis], [ProtocolId.IPSEC_ESP])
        self.assertEqual(west.kernel.reserved, set())       # the AH SPI went back
        self.assertEqual(east.kernel.reserved, set())
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
