"""Tests of isakmpd.crypto.random: the seeded source is reproducible and uniform enough."""

import hashlib
import hmac
import os

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.crypto.random import RandomSource, SeededRandom, SystemRandom


def _reference_hmac_drbg(seed: bytes, count: int) -> bytes:
    """HMAC-DRBG (SP 800-90A §10.1.2) written out step by step, for one generate call."""
    key, value = b"\x00" * 32, b"\x01" * 32
    for marker in (b"\x00", b"\x01"):
        key = hmac.new(key, value + marker + seed, hashlib.sha256).digest()
        value = hmac.new(key, value, hashlib.sha256).digest()
    out = b""
    while len(out) < count:
        value = hmac.new(key, value, hashlib.sha256).digest()
        out += value
    return out[:count]


class SeededRandomTests(SynchronousTestCase):
    def test_same_seed_same_bytes(self) -> None:
        first, second = SeededRandom(19990805), SeededRandom(19990805)
        self.assertEqual([first.random_bytes(n) for n in (1, 16, 100)],
                         [second.random_bytes(n) for n in (1, 16, 100)])

    def test_different_seed_different_bytes(self) -> None:
        self.assertNotEqual(SeededRandom(1).random_bytes(32), SeededRandom(2).random_bytes(32))

    def test_matches_the_drbg_definition(self) -> None:
        self.assertEqual(SeededRandom(b"seed").random_bytes(80),
                         _reference_hmac_drbg(b"seed", 80))

    def test_successive_calls_differ(self) -> None:
        rng = SeededRandom(7)
        self.assertNotEqual(rng.random_bytes(32), rng.random_bytes(32))

    def test_negative_seed_refused(self) -> None:
        self.assertRaises(ValueError, SeededRandom, -1)

    def test_randbelow_range_and_spread(self) -> None:
        rng = SeededRandom(3)
        values = [rng.randbelow(10) for _ in range(2000)]
        self.assertEqual(set(values), set(range(10)))
        # Each bucket should hold roughly 200; a broken sampler skews badly.
        for bucket in range(10):
            self.assertTrue(120 < values.count(bucket) < 280, values.count(bucket))
        self.assertEqual(rng.randbelow(1), 0)
        self.assertRaises(ValueError, rng.randbelow, 0)

    def test_randint_inclusive(self) -> None:
        rng = SeededRandom(4)
        values = {rng.randint(85, 95) for _ in range(500)}
        self.assertEqual(values, set(range(85, 96)))


class SystemRandomTests(SynchronousTestCase):
    def test_provides_protocol(self) -> None:
        self.assertIsInstance(SystemRandom(), RandomSource)
        self.assertIsInstance(SeededRandom(1), RandomSource)

    def test_lengths(self) -> None:
        rng = SystemRandom()
        self.assertEqual(len(rng.random_bytes(16)), 16)
        self.assertNotEqual(rng.random_bytes(16), rng.random_bytes(16))

    def test_block_reads_hand_out_each_byte_once(self) -> None:
        rng = SystemRandom()
        reads: list[int] = []
        real = os.urandom

        def counting(count: int) -> bytes:
            reads.append(count)
            return real(count)

        self.patch(os, "urandom", counting)
        pieces = [rng.random_bytes(n) for n in (16, 32, 8) * 100]
        self.assertEqual([len(p) for p in pieces], [16, 32, 8] * 100)
        self.assertEqual(len(set(pieces)), len(pieces))
        # 5,600 bytes from two 4 KiB reads, not 300 system calls.
        self.assertEqual(reads, [SystemRandom.BLOCK, SystemRandom.BLOCK])
        self.assertEqual(len(rng.random_bytes(10_000)), 10_000)    # large: direct
        self.assertEqual(reads[-1], 10_000)
        self.assertEqual(rng.random_bytes(0), b"")
        self.assertRaises(ValueError, rng.random_bytes, -1)

    def test_forked_child_forgets_the_parents_block(self) -> None:
        from isakmpd.crypto import random as module
        rng = SystemRandom()
        rng.random_bytes(16)
        self.assertNotEqual(rng._buffer, b"")
        module._after_fork_in_child()     # what os.register_at_fork runs in a child
        self.assertEqual((rng._buffer, rng._pos), (b"", 0))
