"""The engine's generic behaviour: SA database, dispatch, retransmission, bad input.

Covers isakmpd/ike/sa.py, exchange.py and engine.py (inventory §4.1): lookups in
the SA database; loss answered by a byte-identical resend after 7 s; the 7, 9, 11
... schedule, "giving up" after Retransmits and failure at Exchange-max-time with no
timer left; duplicates of the final message answered by resending our reply and
never processed twice; one phase 1 per peer at a time; and every kind of bad
datagram (truncated, garbage, unknown cookies, wrong version, wrong hash, replayed,
encrypted garbage, a valid message in the wrong state) getting at most one
notification and one log line, nothing raised, while a good exchange runs alongside.
"""

from __future__ import annotations

import struct

from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from isakmpd.crypto.random import SeededRandom
from isakmpd.ike.exchange import ExchangeFailed, FinishedExchange
from isakmpd.ike.sa import (
    ZERO_COOKIE,
    IpsecSA,
    IsakmpSA,
    SaDatabase,
    SaState,
    SpiPair,
)
from isakmpd.kernel.interface import IKernel
from isakmpd.transport.interface import IDatagramHandler, ISender
from isakmpd.wire.constants import (
    ExchangeType,
    Flag,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from isakmpd.wire.message import Message
from isakmpd.wire.payloads import (
    DeletePayload,
    HashPayload,
    NotifyPayload,
)
from tests.support.ikepair import (
    EAST,
    EAST6,
    EAST6_NET,
    WEST,
    WEST6,
    WEST6_NET,
    Datagram,
    collect,
    decode,
    exchange_calls,
    make_pair,
)

ATTACKER = ("192.0.2.66", 500)


class SaDatabaseTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.db = SaDatabase()
        self.one = IsakmpSA(b"i" * 8, b"r" * 8, (WEST, 500), (EAST, 500), True, "peer-east",
                            0.0)
        self.two = IsakmpSA(b"j" * 8, ZERO_COOKIE, (WEST, 500), ("192.0.2.9", 500), False,
                            "Default-phase-1", 1.0)
        self.db.add_isakmp(self.one)
        self.db.add_isakmp(self.two)
        self.ipsec = IpsecSA("conn", self.one, (WEST, 500), (EAST, 500), True, 2.0,
                             spis=(SpiPair(ProtocolId.IPSEC_ESP, b"\x00\x00\x01\x00",
                                           b"\x00\x00\x02\x00"),))
        self.db.add_ipsec(self.ipsec)

    def test_isakmp_lookups(self) -> None:
        self.assertIs(self.db.find_isakmp(b"i" * 8, b"r" * 8), self.one)
        self.assertIsNone(self.db.find_isakmp(b"i" * 8, b"x" * 8))
        self.assertIs(self.db.find_isakmp_by_icookie(b"j" * 8), self.two)
        self.assertIsNone(self.db.find_isakmp_by_icookie(b"j" * 8, initiator=True))
        self.assertIs(self.db.find_isakmp_by_cookies(b"i" * 8 + b"r" * 8), self.one)
        self.assertIsNone(self.db.find_isakmp_by_cookies(b"short"))
        self.assertEqual(self.db.isakmp_by_address(EAST), [self.one])
        self.assertIsNone(self.db.isakmp_for_peer("PEER-EAST"))    # not ready
        self.one.state = SaState.READY
        self.assertIs(self.db.isakmp_for_peer("PEER-EAST"), self.one)
        self.assertEqual(self.one.cookies, b"i" * 8 + b"r" * 8)

    def test_ipsec_lookups(self) -> None:
        esp = ProtocolId.IPSEC_ESP
        self.assertIs(self.db.ipsec_by_our_spi(esp, b"\x00\x00\x01\x00"), self.ipsec)
        self.assertIs(self.db.ipsec_by_peer_spi(esp, b"\x00\x00\x02\x00", EAST), self.ipsec)
        self.assertIsNone(self.db.ipsec_by_peer_spi(esp, b"\x00\x00\x02\x00", "192.0.2.9"))
        self.assertIsNone(self.db.ipsec_by_our_spi(ProtocolId.IPSEC_AH, b"\x00\x00\x01\x00"))
        self.assertEqual(self.db.ipsec_by_name("CONN"), [self.ipsec])
        self.assertEqual(self.db.ipsec_for_isakmp(self.one), [self.ipsec])
        self.assertEqual(self.db.ipsec_by_address(EAST), [self.ipsec])

    def test_removal(self) -> None:
        self.db.remove_ipsec(self.ipsec)
        self.assertEqual(self.db.ipsec_sas(), [])
        self.assertEqual(self.ipsec.state, SaState.DEAD)
        self.db.remove_isakmp(self.one)
        self.assertEqual(self.db.isakmp_sas(), [self.two])
        self.db.remove_isakmp(self.one)      # twice is harmless
        # Gone from every index, not only from the lists.
        self.assertIsNone(self.db.find_isakmp(b"i" * 8, b"r" * 8))
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", EAST), [])
        self.assertEqual(self.db.ipsec_live_by_peer("conn", EAST), [])
        self.assertEqual(self.db.ipsec_for_isakmp(self.one), [])
        self.assertEqual(self.db.ipsec_by_name("conn"), [])

    def test_peer_index_follows_moves(self) -> None:
        """A road warrior's SAs share a section name; the index also keys the address."""
        self.assertEqual(self.db.isakmp_live_by_peer("PEER-east", EAST), [self.one])
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", "192.0.2.9"), [])
        self.assertEqual(self.db.ipsec_live_by_peer("Conn", EAST), [self.ipsec])
        self.db.move_isakmp(self.one, (WEST, 4500), ("203.0.113.7", 4501))
        self.assertEqual((self.one.local, self.one.remote), ((WEST, 4500), ("203.0.113.7", 4501)))
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", EAST), [])
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", "203.0.113.7"), [self.one])
        self.assertEqual(self.db.isakmp_by_address("203.0.113.7"), [self.one])
        self.assertEqual(self.db.isakmp_by_address(EAST), [])
        self.assertEqual(self.db.ipsec_by_address(EAST), [self.ipsec])
        # A port-only move (the float) keeps the entry.
        self.db.move_isakmp(self.one, (WEST, 4500), ("203.0.113.7", 4500))
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", "203.0.113.7"), [self.one])
        self.db.remove_isakmp(self.one)
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", "203.0.113.7"), [])
        self.assertEqual(self.db.isakmp_by_address("203.0.113.7"), [])

    def test_replaced_sas_leave_the_live_index(self) -> None:
        """Rekeys must not make the search for predecessors grow with the history."""
        newer = IpsecSA("conn", self.one, (WEST, 500), (EAST, 500), True, 3.0)
        self.db.add_ipsec(newer)
        self.assertEqual(self.db.ipsec_live_by_peer("conn", EAST), [self.ipsec, newer])
        self.db.mark_replaced(self.ipsec)
        self.assertTrue(self.ipsec.replaced)
        self.assertEqual(self.db.ipsec_live_by_peer("conn", EAST), [newer])
        self.assertEqual(self.db.ipsec_by_address(EAST), [self.ipsec, newer])
        self.db.mark_replaced(self.ipsec)        # twice is harmless
        self.db.remove_ipsec(newer)
        self.assertEqual(self.db.ipsec_live_by_peer("conn", EAST), [])
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", EAST), [self.one])
        self.db.mark_replaced(self.one)
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", EAST), [])
        self.db.move_isakmp(self.one, (WEST, 4500), ("203.0.113.7", 4500))
        self.assertEqual(self.db.isakmp_live_by_peer("peer-east", "203.0.113.7"), [])
        self.assertEqual(self.db.isakmp_by_address("203.0.113.7"), [self.one])

    def test_same_cookie_from_two_peers(self) -> None:
        """Peers choose initiator cookies: two may collide; both SAs stay findable."""
        twin = IsakmpSA(b"i" * 8, b"s" * 8, (WEST, 500), ("192.0.2.9", 500), False,
                        "Default-phase-1", 3.0)
        self.db.add_isakmp(twin)
        self.assertIs(self.db.find_isakmp(b"i" * 8, b"r" * 8), self.one)
        self.assertIs(self.db.find_isakmp(b"i" * 8, b"s" * 8), twin)
        self.assertIs(self.db.find_isakmp_by_icookie(b"i" * 8, initiator=False), twin)
        self.db.remove_isakmp(self.one)
        self.assertIs(self.db.find_isakmp_by_icookie(b"i" * 8), twin)

    def test_many_sas_under_one_key_and_back_to_one(self) -> None:
        """An index keeps a lone SA as itself and a list only while a key is shared:
        lookups must see the same SAs, oldest first, through every change."""
        sas = [IsakmpSA(b"k" * 8, bytes([n]) * 8, (WEST, 500), ("192.0.2.9", 500), False,
                        "Default-phase-1", float(n)) for n in range(1, 5)]
        ipsecs = [IpsecSA("road", sas[0], (WEST, 500), ("192.0.2.9", 500), False, float(n))
                  for n in range(4)]
        for sa in sas:
            self.db.add_isakmp(sa)
        for ipsec in ipsecs:
            self.db.add_ipsec(ipsec)
        self.db.add_isakmp(sas[1])                # twice is harmless
        self.assertEqual(self.db.isakmp_by_address("192.0.2.9"), [self.two, *sas])
        self.assertEqual(self.db.isakmp_live_by_peer("default-phase-1", "192.0.2.9"),
                         [self.two, *sas])
        for n, sa in enumerate(sas, 1):
            self.assertIs(self.db.find_isakmp(b"k" * 8, bytes([n]) * 8), sa)
        self.assertEqual(self.db.ipsec_for_isakmp(sas[0]), ipsecs)
        self.assertEqual(self.db.ipsec_by_name("ROAD"), ipsecs)
        # A copy: changing it leaves the index alone.
        self.db.ipsec_by_name("road").clear()
        self.assertEqual(self.db.ipsec_by_name("road"), ipsecs)
        # Down to one, in any order, then to none.
        self.db.remove_isakmp(sas[2])
        self.db.mark_replaced(sas[0])
        self.db.remove_isakmp(sas[0])
        self.db.remove_isakmp(sas[3])
        self.assertIs(self.db.find_isakmp_by_icookie(b"k" * 8), sas[1])
        self.assertIsNone(self.db.find_isakmp(b"k" * 8, bytes([1]) * 8))
        self.assertEqual(self.db.isakmp_by_address("192.0.2.9"), [self.two, sas[1]])
        self.db.remove_isakmp(self.two)
        self.assertEqual(self.db.isakmp_by_address("192.0.2.9"), [sas[1]])
        self.assertEqual(self.db.isakmp_live_by_peer("Default-phase-1", "192.0.2.9"),
                         [sas[1]])
        self.db.remove_isakmp(self.two)          # an SA no longer there: harmless
        self.db.remove_isakmp(sas[1])
        self.assertEqual(self.db.isakmp_by_address("192.0.2.9"), [])
        self.assertIsNone(self.db.find_isakmp_by_icookie(b"k" * 8))
        for ipsec in ipsecs[:3]:
            self.db.remove_ipsec(ipsec)
        self.assertEqual(self.db.ipsec_for_isakmp(sas[0]), [ipsecs[3]])
        self.assertEqual(self.db.ipsec_live_by_peer("road", "192.0.2.9"), [ipsecs[3]])
        # Shared again after going back to one.
        self.db.add_ipsec(ipsecs[0])
        self.assertEqual(self.db.ipsec_by_address("192.0.2.9"), [ipsecs[3], ipsecs[0]])
        self.db.move_ipsec(ipsecs[3], (WEST, 4500), ("203.0.113.7", 4500))
        self.assertEqual(self.db.ipsec_by_address("192.0.2.9"), [ipsecs[0]])
        self.assertEqual(self.db.ipsec_by_address("203.0.113.7"), [ipsecs[3]])
        self.db.remove_ipsec(ipsecs[0])
        self.db.remove_ipsec(ipsecs[3])
        self.assertEqual(self.db.ipsec_sas(), [self.ipsec])
        self.assertEqual(self.db.ipsec_by_name("road"), [])
        self.assertEqual(self.db.ipsec_for_isakmp(sas[0]), [])

    def test_message_ids_are_bounded(self) -> None:
        for mid in range(1, 300):
            self.one.remember_message_id(mid)
        self.assertEqual(len(self.one.used_message_ids), IsakmpSA.MAX_REMEMBERED_IDS)
        self.assertIn(299, self.one.used_message_ids)
        self.assertNotIn(1, self.one.used_message_ids)

    def test_repr_has_no_keys(self) -> None:
        self.assertIn("peer-east", repr(self.one))
        self.assertIn("conn", repr(self.ipsec))


class InterfaceTests(SynchronousTestCase):

    def test_providers(self) -> None:
        _network, west, _east = make_pair()
        verifyObject(IDatagramHandler, west.engine)
        verifyObject(ISender, west.sender)
        verifyObject(IKernel, west.kernel)


class RetransmissionTests(SynchronousTestCase):

    def test_lost_first_message_resent_identical(self) -> None:
        network, west, _east = make_pair()
        box = collect(west.engine.initiate_phase1("peer"))
        [mm1] = network.drop_next()
        network.clock.advance(6.9)
        self.assertEqual(network.queue, [])
        network.clock.advance(0.1)
        self.assertEqual(len(network.queue), 1)
        self.assertEqual(network.queue[0].data, mm1.data)
        network.run()
        self.assertTrue(box[0].ready)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_lost_encrypted_message_resent_identical(self) -> None:
        network, west, east = make_pair()
        box = collect(west.engine.initiate_phase1("peer"))
        for _ in range(4):
            network.step()
        [mm5] = network.drop_next()
        self.assertTrue(decode(mm5).encrypted)
        network.clock.advance(7)
        # East's MM4 timer fires too (it cannot know MM4 arrived); west's MM5 is resent.
        self.assertIn(mm5.data, [d.data for d in network.queue])
        network.run()
        self.assertTrue(box[0].ready)
        self.assertEqual(len(east.engine.sadb.isakmp_sas()), 1)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_gives_up_after_retransmits_then_fails_at_max_time(self) -> None:
        network, west, _east = make_pair()
        box = collect(west.engine.initiate_phase1("peer"))
        times = []
        for second in range(200):
            if network.queue:
                times.append(second)
                network.queue.clear()
            if box:
                break
            network.clock.advance(1)
        self.assertEqual(times, [0, 7, 16, 27])       # 4 sends: 7, 9, 11 s apart
        self.assertEqual(len(west.sender.sent), 4)
        self.assertIn("giving up", west.log_text())
        box[0].trap(ExchangeFailed)
        self.assertEqual(network.clock.seconds(), 120)
        self.assertIn("timed out", box[0].value.message)
        self.assertEqual(exchange_calls(network.clock), [])
        self.assertEqual(west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(west.engine.exchanges(), [])

    def test_retransmits_setting(self) -> None:
        network, west, _east = make_pair(west={"retransmits": 1, "max_time": 30})
        box = collect(west.engine.initiate_phase1("peer"))
        network.queue.clear()
        network.clock.pump([1] * 40)
        self.assertEqual(len(west.sender.sent), 2)
        box[0].trap(ExchangeFailed)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_new_message_cancels_retransmission(self) -> None:
        network, west, _east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.step()                  # MM1 to east; MM2 queued
        network.step()                  # MM2 to west: MM1's timer goes, MM3's starts
        calls = exchange_calls(network.clock)
        west_timers = [c for c in calls if c.func.__self__.engine is west.engine
                       and c.func.__name__ == "_tick"]
        self.assertEqual(len(west_timers), 1)
        self.assertEqual(west_timers[0].getTime(), 7)

    def test_responder_timer_woken_early_retransmits_on_time(self) -> None:
        # East's one timer is set at its start for 7 s; its MM4, sent at 3 s, is
        # due again at 10 s: the timer wakes at 7, sends nothing, and is set again.
        network, west, east = make_pair()
        box = collect(west.engine.initiate_phase1("peer"))
        network.step()                  # MM1 to east at 0 s: MM2 queued
        network.clock.advance(3)
        network.step()                  # MM2 to west: MM3 queued
        network.step()                  # MM3 to east at 3 s: MM4 queued
        [mm4] = network.drop_next()
        east_sent = len(east.sender.sent)
        network.clock.advance(6.5)      # 9.5 s: west resends MM3 at 10 s only
        self.assertEqual(len(east.sender.sent), east_sent)
        self.assertEqual(network.queue, [])
        network.clock.advance(0.5)
        self.assertEqual([d.data for d in east.sender.sent[east_sent:]], [mm4.data])
        network.run()
        self.assertTrue(box[0].ready)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_duplicate_final_message_answered_by_resending_reply(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        mm5, mm6 = network.delivered[4], network.delivered[5]
        east_sent = len(east.sender.sent)
        network.queue.append(mm5)
        network.step()
        self.assertEqual(len(east.sender.sent), east_sent + 1)
        self.assertEqual(east.sender.sent[-1].data, mm6.data)
        network.run()                   # west ignores the duplicate MM6
        self.assertEqual(len(east.engine.sadb.isakmp_sas()), 1)
        self.assertEqual(len(west.engine.sadb.isakmp_sas()), 1)
        self.assertEqual(exchange_calls(network.clock), [])

    def test_finished_exchange_keeps_only_what_answers_duplicates(self) -> None:
        """The engine keeps a summary; an old or foreign message gets one log line."""
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        [main] = east.finished_of(ExchangeType.ID_PROT)
        self.assertIsNotNone(main.dh_pair)          # the observer saw the whole exchange
        [sa] = east.engine.sadb.isakmp_sas()
        record = east.engine._finished[sa][0]
        self.assertIsInstance(record, FinishedExchange)
        self.assertFalse(hasattr(record, "dh_pair"))
        self.assertFalse(hasattr(record, "__dict__"))
        self.assertEqual(record.last_sent, network.delivered[5].data)
        mm3 = network.delivered[2]
        east_sent = len(east.sender.sent)
        network.queue.append(mm3)       # an old message of the finished exchange
        network.step()
        self.assertEqual(len(east.sender.sent), east_sent)
        self.assertIn("after the exchange finished, ignored", east.log_text())
        self.assertTrue(sa.ready)
        # The initiator's record answers nothing: its last message was not a reply.
        [wsa] = west.engine.sadb.isakmp_sas()
        self.assertIsNone(west.engine._finished[wsa][0].last_sent)

    def test_duplicate_first_message_answered_once_each(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        mm1 = network.queue[0]
        network.step()
        mm2 = network.queue.pop(0)      # lost
        network.queue.append(mm1)       # the initiator's resend
        network.step()
        self.assertEqual(network.queue[0].data, mm2.data)
        self.assertEqual(len(east.engine.sadb.isakmp_sas()), 1)

    def test_one_phase1_per_peer(self) -> None:
        network, west, _east = make_pair()
        first = collect(west.engine.initiate_phase1("peer"))
        second = collect(west.engine.initiate_phase1("peer"))
        network.run()
        self.assertIs(first[0], second[0])
        mm1s = [d for d in west.sender.sent if decode(d).rcookie == ZERO_COOKIE]
        self.assertEqual(len(mm1s), 1)
        third = collect(west.engine.initiate_phase1("peer"))
        self.assertIs(third[0], first[0])

    def test_unusable_configuration_fails_cleanly(self) -> None:
        network, west, _east = make_pair()
        west.engine.store.set("p1-config", "Transforms", "NO-SUCH-TRANSFORM", force=True)
        box = collect(west.engine.initiate_phase1("peer"))
        box[0].trap(ExchangeFailed)
        self.assertIn("NO-SUCH-TRANSFORM", west.log_text())
        self.assertEqual(network.queue, [])
        self.assertEqual(west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(exchange_calls(network.clock), [])
        self.assertEqual([e for e in west.events if "log_failure" in e], [])

    def test_rcookie_adopted_only_from_the_peer(self) -> None:
        network, west, _east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        [mm1] = network.drop_next()
        forged = Message(decode(mm1).icookie, b"f" * 8, ExchangeType.ID_PROT, []).encode()
        west.engine.datagram_received(forged, (WEST, 500), ATTACKER)
        [sa] = west.engine.sadb.isakmp_sas()
        self.assertEqual(sa.rcookie, ZERO_COOKIE)

    def test_peer_address_canonicalised(self) -> None:
        # Address/Local-address as written in isakmpd.conf need not be canonical;
        # the reply comes from the canonical address and must adopt the rcookie.
        network, west, _east = make_pair(
            west={"id_type": "IPV6_ADDR_SUBNET"}, east={"id_type": "IPV6_ADDR_SUBNET"},
            west_ip=WEST6, east_ip=EAST6, west_net=WEST6_NET, east_net=EAST6_NET)
        west.engine.store.set("peer", "Address", "2001:0DB8:0::2", force=True)
        west.engine.store.set("peer", "Local-address", "2001:DB8::0001", force=True)
        box = collect(west.engine.initiate_phase1("peer"))
        [sa] = west.engine.sadb.isakmp_sas()
        self.assertEqual((sa.local, sa.remote), ((WEST6, 500), (EAST6, 500)))
        self.assertEqual(network.queue[0].dst, (EAST6, 500))
        network.run()
        self.assertIsInstance(box[0], IsakmpSA, west.log_text())
        self.assertNotEqual(sa.rcookie, ZERO_COOKIE)

    def test_unknown_peer_section(self) -> None:
        network, west, _east = make_pair()
        box = collect(west.engine.initiate_phase1("nonexistent"))
        box[0].trap(ExchangeFailed)
        box = collect(west.engine.initiate_connection("nonexistent"))
        box[0].trap(ExchangeFailed)
        self.assertEqual(network.queue, [])


def _header(icookie: bytes, rcookie: bytes, exchange: int, length: int, *, version: int = 0x10,
            flags: int = 0, mid: int = 0, next_payload: int = 0) -> bytes:
    return struct.pack("!8s8sBBBBII", icookie, rcookie, next_payload, version, exchange, flags,
                       mid, length)


class BadInputTests(SynchronousTestCase):
    """Each bad datagram: at most one answer, one log line, nothing raised."""

    def setUp(self) -> None:
        self.network, self.west, self.east = make_pair()
        self.rng = SeededRandom(99)

    def establish(self) -> tuple[IsakmpSA, IsakmpSA]:
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA)
        [wsa] = self.west.engine.sadb.isakmp_sas()
        [esa] = self.east.engine.sadb.isakmp_sas()
        return wsa, esa

    def inject(self, data: bytes, source: tuple[str, int] = ATTACKER,
               dst: tuple[str, int] = (EAST, 500)) -> tuple[int, list[str]]:
        """Deliver to east; return (datagrams east sent, log lines at info and above)."""
        east = self.east
        sent_before = len(east.sender.sent)
        events_before = len(east.events)
        east.engine.datagram_received(data, dst, source)
        new = east.events[events_before:]
        self.assertEqual([e for e in new if "log_failure" in e], [])
        lines = [e for e in new if e["log_level"] >= LogLevel.info]
        sent = east.sender.sent[sent_before:]
        self.network.queue = [d for d in self.network.queue if d not in sent]
        return len(sent), [str(e.get("log_format")) for e in lines]

    def check_alongside(self) -> None:
        """A good Main Mode + Quick Mode still completes."""
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA, self.east.log_text())
        self.assertEqual(exchange_calls(self.network.clock), [])

    def test_truncated(self) -> None:
        sent, lines = self.inject(b"\x01\x02\x03")
        self.assertEqual((sent, len(lines)), (0, 1))
        self.check_alongside()

    def test_length_mismatch(self) -> None:
        data = _header(b"a" * 8, ZERO_COOKIE, ExchangeType.ID_PROT, 500)
        sent, lines = self.inject(data)
        self.assertEqual((sent, len(lines)), (0, 1))
        self.check_alongside()

    def test_garbage(self) -> None:
        for size in (28, 60, 300):
            garbage = self.rng.random_bytes(size)
            sent, lines = self.inject(garbage)
            self.assertLessEqual(sent, 1)
            self.assertEqual(len(lines), 1)
        self.check_alongside()

    def test_wrong_version(self) -> None:
        data = _header(b"a" * 8, ZERO_COOKIE, ExchangeType.ID_PROT, 28, version=0x20)
        sent, lines = self.inject(data)
        self.assertEqual((sent, len(lines)), (1, 1))
        answer = Message.decode(self.east.sender.sent[-1].data)
        self.assertEqual(answer.first(PayloadType.NOTIFY).notify_type,
                         NotifyType.INVALID_MAJOR_VERSION)

    def test_unknown_cookies(self) -> None:
        data = _header(b"a" * 8, b"b" * 8, ExchangeType.ID_PROT, 28)
        sent, lines = self.inject(data)
        self.assertEqual((sent, len(lines)), (1, 1))
        answer = Message.decode(self.east.sender.sent[-1].data)
        self.assertEqual(answer.first(PayloadType.NOTIFY).notify_type,
                         NotifyType.INVALID_COOKIE)
        # A notification with unknown cookies is never answered.
        note = Message(b"a" * 8, b"b" * 8, ExchangeType.INFO,
                       [NotifyPayload(NotifyType.INVALID_COOKIE)]).encode()
        sent, lines = self.inject(note)
        self.assertEqual((sent, len(lines)), (0, 1))
        self.check_alongside()

    def test_quick_mode_setup_refused(self) -> None:
        data = _header(b"a" * 8, ZERO_COOKIE, ExchangeType.QUICK_MODE, 28)
        sent, lines = self.inject(data)
        self.assertEqual((sent, len(lines)), (1, 1))

    def test_encrypted_garbage_on_ready_sa(self) -> None:
        _wsa, esa = self.establish()
        body = self.rng.random_bytes(64)
        data = _header(esa.icookie, esa.rcookie, ExchangeType.QUICK_MODE, 28 + 64,
                       flags=Flag.ENC, mid=0x12345678, next_payload=PayloadType.HASH) + body
        sent, lines = self.inject(data, source=(WEST, 500))
        self.assertEqual((sent, len(lines)), (0, 1))
        self.assertEqual(self.east.engine.exchanges(), [])
        # A body that is not whole blocks.
        data = _header(esa.icookie, esa.rcookie, ExchangeType.INFO, 28 + 5, flags=Flag.ENC,
                       mid=0x12345679, next_payload=PayloadType.HASH) + b"12345"
        sent, lines = self.inject(data, source=(WEST, 500))
        self.assertEqual((sent, len(lines)), (0, 1))
        self.check_alongside()
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 2)

    def test_cleartext_phase2(self) -> None:
        _wsa, esa = self.establish()
        message = Message(esa.icookie, esa.rcookie, ExchangeType.INFO,
                          [HashPayload(b"\x00" * 20),
                           DeletePayload(ProtocolId.ISAKMP, 16, [esa.cookies])],
                          message_id=0x01020304)
        sent, lines = self.inject(message.encode(), source=(WEST, 500))
        self.assertEqual((sent, len(lines)), (0, 1))
        self.assertTrue(esa.ready)
        self.assertEqual(len(self.east.engine.sadb.isakmp_sas()), 1)

    def test_wrong_hash_quick_mode(self) -> None:
        wsa, _esa = self.establish()
        # West builds a QM1 whose HASH(1) is wrong.
        from isakmpd.ike.quick import QuickMode

        class BadHash(QuickMode):
            def send_qm1(self):
                payloads = super().send_qm1()
                return [HashPayload(b"\x00" * 20), *payloads[1:]]

        exchange = BadHash(self.west.engine, wsa, initiator=True, message_id=0x0badbad0,
                           local=wsa.local, remote=wsa.remote, connection="conn")
        exchange.start()
        [datagram] = self.network.queue
        self.network.queue.clear()
        exchange.abort("test over")
        sent, lines = self.inject(datagram.data, source=(WEST, 500))
        self.assertEqual((sent, len(lines)), (0, 1))
        self.assertIn("does not match", lines[0] + self.east.log_text())
        self.assertEqual(self.east.engine.exchanges(), [])
        self.check_alongside()

    def test_replayed_quick_mode(self) -> None:
        _wsa, _esa = self.establish()
        qm1 = next(d for d in self.network.delivered
                   if decode(d).exchange_type == ExchangeType.QUICK_MODE)
        before = set(self.east.kernel.sas)
        sent, lines = self.inject(qm1.data, source=(WEST, 500))
        self.assertEqual(sent, 0)
        self.assertLessEqual(len(lines), 1)
        self.assertEqual(set(self.east.kernel.sas), before)
        # Even once the finished exchange is forgotten, the message ID stays used.
        self.east.engine._finished.clear()
        sent, lines = self.inject(qm1.data, source=(WEST, 500))
        self.assertEqual((sent, len(lines)), (0, 1))
        self.assertIn("used before", lines[0])
        self.assertEqual(set(self.east.kernel.sas), before)

    def test_message_in_wrong_state(self) -> None:
        # East waits for MM3; an SA payload arrives instead (a stray MM1 copy).
        collect(self.west.engine.initiate_phase1("peer"))
        mm1 = self.network.queue[0]
        self.network.step()
        mm2 = self.network.queue.pop(0)
        header = decode(mm2)
        stray = Message.decode(mm1.data)
        stray.rcookie = header.rcookie
        sent, lines = self.inject(stray.encode(), source=(WEST, 500))
        self.assertLessEqual(sent, 1)
        self.assertEqual(len(lines), 1)
        # The exchange survives: MM2 delivered late, everything completes.
        self.network.queue.insert(0, mm2)
        self.network.run()
        self.assertEqual(len(self.east.engine.sadb.isakmp_sas()), 1)
        self.assertTrue(self.east.engine.sadb.isakmp_sas()[0].ready)

    def test_out_of_order(self) -> None:
        # The same seed gives the same bytes: capture QM3 in one run and deliver it to
        # east in a second, identical run before QM1 has arrived.
        network, west, _east = make_pair()
        collect(west.engine.initiate_connection("conn"))
        network.run()
        qm3 = [d for d in network.delivered
               if decode(d).exchange_type == ExchangeType.QUICK_MODE][2]
        box = collect(self.west.engine.initiate_connection("conn"))
        for _ in range(6):
            self.network.step()
        self.assertEqual(decode(self.network.queue[0]).exchange_type,
                         ExchangeType.QUICK_MODE)
        sent, lines = self.inject(qm3.data, source=(WEST, 500))
        self.assertEqual((sent, len(lines)), (0, 1))
        self.assertEqual(self.east.engine.exchanges(), [])
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA)
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)
        self.assertEqual(exchange_calls(self.network.clock), [])

    def test_unprotected_notifications_tear_nothing_down(self) -> None:
        _wsa, esa = self.establish()
        for notify in (NotifyType.INITIAL_CONTACT, NotifyType.NO_PROPOSAL_CHOSEN):
            note = Message(esa.icookie, esa.rcookie, ExchangeType.INFO,
                           [NotifyPayload(notify, ProtocolId.ISAKMP, esa.cookies)]).encode()
            sent, lines = self.inject(note, source=(WEST, 500))
            self.assertEqual((sent, len(lines)), (0, 1))
        self.assertTrue(esa.ready)
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)

    def test_sa_payload_garbage_in_phase1(self) -> None:
        body = b"\x00\x00\x00\x01\x00\x00\x00\x01"       # SA with no proposals
        data = _header(b"z" * 8, ZERO_COOKIE, ExchangeType.ID_PROT, 28 + 4 + len(body),
                       next_payload=PayloadType.SA) + struct.pack("!BBH", 0, 0,
                                                                 4 + len(body)) + body
        sent, lines = self.inject(data)
        self.assertLessEqual(sent, 1)
        self.assertEqual(len(lines), 1)
        self.assertEqual(self.east.engine.sadb.isakmp_sas(), [])
        self.assertEqual(exchange_calls(self.network.clock), [])


class DeterminismTests(SynchronousTestCase):

    def test_same_seed_same_bytes(self) -> None:
        runs = []
        for _ in range(2):
            network, west, _east = make_pair(seed=5)
            collect(west.engine.initiate_connection("conn"))
            network.run()
            runs.append([d.data for d in network.delivered])
        self.assertEqual(runs[0], runs[1])

    def test_engine_uses_given_clock(self) -> None:
        network, west, _east = make_pair()
        self.assertIsInstance(west.engine.clock, Clock)
        collect(west.engine.initiate_phase1("peer"))
        self.assertEqual(len(exchange_calls(network.clock)), 1)   # retransmit and deadline
        network.run()
        self.assertEqual(exchange_calls(network.clock), [])

    def test_datagram_kinds(self) -> None:
        self.assertTrue(Datagram(b"", (WEST, 500), (EAST, 500)).with_data(b"x").data == b"x")
