"""Tests of isakmpd.crypto.dh: groups, known answers, validation, refusals.

Where each vector comes from:

* ECP groups 19, 20, 21: RFC 5903 §8.1, §8.2, §8.3 (i, g^i, r, g^r, g^ir).
* ECP group 26 (P-224): RFC 5114 appendix A.5.
* BP group 27 (brainpoolP224r1): RFC 6932 appendix A.1.
* BP groups 28, 29, 30: RFC 7027 appendix A.1, A.2, A.3 (the TLS brainpool vectors;
  the curves and the X-only shared secret are the same in IKE).
* MODP: no published IKE vectors; the primes are rebuilt from the formula of RFC 2409
  §6 / RFC 3526 (digits of pi), public values are checked against Python's own
  ``pow``, and group 14 is cross-checked against ``cryptography``'s DH.
"""

from __future__ import annotations

import warnings

import gmpy2
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from isakmpd.crypto import dh
from isakmpd.crypto.dh_groups import CURVES, MODP_PRIMES
from isakmpd.crypto.prf import CryptoError, UnsupportedAlgorithmError
from isakmpd.crypto.random import SeededRandom, SystemRandom
from isakmpd.wire.constants import GroupType, NotifyType


def _h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# (group, i, g^i, r, g^r, shared x): g^i and g^r are X‖Y as in the KE payload.
ECP_VECTORS = [
    (19,  # RFC 5903 §8.1
     "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433",
     ("DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180"
      "5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3"),
     "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53",
     ("D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63"
      "56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB"),
     "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE"),
    (20,  # RFC 5903 §8.2
     ("099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655"
      "E35B5380 41E649EE 3FAEF896 783AB194"),
     ("667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6"
      "DE3AC808 ACB4BDB4 C88732AE E95F41AA 9482ED1F C0EEB9CA FC498462 5CCFC23F"
      "65032149 E0E144AD A0241815 35A0F38E EB9FCFF3 C2C947DA E69B4C63 4573A81C"),
     ("41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942"
      "E0308312 916B8ED2 960E4BD5 5A7448FC"),
     ("E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D"
      "0D1AC43A 0336DEF9 6FDA41D0 774A3571 DCFBEC7A ACF31964 72169E83 8430367F"
      "66EEBE3C 6E70C416 DD5F0C68 759DD1FF F83FA401 42209DFF 5EAAD96D B9E6386C"),
     ("11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4"
      "D6031355 69B9E9D0 9CF5D4A2 70F59746")),
    (21,  # RFC 5903 §8.3
     ("0037ADE9 319A89F4 DABDB3EF 411AACCC A5123C61 ACAB57B5 393DCE47 608172A0"
      "95AA85A3 0FE1C295 2C6771D9 37BA9777 F5957B26 39BAB072 462F68C2 7A57382D 4A52"),
     ("0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B D98BAB43 57C9ECBE"
      "E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4 601723C4 195D176C ED3E"
      "017CAE20 B6641D2E EB695786 D8C94614 6239D099 E18E1D5A 514C739D 7CB4A10A"
      "D8A78801 5AC405D7 799DC75E 7B7D5B6C F2261A6A 7F150743 8BF01BEB 6CA3926F 9582"),
     ("0145BA99 A847AF43 793FDD0E 872E7CDF A16BE30F DC780F97 BCCC3F07 8380201E"
      "9C677D60 0B343757 A3BDBF2A 3163E4C2 F869CCA7 458AA4A4 EFFC311F 5CB15168 5EB9"),
     ("00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39 728B5E57 39735A21"
      "9B97C356 436ADC6E 95BB0352 F6BE64A6 C2912D4E F2D0433C ED2B6171 640012D9 460F"
      "015C6822 6383956E 3BD066E7 97B623C2 7CE0EAC2 F551A10C 2C724D98 52077B87"
      "220B6536 C5C408A1 D2AEBB8E 86D678AE 49CB5709 1F473229 6579AB44 FCD17F0F C56A"),
     ("01144C7D 79AE6956 BC8EDB8E 7C787C45 21CB086F A64407F9 7894E5E6 B2D79B04"
      "D1427E73 CA4BAA24 0A347868 59810C06 B3C715A3 A8CC3151 F2BEE417 996D19F3 DDEA")),
    (26,  # RFC 5114 appendix A.5
     "B558EB6C 288DA707 BBB4F8FB AE2AB9E9 CB62E3BC 5C7573E2 2E26D37F",
     ("49DFEF30 9F81488C 304CFF5A B3EE5A21 54367DC7 833150E0 A51F3EEB"
      "4F2B5EE4 5762C4F6 54C1A0C6 7F54CF88 B016B51B CE3D7C22 8D57ADB4"),
     "AC3B1ADD 3D9770E6 F6A708EE 9F3B8E0A B3B480E9 F27F85C8 8B5E6D18",
     ("6B3AC96A 8D0CDE6A 5599BE80 32EDF10C 162D0A8A D219506D CD42A207"
      "D491BE99 C213A7D1 CA3706DE BFE305F3 61AFCBB3 3E2609C8 B1618AD5"),
     "52272F50 F46F4EDC 91515690 92F46DF2 D96ECC3B 6DC1714A 4EA949FA"),
    (27,  # RFC 6932 appendix A.1
     "7C4B7A2C 8A4BAD1F BB7D79CC 0955DB7C 6A4660CA 64CC4778 159B495E",
     ("B104A67A 6F6E85E1 4EC1825E 1539E8EC DBBF5849 22367DD8 8C6BDCF2"
      "46D782E7 FDB5F60C D8404301 AC5949C5 8EDB26BC 68BA0769 5B750A94"),
     "63976D4A AE6CD0F6 DD18DEFE F55D9656 9D0507C0 3E74D648 6FFA28FB",
     ("2A97089A 9296147B 71B21A4B 574E1278 245B536F 14D8C2B9 D07A874E"
      "9B900D7C 77A709A7 97276B8C A1BA61BB 95B546FC 29F862E4 4D59D25B"),
     "312DFD98 783F9FB7 7B970494 5A73BEB6 DCCBE3B6 5D0F967D CAB574EB"),
    (28,  # RFC 7027 appendix A.1
     "81DB1EE1 00150FF2 EA338D70 8271BE38 300CB542 41D79950 F77B0630 39804F1D",
     ("44106E91 3F92BC02 A1705D99 53A8414D B95E1AAA 49E81D9E 85F929A8 E3100BE5"
      "8AB4846F 11CACCB7 3CE49CBD D120F5A9 00A69FD3 2C272223 F789EF10 EB089BDC"),
     "55E40BC4 1E37E3E2 AD25C3C6 654511FF A8474A91 A0032087 593852D3 E7D76BD3",
     ("8D2D688C 6CF93E11 60AD04CC 4429117D C2C41825 E1E9FCA0 ADDD34E6 F1B39F7B"
      "990C5752 0812BE51 2641E470 34832106 BC7D3E8D D0E4C7F1 136D7006 547CEC6A"),
     "89AFC39D 41D3B327 814B8094 0B042590 F96556EC 91E6AE79 39BCE31F 3A18BF2B"),
    (29,  # RFC 7027 appendix A.2
     ("1E20F5E0 48A5886F 1F157C74 E91BDE2B 98C8B52D 58E5003D 57053FC4 B0BD65D6"
      "F15EB5D1 EE1610DF 87079514 3627D042"),
     ("68B665DD 91C19580 0650CDD3 63C625F4 E742E813 4667B767 B1B47679 3588F885"
      "AB698C85 2D4A6E77 A252D638 0FCAF068 55BC91A3 9C9EC01D EE36017B 7D673A93"
      "1236D2F1 F5C83942 D049E3FA 20607493 E0D038FF 2FD30C2A B67D15C8 5F7FAA59"),
     ("032640BC 6003C592 60F7250C 3DB58CE6 47F98E12 60ACCE4A CDA3DD86 9F74E01F"
      "8BA5E032 4309DB6A 9831497A BAC96670"),
     ("4D44326F 269A597A 5B58BBA5 65DA5556 ED7FD9A8 A9EB76C2 5F46DB69 D19DC8CE"
      "6AD18E40 4B15738B 2086DF37 E71D1EB4 62D69213 6DE56CBE 93BF5FA3 188EF58B"
      "C8A3A0EC 6C1E151A 21038A42 E9185329 B5B27590 3D192F8D 4E1F32FE 9CC78C48"),
     ("0BD9D3A7 EA0B3D51 9D09D8E4 8D0785FB 744A6B35 5E6304BC 51C229FB BCE239BB"
      "ADF64037 15C35D4F B2A5444F 575D4F42")),
    (30,  # RFC 7027 appendix A.3
     ("16302FF0 DBBB5A8D 733DAB71 41C1B45A CBC87159 39677F6A 56850A38 BD87BD59"
      "B09E8027 9609FF33 3EB9D4C0 61231FB2 6F92EEB0 4982A5F1 D1764CAD 57665422"),
     ("0A420517 E406AAC0 ACDCE90F CD714877 18D3B953 EFD7FBEC 5F7F27E2 8C614999"
      "9397E91E 029E0645 7DB2D3E6 40668B39 2C2A7E73 7A7F0BF0 4436D116 40FD09FD"
      "72E6882E 8DB28AAD 36237CD2 5D580DB2 3783961C 8DC52DFA 2EC138AD 472A0FCE"
      "F3887CF6 2B623B2A 87DE5C58 8301EA3E 5FC269B3 73B60724 F5E82A6A D147FDE7"),
     ("230E18E1 BCC88A36 2FA54E4E A3902009 292F7F80 33624FD4 71B5D8AC E49D12CF"
      "ABBC1996 3DAB8E2F 1EBA00BF FB29E4D7 2D13F222 4562F405 CB805036 66B25429"),
     ("9D45F66D E5D67E2E 6DB6E93A 59CE0BB4 8106097F F78A081D E781CDB3 1FCE8CCB"
      "AAEA8DD4 320C4119 F1E9CD43 7A2EAB37 31FA9668 AB268D87 1DEDA55A 5473199F"
      "2FDC3130 95BCDD5F B3A91636 F07A959C 8E86B563 6A1E930E 8396049C B481961D"
      "365CC114 53A06C71 9835475B 12CB52FC 3C383BCE 35E27EF1 94512B71 876285FA"),
     ("A7927098 655F1F99 76FA50A9 D566865D C5303318 46381C87 256BAF32 26244B76"
      "D36403C0 24D7BBF0 AA0803EA FF405D3D 24F11A9B 5C0BEF67 9FE1454B 21C4CD1F")),
]

