"""The kernel seam: what the IKE engine asks of the kernel, and the values it passes.

Owns :class:`IKernel` (the interface every kernel provider implements: the in-memory
one in :mod:`isakmpd.kernel.memory` for ``-n`` and tests, the XFRM one later),
:class:`KernelSA` (one direction of one IPsec protocol), :class:`KernelFlow` (one
policy: traffic matching these selectors is protected by the SAs of ``reqid``) and
:class:`KernelError`.

Everything here is synchronous: netlink is local, so a provider answers at once.
:class:`KernelSA` and :class:`KernelFlow` are values (nothing changes one after it
is made; they hash by value) but not frozen dataclasses, whose ``__init__`` pays an
``object.__setattr__`` call per field: every Quick Mode makes two SAs and three flows.
Keys never appear in ``repr()`` or in :meth:`KernelSA.describe`, so SAs can be
logged and dumped into reports safely.
"""

from __future__ import annotations

from dataclasses import dataclass

import zope.interface

from isakmpd.wire.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransform,
    IpcompTransform,
    ProtocolId,
)

__all__ = ["Address", "IKernel", "KernelError", "KernelFlow", "KernelSA"]

Address = tuple[str, int]
"""(numeric IP text, port), used by every layer."""


class KernelError(Exception):
    """A kernel operation failed; the message is written for people."""


def _spi_text(spi: bytes) -> str:
    return "0x" + spi.hex() if spi else "(none)"


