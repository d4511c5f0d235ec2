"""Tests of isakmpd.wire.constants: numbers, isakmpd's labels, and the vendor IDs."""

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.wire import constants as c


class LabelTests(SynchronousTestCase):
    def test_digit_leading_names_use_isakmpd_spelling(self) -> None:
        self.assertEqual(str(c.EncryptionAlgorithm.TRIPLE_DES_CBC), "3DES_CBC")
        self.assertEqual(c.EspTransform.TRIPLE_DES.label, "3DES")
        self.assertEqual(c.EspTransform.TRIPLE_IDEA.label, "3IDEA")

    def test_from_label_is_case_insensitive(self) -> None:
        self.assertIs(c.EncryptionAlgorithm.from_label("3des_cbc"),
                      c.EncryptionAlgorithm.TRIPLE_DES_CBC)
        self.assertIs(c.ExchangeType.from_label("quick_mode"), c.ExchangeType.QUICK_MODE)
        self.assertIs(c.GroupDescription.from_label(" Modp_2048 "),
                      c.GroupDescription.MODP_2048)

    def test_from_label_unknown_names_the_class(self) -> None:
        with self.assertRaises(KeyError) as caught:
            c.HashAlgorithm.from_label("SHA3")
        self.assertIn("HashAlgorithm", str(caught.exception))
        self.assertIn("SHA3", str(caught.exception))

    def test_describe_unknown_value(self) -> None:
        self.assertEqual(c.NotifyType.describe(14), "NO_PROPOSAL_CHOSEN")
        self.assertEqual(c.NotifyType.describe(9999), "unknown (9999)")


class NumberTests(SynchronousTestCase):
    """Spot checks against the RFC tables; a typo here would break interop."""

    def test_rfc2408_numbers(self) -> None:
        self.assertEqual(c.PayloadType.NONCE, 10)
        self.assertEqual(c.PayloadType.ATTRIBUTE, 14)
        self.assertEqual(c.NotifyType.UNEQUAL_PAYLOAD_LENGTHS, 30)
        self.assertEqual(c.NotifyType.INVALID_HASH_INFORMATION, 23)

    def test_ipsec_doi_numbers(self) -> None:
        self.assertEqual(c.ExchangeType.QUICK_MODE, 32)
        self.assertEqual(c.NotifyType.INITIAL_CONTACT, 24578)
        self.assertEqual(c.EspTransform.AES_GCM_16, 20)
        self.assertEqual(c.EspTransform.AES_GMAC, 23)
        self.assertEqual(c.EncapsulationMode.UDP_ENCAP_TRANSPORT_DRAFT, 61444)

    def test_nat_t_and_dpd(self) -> None:
        self.assertEqual(c.PayloadType.NAT_D, 20)
        self.assertEqual(c.PayloadType.NAT_OA_DRAFT, 131)
        self.assertEqual(c.NotifyType.R_U_THERE, 36136)
        self.assertEqual(c.NotifyType.R_U_THERE_ACK, 36137)

    def test_group_numbers(self) -> None:
        self.assertEqual(c.GroupDescription.MODP_2048, 14)
        self.assertEqual(c.GroupDescription.ECP_224, 26)
        self.assertEqual(c.GroupDescription.BP_512, 30)


class VendorIdTests(SynchronousTestCase):
    def test_known_values(self) -> None:
        # Prefixes and suffixes as listed in the inventory §4.8 and §4.12.
        draft02, draft03, rfc = c.NAT_T_VIDS
        self.assertTrue(draft02.hex().startswith("90cb8091") and draft02.hex().endswith("7b1f"))
        self.assertTrue(draft03.hex().startswith("7d9419a6") and draft03.hex().endswith("9d56"))
        self.assertEqual(rfc.hex(), "4a131c81070358455c5728f20e95452f")
        self.assertEqual(c.VID_OPENBSD.hex(), "9826c552791aa1800ca6ff33aaf1e83b")
        self.assertEqual(len(c.VID_DPD), 16)


class MemberTests(SynchronousTestCase):
    """constants.member: cls(value) through the value table, same answers."""

    def test_same_as_calling_the_enum(self) -> None:
        from isakmpd.wire.constants import EncapsulationMode, ProtocolId, member
        for value in (1, 2, 3, 4, 61443, 61444):
            self.assertIs(member(EncapsulationMode, value), EncapsulationMode(value))
        self.assertIs(member(ProtocolId, ProtocolId.IPSEC_ESP), ProtocolId.IPSEC_ESP)
        for bad in (0, 99, "3", None, [1]):
            self.assertRaises(ValueError, member, ProtocolId, bad)
