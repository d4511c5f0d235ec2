"""The security association database: ISAKMP SAs and IPsec SAs, and their lookups.

This module owns what isakmpd's ``sa.c`` keeps for each SA (inventory §4.1, §4.9):
an :class:`IsakmpSA` per phase 1 (cookies, addresses, role, peer section name, the
negotiated :class:`~isakmpd.ike.policy.Phase1Suite`, its
:class:`~isakmpd.crypto.keys.Phase1Keys`, the phase 1 IV chain, NAT-T state, the
peer's vendor IDs), an :class:`IpsecSA` per phase 2 (connection name, chosen
:class:`~isakmpd.ike.policy.Phase2Suite`, per-protocol SPIs, reqid, IDs, what was
installed in the kernel), and :class:`SaDatabase`, which finds them by cookies, by
peer, by name and by SPI.

The objects are plain records: exchanges fill them in, the engine adds and removes
them. Nothing here sends, schedules or touches the kernel; the engine keeps each
ready SA's expiry timers (soft, hard, replaced-grace) in its ``soft_call``,
``hard_call`` and ``replaced_call`` (``timers`` shows them by purpose) and the
database cancels them whenever an SA leaves it, so a removed SA never leaves a
timer behind. ``replaced`` / ``fading`` are isakmpd's SA_FLAG_REPLACED / FADING
(inventory §4.9). ``repr`` never shows key material (the key holders' own ``repr``
hide it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from isakmpd.crypto.prf import KeyedPrf
from isakmpd.wire.constants import COOKIE_SIZE, ExchangeType, ProtocolId

if TYPE_CHECKING:
    from isakmpd.crypto.cipher import Phase1Cipher
    from isakmpd.crypto.keys import IvChain, Phase1Keys
    from isakmpd.wire.payloads import IdPayload

__all__ = [
    "ZERO_COOKIE",
    "Address",
    "IpsecSA",
    "IsakmpSA",
    "NatState",
    "SaDatabase",
    "SaState",
    "TimerView",
]

Address = tuple[str, int]
ZERO_COOKIE = b"\x00" * COOKIE_SIZE


class SaState(enum.Enum):
    """Life cycle of an SA."""

    NEGOTIATING = "negotiating"
    READY = "ready"
    DEAD = "dead"


# Read once: an enum class's attribute costs a Python-level call in 3.11, and
# ``ready`` is asked for every message.
_READY = SaState.READY


class _Timed:
    """Expiry timers of an SA (IDelayedCalls by purpose), cancelled when it goes.

    The calls are kept in the SA's own slots (``soft_call``, ``hard_call``,
    ``replaced_call``) rather than in a dict per SA: a gateway keeps every ready SA
    for hours, and such a dict is one more object per SA for the garbage collector
    to scan. :attr:`timers` shows them as a mapping by purpose for the rare readers
    (reports, the kernel's expiries, tests).
    """

    __slots__ = ()
    soft_call: Any
    hard_call: Any
    replaced_call: Any

    @property
    def timers(self) -> TimerView:
        """The pending calls by purpose ("soft", "hard", "replaced"), a live view."""
        return TimerView(self)

    def cancel_timers(self) -> None:
        for name in _TIMER_SLOTS:
            call = getattr(self, name)
            if call is not None:
                setattr(self, name, None)
                if call.active():
                    call.cancel()


# A timer's purpose -> the slot that holds its call.
_TIMER_SLOT = {"soft": "soft_call", "hard": "hard_call", "replaced": "replaced_call"}
_TIMER_SLOTS = tuple(_TIMER_SLOT.values())


class TimerView(MutableMapping[str, Any]):
    """An SA's timer slots as a mapping by purpose, made when asked for.

    Only the three purposes exist: storing under another raises KeyError.
    """

    __slots__ = ("_sa",)

    def __init__(self, sa: _Timed) -> None:
        self._sa = sa

    def __getitem__(self, purpose: str) -> Any:
        call = getattr(self._sa, _TIMER_SLOT[purpose])
        if call is None:
            raise KeyError(purpose)
        return call

    def __setitem__(self, purpose: str, call: Any) -> None:
        setattr(self._sa, _TIMER_SLOT[purpose], call)

    def __delitem__(self, purpose: str) -> None:
        name = _TIMER_SLOT[purpose]
        if getattr(self._sa, name) is None:
            raise KeyError(purpose)
        setattr(self._sa, name, None)

    def __iter__(self) -> Iterator[str]:
        sa = self._sa
        return iter([purpose for purpose, name in _TIMER_SLOT.items()
                     if getattr(sa, name) is not None])

    def __len__(self) -> int:
        sa = self._sa
        return sum(getattr(sa, name) is not None for name in _TIMER_SLOTS)

    def __repr__(self) -> str:
        return repr(dict(self))


@dataclass(slots=True)
class NatState:
    """NAT traversal facts of one ISAKMP SA (RFC 3947, inventory §4.8)."""

    peer_capable: bool = False      # the peer sent a NAT-T VID we also sent
    rfc: bool = False               # RFC 3947 VID (payload 20) rather than a draft (130)
    we_are_behind: bool = False     # NAT-D of our address did not match
    peer_is_behind: bool = False    # no NAT-D of the peer's address matched
    floated: bool = False           # this SA talks on the NAT-T port

    @property
    def detected(self) -> bool:
        return self.we_are_behind or self.peer_is_behind


# Slots: a gateway keeps one of each per tunnel.
@dataclass(eq=False, slots=True)
class IsakmpSA(_Timed):
    """One ISAKMP SA (phase 1), ready or being negotiated."""

    icookie: bytes
    rcookie: bytes
    local: Address
    remote: Address
    initiator: bool
    name: str                        # the ISAKMP-peer section
    created: float
    exchange_type: int = ExchangeType.ID_PROT
    state: SaState = SaState.NEGOTIATING
    suite: Any = None                # policy.Phase1Suite once chosen
    keys: Phase1Keys | None = None
    iv: IvChain | None = None        # phase 1 chain; its final value seeds phase 2 IVs
    nat: NatState = field(default_factory=NatState)
    peer_vids: tuple[bytes, ...] = ()     # distinct, in the order received
    local_id: IdPayload | None = None
    remote_id: IdPayload | None = None
    stay_alive: bool = False
    openbsd_peer: bool = False
    # Message IDs of phase 2 / informational exchanges seen on this SA, so a replayed
    # message of a finished exchange is recognised (bounded, oldest dropped).
    used_message_ids: dict[int, None] = field(default_factory=dict)
    # Lifetime (inventory §3.1, §4.9): set when the SA becomes ready. The sequence
    # numbers order negotiations on one engine even within one clock tick.
    started_seq: int = 0
    established_seq: int = 0
    established: float | None = None
    life_seconds: int | None = None  # what the timers use (28800 when none negotiated)
    replaced: bool = False            # a newer ready SA with the same peer exists
    fading: bool = False              # soft-expired and not renegotiated
    # Expiry (engine clock time) while ready with a lifetime; only the next of the
    # two has a pending call.
    soft_at: float | None = None
    hard_at: float | None = None
    # The pending expiry calls (see _Timed; ``timers`` shows them by purpose).
    soft_call: Any = field(default=None, init=False, repr=False)
    hard_call: Any = field(default=None, init=False, repr=False)
    replaced_call: Any = field(default=None, init=False, repr=False)
    # What cipher() and phase2_prfs() made, with the keys they were made from (in
    # slots of their own rather than (keys, value) or (prf, prf) tuples: each would
    # be one more object per SA for the garbage collector to scan).
    _cipher_keys: Phase1Keys | None = field(default=None, repr=False)
    _cipher: Phase1Cipher | None = field(default=None, repr=False)
    _prf_keys: Phase1Keys | None = field(default=None, repr=False)
    _prf_a: KeyedPrf | None = field(default=None, repr=False)
    _prf_d: KeyedPrf | None = field(default=None, repr=False)

    MAX_REMEMBERED_IDS = 256

    @property
    def cookies(self) -> bytes:
        """CKY-I | CKY-R, the 16-byte "SPI" of an ISAKMP SA (RFC 2408 §3.15)."""
        return self.icookie + self.rcookie

    @property
    def ready(self) -> bool:
        return self.state is _READY

    @property
    def peer_ip(self) -> str:
        return self.remote[0]

    @property
    def dpd_capable(self) -> bool:
        from isakmpd.wire.constants import VID_DPD
        return VID_DPD in self.peer_vids

    def cipher(self) -> Phase1Cipher:
        """The phase 1 cipher, keyed once per set of keys (every message uses it)."""
        keys = self.keys
        if keys is None:
            raise ValueError("this ISAKMP SA has no keys yet")
        cipher = self._cipher
        if cipher is None or self._cipher_keys is not keys:
            cipher = self._cipher = keys.cipher()
            self._cipher_keys = keys
        return cipher

    def phase2_prfs(self) -> tuple[KeyedPrf, KeyedPrf]:
        """(prf(SKEYID_a, ·), prf(SKEYID_d, ·)), keyed once per set of keys: every
        Quick Mode on this SA takes its HASHes and KEYMAT from them."""
        keys = self.keys
        if keys is None:
            raise ValueError("this ISAKMP SA has no keys yet")
        if self._prf_keys is not keys:      # (None until the first call)
            alg = int(self.suite.hash)
            self._prf_a = KeyedPrf(alg, keys.skeyid_a)
            self._prf_d = KeyedPrf(alg, keys.skeyid_d)
            self._prf_keys = keys
        return self._prf_a, self._prf_d     # type: ignore[return-value]

    def remember_message_id(self, message_id: int) -> None:
        self.used_message_ids[message_id] = None
        while len(self.used_message_ids) > self.MAX_REMEMBERED_IDS:
            del self.used_message_ids[next(iter(self.used_message_ids))]

    def describe(self) -> str:
        role = "initiator" if self.initiator else "responder"
        suite = self.suite.describe() if self.suite is not None else "no suite yet"
        # (_value_: the member's value without the two Python-level calls of .value)
        return (f"ISAKMP SA {self.name} {self.icookie.hex()}:{self.rcookie.hex()} "
                f"{self.local[0]}:{self.local[1]} <-> {self.remote[0]}:{self.remote[1]} "
                f"{role} {self.state._value_} {suite}")

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


# A value, never changed once made; not frozen, which would cost a call per field.
@dataclass(unsafe_hash=True, slots=True)
class SpiPair:
    """The two SPIs of one protocol of an IPsec SA: ours (inbound) and the peer's."""

    protocol: ProtocolId
    our_spi: bytes
    peer_spi: bytes


@dataclass(eq=False, slots=True)
class IpsecSA(_Timed):
    """One IPsec SA bundle (phase 2): every protocol negotiated by one Quick Mode."""

    name: str                        # the IPsec-connection section
    isakmp_sa: IsakmpSA
    local: Address
    remote: Address
    initiator: bool
    created: float
    suite: Any = None                # policy.Phase2Suite
    spis: tuple[SpiPair, ...] = ()
    reqid: int = 0
    local_id: IdPayload | None = None
    remote_id: IdPayload | None = None
    life_seconds: int | None = None
    life_kilobytes: int | None = None
    kernel_sas: list[Any] = field(default_factory=list)    # KernelSA records installed
    flows: list[Any] = field(default_factory=list)         # KernelFlow records installed
    state: SaState = SaState.NEGOTIATING
    stay_alive: bool = False
    # Ordering of its Quick Mode against other SAs of the same connection (engine
    # sequence numbers, so the same clock tick still orders), and the Quick Mode
    # nonces (Ni_b, Nr_b), which both peers know: they settle simultaneous
    # negotiations the same way on both sides.
    started_seq: int = 0
    established_seq: int = 0
    nonces: tuple[bytes, bytes] = (b"", b"")
    replaced: bool = False
    fading: bool = False
    # Expiry (engine clock time) while ready with a lifetime; only the next of the
    # two has a pending call.
    soft_at: float | None = None
    hard_at: float | None = None
    # The pending expiry calls (see _Timed; ``timers`` shows them by purpose).
    soft_call: Any = field(default=None, init=False, repr=False)
    hard_call: Any = field(default=None, init=False, repr=False)
    replaced_call: Any = field(default=None, init=False, repr=False)
    # NAT-T transport mode (RFC 3947 §5.2): the original addresses the peer sent in
    # NAT-OAi / NAT-OAr, (initiator's, responder's); the kernel needs the peer's one
    # to fix up TCP/UDP checksums (XFRMA_ENCAP's oa). None when not received.
    nat_oa: tuple[str, str] | None = None

    @property
    def ready(self) -> bool:
        return self.state is _READY

    @property
    def peer_original_address(self) -> str | None:
        """The peer's own address before NAT, from its NAT-OA (None if unknown)."""
        if self.nat_oa is None:
            return None
        return self.nat_oa[1] if self.initiator else self.nat_oa[0]

    def same_traffic(self, other: IpsecSA) -> bool:
        """Same connection, peer and IDs: ``other`` is a predecessor or a twin."""
        # (Asked of every ready SA of the connection and peer when one becomes ready.)
        return (self.remote[0] == other.remote[0]
                and self.name.lower() == other.name.lower()
                and _same_id(self.local_id, other.local_id)
                and _same_id(self.remote_id, other.remote_id))

    def our_spi(self, protocol: ProtocolId) -> bytes | None:
        for pair in self.spis:
            if pair.protocol == protocol:
                return pair.our_spi
        return None

    def peer_spi(self, protocol: ProtocolId) -> bytes | None:
        for pair in self.spis:
            if pair.protocol == protocol:
                return pair.peer_spi
        return None

    def describe(self) -> str:
        # (A list, not a generator, for join: one frame instead of one per item and
        # the list join would make anyway; every established or replaced SA logs this.)
        spis = ", ".join([f"{p.protocol.label} in {p.our_spi.hex()} out {p.peer_spi.hex()}"
                          for p in self.spis])
        suite = self.suite.describe() if self.suite is not None else "no suite yet"
        return (f"IPsec SA {self.name} {self.local[0]} <-> {self.remote[0]} "
                f"{self.state._value_} {suite} [{spis}] reqid {self.reqid}")

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


def _same_id(one: IdPayload | None, other: IdPayload | None) -> bool:
    """The same type, data, protocol and port (or both None), compared in place
    rather than as (type, bytes(data), protocol, port) keys built for the purpose."""
    if one is None or other is None:
        return one is other
    return (one.id_type == other.id_type and one.protocol == other.protocol
            and one.port == other.port
            and (one.data == other.data or bytes(one.data) == bytes(other.data)))


class SaDatabase:
    """All SAs of one engine, with the lookups exchanges and the control interface use.

    Every message looks its ISAKMP SA up by cookies and every new SA looks for the
    SAs it replaces, so those lookups go through indexes (by initiator cookie, by
    peer or connection name, by carrying ISAKMP SA) rather than scans: a gateway
    with thousands of peers must not pay per message for the others (and a
    road-warrior gateway has thousands of SAs under one section name, so SAs are
    also indexed by peer address, alone and with the name). An SA's endpoints
    change only through :meth:`move_isakmp` / :meth:`move_ipsec` (the float to the
    NAT-T port, a NAT mapping change), which keep the indexes right; lookups by
    SPI, which are set late and rare (DELETE), scan.

    An index entry is the SA itself while it is the only one under its key, and a
    list (oldest first) once several share the key (see :func:`_index`): most keys
    (a cookie, a peer's address) have one SA, and a list per key per index would
    cost a tunnel several hundred bytes and its appends.
    """

    def __init__(self) -> None:
        # Insertion-ordered sets: oldest first, O(1) removal.
        self._isakmp: dict[IsakmpSA, None] = {}
        self._by_icookie: dict[bytes, _Entry[IsakmpSA]] = {}
        self._isakmp_by_name: dict[str, _Entry[IsakmpSA]] = {}
        # By (name, peer address), without the SAs marked replaced: a new SA looks
        # for the ones it replaces here, so rekeys do not make that search grow
        # with the history.
        self._isakmp_live: dict[tuple[str, str], _Entry[IsakmpSA]] = {}
        self._isakmp_by_ip: dict[str, _Entry[IsakmpSA]] = {}
        self._ipsec: dict[IpsecSA, None] = {}
        self._ipsec_by_name: dict[str, _Entry[IpsecSA]] = {}
        self._ipsec_live: dict[tuple[str, str], _Entry[IpsecSA]] = {}
        self._ipsec_by_ip: dict[str, _Entry[IpsecSA]] = {}
        self._ipsec_by_isakmp: dict[IsakmpSA, _Entry[IpsecSA]] = {}

    # -- ISAKMP SAs -------------------------------------------------------------

    def add_isakmp(self, sa: IsakmpSA) -> None:
        if sa in self._isakmp:
            return
        self._isakmp[sa] = None
        name = sa.name.lower()
        ip = sa.remote[0]
        # _index spelt out (every tunnel adds an SA to eight indexes): a new key
        # takes the SA itself; only a shared one costs the call of _share.
        if self._by_icookie.setdefault(sa.icookie, sa) is not sa:
            _share(self._by_icookie, sa.icookie, sa)
        if self._isakmp_by_name.setdefault(name, sa) is not sa:
            _share(self._isakmp_by_name, name, sa)
        if not sa.replaced and self._isakmp_live.setdefault((name, ip), sa) is not sa:
            _share(self._isakmp_live, (name, ip), sa)
        if self._isakmp_by_ip.setdefault(ip, sa) is not sa:
            _share(self._isakmp_by_ip, ip, sa)

    def move_isakmp(self, sa: IsakmpSA, local: Address, remote: Address) -> None:
        """Give ``sa`` new endpoints (the float to the NAT-T port, a NAT rebinding)."""
        if sa in self._isakmp and remote[0] != sa.remote[0]:
            old, new = (sa.name.lower(), sa.remote[0]), (sa.name.lower(), remote[0])
            if not sa.replaced:
                _unindex(self._isakmp_live, old, sa)
                _index(self._isakmp_live, new, sa)
            _unindex(self._isakmp_by_ip, sa.remote[0], sa)
            _index(self._isakmp_by_ip, remote[0], sa)
        sa.local, sa.remote = local, remote

    def mark_replaced(self, sa: IsakmpSA | IpsecSA) -> None:
        """A newer SA took over from ``sa`` (isakmpd's SA_FLAG_REPLACED)."""
        if sa.replaced:
            return
        sa.replaced = True
        live = self._isakmp_live if isinstance(sa, IsakmpSA) else self._ipsec_live
        _unindex(live, (sa.name.lower(), sa.remote[0]), sa)

    def remove_isakmp(self, sa: IsakmpSA) -> None:
        sa.state = SaState.DEAD
        sa.cancel_timers()
        if sa not in self._isakmp:
            return
        del self._isakmp[sa]
        name = sa.name.lower()
        _unindex(self._by_icookie, sa.icookie, sa)
        _unindex(self._isakmp_by_name, name, sa)
        _unindex(self._isakmp_live, (name, sa.remote[0]), sa)
        _unindex(self._isakmp_by_ip, sa.remote[0], sa)

    def isakmp_sas(self) -> list[IsakmpSA]:
        return list(self._isakmp)

    def isakmp_count(self) -> int:
        return len(self._isakmp)

    def find_isakmp(self, icookie: bytes, rcookie: bytes) -> IsakmpSA | None:
        """The SA with exactly these cookies."""
        found = self._by_icookie.get(icookie)
        if type(found) is not list:         # one SA or none (every message asks)
            return found if found is not None and found.rcookie == rcookie else None
        for sa in found:
            if sa.rcookie == rcookie:
                return sa
        return None

    def find_isakmp_by_icookie(self, icookie: bytes, *, initiator: bool | None = None,
                               ) -> IsakmpSA | None:
        """The SA whose initiator cookie is ``icookie`` (optionally of our role)."""
        found = self._by_icookie.get(icookie)       # (asked for every new phase 1)
        if found is None:
            return None
        for sa in found if type(found) is list else (found,):
            if initiator is None or sa.initiator == initiator:
                return sa
        return None

    def find_isakmp_by_cookies(self, cookies: bytes) -> IsakmpSA | None:
        """The SA named by a 16-byte ISAKMP "SPI" (DELETE, INITIAL-CONTACT)."""
        if len(cookies) != 2 * COOKIE_SIZE:
            return None
        return self.find_isakmp(cookies[:COOKIE_SIZE], cookies[COOKIE_SIZE:])

    def isakmp_live_by_peer(self, name: str, ip: str) -> list[IsakmpSA]:
        """The SAs of peer section ``name`` with the peer at ``ip`` not marked replaced."""
        return _members(self._isakmp_live, (name.lower(), ip))

    def isakmp_for_peer(self, name: str, *, ready_only: bool = True) -> IsakmpSA | None:
        """The newest (ready) SA of peer section ``name``.

        Among ready SAs, one neither replaced by a newer one nor fading is
        preferred, then the one established last: new phase 2s go on the newest
        ISAKMP SA.
        """
        found = [sa for sa in _members(self._isakmp_by_name, name.lower())
                 if sa.ready or not ready_only]
        if not found or not ready_only:
            return found[-1] if found else None
        ready = found
        best = max(range(len(ready)), key=lambda i: (not ready[i].replaced,
                                                       not ready[i].fading,
                                                       ready[i].established or 0.0, i))
        return ready[best]

    def isakmp_by_address(self, ip: str) -> list[IsakmpSA]:
        """The SAs with the peer at ``ip``, oldest first."""
        return _members(self._isakmp_by_ip, ip)

    # -- IPsec SAs --------------------------------------------------------------

    def add_ipsec(self, sa: IpsecSA) -> None:
        if sa in self._ipsec:
            return
        self._ipsec[sa] = None
        name = sa.name.lower()
        ip = sa.remote[0]
        # (_index spelt out, as in add_isakmp.)
        if self._ipsec_by_name.setdefault(name, sa) is not sa:
            _share(self._ipsec_by_name, name, sa)
        if not sa.replaced and self._ipsec_live.setdefault((name, ip), sa) is not sa:
            _share(self._ipsec_live, (name, ip), sa)
        if self._ipsec_by_ip.setdefault(ip, sa) is not sa:
            _share(self._ipsec_by_ip, ip, sa)
        if self._ipsec_by_isakmp.setdefault(sa.isakmp_sa, sa) is not sa:
            _share(self._ipsec_by_isakmp, sa.isakmp_sa, sa)

    def move_ipsec(self, sa: IpsecSA, local: Address, remote: Address) -> None:
        """Give ``sa`` new endpoints (the NAT in front of the peer changed its mapping)."""
        if sa in self._ipsec and remote[0] != sa.remote[0]:
            old, new = (sa.name.lower(), sa.remote[0]), (sa.name.lower(), remote[0])
            if not sa.replaced:
                _unindex(self._ipsec_live, old, sa)
                _index(self._ipsec_live, new, sa)
            _unindex(self._ipsec_by_ip, sa.remote[0], sa)
            _index(self._ipsec_by_ip, remote[0], sa)
        sa.local, sa.remote = local, remote

    def remove_ipsec(self, sa: IpsecSA) -> None:
        sa.state = SaState.DEAD
        sa.cancel_timers()
        if sa not in self._ipsec:
            return
        del self._ipsec[sa]
        name = sa.name.lower()
        _unindex(self._ipsec_by_name, name, sa)
        _unindex(self._ipsec_live, (name, sa.remote[0]), sa)
        _unindex(self._ipsec_by_ip, sa.remote[0], sa)
        _unindex(self._ipsec_by_isakmp, sa.isakmp_sa, sa)

    def ipsec_sas(self) -> list[IpsecSA]:
        return list(self._ipsec)

    def ipsec_count(self) -> int:
        return len(self._ipsec)

    def ipsec_by_name(self, name: str) -> list[IpsecSA]:
        return _members(self._ipsec_by_name, name.lower())

    def ipsec_live_by_peer(self, name: str, ip: str) -> list[IpsecSA]:
        """The SAs of connection ``name`` with the peer at ``ip`` not marked replaced."""
        return _members(self._ipsec_live, (name.lower(), ip))

    def ipsec_by_our_spi(self, protocol: int, spi: bytes) -> IpsecSA | None:
        """The SA whose inbound SPI for ``protocol`` is ``spi``."""
        for sa in self._ipsec:
            if sa.our_spi(ProtocolId(protocol)) == spi:
                return sa
        return None

    def ipsec_by_peer_spi(self, protocol: int, spi: bytes, peer_ip: str) -> IpsecSA | None:
        """The SA from ``peer_ip`` whose outbound SPI for ``protocol`` is ``spi``.

        A DELETE names the SPIs the *sender* chose (its inbound SAs, RFC 2408
        §3.15), which are our outbound SPIs.
        """
        for sa in self._ipsec:
            if sa.remote[0] == peer_ip and sa.peer_spi(ProtocolId(protocol)) == spi:
                return sa
        return None

    def ipsec_for_isakmp(self, isakmp: IsakmpSA) -> list[IpsecSA]:
        return _members(self._ipsec_by_isakmp, isakmp)

    def ipsec_by_address(self, ip: str) -> list[IpsecSA]:
        """The SAs with the peer at ``ip``, oldest first."""
        return _members(self._ipsec_by_ip, ip)


_S = TypeVar("_S", IsakmpSA, IpsecSA)
# An index entry: the one SA under its key, or the SAs sharing it, oldest first.
_Entry = _S | list[_S]


def _index(index: dict[Any, _Entry[_S]], key: Any, sa: _S) -> None:
    """Put ``sa`` under ``key``: alone, or last of the list once the key is shared."""
    if index.setdefault(key, sa) is not sa:     # (one dict call for a new key)
        _share(index, key, sa)


def _share(index: dict[Any, _Entry[_S]], key: Any, sa: _S) -> None:
    """Add ``sa`` last under ``key``, which holds one SA or a list already."""
    members = index[key]
    if type(members) is list:
        members.append(sa)
    else:
        index[key] = [members, sa]


def _members(index: dict[Any, _Entry[_S]], key: Any) -> list[_S]:
    """The SAs under ``key``, oldest first, in a new list (callers may change it,
    and the index may change while they go through it)."""
    members = index.get(key)
    if members is None:
        return []
    if type(members) is list:
        return members.copy()
    return [members]                                        # type: ignore[list-item]


def _unindex(index: dict[Any, _Entry[_S]], key: Any, sa: _S) -> None:
    """Take ``sa`` out of ``index[key]``, dropping the key with its last SA and going
    back to the SA alone when one is left."""
    members = index.get(key)
    if members is None:
        return
    if type(members) is not list:
        if members is sa:
            del index[key]
        return
    try:
        members.remove(sa)
    except ValueError:
        return
    if len(members) == 1:               # (a list is kept only for two or more)
        index[key] = members[0]
