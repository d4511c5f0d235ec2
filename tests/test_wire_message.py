"""Tests of isakmpd.wire.message: the ISAKMP header, the payload chain and Message."""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.wire import constants as c
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.message import (
    HEADER_SIZE,
    Header,
    Message,
    decode_header,
    decode_payloads,
    encode_payload_chain,
)
from isakmpd.wire.payloads import (
    HashPayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    RawPayload,
    VendorPayload,
)
from tests.test_wire_payloads import ICOOKIE, RCOOKIE, sample_messages

PT = c.PayloadType


def simple() -> Message:
    return Message(ICOOKIE, RCOOKIE, c.ExchangeType.INFO,
                   [HashPayload(b"h" * 20), NotifyPayload(c.NotifyType.R_U_THERE,
                                                          c.ProtocolId.ISAKMP,
                                                          ICOOKIE + RCOOKIE, b"\0\0\0\1")],
                   flags=c.Flag.ENC, message_id=0x11223344)


class HeaderTests(SynchronousTestCase):
    def test_layout(self) -> None:
        data = simple().encode()
        self.assertEqual(data[:8], ICOOKIE)
        self.assertEqual(data[8:16], RCOOKIE)
        self.assertEqual(data[16:20], bytes([PT.HASH, 0x10, c.ExchangeType.INFO, 1]))
        self.assertEqual(data[20:28], struct.pack("!II", 0x11223344, len(data)))

    def test_decode_header(self) -> None:
        data = simple().encode()
        header = decode_header(data)
        self.assertEqual(header, Header(ICOOKIE, RCOOKIE, PT.HASH, c.ExchangeType.INFO,
                                        c.Flag.ENC, 0x11223344, len(data)))
        self.assertIs(header.exchange_type, c.ExchangeType.INFO)
        self.assertTrue(header.encrypted)
        self.assertEqual((header.major, header.minor), (1, 0))
        self.assertEqual(header.encode(), data[:HEADER_SIZE])
        self.assertIn("INFO", str(header))

    def test_header_of_encrypted_body_decodes(self) -> None:
        # The dispatcher reads the header before anything can be decrypted.
        data = simple().encode()
        garbage = data[:HEADER_SIZE] + bytes([0xff] * (len(data) - HEADER_SIZE))
        self.assertEqual(decode_header(garbage).message_id, 0x11223344)

    def test_encode_refuses_bad_fields(self) -> None:
        header = decode_header(simple().encode())
        for change in ({"icookie": b"short"}, {"message_id": 1 << 32}, {"length": -1}):
            with self.assertRaises(ValueError):
                Header(**{**header.__dict__, **change}).encode()

    def check(self, data: bytes, notify: c.NotifyType, offset: int,
              silent: bool = False) -> DecodeError:
        with self.assertRaises(DecodeError) as caught:
            Message.decode(data)
        error = caught.exception
        self.assertEqual((error.notify, error.offset, error.silent), (notify, offset, silent),
                         str(error))
        return error

    def patched(self, index: int, value: int) -> bytes:
        data = bytearray(simple().encode())
        data[index] = value
        return bytes(data)

    def test_too_short(self) -> None:
        self.check(simple().encode()[:27], c.NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 27,
                   silent=True)

    def test_length_mismatch(self) -> None:
        data = simple().encode()
        self.check(data + b"\0", c.NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 24, silent=True)
        self.check(data[:-1], c.NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 24, silent=True)
        self.assertEqual(decode_header(data[:-1], check_length=False).length, len(data))

    def test_version(self) -> None:
        self.check(self.patched(17, 0x20), c.NotifyType.INVALID_MAJOR_VERSION, 17)
        self.check(self.patched(17, 0x11), c.NotifyType.INVALID_MINOR_VERSION, 17)

    def test_exchange_type(self) -> None:
        for value in (0, 7, 31):
            self.check(self.patched(18, value), c.NotifyType.INVALID_EXCHANGE_TYPE, 18)
        # DOI-specific and private exchanges are for the exchange layer to judge.
        self.assertEqual(Message.decode(self.patched(18, 240)).exchange_type, 240)

    def test_flags(self) -> None:
        self.check(self.patched(19, 0x08), c.NotifyType.INVALID_FLAGS, 19)
        ok = Message.decode(self.patched(19, 0x07))
        self.assertEqual(ok.flags, c.Flag.ENC | c.Flag.COMMIT | c.Flag.AUTH_ONLY)

    def test_header_next_payload(self) -> None:
        for value in (PT.PROPOSAL, PT.TRANSFORM, PT.SAK, PT.POP, 22, 127):
            self.check(self.patched(16, value), c.NotifyType.INVALID_PAYLOAD_TYPE, 16)


