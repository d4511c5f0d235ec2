"""Diffie-Hellman groups of IKEv1 phase 1 and PFS: key pairs, KE payload data, shared secrets.

This module owns the GROUP_DESCRIPTION values the daemon can compute with
(inventory §3.1), the encoding of our public value as KE payload data, the
validation of the peer's KE data, and the shared secret g^xy fed to SKEYID
(RFC 2409 §5) and to the Quick Mode KEYMAT with PFS (RFC 2409 §5.5).

======  ==================  ====  ==========================================
group   name                KE    implementation
======  ==================  ====  ==========================================
1, 2    MODP_768, _1024     96,   gmpy2 ``powmod_sec`` (GMP ``mpz_powm_sec``,
5, 14   MODP_1536, _2048    128,  constant time), generator 2, primes from
15-18   MODP_3072 ... 8192  ...   RFC 2409 §6 and RFC 3526
19-21   ECP_256/384/521     64..  ``cryptography`` ECDH (OpenSSL)
26      ECP_224             56    ``cryptography`` ECDH (OpenSSL)
27      BP_224              56    this module's own curve arithmetic (below)
28-30   BP_256/384/512      64..  ``cryptography`` ECDH (OpenSSL)
======  ==================  ====  ==========================================

Encodings (RFC 5903 §7, RFC 6932 §2): a MODP public value is big-endian, left-padded
with zeros to the length of the prime; an ECP public value is X‖Y, each coordinate
left-padded to the field length, without the 0x04 prefix of SEC 1. The MODP shared
secret is g^xy left-padded to the prime length; the ECP shared secret is the
x-coordinate alone, left-padded to the field length (RFC 5903 §7 and §9, which
changed it from RFC 4753's X‖Y; OpenBSD isakmpd and strongSwan do the same for every
ECP group, brainpool included, whose RFC 6932 defers to RFC 5903).

Refused, with an :class:`UnsupportedGroupError` naming the group: EC2N 3 and 4 (and
the EC2N names 6-13), the RFC 5114 MODP groups with prime-order subgroups 22-24,
ECP_192 (25, removed from isakmpd in 2025) and every unknown number.

Why not ``cryptography``'s finite-field DH: it is deprecated since cryptography 50
(it warns), and OpenSSL re-checks an unnamed prime each time a peer's public key is
loaded, 22-38 ms for groups 1 and 2 on the development machine (``bench/dh.py``).

Private MODP exponents are not full length. A uniformly random exponent of twice the
group's security strength is as strong as a full one against every known attack on
safe-prime groups (RFC 3526 §8; van Oorschot and Wiener, EUROCRYPT '96), and costs a
tenth of a full-length one. The sizes are the minimum exponent lengths RFC 7919 §5.2
gives for its same-size groups (OpenSSL uses the same numbers for these MODP groups):
225 bits up to 2048-bit primes, then 275, 325, 375 and 400 bits. Every private
exponent has exactly that many bits, so its length tells nothing.

Errors: :class:`DHError` (a :class:`~isakmpd.crypto.prf.CryptoError`) carries in
``notify`` the notification the exchange should answer with:
``PAYLOAD_MALFORMED`` for KE data of the wrong length (inventory §3.1),
``INVALID_KEY_INFORMATION`` for a value that is not a valid public value of the
group (RFC 2408 §5.7), ``ATTRIBUTES_NOT_SUPPORTED`` for a group we do not implement.
Messages never contain key material.

Pure: no I/O, no clock; randomness only from the :class:`RandomSource` handed in,
with one exception: when that source is the operating system's
(:class:`~isakmpd.crypto.random.SystemRandom`, i.e. no ``-r seed``), the groups
computed by OpenSSL let OpenSSL draw the private scalar from its own CSPRNG, seeded
from the same operating system, and compute the public point in the same call
(``ec.generate_private_key``, a third of the cost of ``derive_private_key``, which
also re-checks the pair). A seeded source still chooses every private value, so
``-r`` runs stay reproducible.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

import gmpy2
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from isakmpd.crypto.dh_groups import CURVES, MODP_PRIMES, Curve
from isakmpd.crypto.prf import CryptoError, UnsupportedAlgorithmError
from isakmpd.crypto.random import RandomSource, SystemRandom
from isakmpd.wire.constants import GroupDescription, GroupType, NotifyType

__all__ = [
    "DHError",
    "DHGroup",
    "DHKeyPair",
    "InvalidPublicValueError",
    "UnsupportedGroupError",
    "group",
    "is_supported",
    "supported_groups",
]


# --- errors -----------------------------------------------------------------

class DHError(CryptoError):
    """A Diffie-Hellman failure; ``notify`` is the notification to answer with."""

    def __init__(self, message: str, notify: NotifyType, value: int | None = None,
                 attribute: str = "GROUP_DESCRIPTION") -> None:
        super().__init__(message, attribute, value)
        self.notify = notify


class UnsupportedGroupError(DHError, UnsupportedAlgorithmError):
    """A GROUP_DESCRIPTION we do not implement (``value`` is the group number)."""

    def __init__(self, number: int, reason: str = "") -> None:
        text = f"DH group {number} ({_group_label(number)}) is not supported"
        if reason:
            text += f": {reason}"
        text += f" (supported: {', '.join(str(n) for n in _SUPPORTED)})"
        super().__init__(text, NotifyType.ATTRIBUTES_NOT_SUPPORTED, number)


class InvalidPublicValueError(DHError):
    """The peer's KE data is not a public value of the group.

    ``notify`` is ``PAYLOAD_MALFORMED`` when the length is wrong and
    ``INVALID_KEY_INFORMATION`` when the value itself is invalid; ``value`` is the
    group number.
    """

    def __init__(self, grp: DHGroup, problem: str, notify: NotifyType) -> None:
        super().__init__(f"peer's KE data for DH group {grp.number} ({grp.name}): {problem}",
                         notify, grp.number, "KEY_EXCHANGE")


def _group_label(number: int) -> str:
    try:
        return GroupDescription(number).label
    except ValueError:
        return "unknown"


# --- the public interface ---------------------------------------------------

class DHKeyPair:
    """Our half of one exchange: a private value and its public value.

    ``public_bytes`` is the data of our KE payload. The private value stays inside;
    :meth:`shared_secret` combines it with the peer's KE data.
    """

    __slots__ = ("_secret", "group", "public_bytes")

    def __init__(self, grp: DHGroup, public_bytes: bytes, secret: object) -> None:
        self.group = grp
        self.public_bytes = public_bytes
        self._secret = secret

    def shared_secret(self, peer_ke: bytes) -> bytes:
        """g^xy from the peer's KE payload data, after validating it.

        Raises :class:`InvalidPublicValueError` for data of the wrong length or a
        value that is not a valid public value of the group.
        """
        return self.group._agree(self._secret, bytes(peer_ke))

    def __repr__(self) -> str:
        return f"<DHKeyPair group {self.group.number} ({self.group.name})>"


class DHGroup:
    """One supported group. Get them from :func:`group`; never instantiate directly.

    ``number`` is the GROUP_DESCRIPTION value, ``name`` isakmpd's label
    (``MODP_2048``, ``ECP_256``, ``BP_224``), ``kind`` MODP or ECP, ``ke_length`` the
    exact length of KE payload data, ``implementation`` which code computes it.
    """

    kind: GroupType
    implementation: str

    def __init__(self, number: int, ke_length: int) -> None:
        self.number = number
        self.name = GroupDescription(number).label
        self.ke_length = ke_length

    def generate(self, rng: RandomSource) -> DHKeyPair:
        """A fresh key pair whose private value comes from ``rng``."""
        raise NotImplementedError

    def from_private(self, private: int) -> DHKeyPair:
        """The key pair with the given private value.

        For known-answer tests and reproducible runs only: the daemon itself always
        uses :meth:`generate`. Raises ValueError if the value is out of range.
        """
        raise NotImplementedError

    def check_public(self, peer_ke: bytes) -> None:
        """Validate the peer's KE data without computing anything secret."""
        self._parse(bytes(peer_ke))

    def _parse(self, peer_ke: bytes) -> object:
        raise NotImplementedError

    def _agree(self, secret: object, peer_ke: bytes) -> bytes:
        raise NotImplementedError

    def _check_length(self, peer_ke: bytes) -> None:
        if len(peer_ke) != self.ke_length:
            raise InvalidPublicValueError(
                self, f"{len(peer_ke)} bytes, the group needs exactly {self.ke_length}",
                NotifyType.PAYLOAD_MALFORMED)

    def __repr__(self) -> str:
        return f"<DHGroup {self.number} {self.name} ({self.implementation})>"


