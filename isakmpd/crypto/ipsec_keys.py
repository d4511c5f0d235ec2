"""Phase 2 key material: Quick Mode and informational hashes, KEYMAT, ESP/AH keys.

This module owns RFC 2409 §5.5 (Quick Mode) and §5.7 (informational exchanges) on
top of an ISAKMP SA's SKEYID_a and SKEYID_d, and the IPsec DOI side of keying
(RFC 2407 §4.4 transform IDs, §4.5 AUTHENTICATION_ALGORITHM and KEY_LENGTH): how
many KEYMAT bytes each ESP/AH transform needs, and how they split into the
encryption key (salt included) and the integrity key the kernel installs.

Byte strings are passed as RFC 2409 names them, so that values logged by a peer
(strongSwan's charon at ike log level 4) can be fed in directly:

- ``message_id``: the 4-byte M-ID of the ISAKMP header (or an int);
- ``ni_b``/``nr_b``: the initiator's / responder's NONCE payload bodies, always in
  that order whichever side computes;
- ``payloads``: the message bytes after the HASH payload, generic headers included
  (RFC 2409 §5.5: "the entire message ... following the hash payload");
- ``spi``: the SPI as carried in the proposal (4 bytes for AH/ESP, or an int);
- ``g_qm_xy``: the Quick Mode DH shared secret with PFS, else None.

KEYMAT for an SA uses the SPI that the *receiving* end chose (RFC 2409 §5.5: each
SA's SPI is the one its destination picked), so our inbound SA uses our SPI and our
outbound SA the peer's; :func:`derive_sa_key_pair` returns both (and
:func:`derive_sa_key_bytes` their bytes, for the installer).

A missing KEY_LENGTH for AES-based transforms (decision, as for phase 1 in
:mod:`isakmpd.crypto.cipher`): RFC 3602 §5.3, RFC 3686 §5.4 (``AES_CTR``), RFC
4106 §8.4 (``AES_GCM``) and RFC 4309 §7.4 (``AES_CCM``) make the attribute mandatory,
so :data:`ESP_DEFAULT_KEY_BITS` has no AES entries and such a transform is refused
naming KEY_LENGTH. OpenBSD isakmpd and strongSwan instead assume 128 bits; pass
:data:`ISAKMPD_ESP_DEFAULT_KEY_BITS` or :data:`STRONGSWAN_ESP_DEFAULT_KEY_BITS` as
``defaults`` to get their behaviour.

Nothing here prints key material: :class:`SaKeys` has a ``repr`` without keys.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from isakmpd.crypto import prf as _prf
from isakmpd.crypto.cipher import check_key_length_bits
from isakmpd.crypto.keys import message_id_bytes
from isakmpd.crypto.prf import CryptoError, KeyLengthError, UnsupportedAlgorithmError
from isakmpd.wire.constants import (
    AhTransform,
    AuthAlgorithm,
    EspTransform,
    ProtocolId,
    member,
)

__all__ = [
    "ESP_DEFAULT_KEY_BITS",
    "ISAKMPD_ESP_DEFAULT_KEY_BITS",
    "STRONGSWAN_ESP_DEFAULT_KEY_BITS",
    "KeymatLayout",
    "SaKeys",
    "ah_layout",
    "auth_key_bytes",
    "derive_sa_key_bytes",
    "derive_sa_key_pair",
    "derive_sa_keys",
    "esp_layout",
    "informational_hash",
    "keymat",
    "quick_mode_hash1",
    "quick_mode_hash2",
    "quick_mode_hash3",
    "spi_bytes",
    "split_keymat",
]


# --- Quick Mode and informational hashes (RFC 2409 §5.5, §5.7) --------------

def _qm_hash(hash_alg: int, skeyid_a: bytes | _prf.KeyedPrf, head: bytes,
             message_id: int | bytes, tail: bytes) -> bytes:
    """prf(SKEYID_a, head | M-ID | tail), the shape of HASH(1), (2) and (3).

    Every Quick Mode computes all three: with a KeyedPrf of the right hash and an
    int M-ID (what the exchange passes) the prf is called directly, the same bytes
    as prf() of message_id_bytes() with two calls fewer; anything else takes that
    general path, with its checks and errors.
    """
    if type(skeyid_a) is _prf.KeyedPrf and skeyid_a.algorithm == hash_alg \
            and type(message_id) is int and 0 <= message_id <= 0xFFFFFFFF:
        return skeyid_a(head + message_id.to_bytes(4, "big") + tail)
    return _prf.prf(hash_alg, skeyid_a, head + message_id_bytes(message_id) + tail)


def quick_mode_hash1(hash_alg: int, skeyid_a: bytes | _prf.KeyedPrf, message_id: int | bytes,
                     payloads: bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [| KE] [| IDci | IDcr]) (RFC 2409 §5.5).

    ``payloads`` is everything after the HASH payload, as sent (RFC 2409 §5.5).
    """
    return _qm_hash(hash_alg, skeyid_a, b"", message_id, payloads)


