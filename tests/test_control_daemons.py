"""Two ``isakmpd`` console-script daemons on loopback, driven through their FIFOs.

Each daemon runs as a subprocess (``isakmpd -n -4 -c CONF -f FIFO -R REPORT
--result-file RESULT -p P -N P2``, files in a temporary directory, unprivileged
ports), logging to a file. The test drives them as an administrator would: FIFO
commands (garbage first, then S, C set/get, t, M passive, c, M active), SIGUSR1,
SIGHUP and SIGTERM, and checks the result and report files, the SAs coming and
going on both sides, the exit status and that no FIFO is left behind. Every wait
polls with a deadline; only the processes started here are signalled.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.ikepair import make_config
from tests.test_daemon_loopback import LOOPBACK, free_udp_ports

ISAKMPD = Path(sys.executable).with_name("isakmpd")
WEST_NET = "203.0.113.0/25"
EAST_NET = "203.0.113.128/25"
DEADLINE = 20.0


def config(peer_port: int, local_net: str, remote_net: str, general: str = "") -> str:
    text = make_config(local=LOOPBACK, peer=LOOPBACK, local_net=local_net,
                       remote_net=remote_net, transforms="AES-128-SHA-GRP14",
                       suites="QM-ESP-AES-128-SHA-PFS-GRP14-SUITE",
                       extra_peer=f"Port=\t\t\t{peer_port}\nLocal-address=\t\t{LOOPBACK}\n")
    return text.replace("[General]\n", f"[General]\nListen-on=\t\t{LOOPBACK}\n{general}", 1)


def poll(condition: Callable[[], object], what: str, describe: Callable[[], str],
         seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{describe()}")
        time.sleep(0.05)


class Daemon:
    """One console-script daemon with its files under ``directory``."""

    def __init__(self, directory: Path, name: str, config_text: str, port: int,
                 nat_t_port: int, *, passive: bool = False, fifo: str | None = None,
                 stdin: int | None = subprocess.DEVNULL) -> None:
        self.name = name
        self.conf = directory / f"{name}.conf"
        self.write_config(config_text)
        self.fifo = directory / f"{name}.fifo"
        self.result = directory / f"{name}.result"
        self.report = directory / f"{name}.report"
        self.log_path = directory / f"{name}.log"
        # -d: in the foreground, logging to stderr; -i: not /var/run's pid file.
        args = [str(ISAKMPD), "-d", "-n", "-4", "-c", str(self.conf),
                "-i", str(directory / f"{name}.pid"), "-f", fifo or str(self.fifo),
                "-R", str(self.report), "--result-file", str(self.result),
                "-p", str(port), "-N", str(nat_t_port), "-r", f"control {name}"]
        if passive:
            args.append("-S")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=stdin, stdout=log,
                                         stderr=subprocess.STDOUT)

    def write_config(self, text: str) -> None:
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def describe(self) -> str:
        return f"--- {self.name} log ---\n{self.log()}"

    def wait_for_log(self, text: str, count: int = 1) -> None:
        poll(lambda: self.log().count(text) >= count or self.proc.poll() is not None,
             f"{self.name} to log {text!r}", self.describe)
        if self.log().count(text) < count:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n"
                                 f"{self.describe()}")

    def ready(self) -> None:
        self.wait_for_log("reading commands from")

    def command(self, line: str) -> None:
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)

    def result_of(self, line: str, accept: Callable[[str], bool], what: str) -> str:
        """Send ``line`` until the result file satisfies ``accept``; its text."""
        box: list[str] = []

        def check() -> bool:
            if self.result.exists():
                try:
                    self.result.unlink()
                except FileNotFoundError:
                    pass
            self.command(line)
            deadline = time.monotonic() + 1.0
            while not self.result.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            text = self.result.read_text() if self.result.exists() else ""
            box[:] = [text]
            return accept(text)

        poll(check, f"{self.name}: {what}", lambda: f"last result:\n{box}\n{self.describe()}")
        return box[0]

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait_exit(self, seconds: float = DEADLINE) -> int:
        try:
            return self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit\n{self.describe()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def has_phase2(text: str) -> bool:
    return "(Phase 2)" in text


class ConsoleScriptControlTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not os.access(ISAKMPD, os.X_OK):
            raise SkipTest(f"{ISAKMPD} not found (pip install -e .)")
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.ports = free_udp_ports(4)

    def start(self, name: str, **kwargs: object) -> Daemon:
        west_port, west_nat, east_port, east_nat = self.ports
        if name == "west":
            text = config(east_port, WEST_NET, EAST_NET)
            daemon = Daemon(self.dir, name, text, west_port, west_nat, **kwargs)  # type: ignore[arg-type]
        else:
            text = config(west_port, EAST_NET, WEST_NET)
            daemon = Daemon(self.dir, name, text, east_port, east_nat, **kwargs)  # type: ignore[arg-type]
        self.addCleanup(daemon.kill)
        return daemon

    def test_two_daemons_through_fifos_and_signals(self) -> None:
        east = self.start("east", passive=True)
        east.ready()
        west = self.start("west")
        west.ready()
        self.assertEqual(stat.S_IMODE(os.lstat(west.fifo).st_mode), 0o600)

        # Garbage first: logged, ignored, the reader goes on.
        west.command("xyzzy is not a command")
        west.command("C set [General]:Broken")
        text = west.result_of("S", has_phase2, "Main + Quick Mode up")
        self.assertIn("SA name: peer (Phase 1/Initiator)", text)
        self.assertIn("Encryption algorithm: AES (CBC)", text)
        self.assertIn("Authentication algorithm: HMAC-SHA1", text)
        self.assertEqual(stat.S_IMODE(os.stat(west.result).st_mode), 0o600)
        east_text = east.result_of("S", has_phase2, "east's phase 2")
        self.assertIn("SA name: peer (Phase 1/Responder)", east_text)
        # The SPIs cross: west's SPI 0 (outbound) is east's SPI 1 (inbound).
        west_spis = [line for line in text.splitlines() if line.startswith("SPI ")]
        east_spis = [line for line in east_text.splitlines() if line.startswith("SPI ")]
        self.assertEqual([line[6:] for line in west_spis], [line[6:] for line in
                                                             reversed(east_spis)])
        log = west.log()
        self.assertIn("'xyzzy is not a command' ignored: unknown command", log)
        self.assertIn("'C set [General]:Broken' ignored", log)

        # C set / C get.
        west.command("C set [General]:Marker=hello")
        self.assertEqual(west.result_of("C get [General]:Marker", lambda t: t != "",
                                        "C get"), "hello\n")

        # t: torn down on both sides, and not brought back.
        west.command("t conn")
        east.result_of("S", lambda t: not has_phase2(t), "east to follow west's DELETE")
        self.assertFalse(has_phase2(west.result_of("S", lambda t: True, "S")))

        # M passive: c adds the connection but nothing starts; M active starts it.
        west.command("M passive")
        west.command("c conn")
        west.wait_for_log("connection conn added to the active connections")
        self.assertFalse(has_phase2(west.result_of("S", lambda t: True, "S")))
        self.assertNotIn("connection conn: not up, starting it", west.log().split(
            "mode passive")[-1])
        west.command("M active")
        west.result_of("S", has_phase2, "the SA after M active")

        # SIGUSR1: the report file.
        west.signal(signal.SIGUSR1)
        poll(west.report.exists, "the report file", west.describe)
        report = west.report.read_text()
        self.assertEqual(stat.S_IMODE(os.stat(west.report).st_mode), 0o600)
        self.assertIn("Report> IPsec SA conn (phase 2, initiator, ready)", report)
        self.assertIn("Report> Marker=\thello", report)
        self.assertIn("Report> Authentication=\t<hidden>", report)

        # SIGHUP: the file is read again, the FIFO's edit is gone.
        west.write_config(config(self.ports[2], WEST_NET, EAST_NET, "Check-interval=\t17\n"))
        west.signal(signal.SIGHUP)
        west.wait_for_log("reinitialised")
        self.assertEqual(west.result_of("C get [General]:Check-interval",
                                        lambda t: t == "17\n", "the new Check-interval"),
                         "17\n")
        self.assertEqual(west.result_of("C get [General]:Marker", lambda t: True, "C get"),
                         "")
        self.assertTrue(has_phase2(west.result_of("S", lambda t: True, "S")), "SAs kept")

        # SIGTERM: DELETEs, exit 0, no FIFO left; east follows.
        west.signal(signal.SIGTERM)
        self.assertEqual(west.wait_exit(), 0, west.describe())
        self.assertFalse(west.fifo.exists())
        east.result_of("S", lambda t: "SA name" not in t, "east to drop every SA")
        east.command("Q")
        self.assertEqual(east.wait_exit(), 0, east.describe())
        self.assertFalse(east.fifo.exists())

    def test_regular_file_at_the_fifo_path(self) -> None:
        fifo = self.dir / "west.fifo"
        fifo.write_text("keep me\n")
        west = self.start("west")
        self.assertEqual(west.wait_exit(), 1)
        self.assertIn("is a regular file", west.log())
        self.assertEqual(fifo.read_text(), "keep me\n")

    def test_commands_from_standard_input(self) -> None:
        west = self.start("west", fifo="-", passive=True, stdin=subprocess.PIPE)
        west.wait_for_log("reading commands from standard input")
        assert west.proc.stdin is not None
        west.proc.stdin.write(b"junk\nC set [General]:Marker=stdin\nC get [General]:Marker\n")
        west.proc.stdin.flush()
        poll(lambda: west.result.exists() and west.result.read_text() == "stdin\n",
             "the result from standard input", west.describe)
        west.proc.stdin.write(b"Q\n")
        west.proc.stdin.close()
        self.assertEqual(west.wait_exit(), 0, west.describe())
        self.assertFalse((self.dir / "west.fifo").exists())
