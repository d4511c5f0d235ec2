"""An in-memory kernel: records SAs and flows instead of installing them.

Owns :class:`MemoryKernel`, the :class:`~isakmpd.kernel.interface.IKernel` provider
behind ``-n`` ("no kernel", inventory §1.1) and behind the engine's tests. It keeps
the rules a real kernel enforces, so a test that passes here does not fail against
XFRM for a bookkeeping reason:

* SPIs are 4 bytes; ``allocate_spi`` hands out random SPIs >= 256 (RFC 4303 §2.1:
  1-255 are reserved, 0 is never sent) that are unique per (protocol, destination)
  among the SPIs reserved and installed, drawn from an injected RandomSource so a
  seeded run is reproducible; IPCOMP CPIs come from 256..61439 (RFC 3173 §4.1), as
  4 bytes with the first two zero, like XFRM's;
* an IPCOMP SA needs its compression transform (DEFLATE or LZS, what Linux has) and
  its CPI inside the negotiable range; it takes no UDP encapsulation (RFC 3948 is
  for ESP);
* a second SA with the same (protocol, SPI, destination) is refused, and deleting an
  SA that is not there is an error (both KernelError, like EEXIST/ESRCH from netlink);
* ``release_spi`` forgets a reservation no SA was added with (an unknown one is a
  KernelError); ``update_sa`` replaces an installed SA by one with other addresses
  and encapsulation ports (a NAT mapping change), counted in ``updates``;
* a flow with the selectors and direction of an existing one replaces it (as
  XFRM_MSG_UPDPOLICY does); deleting an absent flow is a KernelError.

:meth:`MemoryKernel.describe` dumps the state for reports (never the keys).
"""

from __future__ import annotations

import ipaddress

from twisted.logger import Logger
from zope.interface import implementer

from isakmpd import debug
from isakmpd.crypto.random import RandomSource
from isakmpd.debug import DebugClass
from isakmpd.kernel.interface import IKernel, KernelError, KernelFlow, KernelSA
from isakmpd.wire import addresses
from isakmpd.wire.constants import EncapsulationMode, IpcompTransform, ProtocolId, member

__all__ = ["MemoryKernel"]

SPI_MIN = 256                   # RFC 4303 §2.1, RFC 4302 §2.4: 1..255 reserved
SPI_MAX = 0xFFFFFFFF
_SPI_ATTEMPTS = 1000            # random draws before giving up (only when nearly full)
_PROTOCOLS = (ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH, ProtocolId.IPCOMP)
CPI_MIN, CPI_MAX = 256, 61439   # RFC 3173 §4.1: negotiated CPIs
_COMPRESSION = (IpcompTransform.DEFLATE, IpcompTransform.LZS)
_MODES = (EncapsulationMode.TUNNEL, EncapsulationMode.TRANSPORT)
_DIRECTIONS = ("out", "in", "fwd")
# Members compared per SA and flow, as module names (an enum class attribute
# costs a Python-level call in 3.11; see wire.constants.value_map).
_ESP = ProtocolId.IPSEC_ESP
_AH = ProtocolId.IPSEC_AH
_TUNNEL = EncapsulationMode.TUNNEL
_IPCOMP = ProtocolId.IPCOMP
# The live debug levels (debug.LEVELS), read without a call to debug.enabled: every
# SA and flow installed asks.
_LEVELS = debug.LEVELS
_SYSDEP = int(DebugClass.SYSDEP)

# (protocol number, SPI, destination). The protocol as a plain int, not the
# ProtocolId member (equal to it, and hashing alike): a tuple of ints, bytes and
# text is left alone by the garbage collector once it has seen it, and every
# installed SA keeps its key.
SaKey = tuple[int, bytes, str]


def _address(text: str, what: str) -> str:
    """``text`` as a normalised numeric address, or KernelError naming ``what``."""
    try:
        return addresses.canonical(text)
    except ValueError:
        raise KernelError(f"{what} {text!r} is not a numeric IP address") from None


