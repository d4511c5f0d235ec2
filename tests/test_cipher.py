"""Tests of isakmpd.crypto.cipher: phase 1 ciphers, key-length rules, no warnings."""

from __future__ import annotations

import subprocess
import sys
import warnings

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.crypto import cipher
from isakmpd.crypto.cipher import Phase1Cipher, phase1_key_bytes, zero_pad
from isakmpd.crypto.prf import CryptoError, KeyLengthError, UnsupportedAlgorithmError
from isakmpd.wire.constants import EncryptionAlgorithm

TDES = EncryptionAlgorithm.TRIPLE_DES_CBC
BLF = EncryptionAlgorithm.BLOWFISH_CBC
CAST = EncryptionAlgorithm.CAST_CBC
AES = EncryptionAlgorithm.AES_CBC

_H = bytes.fromhex

# RFC 3602 §4, cases 1-4 (AES-128-CBC): (case, key, IV, plaintext, ciphertext).
RFC3602 = [
    (1, "06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41",
     b"Single block msg", "e353779c1079aeb82708942dbe77181a"),
    (2, "c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58",
     bytes(range(32)),
     "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"),
    (3, "6c3ea0477630ce21a2ce334aa746c2cd", "c782dc4c098c66cbd9cd27d825682c81",
     b"This is a 48-byte message (exactly 3 AES blocks)",
     ("d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5"
      "021c19216bad525c8579695d83ba2684")),
    (4, "56e47a38c5598974bc46903dba290349", "8ce82eefbea0da3c44699ed7db51b7d9",
     bytes(range(0xA0, 0xE0)),
     ("c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e"
      "35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee99d49a53e87f4c3da55")),
]

