"""Tests of isakmpd.ike.ids: ID payloads from sections, text forms, matching, selectors."""

from __future__ import annotations

import functools

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config import load_config
from isakmpd.config.store import Store
from isakmpd.ike import ids
from isakmpd.wire.constants import IdType
from isakmpd.wire.payloads import IdPayload

CONF = """\
[v4]
ID-type=	IPV4_ADDR
Address=	192.0.2.1

[v6]
ID-type=	IPV6_ADDR
Address=	2001:DB8:0::1

[net4]
ID-type=	IPV4_ADDR_SUBNET
Network=	203.0.113.5
Netmask=	255.255.255.128
Protocol=	tcp
Port=		https

[net6]
ID-type=	IPV6_ADDR_SUBNET
Network=	2001:db8:1::
Netmask=	ffff:ffff:ffff:ffff::
Protocol=	58
Port=		0

[all]
ID-type=	IPV4_ADDR_SUBNET
Network=	default
Netmask=	0.0.0.0

[fqdn]
ID-type=	FQDN
Name=		gw.example.org

[ufqdn]
ID-type=	USER_FQDN
Name=		vpn@example.org

[keyid]
ID-type=	KEY_ID
Name=		my-key

[iface]
ID-type=	IPV4_ADDR_SUBNET
Network=	eth0
Netmask=	255.255.255.0

[badproto]
ID-type=	IPV4_ADDR
Address=	192.0.2.1
Protocol=	no-such-proto

[badport]
ID-type=	IPV4_ADDR
Address=	192.0.2.1
Protocol=	udp
Port=		99999

[wrongfamily]
ID-type=	IPV6_ADDR
Address=	192.0.2.1

[range]
ID-type=	IPV4_RANGE
Address=	192.0.2.1

[notype]
Address=	192.0.2.1

[noname]
ID-type=	FQDN
"""


@functools.lru_cache(maxsize=1)
def store() -> Store:
    loaded, _diagnostics = load_config(CONF, "test.conf")
    return loaded


class FromSectionTests(SynchronousTestCase):

    def test_addresses(self) -> None:
        self.assertEqual(ids.id_from_section(store(), "v4"),
                         IdPayload(IdType.IPV4_ADDR, bytes([192, 0, 2, 1])))
        v6 = ids.id_from_section(store(), "v6")
        self.assertEqual(v6, IdPayload.from_address("2001:db8::1"))

    def test_subnets_protocol_and_port(self) -> None:
        net4 = ids.id_from_section(store(), "net4")
        # Host bits are cleared; names are looked up in the built-in tables.
        self.assertEqual(net4, IdPayload(IdType.IPV4_ADDR_SUBNET,
                                         bytes([203, 0, 113, 0, 255, 255, 255, 128]), 6, 443))
        net6 = ids.id_from_section(store(), "net6")
        self.assertEqual(net6, IdPayload.from_network("2001:db8:1::/64", 58, 0))
        self.assertEqual(ids.id_from_section(store(), "all"),
                         IdPayload.from_network("0.0.0.0/0"))

    def test_phase_1_names(self) -> None:
        self.assertEqual(ids.id_from_section(store(), "fqdn", phase=1),
                         IdPayload(IdType.FQDN, b"gw.example.org"))
        self.assertEqual(ids.id_from_section(store(), "ufqdn", phase=1),
                         IdPayload(IdType.USER_FQDN, b"vpn@example.org"))
        self.assertEqual(ids.id_from_section(store(), "keyid", phase=1),
                         IdPayload(IdType.KEY_ID, b"my-key"))
        # Phase 1 IDs never carry protocol/port.
        self.assertEqual(ids.id_from_section(store(), "net4", phase=1).protocol, 0)

    def test_interface_resolver(self) -> None:
        error = self.assertRaises(ids.IdError, ids.id_from_section, store(), "iface")
        self.assertIn("eth0", str(error))
        resolved = ids.id_from_section(store(), "iface",
                                       interface_address=lambda name, family: "198.51.100.7")
        self.assertEqual(resolved, IdPayload.from_network("198.51.100.0/24"))

    def test_errors(self) -> None:
        cases = [
            ("badproto", "no-such-proto"), ("badport", "99999"),
            ("wrongfamily", "IPv4 address, but the ID-type wants IPv6"),
            ("range", "cannot be used as a phase 2"), ("notype", "has no ID-type"),
            ("missing", "does not exist"), ("noname", "needs a Name"),
        ]
        for section, text in cases:
            error = self.assertRaises(ids.IdError, ids.id_from_section, store(), section,
                                      phase=1 if section == "noname" else 2)
            self.assertIn(text, str(error), section)
        error = self.assertRaises(ids.IdError, ids.id_from_section, store(), "fqdn")
        self.assertIn("FQDN cannot be used as a phase 2 (IPsec) ID", str(error))

    def test_tables(self) -> None:
        self.assertEqual(ids.protocol_number("UDP"), 17)
        self.assertEqual(ids.protocol_number("ipv6-icmp"), 58)
        self.assertEqual(ids.protocol_number(" 47 "), 47)
        self.assertRaises(ids.IdError, ids.protocol_number, "300")
        self.assertEqual(ids.port_number("isakmp"), 500)
        self.assertEqual(ids.port_number("4500"), 4500)
        self.assertRaises(ids.IdError, ids.port_number, "nonsense")


