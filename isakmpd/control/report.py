"""What the daemon tells about itself: the result file and the report (inventory §1.4).

* :func:`sa_result` is the text of the FIFO's ``S`` (isakmpd's ``sa_report_all``):
  one block per SA, ended by a blank line, with name and phase (and role for
  phase 1), addresses, lifetimes with the seconds left to the soft and hard
  timeouts, the SA flags as isakmpd numbers them (``sa.h``), the cookies of a
  phase 1 SA and, per protocol of a phase 2 SA, both SPIs (``SPI 0`` the peer's,
  which our outbound traffic carries, ``SPI 1`` ours), transform, key lengths in
  bytes and algorithms.
* :func:`report_lines` is the state dump of ``r`` and SIGUSR1 (``ui_report``): SAs,
  exchanges in progress, transports, connections, timers, and the running
  configuration without the generated defaults.
* :func:`write_private_file` writes a file with mode 0600, replacing the old one
  in one step (a reader never sees half of it).

Neither text carries key material: SPIs, cookies and algorithm names only, and a
pre-shared key in the configuration dump is shown as ``<hidden>``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from isakmpd.config.store import OriginKind
from isakmpd.crypto.ipsec_keys import ISAKMPD_ESP_DEFAULT_KEY_BITS, ah_layout, esp_layout
from isakmpd.ike.ids import id_string
from isakmpd.ike.sa import IpsecSA, IsakmpSA
from isakmpd.wire.constants import (
    AhTransform,
    AuthAlgorithm,
    EspTransform,
    IpcompTransform,
    ProtocolId,
)

__all__ = [
    "SA_FLAGS",
    "format_report_file",
    "ipsec_flags",
    "isakmp_flags",
    "report_lines",
    "sa_result",
    "write_private_file",
]

# isakmpd's SA flags (sa.h).
SA_FLAG_READY = 0x01
SA_FLAG_STAYALIVE = 0x02
SA_FLAG_ONDEMAND = 0x04
SA_FLAG_REPLACED = 0x08
SA_FLAG_FADING = 0x10
SA_FLAG_ACTIVE_ONLY = 0x20
SA_FLAG_IKECFG = 0x40
SA_FLAG_DPD = 0x80
SA_FLAG_NAT_T_ENABLE = 0x100
SA_FLAG_NAT_T_KEEPALIVE = 0x200

SA_FLAGS = {
    SA_FLAG_READY: "ready",
    SA_FLAG_STAYALIVE: "stayalive",
    SA_FLAG_ONDEMAND: "ondemand",
    SA_FLAG_REPLACED: "replaced",
    SA_FLAG_FADING: "fading",
    SA_FLAG_ACTIVE_ONLY: "active-only",
    SA_FLAG_IKECFG: "ikecfg",
    SA_FLAG_DPD: "dpd",
    SA_FLAG_NAT_T_ENABLE: "nat-t",
    SA_FLAG_NAT_T_KEEPALIVE: "nat-t-keepalive",
}

_ESP_NAMES = {
    EspTransform.TRIPLE_DES: "3DES",
    EspTransform.AES: "AES (CBC)",
    EspTransform.AES_CTR: "AES (CTR)",
    EspTransform.AES_GCM_8: "AES (GCM)",
    EspTransform.AES_GCM_12: "AES (GCM)",
    EspTransform.AES_GCM_16: "AES (GCM)",
    EspTransform.AES_GMAC: "AES (GMAC)",
    EspTransform.CAST: "Cast-128",
    EspTransform.BLOWFISH: "Blowfish",
    EspTransform.NULL: "NULL",
}
_AUTH_NAMES = {
    AuthAlgorithm.HMAC_MD5: "HMAC-MD5",
    AuthAlgorithm.HMAC_SHA: "HMAC-SHA1",
    AuthAlgorithm.HMAC_RIPEMD: "HMAC-RIPEMD-160",
    AuthAlgorithm.HMAC_SHA2_256: "HMAC-SHA2-256",
    AuthAlgorithm.HMAC_SHA2_384: "HMAC-SHA2-384",
    AuthAlgorithm.HMAC_SHA2_512: "HMAC-SHA2-512",
}
_AH_NAMES = {
    AhTransform.MD5: "HMAC-MD5",
    AhTransform.SHA: "HMAC-SHA1",
    AhTransform.RIPEMD: "HMAC-RIPEMD-160",
    AhTransform.SHA2_256: "HMAC-SHA2-256",
    AhTransform.SHA2_384: "HMAC-SHA2-384",
    AhTransform.SHA2_512: "HMAC-SHA2-512",
}

#: Configuration tags whose values are secrets (pre-shared keys), never reported.
SECRET_TAGS = frozenset({"authentication"})


# -- flags ---------------------------------------------------------------------------

def _nat_flags(sa: IsakmpSA) -> int:
    flags = 0
    if sa.nat.detected:
        flags |= SA_FLAG_NAT_T_ENABLE
    if sa.nat.we_are_behind:
        flags |= SA_FLAG_NAT_T_KEEPALIVE
    return flags


def _state_flags(sa: IsakmpSA | IpsecSA) -> int:
    """READY, STAYALIVE, REPLACED and FADING, which both kinds of SA carry."""
    flags = 0
    for present, bit in ((sa.ready, SA_FLAG_READY), (sa.stay_alive, SA_FLAG_STAYALIVE),
                         (sa.replaced, SA_FLAG_REPLACED), (sa.fading, SA_FLAG_FADING)):
        if present:
            flags |= bit
    return flags


def isakmp_flags(sa: IsakmpSA, store: Any = None) -> int:
    """isakmpd's flag word of an ISAKMP SA."""
    flags = _nat_flags(sa) | _state_flags(sa)
    if (sa.dpd_capable and store is not None
            and store.get_num("General", "DPD-check-interval", 0) > 0):
        flags |= SA_FLAG_DPD
    return flags


