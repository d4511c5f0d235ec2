"""Run strongSwan's charon as an IKEv1 peer inside a test network namespace.

Each :class:`Charon` is a private charon instance: its own working
directory holding ``strongswan.conf`` (passed by ``STRONGSWAN_CONF``),
``swanctl.conf`` (found by ``SWANCTL_DIR``), the vici socket and the log
file; its own ``/run``; its own network namespace.  Nothing of the host's
strongSwan configuration (``/etc/strongswan.conf``, ``/etc/swanctl``) is
read.  Typical use::

    with Topology() as topo, tempfile.TemporaryDirectory() as tmp:
        a, b = topo.add_namespace("i"), topo.add_namespace("r")
        topo.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
        conn_i = IKEv1Connection("192.0.2.1", "192.0.2.2", psk="secret")
        with Charon(a, Path(tmp, "i"), [conn_i]) as ci, \\
                Charon(b, Path(tmp, "r"), [conn_i.mirrored()]) as cr:
            ci.initiate(conn_i.child_name)
            sa_i = ci.wait_for_child(conn_i.child_name)
            sa_r = cr.wait_for_child(conn_i.child_name)

Gotchas (all handled here; keep them in mind when changing defaults):

* **pid file** - charon always writes ``/var/run/charon.pid`` and refuses
  to start when it exists, so every instance runs in a private mount
  namespace with a fresh tmpfs on ``/run`` (``unshare -m`` inside ``ip
  netns exec``).  The vici socket therefore lives in the working directory,
  not in ``/run``; swanctl reaches it with ``--uri unix://PATH`` from the
  host (unix sockets are not network-namespaced).
* **kernel without ESP** - the test kernel has XFRM but no ESP transform:
  with ``kernel-netlink`` as the IPsec backend phase 1 completes and Quick
  Mode then fails when the ESP state cannot be added ("Requested type not
  found").  ``kernel="libipsec"`` loads ``kernel-libipsec`` (userspace ESP
  over a TUN device, tunnel mode only) in front of ``kernel-netlink``
  (which still does addresses and routes); Quick Mode then completes.
  libipsec always floats to NAT-T: it makes charon send a random NAT-D
  payload, so both peers switch to UDP 4500 after the first two Main Mode
  messages and ESP is UDP-encapsulated.  On a kernel with ESP (User-mode
  Linux, :mod:`tests.support.uml`) ``kernel="netlink"`` loads only
  ``kernel-netlink``: real kernel ESP states, no forced NAT-T, plain port 500.
* **host-to-host tunnels under libipsec** - when the remote traffic
  selector equals the IKE peer, libipsec by default installs no policy
  (the route via the TUN device would swallow IKE itself).  We set
  ``kernel-libipsec.allow_peer_ts = yes`` and a fwmark pair so that charon's
  own packets bypass the tunnel: ``socket-default.fwmark = MARK`` (IKE
  packets) and ``kernel-libipsec.fwmark = MARK`` (raw ESP packets) carry the
  mark, and ``kernel-netlink.fwmark = !MARK`` makes the policy routing rule
  into charon's table 220 apply only to unmarked packets.
* **Aggressive Mode with PSK** is refused by a responder unless
  ``charon.i_dont_care_about_security_and_use_aggressive_mode_psk = yes``
  (set here by default).  A charon responder accepts only the exchange its
  connection names (``aggressive = yes`` or not), so both sides must agree.
* **log levels** - ``ike``/``chd`` level 4 log private keying material
  (SKEYID..., ESP keys), level 3 logs HASH inputs and raw packets; filelog
  lines are flushed per line so a test can read the log while charon runs.
* swanctl loads everything with ``--load-all --noprompt``; the PSK is
  written in ``0x`` hex form so any byte string works.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from tests.support.netns import Namespace, check_address

__all__ = [
    "CHARON",
    "SWANCTL",
    "Charon",
    "CharonError",
    "IKEv1Connection",
    "charon_version",
    "need_charon",
    "parse_vici_raw",
]

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "/usr/sbin/swanctl"

#: Plugins loaded by default (before the kernel backend).  ``kdf`` and
#: ``drbg`` exist only in newer releases and are skipped when missing.
BASE_PLUGINS = (
    "random", "nonce", "openssl", "aes", "sha1", "sha2", "md5", "hmac", "gmp",
    "kdf", "drbg", "pem", "pkcs1", "x509", "pubkey", "socket-default", "vici",
)
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")

Kernel = Literal["libipsec", "netlink"]


class CharonError(RuntimeError):
    """charon or swanctl did not do what was asked within its deadline."""


def need_charon(kernel: Kernel = "libipsec") -> str | None:
    """Return a skip reason if charon/swanctl or the *kernel* backend are missing.

    ``kernel="netlink"`` (real kernel ESP, e.g. under User-mode Linux) needs only
    the ``kernel-netlink`` plugin, which strongswan-charon ships; ``"libipsec"``
    needs ``kernel-libipsec`` from libcharon-extra-plugins as well.
    """
    for path in (CHARON, SWANCTL):
        if not os.access(path, os.X_OK):
            return f"{path} not found (strongswan-charon, strongswan-swanctl)"
    if not (PLUGIN_DIR / "libstrongswan-kernel-netlink.so").exists():
        return "kernel-netlink plugin not found (strongswan-charon)"
    if kernel == "libipsec" and not (PLUGIN_DIR / "libstrongswan-kernel-libipsec.so").exists():
        return "kernel-libipsec plugin not found (libcharon-extra-plugins)"
    return None


def charon_version() -> str:
    """Return e.g. ``"5.9.8"`` as reported by ``charon --version``."""
    proc = subprocess.run(
        [CHARON, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    m = re.search(r"strongSwan (\S+)", proc.stdout + proc.stderr)
    return m.group(1) if m else "unknown"


def _hex_secret(psk: str | bytes) -> str:
    raw = psk.encode() if isinstance(psk, str) else psk
    return "0x" + raw.hex()


@dataclass
class IKEv1Connection:
    """One IKEv1 PSK connection with one CHILD_SA, as swanctl.conf sees it.

    *proposals* and *esp_proposals* use strongSwan's syntax
    (``aes128-sha1-modp2048``; several separated by commas).  *pfs_group*,
    if given (e.g. ``"modp2048"``), is appended to every ESP proposal, which
    is how IKEv1 Quick Mode PFS is requested in strongSwan.  *local_ts* /
    *remote_ts* default to ``dynamic`` (the IKE addresses: a host-to-host
    tunnel).  *rekey_time* / *life_time* are ``0`` (no rekeying during a
    test) unless set.
    """

    local_addr: str
    remote_addr: str
    psk: str | bytes
    proposals: str = "aes128-sha1-modp2048"
    esp_proposals: str = "aes128-sha1"
    pfs_group: str | None = None
    aggressive: bool = False
    mode: Literal["tunnel", "transport"] = "tunnel"
    local_id: str | None = None
    remote_id: str | None = None
    local_ts: str = "dynamic"
    remote_ts: str = "dynamic"
    name: str = "ikev1"
    child_name: str = "child"
    rekey_time: str = "0"
    child_rekey_time: str = "0"
    encap: bool = False
    conn_options: dict[str, str] = field(default_factory=dict)
    child_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_address(self.local_addr)
        check_address(self.remote_addr)

    def mirrored(self) -> IKEv1Connection:
        """The same connection seen from the peer (addresses, IDs, TS swapped)."""
        return replace(
            self,
            local_addr=self.remote_addr, remote_addr=self.local_addr,
            local_id=self.remote_id, remote_id=self.local_id,
            local_ts=self.remote_ts, remote_ts=self.local_ts,
            conn_options=dict(self.conn_options), child_options=dict(self.child_options),
        )

    @property
    def effective_esp_proposals(self) -> str:
        """*esp_proposals* with *pfs_group* appended to each proposal."""
        if not self.pfs_group:
            return self.esp_proposals
        return ",".join(f"{p}-{self.pfs_group}" for p in self.esp_proposals.split(","))

    def swanctl_connection(self) -> str:
        """The ``connections.NAME { ... }`` block."""
        local_id = self.local_id or self.local_addr.split("/")[0]
        remote_id = self.remote_id or self.remote_addr.split("/")[0]
        conn = {
            "version": "1",
            "aggressive": "yes" if self.aggressive else "no",
            "local_addrs": self.local_addr.split("/")[0],
            "remote_addrs": self.remote_addr.split("/")[0],
            "proposals": self.proposals,
            "rekey_time": self.rekey_time,
            "encap": "yes" if self.encap else "no",
            **self.conn_options,
        }
        child = {
            "local_ts": self.local_ts,
            "remote_ts": self.remote_ts,
            "mode": self.mode,
            "esp_proposals": self.effective_esp_proposals,
            "rekey_time": self.child_rekey_time,
            "start_action": "none",
            **self.child_options,
        }
        lines = [f"  {self.name} {{"]
        lines += [f"    {k} = {v}" for k, v in conn.items()]
        lines += [
            "    local {", "      auth = psk", f"      id = {local_id}", "    }",
            "    remote {", "      auth = psk", f"      id = {remote_id}", "    }",
            "    children {", f"      {self.child_name} {{",
        ]
        lines += [f"        {k} = {v}" for k, v in child.items()]
        lines += ["      }", "    }", "  }"]
        return "\n".join(lines)

    def swanctl_secret(self, index: int) -> str:
        """The ``secrets.ike-N { ... }`` block for this connection's PSK."""
        local_id = self.local_id or self.local_addr.split("/")[0]
        remote_id = self.remote_id or self.remote_addr.split("/")[0]
        return "\n".join([
            f"  ike-{index} {{",
            f"    id-1 = {local_id}",
            f"    id-2 = {remote_id}",
            f"    secret = {_hex_secret(self.psk)}",
            "  }",
        ])


