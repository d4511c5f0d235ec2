"""The ``isakmpd`` console script: isakmpd(8)'s command line run as a daemon.

Owns the process life of ``isakmpd [-46adKLnSTv] ...`` (inventory §1.1, §1.5), in
isakmpd's order:

1. parse the options; a bad option prints the usage and exits 1 before anything
   is bound or created;
2. without ``-d``: detach (:mod:`isakmpd.daemonize`: double fork, ``setsid``,
   ``chdir /``, standard I/O on /dev/null) and log to syslog; with ``-d``: stay in
   the foreground and log to standard error; with ``-d -d`` also stop for a
   debugger before binding and leave SIGINT untrapped (see
   :class:`isakmpd.tap.IsakmpdDaemon`);
3. write the pid file (``-i``; a failure is fatal), then start the service that
   ``twistd isakmpd`` runs too (:func:`isakmpd.tap.build_service`);
4. run until SIGTERM (or SIGINT with one ``-d``): the service sends its DELETEs,
   closes its ports and removes the pid file; exit 0.

Paths given relative on the command line are made absolute first, since the
daemon works from ``/``. Without ``-d`` the command returns once the daemon runs
(exit 0) or with the reason it could not start (exit 1).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from twisted.logger import Logger
from twisted.python import usage

from isakmpd.daemonize import StatusPipe, detach
from isakmpd.log import begin_logging
from isakmpd.pidfile import PidFileError
from isakmpd.service import DaemonSettings, StartupError
from isakmpd.tap import Options, build_service
from isakmpd.transport.udp import BindError

log = Logger()


def absolute_paths(settings: DaemonSettings) -> DaemonSettings:
    """``settings`` with every file path absolute (``-f -``, standard input, stays)."""

    def fix(path: str | None) -> str | None:
        return os.path.abspath(path) if path and path != "-" else path

    return dataclasses.replace(
        settings, config_file=fix(settings.config_file), fifo=fix(settings.fifo),
        pid_file=fix(settings.pid_file), report_file=fix(settings.report_file),
        result_file=fix(settings.result_file), capture_file=fix(settings.capture_file))


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run until SIGTERM/SIGINT; 1 when it cannot start."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as error:
        print(f"isakmpd: {error}\n{options}", file=sys.stderr)
        return 1
    settings = absolute_paths(options.settings())
    # Only the daemon goes on from here; the reactor is made after the fork.
    status = StatusPipe() if settings.foreground else detach()
    begin_logging(settings, to_stderr=bool(settings.foreground))

    from twisted.internet import reactor

    service = build_service(settings, reactor)
    try:
        service.privilegedStartService()
    except PidFileError as error:
        log.error("isakmpd: cannot start: {error}", error=str(error))
        status.failed(str(error))
        return 1
    failed: list[str] = []

    def start() -> None:
        try:
            service.startService()
        except Exception as error:  # noqa: BLE001 - whatever it is, the daemon must end
            if isinstance(error, (StartupError, BindError, OSError)):
                log.error("isakmpd: cannot start: {error}", error=str(error))
            else:
                log.failure("isakmpd: cannot start")
            failed.append(str(error))
            status.failed(str(error) or type(error).__name__)
            reactor.stop()  # type: ignore[attr-defined]
            return
        status.ready()
        reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
            "before", "shutdown", service.stopService)

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    try:
        reactor.run()  # type: ignore[attr-defined]
    finally:
        service.remove_pid_file()
        status.failed("the daemon stopped before it was running")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
