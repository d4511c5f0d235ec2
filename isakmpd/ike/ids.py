"""Identities: ID payloads from isakmpd.conf ID sections, their text forms, and matching.

This module owns what isakmpd's ``ipsec.c`` (ipsec_build_id, ipsec_id_string) and
``ike_auth.c`` (the initiator-ID key lookup) do with IDs (inventory §2.4, §5.1, §5.3):

* :func:`id_from_section` builds an :class:`~isakmpd.wire.payloads.IdPayload` from a
  Phase1-ID section (``ID-type`` with ``Address``, ``Network``+``Netmask`` or
  ``Name``) or an IPsec-ID section (addresses and subnets, plus ``Protocol`` and
  ``Port``). Protocol and service names come from small built-in tables, not from
  /etc/protocols or /etc/services (this module does no I/O); numbers always work.
* :func:`id_string` is isakmpd's readable form, ``ipv4/192.0.2.1``,
  ``ipv6/2001:db8::1``, ``fqdn/host.example``, ``ufqdn/user@example``, used in logs,
  for the pubkey directory and IKECFG sections. Subnets print as
  ``ipv4_subnet/203.0.113.0/25``.
* :func:`psk_section_name` is the *bare* form isakmpd looks an initiator-ID
  pre-shared key up with (``ike_auth_get_key``): the numeric address text
  (``198.51.100.1``, compressed IPv6) or the raw FQDN / user@FQDN string, so the
  section is ``[198.51.100.1]``, ``[host.example]`` or ``[user@host.example]``.
* :func:`ids_match` compares a configured ID with a received one for passive
  connections (inventory §4.5): same protocol and port, and for address types the
  same network, so an IPV4_ADDR equals an IPV4_ADDR_SUBNET with a /32 mask and a
  subnet written with host bits set equals its network; other types compare type
  and data exactly.
* :func:`id_selector` turns an address or subnet ID into the selector text the
  kernel seam takes (``"203.0.113.0/25"``; a host is ``/32`` or ``/128``).

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import lru_cache

from isakmpd.config.store import Store
from isakmpd.config.values import parse_int
from isakmpd.wire import addresses
from isakmpd.wire.constants import IdType
from isakmpd.wire.payloads import IdPayload

__all__ = [
    "ADDRESS_ID_TYPES",
    "IPSEC_ID_TYPES",
    "PHASE_1_ID_TYPES",
    "PROTOCOL_NUMBERS",
    "SERVICE_PORTS",
    "IdError",
    "id_from_section",
    "id_is_address",
    "id_is_host",
    "id_network",
    "id_selector",
    "id_string",
    "ids_match",
    "port_number",
    "protocol_number",
    "psk_section_name",
]

# Which ID-type values each kind of section may use (inventory §2.4).
PHASE_1_ID_TYPES = frozenset({IdType.IPV4_ADDR, IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR,
                              IdType.IPV6_ADDR_SUBNET, IdType.FQDN, IdType.USER_FQDN,
                              IdType.KEY_ID})
IPSEC_ID_TYPES = frozenset({IdType.IPV4_ADDR, IdType.IPV6_ADDR, IdType.IPV4_ADDR_SUBNET,
                            IdType.IPV6_ADDR_SUBNET})
ADDRESS_ID_TYPES = IPSEC_ID_TYPES
_NAME_ID_TYPES = frozenset({IdType.FQDN, IdType.USER_FQDN, IdType.KEY_ID})
_V6_TYPES = frozenset({IdType.IPV6_ADDR, IdType.IPV6_ADDR_SUBNET})
_SUBNET_TYPES = frozenset({IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET})

# IANA protocol numbers for the names people write in IPsec-ID sections; any other
# protocol is given by number (reading /etc/protocols would be I/O).
PROTOCOL_NUMBERS: dict[str, int] = {
    "ip": 0, "icmp": 1, "igmp": 2, "ipencap": 4, "ipip": 4, "tcp": 6, "egp": 8,
    "udp": 17, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "rsvp": 46, "gre": 47,
    "esp": 50, "ah": 51, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ospf": 89, "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115,
    "sctp": 132, "udplite": 136,
}

# Well-known ports for service names (IANA); any other port is given by number.
SERVICE_PORTS: dict[str, int] = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
    "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "www": 80, "kerberos": 88,
    "pop3": 110, "sunrpc": 111, "ntp": 123, "imap": 143, "snmp": 161, "snmptrap": 162,
    "bgp": 179, "ldap": 389, "https": 443, "isakmp": 500, "syslog": 514,
    "submission": 587, "ldaps": 636, "imaps": 993, "pop3s": 995, "l2tp": 1701,
    "pptp": 1723, "radius": 1812, "radius-acct": 1813, "nfs": 2049,
    "ipsec-nat-t": 4500, "sip": 5060,
}


class IdError(ValueError):
    """An ID section that cannot be turned into an ID payload; the text says why."""


def protocol_number(text: str) -> int:
    """``Protocol`` value: a number 0..255 or a name from :data:`PROTOCOL_NUMBERS`."""
    value = text.strip()
    number = parse_int(value)
    if number is None:
        number = PROTOCOL_NUMBERS.get(value.lower())
        if number is None:
            raise IdError(f"Protocol={value!r} is not a protocol number (0-255) nor one of "
                          "the known names (tcp, udp, icmp, ipv6-icmp, gre, esp, ...); "
                          "write the number")
    if number > 255:
        raise IdError(f"Protocol={value!r} is larger than 255")
    return number


def port_number(text: str) -> int:
    """``Port`` value: a number 0..65535 or a name from :data:`SERVICE_PORTS`."""
    value = text.strip()
    number = parse_int(value)
    if number is None:
        number = SERVICE_PORTS.get(value.lower())
        if number is None:
            raise IdError(f"Port={value!r} is not a port number (0-65535) nor one of the "
                          "known service names (ssh, http, https, isakmp, l2tp, ...); "
                          "write the number")
    if number > 65535:
        raise IdError(f"Port={value!r} is larger than 65535")
    return number


def _address(section: str, tag: str, text: str, v6: bool,
             interface_address: Callable[[str, int], str] | None) -> ipaddress._BaseAddress:
    value = text.strip()
    family = 6 if v6 else 4
    if value.lower() == "default":
        # isakmpd's "default" network: the unspecified address.
        return ipaddress.IPv6Address(0) if v6 else ipaddress.IPv4Address(0)
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        if interface_address is None:
            raise IdError(f"[{section}] {tag}={value!r} is neither an IPv{family} address "
                          "nor 'default' (interface names are not resolved here)") from None
        try:
            ip = ipaddress.ip_address(interface_address(value, family))
        except (ValueError, LookupError) as error:
            raise IdError(f"[{section}] {tag}={value!r}: no IPv{family} address for that "
                          f"interface ({error})") from None
    if ip.version != family:
        raise IdError(f"[{section}] {tag}={value!r} is an IPv{ip.version} address, but the "
                      f"ID-type wants IPv{family}")
    return ip


def id_from_section(store: Store, section: str, *, phase: int = 2,
                    interface_address: Callable[[str, int], str] | None = None,
                    ) -> IdPayload:
    """The ID payload a Phase1-ID (``phase=1``) or IPsec-ID (``phase=2``) section describes.

    Phase 1 IDs always have protocol and port 0 (inventory §5.3). ``interface_address``
    (name, 4 or 6) -> address text may resolve interface names in Network/Address; without
    it they are refused. Raises :class:`IdError` with a readable reason.
    """
    if not store.has(section):
        raise IdError(f"ID section [{section}] does not exist")
    type_text = store.get_str(section, "ID-type")
    if type_text is None:
        raise IdError(f"[{section}] has no ID-type")
    try:
        id_type = IdType(IdType.from_label(type_text))
    except KeyError:
        raise IdError(f"[{section}] ID-type={type_text.strip()!r} is not a known ID type") \
            from None
    allowed = PHASE_1_ID_TYPES if phase == 1 else IPSEC_ID_TYPES
    if id_type not in allowed:
        kind = "phase 1" if phase == 1 else "phase 2 (IPsec)"
        raise IdError(f"[{section}] ID-type={id_type.label} cannot be used as a {kind} ID")
    protocol = port = 0
    if phase != 1:
        proto_text = store.get_str(section, "Protocol")
        if proto_text is not None:
            protocol = protocol_number(proto_text)
        port_text = store.get_str(section, "Port")
        if port_text is not None:
            port = port_number(port_text)
    if id_type in _NAME_ID_TYPES:
        name = store.get_str(section, "Name")
        if name is None or not name.strip():
            raise IdError(f"[{section}] {id_type.label} needs a Name")
        return IdPayload(id_type, name.strip().encode("utf-8", "surrogateescape"),
                         protocol, port)
    v6 = id_type in _V6_TYPES
    if id_type in _SUBNET_TYPES:
        net_text = store.get_str(section, "Network")
        mask_text = store.get_str(section, "Netmask")
        if net_text is None or mask_text is None:
            raise IdError(f"[{section}] {id_type.label} needs Network and Netmask")
        network = _address(section, "Network", net_text, v6, interface_address)
        mask = _address(section, "Netmask", mask_text, v6, None)
        # Send the network with host bits cleared, as the selector will be.
        masked = int(network) & int(mask)
        base = ipaddress.IPv6Address(masked) if v6 else ipaddress.IPv4Address(masked)
        return IdPayload(id_type, base.packed + mask.packed, protocol, port)
    addr_text = store.get_str(section, "Address")
    if addr_text is None:
        raise IdError(f"[{section}] {id_type.label} needs an Address")
    address = _address(section, "Address", addr_text, v6, interface_address)
    return IdPayload(id_type, address.packed, protocol, port)


# The ID types id_network() tells apart, as module names (an enum class attribute
# costs a Python-level call in 3.11; see wire.constants.value_map).
_IPV4_ADDR = IdType.IPV4_ADDR
_IPV6_ADDR = IdType.IPV6_ADDR
_IPV4_ADDR_SUBNET = IdType.IPV4_ADDR_SUBNET


def _mask_prefix(mask: bytes) -> int | None:
    """Prefix length of a contiguous netmask, else None."""
    bits = int.from_bytes(mask, "big")
    width = len(mask) * 8
    inverted = bits ^ ((1 << width) - 1)
    if inverted & (inverted + 1):
        return None
    return width - inverted.bit_length()


def id_network(id_payload: IdPayload) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network an address or subnet ID covers (a host is /32 or /128), else None.

    None also for malformed data or a non-contiguous netmask.
    """
    data = id_payload.data
    id_type = id_payload.id_type
    try:
        if id_type == _IPV4_ADDR and len(data) == 4:
            return addresses.network_of(bytes(data), 32)
        if id_type == _IPV6_ADDR and len(data) == 16:
            return addresses.network_of(bytes(data), 128)
        if id_type == _IPV4_ADDR_SUBNET and len(data) == 8:
            prefix = _mask_prefix(data[4:])
            if prefix is None:
                return None
            return addresses.network_of(bytes(data[:4]), prefix)
        if id_type == IdType.IPV6_ADDR_SUBNET and len(data) == 32:
            prefix = _mask_prefix(data[16:])
            if prefix is None:
                return None
            return addresses.network_of(bytes(data[:16]), prefix)
    except ValueError:
        return None
    return None


