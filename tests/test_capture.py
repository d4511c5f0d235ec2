"""isakmpd.capture: the capture file's rules, and every message of a negotiation in
clear, decoded by tshark.

The file: created 0600 whatever the umask, a pcap header (LINKTYPE_LOOP) on a new
file only, records appended to an existing one, and refusal of a file with group
or other permission bits, of anything but a regular file, and of a file that is
not a LINKTYPE_LOOP pcap. The engine: Main Mode + Quick Mode + an informational
DELETE between two engines, captured on one side, must decode in tshark as
cleartext ISAKMP (no "Malformed", the encrypted messages' payloads visible), once
per message (retransmissions not), with the addresses and ports as sent; through
a NAT the messages on port 4500 carry the non-ESP marker.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from isakmpd import debug
from isakmpd.capture import CaptureError, PacketCapture
from isakmpd.config import load_config
from isakmpd.service import DaemonSettings, IsakmpdService, StartupError
from isakmpd.wire.constants import Flag
from isakmpd.wire.message import Message
from isakmpd.wire.payloads import NotifyPayload
from isakmpd.wire.pcap import LINKTYPE_LOOP, pcap_global_header
from tests.support.ikepair import (
    EAST,
    EAST_NET,
    WEST,
    WEST_NET,
    Nat,
    collect,
    make_config,
    make_pair,
)

NAT_PUBLIC = "203.0.113.200"


def read_pcap(path: str) -> tuple[bytes, list[bytes]]:
    """The global header and each record's frame."""
    data = Path(path).read_bytes()
    header, offset, frames = data[:24], 24, []
    while offset < len(data):
        _sec, _usec, caplen, _len = struct.unpack_from("=IIII", data, offset)
        offset += 16
        frames.append(data[offset:offset + caplen])
        offset += caplen
    return header, frames


def isakmp_of(frame: bytes) -> bytes:
    """The ISAKMP bytes of an IPv4 frame (after the loopback word, IP, UDP, marker)."""
    udp = frame[4 + 20:]
    payload = udp[8:]
    sport, dport = struct.unpack_from("!HH", udp)
    return payload[4:] if 4500 in (sport, dport) else payload


def sample_message(flags: Flag = Flag.ENC) -> bytes:
    message = Message(b"\x01" * 8, b"\x02" * 8, 5, [NotifyPayload(24578, 1, b"")],
                      flags, 0x01020304)
    return message.encode()


