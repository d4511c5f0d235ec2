"""Tests for the XFRM provider (isakmpd.kernel.xfrm).

Three parts:

* the message classes, against bytes built by hand with ``struct`` from the layout
  of ``include/uapi/linux/xfrm.h`` (x86-64: the offsets and sizes named in each
  helper were printed with ``offsetof``/``sizeof`` from the installed header), and
  decoding such bytes back;
* :class:`XfrmKernel` over a recording fake socket: which message each call sends,
  the algorithm names, lifetimes, encapsulation, and the words of its errors;
* :class:`XfrmKernel` on this machine's kernel inside a fresh network namespace
  (root and ``ip`` needed): ALLOCSPI, releasing, policies, and the refusal of an
  ESP SA on a kernel without ESP. The namespace is deleted in every path;
* the IKE sockets' bypass (:func:`~isakmpd.kernel.xfrm.prepare_ike_socket` through
  the UDP transport) and the event reader (:class:`~isakmpd.kernel.xfrm.XfrmEventReader`
  on the real reactor) in two namespaces joined by veth (not over loopback: ``lo``
  has ``disable_xfrm`` and ``disable_policy`` set, so no policy applies there).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from isakmpd.kernel import xfrm
from isakmpd.kernel.interface import IKernel, KernelError, KernelFlow, KernelSA
from isakmpd.kernel.xfrm import (
    AcquireEvent,
    ExpireEvent,
    NetlinkRefused,
    XfrmEventReader,
    XfrmKernel,
    prepare_ike_socket,
)
from isakmpd.transport.udp import UdpTransport
from isakmpd.wire.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransform,
    IpcompTransform,
    ProtocolId,
)
from tests.support.netns import Namespace, Topology, need_root_and_tools
from tests.test_transport_udp import RecordingHandler

ESP = ProtocolId.IPSEC_ESP
AH = ProtocolId.IPSEC_AH
IPCOMP = ProtocolId.IPCOMP
TUNNEL = EncapsulationMode.TUNNEL
TRANSPORT = EncapsulationMode.TRANSPORT
INF = 0xFFFFFFFFFFFFFFFF
#: xfrm_lifetime_cfg "no limit": bytes and packets XFRM_INF, the four seconds 0 (XFRM_INF
#: there would expire the SA or policy at the kernel's first timer run, a second in).
NO_LIMITS = (INF, INF, INF, INF, 0, 0, 0, 0)

A = "192.0.2.1"
B = "192.0.2.2"


def v4(text: str) -> bytes:
    return socket.inet_aton(text) + bytes(12)


# -- the uapi layout, by hand -----------------------------------------------------

def selector(daddr: bytes = bytes(16), saddr: bytes = bytes(16), dport: int = 0,
             dmask: int = 0, sport: int = 0, smask: int = 0, family: int = 0,
             plen_d: int = 0, plen_s: int = 0, proto: int = 0) -> bytes:
    """struct xfrm_selector: 56 bytes, family at 40, proto at 44, ifindex at 48."""
    data = (struct.pack("=16s16s", daddr, saddr)
            + struct.pack(">HHHH", dport, dmask, sport, smask)
            + struct.pack("=HBBB3xiI", family, plen_d, plen_s, proto, 0, 0))
    assert len(data) == 56
    return data


def usersa_info(sel: bytes, daddr: bytes, spi: bytes, proto: int, saddr: bytes,
                lft: tuple[int, ...] = (INF,) * 8, reqid: int = 0, family: int = 0,
                mode: int = 0, replay_window: int = 0) -> bytes:
    """struct xfrm_usersa_info: 224 bytes; id at 56, saddr 80, lft 96, curlft 160,
    stats 192, seq 204, reqid 208, family 212, mode 214, replay_window 215, flags 216."""
    data = (sel + struct.pack("=16s4sB3x", daddr, spi, proto) + saddr
            + struct.pack("=8Q", *lft) + bytes(32) + bytes(12)
            + struct.pack("=IIHBBB7x", 0, reqid, family, mode, replay_window, 0))
    assert len(data) == 224
    return data


def nlattr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + bytes(-len(data) % 4)


def body(msg: Any) -> bytes:
    """The encoded message without its 16-byte nlmsghdr."""
    msg.encode()
    data = bytes(msg.data)
    assert struct.unpack_from("=I", data)[0] == len(data)
    return data[16:]


def roundtrip(msg: Any) -> Any:
    """``msg`` encoded and decoded again, as the kernel would read it."""
    msg.encode()
    copy = type(msg)(bytes(msg.data))
    copy.decode()
    return copy


class MessageLayoutTests(SynchronousTestCase):
    """The message classes encode and decode the uapi structures."""

    def test_userspi_info(self) -> None:
        msg = xfrm.xfrm_userspi_info()
        msg["id_daddr"] = v4(B)
        msg["id_proto"] = 50
        msg["saddr"] = v4(A)
        msg["family"] = socket.AF_INET
        msg["sel_family"] = socket.AF_INET
        msg["min"] = 0x100
        msg["max"] = 0xFFFFFFFF
        for name, _ in xfrm._LIFETIME_CFG_FIELDS:
            msg[name] = INF
        expected = usersa_info(selector(family=socket.AF_INET), v4(B), bytes(4), 50, v4(A),
                               family=socket.AF_INET) + struct.pack("=II", 0x100, 0xFFFFFFFF)
        self.assertEqual(len(expected), 232)
        self.assertEqual(body(msg), expected)

    def test_usersa_id(self) -> None:
        msg = xfrm.xfrm_usersa_id()
        msg["daddr"] = v4(B)
        msg["spi"] = bytes.fromhex("c0ffee01")
        msg["family"] = socket.AF_INET
        msg["proto"] = 51
        # struct xfrm_usersa_id: 24 bytes, family at 20, proto at 22.
        self.assertEqual(body(msg), struct.pack("=16s4sHBx", v4(B), bytes.fromhex("c0ffee01"),
                                                socket.AF_INET, 51))

    def test_userpolicy_id(self) -> None:
        msg = xfrm.xfrm_userpolicy_id()
        msg["sel_daddr"] = v4("203.0.113.0")
        msg["sel_prefixlen_d"] = 24
        msg["sel_dport"] = 443
        msg["sel_dport_mask"] = 0xFFFF
        msg["sel_family"] = socket.AF_INET
        msg["sel_proto"] = 6
        msg["dir"] = 2
        # struct xfrm_userpolicy_id: 64 bytes, index at 56, dir at 60.
        expected = selector(daddr=v4("203.0.113.0"), dport=443, dmask=0xFFFF,
                            family=socket.AF_INET, plen_d=24, proto=6) + struct.pack("=IB3x", 0, 2)
        self.assertEqual(body(msg), expected)

    def test_policy_with_template(self) -> None:
        kernel = XfrmKernel(request=Recorder())
        flow = KernelFlow("198.51.100.0/24", "203.0.113.7", protocol=17, src_port=500,
                          direction="out", protocol_sa=ESP, mode=TUNNEL, tunnel_src=A,
                          tunnel_dst=B, reqid=7)
        data = body(kernel.policy_message(flow))
        sel = selector(daddr=v4("203.0.113.7"), saddr=v4("198.51.100.0"), sport=500,
                       smask=0xFFFF, family=socket.AF_INET, plen_d=32, plen_s=24, proto=17)
        priority = 0x2000 + (64 - 24 - 32) * 4
        # struct xfrm_userpolicy_info: 168 bytes; lft at 56, priority 152, dir 160.
        info = sel + struct.pack("=8Q", *NO_LIMITS) + bytes(32) + struct.pack(
            "=IIBBBB4x", priority, 0, 1, 0, 0, 0)
        # struct xfrm_user_tmpl: 64 bytes; family at 24, saddr 28, reqid 44, mode 48,
        # aalgos 52.
        tmpl = struct.pack("=16s4sB3xH2x16sIBBBxIII", v4(B), bytes(4), 50, socket.AF_INET,
                           v4(A), 7, 1, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        self.assertEqual(len(tmpl), 64)
        self.assertEqual(data, info + nlattr(5, tmpl))

    def test_sa_attributes(self) -> None:
        kernel = XfrmKernel(request=Recorder())
        sa = KernelSA(ESP, b"\x00\x00\x12\x34", A, B, TRANSPORT, EspTransform.AES, b"k" * 16,
                      AuthAlgorithm.HMAC_SHA2_256, b"a" * 32, 9, life_seconds=1000,
                      life_kilobytes=10, replay_window=32, encap=(4500, 4501))
        data = body(kernel.sa_message(sa))
        lft = (10 * 1024 * 90 // 100, 10240, INF, INF, 900, 1000, 0, 0)
        info = usersa_info(selector(family=socket.AF_INET), v4(B), b"\x00\x00\x12\x34", 50,
                           v4(A), lft=lft, reqid=9, family=socket.AF_INET, mode=0,
                           replay_window=32)
        crypt = struct.pack("=64sI", b"cbc(aes)", 128) + b"k" * 16          # xfrm_algo: 68
        auth = struct.pack("=64sII", b"hmac(sha256)", 256, 128) + b"a" * 32  # xfrm_algo_auth: 72
        encap = struct.pack("=H", 2) + struct.pack(">HH", 4500, 4501) + bytes(2 + 16)
        self.assertEqual(data, info + nlattr(2, crypt) + nlattr(20, auth) + nlattr(4, encap))

    def test_aead_attribute(self) -> None:
        kernel = XfrmKernel(request=Recorder())
        key = bytes(range(36))       # 256-bit key and the 4-byte salt (RFC 4106 §8.1)
        sa = KernelSA(ESP, b"\x00\x00\x12\x35", A, B, TUNNEL, EspTransform.AES_GCM_16, key,
                      None, b"", 1)
        msg = kernel.sa_message(sa)
        aead = struct.pack("=64sII", b"rfc4106(gcm(aes))", 288, 128) + key
        self.assertTrue(body(msg).endswith(nlattr(18, aead)))
        self.assertEqual(msg["mode"], 1)

    def test_ipcomp_sa(self) -> None:
        """An IPComp SA: proto 108, the CPI in the low half of the SPI, XFRMA_ALG_COMP
        (``deflate``, no key), no replay window (strongSwan's kernel-netlink alike)."""
        kernel = XfrmKernel(request=Recorder())
        sa = KernelSA(IPCOMP, b"\x00\x00\x12\x34", A, B, TUNNEL, None, b"", None, b"", 9,
                      replay_window=0, comp_transform=IpcompTransform.DEFLATE)
        data = body(kernel.sa_message(sa))
        info = usersa_info(selector(family=socket.AF_INET), v4(B), b"\x00\x00\x12\x34", 108,
                           v4(A), lft=NO_LIMITS, reqid=9, family=socket.AF_INET, mode=1)
        comp = struct.pack("=64sI", b"deflate", 0)                          # xfrm_algo: 68
        self.assertEqual(data, info + nlattr(3, comp))
        lzs = KernelSA(IPCOMP, b"\x00\x00\x12\x35", A, B, TRANSPORT, None, b"", None, b"",
                       9, replay_window=0, comp_transform=IpcompTransform.LZS)
        msg = roundtrip(kernel.sa_message(lzs))
        self.assertEqual(msg.get_attr("XFRMA_ALG_COMP")["alg_name"], "lzs")
        self.assertEqual(msg["mode"], 0)

    def test_policy_with_ipcomp_bundle(self) -> None:
        """Two templates in one XFRMA_TMPL: IPComp (tunnel, endpoints, optional
        inbound), then ESP in transport mode without addresses."""
        kernel = XfrmKernel(request=Recorder())
        for direction, optional in (("out", 0), ("in", 1), ("fwd", 1)):
            flow = KernelFlow("198.51.100.0/24", "203.0.113.0/24", direction=direction,
                              protocol_sa=ESP, mode=TUNNEL, tunnel_src=A, tunnel_dst=B,
                              reqid=7, ipcomp=True)
            data = body(kernel.policy_message(flow))
            comp = struct.pack("=16s4sB3xH2x16sIBBBxIII", v4(B), bytes(4), 108,
                               socket.AF_INET, v4(A), 7, 1, 0, optional, 0xFFFFFFFF,
                               0xFFFFFFFF, 0xFFFFFFFF)
            esp = struct.pack("=16s4sB3xH2x16sIBBBxIII", bytes(16), bytes(4), 50,
                              socket.AF_INET, bytes(16), 7, 0, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF,
                              0xFFFFFFFF)
            self.assertTrue(data.endswith(nlattr(5, comp + esp)), direction)
            self.assertEqual(len(data), 168 + 4 + 128)
            self.assertIn("+IPCOMP", flow.describe())

    def test_decode_sa_answer(self) -> None:
        """An SA as the kernel sends it (the ALLOCSPI answer, with XFRMA_SRCADDR)."""
        payload = usersa_info(selector(family=socket.AF_INET), v4(B), b"\xab\xcd\x00\x01",
                              50, v4(A), reqid=3, family=socket.AF_INET, mode=1)
        payload += nlattr(13, v4(A))
        payload += nlattr(2, struct.pack("=64sI", b"cbc(aes)", 128) + b"K" * 16)
        header = struct.pack("=IHHII", 16 + len(payload), xfrm.XFRM_MSG_NEWSA, 0, 5, 0)
        msg = xfrm.xfrm_usersa_info(header + payload)
        msg.decode()
        self.assertEqual(msg["id_spi"], b"\xab\xcd\x00\x01")
        self.assertEqual(msg["id_proto"], 50)
        self.assertEqual(msg["saddr"], v4(A))
        self.assertEqual((msg["reqid"], msg["family"], msg["mode"]), (3, socket.AF_INET, 1))
        self.assertEqual(msg["lft_hard_add_expires_seconds"], INF)
        self.assertEqual(msg.get_attr("XFRMA_SRCADDR")["addr"], v4(A))
        crypt = msg.get_attr("XFRMA_ALG_CRYPT")
        self.assertEqual((crypt["alg_name"], crypt["alg_key_len"], crypt["alg_key"]),
                         ("cbc(aes)", 128, b"K" * 16))


# -- the provider over a recording fake socket --------------------------------------

class Recorder:
    """Stands in for XfrmSocket.request: records the requests, answers as told."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, Any]] = []
        self.answers: list[Any] = []      # per request: a list of messages or an exception

    def __call__(self, msg: Any, msg_type: int, flags: int) -> list[Any]:
        self.sent.append((msg_type, flags, roundtrip(msg)))
        answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, BaseException):
            raise answer
        return answer


def spi_answer(spi: bytes) -> list[Any]:
    msg = xfrm.xfrm_usersa_info()
    msg["id_spi"] = spi
    msg.encode()
    answer = xfrm.xfrm_usersa_info(bytes(msg.data))
    answer.decode()
    return [answer]


def esp_sa(spi: bytes = b"\x00\x00\x40\x00", **kw: Any) -> KernelSA:
    values: dict[str, Any] = {"protocol": ESP, "spi": spi, "src": A, "dst": B, "mode": TUNNEL,
                              "enc_transform": EspTransform.AES, "enc_key": b"k" * 16,
                              "auth_algorithm": AuthAlgorithm.HMAC_SHA, "auth_key": b"a" * 20,
                              "reqid": 1}
    values.update(kw)
    return KernelSA(**values)


class ProviderTests(SynchronousTestCase):
    """XfrmKernel's requests and errors, over a recording fake socket."""

    def setUp(self) -> None:
        self.recorder = Recorder()
        self.kernel = XfrmKernel(request=self.recorder)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IKernel, self.kernel))

    def test_outbound_sa_is_new(self) -> None:
        self.kernel.add_sa(esp_sa())
        [(kind, _, msg)] = self.recorder.sent
        self.assertEqual(kind, xfrm.XFRM_MSG_NEWSA)
        self.assertEqual(msg.get_attr("XFRMA_ALG_CRYPT")["alg_name"], "cbc(aes)")
        auth = msg.get_attr("XFRMA_ALG_AUTH_TRUNC")
        self.assertEqual((auth["alg_name"], auth["alg_trunc_len"]), ("hmac(sha1)", 96))

    def test_outbound_sa_answering_an_acquire_carries_its_seq(self) -> None:
        # xfrm_usersa_info.seq at offset 204, reqid at 208: the kernel replaces its
        # larval acquire state of that seq with this SA (__xfrm_find_acq_byseq).
        data = body(self.kernel.sa_message(esp_sa(acquire_seq=1234, reqid=7)))
        self.assertEqual(struct.unpack_from("=II", data, 204), (1234, 7))
        plain = body(self.kernel.sa_message(esp_sa()))
        self.assertEqual(struct.unpack_from("=I", plain, 204), (0,))
        self.assertIn("for ACQUIRE seq 1234", esp_sa(acquire_seq=1234).describe())

    def test_inbound_sa_updates_its_larval_state(self) -> None:
        self.recorder.answers.append(spi_answer(b"\x01\x02\x03\x04"))
        spi = self.kernel.allocate_spi(ESP, A, B)
        self.assertEqual(spi, b"\x01\x02\x03\x04")
        kind, _, request = self.recorder.sent[0]
        self.assertEqual(kind, xfrm.XFRM_MSG_ALLOCSPI)
        self.assertEqual((request["min"], request["max"]), (256, 0xFFFFFFFF))
        self.kernel.add_sa(esp_sa(spi))
        self.assertEqual(self.recorder.sent[1][0], xfrm.XFRM_MSG_UPDSA)
        # Installed: no longer a reservation to release.
        self.assertRaises(KernelError, self.kernel.release_spi, ESP, spi, B)

    def test_inbound_sa_whose_larval_state_lapsed_is_installed_anew(self) -> None:
        # The exchange outlasted net.core.xfrm_acq_expires: UPDSA finds no larval
        # state (ESRCH, xfrm_state_update), so the SA is added as a new one.
        self.recorder.answers = [spi_answer(b"\0\0\3\0"), NetlinkRefused(errno.ESRCH, ""),
                                 [], spi_answer(b"\0\0\4\0"),
                                 NetlinkRefused(errno.ESRCH, ""), NetlinkRefused(errno.EEXIST, "")]
        spi = self.kernel.allocate_spi(ESP, A, B)
        self.kernel.add_sa(esp_sa(spi))
        kinds = [(kind, flags) for kind, flags, _ in self.recorder.sent[1:]]
        self.assertEqual(kinds, [(xfrm.XFRM_MSG_UPDSA, 0),
                                 (xfrm.XFRM_MSG_NEWSA, xfrm.NLM_F_CREATE | xfrm.NLM_F_EXCL)])
        self.assertEqual(self.recorder.sent[2][2]["id_spi"], spi)
        # Another SA took the SPI meanwhile: the refusal says so.
        spi = self.kernel.allocate_spi(ESP, A, B)
        error = self.assertRaises(KernelError, self.kernel.add_sa, esp_sa(spi))
        self.assertIn("kernel refused the ESP SA: it already exists", str(error))
        self.assertIn("(its reserved SPI had lapsed)", str(error))
        # Any other refusal of the UPDSA is reported as it is, nothing retried.
        self.recorder.answers = [spi_answer(b"\0\0\5\0"), NetlinkRefused(errno.EINVAL, "")]
        spi = self.kernel.allocate_spi(ESP, A, B)
        sent = len(self.recorder.sent)
        error = self.assertRaises(KernelError, self.kernel.add_sa, esp_sa(spi))
        self.assertIn("kernel refused the ESP SA: the kernel found the request invalid",
                      str(error))
        self.assertEqual(len(self.recorder.sent), sent + 1)

    def test_algorithms(self) -> None:
        cases = [
            (EspTransform.TRIPLE_DES, 24, "XFRMA_ALG_CRYPT", "cbc(des3_ede)"),
            (EspTransform.CAST, 16, "XFRMA_ALG_CRYPT", "cbc(cast5)"),
            (EspTransform.BLOWFISH, 16, "XFRMA_ALG_CRYPT", "cbc(blowfish)"),
            (EspTransform.NULL, 0, "XFRMA_ALG_CRYPT", "ecb(cipher_null)"),
            (EspTransform.AES_CTR, 20, "XFRMA_ALG_CRYPT", "rfc3686(ctr(aes))"),
            (EspTransform.AES_GMAC, 20, "XFRMA_ALG_AEAD", "rfc4543(gcm(aes))"),
        ]
        for transform, length, attr, name in cases:
            auth = None if attr == "XFRMA_ALG_AEAD" else AuthAlgorithm.HMAC_MD5
            msg = roundtrip(self.kernel.sa_message(esp_sa(
                enc_transform=transform, enc_key=bytes(length), auth_algorithm=auth)))
            found = msg.get_attr(attr)
            self.assertEqual((found["alg_name"], found["alg_key_len"]), (name, length * 8))
        for algorithm, name, trunc, keylen in [
                (AuthAlgorithm.HMAC_MD5, "hmac(md5)", 96, 16),
                (AuthAlgorithm.HMAC_SHA2_384, "hmac(sha384)", 192, 48),
                (AuthAlgorithm.HMAC_SHA2_512, "hmac(sha512)", 256, 64),
                (AuthAlgorithm.HMAC_RIPEMD, "hmac(rmd160)", 96, 20)]:
            msg = roundtrip(self.kernel.sa_message(KernelSA(
                AH, b"\x00\x00\x40\x01", A, B, TRANSPORT, None, b"", algorithm, bytes(keylen),
                2)))
            self.assertEqual(msg["id_proto"], 51)
            self.assertIsNone(msg.get_attr("XFRMA_ALG_CRYPT"))
            auth = msg.get_attr("XFRMA_ALG_AUTH_TRUNC")
            self.assertEqual((auth["alg_name"], auth["alg_trunc_len"]), (name, trunc))

    def test_refused_sas(self) -> None:
        cases = [
            (esp_sa(enc_transform=EspTransform.DES), "no algorithm for ESP transform DES"),
            (esp_sa(auth_algorithm=AuthAlgorithm.DES_MAC), "authentication DES_MAC"),
            (esp_sa(enc_transform=EspTransform.AES_GCM_16), "combined-mode cipher"),
            (esp_sa(replay_window=1024), "XFRMA_REPLAY_ESN_VAL"),
            (esp_sa(mode=EncapsulationMode.UDP_ENCAP_TUNNEL), "TUNNEL or TRANSPORT"),
            (esp_sa(dst="2001:db8::1"), "mixes IPv4 and IPv6"),
        ]
        for sa, words in cases:
            error = self.assertRaises(KernelError, self.kernel.add_sa, sa)
            self.assertIn(words, str(error))
        self.assertEqual(self.recorder.sent, [])

    def test_kernel_errors_in_words(self) -> None:
        self.recorder.answers = [
            NetlinkRefused(errno.EPROTONOSUPPORT, "Requested type not found"),
            NetlinkRefused(errno.EEXIST, ""),
            NetlinkRefused(errno.ESRCH, ""),
            NetlinkRefused(errno.ENOENT, ""),
            NetlinkRefused(errno.EINVAL, "Invalid selector"),
        ]
        error = self.assertRaises(KernelError, self.kernel.add_sa, esp_sa())
        self.assertTrue(str(error).startswith(
            "kernel refused the ESP SA: this kernel has no ESP support (CONFIG_INET_ESP) "
            "(kernel: Requested type not found); IPSEC_ESP spi 0x00004000"), str(error))
        error = self.assertRaises(KernelError, self.kernel.add_sa, esp_sa())
        self.assertIn("kernel refused the ESP SA: it already exists", str(error))
        error = self.assertRaises(KernelError, self.kernel.delete_sa, ESP, b"\0\0\x40\0", B)
        self.assertEqual(str(error), "kernel refused to delete ESP SA 0x00004000 to "
                                     "192.0.2.2: there is no such entry")
        flow = KernelFlow(A, B, direction="out", protocol_sa=ESP, mode=TRANSPORT,
                          tunnel_src=None, tunnel_dst=None, reqid=1)
        error = self.assertRaises(KernelError, self.kernel.delete_flow, flow)
        self.assertIn("to delete the policy out 192.0.2.1 -> 192.0.2.2", str(error))
        self.assertIn("there is no such entry", str(error))
        error = self.assertRaises(KernelError, self.kernel.add_flow, flow)
        self.assertIn("the kernel found the request invalid (kernel: Invalid selector)",
                      str(error))

    def test_ipv6_esp_unsupported_names_the_ipv6_option(self) -> None:
        self.recorder.answers = [NetlinkRefused(errno.EPROTONOSUPPORT, "")]
        sa = esp_sa(src="2001:db8::1", dst="2001:db8::2")
        error = self.assertRaises(KernelError, self.kernel.add_sa, sa)
        self.assertIn("(CONFIG_INET6_ESP)", str(error))

    def test_update_sa_ports_only(self) -> None:
        old = esp_sa(encap=(4500, 4500))
        new = esp_sa(encap=(4500, 31000))
        self.kernel.update_sa(old, new)
        [(kind, _, msg)] = self.recorder.sent
        self.assertEqual(kind, xfrm.XFRM_MSG_UPDSA)
        self.assertEqual(msg.get_attr("XFRMA_ENCAP")["encap_dport"], 31000)

    def test_update_sa_moved(self) -> None:
        old = esp_sa(encap=(4500, 4500), reqid=9)
        new = esp_sa(dst="192.0.2.3", encap=(4500, 4500), reqid=9)
        # The kernel's NEWAE answer: 1,000 packets sent, the bitmap of received ones.
        answer = xfrm.xfrm_aevent_id()
        answer["attrs"] = [["XFRMA_REPLAY_VAL", {"oseq": 1000, "seq": 998, "bitmap": 7}],
                           ["XFRMA_LTIME_VAL", {"bytes": 123456, "packets": 1000,
                                                "add_time": 1700000000, "use_time": 1700000001}]]
        self.recorder.answers = [[roundtrip(answer)]]
        self.kernel.update_sa(old, new)
        kinds = [kind for kind, _, _ in self.recorder.sent]
        self.assertEqual(kinds, [xfrm.XFRM_MSG_GETAE, xfrm.XFRM_MSG_DELSA, xfrm.XFRM_MSG_NEWSA])
        asked = bytes(self.recorder.sent[0][2].data)[16:]
        # struct xfrm_aevent_id: sa_id (daddr, spi, family, proto), saddr, flags, reqid.
        self.assertEqual(asked, v4(B) + b"\0\0\x40\0" + struct.pack("=HBx", socket.AF_INET,
                                                                      socket.IPPROTO_ESP)
                         + v4(A) + struct.pack("=II", xfrm.XFRM_AE_RVAL | xfrm.XFRM_AE_LVAL, 9))
        self.assertEqual(self.recorder.sent[1][2]["daddr"], v4(B))
        added = self.recorder.sent[2][2]
        self.assertEqual(added["id_daddr"], v4("192.0.2.3"))
        # The moved SA goes on counting where the old one stopped (RFC 4303 §3.4.3).
        replay = added.get_attr("XFRMA_REPLAY_VAL")
        self.assertEqual((replay["oseq"], replay["seq"], replay["bitmap"]), (1000, 998, 7))
        self.assertEqual(added.get_attr("XFRMA_LTIME_VAL")["add_time"], 1700000000)
        self.assertRaises(KernelError, self.kernel.update_sa, old,
                          esp_sa(spi=b"\0\0\0\x01"))

    def test_update_sa_moved_without_replay_state(self) -> None:
        # A kernel that will not say (GETAE refused) still gets the SA moved.
        self.recorder.answers = [NetlinkRefused(errno.ESRCH, "")]
        self.kernel.update_sa(esp_sa(), esp_sa(dst="192.0.2.3"))
        kinds = [kind for kind, _, _ in self.recorder.sent]
        self.assertEqual(kinds, [xfrm.XFRM_MSG_GETAE, xfrm.XFRM_MSG_DELSA, xfrm.XFRM_MSG_NEWSA])
        self.assertIsNone(self.recorder.sent[2][2].get_attr("XFRMA_REPLAY_VAL"))

    def test_release_unknown_spi(self) -> None:
        error = self.assertRaises(KernelError, self.kernel.release_spi, ESP, b"\0\0\1\0", B)
        self.assertIn("no reserved ESP SPI 0x00000100", str(error))
        self.assertEqual(self.recorder.sent, [])

    def test_release_after_kernel_expired_it(self) -> None:
        self.recorder.answers = [spi_answer(b"\0\0\2\0"), NetlinkRefused(errno.ESRCH, "")]
        spi = self.kernel.allocate_spi(ESP, A, B)
        self.kernel.release_spi(ESP, spi, B)       # the larval state was gone: no error
        self.assertEqual(self.recorder.sent[1][0], xfrm.XFRM_MSG_DELSA)

    def test_allocate_cpi(self) -> None:
        self.recorder.answers.append(spi_answer(b"\x00\x00\x01\x2c"))
        cpi = self.kernel.allocate_spi(IPCOMP, A, B)
        self.assertEqual(cpi, b"\x00\x00\x01\x2c")
        kind, _, request = self.recorder.sent[0]
        self.assertEqual(kind, xfrm.XFRM_MSG_ALLOCSPI)
        self.assertEqual((request["id_proto"], request["min"], request["max"]),
                         (108, 256, 61439))          # RFC 3173 §4.1
        sa = KernelSA(IPCOMP, cpi, A, B, TUNNEL, None, b"", None, b"", 1, replay_window=0,
                      comp_transform=IpcompTransform.DEFLATE)
        self.kernel.add_sa(sa)
        self.assertEqual(self.recorder.sent[1][0], xfrm.XFRM_MSG_UPDSA)
        self.kernel.delete_sa(IPCOMP, cpi, B)
        self.assertEqual(self.recorder.sent[2][2]["proto"], 108)

    def test_refused_ipcomp_sas(self) -> None:
        base = {"protocol": IPCOMP, "spi": b"\x00\x00\x01\x00", "src": A, "dst": B,
                "mode": TUNNEL, "enc_transform": None, "enc_key": b"",
                "auth_algorithm": None, "auth_key": b"", "reqid": 1, "replay_window": 0}
        for extra, words in (({"comp_transform": IpcompTransform.V42BIS},
                              "V42BIS (Linux compresses with DEFLATE and LZS)"),
                             ({}, "no compression transform"),
                             ({"comp_transform": IpcompTransform.DEFLATE,
                               "encap": (4500, 4500)}, "only ESP travels in UDP")):
            error = self.assertRaises(KernelError, self.kernel.add_sa,
                                      KernelSA(**{**base, **extra}))
            self.assertIn(words, str(error))
        self.assertEqual(self.recorder.sent, [])

    def test_ipcomp_unsupported_names_the_option(self) -> None:
        self.recorder.answers.append(NetlinkRefused(errno.EPROTONOSUPPORT, ""))
        sa = KernelSA(IPCOMP, b"\x00\x00\x01\x00", A, B, TUNNEL, None, b"", None, b"", 1,
                      replay_window=0, comp_transform=IpcompTransform.DEFLATE)
        error = self.assertRaises(KernelError, self.kernel.add_sa, sa)
        self.assertIn("kernel refused the IPCOMP SA: this kernel has no IPCOMP support "
                      "(CONFIG_INET_IPCOMP)", str(error))

    def test_flows_and_reqids(self) -> None:
        flow = KernelFlow("2001:db8:1::/48", "2001:db8:2::/48", direction="fwd",
                          protocol_sa=ESP, mode=TUNNEL, tunnel_src="2001:db8::1",
                          tunnel_dst="2001:db8::2", reqid=self.kernel.new_reqid())
        self.assertEqual((flow.reqid, self.kernel.new_reqid()), (1, 2))
        self.kernel.add_flow(flow)
        self.kernel.delete_flow(flow)
        (add, _, policy), (delete, _, policy_id) = self.recorder.sent
        self.assertEqual((add, delete), (xfrm.XFRM_MSG_UPDPOLICY, xfrm.XFRM_MSG_DELPOLICY))
        self.assertEqual((policy["dir"], policy_id["dir"]), (2, 2))
        self.assertEqual((policy["sel_family"], policy["sel_prefixlen_s"]),
                         (socket.AF_INET6, 48))
        tmpl = policy.get_attr("XFRMA_TMPL")
        self.assertEqual((tmpl["reqid"], tmpl["mode"], tmpl["family"]), (1, 1, socket.AF_INET6))
        bad = KernelFlow(A, B, direction="sideways", protocol_sa=ESP, mode=TRANSPORT,
                         tunnel_src=None, tunnel_dst=None, reqid=1)
        self.assertRaises(KernelError, self.kernel.add_flow, bad)
        half = KernelFlow(A, B, direction="out", protocol_sa=ESP, mode=TUNNEL,
                          tunnel_src=A, tunnel_dst=None, reqid=1)
        self.assertRaises(KernelError, self.kernel.add_flow, half)


