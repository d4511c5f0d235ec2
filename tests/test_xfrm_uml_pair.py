"""Two of our daemons on XFRM with the kernel's real ESP, inside User-mode Linux.

charon is not involved: in each scenario of :data:`SCENARIOS` two of our daemons run
WITHOUT ``-n`` in namespaces joined by veth, "a" (192.0.2.1, subnet 203.0.113.0/25
with 203.0.113.1 on its loopback) initiating through [Phase 2] Connections and "b"
(192.0.2.2, subnet 203.0.113.128/25 with 203.0.113.129 on its loopback) answering
through [Phase 2] Passive-connections, tunnel mode between the subnets with
AES-CBC-128/HMAC-SHA1 in both phases.  One UML boot of its own (separate from
tests/test_xfrm_uml.py's, so ``trial -j2`` runs the two in parallel) runs them with
the machinery of :mod:`tests.support.xfrm_uml` and writes ``pair.json``; one
host-side test per scenario checks its record:

* ``tunnel_then_sigterm``: both kernels hold the two ESP states with the SPIs both
  daemons logged (crosswise), a ping between the subnets crosses them and every
  state's packet counter rises on both sides; then "a" gets SIGTERM: it sends
  DELETE and exits 0, "b" removes its kernel SAs and its policies, and nothing of
  ours is left in either namespace (``ip xfrm state`` empty in both, ``ip xfrm
  policy`` empty in "a" and holding only "b"'s IKE sockets' bypass in "b");
* ``acquire_on_demand``: "a" has no connection at all, only [General]
  Default-phase-2-suites and its peer section; the administrator's policies out, in
  and fwd between the subnets (ESP tunnel template, reqid 42, as ipsecctl's ``flow``
  lines would be) are in "a"'s kernel before it starts.  Traffic comes first: a ping
  makes the kernel send ACQUIRE, "a" negotiates a dynamic connection with "b"
  (passive), both kernels hold the ESP states ("a"'s with the template's reqid), a
  second ping crosses them and every counter rises; "a" installed no policy of its
  own, and after its SIGTERM its SAs are gone and the administrator's policies are
  still there, untouched;
* ``rekey_under_ping``: both sides allow a phase 2 lifetime of :data:`LIFETIME`
  seconds; a ping every 0.2 s runs from before "a"'s soft expiry renegotiates until
  after the old SAs' hard expiry.  No reply is lost; afterwards both kernels hold
  exactly the two new ESP states (new SPIs on both sides, the old ones gone from
  both kernels) and their packet counters rise.

Needs root, user-mode-linux, kmod and the ``isakmpd`` console script; skipped with
the missing piece named otherwise.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

from tests.support.ikepair import make_config
from tests.support.netns import Namespace
from tests.support.xfrm_uml import (
    GuestBoot,
    Rig,
    Scenario,
    XfrmUmlTestCase,
    guest_main,
    leftovers,
    our_policies,
    ping,
    states_record,
    wait_until,
)
from tests.test_interop_strongswan import _DELETED, _ESTABLISHED, AES128_SHA1, OurLifetimes

A_IP, B_IP = "192.0.2.1", "192.0.2.2"
A_NET, B_NET = "203.0.113.0/25", "203.0.113.128/25"
A_HOST, B_HOST = "203.0.113.1", "203.0.113.129"
PSK = "XFRM secret of two isakmpd in UML"
REPORT = "pair.json"
PINGS = 3
#: The rekey scenario's phase 2 lifetime (both sides), seconds: soft expiry at 85-95 %
#: of it (the kernel's soft limit at 90 % brings it forward), hard expiry at 100 %.
LIFETIME = 20
#: The reqid of the administrator's policies in the ACQUIRE scenario.
ACQUIRE_REQID = 42
#: Its ping: one every 0.2 s, from the SAs' start to a few seconds past the hard expiry.
REKEY_PING_INTERVAL = 0.2
REKEY_PINGS = int((LIFETIME + 4) / REKEY_PING_INTERVAL)
#: Deadline for the whole boot, in seconds (boot about 3 s, the scenarios 13 and 38 s;
#: the whole boot 45-60 s).
BOOT_TIMEOUT = 150.0
BOOT = GuestBoot("tests.test_xfrm_uml_pair", REPORT, BOOT_TIMEOUT)


def config(local: str, peer: str, local_net: str, remote_net: str, *, passive: bool,
           extra: str = "") -> str:
    """One side's isakmpd.conf: "conn" in Connections, or in Passive-connections."""
    text = make_config(local=local, peer=peer, psk=PSK, local_net=local_net,
                       remote_net=remote_net, transforms=AES128_SHA1.transform,
                       suites=AES128_SHA1.suite, extra=extra)
    return text.replace("Connections=\t\tconn", "Passive-connections=\tconn", 1) if passive \
        else text


