"""IPComp (RFC 3173, RFC 2407 §4.4.5) negotiated in Quick Mode between two engines.

Covers the IPCOMP protocol in isakmpd/ike/policy.py and quick.py with the memory
kernel: ESP+IPCOMP in tunnel and transport mode (the CPIs crosswise, 2 bytes on the
wire and 256..61439, no KEYMAT for IPCOMP, ESP in transport mode inside the IPComp
SA, flows naming both), PFS with an IPCOMP transform without a group, IPCOMP alone,
a responder that does not allow IPCOMP refusing with NO_PROPOSAL_CHOSEN naming it,
configurations refusing the transforms Linux cannot install (V42BIS, OUI), DELETE
of the bundle in both directions (one DELETE per protocol, the IPCOMP one with the
2-byte CPI, as isakmpd's message_send_delete), and the report lines.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config import load_config
from isakmpd.control.report import sa_result
from isakmpd.ike import policy
from isakmpd.ike.exchange import ExchangeFailed
from isakmpd.ike.sa import IpsecSA
from isakmpd.wire.constants import EncapsulationMode, IpcompTransform, ProtocolId
from isakmpd.wire.payloads import DeletePayload, TransformPayload
from tests.support.ikepair import (
    EAST,
    WEST,
    collect,
    establish,
    kernel_sa_mismatches,
    make_config,
    make_pair,
)

ESP_IPCOMP = "QM-ESP-AES-128-SHA-PFS-GRP19-IPCOMP-SUITE"
ESP_IPCOMP_TRP = "QM-ESP-TRP-AES-128-SHA-IPCOMP-SUITE"
IPCOMP_ALONE = "QM-IPCOMP-SUITE"


def ipcomp_sections(transform: str = "DEFLATE") -> str:
    """Suites with IPCOMP next to default ESP protocol sections, and alone."""
    return f"""
[{ESP_IPCOMP}]
Protocols=		QM-ESP-AES-128-SHA-PFS-GRP19,IPCOMP-TUNNEL

[{ESP_IPCOMP_TRP}]
Protocols=		QM-ESP-TRP-AES-128-SHA,IPCOMP-TRANSPORT

[{IPCOMP_ALONE}]
Protocols=		IPCOMP-TUNNEL

[IPCOMP-TUNNEL]
PROTOCOL_ID=		IPCOMP
Transforms=		IPCOMP-TUNNEL-XF

[IPCOMP-TUNNEL-XF]
TRANSFORM_ID=		{transform}
ENCAPSULATION_MODE=	TUNNEL
Life=			LIFE_QUICK_MODE

[IPCOMP-TRANSPORT]
PROTOCOL_ID=		IPCOMP
Transforms=		IPCOMP-TRANSPORT-XF

