"""SA lifetimes: soft expiry, rekeying, hard expiry with DELETE, RESPONDER-LIFETIME.

Two engines on the in-memory network and one task.Clock (tests/support/ikepair.py).
The test pair's defaults: phase 1 lifetime 3600 s ([LIFE_MAIN_MODE]), phase 2
1200 s ([LIFE_QUICK_MODE]); both gateways have ``conn`` in [Phase 2] Connections,
so both keep it up unless a test gives them a connection checker with another list.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike.connections import ConnectionManager
from isakmpd.ike.engine import DEFAULT_PHASE1_LIFETIME
from isakmpd.ike.phase1 import RESPONDER_LIFETIME_DELAY
from isakmpd.ike.sa import IpsecSA, IsakmpSA
from isakmpd.wire.constants import ExchangeType, NotifyType, ProtocolId
from isakmpd.wire.payloads import NotifyPayload
from tests.support.ikepair import (
    Node,
    advance,
    collect,
    decode,
    exchange_calls,
    kernel_sa_mismatches,
    lifetime_calls,
    make_pair,
    ready_ipsec,
)


def spis(node: Node) -> set[bytes]:
    return {key[1] for key in node.kernel.sas}


def hard_at(clock, sa) -> float:
    """When ``sa`` expires hard: its timer is armed once the soft one has fired."""
    calls = [c for c in lifetime_calls(clock, sa) if c.func.__name__ == "_hard_expired"]
    if calls:
        [call] = calls
        assert call.getTime() == sa.hard_at, (call.getTime(), sa.hard_at)
    else:
        assert soft_at(clock, sa) < sa.hard_at
    return sa.hard_at


def soft_at(clock, sa) -> float:
    [call] = [c for c in lifetime_calls(clock, sa) if c.func.__name__ == "_soft_expired"]
    assert call.getTime() == sa.soft_at, (call.getTime(), sa.soft_at)
    return call.getTime()


class TimerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network, self.west, self.east = make_pair()
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.ipsec = box[0]
        self.assertIsInstance(self.ipsec, IpsecSA)

    def test_every_ready_sa_has_soft_and_hard_expiry(self) -> None:
        clock = self.network.clock
        for node in (self.west, self.east):
            [isakmp] = node.engine.sadb.isakmp_sas()
            [ipsec] = node.engine.sadb.ipsec_sas()
            self.assertEqual(hard_at(clock, isakmp), 3600)
            self.assertTrue(0.85 * 3600 <= soft_at(clock, isakmp) <= 0.95 * 3600)
            self.assertEqual(hard_at(clock, ipsec), 1200)
            self.assertTrue(0.85 * 1200 <= soft_at(clock, ipsec) <= 0.95 * 1200)
            # Kilobytes and seconds also go to the kernel.
            self.assertTrue(all(k.life_seconds == 1200 for k in node.kernel.sas.values()))
        self.assertEqual(exchange_calls(clock), [])

    def test_one_timer_per_sa_soft_then_hard(self) -> None:
        """Only the next expiry has a timer: soft, then (from it) hard at hard_at."""
        clock = self.network.clock
        [ipsec] = self.east.engine.sadb.ipsec_sas()
        [call] = lifetime_calls(clock, ipsec)
        self.assertEqual((call.func.__name__, call.getTime()), ("_soft_expired", ipsec.soft_at))
        clock.advance(ipsec.soft_at - clock.seconds())
        [call] = lifetime_calls(clock, ipsec)
        self.assertEqual((call.func.__name__, call.getTime()), ("_hard_expired", 1200))
        self.assertTrue(ipsec.fading or ipsec.ready)

    def test_timers_view_shows_the_timer_slots_by_purpose(self) -> None:
        """``timers`` is a live mapping over the SA's call slots (no dict per SA)."""
        [ipsec] = self.east.engine.sadb.ipsec_sas()
        timers = ipsec.timers
        self.assertEqual(list(timers), ["soft"])
        self.assertIs(timers["soft"], ipsec.soft_call)
        self.assertIn("soft", timers)
        self.assertNotIn("hard", timers)
        self.assertIsNone(timers.get("replaced"))
        self.assertEqual(len(timers), 1)
        with self.assertRaises(KeyError):
            timers["other"] = None
        call = timers.pop("soft")
        self.assertIsNone(ipsec.soft_call)
        self.assertEqual(dict(ipsec.timers), {})
        timers["hard"] = call
        self.assertIs(ipsec.hard_call, call)
        ipsec.cancel_timers()
        self.assertIsNone(ipsec.hard_call)
        self.assertFalse(call.active())
        self.assertEqual(lifetime_calls(self.network.clock, ipsec), [])

    def test_soft_expiry_is_random_per_sa(self) -> None:
        clock = self.network.clock
        times = {soft_at(clock, sa) for node in (self.west, self.east)
                 for sa in node.engine.sadb.ipsec_sas()}
        self.assertEqual(len(times), 2)

    def test_removed_sa_leaves_no_timer(self) -> None:
        clock = self.network.clock
        [wsa] = self.west.engine.sadb.ipsec_sas()
        self.west.engine.delete_ipsec_sa(wsa)
        self.network.run()
        self.assertEqual(lifetime_calls(clock, wsa), [])
        for sa in self.east.engine.sadb.ipsec_sas():
            self.fail(f"east kept {sa}")
        self.west.engine.shutdown()
        self.east.engine.shutdown()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_phase1_without_negotiated_lifetime_gets_default(self) -> None:
        [isakmp] = self.west.engine.sadb.isakmp_sas()
        isakmp.suite = dataclasses.replace(isakmp.suite, life_seconds=None)
        self.west.engine.phase1_established(isakmp)
        self.assertEqual(isakmp.life_seconds, DEFAULT_PHASE1_LIFETIME)
        self.assertEqual(hard_at(self.network.clock, isakmp), DEFAULT_PHASE1_LIFETIME)

    def test_phase2_without_lifetime_has_no_timers(self) -> None:
        network, west, east = make_pair()
        for node in (west, east):
            node.engine.store.set("QM-ESP-AES-128-SHA-PFS-GRP19-XF", "Life", "ANY",
                                  force=True)
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text())
        for node in (west, east):
            [ipsec] = node.engine.sadb.ipsec_sas()
            self.assertIsNone(ipsec.life_seconds)
            self.assertEqual(lifetime_calls(network.clock, ipsec), [])
            [isakmp] = node.engine.sadb.isakmp_sas()
            self.assertEqual(len(lifetime_calls(network.clock, isakmp)), 1)


