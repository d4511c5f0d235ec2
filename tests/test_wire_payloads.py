"""Tests of isakmpd.wire.payloads: round trips of every payload and the errors of bad bodies.

``sample_messages()`` builds one message set that carries every payload type;
the message, fuzz and pcap tests reuse it.
"""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.wire import constants as c
from isakmpd.wire.attributes import Attribute
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.message import Message
from isakmpd.wire.payloads import (
    AttributePayload,
    CertPayload,
    CertRequestPayload,
    DeletePayload,
    HashPayload,
    IdPayload,
    KeyExchangePayload,
    NatDPayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    ProposalPayload,
    RawPayload,
    SaPayload,
    SignaturePayload,
    TransformPayload,
    VendorPayload,
    decode_payload_body,
    format_id_data,
)

# A self-signed Ed25519 certificate for CN=ca.example.org (private key bytes
# 00..1f, serial 1, valid 2024-01-01 for 3650 days), made with `cryptography`;
# Ed25519 signatures are deterministic, so this is reproducible. tshark parses
# CERT and CR contents as DER, so they must be real.
CERT_DER = bytes.fromhex(
    "3081de308191a003020102020101300506032b657030193117301506035504030c0e63612e"
    "6578616d706c652e6f7267301e170d3234303130313030303030305a170d33333132323930"
    "30303030305a30193117301506035504030c0e63612e6578616d706c652e6f7267302a3005"
    "06032b657003210003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc866412"
    "5531b8300506032b65700341007f3cbb76ba9989de2a505ea5e566eb1d6fe8d3a5cca19c43"
    "39a8831480c3b5d4456f3f23a0aa511bc33224f37385279be31a2b6df84f994683ff8696b3"
    "e04306")
CA_NAME_DER = bytes.fromhex(
    "30193117301506035504030c0e63612e6578616d706c652e6f7267")
ICOOKIE = bytes.fromhex("0123456789abcdef")
RCOOKIE = bytes.fromhex("fedcba9876543210")
PT = c.PayloadType


def ike_sa() -> SaPayload:
    """A phase 1 SA: one ISAKMP proposal, two transforms, TV and TLV attributes."""
    first = TransformPayload(1, c.IsakmpTransform.KEY_IKE, [
        Attribute(c.IkeAttr.ENCRYPTION_ALGORITHM, c.EncryptionAlgorithm.AES_CBC),
        Attribute(c.IkeAttr.KEY_LENGTH, 256),
        Attribute(c.IkeAttr.HASH_ALGORITHM, c.HashAlgorithm.SHA2_256),
        Attribute(c.IkeAttr.AUTHENTICATION_METHOD, c.AuthMethod.PRE_SHARED),
        Attribute(c.IkeAttr.GROUP_DESCRIPTION, c.GroupDescription.MODP_2048),
        Attribute(c.IkeAttr.LIFE_TYPE, c.LifeType.SECONDS),
        Attribute(c.IkeAttr.LIFE_DURATION, 86400),        # > 0xffff: a 4-byte TLV
    ])
    second = TransformPayload(2, c.IsakmpTransform.KEY_IKE, [
        Attribute(c.IkeAttr.ENCRYPTION_ALGORITHM, c.EncryptionAlgorithm.TRIPLE_DES_CBC),
        Attribute(c.IkeAttr.HASH_ALGORITHM, c.HashAlgorithm.SHA),
        Attribute(c.IkeAttr.AUTHENTICATION_METHOD, c.AuthMethod.RSA_SIG),
        Attribute(c.IkeAttr.GROUP_DESCRIPTION, c.GroupDescription.MODP_1024),
        Attribute(c.IkeAttr.LIFE_TYPE, c.LifeType.SECONDS),
        Attribute(c.IkeAttr.LIFE_DURATION, 3600),
    ])
    return SaPayload(c.Doi.IPSEC, c.Situation.IDENTITY_ONLY,
                     [ProposalPayload(1, c.ProtocolId.ISAKMP, b"", [first, second])])


