"""NAT traversal for IKEv1 (RFC 3947) and the DPD capability: vendor IDs and NAT-D.

This module owns isakmpd's ``nat_traversal.c`` logic without its I/O (inventory §4.8,
§4.11):

* the NAT-T vendor IDs we send, in isakmpd's order (draft-02 with the trailing
  newline, draft-03, RFC 3947), and :func:`peer_capabilities`, which reads the peer's
  VIDs: the RFC 3947 VID sets ``rfc``, a draft VID sets ``draft`` (both draft-02
  spellings, with and without the newline, are recognised: the draft documented the
  string without it but computed the hash with it), the DPD VID (RFC 3706 §5.1) sets
  ``dpd``. When both flags are set, RFC 3947 is preferred (:attr:`NatTCapability.use_rfc`);
* the NAT-D hash, RFC 3947 §3.2: the negotiated phase 1 *plain* hash (not the PRF) of
  CKY-I | CKY-R | IP (4 or 16 bytes) | port (2 bytes, network order) (:func:`nat_d_hash`;
  :func:`nat_d_hashes` gives both ends of a message at once);
* :func:`nat_d_payloads` builds the two NAT-D payloads, the remote address first and
  then ours (type 20 with RFC 3947, 130 with only the drafts), and :func:`check_nat_d`
  reads the received ones: each of our two addresses is looked for among all the
  received hashes, as isakmpd does; no NAT-D at all means no NAT (isakmpd's rule);
* :func:`encapsulation_for` maps TUNNEL/TRANSPORT to the UDP_ENCAP values when NAT-T
  is in use (RFC 3947 §5.1), :func:`plain_mode` maps them back, and
  :func:`sa_encapsulations` lists the modes an SA payload names (Quick Mode uses it
  to refuse UDP_ENCAP without a NAT and to see whether transport mode is offered);
* NAT-OA (RFC 3947 §5.2): :func:`nat_oa_payloads` builds NAT-OAi and NAT-OAr (type 21,
  or 131 with the drafts), :func:`read_nat_oa` checks the received ones and returns
  the original addresses;
* a NAT mapping change (RFC 3947 §7): :func:`remapped_sa`, :func:`remapped_flow` and
  :func:`remapped_id` compute an IPsec SA's kernel SAs, flows and IDs with the peer at
  its new public address and port (the engine decides when and installs them).

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from isakmpd.crypto.prf import hash as plain_hash
from isakmpd.wire import addresses
from isakmpd.wire.constants import (
    NAT_T_VIDS,
    VID_DPD,
    VID_NAT_T_DRAFT_02,
    VID_NAT_T_DRAFT_03,
    VID_NAT_T_RFC3947,
    EncapsulationMode,
    IdType,
    IpsecAttr,
    PayloadType,
    member,
)
from isakmpd.wire.payloads import (
    IdPayload,
    NatDPayload,
    NatOaPayload,
    SaPayload,
    VendorPayload,
)

if TYPE_CHECKING:
    from isakmpd.kernel.interface import KernelFlow, KernelSA

__all__ = [
    "DRAFT_VIDS",
    "UDP_ENCAP_MODES",
    "VID_NAT_T_DRAFT_02_NO_NEWLINE",
    "NatOaError",
    "NatTCapability",
    "check_nat_d",
    "encapsulation_for",
    "nat_d_hash",
    "nat_d_hashes",
    "nat_d_payloads",
    "nat_d_verdict",
    "nat_oa_payloads",
    "nat_t_vendor_payloads",
    "peer_capabilities",
    "plain_mode",
    "read_nat_oa",
    "remapped_flow",
    "remapped_id",
    "remapped_sa",
    "sa_encapsulations",
]

# draft-ietf-ipsec-nat-t-ike-02 without the trailing newline: what the draft text
# says; some implementations send it (strongSwan recognises both).
VID_NAT_T_DRAFT_02_NO_NEWLINE = hashlib.md5(b"draft-ietf-ipsec-nat-t-ike-02").digest()
DRAFT_VIDS = frozenset({VID_NAT_T_DRAFT_02, VID_NAT_T_DRAFT_02_NO_NEWLINE,
                        VID_NAT_T_DRAFT_03})


@dataclass(frozen=True)
class NatTCapability:
    """What the peer's vendor IDs say it supports."""

    rfc: bool = False          # RFC 3947 VID seen
    draft: bool = False        # a draft-02/03 VID seen
    dpd: bool = False          # RFC 3706 DPD VID seen

    @property
    def nat_t(self) -> bool:
        """Whether the peer can do NAT-T at all."""
        return self.rfc or self.draft

    @property
    def use_rfc(self) -> bool:
        """RFC 3947 payload numbers (20/21, UDP_ENCAP 3/4) rather than the drafts'."""
        return self.rfc


