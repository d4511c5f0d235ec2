"""The exchange base: a script of send/receive steps, the send path, retransmission.

This module owns what isakmpd's ``exchange.c`` and ``message.c`` do for every
exchange (inventory §4.1), so that each concrete exchange is only data plus small
steps (DESIGN.md §3):

* ``INITIATOR_STEPS`` / ``RESPONDER_STEPS`` name the ordered ``send_*`` and
  ``recv_*`` methods of each role; ``MESSAGES`` says, per receive step, which
  payloads the message must and may carry, and ``ENCRYPTED`` which steps travel
  encrypted; each class turns these into one script per role when it is created
  (what a message needs is then looked up, not worked out, per message);
* the send path encodes, encrypts with the exchange's IV chain (phase 1: the ISAKMP
  SA's chain; phase 2 and informational: a chain from hash(last phase 1 IV | M-ID))
  and remembers the exact bytes sent;
* retransmission: after the n-th transmission the next follows after 2n+5 s (7, 9,
  11 ...) until ``[General] Retransmits`` is exceeded ("giving up"); the exchange
  then lives until ``Exchange-max-time`` and fails. The final message of a script is
  never timer-retransmitted, nor is the responder's first phase 1 reply (it is
  resent when the initiator's message arrives again, byte-identical);
* duplicates: a message byte-identical to the last one received is never processed
  twice (it only triggers a resend of an untimed reply), an older one is ignored;
  any new accepted message cancels the pending retransmission;
* one timer per exchange serves both the retransmissions and ``Exchange-max-time``
  (see :meth:`Exchange._tick`); it is cancelled when the exchange succeeds or fails;
* every message is shown to the engine in clear (:meth:`Engine.message_out` before
  encryption at its first transmission, :meth:`Engine.message_in` after
  decryption) for packet capture and debug class Message; steps are logged in
  debug class Exchange.

A step that refuses a message raises :class:`ExchangeError`; ``fatal`` errors end
the exchange (with the notification ``notify`` where one is allowed), others only
drop the message. Nothing here raises out of :meth:`Exchange.receive`.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.python.failure import Failure

from isakmpd import debug
from isakmpd.crypto.keys import IvChain
from isakmpd.crypto.prf import CryptoError
from isakmpd.debug import DebugClass
from isakmpd.ike.policy import NegotiationError
from isakmpd.ike.sa import Address, IsakmpSA
from isakmpd.wire.constants import HEADER_SIZE, ExchangeType, Flag, NotifyType, PayloadType
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.message import Header, Message, encode_payload_chain, pack_header
from isakmpd.wire.payloads import Payload, payload_label

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from isakmpd.ike.engine import Engine

__all__ = ["Exchange", "ExchangeError", "ExchangeFailed", "MessageSpec", "Prehashed"]

# (required payload types, optional payload types) of one received message.
MessageSpec = tuple[tuple[int, ...], tuple[int, ...]]
# One step of a role's script, built once per class (Exchange.__init_subclass__):
# (method name, is a send step, travels encrypted, is timer-retransmitted (send
# steps), required payload types, payload types a message may carry without a
# second look (receive steps)).
Step = tuple[str, bool, bool, bool, frozenset[int], frozenset[int]]
# What a send step may return instead of its payloads when it has already encoded
# all but the first of them (to compute a HASH over them): (the payloads, the type
# of the second one, the chain bytes from the second one on). The send path then
# encodes only the first payload, in front of those bytes.
Prehashed = tuple[list[Payload], int, bytes]

# Private and NAT-T payloads any message may carry without being listed.
_ALWAYS_OPTIONAL = frozenset({PayloadType.VENDOR})
# Members the per-message paths use, as module names (reading an enum class's
# attribute costs a Python-level call in 3.11; see wire.constants.value_map).
_VENDOR = PayloadType.VENDOR
_EXCHANGE = DebugClass.EXCHANGE
_MESSAGE = DebugClass.MESSAGE
_NO_FLAGS = Flag(0)
_ENC = Flag.ENC
# debug.enabled(class, level) as ``_LEVELS[class] >= level``, without a call (this
# is asked several times per message).
_LEVELS = debug.LEVELS
_EXCHANGE_I = int(DebugClass.EXCHANGE)
_MESSAGE_I = int(DebugClass.MESSAGE)
_ENC_BIT = int(Flag.ENC)
_TYPE_OF = operator.attrgetter("payload_type")
# The delay of the first retransmission (2n+5 s after the n-th transmission): no
# retransmission can fall due sooner than this after any moment.
_FIRST_RETRANSMIT = 7


class ExchangeError(Exception):
    """A step refused a message or cannot go on.

    ``notify`` is the notification the RFC prescribes (None: send nothing),
    ``fatal`` says whether the exchange ends (otherwise only the message is dropped),
    ``message`` is the log line, naming what an operator can act on.
    """

    def __init__(self, notify: NotifyType | None, message: str, *, fatal: bool = True,
                 send: bool = True) -> None:
        super().__init__(message)
        self.notify = notify
        self.message = message
        self.fatal = fatal
        self.send = send and notify is not None


class ExchangeFailed(Exception):
    """What the Deferred of a failed exchange carries."""

    def __init__(self, message: str, notify: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.notify = notify


class Exchange:
    """One exchange on one ISAKMP SA, run as a script of steps."""

    EXCHANGE_TYPE: ClassVar[int] = ExchangeType.NONE
    NAME: ClassVar[str] = "exchange"
    INITIATOR_STEPS: ClassVar[tuple[str, ...]] = ()
    RESPONDER_STEPS: ClassVar[tuple[str, ...]] = ()
    MESSAGES: ClassVar[dict[str, MessageSpec]] = {}
    ENCRYPTED: ClassVar[frozenset[str]] = frozenset()
    # Send steps whose message is not timer-retransmitted (besides the final one).
    UNTIMED: ClassVar[frozenset[str]] = frozenset()
    PHASE: ClassVar[int] = 2
    # The scripts of both roles, from the tables above.
    _INITIATOR_SCRIPT: ClassVar[tuple[Step, ...]] = ()
    _RESPONDER_SCRIPT: ClassVar[tuple[Step, ...]] = ()

    # Per-exchange state that starts out the same for every exchange: class
    # defaults, replaced on the instance when it changes (fewer stores and a
    # smaller instance dict for the hundreds of exchanges made per second).
    step: int = 0
    done: bool = False
    failed: bool = False
    result: Any = None
    last_sent: bytes | None = None
    last_received: bytes | None = None
    _replied_to_last: bool = False
    transmissions: int = 0
    # Every message taken (a tuple: an exchange takes two or three).
    _seen: tuple[bytes, ...] = ()
    _waiters: tuple[Deferred[Any], ...] = ()
    _chain: IvChain | None = None           # phase 2 chain (phase 1 uses sa.iv)
    # The one timer (see _tick), the clock time it was set for, the
    # Exchange-max-time deadline (none until start()) and the time of the next
    # retransmission (None: none pending).
    _timer: IDelayedCall | None = None
    _timer_at: float = 0.0
    _deadline: float = math.inf
    _retransmit_at: float | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._INITIATOR_SCRIPT = cls._script_of(cls.INITIATOR_STEPS)
        cls._RESPONDER_SCRIPT = cls._script_of(cls.RESPONDER_STEPS)

    @classmethod
    def _script_of(cls, names: tuple[str, ...]) -> tuple[Step, ...]:
        script = []
        for index, name in enumerate(names):
            required, optional = cls.MESSAGES.get(name, ((), ()))
            # What passes without check_payloads: listed types, and VID in phase 1
            # (anywhere else it is refused, so it takes the long way).
            plain = frozenset(required) | frozenset(optional)
            plain = (plain | _ALWAYS_OPTIONAL if cls.PHASE == 1
                     else plain - _ALWAYS_OPTIONAL)
            script.append((name, name.startswith("send_"), name in cls.ENCRYPTED,
                           index + 1 < len(names) and name not in cls.UNTIMED,
                           frozenset(required), plain))
        return tuple(script)

    def __init__(self, engine: Engine, sa: IsakmpSA, *, initiator: bool, message_id: int,
                 local: Address, remote: Address) -> None:
        self.engine = engine
        self.sa = sa
        self.initiator = initiator
        self.message_id = message_id
        self.local = local
        self.remote = remote
        self._script = self._INITIATOR_SCRIPT if initiator else self._RESPONDER_SCRIPT
        self.on_done: list[Callable[[Exchange], None]] = []

    # -- description -------------------------------------------------------------

    @property
    def role(self) -> str:
        return "initiator" if self.initiator else "responder"

    def describe(self) -> str:
        return (f"{self.NAME} {self.role} with {self.remote[0]} (peer {self.sa.name}, "
                f"msgid {self.message_id:08x})")

    def __repr__(self) -> str:
        return f"<{self.describe()} step {self.step}/{len(self._script)}>"

    # -- life cycle --------------------------------------------------------------

    def wait(self) -> Deferred[Any]:
        """A Deferred firing with the result (or ExchangeFailed) when the exchange ends."""
        d: Deferred[Any] = Deferred()
        if self.done:
            if self.failed:
                d.errback(self.result)
            else:
                d.callback(self.result)
        else:
            self._waiters += (d,)
        return d

    def start(self) -> None:
        """Arm the Exchange-max-time deadline; an initiator sends its first message."""
        engine = self.engine
        clock = engine.clock
        max_time = engine.max_exchange_time
        now = clock.seconds()
        self._deadline = deadline = now + max_time
        # The timer is set for the first moment a retransmission could fall due
        # (or the deadline, if sooner): a timed message sent now, or in answer to
        # the next message, finds it already in time, so most exchanges make one
        # timer and cancel it, never moving it (see _tick).
        if max_time < _FIRST_RETRANSMIT:
            self._timer_at, delay = deadline, max_time
        else:
            self._timer_at, delay = now + _FIRST_RETRANSMIT, _FIRST_RETRANSMIT
        self._timer = clock.callLater(delay, self._tick)
        if _LEVELS[_EXCHANGE_I] >= 10:
            self.engine.debug(_EXCHANGE, 10, "{exchange.describe()}: started",
                              exchange=self)
        if self.initiator:
            self._run()

    def _expired(self) -> None:
        self.fail(ExchangeError(None, f"{self.describe()}: no answer within "
                                      f"{self.engine.max_exchange_time} s, exchange "
                                      "timed out"), log=True)

    def succeed(self, result: Any) -> None:
        if self.done:
            return
        self.done = True
        self.result = result
        self._cancel_timers()
        if _LEVELS[_EXCHANGE_I] >= 10:
            self.engine.debug(_EXCHANGE, 10, "{exchange.describe()}: finished",
                              exchange=self)
        for hook in self.on_done:
            hook(self)
        waiters = self._waiters
        if waiters:
            self._waiters = ()
            for d in waiters:
                d.callback(result)

    def fail(self, error: ExchangeError, *, log: bool = True) -> None:
        """End the exchange: log, send the notification if allowed, fire the waiters."""
        if self.done:
            return
        self.done = True
        self.failed = True
        self._cancel_timers()
        if log:
            self.engine.warn("{line}", line=error.message)
        else:
            self.engine.debug(_EXCHANGE, 10,
                              "{exchange.describe()}: ended: {reason}", exchange=self,
                              reason=error.message)
        if error.send and error.notify is not None:
            self.engine.send_exchange_notification(self, error.notify)
        self.failure_cleanup()
        self.result = Failure(ExchangeFailed(error.message, error.notify))
        for hook in self.on_done:
            hook(self)
        waiters = self._waiters
        if waiters:
            self._waiters = ()
            for d in waiters:
                d.errback(self.result)

    def failure_cleanup(self) -> None:
        """Subclasses release what a failed exchange holds (e.g. allocated SPIs)."""

    def abort(self, reason: str) -> None:
        """End quietly (SA deleted under us, shutdown)."""
        self.fail(ExchangeError(None, reason), log=False)

    def _cancel_timers(self) -> None:
        self._drop_timer()
        self._retransmit_at = None

    def _drop_timer(self) -> None:
        """Cancel the exchange's timer, if any, unless it has run or was cancelled
        already (asking active() first would cost a call)."""
        timer = self._timer
        if timer is not None:
            self._timer = None
            try:
                timer.cancel()
            except (AlreadyCalled, AlreadyCancelled):
                pass

    # -- the script ----------------------------------------------------------------

    @property
    def current_step(self) -> str | None:
        return self._script[self.step][0] if self.step < len(self._script) else None

    def _run(self) -> None:
        """Run send steps until the script waits for a message or ends."""
        script = self._script
        engine = self.engine
        try:
            while not self.done and self.step < len(script):
                name, send, encrypted, timed, _required, _plain = script[self.step]
                if not send:
                    return
                if _LEVELS[_EXCHANGE_I] >= 30:
                    engine.debug(_EXCHANGE, 30, "{exchange.describe()}: step {step}",
                                 exchange=self, step=name)
                payloads = getattr(self, name)()
                self.step += 1
                data = self.encode(payloads, encrypted)
                # The send path, here rather than in a method of its own: one frame
                # less per message sent. Any retransmission of our last message is
                # off (the timer stays: see _tick).
                self._retransmit_at = None
                self.last_sent = data
                self._replied_to_last = True
                self.transmissions = 1              # this one (_transmit, without the call)
                engine.transmit(data, self.local, self.remote)
                if timed:
                    self._schedule_retransmit()
            if not self.done and self.step >= len(script):
                self.succeed(self.finish())
        except ExchangeError as error:
            self.fail(error)
        except NegotiationError as error:
            # Our own configuration cannot be used (e.g. no Transforms): nothing to
            # tell the peer.
            self.fail(ExchangeError(None, f"{self.describe()}: {error.message}"))
        except (CryptoError, ValueError) as error:
            self.fail(ExchangeError(None, f"{self.describe()}: {error}"))

    def finish(self) -> Any:
        """Called when the script has run to its end; returns the exchange's result."""
        return None

    # -- sending -------------------------------------------------------------------

    def iv_chain(self) -> IvChain | None:
        if self.PHASE == 1:
            return self.sa.iv
        if self._chain is None and self.sa.iv is not None:
            self._chain = self.sa.iv.iv_for_message_id(self.message_id)
        return self._chain

    def set_iv_chain(self, chain: IvChain) -> None:
        if self.PHASE == 1:
            self.sa.iv = chain
        else:
            self._chain = chain

    def encode(self, payloads: list[Payload] | Prehashed, encrypt: bool) -> bytes:
        """The datagram of a message of this exchange carrying ``payloads``.

        ``payloads`` is what a send step returns: the payloads, or a Prehashed
        (all but the first already encoded), encrypted when ``encrypt`` says so.
        """
        sa = self.sa
        engine = self.engine
        if payloads.__class__ is tuple:         # Prehashed
            payloads, tail_type, tail = payloads  # type: ignore[misc]
            head = payloads[0]
            first, body = head.payload_type, head.encode(tail_type) + tail
        else:
            first, body = encode_payload_chain(payloads)  # type: ignore[arg-type]
        # A Message object only for those who watch messages (capture, debug).
        if not encrypt:
            data = pack_header(sa.icookie, sa.rcookie, first, self.EXCHANGE_TYPE, _NO_FLAGS,
                               self.message_id, HEADER_SIZE + len(body)) + body
            capture = engine.capture        # (engine.watching, without the call)
            if (capture is not None and capture.active) or _LEVELS[_MESSAGE_I] >= 10:
                engine.message_out(self._message(payloads), data, self.local, self.remote)
            return data
        # iv_chain() and set_iv_chain() below, without the calls.
        chain = self.sa.iv if self.PHASE == 1 else self._chain
        if chain is None:
            chain = self.iv_chain()
        if chain is None:
            raise ExchangeError(None, f"{self.describe()}: no keys to encrypt with")
        capture = engine.capture            # (engine.watching, without the call)
        if (capture is not None and capture.active) or _LEVELS[_MESSAGE_I] >= 10:
            # isakmpd logs outgoing messages before encryption (message.c).
            clear = pack_header(sa.icookie, sa.rcookie, first, self.EXCHANGE_TYPE, _NO_FLAGS,
                                self.message_id, HEADER_SIZE + len(body)) + body
            engine.message_out(self._message(payloads), clear, self.local, self.remote)
        ciphertext, chain = chain.encrypt(sa.cipher(), body)
        if self.PHASE == 1:
            sa.iv = chain
        else:
            self._chain = chain
        return pack_header(sa.icookie, sa.rcookie, first, self.EXCHANGE_TYPE, _ENC,
                           self.message_id, HEADER_SIZE + len(ciphertext)) + ciphertext

    def _message(self, payloads: list[Payload]) -> Message:
        return Message(self.sa.icookie, self.sa.rcookie, self.EXCHANGE_TYPE, payloads,
                       _NO_FLAGS, self.message_id)

    def _transmit(self) -> None:
        assert self.last_sent is not None
        self.transmissions += 1
        self.engine.transmit(self.last_sent, self.local, self.remote)

    def _schedule_retransmit(self) -> None:
        delay = 2 * self.transmissions + 5
        at = self._retransmit_at = self.engine.clock.seconds() + delay
        if at < self._deadline:
            self._arm(at, delay)

    def _arm(self, at: float, delay: float) -> None:
        """Have the timer go off at clock time ``at`` (``delay`` from now) at the latest."""
        timer = self._timer
        if timer is not None:
            if self._timer_at <= at:
                return          # in time (if early, _tick sets it again)
            self._drop_timer()
        self._timer_at = at
        self._timer = self.engine.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        """The exchange's one timer: Exchange-max-time, or a retransmission due.

        One DelayedCall serves both, set for the earlier of the two or sooner
        (``_timer_at``). It stays where it is when a retransmission is cancelled
        or planned for later than that: it then wakes the exchange early, and is
        set again here. Only a retransmission due before it makes a new one
        (moving a DelayedCall sooner scans the reactor's heap). When both fall
        due together the exchange fails, as it did when the deadline had its own
        timer, made first.
        """
        self._timer = None
        at = self._timer_at
        if at >= self._deadline:
            self._expired()
            return
        retransmit = self._retransmit_at
        if retransmit is not None and at >= retransmit:
            self._retransmit()
        if self.done or self._timer is not None:
            return
        # Early, or nothing (more) to retransmit: set it for what comes next.
        due = self._deadline
        retransmit = self._retransmit_at
        if retransmit is not None and retransmit < due:
            due = retransmit
        self._arm(due, due - self.engine.clock.seconds())

    def _retransmit(self) -> None:
        self._retransmit_at = None
        if self.done or self.last_sent is None:
            return
        if self.transmissions > self.engine.retransmits:
            self.engine.warn(
                "{exchange}: no answer after {count} transmissions, giving up",
                exchange=self.describe(), count=self.transmissions)
            return
        self.engine.debug(_MESSAGE, 20,
                          "{exchange.describe()}: retransmitting (transmission {n})",
                          exchange=self, n=self.transmissions + 1)
        self._transmit()
        self._schedule_retransmit()

    # -- receiving -----------------------------------------------------------------

    def receive(self, data: bytes, header: Header, local: Address, remote: Address) -> None:
        """Handle one datagram for this exchange. Never raises."""
        # The whole receive path in this one frame (every message takes it).
        try:
            # (received_last, without the call: the last message taken is in _seen)
            if data in self._seen:                  # a duplicate
                self.handle_duplicate(data, local, remote)
                return
            script = self._script
            if self.done or self.step >= len(script) or script[self.step][1]:
                raise ExchangeError(None, f"{self.describe()}: unexpected message "
                                          f"({header.describe()}) in this state, ignored",
                                    fatal=False)
            name, _send, encrypted, _timed, required, plain = script[self.step]
            # Decrypt (when the step is encrypted) and decode; ``chain`` is the IV
            # chain to keep once the message is accepted. (Once a method of its
            # own, open(): one frame less per message.)
            body = data[HEADER_SIZE:]
            # (header.encrypted, without the property's call)
            if encrypted:
                if not int(header.flags) & _ENC_BIT:
                    raise ExchangeError(NotifyType.INVALID_FLAGS,
                                        f"{self.describe()}: cleartext message where an "
                                        "encrypted one is required", fatal=False, send=False)
                # (iv_chain(), called only when a phase 2 chain is still to be made)
                chain = self.sa.iv if self.PHASE == 1 else self._chain
                if chain is None:
                    chain = self.iv_chain()
                if chain is None:
                    raise ExchangeError(None, f"{self.describe()}: encrypted message but "
                                              "no keys", fatal=False)
                try:
                    clear, chain = chain.decrypt(self.sa.cipher(), body)
                    message = Message.from_body(header, clear, allow_padding=True)
                except (CryptoError, DecodeError) as error:
                    raise self.undecodable(error) from None
            else:
                if int(header.flags) & _ENC_BIT:
                    raise ExchangeError(NotifyType.INVALID_FLAGS,
                                        f"{self.describe()}: encrypted message where a "
                                        "cleartext one is expected", fatal=False, send=False)
                try:
                    message = Message.from_body(header, body)
                except DecodeError as error:
                    raise ExchangeError(None if error.silent else error.notify,
                                        f"{self.describe()}: malformed message: {error}",
                                        ) from None
                chain = None
            engine = self.engine
            capture = engine.capture            # (engine.watching, without the call)
            if (capture is not None and capture.active) or _LEVELS[_MESSAGE_I] >= 10:
                engine.message_in(message, data, local, remote)
            if _LEVELS[_EXCHANGE_I] >= 30:
                engine.debug(_EXCHANGE, 30, "{exchange.describe()}: step {step}",
                             exchange=self, step=name)
            present = set(map(_TYPE_OF, message.payloads))
            if not (present >= required and present <= plain):
                self.check_payloads(name, message)     # refuses, or logs what it ignores
            getattr(self, name)(message, local, remote)
            # Accepted: the IV chain moves on, the reply goes where this came from.
            if chain is not None:               # (set_iv_chain, without the call)
                if self.PHASE == 1:
                    self.sa.iv = chain
                else:
                    self._chain = chain
            self.local, self.remote = local, remote
            self._retransmit_at = None              # no more retransmission (see _tick)
            self.last_received = data
            self._seen += (data,)
            self._replied_to_last = False
            self.step += 1
            self._run()
        except (ExchangeError, NegotiationError) as error:
            self._refused(error)
        except Exception as error:  # noqa: BLE001 - a bug must not kill the daemon
            self.engine.log.failure("{exchange}: internal error handling a message",
                                    Failure(error), exchange=self.describe())
            if not self.done:
                self.fail(ExchangeError(None, f"{self.describe()}: internal error: "
                                              f"{error!r}"), log=False)

    def _refused(self, error: ExchangeError | NegotiationError) -> None:
        """A message was refused: end the exchange if ``error`` is fatal, else log it."""
        if isinstance(error, NegotiationError):
            error = ExchangeError(error.notify, f"{self.describe()}: {error.message}")
        if error.fatal and not self.done:
            self.fail(error)
        else:
            self.engine.log.info("{line}", line=error.message)
            if error.send and error.notify is not None:
                self.engine.send_exchange_notification(self, error.notify)

    def received_last(self, data: bytes) -> bool:
        """Was ``data`` the last message this exchange took?"""
        return data == self.last_received

    def handle_duplicate(self, data: bytes, local: Address, remote: Address) -> None:
        """A message we already processed: resend an untimed reply, else ignore."""
        if data == self.last_received and self._replied_to_last and self.last_sent \
                and self._retransmit_at is None:
            self.engine.debug(_MESSAGE, 20,
                              "{exchange.describe()}: duplicate message, resending our "
                              "reply", exchange=self)
            self.engine.transmit(self.last_sent, self.local, self.remote)
            return
        self.engine.debug(_MESSAGE, 20,
                          "{exchange.describe()}: duplicate message ignored", exchange=self)

    def undecodable(self, error: Exception) -> ExchangeError:
        """What an encrypted message that does not decrypt to valid payloads means.

        In phase 2 it cannot be authenticated, so it is dropped without an answer;
        phase 1 overrides this (a wrong pre-shared key looks exactly like this).
        """
        return ExchangeError(None, f"{self.describe()}: encrypted message does not decrypt "
                                   f"to valid payloads ({error}), dropped", fatal=False)

    def check_payloads(self, step: str, message: Message) -> None:
        """The message must carry the payloads ``MESSAGES[step]`` requires.

        Refuses a message that lacks one (or a VID outside phase 1); logs, in debug,
        the unexpected payloads it ignores.
        """
        spec_required, optional = self.MESSAGES.get(step, ((), ()))
        required = tuple(spec_required)
        allowed = frozenset(required) | frozenset(optional) | _ALWAYS_OPTIONAL
        present = [p.payload_type for p in message.payloads]
        missing = [t for t in required if t not in present]
        if not missing and allowed.issuperset(present) \
                and (self.PHASE == 1 or _VENDOR not in present):
            return                      # the usual case: nothing to refuse or log
        if missing:
            names = ", ".join(payload_label(t) for t in missing)
            # Not fatal: a stray or forged message must not end a good exchange.
            raise ExchangeError(NotifyType.PAYLOAD_MALFORMED,
                                f"{self.describe()}: message lacks {names} payload "
                                f"({message.describe()})", fatal=False)
        for payload_type in present:
            if payload_type == _VENDOR and self.PHASE != 1:
                raise ExchangeError(NotifyType.INVALID_PAYLOAD_TYPE,
                                    f"{self.describe()}: VID payload outside phase 1",
                                    fatal=False, send=False)
            if payload_type not in allowed and payload_type < 128:
                self.engine.debug(_MESSAGE, 40,
                                  "{exchange.describe()}: unexpected {payload} payload "
                                  "ignored", exchange=self,
                                  payload=payload_label(payload_type))


