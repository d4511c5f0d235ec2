"""The XFRM kernel provider: SAs and policies into Linux over NETLINK_XFRM (pyroute2).

Owns :class:`XfrmKernel`, the :class:`~isakmpd.kernel.interface.IKernel` provider for
a real Linux kernel, the XFRM netlink message and attribute classes it sends and
reads (built on pyroute2's ``nlmsg``/``nla``; pyroute2 has none for XFRM), and
:class:`XfrmSocket`, the synchronous request/answer channel: a plain
``AF_NETLINK``/``NETLINK_XFRM`` socket, not pyroute2's ``NetlinkSocket`` (which in
0.9 runs its own asyncio event loop for every call), with the extended ACK turned
on so the kernel's own error text reaches the log. It also owns the daemon's
kernel-facing socket work: the IKE sockets' IPsec bypass and the reader of the
kernel's events (given the reactor; it never imports the global one).

The struct layouts follow ``include/uapi/linux/xfrm.h`` as compiled on x86-64 (the
sizes and offsets were checked against that header with ``offsetof``/``sizeof``):
xfrm_selector 56 bytes, xfrm_id 24, xfrm_lifetime_cfg 64, xfrm_lifetime_cur 32,
xfrm_usersa_info 224, xfrm_usersa_id 24, xfrm_userspi_info 232,
xfrm_userpolicy_info 168, xfrm_userpolicy_id 64, xfrm_user_tmpl 64, xfrm_algo 68
(+ key), xfrm_algo_auth and xfrm_algo_aead 72 (+ key), xfrm_encap_tmpl 24,
xfrm_user_acquire 280, xfrm_user_expire 232.
pyroute2 packs field by field without C alignment, so the padding is explicit.

What exists:

* SPIs: XFRM_MSG_ALLOCSPI (a larval state the kernel drops after its acquire
  timeout, ``net.core.xfrm_acq_expires``); ``release_spi`` deletes it.
* SAs: ESP (encryption + HMAC, or AEAD) and AH; the algorithm names of the issue's
  list (:data:`ENCRYPTION`, :data:`AUTHENTICATION`); tunnel and transport mode;
  hard lifetimes as negotiated with soft ones at 90 % (inventory §3.2); the replay
  window (up to 255, the 8-bit field; larger ones would need XFRMA_REPLAY_ESN_VAL
  and are refused); ESP-in-UDP (XFRMA_ENCAP, UDP_ENCAP_ESPINUDP). An inbound SA
  whose SPI we allocated replaces its larval state (XFRM_MSG_UPDSA), every other SA
  is new (XFRM_MSG_NEWSA), as is one whose larval state lapsed before the exchange
  ended; an outbound SA that answers an ACQUIRE carries its seq, so the kernel
  replaces its larval acquire state with it. ``update_sa`` sends XFRM_MSG_UPDSA
  when only the encapsulation ports changed, otherwise reads the SA's replay state
  and counters (XFRM_MSG_GETAE), deletes it and adds it again with them.
* Policies: XFRM_MSG_UPDPOLICY (creates or replaces) and XFRM_MSG_DELPOLICY for
  out, in and fwd, with protocol and port selectors and one template (protocol,
  mode, reqid, tunnel endpoints).
* Every netlink error becomes a KernelError saying what was refused and why, with
  the kernel's extended-ack text when it sends one.

* The IKE sockets' bypass: :func:`prepare_ike_socket` (the UDP transport's
  ``prepare_socket``) sets IP_XFRM_POLICY/IPV6_XFRM_POLICY allow policies for in
  and out, and UDP_ENCAP_ESPINUDP on the NAT-T socket (IPv6 too where the kernel
  can; only a warning where it cannot).
* Kernel events: :class:`XfrmEventReader`, a Twisted ``IReadDescriptor`` on a
  second, non-blocking NETLINK_XFRM socket bound to XFRMNLGRP_ACQUIRE and
  XFRMNLGRP_EXPIRE; the reactor passed to it reads it (no thread) and
  :func:`decode_events` turns XFRM_MSG_ACQUIRE / XFRM_MSG_EXPIRE into
  :class:`AcquireEvent` (the packet's and the policy's selectors, the template, the
  seq) / :class:`ExpireEvent` (with the SA's byte counter) for a callback. Larval states
  (ALLOCSPI's and the kernel's own acquire states) send a hard EXPIRE when
  ``net.core.xfrm_acq_expires`` runs out.

The daemon uses this provider without ``-n`` (:mod:`isakmpd.service`: the events go
to the engine; at shutdown the engine removes its SAs and policies one by one from
its records, never with a flush).

* IPComp (RFC 3173) as strongSwan's kernel-netlink installs it: CPIs from ALLOCSPI
  with IPPROTO_COMP and the range 256..61439 (the 2-byte CPI sits in the low half
  of the SPI field); the IPComp SA with XFRMA_ALG_COMP (``deflate`` or ``lzs``, no
  key), no replay window, in the bundle's mode, the ESP/AH SA in transport mode
  inside it; policies of a bundle carry two templates, IPComp first (the mode and
  the tunnel endpoints; optional on in and fwd so that packets the peer sent
  uncompressed, which the kernel receives through the IPIP tunnel state its
  ipcomp module adds, pass) and then ESP/AH in transport mode.
On this machine's kernel (XFRM without ESP or AH) only ALLOCSPI, policies, deletes,
the socket bypass and the ACQUIRE/EXPIRE events are proven; installing a full SA is
tested against a recorded fake socket (the messages) and against the kernel only
for its refusal.

This and :mod:`isakmpd.kernel.addresses` are the only modules importing pyroute2.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, nla, nlmsg
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from isakmpd import debug
from isakmpd.debug import DebugClass
from isakmpd.kernel.interface import IKernel, KernelError, KernelFlow, KernelSA
from isakmpd.wire import addresses
from isakmpd.wire.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransform,
    IpcompTransform,
    ProtocolId,
)

__all__ = [
    "AUTHENTICATION",
    "ENCRYPTION",
    "AcquireEvent",
    "ExpireEvent",
    "KernelEvent",
    "XfrmEventReader",
    "XfrmKernel",
    "XfrmSocket",
    "bypass_policy",
    "decode_events",
    "prepare_ike_socket",
    "xfrm_aevent_id",
    "xfrm_user_acquire",
    "xfrm_user_expire",
    "xfrm_userpolicy_id",
    "xfrm_userpolicy_info",
    "xfrm_usersa_id",
    "xfrm_usersa_info",
    "xfrm_userspi_info",
]

NETLINK_XFRM = 6                 # <linux/netlink.h>
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

# <linux/xfrm.h> message types
XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_ALLOCSPI = 0x16
XFRM_MSG_ACQUIRE = 0x17
XFRM_MSG_EXPIRE = 0x18
XFRM_MSG_UPDPOLICY = 0x19
XFRM_MSG_UPDSA = 0x1A
XFRM_MSG_NEWAE = 0x1E
XFRM_MSG_GETAE = 0x1F
XFRM_AE_RVAL = 1                 # xfrm_aevent_id.flags: the replay state
XFRM_AE_LVAL = 2                 # ... and the current lifetime

XFRM_MODE_TRANSPORT = 0
XFRM_MODE_TUNNEL = 1
XFRM_POLICY_IN = 0
XFRM_POLICY_OUT = 1
XFRM_POLICY_FWD = 2
XFRM_POLICY_ALLOW = 0
XFRM_INF = 0xFFFFFFFFFFFFFFFF
UDP_ENCAP_ESPINUDP = 2           # <linux/udp.h>, RFC 3948
SOL_UDP = 17
UDP_ENCAP = 100                  # <linux/udp.h>
IP_XFRM_POLICY = 17              # <linux/in.h>
IPV6_XFRM_POLICY = 35            # <linux/in6.h>
XFRMNLGRP_ACQUIRE = 1            # <linux/xfrm.h> enum xfrm_nlgroups
XFRMNLGRP_EXPIRE = 2

IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_COMP = 108
CPI_MIN, CPI_MAX = 256, 61439    # RFC 3173 §4.1: the negotiated CPIs

SPI_MIN = 256                    # RFC 4303 §2.1, RFC 4302 §2.4: 1..255 reserved
SPI_MAX = 0xFFFFFFFF
SOFT_PERCENT = 90                # inventory §3.2: soft = 90 % of hard

_CLONE_NEWNET = 0x40000000

# The salt/nonce is part of KernelSA.enc_key already (RFC 3686 §5.1, RFC 4106 §8.1,
# RFC 4543 §3.2) and the kernel takes it at the key's end, so the key goes as it is.
ENCRYPTION: dict[int, tuple[str, int | None]] = {
    EspTransform.TRIPLE_DES: ("cbc(des3_ede)", None),
    EspTransform.CAST: ("cbc(cast5)", None),
    EspTransform.BLOWFISH: ("cbc(blowfish)", None),
    EspTransform.NULL: ("ecb(cipher_null)", None),
    EspTransform.AES: ("cbc(aes)", None),
    EspTransform.AES_CTR: ("rfc3686(ctr(aes))", None),
    EspTransform.AES_GCM_8: ("rfc4106(gcm(aes))", 64),
    EspTransform.AES_GCM_12: ("rfc4106(gcm(aes))", 96),
    EspTransform.AES_GCM_16: ("rfc4106(gcm(aes))", 128),
    EspTransform.AES_GMAC: ("rfc4543(gcm(aes))", 128),
}
"""ESP transform -> (kernel algorithm name, ICV length in bits for AEAD else None)."""

AUTHENTICATION: dict[int, tuple[str, int]] = {
    AuthAlgorithm.HMAC_MD5: ("hmac(md5)", 96),           # RFC 2403
    AuthAlgorithm.HMAC_SHA: ("hmac(sha1)", 96),          # RFC 2404
    AuthAlgorithm.HMAC_SHA2_256: ("hmac(sha256)", 128),  # RFC 4868 §2.3
    AuthAlgorithm.HMAC_SHA2_384: ("hmac(sha384)", 192),
    AuthAlgorithm.HMAC_SHA2_512: ("hmac(sha512)", 256),
    AuthAlgorithm.HMAC_RIPEMD: ("hmac(rmd160)", 96),     # RFC 2857
}
"""AUTHENTICATION_ALGORITHM -> (kernel name, truncation length in bits)."""

COMPRESSION: dict[int, str] = {
    IpcompTransform.DEFLATE: "deflate",           # RFC 2394
    IpcompTransform.LZS: "lzs",                   # RFC 2395
}
"""IPCOMP transform -> kernel compression name (OUI and V42BIS have none)."""

_DIRECTIONS = {"in": XFRM_POLICY_IN, "out": XFRM_POLICY_OUT, "fwd": XFRM_POLICY_FWD}


# -- message and attribute classes ------------------------------------------

def _selector_fields(prefix: str) -> tuple[tuple[str, str], ...]:
    """struct xfrm_selector (56 bytes), each field named ``prefix + name``."""
    return (
        (prefix + "daddr", "16s"),
        (prefix + "saddr", "16s"),
        (prefix + "dport", ">H"),
        (prefix + "dport_mask", ">H"),
        (prefix + "sport", ">H"),
        (prefix + "sport_mask", ">H"),
        (prefix + "family", "H"),
        (prefix + "prefixlen_d", "B"),
        (prefix + "prefixlen_s", "B"),
        (prefix + "proto", "B"),
        (prefix + "_pad", "3x"),
        (prefix + "ifindex", "i"),
        (prefix + "user", "I"),
    )


def _id_fields(prefix: str) -> tuple[tuple[str, str], ...]:
    """struct xfrm_id (24 bytes): daddr, spi (network order, kept as 4 bytes), proto."""
    return ((prefix + "daddr", "16s"), (prefix + "spi", "4s"), (prefix + "proto", "B"),
            (prefix + "_pad", "3x"))


_LIFETIME_CFG_FIELDS = tuple(
    ("lft_" + name, "Q") for name in (
        "soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit",
        "soft_add_expires_seconds", "hard_add_expires_seconds",
        "soft_use_expires_seconds", "hard_use_expires_seconds"))
_LIFETIME_CUR_FIELDS = tuple(
    ("cur_" + name, "Q") for name in ("bytes", "packets", "add_time", "use_time"))

_USERSA_INFO_FIELDS = (
    *_selector_fields("sel_"),
    *_id_fields("id_"),
    ("saddr", "16s"),
    *_LIFETIME_CFG_FIELDS,
    *_LIFETIME_CUR_FIELDS,
    ("stats_replay_window", "I"),
    ("stats_replay", "I"),
    ("stats_integrity_failed", "I"),
    ("seq", "I"),
    ("reqid", "I"),
    ("family", "H"),
    ("mode", "B"),
    ("replay_window", "B"),
    ("flags", "B"),
    ("_pad", "7x"),
)


def _no_limits(msg: nlmsg) -> None:
    """Set the xfrm_lifetime_cfg of *msg* to "no limit".

    The byte and packet limits say so with XFRM_INF, but the four ``*_expires_seconds``
    with 0: the kernel's SA and policy timers (first run one second after the add) add
    the value to a timestamp, so XFRM_INF wraps to "expired a second ago" and the
    kernel deletes the SA or policy with a hard EXPIRE (seen under User-mode Linux:
    every SA died one second after its install). iproute2 and strongSwan leave the
    seconds at 0 too.
    """
    for name, _ in _LIFETIME_CFG_FIELDS:
        msg[name] = 0 if name.endswith("_seconds") else XFRM_INF


def _defaults(fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Zero values for the byte-string fields (pyroute2's default 0 is for numbers)."""
    return {name: b"" for name, fmt in fields if fmt.endswith("s")}


