"""Debug classes and levels: which debug messages are worth producing at all.

isakmpd(8) sorts its debug output into classes, each with a level 0-99 (``-D
class=level``, ``-D A=level`` for all; inventory §1.1, ``log.h``); a message is
printed when its level is at most its class's level. The same gate here decides
before a debug message is even built: emitting a log event costs microseconds, and
the hot paths (a kernel install per SA, a flow per direction) must not pay for
messages nobody reads. Levels start at 0: no debug output until asked for.

A debug event carries its class and level in the fields :data:`CLASS_KEY` and
:data:`LEVEL_KEY` (see :func:`fields`), which the log observers of
:mod:`isakmpd.log` print as isakmpd's 4-letter class name and level. :func:`toggle`
is the FIFO's ``D T`` (isakmpd's log_debug_toggle); :func:`set_verbose` is ``-v`` /
``[General] Logverbose`` (isakmpd's verbose_logging): the phase 1 / phase 2 "done"
lines and "made us delete live SA" lines.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "CLASS_KEY",
    "CLASS_NAMES",
    "LEVELS",
    "LEVEL_KEY",
    "DebugClass",
    "enabled",
    "fields",
    "level",
    "reset",
    "set_level",
    "set_verbose",
    "toggle",
    "verbose",
]


class DebugClass(enum.IntEnum):
    """isakmpd's debug classes (``log.h``), by their ``-D`` numbers."""

    MISC = 0
    TRANSPORT = 1
    MESSAGE = 2
    CRYPTO = 3
    TIMER = 4
    SYSDEP = 5
    SA = 6
    EXCHANGE = 7
    NEGOTIATION = 8
    POLICY = 9
    UI = 10


# isakmpd's LOG_CLASSES_TEXT (log.h): the class column of a debug line.
CLASS_NAMES = ("Misc", "Trpt", "Mesg", "Cryp", "Timr", "Sdep", "SA  ", "Exch", "Negt",
               "Plcy", "UI  ")

# Event fields naming a debug event's class and level.
CLASS_KEY = "isakmpd_debug_class"
LEVEL_KEY = "isakmpd_debug_level"

MAX_LEVEL = 99
_levels = [0] * len(DebugClass)
_saved: list[int] | None = None      # levels saved by the first toggle()
_verbose = False


# The live level list, for per-message paths that test a level without a call
# (``LEVELS[cls] >= level`` is ``enabled(cls, level)``): it is only ever changed
# in place, so a module that imported it sees every change. Read it, never set it.
LEVELS = _levels


def enabled(debug_class: DebugClass, message_level: int) -> bool:
    """Is a debug message of ``message_level`` in ``debug_class`` wanted?"""
    return message_level <= _levels[debug_class]


def level(debug_class: DebugClass) -> int:
    return _levels[debug_class]


def set_level(debug_class: DebugClass | None, value: int) -> None:
    """Set one class's level, or every class's (``None``, isakmpd's ``A``)."""
    if not 0 <= value <= MAX_LEVEL:
        raise ValueError(f"debug level {value} is outside 0-{MAX_LEVEL}")
    if debug_class is None:
        _levels[:] = [value] * len(_levels)
    else:
        _levels[debug_class] = value


def fields(debug_class: DebugClass, message_level: int) -> dict[str, Any]:
    """The event fields that mark a log event as a debug message of this class/level."""
    return {CLASS_KEY: DebugClass(debug_class), LEVEL_KEY: message_level}


def toggle() -> bool:
    """The FIFO's ``D T``: save every level and zero them, or restore the saved ones.

    Returns True when the levels were just cleared, False when restored.
    """
    global _saved
    if _saved is None:
        _saved = list(_levels)
        _levels[:] = [0] * len(_levels)
        return True
    _levels[:] = _saved
    _saved = None
    return False


def verbose() -> bool:
    """Are ``-v`` lines wanted?"""
    return _verbose


def set_verbose(value: bool = True) -> None:
    global _verbose
    _verbose = bool(value)


def reset() -> None:
    """Every class back to 0, toggle and verbose off (tests)."""
    global _saved
    _levels[:] = [0] * len(_levels)
    _saved = None
    set_verbose(False)
