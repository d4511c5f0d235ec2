"""Tests of isakmpd.ike.natt: NAT-T/DPD vendor IDs, NAT-D hashes and NAT detection."""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.ike import natt
from isakmpd.wire.constants import EncapsulationMode, HashAlgorithm, PayloadType
from isakmpd.wire.payloads import NatDPayload, VendorPayload

CKY_I = bytes.fromhex("0011223344556677")
CKY_R = bytes.fromhex("8899aabbccddeeff")
US = ("192.0.2.1", 500)
THEM = ("198.51.100.1", 500)


def md5(text: bytes) -> bytes:
    return hashlib.md5(text).digest()


class VendorIdTests(SynchronousTestCase):

    def test_sent_vids(self) -> None:
        self.assertEqual([v.data for v in natt.nat_t_vendor_payloads()],
                         [md5(b"draft-ietf-ipsec-nat-t-ike-02\n"),
                          md5(b"draft-ietf-ipsec-nat-t-ike-03"), md5(b"RFC 3947")])
        # Known value from the inventory (§4.8).
        self.assertEqual(natt.nat_t_vendor_payloads()[2].data.hex(),
                         "4a131c81070358455c5728f20e95452f")

    def test_capabilities(self) -> None:
        none = natt.peer_capabilities([b"\x01" * 16])
        self.assertEqual((none.nat_t, none.rfc, none.draft, none.dpd),
                         (False, False, False, False))
        rfc = natt.peer_capabilities([VendorPayload(md5(b"RFC 3947"))])
        self.assertTrue(rfc.nat_t and rfc.use_rfc and not rfc.draft)
        for text in (b"draft-ietf-ipsec-nat-t-ike-02\n", b"draft-ietf-ipsec-nat-t-ike-02",
                     b"draft-ietf-ipsec-nat-t-ike-03"):
            draft = natt.peer_capabilities([md5(text)])
            self.assertTrue(draft.nat_t and draft.draft and not draft.use_rfc, text)
        both = natt.peer_capabilities([md5(b"draft-ietf-ipsec-nat-t-ike-03"),
                                       md5(b"RFC 3947")])
        self.assertTrue(both.use_rfc and both.draft)
        dpd = natt.peer_capabilities([bytes.fromhex("afcad71368a1f1c96b8696fc77570100")])
        self.assertTrue(dpd.dpd and not dpd.nat_t)


