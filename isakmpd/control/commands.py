"""The FIFO's commands (isakmpd ``ui.c``, inventory §1.3): parsing and carrying out.

:func:`parse` turns one line into a command object or raises :class:`CommandError`
saying what is wrong; :class:`Controller` carries commands out on the running
daemon. The first character of a line picks the command:

``c NAME``
    keep connection NAME up (added to the active list, checked at once).
``C set [SECTION]:TAG=VALUE [force]``, ``C add ...=VALUE``, ``C rmv ...=VALUE``,
``C rm [SECTION]:TAG``, ``C rms [SECTION]``, ``C get [SECTION]:TAG``
    change the running configuration, one transaction per line (``set`` without
    a fourth word leaves an existing tag alone; ``add``/``rmv`` edit a comma
    list); ``get`` writes the value into the result file (empty when unset). A
    change of ``[Phase 2]`` Connections or Passive-connections rebuilds the
    connection lists 5 seconds later; a newer change restarts that delay. SIGHUP
    and ``R`` drop every change (the file is read afresh).
``d COOKIES MSGID``
    delete (with DELETE) the SA with these cookies (32 hex digits) and message
    ID (8 hex digits, or ``-`` for the phase 1 SA).
``D CLASS LEVEL``, ``D A LEVEL``, ``D T``
    debug level of one class or all; ``T`` toggles all off and back.
``M active``, ``M passive`` (any prefix)
    initiate connections, or not.
``p on``, ``p on=PATH``, ``p off``
    packet capture.
``Q``
    clean shutdown, as SIGTERM (only the exact line ``Q``).
``R``, ``r``, ``S``, ``T``
    reinitialise (as SIGHUP); report to the log; SAs to the result file; tear
    down every phase 2 SA.
``t [main|quick] NAME``
    tear down: NAME is an address (every SA of that phase with that peer) or an
    SA name (phase 2: also dropped from the active connections).

A malformed or unknown line is logged, naming the line and what is wrong, and
ignored; nothing is ever written back to the FIFO, and no line stops the reader.
Words are limited to 200 characters, as isakmpd's ``%200s``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from isakmpd import debug
from isakmpd import log as isakmpd_log
from isakmpd.debug import MAX_LEVEL, DebugClass
from isakmpd.ike.sa import IpsecSA, SaState

__all__ = [
    "CONNECTION_REINIT_DELAY",
    "CommandError",
    "Controller",
    "parse",
]

log = Logger(namespace="isakmpd.control")

MAX_WORD = 200                 # isakmpd's sscanf("%200s")
CONNECTION_REINIT_DELAY = 5.0  # seconds after a change of the connection lists (ui.c)
_CONNECTION_TAGS = frozenset({"connections", "passive-connections"})


class CommandError(ValueError):
    """A FIFO line that is not a valid command; the message says why."""


# -- commands ------------------------------------------------------------------------

@dataclass(frozen=True)
class Connect:
    name: str


@dataclass(frozen=True)
class Config:
    op: str                   # set, add, rmv, rm, rms, get
    section: str
    tag: str | None = None
    value: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Delete:
    cookies: bytes
    message_id: int | None    # None: the phase 1 SA


@dataclass(frozen=True)
class Debug:
    debug_class: DebugClass | None = None    # None: all (A)
    level: int = 0
    toggle: bool = False


@dataclass(frozen=True)
class Mode:
    passive: bool


@dataclass(frozen=True)
class Capture:
    on: bool
    path: str | None = None


@dataclass(frozen=True)
class Simple:
    letter: str               # Q, R, r, S, T


@dataclass(frozen=True)
class Teardown:
    phase: int
    name: str


Command = Connect | Config | Delete | Debug | Mode | Capture | Simple | Teardown


# -- parsing -------------------------------------------------------------------------

def _word(text: str, what: str) -> str:
    if len(text) > MAX_WORD:
        raise CommandError(f"{what} is longer than {MAX_WORD} characters")
    return text


def parse(line: str) -> Command:
    """The command on ``line`` (without its newline); CommandError when malformed."""
    if not line:
        raise CommandError("empty line")
    letter = line[0]
    words = line[1:].split()
    if letter == "c":
        if not words:
            raise CommandError("c needs a connection name: c NAME")
        return Connect(_word(words[0], "the connection name"))
    if letter == "C":
        return _parse_config(line)
    if letter == "d":
        return _parse_delete(words)
    if letter == "D":
        return _parse_debug(words)
    if letter == "M":
        if not words:
            raise CommandError("M needs active or passive")
        word = words[0].lower()
        if "active".startswith(word):
            return Mode(passive=False)
        if "passive".startswith(word):
            return Mode(passive=True)
        raise CommandError(f"M takes active or passive, not {words[0]!r}")
    if letter == "p":
        return _parse_capture(line)
    if letter == "Q":
        if line != "Q":
            raise CommandError("shutdown is the line Q alone")
        return Simple("Q")
    if letter in "RrST":
        return Simple(letter)
    if letter == "t":
        return _parse_teardown(words)
    raise CommandError(f"unknown command {letter!r} (known: c C d D M p Q R r S t T)")


def _parse_config(line: str) -> Config:
    rest = line[1:].lstrip(" \t")
    subcommand, _, rest = rest.partition(" ")
    op = subcommand.strip().lower()
    if op not in ("set", "add", "rmv", "rm", "rms", "get"):
        raise CommandError(f"C takes set, add, rmv, rm, rms or get, not {subcommand!r}"
                           if subcommand else "C needs set, add, rmv, rm, rms or get")
    rest = rest.lstrip(" \t")
    if not rest.startswith("["):
        raise CommandError(f"C {op}: expected [SECTION] after {op}")
    end = rest.find("]")
    if end < 0:
        raise CommandError(f"C {op}: the section name has no closing ]")
    section = _word(rest[1:end], "the section name")
    if not section.strip():
        raise CommandError(f"C {op}: the section name is empty")
    rest = rest[end + 1:]
    if op == "rms":
        if rest.strip():
            raise CommandError(f"C rms takes [SECTION] only, not {rest.strip()!r} after it")
        return Config(op, section)
    if not rest.startswith(":"):
        raise CommandError(f"C {op}: expected :TAG after [{section}]")
    rest = rest[1:]
    if op in ("rm", "get"):
        tag = _word(rest.strip(), "the tag")
        if not tag:
            raise CommandError(f"C {op}: the tag is empty")
        return Config(op, section, tag)
    tag, equals, value_text = rest.partition("=")
    # isakmpd keeps blanks before '=' in the tag; a tag never has them, so they go.
    tag = _word(tag.strip(), "the tag")
    if not equals:
        raise CommandError(f"C {op}: expected [SECTION]:TAG=VALUE")
    if not tag:
        raise CommandError(f"C {op}: the tag is empty")
    values = value_text.split()
    if not values:
        raise CommandError(f"C {op}: the value is empty (values with blanks cannot be "
                           "set through the FIFO)")
    value = _word(values[0], "the value")
    # Only set looks at a fourth word ("force", but any word will do, as in isakmpd).
    return Config(op, section, tag, value, force=op == "set" and len(values) > 1)


def _parse_delete(words: list[str]) -> Delete:
    if len(words) != 2:
        raise CommandError("d needs the cookies and the message ID: d COOKIES MSGID "
                           "(MSGID - for the phase 1 SA)")
    cookies_text, msgid_text = words
    try:
        if len(cookies_text) != 32:
            raise ValueError
        cookies = bytes.fromhex(cookies_text)
    except ValueError:
        raise CommandError(f"d: {cookies_text[:40]!r} is not 32 hex digits "
                           "(initiator and responder cookie)") from None
    if msgid_text == "-":
        return Delete(cookies, None)
    try:
        if len(msgid_text) != 8:
            raise ValueError
        message_id = int(msgid_text, 16)
    except ValueError:
        raise CommandError(f"d: {msgid_text[:40]!r} is not a message ID of 8 hex digits "
                           "or -") from None
    return Delete(cookies, message_id)


def _parse_debug(words: list[str]) -> Debug:
    if len(words) == 1 and words[0].upper() == "T":
        return Debug(toggle=True)
    if len(words) != 2:
        raise CommandError("D needs CLASS LEVEL, A LEVEL or T")
    class_text, level_text = words
    if not level_text.isdigit() or int(level_text) > MAX_LEVEL:
        raise CommandError(f"D: level {level_text!r} is not 0-{MAX_LEVEL}")
    if class_text.upper() == "A":
        return Debug(None, int(level_text))
    if not class_text.isdigit() or int(class_text) not in DebugClass._value2member_map_:
        raise CommandError(f"D: class {class_text!r} is not 0-{len(DebugClass) - 1} or A")
    return Debug(DebugClass(int(class_text)), int(level_text))


def _parse_capture(line: str) -> Capture:
    rest = line[1:].strip()
    if rest == "off":
        return Capture(False)
    if rest == "on":
        return Capture(True)
    if rest.startswith("on="):
        path = rest[3:].strip()
        if not path:
            raise CommandError("p on=PATH: the path is empty")
        return Capture(True, path)
    raise CommandError("p takes on, on=PATH or off")


def _parse_teardown(words: list[str]) -> Teardown:
    if len(words) >= 2:
        kind = words[0].lower()
        if kind == "main":
            return Teardown(1, _word(words[1], "the name"))
        if kind == "quick":
            return Teardown(2, _word(words[1], "the name"))
        raise CommandError(f"t: {words[0]!r} is neither main nor quick "
                           "(t [main|quick] NAME)")
    if len(words) == 1:
        return Teardown(2, _word(words[0], "the name"))
    raise CommandError("t needs a name or an address: t [main|quick] NAME")


def _address(text: str) -> str | None:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


# -- carrying out ----------------------------------------------------------------------

class Controller:
    """Carries out FIFO commands on one daemon.

    ``daemon`` is the :class:`~isakmpd.service.IsakmpdService` (or a test double)
    with ``engine``, ``connections``, ``reactor`` and the API of the service
    contract: ``reinitialise()``, ``write_report(path)``, ``write_result(text)``,
    ``shutdown()`` and, when packet capture exists, ``capture``.
    """

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self._reinit_call: IDelayedCall | None = None
        # Message ID of each IPsec SA's Quick Mode, for ``d`` (the SA keeps none).
        self.message_ids: dict[IpsecSA, int] = {}

    # -- wiring ----------------------------------------------------------------------

    def watch(self, engine: Any) -> None:
        """Learn the message ID of every Quick Mode that ends with an IPsec SA."""
        engine.on_exchange_done.append(self._exchange_done)

    def _exchange_done(self, exchange: Any) -> None:
        result = getattr(exchange, "result", None)
        if isinstance(result, IpsecSA) and not exchange.failed:
            for sa in [sa for sa in self.message_ids if sa.state is SaState.DEAD]:
                del self.message_ids[sa]
            self.message_ids[result] = exchange.message_id

    def stop(self) -> None:
        if self._reinit_call is not None and self._reinit_call.active():
            self._reinit_call.cancel()
        self._reinit_call = None

    # -- lines -----------------------------------------------------------------------

    def handle_line(self, line: str) -> None:
        """Parse and carry out one line; never raises."""
        if not line.strip():
            return
        shown = line if len(line) <= 120 else line[:117] + "..."
        try:
            command = parse(line)
        except CommandError as error:
            log.warn("control: command {line!r} ignored: {error}", line=shown,
                     error=str(error))
            return
        # isakmpd logs the commands it takes in debug class UI only.
        if debug.enabled(DebugClass.UI, 30):
            log.debug("control: {line!r}", line=shown, **debug.fields(DebugClass.UI, 30))
        try:
            self.execute(command)
        except CommandError as error:
            log.warn("control: command {line!r} failed: {error}", line=shown,
                     error=str(error))
        except Exception:  # noqa: BLE001 - a command must never stop the reader
            log.failure("control: internal error carrying out {line!r}", line=shown)

    def execute(self, command: Command) -> None:
        if isinstance(command, Connect):
            self._connect(command.name)
        elif isinstance(command, Config):
            self._config(command)
        elif isinstance(command, Delete):
            self._delete(command)
        elif isinstance(command, Debug):
            self._debug(command)
        elif isinstance(command, Mode):
            self._mode(command.passive)
        elif isinstance(command, Capture):
            self._capture(command)
        elif isinstance(command, Teardown):
            self._teardown(command.phase, command.name)
        elif command.letter == "Q":
            self.daemon.shutdown()
        elif command.letter == "R":
            self.daemon.reinitialise()
        elif command.letter == "r":
            self.daemon.write_report(None)
        elif command.letter == "S":
            from isakmpd.control.report import sa_result
            self.daemon.write_result(sa_result(self.daemon.engine))
        elif command.letter == "T":
            self._teardown_all()

    # -- c, M ------------------------------------------------------------------------

    def _connect(self, name: str) -> None:
        connections = self.daemon.connections
        if not self.daemon.engine.store.has(name):
            raise CommandError(f"there is no [{name}] section to connect")
        if connections.add(name):
            log.info("control: connection {name} added to the active connections",
                     name=name)
        else:
            log.info("control: connection {name} is already active", name=name)

    def _mode(self, passive: bool) -> None:
        self.daemon.connections.set_passive(passive)
        log.info("control: mode {mode}: {what}", mode="passive" if passive else "active",
                 what="no connection is initiated" if passive
                 else "connections are initiated")

    # -- C ---------------------------------------------------------------------------

    def _config(self, command: Config) -> None:
        store = self.daemon.engine.store
        if command.op == "get":
            value = store.get_str(command.section, command.tag or "")
            self.daemon.write_result("" if value is None else value + "\n")
            return
        with store.begin() as trans:
            if command.op == "set":
                trans.set(command.section, command.tag or "", command.value or "",
                          force=command.force)
            elif command.op == "add":
                trans.add(command.section, command.tag or "", command.value or "")
            elif command.op == "rmv":
                trans.rmv(command.section, command.tag or "", command.value or "")
            elif command.op == "rm":
                trans.remove(command.section, command.tag or "")
            else:
                trans.remove_section(command.section)
        changed = trans.results[0] if trans.results else False
        where = f"[{command.section}]" + (f":{command.tag}" if command.tag else "")
        if changed:
            log.info("control: configuration {op} {where} done", op=command.op, where=where)
        else:
            log.info("control: configuration {op} {where} changed nothing{why}",
                     op=command.op, where=where,
                     why=" (the tag exists; add a fourth word to override)"
                     if command.op == "set" else "")
        if (command.op in ("set", "add", "rmv") and command.section.lower() == "phase 2"
                and (command.tag or "").lower() in _CONNECTION_TAGS):
            self._schedule_connection_reinit()

    def _schedule_connection_reinit(self) -> None:
        if self._reinit_call is not None and self._reinit_call.active():
            self._reinit_call.cancel()
        self._reinit_call = self.daemon.reactor.callLater(CONNECTION_REINIT_DELAY,
                                                          self._connection_reinit)

    def _connection_reinit(self) -> None:
        self._reinit_call = None
        connections = self.daemon.connections
        connections.load()
        log.info("control: connection lists rebuilt: active {active}",
                 active=", ".join(connections.active) or "none")
        connections.check()

    # -- d, t, T ---------------------------------------------------------------------

    def _delete(self, command: Delete) -> None:
        engine = self.daemon.engine
        isakmp = engine.sadb.find_isakmp_by_cookies(command.cookies)
        if isakmp is None:
            raise CommandError(f"no ISAKMP SA with cookies {command.cookies.hex()}")
        if command.message_id is None:
            log.info("control: deleting {sa}", sa=isakmp.describe())
            engine.delete_isakmp_sa(isakmp)
            return
        for ipsec in engine.sadb.ipsec_for_isakmp(isakmp):
            if self.message_ids.get(ipsec) == command.message_id:
                log.info("control: deleting {sa}", sa=ipsec.describe())
                engine.delete_ipsec_sa(ipsec)
                return
        raise CommandError(f"no IPsec SA with message ID {command.message_id:08x} on the "
                           f"ISAKMP SA {command.cookies.hex()}")

    def _teardown(self, phase: int, name: str) -> None:
        engine = self.daemon.engine
        connections = self.daemon.connections
        address = _address(name)
        if address is not None:
            # By peer address (isakmpd compares the port too, with port 0 from the
            # FIFO, so its address form matches nothing; the address alone is meant).
            if phase == 1:
                sas: list[Any] = [sa for sa in engine.sadb.isakmp_by_address(address)
                                  if sa.ready]
            else:
                sas = [sa for sa in engine.sadb.ipsec_by_address(address) if sa.ready]
            if not sas:
                raise CommandError(f"no phase {phase} SA with peer {address}")
            for sa in sas:
                if connections.remove(sa.name):
                    log.info("control: connection {name} is no longer kept up",
                             name=sa.name)
                self._delete_sa(sa)
            return
        if phase == 2:
            if connections.remove(name):
                log.info("control: connection {name} is no longer kept up", name=name)
            sas = engine.sadb.ipsec_by_name(name)
        else:
            sas = [sa for sa in engine.sadb.isakmp_sas() if sa.name.lower() == name.lower()]
        for sa in sas:
            self._delete_sa(sa)
        if not sas:
            log.info("control: no phase {phase} SA named {name}", phase=phase, name=name)

    def _delete_sa(self, sa: Any) -> None:
        log.info("control: tearing down {sa}", sa=sa.describe())
        if isinstance(sa, IpsecSA):
            self.daemon.engine.delete_ipsec_sa(sa)
        else:
            self.daemon.engine.delete_isakmp_sa(sa)

    def _teardown_all(self) -> None:
        sas = self.daemon.engine.sadb.ipsec_sas()
        for sa in sas:
            self.daemon.connections.remove(sa.name)
            self._delete_sa(sa)
        log.info("control: {count} phase 2 SA(s) torn down", count=len(sas))

    # -- D, p ------------------------------------------------------------------------

    def _debug(self, command: Debug) -> None:
        if command.toggle:
            # isakmpd's "debug levels cleared" / "restored" lines (Misc 50).
            isakmpd_log.toggle()
            return
        debug.set_level(command.debug_class, command.level)
        which = "every class" if command.debug_class is None else \
            f"class {int(command.debug_class)} ({command.debug_class.name.lower()})"
        log.info("control: debug level of {which} set to {value}", which=which,
                 value=command.level)

    def _capture(self, command: Capture) -> None:
        capture = getattr(self.daemon, "capture", None)
        if capture is None:
            raise CommandError("packet capture is not available")
        if not command.on:
            if not capture.active:
                log.info("control: packet capture is not running")
                return
            capture.stop()
            log.info("control: packet capture stopped")
            return
        if capture.active:
            log.info("control: packet capture is already running")
            return
        try:
            capture.start(command.path)
        except OSError as error:       # CaptureError: the file is refused or unusable
            raise CommandError(f"packet capture not started: {error}") from None
        log.info("control: packet capture started{where}",
                 where=f" to {command.path}" if command.path else "")
