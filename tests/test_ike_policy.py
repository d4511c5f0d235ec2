"""Tests of isakmpd.ike.policy: offers, responder choices, refusals, keys, IDs, connections."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config import load_config
from isakmpd.config.store import Store
from isakmpd.ike import policy
from isakmpd.ike.policy import NegotiationError
from isakmpd.wire.attributes import Attribute
from isakmpd.wire.constants import (
    AuthMethod,
    Doi,
    EncapsulationMode,
    EncryptionAlgorithm,
    ExchangeType,
    HashAlgorithm,
    IdType,
    IkeAttr,
    IpsecAttr,
    NotifyType,
    ProtocolId,
)
from isakmpd.wire.payloads import IdPayload, ProposalPayload, SaPayload, TransformPayload

SAMPLE = (Path(__file__).resolve().parent.parent / "conf" / "isakmpd.conf").read_text()

CONF = """\
[Phase 1]
198.51.100.1=		peer-east
2001:DB8:0:0::2=	peer-v6
Default=		peer-any

[Phase 2]
Connections=		west-east,only-active
Passive-connections=	rw,bundle

[peer-east]
Phase=			1
Address=		198.51.100.1
Configuration=		mm-conf
Authentication=		secret-east
ID=			id-west
Remote-ID=		id-east

[peer-v6]
Phase=			1
Address=		2001:db8::2
Configuration=		any-conf
Authentication=		0x00ff10

[peer-any]
Phase=			1
Configuration=		am-conf

[peer-broken]
Phase=			1
Configuration=		broken-conf

[mm-conf]
EXCHANGE_TYPE=		ID_PROT
Transforms=		AES-256-SHA2-256-GRP14,3DES-SHA

[am-conf]
EXCHANGE_TYPE=		AGGRESSIVE
Transforms=		AES-128-SHA-GRP5,3DES-SHA-GRP5

[am-mixed-conf]
EXCHANGE_TYPE=		AGGRESSIVE
Transforms=		AES-128-SHA-GRP5,3DES-SHA

[any-conf]
EXCHANGE_TYPE=		ID_PROT
Transforms=		xf-any

[long-conf]
EXCHANGE_TYPE=		ID_PROT
Transforms=		xf-long

[broken-conf]
EXCHANGE_TYPE=		ID_PROT
Transforms=		NO-SUCH-TRANSFORM

[xf-any]
ENCRYPTION_ALGORITHM=	AES_CBC
KEY_LENGTH=		128,128:192
HASH_ALGORITHM=		ANY
AUTHENTICATION_METHOD=	PRE_SHARED
GROUP_DESCRIPTION=	MODP_2048
Life=			ANY

[xf-long]
ENCRYPTION_ALGORITHM=	BLOWFISH_CBC
KEY_LENGTH=		128,96:192
HASH_ALGORITHM=		SHA
AUTHENTICATION_METHOD=	PRE_SHARED
GROUP_DESCRIPTION=	MODP_1024
Life=			life-long,life-kb

[life-long]
LIFE_TYPE=		SECONDS
LIFE_DURATION=		100000,60:200000

[life-kb]
LIFE_TYPE=		KILOBYTES
LIFE_DURATION=		1000,100:5000

[id-west]
ID-type=		FQDN
Name=			west.example.org

[id-east]
ID-type=		USER_FQDN
Name=			vpn@east.example.org

[198.51.100.7]
Authentication=		seven

[alice@example.org]
Authentication=		0x616c696365

[west-east]
Phase=			2
ISAKMP-peer=		peer-east
Configuration=		qm-conf
Local-ID=		net-west
Remote-ID=		net-east

[only-active]
Phase=			2
ISAKMP-peer=		peer-east
Configuration=		qm-conf
Local-ID=		net-west
Remote-ID=		net-other
Flags=			active-only

[rw]
Phase=			2
ISAKMP-peer=		peer-any
Configuration=		qm-nopfs
Local-ID=		net-west

[bundle]
Phase=			2
Configuration=		qm-bundle
Local-ID=		host-west
Remote-ID=		host-east

[remote-only]
Phase=			2
ISAKMP-peer=		peer-east
Configuration=		qm-conf
Remote-ID=		net-east

[qm-conf]
EXCHANGE_TYPE=		QUICK_MODE
Suites=			QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE,QM-ESP-AES-128-SHA2-256-PFS-GRP14-SUITE

[qm-nopfs]
EXCHANGE_TYPE=		QUICK_MODE
Suites=			QM-ESP-TRP-AES-SHA-SUITE

[qm-mixed]
EXCHANGE_TYPE=		QUICK_MODE
Suites=			QM-ESP-AES-SHA-PFS-SUITE,QM-ESP-AES-SHA-SUITE

[qm-bundle]
EXCHANGE_TYPE=		QUICK_MODE
Suites=			suite-bundle

[suite-bundle]
Protocols=		proto-esp,proto-ah

[proto-esp]
PROTOCOL_ID=		IPSEC_ESP
ReplayWindow=		64
Transforms=		QM-ESP-AES-128-SHA-XF

[proto-ah]
PROTOCOL_ID=		IPSEC_AH
Transforms=		QM-AH-SHA-XF

[net-west]
ID-type=		IPV4_ADDR_SUBNET
Network=		203.0.113.0
Netmask=		255.255.255.128

[net-east]
ID-type=		IPV4_ADDR_SUBNET
Network=		203.0.113.128
Netmask=		255.255.255.128

[net-other]
ID-type=		IPV4_ADDR_SUBNET
Network=		192.0.2.0
Netmask=		255.255.255.0

[host-west]
ID-type=		IPV4_ADDR
Address=		192.0.2.1