class RekeyTests(SynchronousTestCase):
    def test_soft_expiry_rekeys_kept_up_connection_and_old_sa_is_deleted(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_connection("conn"))
        network.run()
        clock = network.clock
        [old_w] = west.engine.sadb.ipsec_sas()
        [old_e] = east.engine.sadb.ipsec_sas()
        old_spis = spis(west)
        first_soft = min(soft_at(clock, old_w), soft_at(clock, old_e))
        advance(network, first_soft)
        # A new pair negotiated before the hard expiry; the old one still there.
        self.assertLess(clock.seconds(), 1200)
        self.assertEqual(len(ready_ipsec(west)), 2)
        self.assertEqual(len(ready_ipsec(east)), 2)
        self.assertTrue(old_w.replaced and old_e.replaced)
        # A short while later the rekeying side deletes the old SA with DELETE.
        advance(network, 15)
        self.assertLess(clock.seconds(), 1200)
        [new_w] = ready_ipsec(west)
        [new_e] = ready_ipsec(east)
        self.assertIsNot(new_w, old_w)
        self.assertFalse(old_spis & spis(west))
        self.assertFalse(old_spis & spis(east))
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertIn("peer deleted IPsec SA conn", west.log_text() + east.log_text())
        # The successor's flows survive the predecessor's removal.
        for node, new in ((west, new_w), (east, new_e)):
            self.assertEqual(len(node.kernel.flows), 3)
            self.assertTrue(all(f.reqid == new.reqid for f in node.kernel.flows))
        self.assertEqual(lifetime_calls(clock, old_w), [])
        self.assertEqual(lifetime_calls(clock, old_e), [])
        # And it goes on: after several lifetimes there is still one pair.
        advance(network, 3 * 1200, step=5)
        self.assertEqual(len(ready_ipsec(west)), 1)
        self.assertEqual(len(ready_ipsec(east)), 1)
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])

    def test_passive_mode_does_not_rekey_until_active(self) -> None:
        # isakmpd's exchange_establish: in passive mode (-S, "M passive") nothing is
        # initiated, rekeys included; the peer is still answered.
        network, west, east = make_pair()
        collect(west.engine.initiate_connection("conn"))
        network.run()
        for node in (west, east):
            ConnectionManager(node.engine, network.clock, passive=True).add("conn")
        [old_w] = west.engine.sadb.ipsec_sas()
        [old_e] = east.engine.sadb.ipsec_sas()
        advance(network, max(soft_at(network.clock, old_w), soft_at(network.clock, old_e)))
        self.assertEqual(ready_ipsec(west), [old_w])
        self.assertEqual(ready_ipsec(east), [old_e])
        self.assertIn("passive mode: not starting Quick Mode for conn", west.log_text())
        failed = collect(west.engine.initiate_phase1("peer-east", force=True))
        self.assertIn("passive mode: not starting phase 1", failed[0].getErrorMessage())
        # Active again (only west): at hard expiry the connection is renegotiated
        # before the old SA goes.
        west.engine.connection_manager.set_passive(False)
        advance(network, 1200 - network.clock.seconds() + 30)
        [new_w] = ready_ipsec(west)
        self.assertIsNot(new_w, old_w)
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])

    def test_not_kept_up_connection_fades_and_goes_at_hard_expiry(self) -> None:
        network, west, east = make_pair()
        for node in (west, east):
            ConnectionManager(node.engine, network.clock)    # never started: no active list
        collect(west.engine.initiate_connection("conn"))
        network.run()
        [old_w] = west.engine.sadb.ipsec_sas()
        advance(network, 1150, step=10)
        self.assertTrue(old_w.fading)
        self.assertEqual(ready_ipsec(west), [old_w])
        quick = [d for d in network.delivered if decode(d).exchange_type
                 == ExchangeType.QUICK_MODE]
        self.assertEqual(len(quick), 3)          # only the first Quick Mode
        advance(network, 60, step=10)
        for node in (west, east):
            self.assertEqual(node.engine.sadb.ipsec_sas(), [])
            self.assertEqual(node.kernel.sas, {})
            self.assertEqual(node.kernel.flows, [])
        self.assertIn("hard expiry", west.log_text())
        self.assertEqual(lifetime_calls(network.clock, old_w), [])

    def test_phase1_expiry_renegotiates_phase1_and_later_quick_modes_use_it(self) -> None:
        network, west, east = make_pair()
        for node in (west, east):
            node.engine.store.set("LIFE_MAIN_MODE", "LIFE_DURATION", "1500,60:86400",
                                  force=True)
            node.engine.store.set("LIFE_QUICK_MODE", "LIFE_DURATION", "1000,60:86400",
                                  force=True)
        collect(west.engine.initiate_connection("conn"))
        network.run()
        [first] = west.engine.sadb.isakmp_sas()
        self.assertEqual(first.life_seconds, 1500)
        advance(network, 1500, step=5)
        # The first ISAKMP SA has gone at its hard expiry, a new one replaced it.
        self.assertNotIn(first, west.engine.sadb.isakmp_sas())
        self.assertEqual(len(west.engine.sadb.isakmp_sas()), 1)
        self.assertEqual(len(east.engine.sadb.isakmp_sas()), 1)
        [second] = west.engine.sadb.isakmp_sas()
        self.assertTrue(second.ready)
        self.assertIn("renegotiating phase 1", west.log_text() + east.log_text())
        # The next phase 2 rekey runs on the new ISAKMP SA.
        advance(network, 600, step=5)
        [ipsec] = ready_ipsec(west)
        self.assertIs(ipsec.isakmp_sa, second)
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])

    def test_phase2_uses_the_newest_ready_isakmp_sa(self) -> None:
        network, west, _east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        collect(west.engine.initiate_phase1("peer", force=True))
        network.run()
        old, new = west.engine.sadb.isakmp_sas()
        self.assertTrue(old.replaced)
        self.assertFalse(new.replaced)
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIs(box[0].isakmp_sa, new)


