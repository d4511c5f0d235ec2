"""twistd entry point for ``twistd isakmpd``: option parsing and makeService().

The isakmpd(8) flags that work so far are accepted here; the others (the FIFO
``-f``, ``-D`` debug classes, ``-L``/``-l`` capture, ``-R`` report file, ``-i`` pid
file, ``-K``, ``-a``, ``-v``, ``-P``) are not accepted yet: they come with the
daemon-operation work, and a flag that did nothing would mislead.
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.python import usage

from isakmpd.service import DEFAULT_CONFIG, DaemonSettings, IsakmpdService


def _port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise ValueError(f"{value} is not a UDP port (1-65535)")
    return number


class Options(usage.Options):
    """Options of ``twistd isakmpd`` and of the ``isakmpd`` console script."""

    synopsis = "[-46nST] [-c config-file] [-N udpencap-port] [-p listen-port] [-r seed]"
    longdesc = ("OpenBSD's isakmpd(8), the IKEv1 key management daemon, for Linux. "
                "Without the XFRM backend (not built yet) it needs -n.")

    optFlags: ClassVar[list[list[str]]] = [
        ["inet4", "4", "IPv4 only"],
        ["inet6", "6", "IPv6 only"],
        ["no-kernel", "n", "do not install SAs into the kernel (in-memory kernel)"],
        ["passive", "S", "start in passive mode: initiate nothing (FIFO 'M active' later)"],
        ["no-nat-t", "T", "disable NAT traversal"],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["config", "c", DEFAULT_CONFIG, "configuration file"],
        ["port", "p", 500, "UDP port for IKE", _port],
        ["nat-t-port", "N", 4500, "UDP port for NAT-T (IKE and ESP in UDP)", _port],
        ["seed", "r", None,
         "seed the random generator: every run the same (debugging only; keys predictable)"],
    ]

    def postOptions(self) -> None:
        if self["inet4"] and self["inet6"]:
            raise usage.UsageError("-4 and -6 exclude each other")
        if self["port"] == self["nat-t-port"] and not self["no-nat-t"]:
            raise usage.UsageError(f"-p and -N are both {self['port']}; they must differ")

    def settings(self) -> DaemonSettings:
        families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6)
        if self["inet4"]:
            families = (socket.AF_INET,)
        elif self["inet6"]:
            families = (socket.AF_INET6,)
        seed = self["seed"]
        return DaemonSettings(
            config_file=self["config"], no_kernel=bool(self["no-kernel"]),
            port=self["port"], nat_t_port=self["nat-t-port"],
            nat_t=not self["no-nat-t"], families=families,
            seed=seed.encode("utf-8") if seed is not None else None,
            passive=bool(self["passive"]))


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    settings = options.settings()
    if not settings.no_kernel:
        raise SystemExit("isakmpd: the XFRM kernel backend is not built yet; run with -n "
                         "to negotiate without installing SAs into the kernel")
    return IsakmpdService(settings, reactor)
