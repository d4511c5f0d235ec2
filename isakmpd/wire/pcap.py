"""Packet capture records in isakmpd's format (inventory §1.6, OpenBSD log.c).

This module owns the bytes of a capture file, not the file: it builds the pcap
global header and one record per ISAKMP message, wrapping the cleartext message
in a synthetic loopback frame, IP header and UDP header so that tcpdump and
Wireshark decode it. Opening, permission checks and appending belong to the
caller. Timestamps come from the caller too (this layer never reads the clock).

Layout of a record: pcap record header (host byte order), 4-byte address family
(network byte order, DLT_LOOP framing), IPv4 (20 bytes, id 1, TTL 0, real
checksum) or IPv6 (40 bytes, hop limit 0) header with the real addresses, UDP
header with real ports and checksum, a 4-byte zero non-ESP marker when either
port is 4500 (RFC 3948 §2.2), and the ISAKMP message with the ENC flag cleared.
"""

from __future__ import annotations

import ipaddress
import struct

from isakmpd.wire.constants import HEADER_SIZE, NAT_T_PORT, NON_ESP_MARKER, Flag

__all__ = [
    "LINKTYPE_LOOP",
    "MAX_MESSAGE_SIZE",
    "pcap_global_header",
    "pcap_record",
]

PCAP_MAGIC = 0xa1b2c3d4
PCAP_VERSION = (2, 4)
SNAPLEN = 65536
# The portable LINKTYPE_LOOP number; OpenBSD's <net/bpf.h> calls DLT_LOOP 12,
# but readers elsewhere only understand 108 in a file.
LINKTYPE_LOOP = 108
# Messages longer than this are not logged (isakmpd log.c).
MAX_MESSAGE_SIZE = 65536
# Address family words of the loopback header. LINKTYPE_LOOP/NULL readers know
# 2 for IPv4 and 24, 28 or 30 (the BSD values) for IPv6; Linux's AF_INET6 (10)
# is understood by none of them, so the BSD value is written.
AF_INET = 2
AF_INET6_BSD = 24
IPPROTO_UDP = 17
# Used when no addresses are known (isakmpd's fallback for unknown families).
_FALLBACK_SRC = ipaddress.IPv4Address("2.2.2.2")
_FALLBACK_DST = ipaddress.IPv4Address("1.1.1.1")

Address = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address | None


def pcap_global_header() -> bytes:
    """The 24-byte file header, in host byte order as libpcap writes it."""
    return struct.pack("=IHHiIII", PCAP_MAGIC, PCAP_VERSION[0], PCAP_VERSION[1], 0, 0,
                       SNAPLEN, LINKTYPE_LOOP)


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xffff:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def _address(value: Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return ipaddress.ip_address(value) if len(value) in (4, 16) else None
    return ipaddress.ip_address(value)


def _check_port(port: int) -> int:
    if not 0 <= port <= 0xffff:
        raise ValueError(f"port {port} is out of range")
    return port


def pcap_record(timestamp: float, src: Address, sport: int, dst: Address, dport: int,
                message: bytes, *, marker: bool | None = None) -> bytes:
    """One capture record carrying ``message`` from ``src``:``sport`` to ``dst``:``dport``.

    ``timestamp`` is seconds since the epoch (a float, microsecond resolution).
    ``message`` is the cleartext ISAKMP message; the copy written has its ENC
    flag cleared. Addresses may be text, packed bytes or ipaddress objects; when
    either is missing or the families differ, 2.2.2.2 -> 1.1.1.1 is used as
    isakmpd does for unknown families. Raises ValueError for a message longer
    than :data:`MAX_MESSAGE_SIZE` (the caller skips it) or a bad port.

    ``marker`` says whether the message travelled on the NAT-T port (a 4-byte zero
    non-ESP marker precedes it in the UDP payload); None decides as isakmpd does,
    by either port being 4500. A daemon on another NAT-T port (``-N``) says so.
    """
    if len(message) > MAX_MESSAGE_SIZE:
        raise ValueError(f"message of {len(message)} bytes is too long to capture")
    _check_port(sport)
    _check_port(dport)
    source, destination = _address(src), _address(dst)
    if source is None or destination is None or source.version != destination.version:
        source, destination = _FALLBACK_SRC, _FALLBACK_DST

    payload = bytearray(message)
    if len(payload) >= HEADER_SIZE:
        payload[19] &= 0xff ^ int(Flag.ENC)
    if marker is None:
        marker = NAT_T_PORT in (sport, dport)
    if marker:
        payload[0:0] = NON_ESP_MARKER
    udp_length = 8 + len(payload)
    if udp_length + 20 > 0xffff:
        raise ValueError(f"message of {len(message)} bytes does not fit in an IP datagram")

    # UDP checksum over the pseudo-header (RFC 768; RFC 8200 §8.1 for IPv6).
    if source.version == 4:
        pseudo = source.packed + destination.packed + struct.pack("!BBH", 0, IPPROTO_UDP,
                                                                   udp_length)
    else:
        pseudo = source.packed + destination.packed + struct.pack("!I3xB", udp_length,
                                                                   IPPROTO_UDP)
    udp = struct.pack("!HHHH", sport, dport, udp_length, 0) + bytes(payload)
    checksum = internet_checksum(pseudo + udp) or 0xffff
    udp = udp[:6] + struct.pack("!H", checksum) + udp[8:]

    if source.version == 4:
        family = AF_INET
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_length, 1, 0, 0, IPPROTO_UDP, 0,
                         source.packed, destination.packed)
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    else:
        family = AF_INET6_BSD
        ip = struct.pack("!IHBB16s16s", 6 << 28, udp_length, IPPROTO_UDP, 0,
                         source.packed, destination.packed)
    frame = struct.pack("!I", family) + ip + udp

    seconds = int(timestamp)
    micros = round((timestamp - seconds) * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    return struct.pack("=IIII", seconds, micros, len(frame), len(frame)) + frame
