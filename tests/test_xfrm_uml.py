"""Our daemon on XFRM with the kernel's real ESP, against charon, inside User-mode Linux.

The host kernel has no ESP, so there our daemon without ``-n`` can only show that
the install is refused cleanly (tests/test_daemon_xfrm.py).  Here one UML boot
(:mod:`tests.support.uml`, its own, separate from tests/test_interop_uml.py) runs
this module with ``--guest``: two namespaces joined by veth hold charon with
``kernel-netlink`` (namespace "ch", 192.0.2.2, subnet 203.0.113.128/25 with
203.0.113.129 on its loopback) and our daemon WITHOUT ``-n`` (the console script
``isakmpd -d -4`` under ``ip netns exec``, namespace "us", 192.0.2.1, subnet
203.0.113.0/25 with 203.0.113.1 on its loopback), tunnel mode between the two
subnets, AES-CBC-128/HMAC-SHA1 in both phases, our daemon initiating (its
[Phase 2] Connections).  The guest writes what it saw into ``xfrm.json`` in the
host directory; the host-side test checks that record:

* both kernels hold the two ESP tunnel-mode states, the SPIs crosswise with
  charon's ``swanctl --list-sas`` and our log;
* our namespace holds our policies out, in and fwd between the subnets with an ESP
  tunnel template between the gateways;
* ``ping -c 3 -W 2 -I 203.0.113.1 203.0.113.129`` in our namespace gets its
  replies, and the ESP states' packet counters (``ip -s xfrm state``) rise on
  both sides, which shows both kernels encrypted and decrypted it;
* SIGTERM: our daemon sends DELETE and exits 0, charon drops its SAs and its
  ESP states, and nothing of ours is left in our namespace's xfrm state or policy
  (the IKE sockets' bypass policies went with the sockets).

Needs root, user-mode-linux, kmod, charon and swanctl, and the ``isakmpd`` console
script; skipped with the missing piece named otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.charon import Charon, IKEv1Connection, need_charon
from tests.support.ikepair import make_config
from tests.support.netns import Namespace, Topology
from tests.support.uml import (
    UmlResult,
    linked_pair,
    need_uml,
    result_dir,
    run_in_uml,
    xfrm_states,
)
from tests.test_interop_strongswan import (
    _DELETED,
    _ESTABLISHED,
    AES128_SHA1,
    ISAKMPD,
    OurDaemon,
)

OURS = "192.0.2.1"
CHARON_IP = "192.0.2.2"
OUR_NET = "203.0.113.0/25"
CHARON_NET = "203.0.113.128/25"
#: One address of each subnet, on each side's loopback: the ping's ends.
OUR_HOST = "203.0.113.1"
CHARON_HOST = "203.0.113.129"
PSK = "XFRM secret shared with charon in UML"
REPORT = "xfrm.json"
PINGS = 3

#: Deadline for the negotiation, the DELETE and the daemon's start in the guest, seconds.
DEADLINE = 20.0
#: Deadline for the whole boot, in seconds (boot about 3 s, the scenario about 10 s).
BOOT_TIMEOUT = 60.0


def charon_connection() -> IKEv1Connection:
    """charon's side: waits for us; AES-128/SHA1/MODP2048, ESP AES-128/SHA1, no PFS."""
    return IKEv1Connection(CHARON_IP, OURS, psk=PSK, rekey_time="3600s",
                           child_rekey_time="1200s", local_ts=CHARON_NET, remote_ts=OUR_NET,
                           **AES128_SHA1.charon_options())


def our_config() -> str:
    """Our isakmpd.conf: "conn" kept up between the subnets, same algorithms."""
    return make_config(local=OURS, peer=CHARON_IP, psk=PSK, local_net=OUR_NET,
                       remote_net=CHARON_NET, transforms=AES128_SHA1.transform,
                       suites=AES128_SHA1.suite)


# -- guest side ------------------------------------------------------------------------------


def our_policies(ns: Namespace) -> list[str]:
    """``ip xfrm policy`` of *ns* without the sockets' own (bypass) policies, one per entry."""
    blocks: list[str] = []
    for line in ns.ip("xfrm", "policy").stdout.splitlines():
        if line.startswith("src"):
            blocks.append(line)
        elif blocks:
            blocks[-1] += "\n" + line
    return [block for block in blocks if not re.search(r"\ssocket (in|out)\b", block)]


