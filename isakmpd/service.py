"""The daemon as a Twisted service: wires configuration, kernel, transport and engine.

This module owns the start and stop of one isakmpd instance (DESIGN.md §2): it reads
the configuration file (the secrecy rule and every diagnostic logged with file and
line), picks the kernel provider, binds the UDP ports on the listen addresses,
creates the :class:`~isakmpd.ike.engine.Engine` and the connection checker, and on
stop deletes the SAs (with DELETE unless told not to) and closes the ports.

What exists of isakmpd(8)'s command line is in :mod:`isakmpd.tap`. Only the
in-memory kernel exists so far (``-n``); the XFRM provider, the FIFO, signals other
than twistd's own, reports and packet capture are not built yet and are refused or
absent rather than faked.
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
    fifo: str | None = DEFAULT_FIFO   # -f ("-": standard input)
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
        if self.settings.no_kernel:
            return MemoryKernel(self.rng)
        raise StartupError(
            "the XFRM kernel backend is not built yet, so SAs cannot be installed into "
            "the kernel; run with -n to negotiate without installing them")

    def startService(self) -> None:
        settings = self.settings
        self.kernel = self.make_kernel()
        self.store = self.load_configuration()
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
                                      settings.nat_t_port if settings.nat_t else None)
        port = settings.port

        def source_address(remote_ip: str) -> str:
            return source_address_for(remote_ip, port)

        self.engine = Engine(self.store, self.reactor, self.rng, self.transport, self.kernel,
                             source_address, port=settings.port,
                             nat_t_port=settings.nat_t_port, nat_t=settings.nat_t)
        self.engine.capture = self.capture
        dispatch.engine = self.engine
        self.transport.start()
        log.info("isakmpd listening on {where}",
                 where=", ".join(f"{a}:{p}" for (a, p), _ in self.transport.endpoints()))
        self.connections = ConnectionManager(self.engine, self.reactor,
                                             passive=settings.passive)
        self.connections.start()
        # What is loaded now (the configuration with its tens of thousands of
        # generated bindings, the modules) lives as long as the daemon.
        collector.settle()
        super().startService()

    def apply_log_settings(self) -> None:
        """-D and -v, then [General] Loglevel / Logverbose on top (isakmpd's order)."""
        isakmpd_log.apply_settings(self.settings)
        isakmpd_log.apply_config_levels(self.store)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.connections is not None:
            self.connections.stop()
        if self.engine is not None:
            self.engine.shutdown()
        self.capture.stop()
        if self.transport is not None:
            return maybeDeferred(self.transport.stop)
        return maybeDeferred(lambda: None)
