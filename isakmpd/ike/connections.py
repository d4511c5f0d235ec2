"""Keeping the configured connections up: isakmpd's connection checker (inventory §4.9).

This module owns the list of *active* connections (``[Phase 2] Connections`` plus
those added at run time, e.g. by the FIFO's ``c`` command) and the timer that checks
them. Every ``[General] Check-interval`` seconds (60 by default; the first check runs
at once) each active connection that has neither a ready IPsec SA nor a negotiation
in progress is started through :meth:`Engine.initiate_connection`, which negotiates
phase 1 first when there is no ready ISAKMP SA with the connection's peer.

In passive mode (``-S`` at start, ``M passive`` on the FIFO) the checker initiates
nothing; incoming negotiations are still answered (the engine's business).

The manager registers itself as the engine's ``connection_manager``: the engine's
lifetime timers ask :attr:`ConnectionManager.active` whether an expiring SA's
connection is kept up (renegotiate at soft expiry) or not (let it fade). A
connection counts as up while any ready IPsec SA of its name exists, so rekeys and
simultaneous negotiations from both peers never make the checker start more.

Passive connections (``[Phase 2] Passive-connections``) need nothing here: the
engine looks them up when a peer starts Quick Mode (:func:`policy.find_passive_connection`).

Time comes from an injected IReactorTime; nothing here touches the global reactor.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["DEFAULT_CHECK_INTERVAL", "ConnectionManager"]

DEFAULT_CHECK_INTERVAL = 60   # seconds (isakmpd connection.c CHECK_INTERVAL)


class _Engine(Protocol):
    """What the checker needs of the engine."""

    store: Any
    sadb: Any
    connection_manager: Any

    def initiate_connection(self, connection: str) -> Deferred[Any]: ...


class ConnectionManager:
    """The active-connection list and its periodic checker."""

    def __init__(self, engine: _Engine, clock: Any, *, passive: bool = False,
                 log: Logger | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.passive = passive
        self.log = log if log is not None else Logger()
        self._active: dict[str, str] = {}            # lower-case name -> name as written
        self._running: dict[str, Deferred[Any]] = {}  # lower-case name -> negotiation
        self._timer: IDelayedCall | None = None
        engine.connection_manager = self

    # -- the list ------------------------------------------------------------------

    @property
    def active(self) -> list[str]:
        """The active connections, in the order they were added."""
        return list(self._active.values())

    def is_active(self, name: str) -> bool:
        """Is ``name`` in the list (any case)? The engine asks for every new IPsec SA."""
        return name.lower() in self._active

    def load(self) -> None:
        """Rebuild the list from ``[Phase 2] Connections`` (at start and on reinit).

        Connections added at run time are dropped, as in isakmpd, where the list is
        rebuilt from the configuration.
        """
        self._active.clear()
        for name in self.engine.store.get_list("Phase 2", "Connections"):
            self._active.setdefault(name.lower(), name)

    def add(self, name: str) -> bool:
        """Add ``name`` (the FIFO's ``c``); checks it at once. False if already there."""
        if name.lower() in self._active:
            return False
        self._active[name.lower()] = name
        if self._timer is not None:
            self._check_one(name)
        return True

    def remove(self, name: str) -> bool:
        """Stop keeping ``name`` up (the FIFO's ``t``); its SAs are left to the caller."""
        return self._active.pop(name.lower(), None) is not None

    # -- the checker ------------------------------------------------------------------

    @property
    def check_interval(self) -> int:
        value = self.engine.store.get_num("General", "Check-interval", DEFAULT_CHECK_INTERVAL)
        return value if value > 0 else DEFAULT_CHECK_INTERVAL

    def start(self) -> None:
        """Load the list and run the first check now; then every Check-interval."""
        self.load()
        self._tick()

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def set_passive(self, passive: bool) -> None:
        """``M passive`` / ``M active``: going active checks at once."""
        self.passive = passive
        if not passive and self._timer is not None:
            self.check()

    def _tick(self) -> None:
        self._timer = self.clock.callLater(self.check_interval, self._tick)
        self.check()

    def check(self) -> None:
        """Start every active connection that is neither up nor being negotiated."""
        for name in self.active:
            self._check_one(name)

    def negotiating(self, name: str) -> bool:
        """Has the checker a negotiation for ``name`` under way?"""
        return name.lower() in self._running

    def is_up(self, name: str) -> bool:
        return any(sa.ready for sa in self.engine.sadb.ipsec_by_name(name))

    def _check_one(self, name: str) -> None:
        if self.passive or name.lower() in self._running or self.is_up(name):
            return
        self.log.info("connection {name}: not up, starting it", name=name)
        d = self.engine.initiate_connection(name)
        self._running[name.lower()] = d

        def done(result: object) -> None:
            self._running.pop(name.lower(), None)
            if isinstance(result, Failure):
                # The engine has logged why; the next check tries again.
                self.log.info("connection {name}: negotiation failed, retrying within "
                              "{interval} s", name=name, interval=self.check_interval)

        d.addBoth(done)