def id_is_host(id_payload: IdPayload) -> bool:
    """Whether an address or subnet ID covers one address (a /32 or /128)."""
    size = len(id_payload.data)
    id_type = id_payload.id_type
    if (id_type == _IPV4_ADDR and size == 4) or (id_type == _IPV6_ADDR and size == 16):
        return True         # a host: no network object needed to say so
    network = id_network(id_payload)
    return network is not None and network.prefixlen == network.max_prefixlen


@lru_cache(maxsize=4096)
def _address_bytes(address: str) -> bytes:
    """The 4 or 16 bytes of numeric address text, remembered (bounded) as the
    addresses themselves are in :mod:`isakmpd.wire.addresses`."""
    return addresses.ip(address).packed


def id_is_address(id_payload: IdPayload, address: str) -> bool:
    """Whether ``id_payload`` names the one address ``address`` (numeric text): an
    IPV4_ADDR or IPV6_ADDR ID of it, or a /32 or /128 subnet of it.

    The same answer as ``ids_match(IdPayload.from_address(address), id_payload,
    check_ports=False)`` without building that ID: a responder asks it for every
    Quick Mode of a connection without Remote-ID.
    """
    data = _address_bytes(address)
    id_type = id_payload.id_type
    if id_type not in ADDRESS_ID_TYPES:
        return False
    if id_type == (_IPV4_ADDR if len(data) == 4 else _IPV6_ADDR) and id_payload.data == data:
        return True             # an ID of the address itself (the usual case)
    theirs = id_network(id_payload)
    return theirs is not None and theirs == addresses.network_of(data, len(data) * 8)