def states_record(ns: Namespace) -> list[dict[str, Any]]:
    return [asdict(state) for state in xfrm_states(ns)]


def run_scenario(tmp: Path, entry: dict[str, Any]) -> None:
    """Negotiate, ping, stop; fill *entry* as far as the scenario gets."""
    topology = Topology("ux")
    charon: Charon | None = None
    daemon: OurDaemon | None = None
    try:
        ch, us = linked_pair(topology, ("ch", f"{CHARON_IP}/24"), ("us", f"{OURS}/24"))
        ch.add_address("lo", f"{CHARON_HOST}/32")
        us.add_address("lo", f"{OUR_HOST}/32")
        # We install no routes (isakmpd(8) does not either): the subnet's route is ours.
        us.ip("route", "add", CHARON_NET, "via", CHARON_IP, "src", OUR_HOST)
        conn = charon_connection()
        charon = Charon(ch, tmp / "charon", [conn], kernel="netlink",
                        log_levels={"default": 1, "ike": 2, "cfg": 1, "knl": 2})
        charon.start()
        charon.load()
        daemon = OurDaemon(us, tmp / "us", our_config(), passive=False, kernel=True)
        ike, child = charon.wait_for_child(conn.child_name, timeout=DEADLINE)
        ours = daemon.wait_for(_ESTABLISHED, DEADLINE)
        entry.update(ike=ike, child=child,
                     ours={"in": ours.group(1), "out": ours.group(2), "line": ours.group(0)},
                     our_policies=our_policies(us),
                     before={"us": states_record(us), "ch": states_record(ch)})
        ping = us.run(["ping", "-n", "-c", str(PINGS), "-W", "2", "-I", OUR_HOST, CHARON_HOST],
                      check=False)
        entry["ping"] = {"status": ping.returncode, "output": ping.stdout + ping.stderr}
        entry["after_ping"] = {"us": states_record(us), "ch": states_record(ch)}
        # SIGTERM: DELETE to charon, our SAs and policies removed, a clean exit.
        started = time.monotonic()
        entry["our_status"] = daemon.stop()
        while True:
            sas, ch_states = charon.sas(), xfrm_states(ch)
            if (not sas and not ch_states) or time.monotonic() > started + DEADLINE:
                break
            time.sleep(0.1)
        entry["after_stop"] = {
            "charon_sas": sas, "ch": [asdict(state) for state in ch_states],
            "charon_got_delete": "received DELETE for IKE_SA" in charon.read_log(),
            "our_deleted": [m.groups() for m in _DELETED.finditer(daemon.log())],
            "us_state": us.ip("xfrm", "state").stdout.strip(),
            "us_policy": us.ip("xfrm", "policy").stdout.strip(),
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        if daemon is not None:
            daemon.stop()
            entry["our_log"] = daemon.log()
        if charon is not None:
            charon.stop()
            entry["charon_log"] = charon.read_log()
        topology.close()


def guest_main() -> int:
    """Run the scenario in the guest; write :data:`REPORT` into the host directory."""
    tmp = Path(tempfile.mkdtemp(prefix="xfrm-"))  # the guest's tmpfs: unix sockets work
    started = time.monotonic()
    entry: dict[str, Any] = {"error": None}
    try:
        run_scenario(tmp, entry)
    except Exception:  # noqa: BLE001 - recorded for the host-side test to report
        entry["error"] = traceback.format_exc()
    entry["seconds"] = round(time.monotonic() - started, 1)
    print(f"xfrm scenario: {'ok' if entry['error'] is None else 'FAILED'} "
          f"in {entry['seconds']}s", flush=True)
    (result_dir() / REPORT).write_text(json.dumps(entry, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


# -- host side -------------------------------------------------------------------------------


def boot() -> tuple[UmlResult, dict[str, Any] | None]:
    """Boot UML and run the scenario; the result and the guest's record."""
    workdir = Path(tempfile.mkdtemp(prefix="uml-xfrm-", dir=os.getcwd()))
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    result = run_in_uml([sys.executable, "-m", "tests.test_xfrm_uml", "--guest"],
                        workdir=workdir, timeout=BOOT_TIMEOUT, env=env)
    path = workdir / REPORT
    report = json.loads(path.read_text()) if result.ok and path.exists() else None
    return result, report


class XfrmDaemonInUmlTests(SynchronousTestCase):
    """Our daemon on XFRM vs charon on kernel-netlink, real ESP both ways, one UML boot."""

    def setUp(self) -> None:
        reason = need_uml("unshare", "ping") or need_charon("netlink")
        if reason:
            raise SkipTest(f"our daemon on XFRM in User-mode Linux: {reason}")
        if not os.access(ISAKMPD, os.X_OK):
            raise SkipTest(f"our daemon on XFRM in User-mode Linux: {ISAKMPD} not found "
                           "(pip install -e .)")

    def test_tunnel_we_initiate_ping_and_delete(self) -> None:
        """Tunnel mode AES-128/SHA1 initiated by us: SAs and policies in both kernels,
        a ping crosses them (packet counters rise both sides), SIGTERM leaves nothing."""
        result, entry = boot()
        if entry is None:
            self.fail(result.describe())
        logs = f"--- isakmpd log ---\n{entry.get('our_log')}\n--- charon log ---\n" \
               f"{entry.get('charon_log')}"
        if entry["error"] is not None:
            self.fail(f"{entry['error']}\n{logs}")
        ike, child, ours = entry["ike"], entry["child"], entry["ours"]
        self.assertEqual(ike.get("state"), "ESTABLISHED", logs)
        self.assertNotEqual(ike.get("initiator"), "yes", logs)
        self.assertEqual(child.get("state"), "INSTALLED", logs)
        self.assertEqual((child.get("protocol"), child.get("mode")), ("ESP", "TUNNEL"))
        self.assertEqual(child.get("local-ts"), [CHARON_NET])
        self.assertEqual(child.get("remote-ts"), [OUR_NET])
        # Our SPIs crosswise with charon's.
        spi_in, spi_out = ours["in"], ours["out"]
        self.assertEqual((spi_in, spi_out), (child.get("spi-out"), child.get("spi-in")), logs)

        def pair(states: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
            return {(s["src"], s["dst"], s["spi"]): s["packets"] for s in states
                    if s["proto"] == "esp" and s["mode"] == "tunnel" and s["encap"] is None}

        inbound, outbound = (CHARON_IP, OURS, spi_in), (OURS, CHARON_IP, spi_out)
        before, after = entry["before"], entry["after_ping"]
        for side in ("us", "ch"):
            self.assertEqual(set(pair(before[side])), {inbound, outbound},
                             f"{side}: {before[side]}")
        # Our policies: out, in and fwd between the subnets, ESP tunnel template.
        policies = entry["our_policies"]
        for src, dst, direction, tsrc, tdst in (
                (OUR_NET, CHARON_NET, "out", OURS, CHARON_IP),
                (CHARON_NET, OUR_NET, "in", CHARON_IP, OURS),
                (CHARON_NET, OUR_NET, "fwd", CHARON_IP, OURS)):
            self.assertTrue(any(
                p.startswith(f"src {src} dst {dst}") and f"dir {direction} " in p
                and f"tmpl src {tsrc} dst {tdst}" in p and "proto esp" in p
                and "mode tunnel" in p for p in policies), f"{direction}: {policies}")
        # The ping crossed: replies, and every ESP state counted the packets.
        self.assertEqual(entry["ping"]["status"], 0, f"{entry['ping']['output']}\n{logs}")
        self.assertIn(f"{PINGS} received", entry["ping"]["output"])
        for side in ("us", "ch"):
            counted, now = pair(before[side]), pair(after[side])
            for state in (inbound, outbound):
                self.assertGreaterEqual(now[state] - counted[state], PINGS,
                                        f"{side} {state}: {after[side]}")
        # No SA of ours ran out early (XFRM_INF in the seconds limits did, a second in).
        self.assertNotIn("kernel hard expiry", entry["our_log"], logs)
        # SIGTERM: DELETE sent, charon drops everything, nothing of ours is left.
        gone = entry["after_stop"]
        self.assertEqual(entry["our_status"], 0, logs)
        self.assertEqual(gone["our_deleted"], [[spi_in, spi_out]], logs)
        self.assertTrue(gone["charon_got_delete"], logs)
        self.assertEqual(gone["charon_sas"], {}, logs)
        self.assertEqual(gone["ch"], [], logs)
        self.assertEqual((gone["us_state"], gone["us_policy"]), ("", ""), logs)
        self.assertLess(result.elapsed, BOOT_TIMEOUT)


if __name__ == "__main__":
    if sys.argv[1:] != ["--guest"]:
        sys.exit("usage: python -m tests.test_xfrm_uml --guest (inside User-mode Linux)")
    sys.exit(guest_main())
