"""Tests of isakmpd.crypto.keys and isakmpd.crypto.ipsec_keys.

Every derivation is recomputed here straight from the RFC 2409 formula with
:mod:`hmac` / :mod:`hashlib` and hand-chosen inputs, and compared with the module.
The helpers below are deliberately written out, not imported from the code under
test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.trial.unittest import SynchronousTestCase

from isakmpd.crypto import ipsec_keys, keys
from isakmpd.crypto.cipher import STRONGSWAN_DEFAULT_KEY_BITS, Phase1Cipher
from isakmpd.crypto.ipsec_keys import (
    ISAKMPD_ESP_DEFAULT_KEY_BITS,
    STRONGSWAN_ESP_DEFAULT_KEY_BITS,
    ah_layout,
    auth_key_bytes,
    esp_layout,
)
from isakmpd.crypto.prf import (
    CryptoError,
    KeyedPrf,
    KeyLengthError,
    UnsupportedAlgorithmError,
)
from isakmpd.wire.constants import (
    AhTransform,
    AuthAlgorithm,
    EncryptionAlgorithm,
    EspTransform,
    HashAlgorithm,
    ProtocolId,
)

MD5 = HashAlgorithm.MD5
SHA1 = HashAlgorithm.SHA
SHA256 = HashAlgorithm.SHA2_256
AES = EncryptionAlgorithm.AES_CBC
TDES = EncryptionAlgorithm.TRIPLE_DES_CBC

# Hand-chosen inputs, shaped like the real thing.
PSK = b"mekmitasdigoat"
NI_B = bytes(range(0x10, 0x20))                 # 16-byte nonce bodies
NR_B = bytes(range(0x80, 0x94))                 # 20 bytes: nonces need not match
G_XY = bytes((7 * i + 3) % 256 for i in range(128))   # a MODP-1024-sized secret
G_XI = bytes((5 * i + 1) % 256 for i in range(128))
G_XR = bytes((11 * i + 9) % 256 for i in range(128))
CKY_I = bytes.fromhex("0123456789abcdef")
CKY_R = bytes.fromhex("fedcba9876543210")
SAI_B = bytes.fromhex("00000001000000010000002c01010001")   # DOI, situation, proposal...
IDII_B = bytes.fromhex("01000000c0000201")   # ID_IPV4_ADDR 192.0.2.1
IDIR_B = bytes.fromhex("01000000c6336402")   # ID_IPV4_ADDR 198.51.100.2
MID = 0x1A2B3C4D
MID_B = bytes.fromhex("1a2b3c4d")


def _prf(name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, name).digest()


class SkeyidTests(SynchronousTestCase):
    """RFC 2409 §5: SKEYID and SKEYID_d/a/e."""

    def test_pre_shared(self) -> None:
        # SKEYID = prf(pre-shared-key, Ni_b | Nr_b)
        self.assertEqual(keys.skeyid_pre_shared(SHA1, PSK, NI_B, NR_B),
                         _prf("sha1", PSK, NI_B + NR_B))

    def test_signature(self) -> None:
        # SKEYID = prf(Ni_b | Nr_b, g^xy)
        self.assertEqual(keys.skeyid_signature(SHA256, NI_B, NR_B, G_XY),
                         _prf("sha256", NI_B + NR_B, G_XY))

    def test_descendants(self) -> None:
        skeyid = _prf("sha1", PSK, NI_B + NR_B)
        d = _prf("sha1", skeyid, G_XY + CKY_I + CKY_R + b"\x00")
        a = _prf("sha1", skeyid, d + G_XY + CKY_I + CKY_R + b"\x01")
        e = _prf("sha1", skeyid, a + G_XY + CKY_I + CKY_R + b"\x02")
        got = keys.derive_skeyids(SHA1, skeyid, G_XY, CKY_I, CKY_R)
        self.assertEqual((got.skeyid, got.skeyid_d, got.skeyid_a, got.skeyid_e),
                         (skeyid, d, a, e))
        self.assertIsNone(got.cipher_algorithm)
        self.assertRaises(CryptoError, got.cipher)

    def test_bad_cookies(self) -> None:
        self.assertRaises(CryptoError, keys.derive_skeyids, SHA1, b"k", G_XY, CKY_I[:4],
                          CKY_R)


class CipherKeyExpansionTests(SynchronousTestCase):
    """RFC 2409 appendix B: the phase 1 cipher key from SKEYID_e."""

    def test_long_enough_uses_leading_bytes(self) -> None:
        skeyid_e = bytes(range(20))
        self.assertEqual(keys.expand_cipher_key(SHA1, skeyid_e, 16), skeyid_e[:16])
        self.assertEqual(keys.expand_cipher_key(SHA1, skeyid_e, 20), skeyid_e)

    def test_3des_with_md5_needs_expansion(self) -> None:
        # MD5 gives 16 bytes, 3DES needs 24: Ka = K1 | K2, K1 = prf(SKEYID_e, 0)
        # with 0 a single zero octet, K2 = prf(SKEYID_e, K1).
        skeyid_e = hashlib.md5(b"skeyid_e").digest()
        k1 = _prf("md5", skeyid_e, b"\x00")
        k2 = _prf("md5", skeyid_e, k1)
        got = keys.expand_cipher_key(MD5, skeyid_e, 24)
        self.assertEqual(got, (k1 + k2)[:24])
        self.assertNotEqual(got[:16], skeyid_e)   # SKEYID_e itself is not used

    def test_aes256_with_sha1_needs_expansion(self) -> None:
        skeyid_e = hashlib.sha1(b"skeyid_e").digest()
        k1 = _prf("sha1", skeyid_e, b"\x00")
        k2 = _prf("sha1", skeyid_e, k1)
        self.assertEqual(keys.expand_cipher_key(SHA1, skeyid_e, 32), (k1 + k2)[:32])

    def test_three_blocks(self) -> None:
        skeyid_e = hashlib.md5(b"x").digest()
        k1 = _prf("md5", skeyid_e, b"\x00")
        k2 = _prf("md5", skeyid_e, k1)
        k3 = _prf("md5", skeyid_e, k2)
        self.assertEqual(keys.expand_cipher_key(MD5, skeyid_e, 40), (k1 + k2 + k3)[:40])


class Phase1KeysTests(SynchronousTestCase):
    def test_psk_3des_md5(self) -> None:
        got = keys.derive_phase1_keys(MD5, TDES, None, G_XY, NI_B, NR_B, CKY_I, CKY_R,
                                      psk=PSK)
        skeyid = _prf("md5", PSK, NI_B + NR_B)
        d = _prf("md5", skeyid, G_XY + CKY_I + CKY_R + b"\x00")
        a = _prf("md5", skeyid, d + G_XY + CKY_I + CKY_R + b"\x01")
        e = _prf("md5", skeyid, a + G_XY + CKY_I + CKY_R + b"\x02")
        k1 = _prf("md5", e, b"\x00")
        k2 = _prf("md5", e, k1)
        self.assertEqual((got.skeyid, got.skeyid_d, got.skeyid_a, got.skeyid_e),
                         (skeyid, d, a, e))
        self.assertEqual(got.cipher_key, (k1 + k2)[:24])
        self.assertEqual(got.cipher_algorithm, TDES)
        self.assertEqual(got.cipher().key_size, 24)

    def test_signature_aes256_sha256(self) -> None:
        got = keys.derive_phase1_keys(SHA256, AES, 256, G_XY, NI_B, NR_B, CKY_I, CKY_R)
        skeyid = _prf("sha256", NI_B + NR_B, G_XY)
        d = _prf("sha256", skeyid, G_XY + CKY_I + CKY_R + b"\x00")
        a = _prf("sha256", skeyid, d + G_XY + CKY_I + CKY_R + b"\x01")
        e = _prf("sha256", skeyid, a + G_XY + CKY_I + CKY_R + b"\x02")
        self.assertEqual(got.skeyid, skeyid)
        self.assertEqual(got.cipher_key, e)          # 32 bytes: no expansion needed
        self.assertEqual(got.cipher().block_size, 16)

    def test_aes_key_length_rules_apply(self) -> None:
        self.assertRaises(KeyLengthError, keys.derive_phase1_keys, SHA1, AES, None, G_XY,
                          NI_B, NR_B, CKY_I, CKY_R, psk=PSK)
        got = keys.derive_phase1_keys(SHA1, AES, None, G_XY, NI_B, NR_B, CKY_I, CKY_R,
                                      psk=PSK, defaults=STRONGSWAN_DEFAULT_KEY_BITS)
        self.assertEqual(len(got.cipher_key), 16)

    def test_built_like_the_dataclass(self) -> None:
        # phase1_keys_and_prf fills the slots directly: the object must be what the
        # dataclass constructor makes (equal, same hash, every field set) and stay
        # frozen.
        got, _ = keys.phase1_keys_and_prf(SHA1, AES, 128, G_XY, NI_B, NR_B, CKY_I, CKY_R,
                                          psk=PSK)
        fields = (got.hash_algorithm, got.skeyid, got.skeyid_d, got.skeyid_a,
                  got.skeyid_e, got.cipher_algorithm, got.cipher_key)
        made = keys.Phase1Keys(*fields)
        self.assertEqual(got, made)
        self.assertEqual(hash(got), hash(made))
        self.assertIs(type(got), keys.Phase1Keys)
        self.assertEqual((got.hash_algorithm, got.cipher_algorithm), (SHA1, AES))
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, got, "skeyid", b"")

    def test_repr_hides_keys(self) -> None:
        got = keys.derive_phase1_keys(SHA1, AES, 128, G_XY, NI_B, NR_B, CKY_I, CKY_R,
                                      psk=PSK)
        text = repr(got) + str(got)
        self.assertIn("SHA", text)
        for secret in (got.skeyid, got.skeyid_d, got.skeyid_a, got.skeyid_e,
                       got.cipher_key):
            self.assertNotIn(secret.hex(), text)
            self.assertNotIn(repr(secret), text)


class AuthHashTests(SynchronousTestCase):
    def test_hash_i(self) -> None:
        skeyid = b"\x42" * 20
        expected = _prf("sha1", skeyid, G_XI + G_XR + CKY_I + CKY_R + SAI_B + IDII_B)
        self.assertEqual(keys.hash_i(SHA1, skeyid, G_XI, G_XR, CKY_I, CKY_R, SAI_B, IDII_B),
                         expected)

    def test_hash_r(self) -> None:
        # HASH_R swaps the KE values and the cookies; SAi_b stays the initiator's.
        skeyid = b"\x42" * 20
        expected = _prf("sha1", skeyid, G_XR + G_XI + CKY_R + CKY_I + SAI_B + IDIR_B)
        self.assertEqual(keys.hash_r(SHA1, skeyid, G_XI, G_XR, CKY_I, CKY_R, SAI_B, IDIR_B),
                         expected)


def _cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


class IvTests(SynchronousTestCase):
    """RFC 2409 appendix B: phase 1 IV, CBC chaining, per-M-ID phase 2 IV."""

    def test_phase1_iv(self) -> None:
        self.assertEqual(keys.phase1_iv(SHA1, G_XI, G_XR, 16),
                         hashlib.sha1(G_XI + G_XR).digest()[:16])
        self.assertEqual(keys.phase1_iv(MD5, G_XI, G_XR, 8),
                         hashlib.md5(G_XI + G_XR).digest()[:8])

    def test_phase2_iv(self) -> None:
        last = bytes(range(16))
        expected = hashlib.sha256(last + MID_B).digest()[:16]
        self.assertEqual(keys.phase2_iv(SHA256, last, MID, 16), expected)
        self.assertEqual(keys.phase2_iv(SHA256, last, MID_B, 16), expected)

    def test_chain_across_two_messages(self) -> None:
        key = bytes(range(16))
        cipher = Phase1Cipher(AES, key)
        first_iv = hashlib.sha1(G_XI + G_XR).digest()[:16]
        mm5 = b"ID payload and HASH_I"        # 21 bytes: padded to 32
        mm6 = bytes(range(48))

        initiator = keys.IvChain.phase1(SHA1, G_XI, G_XR, 16)
        self.assertEqual(initiator.iv, first_iv)
        ct5, initiator = initiator.encrypt(cipher, mm5)
        self.assertEqual(ct5, _cbc(key, first_iv, mm5 + bytes(11)))
        self.assertEqual(initiator.iv, ct5[-16:])

        # The responder decrypts MM5 and encrypts MM6 with MM5's last block.
        responder = keys.IvChain.phase1(SHA1, G_XI, G_XR, 16)
        pt5, responder = responder.decrypt(cipher, ct5)
        self.assertEqual(pt5, mm5 + bytes(11))
        ct6, responder = responder.encrypt(cipher, mm6)
        self.assertEqual(ct6, _cbc(key, ct5[-16:], mm6))

        pt6, initiator = initiator.decrypt(cipher, ct6)
        self.assertEqual(pt6, mm6)
        self.assertEqual(initiator, responder)
        self.assertEqual(initiator.iv, ct6[-16:])     # the "last phase 1 IV"

        # A Quick Mode with its own M-ID starts from hash(last block | M-ID) and
        # leaves the phase 1 chain alone.
        qm = initiator.iv_for_message_id(MID)
        self.assertEqual(qm.iv, hashlib.sha1(ct6[-16:] + MID_B).digest()[:16])
        ct_qm1, qm_next = qm.encrypt(cipher, b"HASH(1) SA Ni")
        self.assertEqual(ct_qm1, _cbc(key, qm.iv, b"HASH(1) SA Ni" + bytes(3)))
        self.assertEqual(qm_next.iv, ct_qm1[-16:])
        self.assertEqual(initiator.iv, ct6[-16:])

    def test_chain_errors(self) -> None:
        chain = keys.IvChain.phase1(SHA1, G_XI, G_XR, 16)
        self.assertRaises(CryptoError, chain.advance, bytes(15))
        self.assertRaises(CryptoError, chain.decrypt, Phase1Cipher(AES, bytes(16)),
                          bytes(17))
        self.assertRaises(CryptoError, chain.encrypt, Phase1Cipher(TDES, bytes(24)),
                          b"x")
        self.assertRaises(CryptoError, keys.IvChain, SHA1, 16, bytes(8))

    def test_message_id_bytes(self) -> None:
        self.assertEqual(keys.message_id_bytes(MID), MID_B)
        self.assertEqual(keys.message_id_bytes(MID_B), MID_B)
        self.assertRaises(CryptoError, keys.message_id_bytes, 1 << 32)
        self.assertRaises(CryptoError, keys.message_id_bytes, b"\x00" * 3)


class QuickModeHashTests(SynchronousTestCase):
    """RFC 2409 §5.5 HASH(1)/(2)/(3), §5.7 informational HASH(1)."""

    skeyid_a = bytes(range(100, 120))
    rest = b"SA payload" + b"Nonce payload" + b"ID payloads"

    def test_hash1(self) -> None:
        self.assertEqual(ipsec_keys.quick_mode_hash1(SHA1, self.skeyid_a, MID, self.rest),
                         _prf("sha1", self.skeyid_a, MID_B + self.rest))

    def test_hash2(self) -> None:
        self.assertEqual(
            ipsec_keys.quick_mode_hash2(SHA1, self.skeyid_a, MID, NI_B, self.rest),
            _prf("sha1", self.skeyid_a, MID_B + NI_B + self.rest))

    def test_hash3(self) -> None:
        self.assertEqual(ipsec_keys.quick_mode_hash3(SHA1, self.skeyid_a, MID, NI_B, NR_B),
                         _prf("sha1", self.skeyid_a, b"\x00" + MID_B + NI_B + NR_B))

    def test_keyed_prf_and_message_id_forms(self) -> None:
        # A KeyedPrf with an int M-ID (what Quick Mode passes) is called directly:
        # the same bytes as the general path (bytes key, 4-byte M-ID).
        keyed = KeyedPrf(SHA1, self.skeyid_a)
        for mid in (MID, MID_B):
            self.assertEqual(ipsec_keys.quick_mode_hash1(SHA1, keyed, mid, self.rest),
                             _prf("sha1", self.skeyid_a, MID_B + self.rest))
            self.assertEqual(ipsec_keys.quick_mode_hash2(SHA1, keyed, mid, NI_B, self.rest),
                             _prf("sha1", self.skeyid_a, MID_B + NI_B + self.rest))
            self.assertEqual(ipsec_keys.quick_mode_hash3(SHA1, keyed, mid, NI_B, NR_B),
                             _prf("sha1", self.skeyid_a, b"\x00" + MID_B + NI_B + NR_B))
        # What the general path refuses, it still refuses.
        self.assertRaises(CryptoError, ipsec_keys.quick_mode_hash1, SHA1, keyed, -1, b"")
        self.assertRaises(CryptoError, ipsec_keys.quick_mode_hash3, SHA1, keyed, 1 << 32,
                          NI_B, NR_B)
        self.assertRaises(CryptoError, ipsec_keys.quick_mode_hash2, SHA256, keyed, MID,
                          NI_B, b"")

    def test_informational(self) -> None:
        delete = bytes.fromhex("0000001000000001030400010a0b0c0d")
        self.assertEqual(
            ipsec_keys.informational_hash(SHA256, self.skeyid_a, MID_B, delete),
            _prf("sha256", self.skeyid_a, MID_B + delete))


def _keymat(name: str, skeyid_d: bytes, protocol: int, spi: bytes, nbytes: int,
            g_qm_xy: bytes = b"") -> bytes:
    """RFC 2409 §5.5 KEYMAT, written out."""
    seed = g_qm_xy + bytes([protocol]) + spi + NI_B + NR_B
    out = block = _prf(name, skeyid_d, seed)
    while len(out) < nbytes:
        block = _prf(name, skeyid_d, block + seed)
        out += block
    return out[:nbytes]


class KeymatTests(SynchronousTestCase):
    skeyid_d = bytes(range(40, 60))
    spi = bytes.fromhex("c0ffee01")

    def test_without_pfs(self) -> None:
        expected = _prf("sha1", self.skeyid_d, b"\x03" + self.spi + NI_B + NR_B)
        self.assertEqual(ipsec_keys.keymat(SHA1, self.skeyid_d, 3, self.spi, NI_B, NR_B, 20),
                         expected)
        self.assertEqual(
            ipsec_keys.keymat(SHA1, self.skeyid_d, 3, 0xC0FFEE01, NI_B, NR_B, 16),
            expected[:16])

    def test_with_pfs(self) -> None:
        g_qm = bytes(range(256))
        expected = _prf("sha1", self.skeyid_d, g_qm + b"\x03" + self.spi + NI_B + NR_B)
        self.assertEqual(
            ipsec_keys.keymat(SHA1, self.skeyid_d, 3, self.spi, NI_B, NR_B, 20, g_qm),
            expected)

    def test_expansion(self) -> None:
        # AES-256 + HMAC-SHA2-512 needs 32 + 64 = 96 bytes, a SHA-1 PRF gives 20 per
        # block: K1..K5 with Kn = prf(SKEYID_d, Kn-1 | [g^xy |] protocol | SPI | Ni_b | Nr_b)
        g_qm = b"\x55" * 96
        seed = g_qm + b"\x03" + self.spi + NI_B + NR_B
        k = [_prf("sha1", self.skeyid_d, seed)]
        for _ in range(4):
            k.append(_prf("sha1", self.skeyid_d, k[-1] + seed))
        expected = b"".join(k)[:96]
        self.assertEqual(_keymat("sha1", self.skeyid_d, 3, self.spi, 96, g_qm), expected)

        layout = esp_layout(EspTransform.AES, 256, AuthAlgorithm.HMAC_SHA2_512)
        self.assertEqual(layout.total, 96)
        sa = ipsec_keys.derive_sa_keys(SHA1, self.skeyid_d, layout, self.spi, NI_B, NR_B,
                                       g_qm)
        self.assertEqual(sa.enc_key, expected[:32])
        self.assertEqual(sa.auth_key, expected[32:96])
        self.assertEqual(sa.spi, self.spi)

        no_pfs = ipsec_keys.derive_sa_keys(SHA1, self.skeyid_d, layout, self.spi, NI_B, NR_B)
        self.assertEqual(no_pfs.enc_key + no_pfs.auth_key,
                         _keymat("sha1", self.skeyid_d, 3, self.spi, 96))

    def test_directions(self) -> None:
        # Inbound uses our SPI, outbound the peer's; both sides get the same keys.
        layout = esp_layout(EspTransform.AES, 128, AuthAlgorithm.HMAC_SHA)
        ours, theirs = bytes.fromhex("11111111"), bytes.fromhex("22222222")
        inbound, outbound = ipsec_keys.derive_sa_key_pair(
            SHA1, self.skeyid_d, layout, ours, theirs, NI_B, NR_B)
        km_ours = _keymat("sha1", self.skeyid_d, 3, ours, 36)
        km_theirs = _keymat("sha1", self.skeyid_d, 3, theirs, 36)
        self.assertEqual((inbound.spi, inbound.enc_key, inbound.auth_key),
                         (ours, km_ours[:16], km_ours[16:]))
        self.assertEqual((outbound.spi, outbound.enc_key, outbound.auth_key),
                         (theirs, km_theirs[:16], km_theirs[16:]))
        peer_in, peer_out = ipsec_keys.derive_sa_key_pair(
            SHA1, self.skeyid_d, layout, theirs, ours, NI_B, NR_B)
        self.assertEqual((peer_in, peer_out), (outbound, inbound))

    def test_key_bytes(self) -> None:
        # derive_sa_key_bytes: derive_sa_key_pair's SPIs and keys, with a bytes key
        # or a KeyedPrf, bytes or int SPIs.
        layout = esp_layout(EspTransform.AES, 256, AuthAlgorithm.HMAC_SHA2_256)
        ours, theirs = bytes.fromhex("11111111"), bytes.fromhex("22222222")
        g_qm = b"\x42" * 32
        for skeyid_d in (self.skeyid_d, KeyedPrf(SHA1, self.skeyid_d)):
            for spis in ((ours, theirs), (0x11111111, 0x22222222)):
                inbound, outbound = ipsec_keys.derive_sa_key_pair(
                    SHA1, skeyid_d, layout, *spis, NI_B, NR_B, g_qm)
                self.assertEqual(
                    ipsec_keys.derive_sa_key_bytes(SHA1, skeyid_d, layout, *spis, NI_B, NR_B,
                                                   g_qm),
                    ((ours, inbound.enc_key, inbound.auth_key),
                     (theirs, outbound.enc_key, outbound.auth_key)))
                km = _keymat("sha1", self.skeyid_d, 3, ours, 64, g_qm)
                self.assertEqual((inbound.enc_key, inbound.auth_key), (km[:32], km[32:]))

    def test_ah_protocol_byte(self) -> None:
        layout = ah_layout(AhTransform.SHA2_256)
        sa = ipsec_keys.derive_sa_keys(SHA256, self.skeyid_d, layout, self.spi, NI_B, NR_B)
        self.assertEqual(sa.enc_key, b"")
        self.assertEqual(sa.auth_key, _keymat("sha256", self.skeyid_d, 2, self.spi, 32))

    def test_gcm_salt(self) -> None:
        layout = esp_layout(EspTransform.AES_GCM_16, 256)
        sa = ipsec_keys.derive_sa_keys(SHA1, self.skeyid_d, layout, self.spi, NI_B, NR_B)
        km = _keymat("sha1", self.skeyid_d, 3, self.spi, 36)
        self.assertEqual((sa.enc_key, sa.auth_key), (km, b""))
        self.assertEqual((sa.cipher_key, sa.salt), (km[:32], km[32:]))

    def test_repr_hides_keys(self) -> None:
        layout = esp_layout(EspTransform.AES_CTR, 128, AuthAlgorithm.HMAC_SHA2_256)
        sa = ipsec_keys.derive_sa_keys(SHA1, self.skeyid_d, layout, self.spi, NI_B, NR_B)
        text = repr(sa) + str(sa)
        self.assertIn("c0ffee01", text)
        self.assertIn("AES_CTR", text)
        for secret in (sa.enc_key, sa.auth_key, sa.cipher_key, sa.salt):
            self.assertNotIn(secret.hex(), text)

    def test_bad_inputs(self) -> None:
        self.assertRaises(CryptoError, ipsec_keys.keymat, SHA1, b"d", 256, self.spi,
                          NI_B, NR_B, 16)
        self.assertRaises(CryptoError, ipsec_keys.spi_bytes, 1 << 32)
        self.assertRaises(CryptoError, ipsec_keys.split_keymat,
                          esp_layout(EspTransform.AES, 128), bytes(15))


class EspKeyLengthTests(SynchronousTestCase):
    """Inventory §3.2: KEYMAT bytes per ESP/AH transform."""

    def assertLayout(self, layout: ipsec_keys.KeymatLayout, enc: int, salt: int,
                     auth: int) -> None:
        self.assertEqual((layout.enc_key_bytes, layout.salt_bytes, layout.auth_key_bytes),
                         (enc, salt, auth))

    def test_table(self) -> None:
        sha = AuthAlgorithm.HMAC_SHA
        self.assertLayout(esp_layout(EspTransform.TRIPLE_DES, None, sha), 24, 0, 20)
        self.assertLayout(esp_layout(EspTransform.CAST, None, sha), 16, 0, 20)
        self.assertLayout(esp_layout(EspTransform.CAST, 80, sha), 10, 0, 20)
        self.assertLayout(esp_layout(EspTransform.BLOWFISH, 448, sha), 56, 0, 20)
        self.assertLayout(esp_layout(EspTransform.BLOWFISH, None, sha), 16, 0, 20)
        self.assertLayout(esp_layout(EspTransform.NULL, None, sha), 0, 0, 20)
        for bits in (128, 192, 256):
            n = bits // 8
            self.assertLayout(esp_layout(EspTransform.AES, bits, sha), n, 0, 20)
            # RFC 3686 §5.1: AES-CTR KEYMAT = key + 4-byte nonce.
            self.assertLayout(esp_layout(EspTransform.AES_CTR, bits, sha), n + 4, 4, 20)
            # RFC 4106 §8.1 / RFC 4543: key + 4-byte salt, no integrity key.
            self.assertLayout(esp_layout(EspTransform.AES_GCM_16, bits), n + 4, 4, 0)
            self.assertLayout(esp_layout(EspTransform.AES_GMAC, bits), n + 4, 4, 0)
            # RFC 4309 §7.1: key + 3-byte salt.
            self.assertLayout(esp_layout(EspTransform.AES_CCM_16, bits), n + 3, 3, 0)
        self.assertLayout(esp_layout(EspTransform.AES, 128), 16, 0, 0)   # no integrity
        self.assertTrue(esp_layout(EspTransform.AES_GCM_8, 128).combined_mode)
        self.assertFalse(esp_layout(EspTransform.AES, 128).combined_mode)

    def test_auth_keys(self) -> None:
        expected = {AuthAlgorithm.HMAC_MD5: 16, AuthAlgorithm.HMAC_SHA: 20,
                    AuthAlgorithm.HMAC_SHA2_256: 32, AuthAlgorithm.HMAC_SHA2_384: 48,
                    AuthAlgorithm.HMAC_SHA2_512: 64, AuthAlgorithm.HMAC_RIPEMD: 20}
        for alg, n in expected.items():
            self.assertEqual(auth_key_bytes(alg), n)
            layout = esp_layout(EspTransform.AES, 128, alg)
            self.assertEqual((layout.auth_algorithm, layout.total), (alg, 16 + n))
        for bad in (AuthAlgorithm.DES_MAC, AuthAlgorithm.KPDK, 0, 9):
            err = self.assertRaises(UnsupportedAlgorithmError, auth_key_bytes, bad)
            self.assertEqual((err.attribute, err.value), ("AUTHENTICATION_ALGORITHM", bad))

    def test_ah_table(self) -> None:
        expected = {AhTransform.MD5: 16, AhTransform.SHA: 20, AhTransform.SHA2_256: 32,
                    AhTransform.SHA2_384: 48, AhTransform.SHA2_512: 64,
                    AhTransform.RIPEMD: 20}
        for transform, n in expected.items():
            layout = ah_layout(transform)
            self.assertEqual((layout.protocol, layout.total, layout.enc_key_bytes),
                             (ProtocolId.IPSEC_AH, n, 0))
        self.assertEqual(ah_layout(AhTransform.SHA, AuthAlgorithm.HMAC_SHA).total, 20)
        err = self.assertRaises(CryptoError, ah_layout, AhTransform.SHA,
                                AuthAlgorithm.HMAC_MD5)
        self.assertEqual(err.attribute, "AUTHENTICATION_ALGORITHM")
        err = self.assertRaises(UnsupportedAlgorithmError, ah_layout, AhTransform.DES)
        self.assertEqual((err.attribute, err.value), ("TRANSFORM_ID", 4))

    def test_aes_family_needs_key_length(self) -> None:
        for transform in (EspTransform.AES, EspTransform.AES_CTR, EspTransform.AES_GCM_16,
                          EspTransform.AES_GMAC, EspTransform.AES_CCM_8):
            err = self.assertRaises(KeyLengthError, esp_layout, transform)
            self.assertEqual((err.attribute, err.value), ("KEY_LENGTH", None))
            self.assertIn(transform.label, str(err))
        self.assertEqual(
            esp_layout(EspTransform.AES, None, None, STRONGSWAN_ESP_DEFAULT_KEY_BITS)
            .enc_key_bytes, 16)
        self.assertEqual(
            esp_layout(EspTransform.AES_GCM_16, None, None, ISAKMPD_ESP_DEFAULT_KEY_BITS)
            .enc_key_bytes, 20)

    def test_key_length_errors(self) -> None:
        for transform, bits in ((EspTransform.AES, 160), (EspTransform.AES, 129),
                                (EspTransform.TRIPLE_DES, 128), (EspTransform.CAST, 136),
                                (EspTransform.BLOWFISH, 32), (EspTransform.NULL, 128),
                                (EspTransform.AES_GCM_16, 64)):
            err = self.assertRaises(KeyLengthError, esp_layout, transform, bits,
                                    AuthAlgorithm.HMAC_SHA
                                    if transform is not EspTransform.AES_GCM_16 else None)
            self.assertEqual((err.attribute, err.value), ("KEY_LENGTH", bits))
            self.assertIn(str(bits), str(err))

    def test_impossible_combinations(self) -> None:
        err = self.assertRaises(CryptoError, esp_layout, EspTransform.AES_GCM_16, 128,
                                AuthAlgorithm.HMAC_SHA)
        self.assertEqual(err.attribute, "AUTHENTICATION_ALGORITHM")
        err = self.assertRaises(CryptoError, esp_layout, EspTransform.NULL)
        self.assertEqual(err.attribute, "AUTHENTICATION_ALGORITHM")

    def test_unsupported_transforms(self) -> None:
        for transform in (EspTransform.DES, EspTransform.DES_IV64, EspTransform.RC5,
                          EspTransform.IDEA, EspTransform.RC4, EspTransform.CAMELLIA,
                          EspTransform.AES_TWOFISH, 0, 17, 300):
            err = self.assertRaises(UnsupportedAlgorithmError, esp_layout, transform, 128)
            self.assertEqual((err.attribute, err.value), ("TRANSFORM_ID", transform))
            self.assertIn("ESP transform", str(err))
