"""Tests of isakmpd.wire.pcap, checked by an independent decoder: tshark.

A capture of messages carrying every payload type (IPv4 on 500, one on 4500
with the non-ESP marker, one over IPv6) must decode in tshark with no
"Malformed" and no expert error, correct IP/UDP checksums, and the field values
tshark prints must equal ours.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from isakmpd.wire import constants as c
from isakmpd.wire.message import Message
from isakmpd.wire.payloads import (
    AttributePayload,
    DeletePayload,
    IdPayload,
    NatOaPayload,
    NotifyPayload,
    SaPayload,
)
from isakmpd.wire.pcap import (
    LINKTYPE_LOOP,
    internet_checksum,
    pcap_global_header,
    pcap_record,
)
from tests.test_wire_payloads import sample_messages

BASE_TIME = 1_700_000_000.25


def endpoints(index: int, name: str) -> tuple[str, int, str, int]:
    if "NAT-T" in name:
        return "198.51.100.7", 4500, "203.0.113.1", 4500
    if "delete ISAKMP" in name:
        return "2001:db8::1", 500, "2001:db8::2", 500
    return ("192.0.2.1", 500, "192.0.2.2", 500) if index % 2 == 0 else \
        ("192.0.2.2", 500, "192.0.2.1", 500)


def build_capture() -> tuple[bytes, list[tuple[str, Message]]]:
    samples = sample_messages()
    data = pcap_global_header()
    for index, (name, message) in enumerate(samples):
        src, sport, dst, dport = endpoints(index, name)
        data += pcap_record(BASE_TIME + index, src, sport, dst, dport, message.encode())
    return data, samples


class FormatTests(SynchronousTestCase):
    """The bytes themselves, without tshark."""

    def test_global_header(self) -> None:
        header = pcap_global_header()
        self.assertEqual(len(header), 24)
        self.assertEqual(struct.unpack("=IHHiIII", header),
                         (0xa1b2c3d4, 2, 4, 0, 0, 65536, LINKTYPE_LOOP))
        self.assertEqual(header[:4], struct.pack("=I", 0xa1b2c3d4))   # host order

    def test_ipv4_record(self) -> None:
        message = sample_messages()[2][1].encode()
        self.assertTrue(message[19] & c.Flag.ENC)
        record = pcap_record(12.5, "192.0.2.1", 500, "192.0.2.2", 500, message)
        seconds, micros, caplen, length = struct.unpack_from("=IIII", record)
        self.assertEqual((seconds, micros), (12, 500000))
        self.assertEqual(caplen, length)
        self.assertEqual(length, len(record) - 16)
        frame = record[16:]
        self.assertEqual(frame[:4], b"\x00\x00\x00\x02")
        ip = frame[4:24]
        self.assertEqual(ip[0], 0x45)
        self.assertEqual(struct.unpack("!H", ip[2:4])[0], 20 + 8 + len(message))
        self.assertEqual(struct.unpack("!H", ip[4:6])[0], 1)      # IP id 1
        self.assertEqual(ip[8], 0)                                 # TTL 0
        self.assertEqual(internet_checksum(ip), 0)
        udp = frame[24:32]
        self.assertEqual(struct.unpack("!HHH", udp[:6]), (500, 500, 8 + len(message)))
        carried = frame[32:]
        self.assertEqual(carried[19], message[19] & ~c.Flag.ENC)
        self.assertEqual(carried[:19] + carried[20:], message[:19] + message[20:])

    def test_nat_t_marker_and_ipv6(self) -> None:
        message = sample_messages()[0][1].encode()
        record = pcap_record(0, "2001:db8::1", 4500, "2001:db8::2", 500, message)
        frame = record[16:]
        self.assertEqual(struct.unpack("!I", frame[:4])[0], 24)
        self.assertEqual(frame[4] >> 4, 6)
        self.assertEqual(struct.unpack("!H", frame[8:10])[0], 8 + 4 + len(message))
        self.assertEqual(frame[44 + 8:44 + 12], bytes(4))
        self.assertEqual(frame[44 + 12:], message)

    def test_fallback_addresses_and_limits(self) -> None:
        record = pcap_record(0, None, 500, "192.0.2.1", 500, b"x" * 28)
        self.assertEqual(record[16 + 4 + 12:16 + 4 + 20], bytes([2, 2, 2, 2, 1, 1, 1, 1]))
        with self.assertRaises(ValueError):
            pcap_record(0, "192.0.2.1", 500, "192.0.2.2", 500, bytes(65537))
        with self.assertRaises(ValueError):
            pcap_record(0, "192.0.2.1", 70000, "192.0.2.2", 500, bytes(28))

    def test_checksum_known_answer(self) -> None:
        # RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
        self.assertEqual(internet_checksum(bytes.fromhex("0001f203f4f5f6f7")), 0xffff ^ 0xddf2)


class TsharkTests(SynchronousTestCase):
    """Our capture as tshark (Wireshark) sees it."""

    def setUp(self) -> None:
        self.tshark = shutil.which("tshark")
        if self.tshark is None:
            raise SkipTest("tshark not installed (Debian package tshark)")
        self.directory = Path(tempfile.mkdtemp(prefix="wire-pcap-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        data, self.samples = build_capture()
        self.path = self.directory / "capture.pcap"
        self.path.write_bytes(data)

    def run_tshark(self, *arguments: str) -> str:
        # A private HOME keeps tshark away from any user profile; running as
        # root only prints a warning on stderr.
        env = {"HOME": str(self.directory), "PATH": os.environ.get("PATH", "/usr/bin"),
               "LC_ALL": "C"}
        assert self.tshark is not None
        result = subprocess.run(
            [self.tshark, "-n", "-r", str(self.path), "-o", "ip.check_checksum:TRUE",
             "-o", "udp.check_checksum:TRUE", *arguments],
            capture_output=True, text=True, env=env, timeout=120, check=False)
        if result.returncode != 0:
            self.fail(f"tshark failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def test_no_malformed_or_errors(self) -> None:
        text = self.run_tshark("-V")
        self.assertEqual(text.count("Internet Security Association and Key Management"),
                         len(self.samples))
        for bad in ("Malformed", "Expert Info (Error", "Bad", "Unknown Payload"):
            self.assertNotIn(bad, text, f"tshark printed {bad!r}:\n{text}")
        self.assertEqual(text.count("Non-ESP Marker"), 1)
        self.assertEqual(text.count("Internet Protocol Version 6"), 1)

    def fields(self, *names: str) -> list[list[str]]:
        arguments = ["-T", "fields", "-E", "separator=|", "-E", "aggregator=,",
                     "-E", "occurrence=a"]
        for name in names:
            arguments += ["-e", name]
        out = self.run_tshark(*arguments)
        rows = [line.split("|") for line in out.splitlines()]
        self.assertEqual(len(rows), len(self.samples), out)
        return rows

    def test_header_fields(self) -> None:
        rows = self.fields("isakmp.ispi", "isakmp.rspi", "isakmp.exchangetype",
                           "isakmp.messageid", "isakmp.length", "isakmp.flags",
                           "isakmp.version", "ip.checksum.status", "udp.checksum.status",
                           "ipv6.src")
        for row, (name, message) in zip(rows, self.samples, strict=True):
            data = message.encode()
            self.assertEqual(row[0], message.icookie.hex(), name)
            self.assertEqual(row[1], message.rcookie.hex(), name)
            self.assertEqual(int(row[2]), message.exchange_type, name)
            self.assertEqual(int(row[3], 16), message.message_id, name)
            self.assertEqual(int(row[4]), len(data), name)
            self.assertEqual(int(row[5], 16), int(message.flags) & ~c.Flag.ENC, name)
            self.assertEqual(int(row[6], 16), 0x10, name)
            if row[9]:
                self.assertEqual(row[9], "2001:db8::1")
            else:
                self.assertEqual(row[7], "1", name)     # 1 = Good
            self.assertEqual(row[8], "1", name)

    def test_payload_types_and_lengths(self) -> None:
        rows = self.fields("isakmp.typepayload", "isakmp.payloadlength")
        for row, (name, message) in zip(rows, self.samples, strict=True):
            types = [int(v) for v in row[0].split(",")]
            lengths = [int(v) for v in row[1].split(",")]
            ours_types: list[int] = []
            ours_lengths: list[int] = []
            for payload in message.payloads:
                ours_types.append(payload.payload_type)
                ours_lengths.append(4 + len(payload.encode_body()))
                if isinstance(payload, SaPayload):
                    # tshark lists proposals and transforms in document order.
                    for proposal in payload.proposals:
                        ours_types.append(c.PayloadType.PROPOSAL)
                        ours_lengths.append(4 + len(proposal.encode_body()))
                        for transform in proposal.transforms:
                            ours_types.append(c.PayloadType.TRANSFORM)
                            ours_lengths.append(4 + len(transform.encode_body()))
            self.assertEqual(types, ours_types, name)
            self.assertEqual(lengths, ours_lengths, name)

    def test_sa_fields(self) -> None:
        rows = self.fields("isakmp.sa.doi", "isakmp.prop.protoid", "isakmp.spi",
                           "isakmp.trans.id", "isakmp.ike.attr.life_duration",
                           "isakmp.ipsec.attr.life_duration", "isakmp.ike.attr.type",
                           "isakmp.ipsec.attr.encap_mode", "isakmp.ipsec.attr.key_length")
        main1 = rows[0]
        self.assertEqual(main1[0], "1")
        self.assertEqual(main1[1], "1")
        self.assertEqual(main1[3], "1,1")
        self.assertEqual(main1[4], "86400,3600")
        ike_types = [int(v) for v in main1[6].split(",")]
        sa = self.samples[0][1].payloads[0]
        assert isinstance(sa, SaPayload)
        self.assertEqual(ike_types, [int(a.type) for t in sa.proposals[0].transforms
                                     for a in t.attributes])
        quick = rows[3]
        qsa = self.samples[3][1].payloads[1]
        assert isinstance(qsa, SaPayload)
        self.assertEqual(quick[1], "3,2")
        self.assertEqual(quick[2], ",".join(p.spi.hex() for p in qsa.proposals))
        self.assertEqual(quick[3], ",".join(str(int(t.transform_id)) for p in qsa.proposals
                                            for t in p.transforms))
        self.assertEqual(quick[5], "1200,1048576")
        self.assertEqual(quick[7].split(",")[0], str(int(c.EncapsulationMode.UDP_ENCAP_TUNNEL)))
        self.assertEqual(quick[8], "128")

    def test_id_notify_delete_cfg_nat_fields(self) -> None:
        rows = self.fields("isakmp.id.type", "isakmp.id.data.ipv4_addr",
                           "isakmp.id.data.ipv4_subnet", "isakmp.id.port",
                           "isakmp.notify.msgtype", "isakmp.delete.spi", "isakmp.spinum",
                           "isakmp.cfg.type", "isakmp.cfg.identifier",
                           "isakmp.cfg.attr.internal_ip4_address",
                           "isakmp.ike.nat_original_address_ipv4", "isakmp.ike.nat_hash",
                           "isakmp.nonce", "isakmp.hash", "isakmp.id.data.fqdn",
                           "isakmp.id.data.ipv6_addr", "isakmp.cert.encoding",
                           "isakmp.certreq.type", "isakmp.sig", "isakmp.vid_bytes")
        main5, quick, info, cfg, aggressive, delete = (rows[2], rows[3], rows[4], rows[5],
                                                       rows[6], rows[7])
        ident = self.samples[2][1].payloads[0]
        assert isinstance(ident, IdPayload)
        self.assertEqual(main5[0], str(int(c.IdType.IPV4_ADDR)))
        self.assertEqual(main5[1], "192.0.2.1")
        self.assertEqual(main5[3], "500")
        self.assertEqual(main5[16], str(int(c.CertEncoding.X509_SIG)))
        self.assertEqual(main5[17], str(int(c.CertEncoding.X509_SIG)))
        self.assertEqual(main5[18], (b"s" * 128).hex())
        self.assertEqual(main5[19], b"private vendor".hex())
        self.assertEqual(main5[13], bytes(range(20)).hex())
        # Two subnet IDs, then the NAT-OA payloads' ID types (tshark files them
        # under the same field).
        self.assertEqual(quick[0], "4,4,1,1")
        # tshark files a subnet's address under ipv4_addr and its mask under
        # ipv4_subnet.
        self.assertEqual(quick[1], "192.0.2.0,198.51.100.0")
        self.assertEqual(quick[2], "255.255.255.0,255.255.255.0")
        self.assertEqual(quick[3], "0,80")
        self.assertEqual(quick[10], "192.0.2.7,203.0.113.9")
        self.assertEqual(quick[12], (b"q" * 16).hex())
        notifies = [p for p in self.samples[4][1].payloads if isinstance(p, NotifyPayload)]
        self.assertEqual(info[4], ",".join(str(int(n.notify_type)) for n in notifies))
        delete_payload = self.samples[4][1].payloads[-1]
        assert isinstance(delete_payload, DeletePayload)
        self.assertEqual(info[5], ",".join(s.hex() for s in delete_payload.spis))
        self.assertEqual(info[6], "2")
        attribute = self.samples[5][1].payloads[1]
        assert isinstance(attribute, AttributePayload)
        self.assertEqual(cfg[7], str(int(c.CfgMessageType.REPLY)))
        self.assertEqual(int(cfg[8], 0), attribute.identifier)
        self.assertEqual(cfg[9], "10.1.2.3")
        self.assertEqual(aggressive[14], "east.example.org")
        self.assertEqual(aggressive[15], "2001:db8::1")
        self.assertEqual(aggressive[11], bytes(range(20)).hex())
        self.assertEqual(delete[5], (bytes.fromhex("0123456789abcdef")
                                     + bytes.fromhex("fedcba9876543210")).hex())
        nat_oa = self.samples[6][1].payloads[-1]
        assert isinstance(nat_oa, NatOaPayload)
        self.assertEqual(nat_oa.payload_type, c.PayloadType.NAT_OA_DRAFT)
