"""NAT traversal around the exchanges, on task.Clock with the simulated NAT of ikepair.

Covers what isakmpd/ike/engine.py and quick.py do for NAT-T beyond NAT-D and the
basic float (inventory §4.8, RFC 3947, RFC 3948): NAT-keepalives from the NATed side
only, their interval and when they stop; NAT-OAi/NAT-OAr in transport mode through a
NAT in both directions (RFC and draft payload types); ``-T`` on either side; and the
float edge cases (an accepted message on 4500 moves the SA, messages on 500 after the
move are dropped, the translated port seen on 4500 is the one used).
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike import natt
from isakmpd.ike.exchange import ExchangeFailed
from isakmpd.ike.quick import QuickMode
from isakmpd.ike.sa import IpsecSA
from isakmpd.wire.constants import (
    NAT_T_VIDS,
    VID_NAT_T_RFC3947,
    EncapsulationMode,
    ExchangeType,
    IpsecAttr,
    PayloadType,
    ProtocolId,
)
from isakmpd.wire.message import Message
from isakmpd.wire.payloads import NatOaPayload, VendorPayload
from tests.support.ikepair import (
    EAST,
    WEST,
    Datagram,
    Nat,
    advance,
    collect,
    decode,
    exchange_calls,
    keepalive_calls,
    make_pair,
)

NAT_PUBLIC = "198.51.100.200"
TRANSPORT = "QM-ESP-TRP-AES-128-SHA-SUITE"


def west_behind_nat(**kw):
    """West (initiator) behind a NAT whose public address is NAT_PUBLIC."""
    east = {"peer_ip_for_phase1": NAT_PUBLIC, **kw.pop("east", {})}
    network, west, east_node = make_pair(east=east, **kw)
    network.nats.append(Nat(inside=WEST, public=NAT_PUBLIC))
    return network, west, east_node


def east_behind_nat(**kw):
    """East (responder) behind a NAT that forwards 500 and 4500 to it."""
    west = {"peer_ip_for_phase1": NAT_PUBLIC, **kw.pop("west", {})}
    network, west_node, east = make_pair(west=west, **kw)
    west_node.engine.store.set("peer", "Address", NAT_PUBLIC, force=True)
    network.nats.append(Nat(inside=EAST, public=NAT_PUBLIC,
                            forward={500: (EAST, 500), 4500: (EAST, 4500)}))
    return network, west_node, east


def set_general(node, tag: str, value: str) -> None:
    node.engine.store.set("General", tag, value, force=True)



class KeepaliveTests(SynchronousTestCase):
    """RFC 3948 §2.3 keepalives from the NATed side (inventory §4.8)."""

    def connect(self, network, west) -> IpsecSA:
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text())
        return box[0]

    def test_natted_initiator_sends_every_interval(self) -> None:
        network, west, east = west_behind_nat()
        self.connect(network, west)
        self.assertEqual(west.sender.keepalives, [])
        self.assertEqual(len(keepalive_calls(network.clock)), 1)
        advance(network, 19)
        self.assertEqual(west.sender.keepalives, [])      # the first after the interval
        advance(network, 1)
        self.assertEqual(west.sender.keepalives, [((WEST, 4500), (EAST, 4500))])
        advance(network, 40)
        self.assertEqual(len(west.sender.keepalives), 3)
        self.assertEqual(east.sender.keepalives, [])     # not behind a NAT: never
        self.assertEqual(keepalive_calls(network.clock)[0].getTime(), 80)
        self.assertIn("behind a NAT: NAT-keepalives from 192.0.2.1:4500 to "
                      "198.51.100.1:4500 every 20 s", west.log_text())

    def test_interval_from_configuration(self) -> None:
        network, west, _east = west_behind_nat()
        set_general(west, "NAT-T-Keepalive", "5")
        self.connect(network, west)
        advance(network, 4)
        self.assertEqual(west.sender.keepalives, [])
        advance(network, 1)
        self.assertEqual(len(west.sender.keepalives), 1)
        advance(network, 10)
        self.assertEqual(len(west.sender.keepalives), 3)

    def test_interval_below_one_means_default(self) -> None:
        for value in ("0", "-5"):
            network, west, _east = west_behind_nat()
            set_general(west, "NAT-T-Keepalive", value)
            self.connect(network, west)
            advance(network, 19)
            self.assertEqual(west.sender.keepalives, [], value)
            advance(network, 1)
            self.assertEqual(len(west.sender.keepalives), 1, value)

    def test_natted_responder_sends_them(self) -> None:
        network, west, east = east_behind_nat()
        self.connect(network, west)
        advance(network, 20)
        self.assertEqual(east.sender.keepalives, [((EAST, 4500), (WEST, 4500))])
        self.assertEqual(west.sender.keepalives, [])

    def test_no_nat_no_keepalives(self) -> None:
        network, west, east = make_pair()
        self.connect(network, west)
        self.assertEqual(keepalive_calls(network.clock), [])
        advance(network, 100, step=10)
        self.assertEqual(west.sender.keepalives + east.sender.keepalives, [])

    def test_phase1_alone_starts_them(self) -> None:
        network, west, _east = west_behind_nat()
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertTrue(box[0].ready)
        advance(network, 20)
        self.assertEqual(len(west.sender.keepalives), 1)

    def test_stop_when_the_last_sa_goes(self) -> None:
        network, west, _east = west_behind_nat()
        ipsec = self.connect(network, west)
        [sa] = west.engine.sadb.isakmp_sas()
        # The ISAKMP SA goes first: the IPsec SA still needs the NAT mapping.
        west.engine.delete_isakmp_sa(sa)
        network.run()
        self.assertEqual(len(keepalive_calls(network.clock)), 1)
        advance(network, 20)
        self.assertEqual(len(west.sender.keepalives), 1)
        west.engine.remove_ipsec_sa(ipsec)
        self.assertEqual(keepalive_calls(network.clock), [])
        self.assertIn("NAT-keepalives to 198.51.100.1:4500 stopped", west.log_text())
        advance(network, 60, step=10)
        self.assertEqual(len(west.sender.keepalives), 1)

    def test_ipsec_sa_deleted_first(self) -> None:
        network, west, _east = west_behind_nat()
        ipsec = self.connect(network, west)
        west.engine.delete_ipsec_sa(ipsec)
        network.run()
        self.assertEqual(len(keepalive_calls(network.clock)), 1)   # the ISAKMP SA stays
        [sa] = west.engine.sadb.isakmp_sas()
        west.engine.delete_isakmp_sa(sa)
        network.run()
        self.assertEqual(keepalive_calls(network.clock), [])

    def test_shutdown_cancels_them(self) -> None:
        network, west, _east = west_behind_nat()
        self.connect(network, west)
        west.engine.shutdown()
        network.run()
        self.assertEqual(keepalive_calls(network.clock), [])
        advance(network, 60, step=10)
        self.assertEqual(west.sender.keepalives, [])

    def test_one_stream_per_peer(self) -> None:
        network, west, _east = west_behind_nat()
        self.connect(network, west)
        box = collect(west.engine.initiate_phase1("peer", force=True))
        network.run()
        self.assertTrue(box[0].ready, west.log_text())
        self.assertEqual(len(west.engine.sadb.isakmp_sas()), 2)
        self.assertEqual(len(keepalive_calls(network.clock)), 1)
        advance(network, 40)
        self.assertEqual(len(west.sender.keepalives), 2)

    def test_sender_failure_keeps_the_timer(self) -> None:
        network, west, _east = west_behind_nat()
        self.connect(network, west)

        def broken(local, remote):
            raise OSError("network is unreachable")

        west.sender.send_keepalive = broken
        advance(network, 20)
        self.assertIn("sending a NAT-keepalive to 198.51.100.1:4500 failed", west.log_text())
        self.assertEqual(len(keepalive_calls(network.clock)), 1)


class NatOaTests(SynchronousTestCase):
    """NAT-OAi / NAT-OAr in transport mode through a NAT (RFC 3947 §5.2)."""

    def establish(self, network, west) -> tuple[IpsecSA, IpsecSA]:
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text())
        [eipsec] = [sa for sa in network.nodes[EAST].engine.sadb.ipsec_sas()]
        return box[0], eipsec

    def test_transport_mode_through_nat(self) -> None:
        network, west, east = west_behind_nat(west={"suites": TRANSPORT},
                                              east={"suites": TRANSPORT})
        wipsec, eipsec = self.establish(network, west)
        [initiator] = west.finished_of(ExchangeType.QUICK_MODE)
        [responder] = east.finished_of(ExchangeType.QUICK_MODE)
        # The initiator sent its own address and the peer's as it knows them; the
        # responder its view: the initiator as the NAT shows it, and itself.
        self.assertEqual(responder.nat_oa_received, (WEST, EAST))
        self.assertEqual(initiator.nat_oa_received, (NAT_PUBLIC, EAST))
        self.assertEqual(eipsec.nat_oa, (WEST, EAST))
        self.assertEqual(eipsec.peer_original_address, WEST)
        self.assertEqual(wipsec.nat_oa, (NAT_PUBLIC, EAST))
        self.assertEqual(wipsec.peer_original_address, EAST)
        sent = initiator._nat_oa + responder._nat_oa
        self.assertEqual([p.payload_type for p in sent], [PayloadType.NAT_OA] * 4)
        # The mode was UDP_ENCAP_TRANSPORT, and the SAs are encapsulated.
        attribute = initiator.offer.proposals[0].transforms[0].attribute(
            IpsecAttr.ENCAPSULATION_MODE)
        self.assertEqual(attribute.value, EncapsulationMode.UDP_ENCAP_TRANSPORT)
        out = west.kernel.sas[(ProtocolId.IPSEC_ESP, wipsec.spis[0].peer_spi, EAST)]
        self.assertEqual((out.mode, out.encap), (EncapsulationMode.TRANSPORT, (4500, 4500)))

    def test_draft_peers_use_payload_131(self) -> None:
        network, west, east = west_behind_nat(west={"suites": TRANSPORT},
                                              east={"suites": TRANSPORT})
        network.filters.append(strip_rfc3947_vid)
        _wipsec, eipsec = self.establish(network, west)
        [wsa] = west.engine.sadb.isakmp_sas()
        self.assertFalse(wsa.nat.rfc)
        [initiator] = west.finished_of(ExchangeType.QUICK_MODE)
        [responder] = east.finished_of(ExchangeType.QUICK_MODE)
        self.assertEqual([p.payload_type for p in initiator._nat_oa + responder._nat_oa],
                         [PayloadType.NAT_OA_DRAFT] * 4)
        attribute = initiator.offer.proposals[0].transforms[0].attribute(
            IpsecAttr.ENCAPSULATION_MODE)
        self.assertEqual(attribute.value, EncapsulationMode.UDP_ENCAP_TRANSPORT_DRAFT)
        self.assertEqual(eipsec.nat_oa, (WEST, EAST))

    def test_tunnel_mode_sends_none(self) -> None:
        network, west, east = west_behind_nat()
        wipsec, eipsec = self.establish(network, west)
        [initiator] = west.finished_of(ExchangeType.QUICK_MODE)
        [responder] = east.finished_of(ExchangeType.QUICK_MODE)
        self.assertEqual(initiator._nat_oa + responder._nat_oa, [])
        self.assertIsNone(responder.nat_oa_received)
        self.assertIsNone(wipsec.nat_oa)
        self.assertIsNone(eipsec.nat_oa)

    def test_transport_without_nat_sends_none(self) -> None:
        network, west, east = make_pair(west={"suites": TRANSPORT},
                                        east={"suites": TRANSPORT})
        wipsec, eipsec = self.establish(network, west)
        [initiator] = west.finished_of(ExchangeType.QUICK_MODE)
        [responder] = east.finished_of(ExchangeType.QUICK_MODE)
        self.assertEqual(initiator._nat_oa + responder._nat_oa, [])
        self.assertIsNone(eipsec.nat_oa)
        self.assertIsNone(wipsec.peer_original_address)

    def test_missing_nat_oa_is_logged_not_refused(self) -> None:
        network, west, east = west_behind_nat(west={"suites": TRANSPORT},
                                              east={"suites": TRANSPORT})
        original = QuickMode._nat_oa_for

        def initiator_sends_none(self, initiator_ip, responder_ip):
            return [] if self.initiator else original(self, initiator_ip, responder_ip)

        self.patch(QuickMode, "_nat_oa_for", initiator_sends_none)
        _wipsec, eipsec = self.establish(network, west)
        self.assertIsNone(eipsec.nat_oa)
        self.assertIn("transport mode through a NAT but the initiator sent no NAT-OA",
                      east.log_text())

    def test_read_nat_oa(self) -> None:
        rfc = natt.nat_oa_payloads("192.0.2.1", "2001:db8::1")
        self.assertEqual(natt.read_nat_oa(rfc), ("192.0.2.1", "2001:db8::1"))
        self.assertIsNone(natt.read_nat_oa([]))
        draft = natt.nat_oa_payloads("192.0.2.1", "192.0.2.2", rfc=False)
        self.assertEqual(natt.read_nat_oa(draft[:1]), ("192.0.2.1", "192.0.2.1"))
        with self.assertRaises(natt.NatOaError):
            natt.read_nat_oa(rfc[:1])                       # RFC 3947 sends two
        with self.assertRaises(natt.NatOaError):
            natt.read_nat_oa([*rfc, rfc[0]])
        self.assertEqual(natt.nat_oa_payloads("::ffff:192.0.2.7", "192.0.2.2")[0],
                         NatOaPayload.from_address("192.0.2.7"))

    def test_three_nat_oa_refused(self) -> None:
        network, west, east = west_behind_nat(west={"suites": TRANSPORT},
                                              east={"suites": TRANSPORT})
        original = QuickMode._nat_oa_for

        def three(self, initiator_ip, responder_ip):
            sent = original(self, initiator_ip, responder_ip)
            return sent + sent[:1] if self.initiator else sent

        self.patch(QuickMode, "_nat_oa_for", three)
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        advance(network, 130, step=10)
        box[0].trap(ExchangeFailed)
        self.assertIn("3 NAT-OA payloads", east.log_text())
        self.assertEqual(east.engine.sadb.ipsec_sas(), [])


class NatTDisabledTests(SynchronousTestCase):
    """``-T``: no NAT-T VIDs, no NAT-D, no float, no UDP_ENCAP, no keepalives."""

    def test_initiator_disabled_behind_nat(self) -> None:
        network, west, east = west_behind_nat(nat_t=(False, True))
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text() + east.log_text())
        mm = [Message.decode(d.data) for d in network.delivered[:4]]
        self.assertFalse({bytes(p.data) for p in mm[0].find(PayloadType.VENDOR)}
                         & set(NAT_T_VIDS))
        self.assertEqual(mm[2].find(PayloadType.NAT_D) + mm[3].find(PayloadType.NAT_D), [])
        self.assertTrue(all(d.dst[1] == 500 for d in network.delivered))
        [wsa] = west.engine.sadb.isakmp_sas()
        self.assertFalse(wsa.nat.peer_capable or wsa.nat.detected or wsa.nat.floated)
        self.assertTrue(all(sa.encap is None for sa in west.kernel.sas.values()))
        self.assertTrue(all(sa.encap is None for sa in east.kernel.sas.values()))
        [initiator] = west.finished_of(ExchangeType.QUICK_MODE)
        self.assertEqual(natt.sa_encapsulations(initiator.offer),
                         {EncapsulationMode.TUNNEL})
        advance(network, 60, step=10)
        self.assertEqual(west.sender.keepalives + east.sender.keepalives, [])

    def test_responder_disabled(self) -> None:
        network, west, east = west_behind_nat(nat_t=(True, False))
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text() + east.log_text())
        mm2 = Message.decode(network.delivered[1].data)
        self.assertFalse({bytes(p.data) for p in mm2.find(PayloadType.VENDOR)}
                         & set(NAT_T_VIDS))
        mm3 = Message.decode(network.delivered[2].data)
        self.assertEqual(mm3.find(PayloadType.NAT_D), [])
        self.assertTrue(all(d.dst[1] == 500 for d in network.delivered))
        self.assertTrue(all(sa.encap is None for sa in east.kernel.sas.values()))
        advance(network, 60, step=10)
        self.assertEqual(west.sender.keepalives, [])

    def test_peer_nat_d_ignored(self) -> None:
        # West runs with -T, but a filter makes its MM1 claim NAT-T: east then
        # sends NAT-D, which west must ignore.
        network, west, east = west_behind_nat(nat_t=(False, True))
        network.filters.append(add_nat_t_vids_to_mm1)
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text() + east.log_text())
        mm4 = Message.decode(network.delivered[3].data)
        self.assertEqual(len(mm4.find(PayloadType.NAT_D)), 2)
        [wsa] = west.engine.sadb.isakmp_sas()
        self.assertFalse(wsa.nat.detected or wsa.nat.floated)
        self.assertTrue(all(sa.encap is None for sa in west.kernel.sas.values()))

    def test_nothing_accepted_on_nat_t_port(self) -> None:
        network, west, east = make_pair(nat_t=(True, False))
        box = collect(west.engine.initiate_phase1("peer"))
        [mm1] = network.queue
        network.queue.clear()
        east.engine.datagram_received(mm1.data, (EAST, 4500), (WEST, 4500))
        self.assertEqual(east.engine.sadb.isakmp_sas(), [])
        self.assertEqual(network.queue, [])
        self.assertIn("NAT-T is disabled (-T), nothing is accepted on port 4500",
                      east.log_text())
        west.engine.shutdown()
        box[0].trap(ExchangeFailed)

    def test_udp_encap_offer_refused(self) -> None:
        network, west, east = make_pair(nat_t=(True, False))
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        [wsa] = west.engine.sadb.isakmp_sas()
        wsa.nat.we_are_behind = True            # as if west had seen a NAT
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        advance(network, 130, step=10)
        box[0].trap(ExchangeFailed)
        # West saw no NAT-T VID from east, so it offered the drafts' value.
        self.assertIn("encapsulation mode UDP_ENCAP_TUNNEL_DRAFT offered, but no NAT was "
                      "detected", east.log_text())
        self.assertEqual(east.engine.sadb.ipsec_sas(), [])

    def test_udp_encap_answer_refused(self) -> None:
        network, west, east = make_pair(nat_t=(False, True))
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        [wsa] = west.engine.sadb.isakmp_sas()
        [esa] = east.engine.sadb.isakmp_sas()
        wsa.nat.we_are_behind = esa.nat.peer_is_behind = True
        box = collect(west.engine.initiate_connection("conn"))
        network.step()                          # QM1 (UDP_ENCAP_TUNNEL) to east
        wsa.nat.we_are_behind = False           # west is -T: it must not take it
        network.run()
        box[0].trap(ExchangeFailed)
        self.assertIn("peer answered with encapsulation mode UDP_ENCAP_TUNNEL_DRAFT, but "
                      "no NAT was detected", west.log_text())
        self.assertEqual(west.engine.sadb.ipsec_sas(), [])


class FloatTests(SynchronousTestCase):
    """The port float's edge cases (RFC 3947 §4, inventory §4.8)."""

    def test_port_500_dropped_after_float(self) -> None:
        network, west, east = west_behind_nat()
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA)
        [esa] = east.engine.sadb.isakmp_sas()
        self.assertTrue(esa.nat.floated)
        last = [d for d in network.delivered if d.dst[0] == EAST][-1]
        before = len(east.events)
        east.engine.datagram_received(last.data, (EAST, 500), (NAT_PUBLIC, 40000))
        new = east.lines()[before:]
        self.assertEqual(len(new), 1, new)
        self.assertIn("has moved to port 4500", new[0])
        self.assertEqual(network.queue, [])
        self.assertEqual(len(east.engine.sadb.ipsec_sas()), 1)

    def test_translated_port_used(self) -> None:
        network, west, east = west_behind_nat()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        [nat] = network.nats
        mapped = nat.mappings[(WEST, 4500)]
        self.assertNotEqual(mapped, 4500)
        [esa] = east.engine.sadb.isakmp_sas()
        self.assertEqual((esa.local, esa.remote), ((EAST, 4500), (NAT_PUBLIC, mapped)))
        # East starts a Quick Mode on that SA: it goes to the translated port.
        east.engine.store.set("peer", "Address", NAT_PUBLIC, force=True)
        box = collect(east.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, east.log_text() + west.log_text())
        self.assertTrue([d for d in west.received
                         if decode(d).exchange_type == ExchangeType.QUICK_MODE])
        sent = [d for d in east.sender.sent if decode(d).exchange_type
                == ExchangeType.QUICK_MODE]
        self.assertTrue(all(d.dst == (NAT_PUBLIC, mapped) for d in sent), sent)
        out = east.kernel.sas[(ProtocolId.IPSEC_ESP, box[0].spis[0].peer_spi, NAT_PUBLIC)]
        self.assertEqual(out.encap, (4500, mapped))

    def test_authenticated_message_on_4500_moves_sa(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        [wsa] = west.engine.sadb.isakmp_sas()
        [esa] = east.engine.sadb.isakmp_sas()
        self.assertFalse(esa.nat.floated)
        # West talks from and to 4500 from now on (as a peer that floats anyway).
        wsa.local, wsa.remote = (WEST, 4500), (EAST, 4500)
        wsa.nat.floated = True
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, east.log_text())
        self.assertTrue(esa.nat.floated)
        self.assertEqual((esa.local, esa.remote), ((EAST, 4500), (WEST, 4500)))
        self.assertIn("moved to the NAT-T port", east.log_text())
        replies = [d for d in east.sender.sent
                   if decode(d).exchange_type == ExchangeType.QUICK_MODE]
        self.assertTrue(replies and all(d.dst == (WEST, 4500) for d in replies))
        # Later messages for it on 500 are dropped.
        before = len(east.events)
        east.engine.datagram_received(replies[0].data, (EAST, 500), (WEST, 500))
        self.assertIn("has moved to port 4500", "\n".join(east.lines()[before:]))
        self.assertEqual(exchange_calls(network.clock), [])

    def test_forged_message_on_4500_moves_nothing(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        [esa] = east.engine.sadb.isakmp_sas()
        header = Message(esa.icookie, esa.rcookie, ExchangeType.QUICK_MODE,
                         message_id=0x1234).header(64)
        forged = dataclasses.replace(header, flags=1).encode() + bytes(64)
        east.engine.datagram_received(forged, (EAST, 4500), (WEST, 4500))
        self.assertFalse(esa.nat.floated)
        self.assertEqual((esa.local, esa.remote), ((EAST, 500), (WEST, 500)))


# -- filters -------------------------------------------------------------------------


def _rewrite_vids(datagram: Datagram, change) -> list[Datagram]:
    header = decode(datagram)
    if header.exchange_type != ExchangeType.ID_PROT or header.encrypted:
        return [datagram]
    message = Message.decode(datagram.data)
    if not message.find(PayloadType.SA):
        return [datagram]
    payloads = change(list(message.payloads))
    return [datagram.with_data(dataclasses.replace(message, payloads=payloads).encode())]


def strip_rfc3947_vid(datagram: Datagram) -> list[Datagram]:
    """MM1 and MM2 without the RFC 3947 VID: both peers fall back to the drafts."""
    return _rewrite_vids(datagram, lambda payloads: [
        p for p in payloads
        if not (isinstance(p, VendorPayload) and bytes(p.data) == VID_NAT_T_RFC3947)])


def add_nat_t_vids_to_mm1(datagram: Datagram) -> list[Datagram]:
    """West's MM1 claims NAT-T although west runs with -T."""
    if datagram.src[0] != WEST:
        return [datagram]
    return _rewrite_vids(datagram, lambda payloads: payloads + [
        VendorPayload(vid) for vid in NAT_T_VIDS])
