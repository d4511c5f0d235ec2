"""Interop with strongSwan's charon in IKEv1 mode, over a veth pair between namespaces.

Our daemon (the ``isakmpd`` console script with the in-memory kernel, ``-n``) runs in
namespace "us" at 192.0.2.1 and protects 203.0.113.0/25; charon runs in namespace
"ch" at 192.0.2.2 and protects 203.0.113.128/25, with kernel-libipsec as its IPsec
backend (this kernel has XFRM but no ESP). kernel-libipsec makes charon send a
random NAT-D payload, so both sides float to UDP 4500 after the first Main Mode
round trip: our daemon listens on 500 and 4500.

A scenario passes when charon's ``swanctl --list-sas`` shows the IKE SA ESTABLISHED
and the CHILD_SA INSTALLED with the configured algorithms (encryption, key size,
integrity, DH group, and the Quick Mode PFS group), and the ESP SPIs charon reports
are the ones our daemon logged crosswise (our inbound SPI is charon's outbound one
and the other way round).  Scenarios are data: an :class:`Algorithms` (charon's
proposal strings, our generated transform and suite names, what swanctl reports)
and who initiates, run by :meth:`StrongSwanInteropTests.negotiate`.

Lifetimes (RFC 2407 §4.5.4, §4.6.3.1): :class:`OurLifetimes` caps our lifetimes, and
charon's ``rekey_time``/``child_rekey_time`` set its own (charon offers them plus 10 %
as LIFE_DURATION). What charon 5.9 does, read in strongSwan's source
(src/libcharon/sa/ikev1/tasks) and seen here: as a responder it never shortens and
never sends RESPONDER-LIFETIME (quick_mode.c ``apply_lifetimes`` adopts the
initiator's LIFE_DURATION, logging "received Ns lifetime, configured Ms", and
``build_r`` echoes it; main_mode.c ``process_r``/``build_r`` do the same for phase
1); a RESPONDER-LIFETIME it receives is dropped (in QM2 nobody looks at notify
payloads, ``process_i`` reads only the SA payload; after phase 1, informational.c
``process_r`` logs "received (24576) notify" for a status notification and goes
on). Its kernel SAs and rekey timers follow its own configuration in every case,
whatever was negotiated. So against charon the shorter lifetime is enforced by the
side that has it: our daemon rekeys at its soft expiry and deletes at its hard
expiry, and charon follows (a Quick Mode it accepts as a rekey, an ISAKMP SA whose
children it adopts, DELETEs it honours).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.charon import (
    Charon,
    CharonError,
    IKEv1Connection,
    need_charon,
    parse_vici_raw,
)
from tests.support.ikepair import make_config
from tests.support.netns import Namespace, Topology, need_root_and_tools

OURS = "192.0.2.1"
CHARON_IP = "192.0.2.2"
OUR_NET = "203.0.113.0/25"
CHARON_NET = "203.0.113.128/25"
#: An address of charon's own subnet, on its loopback device.
CHARON_GATEWAY_ADDRESS = "203.0.113.129/32"
#: The IPv6 variant (:meth:`StrongSwanInteropTests.use_ipv6`).
OURS6 = "2001:db8::1"
CHARON6 = "2001:db8::2"
OUR6_NET = "2001:db8:1::/64"
CHARON6_NET = "2001:db8:2::/64"
CHARON6_GATEWAY_ADDRESS = "2001:db8:2::1/128"
PSK = "interop secret shared with charon"
ISAKMPD = Path(sys.executable).with_name("isakmpd")

#: What charon reports for the suites of the scenarios.
P1_128 = "AES_CBC-128-HMAC_SHA1_96-MODP_2048"
P1_256 = "AES_CBC-256-HMAC_SHA2_256_128-MODP_2048"
ESP_128 = "AES_CBC-128-HMAC_SHA1_96"
ESP_256 = "AES_CBC-256-HMAC_SHA2_256_128"


@dataclass(frozen=True)
class Algorithms:
    """One algorithm set of a scenario, as each side writes it and as swanctl shows it.

    *charon_ike* / *charon_esp* / *charon_pfs* are strongSwan proposal strings
    (:class:`IKEv1Connection` ``proposals``, ``esp_proposals``, ``pfs_group``);
    *transform* / *suite* our generated isakmpd.conf names (Main Mode transform,
    Quick Mode suite, :mod:`isakmpd.config.defaults`); *ike* is what ``swanctl
    --list-sas`` reports for the IKE SA (``ENCR[-KEYSIZE]-INTEG-DH``), *esp* for the
    CHILD_SA (``ENCR[-KEYSIZE]-INTEG``), *pfs* the CHILD_SA's DH group (``None``: no
    PFS; our daemon logs the same name after "PFS ").
    """

    charon_ike: str
    charon_esp: str
    charon_pfs: str | None
    transform: str
    suite: str
    ike: str
    esp: str
    pfs: str | None = None

    def charon_options(self) -> dict[str, Any]:
        """:class:`IKEv1Connection` keyword arguments for charon's side."""
        return {"proposals": self.charon_ike, "esp_proposals": self.charon_esp,
                "pfs_group": self.charon_pfs}

    def our_options(self) -> dict[str, Any]:
        """:func:`make_config` keyword arguments for our side."""
        return {"transforms": self.transform, "suites": self.suite}


