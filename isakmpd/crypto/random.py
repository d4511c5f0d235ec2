"""The daemon's one source of randomness.

Cookies, nonces, message IDs, DH private values, IVs and jitter all come from a
:class:`RandomSource` that is handed to whoever needs it; nothing else reads the
operating system's randomness. :class:`SystemRandom` is what runs in production.
:class:`SeededRandom` is what ``-r seed`` selects (isakmpd(8), older man page) and
what tests use: the same seed gives byte-identical output, run after run.

SeededRandom is an HMAC-DRBG with SHA-256 (NIST SP 800-90A Rev. 1 §10.1.2, without
reseeding or additional input). A seeded run is for debugging and regression
tests only: its keys are as predictable as its seed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Protocol, runtime_checkable


@runtime_checkable
class RandomSource(Protocol):
    """Something that hands out random bytes and numbers."""

    def random_bytes(self, count: int) -> bytes:
        """Return ``count`` random bytes."""

    def randbelow(self, limit: int) -> int:
        """Return a uniform random integer in ``[0, limit)``."""


class _IntegerMixin:
    """randbelow() and randint() on top of random_bytes(), by rejection sampling."""

    def random_bytes(self, count: int) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    def randbelow(self, limit: int) -> int:
        if limit <= 0:
            raise ValueError("randbelow() needs a positive limit")
        bits = (limit - 1).bit_length()
        if bits == 0:
            return 0
        nbytes = (bits + 7) // 8
        excess = nbytes * 8 - bits
        while True:
            value = int.from_bytes(self.random_bytes(nbytes), "big") >> excess
            if value < limit:
                return value

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in ``[low, high]``."""
        return low + self.randbelow(high - low + 1)


class SystemRandom(_IntegerMixin):
    """The operating system's CSPRNG."""

    def random_bytes(self, count: int) -> bytes:
        return os.urandom(count)


class SeededRandom(_IntegerMixin):
    """A deterministic HMAC-DRBG (SHA-256) seeded with an integer or bytes."""

    def __init__(self, seed: int | bytes) -> None:
        if isinstance(seed, int):
            if seed < 0:
                raise ValueError("the seed must not be negative")
            seed = seed.to_bytes(max(1, (seed.bit_length() + 7) // 8), "big")
        self._key = b"\x00" * 32
        self._value = b"\x01" * 32
        self._update(seed)

    def _update(self, data: bytes) -> None:
        # SP 800-90A §10.1.2.2 HMAC_DRBG_Update.
        self._key = hmac.new(self._key, self._value + b"\x00" + data, hashlib.sha256).digest()
        self._value = hmac.new(self._key, self._value, hashlib.sha256).digest()
        if data:
            self._key = hmac.new(self._key, self._value + b"\x01" + data,
                                 hashlib.sha256).digest()
            self._value = hmac.new(self._key, self._value, hashlib.sha256).digest()

    def random_bytes(self, count: int) -> bytes:
        if count < 0:
            raise ValueError("cannot produce a negative number of bytes")
        out = bytearray()
        while len(out) < count:
            self._value = hmac.new(self._key, self._value, hashlib.sha256).digest()
            out += self._value
        self._update(b"")
        return bytes(out[:count])