def quick_mode_hash2(hash_alg: int, skeyid_a: bytes | _prf.KeyedPrf, message_id: int | bytes,
                     ni_b: bytes, payloads: bytes) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [| KE] [| IDci | IDcr])."""
    return _qm_hash(hash_alg, skeyid_a, b"", message_id, ni_b + payloads)


def quick_mode_hash3(hash_alg: int, skeyid_a: bytes | _prf.KeyedPrf, message_id: int | bytes,
                     ni_b: bytes, nr_b: bytes) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b); the 0 is one zero octet."""
    return _qm_hash(hash_alg, skeyid_a, b"\x00", message_id, ni_b + nr_b)


def informational_hash(hash_alg: int, skeyid_a: bytes, message_id: int | bytes,
                       payloads: bytes) -> bytes:
    """HASH(1) of an informational exchange: prf(SKEYID_a, M-ID | N/D) (RFC 2409 §5.7).

    ``payloads`` is the Notification or Delete payload (and anything else) after
    the HASH payload. The same formula protects transaction (mode-config) messages.
    """
    return quick_mode_hash1(hash_alg, skeyid_a, message_id, payloads)


# --- KEYMAT (RFC 2409 §5.5) -------------------------------------------------

def spi_bytes(spi: int | bytes) -> bytes:
    """The SPI as hashed into KEYMAT: an int becomes 4 big-endian bytes."""
    if isinstance(spi, int):
        if not 0 <= spi <= 0xFFFFFFFF:
            raise CryptoError(f"SPI {spi:#x} does not fit in 4 bytes")
        return spi.to_bytes(4, "big")
    return bytes(spi)


def keymat(hash_alg: int, skeyid_d: bytes | _prf.KeyedPrf, protocol: int, spi: int | bytes,
           ni_b: bytes, nr_b: bytes, nbytes: int, g_qm_xy: bytes | None = None) -> bytes:
    """``nbytes`` of KEYMAT for one SA (RFC 2409 §5.5).

    Without PFS: K1 = prf(SKEYID_d, protocol | SPI | Ni_b | Nr_b); with PFS the
    Quick Mode shared secret g(qm)^xy comes first: prf(SKEYID_d, g(qm)^xy |
    protocol | SPI | Ni_b | Nr_b). When more bytes are needed than one prf output
    gives, KEYMAT = K1 | K2 | ... with Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |]
    protocol | SPI | Ni_b | Nr_b), truncated to ``nbytes``. ``protocol`` is the
    one-octet protocol ID of the proposal (ESP 3, AH 2).
    """
    if not 0 <= protocol <= 0xFF:
        raise CryptoError(f"protocol ID {protocol} does not fit in one octet")
    if nbytes < 0:
        raise CryptoError(f"cannot produce {nbytes} bytes of KEYMAT")
    seed = (g_qm_xy or b"") + bytes([protocol]) + spi_bytes(spi) + ni_b + nr_b
    out: list[bytes] = []
    total = 0
    block = b""
    while total < nbytes:
        block = _prf.prf(hash_alg, skeyid_d, block + seed)
        out.append(block)
        total += len(block)
    return b"".join(out)[:nbytes]


