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

Each scenario is a :class:`Case` in :data:`SCENARIOS` (who initiates, the
algorithm set shared with tests/test_interop_strongswan.py, Main or Aggressive
Mode, tunnel or transport mode, whether our daemon then deletes); the guest
configures both sides from it and the host-side test checks the record against
the same case.  A scenario passes when charon shows the IKE SA ESTABLISHED on
plain port 500 (kernel-netlink does not force NAT-T, so nobody floats to 4500)
with the case's algorithms and exchange, and the CHILD_SA INSTALLED, ESP in the
case's mode without UDP encapsulation, with the SPIs our daemon logged crosswise,
and charon's kernel holds exactly those two ESP states in that mode.  In the
DELETE scenario our daemon is then stopped (SIGTERM, it sends DELETEs) and charon's
SAs and kernel ESP states must be gone within the negotiation deadline.  Our side
installs nothing (``-n``); traffic through the tunnel is not checked here.

One scenario puts our daemon behind a NAT: a third namespace "gw" between the two
masquerades (iptables-legacy) what we send, with UDP source ports mapped into
:data:`NAT_PORTS`; we are 198.51.100.1 inside, charon sees 192.0.2.254 and a port
of that range.  It passes when NAT-D made both float to 4500 (charon: remote host
the NAT's address with a translated port, ``nat-remote``), the CHILD_SA is
INSTALLED with UDP encapsulation and our SPIs crosswise, and charon's kernel holds
the two ESP states as ESP-in-UDP (``encap type espinudp``) between its port 4500
and the NAT's translated port.

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
from dataclasses import asdict, dataclass
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
    masquerade,
    need_uml,
    parse_xfrm_states,
    result_dir,
    run_in_uml,
    xfrm_states,
)
from tests.test_interop_strongswan import (
    _DELETED,
    _ESTABLISHED,
    AES128_SHA1,
    AES256_SHA256_PFS,
    ISAKMPD,
    TDES_SHA1_MODP1024,
    Algorithms,
    OurDaemon,
    initiate,
    swanctl_algorithms,
)

OURS = "192.0.2.1"
CHARON_IP = "192.0.2.2"
OUR_NET = "203.0.113.0/25"
CHARON_NET = "203.0.113.128/25"
#: An address of charon's own subnet (the source of its route to ours).
CHARON_GATEWAY_ADDRESS = "203.0.113.129/32"
#: The NAT scenario: our address inside, the NAT's inside and outside addresses, and
#: the range it maps UDP source ports into (so charon sees other ports than ours).
NAT_INSIDE_US = "198.51.100.1"
NAT_INSIDE_GW = "198.51.100.254"
NAT_OUTSIDE = "192.0.2.254"
NAT_PORTS = "40000-40999"
PSK = "interop secret shared with charon in UML"
REPORT = "scenarios.json"

#: Deadline for one negotiation (both phases) in the guest, in seconds.
NEGOTIATION_TIMEOUT = 15.0
#: Deadline for the whole boot, in seconds (a boot takes about 3 s, each of the
#: scenarios about 4 s; the guest prints every scenario's seconds).
BOOT_TIMEOUT = 120.0


# -- the scenarios: what each side is configured with, and what the host then expects -------