class ResponderLifetimeTests(SynchronousTestCase):
    def test_quick_mode_responder_lifetime_sent_and_honoured(self) -> None:
        # East accepts at most 600 s; west offers 1200 s.
        network, west, east = make_pair()
        east.engine.store.set("LIFE_QUICK_MODE", "LIFE_DURATION", "600,60:600", force=True)
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        ipsec = box[0]
        self.assertIsInstance(ipsec, IpsecSA, west.log_text())
        self.assertIn("RESPONDER-LIFETIME", west.log_text())
        self.assertEqual(ipsec.life_seconds, 600)
        for node in (west, east):
            self.assertTrue(all(k.life_seconds == 600 for k in node.kernel.sas.values()))
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertEqual(hard_at(network.clock, ipsec), 600)
        self.assertLessEqual(soft_at(network.clock, ipsec), 0.95 * 600)

    def test_no_responder_lifetime_when_lifetime_accepted(self) -> None:
        network, west, east = make_pair()
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertNotIn("RESPONDER-LIFETIME", west.log_text() + east.log_text())
        self.assertEqual(box[0].life_seconds, 1200)

    def test_phase1_responder_lifetime_sent_and_honoured(self) -> None:
        network, west, east = make_pair()
        east.engine.store.set("LIFE_MAIN_MODE", "LIFE_DURATION", "600,60:600", force=True)
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        sa = box[0]
        self.assertIsInstance(sa, IsakmpSA, west.log_text())

        def infos() -> list:
            return [d for d in network.delivered if decode(d).exchange_type == ExchangeType.INFO]

        # Sent a moment after phase 1, so that the initiator has taken our last message.
        self.assertEqual(infos(), [])
        network.clock.advance(RESPONDER_LIFETIME_DELAY)
        network.run()
        sent = infos()
        self.assertEqual(len(sent), 1)
        self.assertTrue(decode(sent[0]).encrypted)
        self.assertEqual(sa.life_seconds, 600)
        self.assertIn("RESPONDER-LIFETIME shortens", west.log_text())
        self.assertEqual(hard_at(network.clock, sa), 600)
        self.assertLessEqual(soft_at(network.clock, sa), 0.95 * 600)
        [east_sa] = east.engine.sadb.isakmp_sas()
        self.assertEqual(east_sa.life_seconds, 600)

    def test_responder_lifetime_never_lengthens(self) -> None:
        network, west, east = make_pair()
        box = collect(west.engine.initiate_phase1("peer"))
        network.run()
        sa = box[0]
        [east_sa] = east.engine.sadb.isakmp_sas()
        from isakmpd.ike.informational import lifetime_data
        east.engine.send_protected_notify(
            east_sa, NotifyType.RESPONDER_LIFETIME, protocol=ProtocolId.ISAKMP,
            spi=east_sa.cookies, data=lifetime_data(ProtocolId.ISAKMP, 99999, None))
        network.run()
        self.assertEqual(sa.life_seconds, 3600)
        self.assertEqual(hard_at(network.clock, sa), 3600)

    def test_responder_lifetime_for_unknown_sa_ignored(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_connection("conn"))
        network.run()
        [east_sa] = east.engine.sadb.isakmp_sas()
        from isakmpd.ike.informational import lifetime_data
        east.engine.send_informational(east_sa, [NotifyPayload(
            NotifyType.RESPONDER_LIFETIME, ProtocolId.IPSEC_ESP, b"\x00\x00\x00\x01",
            lifetime_data(ProtocolId.IPSEC_ESP, 10, None))])
        network.run()
        [ipsec] = west.engine.sadb.ipsec_sas()
        self.assertEqual(ipsec.life_seconds, 1200)
        self.assertIn("RESPONDER-LIFETIME for no SA", west.log_text())

    def test_responder_lifetime_informational_for_ipsec_sa(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_connection("conn"))
        network.run()
        [east_sa] = east.engine.sadb.isakmp_sas()
        [east_ipsec] = east.engine.sadb.ipsec_sas()
        from isakmpd.ike.informational import lifetime_data
        east.engine.send_informational(east_sa, [NotifyPayload(
            NotifyType.RESPONDER_LIFETIME, ProtocolId.IPSEC_ESP,
            east_ipsec.our_spi(ProtocolId.IPSEC_ESP),
            lifetime_data(ProtocolId.IPSEC_ESP, 300, 1000))])
        network.run()
        [ipsec] = west.engine.sadb.ipsec_sas()
        self.assertEqual((ipsec.life_seconds, ipsec.life_kilobytes), (300, 1000))
        self.assertTrue(all(k.life_seconds == 300 and k.life_kilobytes == 1000
                            for k in west.kernel.sas.values()))
        self.assertEqual(hard_at(network.clock, ipsec), 300)
