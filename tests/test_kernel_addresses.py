"""Tests of isakmpd.kernel.addresses: interface addresses read over rtnetlink."""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.kernel import addresses
from isakmpd.kernel.addresses import interface_addresses


class InterfaceAddressTests(SynchronousTestCase):
    def test_loopback_is_listed(self) -> None:
        found = interface_addresses()
        self.assertIn((socket.AF_INET, "127.0.0.1"), found)
        self.assertEqual(len(found), len(set(found)))
        for family, address in found:
            self.assertIn(family, (socket.AF_INET, socket.AF_INET6))
            self.assertNotIn("%", address)

    def test_families_filter(self) -> None:
        self.assertEqual([a for a in interface_addresses([socket.AF_INET6])
                          if a[0] != socket.AF_INET6], [])
        only_v4 = interface_addresses([socket.AF_INET])
        self.assertIn((socket.AF_INET, "127.0.0.1"), only_v4)
        self.assertEqual([a for a in only_v4 if a[0] != socket.AF_INET], [])

    def test_no_ipv6_link_local(self) -> None:
        for family, address in interface_addresses():
            if family == socket.AF_INET6:
                self.assertFalse(address.lower().startswith("fe80:"), address)

    def test_usable_rules(self) -> None:
        usable = addresses._usable
        self.assertTrue(usable(socket.AF_INET6, "2001:db8::1", 0x80))
        self.assertFalse(usable(socket.AF_INET6, "2001:db8::1", addresses.IFA_F_TENTATIVE))
        self.assertFalse(usable(socket.AF_INET6, "2001:db8::1", addresses.IFA_F_DADFAILED))
        self.assertFalse(usable(socket.AF_INET6, "fe80::1", 0))
        # IPv4 link-local addresses need no scope id, so they are kept.
        self.assertTrue(usable(socket.AF_INET, "169.254.1.1", 0))
