"""Phase 1 key material and the IV chain of encrypted ISAKMP messages.

This module owns RFC 2409 §5 for the ISAKMP SA: SKEYID for pre-shared keys and for
signatures, SKEYID_d/_a/_e, the phase 1 cipher key (with the appendix B extension),
HASH_I/HASH_R, and the CBC IVs of phase 1 and of every phase 2 / informational /
transaction exchange (RFC 2409 appendix B). Quick Mode / informational hashes and
KEYMAT live in :mod:`isakmpd.crypto.ipsec_keys`.

Byte strings are passed exactly as RFC 2409 names them:

- ``ni_b``/``nr_b``: the NONCE payload bodies (without the 4-byte generic header);
- ``g_xi``/``g_xr``: the KE payload bodies, i.e. the public values as sent;
- ``g_xy``: the shared secret as the DH module encodes it (MODP left-padded to the
  prime length, ECP the X coordinate, RFC 5903), exactly the bytes both peers hash;
- ``cky_i``/``cky_r``: the 8-byte cookies from the ISAKMP header;
- ``sai_b``: the initiator's SA payload body; ``idii_b``/``idir_b``: ID payload bodies.

Nothing here prints key material: the key-holding classes have a ``repr`` that
shows only algorithm names.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from isakmpd.crypto import prf as _prf
from isakmpd.crypto.cipher import (
    DEFAULT_KEY_BITS,
    Phase1Cipher,
    cipher_spec,
    phase1_key_bytes,
)
from isakmpd.crypto.prf import CryptoError
from isakmpd.wire.constants import COOKIE_SIZE, EncryptionAlgorithm, HashAlgorithm

__all__ = [
    "IvChain",
    "Phase1Keys",
    "derive_phase1_keys",
    "derive_skeyids",
    "expand_cipher_key",
    "hash_i",
    "hash_r",
    "message_id_bytes",
    "phase1_iv",
    "phase1_keys_and_prf",
    "phase2_iv",
    "skeyid_pre_shared",
    "skeyid_signature",
]


def _check_cookies(cky_i: bytes, cky_r: bytes) -> None:
    if len(cky_i) != COOKIE_SIZE or len(cky_r) != COOKIE_SIZE:
        raise CryptoError(f"cookies must be {COOKIE_SIZE} bytes each, got "
                          f"{len(cky_i)} and {len(cky_r)}")


# --- SKEYID and its descendants (RFC 2409 §5) -------------------------------

def skeyid_pre_shared(hash_alg: int, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b) (RFC 2409 §5, pre-shared keys)."""
    return _prf.prf(hash_alg, psk, ni_b + nr_b)


def skeyid_signature(hash_alg: int, ni_b: bytes, nr_b: bytes, g_xy: bytes) -> bytes:
    """SKEYID = prf(Ni_b | Nr_b, g^xy) (RFC 2409 §5, signatures)."""
    return _prf.prf(hash_alg, ni_b + nr_b, g_xy)


@dataclass(frozen=True, repr=False, slots=True)
class Phase1Keys:
    """The ISAKMP SA's keys: SKEYID and descendants, and the cipher key.

    ``cipher_key`` is empty and ``cipher_algorithm`` None when the object came
    from :func:`derive_skeyids` alone.
    """

    hash_algorithm: HashAlgorithm
    skeyid: bytes
    skeyid_d: bytes
    skeyid_a: bytes
    skeyid_e: bytes
    cipher_algorithm: EncryptionAlgorithm | None = None
    cipher_key: bytes = field(default=b"")

    def __repr__(self) -> str:
        cipher = self.cipher_algorithm.label if self.cipher_algorithm else "no cipher"
        return f"<Phase1Keys {self.hash_algorithm.label} {cipher} (keys not shown)>"

    def cipher(self) -> Phase1Cipher:
        """The phase 1 cipher keyed with ``cipher_key``."""
        if self.cipher_algorithm is None:
            raise CryptoError("these phase 1 keys carry no cipher key")
        return Phase1Cipher(self.cipher_algorithm, self.cipher_key)