class ChainTests(SynchronousTestCase):
    def test_samples_round_trip(self) -> None:
        for name, message in sample_messages():
            data = message.encode()
            decoded = Message.decode(data)
            self.assertEqual(decoded, message, name)
            self.assertEqual(decoded.encode(), data, name)
            self.assertEqual(decoded.body, data[HEADER_SIZE:])
            self.assertEqual(decoded.padding, b"")
            offsets = [p.offset for p in decoded.payloads]
            self.assertEqual(offsets[0], HEADER_SIZE)
            for payload in decoded.payloads:
                assert payload.offset is not None and payload.raw is not None
                end = payload.offset + 4 + len(payload.raw)
                self.assertEqual(data[payload.offset + 4:end], payload.raw)

    def test_empty_message(self) -> None:
        message = Message(ICOOKIE, RCOOKIE, c.ExchangeType.INFO)
        data = message.encode()
        self.assertEqual(len(data), HEADER_SIZE)
        self.assertEqual(Message.decode(data), message)
        self.assertEqual(encode_payload_chain([]), (PT.NONE, b""))

    def test_private_payload_is_raw(self) -> None:
        message = Message(ICOOKIE, RCOOKIE, c.ExchangeType.ID_PROT,
                          [RawPayload(200, b"xyz"), NoncePayload(b"n" * 8),
                           RawPayload(255, b"")])
        decoded = Message.decode(message.encode())
        self.assertEqual(decoded, message)
        self.assertIn("private (200)", decoded.describe())

    def test_draft_nat_payloads(self) -> None:
        message = Message(ICOOKIE, RCOOKIE, c.ExchangeType.ID_PROT,
                          [NatDPayload(b"d" * 20, draft=True), NatDPayload(b"e" * 20)])
        data = message.encode()
        self.assertEqual(data[16], PT.NAT_D_DRAFT)
        decoded = Message.decode(data)
        self.assertEqual([p.payload_type for p in decoded.payloads],
                         [PT.NAT_D_DRAFT, PT.NAT_D])

    def test_padding_after_decrypted_body(self) -> None:
        message = simple()
        body = message.encode_body()
        padded = body + bytes(16 - len(body) % 16)
        header = message.header(len(padded))
        decoded = Message.from_body(header, padded, allow_padding=True)
        self.assertEqual(decoded, message)
        self.assertEqual(decoded.body, body)
        self.assertEqual(decoded.padding, padded[len(body):])
        with self.assertRaises(DecodeError) as caught:
            Message.from_body(header, padded)
        self.assertEqual(caught.exception.notify, c.NotifyType.UNEQUAL_PAYLOAD_LENGTHS)
        self.assertEqual(caught.exception.offset, HEADER_SIZE + len(body))

    def test_decode_payloads_offsets(self) -> None:
        _first, chain = encode_payload_chain([VendorPayload(b"v"), HashPayload(b"h")])
        payloads = decode_payloads(PT.VENDOR, chain, 100)
        self.assertEqual([p.offset for p in payloads], [100, 105])
        with self.assertRaises(DecodeError) as caught:
            decode_payloads(PT.PROPOSAL, chain)
        self.assertEqual(caught.exception.notify, c.NotifyType.INVALID_PAYLOAD_TYPE)

    def check_body(self, first: int, body: bytes, notify: c.NotifyType,
                   offset: int) -> None:
        with self.assertRaises(DecodeError) as caught:
            decode_payloads(first, body, 28)
        error = caught.exception
        self.assertEqual((error.notify, error.offset), (notify, offset), str(error))

    def test_chain_errors(self) -> None:
        _first, chain = encode_payload_chain([VendorPayload(b"vv"), HashPayload(b"hh")])
        # Truncated generic header of the second payload.
        self.check_body(PT.VENDOR, chain[:8], c.NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 34)
        # Length running past the end.
        self.check_body(PT.VENDOR, chain[:-1], c.NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 36)
        # Length below the generic header.
        bad = bytearray(chain)
        bad[2:4] = b"\x00\x03"
        self.check_body(PT.VENDOR, bytes(bad), c.NotifyType.PAYLOAD_MALFORMED, 30)
        # Reserved byte.
        bad = bytearray(chain)
        bad[1] = 1
        self.check_body(PT.VENDOR, bytes(bad), c.NotifyType.PAYLOAD_MALFORMED, 29)
        # Reserved and meaningless next-payload types.
        for value in (PT.SAK, 22, 100, PT.TRANSFORM):
            bad = bytearray(chain)
            bad[0] = value
            self.check_body(PT.VENDOR, bytes(bad), c.NotifyType.INVALID_PAYLOAD_TYPE, 28)
        # Trailing bytes without padding allowed.
        self.check_body(PT.VENDOR, chain + b"\0", c.NotifyType.UNEQUAL_PAYLOAD_LENGTHS,
                        28 + len(chain))

    def test_payload_errors_carry_datagram_offsets(self) -> None:
        # An invalid ID type in the fifth message's ID payload.
        _name, message = sample_messages()[2]
        data = bytearray(message.encode())
        data[HEADER_SIZE + 4] = 99
        with self.assertRaises(DecodeError) as caught:
            Message.decode(bytes(data))
        self.assertEqual(caught.exception.notify, c.NotifyType.INVALID_ID_INFORMATION)
        self.assertEqual(caught.exception.offset, HEADER_SIZE + 4)


