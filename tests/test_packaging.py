"""The package is wired into Twisted: ``twistd isakmpd`` exists, says what it can do,
and runs the same daemon as the console script (pid file, detaching, SIGTERM)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.logger import FileLogObserver
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from isakmpd import cli, tap
from isakmpd import log as isakmpd_log
from isakmpd.pidfile import read_pid
from isakmpd.service import IsakmpdService
from tests.test_cli import (
    START_TIMEOUT,
    DaemonProcessMixin,
    catches,
    poll,
    port_in_use,
    running,
)

# `python -m twisted.scripts.twistd` runs nothing (the module has no __main__ block).
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class PluginTests(SynchronousTestCase):
    def test_plugin_is_discovered(self) -> None:
        names = [maker.tapname for maker in getPlugins(IServiceMaker)]
        self.assertIn("isakmpd", names)

    def test_twistd_help_lists_isakmpd(self) -> None:
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
            check=False, capture_output=True, text=True, timeout=60)
        self.assertIn("isakmpd", result.stdout)

    def test_service_without_n_uses_the_kernel(self) -> None:
        options = tap.Options()
        options.parseOptions([])
        service = tap.makeService(options)
        self.assertIsInstance(service, IsakmpdService)
        self.assertFalse(service.settings.no_kernel)

    def test_service_with_memory_kernel(self) -> None:
        options = tap.Options()
        options.parseOptions(["-n", "-c", "/nonexistent.conf", "-p", "1500", "-N", "1501",
                              "-4", "-r", "seed"])
        service = tap.makeService(options)
        self.assertIsInstance(service, IsakmpdService)
        settings = service.settings
        self.assertEqual((settings.port, settings.nat_t_port, settings.seed),
                         (1500, 1501, b"seed"))

    def test_bad_options(self) -> None:
        for argv in (["-p", "0"], ["-p", "x"], ["-4", "-6"], ["-p", "700", "-N", "700"],
                     ["-Z"], ["-P", "4500"], ["-P", "0"]):
            options = tap.Options()
            with self.assertRaises(usage.UsageError, msg=argv):
                options.parseOptions(argv)

    def test_console_script_exits_1_with_bad_options(self) -> None:
        # (Without -n the script now starts the daemon: see tests.test_daemon_xfrm.)
        self.assertEqual(cli.main(["--bogus"]), 1)


class TwistdOptionTests(SynchronousTestCase):
    """How isakmpd's process options map onto twistd's (tap.Options.fit_twistd)."""

    def parse(self, *argv: str) -> ServerOptions:
        config = ServerOptions()
        config.parseOptions(list(argv))
        return config

    def test_d_means_no_daemon_and_isakmpd_lines_on_stderr(self) -> None:
        config = self.parse("isakmpd", "-n", "-d")
        self.assertTrue(config["nodaemon"])
        self.assertFalse(config["syslog"])
        self.assertEqual(config.subOptions.settings().foreground, 1)
        self.assertIs(config["logger"], isakmpd_log.twistd_observer)
        self.assertIsInstance(config["logger"](), FileLogObserver)

    def test_detached_twistd_logs_to_syslog_as_isakmpd(self) -> None:
        config = self.parse("isakmpd", "-n")
        self.assertFalse(config["nodaemon"])
        self.assertIs(config["logger"], isakmpd_log.twistd_observer)
        self.assertFalse(isakmpd_log._twistd_to_stderr)
        self.assertTrue(config["no_save"])

    def test_explicit_log_choice_is_kept(self) -> None:
        config = self.parse("--logfile", "x.log", "isakmpd", "-n")
        self.assertIsNone(config["logger"])
        config = self.parse("--syslog", "isakmpd", "-n")
        self.assertIsNone(config["logger"])

    def test_one_pid_file(self) -> None:
        self.assertEqual(self.parse("isakmpd", "-n")["pidfile"], "")
        self.assertEqual(self.parse("--pidfile", "/tmp/i.pid", "isakmpd", "-n", "-i",
                                    "/tmp/i.pid")["pidfile"], "")
        self.assertEqual(self.parse("--pidfile", "/tmp/t.pid", "isakmpd", "-n", "-i",
                                    "/tmp/i.pid")["pidfile"], "/tmp/t.pid")

    def test_usage_names_twistd(self) -> None:
        options = tap.Options()
        self.assertTrue(options.getSynopsis().startswith("Usage: isakmpd [-46adKLnSTv]"))


class TwistdProcessTests(DaemonProcessMixin, SynchronousTestCase):
    """``twistd isakmpd`` as a process, in the test's own directory."""

    def setUp(self) -> None:
        self.setup_directory()

    def twistd(self, *twistd_args: str, isakmpd_args: tuple[str, ...] = ()) -> list[str]:
        return [*TWISTD, *twistd_args, "isakmpd", *self.daemon_args(*isakmpd_args)[1:]]

    def start(self, args: list[str]) -> "subprocess.Popen[bytes]":
        log = open(self.dir / "isakmpd.log", "wb")   # noqa: SIM115 - closed in cleanup
        self.addCleanup(log.close)
        proc = subprocess.Popen(args, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log)
        self.addCleanup(self.reap, proc)
        return proc

    def wait_running(self, pid: int) -> None:
        # twistd starts the service before its reactor runs and installs the
        # SIGTERM handler: a SIGTERM in between would simply kill it.
        poll(lambda: catches(pid, signal.SIGTERM), "twistd's reactor to run")

    def test_foreground_start_and_stop(self) -> None:
        proc = self.start(self.twistd("-n", "--pidfile="))
        self.wait_listening(proc)
        self.wait_running(proc.pid)
        self.assertEqual(self.pid_path.read_text(), f"{proc.pid}\n")
        proc.send_signal(signal.SIGTERM)
        # The service's own SIGTERM handler shuts down and stops the reactor: exit 0.
        self.assertEqual(proc.wait(15), 0, self.log_text())
        self.assertFalse(self.pid_path.exists())
        self.assertEqual(self.leftovers(), set())
        self.assertFalse(port_in_use(self.port))

    def test_d_keeps_twistd_in_the_foreground(self) -> None:
        # isakmpd's -d is twistd -n; a --pidfile naming -i's file is left to isakmpd.
        proc = self.start(self.twistd(f"--pidfile={self.pid_path}", isakmpd_args=("-d",)))
        self.wait_listening(proc)
        self.wait_running(proc.pid)
        self.assertIsNone(proc.poll())
        self.assertEqual(self.pid_path.read_text(), f"{proc.pid}\n")
        proc.send_signal(signal.SIGTERM)
        # The service's own SIGTERM handler shuts down and stops the reactor: exit 0.
        self.assertEqual(proc.wait(15), 0, self.log_text())
        self.assertFalse(self.pid_path.exists())
        self.assertEqual(self.leftovers(), set())

    def test_fifo_signals_files_and_log_format(self) -> None:
        # twistd -n isakmpd driven as an operator would: FIFO commands, the result
        # and report files, SIGUSR1, SIGHUP, and Q; isakmpd's log lines on stderr.
        proc = self.start(self.twistd("-n", "--pidfile="))
        self.wait_listening(proc)
        self.wait_running(proc.pid)
        fifo = self.dir / "fifo"
        result, report = self.dir / "result", self.dir / "report"

        def command(line: str) -> None:
            with open(fifo, "w") as handle:
                handle.write(line + "\n")

        command("C set [General]:Check-interval=77 force")
        command("C get [General]:Check-interval")
        poll(lambda: result.exists() and result.read_text() == "77\n", "C get's result")
        command("S")
        poll(lambda: result.exists() and result.read_text() != "77\n", "S's result")
        os.kill(proc.pid, signal.SIGUSR1)
        poll(report.exists, "the SIGUSR1 report")
        self.assertEqual(report.stat().st_mode & 0o777, 0o600)
        self.assertRegex(report.read_text().splitlines()[0], r"^\d{6}\.\d{6} Report> ")
        os.kill(proc.pid, signal.SIGHUP)
        poll(lambda: "reinitialised" in self.log_text(), "the SIGHUP reinitialisation")
        command("C get [General]:Check-interval")      # FIFO edits are gone
        poll(lambda: result.read_text() != "77\n", "the re-read configuration")
        command("Q")
        self.assertEqual(proc.wait(15), 0, self.log_text())
        self.assertRegex(self.log_text(), r"(?m)^\d{6}\.\d{6} Default isakmpd listening on ")
        self.assertNotIn("[isakmpd", self.log_text())     # not twistd's own format
        self.assertEqual(self.leftovers("report", "result"), set())   # FIFO, pid file gone

    def test_detached_start_and_stop(self) -> None:
        result = subprocess.run(self.twistd(), cwd=self.dir, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=START_TIMEOUT, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        pid = read_pid(str(self.pid_path))
        assert pid is not None
        self.addCleanup(self.kill_detached, pid)
        self.assertTrue(running(pid))
        self.assertTrue(port_in_use(self.port))
        # No twistd.pid, twistd.log or saved application beside isakmpd's own files.
        self.assertEqual(self.leftovers("fifo", "report", "result"), {self.pid_path.name})
        self.wait_running(pid)
        os.kill(pid, signal.SIGTERM)
        poll(lambda: not running(pid), "the detached twistd to exit after SIGTERM")
        poll(lambda: not self.pid_path.exists(), "the pid file to go")
        self.assertEqual(self.leftovers(), set())

    def test_start_failure_exits_1(self) -> None:
        self.pid_path = Path(self.dir / "missing" / "isakmpd.pid")
        result = subprocess.run(self.twistd(), cwd=self.dir, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=START_TIMEOUT, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"cannot write the pid file", result.stdout + result.stderr)
        self.assertFalse(port_in_use(self.port))