@dataclass(frozen=True)
class Case:
    """One scenario of the boot.

    *charon_initiates*: charon initiates (``swanctl --initiate``) and our daemon is
    passive (``-S``); otherwise charon waits and our [Phase 2] Connections brings
    the tunnel up. *algorithms* are both sides' suites and what swanctl reports
    for them; *aggressive* uses Aggressive Mode; *transport* a transport-mode
    CHILD_SA between the two hosts (charon ``mode = transport`` with ``dynamic``
    traffic selectors, our ``QM-ESP-TRP-...`` suite with IPV4_ADDR host IDs).
    *delete_by_us*: after the record, our daemon is stopped with SIGTERM (it
    sends DELETEs) and the guest records whether charon's SAs and its kernel's ESP
    states went away. *behind_nat*: our daemon (:data:`NAT_INSIDE_US`) reaches
    charon through the masquerading namespace "gw" (tunnel mode; we initiate, a
    passive daemon behind a NAT cannot be reached).
    """

    charon_initiates: bool
    algorithms: Algorithms = AES128_SHA1
    aggressive: bool = False
    transport: bool = False
    delete_by_us: bool = False
    behind_nat: bool = False

    @property
    def our_address(self) -> str:
        """Our daemon's own address."""
        return NAT_INSIDE_US if self.behind_nat else OURS

    @property
    def charon_sees_us(self) -> str:
        """The address charon talks to: ours, or the NAT's outside one."""
        return NAT_OUTSIDE if self.behind_nat else OURS

    @property
    def our_suite(self) -> str:
        """Our Quick Mode suite: the transport-mode twin (``QM-ESP-TRP-``) if needed."""
        suite = self.algorithms.suite
        return suite.replace("QM-ESP-", "QM-ESP-TRP-", 1) if self.transport else suite

    @property
    def charon_ts(self) -> tuple[str, str]:
        """charon's (local, remote) traffic selector as swanctl will report them."""
        if self.transport:
            return f"{CHARON_IP}/32", f"{OURS}/32"
        return CHARON_NET, OUR_NET

    def charon_connection(self) -> IKEv1Connection:
        """charon's side of the scenario, lifetimes within our accepted ranges."""
        options: dict[str, Any] = dict(self.algorithms.charon_options(),
                                       aggressive=self.aggressive)
        if self.transport:
            options.update(mode="transport", local_ts="dynamic", remote_ts="dynamic")
        else:
            options.update(local_ts=CHARON_NET, remote_ts=OUR_NET)
        if self.behind_nat:
            # We identify ourselves by our own address, not the one charon sees.
            options["remote_id"] = self.our_address
        return IKEv1Connection(CHARON_IP, self.charon_sees_us, psk=PSK, rekey_time="3600s",
                               child_rekey_time="1200s", **options)

    def our_config(self) -> str:
        """Our isakmpd.conf for the scenario (:func:`make_config`)."""
        options: dict[str, Any] = {"transforms": self.algorithms.transform,
                                   "suites": self.our_suite}
        if self.aggressive:
            options["mode"] = "AGGRESSIVE"
        if self.transport:
            options.update(local_net=f"{OURS}/32", remote_net=f"{CHARON_IP}/32",
                           id_type="IPV4_ADDR")
        else:
            options.update(local_net=OUR_NET, remote_net=CHARON_NET)
        return make_config(local=self.our_address, peer=CHARON_IP, psk=PSK, **options)


SCENARIOS: dict[str, Case] = {
    "charon_initiates": Case(charon_initiates=True),
    "we_initiate": Case(charon_initiates=False, delete_by_us=True),
    "charon_initiates_transport": Case(charon_initiates=True, transport=True),
    "we_initiate_transport": Case(charon_initiates=False, transport=True),
    "charon_initiates_aggressive_pfs": Case(charon_initiates=True, aggressive=True,
                                            algorithms=AES256_SHA256_PFS),
    "we_initiate_3des_modp1024": Case(charon_initiates=False,
                                      algorithms=TDES_SHA1_MODP1024),
    "we_initiate_behind_nat": Case(charon_initiates=False, behind_nat=True),
}


# -- guest side: run the scenarios, record what was seen --------------------------------


