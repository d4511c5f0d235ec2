"""Simultaneous initiation: both gateways start the same connection at one tick.

Both sides have ``conn`` in [Phase 2] Connections and a running connection
checker. Whatever collides (two phase 1s, two Quick Modes, two rekeys), both must
end with working, matching SAs, and the number of SAs must stay bounded while the
clock runs through several Check-intervals and lifetimes.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike.connections import ConnectionManager
from isakmpd.wire.constants import ExchangeType
from tests.support.ikepair import (
    Network,
    Node,
    advance,
    collect,
    decode,
    kernel_sa_mismatches,
    make_pair,
    ready_ipsec,
)


def quick_modes(network: Network) -> int:
    """How many distinct Quick Mode exchanges crossed the network."""
    return len({(decode(d).icookie, decode(d).message_id) for d in network.delivered
                if decode(d).exchange_type == ExchangeType.QUICK_MODE})


class SimultaneousTests(SynchronousTestCase):
    def assert_one_matching_pair(self, west: Node, east: Node) -> None:
        [w] = ready_ipsec(west)
        [e] = ready_ipsec(east)
        self.assertEqual(set(w.spis), {type(p)(p.protocol, p.peer_spi, p.our_spi)
                                       for p in e.spis})
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertEqual(len(west.kernel.sas), 2)
        for node, sa in ((west, w), (east, e)):
            self.assertEqual(len(node.kernel.flows), 3)
            self.assertTrue(all(f.reqid == sa.reqid for f in node.kernel.flows))

    def test_both_start_at_the_same_tick(self) -> None:
        network, west, east = make_pair()
        managers = [ConnectionManager(node.engine, network.clock) for node in (west, east)]
        for manager in managers:
            manager.start()                        # both send MM1 before either is read
        network.run(1000)
        # Two phase 1s collided (INITIAL-CONTACT from both removed neither), both
        # peers agree which one new phase 2s use, and two Quick Modes collided.
        self.assertEqual(len(west.engine.sadb.isakmp_sas()), 2)
        self.assertEqual(len(east.engine.sadb.isakmp_sas()), 2)
        [kept_w] = [sa for sa in west.engine.sadb.isakmp_sas() if not sa.replaced]
        [kept_e] = [sa for sa in east.engine.sadb.isakmp_sas() if not sa.replaced]
        self.assertEqual(kept_w.cookies, kept_e.cookies)
        self.assertEqual(quick_modes(network), 2)
        self.assertEqual(len(ready_ipsec(west)), 2)
        self.assertEqual(len(ready_ipsec(east)), 2)
        for node in (west, east):
            self.assertTrue(all(sa.ready for sa in node.engine.sadb.isakmp_sas()))
        # Several Check-intervals later the twins have settled to one pair.
        advance(network, 5 * 60, step=5)
        self.assert_one_matching_pair(west, east)
        self.assertLessEqual(quick_modes(network), 2)
        started = quick_modes(network)
        advance(network, 5 * 60, step=5)
        self.assertEqual(quick_modes(network), started)   # the checker sees it up
        for manager in managers:
            manager.stop()

    def test_settles_over_several_lifetimes(self) -> None:
        network, west, east = make_pair()
        managers = [ConnectionManager(node.engine, network.clock) for node in (west, east)]
        for manager in managers:
            manager.start()
        for _ in range(4):
            for _ in range(1200 // 20):
                advance(network, 20, step=5)
                for node in (west, east):
                    self.assertLessEqual(len(ready_ipsec(node)), 2)
                    self.assertLessEqual(len(node.engine.sadb.isakmp_sas()), 3)
            self.assertGreaterEqual(len(ready_ipsec(west)), 1)
        # About one rekey per lifetime, not a storm.
        self.assertLessEqual(quick_modes(network), 2 + 2 * 4)
        advance(network, 30, step=5)
        self.assert_one_matching_pair(west, east)
        for manager in managers:
            manager.stop()

    def test_simultaneous_quick_modes_on_one_isakmp_sa(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_phase1("peer"))
        network.run()
        boxes = [collect(node.engine.initiate_connection("conn")) for node in (west, east)]
        network.run()
        self.assertTrue(all(len(box) == 1 and box[0].ready for box in boxes))
        self.assertEqual(len(ready_ipsec(west)), 2)
        # Both sides agree which twin is redundant; its initiator deletes it.
        losers = [sa for node in (west, east) for sa in ready_ipsec(node) if sa.replaced]
        self.assertEqual(len(losers), 2)
        self.assertEqual({frozenset((p.our_spi, p.peer_spi)) for sa in losers
                          for p in sa.spis}.__len__(), 1)
        advance(network, 15)
        self.assert_one_matching_pair(west, east)
        self.assertIn("peer deleted IPsec SA conn", west.log_text() + east.log_text())

    def test_simultaneous_rekey(self) -> None:
        network, west, east = make_pair()
        collect(west.engine.initiate_connection("conn"))
        network.run()
        [old_w] = west.engine.sadb.ipsec_sas()
        [old_e] = east.engine.sadb.ipsec_sas()
        # Both soft expiries fire at the same tick.
        for node, sa in ((west, old_w), (east, old_e)):
            sa.timers.pop("soft").cancel()
            node.engine._soft_expired(sa)
        network.run()
        advance(network, 15)
        self.assert_one_matching_pair(west, east)
        self.assertNotIn(old_w, west.engine.sadb.ipsec_sas())
        self.assertNotIn(old_e, east.engine.sadb.ipsec_sas())