def id_selector(id_payload: IdPayload) -> str:
    """Selector text for the kernel: ``"203.0.113.0/25"``, ``"192.0.2.1/32"``.

    Raises :class:`IdError` for IDs that are not one address or one subnet.
    """
    # Every install turns the same few IDs (a connection's subnets, each peer's own
    # address) into selectors, and making the text costs more than looking it up:
    # the texts are remembered (bounded; an error is not).
    return _selector_text(id_payload.id_type, bytes(id_payload.data))


@lru_cache(maxsize=4096)
def _selector_text(id_type: int, data: bytes) -> str:
    """id_selector() of an ID of ``id_type`` and ``data``."""
    if id_type == _IPV4_ADDR and len(data) == 4:
        # An IPv4 host: str() of its /32 network, without building the network.
        return f"{data[0]}.{data[1]}.{data[2]}.{data[3]}/32"
    if id_type == _IPV4_ADDR_SUBNET and len(data) == 8:
        # An IPv4 subnet (a connection's own, on every install): the same text as
        # str() of id_network's network (host bits cleared), without building it.
        prefix = _mask_prefix(data[4:])
        if prefix is not None:
            base = (int.from_bytes(data[:4], "big")
                    & int.from_bytes(data[4:], "big")).to_bytes(4, "big")
            return f"{base[0]}.{base[1]}.{base[2]}.{base[3]}/{prefix}"
    id_payload = IdPayload(id_type, data)
    network = id_network(id_payload)
    if network is None:
        raise IdError(f"{id_string(id_payload)} is not an address or a subnet with a "
                      "contiguous netmask, so it cannot be a traffic selector")
    return addresses.network_text(network)