# --- How many bytes each transform needs (RFC 2407 §4.4, §4.5) --------------

@dataclass(frozen=True, slots=True)
class KeymatLayout:
    """How one SA's KEYMAT splits: encryption key (salt at its end), then auth key.

    ``enc_key_bytes`` includes ``salt_bytes`` (the kernel's rfc3686/rfc4106/rfc4309
    keys carry the salt as their last bytes). The encryption key comes first and
    the integrity key follows, as OpenBSD isakmpd and strongSwan split ESP KEYMAT.
    """

    protocol: ProtocolId
    transform: EspTransform | AhTransform
    enc_key_bytes: int
    salt_bytes: int
    auth_algorithm: AuthAlgorithm | None
    auth_key_bytes: int

    @property
    def total(self) -> int:
        """KEYMAT bytes needed for this SA."""
        return self.enc_key_bytes + self.auth_key_bytes

    @property
    def combined_mode(self) -> bool:
        """True for AES-GCM/CCM/GMAC, which carry their own integrity check."""
        return self.transform in _COMBINED


# AUTHENTICATION_ALGORITHM key sizes: RFC 2403 (HMAC-MD5-96), RFC 2404
# (HMAC-SHA-1-96), RFC 4868 §2.1.1 (HMAC-SHA-256/384/512: key = hash output),
# RFC 2857 (HMAC-RIPEMD-160-96). DES_MAC and KPDK are not supported.
_AUTH_KEY_BYTES: dict[AuthAlgorithm, int] = {
    AuthAlgorithm.HMAC_MD5: 16,
    AuthAlgorithm.HMAC_SHA: 20,
    AuthAlgorithm.HMAC_SHA2_256: 32,
    AuthAlgorithm.HMAC_SHA2_384: 48,
    AuthAlgorithm.HMAC_SHA2_512: 64,
    AuthAlgorithm.HMAC_RIPEMD: 20,
}

# AH transform ID -> the AUTHENTICATION_ALGORITHM it implies (RFC 2407 §4.4.3,
# RFC 4868 §2.4 for SHA-2).
_AH_AUTH: dict[AhTransform, AuthAlgorithm] = {
    AhTransform.MD5: AuthAlgorithm.HMAC_MD5,
    AhTransform.SHA: AuthAlgorithm.HMAC_SHA,
    AhTransform.SHA2_256: AuthAlgorithm.HMAC_SHA2_256,
    AhTransform.SHA2_384: AuthAlgorithm.HMAC_SHA2_384,
    AhTransform.SHA2_512: AuthAlgorithm.HMAC_SHA2_512,
    AhTransform.RIPEMD: AuthAlgorithm.HMAC_RIPEMD,
}


@dataclass(frozen=True)
class _EspCipher:
    key_sizes: tuple[int, ...]      # allowed key lengths in bytes, without salt
    salt: int = 0


_AES = (16, 24, 32)
_ESP_CIPHERS: dict[EspTransform, _EspCipher] = {
    EspTransform.TRIPLE_DES: _EspCipher((24,)),                  # RFC 2451 §2.2
    EspTransform.CAST: _EspCipher(tuple(range(5, 17))),          # RFC 2451: 40..128
    EspTransform.BLOWFISH: _EspCipher(tuple(range(5, 57))),      # RFC 2451: 40..448
    EspTransform.NULL: _EspCipher((0,)),                         # RFC 2410
    EspTransform.AES: _EspCipher(_AES),                          # RFC 3602 §5.3
    EspTransform.AES_CTR: _EspCipher(_AES, 4),                   # RFC 3686 §5.1
    EspTransform.AES_CCM_8: _EspCipher(_AES, 3),                 # RFC 4309 §7.1
    EspTransform.AES_CCM_12: _EspCipher(_AES, 3),
    EspTransform.AES_CCM_16: _EspCipher(_AES, 3),
    EspTransform.AES_GCM_8: _EspCipher(_AES, 4),                 # RFC 4106 §8.1
    EspTransform.AES_GCM_12: _EspCipher(_AES, 4),
    EspTransform.AES_GCM_16: _EspCipher(_AES, 4),
    EspTransform.AES_GMAC: _EspCipher(_AES, 4),                  # RFC 4543 (as 4106)
}

