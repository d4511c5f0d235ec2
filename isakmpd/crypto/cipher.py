"""Phase 1 ciphers: which ENCRYPTION_ALGORITHMs exist, their key lengths, CBC.

This module owns the ISAKMP SA's encryption (RFC 2409 appendix A
ENCRYPTION_ALGORITHM, inventory §3.1): 3DES_CBC, BLOWFISH_CBC, CAST_CBC and
AES_CBC. It decides the cipher key length from the KEY_LENGTH attribute, and
encrypts/decrypts whole blocks in CBC mode without any padding of its own. IV
bookkeeping (which IV a message uses) lives in :mod:`isakmpd.crypto.keys`.

ISAKMP messages are padded by the sender (RFC 2408 §3.1 / RFC 2409 appendix B leave
the padding to the implementation); isakmpd pads with zero bytes and no pad-length
byte, which :func:`zero_pad` reproduces. A receiver must not strip padding by
content: the ISAKMP header and payload lengths say where the data ends.

Key lengths, in bytes (bounds from ``crypto.c`` transforms[] of OpenBSD isakmpd,
inside the ranges of RFC 2451 §2.2; AES from FIPS 197):

=============  =====  ================  =============================================
cipher         block  key bytes         without KEY_LENGTH (:data:`DEFAULT_KEY_BITS`)
=============  =====  ================  =============================================
3DES_CBC       8      24                24 (fixed length: KEY_LENGTH MUST NOT be sent)
BLOWFISH_CBC   8      12..56            16 (RFC 2451 §2.2 default); isakmpd used 56
CAST_CBC       8      12..16            16 (RFC 2451 §2.2 default, and isakmpd)
AES_CBC        16     16, 24 or 32      refused (RFC 3602 §5.3); isakmpd used 32,
                                        strongSwan 16
=============  =====  ================  =============================================

A missing KEY_LENGTH for AES (decision, DESIGN §4 "follow the RFCs"): RFC 3602 §5.3
says the Key Length attribute MUST be specified for AES, because AES has three key
sizes, so :data:`DEFAULT_KEY_BITS` has no AES entry and such a proposal is refused
with a :class:`KeyLengthError` naming KEY_LENGTH. strongSwan, libreswan and isakmpd
always send it, so this costs no interoperability with them. Peers disagree on what
a missing attribute would mean: strongSwan's charon takes AES-128 ("some
implementations don't send a Key Length attribute for AES-128, early drafts of RFC
3602 allowed that", proposal_substructure.c), OpenBSD isakmpd takes the cipher's
maximum (AES-256, Blowfish-448; ike_phase_1.c). Both readings are available as
tables for the ``defaults`` parameter of :func:`phase1_key_bytes`:
:data:`STRONGSWAN_DEFAULT_KEY_BITS` and :data:`ISAKMPD_DEFAULT_KEY_BITS`.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Blowfish, CAST5 and TripleDES live in the "decrepit" namespace since cryptography
# 43; importing them from there emits no CryptographyDeprecationWarning.
from cryptography.hazmat.decrepit.ciphers.algorithms import CAST5, Blowfish, TripleDES
from cryptography.hazmat.primitives.ciphers import (
    BlockCipherAlgorithm,
    Cipher,
    CipherContext,
    modes,
)
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from isakmpd.crypto.prf import CryptoError, KeyLengthError, UnsupportedAlgorithmError
from isakmpd.wire.constants import EncryptionAlgorithm

__all__ = [
    "DEFAULT_KEY_BITS",
    "ISAKMPD_DEFAULT_KEY_BITS",
    "STRONGSWAN_DEFAULT_KEY_BITS",
    "CipherSpec",
    "Phase1Cipher",
    "check_key_length_bits",
    "cipher_spec",
    "phase1_key_bytes",
    "supported_ciphers",
    "zero_pad",
]


@dataclass(frozen=True)
class CipherSpec:
    """A supported phase 1 cipher: block size and allowed key sizes in bytes."""

    algorithm: EncryptionAlgorithm
    block_size: int
    key_sizes: tuple[int, ...]
    factory: type[BlockCipherAlgorithm]

    @property
    def key_min(self) -> int:
        return self.key_sizes[0]

    @property
    def key_max(self) -> int:
        return self.key_sizes[-1]

    @property
    def fixed_key(self) -> bool:
        """True for ciphers whose key has one length only (3DES)."""
        return len(self.key_sizes) == 1

    def allowed_bits(self) -> str:
        """The allowed key lengths in bits, for error messages."""
        if self.fixed_key:
            return f"{self.key_min * 8}"
        if self.key_sizes == tuple(range(self.key_min, self.key_max + 1)):
            return f"{self.key_min * 8}..{self.key_max * 8} in steps of 8"
        return ", ".join(str(n * 8) for n in self.key_sizes)


_CIPHERS: dict[EncryptionAlgorithm, CipherSpec] = {
    spec.algorithm: spec
    for spec in (
        CipherSpec(EncryptionAlgorithm.TRIPLE_DES_CBC, 8, (24,), TripleDES),
        CipherSpec(EncryptionAlgorithm.BLOWFISH_CBC, 8, tuple(range(12, 57)), Blowfish),
        CipherSpec(EncryptionAlgorithm.CAST_CBC, 8, tuple(range(12, 17)), CAST5),
        CipherSpec(EncryptionAlgorithm.AES_CBC, 16, (16, 24, 32), AES),
    )
}

# Key length (bits) used when a proposal has no KEY_LENGTH attribute; a cipher
# missing here needs the attribute. RFC 2409 appendix A: KEY_LENGTH MUST NOT be used
# with a fixed-length key (3DES). Blowfish and CAST: 128, the defaults of RFC 2451
# §2.2. AES: no entry, RFC 3602 §5.3 makes the attribute mandatory.
DEFAULT_KEY_BITS: Mapping[EncryptionAlgorithm, int] = {
    EncryptionAlgorithm.TRIPLE_DES_CBC: 192,
    EncryptionAlgorithm.BLOWFISH_CBC: 128,
    EncryptionAlgorithm.CAST_CBC: 128,
}

# strongSwan's reading (proposal_substructure.c add_to_proposal_v1_ike): AES
# without KEY_LENGTH is AES-128.
STRONGSWAN_DEFAULT_KEY_BITS: Mapping[EncryptionAlgorithm, int] = {
    **DEFAULT_KEY_BITS,
    EncryptionAlgorithm.AES_CBC: 128,
}

# OpenBSD isakmpd's reading (ike_phase_1.c: key_length = crypto->keymax): the
# cipher's maximum.
ISAKMPD_DEFAULT_KEY_BITS: Mapping[EncryptionAlgorithm, int] = {
    alg: spec.key_max * 8 for alg, spec in _CIPHERS.items()
}


def cipher_spec(alg: int) -> CipherSpec:
    """The :class:`CipherSpec` of ENCRYPTION_ALGORITHM value ``alg``.

    DES_CBC, IDEA_CBC, RC5_R16_B64_CBC and CAMELLIA_CBC (and unknown numbers) raise
    :class:`UnsupportedAlgorithmError` naming the attribute and value.
    """
    try:
        return _CIPHERS[alg]    # IntEnum keys: a plain int finds its member
    except (KeyError, TypeError):
        raise UnsupportedAlgorithmError(
            f"ENCRYPTION_ALGORITHM {EncryptionAlgorithm.describe(alg)} is not supported "
            f"(supported: {', '.join(a.label for a in _CIPHERS)})",
            "ENCRYPTION_ALGORITHM", int(alg)) from None


def supported_ciphers() -> tuple[EncryptionAlgorithm, ...]:
    """The ENCRYPTION_ALGORITHMs this module implements."""
    return tuple(_CIPHERS)


def check_key_length_bits(bits: int, attribute: str = "KEY_LENGTH") -> int:
    """Validate a KEY_LENGTH value in bits and return it in bytes.

    It must be positive and a multiple of 8 (RFC 2451 §2.2, inventory §3.1).
    """
    if bits <= 0 or bits % 8:
        raise KeyLengthError(
            f"{attribute} {bits} is not a positive multiple of 8 bits", attribute, bits)
    return bits // 8


def phase1_key_bytes(alg: int, key_length_bits: int | None,
                     defaults: Mapping[EncryptionAlgorithm, int] = DEFAULT_KEY_BITS) -> int:
    """The phase 1 cipher key length in bytes for cipher ``alg``.

    ``key_length_bits`` is the KEY_LENGTH attribute (bits) or None when the proposal
    has none, in which case ``defaults[alg]`` applies (see the module docstring); a
    cipher missing from ``defaults`` then needs KEY_LENGTH.
    Raises :class:`UnsupportedAlgorithmError` or :class:`KeyLengthError`, both
    carrying the attribute name and value.
    """
    spec = cipher_spec(alg)
    name = spec.algorithm.label
    if key_length_bits is None:
        if spec.algorithm not in defaults:
            raise KeyLengthError(
                f"{name} needs a KEY_LENGTH attribute (RFC 3602 §5.3); "
                f"allowed: {spec.allowed_bits()} bits", "KEY_LENGTH", None)
        key_length_bits = defaults[spec.algorithm]
        source = "default key length"
    else:
        source = "KEY_LENGTH"
    nbytes = check_key_length_bits(key_length_bits)
    if nbytes not in spec.key_sizes:
        raise KeyLengthError(
            f"{source} {key_length_bits} is not valid for {name} "
            f"(allowed: {spec.allowed_bits()} bits)", "KEY_LENGTH", key_length_bits)
    return nbytes


def zero_pad(data: bytes, block_size: int) -> bytes:
    """``data`` followed by zero bytes up to a multiple of ``block_size``.

    This is isakmpd's padding (no pad-length byte, nothing added when ``data`` is
    already block aligned); RFC 2408 §3.5 / RFC 2409 appendix B leave its content to
    the sender. Empty ``data`` stays empty.
    """
    return data + bytes(-len(data) % block_size)


class Phase1Cipher:
    """A phase 1 cipher with its key: CBC over whole blocks, no padding.

    The IV is given for every call; :mod:`isakmpd.crypto.keys` decides which IV
    a message uses. The object never shows its key (no key in ``repr``).
    """

    __slots__ = ("_algorithm", "_cbc", "_decryptor", "_encryptor", "_last_block", "_spec",
                 "block_size")

    def __init__(self, alg: int, key: bytes) -> None:
        spec = cipher_spec(alg)
        if len(key) not in spec.key_sizes:
            raise KeyLengthError(
                f"a {len(key) * 8}-bit key is not valid for {spec.algorithm.label} "
                f"(allowed: {spec.allowed_bits()} bits)", "KEY_LENGTH", len(key) * 8)
        self._spec = spec
        # A plain attribute, not a property: IvChain reads it for every message.
        self.block_size = spec.block_size
        self._algorithm = spec.factory(bytes(key))
        # One CBC cipher object makes both contexts (see encrypt and decrypt); its
        # IV is never used as such.
        self._cbc: Cipher[modes.CBC] | None = None
        self._decryptor: CipherContext | None = None
        self._encryptor: CipherContext | None = None
        self._last_block = bytes(spec.block_size)

    @property
    def algorithm(self) -> EncryptionAlgorithm:
        return self._spec.algorithm

    @property
    def key_size(self) -> int:
        """Key length in bytes (the key itself is not exposed)."""
        return self._algorithm.key_size // 8

    def __repr__(self) -> str:
        return f"<Phase1Cipher {self._spec.algorithm.label} {self.key_size * 8}-bit>"

    def _check(self, iv: bytes, data: bytes) -> None:
        bs = self._spec.block_size
        if len(iv) != bs:
            raise CryptoError(f"{self._spec.algorithm.label} needs a {bs}-byte IV, "
                              f"got {len(iv)} bytes")
        if not data or len(data) % bs:
            raise CryptoError(f"{self._spec.algorithm.label} data must be a non-empty "
                              f"multiple of {bs} bytes, got {len(data)} bytes")

    def _context(self, encrypt: bool) -> CipherContext:
        """A CBC context of this key, made once per direction and kept open."""
        cbc = self._cbc
        if cbc is None:
            cbc = self._cbc = Cipher(self._algorithm, modes.CBC(bytes(self.block_size)))
        if encrypt:
            context = self._encryptor = cbc.encryptor()
        else:
            context = self._decryptor = cbc.decryptor()
        return context

    def encrypt(self, iv: bytes, plaintext: bytes) -> bytes:
        """CBC-encrypt block-aligned ``plaintext`` (pad it with :func:`zero_pad`)."""
        bs = self.block_size
        if len(iv) != bs or not plaintext or len(plaintext) % bs:
            self._check(iv, plaintext)      # raises, saying what is wrong
        # One CBC context serves every message of the SA (setting one up costs
        # more than encrypting a message). Left open, it chains from the last
        # block S it produced (at first, its all-zero IV): C_1 = E(P_1 xor S).
        # Feeding it P_1 xor IV xor S as the first block gives E(P_1 xor IV),
        # CBC from this message's IV, and the rest chains as usual (NIST SP
        # 800-38A §6.2).
        encryptor = self._encryptor
        if encryptor is None:
            encryptor = self._context(True)
        first = (int.from_bytes(plaintext[:bs]) ^ int.from_bytes(iv)
                 ^ int.from_bytes(self._last_block)).to_bytes(bs)
        ciphertext = encryptor.update(first + plaintext[bs:])
        self._last_block = ciphertext[-bs:]
        return ciphertext

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        """CBC-decrypt block-aligned ``ciphertext``; the padding is left in place.

        CBC decryption is P_i = D(C_i) xor C_(i-1), C_0 being the IV (NIST SP
        800-38A §6.2): a CBC decryption context left open from the last message
        takes the IV as one more ciphertext block, so fed IV | ciphertext it
        gives a block to drop (D(IV) xor the block before) and then the message.
        One context serves every message of the SA: setting one up per message
        would repeat the key schedule.
        """
        bs = self.block_size
        if len(iv) != bs or not ciphertext or len(ciphertext) % bs:
            self._check(iv, ciphertext)     # raises, saying what is wrong
        decryptor = self._decryptor
        if decryptor is None:
            decryptor = self._context(False)
        return decryptor.update(iv + ciphertext)[bs:]