def derive_skeyids(hash_alg: int, skeyid: bytes, g_xy: bytes,
                   cky_i: bytes, cky_r: bytes) -> Phase1Keys:
    """SKEYID_d, SKEYID_a and SKEYID_e from SKEYID (RFC 2409 §5).

    SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
    SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
    SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
    """
    _check_cookies(cky_i, cky_r)
    tail = g_xy + cky_i + cky_r
    keyed = _prf.KeyedPrf(hash_alg, skeyid)          # one key, three uses
    skeyid_d = keyed(tail + b"\x00")
    skeyid_a = keyed(skeyid_d + tail + b"\x01")
    skeyid_e = keyed(skeyid_a + tail + b"\x02")
    return Phase1Keys(HashAlgorithm(hash_alg), skeyid, skeyid_d, skeyid_a, skeyid_e)


def expand_cipher_key(hash_alg: int, skeyid_e: bytes, nbytes: int) -> bytes:
    """The phase 1 cipher key of ``nbytes`` bytes from SKEYID_e.

    RFC 2409 appendix B: the leading bytes of SKEYID_e when it is long enough;
    otherwise the leading bytes of K1 | K2 | ... with K1 = prf(SKEYID_e, 0) (a
    single zero byte) and Kn = prf(SKEYID_e, Kn-1). SKEYID_e itself is then not
    part of the key.
    """
    if nbytes <= len(skeyid_e):
        return skeyid_e[:nbytes]
    blocks: list[bytes] = []
    block = b"\x00"
    total = 0
    while total < nbytes:
        block = _prf.prf(hash_alg, skeyid_e, block)
        blocks.append(block)
        total += len(block)
    return b"".join(blocks)[:nbytes]


def derive_phase1_keys(
    hash_alg: int,
    cipher_alg: int,
    key_length_bits: int | None,
    g_xy: bytes,
    ni_b: bytes,
    nr_b: bytes,
    cky_i: bytes,
    cky_r: bytes,
    *,
    psk: bytes | None = None,
    defaults: Mapping[EncryptionAlgorithm, int] = DEFAULT_KEY_BITS,
) -> Phase1Keys:
    """All phase 1 keys from the negotiated attributes and exchanged values.

    With ``psk`` SKEYID uses the pre-shared-key form, without it the signature form
    (RSA_SIG). ``key_length_bits`` is the KEY_LENGTH attribute or None; ``defaults``
    is passed to :func:`isakmpd.crypto.cipher.phase1_key_bytes`.
    """
    return phase1_keys_and_prf(hash_alg, cipher_alg, key_length_bits, g_xy, ni_b, nr_b,
                               cky_i, cky_r, psk=psk, defaults=defaults)[0]


def phase1_keys_and_prf(
    hash_alg: int,
    cipher_alg: int,
    key_length_bits: int | None,
    g_xy: bytes,
    ni_b: bytes,
    nr_b: bytes,
    cky_i: bytes,
    cky_r: bytes,
    *,
    psk: bytes | None = None,
    defaults: Mapping[EncryptionAlgorithm, int] = DEFAULT_KEY_BITS,
) -> tuple[Phase1Keys, _prf.KeyedPrf]:
    """:func:`derive_phase1_keys`, and prf(SKEYID, ·) keyed once for HASH_I and HASH_R
    (pass it to :func:`hash_i`/:func:`hash_r` as ``skeyid``). The keys are built in one
    object, without the intermediate one of :func:`derive_skeyids`."""
    nbytes = phase1_key_bytes(cipher_alg, key_length_bits, defaults)
    if psk is None:
        skeyid = skeyid_signature(hash_alg, ni_b, nr_b, g_xy)
    else:
        skeyid = skeyid_pre_shared(hash_alg, psk, ni_b, nr_b)
    _check_cookies(cky_i, cky_r)
    # RFC 2409 §5, as in derive_skeyids.
    tail = g_xy + cky_i + cky_r
    keyed = _prf.KeyedPrf(hash_alg, skeyid)
    skeyid_d = keyed(tail + b"\x00")
    skeyid_a = keyed(skeyid_d + tail + b"\x01")
    skeyid_e = keyed(skeyid_a + tail + b"\x02")
    keys = _phase1_keys(keyed.algorithm, skeyid, skeyid_d, skeyid_a, skeyid_e,
                        cipher_spec(cipher_alg).algorithm,
                        expand_cipher_key(hash_alg, skeyid_e, nbytes))
    return keys, keyed


# Phase1Keys(...) for the fields phase1_keys_and_prf has just made, filled in through
# the slots' own setters (as _chain below does for IvChain): the frozen dataclass's
# __init__ sets each of the seven fields with object.__setattr__, about 5,000
# instructions more per ISAKMP SA.
_set_phase1_keys = tuple(Phase1Keys.__dict__[name].__set__ for name in (
    "hash_algorithm", "skeyid", "skeyid_d", "skeyid_a", "skeyid_e", "cipher_algorithm",
    "cipher_key"))