def nat_t_vendor_payloads() -> list[VendorPayload]:
    """The NAT-T VIDs isakmpd sends (unless -T), in its order (inventory §4.8)."""
    return [VendorPayload(vid) for vid in NAT_T_VIDS]


def peer_capabilities(vendor_ids: Iterable[bytes | VendorPayload]) -> NatTCapability:
    """Read the peer's NAT-T and DPD capability from the VIDs it sent."""
    rfc = draft = dpd = False
    for item in vendor_ids:
        data = bytes(item.data if isinstance(item, VendorPayload) else item)
        if data == VID_NAT_T_RFC3947:
            rfc = True
        elif data in DRAFT_VIDS:
            draft = True
        elif data == VID_DPD:
            dpd = True
    return NatTCapability(rfc, draft, dpd)


_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET


def _address_bytes(ip: str) -> bytes:
    # Dotted-quad IPv4 text (what the socket reports for every IPv4 peer) packed by
    # the C parser: a new peer's address would otherwise cost an ipaddress object
    # (an lru miss, once per peer). inet_pton takes exactly four decimal octets
    # without leading zeros, the text ipaddress takes too; anything else is
    # ipaddress's to read.
    try:
        return _inet_pton(_AF_INET, ip)
    except (OSError, TypeError, ValueError):
        return _other_address_bytes(ip)


