"""User-mode Linux: run a test program under a real kernel that has ESP.

The machine's own kernel has XFRM but no ESP transform, so nothing that needs
the kernel to encrypt (charon with ``kernel-netlink``, our XFRM backend) can be
tested on it directly.  Debian's ``user-mode-linux`` package is a Linux 6.1
kernel that runs as an ordinary process and has every IPsec piece as a module
(``/usr/lib/uml/modules/VERSION``).  This module boots it with the host's own
file system as its root (hostfs), so the project's ``.venv``, charon, iproute2
and iptables are usable inside without building an image::

    result = run_in_uml([sys.executable, "-m", "tests.x", "--guest"],
                        workdir=Path(self.mktemp()), timeout=60)
    self.assertEqual(result.status, 0, result.describe())

Host side (:func:`run_in_uml`): writes a guest init script into *workdir*,
starts ``linux.uml ... init=SCRIPT`` in a session of its own, waits with a
timeout and on expiry kills that process group only (never anything by name).
The guest reports through *workdir*, a host directory visible in the guest
under the same path: ``uml-status`` (the program's exit status) and
``uml-output.txt`` (its stdout and stderr); the kernel console goes to
``uml-console.txt``.  The program may write further files there (the
environment variable :data:`RESULT_DIR_ENV` names the directory).

Guest side, the init script (PID 1):

* mounts proc, sysfs, devtmpfs, and fresh tmpfs on ``/run`` and ``/tmp`` (a
  *workdir* under ``/tmp`` is bind-mounted back over its own path, so results
  still reach the host; one under ``/run`` is refused);
* loads the IPsec, veth and NAT modules.  ``modprobe`` looks in
  ``/lib/modules/VERSION``, which the host does not have (and must not get),
  so a private tree ``/run/uml-modules/lib/modules/VERSION`` links to the UML
  modules and ``modprobe -d`` uses it; ``/proc/sys/kernel/modprobe`` points at
  a wrapper doing the same, so the kernel's own module requests (e.g. a
  crypto template charon asks for) work too;
* brings ``lo`` up, runs the program (under ``timeout``, a little shorter than
  the host's), records its status, ``sync`` and ``halt -f``.

Gotchas: the kernel has no nf_tables for ip/ip6, so NAT needs
``iptables-legacy`` (:func:`masquerade`); the UML ``mconsole`` socket lives in
``uml_dir`` and unix socket paths are short, so ``uml_dir`` is a fresh
``/tmp/uml-*`` directory on the host, not *workdir*; each charon in the guest
still needs its own ``/run`` (``tests.support.charon`` handles it).  A boot
takes 2-4 s.

Guest helpers: :func:`in_guest`, :func:`result_dir`, :func:`linked_pair` (two
namespaces joined by veth, built with :class:`tests.support.netns.Topology`),
:func:`enable_forwarding`, :func:`masquerade`, :func:`xfrm_states`.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.netns import Namespace, Topology

__all__ = [
    "DEFAULT_MODULES",
    "PROJECT_ROOT",
    "RESULT_DIR_ENV",
    "UmlResult",
    "XfrmState",
    "enable_forwarding",
    "in_guest",
    "linked_pair",
    "masquerade",
    "need_uml",
    "parse_xfrm_states",
    "result_dir",
    "run_in_uml",
    "uml_kernel_version",
    "xfrm_states",
]

#: The project's top directory (the guest program's default working directory).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: The UML kernel binary (Debian package user-mode-linux).
UML_KERNEL = "linux.uml"
#: Where Debian's user-mode-linux keeps its modules, one directory per version.
UML_MODULES = Path("/usr/lib/uml/modules")

#: Modules loaded at boot: XFRM and ESP/AH with the crypto they use, IPv6 (a
#: module in this kernel), veth, and what ``iptables-legacy -t nat ... -j
#: MASQUERADE`` needs (dependencies such as nf_nat and nf_conntrack follow).
DEFAULT_MODULES = (
    "xfrm_user", "esp4", "esp6", "ah4", "authenc", "cbc", "ctr", "gcm", "hmac",
    "sha512_generic", "echainiv", "seqiv", "ipv6", "veth",
    "ipcomp", "xfrm_ipcomp", "deflate", "xfrm4_tunnel",
    "ip_tables", "iptable_nat", "xt_MASQUERADE", "xt_nat",
)

#: Set in the guest program's environment: the host directory for results.
RESULT_DIR_ENV = "ISAKMPD_UML_RESULTS"
#: Set in the guest program's environment (to ``"1"``).
IN_GUEST_ENV = "ISAKMPD_UML_GUEST"

STATUS_FILE = "uml-status"
OUTPUT_FILE = "uml-output.txt"
CONSOLE_FILE = "uml-console.txt"
INIT_FILE = "uml-init.sh"

#: Seconds the guest program's own ``timeout`` leaves to the host's: boot,
#: module loading and halting.
GUEST_MARGIN = 10.0

_counter = itertools.count()


# -- host side -----------------------------------------------------------------------


def uml_kernel_version() -> str | None:
    """The version whose UML modules are installed (``"6.1.176"``), or ``None``."""
    try:
        versions = sorted(p.name for p in UML_MODULES.iterdir() if (p / "modules.dep").exists())
    except OSError:
        return None
    return versions[-1] if versions else None


def need_uml(*tools: str) -> str | None:
    """Return why a UML test cannot run here (a skip reason), or ``None``.

    Checks root (hostfs as root and namespaces inside need it), the kernel
    binary, its modules, ``modprobe`` (kmod), ``halt`` and ``timeout``, and
    *tools* (names on ``PATH`` or absolute paths) the guest program will use.
    """
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which(UML_KERNEL) is None:
        return f"{UML_KERNEL} not found (Debian package user-mode-linux)"
    if uml_kernel_version() is None:
        return f"no UML modules under {UML_MODULES} (Debian package user-mode-linux)"
    for tool in ("modprobe", "halt", "timeout", "mount", "ip", *tools):
        found = os.access(tool, os.X_OK) if os.path.isabs(tool) else shutil.which(tool)
        if not found:
            package = {"modprobe": " (Debian package kmod)",
                       "iptables-legacy": " (Debian package iptables)"}.get(tool, "")
            return f"{tool} not found{package}"
    return None


@dataclass(frozen=True)
class UmlResult:
    """What one UML boot produced.

    *status* is the guest program's exit status, ``None`` when the guest never
    reported one (boot failure, host timeout); *output* its stdout+stderr;
    *console* the kernel console and init script messages; *pid* the UML
    process (the leader of its own process group, gone when this is returned).
    """

    status: int | None
    output: str
    console: str
    elapsed: float
    timed_out: bool
    pid: int

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self, lines: int = 60) -> str:
        """A failure message: status, timing, the output and the console's tail."""
        def tail(text: str) -> str:
            return "\n".join(text.splitlines()[-lines:]) or "(empty)"

        what = "timed out" if self.timed_out else f"status {self.status}"
        return (f"UML guest {what} after {self.elapsed:.1f}s\n"
                f"--- guest output ---\n{tail(self.output)}\n"
                f"--- console ---\n{tail(self.console)}")


