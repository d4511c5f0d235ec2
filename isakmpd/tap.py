"""twistd entry point for ``twistd isakmpd``: option parsing and makeService().

:class:`Options` is isakmpd(8)'s command line (inventory §1.1) for both the
``isakmpd`` console script (:mod:`isakmpd.cli`) and ``twistd isakmpd``; it turns
the flags into a :class:`~isakmpd.service.DaemonSettings`. A bad option is a
:class:`usage.UsageError` before anything is bound or created.

:func:`build_service` makes the service both run: :class:`IsakmpdDaemon`, the
daemon with its pid file (``-i``) and ``-d -d``. Under twistd, isakmpd's ``-d``
means ``twistd -n`` (twistd detaches itself otherwise, and then logs to syslog
as isakmpd does) and isakmpd's pid file replaces twistd's: see
:meth:`Options.fit_twistd`.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from isakmpd import log as isakmpd_log
from isakmpd.daemonize import stop_for_debugger
from isakmpd.debug import MAX_LEVEL, DebugClass
from isakmpd.pidfile import PidFile
from isakmpd.service import (
    DEFAULT_CAPTURE_FILE,
    DEFAULT_CONFIG,
    DEFAULT_FIFO,
    DEFAULT_PID_FILE,
    DEFAULT_REPORT_FILE,
    DEFAULT_RESULT_FILE,
    DaemonSettings,
    IsakmpdService,
)

log = Logger()

# twistd's own pid file when none is given (twisted.scripts._twistd_unix).
TWISTD_DEFAULT_PIDFILE = "twistd.pid"


def _port(value: str) -> int:
    """A UDP port number, or a service name from /etc/services (as isakmpd's -N)."""
    try:
        number = int(value)
    except ValueError:
        try:
            number = socket.getservbyname(value, "udp")
        except OSError:
            raise ValueError(f"{value} is neither a port number nor a UDP service name") \
                from None
    if not 0 < number < 65536:
        raise ValueError(f"{value} is not a UDP port (1-65535)")
    return number


def parse_debug(value: str) -> tuple[int | None, int]:
    """``class=level`` or ``A=level`` (``-D``, ``[General] Loglevel``): (class or None, level).

    Raises ValueError naming what is wrong.
    """
    name, sep, level_text = value.partition("=")
    name, level_text = name.strip(), level_text.strip()
    if not sep or not name or not level_text:
        raise ValueError(f"debug setting {value!r} is not class=level")
    if not level_text.isdigit() or int(level_text) > MAX_LEVEL:
        raise ValueError(f"debug level {level_text!r} in {value!r} is not 0-{MAX_LEVEL}")
    if name.upper() == "A":
        return None, int(level_text)
    if not name.isdigit() or int(name) not in DebugClass._value2member_map_:
        raise ValueError(f"debug class {name!r} in {value!r} is not 0-{len(DebugClass) - 1} "
                         "or A")
    return int(name), int(level_text)


class Options(usage.Options):
    """Options of ``twistd isakmpd`` and of the ``isakmpd`` console script."""

    synopsis = ("[-46adKLnSTv] [-c config-file] [-D class=level] [-f fifo] [-i pid-file] "
                "[-l packetlog-file] [-N udpencap-port] [-p listen-port] [-P local-port] "
                "[-R report-file] [-r seed]")
    longdesc = ("OpenBSD's isakmpd(8), the IKEv1 key management daemon, for Linux. "
                "Without -n SAs and flows go into the kernel through XFRM netlink "
                "(needs CAP_NET_ADMIN and a kernel with ESP/AH for the SAs).")

    optFlags: ClassVar[list[list[str]]] = [
        ["inet4", "4", "IPv4 only"],
        ["inet6", "6", "IPv6 only"],
        ["acquire-only", "a", "install SAs only, no flows (as [General] Acquire-Only)"],
        ["ignore-policy", "K", "no KeyNote policy check (there is no policy support yet)"],
        ["capture", "L", f"capture IKE packets in clear to {DEFAULT_CAPTURE_FILE}"],
        ["no-kernel", "n", "do not install SAs into the kernel (in-memory kernel)"],
        ["passive", "S", ("redundancy mode: initiate nothing (FIFO 'M active' resumes), "
                         "send no DELETEs at shutdown")],
        ["no-nat-t", "T", "disable NAT traversal"],
        ["verbose", "v", "log completed phase 1 and phase 2 exchanges"],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["config", "c", DEFAULT_CONFIG, "configuration file"],
        ["fifo", "f", DEFAULT_FIFO, "control FIFO ('-': read commands from standard input)"],
        ["pid-file", "i", DEFAULT_PID_FILE, "pid file"],
        ["capture-file", "l", None, "capture IKE packets in clear to this file (implies -L)"],
        ["nat-t-port", "N", 4500, "UDP port for NAT-T (IKE and ESP in UDP)", _port],
        ["port", "p", 500, "UDP port for IKE", _port],
        ["local-port", "P", None, "UDP port our side uses when initiating", _port],
        ["report-file", "R", DEFAULT_REPORT_FILE, "report file for SIGUSR1"],
        ["result-file", None, DEFAULT_RESULT_FILE, "result file of the FIFO's S and C get"],
        ["seed", "r", None,
         "seed the random generator: every run the same (debugging only; keys predictable)"],
    ]

    def getSynopsis(self) -> str:
        if getattr(self, "parent", None) is None:
            return f"Usage: isakmpd {self.synopsis}"       # the console script
        return super().getSynopsis()                       # twistd [options] isakmpd ...

    def __init__(self) -> None:
        super().__init__()
        self["foreground"] = 0
        self["debug"] = []

    def opt_foreground(self) -> None:
        """stay in the foreground, log to stderr (twice: stop for a debugger)"""
        self["foreground"] += 1

    opt_d = opt_foreground

    def opt_debug(self, value: str) -> None:
        """debug class=level (class 0-10, or A for all); may be repeated"""
        try:
            self["debug"].append(parse_debug(value))
        except ValueError as error:
            raise usage.UsageError(str(error)) from None

    opt_D = opt_debug

    def parseArgs(self, *args: str) -> None:
        if args:
            raise usage.UsageError(f"unexpected argument {args[0]!r}")

    def postOptions(self) -> None:
        if self["inet4"] and self["inet6"]:
            raise usage.UsageError("-4 and -6 exclude each other")
        if self["port"] == self["nat-t-port"] and not self["no-nat-t"]:
            raise usage.UsageError(f"-p and -N are both {self['port']}; they must differ")
        if self["local-port"] == self["nat-t-port"] and not self["no-nat-t"]:
            raise usage.UsageError(f"-P and -N are both {self['local-port']}; they must "
                                   "differ")
        parent = getattr(self, "parent", None)
        if isinstance(parent, usage.Options) and "nodaemon" in parent:
            self.fit_twistd(parent)

    def fit_twistd(self, twistd: usage.Options) -> None:
        """Under ``twistd isakmpd``: map isakmpd's process options onto twistd's.

        twistd detaches, logs and writes a pid file itself, and parses its own options
        before ours, so ours adjust its settings (they are read after parsing):

        * ``-d`` (once or more) means ``twistd -n``: stay in the foreground.
        * Logging is the console script's (:func:`isakmpd.log.twistd_observer` as
          twistd's ``--logger``): with ``-d`` isakmpd's line format on standard
          error, without it syslog with isakmpd's priorities (twistd alone would
          write its own format to standard output or ``twistd.log``). An explicit
          ``--logger``, ``--logfile`` or ``--syslog`` is left as given.
        * Pid file: isakmpd's ``-i`` file (default /var/run/isakmpd.pid) is written
          by the service (pid and newline, old file unlinked first), after twistd
          has detached, and removed at exit. twistd's default ``twistd.pid``, or a
          ``--pidfile`` naming the same file as ``-i``, is switched off, so there
          is one pid file with isakmpd's rules; ``--pidfile`` with another path
          gives a second file (twistd's, without newline) with the same pid.
        * The service cannot be pickled: twistd's save-on-shutdown is switched off.
        """
        if self["foreground"]:
            twistd["nodaemon"] = True
        if not (twistd["logger"] or twistd["logfile"] or twistd["syslog"]):
            twistd["logger"] = isakmpd_log.use_for_twistd(
                to_stderr=bool(self["foreground"] or twistd["nodaemon"]))
        pidfile = twistd["pidfile"]
        if pidfile and (pidfile == TWISTD_DEFAULT_PIDFILE or
                        os.path.abspath(pidfile) == os.path.abspath(self["pid-file"])):
            twistd["pidfile"] = ""
        twistd["no_save"] = True

    def settings(self) -> DaemonSettings:
        families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6)
        if self["inet4"]:
            families = (socket.AF_INET,)
        elif self["inet6"]:
            families = (socket.AF_INET6,)
        seed = self["seed"]
        capture = self["capture-file"] or (DEFAULT_CAPTURE_FILE if self["capture"] else None)
        return DaemonSettings(
            config_file=self["config"], no_kernel=bool(self["no-kernel"]),
            port=self["port"], local_port=self["local-port"],
            nat_t_port=self["nat-t-port"], nat_t=not self["no-nat-t"], families=families,
            seed=seed.encode("utf-8") if seed is not None else None,
            passive=bool(self["passive"]), delete_sas=not self["passive"],
            acquire_only=bool(self["acquire-only"]),
            ignore_policy=bool(self["ignore-policy"]), foreground=self["foreground"],
            debug=tuple(self["debug"]), verbose=bool(self["verbose"]),
            fifo=self["fifo"], pid_file=self["pid-file"], report_file=self["report-file"],
            result_file=self["result-file"], capture_file=capture)


