"""Interop with charon using the kernel's real ESP, inside User-mode Linux.

The host kernel has no ESP, so charon there needs kernel-libipsec, which forces
NAT-T (tests/test_interop_strongswan.py).  Here one UML boot
(:mod:`tests.support.uml`) runs this module with ``--guest``: in the guest, for
every scenario, two fresh namespaces joined by veth hold charon with
``kernel-netlink`` (namespace "ch", 192.0.2.2, protecting 203.0.113.128/25) and
our daemon (``isakmpd -n -4 -p 500 -N 4500``, namespace "us", 192.0.2.1,
protecting 203.0.113.0/25).  The guest records what it saw (charon's
``swanctl --list-sas``, the SPIs our daemon logged, ``ip -s xfrm state`` in
charon's namespace) in ``scenarios.json`` in the host directory; the host-side
tests below check the record, one test per scenario, all from the same boot.

A scenario passes when charon shows the IKE SA ESTABLISHED on plain port 500
(kernel-netlink does not force NAT-T, so nobody floats to 4500) and the CHILD_SA
INSTALLED, ESP in tunnel mode without UDP encapsulation, with the SPIs our daemon
logged crosswise, and charon's kernel holds exactly those two ESP states.  Our
side installs nothing (``-n``); traffic through the tunnel is not checked here.

Needs root, user-mode-linux, kmod, charon and swanctl; skipped with the missing
piece named otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.charon import Charon, IKEv1Connection, need_charon
from tests.support.ikepair import make_config
from tests.support.netns import Topology
from tests.support.uml import (
    RESULT_DIR_ENV,
    UmlResult,
    linked_pair,
    need_uml,
    parse_xfrm_states,
    result_dir,
    run_in_uml,
)
from tests.test_interop_strongswan import _ESTABLISHED, ISAKMPD, OurDaemon, initiate

OURS = "192.0.2.1"
CHARON_IP = "192.0.2.2"
OUR_NET = "203.0.113.0/25"
CHARON_NET = "203.0.113.128/25"
#: An address of charon's own subnet (the source of its route to ours).
CHARON_GATEWAY_ADDRESS = "203.0.113.129/32"
PSK = "interop secret shared with charon in UML"
REPORT = "scenarios.json"

#: Deadline for one negotiation (both phases) in the guest, in seconds.
NEGOTIATION_TIMEOUT = 15.0
#: Deadline for the whole boot, in seconds (a boot takes about 3 s, the
#: scenarios a few seconds each).
BOOT_TIMEOUT = 90.0

P1_128 = "AES_CBC-128-HMAC_SHA1_96-MODP_2048"
ESP_128 = "AES_CBC-128-HMAC_SHA1_96"


# -- guest side: run the scenarios, record what was seen --------------------------------


def charon_connection(**options: Any) -> IKEv1Connection:
    """charon's side of the tunnel, lifetimes within our accepted ranges."""
    return IKEv1Connection(CHARON_IP, OURS, psk=PSK, local_ts=CHARON_NET, remote_ts=OUR_NET,
                           rekey_time="3600s", child_rekey_time="1200s", **options)