def guest_init_script(
    argv: Sequence[str], *, workdir: Path, cwd: Path, env: Mapping[str, str],
    modules: Iterable[str], guest_timeout: float,
) -> str:
    """The text of the init script (PID 1) that runs *argv* in the guest."""
    q = shlex.quote
    hostdir = str(workdir)
    exports = "\n".join(f"export {k}={q(v)}" for k, v in sorted(env.items()))
    return f"""#!/bin/sh
# PID 1 of a User-mode Linux guest, generated by tests/support/uml.py.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
HOSTDIR={q(hostdir)}
R=/run/uml-host
finish() {{
    echo "$1" > "$R/{STATUS_FILE}.tmp" && mv "$R/{STATUS_FILE}.tmp" "$R/{STATUS_FILE}"
    sync
    halt -f
    exit "$1"
}}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p "$R" /run/uml-project
mount --bind "$HOSTDIR" "$R"
# A checkout under /tmp (CI clones there) would vanish under the fresh tmpfs:
# keep it, like the work directory, by binding it back over its own path.
mount --bind {q(str(PROJECT_ROOT))} /run/uml-project
mount -t tmpfs -o mode=1777 tmpfs /tmp
case {q(str(PROJECT_ROOT))} in
    /tmp/*) mkdir -p {q(str(PROJECT_ROOT))} &&
        mount --bind /run/uml-project {q(str(PROJECT_ROOT))} ;;
esac
case "$HOSTDIR" in
    /tmp/*) mkdir -p "$HOSTDIR" && mount --bind "$R" "$HOSTDIR" ;;
esac
# modprobe searches DIR/lib/modules/VERSION; the host has no /lib/modules.
V=$(uname -r)
M=/run/uml-modules
mkdir -p "$M/lib/modules"
ln -s "{UML_MODULES}/$V" "$M/lib/modules/$V"
printf '#!/bin/sh\\nexec /sbin/modprobe -d %s "$@"\\n' "$M" > "$M/modprobe"
chmod 755 "$M/modprobe"
echo "$M/modprobe" > /proc/sys/kernel/modprobe
if ! /sbin/modprobe -d "$M" -a {' '.join(q(m) for m in modules)} \
        > "$R/{OUTPUT_FILE}" 2>&1; then
    echo "uml-init: modprobe failed" >> "$R/{OUTPUT_FILE}"
    finish 125
fi
ip link set lo up
{exports}
cd {q(str(cwd))} || finish 126
timeout -k 3 {guest_timeout:.0f} {' '.join(q(a) for a in argv)} \
    >> "$R/{OUTPUT_FILE}" 2>&1 < /dev/null
finish $?
"""