def esp_sa() -> SaPayload:
    """A Quick Mode SA: ESP with a 4-byte SPI, plus an AH proposal of the same number."""
    esp = ProposalPayload(1, c.ProtocolId.IPSEC_ESP, bytes.fromhex("c0ffee01"), [
        TransformPayload(1, c.EspTransform.AES, [
            Attribute(c.IpsecAttr.SA_LIFE_TYPE, c.LifeType.SECONDS),
            Attribute(c.IpsecAttr.SA_LIFE_DURATION, 1200),
            Attribute(c.IpsecAttr.SA_LIFE_TYPE, c.LifeType.KILOBYTES),
            Attribute(c.IpsecAttr.SA_LIFE_DURATION, 1 << 20),   # 4-byte TLV
            Attribute(c.IpsecAttr.ENCAPSULATION_MODE, c.EncapsulationMode.UDP_ENCAP_TUNNEL),
            Attribute(c.IpsecAttr.AUTHENTICATION_ALGORITHM, c.AuthAlgorithm.HMAC_SHA2_256),
            Attribute(c.IpsecAttr.KEY_LENGTH, 128),
            Attribute(c.IpsecAttr.GROUP_DESCRIPTION, c.GroupDescription.MODP_2048),
        ]),
        TransformPayload(2, c.EspTransform.TRIPLE_DES, [
            Attribute(c.IpsecAttr.ENCAPSULATION_MODE, c.EncapsulationMode.TUNNEL),
            Attribute(c.IpsecAttr.AUTHENTICATION_ALGORITHM, c.AuthAlgorithm.HMAC_SHA),
        ]),
    ])
    ah = ProposalPayload(2, c.ProtocolId.IPSEC_AH, bytes.fromhex("c0ffee02"), [
        TransformPayload(1, c.AhTransform.SHA, [
            Attribute(c.IpsecAttr.AUTHENTICATION_ALGORITHM, c.AuthAlgorithm.HMAC_SHA),
            Attribute(c.IpsecAttr.ENCAPSULATION_MODE, c.EncapsulationMode.TRANSPORT),
        ]),
    ])
    return SaPayload(c.Doi.IPSEC, c.Situation.IDENTITY_ONLY, [esp, ah])