class Scenario:
    """One pair of fresh namespaces with charon (kernel-netlink) and our daemon."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.tmp = tmp / name
        self.tmp.mkdir()
        self.topology = Topology("uml")
        self.ch, self.us = linked_pair(self.topology, ("ch", f"{CHARON_IP}/24"),
                                       ("us", f"{OURS}/24"))
        self.ch.add_address("lo", CHARON_GATEWAY_ADDRESS)
        self.conn = charon_connection()
        self.charon: Charon | None = None
        self.daemon: OurDaemon | None = None

    def start_charon(self) -> Charon:
        self.charon = Charon(self.ch, self.tmp / "charon", [self.conn], kernel="netlink",
                             log_levels={"default": 1, "ike": 2, "cfg": 1, "knl": 2})
        self.charon.start()
        self.charon.load()
        return self.charon

    def start_ours(self, *, passive: bool) -> OurDaemon:
        text = make_config(local=OURS, peer=CHARON_IP, local_net=OUR_NET,
                           remote_net=CHARON_NET, psk=PSK, transforms="AES-128-SHA-GRP14",
                           suites="QM-ESP-AES-128-SHA-SUITE")
        self.daemon = OurDaemon(self.us, self.tmp, text, passive=passive)
        self.daemon.wait_for("isakmpd listening on", timeout=20.0)
        return self.daemon

    def record(self) -> dict[str, Any]:
        """Wait for both sides, then collect charon's SAs, our SPIs and the kernel's."""
        assert self.charon is not None and self.daemon is not None
        charon, daemon = self.charon, self.daemon
        ike, child = charon.wait_for_child(self.conn.child_name, timeout=NEGOTIATION_TIMEOUT)
        ours = daemon.wait_for(_ESTABLISHED, describe=charon.read_log)
        role = daemon.wait_for(r"ISAKMP SA established: .* (initiator|responder) ready")
        xfrm_text = self.ch.run(["ip", "-s", "xfrm", "state"]).stdout
        return {
            "ike": ike, "child": child,
            "ours": {"in": ours.group(1), "out": ours.group(2), "line": ours.group(0)},
            "our_role": role.group(1),
            "main_mode": "Main Mode IKE_SA" in charon.read_log(),
            "xfrm": [asdict(state) for state in parse_xfrm_states(xfrm_text)],
            "xfrm_text": xfrm_text,
        }

    def close(self) -> dict[str, str]:
        """Stop both, remove the namespaces; return the logs (for failure messages)."""
        logs = {}
        if self.daemon is not None:
            self.daemon.stop()
            logs["our_log"] = self.daemon.log()
        if self.charon is not None:
            self.charon.stop()
            logs["charon_log"] = self.charon.read_log()
        self.topology.close()
        return logs


def charon_initiates(scenario: Scenario) -> None:
    """We respond (-S: passive); charon initiates Main Mode and Quick Mode."""
    scenario.start_ours(passive=True)
    initiate(scenario.start_charon(), scenario.conn)


def we_initiate(scenario: Scenario) -> None:
    """charon waits; our [Phase 2] Connections brings the tunnel up."""
    scenario.start_charon()
    scenario.start_ours(passive=False)


SCENARIOS: dict[str, Callable[[Scenario], None]] = {
    "charon_initiates": charon_initiates,
    "we_initiate": we_initiate,
}


def guest_main() -> int:
    """Run every scenario in the guest; write :data:`REPORT` into the host directory."""
    report: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="iop-"))  # the guest's tmpfs: unix sockets work
    for name, setup in SCENARIOS.items():
        started = time.monotonic()
        entry: dict[str, Any] = {"error": None}
        scenario = None
        try:
            scenario = Scenario(name, tmp)
            setup(scenario)
            entry.update(scenario.record())
        except Exception:  # noqa: BLE001 - recorded for the host-side test to report
            entry["error"] = traceback.format_exc()
        finally:
            if scenario is not None:
                entry.update(scenario.close())
        entry["seconds"] = round(time.monotonic() - started, 1)
        report[name] = entry
        print(f"{name}: {'ok' if entry['error'] is None else 'FAILED'} "
              f"in {entry['seconds']}s", flush=True)
    (result_dir() / REPORT).write_text(json.dumps(report, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


# -- host side: boot once, check each scenario's record -----------------------------------

_boot: tuple[UmlResult, dict[str, Any] | None] | None = None


def guest_report() -> tuple[UmlResult, dict[str, Any] | None]:
    """Boot UML once per test process and run all scenarios; cached."""
    global _boot
    if _boot is None:
        workdir = Path(tempfile.mkdtemp(prefix="uml-interop-", dir=os.getcwd()))
        result = run_in_uml([sys.executable, "-m", "tests.test_interop_uml", "--guest"],
                            workdir=workdir, timeout=BOOT_TIMEOUT)
        path = workdir / REPORT
        report = json.loads(path.read_text()) if result.ok and path.exists() else None
        _boot = (result, report)
    return _boot


class CharonKernelNetlinkInUmlTests(SynchronousTestCase):
    """charon with kernel-netlink and real ESP vs our daemon, in one UML boot."""

    def setUp(self) -> None:
        reason = need_uml("unshare") or need_charon("netlink")
        if reason:
            raise SkipTest(f"interop with charon in User-mode Linux: {reason}")
        if not os.access(ISAKMPD, os.X_OK):
            raise SkipTest(f"interop with charon in User-mode Linux: {ISAKMPD} not found "
                           "(pip install -e .)")

    def scenario(self, name: str) -> dict[str, Any]:
        """The guest's record of scenario *name*; fails with the logs if it failed."""
        result, report = guest_report()
        if report is None:
            self.fail(result.describe())
        entry = report[name]
        if entry["error"] is not None:
            self.fail(f"{entry['error']}\n--- isakmpd log ---\n{entry.get('our_log')}\n"
                      f"--- charon log ---\n{entry.get('charon_log')}")
        return entry

    def assert_real_esp(self, entry: dict[str, Any], *, charon_initiated: bool) -> None:
        """Both SAs up on port 500, SPIs as we logged them, both in charon's kernel."""
        logs = f"--- isakmpd log ---\n{entry['our_log']}\n--- charon log ---\n" \
               f"{entry['charon_log']}"
        ike, child, ours = entry["ike"], entry["child"], entry["ours"]
        self.assertEqual(ike.get("state"), "ESTABLISHED", logs)
        self.assertEqual(ike.get("version"), "1")
        self.assertEqual(ike.get("initiator") == "yes", charon_initiated)
        self.assertTrue(entry["main_mode"], logs)
        # kernel-netlink does not force NAT-T: no float, IKE stays on port 500.
        self.assertEqual((ike.get("local-host"), ike.get("local-port")), (CHARON_IP, "500"))
        self.assertEqual((ike.get("remote-host"), ike.get("remote-port")), (OURS, "500"))
        self.assertNotEqual(ike.get("nat-any"), "yes")
        self.assertEqual(f"{ike.get('encr-alg')}-{ike.get('encr-keysize')}-"
                         f"{ike.get('integ-alg')}-{ike.get('dh-group')}", P1_128)
        self.assertEqual(child.get("state"), "INSTALLED", logs)
        self.assertEqual(child.get("protocol"), "ESP")
        self.assertEqual(child.get("mode"), "TUNNEL")
        self.assertNotEqual(child.get("encap"), "yes")
        self.assertEqual(child.get("local-ts"), [CHARON_NET])
        self.assertEqual(child.get("remote-ts"), [OUR_NET])
        self.assertEqual(f"{child.get('encr-alg')}-{child.get('encr-keysize')}-"
                         f"{child.get('integ-alg')}", ESP_128)
        self.assertEqual((ours["in"], ours["out"]), (child.get("spi-out"), child.get("spi-in")),
                         logs)
        self.assertEqual(entry["our_role"], "responder" if charon_initiated else "initiator")
        # charon's kernel holds the pair: inbound (to charon) with charon's SPI,
        # outbound with ours; plain ESP in tunnel mode.
        states = {(s["src"], s["dst"], s["proto"], s["spi"], s["mode"], s["encap"])
                  for s in entry["xfrm"]}
        self.assertEqual(states, {
            (OURS, CHARON_IP, "esp", child.get("spi-in"), "tunnel", None),
            (CHARON_IP, OURS, "esp", child.get("spi-out"), "tunnel", None),
        }, entry["xfrm_text"])

    def test_charon_initiates_main_mode(self) -> None:
        """charon initiates Main Mode + Quick Mode (ESP AES-128/SHA1) to us; real ESP SAs."""
        self.assert_real_esp(self.scenario("charon_initiates"), charon_initiated=True)

    def test_we_initiate_main_mode(self) -> None:
        """We initiate Main Mode + Quick Mode to charon; real ESP SAs in charon's kernel."""
        self.assert_real_esp(self.scenario("we_initiate"), charon_initiated=False)


