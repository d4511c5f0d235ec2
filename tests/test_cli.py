"""The ``isakmpd`` console script as a process: detaching, pid file, signals, -P/-a/-K.

Subprocess tests run the installed console script (``.venv/bin/isakmpd``, the
sibling of ``sys.executable``) on 127.0.0.1 with free unprivileged ports and every
file in the test's own directory; they poll with a deadline and kill only the
processes they started. The -a and -K tests run the daemon's service in-process
with the in-memory kernel.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from isakmpd import tap
from isakmpd.cli import absolute_paths
from isakmpd.pidfile import PidFile, PidFileError, read_pid
from isakmpd.service import DaemonSettings, IsakmpdService
from isakmpd.transport.udp import UdpTransport
from tests.support.ikepair import make_config
from tests.test_daemon_loopback import free_udp_ports

ISAKMPD = Path(sys.executable).with_name("isakmpd")
LOOPBACK = "127.0.0.1"
MINIMAL_CONFIG = f"[General]\nListen-on=\t\t{LOOPBACK}\n"
START_TIMEOUT = 20.0


def write_config(path: Path, text: str = MINIMAL_CONFIG) -> Path:
    """A configuration file as the daemon accepts it (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def port_in_use(port: int) -> bool:
    """Whether a UDP socket is bound to ``LOOPBACK:port`` (we cannot bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc (R, S, T, Z, ...), None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[0]


def catches(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler for ``signum`` (SigCgt in /proc/PID/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def running(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def poll(condition: Callable[[], Any], what: str, timeout: float = START_TIMEOUT) -> Any:
    """Call ``condition`` until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def control_files(directory: Path) -> list[str]:
    """-f/-R/--result-file into ``directory``: tests never touch /var/run's files."""
    return ["-f", str(directory / "fifo"), "-R", str(directory / "report"),
            "--result-file", str(directory / "result")]


class DaemonProcessMixin:
    """Starting and cleaning up console-script daemons in a private directory."""

    mktemp: Callable[[], str]
    addCleanup: Callable[..., None]

    def setup_directory(self) -> None:
        if not os.access(ISAKMPD, os.X_OK):
            raise SkipTest(f"{ISAKMPD} not found (pip install -e .)")
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir(parents=True)
        self.config = write_config(self.dir / "isakmpd.conf")
        self.pid_path = self.dir / "isakmpd.pid"
        self.port, self.nat_t_port = free_udp_ports(2)

    def daemon_args(self, *extra: str, config: Path | None = None,
                    port: int | None = None, nat_t_port: int | None = None) -> list[str]:
        return [str(ISAKMPD), "-n", "-4", "-c", str(config or self.config),
                "-i", str(self.pid_path), "-p", str(port or self.port),
                "-N", str(nat_t_port or self.nat_t_port),
                *control_files(self.dir), *extra]

    def start_foreground(self, *extra: str, name: str = "isakmpd",
                         **kw: Any) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")   # noqa: SIM115 - closed in cleanup
        self.addCleanup(log.close)
        proc = subprocess.Popen(self.daemon_args("-d", *extra, **kw),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.addCleanup(self.reap, proc)
        return proc

    def reap(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    def kill_detached(self, pid: int) -> None:
        """Cleanup: SIGKILL a detached daemon of this test if it still runs."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if str(self.config).encode() in cmdline and running(pid):
            os.kill(pid, signal.SIGKILL)

    def log_text(self, name: str = "isakmpd") -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_listening(self, proc: subprocess.Popen[bytes] | None = None,
                       port: int | None = None, name: str = "isakmpd") -> None:
        def bound() -> bool:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"isakmpd exited with {proc.returncode}:\n"
                                     f"{self.log_text(name)}")
            return port_in_use(port or self.port)

        poll(bound, f"isakmpd to bind port {port or self.port}")

    def leftovers(self, *expected: str) -> set[str]:
        """Files in the test directory other than the config, logs and ``expected``."""
        return {p.name for p in self.dir.iterdir()
                if p.name != self.config.name and not p.name.endswith(".log")
                and p.name not in expected}


class ConsoleScriptTests(DaemonProcessMixin, SynchronousTestCase):
    """The installed ``isakmpd`` console script, run as a process."""

    def setUp(self) -> None:
        self.setup_directory()

    def test_foreground_pid_file_and_sigterm(self) -> None:
        proc = self.start_foreground()
        self.wait_listening(proc)
        self.assertEqual(self.pid_path.read_text(), f"{proc.pid}\n")
        self.assertTrue(port_in_use(self.nat_t_port))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(15), 0, self.log_text())
        self.assertFalse(self.pid_path.exists())
        self.assertEqual(self.leftovers(), set())
        self.assertFalse(port_in_use(self.port))
        self.assertFalse(port_in_use(self.nat_t_port))

    def test_detaches_and_sigterm_stops_it(self) -> None:
        result = subprocess.run(self.daemon_args(), stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=START_TIMEOUT, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual((result.stdout, result.stderr), (b"", b""))
        # The command returns once the daemon runs: pid file written, ports bound.
        pid = read_pid(str(self.pid_path))
        self.assertIsNotNone(pid)
        assert pid is not None
        self.addCleanup(self.kill_detached, pid)
        self.assertEqual(self.pid_path.read_text(), f"{pid}\n")
        self.assertTrue(running(pid))
        self.assertTrue(port_in_use(self.port))
        # Detached: a new session, not its leader, working directory /, stdio on /dev/null.
        self.assertNotEqual(os.getsid(pid), os.getsid(0))
        self.assertNotEqual(os.getsid(pid), pid)
        self.assertEqual(os.readlink(f"/proc/{pid}/cwd"), "/")
        for fd in (0, 1, 2):
            self.assertEqual(os.readlink(f"/proc/{pid}/fd/{fd}"), os.devnull)
        os.kill(pid, signal.SIGTERM)
        poll(lambda: not running(pid), "the detached daemon to exit after SIGTERM")
        poll(lambda: not self.pid_path.exists(), "the pid file to go")
        self.assertEqual(self.leftovers(), set())
        self.assertFalse(port_in_use(self.port))

    def test_relative_paths_work_after_detaching(self) -> None:
        # The daemon works from /; paths given relative to the caller still work.
        args = self.daemon_args()
        args[args.index(str(self.config))] = self.config.name
        args[args.index(str(self.pid_path))] = self.pid_path.name
        result = subprocess.run(args, cwd=self.dir, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=START_TIMEOUT, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        pid = read_pid(str(self.pid_path))
        assert pid is not None
        self.addCleanup(self.kill_detached, pid)
        os.kill(pid, signal.SIGTERM)
        poll(lambda: not running(pid), "the detached daemon to exit")
        poll(lambda: not self.pid_path.exists(), "the pid file to go")

    def test_start_failure_reaches_the_terminal(self) -> None:
        # Without -d the waiting parent prints why the daemon could not start.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
            blocker.bind((LOOPBACK, self.port))
            result = subprocess.run(self.daemon_args(), stdin=subprocess.DEVNULL,
                                    capture_output=True, timeout=START_TIMEOUT, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"cannot start", result.stderr)
        self.assertIn(b"address already in use", result.stderr)
        self.assertEqual(self.leftovers(), set())

    def test_pid_file_write_failure_is_fatal(self) -> None:
        self.pid_path = self.dir / "missing-directory" / "isakmpd.pid"
        result = subprocess.run(self.daemon_args(), stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=START_TIMEOUT, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"cannot write the pid file", result.stderr)
        self.assertIn(str(self.pid_path).encode(), result.stderr)
        self.assertFalse(port_in_use(self.port))
        proc = self.start_foreground()
        self.assertEqual(proc.wait(15), 1)
        self.assertIn("cannot write the pid file", self.log_text())
        self.assertFalse(port_in_use(self.port))

    def test_sigkill_then_restart(self) -> None:
        first = self.start_foreground(name="first")
        self.wait_listening(first, name="first")
        first.kill()
        first.wait(10)
        # A daemon killed with SIGKILL leaves its pid file (and its FIFO) behind.
        self.assertEqual(self.pid_path.read_text(), f"{first.pid}\n")
        second = self.start_foreground(name="second")
        self.wait_listening(second, name="second")
        self.assertEqual(self.pid_path.read_text(), f"{second.pid}\n")
        second.send_signal(signal.SIGTERM)
        self.assertEqual(second.wait(15), 0, self.log_text("second"))
        self.assertEqual(self.leftovers(), set())

    def test_stale_pid_file_of_any_kind_is_replaced(self) -> None:
        os.mkfifo(self.pid_path, 0o600)
        proc = self.start_foreground()
        self.wait_listening(proc)
        self.assertEqual(self.pid_path.read_text(), f"{proc.pid}\n")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(15), 0)
        self.assertFalse(self.pid_path.exists())

    def test_bad_options_exit_1_with_usage_and_create_nothing(self) -> None:
        for bad in (["-Z"], ["stray-argument"], ["-D", "11=1"], ["-p", "0"],
                    ["-P", str(self.nat_t_port)], ["-4", "-6"], ["-c"]):
            for foreground in ([], ["-d"]):
                args = self.daemon_args(*foreground, *bad)
                result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True,
                                        timeout=START_TIMEOUT, check=False)
                self.assertEqual(result.returncode, 1, (bad, result.stderr))
                self.assertIn(b"Usage:", result.stderr, bad)
                self.assertIn(b"[-46adKLnSTv]", result.stderr, bad)
                self.assertEqual(self.leftovers(), set(), bad)
                self.assertFalse(port_in_use(self.port), bad)

    def test_debugger_stop_with_d_twice(self) -> None:
        proc = self.start_foreground("-d")
        # -d -d: the daemon stops itself before it binds anything ...
        poll(lambda: process_state(proc.pid) == "T", "the daemon to stop itself")
        self.assertEqual(self.pid_path.read_text(), f"{proc.pid}\n")
        self.assertFalse(port_in_use(self.port))
        self.assertIn(f"kill -CONT {proc.pid}", self.log_text())
        # ... until it is continued; then SIGINT is not trapped (the debugger's).
        os.kill(proc.pid, signal.SIGCONT)
        self.wait_listening(proc)
        poll(lambda: "isakmpd listening on" in self.log_text(), "the daemon to run")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(15), -signal.SIGINT)
        self.pid_path.unlink()

    def test_sigint_with_one_d_is_a_clean_shutdown(self) -> None:
        proc = self.start_foreground()
        self.wait_listening(proc)
        poll(lambda: "isakmpd listening on" in self.log_text(), "the daemon to run")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(15), 0)
        self.assertFalse(self.pid_path.exists())


class LocalPortTests(DaemonProcessMixin, TestCase):
    """-P: the console script initiates from its local port; east (in-process) sees it."""

    timeout = 60

    def setUp(self) -> None:
        self.setup_directory()

    @inlineCallbacks
    def wait_for(self, condition: Callable[[], Any], what: str,
                 proc: subprocess.Popen[bytes]) -> Any:
        deadline = time.monotonic() + START_TIMEOUT
        while not condition():
            if proc.poll() is not None:
                self.fail(f"west exited with {proc.returncode}:\n{self.log_text('west')}")
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}:\n{self.log_text('west')}")
            yield deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def test_initiated_exchanges_use_the_local_port(self) -> Any:
        west_port, west_nat, west_local, east_port, east_nat = free_udp_ports(5)
        common = {"local": LOOPBACK, "peer": LOOPBACK, "transforms": "AES-128-SHA-GRP14",
                  "suites": "QM-ESP-AES-128-SHA-PFS-GRP14-SUITE"}
        listen = f"[General]\nListen-on=\t\t{LOOPBACK}\n"
        east_text = make_config(local_net="203.0.113.128/25", remote_net="203.0.113.0/25",
                                extra_peer=f"Port=\t\t\t{west_port}\n", **common)
        east_config = write_config(self.dir / "east.conf",
                                   east_text.replace("[General]\n", listen, 1))
        east = IsakmpdService(DaemonSettings(
            config_file=str(east_config), no_kernel=True, port=east_port,
            nat_t_port=east_nat, families=(socket.AF_INET,), passive=True), reactor)
        east.startService()
        self.addCleanup(east.stopService)
        west_text = make_config(local_net="203.0.113.0/25", remote_net="203.0.113.128/25",
                                extra_peer=f"Port=\t\t\t{east_port}\n"
                                           f"Local-address=\t\t{LOOPBACK}\n", **common)
        west_config = write_config(self.dir / "west.conf",
                                   west_text.replace("[General]\n", listen, 1))
        proc = self.start_foreground("-P", str(west_local), name="west", config=west_config,
                                     port=west_port, nat_t_port=west_nat)
        assert east.engine is not None

        def established() -> bool:
            assert east.engine is not None
            return any(sa.ready for sa in east.engine.sadb.ipsec_by_name("conn"))

        yield self.wait_for(established, "Main Mode + Quick Mode with west", proc)
        peers = {sa.remote for sa in east.engine.sadb.isakmp_sas()}
        self.assertEqual(peers, {(LOOPBACK, west_local)})
        # West listens on -p, -N and -P.
        for port in (west_port, west_nat, west_local):
            self.assertTrue(port_in_use(port), port)
        proc.send_signal(signal.SIGTERM)
        yield self.wait_exit(proc)
        self.assertEqual(proc.returncode, 0)

    @inlineCallbacks
    def wait_exit(self, proc: subprocess.Popen[bytes]) -> Any:
        deadline = time.monotonic() + START_TIMEOUT
        while proc.poll() is None:
            if time.monotonic() > deadline:
                self.fail("west did not exit after SIGTERM")
            yield deferLater(reactor, 0.05, lambda: None)


class TransportLocalPortTests(SynchronousTestCase):
    def test_local_port_bound_after_the_others(self) -> None:
        port, nat_t_port, local_port = free_udp_ports(3)
        transport = UdpTransport(reactor, _NoHandler(), [LOOPBACK], port, nat_t_port,
                                 local_port=local_port)
        transport.start()
        self.addCleanup(transport.stop)
        self.assertEqual([end for end, _ in transport.endpoints()],
                         [(LOOPBACK, port), (LOOPBACK, nat_t_port), (LOOPBACK, local_port)])
        self.assertEqual(transport.endpoint(LOOPBACK), (LOOPBACK, port))
        self.assertFalse(transport.is_nat_t((LOOPBACK, local_port)))

    def test_local_port_equal_to_port_binds_nothing_more(self) -> None:
        port, nat_t_port = free_udp_ports(2)
        transport = UdpTransport(reactor, _NoHandler(), [LOOPBACK], port, nat_t_port,
                                 local_port=port)
        transport.start()
        self.addCleanup(transport.stop)
        self.assertEqual(len(transport.endpoints()), 2)

    def test_local_port_equal_to_nat_t_port_refused(self) -> None:
        with self.assertRaises(ValueError):
            UdpTransport(reactor, _NoHandler(), [LOOPBACK], 1500, 1501, local_port=1501)


class _NoHandler:
    def datagram_received(self, data: bytes, local: Any, remote: Any) -> None:
        pass


class InProcessTests(TestCase):
    """-a and -K through the service, with the in-memory kernel."""

    timeout = 30

    def start(self, name: str, config: str, port: int, nat_t_port: int, **kw: Any
              ) -> IsakmpdService:
        path = write_config(Path(self.mktemp() + f"-{name}.conf"), config)
        settings = DaemonSettings(config_file=str(path), no_kernel=True, port=port,
                                  nat_t_port=nat_t_port, families=(socket.AF_INET,),
                                  seed=name.encode(), **kw)
        service = IsakmpdService(settings, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @inlineCallbacks
    def test_acquire_only_installs_no_flows(self) -> Any:
        options = tap.Options()
        options.parseOptions(["-n", "-a"])
        self.assertTrue(options.settings().acquire_only)
        west_port, west_nat, east_port, east_nat = free_udp_ports(4)
        listen = f"[General]\nListen-on=\t\t{LOOPBACK}\n"

        def config(peer_port: int, local_net: str, remote_net: str) -> str:
            return make_config(local=LOOPBACK, peer=LOOPBACK, local_net=local_net,
                               remote_net=remote_net, transforms="AES-128-SHA-GRP14",
                               suites="QM-ESP-AES-128-SHA-PFS-GRP14-SUITE",
                               extra_peer=f"Port=\t\t\t{peer_port}\n"
                                          f"Local-address=\t\t{LOOPBACK}\n"
                               ).replace("[General]\n", listen, 1)

        east = self.start("east", config(west_port, "203.0.113.128/25", "203.0.113.0/25"),
                          east_port, east_nat, passive=True)
        west = self.start("west", config(east_port, "203.0.113.0/25", "203.0.113.128/25"),
                          west_port, west_nat, acquire_only=True)
        deadline = time.monotonic() + 15
        while not (len(west.kernel.sas) == 2 and len(east.kernel.sas) == 2):
            if time.monotonic() > deadline:
                self.fail("no SAs between the two daemons")
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(west.kernel.flows, [])
        self.assertTrue(east.kernel.flows)
        ipsec = [sa for sa in west.engine.sadb.ipsec_by_name("conn") if sa.ready]
        self.assertTrue(ipsec)
        self.assertEqual(ipsec[0].flows, [])

    def test_ignore_policy_accepted_and_logged(self) -> Deferred[None]:
        port, nat_t_port = free_udp_ports(2)
        directory = Path(self.mktemp())
        directory.mkdir()
        config = write_config(directory / "isakmpd.conf")
        options = tap.Options()
        options.parseOptions(["-n", "-K", "-4", "-c", str(config), "-p", str(port),
                              "-N", str(nat_t_port), "-i", str(directory / "pid")])
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service = tap.makeService(options)
        assert isinstance(service, tap.IsakmpdDaemon)
        service.privilegedStartService()
        self.assertEqual((directory / "pid").read_text(), f"{os.getpid()}\n")
        service.startService()
        self.assertTrue(any("KeyNote" in (formatEvent(e) or "") for e in events))

        def stopped(_: Any) -> None:
            self.assertFalse((directory / "pid").exists())

        return service.stopService().addCallback(stopped)


class PidFileTests(SynchronousTestCase):
    def test_write_and_remove(self) -> None:
        path = self.mktemp()
        pid_file = PidFile(path)
        pid_file.write()
        with open(path) as handle:
            self.assertEqual(handle.read(), f"{os.getpid()}\n")
        self.assertTrue(pid_file.remove())
        self.assertFalse(os.path.exists(path))

    def test_old_file_unlinked_first(self) -> None:
        path = self.mktemp()
        other = self.mktemp()
        with open(other, "w") as handle:
            handle.write("not ours\n")
        os.symlink(other, path)          # not followed: replaced
        PidFile(path).write()
        self.assertFalse(os.path.islink(path))
        with open(other) as handle:
            self.assertEqual(handle.read(), "not ours\n")
        os.unlink(path)

    def test_a_newer_daemons_file_is_left_alone(self) -> None:
        path = self.mktemp()
        pid_file = PidFile(path)
        pid_file.write()
        with open(path, "w") as handle:
            handle.write("1\n")
        self.assertFalse(pid_file.remove())
        self.assertTrue(os.path.exists(path))
        os.unlink(path)

    def test_write_failure(self) -> None:
        path = os.path.join(self.mktemp(), "none", "isakmpd.pid")
        with self.assertRaises(PidFileError) as caught:
            PidFile(path).write()
        self.assertIn(path, str(caught.exception))
        self.assertIn("-i", str(caught.exception))


class OptionTests(SynchronousTestCase):
    def test_built_flags_are_accepted(self) -> None:
        options = tap.Options()
        options.parseOptions(["-n", "-a", "-K", "-d", "-d", "-i", "/tmp/x.pid", "-P", "5500"])
        settings = options.settings()
        self.assertEqual((settings.acquire_only, settings.ignore_policy, settings.foreground,
                          settings.pid_file, settings.local_port),
                         (True, True, 2, "/tmp/x.pid", 5500))

    def test_local_port_and_nat_t_port(self) -> None:
        options = tap.Options()
        with self.assertRaises(usage.UsageError):
            options.parseOptions(["-P", "4500"])
        options = tap.Options()
        options.parseOptions(["-P", "4500", "-T"])      # no NAT-T port
        options = tap.Options()
        options.parseOptions(["-P", "500"])             # the IKE port itself: fine

    def test_absolute_paths(self) -> None:
        settings = absolute_paths(DaemonSettings(config_file="a.conf", pid_file="p",
                                                 fifo="-", capture_file=None))
        self.assertEqual(settings.config_file, os.path.abspath("a.conf"))
        self.assertEqual(settings.pid_file, os.path.abspath("p"))
        self.assertEqual(settings.fifo, "-")
        self.assertIsNone(settings.capture_file)


CONF = Path(__file__).resolve().parent.parent / "conf"
QUICKSTART_PORTS = {"west": (5500, 5501), "east": (5600, 5601)}


class QuickStartTests(TestCase):
    """conf/quickstart-*.conf and conf/quickstart.sh (README, "Quick start")."""

    timeout = 90

    def setUp(self) -> None:
        busy = [p for ports in QUICKSTART_PORTS.values() for p in ports if port_in_use(p)]
        if busy:
            raise SkipTest(f"the quick start's UDP ports {busy} on {LOOPBACK} are in use")

    def copy(self, name: str) -> Path:
        directory = Path(self.mktemp())
        directory.mkdir()
        return write_config(directory / f"{name}.conf",
                            (CONF / f"quickstart-{name}.conf").read_text())

    def test_configs_load_without_complaint(self) -> None:
        from isakmpd.config.parser import Severity
        from isakmpd.fileutil import load_config_file

        for name in QUICKSTART_PORTS:
            _, diagnostics = load_config_file(str(self.copy(name)))
            self.assertEqual([str(d) for d in diagnostics if d.severity is not Severity.INFO],
                             [], name)

    def test_script(self) -> None:
        # The README's run command: both daemons from conf/, Main + Quick Mode, S printed.
        # (Run as one test: a second one on the same fixed ports would collide with it
        # under trial -j.)
        if not os.access(ISAKMPD, os.X_OK):
            raise SkipTest(f"{ISAKMPD} not found (pip install -e .)")
        tmp = Path(self.mktemp()).absolute()
        tmp.mkdir()
        result = subprocess.run(["sh", str(CONF / "quickstart.sh")], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=80, check=False,
                                env={**os.environ, "ISAKMPD": str(ISAKMPD),
                                     "TMPDIR": str(tmp)})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for name in ("west", "east"):
            self.assertIn(f"=== {name}: S (SAs) ===", result.stdout)
        self.assertEqual(result.stdout.count("(Phase 2"), 2, result.stdout)
        self.assertEqual(list(tmp.iterdir()), [])     # daemons stopped, files removed
        for ports in QUICKSTART_PORTS.values():
            for port in ports:
                self.assertFalse(port_in_use(port))
