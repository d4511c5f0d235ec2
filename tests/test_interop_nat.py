"""Interop with strongSwan's charon across a real NAT (a masquerading namespace).

Three namespaces: the inside host at 198.51.100.1 (or .2), a NAT router "gw" with
198.51.100.254 inside and 192.0.2.254 outside that masquerades what leaves through
its outside link (iptables-legacy, ``-j MASQUERADE``), and the outside host at
192.0.2.1 (or .2)::

    inside 198.51.100.0/24 --- gw (MASQUERADE) --- 192.0.2.0/24 outside

Two scenarios, both with charon on kernel-libipsec as in test_interop_strongswan:

* our daemon behind the NAT initiates to charon: NAT-D shows that we are behind
  it, both float to 4500, and we send NAT-keepalives (``NAT-T-Keepalive`` 1 s here).
  They are counted by a rule in gw's FORWARD chain matching UDP datagrams of IP
  length 29 (20 + 8 + one 0xFF byte) from the inside to port 4500: only our daemon
  sends such datagrams from the inside (its in-memory kernel sends no ESP);
* charon behind the NAT initiates to us: we log that the peer is behind a NAT and
  send no keepalives.

Pass = charon's ``swanctl --list-sas`` shows the IKE SA ESTABLISHED with the peer
seen at the NAT's address, the CHILD_SA INSTALLED with UDP encapsulation and the
SPIs our daemon logged crosswise, and our daemon logs the NAT and (when NATed) its
keepalives, which the NAT's counter sees.

Needs root, ``ip``, ``unshare``, ``mount``, ``sysctl``, ``iptables-legacy`` (Debian
package iptables), charon, swanctl and kernel-libipsec; skipped with the missing
piece named otherwise. Namespaces, charon and our daemon are removed in every path.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.charon import Charon, CharonError, IKEv1Connection, need_charon
from tests.support.ikepair import make_config
from tests.support.netns import Namespace, Topology, need_root_and_tools
from tests.test_interop_strongswan import (
    _ESTABLISHED,
    CHARON_GATEWAY_ADDRESS,
    CHARON_NET,
    ISAKMPD,
    NEGOTIATION_TIMEOUT,
    OUR_NET,
    PSK,
    OurDaemon,
    initiate,
)

INSIDE_GW = "198.51.100.254"
OUTSIDE_GW = "192.0.2.254"          # the NAT's public address
INSIDE_HOST = "198.51.100.1"
INSIDE_CHARON = "198.51.100.2"
OUTSIDE_CHARON = "192.0.2.2"
OUTSIDE_US = "192.0.2.1"
IPTABLES = "iptables-legacy"
#: IP length of a NAT-keepalive: IPv4 header, UDP header, one 0xFF byte (RFC 3948 §2.3).
KEEPALIVE_IP_LENGTH = 29
KEEPALIVE_SECONDS = 1

_NAT_DETECTED = re.compile(r"NAT detected, (we are|the peer is|both sides are) behind NAT")


class NatInteropTests(SynchronousTestCase):
    """Our daemon and charon on either side of a masquerading router."""

    def setUp(self) -> None:
        reason = (need_root_and_tools("unshare", "mount", "sysctl", IPTABLES)
                  or need_charon())
        if reason:
            raise SkipTest(f"interop across a NAT: {reason}")
        if not os.access(ISAKMPD, os.X_OK):
            raise SkipTest(f"interop across a NAT: {ISAKMPD} not found (pip install -e .)")
        self.tmp = Path(tempfile.mkdtemp(prefix="isakmpd-nat-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.topology = Topology("nat")
        self.addCleanup(self.topology.close)

    # -- topology -------------------------------------------------------------------

    def build(self, inside_ip: str) -> tuple[Namespace, Namespace, Namespace]:
        """inside host -- gw (masquerading) -- outside host; returns (inside, gw, outside)."""
        inside = self.topology.add_namespace("in")
        self.gw = self.topology.add_namespace("gw")
        outside = self.topology.add_namespace("out")
        _in_dev, self.gw_inside = self.topology.link(inside, f"{inside_ip}/24", self.gw,
                                                     f"{INSIDE_GW}/24")
        self.gw_outside, _out_dev = self.topology.link(
            self.gw, f"{OUTSIDE_GW}/24", outside,
            f"{OUTSIDE_CHARON if inside_ip == INSIDE_HOST else OUTSIDE_US}/24")
        inside.add_default_route(INSIDE_GW)
        self.gw.enable_forwarding()
        self.iptables("-t", "nat", "-A", "POSTROUTING", "-o", self.gw_outside,
                      "-j", "MASQUERADE")
        # Counts (and lets through) keepalives from the inside to any NAT-T port.
        self.iptables("-A", "FORWARD", "-i", self.gw_inside, "-p", "udp", "--dport", "4500",
                      "-m", "length", "--length", str(KEEPALIVE_IP_LENGTH), "-j", "ACCEPT")
        return inside, self.gw, outside

    def iptables(self, *args: str) -> str:
        return self.gw.run([IPTABLES, "-w", *args]).stdout

    def keepalives_through_nat(self) -> int:
        """Packets counted by the keepalive rule in gw's FORWARD chain."""
        listing = self.iptables("-L", "FORWARD", "-v", "-x", "-n")
        for line in listing.splitlines():
            if "length 29" in line:
                return int(line.split()[0])
        raise AssertionError(f"no keepalive rule in:\n{listing}")

    def conntrack(self) -> str:
        proc = self.gw.run(["cat", "/proc/net/nf_conntrack"], check=False)
        return proc.stdout or proc.stderr

    # -- daemons ----------------------------------------------------------------------

    def start_charon(self, ns: Namespace, conn: IKEv1Connection) -> Charon:
        charon = Charon(ns, self.tmp / "charon", [conn],
                        log_levels={"default": 1, "ike": 2, "cfg": 1, "knl": 1, "net": 1})
        self.addCleanup(charon.stop)
        charon.start()
        charon.load()
        return charon

    def start_ours(self, ns: Namespace, *, local: str, peer: str, passive: bool,
                   peer_ip_for_phase1: str | None = None) -> OurDaemon:
        text = make_config(local=local, peer=peer, local_net=OUR_NET, remote_net=CHARON_NET,
                           psk=PSK, transforms="AES-128-SHA-GRP14",
                           suites="QM-ESP-AES-128-SHA-SUITE",
                           peer_ip_for_phase1=peer_ip_for_phase1)
        text = text.replace("[General]\n", f"[General]\nNAT-T-Keepalive=\t{KEEPALIVE_SECONDS}\n",
                            1)
        daemon = OurDaemon(ns, self.tmp, text, passive=passive)
        self.addCleanup(daemon.stop)
        daemon.wait_for("isakmpd listening on", timeout=10.0)
        return daemon

    def charon_connection(self, local: str, remote: str, **options: str) -> IKEv1Connection:
        return IKEv1Connection(local, remote, psk=PSK, local_ts=CHARON_NET, remote_ts=OUR_NET,
                               rekey_time="3600s", child_rekey_time="1200s", **options)

    def assert_child_matches(self, charon: Charon, daemon: OurDaemon, conn: IKEv1Connection,
                             *, remote_host: str, charon_initiated: bool) -> dict:
        """charon's SAs are up, UDP-encapsulated, with the SPIs our daemon logged."""
        def logs() -> str:
            return (f"--- isakmpd log ---\n{daemon.log()}\n--- charon log ---\n"
                    f"{charon.read_log()}\n--- gw conntrack ---\n{self.conntrack()}")

        try:
            ike, child = charon.wait_for_child(conn.child_name, timeout=NEGOTIATION_TIMEOUT)
        except CharonError as error:
            raise AssertionError(f"{error}\n{logs()}") from None
        self.assertEqual(ike.get("state"), "ESTABLISHED", logs())
        self.assertEqual(ike.get("version"), "1")
        self.assertEqual(ike.get("initiator") == "yes", charon_initiated)
        self.assertEqual(ike.get("remote-host"), remote_host, logs())
        self.assertEqual(child.get("state"), "INSTALLED")
        self.assertEqual(child.get("encap"), "yes")
        self.assertEqual(child.get("mode"), "TUNNEL")
        ours = daemon.wait_for(_ESTABLISHED, describe=logs)
        self.assertEqual((ours.group(1), ours.group(2)),
                         (child.get("spi-out"), child.get("spi-in")), logs())
        daemon.wait_for(_NAT_DETECTED, describe=logs)
        return ike

    # -- scenarios --------------------------------------------------------------------

    def test_we_are_behind_the_nat(self) -> None:
        """We (inside) initiate to charon (outside); we send keepalives through the NAT."""
        inside, _gw, outside = self.build(INSIDE_HOST)
        outside.add_address("lo", CHARON_GATEWAY_ADDRESS)
        # charon sees us at the NAT's address, with our inside address as our ID.
        conn = self.charon_connection(OUTSIDE_CHARON, OUTSIDE_GW, remote_id=INSIDE_HOST)
        charon = self.start_charon(outside, conn)
        daemon = self.start_ours(inside, local=INSIDE_HOST, peer=OUTSIDE_CHARON,
                                 passive=False)
        ike = self.assert_child_matches(charon, daemon, conn, remote_host=OUTSIDE_GW,
                                        charon_initiated=False)
        detected = daemon.wait_for(_NAT_DETECTED)
        self.assertIn(detected.group(1), ("we are", "both sides are"), daemon.log())
        daemon.wait_for(f"behind a NAT: NAT-keepalives from {INSIDE_HOST}:4500 to "
                        f"{OUTSIDE_CHARON}:4500 every {KEEPALIVE_SECONDS} s")
        # charon sees our NAT-T port as the NAT translated it.
        self.assertTrue(ike.get("remote-port", "").isdigit(), ike)
        deadline = time.monotonic() + 10 * KEEPALIVE_SECONDS + NEGOTIATION_TIMEOUT
        while self.keepalives_through_nat() < 3:
            if time.monotonic() > deadline:
                self.fail(f"{self.keepalives_through_nat()} keepalives through the NAT:\n"
                          f"{self.iptables('-L', 'FORWARD', '-v', '-n')}\n{daemon.log()}")
            time.sleep(0.2)

    def test_charon_is_behind_the_nat(self) -> None:
        """charon (inside) initiates to us (outside); we see its NAT, send no keepalives."""
        inside, _gw, outside = self.build(INSIDE_CHARON)
        inside.add_address("lo", CHARON_GATEWAY_ADDRESS)
        conn = self.charon_connection(INSIDE_CHARON, OUTSIDE_US)
        daemon = self.start_ours(outside, local=OUTSIDE_US, peer=OUTSIDE_GW, passive=True,
                                 peer_ip_for_phase1=OUTSIDE_GW)
        charon = self.start_charon(inside, conn)
        initiate(charon, conn)
        ike = self.assert_child_matches(charon, daemon, conn, remote_host=OUTSIDE_US,
                                        charon_initiated=True)
        self.assertEqual(ike.get("remote-port"), "4500")
        detected = daemon.wait_for(_NAT_DETECTED)
        self.assertEqual(detected.group(1), "the peer is", daemon.log())
        # Our SA talks to the NAT's address. Keepalives would have been announced
        # when the SAs became ready, so their absence now is final.
        daemon.wait_for(rf"ISAKMP SA established: .* {OUTSIDE_US}:4500 <-> "
                        rf"{re.escape(OUTSIDE_GW)}:\d+ responder ready")
        self.assertNotIn("NAT-keepalives from", daemon.log())