# --- MODP -------------------------------------------------------------------

# Private exponent length in bits by prime length (RFC 7919 §5.2; see the module text).
_EXPONENT_BITS = {768: 225, 1024: 225, 1536: 225, 2048: 225,
                  3072: 275, 4096: 325, 6144: 375, 8192: 400}


class _ModpGroup(DHGroup):
    kind = GroupType.MODP
    implementation = "gmpy2 powmod_sec"
    generator = 2

    def __init__(self, number: int, prime: int) -> None:
        super().__init__(number, (prime.bit_length() + 7) // 8)
        self.prime = prime
        self._p = gmpy2.mpz(prime)
        self.exponent_bits = _EXPONENT_BITS[prime.bit_length()]

    def generate(self, rng: RandomSource) -> DHKeyPair:
        top = 1 << (self.exponent_bits - 1)
        return self.from_private(top | rng.randbelow(top))

    def from_private(self, private: int) -> DHKeyPair:
        if not 1 < private < self.prime - 1:
            raise ValueError(f"a private value of group {self.number} must lie in [2, p-2]")
        x = gmpy2.mpz(private)
        public = gmpy2.powmod_sec(self.generator, x, self._p)
        return DHKeyPair(self, int(public).to_bytes(self.ke_length, "big"), x)

    def _parse(self, peer_ke: bytes) -> gmpy2.mpz:
        self._check_length(peer_ke)
        y = int.from_bytes(peer_ke, "big")
        # 0, 1 and p-1 (and anything >= p) are not public values; 1 and p-1 generate
        # the subgroup of order 2, the only small subgroup of a safe-prime group, so
        # no further subgroup test is needed (NIST SP 800-56A Rev. 3 §5.6.2.3.1,
        # partial validation; a full one would cost another exponentiation).
        if not 2 <= y <= self.prime - 2:
            raise InvalidPublicValueError(
                self, "value outside [2, p-2]", NotifyType.INVALID_KEY_INFORMATION)
        return gmpy2.mpz(y)

    def _agree(self, secret: object, peer_ke: bytes) -> bytes:
        y = self._parse(peer_ke)
        z = gmpy2.powmod_sec(y, secret, self._p)
        return int(z).to_bytes(self.ke_length, "big")


# --- ECP, common part ---------------------------------------------------------

class _EcpGroup(DHGroup):
    kind = GroupType.ECP

    def __init__(self, number: int, curve: Curve) -> None:
        super().__init__(number, 2 * curve.field_bytes)
        self.curve = curve

    def generate(self, rng: RandomSource) -> DHKeyPair:
        # Uniform in [1, n-1] (FIPS 186-4 appendix B.4.2).
        return self.from_private(1 + rng.randbelow(self.curve.n - 1))

    def _check_scalar(self, private: int) -> None:
        if not 0 < private < self.curve.n:
            raise ValueError(f"a private value of group {self.number} must lie in [1, n-1]")

    def _encode(self, x: int, y: int) -> bytes:
        size = self.curve.field_bytes
        return int(x).to_bytes(size, "big") + int(y).to_bytes(size, "big")

    def _parse(self, peer_ke: bytes) -> tuple[int, int]:
        # RFC 5903 §7 / RFC 6932 §2: X‖Y. Validation as in NIST SP 800-56A Rev. 3
        # §5.6.2.3.4 (partial): not the point at infinity, coordinates in [0, p-1],
        # on the curve. All curves here have cofactor 1, so every such point has
        # order n and no subgroup check is needed.
        self._check_length(peer_ke)
        size = self.curve.field_bytes
        x = int.from_bytes(peer_ke[:size], "big")
        y = int.from_bytes(peer_ke[size:], "big")
        p = self.curve.p
        if x == 0 and y == 0:
            raise InvalidPublicValueError(
                self, "all zero (the point at infinity has no X‖Y encoding)",
                NotifyType.INVALID_KEY_INFORMATION)
        if x >= p or y >= p:
            raise InvalidPublicValueError(
                self, "coordinate not below the field prime", NotifyType.INVALID_KEY_INFORMATION)
        if (y * y - (x * x * x + self.curve.a * x + self.curve.b)) % p:
            raise InvalidPublicValueError(
                self, "point is not on the curve", NotifyType.INVALID_KEY_INFORMATION)
        return x, y


# --- ECP through cryptography (OpenSSL) ---------------------------------------

_LIBRARY_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp224r1": ec.SECP224R1,
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
    "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1,
    "brainpoolP512r1": ec.BrainpoolP512R1,
}