def sample_messages() -> list[tuple[str, Message]]:
    """Messages that together carry every payload type we encode."""
    hash20 = bytes(range(20))
    cert = CERT_DER
    dn = CA_NAME_DER
    return [
        ("main mode 1: SA and VIDs", Message(
            ICOOKIE, bytes(8), c.ExchangeType.ID_PROT,
            [ike_sa(), VendorPayload(c.VID_NAT_T_RFC3947), VendorPayload(c.VID_DPD),
             VendorPayload(c.VID_OPENBSD)])),
        ("main mode 3: KE, NONCE, NAT-D", Message(
            ICOOKIE, RCOOKIE, c.ExchangeType.ID_PROT,
            [KeyExchangePayload(bytes(range(256))), NoncePayload(b"n" * 16),
             NatDPayload(hash20), NatDPayload(hash20[::-1])])),
        ("main mode 5: ID, HASH, CERT, CR, SIG, VID", Message(
            ICOOKIE, RCOOKIE, c.ExchangeType.ID_PROT,
            [IdPayload.from_address("192.0.2.1", 17, 500), HashPayload(hash20),
             CertPayload(c.CertEncoding.X509_SIG, cert),
             CertRequestPayload(c.CertEncoding.X509_SIG, dn),
             SignaturePayload(b"s" * 128), VendorPayload(b"private vendor")],
            flags=c.Flag.ENC)),
        ("quick mode 1: HASH, SA(ESP), NONCE, KE, ID, ID, NAT-OA", Message(
            ICOOKIE, RCOOKIE, c.ExchangeType.QUICK_MODE,
            [HashPayload(hash20), esp_sa(), NoncePayload(b"q" * 16),
             KeyExchangePayload(b"k" * 128),
             IdPayload.from_network("192.0.2.0/24"),
             IdPayload.from_network("198.51.100.0/24", 6, 80),
             NatOaPayload.from_address("192.0.2.7"),
             NatOaPayload.from_address("203.0.113.9")],
            flags=c.Flag.ENC, message_id=0x1234abcd)),
        ("informational: N and D", Message(
            ICOOKIE, RCOOKIE, c.ExchangeType.INFO,
            [HashPayload(hash20),
             NotifyPayload(c.NotifyType.INITIAL_CONTACT, c.ProtocolId.ISAKMP,
                           ICOOKIE + RCOOKIE),
             NotifyPayload(c.NotifyType.R_U_THERE, c.ProtocolId.ISAKMP, ICOOKIE + RCOOKIE,
                           struct.pack("!I", 7)),
             DeletePayload(c.ProtocolId.IPSEC_ESP, 4,
                           [bytes.fromhex("c0ffee01"), bytes.fromhex("c0ffee02")])],
            flags=c.Flag.ENC, message_id=0xdeadbeef)),
        ("transaction: ATTRIBUTE", Message(
            ICOOKIE, RCOOKIE, c.ExchangeType.TRANSACTION,
            [HashPayload(hash20),
             AttributePayload(c.CfgMessageType.REPLY, 0x4242, [
                 Attribute(c.CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 1, 2, 3])),
                 Attribute(c.CfgAttr.INTERNAL_IP4_NETMASK, bytes([255, 255, 255, 0])),
                 Attribute(c.CfgAttr.APPLICATION_VERSION, b"isakmpd"),
                 Attribute(c.CfgAttr.XAUTH_TYPE, 0),
             ])],
            flags=c.Flag.ENC, message_id=0x01020304)),
        ("aggressive mode 1 over NAT-T draft, FQDN ID, IPv6 ID", Message(
            ICOOKIE, bytes(8), c.ExchangeType.AGGRESSIVE,
            [ike_sa(), KeyExchangePayload(b"g" * 128), NoncePayload(b"a" * 32),
             IdPayload(c.IdType.FQDN, b"east.example.org"),
             IdPayload.from_address("2001:db8::1"),
             NatDPayload(hash20, draft=True), NatOaPayload.from_address("2001:db8::7",
                                                                       draft=True)])),
        ("informational: delete ISAKMP SA", Message(
            ICOOKIE, RCOOKIE, c.ExchangeType.INFO,
            [HashPayload(hash20),
             DeletePayload(c.ProtocolId.ISAKMP, 16, [ICOOKIE + RCOOKIE])],
            flags=c.Flag.ENC, message_id=0x00000001)),
    ]


def every_payload() -> list[Payload]:
    """One of each payload class, and a private one."""
    found: dict[int, Payload] = {}
    for _name, message in sample_messages():
        for payload in message.payloads:
            found.setdefault(payload.payload_type, payload)
    found[200] = RawPayload(200, b"private payload body")
    return list(found.values())


def decode(payload_type: int, body: bytes, offset: int = 28) -> Payload:
    return decode_payload_body(payload_type, body, offset)


