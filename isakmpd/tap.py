"""twistd entry point for ``twistd isakmpd``: option parsing and makeService().

The daemon (exchanges, transports, FIFO, signals) is not built yet; until it is,
makeService() refuses to start with a message saying so, rather than starting a
service that would pretend to negotiate.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage

NOT_AVAILABLE = (
    "isakmpd: the daemon is not available yet in this version: the wire format, "
    "cryptography and configuration layers exist, the exchanges and the service do not "
    "(see README.md, 'State')."
)


class Options(usage.Options):
    """Options of ``twistd isakmpd``; the full isakmpd(8) flag set comes with the daemon."""

    synopsis = "[options]"
    longdesc = "OpenBSD's isakmpd(8), the IKEv1 key management daemon, for Linux."


def makeService(options: Options) -> IService:
    raise SystemExit(NOT_AVAILABLE)