[host-east]
ID-type=		IPV4_ADDR
Address=		198.51.100.1
Protocol=		udp
Port=			1701
"""


@functools.lru_cache(maxsize=4)
def _load(text: str) -> Store:
    store, _diagnostics = load_config(text, "test.conf")
    return store


def conf(text: str = CONF) -> Store:
    """A fresh copy (tests may change it)."""
    return _load(text).copy()


def wire(sa: SaPayload) -> SaPayload:
    """What the other side decodes."""
    return SaPayload.decode_body(sa.encode_body(), 0)


def p1_xf(number: int, enc: int = EncryptionAlgorithm.AES_CBC,
          hash_alg: int = HashAlgorithm.SHA2_256, auth: int = AuthMethod.PRE_SHARED,
          group: int | None = 14, key: int | None = 256,
          lives: tuple[tuple[int, int], ...] = ((1, 3600),),
          extra: tuple[Attribute, ...] = (), transform_id: int = 1) -> TransformPayload:
    attributes = [Attribute(IkeAttr.ENCRYPTION_ALGORITHM, enc),
                  Attribute(IkeAttr.HASH_ALGORITHM, hash_alg),
                  Attribute(IkeAttr.AUTHENTICATION_METHOD, auth)]
    if group is not None:
        attributes.append(Attribute(IkeAttr.GROUP_DESCRIPTION, group))
    for life_type, duration in lives:
        attributes += [Attribute(IkeAttr.LIFE_TYPE, life_type),
                       Attribute(IkeAttr.LIFE_DURATION, duration)]
    if key is not None:
        attributes.append(Attribute(IkeAttr.KEY_LENGTH, key))
    attributes += extra
    return TransformPayload(number, transform_id, attributes)


def p1_sa(*transforms: TransformPayload) -> SaPayload:
    return wire(SaPayload(Doi.IPSEC, 1, [ProposalPayload(1, ProtocolId.ISAKMP, b"",
                                                         list(transforms))]))


def refusal(test: SynchronousTestCase, call, *args, **kwargs) -> NegotiationError:
    error = test.assertRaises(NegotiationError, call, *args, **kwargs)
    return error


# --- phase 1 offers ----------------------------------------------------------------------


class Phase1OfferTests(SynchronousTestCase):

    def test_sample_offer_layout(self) -> None:
        store = conf(SAMPLE)
        sa = policy.phase1_offer(store, "peer-east")
        self.assertEqual(sa.doi, Doi.IPSEC)
        self.assertEqual(len(sa.proposals), 1)
        proposal = sa.proposals[0]
        self.assertEqual((proposal.number, proposal.protocol_id, proposal.spi),
                         (1, ProtocolId.ISAKMP, b""))
        self.assertEqual([t.number for t in proposal.transforms], [0, 1])
        self.assertEqual({t.transform_id for t in proposal.transforms}, {1})
        first, second = proposal.transforms
        # isakmpd's order: ENC, HASH, AUTH, GROUP, LIFE_TYPE/LIFE_DURATION, KEY_LENGTH.
        self.assertEqual([(int(a.type), a.value) for a in first.attributes],
                         [(1, 7), (2, 4), (3, 1), (4, 14), (11, 1), (12, 3600), (14, 256)])
        self.assertEqual(second.attribute(IkeAttr.KEY_LENGTH).value, 128)
        # It survives the wire unchanged.
        self.assertEqual(wire(sa).encode_body(), sa.encode_body())

    def test_generated_names(self) -> None:
        store = conf(CONF)
        sa = policy.phase1_offer(store, "peer-east")
        triple = sa.proposals[0].transforms[1]
        self.assertEqual(triple.number, 1)
        self.assertEqual([(int(a.type), a.value) for a in triple.attributes],
                         [(1, 5), (2, 2), (3, 1), (4, 2), (11, 1), (12, 3600)])

    def test_long_lifetimes_are_four_byte_tlvs(self) -> None:
        store = conf()
        store.set("peer-east", "Configuration", "long-conf", force=True)
        sa = policy.phase1_offer(store, "peer-east")
        body = sa.encode_body()
        # LIFE_DURATION 100000 = 0x000186a0 as a TLV of length 4 (AF bit clear).
        self.assertIn(bytes.fromhex("000c0004000186a0"), body)
        # The kilobyte lifetime fits a TV.
        self.assertIn(bytes.fromhex("800b0002800c03e8"), body)
        xf = wire(sa).proposals[0].transforms[0]
        self.assertEqual(xf.attribute(IkeAttr.LIFE_DURATION).as_int(), 100000)

    def test_exchange_type(self) -> None:
        store = conf()
        self.assertEqual(policy.exchange_type(store, "peer-east"), ExchangeType.ID_PROT)
        self.assertEqual(policy.exchange_type(store, "peer-any"), ExchangeType.AGGRESSIVE)
        store.set("am-conf", "EXCHANGE_TYPE", "QUICK_MODE", force=True)
        error = refusal(self, policy.exchange_type, store, "peer-any")
        self.assertIn("am-conf", error.message)
        self.assertIn("QUICK_MODE", error.message)

    def test_aggressive_single_group(self) -> None:
        store = conf()
        sa = policy.phase1_offer(store, "peer-any")
        groups = {t.attribute(IkeAttr.GROUP_DESCRIPTION).value
                  for t in sa.proposals[0].transforms}
        self.assertEqual(groups, {5})
        store.set("peer-any", "Configuration", "am-mixed-conf", force=True)
        error = refusal(self, policy.phase1_offer, store, "peer-any")
        self.assertIn("same GROUP_DESCRIPTION", error.message)
        self.assertIn("MODP_1024", error.message)
        self.assertIn("MODP_1536", error.message)

    def test_any_cannot_be_offered(self) -> None:
        error = refusal(self, policy.phase1_offer, conf(), "peer-v6")
        self.assertIn("xf-any", error.message)
        self.assertIn("ANY", error.message)

    def test_missing_transform_section(self) -> None:
        error = refusal(self, policy.phase1_offer, conf(), "peer-broken")
        self.assertIn("NO-SUCH-TRANSFORM", error.message)
        self.assertIn("does not exist", error.message)
        error = refusal(self, policy.phase1_select, conf(), "peer-broken",
                        p1_sa(p1_xf(0)), "192.0.2.2")
        self.assertIn("NO-SUCH-TRANSFORM", error.message)


# --- phase 1 responder -------------------------------------------------------------------


class Phase1SelectTests(SynchronousTestCase):

    def select(self, *transforms: TransformPayload, section: str = "peer-east",
               store: Store | None = None, **kwargs):
        return policy.phase1_select(store or conf(), section, p1_sa(*transforms),
                                    "192.0.2.2", **kwargs)

    def refused(self, *transforms: TransformPayload, section: str = "peer-east",
                store: Store | None = None, **kwargs) -> NegotiationError:
        error = refusal(self, self.select, *transforms, section=section, store=store,
                        **kwargs)
        self.assertEqual(error.notify, NotifyType.NO_PROPOSAL_CHOSEN)
        return error

    def test_first_acceptable_in_peer_order(self) -> None:
        reply, suite = self.select(
            p1_xf(0, key=128, hash_alg=HashAlgorithm.SHA, group=2),
            p1_xf(1, enc=EncryptionAlgorithm.TRIPLE_DES_CBC, hash_alg=HashAlgorithm.SHA,
                  group=2, key=None),
            p1_xf(2))
        self.assertEqual(suite.encryption, EncryptionAlgorithm.TRIPLE_DES_CBC)
        self.assertEqual(suite.describe(), "3DES/SHA/MODP_1024/PRE_SHARED")
        self.assertEqual(suite.life_seconds, 3600)
        self.assertFalse(suite.responder_lifetime)
        transforms = reply.proposals[0].transforms
        self.assertEqual([t.number for t in transforms], [1])
        self.assertEqual(reply.proposals[0].protocol_id, ProtocolId.ISAKMP)
        wire(reply)

    def test_remembered_choice(self) -> None:
        # The same offer again is answered from what was remembered, identically, until
        # the configuration changes.
        store = conf()
        offer = (p1_xf(0, key=128, hash_alg=HashAlgorithm.SHA, group=2),
                 p1_xf(1, enc=EncryptionAlgorithm.TRIPLE_DES_CBC, hash_alg=HashAlgorithm.SHA,
                       group=2, key=None))
        first = self.select(*offer, store=store)
        again = self.select(*offer, store=store)
        self.assertEqual(again, first)
        self.assertEqual(wire(again[0]).raw, wire(first[0]).raw)
        store.set("mm-conf", "Transforms", "AES-256-SHA2-256-GRP14", force=True)
        self.assertNotEqual(self.select(p1_xf(3), store=store)[1], first[1])
        self.refused(*offer, store=store)

    def test_suite_fields(self) -> None:
        _reply, suite = self.select(p1_xf(3))
        self.assertEqual(suite, policy.Phase1Suite(
            EncryptionAlgorithm.AES_CBC, 256, HashAlgorithm.SHA2_256, AuthMethod.PRE_SHARED,
            14, 3600, None))
        self.assertEqual(suite.describe(), "AES-256/SHA2_256/MODP_2048/PRE_SHARED")

    def test_closest_candidate_message(self) -> None:
        store = conf(SAMPLE)
        store.set("main-mode-psk", "Transforms", "AES-256-SHA2-256-GRP14", force=True)
        error = self.refused(p1_xf(0, key=128, hash_alg=HashAlgorithm.SHA, group=2),
                             section="peer-east", store=store)
        self.assertEqual(
            error.message,
            "peer 192.0.2.2 offered AES-128/SHA/MODP_1024/PRE_SHARED, we accept "
            "AES-256/SHA2_256/MODP_2048/PRE_SHARED for peer-east: encryption key length "
            "differs (128 not in 256)")

    def test_each_attribute_reason(self) -> None:
        cases = [
            (p1_xf(0, enc=EncryptionAlgorithm.CAST_CBC, key=128),
             "encryption differs (CAST_CBC, we accept AES_CBC)"),
            (p1_xf(0, hash_alg=HashAlgorithm.MD5), "hash differs (MD5, we accept SHA2_256)"),
            (p1_xf(0, auth=AuthMethod.RSA_SIG),
             "authentication method differs (RSA_SIG, we accept PRE_SHARED)"),
            (p1_xf(0, group=5), "group differs (MODP_1536, we accept MODP_2048)"),
            (p1_xf(0, lives=((2, 1000),)), "lifetime type KILOBYTES is not accepted"),
            (p1_xf(0, lives=((1, 30),)), "lifetime 30 s is not in 60:86400"),
            (p1_xf(0, key=None), "AES_CBC needs a KEY_LENGTH attribute"),
        ]
        for transform, reason in cases:
            error = self.refused(transform)
            self.assertIn(reason, error.message)
            self.assertIn("peer 192.0.2.2 offered", error.message)
            self.assertIn("for peer-east", error.message)

    def test_unsupported_attributes_and_values(self) -> None:
        cases = [
            (p1_xf(0, extra=(Attribute(IkeAttr.PRF, 1),)), "attribute PRF is not supported"),
            (p1_xf(0, extra=(Attribute(IkeAttr.GROUP_TYPE, 1),)),
             "attribute GROUP_TYPE is not supported"),
            (p1_xf(0, enc=EncryptionAlgorithm.DES_CBC, key=None),
             "encryption DES_CBC is not supported"),
            (p1_xf(0, auth=AuthMethod.DSS), "authentication method DSS is not supported"),
            (p1_xf(0, group=3), "group EC2N_155 is not supported"),
            (p1_xf(0, hash_alg=HashAlgorithm.TIGER), "hash TIGER is not supported"),
            (p1_xf(0, group=None), "no GROUP_DESCRIPTION"),
            (p1_xf(0, transform_id=2), "transform ID 2 is not KEY_IKE"),
            (p1_xf(0, key=100), "KEY_LENGTH 100"),
        ]
        for transform, reason in cases:
            error = self.refused(transform)
            self.assertIn(reason, error.message)

    def test_unsupported_transform_skipped(self) -> None:
        _reply, suite = self.select(p1_xf(0, extra=(Attribute(IkeAttr.PRF, 1),)), p1_xf(1))
        self.assertEqual(suite.transform_number, 1)

    def test_any_and_key_length_range(self) -> None:
        _reply, suite = self.select(p1_xf(0, hash_alg=HashAlgorithm.SHA2_512, key=192),
                                    section="peer-v6")
        self.assertEqual((suite.hash, suite.key_length), (HashAlgorithm.SHA2_512, 192))
        error = self.refused(p1_xf(0, key=256), section="peer-v6")
        self.assertIn("encryption key length differs (256 not in 128:192)", error.message)
        self.assertIn("AES-128:192/ANY/MODP_2048/PRE_SHARED", error.message)
        error = self.refused(p1_xf(0, key=64), section="peer-v6")
        self.assertIn("KEY_LENGTH 64 is not valid for AES_CBC", error.message)

    def test_default_key_length_checked(self) -> None:
        # Blowfish without KEY_LENGTH means 128 bits (RFC 2451), inside 96:192.
        store = conf()
        store.set("peer-east", "Configuration", "long-conf", force=True)
        blf = {"enc": EncryptionAlgorithm.BLOWFISH_CBC, "hash_alg": HashAlgorithm.SHA,
               "group": 2, "lives": ((1, 3600),)}
        _reply, suite = self.select(p1_xf(0, key=None, **blf), store=store)
        self.assertIsNone(suite.key_length)
        store.set("xf-long", "KEY_LENGTH", "192,160:192", force=True)
        error = self.refused(p1_xf(0, key=None, **blf), store=store)
        self.assertIn("default key length 128 not in 160:192", error.message)

    def test_lifetimes(self) -> None:
        store = conf()
        store.set("peer-east", "Configuration", "long-conf", force=True)
        blf = {"enc": EncryptionAlgorithm.BLOWFISH_CBC, "hash_alg": HashAlgorithm.SHA,
               "group": 2, "key": 128}
        _reply, suite = self.select(p1_xf(0, lives=((1, 150000), (2, 200)), **blf),
                                    store=store)
        self.assertEqual((suite.life_seconds, suite.life_kilobytes), (150000, 200))
        self.assertFalse(suite.responder_lifetime)
        # Longer than we accept: accepted, shortened to our maximum, flagged.
        reply, suite = self.select(p1_xf(0, lives=((1, 300000),), **blf), store=store)
        self.assertEqual(suite.life_seconds, 200000)
        self.assertTrue(suite.responder_lifetime)
        self.assertEqual(reply.proposals[0].transforms[0].attribute(
            IkeAttr.LIFE_DURATION).as_int(), 300000)
        # Too short is refused.
        error = self.refused(p1_xf(0, lives=((2, 50),), **blf), store=store)
        self.assertIn("lifetime 50 KB is not in 100:5000", error.message)
        # No lifetime offered: none chosen (the exchange applies the 28800 s default).
        _reply, suite = self.select(p1_xf(0, lives=(), **blf), store=store)
        self.assertEqual((suite.life_seconds, suite.life_kilobytes), (None, None))

    def test_life_any(self) -> None:
        _reply, suite = self.select(p1_xf(0, key=128, lives=((1, 10), (2, 99999999))),
                                    section="peer-v6")
        self.assertEqual((suite.life_seconds, suite.life_kilobytes), (10, 99999999))

    def test_ke_group(self) -> None:
        _reply, suite = self.select(p1_xf(0, group=5, key=128, hash_alg=HashAlgorithm.SHA),
                                    section="peer-any", ke_group=5)
        self.assertEqual(suite.group, 5)
        error = self.refused(p1_xf(0, group=5, key=128, hash_alg=HashAlgorithm.SHA),
                             section="peer-any", ke_group=2)
        self.assertIn("KE payload", error.message)

    def test_malformed_sa(self) -> None:
        sa = SaPayload(Doi.IPSEC, 1, [ProposalPayload(1, ProtocolId.ISAKMP, b"", [p1_xf(0)]),
                                      ProposalPayload(2, ProtocolId.ISAKMP, b"", [p1_xf(0)])])
        error = refusal(self, policy.phase1_select, conf(), "peer-east", sa, "192.0.2.2")
        self.assertEqual(error.notify, NotifyType.PAYLOAD_MALFORMED)

    def test_many_offers_summarised(self) -> None:
        transforms = [p1_xf(n, group=2) for n in range(9)]
        error = self.refused(*transforms)
        self.assertIn("and 3 more", error.message)


class Phase1AcceptTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.offer = policy.phase1_offer(conf(SAMPLE), "peer-east")

    def test_reply_of_ours(self) -> None:
        reply, _ = policy.phase1_select(conf(SAMPLE), "peer-east", wire(self.offer), "x")
        suite = policy.phase1_accept(self.offer, wire(reply), "198.51.100.1")
        self.assertEqual(suite.describe(), "AES-256/SHA2_256/MODP_2048/PRE_SHARED")
        self.assertEqual(suite.life_seconds, 3600)

    def test_second_transform_and_shorter_life(self) -> None:
        reply = p1_sa(p1_xf(1, key=128, lives=((1, 600),)))
        suite = policy.phase1_accept(self.offer, reply, "198.51.100.1")
        self.assertEqual((suite.key_length, suite.life_seconds), (128, 600))

    def test_reply_not_ours(self) -> None:
        for transform in (p1_xf(0, key=192), p1_xf(0, lives=((1, 7200),)),
                          p1_xf(0, group=2), p1_xf(0, extra=(Attribute(IkeAttr.PRF, 1),))):
            error = refusal(self, policy.phase1_accept, self.offer, p1_sa(transform),
                            "198.51.100.1")
            self.assertEqual(error.notify, NotifyType.NO_PROPOSAL_CHOSEN)
            self.assertIn("not one of the transforms we offered", error.message)
            self.assertIn("peer 198.51.100.1 chose", error.message)

    def test_reply_with_two_transforms(self) -> None:
        error = refusal(self, policy.phase1_accept, self.offer, p1_sa(p1_xf(0), p1_xf(1)),
                        "198.51.100.1")
        self.assertEqual(error.notify, NotifyType.PAYLOAD_MALFORMED)


# --- keys, peers and phase 1 IDs ---------------------------------------------------------


class PeerTests(SynchronousTestCase):

    def test_find_peer_section(self) -> None:
        store = conf()
        self.assertEqual(policy.find_peer_section(store, "198.51.100.1"), "peer-east")
        self.assertEqual(policy.find_peer_section(store, "2001:db8::2"), "peer-v6")
        self.assertEqual(policy.find_peer_section(store, "192.0.2.99"), "peer-any")
        store.remove("Phase 1", "Default")
        self.assertIsNone(policy.find_peer_section(store, "192.0.2.99"))

    def test_find_peer_section_compares_addresses(self) -> None:
        # Tags and addresses are compared as addresses, whatever their spelling; of two
        # tags of one address the first counts, as isakmpd scans [Phase 1] in order.
        store = conf()
        store.set("Phase 1", "2001:DB8:0::7", "peer-east")
        store.set("Phase 1", "2001:db8::7", "peer-v6")
        self.assertEqual(policy.find_peer_section(store, "2001:db8::7"), "peer-east")
        self.assertEqual(policy.find_peer_section(store, " 2001:0db8::7 "), "peer-east")
        self.assertEqual(policy.find_peer_section(store, "not an address"), "peer-any")

    def test_pre_shared_key(self) -> None:
        store = conf()
        self.assertEqual(policy.pre_shared_key(store, "peer-east", None), b"secret-east")
        self.assertEqual(policy.pre_shared_key(store, "peer-v6", None), b"\x00\xff\x10")
        self.assertIsNone(policy.pre_shared_key(store, "peer-any", None))
        self.assertEqual(policy.pre_shared_key(
            store, "peer-any", IdPayload.from_address("198.51.100.7")), b"seven")
        self.assertEqual(policy.pre_shared_key(
            store, "peer-any", IdPayload(IdType.USER_FQDN, b"alice@example.org")), b"alice")
        self.assertIsNone(policy.pre_shared_key(
            store, "peer-any", IdPayload(IdType.FQDN, b"unknown.example.org")))
        # The peer section's key wins over an initiator-ID section.
        self.assertEqual(policy.pre_shared_key(
            store, "peer-east", IdPayload.from_address("198.51.100.7")), b"secret-east")

    def test_pre_shared_key_text_and_bad_hex(self) -> None:
        store = conf()
        store.set("peer-east", "Authentication", "gr\u00fc\u00dfe", force=True)
        self.assertEqual(policy.pre_shared_key(store, "peer-east", None),
                         "gr\u00fc\u00dfe".encode())
        store.set("peer-east", "Authentication", "0xzz", force=True)
        error = refusal(self, policy.pre_shared_key, store, "peer-east", None)
        self.assertIn("[peer-east]", error.message)
        self.assertIn("hexadecimal", error.message)

    def test_phase1_local_id(self) -> None:
        store = conf()
        self.assertEqual(policy.phase1_local_id(store, "peer-east", "192.0.2.1"),
                         IdPayload(IdType.FQDN, b"west.example.org"))
        self.assertEqual(policy.phase1_local_id(store, "peer-any", "192.0.2.1"),
                         IdPayload(IdType.IPV4_ADDR, bytes([192, 0, 2, 1])))
        v6 = policy.phase1_local_id(store, "peer-v6", "2001:db8::1")
        self.assertEqual((v6.id_type, len(v6.data)), (IdType.IPV6_ADDR, 16))

    def test_check_remote_id(self) -> None:
        store = conf()
        good = IdPayload(IdType.USER_FQDN, b"vpn@east.example.org", 17, 500)
        policy.check_remote_id(store, "peer-east", good)
        bad = IdPayload(IdType.FQDN, b"east.example.org")
        error = refusal(self, policy.check_remote_id, store, "peer-east", bad)
        self.assertEqual(error.notify, NotifyType.INVALID_ID_INFORMATION)
        self.assertIn("fqdn/east.example.org", error.message)
        self.assertIn("ufqdn/vpn@east.example.org", error.message)
        # No Remote-ID: anything goes.
        policy.check_remote_id(store, "peer-any", bad)


# --- Quick Mode ----------------------------------------------------------------------------


class SpiSource:
    def __init__(self, base: int) -> None:
        self.base = base
        self.calls: list[ProtocolId] = []

    def __call__(self, protocol: ProtocolId) -> bytes:
        self.calls.append(protocol)
        return (self.base + len(self.calls)).to_bytes(4, "big")


def p2_xf(number: int, transform_id: int = 12, mode: int | None = 1, auth: int | None = 5,
          group: int | None = 14, key: int | None = 256,
          lives: tuple[tuple[int, int], ...] = ((1, 1200),),
          extra: tuple[Attribute, ...] = ()) -> TransformPayload:
    attributes = []
    for life_type, duration in lives:
        attributes += [Attribute(IpsecAttr.SA_LIFE_TYPE, life_type),
                       Attribute(IpsecAttr.SA_LIFE_DURATION, duration)]
    if group is not None:
        attributes.append(Attribute(IpsecAttr.GROUP_DESCRIPTION, group))
    if mode is not None:
        attributes.append(Attribute(IpsecAttr.ENCAPSULATION_MODE, mode))
    if auth is not None:
        attributes.append(Attribute(IpsecAttr.AUTHENTICATION_ALGORITHM, auth))
    if key is not None:
        attributes.append(Attribute(IpsecAttr.KEY_LENGTH, key))
    return TransformPayload(number, transform_id, attributes + list(extra))


def p2_sa(*proposals: tuple[int, int, list[TransformPayload]]) -> SaPayload:
    return wire(SaPayload(Doi.IPSEC, 1, [
        ProposalPayload(number, protocol, b"\xca\xfe\x00" + bytes([number]), transforms)
        for number, protocol, transforms in proposals]))


ESP = ProtocolId.IPSEC_ESP
AH = ProtocolId.IPSEC_AH


class QuickModeOfferTests(SynchronousTestCase):

    def test_sample_offer(self) -> None:
        spis = SpiSource(0x1000)
        sa, group = policy.quick_mode_offer(conf(SAMPLE), "west-east", spis, False)
        self.assertEqual(group, 14)
        self.assertEqual(spis.calls, [ESP])      # one SPI per protocol
        self.assertEqual([(p.number, p.protocol_id, p.spi) for p in sa.proposals],
                         [(1, ESP, bytes.fromhex("00001001")),
                          (2, ESP, bytes.fromhex("00001001"))])
        first = sa.proposals[0].transforms
        self.assertEqual([t.number for t in first], [1])
        self.assertEqual(first[0].transform_id, 12)
        self.assertEqual([(int(a.type), a.value) for a in first[0].attributes],
                         [(1, 1), (2, 1200), (3, 14), (4, 1), (5, 5), (6, 256)])
        self.assertEqual(sa.proposals[1].transforms[0].attribute(IpsecAttr.KEY_LENGTH).value,
                         128)
        wire(sa)

    def test_bundle_shares_number(self) -> None:
        spis = SpiSource(0x2000)
        sa, group = policy.quick_mode_offer(conf(), "bundle", spis, False)
        self.assertIsNone(group)
        self.assertEqual([(p.number, p.protocol_id) for p in sa.proposals],
                         [(1, ESP), (1, AH)])
        self.assertEqual(spis.calls, [ESP, AH])
        ah = sa.proposals[1].transforms[0]
        self.assertEqual((ah.number, ah.transform_id), (1, 3))
        self.assertIsNone(ah.attribute(IpsecAttr.GROUP_DESCRIPTION))

    def test_nat_t_encapsulation(self) -> None:
        store = conf()
        for connection, nat_t, draft, expected in (
                ("west-east", True, False, EncapsulationMode.UDP_ENCAP_TUNNEL),
                ("west-east", True, True, EncapsulationMode.UDP_ENCAP_TUNNEL_DRAFT),
                ("rw", True, False, EncapsulationMode.UDP_ENCAP_TRANSPORT),
                ("rw", False, False, EncapsulationMode.TRANSPORT),
                ("west-east", False, False, EncapsulationMode.TUNNEL)):
            sa, _ = policy.quick_mode_offer(store, connection, SpiSource(0), nat_t,
                                            nat_t_draft=draft)
            modes = {t.attribute(IpsecAttr.ENCAPSULATION_MODE).value
                     for p in sa.proposals for t in p.transforms}
            self.assertEqual(modes, {expected}, connection)

    def test_mixed_pfs_refused(self) -> None:
        store = conf()
        store.set("west-east", "Configuration", "qm-mixed", force=True)
        error = refusal(self, policy.quick_mode_offer, store, "west-east", SpiSource(0), False)
        self.assertIn("same PFS group", error.message)
        self.assertIn("no PFS", error.message)

    def test_missing_suite(self) -> None:
        store = conf()
        store.set("qm-conf", "Suites", "NO-SUCH-SUITE", force=True)
        error = refusal(self, policy.quick_mode_offer, store, "west-east", SpiSource(0), False)
        self.assertIn("NO-SUCH-SUITE", error.message)


class QuickModeSelectTests(SynchronousTestCase):

    def select(self, sa: SaPayload, connection: str = "west-east", nat_t: bool = False,
               store: Store | None = None):
        self.spis = SpiSource(0x5000)
        return policy.quick_mode_select(store or conf(), connection, sa, self.spis,
                                        "192.0.2.2", nat_t)

    def refused(self, sa: SaPayload, connection: str = "west-east", nat_t: bool = False,
                store: Store | None = None) -> NegotiationError:
        error = refusal(self, self.select, sa, connection, nat_t, store)
        self.assertEqual(error.notify, NotifyType.NO_PROPOSAL_CHOSEN)
        self.assertIn("peer 192.0.2.2 offered", error.message)
        self.assertIn(f"for connection {connection}", error.message)
        return error

    def test_first_acceptable_in_peer_order(self) -> None:
        sa = p2_sa((1, ESP, [p2_xf(1, key=192)]),
                   (2, ESP, [p2_xf(1, auth=2), p2_xf(2, key=128)]),
                   (3, ESP, [p2_xf(1)]))
        reply, suite = self.select(sa)
        self.assertEqual(suite.proposal_number, 2)
        self.assertEqual(self.spis.calls, [ESP])
        (proposal,) = reply.proposals
        self.assertEqual((proposal.number, proposal.spi), (2, bytes.fromhex("00005001")))
        self.assertEqual([t.number for t in proposal.transforms], [2])
        (choice,) = suite.protocols
        self.assertEqual(choice, policy.ProtocolChoice(
            ESP, 12, EncapsulationMode.TUNNEL, 5, 128, 1200, None,
            bytes.fromhex("00005001"), b"\xca\xfe\x00\x02", 16))
        self.assertEqual(suite.pfs_group, 14)
        self.assertEqual(suite.describe(), "ESP:AES-128/HMAC_SHA2_256 TUNNEL PFS MODP_2048")
        wire(reply)

    def test_remembered_choice_uses_each_offers_spis(self) -> None:
        # The second offer has the same transforms, so the remembered choice is used;
        # the SPIs in the reply and the suite are still that offer's and fresh ones.
        store = conf()
        first = p2_sa((1, ESP, [p2_xf(1, key=192)]), (2, ESP, [p2_xf(2, key=128)]))
        second = p2_sa((1, ESP, [p2_xf(1, key=192)]), (2, ESP, [p2_xf(2, key=128)]))
        second.proposals[1].spi = b"\xbe\xef\x00\x02"
        second = wire(second)
        _reply, one = policy.quick_mode_select(store, "west-east", first, SpiSource(0x100),
                                               "192.0.2.2", False)
        reply, two = policy.quick_mode_select(store, "west-east", second, SpiSource(0x200),
                                              "192.0.2.2", False)
        self.assertEqual((one.proposal_number, two.proposal_number), (2, 2))
        self.assertEqual(one.protocols[0].peer_spi, b"\xca\xfe\x00\x02")
        self.assertEqual(two.protocols[0].peer_spi, b"\xbe\xef\x00\x02")
        self.assertEqual(two.protocols[0].our_spi, bytes.fromhex("00000201"))
        self.assertEqual(reply.proposals[0].spi, bytes.fromhex("00000201"))
        self.assertEqual(dataclasses.replace(one.protocols[0], our_spi=b"", peer_spi=b""),
                         dataclasses.replace(two.protocols[0], our_spi=b"", peer_spi=b""))

    def test_remembered_choice_follows_configuration_changes(self) -> None:
        store = conf()
        offer = p2_sa((1, ESP, [p2_xf(1, key=128)]))
        _reply, suite = policy.quick_mode_select(store, "west-east", offer, SpiSource(0),
                                                 "192.0.2.2", False)
        self.assertEqual(suite.proposal_number, 1)
        # Our suite no longer allows that offer: the old choice must not be reused.
        store.set("qm-conf", "Suites", "QM-ESP-3DES-SHA-PFS-SUITE", force=True)
        error = refusal(self, policy.quick_mode_select, store, "west-east", offer,
                        SpiSource(0), "192.0.2.2", False)
        self.assertEqual(error.notify, NotifyType.NO_PROPOSAL_CHOSEN)

    def test_bundle(self) -> None:
        sa = p2_sa((1, ESP, [p2_xf(1, auth=2, key=128, group=None)]),
                   (1, AH, [p2_xf(1, transform_id=3, auth=2, key=None, group=None)]))
        reply, suite = self.select(sa, "bundle")
        self.assertEqual([(p.number, p.protocol_id) for p in reply.proposals],
                         [(1, ESP), (1, AH)])
        self.assertEqual([c.replay_window for c in suite.protocols], [64, 16])
        self.assertIsNone(suite.pfs_group)
        error = self.refused(p2_sa((1, ESP, [p2_xf(1, auth=2, key=128, group=None)])),
                             "bundle")
        self.assertIn("protocols differ", error.message)

    def test_pfs_mismatch_both_ways(self) -> None:
        error = self.refused(p2_sa((1, ESP, [p2_xf(1, group=None)])))
        self.assertIn("PFS differs (no PFS offered, we require MODP_2048)", error.message)
        error = self.refused(p2_sa((1, ESP, [p2_xf(1, group=14, mode=2, auth=2,
                                                   key=128)])), "rw")
        self.assertIn("PFS differs (MODP_2048 offered, we accept no PFS)", error.message)
        error = self.refused(p2_sa((1, ESP, [p2_xf(1, group=5)])))
        self.assertIn("PFS group differs (MODP_1536, we accept MODP_2048)", error.message)

    def test_each_attribute_reason(self) -> None:
        cases = [
            (p2_xf(1, transform_id=3, key=None), "transform differs (3DES, we accept AES)"),
            (p2_xf(1, auth=1),
             "authentication algorithm differs (HMAC_MD5, we accept HMAC_SHA2_256)"),
            (p2_xf(1, key=192), "encryption key length differs (192 not in"),
            (p2_xf(1, mode=2), "encapsulation mode differs (TRANSPORT, we accept TUNNEL)"),
            (p2_xf(1, mode=3), "UDP_ENCAP_TUNNEL offered, but no NAT was detected"),
            (p2_xf(1, lives=((1, 10),)), "lifetime 10 s is not in 60:86400"),
            (p2_xf(1, extra=(Attribute(IpsecAttr.KEY_ROUNDS, 1),)),
             "attribute KEY_ROUNDS is not supported"),
            (p2_xf(1, key=None), "AES needs a KEY_LENGTH"),
        ]
        for transform, reason in cases:
            error = self.refused(p2_sa((1, ESP, [transform])))
            self.assertIn(reason, error.message)
            self.assertIn("we accept ESP:AES-256/HMAC_SHA2_256/PFS MODP_2048", error.message)

    def test_nat_t(self) -> None:
        _reply, suite = self.select(p2_sa((1, ESP, [p2_xf(1, mode=3)])), nat_t=True)
        self.assertEqual(suite.protocols[0].encapsulation, EncapsulationMode.TUNNEL)
        _reply, suite = self.select(p2_sa((1, ESP, [p2_xf(1, mode=61444, auth=2, key=128,
                                                         group=None)])), "rw", nat_t=True)
        self.assertEqual(suite.protocols[0].encapsulation, EncapsulationMode.TRANSPORT)

    def test_lifetime_shortened(self) -> None:
        _reply, suite = self.select(p2_sa((1, ESP, [p2_xf(1, lives=((1, 90000),))])))
        self.assertTrue(suite.responder_lifetime)
        self.assertEqual(suite.protocols[0].life_seconds, 86400)

    def test_accept_round_trip(self) -> None:
        store = conf(SAMPLE)
        offer, _ = policy.quick_mode_offer(store, "west-east", SpiSource(0x100), True)
        reply, responder = policy.quick_mode_select(store, "west-east", wire(offer),
                                                     SpiSource(0x200), "192.0.2.1", True)
        suite = policy.quick_mode_accept(offer, wire(reply), "198.51.100.1",
                                         replay_windows={3: 32})
        (choice,) = suite.protocols
        self.assertEqual((choice.our_spi, choice.peer_spi),
                         (bytes.fromhex("00000101"), bytes.fromhex("00000201")))
        self.assertEqual(choice.replay_window, 32)
        self.assertEqual(choice.encapsulation, EncapsulationMode.TUNNEL)
        self.assertEqual(suite.pfs_group, 14)
        mirrored = responder.protocols[0]
        self.assertEqual((mirrored.our_spi, mirrored.peer_spi),
                         (choice.peer_spi, choice.our_spi))

    def test_accept_takes_the_first_of_several_proposals(self) -> None:
        # charon answers ESP+IPCOMP with it and an ESP-only fallback of its own
        # (strongSwan sa_payload.c); RFC 2408 §4.2 wants one, the first is the choice.
        offer, _ = policy.quick_mode_offer(conf(SAMPLE), "west-east", SpiSource(0x100), False)
        first = offer.proposals[0]
        extra = max(p.number for p in offer.proposals) + 1
        reply = p2_sa((first.number, ESP, [first.transforms[0]]),
                      (extra, ESP, [p2_xf(1, key=128)]))
        suite = policy.quick_mode_accept(offer, reply, "198.51.100.1")
        (choice,) = suite.protocols
        self.assertEqual(choice.protocol, ESP)
        self.assertEqual(choice.our_spi, bytes.fromhex("00000101"))

    def test_accept_refuses_foreign_reply(self) -> None:
        offer, _ = policy.quick_mode_offer(conf(SAMPLE), "west-east", SpiSource(0x100), False)
        cases = [
            (p2_sa((1, ESP, [p2_xf(1, key=192)])), "is not one of our transforms"),
            (p2_sa((1, ESP, [p2_xf(1, group=None)])), "is not one of our transforms"),
            (p2_sa((7, ESP, [p2_xf(1)])), "no proposal number 7"),
            (p2_sa((1, ESP, [p2_xf(1), p2_xf(2)])), "2 transforms chosen"),
            # Only the first proposal of a reply counts: a good second one does not help.
            (p2_sa((7, ESP, [p2_xf(1)]), (8, ESP, [p2_xf(1)])), "no proposal number 7"),
            (p2_sa((1, AH, [p2_xf(1, transform_id=3, key=None)])), "protocols differ"),
        ]
        for reply, reason in cases:
            error = refusal(self, policy.quick_mode_accept, offer, reply, "198.51.100.1")
            self.assertEqual(error.notify, NotifyType.NO_PROPOSAL_CHOSEN)
            self.assertIn("peer 198.51.100.1 answered Quick Mode", error.message)
            self.assertIn(reason, error.message)


# --- connections ---------------------------------------------------------------------------


class ConnectionTests(SynchronousTestCase):

    def test_connection_ids(self) -> None:
        store = conf()
        idci, idcr = policy.connection_ids(store, "west-east", "192.0.2.1")
        self.assertEqual(idci, IdPayload.from_network("203.0.113.0/25"))
        self.assertEqual(idcr, IdPayload.from_network("203.0.113.128/25"))
        idci, idcr = policy.connection_ids(store, "remote-only", "192.0.2.1")
        self.assertEqual(idci, IdPayload.from_address("192.0.2.1"))
        self.assertIsNone(policy.connection_ids(store, "rw", "192.0.2.1"))
        _idci, idcr = policy.connection_ids(store, "bundle", "192.0.2.1")
        self.assertEqual((idcr.protocol, idcr.port), (17, 1701))

    def test_connection_peer(self) -> None:
        store = conf()
        self.assertEqual(policy.connection_peer(store, "west-east"), "peer-east")
        error = refusal(self, policy.connection_peer, store, "bundle")
        self.assertIn("ISAKMP-peer", error.message)

    def test_find_passive_connection(self) -> None:
        store = conf()
        west = IdPayload.from_network("203.0.113.0/25")
        east = IdPayload.from_network("203.0.113.128/25")
        find = policy.find_passive_connection
        # The responder sees the initiator's IDs: IDci is theirs, IDcr ours.
        self.assertEqual(find(store, "peer-east", east, west, "192.0.2.1", "198.51.100.1"),
                         "west-east")
        # A subnet written with host bits set is the same network.
        sloppy = IdPayload(east.id_type, bytes([203, 0, 113, 129]) + east.data[4:])
        self.assertEqual(find(store, "peer-east", sloppy, west, "192.0.2.1", "198.51.100.1"),
                         "west-east")
        self.assertIsNone(find(store, "peer-east", west, east, "192.0.2.1", "198.51.100.1"))
        # Another peer's connection is not offered to this peer.
        self.assertIsNone(find(store, "peer-v6", east, west, "192.0.2.1", "198.51.100.1"))
        # active-only connections are never passive.
        other = IdPayload.from_network("192.0.2.0/24")
        self.assertIsNone(find(store, "peer-east", other, west, "192.0.2.1", "198.51.100.1"))
        # Protocol and port count.
        host_east = IdPayload.from_address("198.51.100.1", 17, 1701)
        host_west = IdPayload.from_address("192.0.2.1")
        self.assertEqual(find(store, None, host_east, host_west, "192.0.2.1", "198.51.100.1"),
                         "bundle")
        self.assertIsNone(find(store, None, IdPayload.from_address("198.51.100.1"),
                               host_west, "192.0.2.1", "198.51.100.1"))

    def test_find_passive_without_remote_id(self) -> None:
        store = conf()
        west = IdPayload.from_network("203.0.113.0/25")
        find = policy.find_passive_connection
        peer = IdPayload.from_address("198.51.100.9")
        self.assertEqual(find(store, "peer-any", peer, west, "192.0.2.1", "198.51.100.9"),
                         "rw")
        behind_nat = IdPayload.from_address("10.1.2.3")
        self.assertIsNone(find(store, "peer-any", behind_nat, west, "192.0.2.1",
                               "198.51.100.9"))
        self.assertEqual(find(store, "peer-any", behind_nat, west, "192.0.2.1",
                              "198.51.100.9", nat_t=True), "rw")
        self.assertIsNone(find(store, "peer-any", IdPayload.from_network("10.0.0.0/8"),
                               west, "192.0.2.1", "198.51.100.9", nat_t=True))

    def test_find_passive_without_ids(self) -> None:
        # Without IDs the addresses stand in: bundle's Remote-ID has a port, so no match
        # until the port is gone.
        store = conf()
        find = policy.find_passive_connection
        self.assertIsNone(find(store, None, None, None, "192.0.2.1", "198.51.100.1"))
        store.remove("host-east", "Port")
        store.remove("host-east", "Protocol")
        self.assertEqual(find(store, None, None, None, "192.0.2.1", "198.51.100.1"),
                         "bundle")
