"""Protocol numbers of ISAKMP, the IPsec DOI, IKEv1, NAT-T, DPD and mode-config.

Every number the daemon puts on the wire or reads from it has a name here, and the
name is what logs print and what isakmpd.conf(5) spells (case-insensitively), so an
operator sees ``3DES_CBC`` or ``NO_PROPOSAL_CHOSEN`` rather than a number.

Sources: RFC 2408 §3 (ISAKMP payloads, notify messages), RFC 2407 §4 (IPsec DOI),
RFC 2409 appendix A (IKE attributes), RFC 3526/5903/5114/6954 (groups), RFC 3947
(NAT-T), RFC 3706 (DPD), draft-ietf-ipsec-isakmp-mode-cfg-05 and
draft-beaulieu-ike-xauth-02 (mode-config, XAUTH), and OpenBSD's
sbin/isakmpd/{isakmp_num.cst,ipsec_num.cst} for the names isakmpd uses.

Python identifiers cannot start with a digit, so the few names isakmpd spells with
a leading digit (``3DES_CBC``, ``3DES``, ``3IDEA``) are members with a spelled-out
identifier and an explicit label; :meth:`Named.label` and :meth:`Named.from_label`
always use the isakmpd spelling.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from typing import TypeVar


class Named(enum.IntEnum):
    """An IntEnum whose printed form is isakmpd's spelling of the name."""

    @functools.cached_property
    def label(self) -> str:
        # Logs and config lookups ask for labels constantly: computed once, it is
        # then an attribute in the member's __dict__, read without a call.
        return _LABELS.get((type(self).__name__, self._name_), self._name_)

    def __str__(self) -> str:
        return self.label

    @classmethod
    def from_label(cls, text: str) -> Named:
        """Look a member up by its isakmpd name, ignoring case.

        Raises KeyError naming the class and the unknown text.
        """
        by_label = _BY_LABEL.get(cls)
        if by_label is None:
            by_label = {}
            for member in cls:
                by_label.setdefault(member.label.upper(), member)
            _BY_LABEL[cls] = by_label
        try:
            return by_label[text.strip().upper()]
        except KeyError:
            raise KeyError(f"{text!r} is not a known {cls.__name__} name") from None

    @classmethod
    def describe(cls, value: int) -> str:
        """Name of ``value`` if known, else ``'unknown (value)'`` (for logs)."""
        member = value_map(cls).get(value)
        return f"unknown ({value})" if member is None else member.label  # type: ignore


_E = TypeVar("_E", bound=enum.Enum)

# Each enum class's value -> member table, by class. Reading any attribute of an
# enum class (a member, or ``_value2member_map_``) goes through EnumType.__getattr__'s
# slot in Python 3.11, a Python-level call costing about 0.3 us; per-message code
# therefore takes members from module-level names and tables from here.
_VALUE_MAPS: dict[type, dict[object, enum.Enum]] = {}


def value_map(cls: type[_E]) -> dict[object, _E]:
    """``cls._value2member_map_``, fetched from the class once."""
    table = _VALUE_MAPS.get(cls)
    if table is None:
        table = _VALUE_MAPS[cls] = cls._value2member_map_
    return table  # type: ignore[return-value]


def member(cls: type[_E], value: object) -> _E:
    """``cls(value)`` through the enum's value table: the same result (ValueError
    for a value that is not a member) without the cost of EnumMeta.__call__,
    which the per-message paths would otherwise pay for every field."""
    table = _VALUE_MAPS.get(cls)
    if table is None:
        table = value_map(cls)
    try:
        return table[value]  # type: ignore[return-value]
    except (KeyError, TypeError):
        raise ValueError(f"{value!r} is not a valid {cls.__name__}") from None


# Each class's members by upper-case label, built on first use (from_label).
_BY_LABEL: dict[type[Named], dict[str, Named]] = {}

# (enum class name, member name) -> label, for names that are not identifiers.
_LABELS: dict[tuple[str, str], str] = {
    ("EncryptionAlgorithm", "TRIPLE_DES_CBC"): "3DES_CBC",
    ("EspTransform", "TRIPLE_DES"): "3DES",
    ("EspTransform", "TRIPLE_IDEA"): "3IDEA",
}


# --- ISAKMP (RFC 2408) -----------------------------------------------------

ISAKMP_PORT = 500
NAT_T_PORT = 4500
ISAKMP_VERSION = 0x10          # major 1, minor 0 (RFC 2408 §3.1)
HEADER_SIZE = 28               # RFC 2408 §3.1
GENERIC_HEADER_SIZE = 4        # RFC 2408 §3.2
COOKIE_SIZE = 8
NON_ESP_MARKER = b"\x00\x00\x00\x00"   # RFC 3948 §2.2
NAT_KEEPALIVE = b"\xff"                # RFC 3948 §2.3