# -- on this machine's kernel -----------------------------------------------------

class KernelNamespaceTests(SynchronousTestCase):
    """XfrmKernel against the real kernel, inside a namespace of its own."""

    def setUp(self) -> None:
        reason = need_root_and_tools()
        if reason is not None:
            raise SkipTest(f"XFRM tests on the kernel: {reason}")
        self.ns: Namespace | None = None
        self.addCleanup(self.assert_namespace_gone)    # runs last
        self.topology = Topology("xfrm")
        self.addCleanup(self.topology.close)
        self.ns = self.topology.add_namespace("k")
        home = os.readlink("/proc/thread-self/ns/net")
        self.kernel = XfrmKernel(self.ns.name)
        # The socket lives in the namespace; this thread is back where it was.
        self.assertEqual(os.readlink("/proc/thread-self/ns/net"), home)
        self.addCleanup(self.kernel.close)

    def assert_namespace_gone(self) -> None:
        if self.ns is not None:
            listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                     check=True).stdout
            self.assertNotIn(self.ns.name, listing)

    def ip(self, *args: str) -> str:
        assert self.ns is not None
        return self.ns.run(["ip", *args]).stdout

    def states(self) -> str:
        return self.ip("xfrm", "state")

    def test_allocate_and_release_spi(self) -> None:
        first = self.kernel.allocate_spi(ESP, A, B)
        second = self.kernel.allocate_spi(ESP, A, B)
        ah = self.kernel.allocate_spi(AH, "2001:db8::1", "2001:db8::2")
        self.assertNotEqual(first, second)
        for spi in (first, second, ah):
            self.assertGreaterEqual(int.from_bytes(spi, "big"), 256)
        states = self.states()
        self.assertIn(f"proto esp spi 0x{first.hex()}", states)
        self.assertIn(f"proto esp spi 0x{second.hex()}", states)
        self.assertIn(f"proto ah spi 0x{ah.hex()}", states)
        self.assertIn(f"src {A} dst {B}", states)
        self.assertIn("src 2001:db8::1 dst 2001:db8::2", states)
        self.kernel.release_spi(ESP, first, B)
        states = self.states()
        self.assertNotIn(f"spi 0x{first.hex()}", states)
        self.assertIn(f"spi 0x{second.hex()}", states)
        self.assertRaises(KernelError, self.kernel.release_spi, ESP, first, B)
        self.kernel.release_spi(ESP, second, B)
        self.kernel.release_spi(AH, ah, "2001:db8::2")
        self.assertEqual(self.states().strip(), "")

    def test_flows(self) -> None:
        reqid = self.kernel.new_reqid()
        common: dict[str, Any] = {"protocol_sa": ESP, "mode": TUNNEL, "reqid": reqid}
        out = KernelFlow("198.51.100.0/24", "203.0.113.0/24", protocol=6, dst_port=80,
                         direction="out", tunnel_src=A, tunnel_dst=B, **common)
        inbound = [KernelFlow("203.0.113.0/24", "198.51.100.0/24", protocol=6, src_port=80,
                              direction=direction, tunnel_src=B, tunnel_dst=A, **common)
                   for direction in ("in", "fwd")]
        host = KernelFlow("2001:db8::1", "2001:db8::2", direction="out", protocol_sa=AH,
                          mode=TRANSPORT, tunnel_src=None, tunnel_dst=None, reqid=reqid + 1)
        for flow in (out, *inbound, host):
            self.kernel.add_flow(flow)
        self.kernel.add_flow(out)          # the same selectors again: replaced, not doubled
        policies = self.ip("xfrm", "policy")
        self.assertEqual(policies.count("dir "), 4, policies)
        self.assertIn("src 198.51.100.0/24 dst 203.0.113.0/24 proto tcp dport 80 \n"
                      "\tdir out priority", policies)
        self.assertIn(f"tmpl src {A} dst {B}\n\t\tproto esp reqid {reqid} mode tunnel",
                      policies)
        for direction in ("in", "fwd"):
            self.assertIn("src 203.0.113.0/24 dst 198.51.100.0/24 proto tcp sport 80 \n"
                          f"\tdir {direction} priority", policies)
        self.assertIn(f"tmpl src {B} dst {A}\n\t\tproto esp reqid {reqid} mode tunnel",
                      policies)
        self.assertIn("src 2001:db8::1/128 dst 2001:db8::2/128 \n\tdir out", policies)
        self.assertIn(f"proto ah reqid {reqid + 1} mode transport", policies)
        self.kernel.delete_flow(inbound[0])
        policies = self.ip("xfrm", "policy")
        self.assertNotIn("dir in ", policies)
        self.assertIn("dir fwd ", policies)
        error = self.assertRaises(KernelError, self.kernel.delete_flow, inbound[0])
        self.assertIn("there is no such entry", str(error))
        for flow in (out, inbound[1], host):
            self.kernel.delete_flow(flow)
        self.assertEqual(self.ip("xfrm", "policy").strip(), "")

    def test_esp_sa_refused_in_words(self) -> None:
        if self.kernel_has_esp():
            raise SkipTest("this kernel has ESP; the refusal cannot be shown here")
        spi = self.kernel.allocate_spi(ESP, B, A)
        for sa in (esp_sa(), esp_sa(spi=spi, src=B, dst=A)):      # NEWSA, then UPDSA
            error = self.assertRaises(KernelError, self.kernel.add_sa, sa)
            self.assertIn("kernel refused the ESP SA: this kernel has no ESP support "
                          "(CONFIG_INET_ESP)", str(error))
        # Nothing new is left behind: only the larval state of the allocated SPI.
        states = self.states()
        self.assertEqual(states.count("proto esp"), 1, states)
        self.assertIn(f"spi 0x{spi.hex()}", states)
        self.assertNotIn("spi 0x00004000", states)
        self.kernel.release_spi(ESP, spi, A)
        self.assertEqual(self.states().strip(), "")

    def test_ipcomp_cpi_state_and_bundle_policy(self) -> None:
        """ALLOCSPI of a CPI is real on any XFRM kernel; the IPComp state installs
        where the kernel has IPComp and is refused in words where it has not."""
        self.ns.run(["modprobe", "-q", "ipcomp"], check=False)     # where modules exist
        cpi = self.kernel.allocate_spi(IPCOMP, B, A)
        value = int.from_bytes(cpi, "big")
        self.assertTrue(256 <= value <= 61439, cpi.hex())
        self.assertIn(f"proto comp spi 0x{cpi.hex()}", self.states())
        sa = KernelSA(IPCOMP, cpi, B, A, TUNNEL, None, b"", None, b"", 5, replay_window=0,
                      comp_transform=IpcompTransform.DEFLATE)
        try:
            self.kernel.add_sa(sa)
        except KernelError as error:
            self.assertIn("kernel refused the IPCOMP SA: this kernel has no IPCOMP support "
                          "(CONFIG_INET_IPCOMP)", str(error))
            installed = False
        else:
            installed = True
            states = self.states()
            self.assertIn(f"proto comp spi 0x{cpi.hex()} reqid 5 mode tunnel", states)
            self.assertIn("comp deflate", states)
        flow = KernelFlow("203.0.113.0/24", "198.51.100.0/24", direction="in",
                          protocol_sa=ESP, mode=TUNNEL, tunnel_src=B, tunnel_dst=A, reqid=5,
                          ipcomp=True)
        self.kernel.add_flow(flow)
        policies = self.ip("xfrm", "policy")
        self.assertIn(f"tmpl src {B} dst {A}\n\t\tproto comp reqid 5 mode tunnel\n"
                      "\t\tlevel use", policies)
        self.assertIn("tmpl src 0.0.0.0 dst 0.0.0.0\n\t\tproto esp reqid 5 mode transport",
                      policies)
        self.kernel.delete_flow(flow)
        if installed:
            self.kernel.delete_sa(IPCOMP, cpi, A)
        else:
            self.kernel.release_spi(IPCOMP, cpi, A)
        self.assertEqual(self.ip("xfrm", "policy").strip(), "")
        # The kernel's ipcomp module adds an IPIP tunnel state with the IPComp SA
        # (xfrm4_tunnel) and drops it with it: nothing of ours is left.
        self.assertNotIn("proto comp", self.states())

    def kernel_has_esp(self) -> bool:
        assert self.ns is not None
        probe = self.ns.run(["ip", "xfrm", "state", "add", "src", A, "dst", B, "proto",
                             "esp", "spi", "0x777", "enc", "cbc(aes)", "0x" + "00" * 16],
                            check=False)
        if probe.returncode == 0:
            self.ns.run(["ip", "xfrm", "state", "flush"])
            return True
        return False


