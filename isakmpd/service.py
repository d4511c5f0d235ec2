"""The daemon as a Twisted service: wires configuration, kernel, transport and engine.

This module owns the start and stop of one isakmpd instance (DESIGN.md §2): it reads
the configuration file (the secrecy rule and every diagnostic logged with file and
line), picks the kernel provider, binds the UDP ports on the listen addresses,
creates the :class:`~isakmpd.ike.engine.Engine` and the connection checker, and on
stop deletes the SAs (with DELETE unless told not to) and closes the ports.

The command line is parsed in :mod:`isakmpd.tap` into :class:`DaemonSettings`;
:mod:`isakmpd.cli` and ``twistd isakmpd`` run this service. Besides the start and
stop, the service holds what an operator drives (inventory §1.2-§1.4, §4.10): the
FIFO and signals (:mod:`isakmpd.control`), reinitialisation, the report and result
files, the clean shutdown, log levels (:mod:`isakmpd.log`) and packet capture
(:mod:`isakmpd.capture`). The kernel provider is the in-memory one with ``-n``, else
:class:`~isakmpd.kernel.xfrm.XfrmKernel` (XFRM netlink: SPIs and policies work on any
kernel with XFRM; SAs need one with ESP/AH): then the IKE sockets bypass IPsec
(:func:`~isakmpd.kernel.xfrm.prepare_ike_socket`) and the kernel's ACQUIRE and EXPIRE
events are read while the service runs and handed to the engine
(:meth:`IsakmpdService.kernel_event`; an ACQUIRE starts an on-demand negotiation,
:mod:`isakmpd.ike.ondemand`). At stop the engine removes what it installed,
SA by SA and policy by policy from its records (never a flush).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from zope.interface import implementer

from isakmpd import collector
from isakmpd import log as isakmpd_log
from isakmpd.capture import CaptureError, PacketCapture
from isakmpd.config.parser import Severity
from isakmpd.crypto.random import RandomSource, SeededRandom, SystemRandom
from isakmpd.fileutil import load_config_file
from isakmpd.ike.connections import ConnectionManager
from isakmpd.ike.engine import Engine
from isakmpd.kernel.addresses import interface_addresses
from isakmpd.kernel.memory import MemoryKernel
from isakmpd.kernel.xfrm import prepare_ike_socket
from isakmpd.transport.interface import IDatagramHandler
from isakmpd.transport.udp import UdpTransport, select_listen_addresses
from isakmpd.wire.constants import ISAKMP_PORT, NAT_T_PORT

__all__ = [
    "DEFAULT_CAPTURE_FILE",
    "DEFAULT_CONFIG",
    "DEFAULT_FIFO",
    "DEFAULT_PID_FILE",
    "DEFAULT_REPORT_FILE",
    "DEFAULT_RESULT_FILE",
    "DaemonSettings",
    "IsakmpdService",
    "StartupError",
    "source_address_for",
]

DEFAULT_CONFIG = "/etc/isakmpd/isakmpd.conf"
log = Logger()


class StartupError(Exception):
    """The daemon cannot start; the message says what to change."""


DEFAULT_FIFO = "/var/run/isakmpd.fifo"
DEFAULT_PID_FILE = "/var/run/isakmpd.pid"
DEFAULT_REPORT_FILE = "/var/run/isakmpd.report"
DEFAULT_RESULT_FILE = "/var/run/isakmpd.result"
DEFAULT_CAPTURE_FILE = "/var/run/isakmpd.pcap"


@dataclass
class DaemonSettings:
    """What the command line decided (isakmpd(8) flags, inventory §1.1).

    Paths default to isakmpd's; each can be changed (``--result-file`` is ours:
    isakmpd's result file has a fixed path) so that a user without root can run
    the daemon on unprivileged ports.
    """

    config_file: str = DEFAULT_CONFIG
    no_kernel: bool = False           # -n: SAs go to the in-memory kernel only
    port: int = ISAKMP_PORT           # -p
    local_port: int | None = None     # -P: our port when initiating (None: -p's)
    nat_t_port: int = NAT_T_PORT      # -N
    nat_t: bool = True                # -T turns NAT-T off
    families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6)   # -4 / -6
    seed: bytes | None = None         # -r: reproducible randomness (debugging only)
    passive: bool = False             # -S: initiate nothing (FIFO "M active" resumes)
    delete_sas: bool = True           # -S: no DELETEs at shutdown
    acquire_only: bool = False        # -a: SAs only, no flows
    ignore_policy: bool = False       # -K: no KeyNote policy (none exists yet)
    foreground: int = 0               # -d, counted: stay attached, log to stderr
    debug: tuple[tuple[int | None, int], ...] = ()    # -D class=level (None: A, all)
    verbose: bool = False             # -v: phase 1 / phase 2 "done" lines
    fifo: str | None = None           # -f ("-": standard input; the CLI's default is
    #                                   DEFAULT_FIFO; None here: no FIFO, as in tests)
    pid_file: str = DEFAULT_PID_FILE  # -i
    report_file: str = DEFAULT_REPORT_FILE    # -R
    result_file: str = DEFAULT_RESULT_FILE    # --result-file
    capture_file: str | None = None   # -L (DEFAULT_CAPTURE_FILE) or -l FILE; None: off


def source_address_for(remote_ip: str, port: int = ISAKMP_PORT) -> str:
    """Our address the kernel would use to reach ``remote_ip``.

    Connecting a UDP socket sends nothing; it only asks the routing table.
    """
    family = socket.AF_INET6 if ":" in remote_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((remote_ip, port or ISAKMP_PORT))
        return str(sock.getsockname()[0])


@implementer(IDatagramHandler)
class _Dispatch:
    """Hands datagrams to the engine once it exists (the transport is made first)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def datagram_received(self, data: bytes, local: Any, remote: Any) -> None:
        if self.engine is not None:
            self.engine.datagram_received(data, local, remote)