[IPCOMP-TRANSPORT-XF]
TRANSFORM_ID=		{transform}
ENCAPSULATION_MODE=	TRANSPORT
Life=			LIFE_QUICK_MODE
"""


def both(suites: str, transform: str = "DEFLATE") -> dict:
    side = {"suites": suites, "extra": ipcomp_sections(transform)}
    return {"west": dict(side), "east": dict(side)}


class IpcompTests(SynchronousTestCase):

    def establish(self, **kw) -> tuple:
        return establish(self, **kw)

    def check_bundle(self, west, east, mode: EncapsulationMode) -> None:
        """ESP and IPCOMP crosswise; the CPIs; no keys on IPComp; ESP inside."""
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertEqual(len(west.kernel.sas), 4)
        [wipsec] = west.engine.sadb.ipsec_sas()
        [eipsec] = east.engine.sadb.ipsec_sas()
        self.assertEqual([p.protocol for p in wipsec.spis],
                         [ProtocolId.IPSEC_ESP, ProtocolId.IPCOMP])
        wcomp = wipsec.spis[1]
        ecomp = eipsec.spis[1]
        self.assertEqual((len(wcomp.our_spi), len(wcomp.peer_spi)), (2, 2))
        self.assertEqual(wcomp.our_spi, ecomp.peer_spi)
        self.assertEqual(wcomp.peer_spi, ecomp.our_spi)
        for cpi in (wcomp.our_spi, wcomp.peer_spi):
            self.assertTrue(256 <= int.from_bytes(cpi, "big") <= 61439, cpi.hex())
        inbound = west.kernel.sas[(ProtocolId.IPCOMP, b"\0\0" + wcomp.our_spi, WEST)]
        outbound = west.kernel.sas[(ProtocolId.IPCOMP, b"\0\0" + wcomp.peer_spi, EAST)]
        self.assertEqual((inbound.src, inbound.dst), (EAST, WEST))
        self.assertEqual((outbound.src, outbound.dst), (WEST, EAST))
        for sa in (inbound, outbound):
            self.assertEqual(sa.comp_transform, IpcompTransform.DEFLATE)
            self.assertEqual((sa.enc_key, sa.auth_key), (b"", b""))    # no KEYMAT
            self.assertIsNone(sa.enc_transform)
            self.assertIsNone(sa.auth_algorithm)
            self.assertEqual(sa.replay_window, 0)
            self.assertEqual(sa.mode, mode)
            self.assertIsNone(sa.life_seconds)
        esp = [sa for sa in west.kernel.sas.values() if sa.protocol == ProtocolId.IPSEC_ESP]
        self.assertEqual(len(esp), 2)
        for sa in esp:
            self.assertEqual(sa.mode, EncapsulationMode.TRANSPORT)   # inside IPComp
            self.assertEqual(len(sa.enc_key), 16)
            self.assertEqual(sa.life_seconds, 1200)
        for flow in west.kernel.flows:
            self.assertTrue(flow.ipcomp)
            self.assertEqual(flow.protocol_sa, ProtocolId.IPSEC_ESP)
            self.assertEqual(flow.mode, mode)
            self.assertIn("+IPCOMP", flow.describe())

    def test_esp_ipcomp_tunnel(self) -> None:
        _network, west, east, ipsec = self.establish(**both(ESP_IPCOMP))
        self.check_bundle(west, east, EncapsulationMode.TUNNEL)
        self.assertEqual(ipsec.suite.pfs_group, 19)
        self.assertEqual(sorted(f.direction for f in west.kernel.flows),
                         ["fwd", "in", "out"])
        self.assertIn("IPCOMP:DEFLATE", ipsec.suite.describe())
        self.assertIn("IPCOMP", west.kernel.describe())
        self.assertEqual(west.kernel.reserved, set())
        self.assertEqual(east.kernel.reserved, set())

    def test_esp_ipcomp_transport(self) -> None:
        _network, west, east, _ipsec = self.establish(**both(ESP_IPCOMP_TRP))
        self.check_bundle(west, east, EncapsulationMode.TRANSPORT)
        self.assertEqual(sorted(f.direction for f in west.kernel.flows), ["in", "out"])

    def test_cpi_is_two_bytes_on_the_wire(self) -> None:
        network, west, _east = make_pair(**both(ESP_IPCOMP))
        offers = []
        original = policy.quick_mode_offer

        def spy(*args, **kw):
            result = original(*args, **kw)
            offers.append(result[0])
            return result

        self.patch(policy, "quick_mode_offer", spy)
        collect(west.engine.initiate_connection("conn"))
        network.run()
        [offer] = offers
        [esp, comp] = offer.proposals
        self.assertEqual((esp.number, comp.number), (1, 1))     # one suite, one number
        self.assertEqual(comp.protocol_id, ProtocolId.IPCOMP)
        self.assertEqual(len(comp.spi), 2)
        self.assertEqual(comp.transforms[0].transform_id, IpcompTransform.DEFLATE)

    def test_lzs(self) -> None:
        _network, west, _east, _ipsec = self.establish(**both(ESP_IPCOMP, "LZS"))
        comp = [sa for sa in west.kernel.sas.values() if sa.protocol == ProtocolId.IPCOMP]
        self.assertEqual({sa.comp_transform for sa in comp}, {IpcompTransform.LZS})

    def test_ipcomp_alone(self) -> None:
        _network, west, east, ipsec = self.establish(**both(IPCOMP_ALONE))
        self.assertEqual(kernel_sa_mismatches(west.kernel, east.kernel), [])
        self.assertEqual({sa.protocol for sa in west.kernel.sas.values()},
                         {ProtocolId.IPCOMP})
        self.assertEqual(len(west.kernel.sas), 2)
        for flow in west.kernel.flows:
            self.assertEqual(flow.protocol_sa, ProtocolId.IPCOMP)
            self.assertFalse(flow.ipcomp)
        self.assertEqual(ipsec.life_seconds, 1200)
        self.assertIsNone(ipsec.suite.pfs_group)

    def test_responder_not_allowing_ipcomp(self) -> None:
        network, west, east = make_pair(
            west={"suites": ESP_IPCOMP, "extra": ipcomp_sections()},
            east={"suites": "QM-ESP-AES-128-SHA-PFS-GRP19-SUITE"})
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertEqual(len(box), 1)
        box[0].trap(ExchangeFailed)
        self.assertIn("NO_PROPOSAL_CHOSEN", box[0].value.message)
        refusal = east.log_text()
        self.assertIn("protocols differ (IPSEC_ESP+IPCOMP offered, we accept IPSEC_ESP)", refusal)
        self.assertEqual(west.kernel.sas, {})
        self.assertEqual(east.kernel.sas, {})
        self.assertEqual(west.kernel.reserved, set())     # the CPI was given back
        self.assertEqual(east.kernel.reserved, set())

    def test_responder_choosing_the_proposal_without_ipcomp(self) -> None:
        # Responder allows only ESP while we offered ESP+IPCOMP and ESP: it picks
        # the second proposal; the IPCOMP CPI we reserved is released.
        network, west, east = make_pair(
            west={"suites": f"{ESP_IPCOMP},QM-ESP-AES-128-SHA-PFS-GRP19-SUITE",
                  "extra": ipcomp_sections()},
            east={"suites": "QM-ESP-AES-128-SHA-PFS-GRP19-SUITE"})
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertIsInstance(box[0], IpsecSA, west.log_text() + east.log_text())
        self.assertEqual({sa.protocol for sa in west.kernel.sas.values()},
                         {ProtocolId.IPSEC_ESP})
        self.assertEqual(west.kernel.reserved, set())
        self.assertFalse(any(f.ipcomp for f in west.kernel.flows))

    def test_delete_from_initiator(self) -> None:
        network, west, east, ipsec = self.establish(**both(ESP_IPCOMP))
        sent = []
        original = west.engine.send_informational

        def spy(sa, payloads):
            sent.extend(payloads)
            return original(sa, payloads)

        self.patch(west.engine, "send_informational", spy)
        west.engine.delete_ipsec_sa(ipsec)
        network.run()
        deletes = [p for p in sent if isinstance(p, DeletePayload)]
        self.assertEqual([(d.protocol_id, d.spi_size) for d in deletes],
                         [(ProtocolId.IPSEC_ESP, 4), (ProtocolId.IPCOMP, 2)])
        self.assertEqual(deletes[1].spis, [ipsec.spis[1].our_spi])
        self.assertEqual(west.kernel.sas, {})
        self.assertEqual(west.kernel.flows, [])
        self.assertEqual(east.kernel.sas, {})
        self.assertEqual(east.kernel.flows, [])
        self.assertEqual(east.engine.sadb.ipsec_sas(), [])
        self.assertIn("DELETE of unknown IPCOMP SA", east.log_text())  # went with ESP

    def test_ipcomp_delete_alone_removes_bundle(self) -> None:
        network, west, east, ipsec = self.establish(**both(ESP_IPCOMP))
        [carrier] = west.engine.sadb.isakmp_sas()
        west.engine.send_informational(carrier, [DeletePayload(
            ProtocolId.IPCOMP, 2, [ipsec.spis[1].our_spi])])
        network.run()
        self.assertEqual(east.engine.sadb.ipsec_sas(), [])
        self.assertEqual(east.kernel.sas, {})
        self.assertEqual(east.kernel.flows, [])

    def test_delete_from_responder(self) -> None:
        network, west, east, _ipsec = self.establish(**both(ESP_IPCOMP_TRP))
        [eipsec] = east.engine.sadb.ipsec_sas()
        east.engine.delete_ipsec_sa(eipsec)
        network.run()
        self.assertEqual(west.engine.sadb.ipsec_sas(), [])
        self.assertEqual(west.kernel.sas, {})
        self.assertEqual(east.kernel.sas, {})

    def test_report_lines(self) -> None:
        _network, west, _east, ipsec = self.establish(**both(ESP_IPCOMP))
        text = sa_result(west.engine)
        self.assertIn("Transform: IPCOMP", text)
        self.assertIn("Compression algorithm: DEFLATE", text)
        self.assertIn(f"SPI 1: {ipsec.spis[1].our_spi.hex()}", text)


class IpcompConfigTests(SynchronousTestCase):
    """What the configuration may say about IPCOMP, as validation and policy see it."""

    def store(self, transform: str, suite: str = ESP_IPCOMP, extra: str = "") -> tuple:
        text = make_config(local=WEST, peer=EAST, local_net="10.1.0.0/16",
                           remote_net="10.2.0.0/16", suites=suite,
                           extra=ipcomp_sections(transform) + extra)
        return load_config(text)

    def test_deflate_and_lzs_validate(self) -> None:
        for name in ("DEFLATE", "LZS"):
            store, diagnostics = self.store(name)
            self.assertEqual([d for d in diagnostics if d.severity == "error"], [])
            offer, group = policy.quick_mode_offer(store, "conn", lambda p: b"\0\0\1\0",
                                                   False)
            self.assertEqual(group, 19)
            self.assertEqual(offer.proposals[1].spi, b"\0\0\1\0")

    def test_v42bis_and_oui_not_installable(self) -> None:
        for name in ("V42BIS", "OUI"):
            store, _diagnostics = self.store(name)
            with self.assertRaises(policy.NegotiationError) as raised:
                policy.quick_mode_offer(store, "conn", lambda p: b"\0\0\1\0", False)
            self.assertIn(f"TRANSFORM_ID={name} cannot be installed",
                          raised.exception.message)

    def test_ipcomp_with_esp_and_ah_refused(self) -> None:
        store, _diagnostics = self.store("DEFLATE", "BIG-SUITE", """
[BIG-SUITE]
Protocols=		QM-ESP-AES-128-SHA,QM-AH-SHA,IPCOMP-TUNNEL
""")
        with self.assertRaises(policy.NegotiationError) as raised:
            policy.quick_mode_offer(store, "conn", lambda p: b"\0\0\1\0", False)
        self.assertIn("IPCOMP goes alone or with one of", raised.exception.message)

    def test_offered_v42bis_is_skipped(self) -> None:
        reading = policy._read_p2(ProtocolId.IPCOMP,
                                  TransformPayload(1, IpcompTransform.V42BIS, []))
        self.assertIn("V42BIS cannot be installed", reading.problem)
