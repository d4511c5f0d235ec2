"""Packet capture: every ISAKMP message in clear, appended to a pcap file (-L, -l, p on).

This module owns the capture *file* (inventory §1.6, isakmpd's log.c
log_packet_init / log_packet_restart / log_packet_stop); the bytes of each record
come from :mod:`isakmpd.wire.pcap`, the messages from the engine, which hands
over every message in clear (ours before encryption, the peer's after
decryption, first transmissions only) through :meth:`PacketCapture.record`.

The file rules are isakmpd's, made race-free:

* a new file is created with mode 0600 (never wider, whatever the umask) and
  starts with a pcap global header (LINKTYPE_LOOP, 108);
* an existing file is appended to without a new header, and only when it is a
  regular file (not a symbolic link, FIFO, device or directory) with no group or
  other permission bits, and, when it is not empty, when it starts with a pcap
  header of our link type (records of another link type would corrupt it);
* the checks are made on the opened descriptor (``fstat``), so the file that is
  checked is the file that is written.

A file that breaks a rule is refused with :class:`CaptureError` naming the file
and what to change; the daemon refuses to start with such a ``-l`` file, and the
FIFO's ``p on`` logs the error and goes on without capture.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import time
from collections.abc import Callable

from twisted.logger import Logger

from isakmpd.wire.pcap import LINKTYPE_LOOP, MAX_MESSAGE_SIZE, pcap_global_header, pcap_record

__all__ = ["CaptureError", "PacketCapture"]

DEFAULT_CAPTURE_FILE = "/var/run/isakmpd.pcap"
_HEADER_SIZE = 24
_PCAP_MAGICS = (0xa1b2c3d4, 0xa1b23c4d)     # microsecond and nanosecond resolution

Address = tuple[str, int]


class CaptureError(OSError):
    """The capture file cannot be used; the message says which and why."""


def _check_existing(fd: int, path: str, info: os.stat_result) -> None:
    """Refuse what isakmpd refuses, plus a non-pcap or foreign-link-type file."""
    if not stat.S_ISREG(info.st_mode):
        raise CaptureError(f"capture file {path} is not a regular file; refused")
    if info.st_mode & 0o077:
        raise CaptureError(
            f"capture file {path} has mode {stat.S_IMODE(info.st_mode):04o}, readable or "
            f"writable by group or others; refused (chmod 600 {path}, or remove it)")
    if info.st_size == 0:
        return
    head = os.pread(fd, _HEADER_SIZE, 0)
    for order in ("<", ">"):
        if len(head) == _HEADER_SIZE:
            magic, *_rest, linktype = struct.unpack(order + "IHHiIII", head)
            if magic in _PCAP_MAGICS:
                if linktype & 0xffff != LINKTYPE_LOOP:
                    raise CaptureError(
                        f"capture file {path} is a pcap file of link type {linktype}, "
                        f"not LINKTYPE_LOOP ({LINKTYPE_LOOP}); refused (use another file)")
                return
    raise CaptureError(f"capture file {path} exists and is not a pcap file; refused "
                       "(use another file, or remove it)")


def open_capture_file(path: str) -> int:
    """Open (or create) ``path`` for appending records; returns the descriptor.

    Writes the pcap global header when the file is new or empty. Raises
    :class:`CaptureError`.
    """
    flags = (os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
             | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CaptureError(f"capture file {path} is a symbolic link; refused") from None
        if error.errno in (errno.EISDIR, errno.ENXIO):
            raise CaptureError(f"capture file {path} is not a regular file; refused") \
                from None
        raise CaptureError(f"cannot open capture file {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        _check_existing(fd, path, info)
        if info.st_size == 0:
            os.write(fd, pcap_global_header())
    except CaptureError:
        os.close(fd)
        raise
    except OSError as error:
        os.close(fd)
        raise CaptureError(f"cannot use capture file {path}: {error.strerror}") from None
    return fd


class PacketCapture:
    """The daemon's packet capture: off, or appending to one file.

    ``default_path`` is used by :meth:`start` without a path until a file has
    been used; afterwards the last file is (isakmpd's ``p on``). ``clock``
    gives the records' wall-clock timestamps.
    """

    log = Logger()

    def __init__(self, default_path: str = DEFAULT_CAPTURE_FILE, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = default_path
        self.clock = clock
        self._fd: int | None = None
        self.records = 0

    @property
    def active(self) -> bool:
        return self._fd is not None

    def start(self, path: str | None = None) -> None:
        """Start capturing to ``path`` (default: the last file used, or the default).

        Starting while active only logs a line. Raises :class:`CaptureError` when
        the file is refused (capture stays off).
        """
        if self._fd is not None:
            self.log.info('IKE packet capture already active on file "{path}"',
                          path=self.path)
            return
        target = path or self.path
        self._fd = open_capture_file(target)
        self.path = target
        self.log.info('starting IKE packet capture to file "{path}"', path=target)

    def stop(self) -> None:
        """Stop capturing (nothing happens when it is off)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.close(fd)
        except OSError as error:
            self.log.warn("closing capture file {path}: {error}", path=self.path,
                          error=error.strerror)
        self.log.info('stopped IKE packet capture to file "{path}"', path=self.path)

    def record(self, message: bytes, src: Address, dst: Address, *,
               marker: bool | None = None) -> None:
        """Append one cleartext ISAKMP message sent from ``src`` to ``dst``.

        Too long messages are skipped, as isakmpd does. A write error stops the
        capture with a log line; it never reaches the caller.
        """
        fd = self._fd
        if fd is None:
            return
        if len(message) > MAX_MESSAGE_SIZE:
            return
        try:
            data = pcap_record(self.clock(), src[0], src[1], dst[0], dst[1], message,
                               marker=marker)
        except ValueError as error:
            self.log.info("message not captured: {error}", error=error)
            return
        try:
            os.write(fd, data)
        except OSError as error:
            self.log.error("writing to capture file {path} failed ({error}); "
                           "capture stopped", path=self.path, error=error.strerror)
            self.stop()
            return
        self.records += 1

    def __repr__(self) -> str:
        state = f"to {self.path}" if self.active else "off"
        return f"<PacketCapture {state}>"
