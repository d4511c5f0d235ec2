"""Leaving the terminal: the console script's detaching (isakmpd(8) without ``-d``).

Owns the process side of becoming a daemon, as daemon(3) does it for isakmpd: a
fork, ``setsid``, a second fork (so the daemon is no session leader and never gets
a controlling terminal again), ``chdir /`` and standard input, output and error on
``/dev/null``. One thing differs from daemon(3): the process the user started waits
until the daemon says it is running (ports bound, pid file written) or why it could
not start, prints that reason and exits 1; otherwise it exits 0. So ``isakmpd ...
&& echo started`` means what it says, and a start-up error reaches the terminal
instead of only syslog. (twistd does the same for ``twistd isakmpd``.)

The reactor must not exist before :func:`detach`: it is imported afterwards, so
its file descriptors belong to the daemon alone.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["StatusPipe", "detach", "stop_for_debugger"]

_READY = b"\0ready"


class StatusPipe:
    """How the daemon tells the waiting parent whether it started (or nothing, in -d)."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = fd

    def ready(self) -> None:
        """The daemon runs: the parent exits 0."""
        self._send(_READY)

    def failed(self, reason: str) -> None:
        """The daemon cannot start: the parent prints ``reason`` and exits 1."""
        self._send(reason.encode("utf-8", "backslashreplace")[:4000])

    def _send(self, data: bytes) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, data)
        except OSError:
            pass                      # the parent is gone; nobody to tell
        finally:
            os.close(fd)


def _wait_for_daemon(read_fd: int, child: int) -> int:
    """In the parent: read the daemon's word, print a failure, return the exit code."""
    chunks = []
    while True:
        try:
            chunk = os.read(read_fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    try:
        os.waitpid(child, 0)              # the first child, which exits at once
    except ChildProcessError:
        pass
    data = b"".join(chunks)
    if data == _READY:
        return 0
    reason = data.decode("utf-8", "replace") or "the daemon exited before it was running"
    print(f"isakmpd: cannot start: {reason}", file=sys.stderr)
    return 1


def detach() -> StatusPipe:
    """Become a daemon; returns in the daemon only (the caller's process exits).

    The returned pipe must be told :meth:`StatusPipe.ready` or
    :meth:`StatusPipe.failed`; if the daemon dies first, the parent sees the pipe
    close and exits 1 with "exited before it was running".
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()          # both close-on-exec (not inheritable)
    child = os.fork()
    if child:
        os.close(write_fd)
        os._exit(_wait_for_daemon(read_fd, child))
    os.close(read_fd)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return StatusPipe(write_fd)


def stop_for_debugger(announce: object = None) -> None:
    """``-d -d``: stop this process (SIGSTOP) until a debugger or ``kill -CONT`` resumes it.

    isakmpd stops both its processes after its privilege-separation fork so that a
    debugger can attach before anything runs; this daemon is one process, so it
    stops itself once, before it binds its ports. ``announce`` is called with a
    line saying how to continue.
    """
    pid = os.getpid()
    if callable(announce):
        announce(f"-d -d: pid {pid} stops itself for a debugger; attach (gdb -p {pid}, "
                 f"py-spy dump --pid {pid}) and continue it with kill -CONT {pid} "
                 "(or fg in its shell)")
    os.kill(pid, signal.SIGSTOP)
