"""Scenarios of our daemon on XFRM with real ESP in User-mode Linux: the shared machinery.

tests/test_xfrm_uml.py (our daemon against charon) and tests/test_xfrm_uml_pair.py
(two of our daemons) each boot UML once (:mod:`tests.support.uml`) and run all their
scenarios in that boot; this module holds what both need.

A test module defines ``SCENARIOS``, a dict from a scenario's name to a function
``scenario(rig, entry)``; adding a scenario is one function and one dict entry.  In the
guest, :func:`guest_main` runs every scenario with a fresh :class:`Rig` (a topology of
namespaces, and our daemons and charons started through it, all stopped and removed
afterwards), the function filling its *entry* (a JSON-able dict) with what it saw;
an exception is recorded as the entry's ``error``.  The entries, each with its
``seconds`` and every daemon's log under ``logs``, go into one JSON report in the host
directory.  Host side, :class:`GuestBoot` boots once per test process (cached) and
:class:`XfrmUmlTestCase` gives each test its scenario's entry, failing with the error
and all logs when the scenario failed, plus the checks the scenarios share.

Guest helpers: :func:`our_policies` (``ip xfrm policy`` without the IKE sockets' own
bypass policies), :func:`states_record` (``ip -s xfrm state`` as dicts), :func:`ping`,
:func:`wait_until`, :func:`leftovers`.  For trying one scenario:
``python -m tests.support.xfrm_uml MODULE [SCENARIO...]`` boots UML for those only.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.charon import Charon, IKEv1Connection, need_charon
from tests.support.netns import Namespace, Topology
from tests.support.uml import UmlResult, linked_pair, need_uml, result_dir, run_in_uml
from tests.support.uml import xfrm_states as _xfrm_states
from tests.test_interop_strongswan import ISAKMPD, OurDaemon

__all__ = [
    "GuestBoot",
    "Rig",
    "Scenario",
    "XfrmUmlTestCase",
    "esp_counts",
    "guest_main",
    "leftovers",
    "our_policies",
    "ping",
    "states_record",
    "wait_until",
]

#: Default deadline for one step in the guest (negotiation, DELETE, start), seconds.
DEADLINE = 20.0

T = TypeVar("T")


class Rig:
    """What one scenario builds in the guest: namespaces, our daemons, charons.

    Everything started through it is stopped by :meth:`close` (run by
    :func:`guest_main` whatever happened), which also puts every log into the
    entry's ``logs`` (``"isakmpd LABEL"``, ``"charon LABEL"``).
    """

    def __init__(self, tmp: Path, entry: dict[str, Any]) -> None:
        self.tmp = tmp
        self.entry = entry
        self.topology = Topology("ux")
        self.daemons: dict[str, OurDaemon] = {}
        self.charons: dict[str, Charon] = {}

    def pair(self, a: tuple[str, str | Sequence[str]],
             b: tuple[str, str | Sequence[str]]) -> tuple[Namespace, Namespace]:
        """Two namespaces joined by veth (:func:`tests.support.uml.linked_pair`)."""
        return linked_pair(self.topology, a, b)

    def daemon(self, label: str, ns: Namespace, config: str, *, family: str = "-4",
               wait: bool = True) -> OurDaemon:
        """Our daemon WITHOUT ``-n`` (on XFRM) in *ns*; with *wait*, until it listens."""
        daemon = OurDaemon(ns, self.tmp / label, config, passive=False, family=family,
                           kernel=True)
        self.daemons[label] = daemon
        if wait:
            daemon.wait_for("isakmpd listening on", DEADLINE)
        return daemon

    def charon(self, label: str, ns: Namespace, conns: Sequence[IKEv1Connection]) -> Charon:
        """charon with kernel-netlink (real ESP) in *ns*, its connections loaded."""
        charon = Charon(ns, self.tmp / label, list(conns), kernel="netlink",
                        log_levels={"default": 1, "ike": 2, "cfg": 1, "knl": 2})
        self.charons[label] = charon
        charon.start()
        charon.load()
        return charon

    def close(self) -> None:
        logs = self.entry.setdefault("logs", {})
        try:
            for label, daemon in self.daemons.items():
                daemon.stop()
                logs[f"isakmpd {label}"] = daemon.log()
            for label, charon in self.charons.items():
                charon.stop()
                logs[f"charon {label}"] = charon.read_log()
        finally:
            self.topology.close()


#: A scenario: fills its entry with what it saw, raises when it cannot go on.
Scenario = Callable[[Rig, dict[str, Any]], None]


# -- guest side: records ------------------------------------------------------------------


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
    """``ip -s xfrm state`` of *ns* as JSON-able dicts (:class:`~tests.support.uml.XfrmState`)."""
    return [asdict(state) for state in _xfrm_states(ns)]


def leftovers(ns: Namespace) -> dict[str, Any]:
    """What XFRM holds in *ns* besides the IKE sockets' bypass: states and policies."""
    return {"states": ns.ip("xfrm", "state").stdout.strip(), "policies": our_policies(ns)}


