"""Tests of isakmpd.config.defaults: the generated sections, enumerated independently."""

import itertools

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config.store import OriginKind, Store, load

# Written out here again (not imported) so the test checks the generator.
GROUPS = {"GRP1": "MODP_768", "GRP2": "MODP_1024", "GRP5": "MODP_1536",
          "GRP14": "MODP_2048", "GRP15": "MODP_3072", "GRP16": "MODP_4096",
          "GRP17": "MODP_6144", "GRP18": "MODP_8192", "GRP19": "ECP_256", "GRP20": "ECP_384",
          "GRP21": "ECP_521", "GRP26": "ECP_224", "GRP27": "BP_224", "GRP28": "BP_256",
          "GRP29": "BP_384", "GRP30": "BP_512"}
MM_CIPHERS = {"BLF": ("BLOWFISH_CBC", "128,96:192"), "3DES": ("3DES_CBC", None),
              "CAST": ("CAST_CBC", None), "AES": ("AES_CBC", "128,128:256"),
              "AES-128": ("AES_CBC", "128,128:128"), "AES-192": ("AES_CBC", "192,192:192"),
              "AES-256": ("AES_CBC", "256,256:256")}
MM_HASHES = {"MD5": "MD5", "SHA": "SHA", "SHA2-256": "SHA2_256", "SHA2-384": "SHA2_384",
             "SHA2-512": "SHA2_512"}
MM_AUTHS = {None: "PRE_SHARED", "DSS": "DSS", "RSA_SIG": "RSA_SIG"}
QM_CIPHERS = {"3DES": ("3DES", None), "CAST": ("CAST", None),
              "BLF": ("BLOWFISH", "128,96:192"), "AES": ("AES", "128,128:256"),
              "AESCTR": ("AES_CTR", None), "NULL": ("NULL", None)}
for bits in (128, 192, 256):
    QM_CIPHERS[f"AES-{bits}"] = ("AES", f"{bits},{bits}:{bits}")
    QM_CIPHERS[f"AESCTR-{bits}"] = ("AES_CTR", f"{bits},{bits}:{bits}")
    QM_CIPHERS[f"AESGCM-{bits}"] = ("AES_GCM_16", f"{bits},{bits}:{bits}")
    QM_CIPHERS[f"AESGMAC-{bits}"] = ("AES_GMAC", f"{bits},{bits}:{bits}")
QM_HASHES = {"MD5": "MD5", "SHA": "SHA", "RIPEMD": "RIPEMD", "SHA2-256": "SHA2_256",
             "SHA2-384": "SHA2_384", "SHA2-512": "SHA2_512"}
PFS = [(None, None), ("PFS", "MODP_1024")] + [(f"PFS-{g}", d) for g, d in GROUPS.items()]


def join(*parts: str | None) -> str:
    return "-".join(p for p in parts if p)


_STORE: list[Store] = []


class GeneratedTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not _STORE:
            _STORE.append(load("", "t.conf")[0])
        self.store = _STORE[0]

    def assertSection(self, name: str, expected: dict[str, str | None]) -> None:
        self.assertTrue(self.store.has(name), name)
        got = {b.tag.upper(): b.value for b in self.store.tags(name)}
        for tag, value in expected.items():
            self.assertEqual(got.get(tag.upper()), value, f"[{name}]:{tag}")

    def test_main_mode_grammar(self) -> None:
        count = 0
        groups = [(None, "MODP_1024"), *GROUPS.items()]
        for (cipher, (enc, keylen)), (hpart, hname), (gpart, group), (apart, auth) in \
                itertools.product(MM_CIPHERS.items(), MM_HASHES.items(), groups,
                                  MM_AUTHS.items()):
            name = join(cipher, hpart, gpart, apart)
            self.assertSection(name, {"ENCRYPTION_ALGORITHM": enc, "KEY_LENGTH": keylen,
                                      "HASH_ALGORITHM": hname, "AUTHENTICATION_METHOD": auth,
                                      "GROUP_DESCRIPTION": group, "Life": "LIFE_MAIN_MODE"})
            count += 1
        self.assertEqual(count, 7 * 5 * 17 * 3)

    def test_group_25_not_generated(self) -> None:
        self.assertFalse(self.store.has("AES-SHA-GRP25"))
        self.assertFalse(self.store.has("QM-ESP-AES-SHA-PFS-GRP25-SUITE"))

    def check_suite(self, base: str, proto: str, xf: dict[str, str | None]) -> None:
        self.assertSection(f"{base}-SUITE", {"Protocols": base})
        self.assertSection(base, {"PROTOCOL_ID": proto, "Transforms": f"{base}-XF"})
        self.assertSection(f"{base}-XF", {**xf, "Life": "LIFE_QUICK_MODE"})

    def test_quick_mode_esp_grammar(self) -> None:
        count = 0
        for (trp, mode), (cipher, (tid, keylen)), (hpart, hname), (pfs, group) in \
                itertools.product([(None, "TUNNEL"), ("TRP", "TRANSPORT")],
                                  QM_CIPHERS.items(),
                                  [(None, None), *QM_HASHES.items()], PFS):
            aead = cipher.startswith(("AESGCM", "AESGMAC"))
            base = join("QM-ESP", trp, cipher, hpart, pfs)
            if aead and hpart:
                self.assertFalse(self.store.has(f"{base}-SUITE"), base)
                continue
            self.check_suite(base, "IPSEC_ESP", {
                "TRANSFORM_ID": tid, "ENCAPSULATION_MODE": mode, "KEY_LENGTH": keylen,
                "AUTHENTICATION_ALGORITHM": f"HMAC_{hname}" if hname else None,
                # DESIGN.md §4: -PFS always carries its group, hash or not.
                "GROUP_DESCRIPTION": group})
            count += 1
        self.assertEqual(count, 2 * (12 * 7 + 6) * 18)

    def test_quick_mode_ah_grammar(self) -> None:
        for (trp, mode), (hpart, hname), (pfs, group) in itertools.product(
                [(None, "TUNNEL"), ("TRP", "TRANSPORT")], QM_HASHES.items(), PFS):
            base = join("QM-AH", trp, hpart, pfs)
            self.check_suite(base, "IPSEC_AH", {
                "TRANSFORM_ID": hname, "ENCAPSULATION_MODE": mode, "KEY_LENGTH": None,
                "AUTHENTICATION_ALGORITHM": f"HMAC_{hname}", "GROUP_DESCRIPTION": group})
        self.assertFalse(self.store.has("QM-AH-SUITE"))

    def test_gcm_pfs_suite_has_group(self) -> None:
        self.assertEqual(self.store.get_str("QM-ESP-AESGCM-256-PFS-XF", "GROUP_DESCRIPTION"),
                         "MODP_1024")

    def test_fixed_sections(self) -> None:
        self.assertSection("General", {"Retransmits": "3", "Exchange-max-time": "120",
                                       "Check-interval": "60", "Use-Keynote": "yes",
                                       "Policy-file": "/etc/isakmpd/isakmpd.policy",
                                       "Default-phase-2-suites": "QM-ESP-3DES-SHA-PFS-SUITE"})
        self.assertSection("X509-certificates", {"CA-directory": "/etc/isakmpd/ca/",
                                                 "Private-key":
                                                 "/etc/isakmpd/private/local.key"})
        self.assertSection("KeyNote", {"Credential-directory": "/etc/isakmpd/keynote/"})
        self.assertSection("LIFE_MAIN_MODE", {"LIFE_TYPE": "SECONDS",
                                              "LIFE_DURATION": "3600,60:86400"})
        self.assertSection("LIFE_QUICK_MODE", {"LIFE_TYPE": "SECONDS",
                                               "LIFE_DURATION": "1200,60:86400"})
        self.assertSection("Phase 1", {"Default": "Default-phase-1"})
        self.assertSection("Default-phase-1", {"Phase": "1", "ID": None,
                                               "Configuration":
                                               "Default-phase-1-configuration"})
        self.assertSection("Default-phase-1-configuration",
                           {"EXCHANGE_TYPE": "ID_PROT", "Transforms": "3DES-SHA-RSA_SIG"})


class UserOverrideTests(SynchronousTestCase):
    def test_lifetimes_and_default_id_follow_general(self) -> None:
        store, _ = load("[General]\nDefault-phase-1-lifetime=600\n"
                        "Default-phase-2-lifetime=300,60:600\nDefault-phase-1-ID=me\n", "t")
        self.assertEqual(store.get_str("LIFE_MAIN_MODE", "LIFE_DURATION"), "600")
        self.assertEqual(store.get_str("LIFE_QUICK_MODE", "LIFE_DURATION"), "300,60:600")
        self.assertEqual(store.get_str("Default-phase-1", "ID"), "me")

    def test_user_tags_override_tag_by_tag(self) -> None:
        store, _ = load("[aes-sha]\nLife=MY_LIFE\n[Phase 1]\nDefault=mine\n", "t")
        self.assertEqual(store.get_str("AES-SHA", "Life"), "MY_LIFE")
        self.assertEqual(store.binding("AES-SHA", "Life").origin.kind, OriginKind.FILE)
        self.assertEqual(store.get_str("AES-SHA", "ENCRYPTION_ALGORITHM"), "AES_CBC")
        self.assertEqual(store.get_section_names()[0], "aes-sha")
        self.assertEqual(store.get_str("Phase 1", "Default"), "mine")