def gateways(rig: Rig, *, extra: str = "") -> tuple[Namespace, Namespace]:
    """Namespaces "a" and "b" with their subnets' hosts and routes; "b" (passive) started
    first, then "a"; returns (a, b) once "a" logged its IPsec SA."""
    a, b = rig.pair(("a", f"{A_IP}/24"), ("b", f"{B_IP}/24"))
    a.add_address("lo", f"{A_HOST}/32")
    b.add_address("lo", f"{B_HOST}/32")
    # isakmpd(8) installs no routes: each subnet's route is the administrator's.
    a.ip("route", "add", B_NET, "via", B_IP, "src", A_HOST)
    b.ip("route", "add", A_NET, "via", A_IP, "src", B_HOST)
    rig.daemon("b", b, config(B_IP, A_IP, B_NET, A_NET, passive=True, extra=extra))
    rig.daemon("a", a, config(A_IP, B_IP, A_NET, B_NET, passive=False, extra=extra),
               wait=False)
    return a, b


def admin_policies(ns: Namespace, reqid: int) -> list[list[str]]:
    """Install the administrator's policies between the subnets in "a" (what ipsecctl's
    ``flow esp from A_NET to B_NET peer B_IP`` is on OpenBSD); their ``ip`` arguments."""
    policies = [[A_NET, B_NET, "out", A_IP, B_IP], [B_NET, A_NET, "in", B_IP, A_IP],
                [B_NET, A_NET, "fwd", B_IP, A_IP]]
    for src, dst, direction, tsrc, tdst in policies:
        ns.ip("xfrm", "policy", "add", "src", src, "dst", dst, "dir", direction, "tmpl",
              "src", tsrc, "dst", tdst, "proto", "esp", "mode", "tunnel", "reqid", str(reqid))
    return policies


def spis(rig: Rig, label: str, since: int = 0) -> list[tuple[str, str]]:
    """(in, out) SPIs of every IPsec SA daemon *label* logged as established."""
    return [m.groups() for m in _ESTABLISHED.finditer(rig.daemons[label].log())][since:]


def wait_established(rig: Rig, count: int = 1) -> dict[str, list[tuple[str, str]]]:
    """Wait until both daemons logged *count* IPsec SAs; their SPIs."""
    rig.daemons["a"].wait_for(_ESTABLISHED, 20.0)
    found = wait_until(lambda: all(len(spis(rig, side)) >= count for side in "ab"))
    if not found:
        raise AssertionError(f"not {count} IPsec SAs on both sides: "
                             f"{[spis(rig, side) for side in 'ab']}")
    return {side: spis(rig, side) for side in "ab"}


# -- the scenarios (guest side) -----------------------------------------------------------