class RoundTripTests(SynchronousTestCase):
    def test_every_payload_type_is_covered(self) -> None:
        types = {p.payload_type for p in every_payload()}
        wanted = {PT.SA, PT.KEY_EXCH, PT.ID, PT.CERT, PT.CERT_REQ, PT.HASH, PT.SIG,
                  PT.NONCE, PT.NOTIFY, PT.DELETE, PT.VENDOR, PT.ATTRIBUTE, PT.NAT_D,
                  PT.NAT_OA, PT.NAT_D_DRAFT, PT.NAT_OA_DRAFT, 200}
        self.assertEqual(types, wanted)

    def test_echoed_transform_keeps_the_received_bytes(self) -> None:
        # The echo sends the received bytes (here a lifetime as a 4-byte TLV although
        # it fits a TV) without encoding the attributes again.
        body = (struct.pack("!BBH", 1, c.EspTransform.AES, 0)
                + struct.pack("!HH", 0x8000 | c.IpsecAttr.SA_LIFE_TYPE, 1)
                + struct.pack("!HHI", c.IpsecAttr.SA_LIFE_DURATION, 4, 3600))
        received = TransformPayload.decode_body(body, 40, c.ProtocolId.IPSEC_ESP)
        echo = received.echo()
        self.assertEqual(echo.verbatim, body)
        self.assertEqual(echo.encode_body(), body)
        self.assertEqual(echo, received)
        # A transform built here has nothing to echo but its fields.
        built = TransformPayload(1, c.EspTransform.AES, [Attribute(c.IpsecAttr.SA_LIFE_TYPE, 1)])
        self.assertEqual(built.echo().encode_body(), built.encode_body())

    def test_round_trip(self) -> None:
        for payload in every_payload():
            body = payload.encode_body()
            decoded = decode(payload.payload_type, body, 100)
            self.assertEqual(decoded, payload, payload.label)
            self.assertIs(type(decoded), type(payload))
            self.assertEqual(decoded.raw, body)
            self.assertEqual(decoded.offset, 100)
            self.assertEqual(decoded.encode_body(), body)
            self.assertEqual(decoded.body_bytes(), body)
            self.assertTrue(decoded.describe())

    def test_generic_header(self) -> None:
        payload = NoncePayload(b"abc")
        self.assertEqual(payload.encode(PT.HASH), bytes([8, 0, 0, 7]) + b"abc")
        self.assertEqual(payload.encode(), bytes([0, 0, 0, 7]) + b"abc")

    def test_decoded_fields_use_enums(self) -> None:
        sa = decode(PT.SA, esp_sa().encode_body())
        assert isinstance(sa, SaPayload)
        proposal = sa.proposals[0]
        self.assertIs(proposal.protocol_id, c.ProtocolId.IPSEC_ESP)
        self.assertIs(proposal.transforms[0].transform_id, c.EspTransform.AES)
        attribute = proposal.transforms[0].attributes[0]
        self.assertIs(attribute.type, c.IpsecAttr.SA_LIFE_TYPE)
        self.assertIs(sa.proposals[1].transforms[0].transform_id, c.AhTransform.SHA)
        ike = decode(PT.SA, ike_sa().encode_body())
        assert isinstance(ike, SaPayload)
        self.assertIs(ike.proposals[0].transforms[0].attributes[0].type,
                      c.IkeAttr.ENCRYPTION_ALGORITHM)
        lifetime = ike.proposals[0].transforms[0].attribute(c.IkeAttr.LIFE_DURATION)
        assert lifetime is not None
        self.assertEqual(lifetime.value, (86400).to_bytes(4, "big"))
        self.assertEqual(lifetime.as_int(), 86400)

    def test_sa_raw_body_is_exact_for_hash(self) -> None:
        # HASH_I covers SAi_b exactly as sent; a non-canonical but valid body
        # (an attribute as a 2-byte TLV) must be kept byte for byte.
        body = (struct.pack("!II", 1, 1)
                + struct.pack("!BBHBBBB", 0, 0, 8 + 8 + 6, 1, 1, 0, 1)
                + struct.pack("!BBHBBH", 0, 0, 8 + 6, 1, 1, 0)
                + struct.pack("!HH", 11, 2) + b"\x00\x01")
        sa = decode(PT.SA, body)
        self.assertEqual(sa.raw, body)
        self.assertEqual(sa.body_bytes(), body)
        self.assertEqual(sa.encode_body(), body)

    def test_isakmp_doi_has_no_situation(self) -> None:
        sa = SaPayload(c.Doi.ISAKMP, None, ike_sa().proposals)
        body = sa.encode_body()
        self.assertEqual(body[:4], bytes(4))
        self.assertEqual(body[4], 0)      # first proposal's next payload
        self.assertEqual(decode(PT.SA, body), sa)

    def test_unknown_values_are_kept(self) -> None:
        notify = NotifyPayload(40501, c.ProtocolId.ISAKMP, b"", b"\x01")
        decoded = decode(PT.NOTIFY, notify.encode_body())
        assert isinstance(decoded, NotifyPayload)
        self.assertEqual(decoded.notify_type, 40501)
        transform = ProposalPayload(1, c.ProtocolId.IPSEC_ESP, b"1234",
                                    [TransformPayload(1, 240, [Attribute(16000, 5)])])
        self.assertEqual(ProposalPayload.decode_body(transform.encode_body(), 0), transform)

    def test_protocol_zero_notify(self) -> None:
        notify = NotifyPayload(c.NotifyType.NO_PROPOSAL_CHOSEN, 0, b"", doi=c.Doi.ISAKMP)
        self.assertEqual(decode(PT.NOTIFY, notify.encode_body()), notify)

    def test_id_helpers_and_formatting(self) -> None:
        ident = IdPayload.from_network("2001:db8::/32")
        self.assertEqual(ident.id_type, c.IdType.IPV6_ADDR_SUBNET)
        self.assertEqual(len(ident.data), 32)
        self.assertEqual(format_id_data(c.IdType.IPV4_ADDR_SUBNET,
                                        bytes([192, 0, 2, 0, 255, 255, 255, 0])),
                         "192.0.2.0/255.255.255.0")
        self.assertEqual(format_id_data(c.IdType.FQDN, b"a.example"), "a.example")
        self.assertEqual(format_id_data(c.IdType.KEY_ID, b"\x01\x02"), "0102")
        self.assertIn("192.0.2.1", IdPayload.from_address("192.0.2.1").describe())

    def test_describe_names_values(self) -> None:
        text = ike_sa().describe()
        self.assertIn("AES_CBC", text)
        self.assertIn("LIFE_DURATION=86400", text)
        self.assertIn("MODP_2048", text)

    def test_encode_refuses_impossible_values(self) -> None:
        with self.assertRaises(ValueError):
            DeletePayload(c.ProtocolId.IPSEC_ESP, 4, [b"123"]).encode_body()
        with self.assertRaises(ValueError):
            IdPayload(c.IdType.FQDN, b"x", port=70000).encode_body()
        with self.assertRaises(ValueError):
            ProposalPayload(1, c.ProtocolId.ISAKMP, b"", []).encode_body()
        with self.assertRaises(ValueError):
            SaPayload(proposals=[]).encode_body()
        with self.assertRaises(ValueError):
            NoncePayload(b"x" * 70000).encode()


