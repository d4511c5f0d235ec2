"""Phase 1 between two engines: Main Mode and Aggressive Mode with pre-shared keys.

Covers isakmpd/ike/phase1.py (inventory §4.2-§4.4, §4.8): both modes establish the
same ISAKMP SA on both sides, refusals (proposal mismatch, wrong key, Remote-ID)
end both sides cleanly with the right notification and a log line naming the
peer, NAT detection floats to port 4500 whichever side is behind the NAT, -T turns
NAT-T off, INITIAL-CONTACT replaces the SAs of a restarted peer.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike.exchange import ExchangeFailed
from isakmpd.ike.sa import SaState
from isakmpd.wire.constants import (
    NAT_T_VIDS,
    ExchangeType,
    NotifyType,
    PayloadType,
)
from isakmpd.wire.message import Message
from isakmpd.wire.payloads import NoncePayload
from tests.support.ikepair import (
    EAST,
    EAST_NET,
    WEST,
    WEST_NET,
    Nat,
    collect,
    decode,
    exchange_calls,
    make_config,
    make_pair,
)

NAT_PUBLIC = "198.51.100.200"


class MainModeTests(SynchronousTestCase):

    def test_establishes_same_sa_on_both_sides(self) -> None:
        network, west, east = make_pair()
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertEqual(len(box), 1)
        sa = box[0]
        self.assertEqual(sa.state, SaState.READY)
        [other] = east.engine.sadb.isakmp_sas()
        self.assertTrue(other.ready)
        self.assertEqual((sa.icookie, sa.rcookie), (other.icookie, other.rcookie))
        self.assertEqual(sa.suite, other.suite)
        self.assertEqual(sa.keys.skeyid_d, other.keys.skeyid_d)
        self.assertEqual(sa.keys.skeyid_a, other.keys.skeyid_a)
        self.assertEqual(sa.iv, other.iv)
        self.assertTrue(sa.initiator)
        self.assertFalse(other.initiator)
        self.assertEqual(sa.remote, (EAST, 500))
        self.assertEqual(other.remote, (WEST, 500))
        # Six messages, the first two in the clear, the last two encrypted.
        headers = [decode(d) for d in network.delivered]
        self.assertEqual([h.exchange_type for h in headers], [ExchangeType.ID_PROT] * 6)
        self.assertEqual([h.encrypted for h in headers], [False] * 4 + [True] * 2)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_vendor_ids_and_nat_d_without_nat(self) -> None:
        network, west, _east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        mm1 = Message.decode(network.delivered[0].data)
        vids = [bytes(p.data) for p in mm1.find(PayloadType.VENDOR)]
        for vid in NAT_T_VIDS:
            self.assertIn(vid, vids)
        mm3 = Message.decode(network.delivered[2].data)
        self.assertEqual(len(mm3.find(PayloadType.NAT_D)), 2)
        self.assertEqual(len(mm3.first(PayloadType.NONCE).data), 16)
        [sa] = west.engine.sadb.isakmp_sas()
        self.assertTrue(sa.nat.peer_capable)
        self.assertFalse(sa.nat.detected)
        self.assertFalse(sa.nat.floated)

    def test_initial_contact_only_first_time(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertIn(WEST, east.engine.contacted)
        self.assertIn(EAST, west.engine.contacted)

    def test_restarted_peer_initial_contact_replaces_old_sas(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertEqual(len(east.engine.sadb.ipsec_sas()), 1)
        old_spis = set(east.kernel.sas)
        # West restarts: a fresh engine at the same address, which has contacted nobody.
        conf = make_config(local=WEST, peer=EAST, local_net=WEST_NET, remote_net=EAST_NET)
        west2 = network.add_node("west2", WEST, conf, seed=77)
        box = collect(west2.engine.initiate_connection("conn"))
        network.run()
        self.assertEqual(len(box), 1, west2.log_text())
        self.assertEqual(len(east.engine.sadb.isakmp_sas()), 1)
        self.assertEqual(len(east.engine.sadb.ipsec_sas()), 1)
        self.assertFalse(old_spis & set(east.kernel.sas))
        self.assertIn("INITIAL-CONTACT", east.log_text())

    def test_proposal_mismatch(self) -> None:
        network, west, east = make_pair(east={"transforms": "AES-256-SHA2-256-GRP14"})
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertEqual(len(box), 1)
        box[0].trap(ExchangeFailed)
        self.assertIn("NO_PROPOSAL_CHOSEN", box[0].value.message)
        # The notification went out once, unprotected, from east.
        notes = [Message.decode(d.data) for d in network.delivered if d.dst[0] == WEST
                 and decode(d).exchange_type == ExchangeType.INFO]
        self.assertEqual(len(notes), 1)
        self.assertEqual(notes[0].first(PayloadType.NOTIFY).notify_type,
                         NotifyType.NO_PROPOSAL_CHOSEN)
        text = east.log_text()
        self.assertIn(WEST, text)
        self.assertIn("differs", text)
        self.assertEqual(west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(east.engine.sadb.isakmp_sas(), [])
        self.assertEqual(exchange_calls(network.clock), [])

    def test_wrong_pre_shared_key(self) -> None:
        network, west, east = make_pair(east={"psk": "another secret"})
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertEqual(len(box), 1)
        box[0].trap(ExchangeFailed)
        self.assertIn("pre-shared keys", east.log_text())
        self.assertIn(WEST, east.log_text())
        self.assertEqual(west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(east.engine.sadb.isakmp_sas(), [])
        self.assertEqual(exchange_calls(network.clock), [])

    def test_remote_id_mismatch(self) -> None:
        network, west, _east = make_pair(west={
            "extra_peer": "Remote-ID=\t\tpeer-id\n",
            "extra": "\n[peer-id]\nID-type=\t\tFQDN\nName=\t\tnot-east.example\n"})
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        box[0].trap(ExchangeFailed)
        self.assertIn("not-east.example", west.log_text())
        self.assertEqual(box[0].value.notify, NotifyType.INVALID_ID_INFORMATION)
        self.assertEqual(west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(exchange_calls(network.clock), [])

    def test_short_nonce_refused(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.step()      # MM1
        network.step()      # MM2
        mm3 = network.queue.pop(0)
        message = Message.decode(mm3.data)
        message.payloads = [NoncePayload(b"1234") if p.payload_type == PayloadType.NONCE
                            else p for p in message.payloads]
        network.queue.insert(0, mm3.with_data(message.encode()))
        sent_before = len(east.sender.sent)
        network.step()
        self.assertEqual(len(east.sender.sent), sent_before + 1)
        reply = Message.decode(east.sender.sent[-1].data)
        self.assertEqual(reply.first(PayloadType.NOTIFY).notify_type,
                         NotifyType.PAYLOAD_MALFORMED)
        self.assertIn("nonce of 4 bytes", east.log_text())


class AggressiveModeTests(SynchronousTestCase):

    def test_establishes(self) -> None:
        network, west, east = make_pair(west={"mode": "AGGRESSIVE"},
                                        east={"mode": "AGGRESSIVE"})
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        sa = box[0]
        [other] = east.engine.sadb.isakmp_sas()
        self.assertTrue(sa.ready and other.ready)
        self.assertEqual(sa.keys.skeyid_a, other.keys.skeyid_a)
        self.assertEqual(sa.iv, other.iv)
        headers = [decode(d) for d in network.delivered]
        self.assertEqual([h.exchange_type for h in headers], [ExchangeType.AGGRESSIVE] * 3)
        self.assertEqual([h.encrypted for h in headers], [False, False, True])
        # No INITIAL-CONTACT in Aggressive Mode.
        self.assertNotIn(EAST, west.engine.contacted)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_responder_refuses_unconfigured_mode(self) -> None:
        network, west, east = make_pair(west={"mode": "AGGRESSIVE"})
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        box[0].trap(ExchangeFailed)
        self.assertIn("configured for ID_PROT", east.log_text())
        self.assertEqual(east.engine.sadb.isakmp_sas(), [])
        self.assertEqual(exchange_calls(network.clock), [])

    def test_wrong_pre_shared_key(self) -> None:
        network, west, east = make_pair(west={"mode": "AGGRESSIVE"},
                                        east={"mode": "AGGRESSIVE", "psk": "other"})
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        box[0].trap(ExchangeFailed)
        self.assertIn("HASH_R does not match", west.log_text())
        self.assertEqual(west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(east.engine.sadb.isakmp_sas(), [])
        self.assertEqual(exchange_calls(network.clock), [])


class NatTraversalTests(SynchronousTestCase):

    def _check_floated(self, network, west, east) -> None:
        [wsa] = west.engine.sadb.isakmp_sas()
        [esa] = east.engine.sadb.isakmp_sas()
        self.assertTrue(wsa.nat.floated and esa.nat.floated)
        self.assertEqual(wsa.local[1], 4500)
        self.assertEqual(esa.local[1], 4500)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_initiator_behind_nat_main_mode(self) -> None:
        network, west, east = make_pair(east={"peer_ip_for_phase1": NAT_PUBLIC})
        network.nats.append(Nat(inside=WEST, public=NAT_PUBLIC))
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertTrue(box[0].ready, west.log_text())
        self._check_floated(network, west, east)
        [wsa] = west.engine.sadb.isakmp_sas()
        [esa] = east.engine.sadb.isakmp_sas()
        self.assertTrue(wsa.nat.we_are_behind)
        self.assertFalse(wsa.nat.peer_is_behind)
        self.assertTrue(esa.nat.peer_is_behind)
        self.assertEqual(esa.remote[0], NAT_PUBLIC)
        # MM1-MM4 on 500, MM5/MM6 on 4500.
        ports = [d.dst[1] for d in network.delivered]
        self.assertEqual(ports[:4], [500] * 4)
        self.assertEqual(ports[4], 4500)

    def test_responder_behind_nat_main_mode(self) -> None:
        network, west, east = make_pair(west={"peer_ip_for_phase1": NAT_PUBLIC},
                                        east={})
        # West talks to the NAT's public address, which forwards 500/4500 to east.
        west.engine.store.set("peer", "Address", NAT_PUBLIC, force=True)
        network.nats.append(Nat(inside=EAST, public=NAT_PUBLIC,
                                forward={500: (EAST, 500), 4500: (EAST, 4500)}))
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertEqual(len(box), 1, west.log_text())
        self._check_floated(network, west, east)
        [wsa] = west.engine.sadb.isakmp_sas()
        [esa] = east.engine.sadb.isakmp_sas()
        self.assertTrue(wsa.nat.peer_is_behind)
        self.assertTrue(esa.nat.we_are_behind)

    def test_initiator_behind_nat_aggressive_mode(self) -> None:
        network, west, east = make_pair(west={"mode": "AGGRESSIVE"},
                                        east={"mode": "AGGRESSIVE",
                                              "peer_ip_for_phase1": NAT_PUBLIC})
        network.nats.append(Nat(inside=WEST, public=NAT_PUBLIC))
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertTrue(box[0].ready)
        self._check_floated(network, west, east)
        ports = [d.dst[1] for d in network.delivered]
        self.assertEqual(ports, [500, 500, 4500])

    def test_nat_t_disabled(self) -> None:
        network, west, _east = make_pair(east={"peer_ip_for_phase1": NAT_PUBLIC},
                                        nat_t=(False, True))
        network.nats.append(Nat(inside=WEST, public=NAT_PUBLIC))
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertTrue(box[0].ready)
        mm1 = Message.decode(network.delivered[0].data)
        vids = [bytes(p.data) for p in mm1.find(PayloadType.VENDOR)]
        self.assertFalse(set(vids) & set(NAT_T_VIDS))
        mm3 = Message.decode(network.delivered[2].data)
        self.assertEqual(mm3.find(PayloadType.NAT_D), [])
        [wsa] = west.engine.sadb.isakmp_sas()
        self.assertFalse(wsa.nat.floated)
        self.assertEqual([d.dst[1] for d in network.delivered], [500] * 6)