# -- the IKE sockets' bypass and the kernel's events ------------------------------

C4, D4 = "192.0.2.1", "192.0.2.2"
C6, D6 = "2001:db8::1", "2001:db8::2"
DEADLINE = 10.0          # seconds; the kernel answers in milliseconds, a larval state
#                          with xfrm_acq_expires=1 expires within about two seconds


@contextmanager
def inside(ns: Namespace) -> Iterator[None]:
    """Run the block with this thread in ``ns``: sockets made there stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        xfrm._enter_netns(ns.name)
        try:
            yield
        finally:
            if ctypes.CDLL(None, use_errno=True).setns(home, xfrm._CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to the test's namespace")
    finally:
        os.close(home)


def poll(check: Callable[[], Any], what: str) -> defer.Deferred:
    """Fires with ``check()``'s first true result; fails after DEADLINE seconds."""
    deadline = reactor.seconds() + DEADLINE

    def attempt() -> Any:
        result = check()
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"no {what} within {DEADLINE} s")
        return deferLater(reactor, 0.02, attempt)

    return defer.maybeDeferred(attempt)


def xfrm_stat(ns: Namespace, name: str) -> int:
    for line in ns.run(["cat", "/proc/net/xfrm_stat"]).stdout.splitlines():
        key, _, value = line.partition("\t")
        if key.strip() == name:
            return int(value)
    raise AssertionError(f"no {name} in /proc/net/xfrm_stat")


