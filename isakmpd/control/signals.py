"""SIGHUP, SIGUSR1 and SIGTERM for the daemon (inventory §1.2).

As in isakmpd, a handler does no work itself: it only schedules the work in the
reactor with ``callFromThread`` (safe from a signal handler, and it wakes the
reactor), so a reinitialisation or a report never runs in the middle of whatever
the signal interrupted. :class:`SignalHandlers` installs the handlers and puts the
previous ones back (the reactor's own SIGTERM handling, trial's, ...) on
:meth:`~SignalHandlers.restore`. Signals can only be handled in the main thread;
elsewhere nothing is installed and a log line says so.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

__all__ = ["SignalHandlers"]

log = Logger(namespace="isakmpd.control")


class SignalHandlers:
    """Maps signals to callables run in the reactor thread."""

    def __init__(self, reactor: Any, actions: dict[int, Callable[[], object]]) -> None:
        self.reactor = reactor
        self.actions = dict(actions)
        self._previous: dict[int, Any] = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> None:
        if self._previous:
            return
        if threading.current_thread() is not threading.main_thread():
            log.warn("control: not in the main thread, so SIGHUP, SIGUSR1 and SIGTERM "
                     "keep their handlers")
            return
        for signum in self.actions:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        action = self.actions.get(signum)
        if action is not None:
            self.reactor.callFromThread(self._run, signum, action)

    def _run(self, signum: int, action: Callable[[], object]) -> None:
        log.info("control: {signal} received", signal=signal.Signals(signum).name)
        try:
            action()
        except Exception:  # noqa: BLE001 - a failing action must not kill the reactor
            log.failure("control: handling {signal} failed",
                        signal=signal.Signals(signum).name)

    def restore(self) -> None:
        """Put the handlers that were there before :meth:`install` back."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            try:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