# NIST SP 800-38A appendix F.2.1 plaintext, used by F.2.3 and F.2.5.
SP800_38A_PLAINTEXT = _H(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
SP800_38A_IV = bytes(range(16))


class AesCbcTests(SynchronousTestCase):
    def test_rfc3602_cases(self) -> None:
        for case, key, iv, plaintext, ciphertext in RFC3602:
            c = Phase1Cipher(AES, _H(key))
            self.assertEqual(c.encrypt(_H(iv), plaintext).hex(), ciphertext,
                             f"RFC 3602 case {case}")
            self.assertEqual(c.decrypt(_H(iv), _H(ciphertext)), plaintext)

    def test_aes192_sp800_38a(self) -> None:
        # NIST SP 800-38A appendix F.2.3, CBC-AES192.Encrypt.
        c = Phase1Cipher(AES, _H("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b"))
        self.assertEqual(
            c.encrypt(SP800_38A_IV, SP800_38A_PLAINTEXT).hex(),
            "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a"
            "571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd")

    def test_aes256_sp800_38a(self) -> None:
        # NIST SP 800-38A appendix F.2.5, CBC-AES256.Encrypt.
        c = Phase1Cipher(AES, _H("603deb1015ca71be2b73aef0857d77811f352c073b6108d7"
                                 "2d9810a30914dff4"))
        self.assertEqual(
            c.encrypt(SP800_38A_IV, SP800_38A_PLAINTEXT).hex(),
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
            "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b")


class OtherCipherKnownAnswerTests(SynchronousTestCase):
    def test_blowfish_cbc_isakmpd_regress(self) -> None:
        # isakmpd regress/sbin/isakmpd/crypto/cryptotest.c (inventory §9): the
        # Blowfish-CBC known answer (Eric Young's test vector).
        c = Phase1Cipher(BLF, _H("0123456789ABCDEFF0E1D2C3B4A59687"))
        iv = _H("FEDCBA9876543210")
        plaintext = b"7654321 Now is the time for " + bytes(4)
        expected = _H("6B77B4D63006DEE605B156E27403979358DEB9E7154616D959F1652BD5FF92CC")
        self.assertEqual(len(plaintext), 32)
        self.assertEqual(c.encrypt(iv, plaintext), expected)
        self.assertEqual(c.decrypt(iv, expected), plaintext)

    def test_cast128(self) -> None:
        # RFC 2144 appendix B.1, 128-bit key; with a zero IV the first CBC block is
        # the ECB result.
        c = Phase1Cipher(CAST, _H("0123456712345678234567893456789A"))
        self.assertEqual(c.encrypt(bytes(8), _H("0123456789ABCDEF")).hex(),
                         "238b4fe5847e44b2")

    def test_3des_with_equal_keys_is_des(self) -> None:
        # EDE with K1 = K2 = K3 is single DES; DES known answer from J. Orlin
        # Grabbe, "The DES Algorithm Illustrated" (key 133457799BBCDFF1).
        c = Phase1Cipher(TDES, _H("133457799BBCDFF1") * 3)
        self.assertEqual(c.encrypt(bytes(8), _H("0123456789ABCDEF")).hex(),
                         "85e813540f0ab405")


class RoundTripTests(SynchronousTestCase):
    """cryptotest.c: 256 bytes 0..255, maximum key 0..n-1, IV 0.., both ways."""

    def test_every_cipher_max_key(self) -> None:
        data = bytes(range(256))
        for alg, key_bytes, block in ((TDES, 24, 8), (BLF, 56, 8), (CAST, 16, 8),
                                      (AES, 32, 16)):
            c = Phase1Cipher(alg, bytes(range(key_bytes)))
            self.assertEqual((c.key_size, c.block_size), (key_bytes, block))
            iv = bytes(range(block))
            ciphertext = c.encrypt(iv, data)
            self.assertNotEqual(ciphertext, data)
            self.assertEqual(len(ciphertext), 256)
            self.assertEqual(c.decrypt(iv, ciphertext), data, alg.label)

    def test_every_aes_size(self) -> None:
        for nbytes in (16, 24, 32):
            c = Phase1Cipher(AES, bytes(range(nbytes)))
            self.assertEqual(c.decrypt(bytes(16), c.encrypt(bytes(16), bytes(64))),
                             bytes(64))

    def test_no_warnings(self) -> None:
        # Blowfish, CAST5 and 3DES come from cryptography's "decrepit" namespace;
        # using them must not emit CryptographyDeprecationWarning (or any other).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for alg, n in ((TDES, 24), (BLF, 16), (CAST, 16), (AES, 16)):
                c = Phase1Cipher(alg, bytes(n))
                bs = c.block_size
                c.decrypt(bytes(bs), c.encrypt(bytes(bs), bytes(bs * 2)))
        self.assertEqual([str(w.message) for w in caught], [])
        self.assertEqual(self.flushWarnings(), [])

    def test_no_warnings_on_import(self) -> None:
        # A fresh interpreter turns every warning into an error while importing
        # the module and building each cipher once.
        code = ("import isakmpd.crypto.cipher as c\n"
                "for a, n in ((5, 24), (3, 16), (6, 16), (7, 16)):\n"
                "    x = c.Phase1Cipher(a, bytes(n)); x.encrypt(bytes(x.block_size),"
                " bytes(x.block_size))\n")
        result = subprocess.run([sys.executable, "-W", "error", "-c", code],
                                capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual((result.returncode, result.stderr), (0, ""))


class ReusedContextTests(SynchronousTestCase):
    """One Phase1Cipher encrypts message after message, each with its own IV, as a
    fresh CBC encryption of that message would (the context is kept per SA)."""

    def test_each_message_is_cbc_from_its_iv(self) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        factories = {TDES: algorithms.TripleDES, AES: algorithms.AES}
        for alg, key, block in ((TDES, bytes(range(24)), 8), (AES, bytes(range(16)), 16)):
            c = Phase1Cipher(alg, key)
            # Unrelated IVs, the chained IV (our own last block) and one-block messages.
            previous = b""
            for n, size in enumerate((block * 5, block, block * 12, block * 3, block)):
                iv = previous[-block:] if n == 2 else bytes([n * 17 + 1]) * block
                data = bytes((n + i) % 251 for i in range(size))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")     # TripleDES is deprecated
                    fresh = Cipher(factories[alg](key), modes.CBC(iv)).encryptor()
                expected = fresh.update(data) + fresh.finalize()
                previous = c.encrypt(iv, data)
                self.assertEqual(previous, expected)
                self.assertEqual(c.decrypt(iv, previous), data)


class CipherUseTests(SynchronousTestCase):
    def test_repr_hides_key(self) -> None:
        key = bytes(range(0x40, 0x60))
        text = repr(Phase1Cipher(AES, key))
        self.assertEqual(text, "<Phase1Cipher AES_CBC 256-bit>")
        self.assertNotIn(key.hex(), text)
        self.assertNotIn(repr(key), text)

    def test_bad_iv_or_length(self) -> None:
        c = Phase1Cipher(AES, bytes(16))
        self.assertRaises(CryptoError, c.encrypt, bytes(8), bytes(16))
        self.assertRaises(CryptoError, c.encrypt, bytes(16), bytes(15))
        self.assertRaises(CryptoError, c.decrypt, bytes(16), b"")

    def test_bad_key_for_cipher(self) -> None:
        err = self.assertRaises(KeyLengthError, Phase1Cipher, AES, bytes(20))
        self.assertEqual((err.attribute, err.value), ("KEY_LENGTH", 160))
        self.assertRaises(KeyLengthError, Phase1Cipher, TDES, bytes(16))
        self.assertRaises(KeyLengthError, Phase1Cipher, CAST, bytes(17))

    def test_zero_pad(self) -> None:
        self.assertEqual(zero_pad(b"abc", 8), b"abc" + bytes(5))
        self.assertEqual(zero_pad(bytes(16), 16), bytes(16))
        self.assertEqual(zero_pad(b"", 8), b"")


class KeyLengthRuleTests(SynchronousTestCase):
    """Inventory §3.1: KEY_LENGTH in bits, a multiple of 8, within the cipher bounds."""

    def test_valid_lengths(self) -> None:
        self.assertEqual(phase1_key_bytes(AES, 128), 16)
        self.assertEqual(phase1_key_bytes(AES, 192), 24)
        self.assertEqual(phase1_key_bytes(AES, 256), 32)
        self.assertEqual(phase1_key_bytes(BLF, 96), 12)
        self.assertEqual(phase1_key_bytes(BLF, 448), 56)
        self.assertEqual(phase1_key_bytes(CAST, 96), 12)
        self.assertEqual(phase1_key_bytes(CAST, 128), 16)
        self.assertEqual(phase1_key_bytes(TDES, 192), 24)

    def test_defaults_without_key_length(self) -> None:
        # RFC 2451 §2.2: Blowfish and CAST default to 128 bits; 3DES is fixed.
        self.assertEqual(phase1_key_bytes(TDES, None), 24)
        self.assertEqual(phase1_key_bytes(BLF, None), 16)
        self.assertEqual(phase1_key_bytes(CAST, None), 16)

    def test_aes_needs_key_length(self) -> None:
        # RFC 3602 §5.3: KEY_LENGTH is mandatory for AES.
        err = self.assertRaises(KeyLengthError, phase1_key_bytes, AES, None)
        self.assertEqual((err.attribute, err.value), ("KEY_LENGTH", None))
        self.assertIn("AES_CBC needs a KEY_LENGTH attribute", str(err))

    def test_alternative_default_tables(self) -> None:
        self.assertEqual(phase1_key_bytes(AES, None, cipher.STRONGSWAN_DEFAULT_KEY_BITS), 16)
        self.assertEqual(phase1_key_bytes(AES, None, cipher.ISAKMPD_DEFAULT_KEY_BITS), 32)
        self.assertEqual(phase1_key_bytes(BLF, None, cipher.ISAKMPD_DEFAULT_KEY_BITS), 56)
        self.assertEqual(phase1_key_bytes(CAST, None, cipher.ISAKMPD_DEFAULT_KEY_BITS), 16)

    def assertKeyLengthError(self, alg: int, bits: int, *words: str) -> None:
        err = self.assertRaises(KeyLengthError, phase1_key_bytes, alg, bits)
        self.assertEqual((err.attribute, err.value), ("KEY_LENGTH", bits))
        for word in ("KEY_LENGTH", str(bits), *words):
            self.assertIn(word, str(err))

    def test_not_multiple_of_8(self) -> None:
        self.assertKeyLengthError(AES, 129, "multiple of 8")
        self.assertKeyLengthError(BLF, 100, "multiple of 8")
        self.assertKeyLengthError(CAST, 0, "multiple of 8")
        self.assertKeyLengthError(CAST, -8, "multiple of 8")

    def test_out_of_bounds(self) -> None:
        self.assertKeyLengthError(AES, 160, "AES_CBC", "128, 192, 256")
        self.assertKeyLengthError(AES, 512, "AES_CBC")
        self.assertKeyLengthError(AES, 64, "AES_CBC")
        self.assertKeyLengthError(BLF, 88, "BLOWFISH_CBC", "96..448")
        self.assertKeyLengthError(BLF, 456, "BLOWFISH_CBC")
        self.assertKeyLengthError(CAST, 136, "CAST_CBC", "96..128")
        self.assertKeyLengthError(CAST, 40, "CAST_CBC")
        # RFC 2409 appendix A: KEY_LENGTH MUST NOT be used with a fixed-length key;
        # a value other than 3DES's own length is refused.
        self.assertKeyLengthError(TDES, 128, "3DES_CBC", "192")

    def test_unsupported_ciphers(self) -> None:
        for value in (EncryptionAlgorithm.DES_CBC, EncryptionAlgorithm.IDEA_CBC,
                      EncryptionAlgorithm.RC5_R16_B64_CBC, EncryptionAlgorithm.CAMELLIA_CBC,
                      0, 9, 65001):
            err = self.assertRaises(UnsupportedAlgorithmError, phase1_key_bytes, value, 128)
            self.assertEqual((err.attribute, err.value), ("ENCRYPTION_ALGORITHM", value))
            self.assertIn("ENCRYPTION_ALGORITHM", str(err))
        err = self.assertRaises(UnsupportedAlgorithmError, Phase1Cipher, 1, bytes(8))
        self.assertIn("DES_CBC", str(err))

    def test_supported_list(self) -> None:
        self.assertEqual(set(cipher.supported_ciphers()), {TDES, BLF, CAST, AES})