def ping(ns: Namespace, src: str, dst: str, *, count: int = 3,
         size: int | None = None) -> dict[str, Any]:
    """``ping -c COUNT -W 2 -I SRC DST`` in *ns*: its status and output. *size*: that
    many payload bytes of zeros (``-s SIZE -p 00``: compressible, for IPComp)."""
    extra = ["-s", str(size), "-p", "00"] if size is not None else []
    proc = ns.run(["ping", "-n", "-c", str(count), "-W", "2", *extra, "-I", src, dst],
                  check=False, timeout=count * 2 + 10)
    return {"status": proc.returncode, "output": proc.stdout + proc.stderr}


def wait_until(check: Callable[[], T], timeout: float = DEADLINE,
               interval: float = 0.1) -> T:
    """Poll *check* until it returns something true, or *timeout*; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- guest side: the run ------------------------------------------------------------------


def guest_main(scenarios: Mapping[str, Scenario], report: str,
               names: Sequence[str] = ()) -> int:
    """Run *scenarios* (those in *names* if given) in the guest; write *report* as JSON."""
    tmp = Path(tempfile.mkdtemp(prefix="xfrm-"))  # the guest's tmpfs: unix sockets work
    results: dict[str, Any] = {}
    for name, scenario in scenarios.items():
        if names and name not in names:
            continue
        started = time.monotonic()
        entry: dict[str, Any] = {"error": None, "logs": {}}
        (tmp / name).mkdir()
        rig = None
        try:
            rig = Rig(tmp / name, entry)
            scenario(rig, entry)
        except Exception:  # noqa: BLE001 - recorded for the host-side test to report
            entry["error"] = traceback.format_exc()
        finally:
            if rig is not None:
                try:
                    rig.close()
                except Exception:  # noqa: BLE001
                    entry["error"] = (entry["error"] or "") + traceback.format_exc()
        entry["seconds"] = round(time.monotonic() - started, 1)
        results[name] = entry
        print(f"{name}: {'ok' if entry['error'] is None else 'FAILED'} in {entry['seconds']}s",
              flush=True)
    (result_dir() / report).write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


# -- host side ----------------------------------------------------------------------------


class GuestBoot:
    """One UML boot running ``python -m MODULE --guest [NAMES...]``, cached per process."""

    def __init__(self, module: str, report: str, timeout: float) -> None:
        self.module = module
        self.report = report
        self.timeout = timeout
        self._outcome: tuple[UmlResult, dict[str, Any] | None] | None = None

    def run(self, names: Sequence[str] = ()) -> tuple[UmlResult, dict[str, Any] | None]:
        """Boot now (uncached); the result and the guest's report (``None`` if missing)."""
        workdir = Path(tempfile.mkdtemp(prefix="uml-xfrm-", dir=os.getcwd()))
        # The guest's daemons import what this process imports (PYTHONPATH's checkout).
        env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
        result = run_in_uml([sys.executable, "-m", self.module, "--guest", *names],
                            workdir=workdir, timeout=self.timeout, env=env)
        path = workdir / self.report
        report = json.loads(path.read_text()) if result.ok and path.exists() else None
        if report is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        return result, report

    def outcome(self) -> tuple[UmlResult, dict[str, Any] | None]:
        if self._outcome is None:
            self._outcome = self.run()
        return self._outcome