# RFC 2409 §6.1/§6.2 and RFC 3526 §2-§7: p = 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + k)
MODP_FORMULA = {1: (768, 149686), 2: (1024, 129093), 5: (1536, 741804),
                14: (2048, 124476), 15: (3072, 1690314), 16: (4096, 240904),
                17: (6144, 929484), 18: (8192, 4743158)}

SUPPORTED = (1, 2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 26, 27, 28, 29, 30)


class RegistryTests(SynchronousTestCase):
    def test_supported_numbers(self) -> None:
        self.assertEqual(tuple(g.number for g in dh.supported_groups()), SUPPORTED)
        for number in SUPPORTED:
            self.assertTrue(dh.is_supported(number))
            self.assertIs(dh.group(number), dh.group(number))

    def test_names_kinds_and_lengths(self) -> None:
        expected = {1: ("MODP_768", 96), 2: ("MODP_1024", 128), 5: ("MODP_1536", 192),
                    14: ("MODP_2048", 256), 15: ("MODP_3072", 384), 16: ("MODP_4096", 512),
                    17: ("MODP_6144", 768), 18: ("MODP_8192", 1024), 19: ("ECP_256", 64),
                    20: ("ECP_384", 96), 21: ("ECP_521", 132), 26: ("ECP_224", 56),
                    27: ("BP_224", 56), 28: ("BP_256", 64), 29: ("BP_384", 96),
                    30: ("BP_512", 128)}
        for number, (name, length) in expected.items():
            grp = dh.group(number)
            self.assertEqual((grp.name, grp.ke_length), (name, length))
            self.assertEqual(grp.kind, GroupType.MODP if number < 19 else GroupType.ECP)

    def test_unsupported_groups_are_refused_by_name(self) -> None:
        cases = {3: "EC2N_155", 4: "EC2N_185", 7: "EC2N_163K", 22: "MODP_1024_160",
                 23: "MODP_2048_224", 24: "MODP_2048_256", 25: "ECP_192", 0: "unknown",
                 31: "unknown", 99: "unknown"}
        for number, label in cases.items():
            self.assertFalse(dh.is_supported(number))
            error = self.assertRaises(dh.UnsupportedGroupError, dh.group, number)
            self.assertIn(f"DH group {number} ({label}) is not supported", str(error))
            self.assertIsInstance(error, UnsupportedAlgorithmError)
            self.assertIsInstance(error, CryptoError)
            self.assertEqual(error.value, number)
            self.assertEqual(error.attribute, "GROUP_DESCRIPTION")
            self.assertEqual(error.notify, NotifyType.ATTRIBUTES_NOT_SUPPORTED)

    def test_refusal_says_why(self) -> None:
        self.assertIn("EC2N", str(self.assertRaises(dh.DHError, dh.group, 3)))
        self.assertIn("RFC 5114", str(self.assertRaises(dh.DHError, dh.group, 24)))
        self.assertIn("removed", str(self.assertRaises(dh.DHError, dh.group, 25)))

    def test_implementation_paths(self) -> None:
        self.assertEqual(dh.group(14).implementation, "gmpy2 powmod_sec")
        self.assertEqual(dh.group(19).implementation, "cryptography ECDH")
        self.assertIn("own", dh.group(27).implementation)
        self.assertEqual(dh.group(28).implementation, "cryptography ECDH")