@dataclass(unsafe_hash=True, repr=False, slots=True)   # a value; see the module docstring
class KernelSA:
    """One direction of one protocol (ESP or AH) of a negotiated IPsec SA.

    ``mode`` is TUNNEL or TRANSPORT; the UDP_ENCAP_* values of the wire are mapped
    back to these by the caller and ``encap`` says whether ESP travels in UDP
    (RFC 3948) and with which (source port, destination port).
    ``acquire_seq`` (optional) is the sequence number of the kernel ACQUIRE this
    outbound SA answers: XFRM then replaces its larval acquire state with this SA
    (xfrm_usersa_info.seq, net/xfrm/xfrm_state.c __xfrm_find_acq_byseq).
    ``enc_key`` carries the cipher key with the salt at its end (RFC 4106 §8.1 for
    AES-GCM, RFC 3686 §5.1 for AES-CTR); it is empty for AH and ESP_NULL.

    IPComp (RFC 3173): ``protocol`` IPCOMP, ``spi`` the 2-byte CPI widened to 4 bytes
    (two zero bytes first, as XFRM and PF_KEY keep it), ``comp_transform`` the
    IPCOMP transform (DEFLATE or LZS), no keys and no replay window. In a bundle with
    ESP or AH the IPComp SA carries the negotiated mode and the ESP/AH SA is in
    transport mode inside it (as Linux wants it; strongSwan's kernel-netlink does so).
    """

    protocol: ProtocolId
    spi: bytes
    src: str
    dst: str
    mode: EncapsulationMode
    enc_transform: int | None
    enc_key: bytes
    auth_algorithm: int | None
    auth_key: bytes
    reqid: int
    life_seconds: int | None = None
    life_kilobytes: int | None = None
    replay_window: int = 16
    encap: tuple[int, int] | None = None
    acquire_seq: int | None = None
    comp_transform: int | None = None

    def describe(self) -> str:
        """One readable line without key material, for logs and reports."""
        parts = [
            ProtocolId.describe(self.protocol),
            f"spi {_spi_text(self.spi)}",
            f"{self.src} -> {self.dst}",
            EncapsulationMode.describe(self.mode),
        ]
        algorithms = []
        if self.enc_transform is not None:
            name = EspTransform.describe(self.enc_transform)
            if self.enc_key:
                name += f" ({len(self.enc_key) * 8}-bit key incl. salt)"
            algorithms.append(name)
        if self.auth_algorithm is not None:
            algorithms.append(AuthAlgorithm.describe(self.auth_algorithm))
        if self.comp_transform is not None:
            algorithms.append(IpcompTransform.describe(self.comp_transform))
        if algorithms:
            parts.append("/".join(algorithms))
        parts.append(f"reqid {self.reqid}")
        lifetimes = []
        if self.life_seconds is not None:
            lifetimes.append(f"{self.life_seconds}s")
        if self.life_kilobytes is not None:
            lifetimes.append(f"{self.life_kilobytes}KB")
        if lifetimes:
            parts.append("life " + ", ".join(lifetimes))
        parts.append(f"replay window {self.replay_window}")
        if self.encap is not None:
            parts.append(f"ESP-in-UDP {self.encap[0]} -> {self.encap[1]}")
        if self.acquire_seq is not None:
            parts.append(f"for ACQUIRE seq {self.acquire_seq}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        # Never show enc_key/auth_key: reprs end up in logs and tracebacks.
        return f"KernelSA<{self.describe()}>"


@dataclass(unsafe_hash=True, slots=True)   # a value; see the module docstring
class KernelFlow:
    """A policy: traffic between these selectors is protected by the SAs of ``reqid``.

    ``src_net``/``dst_net`` are networks in CIDR notation (a host is /32 or /128);
    ``protocol`` 0 and ports 0 mean any. ``direction`` is "out", "in" or "fwd".
    ``tunnel_src``/``tunnel_dst`` are the outer endpoints in tunnel mode (None in
    transport mode). Fields go by position in the order below (direction,
    protocol_sa, mode, tunnel_src, tunnel_dst, reqid, then the optional protocol,
    src_port, dst_port and ipcomp) or by keyword.

    ``ipcomp`` (optional) says the bundle compresses too (RFC 3173): the policy's
    templates are IPCOMP first (in ``mode``, with the tunnel endpoints; optional on
    in and fwd so packets the peer left uncompressed pass) and then ``protocol_sa``
    in transport mode, the order strongSwan's kernel-netlink uses. A suite of IPCOMP
    alone has ``protocol_sa`` IPCOMP and ``ipcomp`` False.
    """

    # The order the engine's Quick Mode passes them in by position: a keyword of a
    # dataclass __init__ costs a search through the parameter names, and every
    # Quick Mode makes three flows.
    src_net: str
    dst_net: str
    direction: str
    protocol_sa: ProtocolId
    mode: EncapsulationMode
    tunnel_src: str | None
    tunnel_dst: str | None
    reqid: int
    protocol: int = 0
    src_port: int = 0
    dst_port: int = 0
    ipcomp: bool = False

    def selector(self) -> tuple[str, str, int, int, int, str]:
        """What identifies the policy in the kernel (the reqid and SA template do not)."""
        return (self.src_net, self.dst_net, self.protocol, self.src_port, self.dst_port,
                self.direction)

    def describe(self) -> str:
        """One readable line, for logs and reports."""
        def side(net: str, port: int) -> str:
            return f"{net} port {port}" if port else net

        text = f"{self.direction} {side(self.src_net, self.src_port)} -> " \
               f"{side(self.dst_net, self.dst_port)}"
        text += f" proto {self.protocol}" if self.protocol else " proto any"
        text += f" {ProtocolId.describe(self.protocol_sa)}" \
                f" {EncapsulationMode.describe(self.mode)}"
        if self.ipcomp:
            text += " +IPCOMP"
        if self.tunnel_src is not None or self.tunnel_dst is not None:
            text += f" {self.tunnel_src} -> {self.tunnel_dst}"
        return text + f" reqid {self.reqid}"

    def __str__(self) -> str:
        return self.describe()


class IKernel(zope.interface.Interface):
    """Install and remove IPsec SAs and flows; every call is synchronous."""

    def allocate_spi(protocol: ProtocolId, src: str, dst: str) -> bytes:
        """Reserve and return a fresh 4-byte inbound SPI for SAs from src to dst (us).

        For IPCOMP it is a CPI from the negotiable range 256..61439 (RFC 3173 §4.1),
        returned as 4 bytes whose first two are zero (XFRM ALLOCSPI with
        IPPROTO_COMP); the caller sends the last two as the CPI (RFC 2407 §4.4.5).
        Raises KernelError when the protocol is not supported or no SPI is free.
        """

    def release_spi(protocol: ProtocolId, spi: bytes, dst: str) -> None:
        """Give back an SPI reserved by :meth:`allocate_spi` that no SA was added with.

        Quick Mode calls it for the SPIs of a negotiation that failed before its SAs
        were installed. With XFRM this deletes the larval state XFRM_MSG_ALLOCSPI made
        (XFRM_MSG_DELSA on (dst, spi, protocol)); otherwise the kernel would drop it
        only when its acquire timer runs out. Raises KernelError when no such
        reservation exists (already installed, released or never made); callers
        cleaning up may ignore that.
        """

    def add_sa(sa: KernelSA) -> None:
        """Install one SA. Raises KernelError (readable message) on failure."""

    def update_sa(old: KernelSA, new: KernelSA) -> None:
        """Replace the installed SA ``old`` by ``new``: the same protocol, SPI, keys
        and algorithms with other outer addresses and UDP encapsulation ports.

        The engine calls it when an authenticated message shows that the NAT in
        front of the peer changed its mapping (RFC 3947 §7): ``new.src``/``new.dst``
        and ``new.encap`` are the peer's new public address and port. The SA keeps
        working without renegotiation; a provider keeps its replay state and
        counters where it can. With XFRM: when only the ports changed,
        XFRM_MSG_UPDSA with the new XFRMA_ENCAP (the SA's id, (daddr, SPI,
        protocol), stays); when an address changed (UPDSA keeps the addresses),
        XFRM_MSG_MIGRATE, or as strongSwan's kernel-netlink update_sa does:
        XFRM_MSG_GETSA and XFRM_MSG_GETAE (replay state), XFRM_MSG_DELSA, then
        XFRM_MSG_NEWSA with the new addresses and the old replay state. Raises
        KernelError when ``old`` is not installed or ``new`` names another protocol
        or SPI.
        """

    def delete_sa(protocol: ProtocolId, spi: bytes, dst: str) -> None:
        """Remove the SA (protocol, spi, dst). Raises KernelError if there is none."""

    def add_flow(flow: KernelFlow) -> None:
        """Install a policy; one with the same selectors and direction is replaced."""

    def delete_flow(flow: KernelFlow) -> None:
        """Remove the policy with the flow's selectors and direction.

        Raises KernelError if there is none.
        """

    def new_reqid() -> int:
        """Return a request id not handed out before; it ties an SA pair to its flows."""
