"""Hashes and the IKEv1 pseudo-random function.

This module owns the phase 1 HASH_ALGORITHM values (RFC 2409 appendix A): the plain
hash (used for the phase 1 and phase 2 IVs, NAT-D, cookies) and the PRF, which in
IKEv1 is always HMAC (RFC 2104) of the negotiated hash, since a proposal carrying a
PRF attribute is refused (inventory §3.1). It also offers the constant-time compare
used to check received HASH and MAC values.

HMAC is the standard one (DESIGN §4): the key is padded to the hash's own block
size, 64 bytes for MD5/SHA-1/SHA-256 and 128 bytes for SHA-384/SHA-512 (RFC 4231,
RFC 4868 §2.1.1), not the 64 bytes older isakmpd releases used for every hash.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes as _hashes
from cryptography.hazmat.primitives import hmac as _hmac

from isakmpd.wire.constants import HashAlgorithm

__all__ = [
    "CryptoError",
    "HashSpec",
    "KeyLengthError",
    "KeyedPrf",
    "UnsupportedAlgorithmError",
    "equal",
    "hash",
    "hash_size",
    "hash_spec",
    "prf",
]


class CryptoError(ValueError):
    """Something about an algorithm or its inputs that negotiation can act on.

    ``attribute`` names the SA attribute (or transform) at fault and ``value`` the
    number received, so the exchange layer can log and answer with the notify the
    RFC prescribes. The message never contains key material.
    """

    def __init__(self, message: str, attribute: str = "", value: int | None = None) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.value = value


class UnsupportedAlgorithmError(CryptoError):
    """A known or unknown algorithm number that this daemon does not implement."""


class KeyLengthError(CryptoError):
    """A KEY_LENGTH attribute (or a key) whose length the algorithm cannot use."""


@dataclass(frozen=True)
class HashSpec:
    """A supported phase 1 hash: its hashlib name, output size and HMAC block size."""

    algorithm: HashAlgorithm
    hashlib_name: str
    digest_size: int
    block_size: int

    def __hash__(self) -> int:
        # Written out because the generated one would call this module's hash().
        return builtins.hash(self.algorithm)


# RFC 2409 appendix A and RFC 4868 (IKEv1 use of SHA-2 with HMAC, block sizes in
# RFC 4231 §1 / FIPS 180-4). TIGER (3) is defined but not implemented (inventory §3.1).
_HASHES: dict[HashAlgorithm, HashSpec] = {
    spec.algorithm: spec
    for spec in (
        HashSpec(HashAlgorithm.MD5, "md5", 16, 64),
        HashSpec(HashAlgorithm.SHA, "sha1", 20, 64),
        HashSpec(HashAlgorithm.SHA2_256, "sha256", 32, 64),
        HashSpec(HashAlgorithm.SHA2_384, "sha384", 48, 128),
        HashSpec(HashAlgorithm.SHA2_512, "sha512", 64, 128),
    )
}


def hash_spec(alg: int) -> HashSpec:
    """The :class:`HashSpec` of HASH_ALGORITHM value ``alg``.

    Raises :class:`UnsupportedAlgorithmError` naming the attribute and value for
    TIGER and for numbers RFC 2409 does not define.
    """
    try:
        return _HASHES[alg]     # IntEnum keys: a plain int finds its member
    except (KeyError, TypeError):
        raise UnsupportedAlgorithmError(
            f"HASH_ALGORITHM {HashAlgorithm.describe(alg)} is not supported "
            f"(supported: {', '.join(a.label for a in _HASHES)})",
            "HASH_ALGORITHM", int(alg)) from None


def hash_size(alg: int) -> int:
    """Output size in bytes of hash ``alg`` (and of the PRF built on it)."""
    return hash_spec(alg).digest_size


# hashlib's constructor of each hash: hashlib.new looks the name up on every call.
_HASH_NEW = {alg: getattr(hashlib, spec.hashlib_name) for alg, spec in _HASHES.items()}


def hash(alg: int, data: bytes) -> bytes:  # shadows the builtin: RFC 2409 calls it hash
    """The plain hash of ``data`` with HASH_ALGORITHM ``alg`` (e.g. NAT-D, IVs)."""
    try:
        new = _HASH_NEW[alg]
    except (KeyError, TypeError):
        hash_spec(alg)          # raises UnsupportedAlgorithmError
        raise
    return new(data).digest()


_HASH_CLASSES: dict[str, type[_hashes.HashAlgorithm]] = {
    "md5": _hashes.MD5, "sha1": _hashes.SHA1, "sha256": _hashes.SHA256,
    "sha384": _hashes.SHA384, "sha512": _hashes.SHA512,
}
# By HASH_ALGORITHM (member or plain int): the member and one (stateless) hash
# instance shared by every HMAC, so that keying one takes a dict lookup rather
# than a hash_spec() call and a second lookup by name.
_HMAC_HASHES: dict[HashAlgorithm, tuple[HashAlgorithm, _hashes.HashAlgorithm]] = {
    alg: (alg, _HASH_CLASSES[spec.hashlib_name]()) for alg, spec in _HASHES.items()
}
_new_hmac = _hmac.HMAC


class KeyedPrf:
    """prf(key, ·) of one key: the same HMAC as :func:`prf`, keyed once.

    Keying HMAC pads the key and hashes a block each for the inner and outer
    state; a copy of the keyed state does neither, at half the cost of keying
    anew for the short inputs of IKE. Where one key serves several prf() calls
    (SKEYID for SKEYID_d/_a/_e and HASH_I/HASH_R, SKEYID_a for HASH(1)..(3),
    SKEYID_d for KEYMAT), pass a KeyedPrf where the key bytes would go:
    :func:`prf`, and so every function here built on it, takes either. It holds
    the keyed state, so keep it only as long as the key itself is needed. No key
    in ``repr``.
    """

    __slots__ = ("_keyed", "algorithm")

    def __init__(self, alg: int, key: bytes) -> None:
        try:
            self.algorithm, hash_object = _HMAC_HASHES[alg]
        except (KeyError, TypeError):
            hash_spec(alg)          # raises UnsupportedAlgorithmError
            raise
        # bytes() for any other bytes-like key, as before; a bytes key goes as it is.
        self._keyed = _new_hmac(key if key.__class__ is bytes else bytes(key), hash_object)

    def __call__(self, data: bytes) -> bytes:
        h = self._keyed.copy()
        h.update(data)
        return h.finalize()

    def __repr__(self) -> str:
        return f"<KeyedPrf {self.algorithm.label}>"


def prf(alg: int, key: bytes | KeyedPrf, data: bytes) -> bytes:
    """prf(key, data) of RFC 2409 §5: HMAC (RFC 2104) with hash ``alg``.

    The key may be of any length; keys longer than the hash's block size are hashed
    first, shorter ones zero-padded to the block size (128 bytes for SHA-384/512).
    ``key`` may also be a :class:`KeyedPrf` of the same hash.
    """
    if type(key) is KeyedPrf:
        if key.algorithm != alg:
            raise CryptoError(f"a {key.algorithm.label} prf used as "
                              f"{HashAlgorithm.describe(alg)}")
        return key(data)
    try:
        hash_object = _HMAC_HASHES[alg][1]
    except (KeyError, TypeError):
        hash_spec(alg)              # raises UnsupportedAlgorithmError
        raise
    # The same HMAC as hmac.digest(), through the library KeyedPrf uses: about a
    # fifth fewer instructions than hmac.digest, which has OpenSSL fetch the hash
    # by name and build a one-shot MAC context each time (SKEYID, once per tunnel).
    h = _new_hmac(key, hash_object)
    h.update(data)
    return h.finalize()


def equal(expected: bytes, received: bytes) -> bool:
    """Compare a computed HASH/MAC with a received one in constant time."""
    return hmac.compare_digest(expected, received)