_COMBINED = frozenset({
    EspTransform.AES_CCM_8, EspTransform.AES_CCM_12, EspTransform.AES_CCM_16,
    EspTransform.AES_GCM_8, EspTransform.AES_GCM_12, EspTransform.AES_GCM_16,
    EspTransform.AES_GMAC,
})

# Key length (bits, without salt) when a transform has no KEY_LENGTH; a transform
# missing here needs it. 3DES is fixed, NULL has no key; CAST and Blowfish default
# to 128 bits (RFC 2451 §2.2); the AES family requires the attribute (see module
# docstring).
ESP_DEFAULT_KEY_BITS: Mapping[EspTransform, int] = {
    EspTransform.TRIPLE_DES: 192,
    EspTransform.NULL: 0,
    EspTransform.CAST: 128,
    EspTransform.BLOWFISH: 128,
}

# strongSwan (proposal_substructure.c add_to_proposal_v1): AES-CBC defaults to 128.
STRONGSWAN_ESP_DEFAULT_KEY_BITS: Mapping[EspTransform, int] = {
    **ESP_DEFAULT_KEY_BITS,
    EspTransform.AES: 128,
}

# OpenBSD isakmpd (ipsec.c / pf_key_v2.c): AES, AES_CTR, AES_GCM_16 and AES_GMAC
# default to 128 bits; Blowfish has no default there, 128 is kept from RFC 2451.
ISAKMPD_ESP_DEFAULT_KEY_BITS: Mapping[EspTransform, int] = {
    **ESP_DEFAULT_KEY_BITS,
    EspTransform.AES: 128,
    EspTransform.AES_CTR: 128,
    EspTransform.AES_GCM_16: 128,
    EspTransform.AES_GMAC: 128,
}


def auth_key_bytes(auth_algorithm: int) -> int:
    """Integrity key length in bytes for AUTHENTICATION_ALGORITHM ``auth_algorithm``."""
    try:
        return _AUTH_KEY_BYTES[auth_algorithm]     # IntEnum keys: ints find them
    except (KeyError, TypeError):
        raise UnsupportedAlgorithmError(
            f"AUTHENTICATION_ALGORITHM {AuthAlgorithm.describe(auth_algorithm)} is not "
            f"supported (supported: {', '.join(a.label for a in _AUTH_KEY_BYTES)})",
            "AUTHENTICATION_ALGORITHM", int(auth_algorithm)) from None


def _describe_sizes(sizes: tuple[int, ...]) -> str:
    if sizes == tuple(range(sizes[0], sizes[-1] + 1)) and len(sizes) > 3:
        return f"{sizes[0] * 8}..{sizes[-1] * 8} in steps of 8"
    return ", ".join(str(n * 8) for n in sizes)


