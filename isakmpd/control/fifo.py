"""The control FIFO (``-f path``) and standard input (``-f -``) as a stream of lines.

isakmpd(8) creates its FIFO with mode 0600, replacing any old node at the path but
refusing to start when the path is a regular file (``ui.c`` ui_init, inventory
§1.3), and opens it read-write and non-blocking so that it never reads end-of-file
when the last writer closes: ``echo S > fifo`` can be run any number of times.

:func:`create_fifo` makes the node and opens it; :class:`FdLineReader` reads a
descriptor through the reactor (``IReactorFDSet.addReader``) and hands every
complete line to a callback; :class:`LineSplitter` cuts bytes into lines, dropping
(with one log line) a line longer than :data:`MAX_LINE` bytes rather than
buffering without bound. :func:`open_control` puts it together for a
:class:`~isakmpd.service.DaemonSettings` ``fifo`` value, and
:class:`ControlChannel.close` stops reading and removes the FIFO it created
(only if the node at the path is still the one it made).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import Any

from twisted.internet import abstract, fdesc
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = [
    "MAX_LINE",
    "ControlChannel",
    "FdLineReader",
    "FifoError",
    "LineSplitter",
    "create_fifo",
    "open_control",
]

log = Logger(namespace="isakmpd.control")

#: Longest command line taken (bytes, without the newline). isakmpd grows its
#: buffer without limit; the longest real command (``C set`` with a 200-byte
#: section, tag and value) is far below this.
MAX_LINE = 65536

STDIN = "-"


class FifoError(Exception):
    """The FIFO cannot be created or opened; the message says what to change."""


class LineSplitter:
    """Cuts a byte stream into newline-terminated lines (decoded as UTF-8).

    A trailing carriage return is dropped (a command file written on another
    system still works). A line longer than ``max_line`` bytes is dropped whole,
    with one log line, and reading goes on after its newline.
    """

    def __init__(self, on_line: Callable[[str], None], max_line: int = MAX_LINE) -> None:
        self.on_line = on_line
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return
            piece = data[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                self._buffer.clear()
                continue
            if len(self._buffer) + len(piece) > self.max_line:
                self._too_long()
                self._buffer.clear()
                continue
            self._buffer += piece
            line = bytes(self._buffer)
            self._buffer.clear()
            if line.endswith(b"\r"):
                line = line[:-1]
            self.on_line(line.decode("utf-8", "surrogateescape"))

    def _keep(self, rest: bytes) -> None:
        if self._discarding or not rest:
            return
        if len(self._buffer) + len(rest) > self.max_line:
            self._too_long()
            self._buffer.clear()
            self._discarding = True
            return
        self._buffer += rest

    def _too_long(self) -> None:
        log.warn("control: a command line longer than {limit} bytes was dropped",
                 limit=self.max_line)

    def pending(self) -> bytes:
        """Bytes of an unfinished line (tests)."""
        return bytes(self._buffer)


class FdLineReader(abstract.FileDescriptor):
    """Reads one descriptor through the reactor and feeds a :class:`LineSplitter`.

    ``on_eof`` is called once when the descriptor reports end-of-file or an error
    (standard input closed); the FIFO, opened read-write, never does.
    """

    def __init__(self, reactor: Any, fd: int, splitter: LineSplitter, *,
                 on_eof: Callable[[], None] | None = None) -> None:
        super().__init__(reactor)
        self._fd = fd
        self.splitter = splitter
        self.on_eof = on_eof
        self.connected = 1

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> Any:
        return fdesc.readFromFD(self._fd, self._data)

    def _data(self, data: bytes) -> None:
        try:
            self.splitter.feed(data)
        except Exception:  # noqa: BLE001 - a bad command must never stop the reader
            log.failure("control: internal error handling a command line")

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if self.on_eof is not None:
            on_eof, self.on_eof = self.on_eof, None
            on_eof()

    def logPrefix(self) -> str:
        return "isakmpd-control"


def create_fifo(path: str) -> tuple[int, os.stat_result]:
    """Make the FIFO at ``path`` (mode 0600) and open it read-write, non-blocking.

    Any old node that is not a regular file is removed first (a FIFO left by a
    killed daemon, a symbolic link); a regular file (or a link to one) is never
    removed: :class:`FifoError` says so. Returns the descriptor and the node's
    ``fstat``.
    """
    try:
        if stat.S_ISREG(os.stat(path).st_mode):
            raise FifoError(f"the FIFO path {path} is a regular file; isakmpd does not "
                            "replace it: remove it or choose another path with -f")
    except FileNotFoundError:
        pass
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            raise FifoError(f"cannot check the FIFO path {path}: {error.strerror}") from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise FifoError(f"cannot remove the old node at the FIFO path {path}: "
                        f"{error.strerror}") from None
    try:
        os.mkfifo(path, 0o600)
        os.chmod(path, 0o600)        # whatever the umask took away or left
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as error:
        raise FifoError(f"cannot create the FIFO {path}: {error.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISFIFO(info.st_mode):     # replaced between mkfifo and open
        os.close(fd)
        raise FifoError(f"{path} is not the FIFO isakmpd just created")
    return fd, info


class ControlChannel:
    """Where commands come from: the FIFO or standard input; closed at exit."""

    def __init__(self, reactor: Any, reader: FdLineReader, *, path: str | None,
                 node: os.stat_result | None) -> None:
        self.reactor = reactor
        self.reader = reader
        self.path = path
        self._node = node
        self.closed = False

    def start(self) -> None:
        self.reactor.addReader(self.reader)

    def close(self) -> None:
        """Stop reading; close the FIFO and remove it if it is still ours."""
        if self.closed:
            return
        self.closed = True
        self.reactor.removeReader(self.reader)
        if self.path is None:
            return
        try:
            os.close(self.reader.fileno())
        except OSError:
            pass
        try:
            now = os.lstat(self.path)
        except OSError:
            return
        if self._node is not None and (now.st_dev, now.st_ino) == (self._node.st_dev,
                                                                   self._node.st_ino):
            try:
                os.unlink(self.path)
            except OSError as error:
                log.warn("control: cannot remove the FIFO {path}: {error}", path=self.path,
                         error=error.strerror)


def open_control(reactor: Any, path: str, on_line: Callable[[str], None]) -> ControlChannel:
    """The command channel for ``-f path`` (``-`` is standard input); not yet reading."""
    splitter = LineSplitter(on_line)
    if path == STDIN:
        holder: list[ControlChannel] = []

        def closed() -> None:
            log.info("control: standard input closed; no more commands are read")
            if holder:
                holder[0].closed = True

        # Standard input is read in blocking mode, but only when the reactor says
        # it is readable: setting O_NONBLOCK would change the file description it
        # may share with stdout and stderr (a terminal).
        reader = FdLineReader(reactor, 0, splitter, on_eof=closed)
        channel = ControlChannel(reactor, reader, path=None, node=None)
        holder.append(channel)
        return channel
    fd, node = create_fifo(path)
    reader = FdLineReader(reactor, fd, splitter)
    return ControlChannel(reactor, reader, path=path, node=node)
