"""The daemon on the XFRM kernel (without ``-n``): kernel events and the real kernel.

Two parts:

* the kernel events' handling, on engines joined by the in-memory network
  (:mod:`tests.support.ikepair`) and on :meth:`IsakmpdService.kernel_event`: a hard
  EXPIRE of an SA we installed removes our record without DELETE, one of an SPI we
  only reserved is ignored, a soft EXPIRE brings the engine's own soft expiry
  forward (or is only noted when that already happened), an ACQUIRE goes to the
  engine's on-demand negotiation (tested in :mod:`tests.test_ike_ondemand`);
* the console script under ``ip netns exec`` without ``-n`` in a namespace joined
  by veth to another where a second daemon runs with ``-n`` (root needed; skipped
  otherwise). This machine's kernel has XFRM but no ESP: Main Mode completes,
  Quick Mode gets its SPIs from the kernel and fails at the ESP install with the
  kernel's reason in words, the peer is sent DELETE and drops its SAs, nothing of
  ours is left in the kernel, and the daemon keeps answering (FIFO ``S``); at
  SIGTERM it exits leaving no state or policy behind. And the on-demand path: IPsec
  policies installed with ``ip xfrm policy`` (no connection configured), a ping from
  our subnet address, the kernel's ACQUIRE makes our daemon negotiate phase 1 and
  Quick Mode with the peer's passive connection; the ESP install fails the same way,
  and the administrator's policies are left exactly as they were.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from isakmpd.ike.sa import SaState
from isakmpd.kernel.interface import KernelError
from isakmpd.kernel.xfrm import AcquireEvent, ExpireEvent
from isakmpd.service import DaemonSettings, IsakmpdService, StartupError
from isakmpd.wire.constants import EncapsulationMode, ProtocolId
from tests.support.ikepair import collect, make_config, make_pair, ready_ipsec
from tests.support.netns import Namespace, Topology, need_root_and_tools
from tests.test_interop_strongswan import OurDaemon

ESP = ProtocolId.IPSEC_ESP


def established(network: Any, west: Any) -> Any:
    """West and east with one IPsec SA of "conn"; west's record of it."""
    collect(west.engine.initiate_connection("conn"))
    network.run()
    [ipsec] = ready_ipsec(west)
    return ipsec


class KernelExpireTests(SynchronousTestCase):
    """Engine.kernel_sa_expired: what the kernel's EXPIRE does to our records."""

    def setUp(self) -> None:
        self.network, self.west, self.east = make_pair()
        self.ipsec = established(self.network, self.west)
        self.inbound = next(k for k in self.ipsec.kernel_sas
                            if k.spi == self.ipsec.our_spi(ESP))

    def test_hard_expiry_removes_our_record_without_delete(self) -> None:
        before = len(self.east.received)
        # The kernel has deleted the SA before it tells us; the memory kernel has not.
        self.west.kernel.delete_sa(ESP, self.inbound.spi, self.inbound.dst)
        self.west.engine.kernel_sa_expired(ESP, self.inbound.spi, self.inbound.dst, hard=True)
        self.network.run()
        self.assertEqual(self.west.engine.sadb.ipsec_sas(), [])
        self.assertIs(self.ipsec.state, SaState.DEAD)
        # The other direction and the flows went with it, quietly.
        self.assertEqual(self.west.kernel.sas, {})
        self.assertEqual(self.west.kernel.flows, [])
        self.assertNotIn("removing SA of conn", self.west.log_text())
        self.assertIn("kernel hard expiry of SPI", self.west.log_text())
        self.assertEqual(len(self.east.received), before)      # no DELETE, nothing
        self.assertEqual(len(ready_ipsec(self.east)), 1)

    def test_expiry_of_a_reserved_spi_is_ignored(self) -> None:
        spi = self.west.kernel.allocate_spi(ESP, self.east.ip, self.west.ip)
        self.west.engine.kernel_sa_expired(ESP, spi, self.west.ip, hard=True)
        self.west.engine.kernel_sa_expired(None, bytes(4), self.west.ip, hard=True)
        self.assertEqual(ready_ipsec(self.west), [self.ipsec])
        self.assertEqual(len(self.west.kernel.sas), 2)
        self.assertNotIn("kernel hard expiry", self.west.log_text())

    def test_soft_expiry_renegotiates_a_kept_up_connection(self) -> None:
        self.assertIn("soft", self.ipsec.timers)
        self.west.engine.kernel_sa_expired(ESP, self.inbound.spi, self.inbound.dst,
                                           hard=False)
        self.network.run()
        self.assertIn("kernel soft expiry of SPI", self.west.log_text())
        self.assertIn("soft expiry of", self.west.log_text())
        sas = ready_ipsec(self.west)
        self.assertEqual(len(sas), 2)
        self.assertTrue(self.ipsec.replaced)
        # The engine's own soft timer is gone, its hard one armed.
        self.assertNotIn("soft", self.ipsec.timers)
        self.assertIn("hard", self.ipsec.timers)

    def test_soft_expiry_after_the_engines_own_is_only_noted(self) -> None:
        self.ipsec.timers["soft"].cancel()
        self.west.engine._soft_expired(self.ipsec)
        self.network.run()
        count = len(ready_ipsec(self.west))
        self.west.engine.kernel_sa_expired(ESP, self.inbound.spi, self.inbound.dst,
                                           hard=False)
        self.network.run()
        self.assertEqual(len(ready_ipsec(self.west)), count)
        self.assertNotIn("kernel soft expiry of SPI", self.west.log_text())