def tunnel_then_sigterm(rig: Rig, entry: dict[str, Any]) -> None:
    """Tunnel, ping, counters; SIGTERM "a": "b" removes its SAs and policies."""
    a, b = gateways(rig)
    entry["spis"] = wait_established(rig)
    entry["before"] = {"a": states_record(a), "b": states_record(b)}
    entry["ping"] = ping(a, A_HOST, B_HOST, count=PINGS)
    entry["after_ping"] = {"a": states_record(a), "b": states_record(b)}
    entry["a_status"] = rig.daemons["a"].stop()
    entry["b_done"] = bool(wait_until(lambda: leftovers(b) == {"states": "", "policies": []}))
    entry["left"] = {"a": leftovers(a), "b": leftovers(b),
                     "a_policy": a.ip("xfrm", "policy").stdout.strip()}
    entry["deleted"] = {side: [m.groups() for m in _DELETED.finditer(rig.daemons[side].log())]
                        for side in "ab"}


def acquire_on_demand(rig: Rig, entry: dict[str, Any]) -> None:
    """"a" negotiates only because traffic hits the administrator's policies."""
    a, b = rig.pair(("a", f"{A_IP}/24"), ("b", f"{B_IP}/24"))
    a.add_address("lo", f"{A_HOST}/32")
    b.add_address("lo", f"{B_HOST}/32")
    a.ip("route", "add", B_NET, "via", B_IP, "src", A_HOST)
    b.ip("route", "add", A_NET, "via", A_IP, "src", B_HOST)
    admin_policies(a, ACQUIRE_REQID)
    entry["policies_before"] = our_policies(a)
    rig.daemon("b", b, config(B_IP, A_IP, B_NET, A_NET, passive=True))
    # No connection on "a": its [Phase 2] lists none; the suites come from [General].
    text = config(A_IP, B_IP, A_NET, B_NET, passive=False)
    text = text.replace("Connections=\t\tconn\n", "", 1).replace(
        "[General]\n", f"[General]\nDefault-phase-2-suites=\t{AES128_SHA1.suite}\n", 1)
    entry["a_config"] = text
    rig.daemon("a", a, text)
    # Traffic first: the kernel holds the first packet's flow in a larval state and
    # sends ACQUIRE; that ping may go unanswered.
    entry["first_ping"] = ping(a, A_HOST, B_HOST, count=1)
    entry["spis"] = wait_established(rig)
    entry["before"] = {"a": states_record(a), "b": states_record(b)}
    entry["ping"] = ping(a, A_HOST, B_HOST, count=PINGS)
    entry["after_ping"] = {"a": states_record(a), "b": states_record(b)}
    entry["policies_up"] = our_policies(a)
    entry["a_status"] = rig.daemons["a"].stop()
    entry["b_done"] = bool(wait_until(lambda: leftovers(b) == {"states": "", "policies": []}))
    entry["left"] = {"a": leftovers(a), "b": leftovers(b)}