class TextTests(SynchronousTestCase):

    def test_id_string(self) -> None:
        cases = [
            (IdPayload.from_address("192.0.2.1"), "ipv4/192.0.2.1"),
            (IdPayload.from_address("2001:db8:0:0::1"), "ipv6/2001:db8::1"),
            (IdPayload.from_network("203.0.113.0/25"), "ipv4_subnet/203.0.113.0/25"),
            (IdPayload.from_network("2001:db8::/32"), "ipv6_subnet/2001:db8::/32"),
            (IdPayload(IdType.IPV4_ADDR_SUBNET, bytes([10, 0, 0, 0, 255, 0, 255, 0])),
             "ipv4_subnet/10.0.0.0/255.0.255.0"),
            (IdPayload(IdType.FQDN, b"gw.example.org"), "fqdn/gw.example.org"),
            (IdPayload(IdType.USER_FQDN, b"a@example.org"), "ufqdn/a@example.org"),
            (IdPayload(IdType.KEY_ID, b"k1"), "keyid/k1"),
            (IdPayload(IdType.KEY_ID, b"\x00\x01"), "keyid/0001"),
            (IdPayload(IdType.DER_ASN1_DN, b"\x30\x00"), "asn1_dn/3000"),
        ]
        for payload, text in cases:
            self.assertEqual(ids.id_string(payload), text)

    def test_psk_section_name(self) -> None:
        self.assertEqual(ids.psk_section_name(IdPayload.from_address("198.51.100.1")),
                         "198.51.100.1")
        self.assertEqual(ids.psk_section_name(IdPayload.from_address("2001:db8::0:1")),
                         "2001:db8::1")
        self.assertEqual(ids.psk_section_name(IdPayload(IdType.FQDN, b"gw.example.org")),
                         "gw.example.org")
        self.assertEqual(ids.psk_section_name(IdPayload(IdType.USER_FQDN, b"a@b\xff")),
                         "a@b\udcff")
        self.assertIsNone(ids.psk_section_name(IdPayload.from_network("10.0.0.0/8")))
        self.assertIsNone(ids.psk_section_name(IdPayload(IdType.KEY_ID, b"k")))

    def test_selector(self) -> None:
        self.assertEqual(ids.id_selector(IdPayload.from_network("203.0.113.0/25")),
                         "203.0.113.0/25")
        self.assertEqual(ids.id_selector(IdPayload.from_address("192.0.2.1")),
                         "192.0.2.1/32")
        self.assertEqual(ids.id_selector(IdPayload.from_address("2001:db8::1")),
                         "2001:db8::1/128")
        sloppy = IdPayload(IdType.IPV4_ADDR_SUBNET, bytes([203, 0, 113, 7, 255, 255, 255, 0]))
        self.assertEqual(ids.id_selector(sloppy), "203.0.113.0/24")
        for bad in (IdPayload(IdType.FQDN, b"x"),
                    IdPayload(IdType.IPV4_ADDR_SUBNET, bytes([10, 0, 0, 0, 255, 0, 255, 0]))):
            error = self.assertRaises(ids.IdError, ids.id_selector, bad)
            self.assertIn("traffic selector", str(error))


    def test_selector_remembered(self) -> None:
        # The text is remembered per ID (type and data), an error is not.
        net = IdPayload.from_network("198.51.100.0/24", 6, 80)
        self.assertEqual([ids.id_selector(net) for _ in range(2)], ["198.51.100.0/24"] * 2)
        self.assertEqual(ids.id_selector(IdPayload(IdType.IPV4_ADDR_SUBNET,
                                                   bytearray(net.data))), "198.51.100.0/24")
        bad = IdPayload(IdType.IPV6_ADDR_SUBNET, bytes(16) + bytes([255, 0] * 8))
        for _ in range(2):
            self.assertRaises(ids.IdError, ids.id_selector, bad)


