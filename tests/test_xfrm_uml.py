"""Our daemon on XFRM with the kernel's real ESP, against charon, inside User-mode Linux.

The host kernel has no ESP, so there our daemon without ``-n`` can only show that
the install is refused cleanly (tests/test_daemon_xfrm.py).  Here one UML boot
(:mod:`tests.support.uml`, its own, separate from tests/test_interop_uml.py and
tests/test_xfrm_uml_pair.py) runs every scenario of :data:`SCENARIOS` with the
machinery of :mod:`tests.support.xfrm_uml`: each in fresh namespaces joined by veth,
charon with ``kernel-netlink`` in "ch" (192.0.2.2, subnet 203.0.113.128/25 with
203.0.113.129 on its loopback) and our daemon WITHOUT ``-n`` (the console script
``isakmpd -d`` under ``ip netns exec``) in "us" (192.0.2.1, subnet 203.0.113.0/25
with 203.0.113.1 on its loopback).  The guest writes what it saw into ``xfrm.json``
in the host directory; one host-side test per scenario checks its record.  A
scenario passes when both kernels hold the negotiated ESP states (SPIs crosswise
with charon's ``swanctl --list-sas`` and our log), a ping crosses them and every
ESP state's packet counter (``ip -s xfrm state``) rose on both sides, which shows
both kernels encrypted and decrypted it:

* ``tunnel_we_initiate``: tunnel between the subnets, AES-CBC-128/HMAC-SHA1 in both
  phases, we initiate ([Phase 2] Connections); our policies out, in and fwd with an
  ESP tunnel template; then SIGTERM: our DELETE makes charon drop its SAs and ESP
  states, and nothing of ours is left in our namespace;
* ``gcm_charon_initiates``: charon initiates, we answer through [Phase 2]
  Passive-connections; ESP AES-GCM-16 with a 128-bit key (phase 1 AES-CBC: IKEv1
  has no GCM for IKE); both kernels hold ``aead rfc4106(gcm(aes))`` states with a
  160-bit key (key and 4-byte salt) and a 128-bit ICV;
* ``transport_we_initiate``: transport mode between the two gateways (IPV4_ADDR
  IDs), the ping from gateway to gateway;
* ``ipv6_tunnel_we_initiate``: gateways 2001:db8:1::1 and ::2 on the link, subnets
  2001:db8:a::/64 and 2001:db8:b::/64 (distinct from the link: a policy covering
  the gateways' own addresses would catch neighbour discovery), ``isakmpd -6``;
* ``nat_t_we_initiate``: we are 198.51.100.1 behind a namespace "gw" that
  masquerades (iptables-legacy) with UDP source ports mapped into 40000-40999;
  NAT-D makes both float to 4500 and both kernels hold ESP-in-UDP states
  (``encap type espinudp``) with the ports as each side sees them: 4500 to 4500 on
  ours, charon's 4500 to the NAT's translated port on charon's.

* ``ipcomp_we_initiate``: ESP AES-128/SHA1 with IPComp (DEFLATE) in tunnel mode,
  we initiate, charon with ``ipcomp = yes``: the CPIs crosswise with charon's, both
  kernels hold the IPComp states in tunnel mode and the ESP states in transport mode
  inside them, our policies carry the two templates, and a ping of 1,000 zero bytes
  (compressible; the kernel sends small packets uncompressed) crosses them with the
  IPComp and the ESP states counting it on both sides.

Adding a scenario: one function ``scenario(rig, entry)`` in :data:`SCENARIOS` and one
test method calling :meth:`XfrmUmlTestCase.scenario`.  Needs root, user-mode-linux,
kmod, charon and swanctl, iptables-legacy, and the ``isakmpd`` console script;
skipped with the missing piece named otherwise.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from tests.support.charon import IKEv1Connection
from tests.support.ikepair import make_config
from tests.support.netns import Namespace
from tests.support.uml import masquerade
from tests.support.xfrm_uml import (
    GuestBoot,
    Rig,
    Scenario,
    XfrmUmlTestCase,
    esp_counts,
    guest_main,
    our_policies,
    ping,
    states_record,
    wait_until,
)
from tests.test_interop_strongswan import (
    _DELETED,
    _ESTABLISHED,
    AES128_SHA1,
    IPCOMP_CONFIG,
    IPCOMP_SUITE,
    initiate,
    swanctl_algorithms,
)

OURS = "192.0.2.1"
CHARON_IP = "192.0.2.2"
OUR_NET = "203.0.113.0/25"
CHARON_NET = "203.0.113.128/25"
#: One address of each subnet, on each side's loopback: the ping's ends.
OUR_HOST = "203.0.113.1"
CHARON_HOST = "203.0.113.129"
#: The IPv6 scenario: the link, and the subnets with the ping's ends.
OURS6, CHARON6 = "2001:db8:1::1", "2001:db8:1::2"
OUR_NET6, CHARON_NET6 = "2001:db8:a::/64", "2001:db8:b::/64"
OUR_HOST6, CHARON_HOST6 = "2001:db8:a::1", "2001:db8:b::1"
#: The NAT scenario: our address inside, the NAT's inside and outside addresses, and
#: the range it maps UDP source ports into (so charon sees other ports than ours).
NAT_INSIDE_US = "198.51.100.1"
NAT_INSIDE_GW = "198.51.100.254"
NAT_OUTSIDE = "192.0.2.254"
NAT_PORTS = "40000-40999"
PSK = "XFRM secret shared with charon in UML"
REPORT = "xfrm.json"
PINGS = 3
#: charon's ESP proposal and our suite for AES-GCM-16 with a 128-bit key.
GCM_ESP, GCM_SUITE = "aes128gcm16", "QM-ESP-AESGCM-128-SUITE"
#: Deadline for the whole boot, in seconds (boot about 3 s, each scenario 8-15 s; the
#: whole boot 55-75 s).
BOOT_TIMEOUT = 150.0
BOOT = GuestBoot("tests.test_xfrm_uml", REPORT, BOOT_TIMEOUT)


def charon_conn(**options: Any) -> IKEv1Connection:
    """charon's connection: AES-128/SHA1/MODP2048, ESP AES-128/SHA1, no PFS by default."""
    settings: dict[str, Any] = dict(local_addr=CHARON_IP, remote_addr=OURS, psk=PSK,
                                    rekey_time="3600s", child_rekey_time="1200s",
                                    local_ts=CHARON_NET, remote_ts=OUR_NET,
                                    **AES128_SHA1.charon_options())
    settings.update(options)
    return IKEv1Connection(**settings)