def ipsec_flags(sa: IpsecSA, store: Any = None) -> int:
    """isakmpd's flag word of an IPsec SA (NAT-T bits from its ISAKMP SA)."""
    flags = _nat_flags(sa.isakmp_sa) | _state_flags(sa)
    if store is not None and "active-only" in (
            item.lower() for item in store.get_list(sa.name, "Flags")):
        flags |= SA_FLAG_ACTIVE_ONLY
    return flags


def describe_flags(flags: int) -> str:
    names = [name for bit, name in SA_FLAGS.items() if flags & bit]
    return ",".join(names) if names else "none"


# -- the result file (S) -------------------------------------------------------------

def _seconds_left(when: float | None, now: float) -> int | None:
    if when is None:
        return None
    return max(0, int(when - now))


def _timer_pending(sa: IsakmpSA | IpsecSA, purpose: str) -> bool:
    call = sa.timers.get(purpose)
    return call is not None and call.active()


def _lifetime_lines(sa: IsakmpSA | IpsecSA, now: float) -> list[str]:
    lines = []
    if sa.life_seconds:
        lines.append(f"Lifetime: {sa.life_seconds} seconds")
    # Only the next of the two expiries has a timer; the other is known by time.
    if sa.ready and _timer_pending(sa, "soft"):
        lines.append(f"Soft timeout in {_seconds_left(sa.soft_at, now)} seconds")
    if sa.ready and sa.hard_at is not None and (_timer_pending(sa, "soft")
                                                 or _timer_pending(sa, "hard")):
        lines.append(f"Hard timeout in {_seconds_left(sa.hard_at, now)} seconds")
    kilobytes = getattr(sa, "life_kilobytes", None)
    if kilobytes:
        lines.append(f"Lifetime: {kilobytes} kilobytes")
    return lines


def _spi_text(spi: bytes) -> str:
    # isakmpd prints the bytes in hex with a space after every 4.
    return " ".join(spi[i:i + 4].hex() for i in range(0, len(spi), 4))