class DecodeErrorTests(SynchronousTestCase):
    """Each malformation gives the RFC's notify and the datagram offset of the fault."""

    def check(self, payload_type: int, body: bytes, notify: c.NotifyType, offset: int,
              silent: bool = False) -> DecodeError:
        # The payload's generic header is at 40, so its body starts at 44.
        with self.assertRaises(DecodeError) as caught:
            decode(payload_type, body, 40)
        error = caught.exception
        self.assertEqual((error.notify, error.offset), (notify, offset), str(error))
        self.assertEqual(error.silent, silent)
        self.assertIn(f"offset {offset}", str(error))
        return error

    def sa_body(self) -> bytes:
        return ike_sa().encode_body()

    def test_sa_too_short(self) -> None:
        self.check(PT.SA, b"\x00\x00\x00", c.NotifyType.PAYLOAD_MALFORMED, 40)
        self.check(PT.SA, b"\x00\x00\x00\x01\x00", c.NotifyType.PAYLOAD_MALFORMED, 40)

    def test_sa_doi(self) -> None:
        body = struct.pack("!I", 7) + self.sa_body()[4:]
        error = self.check(PT.SA, body, c.NotifyType.DOI_NOT_SUPPORTED, 44)
        self.assertIn("DOI 7", str(error))

    def test_sa_situation(self) -> None:
        body = self.sa_body()[:4] + struct.pack("!I", 3) + self.sa_body()[8:]
        self.check(PT.SA, body, c.NotifyType.SITUATION_NOT_SUPPORTED, 48)

    def test_sa_without_proposals(self) -> None:
        self.check(PT.SA, self.sa_body()[:8], c.NotifyType.BAD_PROPOSAL_SYNTAX, 52)

    def test_proposal_protocol(self) -> None:
        body = bytearray(self.sa_body())
        body[8 + 5] = 9
        self.check(PT.SA, bytes(body), c.NotifyType.INVALID_PROTOCOL_ID, 57)

    def test_proposal_spi_size(self) -> None:
        body = bytearray(esp_sa().encode_body())
        body[8 + 6] = 3
        self.check(PT.SA, bytes(body), c.NotifyType.INVALID_SPI, 58)

    def test_proposal_length_overruns(self) -> None:
        body = bytearray(self.sa_body())
        body[8 + 2:8 + 4] = struct.pack("!H", 2000)
        self.check(PT.SA, bytes(body), c.NotifyType.BAD_PROPOSAL_SYNTAX, 54)

    def test_proposal_transform_count(self) -> None:
        body = bytearray(self.sa_body())
        body[8 + 7] = 3
        error = self.check(PT.SA, bytes(body), c.NotifyType.BAD_PROPOSAL_SYNTAX, 59)
        self.assertIn("announces 3 transforms but carries 2", str(error))

    def test_proposal_reserved(self) -> None:
        body = bytearray(self.sa_body())
        body[8 + 1] = 1
        self.check(PT.SA, bytes(body), c.NotifyType.PAYLOAD_MALFORMED, 53)

    def test_proposal_next_payload(self) -> None:
        body = bytearray(self.sa_body())
        body[8] = PT.TRANSFORM
        self.check(PT.SA, bytes(body), c.NotifyType.BAD_PROPOSAL_SYNTAX, 52)

    def test_trailing_bytes_after_last_proposal(self) -> None:
        self.check(PT.SA, self.sa_body() + b"\x00" * 4, c.NotifyType.BAD_PROPOSAL_SYNTAX,
                   44 + len(self.sa_body()))

    def test_proposal_numbers_must_not_decrease(self) -> None:
        sa = esp_sa()
        sa.proposals[0].number, sa.proposals[1].number = 2, 1
        second = 44 + 8 + len(sa.proposals[0].encode())
        self.check(PT.SA, sa.encode_body(), c.NotifyType.BAD_PROPOSAL_SYNTAX, second + 4)

    def test_transform_numbers_must_increase(self) -> None:
        sa = ike_sa()
        sa.proposals[0].transforms[1].number = 1
        second = 44 + 8 + 8 + len(sa.proposals[0].transforms[0].encode())
        self.check(PT.SA, sa.encode_body(), c.NotifyType.BAD_PROPOSAL_SYNTAX, second + 4)

    def test_transform_reserved(self) -> None:
        body = bytearray(self.sa_body())
        body[8 + 8 + 6] = 1
        self.check(PT.SA, bytes(body), c.NotifyType.PAYLOAD_MALFORMED, 66)

    def test_transform_attribute_truncated(self) -> None:
        # Cut the transform's last attribute short, fixing up every length.
        sa = ike_sa()
        transform = sa.proposals[0].transforms[1]
        cut = transform.encode_body()[:-2]
        body = bytearray(self.sa_body())
        end = 8 + 8 + len(sa.proposals[0].transforms[0].encode())
        body[end + 2:end + 4] = struct.pack("!H", len(cut) + 4)
        del body[end + 4 + len(cut):end + 4 + len(cut) + 2]
        body[8 + 2:8 + 4] = struct.pack("!H", len(body) - 8)
        attribute_at = 44 + end + 4 + len(cut) - 2
        self.check(PT.SA, bytes(body), c.NotifyType.ATTRIBUTES_NOT_SUPPORTED, attribute_at)

    def test_id_type(self) -> None:
        self.check(PT.ID, bytes([99, 0, 0, 0]) + b"x", c.NotifyType.INVALID_ID_INFORMATION, 44)

    def test_id_address_size(self) -> None:
        error = self.check(PT.ID, bytes([1, 0, 0, 0, 192, 0, 2]),
                           c.NotifyType.INVALID_ID_INFORMATION, 48)
        self.assertIn("IPV4_ADDR data is 3 bytes, must be 4", str(error))
        self.check(PT.ID, bytes([6, 0, 0, 0]) + bytes(16),
                   c.NotifyType.INVALID_ID_INFORMATION, 48)

    def test_id_empty(self) -> None:
        self.check(PT.ID, bytes([2, 0, 0, 0]), c.NotifyType.INVALID_ID_INFORMATION, 48)
        self.check(PT.ID, bytes([2, 0, 0]), c.NotifyType.PAYLOAD_MALFORMED, 40)

    def test_cert_encoding(self) -> None:
        self.check(PT.CERT, bytes([12]) + b"cert", c.NotifyType.INVALID_CERT_ENCODING, 44)
        self.check(PT.CERT, b"", c.NotifyType.PAYLOAD_MALFORMED, 40)
        self.check(PT.CERT_REQ, bytes([200]), c.NotifyType.INVALID_CERT_ENCODING, 44)
        self.assertEqual(decode(PT.CERT, bytes([201]) + b"x"), CertPayload(201, b"x"))

    def test_notify_errors(self) -> None:
        good = NotifyPayload(c.NotifyType.INITIAL_CONTACT, c.ProtocolId.ISAKMP,
                             ICOOKIE + RCOOKIE).encode_body()
        self.check(PT.NOTIFY, good[:7], c.NotifyType.PAYLOAD_MALFORMED, 40)
        self.check(PT.NOTIFY, good[:-1], c.NotifyType.PAYLOAD_MALFORMED, 49)
        self.check(PT.NOTIFY, struct.pack("!I", 2) + good[4:], c.NotifyType.DOI_NOT_SUPPORTED,
                   44, silent=True)
        self.check(PT.NOTIFY, good[:4] + b"\x07" + good[5:], c.NotifyType.INVALID_PROTOCOL_ID,
                   48, silent=True)

    def test_delete_errors(self) -> None:
        good = DeletePayload(c.ProtocolId.IPSEC_ESP, 4, [b"abcd", b"efgh"]).encode_body()
        self.check(PT.DELETE, good[:-1], c.NotifyType.PAYLOAD_MALFORMED, 50)
        self.check(PT.DELETE, good + b"x", c.NotifyType.PAYLOAD_MALFORMED, 50)
        self.check(PT.DELETE, good[:4] + b"\x00" + good[5:], c.NotifyType.INVALID_PROTOCOL_ID,
                   48, silent=True)

    def test_attribute_payload_truncated(self) -> None:
        body = AttributePayload(c.CfgMessageType.REQUEST, 1,
                                [Attribute(c.CfgAttr.INTERNAL_IP4_ADDRESS, b"")]).encode_body()
        self.check(PT.ATTRIBUTE, body[:-1], c.NotifyType.PAYLOAD_MALFORMED, 48)
        self.check(PT.ATTRIBUTE, body[:3], c.NotifyType.PAYLOAD_MALFORMED, 40)

    def test_nat_oa_errors(self) -> None:
        self.check(PT.NAT_OA, bytes([2, 0, 0, 0]) + b"abcd", c.NotifyType.PAYLOAD_MALFORMED, 44)
        self.check(PT.NAT_OA, bytes([1, 0, 0, 0]) + bytes(16), c.NotifyType.PAYLOAD_MALFORMED,
                   48)
        self.check(PT.NAT_OA_DRAFT, bytes([5, 0, 0]), c.NotifyType.PAYLOAD_MALFORMED, 40)
