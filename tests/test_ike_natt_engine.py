"""NAT traversal around the exchanges, on task.Clock with the simulated NAT of ikepair.

Covers what isakmpd/ike/engine.py and quick.py do for NAT-T beyond NAT-D and the
basic float (inventory §4.8, RFC 3947, RFC 3948): NAT-keepalives from the NATed side
only, their interval and when they stop; NAT-OAi/NAT-OAr in transport mode through a
NAT in both directions (RFC and draft payload types); ``-T`` on either side; and the
float edge cases (an accepted message on 4500 moves the SA, messages on 500 after the
move are dropped, the translated port seen on 4500 is the one used); and a NAT that
changes its mapping mid-SA (RFC 3947 §7): authenticated messages from the new public
port or address move the SAs, kernel SAs and keepalives there, nothing else does.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike import natt
from isakmpd.ike.exchange import ExchangeFailed
from isakmpd.ike.quick import QuickMode
from isakmpd.ike.sa import IpsecSA
from isakmpd.kernel.interface import KernelError
from isakmpd.wire.constants import (
    NAT_T_VIDS,
    VID_NAT_T_RFC3947,
    EncapsulationMode,
    ExchangeType,
    IpsecAttr,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from isakmpd.wire.message import Message
from isakmpd.wire.payloads import IdPayload, NatOaPayload, VendorPayload
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


NEW_PUBLIC = "198.51.100.201"
EAST_PUBLIC = "192.0.2.200"
ESP = ProtocolId.IPSEC_ESP


def reboot(nat: Nat, public: str | None = None) -> None:
    """The NAT forgets its mappings (a reboot, a timeout); ``public``: a new address."""
    nat.mappings.clear()
    if public is not None:
        nat.public = public


def both_behind_nats():
    """West behind NAT_PUBLIC, east behind EAST_PUBLIC (which forwards 500 and 4500)."""
    network, west, east = make_pair(west={"peer_ip_for_phase1": EAST_PUBLIC},
                                    east={"peer_ip_for_phase1": NAT_PUBLIC})
    west.engine.store.set("peer", "Address", EAST_PUBLIC, force=True)
    network.nats += [Nat(inside=WEST, public=NAT_PUBLIC),
                     Nat(inside=EAST, public=EAST_PUBLIC,
                         forward={500: (EAST, 500), 4500: (EAST, 4500)})]
    return network, west, east


class MappingChangeTests(SynchronousTestCase):
    """RFC 3947 §7: the NAT in front of the initiator changes its mapping mid-SA.

    After Main Mode and Quick Mode across the NAT, the NAT forgets its mappings; the
    initiator's next message comes from a new public port (or address). East, not
    behind a NAT, follows an authenticated message there; nothing else moves it.
    """

    def connect(self, network, west, east) -> None:
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text() + east.log_text())
        self.network, self.west, self.east = network, west, east
        self.nat = network.nats[0]
        [self.wsa] = west.engine.sadb.isakmp_sas()
        [self.esa] = east.engine.sadb.isakmp_sas()
        [self.eipsec] = east.engine.sadb.ipsec_sas()
        self.old = (self.nat.public, self.nat.mappings[(WEST, 4500)])
        self.assertEqual(self.esa.remote, self.old)

    def setUp(self) -> None:
        self.connect(*west_behind_nat())

    def mapped(self) -> tuple[str, int]:
        return (self.nat.public, self.nat.mappings[(WEST, 4500)])

    def moves(self) -> list[str]:
        return [line for line in self.east.lines() if "NAT mapping changed" in line]

    def check_east_kernel(self, ipsec, remote) -> None:
        """East's kernel SAs and flows of ``ipsec`` use the peer's endpoint ``remote``."""
        ip, port = remote
        pair = ipsec.spis[0]
        inbound = self.east.kernel.sas[(ESP, pair.our_spi, EAST)]
        outbound = self.east.kernel.sas[(ESP, pair.peer_spi, ip)]
        self.assertEqual((inbound.src, inbound.encap), (ip, (port, 4500)))
        self.assertEqual((outbound.src, outbound.encap), (EAST, (4500, port)))
        self.assertEqual(sorted(ipsec.kernel_sas, key=lambda s: s.dst), [inbound, outbound])
        # The SA's flows, and the kernel's policies with their selectors (a newer SA
        # for the same traffic owns those when there is one).
        installed = {f.selector(): f for f in self.east.kernel.flows}
        for flow in ipsec.flows:
            for one in (flow, installed[flow.selector()]):
                ends = (one.tunnel_src, one.tunnel_dst)
                self.assertEqual(ends, (EAST, ip) if one.direction == "out" else (ip, EAST))
        self.assertEqual(sorted(f.direction for f in ipsec.flows), ["fwd", "in", "out"])

    def test_port_change_followed_on_informational(self) -> None:
        reboot(self.nat)
        self.west.engine.send_protected_notify(self.wsa, NotifyType.R_U_THERE,
                                               data=b"\0\0\0\1")
        self.network.run()
        new = self.mapped()
        self.assertNotEqual(new, self.old)
        self.assertEqual((self.esa.local, self.esa.remote), ((EAST, 4500), new))
        self.assertEqual(self.eipsec.remote, new)
        self.check_east_kernel(self.eipsec, new)
        self.assertEqual(self.east.kernel.updates, 2)
        # The answer went to the new mapping (the SA moved before it was sent).
        self.assertEqual(self.east.sender.sent[-1].dst, new)
        self.assertIn("notified R_U_THERE_ACK", self.west.log_text())
        [line] = self.moves()
        self.assertIn(f"peer peer: NAT mapping changed from {NAT_PUBLIC}:{self.old[1]} to "
                      f"{NAT_PUBLIC}:{new[1]}, moving 1 ISAKMP SA(s) and 1 IPsec SA(s)", line)
        # Later messages from east go there too: its DELETE reaches west.
        self.east.engine.delete_ipsec_sa(self.eipsec)
        self.network.run()
        self.assertEqual(self.west.engine.sadb.ipsec_sas(), [])
        self.assertEqual(self.west.kernel.sas, {})
        self.assertEqual(len(self.moves()), 1)

    def test_port_change_followed_on_quick_mode(self) -> None:
        reboot(self.nat)
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA, self.east.log_text())
        new = self.mapped()
        self.assertEqual(self.esa.remote, new)
        replies = [d for d in self.east.sender.sent
                   if decode(d).exchange_type == ExchangeType.QUICK_MODE]
        self.assertEqual([d.dst for d in replies], [self.old, new])   # QM2 of each
        newer = next(i for i in self.east.engine.sadb.ipsec_sas() if i is not self.eipsec)
        self.assertEqual(newer.remote, new)
        self.check_east_kernel(self.eipsec, new)
        self.check_east_kernel(newer, new)
        # East, now the initiator, starts a Quick Mode: it goes to the new mapping.
        mine = collect(self.east.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIsInstance(mine[0], IpsecSA, self.east.log_text())
        sent = [d for d in self.east.sender.sent
                if decode(d).exchange_type == ExchangeType.QUICK_MODE][2:]
        self.assertTrue(sent and all(d.dst == new for d in sent), sent)
        self.assertEqual(len(self.moves()), 1)

    def test_retransmission_follows(self) -> None:
        # East starts a Quick Mode; its QM1 dies with the old mapping.
        box = collect(self.east.engine.initiate_connection("conn"))
        [qm1] = self.network.drop_next()
        self.assertEqual(qm1.dst, self.old)
        reboot(self.nat)
        self.west.engine.send_protected_notify(self.wsa, NotifyType.R_U_THERE,
                                               data=b"\0\0\0\7")
        self.network.run()
        new = self.mapped()
        self.assertEqual(self.esa.remote, new)
        self.network.clock.advance(7)               # the retransmission goes there
        self.assertEqual(self.network.queue[0].data, qm1.data)
        self.assertEqual(self.network.queue[0].dst, new)
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA, self.east.log_text())

    def test_address_change_followed(self) -> None:
        reboot(self.nat, NEW_PUBLIC)
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA, self.east.log_text())
        new = self.mapped()
        self.assertEqual(new[0], NEW_PUBLIC)
        self.assertEqual(self.esa.remote, new)
        sadb = self.east.engine.sadb
        self.assertEqual(sadb.isakmp_by_address(NAT_PUBLIC), [])
        self.assertEqual(sadb.isakmp_by_address(NEW_PUBLIC), [self.esa])
        self.assertEqual(sadb.ipsec_by_address(NAT_PUBLIC), [])
        self.assertEqual(len(sadb.ipsec_by_address(NEW_PUBLIC)), 2)
        self.assertEqual(sadb.ipsec_live_by_peer("conn", NAT_PUBLIC), [])
        self.check_east_kernel(self.eipsec, new)
        self.assertFalse([key for key in self.east.kernel.sas if key[2] == NAT_PUBLIC])
        self.assertEqual(len(self.east.kernel.flows), 3)     # both SAs share the policies
        # A DELETE from west (the older SA, now replaced) finds the moved SA.
        [wold] = [i for i in self.west.engine.sadb.ipsec_sas() if i is not box[0]]
        self.west.engine.delete_ipsec_sa(wold)
        self.network.run()
        self.assertNotIn(self.eipsec, sadb.ipsec_sas())
        self.assertEqual(len(self.east.kernel.sas), 2)
        # East's own DELETE of the ISAKMP SA reaches west at its new address.
        self.east.engine.delete_isakmp_sa(self.esa)
        self.network.run()
        self.assertEqual(self.west.engine.sadb.isakmp_sas(), [])
        [line] = self.moves()
        self.assertIn(f"to {NEW_PUBLIC}:{new[1]}", line)

    def test_transport_mode_selectors_follow_the_address(self) -> None:
        self.connect(*west_behind_nat(west={"suites": TRANSPORT}, east={"suites": TRANSPORT}))
        reboot(self.nat, NEW_PUBLIC)
        self.west.engine.send_protected_notify(self.wsa, NotifyType.R_U_THERE,
                                               data=b"\0\0\0\2")
        self.network.run()
        self.assertEqual(self.esa.remote[0], NEW_PUBLIC)
        out = next(f for f in self.east.kernel.flows if f.direction == "out")
        self.assertEqual((out.src_net, out.dst_net), (f"{EAST}/32", f"{NEW_PUBLIC}/32"))
        inbound = next(f for f in self.east.kernel.flows if f.direction == "in")
        self.assertEqual(inbound.src_net, f"{NEW_PUBLIC}/32")
        self.assertEqual(len(self.east.kernel.flows), 2)
        self.assertEqual(self.eipsec.remote_id, IdPayload.from_address(NEW_PUBLIC))
        [outbound] = [s for s in self.east.kernel.sas.values() if s.dst == NEW_PUBLIC]
        self.assertEqual(outbound.mode, EncapsulationMode.TRANSPORT)

    def test_forgeries_and_replays_move_nothing(self) -> None:
        reboot(self.nat)
        elsewhere = (NAT_PUBLIC, 45000)
        before = dict(self.east.kernel.sas)
        for exchange_type in (ExchangeType.QUICK_MODE, ExchangeType.INFO):
            header = Message(self.esa.icookie, self.esa.rcookie, exchange_type,
                             message_id=0x1234).header(64)
            forged = dataclasses.replace(header, flags=1).encode() + bytes(64)
            self.east.engine.datagram_received(forged, (EAST, 4500), elsewhere)
        # Genuine messages, replayed from another port: QM3 (of a finished exchange),
        # the last phase 1 message, and a lone keepalive byte.
        from_west = [d for d in self.network.delivered if d.dst[0] == EAST]
        for datagram in (from_west[-1], [d for d in from_west
                                         if decode(d).message_id == 0][-1]):
            self.east.engine.datagram_received(datagram.data, (EAST, 4500), elsewhere)
        self.east.engine.datagram_received(b"\xff", (EAST, 4500), elsewhere)
        self.assertEqual(self.esa.remote, self.old)
        self.assertEqual(self.eipsec.remote, self.old)
        self.assertEqual(self.east.kernel.sas, before)
        self.assertEqual(self.east.kernel.updates, 0)
        self.assertEqual(self.moves(), [])
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)

    def test_a_replayed_informational_moves_nothing(self) -> None:
        self.west.engine.send_protected_notify(self.wsa, NotifyType.R_U_THERE,
                                               data=b"\0\0\0\3")
        [notify] = self.network.queue
        self.network.run()
        self.east.engine.datagram_received(notify.data, (EAST, 4500), (NAT_PUBLIC, 45000))
        self.assertEqual(self.esa.remote, self.old)
        self.assertEqual(self.moves(), [])

    def test_natted_side_does_not_follow(self) -> None:
        # East's messages reach west from another port: west is the one behind the
        # NAT, east's address cannot change that way (RFC 3947 §7: MUST NOT follow).
        def other_port(datagram):
            if datagram.src == (EAST, 4500):
                return [dataclasses.replace(datagram, src=(EAST, 4501))]
            return [datagram]

        self.network.filters.append(other_port)
        self.east.engine.send_protected_notify(self.esa, NotifyType.R_U_THERE,
                                               data=b"\0\0\0\4")
        self.network.run()
        self.assertIn("R_U_THERE_ACK", self.east.log_text())   # west answered
        self.assertEqual(self.wsa.remote, (EAST, 4500))
        self.assertEqual(self.west.kernel.updates, 0)
        self.assertNotIn("NAT mapping changed", self.west.log_text())

    def test_kernel_refusing_the_update(self) -> None:
        def refuse(old, new):
            raise KernelError("Operation not supported")

        self.patch(self.east.kernel, "update_sa", refuse)
        reboot(self.nat)
        self.west.engine.send_protected_notify(self.wsa, NotifyType.R_U_THERE,
                                               data=b"\0\0\0\5")
        self.network.run()
        self.assertEqual(self.esa.remote, self.mapped())
        self.assertIn("updating SA of conn for the new NAT mapping: Operation not supported",
                      self.east.log_text())
        self.assertEqual(len(self.eipsec.kernel_sas), 2)

    def test_both_behind_nats_keepalives_follow(self) -> None:
        self.connect(*both_behind_nats())
        self.assertTrue(self.esa.nat.we_are_behind and self.esa.nat.peer_is_behind)
        advance(self.network, 20)
        self.assertEqual(self.east.sender.keepalives, [((EAST, 4500), self.old)])
        reboot(self.nat)
        self.west.engine.send_protected_notify(self.wsa, NotifyType.R_U_THERE,
                                               data=b"\0\0\0\6")
        self.network.run()
        new = self.mapped()
        self.assertEqual(self.esa.remote, new)
        self.assertEqual(len(keepalive_calls(self.network.clock)), 2)   # one each side
        advance(self.network, 20)
        self.assertEqual(self.east.sender.keepalives[1:], [((EAST, 4500), new)])
        self.assertIn(f"NAT-keepalives to {NAT_PUBLIC}:{self.old[1]} stopped",
                      self.east.log_text())


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