@lru_cache(maxsize=256)
def _other_address_bytes(ip: str) -> bytes:
    # IPv4-mapped IPv6 addresses are hashed as the IPv4 address the peer sees.
    address = addresses.ip(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.packed


def nat_d_hash(hash_alg: int, cookie_i: bytes, cookie_r: bytes, ip: str, port: int) -> bytes:
    """RFC 3947 §3.2: HASH(CKY-I | CKY-R | IP | Port), the plain negotiated hash."""
    if len(cookie_i) != 8 or len(cookie_r) != 8:
        raise ValueError("NAT-D needs both 8-byte cookies")
    if not 0 <= port <= 0xffff:
        raise ValueError(f"port {port} is out of range")
    return plain_hash(hash_alg, bytes(cookie_i) + bytes(cookie_r) + _address_bytes(ip)
                      + port.to_bytes(2, "big"))


def nat_d_hashes(hash_alg: int, cookie_i: bytes, cookie_r: bytes,
                 local: tuple[str, int], remote: tuple[str, int]) -> tuple[bytes, bytes]:
    """(:func:`nat_d_hash` of ``local``, of ``remote``) in one call: an exchange
    needs both, to check the NAT-D it receives and to send its own."""
    return (nat_d_hash(hash_alg, cookie_i, cookie_r, *local),
            nat_d_hash(hash_alg, cookie_i, cookie_r, *remote))


def nat_d_payloads(hash_alg: int, cookie_i: bytes, cookie_r: bytes,
                   local: tuple[str, int], remote: tuple[str, int], *, rfc: bool = True
                   ) -> list[NatDPayload]:
    """The two NAT-D payloads to send: the remote address first, then ours (RFC 3947
    §3.2); type NAT_D (20) when ``rfc``, NAT_D_DRAFT (130) otherwise."""
    return [NatDPayload(nat_d_hash(hash_alg, cookie_i, cookie_r, *remote), draft=not rfc),
            NatDPayload(nat_d_hash(hash_alg, cookie_i, cookie_r, *local), draft=not rfc)]


def check_nat_d(hash_alg: int, cookie_i: bytes, cookie_r: bytes,
                local: tuple[str, int], remote: tuple[str, int],
                received: Iterable[NatDPayload | bytes]) -> tuple[bool, bool]:
    """(we_are_behind_nat, peer_is_behind_nat) from the NAT-D payloads received.

    ``local`` is the address+port the message arrived on, ``remote`` the sender's.
    The peer hashed what it saw as our address (its "remote", sent first) and its own
    address. If no received hash equals the hash of our ``local`` address, a NAT
    changed our address on the way: we are behind a NAT (and must send keepalives).
    If none equals the hash of ``remote``, the peer is behind one. Like isakmpd, any
    payload may match either address, and no NAT-D payload at all means no NAT.
    """
    hashes = [bytes(item.data if isinstance(item, NatDPayload) else item)
              for item in received]
    if not hashes:
        return False, False
    return nat_d_verdict(*nat_d_hashes(hash_alg, cookie_i, cookie_r, local, remote), hashes)


def nat_d_verdict(mine: bytes, theirs: bytes,
                  received: Iterable[NatDPayload | bytes]) -> tuple[bool, bool]:
    """:func:`check_nat_d` with the hashes of our ``local`` (``mine``) and of the
    ``remote`` address (``theirs``) already computed (:func:`nat_d_hashes`)."""
    # A plain loop (a comprehension makes a function object and a frame in 3.11):
    # a phase 1 exchange checks one message this way.
    hashes = []
    for item in received:
        hashes.append(bytes(item.data if isinstance(item, NatDPayload) else item))
    if not hashes:
        return False, False
    return mine not in hashes, theirs not in hashes


_TO_UDP = {
    (EncapsulationMode.TUNNEL, False): EncapsulationMode.UDP_ENCAP_TUNNEL,
    (EncapsulationMode.TRANSPORT, False): EncapsulationMode.UDP_ENCAP_TRANSPORT,
    (EncapsulationMode.TUNNEL, True): EncapsulationMode.UDP_ENCAP_TUNNEL_DRAFT,
    (EncapsulationMode.TRANSPORT, True): EncapsulationMode.UDP_ENCAP_TRANSPORT_DRAFT,
}
_TO_PLAIN = {
    EncapsulationMode.UDP_ENCAP_TUNNEL: EncapsulationMode.TUNNEL,
    EncapsulationMode.UDP_ENCAP_TUNNEL_DRAFT: EncapsulationMode.TUNNEL,
    EncapsulationMode.UDP_ENCAP_TRANSPORT: EncapsulationMode.TRANSPORT,
    EncapsulationMode.UDP_ENCAP_TRANSPORT_DRAFT: EncapsulationMode.TRANSPORT,
}


def encapsulation_for(mode: int, nat_t: bool, draft: bool = False) -> EncapsulationMode:
    """The ENCAPSULATION_MODE to send: TUNNEL/TRANSPORT, or with NAT-T the UDP_ENCAP
    value, RFC 3947 §5.1 (3/4) or, with ``draft``, the drafts' (61443/61444)."""
    plain = plain_mode(mode)
    if not nat_t:
        return plain
    return _TO_UDP[(plain, bool(draft))]


def plain_mode(mode: int) -> EncapsulationMode:
    """TUNNEL or TRANSPORT for any of the six ENCAPSULATION_MODE values."""
    plain = _TO_PLAIN.get(mode)
    if plain is not None:
        return plain
    return member(EncapsulationMode, mode)


UDP_ENCAP_MODES = frozenset(_TO_PLAIN)


def sa_encapsulations(sa_payload: SaPayload) -> set[int]:
    """Every ENCAPSULATION_MODE value named by a transform of ``sa_payload``
    (absent attributes are not listed; RFC 2407 §4.5 leaves them to the host)."""
    modes: set[int] = set()
    for proposal in sa_payload.proposals:
        for transform in proposal.transforms:
            attribute = transform.attribute(IpsecAttr.ENCAPSULATION_MODE)
            if attribute is not None and isinstance(attribute.value, int):
                modes.add(attribute.value)
    return modes


def nat_oa_payloads(initiator_ip: str, responder_ip: str, *, rfc: bool = True
                    ) -> list[NatOaPayload]:
    """NAT-OAi then NAT-OAr (RFC 3947 §5.2): the initiator's and the responder's
    original addresses as the sender knows them; type 21, or 131 without ``rfc``."""
    return [NatOaPayload.from_address(_plain_ip(initiator_ip), draft=not rfc),
            NatOaPayload.from_address(_plain_ip(responder_ip), draft=not rfc)]


class NatOaError(ValueError):
    """Received NAT-OA payloads that cannot be used (PAYLOAD_MALFORMED)."""


def read_nat_oa(received: Iterable[NatOaPayload]) -> tuple[str, str] | None:
    """(initiator's, responder's) original address from the NAT-OA payloads received.

    RFC 3947 §5.2 sends exactly two, NAT-OAi first. The drafts (payload 131) sent
    only the sender's own original address: one draft payload is accepted and
    stands for both. None when there are none. The wire decoder has already
    checked each payload's ID type (IPV4_ADDR or IPV6_ADDR) and length.
    """
    payloads = list(received)
    if not payloads:
        return None
    if len(payloads) == 1 and payloads[0].payload_type == PayloadType.NAT_OA_DRAFT:
        address = _oa_text(payloads[0])
        return address, address
    if len(payloads) != 2:
        raise NatOaError(f"{len(payloads)} NAT-OA payloads, RFC 3947 §5.2 sends two "
                         "(NAT-OAi and NAT-OAr)")
    return _oa_text(payloads[0]), _oa_text(payloads[1])


def _oa_text(payload: NatOaPayload) -> str:
    return str(ipaddress.ip_address(bytes(payload.address)))


def _plain_ip(ip: str) -> str:
    address = addresses.ip(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


# -- a NAT mapping change (RFC 3947 §7) -------------------------------------------------

Address = tuple[str, int]


def remapped_sa(sa: KernelSA, *, inbound: bool, local: Address, remote: Address) -> KernelSA:
    """``sa`` (one direction of an IPsec SA) with the peer at ``remote`` now.

    The peer's address is the source of the inbound SA and the destination of the
    outbound one; UDP encapsulation, when the SA has it, is (peer port, our port)
    inbound and (our port, peer port) outbound, as Quick Mode installs it.
    """
    if inbound:
        encap = (remote[1], local[1]) if sa.encap is not None else None
        return dataclasses.replace(sa, src=remote[0], encap=encap)
    encap = (local[1], remote[1]) if sa.encap is not None else None
    return dataclasses.replace(sa, dst=remote[0], encap=encap)


def remapped_flow(flow: KernelFlow, old_ip: str, new_ip: str) -> KernelFlow:
    """``flow`` with the peer's address ``old_ip`` replaced by ``new_ip``.

    Tunnel endpoints change; so do host selectors of the old address (transport mode
    through a NAT protects the traffic between the ISAKMP SA's addresses).
    """
    if old_ip == new_ip:
        return flow
    old_host = addresses.network_text(addresses.network(old_ip))
    new_host = addresses.network_text(addresses.network(new_ip))

    def swap(value: str | None, old: str, new: str) -> str | None:
        return new if value == old else value

    return dataclasses.replace(
        flow, src_net=swap(flow.src_net, old_host, new_host),
        dst_net=swap(flow.dst_net, old_host, new_host),
        tunnel_src=swap(flow.tunnel_src, old_ip, new_ip),
        tunnel_dst=swap(flow.tunnel_dst, old_ip, new_ip))


def remapped_id(id_payload: IdPayload | None, old_ip: str, new_ip: str) -> IdPayload | None:
    """A host ID of ``old_ip`` as one of ``new_ip`` (same protocol and port); others
    as they are."""
    if (id_payload is None or old_ip == new_ip
            or id_payload.id_type not in (IdType.IPV4_ADDR, IdType.IPV6_ADDR)
            or bytes(id_payload.data) != addresses.packed(old_ip)):
        return id_payload
    return IdPayload.from_address(new_ip, id_payload.protocol, id_payload.port)
