"""The ``isakmpd`` console script: the daemon in the foreground, logging to stderr.

Detaching, syslog, the pid file and the FIFO come with the daemon-operation work;
until then ``twistd isakmpd`` (which can detach) and this script run the same
service with the same options.
"""

from __future__ import annotations

import sys

from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python import usage

from isakmpd.service import IsakmpdService, StartupError
from isakmpd.tap import Options
from isakmpd.transport.udp import BindError

log = Logger()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run until SIGTERM/SIGINT; 1 when it cannot start."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as error:
        print(f"isakmpd: {error}\n{options}", file=sys.stderr)
        return 1
    settings = options.settings()
    if not settings.no_kernel:
        print("isakmpd: the XFRM kernel backend is not built yet; run with -n to negotiate "
              "without installing SAs into the kernel", file=sys.stderr)
        return 1

    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)],
                                     redirectStandardIO=False)
    service = IsakmpdService(settings, reactor)
    failed: list[str] = []

    def start() -> None:
        try:
            service.startService()
        except (StartupError, BindError, OSError) as error:
            log.error("isakmpd: cannot start: {error}", error=str(error))
            failed.append(str(error))
            reactor.stop()  # type: ignore[attr-defined]
            return
        reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
            "before", "shutdown", service.stopService)

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