def our_config(*, passive: bool = False, **options: Any) -> str:
    """Our isakmpd.conf (:func:`make_config`), "conn" in Connections or Passive-connections."""
    config = make_config(**{"local": OURS, "peer": CHARON_IP, "psk": PSK,
                            "local_net": OUR_NET, "remote_net": CHARON_NET,
                            "transforms": AES128_SHA1.transform, "suites": AES128_SHA1.suite,
                            **options})
    if passive:
        config = config.replace("Connections=\t\tconn", "Passive-connections=\tconn", 1)
    return config


def established(rig: Rig, entry: dict[str, Any], conn: IKEv1Connection) -> None:
    """Wait for both sides; record charon's SAs and our SPIs ("ours": in, out, line)."""
    charon, daemon = rig.charons["ch"], rig.daemons["us"]
    ike, child = charon.wait_for_child(conn.child_name, timeout=20.0)
    ours = daemon.wait_for(_ESTABLISHED, 20.0, describe=charon.read_log)
    entry.update(ike=ike, child=child,
                 ours={"in": ours.group(1), "out": ours.group(2), "line": ours.group(0)})


def ping_across(entry: dict[str, Any], us: Namespace, ch: Namespace, src: str,
                dst: str) -> None:
    """Record both kernels' states, ping *src* -> *dst* in *us*, record them again."""
    entry["before"] = {"us": states_record(us), "ch": states_record(ch)}
    entry["ping"] = ping(us, src, dst, count=PINGS)
    entry["after_ping"] = {"us": states_record(us), "ch": states_record(ch)}


