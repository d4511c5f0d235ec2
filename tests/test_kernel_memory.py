"""Tests of isakmpd.kernel: the KernelSA/KernelFlow values and the in-memory kernel."""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from isakmpd.crypto.random import SeededRandom
from isakmpd.kernel import IKernel, KernelError, KernelFlow, KernelSA, MemoryKernel
from isakmpd.wire.constants import AuthAlgorithm, EncapsulationMode, EspTransform, ProtocolId

ESP, AH = ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH
TUNNEL, TRANSPORT = EncapsulationMode.TUNNEL, EncapsulationMode.TRANSPORT
ENC_KEY = bytes(range(0x10, 0x34))          # 32-byte AES key + 4-byte salt
AUTH_KEY = bytes(range(0x80, 0xA0))


def esp_sa(spi: bytes = b"\x12\x34\x56\x78", dst: str = "192.0.2.2", **changes) -> KernelSA:
    sa = KernelSA(ESP, spi, "192.0.2.1", dst, TUNNEL, EspTransform.AES_GCM_16, ENC_KEY,
                  None, b"", reqid=7, life_seconds=3600)
    return dataclasses.replace(sa, **changes)


def flow(direction: str = "out", **changes) -> KernelFlow:
    value = KernelFlow("198.51.100.0/24", "203.0.113.0/25", direction=direction,
                       protocol_sa=ESP, mode=TUNNEL, tunnel_src="192.0.2.1",
                       tunnel_dst="192.0.2.2", reqid=7)
    return dataclasses.replace(value, **changes)


class KernelSATests(SynchronousTestCase):
    def test_repr_and_describe_never_show_keys(self) -> None:
        sa = esp_sa(auth_algorithm=AuthAlgorithm.HMAC_SHA2_256, auth_key=AUTH_KEY,
                    encap=(4500, 4501))
        for text in (repr(sa), sa.describe(), str(sa)):
            self.assertNotIn(ENC_KEY.hex(), text)
            self.assertNotIn(AUTH_KEY.hex(), text)
            self.assertNotIn(repr(ENC_KEY), text)
            self.assertNotIn(repr(AUTH_KEY), text)

    def test_describe_is_readable(self) -> None:
        sa = esp_sa(encap=(4500, 4501))
        self.assertEqual(
            sa.describe(),
            "IPSEC_ESP spi 0x12345678 192.0.2.1 -> 192.0.2.2 TUNNEL AES_GCM_16 (288-bit key "
            "incl. salt) reqid 7 life 3600s replay window 16 ESP-in-UDP 4500 -> 4501")

    def test_value(self) -> None:
        # A value: equal fields, equal SAs and hashes; replace() makes a changed copy.
        sa = esp_sa()
        self.assertEqual(sa, esp_sa())
        self.assertEqual(hash(sa), hash(esp_sa()))
        self.assertEqual(len({sa, esp_sa()}), 1)
        other = dataclasses.replace(sa, reqid=8)
        self.assertEqual((other.reqid, sa.reqid), (8, 7))
        self.assertNotEqual(other, sa)
        self.assertNotEqual(hash(other), hash(sa))

    def test_flow_fields_after_networks_are_keywords(self) -> None:
        self.assertRaises(TypeError, KernelFlow, "10.0.0.0/8", "10.1.0.0/16", "out")
        self.assertEqual(flow().protocol, 0)
        self.assertEqual(
            flow(protocol=17, src_port=500).describe(),
            "out 198.51.100.0/24 port 500 -> 203.0.113.0/25 proto 17 IPSEC_ESP TUNNEL "
            "192.0.2.1 -> 192.0.2.2 reqid 7")


class MemoryKernelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kernel = MemoryKernel(SeededRandom(42))

    def test_provides_ikernel(self) -> None:
        self.assertTrue(verifyObject(IKernel, self.kernel))

    def test_spis_are_four_bytes_at_least_256_and_unique(self) -> None:
        spis = [self.kernel.allocate_spi(ESP, "192.0.2.2", "192.0.2.1") for _ in range(500)]
        self.assertEqual(len(set(spis)), 500)
        for spi in spis:
            self.assertEqual(len(spi), 4)
            self.assertGreaterEqual(int.from_bytes(spi, "big"), 256)

    def test_spis_are_reproducible_from_the_seed(self) -> None:
        other = MemoryKernel(SeededRandom(42))
        self.assertEqual([self.kernel.allocate_spi(AH, "192.0.2.2", "192.0.2.1")
                          for _ in range(5)],
                         [other.allocate_spi(AH, "192.0.2.2", "192.0.2.1") for _ in range(5)])
        third = MemoryKernel(SeededRandom(43))
        self.assertNotEqual(self.kernel.allocate_spi(ESP, "192.0.2.2", "192.0.2.1"),
                            third.allocate_spi(ESP, "192.0.2.2", "192.0.2.1"))

    def test_spi_in_use_is_not_handed_out_again(self) -> None:
        # A source that repeats itself: first draw collides with an installed SA.
        class Repeating:
            def __init__(self) -> None:
                self.values = [0x1234, 0x1234, 0x1234, 0x5678]

            def random_bytes(self, count: int) -> bytes:
                raise AssertionError("not used")

            def randbelow(self, limit: int) -> int:
                return self.values.pop(0)

        kernel = MemoryKernel(Repeating())
        kernel.add_sa(esp_sa(spi=(0x1234 + 256).to_bytes(4, "big"), dst="192.0.2.1"))
        spi = kernel.allocate_spi(ESP, "192.0.2.2", "192.0.2.1")
        self.assertEqual(spi, (0x5678 + 256).to_bytes(4, "big"))

    def test_spi_space_exhausted_is_an_error(self) -> None:
        class Constant:
            def random_bytes(self, count: int) -> bytes:
                raise AssertionError("not used")

            def randbelow(self, limit: int) -> int:
                return 0

        kernel = MemoryKernel(Constant())
        self.assertEqual(kernel.allocate_spi(ESP, "192.0.2.2", "192.0.2.1"), b"\0\0\1\0")
        error = self.assertRaises(KernelError, kernel.allocate_spi, ESP, "192.0.2.2",
                                  "192.0.2.1")
        self.assertIn("no free IPSEC_ESP SPI for destination 192.0.2.1", str(error))
        # Another destination has its own SPI space.
        self.assertEqual(kernel.allocate_spi(ESP, "192.0.2.1", "192.0.2.9"), b"\0\0\1\0")

    def test_allocate_refuses_other_protocols_and_names(self) -> None:
        error = self.assertRaises(KernelError, self.kernel.allocate_spi, ProtocolId.ISAKMP,
                                  "192.0.2.2", "192.0.2.1")
        self.assertIn("ISAKMP is not supported", str(error))
        error = self.assertRaises(KernelError, self.kernel.allocate_spi, ESP, "192.0.2.2",
                                  "gateway.example")
        self.assertIn("'gateway.example' is not a numeric IP address", str(error))

    def test_add_and_delete_sa(self) -> None:
        spi = self.kernel.allocate_spi(ESP, "192.0.2.1", "192.0.2.2")
        sa = esp_sa(spi=spi)
        self.kernel.add_sa(sa)
        self.assertEqual(self.kernel.sas, {(ESP, spi, "192.0.2.2"): sa})
        self.assertEqual(self.kernel.reserved, set())
        self.kernel.delete_sa(ESP, spi, "192.0.2.2")
        self.assertEqual(self.kernel.sas, {})

    def test_duplicate_sa_refused(self) -> None:
        self.kernel.add_sa(esp_sa())
        error = self.assertRaises(KernelError, self.kernel.add_sa, esp_sa(reqid=8))
        self.assertEqual(str(error), "an IPSEC_ESP SA with SPI 0x12345678 to 192.0.2.2 "
                                     "already exists")
        self.assertEqual(self.kernel.sas[(ESP, b"\x12\x34\x56\x78", "192.0.2.2")].reqid, 7)
        # Same SPI, other destination or other protocol: a different SA.
        self.kernel.add_sa(esp_sa(dst="192.0.2.3"))
        self.kernel.add_sa(esp_sa(protocol=AH, enc_transform=None, enc_key=b"",
                                  auth_algorithm=AuthAlgorithm.HMAC_SHA, auth_key=AUTH_KEY))
        self.assertEqual(len(self.kernel.sas), 3)

    def test_ipv6_destinations_are_compared_normalised(self) -> None:
        self.kernel.add_sa(esp_sa(src="2001:db8::1", dst="2001:DB8:0::2"))
        self.assertRaises(KernelError, self.kernel.add_sa,
                          esp_sa(src="2001:db8::1", dst="2001:db8::2"))
        self.kernel.delete_sa(ESP, b"\x12\x34\x56\x78", "2001:db8:0:0::2")
        self.assertEqual(self.kernel.sas, {})

    def test_delete_unknown_sa_is_an_error(self) -> None:
        self.kernel.add_sa(esp_sa())
        error = self.assertRaises(KernelError, self.kernel.delete_sa, ESP,
                                  b"\x12\x34\x56\x79", "192.0.2.2")
        self.assertEqual(str(error), "no IPSEC_ESP SA with SPI 0x12345679 to 192.0.2.2")
        self.assertRaises(KernelError, self.kernel.delete_sa, AH, b"\x12\x34\x56\x78",
                          "192.0.2.2")
        self.assertEqual(len(self.kernel.sas), 1)

    def test_release_spi_forgets_the_reservation(self) -> None:
        spi = self.kernel.allocate_spi(ESP, "192.0.2.2", "192.0.2.1")
        other = self.kernel.allocate_spi(AH, "192.0.2.2", "192.0.2.1")
        self.kernel.release_spi(ESP, spi, "192.0.2.1")
        self.assertEqual(self.kernel.reserved, {(AH, other, "192.0.2.1")})
        # Released twice, never reserved, or installed: an error the caller may ignore.
        error = self.assertRaises(KernelError, self.kernel.release_spi, ESP, spi,
                                  "192.0.2.1")
        self.assertEqual(str(error), f"no reserved IPSEC_ESP SPI 0x{spi.hex()} to 192.0.2.1")
        self.assertRaises(KernelError, self.kernel.release_spi, AH, other, "192.0.2.9")
        self.kernel.add_sa(esp_sa(spi=other, dst="192.0.2.1", protocol=AH,
                                  auth_algorithm=AuthAlgorithm.HMAC_SHA, enc_transform=None))
        self.assertRaises(KernelError, self.kernel.release_spi, AH, other, "192.0.2.1")
        self.assertEqual(list(self.kernel.sas), [(AH, other, "192.0.2.1")])
        self.assertEqual(self.kernel.reserved, set())
        self.assertNotIn("not yet used", self.kernel.describe())

    def test_update_sa_moves_addresses_and_ports(self) -> None:
        old = esp_sa(encap=(4500, 40001))
        self.kernel.add_sa(old)
        # The peer's NAT changed its port: same key, new encapsulation.
        ported = dataclasses.replace(old, encap=(4500, 40002))
        self.kernel.update_sa(old, ported)
        self.assertEqual(self.kernel.sas, {(ESP, old.spi, "192.0.2.2"): ported})
        # ... and its address: the destination is part of the key.
        moved = dataclasses.replace(ported, dst="192.0.2.3")
        self.kernel.update_sa(ported, moved)
        self.assertEqual(self.kernel.sas, {(ESP, old.spi, "192.0.2.3"): moved})
        self.assertEqual(self.kernel.updates, 2)

    def test_update_sa_errors(self) -> None:
        old = esp_sa()
        error = self.assertRaises(KernelError, self.kernel.update_sa, old, old)
        self.assertEqual(str(error), "no IPSEC_ESP SA with SPI 0x12345678 to 192.0.2.2")
        self.kernel.add_sa(old)
        self.assertRaises(KernelError, self.kernel.update_sa, old,
                          dataclasses.replace(old, spi=b"\x12\x34\x56\x79"))
        taken = esp_sa(dst="192.0.2.3")
        self.kernel.add_sa(taken)
        error = self.assertRaises(KernelError, self.kernel.update_sa, old,
                                  dataclasses.replace(old, dst="192.0.2.3"))
        self.assertIn("already exists", str(error))
        self.assertRaises(KernelError, self.kernel.update_sa, old,
                          dataclasses.replace(old, src="nowhere"))
        self.assertEqual(set(self.kernel.sas.values()), {old, taken})
        self.assertEqual(self.kernel.updates, 0)

    def test_malformed_sas_refused(self) -> None:
        cases = [
            (esp_sa(spi=b"\x01\x02"), "an SPI must be 4 bytes"),
            (esp_sa(mode=EncapsulationMode.UDP_ENCAP_TUNNEL), "NAT-T is said by encap"),
            (esp_sa(enc_transform=None), "has no encryption transform"),
            (esp_sa(protocol=AH, enc_transform=None), "has no authentication algorithm"),
            (esp_sa(src="left"), "source 'left' is not a numeric IP address"),
        ]
        for sa, message in cases:
            error = self.assertRaises(KernelError, self.kernel.add_sa, sa)
            self.assertIn(message, str(error))
        self.assertEqual(self.kernel.sas, {})

    def test_flows_added_replaced_and_deleted(self) -> None:
        self.kernel.add_flow(flow("out"))
        self.kernel.add_flow(flow("in", src_net="203.0.113.0/25", dst_net="198.51.100.0/24"))
        self.kernel.add_flow(flow("fwd", src_net="203.0.113.0/25", dst_net="198.51.100.0/24"))
        self.assertEqual(len(self.kernel.flows), 3)
        # Same selectors and direction: replaced (a rekey with a new reqid).
        self.kernel.add_flow(flow("out", reqid=9))
        self.assertEqual(len(self.kernel.flows), 3)
        self.assertEqual(self.kernel.flows[0].reqid, 9)
        # A port makes it a different selector.
        self.kernel.add_flow(flow("out", protocol=6, dst_port=80))
        self.assertEqual(len(self.kernel.flows), 4)
        self.kernel.delete_flow(flow("out"))
        self.assertEqual([f.reqid for f in self.kernel.flows if f.direction == "out"], [7])
        error = self.assertRaises(KernelError, self.kernel.delete_flow, flow("out"))
        self.assertIn("no flow out 198.51.100.0/24 -> 203.0.113.0/25", str(error))

    def test_malformed_flows_refused(self) -> None:
        cases = [
            (flow(direction="both"), "flow direction must be one of out, in, fwd"),
            (flow(dst_net="2001:db8::/32"), "mixes IPv4 and IPv6"),
            (flow(src_net="lan"), "flow source 'lan' is not a network"),
            (flow(tunnel_dst=None), "needs both tunnel endpoints"),
            (flow(protocol_sa=ProtocolId.ISAKMP), "ISAKMP is not supported"),
        ]
        for value, message in cases:
            error = self.assertRaises(KernelError, self.kernel.add_flow, value)
            self.assertIn(message, str(error))
        self.kernel.add_flow(flow(mode=TRANSPORT, tunnel_src=None, tunnel_dst=None,
                                  src_net="192.0.2.1/32", dst_net="192.0.2.2/32"))
        self.assertEqual(len(self.kernel.flows), 1)

    def test_reqids_are_new_each_time(self) -> None:
        values = [self.kernel.new_reqid() for _ in range(5)]
        self.assertEqual(values, [1, 2, 3, 4, 5])

    def test_describe_dumps_everything_but_keys(self) -> None:
        self.assertEqual(self.kernel.describe(), "SAs: 0\nFlows: 0")
        self.kernel.add_sa(esp_sa(auth_algorithm=AuthAlgorithm.HMAC_SHA2_256,
                                  auth_key=AUTH_KEY))
        self.kernel.add_flow(flow())
        self.kernel.allocate_spi(ESP, "192.0.2.2", "192.0.2.1")
        text = self.kernel.describe()
        self.assertEqual(text.splitlines(), [
            "SAs: 1",
            ("  IPSEC_ESP spi 0x12345678 192.0.2.1 -> 192.0.2.2 TUNNEL AES_GCM_16 (288-bit key "
            "incl. salt)/HMAC_SHA2_256 reqid 7 life 3600s replay window 16"),
            "Flows: 1",
            ("  out 198.51.100.0/24 -> 203.0.113.0/25 proto any IPSEC_ESP TUNNEL 192.0.2.1 -> "
            "192.0.2.2 reqid 7"),
            "SPIs allocated and not yet used: 1",
        ])
        self.assertNotIn(AUTH_KEY.hex(), text)