class NatDTests(SynchronousTestCase):

    def test_hash_known_answer(self) -> None:
        expected = hashlib.sha1(CKY_I + CKY_R + bytes([192, 0, 2, 1]) + b"\x01\xf4").digest()
        self.assertEqual(natt.nat_d_hash(HashAlgorithm.SHA, CKY_I, CKY_R, "192.0.2.1", 500),
                         expected)
        v6 = hashlib.sha256(CKY_I + CKY_R + bytes.fromhex("20010db8" + "00" * 11 + "01")
                            + b"\x11\x94").digest()
        self.assertEqual(natt.nat_d_hash(HashAlgorithm.SHA2_256, CKY_I, CKY_R,
                                         "2001:db8::1", 4500), v6)
        self.assertRaises(ValueError, natt.nat_d_hash, HashAlgorithm.SHA, b"short", CKY_R,
                          "192.0.2.1", 500)

    def test_hashes_of_a_pair(self) -> None:
        # nat_d_hashes (one call for both ends) and its fast IPv4 reading agree with
        # nat_d_hash for every spelling ipaddress reads, and refuse what it refuses.
        for local, remote in ((US, THEM), (("2001:db8::1", 500), ("::ffff:192.0.2.9", 4500)),
                              (("::ffff:198.51.100.1", 4500), ("192.0.2.1", 0))):
            self.assertEqual(natt.nat_d_hashes(HashAlgorithm.SHA, CKY_I, CKY_R, local, remote),
                             (natt.nat_d_hash(HashAlgorithm.SHA, CKY_I, CKY_R, *local),
                              natt.nat_d_hash(HashAlgorithm.SHA, CKY_I, CKY_R, *remote)))
        self.assertEqual(natt.nat_d_hash(HashAlgorithm.SHA, CKY_I, CKY_R, "::ffff:192.0.2.9", 1),
                         natt.nat_d_hash(HashAlgorithm.SHA, CKY_I, CKY_R, "192.0.2.9", 1))
        for bad in ("192.0.2.01", "192.0.2", "192.0.2.256", "192.0.2.1 "):
            self.assertRaises(ValueError, natt.nat_d_hashes, HashAlgorithm.SHA, CKY_I, CKY_R,
                              (bad, 500), THEM)
        self.assertRaises(ValueError, natt.nat_d_hashes, HashAlgorithm.SHA, CKY_I, b"short",
                          US, THEM)
        self.assertRaises(ValueError, natt.nat_d_hashes, HashAlgorithm.SHA, CKY_I, CKY_R,
                          US, ("192.0.2.1", 65536))

    def test_payloads_remote_first(self) -> None:
        payloads = natt.nat_d_payloads(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM)
        self.assertEqual([p.data for p in payloads],
                         [natt.nat_d_hash(HashAlgorithm.SHA, CKY_I, CKY_R, *THEM),
                          natt.nat_d_hash(HashAlgorithm.SHA, CKY_I, CKY_R, *US)])
        self.assertEqual({p.payload_type for p in payloads}, {PayloadType.NAT_D})
        drafts = natt.nat_d_payloads(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM, rfc=False)
        self.assertEqual({p.payload_type for p in drafts}, {PayloadType.NAT_D_DRAFT})

    def test_detection(self) -> None:
        def sent_by_peer(peer_sees_us: tuple[str, int], peer_itself: tuple[str, int]):
            # The peer sends (what it sees as our address, its own address).
            return natt.nat_d_payloads(HashAlgorithm.SHA, CKY_I, CKY_R, peer_itself,
                                       peer_sees_us)

        check = natt.check_nat_d
        self.assertEqual(check(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM,
                               sent_by_peer(US, THEM)), (False, False))
        # Our address was translated on the way: we are behind a NAT.
        self.assertEqual(check(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM,
                               sent_by_peer(("203.0.113.9", 61000), THEM)), (True, False))
        # The peer thinks it is 10.0.0.2:500 but we see 198.51.100.1:500.
        self.assertEqual(check(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM,
                               sent_by_peer(US, ("10.0.0.2", 500))), (False, True))
        self.assertEqual(check(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM,
                               sent_by_peer(("203.0.113.9", 500), ("10.0.0.2", 500))),
                         (True, True))
        # Only the port changed: that is a NAT too.
        self.assertEqual(check(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM,
                               sent_by_peer(("192.0.2.1", 4500), THEM)), (True, False))
        # No NAT-D at all: no NAT (isakmpd's rule). Raw bytes work too.
        self.assertEqual(check(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM, []), (False, False))
        raw = [p.data for p in sent_by_peer(US, THEM)]
        self.assertEqual(check(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM, raw),
                         (False, False))
        # A random NAT-D (as charon with kernel-libipsec sends) looks like NATs both ways.
        self.assertEqual(check(HashAlgorithm.SHA, CKY_I, CKY_R, US, THEM,
                               [NatDPayload(b"\x00" * 20)] * 2), (True, True))


class EncapsulationTests(SynchronousTestCase):

    def test_mapping(self) -> None:
        mode = EncapsulationMode
        cases = [
            (mode.TUNNEL, False, False, mode.TUNNEL),
            (mode.TRANSPORT, False, True, mode.TRANSPORT),
            (mode.TUNNEL, True, False, mode.UDP_ENCAP_TUNNEL),
            (mode.TRANSPORT, True, False, mode.UDP_ENCAP_TRANSPORT),
            (mode.TUNNEL, True, True, mode.UDP_ENCAP_TUNNEL_DRAFT),
            (mode.TRANSPORT, True, True, mode.UDP_ENCAP_TRANSPORT_DRAFT),
            (mode.UDP_ENCAP_TUNNEL, False, False, mode.TUNNEL),
            (mode.UDP_ENCAP_TRANSPORT_DRAFT, True, False, mode.UDP_ENCAP_TRANSPORT),
        ]
        for given, nat_t, draft, expected in cases:
            self.assertEqual(natt.encapsulation_for(given, nat_t, draft), expected)
        self.assertEqual(int(natt.encapsulation_for(mode.TUNNEL, True)), 3)
        self.assertEqual(int(natt.encapsulation_for(mode.TRANSPORT, True)), 4)
        for value in mode:
            self.assertIn(natt.plain_mode(value), (mode.TUNNEL, mode.TRANSPORT))
        self.assertEqual(natt.plain_mode(61443), mode.TUNNEL)