class ExchangeType(Named):
    NONE = 0
    BASE = 1
    ID_PROT = 2          # Main Mode
    AUTH_ONLY = 3
    AGGRESSIVE = 4
    INFO = 5
    TRANSACTION = 6      # mode-config
    QUICK_MODE = 32      # IPsec DOI (RFC 2409 §5.5)
    NEW_GROUP_MODE = 33


class Flag(enum.IntFlag):
    ENC = 0x01
    COMMIT = 0x02
    AUTH_ONLY = 0x04


VALID_FLAGS = Flag.ENC | Flag.COMMIT | Flag.AUTH_ONLY


class PayloadType(Named):
    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KEY_EXCH = 4
    ID = 5
    CERT = 6
    CERT_REQ = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR = 13
    ATTRIBUTE = 14
    SAK = 15
    SAT = 16
    KD = 17
    SEQ = 18
    POP = 19
    NAT_D = 20           # RFC 3947
    NAT_OA = 21          # RFC 3947
    NAT_D_DRAFT = 130    # draft-ietf-ipsec-nat-t-ike-02/03
    NAT_OA_DRAFT = 131


# Payload types that have no meaning in IKEv1 and are refused when received.
REJECTED_PAYLOADS = frozenset({PayloadType.SAK, PayloadType.SAT, PayloadType.KD,
                               PayloadType.SEQ, PayloadType.POP})
# First private-use payload number (RFC 2408 §3.1); 22..127 are reserved.
PRIVATE_PAYLOAD_MIN = 128


class Doi(Named):
    ISAKMP = 0
    IPSEC = 1


class Situation(enum.IntFlag):
    IDENTITY_ONLY = 0x01   # RFC 2407 §4.2
    SECRECY = 0x02
    INTEGRITY = 0x04


class ProtocolId(Named):
    ISAKMP = 1
    IPSEC_AH = 2
    IPSEC_ESP = 3
    IPCOMP = 4


class IsakmpTransform(Named):
    KEY_IKE = 1            # RFC 2407 §4.4.2


class NotifyType(Named):
    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384
    # IPsec DOI status types (RFC 2407 §4.6.3)
    RESPONDER_LIFETIME = 24576
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578
    # Dead Peer Detection (RFC 3706 §5)
    R_U_THERE = 36136
    R_U_THERE_ACK = 36137


# --- IKE phase 1 attributes (RFC 2409 appendix A) --------------------------

class IkeAttr(Named):
    ENCRYPTION_ALGORITHM = 1
    HASH_ALGORITHM = 2
    AUTHENTICATION_METHOD = 3
    GROUP_DESCRIPTION = 4
    GROUP_TYPE = 5
    GROUP_PRIME = 6
    GROUP_GENERATOR_ONE = 7
    GROUP_GENERATOR_TWO = 8
    GROUP_CURVE_A = 9
    GROUP_CURVE_B = 10
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    PRF = 13
    KEY_LENGTH = 14
    FIELD_SIZE = 15
    GROUP_ORDER = 16
    BLOCK_SIZE = 17


class EncryptionAlgorithm(Named):
    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_R16_B64_CBC = 4
    TRIPLE_DES_CBC = 5     # label 3DES_CBC
    CAST_CBC = 6
    AES_CBC = 7
    CAMELLIA_CBC = 8       # RFC 4312


class HashAlgorithm(Named):
    MD5 = 1
    SHA = 2
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class AuthMethod(Named):
    PRE_SHARED = 1
    DSS = 2
    RSA_SIG = 3
    RSA_ENC = 4
    RSA_ENC_REV = 5
    EL_GAMAL_ENC = 6
    EL_GAMAL_ENC_REV = 7
    ECDSA_SIG = 8
    # draft-beaulieu-ike-xauth-02 §7.2 (initiator/responder XAUTH variants)
    XAUTH_INIT_PRESHARED = 65001
    XAUTH_RESP_PRESHARED = 65002
    XAUTH_INIT_DSS = 65003
    XAUTH_RESP_DSS = 65004
    XAUTH_INIT_RSA = 65005
    XAUTH_RESP_RSA = 65006


class GroupDescription(Named):
    MODP_768 = 1
    MODP_1024 = 2
    EC2N_155 = 3
    EC2N_185 = 4
    MODP_1536 = 5
    EC2N_163sect = 6
    EC2N_163K = 7
    EC2N_283sect = 8
    EC2N_283K = 9
    EC2N_409sect = 10
    EC2N_409K = 11
    EC2N_571sect = 12
    EC2N_571K = 13
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    MODP_1024_160 = 22     # RFC 5114
    MODP_2048_224 = 23
    MODP_2048_256 = 24
    ECP_192 = 25
    ECP_224 = 26
    BP_224 = 27            # RFC 6954
    BP_256 = 28
    BP_384 = 29
    BP_512 = 30


