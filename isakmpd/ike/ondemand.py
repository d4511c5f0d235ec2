"""Negotiations started by the kernel: dynamic connections from ACQUIRE (inventory §4.9).

This module owns what isakmpd's ``pf_key_v2.c`` (pf_key_v2_acquire, and the
on-demand part of pf_key_v2_expire) does. An administrator installs IPsec policies
(``ip xfrm policy add ... tmpl src GW1 dst GW2 proto esp mode tunnel``, what
ipsecctl's ``flow`` lines are on OpenBSD); when traffic first matches one that has
no SA, the kernel sends XFRM_MSG_ACQUIRE and :meth:`OnDemand.acquire` negotiates:

* The dynamic connection is written into the configuration store as isakmpd does,
  so every reader (the Quick Mode offer, the IDs, reports, ``C get``) sees an
  ordinary connection: ``[Connection-<seq>]`` (``Flags=__ondemand``) with
  ``ISAKMP-peer``, ``Local-ID``/``Remote-ID`` sections built from the policy's
  selector (a /32 or /128 is an address ID, anything else a subnet ID; the
  selector's protocol and ports go into both IDs) and an IPsec-configuration whose
  ``Suites`` are ``[General] Default-phase-2-suites``. The kernel uses only an SA of
  the mode its template names, so a suite whose transforms have the other
  ENCAPSULATION_MODE is offered as a copy with the template's mode
  (``ondemand-transport-<suite>`` / ``ondemand-tunnel-<suite>``, shared by all
  dynamic connections; their number is bounded by the suites listed).
* The ISAKMP peer is the peer section whose ``Address`` is the template's
  destination (the sections named in ``[Phase 1]``, then those named by
  ``[Phase 2]`` connections). There is no fallback to ``[Phase 1] Default``: its
  RSA_SIG phase 1 does not exist here, so an ACQUIRE without such a section is
  logged saying what to add and nothing is negotiated.
* The negotiation is :meth:`Engine.initiate_connection`'s: a ready ISAKMP SA with
  the peer is reused, otherwise phase 1 runs first and Quick Mode is chained. An
  ACQUIRE for the same selectors (policy selector, gateway, protocol, mode) while
  one runs starts nothing new (the kernel repeats ACQUIREs when its larval state
  expires, ``net.core.xfrm_acq_expires``).
* Installing (:meth:`OnDemand.install_hints`, asked by Quick Mode): no flows (the
  administrator's policies are the flows; isakmpd adds none for on-demand SAs),
  the template's reqid on the SAs (the kernel takes an SA for a template only when
  the reqids are equal, 0 included: net/xfrm/xfrm_state.c xfrm_state_find), and
  the ACQUIRE's seq on the outbound SA so the kernel replaces its larval state.
* The peer may rekey a dynamic connection (or start one for the same policy): the
  responder's connection lookup (:func:`policy.find_passive_connection`) also looks
  at dynamic connections, and the SAs answered under one get its reqid and no flows
  either.
* The dynamic connection is not in the connection checker's list, so it is not
  kept up. A kernel soft EXPIRE of one of its SAs renegotiates it, unless the SA
  was replaced or carried no traffic (:meth:`OnDemand.kernel_soft_expired`); when
  its last SA is gone and no negotiation of it runs, the connection and its
  sections are dropped (:meth:`OnDemand.sa_removed`), so ACQUIREs never pile up
  connections.

Nothing here touches the reactor or the kernel: the engine passes everything in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from twisted.python.failure import Failure

from isakmpd.config.values import split_list
from isakmpd.debug import DebugClass
from isakmpd.wire import addresses
from isakmpd.wire.constants import EncapsulationMode, ProtocolId

if TYPE_CHECKING:
    from isakmpd.ike.engine import Engine
    from isakmpd.ike.sa import IpsecSA

__all__ = ["Acquire", "DynamicConnection", "OnDemand"]

ONDEMAND_FLAG = "__ondemand"
DEFAULT_SUITES = "QM-ESP-3DES-SHA-PFS-SUITE"     # isakmpd's Default-phase-2-suites


class Acquire(Protocol):
    """What an ACQUIRE says (:class:`isakmpd.kernel.xfrm.AcquireEvent` has it all)."""

    policy_src: str
    policy_dst: str
    policy_protocol: int
    policy_src_port: int
    policy_dst_port: int
    sa_src: str
    sa_dst: str
    sa_protocol: ProtocolId | None
    mode: EncapsulationMode | None
    reqid: int
    seq: int


@dataclass
class DynamicConnection:
    """One connection made from an ACQUIRE, and the store sections written for it."""

    name: str
    key: tuple[Any, ...]
    peer: str
    local_net: str
    remote_net: str
    protocol: int
    local_port: int
    remote_port: int
    mode: EncapsulationMode
    reqid: int
    seq: int | None                 # the ACQUIRE's, until its outbound SA is installed
    sections: list[str] = field(default_factory=list)
    negotiating: bool = False

    def describe(self) -> str:
        return selectors_text(self.local_net, self.remote_net, self.protocol,
                              self.local_port, self.remote_port)


def selectors_text(src: str, dst: str, protocol: int, src_port: int, dst_port: int) -> str:
    """``198.51.100.0/24 -> 203.0.113.0/24 proto 17 port 4242`` (ports when set)."""
    def side(net: str, port: int) -> str:
        return f"{net} port {port}" if port else net

    text = f"{side(src, src_port)} -> {side(dst, dst_port)}"
    return text + (f" proto {protocol}" if protocol else "")


def _id_tags(net: str, protocol: int, port: int) -> list[tuple[str, str]]:
    """The IPsec-ID section of one selector side (inventory §2.4)."""
    network = ipaddress.ip_network(net, strict=False)
    v6 = network.version == 6
    if network.prefixlen == network.max_prefixlen:
        tags = [("ID-type", "IPV6_ADDR" if v6 else "IPV4_ADDR"),
                ("Address", str(network.network_address))]
    else:
        tags = [("ID-type", "IPV6_ADDR_SUBNET" if v6 else "IPV4_ADDR_SUBNET"),
                ("Network", str(network.network_address)),
                ("Netmask", str(network.netmask))]
    if protocol:
        tags.append(("Protocol", str(protocol)))
    if port:
        tags.append(("Port", str(port)))
    return tags


def _same_address(text: str | None, wanted: str) -> bool:
    if not text:
        return False
    try:
        return addresses.canonical(text.strip()) == wanted
    except ValueError:
        return False


class OnDemand:
    """The dynamic connections of one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._by_name: dict[str, DynamicConnection] = {}     # lower-case name ->
        self._by_key: dict[tuple[Any, ...], DynamicConnection] = {}

    @property
    def connections(self) -> list[DynamicConnection]:
        return list(self._by_name.values())

    def get(self, name: str) -> DynamicConnection | None:
        return self._by_name.get(name.lower())

    # -- ACQUIRE ------------------------------------------------------------------------

    def acquire(self, event: Acquire) -> DynamicConnection | None:
        """Negotiate for an ACQUIRE; returns the dynamic connection (None: nothing done).

        The caller has checked passive mode.
        """
        engine = self.engine
        selectors = selectors_text(event.policy_src, event.policy_dst, event.policy_protocol,
                                   event.policy_src_port, event.policy_dst_port)
        gateway = event.sa_dst
        if event.sa_protocol is None or event.mode is None:
            engine.warn("kernel ACQUIRE for {selectors} via {gw}: the policy's template "
                        "names no ESP/AH protocol or mode we know; nothing negotiated",
                        selectors=selectors, gw=gateway)
            return None
        key = (event.policy_src, event.policy_dst, event.policy_protocol,
               event.policy_src_port, event.policy_dst_port, gateway,
               int(event.sa_protocol), int(event.mode))
        existing = self._by_key.get(key)
        if existing is not None and (existing.negotiating
                                     or engine._negotiating(existing.name)):
            engine.debug(DebugClass.SYSDEP, 30, "kernel ACQUIRE (seq {seq}) for {selectors}: "
                         "{name} is being negotiated already", seq=event.seq,
                         selectors=selectors, name=existing.name)
            return existing
        peer = self.find_peer(gateway)
        if peer is None:
            engine.log.warn("kernel ACQUIRE for {selectors} via {gw}: no [Phase 1] peer has "
                            "Address {gw}; add one", selectors=selectors, gw=gateway)
            return None
        if existing is not None:
            # The kernel asks again (e.g. our SA went): a new negotiation, same name.
            existing.peer, existing.reqid, existing.seq = peer, event.reqid, event.seq
            conn = existing
        else:
            conn = DynamicConnection(
                self._new_name(event.seq), key, peer, event.policy_src, event.policy_dst,
                event.policy_protocol, event.policy_src_port, event.policy_dst_port,
                event.mode, event.reqid, event.seq)
            self._by_name[conn.name.lower()] = conn
            self._by_key[key] = conn
        engine.log.info("kernel ACQUIRE (seq {seq}) for {selectors} via {gw}: negotiating "
                        "{name} with {peer} ({mode}, reqid {reqid})", seq=event.seq,
                        selectors=selectors, gw=gateway, name=conn.name, peer=peer,
                        mode=EncapsulationMode.describe(conn.mode), reqid=conn.reqid)
        self._negotiate(conn)
        return conn

    def find_peer(self, gateway: str) -> str | None:
        """The peer section whose Address is ``gateway`` (None when there is none)."""
        store = self.engine.store
        try:
            wanted = addresses.canonical(gateway)
        except ValueError:
            return None
        candidates = [b.value.strip() for b in store.tags("Phase 1")
                      if b.tag.strip().lower() != "default"]
        for list_name in ("Connections", "Passive-connections"):
            for conn in store.get_list("Phase 2", list_name):
                peer = store.get_str(conn, "ISAKMP-peer")
                if peer:
                    candidates.append(peer.strip())
        for section in candidates:
            if section and _same_address(store.get_str(section, "Address"), wanted):
                return store.section_name(section) or section
        return None

    def _new_name(self, seq: int) -> str:
        name = f"Connection-{seq}"
        suffix = 1
        while self.engine.store.has(name) or name.lower() in self._by_name:
            suffix += 1
            name = f"Connection-{seq}-{suffix}"
        return name

    # -- the store sections ---------------------------------------------------------------

    def _write(self, conn: DynamicConnection) -> None:
        """Write (or rewrite, e.g. after a reinitialisation) the connection's sections."""
        store = self.engine.store
        local, remote = f"{conn.name}-local", f"{conn.name}-remote"
        config = f"{conn.name}-configuration"
        suites = [self._suite_for(suite, conn.mode) for suite in split_list(
            store.get_str("General", "Default-phase-2-suites") or DEFAULT_SUITES)[0]]
        sections: dict[str, list[tuple[str, str]]] = {
            conn.name: [("Phase", "2"), ("ISAKMP-peer", conn.peer), ("Configuration", config),
                        ("Local-ID", local), ("Remote-ID", remote),
                        ("Flags", ONDEMAND_FLAG)],
            config: [("DOI", "IPSEC"), ("EXCHANGE_TYPE", "QUICK_MODE"),
                     ("Suites", ",".join(suites))],
            local: _id_tags(conn.local_net, conn.protocol, conn.local_port),
            remote: _id_tags(conn.remote_net, conn.protocol, conn.remote_port),
        }
        with store.begin() as transaction:
            for section, tags in sections.items():
                for tag, value in tags:
                    transaction.set(section, tag, value, force=True)
        conn.sections = list(sections)

    def _suite_for(self, suite: str, mode: EncapsulationMode) -> str:
        """``suite``, or a copy of it whose transforms all have ``mode``."""
        store = self.engine.store
        protocols = store.get_list(suite, "Protocols")
        transforms = [xf for proto in protocols for xf in store.get_list(proto, "Transforms")]
        if not transforms or all(self._mode_of(xf) == mode for xf in transforms):
            return suite        # as it is (a missing one is reported by the offer)
        prefix = f"ondemand-{mode.label.lower()}-"
        copies: dict[str, list[tuple[str, str]]] = {}

        def copy(section: str, renamed: dict[str, str]) -> None:
            tags = []
            for binding in store.tags(section):
                value = renamed.get(binding.tag.lower(), binding.value)
                tags.append((binding.tag, value))
            copies[prefix + section] = tags

        copy(suite, {"protocols": ",".join(prefix + p for p in protocols)})
        for proto in protocols:
            copy(proto, {"transforms": ",".join(prefix + xf
                                                for xf in store.get_list(proto, "Transforms"))})
            for xf in store.get_list(proto, "Transforms"):
                copy(xf, {"encapsulation_mode": mode.label})
                if not store.has(xf, "ENCAPSULATION_MODE"):
                    copies[prefix + xf].append(("ENCAPSULATION_MODE", mode.label))
        with store.begin() as transaction:
            for section, tags in copies.items():
                for tag, value in tags:
                    transaction.set(section, tag, value, force=True)
        return prefix + suite

    def _mode_of(self, transform: str) -> EncapsulationMode:
        text = (self.engine.store.get_str(transform, "ENCAPSULATION_MODE") or "TUNNEL").strip()
        # UDP_ENCAP_TRANSPORT etc. are transport mode too (NAT-T picks the wire value).
        return (EncapsulationMode.TRANSPORT if "TRANSPORT" in text.upper()
                else EncapsulationMode.TUNNEL)

    def _drop(self, conn: DynamicConnection) -> None:
        self._by_name.pop(conn.name.lower(), None)
        self._by_key.pop(conn.key, None)
        store = self.engine.store
        with store.begin() as transaction:
            for section in conn.sections:
                transaction.remove_section(section)
        self.engine.log.info("on-demand connection {name} dropped: no SA and no negotiation "
                             "left", name=conn.name)

    # -- negotiating ------------------------------------------------------------------------

    def _negotiate(self, conn: DynamicConnection) -> None:
        self._write(conn)
        conn.negotiating = True

        def done(result: object) -> None:
            conn.negotiating = False
            if isinstance(result, Failure):
                self.engine.log.info("on-demand connection {name} for {selectors}: "
                                     "negotiation failed: {error}", name=conn.name,
                                     selectors=conn.describe(),
                                     error=result.getErrorMessage())
            self._drop_if_unused(conn)

        self.engine.initiate_connection(conn.name).addBoth(done)

    def _drop_if_unused(self, conn: DynamicConnection) -> None:
        from isakmpd.ike.sa import SaState
        if self._by_name.get(conn.name.lower()) is not conn or conn.negotiating:
            return
        if self.engine._negotiating(conn.name):
            return
        if any(sa.state is not SaState.DEAD for sa in self.engine.sadb.ipsec_by_name(conn.name)):
            return
        self._drop(conn)

    def install_hints(self, connection: str | None) -> tuple[int, int | None] | None:
        """For Quick Mode's install: (reqid, seq for the outbound SA), or None when
        ``connection`` is not on demand (then flows are installed as usual).

        The seq is handed out once: only the first SA answers that ACQUIRE.
        """
        conn = self._by_name.get((connection or "").lower())
        if conn is None:
            return None
        seq, conn.seq = conn.seq, None
        return conn.reqid, seq

    def sa_removed(self, ipsec: IpsecSA) -> None:
        """An IPsec SA went: drop its dynamic connection when nothing else holds it."""
        conn = self._by_name.get(ipsec.name.lower())
        if conn is not None:
            self._drop_if_unused(conn)

    def kernel_soft_expired(self, ipsec: IpsecSA, bytes_used: int | None) -> bool:
        """The kernel's soft EXPIRE of an SA of ``ipsec``; False when it is not ours.

        As isakmpd's pf_key_v2_expire: an on-demand SA that is not replaced and has
        carried traffic is renegotiated (its own soft expiry timer does not do that:
        the connection is not kept up).
        """
        conn = self._by_name.get(ipsec.name.lower())
        if conn is None:
            return False
        engine = self.engine
        if not ipsec.ready or ipsec.replaced or not engine.running:
            engine.debug(DebugClass.SA, 30, "kernel soft expiry of {sa}: replaced or gone, "
                         "not renegotiated", sa=ipsec.describe())
            return True
        if bytes_used == 0:
            engine.log.info("kernel soft expiry of an SA of {sa} that carried no traffic: "
                            "not renegotiated", sa=ipsec.describe())
            return True
        if conn.negotiating or engine._negotiating(conn.name):
            return True
        engine.log.info("kernel soft expiry of on-demand {sa}: renegotiating",
                        sa=ipsec.describe())
        self._negotiate(conn)
        return True
