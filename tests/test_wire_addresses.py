"""isakmpd.wire.addresses: cached conversions agree with ipaddress and refuse bad text."""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.wire import addresses


class AddressTests(SynchronousTestCase):

    def test_addresses(self) -> None:
        self.assertEqual(addresses.canonical("2001:0DB8:0::1"), "2001:db8::1")
        self.assertEqual(addresses.canonical("192.0.2.1"), "192.0.2.1")
        self.assertEqual(addresses.packed("192.0.2.1"), bytes([192, 0, 2, 1]))
        self.assertEqual(addresses.ip(bytes(16)), ipaddress.IPv6Address("::"))
        self.assertIs(addresses.ip("198.51.100.7"), addresses.ip("198.51.100.7"))

    def test_networks(self) -> None:
        self.assertEqual(addresses.network("203.0.113.5/25"),
                         ipaddress.IPv4Network("203.0.113.0/25"))
        self.assertEqual(str(addresses.network("2001:db8::1")), "2001:db8::1/128")
        self.assertEqual(str(addresses.network_of(bytes([203, 0, 113, 200]), 25)),
                         "203.0.113.128/25")
        self.assertEqual(str(addresses.network_of(bytes(16), 0)), "::/0")

    def test_bad_input_refused_every_time(self) -> None:
        for _ in range(2):
            self.assertRaises(ValueError, addresses.ip, "eth0")
            self.assertRaises(ValueError, addresses.canonical, "192.0.2.256")
            self.assertRaises(ValueError, addresses.network, "203.0.113.0/33")
            self.assertRaises(ValueError, addresses.network_of, b"\x01\x02\x03", 24)
            self.assertRaises(ValueError, addresses.network_of, bytes(4), 33)