def _network(text: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return addresses.network(text)
    except ValueError:
        raise KernelError(f"{what} {text!r} is not a network (address/prefix)") from None


# The supported protocols by value, for the checks every SA and flow goes through
# (the functions above raise the errors; these only skip their calls when all is well).
_SUPPORTED = {int(protocol): protocol for protocol in _PROTOCOLS}
_canonical = addresses.canonical
_network_of = addresses.network


def _protocol(protocol: int) -> ProtocolId:
    if protocol not in _PROTOCOLS:
        raise KernelError(f"protocol {ProtocolId.describe(protocol)} is not supported by the "
                          "kernel interface (only IPSEC_ESP, IPSEC_AH and IPCOMP)")
    return member(ProtocolId, protocol)


def _spi(spi: bytes) -> bytes:
    if not isinstance(spi, bytes) or len(spi) != 4:
        raise KernelError(f"an SPI must be 4 bytes, got {spi!r}")
    return spi


def _check_ipcomp(sa: KernelSA, spi: bytes, dst: str) -> None:
    """What a Linux kernel would refuse in an IPComp SA (RFC 3173)."""
    if sa.comp_transform not in _COMPRESSION:
        name = ("none" if sa.comp_transform is None
                else IpcompTransform.describe(sa.comp_transform))
        raise KernelError(f"IPCOMP SA cpi 0x{spi.hex()} to {dst} needs DEFLATE or LZS, not "
                          f"{name}")
    if not CPI_MIN <= int.from_bytes(spi, "big") <= CPI_MAX:
        raise KernelError(f"IPCOMP SA cpi 0x{spi.hex()} to {dst} is outside the negotiable "
                          f"CPIs {CPI_MIN}..{CPI_MAX} (RFC 3173 §4.1)")
    if sa.encap is not None:
        raise KernelError(f"IPCOMP SA cpi 0x{spi.hex()} to {dst}: only ESP travels in UDP "
                          "(RFC 3948)")


@implementer(IKernel)
class MemoryKernel:
    """Records SAs (``sas``) and flows (``flows``) in memory."""

    log = Logger()

    def __init__(self, rng: RandomSource) -> None:
        self._rng = rng
        self.sas: dict[SaKey, KernelSA] = {}
        # Keyed by selector: a real kernel finds a policy by its selector in a
        # hash table, and a list scan would make the -n daemon quadratic.
        self._flows: dict[tuple[str, str, int, int, int, str], KernelFlow] = {}
        self.reserved: set[SaKey] = set()    # allocated SPIs with no SA yet
        self.updates = 0                      # SAs replaced by update_sa
        self._last_reqid = 0

    # -- SPIs and SAs -----------------------------------------------------

    def allocate_spi(self, protocol: ProtocolId, src: str, dst: str) -> bytes:
        checked = _SUPPORTED.get(protocol)      # (_protocol raises the error)
        protocol = checked if checked is not None else _protocol(protocol)
        _address(src, "source")
        dst = _address(dst, "destination")
        low, high = ((CPI_MIN, CPI_MAX) if protocol == _IPCOMP
                     else (SPI_MIN, SPI_MAX))
        for _ in range(_SPI_ATTEMPTS):
            value = low + self._rng.randbelow(high - low + 1)
            spi = value.to_bytes(4, "big")
            key = (protocol._value_, spi, dst)
            if key not in self.reserved and key not in self.sas:
                self.reserved.add(key)
                if _LEVELS[_SYSDEP] >= 50:
                    self.log.debug("allocated {protocol} SPI 0x{spi} for {src} -> {dst}",
                                   protocol=protocol.label, spi=spi.hex(), src=src, dst=dst)
                return spi
        raise KernelError(f"no free {protocol.label} SPI for destination {dst}")

    def release_spi(self, protocol: ProtocolId, spi: bytes, dst: str) -> None:
        protocol = _protocol(protocol)
        key = (protocol._value_, _spi(spi), _address(dst, "destination"))
        if key not in self.reserved:
            raise KernelError(f"no reserved {protocol.label} SPI 0x{spi.hex()} to {key[2]}")
        self.reserved.discard(key)
        if _LEVELS[_SYSDEP] >= 50:
            self.log.debug("released {protocol} SPI 0x{spi} to {dst}", protocol=protocol.label,
                           spi=spi.hex(), dst=key[2])

    def add_sa(self, sa: KernelSA) -> None:
        protocol = _SUPPORTED.get(sa.protocol)
        if protocol is None:
            protocol = _protocol(sa.protocol)
        spi = sa.spi
        if type(spi) is not bytes or len(spi) != 4:
            spi = _spi(spi)
        try:
            _canonical(sa.src)
            dst = _canonical(sa.dst)
        except ValueError:
            _address(sa.src, "source")
            dst = _address(sa.dst, "destination")
        if sa.mode not in _MODES:
            raise KernelError(f"SA mode must be TUNNEL or TRANSPORT, not "
                              f"{EncapsulationMode.describe(sa.mode)} (NAT-T is said by encap)")
        if protocol == _AH and sa.auth_algorithm is None:
            raise KernelError(f"AH SA spi 0x{spi.hex()} to {dst} has no authentication "
                              "algorithm")
        if protocol == _ESP and sa.enc_transform is None:
            raise KernelError(f"ESP SA spi 0x{spi.hex()} to {dst} has no encryption transform")
        if protocol == _IPCOMP:
            _check_ipcomp(sa, spi, dst)
        key = (protocol._value_, spi, dst)
        if key in self.sas:
            raise KernelError(f"an {protocol.label} SA with SPI 0x{spi.hex()} to {dst} "
                              "already exists")
        self.reserved.discard(key)
        self.sas[key] = sa
        if _LEVELS[_SYSDEP] >= 30:
            self.log.debug("installed SA {sa}", sa=sa)

    def update_sa(self, old: KernelSA, new: KernelSA) -> None:
        protocol = _protocol(old.protocol)
        key = (protocol._value_, _spi(old.spi), _address(old.dst, "destination"))
        if key not in self.sas:
            raise KernelError(f"no {protocol.label} SA with SPI 0x{old.spi.hex()} to {key[2]}")
        if new.protocol != old.protocol or new.spi != old.spi:
            raise KernelError(f"an update of {protocol.label} SA 0x{old.spi.hex()} must keep "
                              "its protocol and SPI")
        _address(new.src, "source")
        new_key = (protocol._value_, key[1], _address(new.dst, "destination"))
        if new_key != key and new_key in self.sas:
            raise KernelError(f"an {protocol.label} SA with SPI 0x{old.spi.hex()} to "
                              f"{new_key[2]} already exists")
        del self.sas[key]
        self.sas[new_key] = new
        self.updates += 1
        if _LEVELS[_SYSDEP] >= 30:
            self.log.debug("updated SA {sa}", sa=new)

    def delete_sa(self, protocol: ProtocolId, spi: bytes, dst: str) -> None:
        protocol = _protocol(protocol)
        key = (protocol._value_, _spi(spi), _address(dst, "destination"))
        sa = self.sas.pop(key, None)
        if sa is None:
            raise KernelError(f"no {protocol.label} SA with SPI 0x{spi.hex()} to {key[2]}")
        if _LEVELS[_SYSDEP] >= 30:
            self.log.debug("deleted SA {sa}", sa=sa)

    # -- flows ------------------------------------------------------------

    @property
    def flows(self) -> list[KernelFlow]:
        """The flows installed, oldest first."""
        return list(self._flows.values())

    def _check_flow(self, flow: KernelFlow) -> None:
        if flow.direction not in _DIRECTIONS:
            raise KernelError(f"flow direction must be one of {', '.join(_DIRECTIONS)}, "
                              f"not {flow.direction!r}")
        try:
            src = _network_of(flow.src_net)
            dst = _network_of(flow.dst_net)
        except ValueError:
            src = _network(flow.src_net, "flow source")
            dst = _network(flow.dst_net, "flow destination")
        if type(src) is not type(dst):          # IPv4Network / IPv6Network
            raise KernelError(f"flow {flow.src_net} -> {flow.dst_net} mixes IPv4 and IPv6")
        if flow.protocol_sa not in _SUPPORTED:
            _protocol(flow.protocol_sa)
        if flow.mode not in _MODES:
            raise KernelError(f"flow mode must be TUNNEL or TRANSPORT, not "
                              f"{EncapsulationMode.describe(flow.mode)}")
        if flow.mode == _TUNNEL:
            if flow.tunnel_src is None or flow.tunnel_dst is None:
                raise KernelError(f"tunnel-mode flow {flow.describe()} needs both tunnel "
                                  "endpoints")
            try:
                _canonical(flow.tunnel_src)
                _canonical(flow.tunnel_dst)
            except ValueError:
                _address(flow.tunnel_src, "tunnel source")
                _address(flow.tunnel_dst, "tunnel destination")

    def add_flow(self, flow: KernelFlow) -> None:
        self._check_flow(flow)
        # flow.selector(), without the call (three flows per Quick Mode).
        selector = (flow.src_net, flow.dst_net, flow.protocol, flow.src_port, flow.dst_port,
                    flow.direction)
        replaced = selector in self._flows
        self._flows[selector] = flow
        if _LEVELS[_SYSDEP] >= 30:
            self.log.debug("{what} flow {flow}", what="replaced" if replaced else "installed",
                       flow=flow)

    def delete_flow(self, flow: KernelFlow) -> None:
        removed = self._flows.pop(flow.selector(), None)
        if removed is None:
            raise KernelError(f"no flow {flow.describe()}")
        if _LEVELS[_SYSDEP] >= 30:
            self.log.debug("deleted flow {flow}", flow=removed)

    def new_reqid(self) -> int:
        self._last_reqid += 1
        return self._last_reqid

    # -- reports ----------------------------------------------------------

    def describe(self) -> str:
        """A readable dump of every SA and flow (no keys), for reports and tests."""
        lines = [f"SAs: {len(self.sas)}"]
        for sa in sorted(self.sas.values(), key=lambda s: (s.reqid, s.protocol, s.dst, s.spi)):
            lines.append("  " + sa.describe())
        lines.append(f"Flows: {len(self.flows)}")
        for flow in sorted(self.flows, key=lambda f: (f.reqid, f.direction, f.src_net)):
            lines.append("  " + flow.describe())
        if self.reserved:
            lines.append(f"SPIs allocated and not yet used: {len(self.reserved)}")
        return "\n".join(lines)
