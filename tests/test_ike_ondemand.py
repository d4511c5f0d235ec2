"""Negotiations started by the kernel's ACQUIRE (isakmpd.ike.ondemand), on engine pairs.

West gets the ACQUIRE of a policy an administrator installed (the policy's selector
west's network -> east's, its template west -> east); east answers with its
configured connection "conn" acting as a passive one. Checked: phase 1 and Quick
Mode with IDs from the selector, the mode of the template and the suites of
``[General] Default-phase-2-suites``; an ISAKMP SA that is up is reused; a repeated
ACQUIRE starts nothing; without a peer section for the gateway a log line says what
to add and nothing is sent; passive mode ignores ACQUIREs; the SAs get no flows, the
template's reqid and (outbound) the ACQUIRE's seq; a kernel soft EXPIRE renegotiates
one that carried traffic; the dynamic connection goes with its last SA.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike.connections import ConnectionManager
from isakmpd.ike.sa import SaState
from isakmpd.kernel.xfrm import AcquireEvent
from isakmpd.wire.constants import EncapsulationMode, ExchangeType, IdType, ProtocolId
from tests.support.ikepair import (
    EAST,
    EAST_NET,
    WEST,
    WEST_NET,
    collect,
    kernel_sa_mismatches,
    make_pair,
    ready_ipsec,
)

ESP = ProtocolId.IPSEC_ESP
TUNNEL = EncapsulationMode.TUNNEL
TRANSPORT = EncapsulationMode.TRANSPORT
SUITE = "QM-ESP-AES-128-SHA-PFS-GRP19-SUITE"


def acquire(seq: int = 5, *, reqid: int = 0, mode: EncapsulationMode = TUNNEL,
            src: str = WEST_NET, dst: str = EAST_NET, gateway: str = EAST,
            protocol: int = 0, dst_port: int = 0) -> AcquireEvent:
    """An ACQUIRE as the kernel sends it for a packet from src's first host to dst's."""
    return AcquireEvent(
        src.split("/")[0], dst.split("/")[0], protocol, 0, dst_port, src, dst, 1, "out", WEST, gateway,
        ESP, mode, reqid, seq, policy_protocol=protocol, policy_dst_port=dst_port)


class OnDemandTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.network, self.west, self.east = make_pair()
        self.west.engine.store.set("General", "Default-phase-2-suites", SUITE, force=True)

    def ondemand(self, name: str = "Connection-5") -> list[Any]:
        return ready_ipsec(self.west, name)

    def outbound(self, ipsec: Any) -> Any:
        return next(k for k in ipsec.kernel_sas if k.dst == EAST)

    def inbound(self, ipsec: Any) -> Any:
        return next(k for k in ipsec.kernel_sas if k.dst == WEST)

    def test_acquire_negotiates_phase1_and_quick_mode(self) -> None:
        self.west.engine.kernel_acquire(acquire(5))
        self.network.run()
        [ipsec] = self.ondemand()
        self.assertEqual(len(self.west.finished_of(ExchangeType.ID_PROT)), 1)
        # IDs from the policy's selector (subnets), the default suites, tunnel mode.
        self.assertEqual(ipsec.local_id.id_type, IdType.IPV4_ADDR_SUBNET)
        self.assertEqual(ipsec.remote_id.id_type, IdType.IPV4_ADDR_SUBNET)
        self.assertEqual(self.west.engine.store.get_str("Connection-5", "Flags"), "__ondemand")
        self.assertEqual(self.west.engine.store.get_list("Connection-5-configuration",
                                                         "Suites"), [SUITE])
        self.assertIn("AES", ipsec.suite.describe())
        # East took it as its passive "conn" (Local-ID east's net, Remote-ID west's).
        [theirs] = ready_ipsec(self.east, "conn")
        self.assertEqual(kernel_sa_mismatches(self.west.kernel, self.east.kernel), [])
        self.assertTrue(all(k.mode == TUNNEL for k in ipsec.kernel_sas))
        self.assertIn("kernel ACQUIRE (seq 5) for 203.0.113.0/25 -> 203.0.113.128/25 via "
                      "198.51.100.1: negotiating Connection-5 with peer",
                      self.west.log_text())
        # Not kept up: not in the checker's list.
        self.assertFalse(self.west.engine.keep_up("Connection-5"))
        self.assertFalse(ipsec.stay_alive)
        self.assertIsNotNone(theirs)

    def test_the_peer_rekeying_our_ondemand_connection_is_answered(self) -> None:
        # West has no connection of its own for these IDs: only the dynamic one.
        self.west.engine.store.remove("Phase 2", "Connections")
        self.west.engine.kernel_acquire(acquire(5, reqid=7))
        self.network.run()
        [ours] = self.ondemand()
        # East starts a new Quick Mode for its "conn" (a rekey from its side).
        self.east.engine.initiate_connection("conn")
        self.network.run()
        sas = self.ondemand()
        self.assertEqual(len(sas), 2, self.west.log_text())
        [answered] = [sa for sa in sas if sa is not ours]
        self.assertFalse(answered.initiator)
        # Answered under the dynamic connection: its reqid, and still no flows of
        # ours that would replace the administrator's policies.
        self.assertEqual([k.reqid for k in answered.kernel_sas], [7, 7])
        self.assertEqual(self.west.kernel.flows, [])
        self.assertTrue(all(k.acquire_seq is None for k in answered.kernel_sas))
        self.assertEqual(kernel_sa_mismatches(self.west.kernel, self.east.kernel), [])

    def test_without_a_dynamic_connection_the_peer_is_refused(self) -> None:
        self.west.engine.store.remove("Phase 2", "Connections")
        result = collect(self.east.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIn("INVALID_ID_INFORMATION", result[0].getErrorMessage())
        self.assertEqual(ready_ipsec(self.west, "conn"), [])
        self.assertEqual(len(self.west.kernel.sas), 0)

    def test_no_flows_template_reqid_and_seq_on_the_outbound_sa(self) -> None:
        self.west.engine.kernel_acquire(acquire(5, reqid=7))
        self.network.run()
        [ipsec] = self.ondemand()
        self.assertEqual(self.west.kernel.flows, [])
        self.assertEqual(ipsec.flows, [])
        self.assertEqual(ipsec.reqid, 7)
        self.assertEqual([k.reqid for k in ipsec.kernel_sas], [7, 7])
        self.assertEqual(self.outbound(ipsec).acquire_seq, 5)
        self.assertIsNone(self.inbound(ipsec).acquire_seq)
        self.assertIn("for ACQUIRE seq 5", self.west.kernel.describe())
        # East installs as usual, flows included.
        self.assertEqual(len(self.east.kernel.flows), 3)

    def test_template_reqid_zero_is_kept(self) -> None:
        # The kernel takes an SA for a template only with an equal reqid, 0 included.
        self.west.engine.kernel_acquire(acquire(5, reqid=0))
        self.network.run()
        [ipsec] = self.ondemand()
        self.assertEqual([k.reqid for k in ipsec.kernel_sas], [0, 0])

    def test_an_isakmp_sa_that_is_up_is_reused(self) -> None:
        phase1: list[Any] = []
        self.west.engine.initiate_phase1("peer").addCallback(phase1.append)
        self.network.run()
        [isakmp] = phase1
        self.west.engine.kernel_acquire(acquire(5))
        self.network.run()
        [ipsec] = self.ondemand()
        self.assertIs(ipsec.isakmp_sa, isakmp)
        self.assertEqual(len(self.west.finished_of(ExchangeType.ID_PROT)), 1)

    def test_a_second_acquire_while_negotiating_starts_nothing(self) -> None:
        self.west.engine.kernel_acquire(acquire(5))
        self.network.step()          # MM1 delivered; the negotiation runs
        self.west.engine.kernel_acquire(acquire(6))
        self.network.run()
        self.assertEqual(len(self.west.engine.ondemand.connections), 1)
        self.assertEqual(len(self.ondemand()), 1)
        self.assertEqual(self.ondemand("Connection-6"), [])
        self.assertEqual(len(self.west.finished_of(ExchangeType.ID_PROT)), 1)
        self.assertEqual(len(self.west.finished_of(ExchangeType.QUICK_MODE)), 1)
        # Other selectors are another connection, the protocol and port in its IDs
        # (east has no connection for them: it refuses, and the connection goes).
        store = self.west.engine.store
        self.west.engine.kernel_acquire(acquire(7, protocol=17, dst_port=53))
        self.assertIsNotNone(self.west.engine.ondemand.get("Connection-7"))
        self.assertEqual((store.get_str("Connection-7-remote", "Protocol"),
                          store.get_str("Connection-7-remote", "Port")), ("17", "53"))
        self.assertEqual((store.get_str("Connection-7-local", "Protocol"),
                          store.get_str("Connection-7-local", "Port")), ("17", None))
        self.network.run()
        self.assertIn("Quick Mode initiator for Connection-7", self.west.log_text())
        self.assertEqual(len(self.west.engine.ondemand.connections), 1)

    def test_no_peer_section_is_logged_and_nothing_sent(self) -> None:
        self.west.engine.kernel_acquire(acquire(5, gateway="203.0.113.200"))
        self.assertEqual(self.network.queue, [])
        self.assertIn("kernel ACQUIRE for 203.0.113.0/25 -> 203.0.113.128/25 via "
                      "203.0.113.200: no [Phase 1] peer has Address 203.0.113.200; add one",
                      self.west.log_text())
        self.assertEqual(self.west.engine.ondemand.connections, [])
        self.assertFalse(self.west.engine.store.has("Connection-5"))

    def test_passive_mode_ignores_acquire(self) -> None:
        ConnectionManager(self.west.engine, self.network.clock, passive=True)
        self.west.engine.kernel_acquire(acquire(5))
        self.assertEqual(self.network.queue, [])
        self.assertEqual(self.west.engine.ondemand.connections, [])
        self.assertNotIn("ACQUIRE", self.west.log_text())

    def test_transport_mode_template_offers_transport(self) -> None:
        west_host, east_host = f"{WEST}/32", f"{EAST}/32"
        self.network, self.west, self.east = make_pair(
            west_net=west_host, east_net=east_host, west={"id_type": "IPV4_ADDR"},
            east={"id_type": "IPV4_ADDR",
                  "suites": "QM-ESP-TRP-AES-128-SHA-PFS-GRP19-SUITE"})
        # A tunnel-mode suite as the default: offered as a transport-mode copy.
        self.west.engine.store.set("General", "Default-phase-2-suites", SUITE, force=True)
        self.west.engine.kernel_acquire(acquire(5, mode=TRANSPORT, src=west_host,
                                                dst=east_host))
        self.network.run()
        [ipsec] = self.ondemand()
        self.assertEqual(ipsec.local_id.id_type, IdType.IPV4_ADDR)
        self.assertTrue(all(k.mode == TRANSPORT for k in ipsec.kernel_sas))
        self.assertEqual(self.west.engine.store.get_list("Connection-5-configuration",
                                                         "Suites"),
                         ["ondemand-transport-" + SUITE])
        # The configured suite is untouched.
        self.assertEqual(self.west.engine.store.get_str(SUITE.removesuffix("-SUITE") + "-XF",
                                                        "ENCAPSULATION_MODE"), "TUNNEL")
        self.assertEqual(kernel_sa_mismatches(self.west.kernel, self.east.kernel), [])

    def test_kernel_soft_expire_renegotiates(self) -> None:
        self.west.engine.kernel_acquire(acquire(5, reqid=7))
        self.network.run()
        [old] = self.ondemand()
        out = self.outbound(old)
        self.west.engine.kernel_sa_expired(ESP, out.spi, out.dst, hard=False, bytes_used=4096)
        self.network.run()
        self.assertIn("kernel soft expiry of on-demand IPsec SA Connection-5",
                      self.west.log_text())
        sas = self.ondemand()
        self.assertEqual(len(sas), 2)
        self.assertTrue(old.replaced)
        [new] = [sa for sa in sas if sa is not old]
        # The same reqid, no seq (the larval state went with the first SA), no flows.
        self.assertEqual([k.reqid for k in new.kernel_sas], [7, 7])
        self.assertIsNone(self.outbound(new).acquire_seq)
        self.assertEqual(self.west.kernel.flows, [])
        self.assertEqual(len(self.west.finished_of(ExchangeType.ID_PROT)), 1)

    def test_soft_expire_of_an_idle_sa_is_not_renegotiated(self) -> None:
        self.west.engine.kernel_acquire(acquire(5))
        self.network.run()
        [ipsec] = self.ondemand()
        out = self.outbound(ipsec)
        self.west.engine.kernel_sa_expired(ESP, out.spi, out.dst, hard=False, bytes_used=0)
        self.network.run()
        self.assertEqual(self.ondemand(), [ipsec])
        self.assertIn("carried no traffic: not renegotiated", self.west.log_text())

    def test_the_engines_own_soft_expiry_lets_it_fade(self) -> None:
        self.west.engine.kernel_acquire(acquire(5))
        self.network.run()
        [ipsec] = self.ondemand()
        ipsec.timers["soft"].cancel()
        self.west.engine._soft_expired(ipsec)
        self.network.run()
        self.assertTrue(ipsec.fading)
        self.assertEqual(self.ondemand(), [ipsec])

    def test_the_connection_goes_with_its_last_sa(self) -> None:
        self.west.engine.kernel_acquire(acquire(5))
        self.network.run()
        [ipsec] = self.ondemand()
        inbound = self.inbound(ipsec)
        self.west.kernel.delete_sa(ESP, inbound.spi, inbound.dst)
        self.west.engine.kernel_sa_expired(ESP, inbound.spi, inbound.dst, hard=True)
        self.assertIs(ipsec.state, SaState.DEAD)
        self.assertEqual(self.west.engine.ondemand.connections, [])
        for section in ("Connection-5", "Connection-5-configuration", "Connection-5-local",
                        "Connection-5-remote"):
            self.assertFalse(self.west.engine.store.has(section), section)
        self.assertIn("on-demand connection Connection-5 dropped", self.west.log_text())
        # The next ACQUIRE for the same traffic negotiates afresh.
        self.west.engine.kernel_acquire(acquire(9))
        self.network.run()
        self.assertEqual(len(self.ondemand("Connection-9")), 1)

    def test_a_failed_negotiation_drops_the_connection(self) -> None:
        self.east.engine.store.set("p2-config", "Suites", "QM-ESP-3DES-SHA-SUITE", force=True)
        self.west.engine.kernel_acquire(acquire(5))
        self.network.run()
        self.assertEqual(self.ondemand(), [])
        self.assertIn("negotiation failed", self.west.log_text())
        self.assertEqual(self.west.engine.ondemand.connections, [])
        self.assertFalse(self.west.engine.store.has("Connection-5"))
        self.assertEqual(self.west.kernel.sas, {})
        self.assertEqual(self.west.kernel.reserved, set())

    def test_shutdown_deletes_on_demand_sas(self) -> None:
        self.west.engine.kernel_acquire(acquire(5))
        self.network.run()
        self.west.engine.shutdown()
        self.network.run()
        self.assertEqual(self.west.kernel.sas, {})
        self.assertEqual(ready_ipsec(self.east, "conn"), [])