def run_in_uml(
    argv: Sequence[str], *, workdir: Path, timeout: float = 60.0,
    cwd: Path | None = None, env: Mapping[str, str] | None = None,
    modules: Iterable[str] = DEFAULT_MODULES, mem: str = "512M",
) -> UmlResult:
    """Boot UML, run *argv* as root inside, return its :class:`UmlResult`.

    *workdir* (created if needed; absolute or relative to the current
    directory; not under ``/run``; no white space in its path) receives the
    init script and the results and is the guest's :data:`RESULT_DIR_ENV`.
    *cwd* (default :data:`PROJECT_ROOT`, so ``-m tests.x`` works) must not be
    under ``/tmp`` or ``/run``, which the guest replaces by empty tmpfs.  *env* is added to a minimal guest
    environment (``PATH``, ``HOME``, ``LANG``, :data:`IN_GUEST_ENV`,
    :data:`RESULT_DIR_ENV`).  The program gets *timeout* less
    :data:`GUEST_MARGIN` seconds (at least 5); the whole boot *timeout*
    seconds, after which the UML process group is killed.  Call
    :func:`need_uml` first.
    """
    workdir = Path(workdir).resolve()
    if workdir.is_relative_to("/run") or any(c.isspace() for c in str(workdir)):
        # /run is replaced in the guest; the kernel command line splits at spaces.
        raise ValueError(f"unusable UML work directory: {workdir}")
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (STATUS_FILE, OUTPUT_FILE):
        (workdir / name).unlink(missing_ok=True)
    guest_env = {
        "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1", IN_GUEST_ENV: "1", RESULT_DIR_ENV: str(workdir),
        **(env or {}),
    }
    init = workdir / INIT_FILE
    init.write_text(guest_init_script(
        argv, workdir=workdir, cwd=Path(cwd or PROJECT_ROOT).resolve(), env=guest_env,
        modules=modules, guest_timeout=max(timeout - GUEST_MARGIN, 5.0),
    ))
    init.chmod(0o755)
    uml_dir = Path(tempfile.mkdtemp(prefix="uml-"))
    umid = f"isakmpd-{os.getpid()}-{next(_counter)}"
    command = [
        UML_KERNEL, f"mem={mem}", "rootfstype=hostfs", "rw", f"init={init}",
        "con=null", "ssl=null", "con0=fd:0,fd:1", f"umid={umid}", f"uml_dir={uml_dir}",
        "quiet",
    ]
    started = time.monotonic()
    timed_out = False
    try:
        with open(workdir / CONSOLE_FILE, "wb") as console:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=console,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                timed_out = not _wait_unreaped(proc.pid, timeout)
            finally:
                # The leader is not reaped yet (at most a zombie), so the group id
                # cannot belong to anyone else: this reaches UML and its helpers only.
                _kill_group(proc.pid)
                proc.wait(10)
                _wait_group_gone(proc.pid, 10.0)
    finally:
        shutil.rmtree(uml_dir, ignore_errors=True)
    elapsed = time.monotonic() - started
    status_text = _read(workdir / STATUS_FILE).strip()
    return UmlResult(
        status=int(status_text) if status_text.lstrip("-").isdigit() else None,
        output=_read(workdir / OUTPUT_FILE), console=_read(workdir / CONSOLE_FILE),
        elapsed=elapsed, timed_out=timed_out, pid=proc.pid,
    )


