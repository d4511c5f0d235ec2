"""Informational exchanges: DELETE and notifications, protected by HASH(1).

Covers isakmpd/ike/informational.py and the deleting side of the engine (inventory
§4.6, RFC 2409 §5.7): a DELETE from either side removes the IPsec SA (kernel SAs and
flows) on the other; deleting the ISAKMP SA removes it on the other side and keeps
the IPsec SAs; an unauthenticated or replayed DELETE, or one with a wrong hash,
removes nothing; shutdown sends DELETEs; an authenticated refusal ends a waiting
Quick Mode.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike.informational import Informational
from isakmpd.ike.sa import IpsecSA
from isakmpd.wire.constants import ExchangeType, NotifyType, ProtocolId
from isakmpd.wire.message import Message
from isakmpd.wire.payloads import DeletePayload, NotifyPayload
from tests.support.ikepair import WEST, collect, decode, exchange_calls, make_pair


class InformationalTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.network, self.west, self.east = make_pair()
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA)
        self.network.delivered.clear()

    def assert_ipsec_gone(self, node) -> None:
        self.assertEqual(node.engine.sadb.ipsec_sas(), [])
        self.assertEqual(node.kernel.sas, {})
        self.assertEqual(node.kernel.flows, [])

    def test_delete_from_initiator(self) -> None:
        [ipsec] = self.west.engine.sadb.ipsec_sas()
        self.west.engine.delete_ipsec_sa(ipsec)
        self.assert_ipsec_gone(self.west)
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)
        self.network.run()
        self.assert_ipsec_gone(self.east)
        [datagram] = self.network.delivered
        header = decode(datagram)
        self.assertEqual(header.exchange_type, ExchangeType.INFO)
        self.assertTrue(header.encrypted)
        self.assertNotEqual(header.message_id, 0)
        # Both ISAKMP SAs stay.
        self.assertTrue(self.west.engine.sadb.isakmp_sas()[0].ready)
        self.assertTrue(self.east.engine.sadb.isakmp_sas()[0].ready)
        self.assertEqual(exchange_calls(self.network.clock), [])

    def test_delete_from_responder(self) -> None:
        [ipsec] = self.east.engine.sadb.ipsec_sas()
        self.east.engine.delete_ipsec_sa(ipsec)
        self.network.run()
        self.assert_ipsec_gone(self.east)
        self.assert_ipsec_gone(self.west)
        self.assertIn("peer deleted", self.west.log_text())
        self.assertEqual(exchange_calls(self.network.clock), [])

    def test_delete_isakmp_sa(self) -> None:
        [sa] = self.west.engine.sadb.isakmp_sas()
        self.west.engine.delete_isakmp_sa(sa)
        self.network.run()
        self.assertEqual(self.west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(self.east.engine.sadb.isakmp_sas(), [])
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)
        self.assertEqual(len(self.east.kernel.sas), 2)
        self.assertEqual(exchange_calls(self.network.clock), [])
        # A new Quick Mode negotiates a new phase 1 first.
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA)
        self.assertEqual(len(self.east.engine.sadb.isakmp_sas()), 1)

    def test_replayed_delete_is_ignored(self) -> None:
        [ipsec] = self.west.engine.sadb.ipsec_sas()
        self.west.engine.delete_ipsec_sa(ipsec, notify=True)
        delete = self.network.queue[0]
        self.network.run()
        # New SAs, then the old DELETE again: nothing happens.
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.assertIsInstance(box[0], IpsecSA)
        before = dict(self.east.kernel.sas)
        lines = len(self.east.events)
        self.east.engine.datagram_received(delete.data, delete.dst, delete.src)
        self.assertEqual(self.east.kernel.sas, before)
        self.assertLessEqual(len(self.east.events) - lines, 1)

    def test_unauthenticated_delete_removes_nothing(self) -> None:
        [esa] = self.east.engine.sadb.isakmp_sas()
        [ipsec] = self.east.engine.sadb.ipsec_sas()
        spi = ipsec.spis[0].peer_spi
        cleartext = Message(esa.icookie, esa.rcookie, ExchangeType.INFO,
                            [DeletePayload(ProtocolId.IPSEC_ESP, 4, [spi])],
                            message_id=0x11111111).encode()
        sent = len(self.east.sender.sent)
        self.east.engine.datagram_received(cleartext, (self.east.ip, 500), (WEST, 500))
        # An unprotected DELETE with message ID 0 (as before an SA exists).
        cleartext0 = Message(esa.icookie, esa.rcookie, ExchangeType.INFO,
                             [DeletePayload(ProtocolId.IPSEC_ESP, 4, [spi])]).encode()
        self.east.engine.datagram_received(cleartext0, (self.east.ip, 500), (WEST, 500))
        self.assertEqual(len(self.east.sender.sent), sent)
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)
        self.assertEqual(len(self.east.kernel.sas), 2)

    def test_delete_with_wrong_hash_removes_nothing(self) -> None:
        [wsa] = self.west.engine.sadb.isakmp_sas()
        [ipsec] = self.west.engine.sadb.ipsec_sas()

        class Forged(Informational):
            def _hash(self, rest: bytes) -> bytes:
                return b"\x00" * 20 if self.initiator else super()._hash(rest)

        exchange = Forged(self.west.engine, wsa, initiator=True, message_id=0x22222222,
                          local=wsa.local, remote=wsa.remote,
                          payloads=[DeletePayload(ProtocolId.IPSEC_ESP, 4,
                                                  [ipsec.spis[0].our_spi])])
        exchange.start()
        sent = len(self.east.sender.sent)
        self.network.run()
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)
        self.assertEqual(len(self.east.kernel.sas), 2)
        self.assertEqual(len(self.east.sender.sent), sent)
        self.assertIn("HASH(1) does not match", self.east.log_text())
        self.assertEqual(exchange_calls(self.network.clock), [])

    def test_delete_for_another_peers_sa_is_ignored(self) -> None:
        # A DELETE naming an SPI the sender does not own removes nothing.
        [wsa] = self.west.engine.sadb.isakmp_sas()
        self.west.engine.send_informational(
            wsa, [DeletePayload(ProtocolId.IPSEC_ESP, 4, [b"\x00\x00\x99\x99"])])
        self.network.run()
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)
        self.assertIn("unknown", self.east.log_text())

    def test_protected_notification_logged(self) -> None:
        [wsa] = self.west.engine.sadb.isakmp_sas()
        self.west.engine.send_protected_notify(wsa, NotifyType.INVALID_SPI)
        self.network.run()
        self.assertIn("notified INVALID_SPI", self.east.log_text())
        self.assertEqual(len(self.east.engine.sadb.ipsec_sas()), 1)
        [datagram] = self.network.delivered
        self.assertTrue(decode(datagram).encrypted)

    def test_protected_initial_contact_removes_older_sas(self) -> None:
        [wsa] = self.west.engine.sadb.isakmp_sas()
        self.west.engine.send_informational(
            wsa, [NotifyPayload(NotifyType.INITIAL_CONTACT, ProtocolId.ISAKMP, wsa.cookies)])
        self.network.run()
        # The SA it came on stays; the IPsec SA negotiated before goes.
        self.assertEqual(len(self.east.engine.sadb.isakmp_sas()), 1)
        self.assertEqual(self.east.engine.sadb.ipsec_sas(), [])

    def test_shutdown_sends_deletes(self) -> None:
        self.west.engine.shutdown()
        self.assert_ipsec_gone(self.west)
        self.assertEqual(self.west.engine.sadb.isakmp_sas(), [])
        self.network.run()
        self.assert_ipsec_gone(self.east)
        self.assertEqual(self.east.engine.sadb.isakmp_sas(), [])
        # One ESP DELETE, one ISAKMP DELETE, both protected informational exchanges.
        headers = [decode(d) for d in self.network.delivered]
        self.assertEqual([h.exchange_type for h in headers], [ExchangeType.INFO] * 2)
        self.assertTrue(all(h.encrypted for h in headers))
        self.assertEqual(exchange_calls(self.network.clock), [])

    def test_quick_mode_refusal_ends_initiator_at_once(self) -> None:
        self.east.engine.store.set("p2-config", "Suites", "QM-ESP-3DES-SHA-SUITE",
                                   force=True)
        box = collect(self.west.engine.initiate_connection("conn"))
        self.network.run()
        self.assertEqual(len(box), 1)
        self.assertIn("NO_PROPOSAL_CHOSEN", box[0].value.message)
        note = [d for d in self.network.delivered if d.dst[0] == WEST]
        self.assertEqual(len(note), 1)
        self.assertTrue(decode(note[0]).encrypted)
        self.assertEqual(exchange_calls(self.network.clock), [])

    def test_r_u_there_answered(self) -> None:
        [wsa] = self.west.engine.sadb.isakmp_sas()
        self.west.engine.send_protected_notify(wsa, NotifyType.R_U_THERE,
                                               data=b"\x00\x00\x12\x34")
        self.network.run()
        self.assertEqual([d.dst[0] for d in self.network.delivered], [self.east.ip, WEST])
        self.assertIn("notified R_U_THERE_ACK", self.west.log_text())
        self.assertEqual(exchange_calls(self.network.clock), [])
