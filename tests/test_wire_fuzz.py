"""Property tests: whatever bytes arrive, decoding returns objects or raises DecodeError.

Inputs are arbitrary bytes, truncations and bit flips of valid messages that
carry every payload type. Whatever decodes must also re-encode, and the
re-encoding must decode to an equal message. Derandomized so CI is
deterministic.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from isakmpd.wire.constants import HEADER_SIZE, PayloadType
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.message import Message, decode_header
from isakmpd.wire.payloads import decode_payload_body
from tests.test_wire_payloads import sample_messages

SAMPLES = [message.encode() for _name, message in sample_messages()]
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
PAYLOAD_TYPES = sorted(int(t) for t in PayloadType if t != PayloadType.NONE) + [200]


def with_length(data: bytes) -> bytes:
    """``data`` with the header length fixed up, so the body gets parsed."""
    if len(data) < HEADER_SIZE:
        return data
    return data[:24] + struct.pack("!I", len(data)) + data[28:]


class FuzzTests(SynchronousTestCase):
    def decode(self, data: bytes) -> None:
        try:
            message = Message.decode(data)
        except DecodeError as error:
            self.assertIsInstance(error.offset, int)
            self.assertTrue(str(error))
            return
        again = Message.decode(message.encode())
        self.assertEqual(again, message)
        self.assertTrue(message.describe_long())

    @FUZZ
    @given(st.binary(max_size=400))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        self.decode(data)
        self.decode(with_length(data))

    @FUZZ
    @given(st.sampled_from(SAMPLES), st.binary(max_size=200))
    def test_valid_header_arbitrary_body(self, sample: bytes, body: bytes) -> None:
        self.decode(with_length(sample[:HEADER_SIZE] + body))

    @FUZZ
    @given(st.sampled_from(SAMPLES), st.integers(min_value=0, max_value=2000))
    def test_truncations(self, sample: bytes, cut: int) -> None:
        truncated = sample[:cut % (len(sample) + 1)]
        self.decode(truncated)
        self.decode(with_length(truncated))

    @FUZZ
    @given(st.sampled_from(SAMPLES), st.lists(st.integers(min_value=0, max_value=1 << 16),
                                              min_size=1, max_size=4))
    def test_bit_flips(self, sample: bytes, positions: list[int]) -> None:
        data = bytearray(sample)
        for position in positions:
            bit = position % (len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
        self.decode(bytes(data))
        self.decode(with_length(bytes(data)))

    @FUZZ
    @given(st.sampled_from(SAMPLES), st.integers(min_value=HEADER_SIZE, max_value=2000),
           st.integers(min_value=0, max_value=255))
    def test_byte_replacements(self, sample: bytes, where: int, value: int) -> None:
        data = bytearray(sample)
        data[where % len(data)] = value
        self.decode(with_length(bytes(data)))

    @FUZZ
    @given(st.sampled_from(SAMPLES), st.binary(max_size=40))
    def test_padding_after_body(self, sample: bytes, padding: bytes) -> None:
        header = decode_header(sample)
        message = Message.from_body(header, sample[HEADER_SIZE:] + padding, allow_padding=True)
        self.assertEqual(message.padding, padding)
        self.assertEqual(message.encode(), sample)

    @FUZZ
    @given(st.sampled_from(PAYLOAD_TYPES), st.binary(max_size=120))
    def test_payload_bodies(self, payload_type: int, body: bytes) -> None:
        try:
            payload = decode_payload_body(payload_type, body, 28)
        except DecodeError:
            return
        self.assertEqual(payload.raw, body)
        payload.encode()