class TwoNamespaces(TestCase):
    """Namespaces c (192.0.2.1, 2001:db8::1) and d (.2, ::2) joined by veth."""

    def setUp(self) -> None:
        reason = need_root_and_tools()
        if reason is not None:
            raise SkipTest(f"XFRM tests on the kernel: {reason}")
        self.topology = Topology("xfrm")
        self.addCleanup(self.topology.close)
        self.c = self.topology.add_namespace("c")
        self.d = self.topology.add_namespace("d")
        self.topology.link(self.c, [f"{C4}/24", f"{C6}/64"], self.d, [f"{D4}/24", f"{D6}/64"])

    def plain_socket(self, ns: Namespace, address: str) -> socket.socket:
        with inside(ns):
            sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                                 socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.setblocking(False)
        sock.bind((address, 0))
        return sock


class BypassNamespaceTests(TwoNamespaces):
    """The daemon's sockets pass host-to-host block policies; others do not."""

    def block_everything(self) -> None:
        """Block policies between the hosts: all IPv4, and all UDP over IPv6 (all
        IPv6 would block neighbour discovery, so nothing could be sent at all)."""
        for ns, me, peer in ((self.c, (C4, C6), (D4, D6)), (self.d, (D4, D6), (C4, C6))):
            for mine, theirs in zip(me, peer, strict=True):
                extra = ["proto", "udp"] if ":" in mine else []
                ns.ip("xfrm", "policy", "add", "src", mine, "dst", theirs, *extra, "dir",
                      "out", "action", "block")
                ns.ip("xfrm", "policy", "add", "src", theirs, "dst", mine, *extra, "dir",
                      "in", "action", "block")

    def transport(self, ns: Namespace, addresses: list[str]
                  ) -> tuple[UdpTransport, RecordingHandler]:
        handler = RecordingHandler()
        transport = UdpTransport(reactor, handler, addresses, port=0, nat_t_port=0,
                                 prepare_socket=prepare_ike_socket)
        with inside(ns):
            transport.start()
        self.addCleanup(transport.stop)
        return transport, handler

    @defer.inlineCallbacks
    def test_ike_sockets_bypass_block_policies(self):
        self.block_everything()
        tc, hc = self.transport(self.c, [C4, C6])
        td, hd = self.transport(self.d, [D4, D6])
        # Every socket has its two socket policies (listed by ip as "socket in/out").
        policies = self.c.ip("xfrm", "policy").stdout
        self.assertEqual(policies.count("socket in"), 4, policies)
        self.assertEqual(policies.count("socket out"), 4, policies)
        # UDP_ENCAP_ESPINUDP on the NAT-T sockets only (IPv6 too on this kernel).
        for (address, port), nat_t in tc.endpoints():
            sock = tc._lookup((address, port)).transport.socket
            self.assertEqual(sock.getsockopt(xfrm.SOL_UDP, xfrm.UDP_ENCAP),
                             xfrm.UDP_ENCAP_ESPINUDP if nat_t else 0, (address, nat_t))
        sent = []
        for mine, theirs in ((C4, D4), (C6, D6)):
            for nat_t in (False, True):
                local, remote = tc.endpoint(mine, nat_t), td.endpoint(theirs, nat_t)
                data = f"ike {mine} {nat_t}".encode()
                tc.send(data, local, remote)
                sent.append((data, remote, local))
        received = yield hd.waiter.wait(4)
        self.assertEqual(sorted(received), sorted(sent))
        td.send(b"reply", td.endpoint(D4), tc.endpoint(C4))
        received = yield hc.waiter.wait(1)
        self.assertEqual(received, [(b"reply", tc.endpoint(C4), td.endpoint(D4))])

        # Controls: without the bypass the policies do block. Out: refused at once.
        plain = self.plain_socket(self.c, C4)
        error = self.assertRaises(OSError, plain.sendto, b"x", td.endpoint(D4))
        self.assertEqual(error.errno, errno.EPERM)
        # In: a plain socket in d never sees our (bypassing) datagram; d counts the block.
        target = self.plain_socket(self.d, D4)
        before = xfrm_stat(self.d, "XfrmInPolBlock")
        tc.send(b"blocked", tc.endpoint(C4), target.getsockname()[:2])
        yield poll(lambda: xfrm_stat(self.d, "XfrmInPolBlock") > before,
                   "inbound policy block counted in d")
        self.assertRaises(BlockingIOError, target.recv, 100)

    def test_bypass_policy_layout(self) -> None:
        data = xfrm.bypass_policy(xfrm.XFRM_POLICY_OUT, socket.AF_INET6)
        self.assertEqual(len(data), 168)
        # selector family at 40; lifetimes (8 x u64, no limit) from 56; dir, action at 160.
        self.assertEqual(struct.unpack_from("=H", data, 40)[0], socket.AF_INET6)
        self.assertEqual(struct.unpack_from("=8Q", data, 56), NO_LIMITS)
        self.assertEqual(data[160:162], bytes([xfrm.XFRM_POLICY_OUT, xfrm.XFRM_POLICY_ALLOW]))