#: Main Mode AES-128/SHA1/MODP2048, ESP AES-128/SHA1 without PFS (the basic scenario).
AES128_SHA1 = Algorithms("aes128-sha1-modp2048", "aes128-sha1", None,
                         "AES-128-SHA-GRP14", "QM-ESP-AES-128-SHA-SUITE", P1_128, ESP_128)
#: AES-256/SHA2-256/MODP2048 in both phases, Quick Mode PFS group 14.
AES256_SHA256_PFS = Algorithms("aes256-sha256-modp2048", "aes256-sha256", "modp2048",
                               "AES-256-SHA2-256-GRP14",
                               "QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE",
                               P1_256, ESP_256, "MODP_2048")
#: 3DES/SHA1/MODP1024 (group 2) in phase 1, ESP 3DES/SHA1 without PFS.
TDES_SHA1_MODP1024 = Algorithms("3des-sha1-modp1024", "3des-sha1", None,
                                "3DES-SHA-GRP2", "QM-ESP-3DES-SHA-SUITE",
                                "3DES_CBC-HMAC_SHA1_96-MODP_1024", "3DES_CBC-HMAC_SHA1_96")
#: ECP-256 (group 19) in phase 1 and as the Quick Mode PFS group.
ECP256_PFS = Algorithms("aes128-sha1-ecp256", "aes128-sha1", "ecp256",
                        "AES-128-SHA-GRP19", "QM-ESP-AES-128-SHA-PFS-GRP19-SUITE",
                        "AES_CBC-128-HMAC_SHA1_96-ECP_256", ESP_128, "ECP_256")
#: AES-128/SHA2-256 with MODP2048 in phase 1 and PFS MODP1024: the "-PFS" suite
#: without a group part means group 2, a group other than phase 1's.
AES128_SHA256_PFS_MODP1024 = Algorithms("aes128-sha256-modp2048", "aes128-sha256", "modp1024",
                                        "AES-128-SHA2-256-GRP14",
                                        "QM-ESP-AES-128-SHA2-256-PFS-SUITE",
                                        "AES_CBC-128-HMAC_SHA2_256_128-MODP_2048",
                                        "AES_CBC-128-HMAC_SHA2_256_128", "MODP_1024")


@dataclass(frozen=True)
class OurLifetimes:
    """Our daemon's maximum lifetimes in seconds (``None``: the defaults, 3600 and 1200).

    Each becomes a ``LIFE_DURATION`` of ``N,1:N`` in [LIFE_MAIN_MODE] (phase 1) or
    [LIFE_QUICK_MODE] (phase 2): we offer N, and an offer longer than N is accepted
    shortened to N with a RESPONDER-LIFETIME to the initiator.
    """

    phase1: int | None = None
    phase2: int | None = None

    def config(self) -> str:
        """The sections for :func:`make_config`'s ``extra`` (user values beat defaults)."""
        return "".join(f"\n[{section}]\nLIFE_TYPE=\t\tSECONDS\n"
                       f"LIFE_DURATION=\t\t{seconds},1:{seconds}\n"
                       for section, seconds in (("LIFE_MAIN_MODE", self.phase1),
                                                ("LIFE_QUICK_MODE", self.phase2))
                       if seconds is not None)