def two_gateways(rig: Rig, ours: str = OURS, charon: str = CHARON_IP, bits: int = 24,
                 ) -> tuple[Namespace, Namespace]:
    """Namespaces "ch" and "us" on one link."""
    return rig.pair(("ch", f"{charon}/{bits}"), ("us", f"{ours}/{bits}"))


def with_subnets(ch: Namespace, us: Namespace) -> None:
    """The subnets' ping ends on the loopbacks; our route to charon's subnet (isakmpd(8)
    installs no routes; charon's kernel-netlink installs its own)."""
    ch.add_address("lo", f"{CHARON_HOST}/32")
    us.add_address("lo", f"{OUR_HOST}/32")


# -- the scenarios (guest side) -----------------------------------------------------------


def tunnel_we_initiate(rig: Rig, entry: dict[str, Any]) -> None:
    """Tunnel AES-128/SHA1 initiated by us; ping; SIGTERM and nothing left."""
    ch, us = two_gateways(rig)
    with_subnets(ch, us)
    us.ip("route", "add", CHARON_NET, "via", CHARON_IP, "src", OUR_HOST)
    conn = charon_conn()
    charon = rig.charon("ch", ch, [conn])
    daemon = rig.daemon("us", us, our_config(), wait=False)
    established(rig, entry, conn)
    entry["our_policies"] = our_policies(us)
    ping_across(entry, us, ch, OUR_HOST, CHARON_HOST)
    # SIGTERM: DELETE to charon, our SAs and policies removed, a clean exit.
    entry["our_status"] = daemon.stop()
    sas = wait_until(lambda: not charon.sas() and not states_record(ch))
    entry["after_stop"] = {
        "charon_done": bool(sas), "charon_sas": charon.sas(), "ch": states_record(ch),
        "charon_got_delete": "received DELETE for IKE_SA" in charon.read_log(),
        "our_deleted": [m.groups() for m in _DELETED.finditer(daemon.log())],
        "us_state": us.ip("xfrm", "state").stdout.strip(),
        "us_policy": us.ip("xfrm", "policy").stdout.strip(),
    }


def gcm_charon_initiates(rig: Rig, entry: dict[str, Any]) -> None:
    """charon initiates ESP AES-GCM-16/128 between the subnets; we answer (passive)."""
    ch, us = two_gateways(rig)
    with_subnets(ch, us)
    us.ip("route", "add", CHARON_NET, "via", CHARON_IP, "src", OUR_HOST)
    conn = charon_conn(esp_proposals=GCM_ESP)
    rig.daemon("us", us, our_config(passive=True, suites=GCM_SUITE))
    charon = rig.charon("ch", ch, [conn])
    entry["initiate"] = initiate(charon, conn)
    established(rig, entry, conn)
    ping_across(entry, us, ch, OUR_HOST, CHARON_HOST)


def transport_we_initiate(rig: Rig, entry: dict[str, Any]) -> None:
    """Transport mode between the gateways, we initiate; ping gateway to gateway."""
    ch, us = two_gateways(rig)
    conn = charon_conn(mode="transport", local_ts="dynamic", remote_ts="dynamic")
    rig.charon("ch", ch, [conn])
    rig.daemon("us", us, our_config(
        suites=AES128_SHA1.suite.replace("QM-ESP-", "QM-ESP-TRP-", 1), local_net=f"{OURS}/32",
        remote_net=f"{CHARON_IP}/32", id_type="IPV4_ADDR"), wait=False)
    established(rig, entry, conn)
    entry["our_policies"] = our_policies(us)
    ping_across(entry, us, ch, OURS, CHARON_IP)