class Charon:
    """A private charon in namespace *ns*, configured from *connections*.

    *workdir* is created if needed and holds ``strongswan.conf``,
    ``swanctl.conf``, ``charon.vici``, ``charon.log`` (the filelog) and
    ``charon.out`` (stdout/stderr).  *log_levels* maps charon log subsystems
    (``default``, ``ike``, ``chd``, ``net``, ``enc``, ``cfg``, ``knl`` ...) to
    levels -1..4.  *kernel* picks the IPsec backend (see module docstring).
    *fwmark* is the mark pair used with libipsec.  *settings* adds raw
    ``charon { ... }`` lines (``"key = value"`` or nested blocks).

    Use as a context manager (starts, loads and stops), or call
    :meth:`start`, :meth:`load` and :meth:`stop` yourself; :meth:`stop` is
    safe to call more than once.
    """

    def __init__(
        self, ns: Namespace, workdir: Path, connections: Sequence[IKEv1Connection], *,
        log_levels: Mapping[str, int] | None = None, kernel: Kernel = "libipsec",
        fwmark: str = "0x42", allow_aggressive_psk: bool = True,
        settings: Iterable[str] = (), extra_plugins: Iterable[str] = (),
    ) -> None:
        self.ns = ns
        self.workdir = Path(workdir).resolve()
        self.connections = list(connections)
        self.log_levels = dict(log_levels or {"default": 1})
        self.kernel = kernel
        self.fwmark = fwmark
        self.allow_aggressive_psk = allow_aggressive_psk
        self.settings = list(settings)
        self.extra_plugins = list(extra_plugins)
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None

    # -- paths -----------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.workdir / "strongswan.conf"

    @property
    def swanctl_conf_path(self) -> Path:
        return self.workdir / "swanctl.conf"

    @property
    def vici_path(self) -> Path:
        return self.workdir / "charon.vici"

    @property
    def log_path(self) -> Path:
        return self.workdir / "charon.log"

    @property
    def out_path(self) -> Path:
        return self.workdir / "charon.out"

    @property
    def uri(self) -> str:
        return f"unix://{self.vici_path}"

    # -- configuration ---------------------------------------------------

    def plugins(self) -> list[str]:
        """The ``charon.load`` list: base plugins present here, then the kernel."""
        names = [*BASE_PLUGINS, *self.extra_plugins]
        names = [n for n in names if (PLUGIN_DIR / f"libstrongswan-{n}.so").exists()]
        if self.kernel == "libipsec":
            names += ["kernel-libipsec", "kernel-netlink"]
        else:
            names += ["kernel-netlink"]
        return names

    def strongswan_conf(self) -> str:
        """Text of the private ``strongswan.conf``."""
        levels = "\n".join(f"      {k} = {v}" for k, v in self.log_levels.items())
        plugin_lines = [
            f"    vici {{\n      socket = {self.uri}\n    }}",
        ]
        if self.kernel == "libipsec":
            plugin_lines += [
                (f"    kernel-libipsec {{\n      allow_peer_ts = yes\n"
                 f"      fwmark = {self.fwmark}\n    }}"),
                f"    socket-default {{\n      fwmark = {self.fwmark}\n    }}",
                f"    kernel-netlink {{\n      fwmark = !{self.fwmark}\n    }}",
            ]
        aggressive = "yes" if self.allow_aggressive_psk else "no"
        extra = "\n".join(f"  {line}" for line in self.settings)
        return f"""# generated by tests/support/charon.py
charon {{
  load_modular = no
  load = {' '.join(self.plugins())}
  i_dont_care_about_security_and_use_aggressive_mode_psk = {aggressive}
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  install_virtual_ip = no
  plugins {{
{chr(10).join(plugin_lines)}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  filelog {{
    main {{
      path = {self.log_path}
      append = no
      flush_line = yes
      time_format = %H:%M:%S
      ike_name = yes
{levels}
    }}
  }}
{extra}
}}
swanctl {{
  load = pem pkcs1 x509 pubkey openssl random
}}
"""

    def swanctl_conf(self) -> str:
        """Text of the private ``swanctl.conf``."""
        conns = "\n".join(c.swanctl_connection() for c in self.connections)
        secrets = "\n".join(c.swanctl_secret(i) for i, c in enumerate(self.connections))
        return f"connections {{\n{conns}\n}}\nsecrets {{\n{secrets}\n}}\n"

    def write_config(self) -> None:
        """Create *workdir* and write both configuration files."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.strongswan_conf())
        self.swanctl_conf_path.write_text(self.swanctl_conf())

    def env(self) -> dict[str, str]:
        """Environment for charon and swanctl: private config, private swanctl dir."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGSWAN")}
        env["STRONGSWAN_CONF"] = str(self.conf_path)
        env["SWANCTL_DIR"] = str(self.workdir)
        return env

    # -- lifecycle -------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
            self.load()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> None:
        """Write the config, start charon, wait until its vici socket answers."""
        self.write_config()
        for stale in (self.vici_path, self.log_path):
            stale.unlink(missing_ok=True)
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in stop()
        # ip netns exec, unshare and sh all exec: proc.pid is charon's pid.
        script = 'mount -t tmpfs -o mode=0755 tmpfs /run && exec "$0"'
        self.proc = self.ns.popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, CHARON],
            env=self.env(), stdin=subprocess.DEVNULL, stdout=self._out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise CharonError(
                    f"charon exited with {self.proc.returncode}: {self._tail(self.out_path)}"
                )
            if self.vici_path.exists() and self.swanctl("--stats", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise CharonError(f"charon vici socket not up after {timeout}s")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM charon, wait up to *timeout*, then SIGKILL; return its status."""
        proc, self.proc = self.proc, None
        status = None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    status = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    status = proc.wait(5)
            else:
                status = proc.returncode
        if self._out is not None:
            self._out.close()
            self._out = None
        return status

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- swanctl ---------------------------------------------------------

    def swanctl(
        self, *args: str, check: bool = True, timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``swanctl ARGS --uri ...`` against this instance."""
        proc = subprocess.run(
            [SWANCTL, *args, "--uri", self.uri], env=self.env(), capture_output=True,
            text=True, timeout=timeout, check=False,
        )
        if check and proc.returncode != 0:
            raise CharonError(
                f"swanctl {' '.join(args)} failed ({proc.returncode}): "
                f"{proc.stderr.strip()} {proc.stdout.strip()}"
            )
        return proc

    def load(self) -> str:
        """``swanctl --load-all --noprompt`` from the private ``swanctl.conf``."""
        return self.swanctl(
            "--load-all", "--noprompt", "--file", str(self.swanctl_conf_path)
        ).stdout

    def initiate(self, child: str, *, ike: str | None = None, timeout: int = 30) -> str:
        """Initiate *child* (and its IKE_SA); blocks until done or *timeout* s."""
        args = ["--initiate", "--child", child, "--timeout", str(timeout)]
        if ike:
            args += ["--ike", ike]
        return self.swanctl(*args, timeout=timeout + 10).stdout

    def terminate_ike(self, ike: str, timeout: int = 10) -> str:
        """Delete the IKE_SA of connection *ike* (and its children)."""
        return self.swanctl(
            "--terminate", "--ike", ike, "--timeout", str(timeout), check=False,
            timeout=timeout + 10,
        ).stdout

    def list_sas(self, raw: bool = False) -> str:
        """Output of ``swanctl --list-sas`` (``--raw`` if *raw*)."""
        return self.swanctl("--list-sas", *(["--raw"] if raw else [])).stdout

    def sas(self) -> dict[str, Any]:
        """``--list-sas --raw`` parsed: ``{conn_name: {key: value, "child-sas": ...}}``."""
        merged: dict[str, Any] = {}
        for event in parse_vici_raw(self.list_sas(raw=True)):
            merged.update(event)
        return merged

    def wait_for_child(
        self, child: str, *, timeout: float = 30.0, state: str = "INSTALLED",
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Poll until a CHILD_SA named *child* is in *state*; return (ike_sa, child_sa)."""
        deadline = time.monotonic() + timeout
        while True:
            for ike in self.sas().values():
                for csa in (ike.get("child-sas") or {}).values():
                    if csa.get("name") == child and csa.get("state") == state:
                        return ike, csa
            if not self.running:
                raise CharonError(f"charon died: {self._tail(self.out_path)}")
            if time.monotonic() > deadline:
                raise CharonError(
                    f"no {state} CHILD_SA {child!r} after {timeout}s; log tail:\n"
                    f"{self._tail(self.log_path)}"
                )
            time.sleep(0.2)

    def read_log(self) -> str:
        """The filelog so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @staticmethod
    def _tail(path: Path, lines: int = 30) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"


def parse_vici_raw(text: str) -> list[dict[str, Any]]:
    """Parse ``swanctl --raw`` output (one ``NAME {k=v ...}`` per line) into dicts.

    Sections become dicts, lists (``[a b]``) become lists, values are strings.
    Values containing spaces are not produced by ``--list-sas``.
    """
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line or "{" not in line:
            continue
        body = line[line.index("{"):]
        value, _ = _parse_section(body, 1)
        events.append(value)
    return events


def _parse_section(text: str, pos: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        if text[pos] == "}":
            return result, pos + 1
        m = re.compile(r"([^\s{}\[\]=]+)").match(text, pos)
        if not m:
            raise ValueError(f"cannot parse vici output at {text[pos:pos + 40]!r}")
        key = m.group(1)
        pos = m.end()
        if text.startswith("=", pos):
            pos += 1
            if text.startswith("[", pos):
                end = text.index("]", pos)
                result[key] = text[pos + 1:end].split()
                pos = end + 1
            else:
                m = re.compile(r"[^\s{}\[\]]*").match(text, pos)
                assert m is not None
                result[key] = m.group(0)
                pos = m.end()
        else:
            while text[pos].isspace():
                pos += 1
            if text[pos] != "{":
                raise ValueError(f"expected '{{' at {text[pos:pos + 40]!r}")
            result[key], pos = _parse_section(text, pos + 1)
    return result, pos
