"""The pid file (``-i``, isakmpd(8), inventory §1.5).

Owns writing and removing the file that holds the daemon's process id: the decimal
pid and a newline. Any old node at the path (the file of a daemon killed with
SIGKILL, or anything else) is unlinked first, so a stale file never keeps the
daemon from starting; a file that cannot be written is fatal
(:class:`PidFileError`, naming the path and the reason). At exit the file is
removed, but only while it still holds our pid: a daemon started later with the
same ``-i`` keeps its own file.
"""

from __future__ import annotations

import os

__all__ = ["PidFile", "PidFileError", "read_pid"]


class PidFileError(OSError):
    """The pid file cannot be written; the message says which and why."""


def read_pid(path: str) -> int | None:
    """The pid in the file at ``path``, or None when there is none or no number."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read(64)
    except OSError:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None


class PidFile:
    """The pid file at ``path`` of the current process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid: int | None = None     # what we wrote, once written

    def write(self) -> None:
        """Unlink any old node at the path, then write our pid; raises PidFileError."""
        pid = os.getpid()
        try:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            # O_EXCL|O_NOFOLLOW: a node someone put there after the unlink is not
            # followed or reused.
            fd = os.open(self.path,
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644)
            try:
                data = f"{pid}\n".encode("ascii")
                if os.write(fd, data) != len(data):
                    raise OSError(f"short write to {self.path}")
            finally:
                os.close(fd)
        except OSError as error:
            reason = error.strerror.lower() if error.strerror else str(error)
            raise PidFileError(f"cannot write the pid file {self.path}: {reason} "
                               "(choose another path with -i)") from None
        self.pid = pid

    def remove(self) -> bool:
        """Unlink the file if it still holds the pid we wrote; True when removed."""
        if self.pid is None:
            return False
        pid, self.pid = self.pid, None
        if read_pid(self.path) != pid:
            return False
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True
