"""Interop with strongSwan's charon in IKEv1 mode, over a veth pair between namespaces.

Our daemon (the ``isakmpd`` console script with the in-memory kernel, ``-n``) runs in
namespace "us" at 192.0.2.1 and protects 203.0.113.0/25; charon runs in namespace
"ch" at 192.0.2.2 and protects 203.0.113.128/25, with kernel-libipsec as its IPsec
backend (this kernel has XFRM but no ESP). kernel-libipsec makes charon send a
random NAT-D payload, so both sides float to UDP 4500 after the first Main Mode
round trip: our daemon listens on 500 and 4500.

A scenario passes when charon's ``swanctl --list-sas`` shows the IKE SA ESTABLISHED
and the CHILD_SA INSTALLED, and the ESP SPIs charon reports are the ones our daemon
logged crosswise (our inbound SPI is charon's outbound one and the other way round).

Needs root, ``ip``, ``unshare``, ``mount``, charon, swanctl and the kernel-libipsec
plugin; skipped with the missing piece named otherwise. Every test removes its
namespaces, charon and our daemon, also when it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.charon import Charon, CharonError, IKEv1Connection, need_charon
from tests.support.ikepair import make_config
from tests.support.netns import Namespace, Topology, need_root_and_tools

OURS = "192.0.2.1"
CHARON_IP = "192.0.2.2"
OUR_NET = "203.0.113.0/25"
CHARON_NET = "203.0.113.128/25"
#: An address of charon's own subnet, on its loopback device.
CHARON_GATEWAY_ADDRESS = "203.0.113.129/32"
PSK = "interop secret shared with charon"
ISAKMPD = Path(sys.executable).with_name("isakmpd")

#: What charon reports for the suites of the scenarios.
P1_128 = "AES_CBC-128-HMAC_SHA1_96-MODP_2048"
P1_256 = "AES_CBC-256-HMAC_SHA2_256_128-MODP_2048"
ESP_128 = "AES_CBC-128-HMAC_SHA1_96"
ESP_256 = "AES_CBC-256-HMAC_SHA2_256_128"

#: Deadline for one negotiation (both phases), in seconds.
NEGOTIATION_TIMEOUT = 12.0

#: Our daemon's log lines (IpsecSA.describe(): "[IPSEC_ESP in OURSPI out PEERSPI]").
_SPIS = r".*\[(?:IPSEC_)?ESP in ([0-9a-f]{8}) out ([0-9a-f]{8})\]"
_ESTABLISHED = re.compile(r"IPsec SA established: " + _SPIS)
_DELETED = re.compile(r"IPsec SA deleted: " + _SPIS)


class OurDaemon:
    """Our ``isakmpd`` in namespace *ns*, logging to a file; stopped by :meth:`stop`."""

    def __init__(self, ns: Namespace, workdir: Path, config: str, *, passive: bool) -> None:
        self.config_path = workdir / "isakmpd.conf"
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(config)
        self.log_path = workdir / "isakmpd.log"
        args = [str(ISAKMPD), "-n", "-4", "-c", str(self.config_path), "-p", "500",
                "-N", "4500"]
        if passive:
            args.append("-S")
        with open(self.log_path, "wb") as log:
            self.proc = ns.popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)

    def log(self) -> str:
        """Everything the daemon logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float = NEGOTIATION_TIMEOUT,
                 describe: Callable[[], str] = lambda: "") -> re.Match[str]:
        """Poll the log until *pattern* matches; fail with both logs after *timeout*."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                raise AssertionError(f"isakmpd exited with {self.proc.returncode}:\n"
                                     f"{self.log()}\n{describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"isakmpd did not log {regex.pattern!r} within "
                                     f"{timeout}s:\n{self.log()}\n{describe()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 5 s) our daemon and reap it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class StrongSwanInteropTests(SynchronousTestCase):
    """Our daemon against charon (IKEv1, PSK), each scenario a fresh pair of namespaces."""

    def setUp(self) -> None:
        reason = need_root_and_tools("unshare", "mount") or need_charon()
        if reason:
            raise SkipTest(f"interop with strongSwan: {reason}")
        if not os.access(ISAKMPD, os.X_OK):
            raise SkipTest(f"interop with strongSwan: {ISAKMPD} not found (pip install -e .)")
        self.tmp = Path(tempfile.mkdtemp(prefix="isakmpd-interop-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.topology = Topology("iop")
        self.addCleanup(self.topology.close)
        self.us = self.topology.add_namespace("us")
        self.ch = self.topology.add_namespace("ch")
        self.topology.link(self.us, f"{OURS}/24", self.ch, f"{CHARON_IP}/24")
        # charon (kernel-libipsec) routes the remote subnet via its TUN device with a
        # source address inside its own subnet; without one it refuses the CHILD_SA
        # ("error installing route with policy").
        self.ch.add_address("lo", CHARON_GATEWAY_ADDRESS)

    # -- helpers --------------------------------------------------------------------

    def start_charon(self, conn: IKEv1Connection) -> Charon:
        """Start charon in its namespace with *conn* loaded (stopped at cleanup)."""
        charon = Charon(self.ch, self.tmp / "charon", [conn],
                        log_levels={"default": 1, "ike": 2, "cfg": 1, "knl": 1})
        self.addCleanup(charon.stop)
        charon.start()
        charon.load()
        return charon

    def start_ours(self, *, passive: bool, **config: Any) -> OurDaemon:
        """Start our daemon (*config*: :func:`make_config` options) and wait until it listens."""
        text = make_config(local=OURS, peer=CHARON_IP, local_net=OUR_NET,
                           remote_net=CHARON_NET, psk=PSK, **config)
        daemon = OurDaemon(self.us, self.tmp, text, passive=passive)
        self.addCleanup(daemon.stop)
        daemon.wait_for("isakmpd listening on", timeout=10.0)
        return daemon

    def charon_connection(self, **options: Any) -> IKEv1Connection:
        """charon's side of the tunnel (*options*: further IKEv1Connection fields)."""
        # Lifetimes within our default ranges: with rekey_time 0 charon offers
        # LIFE_DURATION 0, which isakmpd (like OpenBSD's) refuses as outside 60:86400.
        return IKEv1Connection(CHARON_IP, OURS, psk=PSK, local_ts=CHARON_NET,
                               remote_ts=OUR_NET, rekey_time="3600s",
                               child_rekey_time="1200s", **options)

    def assert_same_sas(self, charon: Charon, daemon: OurDaemon, conn: IKEv1Connection, *,
                        charon_initiated: bool, ike_suite: str, esp: str,
                        pfs: str | None = None) -> None:
        """charon's IKE SA and CHILD_SA are up with the SPIs our daemon logged.

        *ike_suite* is charon's ``ENCR-KEYSIZE-INTEG-DH`` for the IKE SA, *esp*
        its ``ENCR-KEYSIZE-INTEG`` for the CHILD_SA, *pfs* the Quick Mode DH group
        charon reports (``None``: no PFS).
        """
        def charon_log() -> str:
            return "--- charon log ---\n" + charon.read_log()

        try:
            ike, child = charon.wait_for_child(conn.child_name, timeout=NEGOTIATION_TIMEOUT)
        except CharonError as error:
            raise AssertionError(f"{error}\n--- isakmpd log ---\n{daemon.log()}\n"
                                 f"{charon_log()}") from None
        self.assertEqual(ike.get("state"), "ESTABLISHED", charon_log())
        self.assertEqual(ike.get("version"), "1")
        self.assertEqual(ike.get("initiator") == "yes", charon_initiated)
        self.assertEqual((ike.get("remote-host"), ike.get("remote-port")), (OURS, "4500"))
        self.assertEqual(f"{ike.get('encr-alg')}-{ike.get('encr-keysize')}-"
                         f"{ike.get('integ-alg')}-{ike.get('dh-group')}", ike_suite)
        self.assertEqual(child.get("state"), "INSTALLED")
        self.assertEqual(child.get("protocol"), "ESP")
        self.assertEqual(child.get("mode"), "TUNNEL")
        self.assertEqual(child.get("encap"), "yes")
        self.assertEqual(child.get("local-ts"), [CHARON_NET])
        self.assertEqual(child.get("remote-ts"), [OUR_NET])
        self.assertEqual(f"{child.get('encr-alg')}-{child.get('encr-keysize')}-"
                         f"{child.get('integ-alg')}", esp)
        self.assertEqual(child.get("dh-group"), pfs)
        ours = daemon.wait_for(_ESTABLISHED, describe=charon_log)
        our_in, our_out = ours.group(1), ours.group(2)
        self.assertEqual((our_in, our_out), (child.get("spi-out"), child.get("spi-in")),
                         f"our SPIs vs charon's:\n{daemon.log()}\n{charon_log()}")
        isakmp = daemon.wait_for(r"ISAKMP SA established: .* (initiator|responder) ready")
        self.assertEqual(isakmp.group(1), "responder" if charon_initiated else "initiator")
        self.assertIn("PFS MODP_2048" if pfs else "no PFS", ours.group(0))
        mode = "Aggressive Mode" if conn.aggressive else "Main Mode"
        self.assertIn(f"{mode} IKE_SA", charon.read_log())

    # -- scenarios ------------------------------------------------------------------

    def test_charon_initiates_main_mode(self) -> None:
        """charon initiates Main Mode (AES-128/SHA1/MODP2048), ESP AES-128/SHA1; we respond."""
        conn = self.charon_connection()
        daemon = self.start_ours(passive=True, transforms="AES-128-SHA-GRP14",
                                 suites="QM-ESP-AES-128-SHA-SUITE")
        charon = self.start_charon(conn)
        initiate(charon, conn)
        self.assert_same_sas(charon, daemon, conn, charon_initiated=True,
                             ike_suite=P1_128, esp=ESP_128)

    def test_we_initiate_main_mode(self) -> None:
        """We initiate ([Phase 2] Connections) Main Mode and Quick Mode; charon responds."""
        conn = self.charon_connection()
        charon = self.start_charon(conn)
        daemon = self.start_ours(passive=False, transforms="AES-128-SHA-GRP14",
                                 suites="QM-ESP-AES-128-SHA-SUITE")
        self.assert_same_sas(charon, daemon, conn, charon_initiated=False,
                             ike_suite=P1_128, esp=ESP_128)

    def test_charon_initiates_pfs_aes256_sha256(self) -> None:
        """charon initiates with AES-256/SHA2-256/MODP2048 and Quick Mode PFS group 14."""
        conn = self.charon_connection(proposals="aes256-sha256-modp2048",
                                      esp_proposals="aes256-sha256", pfs_group="modp2048")
        daemon = self.start_ours(passive=True, transforms="AES-256-SHA2-256-GRP14",
                                 suites="QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE")
        charon = self.start_charon(conn)
        initiate(charon, conn)
        self.assert_same_sas(charon, daemon, conn, charon_initiated=True,
                             ike_suite=P1_256, esp=ESP_256, pfs="MODP_2048")

    def test_we_initiate_pfs_aes256_sha256(self) -> None:
        """We initiate with AES-256/SHA2-256/MODP2048 and Quick Mode PFS group 14."""
        conn = self.charon_connection(proposals="aes256-sha256-modp2048",
                                      esp_proposals="aes256-sha256", pfs_group="modp2048")
        charon = self.start_charon(conn)
        daemon = self.start_ours(passive=False, transforms="AES-256-SHA2-256-GRP14",
                                 suites="QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE")
        self.assert_same_sas(charon, daemon, conn, charon_initiated=False,
                             ike_suite=P1_256, esp=ESP_256, pfs="MODP_2048")

    def test_charon_initiates_aggressive_mode(self) -> None:
        """charon initiates Aggressive Mode with a pre-shared key; we respond."""
        conn = self.charon_connection(aggressive=True)
        daemon = self.start_ours(passive=True, mode="AGGRESSIVE",
                                 transforms="AES-128-SHA-GRP14",
                                 suites="QM-ESP-AES-128-SHA-SUITE")
        charon = self.start_charon(conn)
        initiate(charon, conn)
        self.assert_same_sas(charon, daemon, conn, charon_initiated=True,
                             ike_suite=P1_128, esp=ESP_128)

    def test_we_initiate_aggressive_mode(self) -> None:
        """We initiate Aggressive Mode with a pre-shared key; charon responds."""
        conn = self.charon_connection(aggressive=True)
        charon = self.start_charon(conn)
        daemon = self.start_ours(passive=False, mode="AGGRESSIVE",
                                 transforms="AES-128-SHA-GRP14",
                                 suites="QM-ESP-AES-128-SHA-SUITE")
        self.assert_same_sas(charon, daemon, conn, charon_initiated=False,
                             ike_suite=P1_128, esp=ESP_128)

    def established_by_charon(self) -> tuple[Charon, OurDaemon, IKEv1Connection]:
        """The basic scenario (charon initiates Main Mode), checked, for the DELETE tests."""
        conn = self.charon_connection()
        daemon = self.start_ours(passive=True, transforms="AES-128-SHA-GRP14",
                                 suites="QM-ESP-AES-128-SHA-SUITE")
        charon = self.start_charon(conn)
        initiate(charon, conn)
        self.assert_same_sas(charon, daemon, conn, charon_initiated=True,
                             ike_suite=P1_128, esp=ESP_128)
        return charon, daemon, conn

    def test_charon_deletes(self) -> None:
        """charon terminates the IKE SA: we log its IPsec SA and ISAKMP SA deleted."""
        charon, daemon, conn = self.established_by_charon()
        established = daemon.wait_for(_ESTABLISHED)
        charon.terminate_ike(conn.name)
        deleted = daemon.wait_for(_DELETED, describe=charon.read_log)
        self.assertEqual(deleted.groups(), established.groups())
        daemon.wait_for("ISAKMP SA deleted: ", describe=charon.read_log)
        self.assertEqual(charon.sas(), {}, charon.read_log())

    def test_charon_deletes_child(self) -> None:
        """charon terminates only the CHILD_SA: our IPsec SA goes, the ISAKMP SA stays."""
        charon, daemon, conn = self.established_by_charon()
        established = daemon.wait_for(_ESTABLISHED)
        charon.swanctl("--terminate", "--child", conn.child_name, "--timeout", "5",
                       timeout=15)
        deleted = daemon.wait_for(_DELETED, describe=charon.read_log)
        self.assertEqual(deleted.groups(), established.groups())
        self.assertNotIn("ISAKMP SA deleted", daemon.log())
        ike = charon.sas()[conn.name]
        self.assertEqual(ike.get("state"), "ESTABLISHED")
        self.assertFalse(ike.get("child-sas"), charon.read_log())

    def test_we_delete_on_shutdown(self) -> None:
        """Our daemon stops (SIGTERM): its DELETEs make charon drop both SAs."""
        charon, daemon, _conn = self.established_by_charon()
        daemon.stop()
        self.assertEqual(daemon.proc.returncode, 0, daemon.log())
        self.assertRegex(daemon.log(), _DELETED)
        deadline = time.monotonic() + NEGOTIATION_TIMEOUT
        while charon.sas():
            if time.monotonic() > deadline:
                self.fail(f"charon still has SAs after our DELETEs:\n{charon.list_sas()}\n"
                          f"--- isakmpd log ---\n{daemon.log()}\n{charon.read_log()}")
            time.sleep(0.1)
        self.assertIn("received DELETE for IKE_SA", charon.read_log())


def initiate(charon: Charon, conn: IKEv1Connection) -> str:
    """``swanctl --initiate`` the connection's child; returns swanctl's output.

    Blocks until charon reports success or failure (at most the negotiation
    deadline); the outcome is judged from ``--list-sas`` afterwards, not from here.
    """
    timeout = int(NEGOTIATION_TIMEOUT)
    proc = charon.swanctl("--initiate", "--child", conn.child_name, "--timeout",
                          str(timeout), check=False, timeout=timeout + 5)
    return proc.stdout + proc.stderr