class EventNamespaceTests(TwoNamespaces):
    """ACQUIRE and EXPIRE from this kernel, read by the reactor."""

    def setUp(self) -> None:
        super().setUp()
        # Larval (acquire and ALLOCSPI) states live this many seconds.
        self.c.run(["sysctl", "-q", "-w", "net.core.xfrm_acq_expires=1"])
        self.events: list[Any] = []
        self.reader = XfrmEventReader(reactor, self.events.append, self.c.name)
        self.addCleanup(self.reader.stop)
        self.reader.start()
        self.kernel = XfrmKernel(self.c.name)
        self.addCleanup(self.kernel.close)

    def first(self, kind: type, **match: Any) -> defer.Deferred:
        def found() -> Any:
            for event in self.events:
                if isinstance(event, kind) and all(getattr(event, k) == v
                                                   for k, v in match.items()):
                    return event
            return None
        return poll(found, f"{kind.__name__} {match}")

    @defer.inlineCallbacks
    def test_acquire_for_traffic_matching_a_policy_without_sa(self):
        flow = KernelFlow("198.51.100.0/24", "203.0.113.0/24", protocol=17, dst_port=4242,
                          direction="out", protocol_sa=ESP, mode=TUNNEL, tunnel_src=C4,
                          tunnel_dst=D4, reqid=7)
        self.kernel.add_flow(flow)
        self.c.ip("addr", "add", "198.51.100.1/32", "dev", "lo")
        self.c.ip("route", "add", "203.0.113.0/24", "dev", "veth0", "src", "198.51.100.1")
        sender = self.plain_socket(self.c, "198.51.100.1")
        try:
            sender.sendto(b"traffic first", ("203.0.113.9", 4242))
        except OSError:
            pass       # the packet may be refused while the SA is larval; the event counts
        event = yield self.first(AcquireEvent)
        self.assertEqual((event.src, event.dst, event.protocol, event.dst_port),
                         ("198.51.100.1", "203.0.113.9", 17, 4242))
        self.assertEqual(event.src_port, sender.getsockname()[1])
        self.assertEqual((event.policy_src, event.policy_dst, event.policy_direction),
                         ("198.51.100.0/24", "203.0.113.0/24", "out"))
        self.assertEqual((event.sa_src, event.sa_dst, event.sa_protocol, event.mode,
                          event.reqid), (C4, D4, ESP, TUNNEL, 7))
        self.assertEqual((event.policy_protocol, event.policy_src_port,
                          event.policy_dst_port, event.family), (17, 0, 4242, 4))
        self.assertNotEqual(event.seq, 0)
        self.assertNotEqual(event.policy_index, 0)
        self.kernel.delete_flow(flow)

    @defer.inlineCallbacks
    def test_expire_of_a_larval_state(self):
        spi = self.kernel.allocate_spi(ESP, D6, C6)
        event = yield self.first(ExpireEvent, spi=spi)
        self.assertEqual(event, ExpireEvent(protocol=ESP, spi=spi, src=D6, dst=C6, reqid=0,
                                            hard=True))
        self.assertEqual(self.c.ip("xfrm", "state").stdout.strip(), "")
        # Releasing what the kernel already dropped is quiet.
        self.kernel.release_spi(ESP, spi, C6)

    def test_reader_goes_through_the_reactor(self) -> None:
        self.assertIn(self.reader, reactor.getReaders())
        self.reader.stop()
        self.assertNotIn(self.reader, reactor.getReaders())
        self.assertEqual(self.reader.fileno(), -1)