def id_string(id_payload: IdPayload) -> str:
    """isakmpd's readable ID form (ipsec_id_string): ``ipv4/192.0.2.1``, ``fqdn/host``..."""
    data = id_payload.data
    id_type = id_payload.id_type
    if id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR, IdType.IPV4_ADDR_SUBNET,
                   IdType.IPV6_ADDR_SUBNET):
        network = id_network(id_payload)
        if network is not None:
            family = "ipv4" if network.version == 4 else "ipv6"
            if id_type in _SUBNET_TYPES:
                return f"{family}_subnet/{network}"
            return f"{family}/{network.network_address}"
        half = len(data) // 2
        family = "ipv4" if id_type == IdType.IPV4_ADDR_SUBNET else "ipv6"
        try:
            first = ipaddress.ip_address(data[:half])
            mask = ipaddress.ip_address(data[half:])
            return f"{family}_subnet/{first}/{mask}"
        except ValueError:
            return f"{IdType.describe(id_type).lower()}/{data.hex()}"
    if id_type == IdType.FQDN:
        return "fqdn/" + data.decode("utf-8", "backslashreplace")
    if id_type == IdType.USER_FQDN:
        return "ufqdn/" + data.decode("utf-8", "backslashreplace")
    if id_type == IdType.KEY_ID:
        printable = all(32 <= byte < 127 for byte in data)
        return "keyid/" + (data.decode("ascii") if printable else data.hex())
    if id_type == IdType.DER_ASN1_DN:
        return "asn1_dn/" + data.hex()
    return f"{IdType.describe(id_type).lower()}/{data.hex()}"


def psk_section_name(id_payload: IdPayload) -> str | None:
    """The ``[initiator-ID]`` section name for a pre-shared key lookup (inventory §5.1).

    Numeric text for IPV4_ADDR/IPV6_ADDR, the raw string for FQDN/USER_FQDN (decoded
    with utf-8/surrogateescape so any bytes round-trip); None for other types.
    """
    id_type = id_payload.id_type
    if id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        network = id_network(id_payload)
        return None if network is None else str(network.network_address)
    if id_type in (IdType.FQDN, IdType.USER_FQDN):
        return id_payload.data.decode("utf-8", "surrogateescape")
    return None


def ids_match(expected: IdPayload, received: IdPayload, *, check_ports: bool = True) -> bool:
    """Whether ``received`` is the ID ``expected`` describes.

    Protocol and port must be equal (unless ``check_ports`` is False, as for phase 1
    IDs, whose protocol/port isakmpd only logs). Address and subnet IDs are compared as
    networks (a host equals the /32 or /128 subnet); other types by type and data.
    """
    if check_ports and (expected.protocol != received.protocol
                        or expected.port != received.port):
        return False
    if expected.id_type in ADDRESS_ID_TYPES and received.id_type in ADDRESS_ID_TYPES:
        if expected.id_type == received.id_type and expected.data == received.data:
            return True             # the same ID (the usual case): the same network
        mine = id_network(expected)
        theirs = id_network(received)
        if mine is None or theirs is None:
            return (expected.id_type == received.id_type
                    and bytes(expected.data) == bytes(received.data))
        return mine == theirs
    return (int(expected.id_type) == int(received.id_type)
            and bytes(expected.data) == bytes(received.data))
