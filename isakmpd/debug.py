"""Debug classes and levels: which debug messages are worth producing at all.

isakmpd(8) sorts its debug output into classes, each with a level 0-99 (``-D
class=level``, ``-D A=level`` for all; inventory §1.1, ``log.h``); a message is
printed when its level is at most its class's level. The same gate here decides
before a debug message is even built: emitting a log event costs microseconds, and
the hot paths (a kernel install per SA, a flow per direction) must not pay for
messages nobody reads. Levels start at 0: no debug output until asked for.
"""

from __future__ import annotations

import enum

__all__ = ["DebugClass", "enabled", "level", "reset", "set_level"]


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


MAX_LEVEL = 99
_levels = [0] * len(DebugClass)


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


def reset() -> None:
    """Every class back to 0 (tests)."""
    _levels[:] = [0] * len(_levels)