class IsakmpdDaemon(IsakmpdService):
    """The daemon as a process runs it, from the console script or from twistd.

    On top of :class:`~isakmpd.service.IsakmpdService`: the pid file (written in
    :meth:`privilegedStartService`, once detached, before anything is bound;
    removed when the service stops, or when it fails to start), ``-d -d`` (stop
    for a debugger before binding; SIGINT not trapped, as isakmpd) and the note
    that ``-K`` has nothing to switch off yet.
    """

    def __init__(self, settings: DaemonSettings, reactor: Any, *,
                 pid_file: str | None = None) -> None:
        super().__init__(settings, reactor)
        self.pid_file = PidFile(pid_file) if pid_file else None

    def privilegedStartService(self) -> None:
        if self.pid_file is not None:
            self.pid_file.write()
        if self.settings.foreground >= 2:
            stop_for_debugger(lambda text: log.info("{text}", text=text))
            # isakmpd -d -d leaves SIGINT untrapped (the debugger's). The reactor,
            # started after this, leaves a handler that is not Python's default alone.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        super().privilegedStartService()

    def startService(self) -> None:
        if self.settings.ignore_policy:
            log.info("-K: there is no KeyNote policy support yet, so there is no policy to "
                     "ignore; phase 2 proposals are checked against the configuration only")
        try:
            super().startService()
        except BaseException:
            self.remove_pid_file()
            raise

    def stopService(self) -> Deferred[None]:
        d = super().stopService()

        def removed(result: Any) -> Any:
            self.remove_pid_file()
            return result

        return d.addBoth(removed)

    def remove_pid_file(self) -> None:
        if self.pid_file is not None:
            self.pid_file.remove()


def build_service(settings: DaemonSettings, reactor: Any) -> IsakmpdDaemon:
    """The service both the console script and ``twistd isakmpd`` run."""
    return IsakmpdDaemon(settings, reactor, pid_file=settings.pid_file)


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    settings = options.settings()
    return build_service(settings, reactor)