def ipv6_tunnel_we_initiate(rig: Rig, entry: dict[str, Any]) -> None:
    """IPv6 tunnel between 2001:db8:a::/64 and 2001:db8:b::/64, we initiate; ping6."""
    ch, us = two_gateways(rig, OURS6, CHARON6, 64)
    ch.add_address("lo", f"{CHARON_HOST6}/128")
    us.add_address("lo", f"{OUR_HOST6}/128")
    us.ip("-6", "route", "add", CHARON_NET6, "via", CHARON6, "src", OUR_HOST6)
    conn = charon_conn(local_addr=CHARON6, remote_addr=OURS6, local_ts=CHARON_NET6,
                       remote_ts=OUR_NET6)
    rig.charon("ch", ch, [conn])
    rig.daemon("us", us, our_config(local=OURS6, peer=CHARON6, local_net=OUR_NET6,
                                    remote_net=CHARON_NET6, id_type="IPV6_ADDR_SUBNET"),
               family="-6", wait=False)
    established(rig, entry, conn)
    entry["our_policies"] = our_policies(us)
    ping_across(entry, us, ch, OUR_HOST6, CHARON_HOST6)


def nat_t_we_initiate(rig: Rig, entry: dict[str, Any]) -> None:
    """We initiate from behind a masquerading NAT: ESP-in-UDP in both kernels; ping."""
    topology = rig.topology
    ch = topology.add_namespace("ch")
    gw = topology.add_namespace("gw")
    us = topology.add_namespace("us")
    outside, _ = topology.link(gw, f"{NAT_OUTSIDE}/24", ch, f"{CHARON_IP}/24")
    topology.link(us, f"{NAT_INSIDE_US}/24", gw, f"{NAT_INSIDE_GW}/24")
    masquerade(gw, outside, udp_ports=NAT_PORTS)
    with_subnets(ch, us)
    us.add_default_route(NAT_INSIDE_GW)
    us.ip("route", "add", CHARON_NET, "via", NAT_INSIDE_GW, "src", OUR_HOST)
    # charon sees the NAT's address; we identify ourselves by our own.
    conn = charon_conn(remote_addr=NAT_OUTSIDE, remote_id=NAT_INSIDE_US)
    rig.charon("ch", ch, [conn])
    rig.daemon("us", us, our_config(local=NAT_INSIDE_US), wait=False)
    established(rig, entry, conn)
    ping_across(entry, us, ch, OUR_HOST, CHARON_HOST)


#: Our log line of an SA with ESP and IPComp: the ESP SPIs and the CPIs (in, out).
_ESTABLISHED_IPCOMP = re.compile(
    r"IPsec SA established: .*\[(?:IPSEC_)?ESP in ([0-9a-f]{8}) out ([0-9a-f]{8}), "
    r"IPCOMP in ([0-9a-f]{4}) out ([0-9a-f]{4})\]")
#: The IPComp scenario's ping payload: zeros compress well, and the kernel compresses
#: only packets larger than its threshold (90 bytes of payload for DEFLATE).
IPCOMP_PING_SIZE = 1000


def ipcomp_we_initiate(rig: Rig, entry: dict[str, Any]) -> None:
    """ESP+IPComp tunnel initiated by us, charon with ipcomp=yes; a compressible ping."""
    ch, us = two_gateways(rig)
    with_subnets(ch, us)
    us.ip("route", "add", CHARON_NET, "via", CHARON_IP, "src", OUR_HOST)
    conn = charon_conn(child_options={"ipcomp": "yes"})
    charon = rig.charon("ch", ch, [conn])
    daemon = rig.daemon("us", us, our_config(suites=IPCOMP_SUITE, extra=IPCOMP_CONFIG),
                        wait=False)
    ike, child = charon.wait_for_child(conn.child_name, timeout=20.0)
    ours = daemon.wait_for(_ESTABLISHED_IPCOMP, 20.0, describe=charon.read_log)
    entry.update(ike=ike, child=child,
                 ours={"in": ours.group(1), "out": ours.group(2), "cpi_in": ours.group(3),
                       "cpi_out": ours.group(4), "line": ours.group(0)})
    entry["our_policies"] = our_policies(us)
    entry["before"] = {"us": states_record(us), "ch": states_record(ch)}
    entry["ping"] = ping(us, OUR_HOST, CHARON_HOST, count=PINGS, size=IPCOMP_PING_SIZE)
    entry["after_ping"] = {"us": states_record(us), "ch": states_record(ch)}