def _digest(data: bytes | None) -> bytes | None:
    return None if data is None else hashlib.blake2b(data, digest_size=16).digest()


class FinishedExchange:
    """What the engine keeps of a finished exchange: enough to answer retransmissions.

    A peer that missed our final message sends its own last one again, and gets
    ours once more (inventory §4.1: the final message is only resent on demand);
    any other message for the exchange is dropped with a log line. Everything
    else the exchange held (DH values, nonces, offers, decoded messages) is let
    go: a gateway keeps one of these per exchange of every live ISAKMP SA.
    """

    __slots__ = ("EXCHANGE_TYPE", "_description", "_kind", "_last_digest", "connection",
                 "engine", "initiator", "last_sent", "local", "message_id", "peer", "remote",
                 "sa")

    def __init__(self, exchange: Exchange) -> None:
        self.EXCHANGE_TYPE = exchange.EXCHANGE_TYPE
        self.engine = exchange.engine
        self.sa = exchange.sa
        self.local, self.remote = exchange.local, exchange.remote
        # A digest, not the message: only equality is ever asked.
        self._last_digest = _digest(exchange.last_received)
        # Kept only when our last message answered the peer's last one (what a
        # duplicate of it asks for again).
        self.last_sent = exchange.last_sent if exchange._replied_to_last else None
        # The description is only read for log lines and reports: made when first
        # asked, by the exchange class's own describe() from what it reads (the
        # role, message ID, connection and peer as they were at the end).
        self._description: str | None = None
        self._kind = exchange.__class__
        self.initiator = exchange.initiator
        self.message_id = exchange.message_id
        self.connection = getattr(exchange, "connection", None)
        self.peer = getattr(exchange, "peer", None)

    @property
    def NAME(self) -> str:                  # what the exchange classes' describe() reads
        return self._kind.NAME

    @property
    def role(self) -> str:
        return "initiator" if self.initiator else "responder"

    def describe(self) -> str:
        description = self._description
        if description is None:
            description = self._description = self._kind.describe(self)  # type: ignore[arg-type]
        return description

    def received_last(self, data: bytes) -> bool:
        """Was ``data`` the last message the exchange took?"""
        return self._last_digest is not None and _digest(data) == self._last_digest

    def receive(self, data: bytes, header: Header, local: Address, remote: Address) -> None:
        """A message for the finished exchange: resend our answer to a duplicate."""
        if self.received_last(data):
            if self.last_sent is not None:
                self.engine.debug(_MESSAGE, 20,
                                  "{exchange}: duplicate message, resending our reply",
                                  exchange=self.describe())
                self.engine.transmit(self.last_sent, self.local, self.remote)
            else:
                self.engine.debug(_MESSAGE, 20,
                                  "{exchange}: duplicate message ignored",
                                  exchange=self.describe())
            return
        self.engine.log.info("{exchange}: message ({header}) after the exchange finished, "
                             "ignored", exchange=self.describe(), header=header.describe())

    def __repr__(self) -> str:
        return f"<finished {self.describe()}>"