class UmlHarnessTests(SynchronousTestCase):
    """tests.support.uml itself: status, output, modules, real ESP, the host's timeout."""

    def setUp(self) -> None:
        reason = need_uml()
        if reason:
            raise SkipTest(f"User-mode Linux: {reason}")
        # Under /tmp on purpose: the guest mounts a fresh tmpfs there, so this
        # checks that the results directory is carried over it.
        self.workdir = Path(tempfile.mkdtemp(prefix="uml-harness-"))
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def test_guest_runs_with_real_esp(self) -> None:
        """The guest's status and output come back; modules are in; ESP states can be added."""
        key16, key20 = "0x" + "11" * 16, "0x" + "22" * 20
        script = f"""
            grep -cE '^(esp4|esp6|xfrm_user|veth|iptable_nat) ' /proc/modules
            ip link add v0 type veth peer name v1 && echo veth-ok
            ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel \
                enc 'cbc(aes)' {key16} auth-trunc 'hmac(sha1)' {key20} 96 && echo esp-ok
            ip -s xfrm state
            findmnt -n -o FSTYPE /tmp
            echo result > "${RESULT_DIR_ENV}/extra"
            exit 3
        """
        result = run_in_uml(["sh", "-c", script], workdir=self.workdir, timeout=30)
        self.assertEqual(result.status, 3, result.describe())
        self.assertFalse(result.timed_out)
        lines = result.output.splitlines()
        self.assertEqual(lines[:3], ["5", "veth-ok", "esp-ok"], result.describe())
        self.assertEqual(lines[-1], "tmpfs", result.describe())
        [state] = parse_xfrm_states(result.output)
        self.assertEqual((state.src, state.dst, state.proto, state.spi, state.mode,
                          state.encap, state.packets),
                         ("192.0.2.1", "192.0.2.2", "esp", "00001000", "tunnel", None, 0))
        self.assertEqual((self.workdir / "extra").read_text(), "result\n")
        self.assertLess(result.elapsed, 20.0)

    def test_timeout_kills_the_guest(self) -> None:
        """A guest still running at the host's deadline is killed with its process group."""
        result = run_in_uml(["sleep", "60"], workdir=self.workdir, timeout=3)
        self.assertTrue(result.timed_out, result.describe())
        self.assertIsNone(result.status)
        self.assertRaises(ProcessLookupError, os.killpg, result.pid, 0)