# Read once: an enum class's attribute costs a Python-level call in 3.11. ECDH
# holds nothing, so one serves every exchange.
_X962 = Encoding.X962
_UNCOMPRESSED_POINT = PublicFormat.UncompressedPoint
_ECDH = ec.ECDH()


class _LibraryEcpGroup(_EcpGroup):
    implementation = "cryptography ECDH"

    def __init__(self, number: int, curve: Curve) -> None:
        super().__init__(number, curve)
        self._ec_curve = _LIBRARY_CURVES[curve.name]()
        # The last KE data check_public passed and OpenSSL's point for it: the
        # phase 1 responder checks the peer's value in MM3 and agrees on it right
        # after, while building MM4. Public values only.
        self._checked: tuple[bytes, ec.EllipticCurvePublicKey] | None = None

    def generate(self, rng: RandomSource) -> DHKeyPair:
        if type(rng) is SystemRandom:
            # OpenSSL's scalar is uniform in [1, n-1] too (see the module text).
            return self._pair(ec.generate_private_key(self._ec_curve))
        return super().generate(rng)

    def from_private(self, private: int) -> DHKeyPair:
        self._check_scalar(private)
        return self._pair(ec.derive_private_key(private, self._ec_curve))

    def _pair(self, key: ec.EllipticCurvePrivateKey) -> DHKeyPair:
        # SEC 1 uncompressed point: 0x04 ‖ X ‖ Y, each padded to the field length.
        point = key.public_key().public_bytes(_X962, _UNCOMPRESSED_POINT)
        return DHKeyPair(self, point[1:], key)

    def check_public(self, peer_ke: bytes) -> None:
        # OpenSSL's check (below) costs less than _parse's Python arithmetic, and
        # its point serves the _agree that follows.
        peer_ke = bytes(peer_ke)
        self._checked = (peer_ke, self._load(peer_ke))

    def _load(self, peer_ke: bytes) -> ec.EllipticCurvePublicKey:
        try:
            # OpenSSL validates the uncompressed point itself (length, coordinates
            # below p, on the curve); _parse's checks only word a refusal.
            return ec.EllipticCurvePublicKey.from_encoded_point(
                self._ec_curve, b"\x04" + peer_ke)
        except ValueError:
            self._parse(peer_ke)            # raises, saying what is wrong
            raise InvalidPublicValueError(  # pragma: no cover - _parse refuses first
                self, "point rejected by OpenSSL", NotifyType.INVALID_KEY_INFORMATION) from None

    def _agree(self, secret: object, peer_ke: bytes) -> bytes:
        # The key _pair made; cast, not an isinstance through the ABC, which costs
        # about as much as the rest of this method's Python.
        key = cast("ec.EllipticCurvePrivateKey", secret)
        checked = self._checked
        if checked is not None and checked[0] == peer_ke:
            peer = checked[1]               # checked by check_public just before
        else:
            peer = self._load(peer_ke)
        # OpenSSL's ECDH output is the x-coordinate, padded to the field length.
        return key.exchange(_ECDH, peer).rjust(self.curve.field_bytes, b"\0")