def esp_counts(states: list[dict[str, Any]], *, mode: str = "tunnel",
               encap: str | None = None) -> dict[tuple[str, str, str], int]:
    """``{(src, dst, spi): packets}`` of the ESP states in *mode* with *encap*."""
    return {(s["src"], s["dst"], s["spi"]): s["packets"] for s in states
            if s["proto"] == "esp" and s["mode"] == mode and s["encap"] == encap}


class XfrmUmlTestCase(SynchronousTestCase):
    """Host-side tests of one module's boot: :meth:`scenario` gives a scenario's entry."""

    #: The module's boot (set by the subclass).
    boot: ClassVar[GuestBoot]
    #: Extra tools the guest needs (``need_uml``), and whether charon (netlink) is used.
    tools: ClassVar[tuple[str, ...]] = ("unshare", "ping")
    uses_charon: ClassVar[bool] = True

    def setUp(self) -> None:
        reason = need_uml(*self.tools) or (need_charon("netlink") if self.uses_charon
                                           else None)
        if reason is None and not os.access(ISAKMPD, os.X_OK):
            reason = f"{ISAKMPD} not found (pip install -e .)"
        if reason:
            raise SkipTest(f"our daemon on XFRM in User-mode Linux: {reason}")

    def scenario(self, name: str) -> dict[str, Any]:
        """Scenario *name*'s entry; fails with the error and every log if it failed."""
        result, report = self.boot.outcome()
        if report is None:
            self.fail(result.describe())
        self.assertLess(result.elapsed, self.boot.timeout)
        entry: dict[str, Any] = report[name]
        if entry["error"] is not None:
            self.fail(f"{entry['error']}\n{self.logs(entry)}")
        return entry

    @staticmethod
    def logs(entry: dict[str, Any]) -> str:
        """Every log of the scenario, for failure messages."""
        return "\n".join(f"--- {label} log ---\n{text}"
                         for label, text in entry.get("logs", {}).items())

    def assert_counted(self, before: list[dict[str, Any]], after: list[dict[str, Any]],
                       expected: set[tuple[str, str, str]], at_least: int, what: str, *,
                       mode: str = "tunnel", encap: Mapping[tuple[str, str, str],
                                                            str | None] | None = None,
                       logs: str = "") -> None:
        """*before* and *after* hold exactly the ESP states *expected* (``(src, dst,
        spi)``, in *mode*, with *encap* per state or none), and each state's packet
        counter rose by *at_least*."""
        def counts(states: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
            found: dict[tuple[str, str, str], int] = {}
            for key in expected:
                want = (encap or {}).get(key)
                found.update({k: v for k, v in esp_counts(states, mode=mode,
                                                          encap=want).items() if k == key})
            return found

        ours_before, ours_after = counts(before), counts(after)
        esp = [s for s in before if s["proto"] == "esp"]
        self.assertEqual((set(ours_before), len(esp)), (expected, len(expected)),
                         f"{what}: {before}\n{logs}")
        self.assertEqual(set(ours_after), expected, f"{what}: {after}\n{logs}")
        for key in expected:
            self.assertGreaterEqual(ours_after[key] - ours_before[key], at_least,
                                    f"{what} {key}: {after}\n{logs}")


def _main(argv: list[str]) -> int:  # pragma: no cover - a developer's shortcut
    """``python -m tests.support.xfrm_uml MODULE [SCENARIO...]``: boot for those only."""
    if not argv:
        sys.exit("usage: python -m tests.support.xfrm_uml MODULE [SCENARIO...]")
    module = __import__(argv[0], fromlist=["BOOT"])
    boot: GuestBoot = module.BOOT
    result, report = boot.run(argv[1:])
    print(result.describe(lines=20))
    for name, entry in (report or {}).items():
        print(f"{name}: {'ok' if entry['error'] is None else 'FAILED'} in {entry['seconds']}s")
        if entry["error"]:
            print(entry["error"])
            print(XfrmUmlTestCase.logs(entry))
    return 0 if report and all(e["error"] is None for e in report.values()) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