class _zero_bytes:
    """Mixin: byte-string fields default to zeros (pyroute2's default 0 is for numbers)."""

    fields: tuple[tuple[str, str], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.defaults = _defaults(cls.fields)


class _nla(_zero_bytes, nla):
    """An XFRM attribute with fixed fields."""


class _algo_base(_nla):
    """An algorithm attribute: fixed fields, then the key (``alg_key``, bytes)."""

    fields: tuple[tuple[str, str], ...] = ()

    def ft_encode(self, offset: int) -> tuple[int, int]:
        offset, diff = super().ft_encode(offset)
        key = bytes(self.get("alg_key") or b"")
        self.data.extend(key)
        return offset + len(key), diff

    def ft_decode(self, offset: int) -> None:
        super().ft_decode(offset)
        fixed = struct.calcsize("=" + "".join(fmt for _, fmt in self.fields))
        start = offset + fixed
        self["alg_key"] = bytes(self.data[start:self.offset + self.length])
        self["alg_name"] = self["alg_name"].rstrip(b"\0").decode("ascii", "replace")


class _xfrm_attributes(_zero_bytes):
    """The XFRMA_* attributes this provider sends or reads, shared by the messages."""

    nla_map = (
        (1, "XFRMA_ALG_AUTH", "xfrm_algo"),
        (2, "XFRMA_ALG_CRYPT", "xfrm_algo"),
        (3, "XFRMA_ALG_COMP", "xfrm_algo"),
        (4, "XFRMA_ENCAP", "xfrm_encap_tmpl"),
        (5, "XFRMA_TMPL", "xfrm_user_tmpl"),
        (9, "XFRMA_LTIME_VAL", "xfrm_lifetime_cur"),
        (10, "XFRMA_REPLAY_VAL", "xfrm_replay_state"),
        (13, "XFRMA_SRCADDR", "xfrm_address"),
        (18, "XFRMA_ALG_AEAD", "xfrm_algo_aead"),
        (20, "XFRMA_ALG_AUTH_TRUNC", "xfrm_algo_auth"),
    )

    class xfrm_algo(_algo_base):
        """struct xfrm_algo: name, key length in bits, key."""

        fields = (("alg_name", "64s"), ("alg_key_len", "I"))

    class xfrm_algo_auth(_algo_base):
        """struct xfrm_algo_auth: name, key bits, truncation bits, key."""

        fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_trunc_len", "I"))

    class xfrm_algo_aead(_algo_base):
        """struct xfrm_algo_aead: name, key bits (incl. salt), ICV bits, key."""

        fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_icv_len", "I"))

    class xfrm_encap_tmpl(_nla):
        """struct xfrm_encap_tmpl: UDP encapsulation type and ports, original address."""

        fields = (("encap_type", "H"), ("encap_sport", ">H"), ("encap_dport", ">H"),
                  ("_pad", "2x"), ("encap_oa", "16s"))

    class xfrm_user_tmpl(_nla):
        """One struct xfrm_user_tmpl (a policy's template; only the first is read)."""

        fields = (
            *_id_fields("id_"),
            ("family", "H"),
            ("_pad1", "2x"),
            ("saddr", "16s"),
            ("reqid", "I"),
            ("mode", "B"),
            ("share", "B"),
            ("optional", "B"),
            ("_pad2", "x"),
            ("aalgos", "I"),
            ("ealgos", "I"),
            ("calgos", "I"),
        )

        def ft_encode(self, offset: int) -> tuple[int, int]:
            # A policy's templates are one XFRMA_TMPL holding an array of structs;
            # ``more`` lists the values of the ones after the first (an IPComp bundle).
            offset, diff = super().ft_encode(offset)
            extra = b"".join(_pack_template(values) for values in self.get("more") or ())
            self.data.extend(extra)
            return offset + len(extra), diff

    class xfrm_address(_nla):
        """xfrm_address_t (16 bytes; IPv4 in the first 4)."""

        fields = (("addr", "16s"),)

    class xfrm_lifetime_cur(_nla):
        """struct xfrm_lifetime_cur: an SA's byte and packet counters, add/use times."""

        fields = (("bytes", "Q"), ("packets", "Q"), ("add_time", "Q"), ("use_time", "Q"))

    class xfrm_replay_state(_nla):
        """struct xfrm_replay_state: last sequence number sent, highest received, bitmap."""

        fields = (("oseq", "I"), ("seq", "I"), ("bitmap", "I"))


def _pack_template(values: dict[str, Any]) -> bytes:
    """One struct xfrm_user_tmpl (64 bytes) from field values (missing ones 0)."""
    fields = _xfrm_attributes.xfrm_user_tmpl.fields
    fmt = "=" + "".join(f for _, f in fields)
    args = [values.get(name, b"" if f.endswith("s") else 0)
            for name, f in fields if not f.endswith("x")]
    return struct.pack(fmt, *args)


class xfrm_usersa_info(_xfrm_attributes, nlmsg):
    """struct xfrm_usersa_info (NEWSA, UPDSA, and the kernel's SA answers)."""

    fields = _USERSA_INFO_FIELDS


class xfrm_userspi_info(_xfrm_attributes, nlmsg):
    """struct xfrm_userspi_info (ALLOCSPI): an xfrm_usersa_info and the SPI range."""

    fields = (*_USERSA_INFO_FIELDS, ("min", "I"), ("max", "I"))


class xfrm_usersa_id(_xfrm_attributes, nlmsg):
    """struct xfrm_usersa_id (DELSA, GETSA): which SA."""

    fields = (("daddr", "16s"), ("spi", "4s"), ("family", "H"), ("proto", "B"),
              ("_pad", "x"))


class xfrm_aevent_id(_xfrm_attributes, nlmsg):
    """struct xfrm_aevent_id (GETAE, and the kernel's NEWAE answer): an SA's
    xfrm_usersa_id, its source address, which values (XFRM_AE_*) and its reqid."""

    fields = (("daddr", "16s"), ("spi", "4s"), ("family", "H"), ("proto", "B"),
              ("_pad", "x"), ("saddr", "16s"), ("flags", "I"), ("reqid", "I"))


def _policy_fields(prefix: str) -> tuple[tuple[str, str], ...]:
    """struct xfrm_userpolicy_info (168 bytes), each field named ``prefix + name``."""
    return (
        *_selector_fields(prefix + "sel_"),
        *((prefix + name, fmt) for name, fmt in _LIFETIME_CFG_FIELDS),
        *((prefix + name, fmt) for name, fmt in _LIFETIME_CUR_FIELDS),
        (prefix + "priority", "I"),
        (prefix + "index", "I"),
        (prefix + "dir", "B"),
        (prefix + "action", "B"),
        (prefix + "flags", "B"),
        (prefix + "share", "B"),
        (prefix + "_pad", "4x"),
    )


class xfrm_userpolicy_info(_xfrm_attributes, nlmsg):
    """struct xfrm_userpolicy_info (NEWPOLICY, UPDPOLICY, the kernel's answers)."""

    fields = _policy_fields("")


class xfrm_userpolicy_id(_xfrm_attributes, nlmsg):
    """struct xfrm_userpolicy_id (DELPOLICY, GETPOLICY): selector and direction."""

    fields = (*_selector_fields("sel_"), ("index", "I"), ("dir", "B"), ("_pad", "3x"))


class xfrm_user_acquire(_xfrm_attributes, nlmsg):
    """struct xfrm_user_acquire (280 bytes; XFRMNLGRP_ACQUIRE): the SA wanted (id,
    saddr), the packet's selector, the policy that wants it (``pol_*``), then the
    policy's templates as XFRMA_TMPL."""

    fields = (
        *_id_fields("id_"),
        ("saddr", "16s"),
        *_selector_fields("sel_"),
        *_policy_fields("pol_"),
        ("aalgos", "I"),
        ("ealgos", "I"),
        ("calgos", "I"),
        ("seq", "I"),
    )


class xfrm_user_expire(_xfrm_attributes, nlmsg):
    """struct xfrm_user_expire (232 bytes; XFRMNLGRP_EXPIRE): the SA, and whether
    its hard (1) or soft (0) lifetime ran out."""

    fields = (*_USERSA_INFO_FIELDS, ("hard", "B"), ("_pad_hard", "7x"))


ANSWERS: dict[int, type[nlmsg]] = {
    XFRM_MSG_NEWSA: xfrm_usersa_info,
    XFRM_MSG_UPDSA: xfrm_usersa_info,
    XFRM_MSG_NEWPOLICY: xfrm_userpolicy_info,
    XFRM_MSG_UPDPOLICY: xfrm_userpolicy_info,
    XFRM_MSG_NEWAE: xfrm_aevent_id,
}
"""The class of each message type the kernel answers with."""


# -- the socket ---------------------------------------------------------------

class NetlinkRefused(Exception):
    """The kernel answered a request with an error (``errno``, extended-ack ``text``)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.errno = code
        self.text = text


def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join("/run/netns", name), os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"cannot enter network namespace {name}: "
                                f"{os.strerror(code)}")
    finally:
        os.close(fd)


def _open_socket(netns: str | None) -> socket.socket:
    """A NETLINK_XFRM socket, created inside ``netns`` (by name) when given.

    A netlink socket stays in the namespace it was created in, so the calling
    thread enters ``netns`` only for the ``socket()`` call and returns at once.
    """
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        _enter_netns(netns)
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                # Never carry on in the wrong namespace.
                raise OSError(ctypes.get_errno(), "cannot return to the original namespace")
    finally:
        os.close(home)


class XfrmSocket:
    """Synchronous XFRM requests: send one message, read its answers and the ACK."""

    def __init__(self, netns: str | None = None) -> None:
        self._sock = _open_socket(netns)
        try:
            self._sock.bind((0, 0))
            for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                try:
                    self._sock.setsockopt(SOL_NETLINK, option, 1)
                except OSError:
                    pass          # old kernels: errors then come without text
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def request(self, msg: nlmsg, msg_type: int, flags: int = 0) -> list[nlmsg]:
        """Send ``msg`` as ``msg_type`` and return the kernel's answers (decoded).

        Raises :class:`NetlinkRefused` when the kernel answers with an error.
        """
        self._seq = self._seq % 0x7FFFFFFF + 1
        seq = self._seq
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = seq
        msg["header"]["pid"] = 0
        msg.encode()
        self._sock.send(bytes(msg.data))
        answers: list[nlmsg] = []
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, mflags, mseq, _ = struct.unpack_from("=IHHII", data, offset)
                if length < 16:
                    break
                chunk = data[offset:offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue          # a late answer to an earlier request
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", chunk, 16)
                    if code == 0:
                        return answers
                    raise NetlinkRefused(-code, _ext_ack_text(chunk, mflags))
                if kind == NLMSG_DONE:
                    return answers
                cls = ANSWERS.get(kind)
                if cls is not None:
                    answer = cls(chunk)
                    answer.decode()
                    answers.append(answer)


def _ext_ack_text(chunk: bytes, flags: int) -> str:
    """The NLMSGERR_ATTR_MSG text of an error message, or ''."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    # nlmsghdr, int error, then the request's nlmsghdr (NETLINK_CAP_ACK: no payload)
    offset = 16 + 4 + 16
    while offset + 4 <= len(chunk):
        length, kind = struct.unpack_from("=HH", chunk, offset)
        if length < 4:
            break
        if kind & 0x3FFF == NLMSGERR_ATTR_MSG:
            return chunk[offset + 4:offset + length].rstrip(b"\0").decode("utf-8", "replace")
        offset += (length + 3) & ~3
    return ""


# -- helpers ------------------------------------------------------------------

def _ip(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return addresses.ip(text)
    except ValueError:
        raise KernelError(f"{what} {text!r} is not a numeric IP address") from None


def _xaddr(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """xfrm_address_t: the address's bytes, zero-filled to 16."""
    return address.packed.ljust(16, b"\0")


def _family(address: ipaddress.IPv4Address | ipaddress.IPv6Address
            | ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _ipproto(protocol: int) -> int:
    if protocol == ProtocolId.IPSEC_ESP:
        return IPPROTO_ESP
    if protocol == ProtocolId.IPSEC_AH:
        return IPPROTO_AH
    if protocol == ProtocolId.IPCOMP:
        return IPPROTO_COMP
    raise KernelError(f"protocol {ProtocolId.describe(protocol)} is not supported by the "
                      "XFRM provider (only IPSEC_ESP, IPSEC_AH and IPCOMP)")


def _label(protocol: int) -> str:
    if protocol == ProtocolId.IPCOMP:
        return "IPCOMP"
    return "ESP" if protocol == ProtocolId.IPSEC_ESP else "AH"


def _spi(spi: bytes) -> bytes:
    if not isinstance(spi, bytes) or len(spi) != 4:
        raise KernelError(f"an SPI must be 4 bytes, got {spi!r}")
    return spi


def _mode(mode: int) -> int:
    if mode == EncapsulationMode.TUNNEL:
        return XFRM_MODE_TUNNEL
    if mode == EncapsulationMode.TRANSPORT:
        return XFRM_MODE_TRANSPORT
    raise KernelError(f"mode must be TUNNEL or TRANSPORT, not "
                      f"{EncapsulationMode.describe(mode)} (NAT-T is said by encap)")


def _reason(code: int, protocol: int | None, family: int | None) -> str:
    """Words for a netlink errno, for people."""
    if code == errno.EPROTONOSUPPORT and protocol is not None:
        label = _label(protocol)
        option = f"CONFIG_INET{'6' if family == socket.AF_INET6 else ''}_{label}"
        return f"this kernel has no {label} support ({option})"
    words = {
        errno.EEXIST: "it already exists",
        errno.ENOENT: "there is no such entry",
        errno.ESRCH: "there is no such entry",
        errno.EINVAL: "the kernel found the request invalid",
        errno.ENOSYS: "the kernel lacks the algorithm (its crypto module is not available)",
        errno.EPERM: "not permitted (CAP_NET_ADMIN is needed)",
        errno.ENOMEM: "the kernel is out of memory",
        errno.EAFNOSUPPORT: "this kernel does not support that address family here",
    }
    return words.get(code, os.strerror(code))


def _compression(sa: KernelSA) -> dict[str, Any]:
    """The XFRMA_ALG_COMP value of an IPComp SA (RFC 3173): the name, no key."""
    name = COMPRESSION.get(sa.comp_transform) if sa.comp_transform is not None else None
    if name is None:
        what = ("no compression transform" if sa.comp_transform is None
                else IpcompTransform.describe(sa.comp_transform))
        raise KernelError(f"the kernel has no algorithm for IPCOMP SA {sa.describe()}: "
                          f"{what} (Linux compresses with DEFLATE and LZS)")
    if sa.auth_algorithm is not None or sa.enc_transform is not None:
        raise KernelError(f"IPCOMP SA {sa.describe()} must not have cipher or "
                          "authentication algorithms")
    return {"alg_name": name.encode(), "alg_key_len": 0, "alg_key": b""}


def _policy_priority(src: ipaddress.IPv4Network | ipaddress.IPv6Network,
                     dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
                     protocol: int, ports: bool) -> int:
    """A lower value wins: longer prefixes, then a protocol, then ports, come first."""
    unset = 2 * src.max_prefixlen - src.prefixlen - dst.prefixlen
    return 0x2000 + unset * 4 + (0 if protocol else 2) + (0 if ports else 1)


# -- the provider -------------------------------------------------------------

Requester = Callable[[nlmsg, int, int], list[nlmsg]]


@implementer(IKernel)
class XfrmKernel:
    """SAs and policies in the Linux kernel through XFRM netlink requests.

    ``netns`` names a network namespace (``ip netns``) to work in; ``request``
    replaces the socket (tests record the messages with it).
    """

    log = Logger()

    def __init__(self, netns: str | None = None, *, request: Requester | None = None,
                 first_reqid: int = 1) -> None:
        self._socket: XfrmSocket | None = None
        if request is None:
            try:
                self._socket = XfrmSocket(netns)
            except OSError as error:
                raise KernelError(f"cannot open the kernel's XFRM netlink socket: "
                                  f"{error.strerror or error}") from None
            request = self._socket.request
        self._request = request
        self._reserved: set[tuple[int, bytes, str]] = set()
        self._next_reqid = first_reqid

    def close(self) -> None:
        """Close the netlink socket (nothing installed is removed)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, msg: nlmsg, msg_type: int, flags: int, what: str,
              protocol: int | None = None, family: int | None = None,
              subject: str = "") -> list[nlmsg]:
        try:
            return self._request(msg, msg_type, flags)
        except NetlinkRefused as refused:
            raise self._refusal(refused, what, protocol, family, subject) from None
        except OSError as error:
            raise KernelError(f"cannot ask the kernel to {what}: "
                              f"{error.strerror or error}") from None

    @staticmethod
    def _refusal(refused: NetlinkRefused, what: str, protocol: int | None,
                 family: int | None, subject: str) -> KernelError:
        reason = _reason(refused.errno, protocol, family)
        if refused.text:
            reason += f" (kernel: {refused.text})"
        if subject:
            reason += f"; {subject}"
        return KernelError(f"kernel refused {what}: {reason}")

    # -- SPIs and SAs -------------------------------------------------------

    def allocate_spi(self, protocol: ProtocolId, src: str, dst: str) -> bytes:
        proto = _ipproto(protocol)
        source, dest = _ip(src, "source"), _ip(dst, "destination")
        if source.version != dest.version:
            raise KernelError(f"SPI for {src} -> {dst} mixes IPv4 and IPv6")
        family = _family(dest)
        msg = xfrm_userspi_info()
        msg["id_daddr"] = _xaddr(dest)
        msg["id_proto"] = proto
        msg["saddr"] = _xaddr(source)
        msg["family"] = family
        msg["sel_family"] = family
        ipcomp = protocol == ProtocolId.IPCOMP
        msg["min"] = CPI_MIN if ipcomp else SPI_MIN
        msg["max"] = CPI_MAX if ipcomp else SPI_MAX
        what = f"to allocate an {_label(protocol)} SPI for {src} -> {dst}"
        answers = self._send(msg, XFRM_MSG_ALLOCSPI, 0, what, protocol, family)
        if not answers:
            raise KernelError(f"kernel sent no SPI when asked {what}")
        spi = bytes(answers[0]["id_spi"])
        self._reserved.add((proto, spi, dest.compressed))
        if debug.enabled(DebugClass.SYSDEP, 50):
            self.log.debug("allocated {protocol} SPI 0x{spi} for {src} -> {dst}",
                           protocol=_label(protocol), spi=spi.hex(), src=src, dst=dst)
        return spi

    def _sa_id(self, protocol: int, spi: bytes, dst: str) -> tuple[xfrm_usersa_id, int]:
        dest = _ip(dst, "destination")
        msg = xfrm_usersa_id()
        msg["daddr"] = _xaddr(dest)
        msg["spi"] = _spi(spi)
        msg["family"] = _family(dest)
        msg["proto"] = _ipproto(protocol)
        return msg, msg["family"]

    def release_spi(self, protocol: ProtocolId, spi: bytes, dst: str) -> None:
        proto = _ipproto(protocol)
        key = (proto, _spi(spi), _ip(dst, "destination").compressed)
        if key not in self._reserved:
            raise KernelError(f"no reserved {_label(protocol)} SPI 0x{spi.hex()} to {key[2]}")
        self._reserved.discard(key)
        msg, family = self._sa_id(protocol, spi, dst)
        try:
            self._request(msg, XFRM_MSG_DELSA, 0)
        except NetlinkRefused as refused:
            if refused.errno not in (errno.ENOENT, errno.ESRCH):
                raise KernelError(f"kernel refused to release {_label(protocol)} SPI "
                                  f"0x{spi.hex()} to {key[2]}: "
                                  f"{_reason(refused.errno, protocol, family)}") from None
            # The kernel's acquire timer already dropped the larval state.
        except OSError as error:
            raise KernelError(f"cannot ask the kernel to release SPI 0x{spi.hex()}: "
                              f"{error.strerror or error}") from None
        if debug.enabled(DebugClass.SYSDEP, 50):
            self.log.debug("released {protocol} SPI 0x{spi} to {dst}",
                           protocol=_label(protocol), spi=spi.hex(), dst=key[2])

    def sa_message(self, sa: KernelSA) -> xfrm_usersa_info:
        """The NEWSA/UPDSA message installing ``sa`` (keys included)."""
        proto = _ipproto(sa.protocol)
        source, dest = _ip(sa.src, "source"), _ip(sa.dst, "destination")
        if source.version != dest.version:
            raise KernelError(f"SA {sa.describe()} mixes IPv4 and IPv6")
        family = _family(dest)
        if not 0 <= sa.replay_window <= 255:
            raise KernelError(f"replay window {sa.replay_window} of SA {sa.describe()} is "
                              "above 255, which needs XFRMA_REPLAY_ESN_VAL (not implemented)")
        msg = xfrm_usersa_info()
        # A zero selector of the SA's family matches all traffic; the policies say
        # which traffic uses the SA.
        msg["sel_family"] = family
        msg["id_daddr"] = _xaddr(dest)
        msg["id_spi"] = _spi(sa.spi)
        msg["id_proto"] = proto
        msg["saddr"] = _xaddr(source)
        _no_limits(msg)
        if sa.life_seconds:
            msg["lft_hard_add_expires_seconds"] = sa.life_seconds
            msg["lft_soft_add_expires_seconds"] = max(1, sa.life_seconds * SOFT_PERCENT // 100)
        if sa.life_kilobytes:
            hard = sa.life_kilobytes * 1024
            msg["lft_hard_byte_limit"] = hard
            msg["lft_soft_byte_limit"] = hard * SOFT_PERCENT // 100
        msg["reqid"] = sa.reqid
        if sa.acquire_seq:
            # The kernel replaces its larval acquire state of this seq with this SA.
            msg["seq"] = sa.acquire_seq
        msg["family"] = family
        msg["mode"] = _mode(sa.mode)
        msg["replay_window"] = sa.replay_window
        attrs: list[tuple[str, dict[str, Any]]] = []
        aead = False
        if sa.protocol == ProtocolId.IPSEC_ESP:
            if sa.enc_transform is None:
                raise KernelError(f"ESP SA {sa.describe()} has no encryption transform")
            known = ENCRYPTION.get(sa.enc_transform)
            if known is None:
                raise KernelError(f"the kernel has no algorithm for ESP transform "
                                  f"{EspTransform.describe(sa.enc_transform)}")
            name, icv = known
            key = sa.enc_key
            if icv is not None:
                aead = True
                attrs.append(("XFRMA_ALG_AEAD", {"alg_name": name.encode(),
                                                 "alg_key_len": len(key) * 8,
                                                 "alg_icv_len": icv, "alg_key": key}))
            else:
                attrs.append(("XFRMA_ALG_CRYPT", {"alg_name": name.encode(),
                                                  "alg_key_len": len(key) * 8,
                                                  "alg_key": key}))
        elif sa.protocol == ProtocolId.IPCOMP:
            attrs.append(("XFRMA_ALG_COMP", _compression(sa)))
        elif sa.auth_algorithm is None:
            raise KernelError(f"AH SA {sa.describe()} has no authentication algorithm")
        if sa.auth_algorithm is not None:
            if aead:
                raise KernelError(f"SA {sa.describe()} combines a combined-mode cipher with "
                                  "an authentication algorithm")
            known_auth = AUTHENTICATION.get(sa.auth_algorithm)
            if known_auth is None:
                raise KernelError(f"the kernel has no algorithm for authentication "
                                  f"{AuthAlgorithm.describe(sa.auth_algorithm)}")
            name, trunc = known_auth
            attrs.append(("XFRMA_ALG_AUTH_TRUNC", {"alg_name": name.encode(),
                                                   "alg_key_len": len(sa.auth_key) * 8,
                                                   "alg_trunc_len": trunc,
                                                   "alg_key": sa.auth_key}))
        if sa.encap is not None:
            if sa.protocol != ProtocolId.IPSEC_ESP:
                raise KernelError(f"SA {sa.describe()}: only ESP travels in UDP (RFC 3948)")
            attrs.append(("XFRMA_ENCAP", {"encap_type": UDP_ENCAP_ESPINUDP,
                                          "encap_sport": sa.encap[0],
                                          "encap_dport": sa.encap[1],
                                          "encap_oa": bytes(16)}))
        msg["attrs"] = attrs
        return msg

    def add_sa(self, sa: KernelSA) -> None:
        msg = self.sa_message(sa)
        key = (msg["id_proto"], sa.spi, _ip(sa.dst, "destination").compressed)
        larval = key in self._reserved
        what = f"the {_label(sa.protocol)} SA"
        if larval:
            try:
                self._request(msg, XFRM_MSG_UPDSA, 0)
            except NetlinkRefused as refused:
                if refused.errno != errno.ESRCH:
                    raise self._refusal(refused, what, sa.protocol, msg["family"],
                                        sa.describe()) from None
                # The larval state ALLOCSPI made lapsed (net.core.xfrm_acq_expires,
                # 30 s by default, ran out before the exchange ended): install the SA
                # as a new one; EXCL fails if another SA took the SPI meanwhile.
                self.log.info("the {protocol} SPI 0x{spi} reserved for {dst} lapsed in the "
                              "kernel before the exchange ended (net.core.xfrm_acq_expires);"
                              " installing the SA anew", protocol=_label(sa.protocol),
                              spi=sa.spi.hex(), dst=sa.dst)
                self._send(msg, XFRM_MSG_NEWSA, NLM_F_CREATE | NLM_F_EXCL, what, sa.protocol,
                           msg["family"], sa.describe() + " (its reserved SPI had lapsed)")
            except OSError as error:
                raise KernelError(f"cannot ask the kernel to install {what}: "
                                  f"{error.strerror or error}") from None
            # Installed: no longer a reservation to give back (a refusal keeps it).
            self._reserved.discard(key)
        else:
            self._send(msg, XFRM_MSG_NEWSA, NLM_F_CREATE | NLM_F_EXCL, what, sa.protocol,
                       msg["family"], sa.describe())
        if debug.enabled(DebugClass.SYSDEP, 30):
            self.log.debug("installed SA {sa}", sa=sa)

    def update_sa(self, old: KernelSA, new: KernelSA) -> None:
        if new.protocol != old.protocol or new.spi != old.spi:
            raise KernelError(f"an update of {_label(old.protocol)} SA 0x{old.spi.hex()} "
                              "must keep its protocol and SPI")
        msg = self.sa_message(new)
        same_addresses = (_ip(old.src, "source") == _ip(new.src, "source")
                          and _ip(old.dst, "destination") == _ip(new.dst, "destination"))
        if same_addresses:
            # UPDSA on an installed SA takes the new encapsulation (and lifetimes).
            self._send(msg, XFRM_MSG_UPDSA, 0, f"the update of the {_label(new.protocol)} SA",
                       new.protocol, msg["family"], new.describe())
        else:
            # A new destination is a new SA in XFRM's hash: delete and add it again,
            # carrying its sequence numbers, replay bitmap and counters over (the
            # peer's replay window would drop packets numbered from 1 again, RFC 4303
            # §3.4.3), and its add time, so its lifetimes still count from the start.
            msg["attrs"].extend(self._replay_attributes(old))
            self.delete_sa(old.protocol, old.spi, old.dst)
            self._send(msg, XFRM_MSG_NEWSA, NLM_F_CREATE | NLM_F_EXCL,
                       f"the moved {_label(new.protocol)} SA", new.protocol, msg["family"],
                       new.describe())
        if debug.enabled(DebugClass.SYSDEP, 30):
            self.log.debug("updated SA {sa}", sa=new)

    def _replay_attributes(self, sa: KernelSA) -> list[list[Any]]:
        """XFRMA_REPLAY_VAL and XFRMA_LTIME_VAL of the installed ``sa`` (GETAE), ready
        to be sent with its replacement; [] when the kernel does not give them."""
        msg = xfrm_aevent_id()
        dest = _ip(sa.dst, "destination")
        msg["daddr"] = _xaddr(dest)
        msg["spi"] = _spi(sa.spi)
        msg["family"] = _family(dest)
        msg["proto"] = _ipproto(sa.protocol)
        msg["saddr"] = _xaddr(_ip(sa.src, "source"))
        msg["flags"] = XFRM_AE_RVAL | XFRM_AE_LVAL
        msg["reqid"] = sa.reqid
        try:
            answers = self._send(msg, XFRM_MSG_GETAE, 0,
                                 f"to read the replay state of {_label(sa.protocol)} SA "
                                 f"0x{sa.spi.hex()}", sa.protocol, msg["family"])
        except KernelError as error:
            self.log.info("{error}: its sequence numbers start again at the move",
                          error=error)
            return []
        attrs: list[list[Any]] = []
        for answer in answers[:1]:
            for name in ("XFRMA_REPLAY_VAL", "XFRMA_LTIME_VAL"):
                value = answer.get_attr(name)
                if value is not None:
                    attrs.append([name, {key: value[key] for key, _ in value.fields
                                         if not key.startswith("_")}])
        return attrs

    def delete_sa(self, protocol: ProtocolId, spi: bytes, dst: str) -> None:
        msg, family = self._sa_id(protocol, spi, dst)
        self._send(msg, XFRM_MSG_DELSA, 0,
                   f"to delete {_label(protocol)} SA 0x{spi.hex()} to {dst}", protocol, family)
        self._reserved.discard((msg["proto"], spi, _ip(dst, "destination").compressed))
        if debug.enabled(DebugClass.SYSDEP, 30):
            self.log.debug("deleted {protocol} SA 0x{spi} to {dst}",
                           protocol=_label(protocol), spi=spi.hex(), dst=dst)

    # -- flows ----------------------------------------------------------------

    @staticmethod
    def _selector(msg: nlmsg, flow: KernelFlow) -> tuple[Any, Any]:
        if flow.direction not in _DIRECTIONS:
            raise KernelError(f"flow direction must be one of {', '.join(_DIRECTIONS)}, "
                              f"not {flow.direction!r}")
        try:
            src = addresses.network(flow.src_net)
            dst = addresses.network(flow.dst_net)
        except ValueError:
            raise KernelError(f"flow {flow.describe()} has a selector that is not a network"
                              ) from None
        if src.version != dst.version:
            raise KernelError(f"flow {flow.src_net} -> {flow.dst_net} mixes IPv4 and IPv6")
        msg["sel_daddr"] = _xaddr(dst.network_address)
        msg["sel_saddr"] = _xaddr(src.network_address)
        msg["sel_prefixlen_d"] = dst.prefixlen
        msg["sel_prefixlen_s"] = src.prefixlen
        msg["sel_family"] = _family(src)
        msg["sel_proto"] = flow.protocol
        msg["sel_sport"] = flow.src_port
        msg["sel_sport_mask"] = 0xFFFF if flow.src_port else 0
        msg["sel_dport"] = flow.dst_port
        msg["sel_dport_mask"] = 0xFFFF if flow.dst_port else 0
        msg["dir"] = _DIRECTIONS[flow.direction]
        return src, dst

    def policy_message(self, flow: KernelFlow) -> xfrm_userpolicy_info:
        """The UPDPOLICY message installing ``flow`` with its one template."""
        msg = xfrm_userpolicy_info()
        src, dst = self._selector(msg, flow)
        _no_limits(msg)
        msg["priority"] = _policy_priority(src, dst, flow.protocol,
                                           bool(flow.src_port or flow.dst_port))
        msg["action"] = XFRM_POLICY_ALLOW
        mode = _mode(flow.mode)
        template: dict[str, Any] = {
            "id_proto": _ipproto(flow.protocol_sa),
            "family": _family(src),
            "reqid": flow.reqid,
            "mode": mode,
            "aalgos": 0xFFFFFFFF,
            "ealgos": 0xFFFFFFFF,
            "calgos": 0xFFFFFFFF,
        }
        if mode == XFRM_MODE_TUNNEL:
            if flow.tunnel_src is None or flow.tunnel_dst is None:
                raise KernelError(f"tunnel-mode flow {flow.describe()} needs both tunnel "
                                  "endpoints")
            outer_src = _ip(flow.tunnel_src, "tunnel source")
            outer_dst = _ip(flow.tunnel_dst, "tunnel destination")
            if outer_src.version != outer_dst.version:
                raise KernelError(f"flow {flow.describe()} has tunnel endpoints of two "
                                  "address families")
            template["id_daddr"] = _xaddr(outer_dst)
            template["saddr"] = _xaddr(outer_src)
            template["family"] = _family(outer_dst)
        if flow.ipcomp:
            # IPComp outside (the flow's mode and endpoints), then ESP/AH in
            # transport mode; IPComp optional inbound, where a packet too small to
            # compress arrives without it (RFC 3173 §2.2), as strongSwan does.
            inner = {**template, "mode": XFRM_MODE_TRANSPORT, "id_daddr": b"",
                     "saddr": b"", "family": _family(src)}
            template["id_proto"] = IPPROTO_COMP
            template["optional"] = 0 if flow.direction == "out" else 1
            template["more"] = [inner]
        msg["attrs"] = [("XFRMA_TMPL", template)]
        return msg

    def add_flow(self, flow: KernelFlow) -> None:
        msg = self.policy_message(flow)
        self._send(msg, XFRM_MSG_UPDPOLICY, 0, f"the policy {flow.describe()}",
                   family=msg["sel_family"])
        if debug.enabled(DebugClass.SYSDEP, 30):
            self.log.debug("installed flow {flow}", flow=flow)

    def delete_flow(self, flow: KernelFlow) -> None:
        msg = xfrm_userpolicy_id()
        self._selector(msg, flow)
        self._send(msg, XFRM_MSG_DELPOLICY, 0, f"to delete the policy {flow.describe()}",
                   family=msg["sel_family"])
        if debug.enabled(DebugClass.SYSDEP, 30):
            self.log.debug("deleted flow {flow}", flow=flow)

    def new_reqid(self) -> int:
        reqid = self._next_reqid
        self._next_reqid += 1
        return reqid


# -- the IKE sockets' bypass ------------------------------------------------------

def bypass_policy(direction: int, family: int) -> bytes:
    """A per-socket policy (struct xfrm_userpolicy_info) letting everything pass.

    An ALLOW policy with an empty selector of ``family`` and no template: set with
    IP_XFRM_POLICY/IPV6_XFRM_POLICY it takes precedence over every global policy
    for the socket's traffic in ``direction`` (XFRM_POLICY_IN or _OUT).
    """
    msg = xfrm_userpolicy_info()
    _no_limits(msg)
    msg["sel_family"] = family
    msg["dir"] = direction
    msg["action"] = XFRM_POLICY_ALLOW
    msg.encode()
    return bytes(msg.data)[16:]


def prepare_ike_socket(sock: socket.socket, family: int, nat_t: bool) -> None:
    """Make an IKE UDP socket bypass IPsec; on the NAT-T port also decapsulate ESP.

    Without the bypass a host-to-host policy between us and a peer would catch our
    own IKE traffic (DELETE, DPD, rekeying). The NAT-T socket gets
    UDP_ENCAP_ESPINUDP (RFC 3948): the kernel then takes ESP-in-UDP off it and
    leaves IKE (non-ESP marker) and NAT-keepalives to us. Both need CAP_NET_ADMIN
    (the bypass) or at least a kernel with XFRM; failures raise OSError whose text
    says what failed. An IPv6 socket whose kernel cannot decapsulate ESP-in-UDP
    over IPv6 only gets a warning (IKE still works there).
    """
    if family == socket.AF_INET6:
        level, option, name = socket.IPPROTO_IPV6, IPV6_XFRM_POLICY, "IPV6_XFRM_POLICY"
    else:
        level, option, name = socket.IPPROTO_IP, IP_XFRM_POLICY, "IP_XFRM_POLICY"
    for direction in (XFRM_POLICY_IN, XFRM_POLICY_OUT):
        try:
            sock.setsockopt(level, option, bypass_policy(direction, family))
        except OSError as error:
            code = error.errno or errno.EINVAL
            raise OSError(code, f"cannot make the IKE socket bypass IPsec ({name}): "
                                f"{_reason(code, None, family)}") from None
    if not nat_t:
        return
    try:
        sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
    except OSError as error:
        code = error.errno or errno.EINVAL
        if family == socket.AF_INET6:
            XfrmKernel.log.warn("this kernel cannot decapsulate ESP-in-UDP on IPv6 (UDP_ENCAP "
                                "refused: {reason}); NAT-T SAs over IPv6 will not work",
                                reason=os.strerror(code))
            return
        raise OSError(code, "cannot set UDP_ENCAP_ESPINUDP on the NAT-T socket: "
                            f"{_reason(code, None, family)}") from None


# -- kernel events ------------------------------------------------------------------

@dataclass(frozen=True)
class AcquireEvent:
    """XFRM_MSG_ACQUIRE: an outbound packet matched a policy that has no SA.

    ``src``/``dst``/``protocol``/``src_port``/``dst_port`` select the packet that
    triggered it (host addresses; a port is 0 when the selector has none);
    ``policy_src``/``policy_dst`` are the policy's own selector networks and
    ``policy_index`` its kernel id. ``sa_src``/``sa_dst`` are the SA's endpoints
    (the tunnel endpoints in tunnel mode), ``sa_protocol``, ``mode`` and ``reqid``
    come from the policy's (first) template. ``seq`` is the kernel's acquire
    sequence number. ``policy_protocol``/``policy_src_port``/``policy_dst_port``
    complete the policy's selector (0: any) and ``family`` is its address family
    (4 or 6).
    """

    src: str
    dst: str
    protocol: int
    src_port: int
    dst_port: int
    policy_src: str
    policy_dst: str
    policy_index: int
    policy_direction: str
    sa_src: str
    sa_dst: str
    sa_protocol: ProtocolId | None
    mode: EncapsulationMode | None
    reqid: int
    seq: int
    policy_protocol: int = 0
    policy_src_port: int = 0
    policy_dst_port: int = 0
    family: int = 4


@dataclass(frozen=True)
class ExpireEvent:
    """XFRM_MSG_EXPIRE: an SA's soft (``hard`` False) or hard lifetime ran out.

    A hard expiry means the kernel has already deleted the SA. ``spi`` is 4 bytes
    (zero for the kernel's own acquire state). ``bytes_used`` is the SA's byte counter
    (xfrm_lifetime_cur.bytes; None when not known): whether it carried traffic.
    """

    protocol: ProtocolId | None
    spi: bytes
    src: str
    dst: str
    reqid: int
    hard: bool
    bytes_used: int | None = field(default=None, compare=False)


KernelEvent = AcquireEvent | ExpireEvent

_DIRECTION_NAMES = {value: name for name, value in _DIRECTIONS.items()}
_PROTOCOLS = {IPPROTO_ESP: ProtocolId.IPSEC_ESP, IPPROTO_AH: ProtocolId.IPSEC_AH}
_MODES = {XFRM_MODE_TUNNEL: EncapsulationMode.TUNNEL,
          XFRM_MODE_TRANSPORT: EncapsulationMode.TRANSPORT}


def _address_text(data: bytes, family: int) -> str:
    raw = bytes(data)
    return str(ipaddress.ip_address(raw[:4] if family == socket.AF_INET else raw[:16]))


def _network_text(msg: nlmsg, prefix: str) -> tuple[str, str]:
    family = msg[prefix + "family"]
    size = 4 if family == socket.AF_INET else 16
    src = addresses.network_of(bytes(msg[prefix + "saddr"])[:size], msg[prefix + "prefixlen_s"])
    dst = addresses.network_of(bytes(msg[prefix + "daddr"])[:size], msg[prefix + "prefixlen_d"])
    return str(src), str(dst)


def _port(msg: nlmsg, name: str) -> int:
    return msg[name] if msg[name + "_mask"] else 0


def _acquire_event(msg: nlmsg) -> AcquireEvent:
    family = msg["sel_family"]
    src, dst = _network_text(msg, "sel_")
    policy_src, policy_dst = (_network_text(msg, "pol_sel_") if msg["pol_sel_family"]
                              else (src, dst))
    if msg["pol_sel_family"]:
        policy_ports = (msg["pol_sel_proto"], _port(msg, "pol_sel_sport"),
                        _port(msg, "pol_sel_dport"))
    else:
        policy_ports = (msg["sel_proto"], _port(msg, "sel_sport"), _port(msg, "sel_dport"))
    template = msg.get_attr("XFRMA_TMPL")
    if template is not None:
        sa_family = template["family"] or family
        sa_protocol = _PROTOCOLS.get(template["id_proto"])
        mode = _MODES.get(template["mode"])
        reqid = template["reqid"]
    else:
        sa_family, sa_protocol, mode, reqid = family, _PROTOCOLS.get(msg["id_proto"]), None, 0
    return AcquireEvent(
        src=src.split("/")[0] if src.endswith(("/32", "/128")) else src,
        dst=dst.split("/")[0] if dst.endswith(("/32", "/128")) else dst,
        protocol=msg["sel_proto"],
        src_port=_port(msg, "sel_sport"), dst_port=_port(msg, "sel_dport"),
        policy_src=policy_src, policy_dst=policy_dst,
        policy_index=msg["pol_index"],
        policy_direction=_DIRECTION_NAMES.get(msg["pol_dir"], str(msg["pol_dir"])),
        sa_src=_address_text(msg["saddr"], sa_family),
        sa_dst=_address_text(msg["id_daddr"], sa_family),
        sa_protocol=sa_protocol, mode=mode, reqid=reqid, seq=msg["seq"],
        policy_protocol=policy_ports[0], policy_src_port=policy_ports[1],
        policy_dst_port=policy_ports[2], family=6 if family == socket.AF_INET6 else 4)


def _expire_event(msg: nlmsg) -> ExpireEvent:
    family = msg["family"]
    return ExpireEvent(protocol=_PROTOCOLS.get(msg["id_proto"]), spi=bytes(msg["id_spi"]),
                       src=_address_text(msg["saddr"], family),
                       dst=_address_text(msg["id_daddr"], family),
                       reqid=msg["reqid"], hard=bool(msg["hard"]),
                       bytes_used=msg["cur_bytes"])


_EVENTS: dict[int, tuple[type[nlmsg], Callable[[nlmsg], KernelEvent]]] = {
    XFRM_MSG_ACQUIRE: (xfrm_user_acquire, _acquire_event),
    XFRM_MSG_EXPIRE: (xfrm_user_expire, _expire_event),
}


def decode_events(data: bytes) -> list[KernelEvent]:
    """The ACQUIRE and EXPIRE events in one datagram of the multicast socket.

    Other message types (the groups carry only these two) are skipped; a message
    that cannot be decoded is logged and skipped.
    """
    events: list[KernelEvent] = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16 or offset + length > len(data):
            break
        chunk = data[offset:offset + length]
        offset += (length + 3) & ~3
        known = _EVENTS.get(kind)
        if known is None:
            continue
        cls, convert = known
        try:
            msg = cls(chunk)
            msg.decode()
            events.append(convert(msg))
        except Exception as error:  # noqa: BLE001 - one bad message must not stop the rest
            XfrmKernel.log.error("cannot decode a kernel {kind} message of {size} bytes: "
                                 "{error}", kind=cls.__name__, size=length,
                                 error=f"{type(error).__name__}: {error}")
    return events


@implementer(IReadDescriptor)
class XfrmEventReader:
    """Kernel events (ACQUIRE, EXPIRE) read by the reactor from NETLINK_XFRM.

    A second netlink socket, non-blocking, bound to the XFRMNLGRP_ACQUIRE and
    XFRMNLGRP_EXPIRE multicast groups (binding them needs CAP_NET_ADMIN); the
    reactor (an ``IReactorFDSet``, passed in) calls :meth:`doRead` when it is
    readable and each decoded event goes to ``callback``. No thread is involved.
    ``netns`` names the network namespace to listen in, as for :class:`XfrmKernel`.
    """

    log = Logger()

    def __init__(self, reactor: Any, callback: Callable[[KernelEvent], object],
                 netns: str | None = None) -> None:
        self._reactor = reactor
        self._callback = callback
        try:
            self._sock: socket.socket | None = _open_socket(netns)
        except OSError as error:
            raise KernelError(f"cannot open the kernel's XFRM netlink socket for events: "
                              f"{error.strerror or error}") from None
        groups = (1 << (XFRMNLGRP_ACQUIRE - 1)) | (1 << (XFRMNLGRP_EXPIRE - 1))
        try:
            self._sock.bind((0, groups))
            self._sock.setblocking(False)
        except OSError as error:
            self._sock.close()
            self._sock = None
            code = error.errno or errno.EINVAL
            raise KernelError("cannot listen to the kernel's ACQUIRE and EXPIRE events: "
                              f"{_reason(code, None, None)}") from None
        self._reading = False

    def start(self) -> None:
        """Let the reactor read the socket."""
        if self._sock is not None and not self._reading:
            self._reactor.addReader(self)
            self._reading = True

    def stop(self) -> None:
        """Stop reading and close the socket."""
        if self._reading:
            self._reactor.removeReader(self)
            self._reading = False
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def logPrefix(self) -> str:
        return "XfrmEventReader"

    def connectionLost(self, reason: object) -> None:
        self._reading = False
        self.stop()

    def doRead(self) -> None:
        """Read every datagram waiting, hand each event to the callback."""
        while self._sock is not None:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    # The socket's buffer overflowed: the kernel dropped events.
                    self.log.warn("kernel events were lost: the XFRM event socket's "
                                  "receive buffer overflowed")
                    continue
                self.log.error("reading kernel events failed: {error}", error=error)
                return
            if not data:
                return
            for event in decode_events(data):
                try:
                    self._callback(event)
                except Exception as error:  # noqa: BLE001 - keep reading the other events
                    self.log.failure("handling kernel event {event} failed: {error}",
                                     event=event, error=error)