class EventDecodingTests(SynchronousTestCase):
    """decode_events on datagrams built here."""

    def test_sizes(self) -> None:
        for cls, size in ((xfrm.xfrm_user_acquire, 280), (xfrm.xfrm_user_expire, 232)):
            self.assertEqual(len(body(cls())), size, cls.__name__)

    def test_acquire_from_kernel_bytes(self) -> None:
        # struct xfrm_user_acquire (280 bytes): id at 0, saddr 24, sel 40, policy 96
        # (its selector first; index at 248, dir 252), aalgos/ealgos/calgos 264, seq 276;
        # then the policy's templates (XFRMA_TMPL, struct xfrm_user_tmpl, 64 bytes).
        packet = selector(v4("203.0.113.9"), v4("198.51.100.1"), 4242, 0xFFFF, 5000, 0xFFFF,
                          socket.AF_INET, 32, 32, 17)
        policy_sel = selector(v4("203.0.113.0"), v4("198.51.100.0"), 4242, 0xFFFF, 0, 0,
                              socket.AF_INET, 24, 24, 17)
        policy = (policy_sel + struct.pack("=8Q", *NO_LIMITS) + bytes(32)
                  + struct.pack("=IIBBBB4x", 0, 0x61, xfrm.XFRM_POLICY_OUT, 0, 0, 0))
        self.assertEqual(len(policy), 168)
        fixed = (struct.pack("=16s4sB3x", v4(B), bytes(4), xfrm.IPPROTO_ESP) + v4(A) + packet
                 + policy + struct.pack("=IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 1234))
        self.assertEqual(len(fixed), 280)
        template = (struct.pack("=16s4sB3x", v4(B), bytes(4), xfrm.IPPROTO_ESP)
                    + struct.pack("=H2x", socket.AF_INET) + v4(A)
                    + struct.pack("=IBBBxIII", 7, xfrm.XFRM_MODE_TUNNEL, 0, 0,
                                  0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF))
        self.assertEqual(len(template), 64)
        payload = fixed + nlattr(5, template)
        data = struct.pack("=IHHII", 16 + len(payload), xfrm.XFRM_MSG_ACQUIRE, 0, 0, 0) \
            + payload
        [event] = xfrm.decode_events(data)
        self.assertEqual(event, AcquireEvent(
            src="198.51.100.1", dst="203.0.113.9", protocol=17, src_port=5000, dst_port=4242,
            policy_src="198.51.100.0/24", policy_dst="203.0.113.0/24", policy_index=0x61,
            policy_direction="out", sa_src=A, sa_dst=B, sa_protocol=ESP, mode=TUNNEL,
            reqid=7, seq=1234, policy_protocol=17, policy_src_port=0, policy_dst_port=4242,
            family=4))

    def test_expire_carries_the_byte_counter(self) -> None:
        # xfrm_lifetime_cur.bytes is at offset 160 of xfrm_usersa_info.
        info = bytearray(usersa_info(selector(family=socket.AF_INET), v4(B), b"\x00\x00\x12\x34",
                                     xfrm.IPPROTO_ESP, v4(A), family=socket.AF_INET))
        struct.pack_into("=Q", info, 160, 4096)
        payload = bytes(info) + struct.pack("=B7x", 0)
        data = struct.pack("=IHHII", 16 + len(payload), xfrm.XFRM_MSG_EXPIRE, 0, 0, 0) \
            + payload
        [event] = xfrm.decode_events(data)
        self.assertEqual((event.spi, event.hard, event.bytes_used),
                         (b"\x00\x00\x12\x34", False, 4096))

    def test_expire_among_other_messages(self) -> None:
        msg = xfrm.xfrm_user_expire()
        msg["header"]["type"] = xfrm.XFRM_MSG_EXPIRE
        msg["id_daddr"] = v4(B)
        msg["id_spi"] = b"\x00\x00\x12\x34"
        msg["id_proto"] = xfrm.IPPROTO_AH
        msg["saddr"] = v4(A)
        msg["family"] = socket.AF_INET
        msg["reqid"] = 9
        msg["hard"] = 0
        msg.encode()
        other = struct.pack("=IHHII", 20, xfrm.XFRM_MSG_NEWSA, 0, 0, 0) + bytes(4)
        events = xfrm.decode_events(other + bytes(msg.data))
        self.assertEqual(events, [ExpireEvent(protocol=AH, spi=b"\x00\x00\x12\x34", src=A,
                                              dst=B, reqid=9, hard=False)])
        # A cut-off datagram yields nothing rather than an exception.
        self.assertEqual(xfrm.decode_events(bytes(msg.data)[:40]), [])