def rekey_under_ping(rig: Rig, entry: dict[str, Any]) -> None:
    """Short lifetimes; a ping every 0.2 s across the rekey and the old SAs' expiry."""
    a, b = gateways(rig, extra=OurLifetimes(phase2=LIFETIME).config())
    first = wait_established(rig)
    started = time.monotonic()
    proc = a.popen(["ping", "-n", "-D", "-i", str(REKEY_PING_INTERVAL), "-c", str(REKEY_PINGS),
                    "-W", "2", "-I", A_HOST, B_HOST], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, text=True)
    try:
        second = wait_established(rig, 2)
        entry["rekeyed_after"] = round(time.monotonic() - started, 1)
        entry["after_rekey"] = {"a": states_record(a), "b": states_record(b)}
        old = {spi for side in "ab" for spi in first[side][0]}

        def old_gone() -> bool:
            return not any(s["spi"] in old for ns in (a, b) for s in states_record(ns))

        entry["old_gone"] = wait_until(old_gone, LIFETIME + 5.0)
        entry["old_gone_after"] = round(time.monotonic() - started, 1)
        entry["after_expiry"] = {"a": states_record(a), "b": states_record(b)}
        output, _ = proc.communicate(timeout=REKEY_PINGS * REKEY_PING_INTERVAL + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    entry["ping"] = {"status": proc.returncode, "output": output}
    entry["ping_seconds"] = round(time.monotonic() - started, 1)
    entry["end"] = {"a": states_record(a), "b": states_record(b)}
    # Where a lost packet died: XfrmInNoStates, XfrmOutNoStates and the like.
    entry["xfrm_stat"] = {side: ns.run(["cat", "/proc/net/xfrm_stat"], check=False).stdout
                          for side, ns in (("a", a), ("b", b))}
    entry["spis"] = {side: [list(pair) for pair in second[side]] for side in "ab"}


SCENARIOS: dict[str, Scenario] = {
    "tunnel_then_sigterm": tunnel_then_sigterm,
    "rekey_under_ping": rekey_under_ping,
    "acquire_on_demand": acquire_on_demand,
}


# -- host side ----------------------------------------------------------------------------


class TwoDaemonsOnXfrmInUmlTests(XfrmUmlTestCase):
    """Two of our daemons on XFRM, real ESP both ways, one UML boot."""

    boot = BOOT
    uses_charon = False

    def pairs(self, entry: dict[str, Any], index: int) -> tuple[tuple[str, str, str], ...]:
        """(a -> b, b -> a) ESP states of the *index*-th SA pair, SPIs crosswise checked."""
        (a_in, a_out), (b_in, b_out) = entry["spis"]["a"][index], entry["spis"]["b"][index]
        self.assertEqual((a_in, a_out), (b_out, b_in), self.logs(entry))
        return (A_IP, B_IP, a_out), (B_IP, A_IP, a_in)

    def test_tunnel_ping_then_sigterm(self) -> None:
        """Tunnel between the subnets: SAs in both kernels, a ping crosses them (every
        state counts); SIGTERM of one daemon: the other takes the DELETE and removes
        its SAs and policies, nothing of ours is left in either namespace."""
        entry = self.scenario("tunnel_then_sigterm")
        logs = self.logs(entry)
        states = set(self.pairs(entry, 0))
        self.assertEqual(entry["ping"]["status"], 0, f"{entry['ping']['output']}\n{logs}")
        self.assertIn(f"{PINGS} received", entry["ping"]["output"])
        for side in ("a", "b"):
            self.assert_counted(entry["before"][side], entry["after_ping"][side], states,
                                PINGS, side, logs=logs)
        spi_pair = list(entry["spis"]["a"][0])
        self.assertEqual(entry["a_status"], 0, logs)
        self.assertEqual(entry["deleted"], {"a": [spi_pair], "b": [spi_pair[::-1]]}, logs)
        self.assertRegex(entry["logs"]["isakmpd b"], r"DELETE|delete", logs)
        self.assertTrue(entry["b_done"], f"{entry['left']}\n{logs}")
        self.assertEqual(entry["left"]["b"], {"states": "", "policies": []}, logs)
        self.assertEqual(entry["left"]["a"], {"states": "", "policies": []}, logs)
        self.assertEqual(entry["left"]["a_policy"], "", logs)

    def test_acquire_on_demand(self) -> None:
        """Traffic first, no connection configured: the kernel's ACQUIRE for the
        administrator's policies makes "a" negotiate; SAs in both kernels ("a"'s with
        the policies' reqid), a ping crosses them; "a" added no policy and left the
        administrator's untouched; its SIGTERM removed its SAs and "b"'s."""
        entry = self.scenario("acquire_on_demand")
        logs = self.logs(entry)
        a_log = entry["logs"]["isakmpd a"]
        self.assertNotIn("Connections", entry["a_config"].split("[Phase 2]")[1].split("[")[0])
        self.assertRegex(a_log, r"kernel ACQUIRE \(seq \d+\) for 203\.0\.113\.0/25 -> "
                                r"203\.0\.113\.128/25 via 192\.0\.2\.2: negotiating "
                                r"Connection-\d+ with peer", logs)
        states = set(self.pairs(entry, 0))
        self.assertEqual(entry["ping"]["status"], 0, f"{entry['ping']['output']}\n{logs}")
        self.assertIn(f"{PINGS} received", entry["ping"]["output"])
        for side in ("a", "b"):
            self.assert_counted(entry["before"][side], entry["after_ping"][side], states,
                                PINGS, side, logs=logs)
        a_esp = [s for s in entry["before"]["a"] if s["proto"] == "esp"]
        self.assertTrue(all(f"reqid {ACQUIRE_REQID}(" in s["text"] for s in a_esp), a_esp)
        # The administrator's three policies, and nothing of ours, before and after.
        self.assertEqual(len(entry["policies_before"]), 3, entry["policies_before"])
        self.assertEqual(entry["policies_up"], entry["policies_before"], logs)
        self.assertEqual(entry["a_status"], 0, logs)
        self.assertTrue(entry["b_done"], f"{entry['left']}\n{logs}")
        self.assertEqual(entry["left"]["a"], {"states": "", "policies":
                                              entry["policies_before"]}, logs)

    def test_rekey_under_ping(self) -> None:
        """Soft expiry renegotiates while a ping runs every 0.2 s: no reply lost, new
        SPIs in both kernels, the old SAs gone from both after the hard expiry, the new
        ones counting the ping."""
        entry = self.scenario("rekey_under_ping")
        logs = self.logs(entry)
        old, new = set(self.pairs(entry, 0)), set(self.pairs(entry, 1))
        self.assertFalse(old & new, logs)
        self.assertIn("soft expiry", entry["logs"]["isakmpd a"], logs)
        self.assertTrue(entry["old_gone"], f"{entry['after_expiry']}\n{logs}")
        for side in ("a", "b"):
            self.assert_counted(entry["after_expiry"][side], entry["end"][side], new, 1,
                                side, logs=logs)
        output = entry["ping"]["output"]
        if f"{REKEY_PINGS} packets transmitted, {REKEY_PINGS} received" not in output:
            self.fail(f"replies lost across the rekey:\n{self.why_lost(entry)}\n{logs}")
        self.assertEqual(entry["ping"]["status"], 0, f"{output}\n{logs}")
        # The ping spanned the rekey and the expiry.
        self.assertLess(entry["old_gone_after"], entry["ping_seconds"], entry)
        self.assertTrue(re.search(r"IPsec SA deleted", entry["logs"]["isakmpd b"]), logs)

    @staticmethod
    def why_lost(entry: dict[str, Any]) -> str:
        """The lost pings' send times beside each side's SA installs and XFRM drop counters."""
        output = entry["ping"]["output"]
        answered = {int(m.group(1)) for m in re.finditer(r"icmp_seq=(\d+) ", output)}
        stamps = [float(m.group(1))
                  for m in re.finditer(r"^\[(\d+\.\d+)\]", output, re.MULTILINE)]
        start = min(stamps) if stamps else 0.0

        def clock(seq: int) -> str:
            """When *seq* was sent, in the daemons' log format (HHMMSS.ffffff)."""
            sent = start + REKEY_PING_INTERVAL * (seq - 1)
            return time.strftime("%H%M%S", time.localtime(sent)) + f"{sent % 1:.6f}"[1:]

        lines = [f"lost icmp_seq {seq}, sent about {clock(seq)}"
                 for seq in sorted(set(range(1, REKEY_PINGS + 1)) - answered)]
        for label, log in entry["logs"].items():
            lines += [f"{label}: {line}" for line in log.splitlines()
                      if re.search(r"IPsec SA established|expiry", line)]
        for side, text in entry.get("xfrm_stat", {}).items():
            lines += [f"{side} /proc/net/xfrm_stat: {line}" for line in text.splitlines()
                      if line.split()[-1:] != ["0"]]
        return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--guest"]:
        sys.exit("usage: python -m tests.test_xfrm_uml_pair --guest [SCENARIO...] (in UML)")
    sys.exit(guest_main(SCENARIOS, REPORT, sys.argv[2:]))
