"""Local interface addresses, read from the kernel over rtnetlink (pyroute2).

Owns :func:`interface_addresses`: every address of every interface that is up, as
``(family, address)`` pairs, which is what the daemon binds when ``[General]
Listen-on`` is not set (inventory §2, ``virtual.c``). Skipped: IPv6 addresses that
are still tentative or failed duplicate address detection (they cannot be bound
yet, or ever), and IPv6 link-local addresses, which need a scope id that our
``(address, port)`` tuples do not carry.

Address changes at run time (RTM_NEWADDR/RTM_DELADDR) are not followed here; the
daemon rescans on reinitialisation (SIGHUP / ``R``, inventory §4.10).

This and the XFRM provider are the only modules that import pyroute2.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from isakmpd.kernel.interface import KernelError

__all__ = ["interface_addresses"]

IFF_UP = 0x1                 # <linux/if.h>
IFA_F_DADFAILED = 0x08       # <linux/if_addr.h>
IFA_F_TENTATIVE = 0x40
FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _usable(family: int, address: str, flags: int) -> bool:
    if family == socket.AF_INET6:
        if flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            return False
        if ipaddress.IPv6Address(address).is_link_local:
            return False
    return True


def interface_addresses(families: Iterable[int] = FAMILIES) -> list[tuple[int, str]]:
    """(family, numeric address) of every usable address of every up interface.

    ``families`` restricts the result (``-4``/``-6``). The order is the kernel's:
    interface index, then the order the addresses were added. Raises KernelError
    when the kernel cannot be asked.
    """
    wanted = set(families)
    try:
        with IPRoute() as ipr:
            up = {link["index"] for link in ipr.get_links() if link["flags"] & IFF_UP}
            found = []
            for message in ipr.get_addr():
                family = message["family"]
                if family not in wanted or message["index"] not in up:
                    continue
                address = message.get_attr("IFA_ADDRESS")
                if address is None:
                    continue
                # IFA_FLAGS (32 bits) supersedes the 8-bit ifa_flags when present.
                flags = message.get_attr("IFA_FLAGS")
                if flags is None:
                    flags = message["flags"]
                address = ipaddress.ip_address(address.split("%")[0]).compressed
                if _usable(family, address, flags) and (family, address) not in found:
                    found.append((family, address))
    except (NetlinkError, OSError) as error:
        raise KernelError(f"cannot read the interface addresses from the kernel: {error}"
                          ) from None
    return found