def _phase1_keys(hash_algorithm: HashAlgorithm, skeyid: bytes, skeyid_d: bytes,
                 skeyid_a: bytes, skeyid_e: bytes, cipher_algorithm: EncryptionAlgorithm,
                 cipher_key: bytes) -> Phase1Keys:
    (set_hash, set_skeyid, set_d, set_a, set_e, set_cipher, set_key) = _set_phase1_keys
    keys: Phase1Keys = object.__new__(Phase1Keys)
    set_hash(keys, hash_algorithm)
    set_skeyid(keys, skeyid)
    set_d(keys, skeyid_d)
    set_a(keys, skeyid_a)
    set_e(keys, skeyid_e)
    set_cipher(keys, cipher_algorithm)
    set_key(keys, cipher_key)
    return keys


# --- HASH_I / HASH_R (RFC 2409 §5) ------------------------------------------

def hash_i(hash_alg: int, skeyid: bytes | _prf.KeyedPrf, g_xi: bytes, g_xr: bytes,
           cky_i: bytes, cky_r: bytes, sai_b: bytes, idii_b: bytes) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)."""
    _check_cookies(cky_i, cky_r)
    return _prf.prf(hash_alg, skeyid, g_xi + g_xr + cky_i + cky_r + sai_b + idii_b)


def hash_r(hash_alg: int, skeyid: bytes | _prf.KeyedPrf, g_xi: bytes, g_xr: bytes,
           cky_i: bytes, cky_r: bytes, sai_b: bytes, idir_b: bytes) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b).

    The arguments are named by role, as for :func:`hash_i`; the responder's order
    is applied here. SAi_b is the *initiator's* SA body in both hashes.
    """
    _check_cookies(cky_i, cky_r)
    return _prf.prf(hash_alg, skeyid, g_xr + g_xi + cky_r + cky_i + sai_b + idir_b)


# --- IVs (RFC 2409 appendix B) ----------------------------------------------

def message_id_bytes(message_id: int | bytes) -> bytes:
    """The 4-byte M-ID as it appears in the ISAKMP header (an int is big-endian)."""
    if isinstance(message_id, int):
        if not 0 <= message_id <= 0xFFFFFFFF:
            raise CryptoError(f"message ID {message_id} does not fit in 4 bytes")
        return message_id.to_bytes(4, "big")
    if len(message_id) != 4:
        raise CryptoError(f"a message ID is 4 bytes, got {len(message_id)}")
    return bytes(message_id)


def _truncate(hash_alg: int, digest: bytes, block_size: int) -> bytes:
    if len(digest) < block_size:
        raise CryptoError(
            f"{HashAlgorithm.describe(hash_alg)} output ({len(digest)} bytes) is shorter "
            f"than the cipher block ({block_size} bytes)")
    return digest[:block_size]


def phase1_iv(hash_alg: int, g_xi: bytes, g_xr: bytes, block_size: int) -> bytes:
    """The IV of the first encrypted phase 1 message: hash(g^xi | g^xr), truncated."""
    return _truncate(hash_alg, _prf.hash(hash_alg, g_xi + g_xr), block_size)


def phase2_iv(hash_alg: int, last_phase1_iv: bytes, message_id: int | bytes,
              block_size: int) -> bytes:
    """The IV of the first message of a phase 2 / informational exchange.

    hash(last phase 1 CBC output block | M-ID), truncated to the block size
    (RFC 2409 appendix B; isakmpd ``ipsec.c`` get_keystate).
    """
    data = last_phase1_iv + message_id_bytes(message_id)
    return _truncate(hash_alg, _prf.hash(hash_alg, data), block_size)