class RecordingEngine:
    running = True

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def kernel_sa_expired(self, protocol: Any, spi: bytes, dst: str, *, hard: bool,
                          bytes_used: int | None = None) -> None:
        self.calls.append(("expire", protocol, spi, dst, hard, bytes_used))

    def kernel_acquire(self, event: Any) -> None:
        self.calls.append(("acquire", event))


class ServiceKernelEventTests(SynchronousTestCase):
    """IsakmpdService.kernel_event hands the reader's events to the engine."""

    def setUp(self) -> None:
        self.service = IsakmpdService(DaemonSettings(no_kernel=True), Clock())
        self.engine = RecordingEngine()
        self.service.engine = self.engine  # type: ignore[assignment]

    def test_expire(self) -> None:
        spi = bytes.fromhex("c0ffee01")
        self.service.kernel_event(ExpireEvent(ESP, spi, "192.0.2.2", "192.0.2.1", 3, True))
        self.service.kernel_event(ExpireEvent(ESP, spi, "192.0.2.2", "192.0.2.1", 3, False,
                                              bytes_used=512))
        self.assertEqual(self.engine.calls, [("expire", ESP, spi, "192.0.2.1", True, None),
                                             ("expire", ESP, spi, "192.0.2.1", False, 512)])

    def test_acquire_goes_to_the_engine(self) -> None:
        event = AcquireEvent(
            "198.51.100.1", "203.0.113.9", 17, 5000, 4242, "198.51.100.0/24",
            "203.0.113.0/24", 8, "out", "192.0.2.1", "192.0.2.2", ESP,
            EncapsulationMode.TUNNEL, 7, 1)
        self.service.kernel_event(event)
        self.assertEqual(self.engine.calls, [("acquire", event)])

    def test_no_netlink_is_a_startup_error_in_words(self) -> None:
        from isakmpd.kernel import xfrm

        closed: list[bool] = []

        class Kernel:
            def close(self) -> None:
                closed.append(True)

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise KernelError("cannot listen to the kernel's ACQUIRE and EXPIRE events: "
                              "operation not permitted")

        self.patch(xfrm, "XfrmKernel", Kernel)
        self.patch(xfrm, "XfrmEventReader", refuse)
        service = IsakmpdService(DaemonSettings(no_kernel=False), Clock())
        error = self.assertRaises(StartupError, service.make_kernel)
        self.assertIn("opening NETLINK_XFRM needs CAP_NET_ADMIN", str(error))
        self.assertIn("-n", str(error))
        self.assertEqual(closed, [True])

    def test_nothing_after_stop(self) -> None:
        self.engine.running = False
        self.service.kernel_event(ExpireEvent(ESP, bytes(4), "192.0.2.2", "192.0.2.1", 0, True))
        self.assertEqual(self.engine.calls, [])