def esp_layout(transform_id: int, key_length_bits: int | None = None,
               auth_algorithm: int | None = None,
               defaults: Mapping[EspTransform, int] = ESP_DEFAULT_KEY_BITS) -> KeymatLayout:
    """The KEYMAT layout of an ESP SA with transform ``transform_id``.

    ``key_length_bits`` is the KEY_LENGTH attribute (bits, salt not counted) or
    None; ``auth_algorithm`` the AUTHENTICATION_ALGORITHM attribute or None.
    Raises :class:`UnsupportedAlgorithmError` or :class:`KeyLengthError` naming the
    attribute and value, or :class:`CryptoError` for an impossible combination
    (NULL without integrity, RFC 4303 §3.2; a combined-mode cipher with an
    AUTHENTICATION_ALGORITHM, which it does not use).
    """
    try:
        transform = member(EspTransform, transform_id)
        cipher = _ESP_CIPHERS[transform]
    except (ValueError, KeyError):
        raise UnsupportedAlgorithmError(
            f"ESP transform {EspTransform.describe(transform_id)} is not supported "
            f"(supported: {', '.join(t.label for t in _ESP_CIPHERS)})",
            "TRANSFORM_ID", int(transform_id)) from None
    name = transform.label
    if key_length_bits is None:
        if transform not in defaults:
            raise KeyLengthError(
                f"ESP {name} needs a KEY_LENGTH attribute; allowed: "
                f"{_describe_sizes(cipher.key_sizes)} bits", "KEY_LENGTH", None)
        nbytes = defaults[transform] // 8
    else:
        if transform is EspTransform.NULL:
            raise KeyLengthError(f"ESP {name} takes no KEY_LENGTH, got {key_length_bits}",
                                 "KEY_LENGTH", key_length_bits)
        nbytes = check_key_length_bits(key_length_bits)
        if nbytes not in cipher.key_sizes:
            raise KeyLengthError(
                f"KEY_LENGTH {key_length_bits} is not valid for ESP {name} (allowed: "
                f"{_describe_sizes(cipher.key_sizes)} bits)", "KEY_LENGTH", key_length_bits)
    if auth_algorithm is None:
        auth, auth_bytes = None, 0
        if transform is EspTransform.NULL:
            raise CryptoError("ESP NULL without an AUTHENTICATION_ALGORITHM protects "
                              "nothing (RFC 4303 §3.2)", "AUTHENTICATION_ALGORITHM", None)
    else:
        if transform in _COMBINED:
            raise CryptoError(
                f"ESP {name} is a combined-mode transform and takes no "
                f"AUTHENTICATION_ALGORITHM, got {AuthAlgorithm.describe(auth_algorithm)}",
                "AUTHENTICATION_ALGORITHM", int(auth_algorithm))
        auth_bytes = auth_key_bytes(auth_algorithm)
        auth = member(AuthAlgorithm, auth_algorithm)
    return KeymatLayout(ProtocolId.IPSEC_ESP, transform, nbytes + cipher.salt, cipher.salt,
                        auth, auth_bytes)


def ah_layout(transform_id: int, auth_algorithm: int | None = None) -> KeymatLayout:
    """The KEYMAT layout of an AH SA: the key length comes from the transform ID.

    ``auth_algorithm``, when given, must be the one the transform implies
    (RFC 2407 §4.5: AH MD5 goes with HMAC-MD5, and so on).
    """
    try:
        transform = AhTransform(transform_id)
        implied = _AH_AUTH[transform]
    except (ValueError, KeyError):
        raise UnsupportedAlgorithmError(
            f"AH transform {AhTransform.describe(transform_id)} is not supported "
            f"(supported: {', '.join(t.label for t in _AH_AUTH)})",
            "TRANSFORM_ID", int(transform_id)) from None
    if auth_algorithm is not None and auth_algorithm != implied:
        raise CryptoError(
            f"AH {transform.label} needs AUTHENTICATION_ALGORITHM {implied.label}, got "
            f"{AuthAlgorithm.describe(auth_algorithm)}",
            "AUTHENTICATION_ALGORITHM", int(auth_algorithm))
    return KeymatLayout(ProtocolId.IPSEC_AH, transform, 0, 0, implied,
                        _AUTH_KEY_BYTES[implied])


def split_keymat(layout: KeymatLayout, material: bytes) -> tuple[bytes, bytes]:
    """(encryption key with salt, integrity key) from ``material``."""
    if len(material) < layout.total:
        raise CryptoError(f"{len(material)} bytes of KEYMAT, {layout.total} needed")
    enc = material[:layout.enc_key_bytes]
    return enc, material[layout.enc_key_bytes:layout.total]


# --- Keys of one SA ---------------------------------------------------------

# A value, never changed once made; not frozen, which would cost a call per field
# (two are made per protocol in every Quick Mode).
@dataclass(repr=False, unsafe_hash=True, slots=True)
class SaKeys:
    """The keys of one IPsec SA (one direction). ``repr`` never shows them."""

    layout: KeymatLayout
    spi: bytes
    enc_key: bytes
    auth_key: bytes

    @property
    def cipher_key(self) -> bytes:
        """The encryption key without its salt."""
        return self.enc_key[:len(self.enc_key) - self.layout.salt_bytes]

    @property
    def salt(self) -> bytes:
        """The salt/nonce bytes at the end of the encryption key (may be empty)."""
        return self.enc_key[len(self.enc_key) - self.layout.salt_bytes:]

    def __repr__(self) -> str:
        auth = self.layout.auth_algorithm.label if self.layout.auth_algorithm else "none"
        return (f"<SaKeys {self.layout.protocol.label} SPI {self.spi.hex()} "
                f"{self.layout.transform.label} {self.layout.enc_key_bytes * 8}-bit, "
                f"auth {auth} (keys not shown)>")