def _key_lengths(choice: Any) -> tuple[int, int]:
    """(encryption key bytes incl. salt, authentication key bytes) of one protocol."""
    try:
        if choice.protocol == ProtocolId.IPSEC_ESP:
            layout = esp_layout(choice.transform_id, choice.key_length,
                                choice.auth_algorithm, ISAKMPD_ESP_DEFAULT_KEY_BITS)
        else:
            layout = ah_layout(choice.transform_id, choice.auth_algorithm)
    except Exception:  # noqa: BLE001 - an SA we installed has a layout; be safe anyway
        return 0, 0
    return layout.enc_key_bytes, layout.auth_key_bytes


def _protocol_lines(sa: IpsecSA) -> list[str]:
    lines: list[str] = []
    choices = list(sa.suite.protocols) if sa.suite is not None else []
    if not choices:
        for pair in sa.spis:
            lines.append(f"SPI 0: {_spi_text(pair.peer_spi)}")
            lines.append(f"SPI 1: {_spi_text(pair.our_spi)}")
        return lines
    for choice in choices:
        peer_spi = sa.peer_spi(ProtocolId(choice.protocol)) or choice.peer_spi
        our_spi = sa.our_spi(ProtocolId(choice.protocol)) or choice.our_spi
        for index, spi in enumerate((peer_spi, our_spi)):
            if spi:
                lines.append(f"SPI {index}: {_spi_text(spi)}")
            else:
                lines.append(f"SPI {index} not defined.")
        enc_bytes, auth_bytes = _key_lengths(choice)
        if choice.protocol == ProtocolId.IPSEC_ESP:
            lines.append("Transform: IPsec ESP")
            lines.append(f"Encryption key length: {enc_bytes}")
            lines.append(f"Authentication key length: {auth_bytes}")
            name = _ESP_NAMES.get(choice.transform_id, f"unknown ({choice.transform_id})")
            lines.append(f"Encryption algorithm: {name}")
            auth = (_AUTH_NAMES.get(choice.auth_algorithm, "none")
                    if choice.auth_algorithm is not None else "none")
            lines.append(f"Authentication algorithm: {auth}")
        elif choice.protocol == ProtocolId.IPSEC_AH:
            lines.append("Transform: IPsec AH")
            lines.append("Encryption not used.")
            lines.append(f"Authentication key length: {auth_bytes}")
            name = _AH_NAMES.get(choice.transform_id, f"unknown ({choice.transform_id})")
            lines.append(f"Authentication algorithm: {name}")
        elif choice.protocol == ProtocolId.IPCOMP:
            # isakmpd's report_proto has no IPCOMP case ("invalid proto 4"); we
            # name it, the CPIs are the SPI lines above.
            lines.append("Transform: IPCOMP")
            lines.append(f"Compression algorithm: "
                         f"{IpcompTransform.describe(choice.transform_id)}")
        else:
            lines.append(f"report_proto: invalid proto {int(choice.protocol)}")
    return lines


def _result_block(sa: IsakmpSA | IpsecSA, now: float, store: Any) -> list[str]:
    if isinstance(sa, IsakmpSA):
        role = "/Initiator" if sa.initiator else "/Responder"
        lines = [f"SA name: {sa.name or '<unnamed>'} (Phase 1{role})"]
    else:
        lines = [f"SA name: {sa.name or '<unnamed>'} (Phase 2)"]
    lines.append(f"src: {sa.local[0]} dst: {sa.remote[0]}")
    lines += _lifetime_lines(sa, now)
    if isinstance(sa, IsakmpSA):
        lines.append(f"Flags 0x{isakmp_flags(sa, store):08x}")
        lines.append(f"icookie {sa.icookie.hex()} rcookie {sa.rcookie.hex()}")
    else:
        lines.append(f"Flags 0x{ipsec_flags(sa, store):08x}")
        lines += _protocol_lines(sa)
    lines.append("")
    return lines


def sa_result(engine: Any, now: float | None = None) -> str:
    """The text of the result file for ``S``: every SA, phase 1 ones first."""
    now = engine.now() if now is None else now
    lines: list[str] = []
    for isakmp in engine.sadb.isakmp_sas():
        lines += _result_block(isakmp, now, engine.store)
    for ipsec in engine.sadb.ipsec_sas():
        lines += _result_block(ipsec, now, engine.store)
    return "".join(line + "\n" for line in lines)


# -- the report (r, SIGUSR1) -----------------------------------------------------------

