"""Logging: isakmpd's line format on stderr, syslog otherwise, and which events print.

This module owns where log events go and what is printed (inventory §1.1 ``-d``
``-D`` ``-v``, §1.4, §4.10; isakmpd's log.c). Everything logs through
twisted.logger; :func:`begin_logging` installs one observer:

* with ``-d`` (``to_stderr``), lines in isakmpd's format on stderr, local time
  with microseconds::

      HHMMSS.uuuuuu Default <text>          normal lines
      HHMMSS.uuuuuu Mesg 10 <text>          debug lines: class name and level
      HHMMSS.uuuuuu Report> <text>          report lines (FIFO ``r``)

  isakmpd appends `` [priv]`` to the lines of its privileged parent process;
  this daemon is one process, so no line carries it;
* otherwise syslog (ident ``isakmpd``, LOG_PID, facility daemon) with isakmpd's
  priorities: debug lines LOG_INFO, normal lines LOG_NOTICE, warnings
  LOG_WARNING, errors LOG_ERR, critical LOG_CRIT, report lines LOG_ALERT.

What is printed (decided here, documented in the README's logging notes):

* every event of level info and above that the daemon's own modules emit
  (namespace ``isakmpd...``), which is what isakmpd prints without ``-D``: its
  log_print lines (refused and dropped messages, failed negotiations, what the
  operator should know) plus our one-line SA life-cycle records (ISAKMP/IPsec SA
  established, deleted, expired), which isakmpd only has as ``-v`` or debug
  lines; scripts and the interoperability tests read them;
* warnings and errors from anywhere (Twisted included);
* debug events only when their class's level admits them (``-D``, ``[General]
  Loglevel``, FIFO ``D``): a debug event names its class and level with the
  fields of :func:`isakmpd.debug.fields`; one without them counts as class Misc
  level 50; Twisted's own informational lines (ports opened, reactor started)
  count as Misc level 20;
* ``-v`` lines (phase 1 / quick mode done, peer deleted a live SA) are normal
  lines that the engine emits only when :func:`isakmpd.debug.verbose` is on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

from isakmpd import debug
from isakmpd.debug import CLASS_KEY, CLASS_NAMES, LEVEL_KEY, MAX_LEVEL, DebugClass

__all__ = [
    "REPORT_KEY",
    "SyslogObserver",
    "apply_config_levels",
    "apply_settings",
    "begin_logging",
    "format_line",
    "info",
    "make_observer",
    "parse_level_setting",
    "wanted",
]

# An event with this field true is a report line ("Report>", LOG_ALERT) and is
# always printed, e.g. log.info("{line}", line=text, isakmpd_report=True).
REPORT_KEY = "isakmpd_report"

UNTAGGED_DEBUG = (DebugClass.MISC, 50)       # a debug event that names no class
FOREIGN_INFO = (DebugClass.MISC, 20)         # Twisted's own informational lines


def info(logger: Any, fmt: str, **kwargs: Any) -> None:
    """``logger.info(fmt, **kwargs)``: the same event to the same observer, cheaper.

    Twisted's ``Logger.emit`` first checks its level against
    ``LogLevel.iterconstants()``, which sorts the levels on every call; for the SA
    life-cycle lines (one or two per negotiated SA) that check is most of the cost of
    a line nobody prints. For a plain twisted ``Logger`` this builds the event emit
    builds (the fields of twisted.logger's event format) and hands it to the
    logger's observer; any other logger gets ``logger.info``.
    """
    if type(logger) is not Logger:
        logger.info(fmt, **kwargs)
        return
    kwargs.update(log_logger=logger, log_level=_INFO, log_namespace=logger.namespace,
                  log_source=logger.source, log_format=fmt, log_time=time.time())
    if "log_trace" in kwargs:
        kwargs["log_trace"].append((logger, logger.observer))
    logger.observer(kwargs)


_INFO = LogLevel.info


def _ours(event: dict[str, Any]) -> bool:
    namespace = event.get("log_namespace") or ""
    return namespace == "isakmpd" or namespace.startswith(("isakmpd.", "__main__"))


def _debug_tag(event: dict[str, Any]) -> tuple[int, int] | None:
    """(class, level) of an event printed as a debug line; None for normal lines."""
    level = event.get("log_level", LogLevel.info)
    if CLASS_KEY in event:
        return int(event[CLASS_KEY]), int(event.get(LEVEL_KEY, 0))
    if level == LogLevel.debug:
        return UNTAGGED_DEBUG
    if level == LogLevel.info and not _ours(event):
        return FOREIGN_INFO
    return None


def wanted(event: dict[str, Any]) -> bool:
    """Should this event be printed at the current debug levels?"""
    if event.get(REPORT_KEY):
        return True
    tag = _debug_tag(event)
    if tag is None:
        return True
    debug_class, message_level = tag
    if not 0 <= debug_class < len(CLASS_NAMES):
        return False
    # isakmpd prints nothing of a class whose level is 0 (log.c log_debug).
    return debug.level(DebugClass(debug_class)) > 0 and \
        debug.enabled(DebugClass(debug_class), message_level)


def _text(event: dict[str, Any]) -> str:
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback().rstrip()}"
    return text


def format_line(event: dict[str, Any]) -> str:
    """The event as isakmpd writes it to stderr (no newline at the end)."""
    when = event.get("log_time")
    if when is None:
        when = time.time()
    local = time.localtime(when)
    micros = min(int((when - int(when)) * 1_000_000), 999_999)
    stamp = f"{local.tm_hour:02d}{local.tm_min:02d}{local.tm_sec:02d}.{micros:06d}"
    if event.get(REPORT_KEY):
        tag = "Report>"
    else:
        debug_tag = _debug_tag(event)
        if debug_tag is None:
            tag = "Default"
        else:
            debug_class, message_level = debug_tag
            name = CLASS_NAMES[debug_class] if 0 <= debug_class < len(CLASS_NAMES) \
                else "Unkn"
            tag = f"{name} {message_level:02d}"
    # Every line of a multi-line text (a payload dump, a traceback) gets the prefix,
    # as isakmpd's log_debug_buf writes each line of a dump as a log line.
    return "\n".join(f"{stamp} {tag} {line}" for line in _text(event).split("\n"))


def _stderr_format(event: dict[str, Any]) -> str | None:
    if not wanted(event):
        return None
    return format_line(event) + "\n"


# syslog priorities (syslog.h), so that tests need not import the syslog module.
LOG_CRIT, LOG_ALERT, LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO = 2, 1, 3, 4, 5, 6


def syslog_priority(event: dict[str, Any]) -> int:
    """isakmpd's priority for an event (log.c: log_debug INFO, log_print NOTICE, ...)."""
    if event.get(REPORT_KEY):
        return LOG_ALERT
    if _debug_tag(event) is not None:
        return LOG_INFO
    level = event.get("log_level", LogLevel.info)
    if level == LogLevel.critical:
        return LOG_CRIT
    if level == LogLevel.error:
        return LOG_ERR
    if level == LogLevel.warn:
        return LOG_WARNING
    return LOG_NOTICE


@implementer(ILogObserver)
class SyslogObserver:
    """Sends wanted events to syslog, one call per line of text.

    ``syslog_module`` is the standard ``syslog`` module unless a test passes a
    stand-in with ``openlog``/``syslog`` and the LOG_* constants.
    """

    def __init__(self, syslog_module: Any = None) -> None:
        if syslog_module is None:
            import syslog as syslog_module
        self.syslog = syslog_module
        syslog_module.openlog("isakmpd", syslog_module.LOG_PID | syslog_module.LOG_CONS,
                              syslog_module.LOG_DAEMON)

    def __call__(self, event: dict[str, Any]) -> None:
        if not wanted(event):
            return
        priority = syslog_priority(event)
        for line in _text(event).splitlines() or [""]:
            self.syslog.syslog(priority, line)


# -- levels -------------------------------------------------------------------------


def apply_settings(settings: Any) -> None:
    """The command line's ``-D`` settings in order, and ``-v`` (when given)."""
    for debug_class, value in getattr(settings, "debug", ()):
        debug.set_level(None if debug_class is None else DebugClass(debug_class), value)
    if getattr(settings, "verbose", False):
        debug.set_verbose(True)


def parse_level_setting(text: str) -> tuple[DebugClass | None, int]:
    """``class=level`` or ``A=level`` (``[General] Loglevel``); raises ValueError."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not value.isdigit() or int(value) > MAX_LEVEL:
        raise ValueError(f"invalid logging class or level: {text}")
    if name.upper() == "A":
        return None, int(value)
    if not name.isdigit() or int(name) not in DebugClass._value2member_map_:
        raise ValueError(f"invalid logging class or level: {text}")
    return DebugClass(int(name)), int(value)


def apply_config_levels(store: Any, logger: Any = None) -> None:
    """``[General] Logverbose`` and ``Loglevel``, applied on top of the current levels.

    As isakmpd's log_reinit (inventory §4.10): Logverbose present (any value)
    turns ``-v`` on; each Loglevel element sets one class or all; a class that
    is no longer listed keeps its level; a bad element is logged and skipped.
    Called at start and by reinitialisation (SIGHUP, FIFO ``R``).
    """
    if logger is None:
        from twisted.logger import Logger
        logger = Logger(namespace="isakmpd.log")
    if store.has("General", "Logverbose"):
        debug.set_verbose(True)
    for element in store.get_list("General", "Loglevel"):
        try:
            debug_class, value = parse_level_setting(element)
        except ValueError as error:
            logger.warn("[General] Loglevel: {error}", error=str(error))
            continue
        classes = list(DebugClass) if debug_class is None else [debug_class]
        for one in classes:
            old = debug.level(one)
            if old != value:
                debug.set_level(one, value)
                logger.info("log level changed from {old} to {new} for class {cls}",
                            old=old, new=value, cls=int(one))


def toggle(logger: Any = None) -> bool:
    """The FIFO's ``D T`` with isakmpd's debug line (Misc 50) on both sides."""
    if logger is None:
        from twisted.logger import Logger
        logger = Logger(namespace="isakmpd.log")
    if debug.enabled(DebugClass.MISC, 50):
        logger.debug("debug levels cleared", **debug.fields(DebugClass.MISC, 50))
    cleared = debug.toggle()
    if not cleared and debug.enabled(DebugClass.MISC, 50):
        logger.debug("debug levels restored", **debug.fields(DebugClass.MISC, 50))
    return cleared


# -- observers ----------------------------------------------------------------------


def make_observer(settings: Any = None, *, to_stderr: bool, stream: IO[str] | None = None,
                  syslog_module: Any = None) -> Callable[[dict[str, Any]], None]:
    """The observer :func:`begin_logging` installs (for callers that install it
    themselves, e.g. through twistd's ILogObserver component)."""
    if to_stderr:
        return FileLogObserver(stream if stream is not None else sys.stderr,
                               _stderr_format)
    return SyslogObserver(syslog_module)


# Where twistd_observer() sends events: set by the ``twistd isakmpd`` options
# (isakmpd.tap.Options.fit_twistd) before twistd builds its observer.
_twistd_to_stderr = False


def use_for_twistd(*, to_stderr: bool) -> str:
    """Make :func:`twistd_observer` write to stderr (``-d``) or syslog; returns its
    name for twistd's ``--logger`` option."""
    global _twistd_to_stderr
    _twistd_to_stderr = to_stderr
    return f"{__name__}.twistd_observer"


def twistd_observer() -> Callable[[dict[str, Any]], None]:
    """twistd's ``--logger`` factory: isakmpd's line format on stderr, or syslog with
    isakmpd's priorities, as the console script logs."""
    return make_observer(to_stderr=_twistd_to_stderr)


def begin_logging(settings: Any, *, to_stderr: bool, stream: IO[str] | None = None,
                  syslog_module: Any = None, beginner: Any = None,
                  ) -> Callable[[dict[str, Any]], None]:
    """Apply ``-D``/``-v`` and send every log event to stderr (``-d``) or syslog.

    Returns the installed observer. ``beginner`` is twisted.logger's
    globalLogBeginner unless a test passes its own.
    """
    apply_settings(settings)
    observer = make_observer(settings, to_stderr=to_stderr, stream=stream,
                             syslog_module=syslog_module)
    (beginner or globalLogBeginner).beginLoggingTo([observer], redirectStandardIO=False)
    return observer