SCENARIOS: dict[str, Scenario] = {
    "tunnel_we_initiate": tunnel_we_initiate,
    "gcm_charon_initiates": gcm_charon_initiates,
    "transport_we_initiate": transport_we_initiate,
    "ipv6_tunnel_we_initiate": ipv6_tunnel_we_initiate,
    "nat_t_we_initiate": nat_t_we_initiate,
    "ipcomp_we_initiate": ipcomp_we_initiate,
}


# -- host side ----------------------------------------------------------------------------

#: ``ip xfrm state``'s AEAD line: the algorithm, the key's bits, the ICV's bits.
_AEAD = re.compile(r"aead (\S+) 0x[0-9a-f]+ \((\d+) bits\) (\d+)")


class XfrmDaemonInUmlTests(XfrmUmlTestCase):
    """Our daemon on XFRM vs charon on kernel-netlink, real ESP both ways, one UML boot."""

    boot = BOOT
    tools = ("unshare", "ping", "iptables-legacy")

    def assert_up(self, name: str, *, charon_initiates: bool = False, mode: str = "tunnel",
                  local_ts: str = CHARON_NET, remote_ts: str = OUR_NET,
                  esp: str = "AES_CBC-128-HMAC_SHA1_96") -> dict[str, Any]:
        """Scenario *name*: charon's SAs as expected, our SPIs crosswise; its record."""
        entry = self.scenario(name)
        logs = self.logs(entry)
        ike, child, ours = entry["ike"], entry["child"], entry["ours"]
        self.assertEqual(ike.get("state"), "ESTABLISHED", logs)
        self.assertEqual(ike.get("initiator") == "yes", charon_initiates, logs)
        self.assertEqual(child.get("state"), "INSTALLED", logs)
        self.assertEqual((child.get("protocol"), child.get("mode")), ("ESP", mode.upper()))
        self.assertEqual(swanctl_algorithms(child, dh=False), esp)
        self.assertEqual(child.get("local-ts"), [local_ts])
        self.assertEqual(child.get("remote-ts"), [remote_ts])
        self.assertEqual((ours["in"], ours["out"]), (child.get("spi-out"), child.get("spi-in")),
                         logs)
        self.assertIn(f" {mode.upper()} ", ours["line"])
        # No SA of ours ran out early (XFRM_INF in the seconds limits did, a second in).
        self.assertNotIn("kernel hard expiry", entry["logs"]["isakmpd us"], logs)
        return entry

    def assert_ping_counted(self, entry: dict[str, Any], ours: str, charon: str, *,
                            mode: str = "tunnel", our_encap: str | None = None,
                            charon_sees_us: str | None = None,
                            charon_encap: tuple[str, str] | None = None) -> None:
        """The ping got every reply, and each kernel's two ESP states counted it.

        Our kernel: *charon* -> *ours* with our inbound SPI, *ours* -> *charon* with our
        outbound one, both with *our_encap*; charon's the same pair with us at
        *charon_sees_us* (default *ours*), *charon_encap* being (the encap of the
        state towards us, the one towards charon).
        """
        logs = self.logs(entry)
        spi_in, spi_out = entry["ours"]["in"], entry["ours"]["out"]
        self.assertEqual(entry["ping"]["status"], 0, f"{entry['ping']['output']}\n{logs}")
        self.assertIn(f"{PINGS} received", entry["ping"]["output"])
        seen = charon_sees_us or ours
        for side, to_us, to_charon, (encap_to_us, encap_to_charon) in (
                ("us", (charon, ours, spi_in), (ours, charon, spi_out),
                 (our_encap, our_encap)),
                ("ch", (charon, seen, spi_in), (seen, charon, spi_out),
                 charon_encap or (None, None))):
            self.assert_counted(entry["before"][side], entry["after_ping"][side],
                                {to_us, to_charon}, PINGS, side, mode=mode,
                                encap={to_us: encap_to_us, to_charon: encap_to_charon},
                                logs=logs)

    def assert_policies(self, entry: dict[str, Any], ours: str, charon: str, our_net: str,
                        charon_net: str, mode: str = "tunnel") -> None:
        """Our policies: out, in (and fwd in tunnel mode) between the selectors with an
        ESP template (between the gateways in tunnel mode)."""
        policies = entry["our_policies"]
        expected = [(our_net, charon_net, "out", ours, charon),
                    (charon_net, our_net, "in", charon, ours)]
        if mode == "tunnel":
            expected.append((charon_net, our_net, "fwd", charon, ours))
        self.assertEqual(len(policies), len(expected), policies)
        for src, dst, direction, tsrc, tdst in expected:
            template = f"tmpl src {tsrc} dst {tdst}" if mode == "tunnel" else "tmpl src "
            self.assertTrue(any(
                p.startswith(f"src {src} dst {dst}") and f"dir {direction} " in p
                and template in p and "proto esp" in p and f"mode {mode}" in p
                for p in policies), f"{direction}: {policies}")

    def test_tunnel_we_initiate_ping_and_delete(self) -> None:
        """Tunnel mode AES-128/SHA1 initiated by us: SAs and policies in both kernels,
        a ping crosses them (packet counters rise both sides), SIGTERM leaves nothing."""
        entry = self.assert_up("tunnel_we_initiate")
        logs = self.logs(entry)
        self.assert_policies(entry, OURS, CHARON_IP, OUR_NET, CHARON_NET)
        self.assert_ping_counted(entry, OURS, CHARON_IP)
        # SIGTERM: DELETE sent, charon drops everything, nothing of ours is left.
        gone = entry["after_stop"]
        self.assertEqual(entry["our_status"], 0, logs)
        self.assertEqual(gone["our_deleted"], [[entry["ours"]["in"], entry["ours"]["out"]]],
                         logs)
        self.assertTrue(gone["charon_got_delete"], logs)
        self.assertEqual(gone["charon_sas"], {}, logs)
        self.assertEqual(gone["ch"], [], logs)
        self.assertEqual((gone["us_state"], gone["us_policy"]), ("", ""), logs)

    def test_gcm_charon_initiates(self) -> None:
        """charon initiates ESP AES-GCM-16/128 to our passive connection: both kernels
        hold rfc4106(gcm(aes)) states (160-bit key with salt, ICV 128); a ping crosses."""
        entry = self.assert_up("gcm_charon_initiates", charon_initiates=True,
                               esp="AES_GCM_16-128")
        self.assertIn("responder", entry["logs"]["isakmpd us"])
        self.assert_ping_counted(entry, OURS, CHARON_IP)
        for side in ("us", "ch"):
            aead = [_AEAD.search(s["text"]) for s in entry["before"][side]
                    if s["proto"] == "esp"]
            self.assertEqual([m.groups() if m else None for m in aead],
                             [("rfc4106(gcm(aes))", "160", "128")] * 2,
                             f"{side}: {entry['before'][side]}")

    def test_transport_we_initiate(self) -> None:
        """Transport mode between the gateways, initiated by us: transport ESP states in
        both kernels, our policies out and in, a ping gateway to gateway crosses them."""
        entry = self.assert_up("transport_we_initiate", mode="transport",
                               local_ts=f"{CHARON_IP}/32", remote_ts=f"{OURS}/32")
        self.assert_policies(entry, OURS, CHARON_IP, f"{OURS}/32", f"{CHARON_IP}/32",
                             mode="transport")
        self.assert_ping_counted(entry, OURS, CHARON_IP, mode="transport")

    def test_ipv6_tunnel_we_initiate(self) -> None:
        """IPv6 tunnel between two 2001:db8 subnets, initiated by us: ESP over IPv6 in
        both kernels, our IPv6 policies, a ping6 between the subnets crosses them."""
        entry = self.assert_up("ipv6_tunnel_we_initiate", local_ts=CHARON_NET6,
                               remote_ts=OUR_NET6)
        self.assert_policies(entry, OURS6, CHARON6, OUR_NET6, CHARON_NET6)
        self.assert_ping_counted(entry, OURS6, CHARON6)

    def test_nat_t_we_initiate(self) -> None:
        """We initiate from behind a masquerading NAT: both kernels hold ESP-in-UDP
        states with the ports each sees (the NAT's translated one on charon's side),
        and a ping between the subnets crosses them."""
        entry = self.assert_up("nat_t_we_initiate")
        ike = entry["ike"]
        self.assertEqual((ike.get("local-port"), ike.get("remote-host")),
                         ("4500", NAT_OUTSIDE), ike)
        self.assertEqual(ike.get("nat-remote"), "yes", ike)
        self.assertEqual(entry["child"].get("encap"), "yes")
        nat_port = ike.get("remote-port", "")
        low, high = (int(port) for port in NAT_PORTS.split("-"))
        self.assertTrue(nat_port.isdigit() and low <= int(nat_port) <= high, ike)
        self.assert_ping_counted(
            entry, NAT_INSIDE_US, CHARON_IP, our_encap="espinudp 4500 4500",
            charon_sees_us=NAT_OUTSIDE,
            charon_encap=(f"espinudp 4500 {nat_port}", f"espinudp {nat_port} 4500"))
        self.assertEqual(esp_counts(entry["before"]["us"], encap=None), {})

    def test_ipcomp_we_initiate(self) -> None:
        """ESP with IPComp (DEFLATE) initiated by us to charon (ipcomp = yes): CPIs
        crosswise, IPComp tunnel states with ESP transport states inside in both
        kernels, our two-template policies, a compressible ping counted by all."""
        entry = self.assert_up("ipcomp_we_initiate")
        logs = self.logs(entry)
        child, ours = entry["child"], entry["ours"]
        self.assertEqual((ours["cpi_in"], ours["cpi_out"]),
                         (child.get("cpi-out"), child.get("cpi-in")), logs)
        self.assertEqual(entry["ping"]["status"], 0, f"{entry['ping']['output']}\n{logs}")
        self.assertIn(f"{PINGS} received", entry["ping"]["output"])
        cpi_in, cpi_out = (cpi.rjust(8, "0") for cpi in (ours["cpi_in"], ours["cpi_out"]))
        spi_in, spi_out = ours["in"], ours["out"]
        to_us, to_charon = (CHARON_IP, OURS), (OURS, CHARON_IP)
        for side in ("us", "ch"):
            before, after = entry["before"][side], entry["after_ping"][side]
            # ESP inside the IPComp SA: transport mode, counting every packet.
            self.assert_counted(before, after, {(*to_us, spi_in), (*to_charon, spi_out)},
                                PINGS, side, mode="transport", logs=logs)

            def comp(states: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
                return {(s["src"], s["dst"], s["spi"]): s["packets"] for s in states
                        if s["proto"] == "comp" and s["mode"] == "tunnel"}

            expected = {(*to_us, cpi_in), (*to_charon, cpi_out)}
            self.assertEqual(set(comp(before)), expected, f"{side}: {before}\n{logs}")
            for key in expected:
                self.assertGreaterEqual(comp(after)[key] - comp(before)[key], PINGS,
                                        f"{side} {key}: {after}\n{logs}")
        # Our policies: IPComp (tunnel, between the gateways) first, then ESP (transport).
        policies = entry["our_policies"]
        self.assertEqual(len(policies), 3, policies)
        for policy in policies:
            self.assertRegex(policy, r"(?s)proto comp .*mode tunnel.*proto esp .*mode transport",
                             policies)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--guest"]:
        sys.exit("usage: python -m tests.test_xfrm_uml --guest [SCENARIO...] (in UML)")
    sys.exit(guest_main(SCENARIOS, REPORT, sys.argv[2:]))