class MatchTests(SynchronousTestCase):

    def test_id_is_address(self) -> None:
        # The same answers as ids_match() against an ID of the address, ports ignored.
        candidates = [
            IdPayload.from_address("192.0.2.1"), IdPayload.from_address("192.0.2.1", 17, 500),
            IdPayload.from_address("192.0.2.2"), IdPayload.from_network("192.0.2.1/32"),
            IdPayload.from_network("192.0.2.0/24"),
            IdPayload(IdType.IPV4_ADDR_SUBNET, bytes([192, 0, 2, 1, 255, 0, 255, 255])),
            IdPayload.from_address("2001:db8::1"), IdPayload.from_network("2001:db8::1/128"),
            IdPayload(IdType.FQDN, b"192.0.2.1"), IdPayload(IdType.IPV4_ADDR, b"\x01"),
        ]
        for address in ("192.0.2.1", "2001:db8::1", "2001:db8::2"):
            for candidate in candidates:
                self.assertEqual(
                    ids.id_is_address(candidate, address),
                    ids.ids_match(IdPayload.from_address(address), candidate,
                                  check_ports=False), (address, candidate))
        self.assertTrue(ids.id_is_address(candidates[3], "192.0.2.1"))
        self.assertRaises(ValueError, ids.id_is_address, candidates[0], "not an address")

    def test_networks(self) -> None:
        host = IdPayload.from_address("192.0.2.1")
        self.assertTrue(ids.ids_match(host, IdPayload.from_network("192.0.2.1/32")))
        self.assertFalse(ids.ids_match(host, IdPayload.from_address("192.0.2.2")))
        net = IdPayload.from_network("203.0.113.0/25")
        sloppy = IdPayload(IdType.IPV4_ADDR_SUBNET, bytes([203, 0, 113, 9, 255, 255, 255, 128]))
        self.assertTrue(ids.ids_match(net, sloppy))
        self.assertFalse(ids.ids_match(net, IdPayload.from_network("203.0.113.0/24")))
        self.assertFalse(ids.ids_match(net, IdPayload.from_network("2001:db8::/32")))

    def test_protocol_and_port(self) -> None:
        l2tp = IdPayload.from_address("192.0.2.1", 17, 1701)
        self.assertTrue(ids.ids_match(l2tp, IdPayload.from_address("192.0.2.1", 17, 1701)))
        self.assertFalse(ids.ids_match(l2tp, IdPayload.from_address("192.0.2.1")))
        self.assertTrue(ids.ids_match(l2tp, IdPayload.from_address("192.0.2.1"),
                                      check_ports=False))

    def test_names(self) -> None:
        fqdn = IdPayload(IdType.FQDN, b"gw.example.org")
        self.assertTrue(ids.ids_match(fqdn, IdPayload(IdType.FQDN, b"gw.example.org")))
        self.assertFalse(ids.ids_match(fqdn, IdPayload(IdType.USER_FQDN, b"gw.example.org")))
        self.assertFalse(ids.ids_match(fqdn, IdPayload(IdType.FQDN, b"GW.example.org")))

    def test_network_of(self) -> None:
        self.assertIsNone(ids.id_network(IdPayload(IdType.FQDN, b"x")))
        self.assertIsNone(ids.id_network(IdPayload(IdType.IPV4_ADDR, b"\x01")))
        self.assertEqual(str(ids.id_network(IdPayload.from_network("2001:db8::/48"))),
                         "2001:db8::/48")
