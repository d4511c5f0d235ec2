"""Tests of isakmpd.crypto.prf: hashes and the HMAC PRF against published vectors."""

from __future__ import annotations

import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.crypto import prf
from isakmpd.crypto.prf import CryptoError, UnsupportedAlgorithmError
from isakmpd.wire.constants import HashAlgorithm

MD5 = HashAlgorithm.MD5
SHA1 = HashAlgorithm.SHA
SHA256 = HashAlgorithm.SHA2_256
SHA384 = HashAlgorithm.SHA2_384
SHA512 = HashAlgorithm.SHA2_512

# RFC 2202 §2 (HMAC-MD5) and §3 (HMAC-SHA-1), test cases 1-7:
# (case, key, data, HMAC-MD5, HMAC-SHA-1). Case 5 lists the full output; the RFC
# also gives its 96-bit truncation, checked separately below.
RFC2202 = [
    (1, b"\x0b" * 16, b"\x0b" * 20, b"Hi There",
     "9294727a3638bb1c13f48ef8158bfc9d", "b617318655057264e28bc0b6fb378c8ef146be00"),
    (2, b"Jefe", b"Jefe", b"what do ya want for nothing?",
     "750c783e6ab0b503eaa86e310a5db738", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    (3, b"\xaa" * 16, b"\xaa" * 20, b"\xdd" * 50,
     "56be34521d144c88dbb8c733f0e8b3f6", "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
    (4, bytes(range(1, 26)), bytes(range(1, 26)), b"\xcd" * 50,
     "697eaf0aca3a3aea3a75164746ffaa79", "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
    (5, b"\x0c" * 16, b"\x0c" * 20, b"Test With Truncation",
     "56461ef2342edc00f9bab995690efd4c", "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
    (6, b"\xaa" * 80, b"\xaa" * 80,
     b"Test Using Larger Than Block-Size Key - Hash Key First",
     "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd", "aa4ae5e15272d00e95705637ce8a3b55ed402112"),
    (7, b"\xaa" * 80, b"\xaa" * 80,
     b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
     "6f630fad67cda0ee1fb1f562db3aa53e", "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"),
]

# RFC 4231 §4.2-§4.8, test cases 1-7: (case, key, data, {hash: HMAC}).
# Case 5 (§4.6) gives only the output truncated to 128 bits.
RFC4231 = [
    (1, b"\x0b" * 20, b"Hi There", {
        SHA256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        SHA384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
                "faea9ea9076ede7f4af152e8b2fa9cb6",
        SHA512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    }),
    (2, b"Jefe", b"what do ya want for nothing?", {
        SHA256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        SHA384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
                "8e2240ca5e69e2c78b3239ecfab21649",
        SHA512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
    }),
    (3, b"\xaa" * 20, b"\xdd" * 50, {
        SHA256: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        SHA384: "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b"
                "2a5ab39dc13814b94e3ab6e101a34f27",
        SHA512: "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
                "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
    }),
    (4, bytes(range(1, 26)), b"\xcd" * 50, {
        SHA256: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        SHA384: "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e"
                "6801dd23c4a7d679ccf8a386c674cffb",
        SHA512: "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
                "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
    }),
    (5, b"\x0c" * 20, b"Test With Truncation", {
        SHA256: "a3b6167473100ee06e0c796c2955552b",
        SHA384: "3abf34c3503b2a23a46efc619baef897",
        SHA512: "415fad6271580a531d4179bc891d87a6",
    }),
    (6, b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First", {
        SHA256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        SHA384: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
                "0c2ef6ab4030fe8296248df163f44952",
        SHA512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
                "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
    }),
    (7, b"\xaa" * 131,
     (b"This is a test using a larger than block-size key and a larger than block-size"
      b" data. The key needs to be hashed before being used by the HMAC algorithm."), {
        SHA256: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        SHA384: "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5"
                "a678cc31e799176d3860e6110c46523e",
        SHA512: "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
                "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
    }),
]


class Rfc2202Tests(SynchronousTestCase):
    """HMAC-MD5 and HMAC-SHA-1: RFC 2202 (also isakmpd regress hmac/hmactest.c)."""

    def test_hmac_md5(self) -> None:
        for case, key, _, data, md5, _ in RFC2202:
            self.assertEqual(prf.prf(MD5, key, data).hex(), md5, f"RFC 2202 MD5 case {case}")

    def test_hmac_sha1(self) -> None:
        for case, _, key, data, _, sha1 in RFC2202:
            self.assertEqual(prf.prf(SHA1, key, data).hex(), sha1,
                             f"RFC 2202 SHA-1 case {case}")

    def test_truncated_case_5(self) -> None:
        # RFC 2202 §2 / §3 test case 5: HMAC-MD5-96 and HMAC-SHA1-96.
        self.assertEqual(prf.prf(MD5, b"\x0c" * 16, b"Test With Truncation")[:12].hex(),
                         "56461ef2342edc00f9bab995")
        self.assertEqual(prf.prf(SHA1, b"\x0c" * 20, b"Test With Truncation")[:12].hex(),
                         "4c1a03424b55e07fe7f27be1")


class Rfc4231Tests(SynchronousTestCase):
    """HMAC-SHA-256/384/512: RFC 4231 §4 (block size 128 for SHA-384/512)."""

    def test_all_cases(self) -> None:
        for case, key, data, expected in RFC4231:
            for alg, digest in expected.items():
                got = prf.prf(alg, key, data)
                if case == 5:
                    got = got[:16]   # RFC 4231 §4.6: truncated to 128 bits
                self.assertEqual(got.hex(), digest, f"RFC 4231 case {case} {alg.label}")

    def test_block_size_matters(self) -> None:
        # DESIGN §4: the pre-2025 isakmpd HMAC used a 64-byte block for every hash,
        # so a 100-byte key was hashed first; standard HMAC-SHA-384 (RFC 4231 §1)
        # pads it to 128 bytes instead. The legacy result, built here by hand, must
        # not be what we compute.
        key = b"\x01" * 100
        legacy_key = hashlib.sha384(key).digest().ljust(64, b"\x00")
        inner = hashlib.sha384(bytes(b ^ 0x36 for b in legacy_key) + b"data").digest()
        legacy = hashlib.sha384(bytes(b ^ 0x5C for b in legacy_key) + inner).digest()
        self.assertNotEqual(prf.prf(SHA384, key, b"data"), legacy)


class IsakmpdRegressTests(SynchronousTestCase):
    def test_prftest_long_key(self) -> None:
        # isakmpd regress/sbin/isakmpd/prf/prftest.c (inventory §9): SHA-1 PRF with
        # a 90-byte key, longer than the 64-byte block.
        key = (b"Bloody long key, this one, eben longer than the blocksize of ordinary "
               b"keyed HMAC functions")
        self.assertEqual(len(key), 90)
        self.assertEqual(prf.prf(SHA1, key, b"what do ya want for nothing?").hex(),
                         "52ca5fbcd7d4821bc6bf8b6e95e131109dff901b")

    def test_prftest_rfc2202_through_prf(self) -> None:
        # prftest.c also runs the first two RFC 2202 cases of each hash.
        self.assertEqual(prf.prf(MD5, b"Jefe", b"what do ya want for nothing?").hex(),
                         "750c783e6ab0b503eaa86e310a5db738")
        self.assertEqual(prf.prf(SHA1, b"\x0b" * 20, b"Hi There").hex(),
                         "b617318655057264e28bc0b6fb378c8ef146be00")


class HashTests(SynchronousTestCase):
    def test_plain_hashes(self) -> None:
        # FIPS 180-2 appendix / RFC 1321 §A.5 digests of "abc".
        self.assertEqual(prf.hash(MD5, b"abc").hex(), "900150983cd24fb0d6963f7d28e17f72")
        self.assertEqual(prf.hash(SHA1, b"abc").hex(),
                         "a9993e364706816aba3e25717850c26c9cd0d89d")
        self.assertEqual(prf.hash(SHA256, b"abc").hex(),
                         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        self.assertEqual(prf.hash(SHA384, b"abc")[:8].hex(), "cb00753f45a35e8b")
        self.assertEqual(prf.hash(SHA512, b"abc")[:8].hex(), "ddaf35a193617aba")

    def test_sizes(self) -> None:
        self.assertEqual([prf.hash_size(a) for a in (MD5, SHA1, SHA256, SHA384, SHA512)],
                         [16, 20, 32, 48, 64])
        self.assertEqual([prf.hash_spec(a).block_size
                          for a in (MD5, SHA1, SHA256, SHA384, SHA512)],
                         [64, 64, 64, 128, 128])

    def test_unsupported(self) -> None:
        for value in (HashAlgorithm.TIGER, 0, 7, 65001):
            err = self.assertRaises(UnsupportedAlgorithmError, prf.hash_spec, value)
            self.assertEqual(err.attribute, "HASH_ALGORITHM")
            self.assertEqual(err.value, value)
            self.assertIn("HASH_ALGORITHM", str(err))
            self.assertIsInstance(err, CryptoError)
            self.assertIsInstance(err, ValueError)
        err = self.assertRaises(UnsupportedAlgorithmError, prf.prf, 3, b"k", b"d")
        self.assertIn("TIGER", str(err))

    def test_spec_is_hashable(self) -> None:
        # The module defines hash(); the spec's __hash__ must not call it.
        specs = {prf.hash_spec(a) for a in (MD5, SHA1, SHA256, SHA384, SHA512)}
        self.assertEqual(len(specs), 5)

    def test_equal(self) -> None:
        self.assertTrue(prf.equal(b"abc", b"abc"))
        self.assertFalse(prf.equal(b"abc", b"abd"))
        self.assertFalse(prf.equal(b"abc", b"ab"))


class KeyedPrfTests(SynchronousTestCase):
    """A KeyedPrf is prf() with the key applied once, usable wherever the key is."""

    def test_same_output_as_prf(self) -> None:
        for alg in (HashAlgorithm.MD5, HashAlgorithm.SHA, HashAlgorithm.SHA2_256,
                    HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512):
            # Empty, short, block-sized and longer-than-a-block keys (hashed first).
            for key in (b"", b"k", bytes(range(64)), bytes(range(129)), b"x" * 200):
                keyed = prf.KeyedPrf(alg, key)
                for data in (b"", b"data", bytes(300)):
                    # ... and both as the standard library computes it.
                    self.assertEqual(prf.prf(alg, key, data),
                                     hmac.digest(key, data, prf.hash_spec(alg).hashlib_name))
                    self.assertEqual(keyed(data), prf.prf(alg, key, data))
                    self.assertEqual(prf.prf(alg, keyed, data), prf.prf(alg, key, data))

    def test_reusable(self) -> None:
        keyed = prf.KeyedPrf(HashAlgorithm.SHA, b"key")
        first = keyed(b"one")
        keyed(b"two")
        self.assertEqual(keyed(b"one"), first)

    def test_wrong_hash_refused(self) -> None:
        keyed = prf.KeyedPrf(HashAlgorithm.SHA, b"key")
        self.assertRaises(CryptoError, prf.prf, HashAlgorithm.SHA2_256, keyed, b"data")

    def test_unsupported_hash(self) -> None:
        self.assertRaises(UnsupportedAlgorithmError, prf.KeyedPrf, HashAlgorithm.TIGER, b"k")

    def test_repr_hides_the_key(self) -> None:
        text = repr(prf.KeyedPrf(HashAlgorithm.SHA, b"secretkey"))
        self.assertNotIn("secretkey", text)
        self.assertNotIn(b"secretkey".hex(), text)
