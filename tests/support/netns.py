"""Network namespaces for tests that need real packets between real peers.

A test builds a small topology of namespaces joined by veth links, runs
programs inside them and tears everything down again, also when it fails::

    with Topology() as topo:
        a = topo.add_namespace("a")
        b = topo.add_namespace("b")
        topo.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
        a.run(["ping", "-c1", "192.0.2.2"])

Rules this module enforces, because tests share a machine with other work:

* every namespace name contains the pid of the creating process (and a
  per-process counter), so parallel test runs never collide;
* veth pairs are created *inside* the namespaces (``ip -n A link add ...
  peer ... netns B``), so nothing is ever named or configured in the host's
  own namespace; deleting a namespace deletes its links;
* only documentation addresses may be configured (192.0.2.0/24,
  198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32); anything else raises
  ``ValueError`` before a command is run;
* cleanup kills only processes that are still inside the namespaces this
  process created (``ip netns pids``), then deletes the namespaces.

Everything is synchronous (plain ``subprocess``) so it can be called from
trial tests and from stand-alone scripts alike.  Root is required; use
:func:`need_root_and_tools` to produce a skip reason.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Self

__all__ = [
    "ALLOWED_NETWORKS",
    "Namespace",
    "NetnsError",
    "Topology",
    "check_address",
    "need_root_and_tools",
    "unique_name",
]

#: The only networks a test may configure (RFC 5737 and RFC 3849).
ALLOWED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)

_counter = itertools.count()

#: Default time limit for one ``ip`` command, in seconds.
CMD_TIMEOUT = 20.0


class NetnsError(RuntimeError):
    """A namespace or link could not be set up."""


def need_root_and_tools(*tools: str) -> str | None:
    """Return why namespace tests cannot run here, or ``None`` if they can.

    ``ip`` is always required; *tools* names further programs (looked up on
    ``PATH``, or given as absolute paths).  The result is meant for
    ``raise SkipTest(reason)`` / ``skip = reason``: e.g. ``"needs root"``,
    ``"ip not found"``, ``"/usr/lib/ipsec/charon not found"``.
    """
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", *tools):
        if os.path.isabs(tool):
            if not os.access(tool, os.X_OK):
                return f"{tool} not found"
        elif shutil.which(tool) is None:
            return f"{tool} not found"
    if not os.path.isdir("/proc/self/ns"):
        return "no namespace support (/proc/self/ns missing)"
    return None


def unique_name(prefix: str) -> str:
    """Return a namespace name unique to this process: ``PREFIX-PID-N``."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


def check_address(address: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """Parse ``ADDR[/LEN]`` and refuse anything outside :data:`ALLOWED_NETWORKS`."""
    iface = ipaddress.ip_interface(address)
    if not any(
        iface.ip.version == net.version and iface.ip in net for net in ALLOWED_NETWORKS
    ):
        raise ValueError(f"{address} is not a documentation address")
    return iface


def _run(
    args: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise NetnsError(
            f"{' '.join(args)} failed with {proc.returncode}: "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


class Namespace:
    """One network namespace, created by :meth:`Topology.add_namespace`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.links: list[str] = []

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def prefix(self) -> list[str]:
        """Argument prefix running a command inside this namespace."""
        return ["ip", "netns", "exec", self.name]

    def run(
        self, args: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run *args* in the namespace, wait (with *timeout*), capture text output.

        Raises :class:`NetnsError` on a non-zero exit when *check* is true.
        """
        return _run([*self.prefix(), *args], check=check, timeout=timeout, env=env)

    def popen(self, args: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start *args* in the namespace in the background.

        ``ip netns exec`` execs the command, so the returned ``Popen.pid`` is
        the command's own pid.  The caller owns the process and must end it.
        """
        return subprocess.Popen([*self.prefix(), *args], **kwargs)  # type: ignore[call-overload]

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ip -n NAME ARGS...``."""
        return _run(["ip", "-n", self.name, *args], check=check)

    def add_address(self, dev: str, address: str) -> None:
        """Configure a documentation address on *dev* (IPv6 without DAD delay)."""
        iface = check_address(address)
        extra = ["nodad"] if iface.version == 6 else []
        self.ip("addr", "add", str(iface), "dev", dev, *extra)

    def add_default_route(self, via: str) -> None:
        """Route everything not on a link through the documentation address *via*."""
        self.ip("route", "add", "default", "via", str(check_address(via).ip))

    def enable_forwarding(self) -> None:
        """Let this namespace route IPv4 between its links (a router or NAT box)."""
        self.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    def pids(self) -> list[int]:
        """Pids of the processes currently inside this namespace."""
        proc = _run(["ip", "netns", "pids", self.name], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]


class Topology:
    """A set of namespaces and veth links, removed again on :meth:`close`.

    Use as a context manager.  *prefix* starts every namespace name (the
    full name is ``PREFIX-PID-N-LABEL``; keep labels short).
    """

    def __init__(self, prefix: str = "ikt") -> None:
        self.prefix = prefix
        self.namespaces: list[Namespace] = []
        self._links = itertools.count()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add_namespace(self, label: str) -> Namespace:
        """Create a namespace (named ``PREFIX-PID-N-LABEL``) with ``lo`` up."""
        ns = Namespace(f"{unique_name(self.prefix)}-{label}")
        _run(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def link(
        self, a: Namespace, addr_a: str | Iterable[str], b: Namespace,
        addr_b: str | Iterable[str], *, mtu: int | None = None,
    ) -> tuple[str, str]:
        """Join *a* and *b* by a veth pair, configure addresses, bring it up.

        *addr_a*/*addr_b* are one or more ``ADDR/LEN`` strings.  Returns the
        interface names (``vethN`` in each namespace, N counted per topology).
        """
        addrs_a = [addr_a] if isinstance(addr_a, str) else list(addr_a)
        addrs_b = [addr_b] if isinstance(addr_b, str) else list(addr_b)
        for address in (*addrs_a, *addrs_b):
            check_address(address)
        n = next(self._links)
        dev_a = dev_b = f"veth{n}"
        a.ip("link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", b.name)
        for ns, dev, addrs in ((a, dev_a, addrs_a), (b, dev_b, addrs_b)):
            if mtu is not None:
                ns.ip("link", "set", dev, "mtu", str(mtu))
            for address in addrs:
                ns.add_address(dev, address)
            ns.ip("link", "set", dev, "up")
            ns.links.append(dev)
        return dev_a, dev_b

    def close(self, grace: float = 3.0) -> None:
        """Kill what is left inside our namespaces, then delete them.

        Processes get SIGTERM, then SIGKILL after *grace* seconds.  Only pids
        inside namespaces this topology created are touched.
        """
        leftovers = [(ns, pid) for ns in self.namespaces for pid in ns.pids()]
        for _ns, pid in leftovers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while leftovers and time.monotonic() < deadline:
            leftovers = [(ns, pid) for ns, pid in leftovers if _alive(pid)]
            if leftovers:
                time.sleep(0.05)
        for _ns, pid in leftovers:
            _signal(pid, signal.SIGKILL)
        errors = []
        for ns in reversed(self.namespaces):
            proc = _run(["ip", "netns", "delete", ns.name], check=False)
            if proc.returncode != 0:
                errors.append(f"{ns.name}: {proc.stderr.strip()}")
        self.namespaces.clear()
        if errors:
            raise NetnsError("could not delete namespaces: " + "; ".join(errors))


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