def swanctl_algorithms(sa: dict[str, Any], *, dh: bool) -> str:
    """``ENCR[-KEYSIZE]-INTEG[-DH]`` of a ``--list-sas`` IKE SA or CHILD_SA.

    3DES has no ``encr-keysize``; a CHILD_SA's ``dh-group`` (PFS) is checked apart.
    """
    keys = ("encr-alg", "encr-keysize", "integ-alg", *(("dh-group",) if dh else ()))
    return "-".join(str(sa[key]) for key in keys if sa.get(key))

#: Deadline for one negotiation (both phases), in seconds.
NEGOTIATION_TIMEOUT = 12.0

#: Our daemon's log lines (IpsecSA.describe(): "[IPSEC_ESP in OURSPI out PEERSPI]").
_SPIS = r".*\[(?:IPSEC_)?ESP in ([0-9a-f]{8}) out ([0-9a-f]{8})\]"
_ESTABLISHED = re.compile(r"IPsec SA established: " + _SPIS)
_DELETED = re.compile(r"IPsec SA deleted: " + _SPIS)


class OurDaemon:
    """Our ``isakmpd`` in namespace *ns*, logging to a file; stopped by :meth:`stop`."""

    def __init__(self, ns: Namespace, workdir: Path, config: str, *, passive: bool,
                 family: str = "-4", kernel: bool = False,
                 flags: tuple[str, ...] = ()) -> None:
        """*kernel*: run on the XFRM kernel (no ``-n``); *flags*: further options."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "isakmpd.conf"
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(config)
        self.log_path = workdir / "isakmpd.log"
        self.fifo_path = workdir / "isakmpd.fifo"
        self.result_path = workdir / "isakmpd.result"
        # -d: in the foreground, logging to stderr; -i: not /var/run's pid file.
        args = [str(ISAKMPD), "-d", *(() if kernel else ("-n",)), family,
                "-c", str(self.config_path), "-p", "500",
                "-N", "4500", "-i", str(workdir / "isakmpd.pid"),
                "-f", str(self.fifo_path), "-R", str(workdir / "isakmpd.report"),
                "--result-file", str(self.result_path), *flags]
        if passive:
            args.append("-S")
        with open(self.log_path, "wb") as log:
            self.proc = ns.popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)

    def command(self, line: str) -> None:
        """One line to the daemon's FIFO (it holds the FIFO open: this never blocks)."""
        with open(self.fifo_path, "w") as fifo:
            fifo.write(line + "\n")

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

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 10 s) our daemon and reap it; its exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class StrongSwanInteropTests(SynchronousTestCase):
    """Our daemon against charon (IKEv1, PSK), each scenario a fresh pair of namespaces."""

    #: The scenario's addresses, networks, ID type and our daemon's family flag;
    #: :meth:`use_ipv6` switches one test to the IPv6 set.
    ours, charon_ip, our_net, charon_net = OURS, CHARON_IP, OUR_NET, CHARON_NET
    id_type, family_flag = "IPV4_ADDR_SUBNET", "-4"

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
        text = make_config(local=self.ours, peer=self.charon_ip, local_net=self.our_net,
                           remote_net=self.charon_net, psk=PSK, id_type=self.id_type,
                           **config)
        daemon = OurDaemon(self.us, self.tmp, text, passive=passive, family=self.family_flag)
        self.addCleanup(daemon.stop)
        daemon.wait_for("isakmpd listening on", timeout=10.0)
        return daemon

    def charon_connection(self, **options: Any) -> IKEv1Connection:
        """charon's side of the tunnel (*options*: further IKEv1Connection fields)."""
        # Lifetimes within our default ranges: with rekey_time 0 charon offers
        # LIFE_DURATION 0, which isakmpd (like OpenBSD's) refuses as outside 60:86400.
        options = {"rekey_time": "3600s", "child_rekey_time": "1200s", **options}
        return IKEv1Connection(self.charon_ip, self.ours, psk=PSK, local_ts=self.charon_net,
                               remote_ts=self.our_net, **options)

    def assert_same_sas(self, charon: Charon, daemon: OurDaemon, conn: IKEv1Connection, *,
                        charon_initiated: bool, algorithms: Algorithms) -> None:
        """charon's IKE SA and CHILD_SA are up with the SPIs our daemon logged.

        Both SAs use *algorithms* as swanctl reports them (``algorithms.pfs``: the
        Quick Mode DH group, ``None`` for no PFS), and our daemon logged the same PFS
        decision.
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
        self.assertEqual((ike.get("remote-host"), ike.get("remote-port")),
                         (self.ours, "4500"))
        self.assertEqual(swanctl_algorithms(ike, dh=True), algorithms.ike)
        self.assertEqual(child.get("state"), "INSTALLED")
        self.assertEqual(child.get("protocol"), "ESP")
        self.assertEqual(child.get("mode"), "TUNNEL")
        self.assertEqual(child.get("encap"), "yes")
        self.assertEqual(child.get("local-ts"), [self.charon_net])
        self.assertEqual(child.get("remote-ts"), [self.our_net])
        self.assertEqual(swanctl_algorithms(child, dh=False), algorithms.esp)
        self.assertEqual(child.get("dh-group"), algorithms.pfs)
        ours = daemon.wait_for(_ESTABLISHED, describe=charon_log)
        our_in, our_out = ours.group(1), ours.group(2)
        self.assertEqual((our_in, our_out), (child.get("spi-out"), child.get("spi-in")),
                         f"our SPIs vs charon's:\n{daemon.log()}\n{charon_log()}")
        isakmp = daemon.wait_for(r"ISAKMP SA established: .* (initiator|responder) ready")
        self.assertEqual(isakmp.group(1), "responder" if charon_initiated else "initiator")
        self.assertIn(f"PFS {algorithms.pfs} " if algorithms.pfs else "no PFS", ours.group(0))
        mode = "Aggressive Mode" if conn.aggressive else "Main Mode"
        self.assertIn(f"{mode} IKE_SA", charon.read_log())

    def negotiate(self, algorithms: Algorithms, *, charon_initiates: bool,
                  aggressive: bool = False, lifetimes: OurLifetimes = OurLifetimes(),
                  charon_lifetimes: dict[str, str] | None = None,
                  ) -> tuple[Charon, OurDaemon, IKEv1Connection]:
        """One scenario: both sides configured with *algorithms*, one of them initiating.

        When charon initiates, our daemon is passive (``-S``) and started first;
        otherwise charon waits and our [Phase 2] Connections brings the tunnel up.
        *lifetimes* caps ours; *charon_lifetimes* replaces charon's ``rekey_time`` /
        ``child_rekey_time`` (3600s / 1200s). Returns after :meth:`assert_same_sas`
        passed.
        """
        conn = self.charon_connection(aggressive=aggressive, **algorithms.charon_options(),
                                      **(charon_lifetimes or {}))
        ours: dict[str, Any] = {"mode": "AGGRESSIVE"} if aggressive else {}
        if lifetimes.config():
            ours["extra"] = lifetimes.config()
        if charon_initiates:
            daemon = self.start_ours(passive=True, **ours, **algorithms.our_options())
            charon = self.start_charon(conn)
            initiate(charon, conn)
        else:
            charon = self.start_charon(conn)
            daemon = self.start_ours(passive=False, **ours, **algorithms.our_options())
        self.assert_same_sas(charon, daemon, conn, charon_initiated=charon_initiates,
                             algorithms=algorithms)
        return charon, daemon, conn

    def use_ipv6(self) -> None:
        """Run this test over IPv6: 2001:db8::1/64 (us) and 2001:db8::2/64 (charon) on
        the same veth link (``nodad``: usable at once), 2001:db8:1::/64 behind us and
        2001:db8:2::/64 behind charon, IPV6_ADDR_SUBNET IDs, our daemon with ``-6``."""
        self.us.add_address(self.us.links[0], f"{OURS6}/64")
        self.ch.add_address(self.ch.links[0], f"{CHARON6}/64")
        self.ch.add_address("lo", CHARON6_GATEWAY_ADDRESS)
        self.ours, self.charon_ip = OURS6, CHARON6
        self.our_net, self.charon_net = OUR6_NET, CHARON6_NET
        self.id_type, self.family_flag = "IPV6_ADDR_SUBNET", "-6"

    # -- scenarios ------------------------------------------------------------------

    def test_charon_initiates_main_mode(self) -> None:
        """charon initiates Main Mode (AES-128/SHA1/MODP2048), ESP AES-128/SHA1; we respond."""
        self.negotiate(AES128_SHA1, charon_initiates=True)

    def test_we_initiate_main_mode(self) -> None:
        """We initiate ([Phase 2] Connections) Main Mode and Quick Mode; charon responds."""
        self.negotiate(AES128_SHA1, charon_initiates=False)

    def test_charon_initiates_pfs_aes256_sha256(self) -> None:
        """charon initiates with AES-256/SHA2-256/MODP2048 and Quick Mode PFS group 14."""
        self.negotiate(AES256_SHA256_PFS, charon_initiates=True)

    def test_we_initiate_pfs_aes256_sha256(self) -> None:
        """We initiate with AES-256/SHA2-256/MODP2048 and Quick Mode PFS group 14."""
        self.negotiate(AES256_SHA256_PFS, charon_initiates=False)

    def test_charon_initiates_3des_modp1024(self) -> None:
        """charon initiates 3DES/SHA1/MODP1024 (3DES-SHA-GRP2), ESP 3DES/SHA1 without PFS."""
        self.negotiate(TDES_SHA1_MODP1024, charon_initiates=True)

    def test_we_initiate_3des_modp1024(self) -> None:
        """We initiate 3DES/SHA1/MODP1024, ESP 3DES/SHA1 (QM-ESP-3DES-SHA-SUITE)."""
        self.negotiate(TDES_SHA1_MODP1024, charon_initiates=False)

    def test_charon_initiates_ecp256_pfs_ecp256(self) -> None:
        """charon initiates with ECP-256 (group 19) in Main Mode and as Quick Mode PFS."""
        self.negotiate(ECP256_PFS, charon_initiates=True)

    def test_we_initiate_ecp256_pfs_ecp256(self) -> None:
        """We initiate with ECP-256 (AES-128-SHA-GRP19, QM-ESP-AES-128-SHA-PFS-GRP19-SUITE)."""
        self.negotiate(ECP256_PFS, charon_initiates=False)

    def test_charon_initiates_sha256_pfs_modp1024(self) -> None:
        """charon initiates AES-128/SHA2-256, phase 1 MODP2048, Quick Mode PFS MODP1024."""
        self.negotiate(AES128_SHA256_PFS_MODP1024, charon_initiates=True)

    def test_we_initiate_sha256_pfs_modp1024(self) -> None:
        """We initiate with QM-ESP-AES-128-SHA2-256-PFS-SUITE: "-PFS" alone is MODP1024."""
        self.negotiate(AES128_SHA256_PFS_MODP1024, charon_initiates=False)

    def test_we_initiate_main_mode_ipv6(self) -> None:
        """Over IPv6 (our daemon with -6): we initiate Main Mode + Quick Mode with
        IPV6_ADDR_SUBNET IDs, charon responds; NAT-D over IPv6 floats both to 4500."""
        self.use_ipv6()
        _charon, daemon, _conn = self.negotiate(AES128_SHA1, charon_initiates=False)
        self.assertIn(f"{OURS6}", daemon.log())
        self.assertNotIn(OURS, daemon.log())

    def test_charon_initiates_main_mode_ipv6(self) -> None:
        """Over IPv6: charon initiates Main Mode + Quick Mode; we (-6, passive) respond."""
        self.use_ipv6()
        self.negotiate(AES128_SHA1, charon_initiates=True)

    def test_charon_initiates_aggressive_mode(self) -> None:
        """charon initiates Aggressive Mode with a pre-shared key; we respond."""
        self.negotiate(AES128_SHA1, charon_initiates=True, aggressive=True)

    def test_we_initiate_aggressive_mode(self) -> None:
        """We initiate Aggressive Mode with a pre-shared key; charon responds."""
        self.negotiate(AES128_SHA1, charon_initiates=False, aggressive=True)

    def established_by_charon(self) -> tuple[Charon, OurDaemon, IKEv1Connection]:
        """The basic scenario (charon initiates Main Mode), checked, for the DELETE tests."""
        return self.negotiate(AES128_SHA1, charon_initiates=True)

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
        """Our daemon stops (SIGTERM): its DELETEs make charon drop both SAs. (We
        initiate: with -S, as when charon initiates, no DELETE is sent.)"""
        charon, daemon, _conn = self.negotiate(AES128_SHA1, charon_initiates=False)
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

    # -- lifetimes: RESPONDER-LIFETIME and who enforces the shorter one ----------------

    def test_charon_initiates_quick_mode_lifetime_longer_than_ours(self) -> None:
        """charon offers a 1320 s CHILD_SA, we allow 3 s: QM2 carries RESPONDER-LIFETIME,
        which charon ignores; our SA runs on our 3 s, so we rekey it (charon accepts
        our 3 s offer as a rekey of its CHILD_SA) and DELETE the old one."""
        short = SHORT_LIFETIME
        charon, daemon, _conn = self.negotiate(AES128_SHA1, charon_initiates=True,
                                               lifetimes=OurLifetimes(phase2=short))
        # Started passive (-S) so that charon initiates; active from now on, so that
        # our daemon rekeys (FIFO "M active").
        daemon.command("M active")
        our_in, our_out = daemon.wait_for(_ESTABLISHED).groups()
        # Our QM2: HASH SA Nr IDci IDcr, then RESPONDER-LIFETIME (charon names it by number).
        self.assertRegex(charon.read_log(), r"parsed QUICK_MODE response \d+ "
                                            r"\[ HASH SA No ID ID N\(\(24576\)\) \]")
        # charon keeps the lifetime it configured (1200 s rekey, 1320 s life).
        [child] = [c for c in charon_children(charon) if c.get("spi-in") == our_out]
        self.assertGreater(int(child["life-time"]), 1200, charon.list_sas())
        # Ours runs on 3 s: within them its soft expiry renegotiates, 1320 s or not.
        daemon.wait_for(rf"soft expiry of IPsec SA conn .*\[IPSEC_ESP in {our_in} out "
                        rf"{our_out}\].*: renegotiating", timeout=short + 2,
                        describe=charon.read_log)
        wait_for_log(charon, rf"received {short}s lifetime, configured 1320s", daemon)
        wait_for_log(charon, r"detected rekeying of CHILD_SA", daemon)
        # ... and its hard expiry deletes it, in both daemons.
        daemon.wait_for(rf"IPsec SA deleted: .*\[IPSEC_ESP in {our_in} out {our_out}\]",
                        timeout=short + 2, describe=charon.read_log)
        wait_for_log(charon, rf"received DELETE for ESP CHILD_SA with SPI {our_in}", daemon)
        wait_for_log(charon, rf"closing CHILD_SA child\{{\d+\}} with SPIs {our_out}_i", daemon)
        # What charon has left are CHILD_SAs we negotiated (rekeys), crosswise. (Our
        # log is read second: we log a rekey before charon installs it.)
        children = charon_children(charon)
        ours = {m.groups() for m in _ESTABLISHED.finditer(daemon.log())}
        self.assertTrue(children, charon.read_log())
        for installed in children:
            self.assertIn((installed.get("spi-out"), installed.get("spi-in")),
                          ours - {(our_in, our_out)}, charon.list_sas())

    def test_charon_initiates_main_mode_lifetime_longer_than_ours(self) -> None:
        """charon offers a 3960 s IKE SA, we allow 3 s: we send RESPONDER-LIFETIME in an
        informational exchange, which charon logs and ignores; our ISAKMP SA runs on
        our 3 s, so we renegotiate phase 1 (charon adopts the CHILD_SA into the new
        IKE SA) and DELETE the old one."""
        short = SHORT_LIFETIME
        charon, daemon, _conn = self.negotiate(AES128_SHA1, charon_initiates=True,
                                               lifetimes=OurLifetimes(phase1=short))
        daemon.command("M active")       # as above: rekeying is initiating
        our_in, our_out = daemon.wait_for(_ESTABLISHED).groups()
        icookie, rcookie = daemon.wait_for(_ISAKMP_RESPONDER).groups()
        # charon keeps the lifetime it configured (rekeying within 3600 s, not 3 s);
        # this IKE SA stays until our DELETE at our hard expiry.
        [first] = [ike for ike in charon_ike_sas(charon) if ike.get("initiator-spi") == icookie]
        self.assertGreater(int(first["rekey-time"]), 3000, charon.list_sas())
        daemon.wait_for(rf"sending N RESPONDER_LIFETIME ISAKMP spi {icookie}{rcookie} "
                        rf"data 800b0001800c{short:04x}")
        wait_for_log(charon, r"parsed INFORMATIONAL_V1 request \d+ \[ HASH N\(\(24576\)\) \]",
                     daemon)
        wait_for_log(charon, r"received \(24576\) notify", daemon)
        daemon.wait_for(rf"soft expiry of ISAKMP SA peer {icookie}:{rcookie} .*: "
                        r"renegotiating phase 1", timeout=short + 2, describe=charon.read_log)
        daemon.wait_for(rf"ISAKMP SA deleted: ISAKMP SA peer {icookie}:{rcookie} ",
                        timeout=short + 2, describe=charon.read_log)
        wait_for_log(charon, r"detected reauth of existing IKE_SA, adopting 1 children",
                     daemon)
        wait_for_log(charon, r"received DELETE for IKE_SA ikev1\[1\]", daemon)
        # The CHILD_SA lives on in a newer IKE SA: one we initiated.
        deadline = time.monotonic() + NEGOTIATION_TIMEOUT
        while True:
            holders = [ike for ike in charon_ike_sas(charon)
                       if any(c.get("spi-in") == our_out and c.get("spi-out") == our_in
                              and c.get("state") == "INSTALLED"
                              for c in (ike.get("child-sas") or {}).values())]
            if holders and all(ike.get("initiator-spi") != icookie for ike in holders):
                break
            if time.monotonic() > deadline:
                self.fail(f"CHILD_SA {our_out}/{our_in} not adopted:\n{charon.list_sas()}\n"
                          f"--- isakmpd log ---\n{daemon.log()}\n{charon.read_log()}")
            time.sleep(0.1)
        self.assertNotIn("IPsec SA deleted", daemon.log())

    def test_we_initiate_lifetimes_longer_than_charons(self) -> None:
        """We offer 3600 s / 1200 s, charon is configured for 1980 s / 660 s: charon as
        responder takes our offer without shortening it (no RESPONDER-LIFETIME) and
        runs its own SAs on its own, shorter lifetimes (it will rekey first)."""
        charon, daemon, conn = self.negotiate(
            AES128_SHA1, charon_initiates=False,
            charon_lifetimes={"rekey_time": "1800s", "child_rekey_time": "600s"})
        log = charon.read_log()
        self.assertIn("received 1200s lifetime, configured 660s", log)
        self.assertRegex(log, r"generating QUICK_MODE response \d+ \[ HASH SA No ID ID \]")
        self.assertNotIn("(24576)", log)
        self.assertNotIn("RESPONDER-LIFETIME", daemon.log())
        ike, child = charon.wait_for_child(conn.child_name, timeout=NEGOTIATION_TIMEOUT)
        self.assertLessEqual(int(child["life-time"]), 660, charon.list_sas())
        self.assertLessEqual(int(child["rekey-time"]), 600, charon.list_sas())
        self.assertLessEqual(int(ike["rekey-time"]), 1800, charon.list_sas())


    def test_we_offer_esp_ipcomp_then_esp(self) -> None:
        """Our offer with an ESP+IPCOMP proposal (2-byte CPI) first, ESP alone second.

        charon (without ``ipcomp``) parses the IPCOMP protocol, passes over that
        proposal and chooses ESP alone; our daemon installs ESP only. With ``ipcomp
        = yes`` charon's kernel-libipsec (the only backend that completes on this
        kernel) cannot allocate a CPI ("unable to allocate a CPI from kernel, IPComp
        disabled") and answers NO_PROPOSAL_CHOSEN to the whole offer, so compressed
        SAs with charon need kernel-netlink on a kernel with IPComp (UML).
        """
        algorithms = AES128_SHA1
        conn = self.charon_connection(**algorithms.charon_options())
        charon = self.start_charon(conn)
        daemon = self.start_ours(passive=False, transforms=algorithms.transform,
                                 suites=f"{IPCOMP_SUITE},{algorithms.suite}",
                                 extra=IPCOMP_CONFIG)
        self.assert_same_sas(charon, daemon, conn, charon_initiated=False,
                             algorithms=algorithms)
        self.assertIn("selected proposal: ESP:AES_CBC_128/HMAC_SHA1_96", charon.read_log())
        established = daemon.wait_for(_ESTABLISHED).group(0)
        self.assertNotIn("IPCOMP", established)

#: Our short maximum lifetime in the lifetime scenarios, in seconds: charon offers
#: 1320 s (CHILD_SA) and 3960 s (IKE SA); ours soft-expire at 85-95 % of it.
SHORT_LIFETIME = 3

_ISAKMP_RESPONDER = re.compile(
    r"ISAKMP SA established: ISAKMP SA peer ([0-9a-f]{16}):([0-9a-f]{16}) .* responder ready")


def charon_ike_sas(charon: Charon) -> list[dict[str, Any]]:
    """Every IKE SA of ``swanctl --list-sas --raw`` (several may share a name)."""
    return [ike for event in parse_vici_raw(charon.list_sas(raw=True))
            for ike in event.values() if isinstance(ike, dict)]


def charon_children(charon: Charon) -> list[dict[str, Any]]:
    """Every INSTALLED CHILD_SA of every IKE SA of charon."""
    return [child for ike in charon_ike_sas(charon)
            for child in (ike.get("child-sas") or {}).values()
            if child.get("state") == "INSTALLED"]


def wait_for_log(charon: Charon, pattern: str, daemon: OurDaemon,
                 timeout: float = NEGOTIATION_TIMEOUT) -> re.Match[str]:
    """Poll charon's log until *pattern* matches; fail with both logs after *timeout*."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        match = regex.search(charon.read_log())
        if match:
            return match
        if time.monotonic() > deadline:
            raise AssertionError(f"charon did not log {pattern!r} within {timeout}s:\n"
                                 f"--- isakmpd log ---\n{daemon.log()}\n--- charon log ---\n"
                                 f"{charon.read_log()}")
        time.sleep(0.1)


def initiate(charon: Charon, conn: IKEv1Connection) -> str:
    """``swanctl --initiate`` the connection's child; returns swanctl's output.

    Blocks until charon reports success or failure (at most the negotiation
    deadline); the outcome is judged from ``--list-sas`` afterwards, not from here.
    """
    timeout = int(NEGOTIATION_TIMEOUT)
    proc = charon.swanctl("--initiate", "--child", conn.child_name, "--timeout",
                          str(timeout), check=False, timeout=timeout + 5)
    return proc.stdout + proc.stderr


#: An ESP+IPCOMP suite for our side (DEFLATE, tunnel mode), next to the ESP protocol
#: section the defaults generate for AES128_SHA1's suite.
IPCOMP_SUITE = "QM-ESP-AES-128-SHA-IPCOMP-SUITE"
IPCOMP_CONFIG = f"""
[{IPCOMP_SUITE}]
Protocols=		QM-ESP-AES-128-SHA,IPCOMP-DEFLATE

[IPCOMP-DEFLATE]
PROTOCOL_ID=		IPCOMP
Transforms=		IPCOMP-DEFLATE-XF

[IPCOMP-DEFLATE-XF]
TRANSFORM_ID=		DEFLATE
ENCAPSULATION_MODE=	TUNNEL
Life=			LIFE_QUICK_MODE
"""