@dataclass(frozen=True, slots=True)
class IvChain:
    """The IV for the next encrypted message of one exchange (immutable).

    RFC 2409 appendix B: the first encrypted phase 1 message uses
    hash(g^xi | g^xr); every later message of the exchange, whichever direction
    it travels, uses the last ciphertext block of the message before it (so the
    IV of MM6 is the last block of MM5, and the last block of MM6 is the "last
    phase 1 IV"). A phase 2, informational or transaction exchange starts its own
    chain from hash(last phase 1 IV | M-ID) and then chains the same way; it never
    changes the phase 1 chain.

    Use: ``ciphertext, chain = chain.encrypt(cipher, payloads)`` or
    ``plaintext, new_chain = chain.decrypt(cipher, body)``. Keep ``new_chain``
    only once the message is accepted (e.g. its HASH checked), so a forged or
    corrupt message does not derail the chain. An IV is public (it is a
    ciphertext block), so it may appear in ``repr``.
    """

    hash_algorithm: HashAlgorithm
    block_size: int
    iv: bytes

    def __post_init__(self) -> None:
        if len(self.iv) != self.block_size:
            raise CryptoError(f"an IV of {len(self.iv)} bytes does not match the "
                              f"{self.block_size}-byte block")

    @classmethod
    def phase1(cls, hash_alg: int, g_xi: bytes, g_xr: bytes, block_size: int) -> IvChain:
        """The chain of a phase 1 exchange, at its first encrypted message."""
        # _truncate gave exactly block_size bytes: no __post_init__ check needed.
        # A member (as Phase1Keys.hash_algorithm) is taken as it is: an enum call
        # costs a few Python-level calls.
        alg = hash_alg if hash_alg.__class__ is HashAlgorithm else HashAlgorithm(hash_alg)
        return _chain(alg, block_size, phase1_iv(hash_alg, g_xi, g_xr, block_size))

    def iv_for_message_id(self, message_id: int | bytes) -> IvChain:
        """The chain of the phase 2 exchange ``message_id``, from this (phase 1) IV."""
        # _truncate gave exactly block_size bytes: no __post_init__ check needed.
        return _chain(self.hash_algorithm, self.block_size,
                      phase2_iv(self.hash_algorithm, self.iv, message_id,
                                self.block_size))

    def advance(self, ciphertext: bytes) -> IvChain:
        """The chain after ``ciphertext`` (an encrypted message body) went by."""
        block_size = self.block_size
        if not ciphertext or len(ciphertext) % block_size:
            raise CryptoError(f"ciphertext of {len(ciphertext)} bytes is not a whole "
                              f"number of {block_size}-byte blocks")
        return _chain(self.hash_algorithm, block_size, ciphertext[-block_size:])

    def encrypt(self, cipher: Phase1Cipher, payloads: bytes) -> tuple[bytes, IvChain]:
        """Zero-pad and encrypt a message body; return it and the next chain."""
        block_size = self.block_size
        if cipher.block_size != block_size:
            self._check_cipher(cipher)
        # zero_pad and advance written out (a call each, for every message sent):
        # the cipher has checked that the ciphertext is a whole number of blocks.
        ciphertext = cipher.encrypt(self.iv, payloads + bytes(-len(payloads) % block_size))
        return ciphertext, _chain(self.hash_algorithm, block_size, ciphertext[-block_size:])

    def decrypt(self, cipher: Phase1Cipher, ciphertext: bytes) -> tuple[bytes, IvChain]:
        """Decrypt a message body (padding left in place); return it and the next chain.

        A body that is not a whole number of blocks raises :class:`CryptoError`.
        """
        block_size = self.block_size
        if cipher.block_size != block_size:
            self._check_cipher(cipher)
        plaintext = cipher.decrypt(self.iv, ciphertext)     # checks the length
        return plaintext, _chain(self.hash_algorithm, block_size, ciphertext[-block_size:])

    def _check_cipher(self, cipher: Phase1Cipher) -> None:
        if cipher.block_size != self.block_size:
            raise CryptoError(f"{cipher.algorithm.label} has {cipher.block_size}-byte "
                              f"blocks, the IV chain {self.block_size}")


# IvChain(...) for fields known to agree (the IV is block_size bytes), filled in
# through the slots' own setters: the frozen dataclass's __init__ sets each field
# with object.__setattr__ and then runs __post_init__, and every encrypted message
# makes a new chain.
_new_chain = object.__new__
_set_hash_algorithm = IvChain.__dict__["hash_algorithm"].__set__
_set_block_size = IvChain.__dict__["block_size"].__set__
_set_iv = IvChain.__dict__["iv"].__set__


def _chain(hash_algorithm: HashAlgorithm, block_size: int, iv: bytes) -> IvChain:
    chain: IvChain = _new_chain(IvChain)
    _set_hash_algorithm(chain, hash_algorithm)
    _set_block_size(chain, block_size)
    _set_iv(chain, iv)
    return chain