class XfrmStateParserTests(SynchronousTestCase):
    """tests.support.uml.parse_xfrm_states on ``ip -s xfrm state`` output."""

    SAMPLE = """src 192.0.2.2 dst 192.0.2.1
\tproto esp spi 0x0eea8959(250251609) reqid 1(0x00000001) mode tunnel
\treplay-window 0 seq 0x00000000 flag af-unspec (0x00100000)
\tenc cbc(aes) 0x480e355132d03b6b1c4de07cbbb36e7c (128 bits)
\tencap type espinudp sport 4500 dport 4501 addr 0.0.0.0
\tlifetime current:
\t  1234(bytes), 7(packets)
src 192.0.2.1 dst 192.0.2.2
\tproto esp spi 0xc99c9f1f(3382484767) reqid 1(0x00000001) mode transport
\tlifetime current:
\t  0(bytes), 0(packets)
"""

    def test_parse(self) -> None:
        first, second = parse_xfrm_states(self.SAMPLE)
        self.assertEqual((first.src, first.dst, first.proto, first.spi, first.mode,
                          first.encap, first.packets),
                         ("192.0.2.2", "192.0.2.1", "esp", "0eea8959", "tunnel",
                          "espinudp 4500 4501", 7))
        self.assertEqual((second.spi, second.mode, second.encap, second.packets),
                         ("c99c9f1f", "transport", None, 0))
        self.assertTrue(first.text.startswith("src 192.0.2.2"))

    def test_empty(self) -> None:
        self.assertEqual(parse_xfrm_states(""), [])


if __name__ == "__main__":
    if sys.argv[1:] != ["--guest"]:
        sys.exit("usage: python -m tests.test_interop_uml --guest (inside User-mode Linux)")
    sys.exit(guest_main())