class GroupType(Named):
    MODP = 1
    ECP = 2
    EC2N = 3


class LifeType(Named):
    SECONDS = 1
    KILOBYTES = 2


# --- IPsec DOI (RFC 2407 §4.4–4.5) ----------------------------------------

class IpsecAttr(Named):
    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTHENTICATION_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9
    ECN_TUNNEL = 10


class EncapsulationMode(Named):
    TUNNEL = 1
    TRANSPORT = 2
    UDP_ENCAP_TUNNEL = 3               # RFC 3947 §5
    UDP_ENCAP_TRANSPORT = 4
    UDP_ENCAP_TUNNEL_DRAFT = 61443     # draft-ietf-ipsec-nat-t-ike-0x
    UDP_ENCAP_TRANSPORT_DRAFT = 61444


class AuthAlgorithm(Named):
    HMAC_MD5 = 1
    HMAC_SHA = 2
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    HMAC_RIPEMD = 8


class EspTransform(Named):
    DES_IV64 = 1
    DES = 2
    TRIPLE_DES = 3         # label 3DES
    RC5 = 4
    IDEA = 5
    CAST = 6
    BLOWFISH = 7
    TRIPLE_IDEA = 8        # label 3IDEA
    DES_IV32 = 9
    RC4 = 10
    NULL = 11
    AES = 12
    AES_CTR = 13           # RFC 3686
    AES_CCM_8 = 14         # RFC 4309
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18         # RFC 4106
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    SEED_CBC = 21
    CAMELLIA = 22
    AES_GMAC = 23          # RFC 4543 (NULL_AUTH_AES_GMAC)
    AES_MARS = 249
    AES_RC6 = 250
    AES_RIJNDAEL = 251
    AES_SERPENT = 252
    AES_TWOFISH = 253


class AhTransform(Named):
    MD5 = 2
    SHA = 3
    DES = 4
    SHA2_256 = 5
    SHA2_384 = 6
    SHA2_512 = 7
    RIPEMD = 8


class IpcompTransform(Named):
    OUI = 1
    DEFLATE = 2
    LZS = 3
    V42BIS = 4


class IdType(Named):
    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_RANGE = 7
    IPV6_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class CertEncoding(Named):
    NONE = 0
    PKCS7 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIG = 4
    X509_KE = 5
    KERBEROS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTR = 10
    KEYNOTE = 11           # isakmpd's private use


# --- Mode-config / XAUTH (draft-ietf-ipsec-isakmp-mode-cfg-05) ------------

class CfgMessageType(Named):
    REQUEST = 1
    REPLY = 2
    SET = 3
    ACK = 4


class CfgAttr(Named):
    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_ADDRESS_EXPIRY = 5
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_NETMASK = 9
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_NBNS = 11
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    # draft-beaulieu-ike-xauth-02 §6
    XAUTH_TYPE = 16520
    XAUTH_USER_NAME = 16521
    XAUTH_USER_PASSWORD = 16522
    XAUTH_PASSCODE = 16523
    XAUTH_MESSAGE = 16524
    XAUTH_CHALLENGE = 16525
    XAUTH_DOMAIN = 16526
    XAUTH_STATUS = 16527
    XAUTH_NEXT_PIN = 16528
    XAUTH_ANSWER = 16529
    # Cisco Unity extensions, as sent by "Cisco IPsec" clients
    UNITY_BANNER = 28672
    UNITY_SAVE_PASSWD = 28673
    UNITY_DEF_DOMAIN = 28674
    UNITY_SPLITDNS_NAME = 28675
    UNITY_SPLIT_INCLUDE = 28676
    UNITY_NATT_PORT = 28677
    UNITY_LOCAL_LAN = 28678
    UNITY_PFS = 28679
    UNITY_FW_TYPE = 28680
    UNITY_BACKUP_SERVERS = 28681
    UNITY_DDNS_HOSTNAME = 28682


# --- Vendor IDs ------------------------------------------------------------

def _md5(text: bytes) -> bytes:
    return hashlib.md5(text).digest()


# NAT-T capability VIDs, in the order isakmpd sends them (RFC 3947 §3.1 and drafts).
VID_NAT_T_DRAFT_02 = _md5(b"draft-ietf-ipsec-nat-t-ike-02\n")
VID_NAT_T_DRAFT_03 = _md5(b"draft-ietf-ipsec-nat-t-ike-03")
VID_NAT_T_RFC3947 = _md5(b"RFC 3947")
NAT_T_VIDS = (VID_NAT_T_DRAFT_02, VID_NAT_T_DRAFT_03, VID_NAT_T_RFC3947)
# RFC 3706 §5.1: DPD capability, version 1.0.
VID_DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
# What OpenBSD's isakmpd sends (vendor.c): MD5 of "OpenBSD-6.3".
VID_OPENBSD = _md5(b"OpenBSD-6.3")