def _isakmp_report(sa: IsakmpSA, now: float, store: Any) -> list[str]:
    flags = isakmp_flags(sa, store)
    suite = sa.suite.describe() if sa.suite is not None else "no suite yet"
    role = "initiator" if sa.initiator else "responder"
    lines = [
        (f"ISAKMP SA {sa.name} (phase 1, {role}, {sa.state.value}), flags 0x{flags:08x} "
         f"({describe_flags(flags)})"),
        f"  cookies {sa.icookie.hex()} {sa.rcookie.hex()}, msgid 00000000",
        f"  {sa.local[0]}:{sa.local[1]} <-> {sa.remote[0]}:{sa.remote[1]}, {suite}",
    ]
    ids = []
    if sa.local_id is not None:
        ids.append(f"local id {id_string(sa.local_id)}")
    if sa.remote_id is not None:
        ids.append(f"remote id {id_string(sa.remote_id)}")
    if ids:
        lines.append("  " + ", ".join(ids))
    lines.append("  " + _life_summary(sa, now))
    if sa.nat.peer_capable:
        nat = [name for name, value in (("we are behind a NAT", sa.nat.we_are_behind),
                                        ("peer is behind a NAT", sa.nat.peer_is_behind),
                                        ("floated to NAT-T port", sa.nat.floated)) if value]
        lines.append("  NAT-T: " + (", ".join(nat) if nat else "no NAT detected"))
    return lines


def _life_summary(sa: IsakmpSA | IpsecSA, now: float) -> str:
    parts = [f"life {sa.life_seconds or 0} s"]
    kilobytes = getattr(sa, "life_kilobytes", None)
    if kilobytes:
        parts.append(f"{kilobytes} KB")
    if sa.ready and sa.soft_at is not None and _timer_pending(sa, "soft"):
        parts.append(f"soft expiry in {_seconds_left(sa.soft_at, now)} s")
    if sa.ready and sa.hard_at is not None and (_timer_pending(sa, "soft")
                                                 or _timer_pending(sa, "hard")):
        parts.append(f"hard expiry in {_seconds_left(sa.hard_at, now)} s")
    return ", ".join(parts)


def _ipsec_report(sa: IpsecSA, now: float, store: Any, message_id: int | None) -> list[str]:
    flags = ipsec_flags(sa, store)
    suite = sa.suite.describe() if sa.suite is not None else "no suite yet"
    role = "initiator" if sa.initiator else "responder"
    msgid = f"{message_id:08x}" if message_id is not None else "unknown"
    lines = [
        (f"IPsec SA {sa.name} (phase 2, {role}, {sa.state.value}), flags 0x{flags:08x} "
         f"({describe_flags(flags)})"),
        (f"  ISAKMP SA cookies {sa.isakmp_sa.icookie.hex()} {sa.isakmp_sa.rcookie.hex()}, "
         f"msgid {msgid}, reqid {sa.reqid}"),
        f"  {sa.local[0]}:{sa.local[1]} <-> {sa.remote[0]}:{sa.remote[1]}, {suite}",
    ]
    if sa.local_id is not None and sa.remote_id is not None:
        lines.append(f"  local id {id_string(sa.local_id)}, remote id "
                     f"{id_string(sa.remote_id)}")
    for pair in sa.spis:
        lines.append(f"  {pair.protocol.label}: spi in {pair.our_spi.hex()} (size "
                     f"{len(pair.our_spi)}), spi out {pair.peer_spi.hex()} (size "
                     f"{len(pair.peer_spi)})")
    lines.append("  " + _life_summary(sa, now))
    return lines


def _timer_name(call: Any) -> str:
    func = getattr(call, "func", None)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) \
        or repr(func)
    owner = getattr(func, "__self__", None)
    if owner is not None and not name.startswith(type(owner).__name__):
        name = f"{type(owner).__name__}.{name}"
    args = [arg for arg in getattr(call, "args", ()) if hasattr(arg, "describe")]
    if args:
        name += " for " + "; ".join(arg.describe() for arg in args)
    return name


