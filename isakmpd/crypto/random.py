"""The daemon's one source of randomness.

Cookies, nonces, message IDs, DH private values, IVs and jitter all come from a
:class:`RandomSource` that is handed to whoever needs it; nothing else reads the
operating system's randomness, except OpenSSL choosing ECDH private values in
place of a :class:`SystemRandom` (:mod:`isakmpd.crypto.dh`; never in place of a
seeded source). :class:`SystemRandom` is what runs in production.
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
import weakref
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
    """The operating system's CSPRNG, read a block at a time.

    Every cookie, nonce, SPI and message ID would otherwise cost a getrandom()
    system call of its own; slices of one 4 KiB read are the same randomness.
    Bytes are handed out once. A forked child drops what its parent had read, so
    the two never hand out the same bytes.
    """

    BLOCK = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._pos = 0
        _instances.add(self)

    def _forget(self) -> None:
        self._buffer = b""
        self._pos = 0

    def random_bytes(self, count: int) -> bytes:
        if count < 0:
            raise ValueError("cannot produce a negative number of bytes")
        if count > self.BLOCK:
            return os.urandom(count)
        end = self._pos + count
        if end > len(self._buffer):
            self._buffer = os.urandom(self.BLOCK)
            self._pos, end = 0, count
        out = self._buffer[self._pos:end]
        self._pos = end
        return out


_instances: weakref.WeakSet[SystemRandom] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for instance in list(_instances):
        instance._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