def derive_sa_keys(hash_alg: int, skeyid_d: bytes | _prf.KeyedPrf, layout: KeymatLayout,
                   spi: int | bytes, ni_b: bytes, nr_b: bytes,
                   g_qm_xy: bytes | None = None) -> SaKeys:
    """KEYMAT for the SA ``spi`` (the SPI its receiver chose), split per ``layout``."""
    material = keymat(hash_alg, skeyid_d, layout.protocol, spi, ni_b, nr_b,
                      layout.total, g_qm_xy)
    enc, auth = split_keymat(layout, material)
    return SaKeys(layout, spi_bytes(spi), enc, auth)


def derive_sa_key_pair(hash_alg: int, skeyid_d: bytes | _prf.KeyedPrf, layout: KeymatLayout,
                       our_spi: int | bytes, peer_spi: int | bytes, ni_b: bytes,
                       nr_b: bytes, g_qm_xy: bytes | None = None) -> tuple[SaKeys, SaKeys]:
    """(inbound, outbound) keys: inbound uses our SPI, outbound the peer's.

    ``ni_b``/``nr_b`` stay in initiator/responder order whichever role we have.
    """
    inbound, outbound = derive_sa_key_bytes(hash_alg, skeyid_d, layout, our_spi, peer_spi,
                                            ni_b, nr_b, g_qm_xy)
    return SaKeys(layout, *inbound), SaKeys(layout, *outbound)


_SaKeyBytes = tuple[bytes, bytes, bytes]


def derive_sa_key_bytes(hash_alg: int, skeyid_d: bytes | _prf.KeyedPrf, layout: KeymatLayout,
                        our_spi: int | bytes, peer_spi: int | bytes, ni_b: bytes,
                        nr_b: bytes, g_qm_xy: bytes | None = None
                        ) -> tuple[_SaKeyBytes, _SaKeyBytes]:
    """:func:`derive_sa_key_pair` as (SPI, encryption key, integrity key) tuples,
    inbound then outbound: what the installer takes, without an :class:`SaKeys`
    object per direction (two per protocol in every Quick Mode)."""
    if type(skeyid_d) is not _prf.KeyedPrf or skeyid_d.algorithm != hash_alg \
            or not 0 <= layout.protocol <= 0xFF:
        inbound = derive_sa_keys(hash_alg, skeyid_d, layout, our_spi, ni_b, nr_b, g_qm_xy)
        outbound = derive_sa_keys(hash_alg, skeyid_d, layout, peer_spi, ni_b, nr_b, g_qm_xy)
        return ((inbound.spi, inbound.enc_key, inbound.auth_key),
                (outbound.spi, outbound.enc_key, outbound.auth_key))
    # Every Quick Mode's install: keymat() and split_keymat() for both SPIs in one
    # place, the same bytes with a fraction of the calls.
    enc_bytes = layout.enc_key_bytes
    nbytes = enc_bytes + layout.auth_key_bytes
    head = (g_qm_xy or b"") + bytes((layout.protocol,))
    tail = ni_b + nr_b
    pair = []
    # (spi_bytes() only for what is not bytes already: the SPIs as proposed are.)
    for spi in (our_spi if type(our_spi) is bytes else spi_bytes(our_spi),
                peer_spi if type(peer_spi) is bytes else spi_bytes(peer_spi)):
        seed = head + spi + tail
        block = skeyid_d(seed)
        material = block
        while len(material) < nbytes:
            block = skeyid_d(block + seed)
            material += block
        pair.append((spi, material[:enc_bytes], material[enc_bytes:nbytes]))
    return pair[0], pair[1]
