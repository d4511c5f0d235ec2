"""Tests of isakmpd.wire.attributes: TV and TLV data attributes (RFC 2408 §3.3)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.wire import constants as c
from isakmpd.wire.attributes import (
    Attribute,
    decode_attributes,
    decode_tv_attributes,
    encode_attributes,
    enum_or_int,
    tv_names,
)
from isakmpd.wire.errors import DecodeError


class EncodeTests(SynchronousTestCase):
    def test_tv(self) -> None:
        attribute = Attribute(c.IkeAttr.ENCRYPTION_ALGORITHM, c.EncryptionAlgorithm.AES_CBC)
        self.assertTrue(attribute.is_tv)
        self.assertEqual(attribute.encode(), bytes.fromhex("80010007"))

    def test_large_int_is_four_byte_tlv(self) -> None:
        attribute = Attribute(c.IkeAttr.LIFE_DURATION, 86400)
        self.assertFalse(attribute.is_tv)
        self.assertEqual(attribute.encode(), bytes.fromhex("000c000400015180"))
        self.assertEqual(Attribute(1, 1 << 40).encode(), bytes.fromhex("00010006") + b"\x01"
                         + bytes(5))

    def test_bytes_are_tlv(self) -> None:
        self.assertEqual(Attribute(c.CfgAttr.INTERNAL_IP4_ADDRESS, b"").encode(),
                         bytes.fromhex("00010000"))
        self.assertEqual(Attribute(7, b"ab").encode(), bytes.fromhex("00070002") + b"ab")

    def test_refuses_impossible(self) -> None:
        for bad in (Attribute(0x8000, 1), Attribute(1, -1), Attribute(1, b"x" * 0x10000)):
            with self.assertRaises(ValueError):
                bad.encode()

    def test_encode_list(self) -> None:
        self.assertEqual(encode_attributes([Attribute(1, 2), Attribute(3, b"z")]),
                         bytes.fromhex("8001000200030001") + b"z")


class DecodeTests(SynchronousTestCase):
    def test_round_trip_and_names(self) -> None:
        attributes = [Attribute(c.IpsecAttr.SA_LIFE_TYPE, 1),
                      Attribute(c.IpsecAttr.SA_LIFE_DURATION, 4_000_000),
                      Attribute(9999, b"opaque")]
        decoded = decode_attributes(encode_attributes(attributes), 10, types=c.IpsecAttr)
        self.assertEqual(decoded, attributes)
        self.assertIs(decoded[0].type, c.IpsecAttr.SA_LIFE_TYPE)
        self.assertEqual(decoded[2].type, 9999)
        self.assertEqual([a.offset for a in decoded], [10, 14, 22])
        self.assertEqual(decoded[1].as_int(), 4_000_000)

    def test_equality_is_wire_equality(self) -> None:
        self.assertEqual(Attribute(12, 86400), Attribute(12, (86400).to_bytes(4, "big")))
        self.assertEqual(hash(Attribute(12, 86400)),
                         hash(Attribute(12, (86400).to_bytes(4, "big"))))
        self.assertNotEqual(Attribute(12, 5), Attribute(12, b"\x00\x05"))
        self.assertNotEqual(Attribute(12, 5), Attribute(11, 5))
        self.assertEqual(Attribute(12, 5, offset=3), Attribute(12, 5))

    def test_empty(self) -> None:
        self.assertEqual(decode_attributes(b""), [])

    def test_truncated_header(self) -> None:
        with self.assertRaises(DecodeError) as caught:
            decode_attributes(bytes.fromhex("80010007" "8002"), 100)
        self.assertEqual(caught.exception.notify, c.NotifyType.PAYLOAD_MALFORMED)
        self.assertEqual(caught.exception.offset, 104)

    def test_tlv_overrun(self) -> None:
        with self.assertRaises(DecodeError) as caught:
            decode_attributes(bytes.fromhex("000c0004000151"), 8, types=c.IkeAttr,
                              notify=c.NotifyType.ATTRIBUTES_NOT_SUPPORTED, context="T#1")
        error = caught.exception
        self.assertEqual((error.notify, error.offset),
                         (c.NotifyType.ATTRIBUTES_NOT_SUPPORTED, 8))
        self.assertIn("LIFE_DURATION", str(error))
        self.assertIn("T#1", str(error))

    def test_as_int_limits(self) -> None:
        with self.assertRaises(DecodeError) as caught:
            Attribute(c.IkeAttr.LIFE_DURATION, b"", offset=4).as_int()
        self.assertEqual(caught.exception.notify, c.NotifyType.ATTRIBUTES_NOT_SUPPORTED)
        self.assertEqual(caught.exception.offset, 4)
        with self.assertRaises(DecodeError):
            Attribute(1, bytes(9)).as_int()
        self.assertEqual(Attribute(1, bytes(8)).as_int(), 0)

    def test_tv_fast_path_agrees_or_declines(self) -> None:
        # decode_tv_attributes gives decode_attributes' result for an all-TV list
        # (types, values, offsets, named or not) and None for anything else, so
        # that the general decoder, with its errors, handles that.
        names = tv_names(c.IkeAttr)
        tv = bytes.fromhex("80010007" "800e0080" "ff000001" "800c0e10")
        for body in (b"", tv, tv[:4]):
            data = b"\xaa\xbb\xcc\xdd" + body
            fast = decode_tv_attributes(data, 4, 20, names)
            slow = decode_attributes(body, 24, types=c.IkeAttr)
            self.assertIsNotNone(fast)
            self.assertEqual([(a.type, type(a.type), a.value, a.offset) for a in fast],
                             [(a.type, type(a.type), a.value, a.offset) for a in slow])
        for declined in (tv + bytes.fromhex("000c0004000151"),     # TLV (overrunning)
                         bytes.fromhex("000c000400015180") + tv,   # TLV first
                         tv[:6],                                   # truncated
                         tv * 9):                                  # long list
            self.assertIsNone(decode_tv_attributes(declined, 0, 0, names))
        self.assertEqual(len(decode_attributes(tv * 9)), 36)

    def test_enum_or_int(self) -> None:
        self.assertIs(enum_or_int(c.HashAlgorithm, 2), c.HashAlgorithm.SHA)
        self.assertEqual(enum_or_int(c.HashAlgorithm, 77), 77)
        self.assertEqual(enum_or_int(None, 5), 5)