class IsakmpdService(Service):
    """One running daemon."""

    def __init__(self, settings: DaemonSettings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.rng: RandomSource = (SeededRandom(settings.seed) if settings.seed is not None
                                  else SystemRandom())
        self.store: Any = None
        self.kernel: Any = None
        self.transport: UdpTransport | None = None
        self.engine: Engine | None = None
        self.connections: ConnectionManager | None = None
        self.kernel_events: Any = None      # XfrmEventReader without -n
        # -L / -l / FIFO "p on|off" (inventory §1.6); off until started.
        self.capture = PacketCapture(settings.capture_file or DEFAULT_CAPTURE_FILE)

    def load_configuration(self) -> Any:
        """Read the configuration file, logging every diagnostic with file and line."""
        store, diagnostics = load_config_file(self.settings.config_file)
        for diagnostic in diagnostics:
            if diagnostic.severity is Severity.ERROR:
                log.error("{diagnostic}", diagnostic=str(diagnostic))
            elif diagnostic.severity is Severity.WARNING:
                log.warn("{diagnostic}", diagnostic=str(diagnostic))
            else:
                log.info("{diagnostic}", diagnostic=str(diagnostic))
        return store

    def make_kernel(self) -> Any:
        """The kernel provider: in memory with ``-n``, else XFRM netlink with its event
        reader (made, not started). Failing to open either is a StartupError."""
        if self.settings.no_kernel:
            return MemoryKernel(self.rng)
        from isakmpd.kernel.interface import KernelError
        from isakmpd.kernel.xfrm import XfrmEventReader, XfrmKernel

        try:
            kernel = XfrmKernel()
        except KernelError as error:
            raise StartupError(f"{error}; without -n the daemon needs a kernel with XFRM "
                               "(CONFIG_XFRM_USER)") from None
        try:
            self.kernel_events = XfrmEventReader(self.reactor, self.kernel_event)
        except KernelError as error:
            kernel.close()
            raise StartupError(f"{error}; opening NETLINK_XFRM needs CAP_NET_ADMIN (run "
                               "as root, or use -n to negotiate without the kernel)") from None
        return kernel

    def kernel_event(self, event: Any) -> None:
        """An ACQUIRE or EXPIRE from the kernel, handed to the engine."""
        from isakmpd.kernel.xfrm import AcquireEvent, ExpireEvent

        engine = self.engine
        if engine is None or not engine.running:
            return
        if isinstance(event, ExpireEvent):
            engine.kernel_sa_expired(event.protocol, event.spi, event.dst, hard=event.hard,
                                     bytes_used=event.bytes_used)
        elif isinstance(event, AcquireEvent):
            engine.kernel_acquire(event)

    def _close_kernel(self) -> None:
        if self.kernel_events is not None:
            self.kernel_events.stop()
            self.kernel_events = None
        close = getattr(self.kernel, "close", None)
        if close is not None:
            close()

    def startService(self) -> None:
        # The FIFO first, as isakmpd's ui_init: a path it cannot use stops the daemon
        # before anything is bound or sent.
        self.open_fifo()
        try:
            self._start()
        except BaseException:
            self.stop_control()
            if self.transport is not None:
                self.transport.stop()
            self._close_kernel()
            raise

    def _start(self) -> None:
        settings = self.settings
        self.kernel = self.make_kernel()
        self.store = self.load_configuration()
        isakmpd_log.apply_settings(settings)
        self.apply_log_settings()
        if settings.capture_file:
            try:
                self.capture.start(settings.capture_file)
            except CaptureError as error:
                raise StartupError(str(error)) from None
        listen_on = self.store.get_list("General", "Listen-on") or None
        addresses, warnings = select_listen_addresses(
            listen_on, interface_addresses(settings.families), settings.families)
        for warning in warnings:
            log.warn("{warning}", warning=warning)
        if not addresses:
            raise StartupError("no address to listen on: check [General] Listen-on and -4/-6")
        dispatch = _Dispatch()
        self.transport = UdpTransport(self.reactor, dispatch, addresses, settings.port,
                                      settings.nat_t_port if settings.nat_t else None,
                                      local_port=settings.local_port,
                                      prepare_socket=None if settings.no_kernel
                                      else prepare_ike_socket)
        port = settings.port

        def source_address(remote_ip: str) -> str:
            return source_address_for(remote_ip, port)

        self.engine = Engine(self.store, self.reactor, self.rng, self.transport, self.kernel,
                             source_address, port=settings.port,
                             nat_t_port=settings.nat_t_port, nat_t=settings.nat_t,
                             local_port=settings.local_port,
                             acquire_only=settings.acquire_only)
        self.engine.capture = self.capture
        dispatch.engine = self.engine
        self.transport.start()
        if self.kernel_events is not None:
            self.kernel_events.start()
        log.info("isakmpd listening on {where}",
                 where=", ".join(f"{a}:{p}" for (a, p), _ in self.transport.endpoints()))
        self.connections = ConnectionManager(self.engine, self.reactor,
                                             passive=settings.passive)
        self.connections.start()
        # What is loaded now (the configuration with its tens of thousands of
        # generated bindings, the modules) lives as long as the daemon.
        collector.settle()
        self.start_control()
        super().startService()

    def apply_log_settings(self) -> None:
        """[General] Loglevel / Logverbose over the current levels (at start over -D and
        -v; at reinitialisation over whatever is set, as isakmpd's log_reinit)."""
        isakmpd_log.apply_config_levels(self.store)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.stop_control()
        if self.connections is not None:
            self.connections.stop()
        if self.engine is not None:
            self.engine.shutdown(send_deletes=self.settings.delete_sas)
        self._close_kernel()
        self.capture.stop()
        if self.transport is not None:
            return maybeDeferred(self.transport.stop)
        return maybeDeferred(lambda: None)

    # -- control: FIFO, signals, reinitialisation, reports, shutdown (inventory §1.2-§1.4,
    # §4.10). The API the command line and the FIFO use: reinitialise(),
    # write_report(), write_result(), shutdown().

    #: Longest wait for DELETEs to leave at shutdown (seconds). Sends are
    #: synchronous (sendto), so they are out when engine.shutdown() returns; the
    #: wait only gives the reactor a turn, bounded in case it is busy.
    SHUTDOWN_WAIT = 3.0

    _control: Any = None
    _controller: Any = None
    _signals: Any = None
    _shutting_down: Deferred[None] | None = None

    def open_fifo(self) -> None:
        """Create and open the FIFO (``-f``); nothing is read from it yet."""
        from isakmpd.control.commands import Controller
        from isakmpd.control.fifo import FifoError, open_control

        self._controller = Controller(self)
        if self.settings.fifo is not None and self._control is None:
            try:
                self._control = open_control(self.reactor, self.settings.fifo,
                                             self._controller.handle_line)
            except FifoError as error:
                raise StartupError(str(error)) from None

    def start_control(self) -> None:
        """Read the FIFO and install the signal handlers; the end of start-up."""
        import signal

        from isakmpd.control.signals import SignalHandlers

        if self._controller is None:
            self.open_fifo()
        if self.engine is not None:
            self._controller.watch(self.engine)
        if self._control is not None:
            self._control.start()
            log.info("reading commands from {where}",
                     where="standard input" if self.settings.fifo == "-"
                     else f"the FIFO {self.settings.fifo}")
        self._signals = SignalHandlers(self.reactor, {
            signal.SIGHUP: self.reinitialise,
            signal.SIGUSR1: lambda: self.write_report(self.settings.report_file),
            signal.SIGTERM: self.shutdown,
        })
        # After the reactor's own handlers (it installs SIGTERM's when it starts
        # running, e.g. under twistd, which starts services before the reactor).
        if self.reactor.running:
            self._signals.install()
        else:
            self.reactor.callWhenRunning(self._install_signals)

    def _install_signals(self) -> None:
        if self.running and self._signals is not None:
            self._signals.install()

    def stop_control(self) -> None:
        """Stop reading commands, remove the FIFO, put the old signal handlers back."""
        if self._signals is not None:
            self._signals.restore()
        if self._controller is not None:
            self._controller.stop()
        if self._control is not None:
            self._control.close()
            self._control = None

    def reinitialise(self) -> None:
        """SIGHUP / FIFO ``R`` (inventory §4.10, ``init.c`` reinit).

        The configuration file is read afresh (FIFO ``C`` edits are lost); a file
        with errors, or one that is gone, leaves the running configuration in
        place, every error logged with file and line. Then: log levels from
        ``[General] Loglevel``/``Logverbose`` (applied over the current ones), the
        listen addresses, the connection lists (SAs are kept, exchanges in
        progress left alone), and ``Renegotiate-on-HUP``.
        """
        import os

        path = self.settings.config_file
        if not self.running or self.engine is None or self.connections is None:
            return
        log.info("reinitialising: reading {path}", path=path)
        if not os.path.exists(path):
            log.error("reinitialisation: configuration file {path} does not exist; the "
                      "running configuration is kept", path=path)
            return
        store, diagnostics = load_config_file(path)
        errors = [d for d in diagnostics if d.severity is Severity.ERROR]
        if errors:
            for diagnostic in errors:
                log.error("{diagnostic}", diagnostic=str(diagnostic))
            log.error("reinitialisation: {path} has {count} error(s); the running "
                      "configuration is kept", path=path, count=len(errors))
            return
        for diagnostic in diagnostics:
            if diagnostic.severity is Severity.WARNING:
                log.warn("{diagnostic}", diagnostic=str(diagnostic))
        if self._controller is not None:
            self._controller.stop()          # a pending connection-list rebuild
        self.store = store
        self.engine.store = store
        self.apply_log_settings()
        self._rescan_addresses()
        self.connections.load()
        self.connections.check()
        if store.has("General", "Renegotiate-on-HUP"):
            count = self.engine.renegotiate_now()
            log.info("Renegotiate-on-HUP: {count} phase 2 SA(s) soft-expired now",
                     count=count)
        log.info("reinitialised: active connections {active}",
                 active=", ".join(self.connections.active) or "none")

    def _rescan_addresses(self) -> None:
        if self.transport is None:
            return
        listen_on = self.store.get_list("General", "Listen-on") or None
        addresses, warnings = select_listen_addresses(
            listen_on, interface_addresses(self.settings.families), self.settings.families)
        for warning in warnings:
            log.warn("{warning}", warning=warning)
        if addresses:
            self.transport.update_addresses(addresses)
        else:
            log.warn("reinitialisation: no address to listen on; the old ones are kept")

    def write_report(self, path: str | None = None) -> None:
        """The state report (inventory §1.4) into ``path`` (mode 0600), or to the log."""
        from isakmpd.control.report import (
            format_report_file,
            report_lines,
            write_private_file,
        )

        if self.engine is None:
            return
        lines = report_lines(engine=self.engine, clock=self.reactor,
                             connections=self.connections, transport=self.transport,
                             message_ids=getattr(self._controller, "message_ids", None))
        if path is None:
            for line in lines:
                # The log's formatter adds isakmpd's "Report>" tag (log.REPORT_KEY).
                log.info("{line}", line=line, isakmpd_report=True)
            return
        try:
            write_private_file(path, format_report_file(lines))
        except OSError as error:
            log.error("cannot write the report file {path}: {error}", path=path,
                      error=error.strerror)
        else:
            log.info("report written to {path}", path=path)

    def write_result(self, text: str) -> None:
        """The FIFO's ``S`` / ``C get`` answer into the result file (mode 0600)."""
        from isakmpd.control.report import write_private_file

        path = self.settings.result_file
        try:
            write_private_file(path, text)
        except OSError as error:
            log.error("cannot write the result file {path}: {error}", path=path,
                      error=error.strerror)

    def shutdown(self) -> Deferred[None]:
        """SIGTERM / FIFO ``Q``: DELETE every phase 2 then phase 1 SA, then stop.

        No DELETE with ``-S`` or ``[General] Delete-SAs=no``. Waits at most
        :attr:`SHUTDOWN_WAIT` seconds, then stops the reactor (which stops this
        service); the process exits 0. A second call returns the same Deferred.
        """
        from twisted.internet.task import deferLater

        if self._shutting_down is not None:
            return self._shutting_down
        log.info("shutting down{how}", how="" if self.settings.delete_sas
                 else " without sending DELETEs (-S)")
        if self._control is not None:
            self._control.close()
            self._control = None
        if self.connections is not None:
            self.connections.stop()
        engine = self.engine
        if engine is not None:
            engine.shutdown(send_deletes=self.settings.delete_sas)
        deadline = self.reactor.seconds() + self.SHUTDOWN_WAIT

        def wait() -> Deferred[None] | None:
            if (engine is not None and engine.exchanges()
                    and self.reactor.seconds() < deadline):
                return deferLater(self.reactor, 0.05, wait)
            return None

        d: Deferred[None] = deferLater(self.reactor, 0, wait)
        d.addCallback(lambda _: self.stop_reactor())
        self._shutting_down = d
        return d

    def stop_reactor(self) -> None:
        """End the process's reactor (tests replace this)."""
        from twisted.internet.error import ReactorNotRunning

        try:
            self.reactor.stop()
        except ReactorNotRunning:
            pass
