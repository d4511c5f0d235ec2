"""The control interface of a whole daemon, in process: two IsakmpdService on loopback.

West (active) and east (passive) negotiate over real loopback UDP with the
in-memory kernel, as in tests/test_daemon_loopback.py; west reads its FIFO in a
temporary directory and writes its result and report files there. Commands go in
through the FIFO, signals are sent to this process (the handlers only schedule
work in the reactor), and the files and the daemons' state are checked.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from isakmpd import debug
from isakmpd.debug import DebugClass
from isakmpd.log import format_line
from isakmpd.service import DaemonSettings, IsakmpdService, StartupError
from tests.support.ikepair import PSK, make_config
from tests.test_daemon_loopback import LOOPBACK, free_udp_ports

WEST_NET = "203.0.113.0/25"
EAST_NET = "203.0.113.128/25"


def config(*, peer_port: int, local_net: str, remote_net: str, general: str = "") -> str:
    text = make_config(local=LOOPBACK, peer=LOOPBACK, local_net=local_net,
                       remote_net=remote_net, transforms="AES-128-SHA-GRP14",
                       suites="QM-ESP-AES-128-SHA-PFS-GRP14-SUITE",
                       extra_peer=f"Port=\t\t\t{peer_port}\nLocal-address=\t\t{LOOPBACK}\n")
    return text.replace("[General]\n", f"[General]\nListen-on=\t\t{LOOPBACK}\n{general}", 1)


def write_config(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class ControlServiceTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.mkdir(self.dir)
        self.fifo = os.path.join(self.dir, "west.fifo")
        self.result = os.path.join(self.dir, "west.result")
        self.report = os.path.join(self.dir, "west.report")
        self.west_conf = os.path.join(self.dir, "west.conf")
        self.ports = free_udp_ports(4)
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.addCleanup(debug.reset)

    def west_config(self, general: str = "") -> str:
        return config(peer_port=self.ports[2], local_net=WEST_NET, remote_net=EAST_NET,
                      general=general)

    def start(self, name: str, text: str, port: int, nat_t_port: int, *, passive: bool,
              fifo: str | None = None, delete_sas: bool = True,
              conf: str | None = None) -> IsakmpdService:
        path = conf or os.path.join(self.dir, f"{name}.conf")
        write_config(path, text)
        settings = DaemonSettings(
            config_file=path, no_kernel=True, port=port, nat_t_port=nat_t_port,
            seed=f"control {name}".encode(), passive=passive, delete_sas=delete_sas,
            fifo=fifo, result_file=os.path.join(self.dir, f"{name}.result"),
            report_file=os.path.join(self.dir, f"{name}.report"))
        service = IsakmpdService(settings, reactor)
        self.stops: list[str] = getattr(self, "stops", [])
        service.stop_reactor = lambda: self.stops.append(name)  # type: ignore[method-assign]
        self.addCleanup(service.stopService)
        service.startService()
        return service

    @inlineCallbacks
    def pair(self, *, west_general: str = "", delete_sas: bool = True) -> Any:
        west_port, west_nat, east_port, east_nat = self.ports
        east = self.start("east", config(peer_port=west_port, local_net=EAST_NET,
                                         remote_net=WEST_NET), east_port, east_nat,
                          passive=True)
        west = self.start("west", self.west_config(west_general), west_port, west_nat,
                          passive=False, fifo=self.fifo, delete_sas=delete_sas,
                          conf=self.west_conf)
        yield self.wait_for(lambda: len(west.kernel.sas) == 2 and len(east.kernel.sas) == 2,
                            "Main + Quick Mode")
        return west, east

    @inlineCallbacks
    def wait_for(self, condition: Any, what: str, seconds: float = 15.0) -> Any:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}")
            yield deferLater(reactor, 0.02, lambda: None)

    def command(self, line: str) -> None:
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)

    def read(self, path: str) -> str:
        with open(path) as handle:
            return handle.read()

    def logged(self, level: LogLevel = LogLevel.error) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == level]

    # -- the FIFO ------------------------------------------------------------------

    def test_regular_file_at_the_fifo_path_refuses_startup(self) -> None:
        with open(self.fifo, "w") as handle:
            handle.write("not a fifo\n")
        west_port, west_nat, _, _ = self.ports
        with self.assertRaises(StartupError) as caught:
            self.start("west", self.west_config(), west_port, west_nat, passive=True,
                       fifo=self.fifo)
        self.assertIn("regular file", str(caught.exception))
        self.assertEqual(self.read(self.fifo), "not a fifo\n")
        # Refused before anything was bound (isakmpd's ui_init comes first): the
        # daemon's port is free.
        import socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, west_port))

    @inlineCallbacks
    def test_fifo_mode_and_removal_at_stop(self) -> Any:
        west, _east = yield self.pair()
        self.assertEqual(stat.S_IMODE(os.lstat(self.fifo).st_mode), 0o600)
        yield west.stopService()
        self.assertFalse(os.path.lexists(self.fifo))

    @inlineCallbacks
    def test_s_writes_the_sa_result(self) -> Any:
        west, _east = yield self.pair()
        self.command("garbage first")
        self.command("S")
        yield self.wait_for(lambda: os.path.exists(self.result), "the result file")
        text = self.read(self.result)
        self.assertEqual(stat.S_IMODE(os.stat(self.result).st_mode), 0o600)
        [isakmp] = west.engine.sadb.isakmp_sas()
        [ipsec] = west.engine.sadb.ipsec_sas()
        blocks = text.split("\n\n")
        self.assertEqual(blocks[-1], "")
        phase1, phase2 = blocks[0].splitlines(), blocks[1].splitlines()
        self.assertEqual(phase1[:3], ["SA name: peer (Phase 1/Initiator)",
                                      f"src: {LOOPBACK} dst: {LOOPBACK}",
                                      "Lifetime: 3600 seconds"])
        self.assertRegex(phase1[3], r"^Soft timeout in \d+ seconds$")
        self.assertRegex(phase1[4], r"^Hard timeout in \d+ seconds$")
        # READY | STAYALIVE (conn is kept up)
        self.assertEqual(phase1[5:], ["Flags 0x00000003",
                                      (f"icookie {isakmp.icookie.hex()} rcookie "
                                      f"{isakmp.rcookie.hex()}")])
        [esp] = ipsec.spis
        self.assertEqual(phase2[:3], ["SA name: conn (Phase 2)",
                                      f"src: {LOOPBACK} dst: {LOOPBACK}",
                                      "Lifetime: 1200 seconds"])
        self.assertEqual(phase2[5:], [
            "Flags 0x00000003",
            f"SPI 0: {esp.peer_spi.hex()}",
            f"SPI 1: {esp.our_spi.hex()}",
            "Transform: IPsec ESP",
            "Encryption key length: 16",
            "Authentication key length: 20",
            "Encryption algorithm: AES (CBC)",
            "Authentication algorithm: HMAC-SHA1",
        ])
        for kernel_sa in west.kernel.sas.values():
            self.assertNotIn(kernel_sa.enc_key.hex(), text)
            self.assertNotIn(kernel_sa.auth_key.hex(), text)
        self.assertTrue(any("'garbage first'" in w for w in self.logged(LogLevel.warn)))

    @inlineCallbacks
    def test_c_set_and_get(self) -> Any:
        _west, _east = yield self.pair()
        self.command("C set [General]:Shiny=new")
        self.command("C get [General]:Shiny")
        yield self.wait_for(lambda: os.path.exists(self.result), "the result file")
        self.assertEqual(self.read(self.result), "new\n")
        self.command("C get [General]:Missing")
        yield self.wait_for(lambda: self.read(self.result) == "", "an empty result")

    # -- signals and the API ---------------------------------------------------------

    @inlineCallbacks
    def test_sigusr1_writes_the_report(self) -> Any:
        west, _east = yield self.pair()
        self.command("C set [General]:From-the-fifo=1")
        yield self.wait_for(lambda: west.store.has("General", "From-the-fifo"), "C set")
        os.kill(os.getpid(), signal.SIGUSR1)
        yield self.wait_for(lambda: os.path.exists(self.report), "the report file")
        text = self.read(self.report)
        self.assertEqual(stat.S_IMODE(os.stat(self.report).st_mode), 0o600)
        lines = text.splitlines()
        self.assertTrue(all(" Report> " in line for line in lines))
        self.assertRegex(lines[0], r"^\d{6}\.\d{6} Report> isakmpd state report$")
        body = "\n".join(line.split(" Report> ", 1)[1] for line in lines)
        for expected in ("ISAKMP SA peer (phase 1, initiator, ready)",
                         "IPsec SA conn (phase 2, initiator, ready)",
                         "Exchanges in progress: 0",
                         f"udp {LOOPBACK}:{self.ports[0]} IKE",
                         "Active connections: 1 (mode active)", "  conn: up",
                         "Passive connections: 0", "Timers:",
                         "Configuration (without generated defaults):",
                         "[General]", "From-the-fifo=\t1", "Authentication=\t<hidden>"):
            self.assertIn(expected, body)
        self.assertNotIn(PSK, text)
        # Generated defaults are left out.
        self.assertNotIn("QM-ESP-3DES-SHA-PFS-SUITE", text)
        for kernel_sa in west.kernel.sas.values():
            self.assertNotIn(kernel_sa.enc_key.hex(), text)

    @inlineCallbacks
    def test_r_reports_to_the_log(self) -> Any:
        yield self.pair()
        self.command("r")
        yield self.wait_for(lambda: any(e.get("isakmpd_report") for e in self.events),
                            "report lines in the log")
        lines = [format_line(e) for e in self.events if e.get("isakmpd_report")]
        self.assertRegex(lines[0], r"^\d{6}\.\d{6} Report> isakmpd state report$")
        self.assertFalse(os.path.exists(self.report))

    @inlineCallbacks
    def test_sighup_rereads_the_configuration(self) -> Any:
        west, _east = yield self.pair()
        [before] = west.engine.sadb.ipsec_sas()
        self.command("C set [General]:From-the-fifo=1")
        yield self.wait_for(lambda: west.store.has("General", "From-the-fifo"), "C set")
        write_config(self.west_conf, self.west_config("Loglevel=\t\tA=5,6=30\n"
                                                      "Check-interval=\t\t45\n"))
        os.kill(os.getpid(), signal.SIGHUP)
        yield self.wait_for(lambda: west.store.has("General", "Loglevel"),
                            "the new configuration")
        self.assertIs(west.engine.store, west.store)
        self.assertFalse(west.store.has("General", "From-the-fifo"))
        self.assertEqual(west.connections.check_interval, 45)
        self.assertEqual(west.connections.active, ["conn"])
        self.assertEqual((debug.level(DebugClass.MISC), debug.level(DebugClass.SA)), (5, 30))
        # SAs are kept, nothing renegotiated.
        self.assertEqual(west.engine.sadb.ipsec_sas(), [before])
        self.assertTrue(before.ready)

    @inlineCallbacks
    def test_sighup_with_errors_keeps_the_running_configuration(self) -> Any:
        west, _east = yield self.pair()
        running = west.store
        write_config(self.west_conf, self.west_config("Check-interval=\t\t45\n")
                     + "[broken\nno equals sign here\n")
        os.kill(os.getpid(), signal.SIGHUP)
        yield self.wait_for(lambda: any("configuration is kept" in line
                                        for line in self.logged()), "the error")
        self.assertIs(west.store, running)
        self.assertIs(west.engine.store, running)
        errors = "\n".join(self.logged())
        self.assertIn(f"{self.west_conf}:", errors)
        self.assertRegex(errors, rf"{self.west_conf}:\d+")

    @inlineCallbacks
    def test_sighup_with_an_insecure_file_keeps_the_running_configuration(self) -> Any:
        west, _east = yield self.pair()
        running = west.store
        write_config(self.west_conf, self.west_config("Check-interval=\t\t45\n"))
        os.chmod(self.west_conf, 0o644)
        os.kill(os.getpid(), signal.SIGHUP)
        yield self.wait_for(lambda: any("configuration is kept" in line
                                        for line in self.logged()), "the error")
        self.assertIs(west.store, running)
        self.assertIn(f"chmod 600 {self.west_conf}", "\n".join(self.logged()))

    def test_insecure_file_at_start_is_ignored_with_the_fix_named(self) -> None:
        # As isakmpd: a file others can read is treated as missing (defaults only).
        west_port, west_nat, _, _ = self.ports
        path = os.path.join(self.dir, "shared.conf")
        write_config(path, self.west_config() + "\n[marker]\nTag=\t\t1\n")
        os.chmod(path, 0o644)
        service = IsakmpdService(DaemonSettings(
            config_file=path, no_kernel=True, port=west_port, nat_t_port=west_nat,
            passive=True), reactor)
        self.addCleanup(service.stopService)
        service.startService()
        self.assertFalse(service.store.has("marker", "Tag"))
        self.assertIn(f"chmod 600 {path}", "\n".join(self.logged()))

    @inlineCallbacks
    def test_renegotiate_on_hup(self) -> Any:
        west, _east = yield self.pair()
        [old] = west.engine.sadb.ipsec_sas()
        write_config(self.west_conf, self.west_config("Renegotiate-on-HUP=\tyes\n"))
        self.command("R")
        yield self.wait_for(lambda: len([sa for sa in west.engine.sadb.ipsec_sas()
                                         if sa.ready]) == 2, "a renegotiated SA")
        self.assertTrue(old.replaced)

    @inlineCallbacks
    def test_sigterm_deletes_every_sa_then_stops(self) -> Any:
        west, east = yield self.pair()
        os.kill(os.getpid(), signal.SIGTERM)
        yield self.wait_for(lambda: self.stops == ["west"], "the reactor stop")
        self.assertEqual(west.engine.sadb.ipsec_sas(), [])
        self.assertEqual(west.engine.sadb.isakmp_sas(), [])
        yield self.wait_for(lambda: not east.engine.sadb.ipsec_sas()
                            and not east.engine.sadb.isakmp_sas(), "east to follow DELETEs")
        self.assertFalse(os.path.lexists(self.fifo), "reading stopped, FIFO removed")

    @inlineCallbacks
    def test_q_without_deletes_under_s(self) -> Any:
        west, east = yield self.pair(delete_sas=False)
        self.command("Q")
        yield self.wait_for(lambda: self.stops == ["west"], "the reactor stop")
        self.assertEqual(west.engine.sadb.ipsec_sas(), [])
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(east.engine.sadb.ipsec_sas()), 1, "no DELETE was sent")

    @inlineCallbacks
    def test_delete_sas_no_in_the_configuration(self) -> Any:
        west, east = yield self.pair(west_general="Delete-SAs=\t\tno\n")
        west.shutdown()
        yield self.wait_for(lambda: self.stops == ["west"], "the reactor stop")
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(east.engine.sadb.ipsec_sas()), 1, "no DELETE was sent")

    @inlineCallbacks
    def test_signal_handlers_restored_at_stop(self) -> Any:
        before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGUSR1,
                                                    signal.SIGTERM)}
        west, east = yield self.pair()
        self.assertNotEqual(signal.getsignal(signal.SIGUSR1), before[signal.SIGUSR1])
        yield west.stopService()
        yield east.stopService()
        self.assertEqual({s: signal.getsignal(s) for s in before}, before)