class FileTests(SynchronousTestCase):
    """Creating, appending to and refusing capture files."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.events: list[dict] = []
        self.patch(PacketCapture, "log", Logger(observer=self.events.append))

    def path(self, name: str = "capture.pcap") -> str:
        return os.path.join(self.directory, name)

    def capture(self, path: str | None = None) -> PacketCapture:
        capture = PacketCapture(path or self.path(), clock=lambda: 1_700_000_000.5)
        self.addCleanup(capture.stop)
        return capture

    def test_new_file_is_0600_with_header(self) -> None:
        old = os.umask(0)
        try:
            capture = self.capture()
            capture.start()
        finally:
            os.umask(old)
        self.assertTrue(capture.active)
        self.assertEqual(stat.S_IMODE(os.stat(self.path()).st_mode), 0o600)
        capture.record(sample_message(), ("192.0.2.1", 500), ("192.0.2.2", 500))
        capture.stop()
        self.assertFalse(capture.active)
        header, frames = read_pcap(self.path())
        self.assertEqual(header, pcap_global_header())
        self.assertEqual(struct.unpack("=I", header[20:])[0], LINKTYPE_LOOP)
        [frame] = frames
        message = isakmp_of(frame)
        self.assertEqual(message[19] & Flag.ENC, 0)          # ENC cleared in the copy
        self.assertEqual(message[:19], sample_message()[:19])
        lines = [formatEvent(e) for e in self.events]
        self.assertEqual(lines, [f'starting IKE packet capture to file "{self.path()}"',
                                 f'stopped IKE packet capture to file "{self.path()}"'])

    def test_existing_file_appended_without_header(self) -> None:
        capture = self.capture()
        capture.start()
        capture.record(sample_message(), ("192.0.2.1", 500), ("192.0.2.2", 500))
        capture.stop()
        capture.start()                       # the last file again (FIFO "p on")
        capture.record(sample_message(), ("192.0.2.2", 4500), ("192.0.2.1", 4500))
        capture.stop()
        data = Path(self.path()).read_bytes()
        self.assertEqual(data.count(pcap_global_header()), 1)
        _header, frames = read_pcap(self.path())
        self.assertEqual(len(frames), 2)
        self.assertEqual(frames[1][4 + 28:4 + 32], b"\x00" * 4)    # non-ESP marker

    def test_empty_existing_file_gets_a_header(self) -> None:
        fd = os.open(self.path(), os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        capture = self.capture()
        capture.start()
        capture.stop()
        self.assertEqual(Path(self.path()).read_bytes(), pcap_global_header())

    def test_start_while_active_only_logs(self) -> None:
        capture = self.capture()
        capture.start()
        capture.start(self.path("other.pcap"))
        self.assertEqual(capture.path, self.path())
        self.assertFalse(os.path.exists(self.path("other.pcap")))
        self.assertIn(f'IKE packet capture already active on file "{self.path()}"',
                      [formatEvent(e) for e in self.events])

    def test_start_with_another_path(self) -> None:
        capture = self.capture()
        capture.start(self.path("p-on.pcap"))
        self.assertEqual(capture.path, self.path("p-on.pcap"))
        capture.stop()
        capture.start()
        self.assertEqual(capture.path, self.path("p-on.pcap"))

    def assert_refused(self, path: str, *words: str) -> None:
        capture = self.capture(path)
        with self.assertRaises(CaptureError) as caught:
            capture.start()
        self.assertFalse(capture.active)
        self.assertIn(path, str(caught.exception))
        for word in words:
            self.assertIn(word, str(caught.exception))

    def test_group_or_other_bits_refused(self) -> None:
        for mode in (0o640, 0o604, 0o660, 0o602):
            path = self.path(f"mode-{mode:o}.pcap")
            Path(path).write_bytes(pcap_global_header())
            os.chmod(path, mode)
            self.assert_refused(path, f"{mode:04o}", "chmod 600")
            self.assertEqual(Path(path).read_bytes(), pcap_global_header())

    def test_not_a_regular_file_refused(self) -> None:
        os.mkdir(self.path("dir"))
        self.assert_refused(self.path("dir"), "not a regular file")
        os.mkfifo(self.path("fifo"), 0o600)
        self.assert_refused(self.path("fifo"), "not a regular file")
        # A FIFO with a reader opens, and is refused all the same.
        reader = os.open(self.path("fifo"), os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        self.assert_refused(self.path("fifo"), "not a regular file")
        Path(self.path("target.pcap")).write_bytes(pcap_global_header())
        os.chmod(self.path("target.pcap"), 0o600)
        os.symlink(self.path("target.pcap"), self.path("link.pcap"))
        self.assert_refused(self.path("link.pcap"), "symbolic link")

    def test_foreign_content_refused(self) -> None:
        text = self.path("notes.txt")
        Path(text).write_text("not a capture\n" * 3)
        os.chmod(text, 0o600)
        self.assert_refused(text, "not a pcap file")
        ethernet = self.path("ethernet.pcap")
        Path(ethernet).write_bytes(pcap_global_header()[:20] + struct.pack("=I", 1))
        os.chmod(ethernet, 0o600)
        self.assert_refused(ethernet, "link type 1")

    def test_unwritable_directory(self) -> None:
        self.assert_refused(os.path.join(self.directory, "missing", "x.pcap"), "cannot open")

    def test_records_only_while_active_and_skips_huge(self) -> None:
        capture = self.capture()
        capture.record(sample_message(), ("192.0.2.1", 500), ("192.0.2.2", 500))
        self.assertFalse(os.path.exists(self.path()))
        capture.start()
        capture.record(b"\x00" * 70000, ("192.0.2.1", 500), ("192.0.2.2", 500))
        self.assertEqual(capture.records, 0)
        self.assertEqual(Path(self.path()).read_bytes(), pcap_global_header())


class Tshark:
    """tshark over a capture file; SkipTest when it is not installed."""

    def __init__(self, test: SynchronousTestCase, path: str) -> None:
        self.tshark = shutil.which("tshark")
        if self.tshark is None:
            raise SkipTest("tshark not installed (Debian package tshark)")
        self.path = path
        self.home = test.mktemp()
        os.mkdir(self.home)
        self.test = test

    def run(self, *arguments: str) -> str:
        env = {"HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin"), "LC_ALL": "C"}
        assert self.tshark is not None
        result = subprocess.run(
            [self.tshark, "-n", "-r", self.path, "-o", "ip.check_checksum:TRUE",
             "-o", "udp.check_checksum:TRUE", *arguments],
            capture_output=True, text=True, env=env, timeout=120, check=False)
        if result.returncode != 0:
            self.test.fail(f"tshark failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def fields(self, *names: str) -> list[list[str]]:
        arguments = ["-T", "fields", "-E", "separator=|", "-E", "aggregator=,",
                     "-E", "occurrence=a"]
        for name in names:
            arguments += ["-e", name]
        return [line.split("|") for line in self.run(*arguments).splitlines()]


class EngineCaptureTests(SynchronousTestCase):
    """Main + Quick Mode + DELETE between two engines, captured on west."""

    def setUp(self) -> None:
        debug.reset()
        self.addCleanup(debug.reset)
        directory = self.mktemp()
        os.mkdir(directory)
        self.file = os.path.join(directory, "west.pcap")
        self.capture = PacketCapture(self.file)
        self.patch(PacketCapture, "log", Logger(observer=lambda event: None))
        self.addCleanup(self.capture.stop)

    def negotiate(self, network: Any, west: Any) -> None:
        west.engine.capture = self.capture
        self.capture.start()
        box = collect(west.engine.initiate_connection("conn"))
        network.run()
        self.assertTrue(box and not hasattr(box[0], "getErrorMessage"), box)
        [ipsec] = west.engine.sadb.ipsec_by_name("conn")
        west.engine.delete_ipsec_sa(ipsec)
        network.run()
        self.capture.stop()

    def check_tshark(self, count: int, markers: int) -> list[list[str]]:
        tshark = Tshark(self, self.file)
        text = tshark.run("-V")
        self.assertEqual(text.count("Internet Security Association and Key Management"),
                         count, text)
        for bad in ("Malformed", "Expert Info (Error", "Bad", "Unknown Payload",
                    "Encrypted Data"):
            self.assertNotIn(bad, text, f"tshark printed {bad!r}:\n{text}")
        self.assertEqual(text.count("Non-ESP Marker"), markers)
        return tshark.fields("ip.src", "udp.srcport", "ip.dst", "udp.dstport",
                             "isakmp.exchangetype", "isakmp.flags", "isakmp.nextpayload",
                             "isakmp.messageid")

    def test_main_quick_and_delete_in_clear(self) -> None:
        network, west, _east = make_pair()
        self.negotiate(network, west)
        rows = self.check_tshark(count=10, markers=0)
        # MM1-MM6, QM1-QM3, and the DELETE, as sent and received by west.
        exchanges = [row[4] for row in rows]
        self.assertEqual(exchanges, ["2"] * 6 + ["32"] * 3 + ["5"])
        west_ends = [(row[0], row[1], row[2], row[3]) for row in rows]
        out, back = (WEST, "500", EAST, "500"), (EAST, "500", WEST, "500")
        self.assertEqual(west_ends, [out, back, out, back, out, back, out, back, out, out])
        # No message is marked encrypted, and the encrypted ones show their payloads:
        # MM5/MM6 begin with ID, Quick Mode and the DELETE with HASH.
        self.assertTrue(all(int(row[5], 16) & 1 == 0 for row in rows), rows)
        first_payloads = [row[6].split(",")[0] for row in rows]
        self.assertEqual(first_payloads[4:], ["5", "5", "8", "8", "8", "8"])
        self.assertEqual(len({row[7] for row in rows[6:9]}), 1)   # one Quick Mode M-ID

    def test_retransmissions_are_not_captured(self) -> None:
        network, west, _east = make_pair()
        west.engine.capture = self.capture
        self.capture.start()
        collect(west.engine.initiate_connection("conn"))
        network.drop_next()                     # MM1 lost
        network.clock.advance(7)                # retransmitted
        network.run()
        self.capture.stop()
        _header, frames = read_pcap(self.file)
        self.assertEqual(len(frames), 9)        # MM1 once, then the rest

    def test_nat_traversal_port_4500_with_marker(self) -> None:
        network, west, east = make_pair()
        network.nats.append(Nat(inside=WEST, public=NAT_PUBLIC))
        # East's configuration names the NAT's public address as its peer.
        store, _ = load_config(make_config(local=EAST, peer=NAT_PUBLIC, local_net=EAST_NET,
                                           remote_net=WEST_NET), "<east>")
        east.engine.store = store
        self.negotiate(network, west)
        rows = self.check_tshark(count=10, markers=6)
        ports = [(row[1], row[3]) for row in rows]
        # MM1-MM4 on 500; from MM5 on (NAT detected), port 4500 with the marker.
        self.assertEqual(ports[:4], [("500", "500")] * 4)
        self.assertEqual(ports[4:], [("4500", "4500")] * 6)
        # The addresses west used: its own inside address, not the NAT's.
        self.assertTrue(all(WEST in (row[0], row[2]) for row in rows))


class CapturingDaemonTests(TestCase):
    """-l at daemon start: the service captures until it stops; a bad file refuses."""

    def write(self, path: str, text: str) -> str:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return path

    def settings(self, capture: str) -> DaemonSettings:
        directory = self.mktemp()
        os.mkdir(directory)
        config = make_config(local="127.0.0.1", peer="127.0.0.1", local_net="203.0.113.0/25",
                             remote_net="203.0.113.128/25").replace(
            "[General]\n", "[General]\nListen-on=\t\t127.0.0.1\nLoglevel=\t\t7=20\n", 1)
        ports = []
        sockets = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
        for sock in sockets:
            sock.close()
        return DaemonSettings(config_file=self.write(os.path.join(directory, "c.conf"), config),
                              no_kernel=True, port=ports[0], nat_t_port=ports[1],
                              families=(socket.AF_INET,), seed=b"capture", passive=True,
                              capture_file=os.path.join(directory, capture),
                              debug=((6, 10),))

    def test_capture_from_start_to_stop(self) -> None:
        debug.reset()
        self.addCleanup(debug.reset)
        settings = self.settings("daemon.pcap")
        service = IsakmpdService(settings, reactor)
        service.startService()
        try:
            self.assertTrue(service.capture.active)
            self.assertIs(service.engine.capture, service.capture)
            # -D 6=10, then [General] Loglevel 7=20 on top.
            self.assertEqual((debug.level(debug.DebugClass.SA),
                              debug.level(debug.DebugClass.EXCHANGE)), (10, 20))
        finally:
            d = service.stopService()
        self.assertFalse(service.capture.active)
        self.assertEqual(Path(settings.capture_file).read_bytes()[:24], pcap_global_header())
        return d

    def test_insecure_capture_file_refuses_to_start(self) -> None:
        settings = self.settings("open.pcap")
        assert settings.capture_file is not None
        Path(settings.capture_file).write_bytes(pcap_global_header())
        os.chmod(settings.capture_file, 0o644)
        service = IsakmpdService(settings, reactor)
        with self.assertRaises(StartupError) as caught:
            service.startService()
        self.assertIn("0644", str(caught.exception))
        self.assertIsNone(service.transport)      # nothing bound
        self.assertFalse(service.capture.active)