def config_lines(store: Any) -> list[str]:
    """The configuration as it runs, without generated defaults, secrets hidden."""
    lines: list[str] = []
    for section in store.get_section_names():
        bindings = [b for b in store.tags(section) if b.origin.kind is not OriginKind.DEFAULT]
        if not bindings:
            continue
        lines.append(f"[{section}]")
        for binding in bindings:
            value = "<hidden>" if binding.tag.lower() in SECRET_TAGS else binding.value
            lines.append(f"{binding.tag}=\t{value}")
        lines.append("")
    return lines


def report_lines(*, engine: Any, clock: Any, connections: Any = None, transport: Any = None,
                 message_ids: dict[IpsecSA, int] | None = None) -> list[str]:
    """Every line of the state report, in isakmpd's order (inventory §1.4)."""
    now = float(clock.seconds())
    store = engine.store
    ids = message_ids or {}
    lines = ["isakmpd state report"]
    isakmp_sas = engine.sadb.isakmp_sas()
    ipsec_sas = engine.sadb.ipsec_sas()
    lines.append(f"SAs: {len(isakmp_sas)} phase 1, {len(ipsec_sas)} phase 2")
    for isakmp in isakmp_sas:
        lines += _isakmp_report(isakmp, now, store)
    for ipsec in ipsec_sas:
        lines += _ipsec_report(ipsec, now, store, ids.get(ipsec))
    exchanges = engine.exchanges()
    lines.append(f"Exchanges in progress: {len(exchanges)}")
    for exchange in exchanges:
        steps = getattr(exchange, "steps", ())
        lines.append(f"  {exchange.describe()}, step {getattr(exchange, 'step', 0)}/"
                     f"{len(steps)}")
    endpoints = transport.endpoints() if transport is not None else []
    lines.append(f"Transports: {len(endpoints)}")
    for (address, port), nat_t in endpoints:
        kind = "NAT-T (ESP in UDP, non-ESP marker)" if nat_t else "IKE"
        lines.append(f"  udp {address}:{port} {kind}, nothing queued")
    lines += _connection_lines(store, connections, now)
    lines += _timer_lines(clock, now)
    lines.append("Configuration (without generated defaults):")
    lines += config_lines(store)
    return lines


def _connection_lines(store: Any, connections: Any, now: float) -> list[str]:
    active = list(connections.active) if connections is not None else \
        store.get_list("Phase 2", "Connections")
    timer = getattr(connections, "_timer", None)
    next_check = None
    if timer is not None and timer.active():
        next_check = max(0, int(timer.getTime() - now))
    mode = "passive" if connections is not None and connections.passive else "active"
    lines = [f"Active connections: {len(active)} (mode {mode})"]
    for name in active:
        up = connections.is_up(name) if connections is not None else False
        running = connections.negotiating(name) if connections is not None else False
        state = "up" if up else ("negotiating" if running else "down")
        when = f", next check in {next_check} s" if next_check is not None else ""
        lines.append(f"  {name}: {state}{when}")
    passive = store.get_list("Phase 2", "Passive-connections")
    lines.append(f"Passive connections: {len(passive)}")
    for name in passive:
        lines.append(f"  {name}: local id {store.get_str(name, 'Local-ID') or '-'}, "
                     f"remote id {store.get_str(name, 'Remote-ID') or '-'}")
    return lines


def _timer_lines(clock: Any, now: float) -> list[str]:
    calls = sorted(clock.getDelayedCalls(), key=lambda call: call.getTime())
    lines = [f"Timers: {len(calls)}"]
    for call in calls:
        left = max(0.0, call.getTime() - now)
        lines.append(f"  {_timer_name(call)} in {left:.1f} s")
    return lines


def format_report_file(lines: Iterable[str], when: float | None = None) -> str:
    """Report lines as isakmpd writes them to a file: ``HHMMSS.uuuuuu Report> text``."""
    when = time.time() if when is None else when
    stamp = time.strftime("%H%M%S", time.localtime(when)) + f".{int(when % 1 * 1e6):06d}"
    return "".join(f"{stamp} Report> {line}\n" for line in lines)


def write_private_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing the old file atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".isakmpd-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