class Scenario:
    """One pair of fresh namespaces with charon (kernel-netlink) and our daemon."""

    def __init__(self, name: str, case: Case, tmp: Path) -> None:
        self.name = name
        self.case = case
        self.tmp = tmp / name
        self.tmp.mkdir()
        self.topology = Topology("uml")
        try:
            if case.behind_nat:
                self.ch = self.topology.add_namespace("ch")
                gw = self.topology.add_namespace("gw")
                self.us = self.topology.add_namespace("us")
                outside, _ = self.topology.link(gw, f"{NAT_OUTSIDE}/24", self.ch,
                                                f"{CHARON_IP}/24")
                self.topology.link(self.us, f"{NAT_INSIDE_US}/24", gw, f"{NAT_INSIDE_GW}/24")
                self.us.add_default_route(NAT_INSIDE_GW)
                masquerade(gw, outside, udp_ports=NAT_PORTS)
            else:
                self.ch, self.us = linked_pair(self.topology, ("ch", f"{CHARON_IP}/24"),
                                               ("us", f"{OURS}/24"))
            self.ch.add_address("lo", CHARON_GATEWAY_ADDRESS)
        except BaseException:
            self.topology.close()
            raise
        self.conn = case.charon_connection()
        self.charon: Charon | None = None
        self.daemon: OurDaemon | None = None

    def start_charon(self) -> Charon:
        self.charon = Charon(self.ch, self.tmp / "charon", [self.conn], kernel="netlink",
                             log_levels={"default": 1, "ike": 2, "cfg": 1, "knl": 2})
        self.charon.start()
        self.charon.load()
        return self.charon

    def start_ours(self, *, passive: bool) -> OurDaemon:
        """Start our daemon; :meth:`wait_listening` waits until it is up."""
        self.daemon = OurDaemon(self.us, self.tmp, self.case.our_config(), passive=passive)
        return self.daemon

    def wait_listening(self) -> None:
        assert self.daemon is not None
        self.daemon.wait_for("isakmpd listening on", timeout=20.0)

    def run(self) -> None:
        """Start both sides; the initiator last (charon via ``swanctl --initiate``)."""
        if self.case.charon_initiates:
            # Our passive daemon starts (Python in the guest: ~2 s) while charon does.
            self.start_ours(passive=True)
            charon = self.start_charon()
            self.wait_listening()
            initiate(charon, self.conn)
        else:
            self.start_charon()
            self.start_ours(passive=False)
            self.wait_listening()

    def record(self) -> dict[str, Any]:
        """Wait for both sides, then collect charon's SAs, our SPIs and the kernel's."""
        assert self.charon is not None and self.daemon is not None
        charon, daemon = self.charon, self.daemon
        ike, child = charon.wait_for_child(self.conn.child_name, timeout=NEGOTIATION_TIMEOUT)
        ours = daemon.wait_for(_ESTABLISHED, describe=charon.read_log)
        role = daemon.wait_for(r"ISAKMP SA established: .* (initiator|responder) ready")
        xfrm_text = self.ch.run(["ip", "-s", "xfrm", "state"]).stdout
        charon_log = charon.read_log()
        exchange = next((mode for mode in ("Main Mode", "Aggressive Mode")
                         if f"{mode} IKE_SA" in charon_log), None)
        return {
            "ike": ike, "child": child,
            "ours": {"in": ours.group(1), "out": ours.group(2), "line": ours.group(0)},
            "our_role": role.group(1),
            "exchange": exchange,
            "xfrm": [asdict(state) for state in parse_xfrm_states(xfrm_text)],
            "xfrm_text": xfrm_text,
        }

    def delete_by_us(self) -> dict[str, Any]:
        """SIGTERM our daemon; poll until charon has no SA and its kernel no ESP state."""
        assert self.charon is not None and self.daemon is not None
        started = time.monotonic()
        self.daemon.stop()
        deadline = started + NEGOTIATION_TIMEOUT
        while True:
            sas = self.charon.sas()
            states = xfrm_states(self.ch)
            if (not sas and not states) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return {
            "our_status": self.daemon.proc.returncode,
            "our_deleted": [m.groups() for m in _DELETED.finditer(self.daemon.log())],
            "charon_sas": sas,
            "xfrm": [asdict(state) for state in states],
            "charon_got_delete": "received DELETE for IKE_SA" in self.charon.read_log(),
            "seconds": round(time.monotonic() - started, 1),
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


def guest_main() -> int:
    """Run every scenario in the guest; write :data:`REPORT` into the host directory."""
    report: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="iop-"))  # the guest's tmpfs: unix sockets work
    for name, case in SCENARIOS.items():
        started = time.monotonic()
        entry: dict[str, Any] = {"error": None}
        scenario = None
        try:
            scenario = Scenario(name, case, tmp)
            scenario.run()
            entry.update(scenario.record())
            if case.delete_by_us:
                entry["after_delete"] = scenario.delete_by_us()
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
        # The guest's daemons import what this process imports (a checkout named by
        # PYTHONPATH rather than the installed one, say).
        env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
        result = run_in_uml([sys.executable, "-m", "tests.test_interop_uml", "--guest"],
                            workdir=workdir, timeout=BOOT_TIMEOUT, env=env)
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

    def assert_real_esp(self, name: str) -> dict[str, Any]:
        """Scenario *name* is up on port 500 as its :class:`Case` says; return its record.

        charon's IKE SA and CHILD_SA use the case's algorithms, exchange and mode, the
        SPIs are the ones we logged (crosswise), and charon's kernel holds exactly
        those two plain (not UDP-encapsulated) ESP states in the case's mode.
        """
        case = SCENARIOS[name]
        entry = self.scenario(name)
        algorithms: Algorithms = case.algorithms
        logs = f"--- isakmpd log ---\n{entry['our_log']}\n--- charon log ---\n" \
               f"{entry['charon_log']}"
        ike, child, ours = entry["ike"], entry["child"], entry["ours"]
        self.assertEqual(ike.get("state"), "ESTABLISHED", logs)
        self.assertEqual(ike.get("version"), "1")
        self.assertEqual(ike.get("initiator") == "yes", case.charon_initiates)
        self.assertEqual(entry["exchange"],
                         "Aggressive Mode" if case.aggressive else "Main Mode", logs)
        # kernel-netlink does not force NAT-T: no float, IKE stays on port 500.
        self.assertEqual((ike.get("local-host"), ike.get("local-port")), (CHARON_IP, "500"))
        self.assertEqual((ike.get("remote-host"), ike.get("remote-port")), (OURS, "500"))
        self.assertNotEqual(ike.get("nat-any"), "yes")
        self.assertEqual(swanctl_algorithms(ike, dh=True), algorithms.ike)
        self.assertEqual(child.get("state"), "INSTALLED", logs)
        self.assertEqual(child.get("protocol"), "ESP")
        mode = "transport" if case.transport else "tunnel"
        self.assertEqual(child.get("mode"), mode.upper())
        self.assertNotEqual(child.get("encap"), "yes")
        local_ts, remote_ts = case.charon_ts
        self.assertEqual(child.get("local-ts"), [local_ts])
        self.assertEqual(child.get("remote-ts"), [remote_ts])
        self.assertEqual(swanctl_algorithms(child, dh=False), algorithms.esp)
        self.assertEqual(child.get("dh-group"), algorithms.pfs)
        self.assertEqual((ours["in"], ours["out"]), (child.get("spi-out"), child.get("spi-in")),
                         logs)
        self.assertIn(f" {mode.upper()} ", ours["line"])
        self.assertIn(f"PFS {algorithms.pfs} " if algorithms.pfs else "no PFS", ours["line"])
        self.assertEqual(entry["our_role"],
                         "responder" if case.charon_initiates else "initiator")
        # charon's kernel holds the pair: inbound (to charon) with charon's SPI,
        # outbound with ours; plain ESP.
        states = {(s["src"], s["dst"], s["proto"], s["spi"], s["mode"], s["encap"])
                  for s in entry["xfrm"]}
        self.assertEqual(states, {
            (OURS, CHARON_IP, "esp", child.get("spi-in"), mode, None),
            (CHARON_IP, OURS, "esp", child.get("spi-out"), mode, None),
        }, entry["xfrm_text"])
        return entry

    def assert_esp_in_udp(self, name: str) -> dict[str, Any]:
        """Scenario *name* (we behind the NAT) is up over 4500 with ESP-in-UDP states.

        charon sees us at the NAT's address with a translated port and says so
        (``nat-remote``); the CHILD_SA is UDP-encapsulated with the SPIs we logged
        (crosswise); charon's kernel holds exactly those two ESP states, each
        ``encap type espinudp`` between charon's 4500 and the NAT's port.
        """
        case = SCENARIOS[name]
        entry = self.scenario(name)
        algorithms: Algorithms = case.algorithms
        logs = f"--- isakmpd log ---\n{entry['our_log']}\n--- charon log ---\n" \
               f"{entry['charon_log']}"
        ike, child, ours = entry["ike"], entry["child"], entry["ours"]
        self.assertEqual(ike.get("state"), "ESTABLISHED", logs)
        self.assertEqual(ike.get("version"), "1")
        self.assertEqual(ike.get("initiator") == "yes", case.charon_initiates)
        self.assertEqual(entry["exchange"], "Main Mode", logs)
        self.assertEqual((ike.get("local-host"), ike.get("local-port")), (CHARON_IP, "4500"))
        self.assertEqual(ike.get("remote-host"), NAT_OUTSIDE, logs)
        low, high = (int(port) for port in NAT_PORTS.split("-"))
        nat_port = ike.get("remote-port", "")
        self.assertTrue(nat_port.isdigit() and low <= int(nat_port) <= high, ike)
        self.assertEqual(ike.get("nat-remote"), "yes", ike)
        self.assertNotEqual(ike.get("nat-local"), "yes", ike)
        self.assertEqual(swanctl_algorithms(ike, dh=True), algorithms.ike)
        self.assertEqual(child.get("state"), "INSTALLED", logs)
        self.assertEqual(child.get("protocol"), "ESP")
        self.assertEqual(child.get("mode"), "TUNNEL")
        self.assertEqual(child.get("encap"), "yes", child)
        self.assertEqual(child.get("local-ts"), [CHARON_NET])
        self.assertEqual(child.get("remote-ts"), [OUR_NET])
        self.assertEqual(swanctl_algorithms(child, dh=False), algorithms.esp)
        self.assertEqual((ours["in"], ours["out"]), (child.get("spi-out"), child.get("spi-in")),
                         logs)
        self.assertEqual(entry["our_role"], "initiator")
        self.assertIn("NAT detected, we are behind NAT", entry["our_log"])
        self.assertRegex(entry["our_log"], rf"ISAKMP SA established: .* {NAT_INSIDE_US}:4500 "
                                           rf"<-> {CHARON_IP}:4500 initiator ready")
        states = {(s["src"], s["dst"], s["proto"], s["spi"], s["mode"], s["encap"])
                  for s in entry["xfrm"]}
        self.assertEqual(states, {
            (NAT_OUTSIDE, CHARON_IP, "esp", child.get("spi-in"), "tunnel",
             f"espinudp {nat_port} 4500"),
            (CHARON_IP, NAT_OUTSIDE, "esp", child.get("spi-out"), "tunnel",
             f"espinudp 4500 {nat_port}"),
        }, entry["xfrm_text"])
        return entry

    def test_charon_initiates_main_mode(self) -> None:
        """charon initiates Main Mode + Quick Mode (ESP AES-128/SHA1) to us; real ESP SAs."""
        self.assert_real_esp("charon_initiates")

    def test_we_initiate_main_mode(self) -> None:
        """We initiate Main Mode + Quick Mode to charon; real ESP SAs in charon's kernel."""
        self.assert_real_esp("we_initiate")

    def test_charon_initiates_transport_mode(self) -> None:
        """charon initiates a transport-mode CHILD_SA; we answer with QM-ESP-TRP-...-SUITE."""
        self.assert_real_esp("charon_initiates_transport")

    def test_we_initiate_transport_mode(self) -> None:
        """We initiate transport mode with IPV4_ADDR host IDs; transport ESP in the kernel."""
        self.assert_real_esp("we_initiate_transport")

    def test_charon_initiates_aggressive_mode_pfs(self) -> None:
        """charon initiates Aggressive Mode, AES-256/SHA2-256, Quick Mode PFS MODP2048."""
        self.assert_real_esp("charon_initiates_aggressive_pfs")

    def test_we_initiate_3des_modp1024(self) -> None:
        """We initiate 3DES/SHA1/MODP1024, ESP 3DES/SHA1: a second real-kernel ESP set."""
        self.assert_real_esp("we_initiate_3des_modp1024")

    def test_we_initiate_behind_nat(self) -> None:
        """We initiate from behind a masquerading NAT: NAT-T to charon's kernel, whose
        ESP states are ESP-in-UDP to the NAT's translated port."""
        if shutil.which("iptables-legacy") is None:
            raise SkipTest("NAT in User-mode Linux: iptables-legacy not found (iptables)")
        self.assert_esp_in_udp("we_initiate_behind_nat")

    def test_we_delete_on_shutdown(self) -> None:
        """Our daemon stops (SIGTERM): charon drops its SAs and its kernel's ESP states."""
        entry = self.assert_real_esp("we_initiate")
        after = entry["after_delete"]
        logs = f"--- isakmpd log ---\n{entry['our_log']}\n--- charon log ---\n" \
               f"{entry['charon_log']}"
        self.assertEqual(after["our_status"], 0, logs)
        self.assertEqual(after["our_deleted"], [[entry["ours"]["in"], entry["ours"]["out"]]],
                         logs)
        self.assertTrue(after["charon_got_delete"], logs)
        self.assertEqual(after["charon_sas"], {}, logs)
        self.assertEqual(after["xfrm"], [], logs)


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