class HelperTests(SynchronousTestCase):
    def test_find_and_first(self) -> None:
        message = simple()
        self.assertEqual(len(message.find(PT.NOTIFY)), 1)
        self.assertIsInstance(message.first(PT.HASH), HashPayload)
        self.assertIsNone(message.first(PT.SA))

    def test_bytes_after_hash(self) -> None:
        # Quick Mode HASH(1) covers everything after the HASH payload (RFC 2409 §5.5).
        for _name, message in sample_messages():
            if message.payloads[0].payload_type != PT.HASH:
                continue
            data = message.encode()
            expected = data[HEADER_SIZE + 4 + len(message.payloads[0].encode_body()):]
            self.assertEqual(message.bytes_after(0), expected)
            self.assertEqual(Message.decode(data).bytes_after(0), expected)
        with self.assertRaises(IndexError):
            simple().bytes_after(5)

    def test_bytes_after_uses_received_bytes(self) -> None:
        # The SA below is valid but not what we would send (LIFE_TYPE as a
        # 2-byte TLV); the hash must cover what the peer sent, byte for byte.
        sa_body = (struct.pack("!II", 1, 1)
                   + struct.pack("!BBHBBBB", 0, 0, 22, 1, 1, 0, 1)
                   + struct.pack("!BBHBBH", 0, 0, 14, 1, 1, 0)
                   + struct.pack("!HH", 11, 2) + b"\x00\x01")
        message = Message(ICOOKIE, RCOOKIE, c.ExchangeType.QUICK_MODE,
                          [HashPayload(b"h" * 20), RawPayload(PT.SA, sa_body),
                           NoncePayload(b"n" * 16)], message_id=5)
        data = message.encode()
        decoded = Message.decode(data)
        self.assertEqual(decoded.bytes_after(0), data[HEADER_SIZE + 24:])
        self.assertEqual(decoded.payloads[1].raw, sa_body)

    def test_header_for_encrypted_body(self) -> None:
        message = simple()
        header = message.header(48, flags=c.Flag.ENC)
        self.assertEqual(header.length, HEADER_SIZE + 48)
        self.assertEqual(header.next_payload, PT.HASH)

    def test_describe(self) -> None:
        text = simple().describe()
        self.assertIn("INFO", text)
        self.assertIn("11223344", text)
        self.assertIn("ENC", text)
        self.assertIn("HASH, NOTIFY", text)
        self.assertEqual(str(simple()), text)
        long = simple().describe_long()
        self.assertIn("R_U_THERE", long)
        self.assertIn("ISAKMP", Message(ICOOKIE, RCOOKIE, 240).describe() + "ISAKMP")
        self.assertIn("unknown (240)", Message(ICOOKIE, RCOOKIE, 240).describe())

    def test_with_flags(self) -> None:
        self.assertEqual(simple().with_flags(c.Flag(0)).encode()[19], 0)
