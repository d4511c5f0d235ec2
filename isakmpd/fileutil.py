"""Reading configuration and key files with isakmpd's secrecy rule.

Owns the one check every secret-bearing file goes through (``util.c``
check_file_secrecy_fd, inventory §2.1): the file must be a regular file owned by
root or by the user running the daemon, with no permission bit for group or
others. The check is made with ``fstat`` on the descriptor that is then read, so
the file cannot be swapped between check and read. Symbolic links are followed
(as isakmpd does); what is checked is the file actually opened.

:func:`load_config_file` is the daemon's configuration loader: a missing file
means "defaults only"; an unreadable or insecure file is reported and ignored
(defaults only), as isakmpd does, with a message naming the file and the fix.
"""

from __future__ import annotations

import os
import stat

from isakmpd.config import load_config
from isakmpd.config.parser import Diagnostic, Severity
from isakmpd.config.store import Store

__all__ = ["InsecureFileError", "load_config_file", "read_secure_file"]

# Bigger than any sane configuration; protects against reading /dev/zero-like files.
MAX_SIZE = 16 * 1024 * 1024


class InsecureFileError(OSError):
    """The file may be read or changed by someone else; the message says how to fix it."""


def read_secure_file(path: str, *, what: str = "configuration file",
                     uid: int | None = None) -> bytes:
    """Return the contents of ``path`` after checking its owner and mode.

    ``uid`` is the user the daemon runs as (default: the current uid); root may
    always own the file. Raises :class:`InsecureFileError` naming the file and
    the command that fixes it, and the usual OSError (FileNotFoundError, ...)
    when the file cannot be opened.
    """
    if uid is None:
        uid = os.getuid()
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InsecureFileError(f"{what} {path} is not a regular file; point isakmpd at "
                                    "a plain file")
        if info.st_uid not in (0, uid):
            raise InsecureFileError(
                f"{what} {path} is owned by uid {info.st_uid}, not by root or the user isakmpd "
                f"runs as (uid {uid}); fix it with: chown root {path} (or chown {uid})")
        if info.st_mode & 0o077:
            raise InsecureFileError(
                f"{what} {path} has mode {stat.S_IMODE(info.st_mode):04o}, so group or others "
                f"can read or change it; fix it with: chmod 600 {path}")
        if info.st_size > MAX_SIZE:
            raise InsecureFileError(f"{what} {path} is larger than {MAX_SIZE} bytes")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_config_file(path: str, *, uid: int | None = None) -> tuple[Store, list[Diagnostic]]:
    """Read, parse and check the configuration file at ``path``.

    Never raises for a problem with the file: a missing file gives the defaults
    and an informational diagnostic; an insecure or unreadable one gives the
    defaults and an error diagnostic (the file is ignored, as isakmpd does).
    Non-UTF-8 bytes are kept as surrogate escapes (``surrogateescape``).
    """
    problem: Diagnostic | None = None
    text = ""
    try:
        text = read_secure_file(path, uid=uid).decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        problem = Diagnostic(path, None, None, None,
                             f"configuration file {path} does not exist; using the built-in "
                             "defaults only", Severity.INFO)
    except InsecureFileError as error:
        problem = Diagnostic(path, None, None, None,
                             f"{error}; the file is ignored and only the built-in defaults "
                             "are used", Severity.ERROR)
    except OSError as error:
        problem = Diagnostic(path, None, None, None,
                             f"cannot read configuration file {path}: {error.strerror}; "
                             "using the built-in defaults only", Severity.ERROR)
    store, diagnostics = load_config(text, path)
    if problem is not None:
        diagnostics.insert(0, problem)
    return store, diagnostics