# -- the console script on this machine's kernel -------------------------------------------

US, PEER = "192.0.2.1", "192.0.2.2"
US_NET, PEER_NET = "198.51.100.0/24", "203.0.113.0/24"
DEADLINE = 20.0


class XfrmDaemonTests(SynchronousTestCase):
    """Our daemon without -n in namespace "us", a -n daemon in "peer", joined by veth."""

    def setUp(self) -> None:
        reason = need_root_and_tools()
        if reason is not None:
            raise SkipTest(f"the daemon on the XFRM kernel: {reason}")
        self.tmp = Path(tempfile.mkdtemp(prefix="isakmpd-xfrm-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.topology = Topology("xd")
        self.addCleanup(self.topology.close)
        self.us = self.topology.add_namespace("us")
        self.peer = self.topology.add_namespace("peer")
        self.topology.link(self.us, [f"{US}/24"], self.peer, [f"{PEER}/24"])

    def start(self, ns: Namespace, name: str, config: str, *, kernel: bool,
              passive: bool = False, flags: tuple[str, ...] = ()) -> OurDaemon:
        daemon = OurDaemon(ns, self.tmp / name, config, passive=passive, kernel=kernel,
                           flags=flags)
        self.addCleanup(daemon.stop)
        return daemon

    def policies(self) -> list[str]:
        """The non-socket policies in "us", each block as ``ip xfrm policy`` prints it."""
        return self.kernel_state()[1]

    def kernel_state(self) -> tuple[str, list[str]]:
        """``ip xfrm state`` and the non-socket policies in "us"."""
        states = self.us.ip("xfrm", "state").stdout.strip()
        blocks: list[str] = []
        for line in self.us.ip("xfrm", "policy").stdout.splitlines():
            if line.startswith("src"):
                blocks.append(line)
            elif blocks:
                blocks[-1] += "\n" + line
        return states, [block for block in blocks
                        if not re.search(r"\ssocket (in|out)\b", block)]

    def test_esp_refused_cleanly_and_the_daemon_keeps_running(self) -> None:
        ours = make_config(local=US, peer=PEER, local_net=US_NET, remote_net=PEER_NET)
        theirs = make_config(local=PEER, peer=US, local_net=PEER_NET, remote_net=US_NET)
        # The peer is passive (-S): only ours initiates ("conn" is kept up).
        peer = self.start(self.peer, "peer", theirs, kernel=False, passive=True)
        peer.wait_for(r"listening on", DEADLINE)
        us = self.start(self.us, "us", ours, kernel=True, flags=("-D", "A=50"))
        us.wait_for(r"listening on", DEADLINE)
        # The IKE sockets carry their bypass policies.
        self.assertIn("socket in", self.us.ip("xfrm", "policy").stdout)
        # Main Mode completes, Quick Mode allocates SPIs, the ESP install fails in words.
        us.wait_for(r"ISAKMP SA established|phase 1 .*established|Main Mode.*done", DEADLINE)
        us.wait_for(r"allocated ESP SPI 0x[0-9a-f]{8}", DEADLINE)
        us.wait_for(r"installing the SAs failed: kernel refused the ESP SA: this kernel "
                    r"has no ESP support \(CONFIG_INET_ESP\)", DEADLINE)
        us.wait_for(r"the peer was sent DELETE", DEADLINE)
        # The peer had installed its SAs (after QM3) and drops them on our DELETE.
        peer.wait_for(r"IPsec SA established", DEADLINE)
        peer.wait_for(r"IPsec SA deleted", DEADLINE)
        # Nothing of ours in the kernel: no larval state, no policy but the sockets'.
        deadline = time.monotonic() + DEADLINE
        while self.kernel_state() != ("", []) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.kernel_state(), ("", []))
        # Still running: FIFO S writes the result file.
        us.command("S")
        deadline = time.monotonic() + DEADLINE
        while not (us.result_path.exists() and us.result_path.read_text()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        result = us.result_path.read_text()
        self.assertIn("SA name: peer (Phase 1/Initiator)", result)
        self.assertNotIn("Phase 2", result)
        self.assertIsNone(us.proc.poll())
        # SIGTERM: a clean exit, nothing left (the sockets' policies went with them).
        self.assertEqual(us.stop(), 0, us.log())
        self.assertEqual(self.us.ip("xfrm", "state").stdout.strip(), "")
        self.assertEqual(self.us.ip("xfrm", "policy").stdout.strip(), "")

    def test_acquire_negotiates_on_demand(self) -> None:
        """Policies from ``ip xfrm policy``, traffic first, no connection configured."""
        ours = make_config(local=US, peer=PEER, local_net=US_NET, remote_net=PEER_NET)
        ours = ours.replace("[Phase 2]\nConnections=\t\tconn\n", "").replace(
            "[General]\n", "[General]\nDefault-phase-2-suites=\t"
            "QM-ESP-AES-128-SHA-PFS-GRP19-SUITE\n")
        self.assertNotIn("Connections", ours)
        theirs = make_config(local=PEER, peer=US, local_net=PEER_NET, remote_net=US_NET)
        # What ipsecctl's flow lines are on OpenBSD: the administrator's policies.
        self.us.ip("addr", "add", "198.51.100.1/32", "dev", "lo")
        self.us.ip("route", "add", PEER_NET, "dev", "veth0", "src", "198.51.100.1")
        for direction, src, dst, outer in (("out", US_NET, PEER_NET, (US, PEER)),
                                           ("in", PEER_NET, US_NET, (PEER, US)),
                                           ("fwd", PEER_NET, US_NET, (PEER, US))):
            self.us.ip("xfrm", "policy", "add", "src", src, "dst", dst, "dir", direction,
                       "tmpl", "src", outer[0], "dst", outer[1], "proto", "esp", "mode",
                       "tunnel")
        policies = self.policies()
        self.assertEqual(len(policies), 3)
        peer = self.start(self.peer, "peer", theirs, kernel=False, passive=True,
                          flags=("-v",))
        peer.wait_for(r"listening on", DEADLINE)
        us = self.start(self.us, "us", ours, kernel=True, flags=("-v",))
        us.wait_for(r"listening on", DEADLINE)
        self.assertNotIn("ISAKMP SA established", us.log())     # nothing to keep up
        # Traffic first: the ping matches the out policy, which has no SA.
        self.us.run(["ping", "-c", "1", "-W", "1", "-I", "198.51.100.1", "203.0.113.9"],
                    check=False)
        match = us.wait_for(r"kernel ACQUIRE \(seq (\d+)\) for 198\.51\.100\.0/24 -> "
                            r"203\.0\.113\.0/24 via 192\.0\.2\.2: negotiating "
                            r"(Connection-\d+) with peer \(TUNNEL, reqid 0\)", DEADLINE)
        name = match.group(2)
        self.assertEqual(name, f"Connection-{match.group(1)}")
        us.wait_for(r"isakmpd: phase 1 done: initiator id", DEADLINE)
        peer.wait_for(r"isakmpd: phase 1 done \(as responder\)", DEADLINE)
        # The peer's passive "conn" took our IDs; it logs quick mode done.
        peer.wait_for(r"IPsec SA established: IPsec SA conn ", DEADLINE)
        peer.wait_for(r"isakmpd: quick mode done \(as responder\)", DEADLINE)
        # Ours: this kernel has no ESP, so the install fails in words, the peer is sent
        # DELETE and drops its SAs, and the dynamic connection goes.
        us.wait_for(rf"Quick Mode initiator for {name} .*installing the SAs failed: kernel "
                    r"refused the ESP SA: this kernel has no ESP support", DEADLINE)
        us.wait_for(r"the peer was sent DELETE", DEADLINE)
        peer.wait_for(r"IPsec SA deleted", DEADLINE)
        us.wait_for(rf"on-demand connection {name} dropped", DEADLINE)
        # The administrator's policies are untouched (no flows of ours were added).
        self.assertEqual(self.policies(), policies)
        self.assertIsNone(us.proc.poll())
        self.assertEqual(us.stop(), 0, us.log())
        self.assertEqual(self.policies(), policies)
        self.assertNotIn("Traceback", us.log())
