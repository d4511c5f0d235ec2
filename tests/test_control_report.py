"""The result (S) and report texts on an in-memory engine pair, and private files."""

from __future__ import annotations

import os
import stat
import time

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.control import report
from isakmpd.ike.connections import ConnectionManager
from tests.support.ikepair import EAST, PSK, WEST, Nat, make_pair, ready_ipsec


class ResultTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network, self.west, self.east = make_pair()
        self.manager = ConnectionManager(self.west.engine, self.network.clock)
        self.manager.start()
        self.network.run()
        [self.ipsec] = ready_ipsec(self.west)

    def test_blocks_and_timeouts(self) -> None:
        self.network.clock.advance(100)
        text = report.sa_result(self.west.engine)
        phase1, phase2, end = text.split("\n\n")
        self.assertEqual(end, "")
        lines = phase2.splitlines()
        self.assertEqual(lines[:3], ["SA name: conn (Phase 2)", f"src: {WEST} dst: {EAST}",
                                     "Lifetime: 1200 seconds"])
        soft = int(lines[3].split()[3])
        self.assertEqual(lines[3], f"Soft timeout in {soft} seconds")
        self.assertTrue(1200 * 0.85 - 100 <= soft <= 1200 * 0.95 - 100, soft)
        self.assertEqual(lines[4], "Hard timeout in 1100 seconds")
        self.assertIn("Lifetime: 3600 seconds", phase1)
        # East responded; its [Phase 2] Connections keeps conn up too: READY|STAYALIVE.
        east_text = report.sa_result(self.east.engine)
        self.assertIn("SA name: peer (Phase 1/Responder)", east_text)
        self.assertEqual(east_text.count("Flags 0x00000003"), 2)

    def test_flags(self) -> None:
        self.ipsec.fading = True
        self.west.engine.sadb.mark_replaced(self.ipsec)
        self.assertEqual(report.ipsec_flags(self.ipsec),
                         report.SA_FLAG_READY | report.SA_FLAG_STAYALIVE
                         | report.SA_FLAG_REPLACED | report.SA_FLAG_FADING)
        self.west.engine.store.set("conn", "Flags", "active-only")
        self.assertTrue(report.ipsec_flags(self.ipsec, self.west.engine.store)
                        & report.SA_FLAG_ACTIVE_ONLY)
        self.assertEqual(report.describe_flags(0x109), "ready,replaced,nat-t")

    def test_no_key_material(self) -> None:
        text = report.sa_result(self.west.engine)
        lines = "\n".join(report.report_lines(engine=self.west.engine,
                                              clock=self.network.clock,
                                              connections=self.manager))
        for kernel_sa in self.west.kernel.sas.values():
            for secret in (kernel_sa.enc_key.hex(), kernel_sa.auth_key.hex()):
                self.assertNotIn(secret, text)
                self.assertNotIn(secret, lines)
        self.assertNotIn(PSK, lines)
        self.assertIn("Authentication=\t<hidden>", lines)

    def test_report_sections_in_order(self) -> None:
        lines = report.report_lines(engine=self.west.engine, clock=self.network.clock,
                                    connections=self.manager)
        order = ["SAs: 1 phase 1, 1 phase 2", "Exchanges in progress: 0", "Transports: 0",
                 "Active connections: 1 (mode active)", "Passive connections: 0",
                 "Configuration (without generated defaults):"]
        positions = [lines.index(item) for item in order]
        self.assertEqual(positions, sorted(positions))
        # The clock is shared with east; west's SAs have their soft expiries.
        timers = [line for line in lines if "_soft_expired" in line and f" {WEST}" in
                  line.split("<->")[0]]
        self.assertEqual(len(timers), 2, lines)
        self.assertIn("  ConnectionManager._tick in 60.0 s", lines)
        self.assertIn("  conn: up, next check in 60 s", lines)
        # Only what the file said: the generated suites are not there.
        self.assertNotIn("[QM-ESP-3DES-SHA-PFS-SUITE]", lines)
        self.assertIn("[p2-config]", lines)


class NatFlagTests(SynchronousTestCase):
    def test_nat_bits(self) -> None:
        network, west, east = make_pair(west_ip="10.0.0.1")
        network.nats.append(Nat(inside="10.0.0.1", public=WEST))
        east.engine.store.set("Phase 1", WEST, "peer", force=True)
        west.engine.initiate_connection("conn")
        network.run()
        [ipsec] = ready_ipsec(west)
        self.assertEqual(report.ipsec_flags(ipsec) & 0x300,
                         report.SA_FLAG_NAT_T_ENABLE | report.SA_FLAG_NAT_T_KEEPALIVE)
        [their] = ready_ipsec(east)
        self.assertEqual(report.ipsec_flags(their) & 0x300, report.SA_FLAG_NAT_T_ENABLE)


class FileTests(SynchronousTestCase):
    def test_report_file_line_format(self) -> None:
        when = time.mktime((2024, 1, 2, 13, 14, 15, 0, 0, -1)) + 0.25
        self.assertEqual(report.format_report_file(["a", "b"], when),
                         "131415.250000 Report> a\n131415.250000 Report> b\n")

    def test_private_file_replaces_with_mode_0600(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "result")
        with open(path, "w") as handle:
            handle.write("old and long\n")
        os.chmod(path, 0o644)
        report.write_private_file(path, "new\n")
        with open(path) as handle:
            self.assertEqual(handle.read(), "new\n")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(os.listdir(directory), ["result"])

    def test_unwritable_directory_raises_and_leaves_nothing(self) -> None:
        self.assertRaises(OSError, report.write_private_file,
                          os.path.join(self.mktemp(), "missing", "result"), "x")