class ModpTests(SynchronousTestCase):
    def test_primes_follow_the_rfc_formula(self) -> None:
        for number, (bits, offset) in MODP_FORMULA.items():
            context = gmpy2.context(precision=bits + 64)
            with gmpy2.local_context(context):
                digits = int(gmpy2.floor(gmpy2.const_pi() * gmpy2.mpz(2) ** (bits - 130)))
            prime = 2**bits - 2**(bits - 64) - 1 + 2**64 * (digits + offset)
            self.assertEqual(MODP_PRIMES[number], prime, f"group {number}")

    def test_small_primes_are_safe_primes(self) -> None:
        for number in (1, 2, 5, 14):
            prime = MODP_PRIMES[number]
            self.assertTrue(gmpy2.is_prime(prime) and gmpy2.is_prime((prime - 1) // 2))

    def test_public_value_is_two_to_the_private(self) -> None:
        for number in (1, 2, 14):
            prime = MODP_PRIMES[number]
            private = 0x1234567890ABCDEF << 150 | 0x55
            pair = dh.group(number).from_private(private)
            self.assertEqual(pair.public_bytes,
                             pow(2, private, prime).to_bytes(len(pair.public_bytes), "big"))

    def test_every_group_agrees(self) -> None:
        rng = SeededRandom(5)
        for number in MODP_PRIMES:
            grp = dh.group(number)
            alice, bob = grp.generate(rng), grp.generate(rng)
            secret = alice.shared_secret(bob.public_bytes)
            self.assertEqual(secret, bob.shared_secret(alice.public_bytes))
            self.assertEqual(len(secret), grp.ke_length)
            self.assertEqual(len(alice.public_bytes), grp.ke_length)

    def test_shared_secret_is_left_padded(self) -> None:
        # A peer value whose power has leading zero bytes: y = g^r with the shared
        # secret found by trying r (about 1 in 256 tries).
        grp = dh.group(1)
        prime = MODP_PRIMES[1]
        ours = grp.from_private(3)
        for r in range(2, 5000):
            if pow(2, 3 * r, prime).bit_length() <= len(ours.public_bytes) * 8 - 8:
                break
        peer = pow(2, r, prime).to_bytes(96, "big")
        secret = ours.shared_secret(peer)
        self.assertEqual(len(secret), 96)
        self.assertEqual(secret[0], 0)
        self.assertEqual(int.from_bytes(secret, "big"), pow(2, 3 * r, prime))

    def test_exponent_length(self) -> None:
        rng = SeededRandom(9)
        expected = {1: 225, 2: 225, 5: 225, 14: 225, 15: 275, 16: 325, 17: 375, 18: 400}
        for number, bits in expected.items():
            grp = dh.group(number)
            self.assertEqual(grp.exponent_bits, bits)
            pair = grp.generate(rng)
            self.assertEqual(int(pair._secret).bit_length(), bits)

    def test_matches_cryptography_dh(self) -> None:
        # An independent computation of group 14 with OpenSSL's DH (deprecated in
        # cryptography 50: its warning is silenced here only).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from cryptography.hazmat.primitives.asymmetric import dh as pyca_dh
            prime = MODP_PRIMES[14]
            params = pyca_dh.DHParameterNumbers(prime, 2)
            x = 0xC0FFEE << 200 | 0xBEEF
            y = 0x5EED << 210 | 0xF00D
            ours = dh.group(14).from_private(x)
            theirs = pyca_dh.DHPrivateNumbers(
                y, pyca_dh.DHPublicNumbers(pow(2, y, prime), params)).private_key()
            their_public = theirs.public_key().public_numbers().y.to_bytes(256, "big")
            our_public = pyca_dh.DHPublicNumbers(
                int.from_bytes(ours.public_bytes, "big"), params).public_key()
            expected = theirs.exchange(our_public).rjust(256, b"\0")
        self.assertEqual(ours.shared_secret(their_public), expected)

    def test_rejects_bad_values(self) -> None:
        grp = dh.group(2)
        prime = MODP_PRIMES[2]
        pair = grp.generate(SeededRandom(1))
        for value in (0, 1, prime - 1, prime, prime + 1, 2**1024 - 1):
            data = value.to_bytes(128, "big")
            error = self.assertRaises(dh.InvalidPublicValueError, pair.shared_secret, data)
            self.assertEqual(error.notify, NotifyType.INVALID_KEY_INFORMATION)
            self.assertIn("DH group 2 (MODP_1024)", str(error))
            self.assertRaises(dh.InvalidPublicValueError, grp.check_public, data)
        for value in (2, prime - 2):
            grp.check_public(value.to_bytes(128, "big"))

    def test_rejects_wrong_length(self) -> None:
        grp = dh.group(14)
        pair = grp.generate(SeededRandom(2))
        good = grp.generate(SeededRandom(3)).public_bytes
        for data in (good[1:], b"\0" + good, b"", good + b"\0"):
            error = self.assertRaises(dh.InvalidPublicValueError, pair.shared_secret, data)
            self.assertEqual(error.notify, NotifyType.PAYLOAD_MALFORMED)
            self.assertIn("needs exactly 256", str(error))

    def test_private_range(self) -> None:
        prime = MODP_PRIMES[1]
        for value in (0, 1, prime - 1, prime):
            self.assertRaises(ValueError, dh.group(1).from_private, value)


class EcpKnownAnswerTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        for number, i, gi, r, gr, gir in ECP_VECTORS:
            grp = dh.group(number)
            initiator = grp.from_private(int.from_bytes(_h(i), "big"))
            responder = grp.from_private(int.from_bytes(_h(r), "big"))
            self.assertEqual(initiator.public_bytes, _h(gi), f"g^i of group {number}")
            self.assertEqual(responder.public_bytes, _h(gr), f"g^r of group {number}")
            self.assertEqual(initiator.shared_secret(_h(gr)), _h(gir), f"group {number}")
            self.assertEqual(responder.shared_secret(_h(gi)), _h(gir), f"group {number}")

    def test_every_group_agrees(self) -> None:
        rng = SeededRandom(11)
        for number in CURVES:
            grp = dh.group(number)
            alice, bob = grp.generate(rng), grp.generate(rng)
            secret = alice.shared_secret(bob.public_bytes)
            self.assertEqual(secret, bob.shared_secret(alice.public_bytes))
            self.assertEqual(len(secret), grp.ke_length // 2)


class CurveArithmeticTests(SynchronousTestCase):
    """The curve parameters and this module's own point arithmetic."""

    def test_parameters(self) -> None:
        for curve in CURVES.values():
            arith = dh._Arithmetic(curve)
            g = (curve.gx, curve.gy)
            self.assertEqual((curve.gy**2 - curve.gx**3 - curve.a * curve.gx - curve.b)
                             % curve.p, 0, f"G on curve {curve.name}")
            self.assertIsNone(arith.reference_mul(curve.n, g), f"n*G on {curve.name}")
            self.assertTrue(gmpy2.is_prime(curve.p) and gmpy2.is_prime(curve.n))

    def test_own_arithmetic_matches_openssl(self) -> None:
        # Same scalars through our fixed window and through OpenSSL, on every curve
        # OpenSSL has: this checks both the parameters and the formulas.
        rng = SeededRandom(13)
        for curve in CURVES.values():
            if curve.name not in dh._LIBRARY_CURVES:
                continue
            arith = dh._Arithmetic(curve)
            library = dh._LIBRARY_CURVES[curve.name]()
            scalars = [1, 2, 3, curve.n - 1, curve.n - 2] + [
                1 + rng.randbelow(curve.n - 1) for _ in range(3)]
            for k in scalars:
                numbers = ec.derive_private_key(k, library).public_key().public_numbers()
                self.assertEqual(arith.mul_base(k), (numbers.x, numbers.y), curve.name)
                self.assertEqual(arith.mul(k, (curve.gx, curve.gy)),
                                 (numbers.x, numbers.y), curve.name)

    def test_own_arithmetic_matches_reference(self) -> None:
        curve = CURVES[27]
        arith = dh._Arithmetic(curve)
        g = (curve.gx, curve.gy)
        point = arith.reference_mul(0xABCDEF, g)
        rng = SeededRandom(17)
        for k in [1, 2, 15, 16, 17, curve.n - 1] + [1 + rng.randbelow(curve.n - 1)
                                                    for _ in range(4)]:
            self.assertEqual(arith.mul_base(k), tuple(map(int, arith.reference_mul(k, g))))
            self.assertEqual(arith.mul(k, point),
                             tuple(map(int, arith.reference_mul(k, point))))

    def test_exceptional_scalar_takes_the_reference_path(self) -> None:
        # For k = 2 * 16^c mod n the last addition of mul_base adds a point to itself,
        # which the mixed addition cannot do (Z becomes 0); the result must still be
        # right.
        curve = CURVES[27]
        arith = dh._Arithmetic(curve)
        k = 2 * 16 ** dh._digit_count(curve.n) % curve.n
        g = (curve.gx, curve.gy)
        self.assertEqual(arith.mul_base(k), tuple(map(int, arith.reference_mul(k, g))))

    def test_recoding(self) -> None:
        n = CURVES[27].n
        for k in (1, 2, 12345, n - 1, n // 2):
            digits = dh._recode(k, n)
            self.assertEqual(len(digits), dh._digit_count(n) + 1)
            self.assertTrue(all(d % 2 == 1 and -15 <= d <= 15 for d in digits))
            self.assertEqual(digits[-1], 1)
            self.assertEqual(sum(d * 16**i for i, d in enumerate(digits)) % n, k)


class EcpValidationTests(SynchronousTestCase):
    def _pair_and_peer(self, number: int) -> tuple[dh.DHKeyPair, bytes]:
        grp = dh.group(number)
        return grp.generate(SeededRandom(21)), grp.generate(SeededRandom(22)).public_bytes

    def test_rejects_wrong_length(self) -> None:
        for number in CURVES:
            pair, peer = self._pair_and_peer(number)
            for data in (peer[:-1], b"\x04" + peer, b""):
                error = self.assertRaises(dh.InvalidPublicValueError, pair.shared_secret, data)
                self.assertEqual(error.notify, NotifyType.PAYLOAD_MALFORMED)

    def test_rejects_off_curve_point(self) -> None:
        for number in CURVES:
            pair, peer = self._pair_and_peer(number)
            bad = peer[:-1] + bytes([peer[-1] ^ 1])
            error = self.assertRaises(dh.InvalidPublicValueError, pair.shared_secret, bad)
            self.assertEqual(error.notify, NotifyType.INVALID_KEY_INFORMATION)
            self.assertIn("not on the curve", str(error))

    def test_rejects_infinity(self) -> None:
        for number in CURVES:
            pair, _ = self._pair_and_peer(number)
            zero = bytes(pair.group.ke_length)
            error = self.assertRaises(dh.InvalidPublicValueError, pair.shared_secret, zero)
            self.assertEqual(error.notify, NotifyType.INVALID_KEY_INFORMATION)
            self.assertIn("infinity", str(error))

    def test_rejects_coordinates_not_below_p(self) -> None:
        for number, curve in CURVES.items():
            pair, peer = self._pair_and_peer(number)
            size = curve.field_bytes
            x, y = int.from_bytes(peer[:size], "big"), int.from_bytes(peer[size:], "big")
            candidates = [curve.p.to_bytes(size, "big") + peer[size:]]
            if x + curve.p < 256**size:  # x + p, y: on the curve modulo p
                candidates.append((x + curve.p).to_bytes(size, "big") + peer[size:])
            if y + curve.p < 256**size:
                candidates.append(peer[:size] + (y + curve.p).to_bytes(size, "big"))
            for data in candidates:
                error = self.assertRaises(dh.InvalidPublicValueError, pair.shared_secret, data)
                self.assertIn("not below the field prime", str(error))

    def test_accepts_valid_point(self) -> None:
        for number in CURVES:
            pair, peer = self._pair_and_peer(number)
            pair.group.check_public(peer)

    def test_private_range(self) -> None:
        for number, curve in CURVES.items():
            for value in (0, curve.n, curve.n + 1):
                self.assertRaises(ValueError, dh.group(number).from_private, value)


class BehaviourTests(SynchronousTestCase):
    def test_deterministic_with_seeded_random(self) -> None:
        for grp in dh.supported_groups():
            first = grp.generate(SeededRandom(1999)).public_bytes
            self.assertEqual(first, grp.generate(SeededRandom(1999)).public_bytes)
            self.assertNotEqual(first, grp.generate(SeededRandom(2000)).public_bytes)

    def test_system_random_ecp_pairs(self) -> None:
        # With the operating system's randomness, OpenSSL draws the ECDH private
        # values (dh module text): the pairs are fresh, valid and agree.
        for grp in dh.supported_groups():
            if grp.kind is not GroupType.ECP:
                continue
            ours, again = grp.generate(SystemRandom()), grp.generate(SystemRandom())
            peer = grp.generate(SeededRandom(7))
            self.assertNotEqual(ours.public_bytes, again.public_bytes)
            self.assertEqual(len(ours.public_bytes), grp.ke_length)
            grp.check_public(ours.public_bytes)
            secret = ours.shared_secret(peer.public_bytes)
            self.assertEqual(secret, peer.shared_secret(ours.public_bytes))
            self.assertEqual(len(secret), grp.ke_length // 2)

    def test_no_warnings(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rng = SeededRandom(3)
            for grp in dh.supported_groups():
                alice, bob = grp.generate(rng), grp.generate(rng)
                alice.shared_secret(bob.public_bytes)
                grp.check_public(bob.public_bytes)
        self.assertEqual([str(w.message) for w in caught], [])

    def test_repr_hides_the_secret(self) -> None:
        pair = dh.group(27).from_private(0x1234567)
        self.assertNotIn("1234567", repr(pair))
        self.assertNotIn(hex(0x1234567)[2:], repr(pair))
        self.assertIn("BP_224", repr(pair))

    def test_accepts_bytearray_and_memoryview(self) -> None:
        grp = dh.group(19)
        alice, bob = grp.generate(SeededRandom(4)), grp.generate(SeededRandom(5))
        expected = alice.shared_secret(bob.public_bytes)
        self.assertEqual(alice.shared_secret(bytearray(bob.public_bytes)), expected)
        self.assertEqual(alice.shared_secret(memoryview(bob.public_bytes)), expected)
