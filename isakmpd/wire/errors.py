"""The one error the wire layer raises for malformed input.

Whatever a peer sends, decoding either returns objects or raises
:class:`DecodeError`; nothing else escapes. The error carries the notify type the
RFC (or OpenBSD's isakmpd, where the RFC leaves it open) prescribes for the fault,
the byte offset of the fault, and a sentence an operator can read in a log line.

Offsets count from the start of the ISAKMP message (the first byte of the
initiator cookie) when the caller passes the body's position as ``base_offset``,
which is what :mod:`isakmpd.wire.message` always does.
"""

from __future__ import annotations

from isakmpd.wire.constants import NotifyType


class DecodeError(Exception):
    """Malformed ISAKMP input.

    ``notify``
        the :class:`~isakmpd.wire.constants.NotifyType` to report to the peer;
    ``offset``
        the byte offset of the problem in the datagram (or in the buffer that was
        being decoded, shifted by the ``base_offset`` the caller gave);
    ``silent``
        True when the original daemon drops such a message without sending any
        notification at all (message.c drops a datagram whose header length does
        not match its size with notify 0, i.e. none). ``notify`` is still set then,
        for logs and statistics.

    ``str(error)`` is the human-readable message, which always names the offset.
    """

    def __init__(self, notify: NotifyType, offset: int, message: str, *,
                 silent: bool = False) -> None:
        self.notify = notify
        self.offset = offset
        self.message = message
        self.silent = silent
        super().__init__(message)

    def __repr__(self) -> str:
        return (f"DecodeError({self.notify.label}, offset={self.offset}, "
                f"{self.message!r}{', silent' if self.silent else ''})")