def _wait_unreaped(pid: int, timeout: float) -> bool:
    """Wait up to *timeout* s for child *pid* to exit, leaving it unreaped (a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if info is not None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Wait until the killed group's last members (UML's helpers) have been reaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)  # signal 0: only asks whether the group exists
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# -- guest side ----------------------------------------------------------------------


def in_guest() -> bool:
    """True inside a guest started by :func:`run_in_uml`."""
    return os.environ.get(IN_GUEST_ENV) == "1"


def result_dir() -> Path:
    """The host directory for results, as seen in the guest."""
    try:
        return Path(os.environ[RESULT_DIR_ENV])
    except KeyError:
        raise RuntimeError(f"{RESULT_DIR_ENV} not set: not in a UML guest") from None


def linked_pair(
    topo: Topology, a: tuple[str, str | Iterable[str]], b: tuple[str, str | Iterable[str]],
    *, mtu: int | None = None,
) -> tuple[Namespace, Namespace]:
    """Two new namespaces (``(label, addresses)`` each) joined by one veth pair."""
    ns_a = topo.add_namespace(a[0])
    ns_b = topo.add_namespace(b[0])
    topo.link(ns_a, a[1], ns_b, b[1], mtu=mtu)
    return ns_a, ns_b


def enable_forwarding(ns: Namespace) -> None:
    """Let *ns* route IPv4 and IPv6 between its links (a router or NAT box)."""
    ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    ns.run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])


def masquerade(ns: Namespace, out_dev: str, *, udp_ports: str | None = None) -> None:
    """Source-NAT everything *ns* forwards out of *out_dev* (``iptables-legacy``).

    With *udp_ports* (``"LOW-HIGH"``) only UDP is translated, and its source ports
    always to ports of that range (``--to-ports``), so that a peer outside sees
    other ports than the inside host uses, as behind many home routers.

    The UML kernel has no nf_tables for ip/ip6, so the nft flavour of iptables
    cannot be used there.
    """
    enable_forwarding(ns)
    ports = ["-p", "udp", "-j", "MASQUERADE", "--to-ports", udp_ports] if udp_ports \
        else ["-j", "MASQUERADE"]
    ns.run(["iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", out_dev, *ports])


@dataclass(frozen=True)
class XfrmState:
    """One entry of ``ip -s xfrm state``: the fields tests compare."""

    src: str
    dst: str
    proto: str
    spi: str  # eight hex digits, as swanctl and our daemon print SPIs
    mode: str
    encap: str | None  # "espinudp SPORT DPORT" or None
    packets: int  # lifetime current: packets
    text: str


_STATE_HEAD = re.compile(
    # With -s, ip prints "spi 0xHEX(DECIMAL) reqid N(0xHEX)".
    r"^src (\S+) dst (\S+)\n\s+proto (\S+) spi 0x([0-9a-f]+)\S* reqid \S+ mode (\S+)", re.MULTILINE
)


def xfrm_states(ns: Namespace) -> list[XfrmState]:
    """The XFRM states of *ns*, parsed from ``ip -s xfrm state``."""
    return parse_xfrm_states(ns.run(["ip", "-s", "xfrm", "state"]).stdout)


def parse_xfrm_states(text: str) -> list[XfrmState]:
    """Parse the output of ``ip -s xfrm state`` (entries it cannot read are left out)."""
    starts = [m.start() for m in re.finditer(r"^src ", text, re.MULTILINE)]
    states = []
    for begin, end in zip(starts, [*starts[1:], len(text)][:len(starts)], strict=True):
        block = text[begin:end]
        head = _STATE_HEAD.match(block)
        if not head:
            continue
        encap = re.search(r"encap type (\S+) sport (\d+) dport (\d+)", block)
        packets = re.search(r"(\d+)\(bytes\), (\d+)\(packets\)", block)
        states.append(XfrmState(
            src=head.group(1), dst=head.group(2), proto=head.group(3),
            spi=f"{int(head.group(4), 16):08x}", mode=head.group(5),
            encap=" ".join(encap.groups()) if encap else None,
            packets=int(packets.group(2)) if packets else 0, text=block,
        ))
    return states


if __name__ == "__main__":  # pragma: no cover - manual smoke test
    reason = need_uml()
    if reason:
        sys.exit(f"cannot boot UML: {reason}")
    outcome = run_in_uml(["sh", "-c", "uname -r; lsmod | wc -l; ip -s xfrm state"],
                         workdir=Path(tempfile.mkdtemp(prefix="uml-smoke-")), timeout=30)
    print(outcome.describe())
    sys.exit(0 if outcome.ok else 1)
