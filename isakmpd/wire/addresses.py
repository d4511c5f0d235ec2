"""Numeric IP addresses and networks, parsed once and remembered.

The same few addresses (our listen addresses, the peers', the selectors of the
configured connections) come back on every message and every SA install; parsing
them with :mod:`ipaddress` costs microseconds each time, which a gateway with
thousands of tunnels notices. Every conversion here is a pure function of its
argument, kept in a bounded LRU cache (so a scan from many addresses cannot make
it grow). Bad text raises ValueError, as :mod:`ipaddress` does; failures are not
cached.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

__all__ = ["IPAddress", "IPNetwork", "canonical", "ip", "network", "network_of", "network_text",
           "packed"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CACHED = 4096


@lru_cache(maxsize=_CACHED)
def ip(text: str | bytes) -> IPAddress:
    """The address of numeric text (``"2001:DB8::1"``) or of 4 or 16 packed bytes."""
    return ipaddress.ip_address(text)


@lru_cache(maxsize=_CACHED)
def canonical(text: str) -> str:
    """The canonical text of a numeric address (IPv6 compressed, lower case)."""
    return ip(text).compressed


def packed(text: str) -> bytes:
    """The 4 or 16 bytes of a numeric address."""
    return ip(text).packed


@lru_cache(maxsize=_CACHED)
def network(text: str) -> IPNetwork:
    """``"203.0.113.0/25"`` (host bits may be set) or a lone address as a /32 or /128."""
    return ipaddress.ip_network(text, strict=False)


@lru_cache(maxsize=_CACHED)
def network_text(value: IPNetwork) -> str:
    """``str(value)``, remembered (the kernel's selectors are text)."""
    return str(value)


@lru_cache(maxsize=_CACHED)
def network_of(data: bytes, prefix: int) -> IPNetwork:
    """The network of 4 or 16 packed address bytes and a prefix length (host bits cleared)."""
    if len(data) == 4:
        return ipaddress.IPv4Network((data, prefix), strict=False)
    if len(data) == 16:
        return ipaddress.IPv6Network((data, prefix), strict=False)
    raise ValueError(f"an address is 4 or 16 bytes, not {len(data)}")