# --- ECP in this module: brainpoolP224r1 ----------------------------------------
#
# cryptography (50.0) has no brainpoolP224r1, so group 27 is computed here, on
# Jacobian coordinates (x = X/Z^2, y = Y/Z^3) with gmpy2 integers.
#
# Honesty about side channels: Python's and GMP's integer arithmetic is not constant
# time (operand sizes vary, ``%`` is a variable-time division), so this code cannot
# be. What it does do: the scalar is recoded into a fixed number of nonzero signed
# digits, so every scalar runs the same sequence of doublings and additions with no
# branch on a secret bit; the final inversion uses ``powmod_sec``. A point whose
# x-coordinate equals the accumulator's would need a special case; that happens only
# for a negligible fraction of scalars (it depends on the scalar alone, never on the
# peer's point, since every valid point has the same prime order), makes Z zero, and
# is then recomputed by the plain affine reference code.

_WINDOW = 4                      # bits per digit
_HALF = 1 << _WINDOW             # 16
_MASK = (1 << (_WINDOW + 1)) - 1  # 31


def _digit_count(n: int) -> int:
    """Digits after which the recoding below always ends in the digit 1."""
    return -(-(n.bit_length() + 1) // _WINDOW)


def _recode(k: int, n: int) -> list[int]:
    """Odd signed base-16 digits d_i in [-15, 15] with sum(d_i * 16^i) = k (mod n).

    The regular recoding of Joye and Tunstall (CHES 2009): every digit is odd, hence
    nonzero, so no addition is ever skipped. k is made odd first by adding n when it
    is even (n is odd), which does not change k*P.
    """
    k = k + n * (1 - (k & 1))
    digits = []
    for _ in range(_digit_count(n)):
        d = (k & _MASK) - _HALF
        digits.append(d)
        k = (k - d) >> _WINDOW
    digits.append(k)  # always 1: k < 2n < 2^(4 * count)
    return digits


class _Arithmetic:
    """Point arithmetic on one short Weierstrass curve with general a."""

    def __init__(self, curve: Curve) -> None:
        self.curve = curve
        self.p = gmpy2.mpz(curve.p)
        self.a = gmpy2.mpz(curve.a)

    # Affine helpers, variable time; used for tables of public points and as the
    # reference path.
    def affine_add(self, P: tuple[int, int] | None,
                   Q: tuple[int, int] | None) -> tuple[int, int] | None:
        if P is None:
            return Q
        if Q is None:
            return P
        p = self.p
        (x1, y1), (x2, y2) = P, Q
        if x1 == x2:
            if (y1 + y2) % p == 0:
                return None
            slope = (3 * x1 * x1 + self.a) * gmpy2.invert(2 * y1, p) % p
        else:
            slope = (y2 - y1) * gmpy2.invert(x2 - x1, p) % p
        x3 = (slope * slope - x1 - x2) % p
        return x3, (slope * (x1 - x3) - y1) % p

    def reference_mul(self, k: int, P: tuple[int, int]) -> tuple[int, int] | None:
        """k*P by affine double-and-add: simple, variable time."""
        result = None
        for bit in bin(k)[2:]:
            result = self.affine_add(result, result)
            if bit == "1":
                result = self.affine_add(result, P)
        return result

    def odd_multiples(self, P: tuple[int, int]) -> list[tuple[int, int]]:
        """[P, 3P, 5P, ..., 15P] in affine coordinates."""
        twice = self.affine_add(P, P)
        table = [P]
        for _ in range(_HALF // 2 - 1):
            table.append(self.affine_add(table[-1], twice))
        return table  # type: ignore[return-value]

    # Jacobian formulas (Cohen, Miyaji, Ono, ASIACRYPT '98; the general-a doubling
    # and the mixed addition with an affine point).
    def double(self, X: gmpy2.mpz, Y: gmpy2.mpz, Z: gmpy2.mpz):
        p = self.p
        XX = X * X % p
        YY = Y * Y % p
        ZZ = Z * Z % p
        S = 4 * X * YY % p
        M = (3 * XX + self.a * (ZZ * ZZ % p)) % p
        X3 = (M * M - 2 * S) % p
        Y3 = (M * (S - X3) - 8 * (YY * YY % p)) % p
        return X3, Y3, 2 * Y * Z % p

    def add_affine(self, X: gmpy2.mpz, Y: gmpy2.mpz, Z: gmpy2.mpz, x2: int, y2: int):
        p = self.p
        ZZ = Z * Z % p
        H = (x2 * ZZ - X) % p
        R = (y2 * ZZ % p * Z - Y) % p
        HH = H * H % p
        HHH = H * HH % p
        V = X * HH % p
        X3 = (R * R - HHH - 2 * V) % p
        Y3 = (R * (V - X3) - Y * HHH) % p
        return X3, Y3, Z * H % p

    def to_affine(self, X: gmpy2.mpz, Y: gmpy2.mpz, Z: gmpy2.mpz) -> tuple[int, int]:
        p = self.p
        zinv = gmpy2.powmod_sec(Z, p - 2, p)  # Fermat: Z is prime-field, nonzero
        zinv2 = zinv * zinv % p
        return int(X * zinv2 % p), int(Y * zinv2 % p * zinv % p)

    @staticmethod
    def select(table: Sequence[tuple[int, int]], d: int, p: gmpy2.mpz) -> tuple[int, int]:
        """|d| * B from the odd-multiples table, negated for negative d, without a branch."""
        sign = d >> 8                      # -1 for negative d, else 0
        x, y = table[((d ^ sign) - sign) >> 1]
        return x, y + sign * (2 * y - p)   # y, or p - y

    def mul(self, k: int, P: tuple[int, int]) -> tuple[int, int]:
        """k*P for 0 < k < n by a fixed window of odd signed digits."""
        n, p = self.curve.n, self.p
        digits = _recode(k, n)
        table = self.odd_multiples(P)
        x, y = self.select(table, digits[-1], p)
        X, Y, Z = gmpy2.mpz(x), gmpy2.mpz(y), gmpy2.mpz(1)
        for d in reversed(digits[:-1]):
            for _ in range(_WINDOW):
                X, Y, Z = self.double(X, Y, Z)
            x, y = self.select(table, d, p)
            X, Y, Z = self.add_affine(X, Y, Z, x, y)
        if Z == 0:
            return self._fallback(k, P)
        return self.to_affine(X, Y, Z)

    @functools.cached_property
    def base_table(self) -> list[list[tuple[int, int]]]:
        """Odd multiples of 16^i * G for every digit position i (built on first use)."""
        curve = self.curve
        base: tuple[int, int] | None = (curve.gx, curve.gy)
        tables = []
        for _ in range(_digit_count(curve.n) + 1):
            assert base is not None
            tables.append(self.odd_multiples(base))
            for _ in range(_WINDOW):
                base = self.affine_add(base, base)
        return tables

    def mul_base(self, k: int) -> tuple[int, int]:
        """k*G for 0 < k < n: one mixed addition per digit, no doubling."""
        p = self.p
        tables = self.base_table
        digits = _recode(k, self.curve.n)
        x, y = self.select(tables[0], digits[0], p)
        X, Y, Z = gmpy2.mpz(x), gmpy2.mpz(y), gmpy2.mpz(1)
        for i in range(1, len(digits)):
            x, y = self.select(tables[i], digits[i], p)
            X, Y, Z = self.add_affine(X, Y, Z, x, y)
        if Z == 0:
            return self._fallback(k, (self.curve.gx, self.curve.gy))
        return self.to_affine(X, Y, Z)

    def _fallback(self, k: int, P: tuple[int, int]) -> tuple[int, int]:
        result = self.reference_mul(k, P)
        assert result is not None  # k in [1, n-1] and P of order n
        return int(result[0]), int(result[1])


class _OwnEcpGroup(_EcpGroup):
    implementation = "own brainpool code (gmpy2, fixed window)"

    def __init__(self, number: int, curve: Curve) -> None:
        super().__init__(number, curve)
        self._arith = _Arithmetic(curve)

    def from_private(self, private: int) -> DHKeyPair:
        self._check_scalar(private)
        x, y = self._arith.mul_base(private)
        return DHKeyPair(self, self._encode(x, y), private)

    def _agree(self, secret: object, peer_ke: bytes) -> bytes:
        assert isinstance(secret, int)
        point = self._parse(peer_ke)
        x, _ = self._arith.mul(secret, point)
        return x.to_bytes(self.curve.field_bytes, "big")


# --- the registry -------------------------------------------------------------

_OWN_CURVES = frozenset({"brainpoolP224r1"})

_SUPPORTED: tuple[int, ...] = tuple(sorted([*MODP_PRIMES, *CURVES]))

_REFUSED: dict[int, str] = {
    3: "EC2N groups are not implemented",
    4: "EC2N groups are not implemented",
    **{n: "EC2N groups are not implemented" for n in range(6, 14)},
    22: "the RFC 5114 MODP groups with prime-order subgroups are not implemented",
    23: "the RFC 5114 MODP groups with prime-order subgroups are not implemented",
    24: "the RFC 5114 MODP groups with prime-order subgroups are not implemented",
    25: "192-bit ECP was removed as too weak",
}


@functools.cache
def _make(number: int) -> DHGroup:
    if number in MODP_PRIMES:
        return _ModpGroup(number, MODP_PRIMES[number])
    curve = CURVES[number]
    if curve.name in _OWN_CURVES:
        return _OwnEcpGroup(number, curve)
    return _LibraryEcpGroup(number, curve)


def group(number: int) -> DHGroup:
    """The group with GROUP_DESCRIPTION ``number``.

    Raises :class:`UnsupportedGroupError` (notify ``ATTRIBUTES_NOT_SUPPORTED``)
    naming the group for anything not in :func:`supported_groups`.
    """
    number = int(number)
    if number not in _SUPPORTED:
        raise UnsupportedGroupError(number, _REFUSED.get(number, ""))
    return _make(number)


def is_supported(number: int) -> bool:
    """True if :func:`group` accepts ``number``."""
    return int(number) in _SUPPORTED


def supported_groups() -> tuple[DHGroup, ...]:
    """Every supported group, by ascending number."""
    return tuple(_make(n) for n in _SUPPORTED)
