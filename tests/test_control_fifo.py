"""The control FIFO: creation rules, reading lines through the real reactor.

The FIFO must never see end-of-file when writers come and go (it is opened
read-write), keep reading after bad or absurdly long lines, replace a stale FIFO,
refuse a regular file at its path, and be removed at close only while it is the
node the daemon made.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from isakmpd.control.fifo import FifoError, LineSplitter, create_fifo, open_control


class LineSplitterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lines: list[str] = []
        self.splitter = LineSplitter(self.lines.append, max_line=16)

    def test_lines_across_chunks(self) -> None:
        for chunk in (b"S\nc co", b"nn\n", b"\n", b"r\r\nQ"):
            self.splitter.feed(chunk)
        self.assertEqual(self.lines, ["S", "c conn", "", "r"])
        self.assertEqual(self.splitter.pending(), b"Q")

    def test_too_long_line_dropped_and_reading_goes_on(self) -> None:
        self.splitter.feed(b"x" * 10)
        self.splitter.feed(b"y" * 10)           # now longer than 16: dropped
        self.splitter.feed(b"z" * 100)
        self.splitter.feed(b"tail\nS\n")
        self.splitter.feed(b"w" * 17 + b"\nR\n")  # too long within one chunk
        self.assertEqual(self.lines, ["S", "R"])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_undecodable_bytes_survive(self) -> None:
        self.splitter.feed(b"c \xff\xfe\n")
        self.assertEqual(self.lines, ["c \udcff\udcfe"])


class CreateFifoTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, "isakmpd.fifo")

    def test_mode_0600_whatever_the_umask(self) -> None:
        old = os.umask(0)
        try:
            fd, _ = create_fifo(self.path)
        finally:
            os.umask(old)
        os.close(fd)
        info = os.lstat(self.path)
        self.assertTrue(stat.S_ISFIFO(info.st_mode))
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o600)

    def test_a_regular_file_is_refused_and_kept(self) -> None:
        with open(self.path, "w") as handle:
            handle.write("precious\n")
        with self.assertRaises(FifoError) as caught:
            create_fifo(self.path)
        self.assertIn("regular file", str(caught.exception))
        self.assertIn(self.path, str(caught.exception))
        with open(self.path) as handle:
            self.assertEqual(handle.read(), "precious\n")

    def test_a_link_to_a_regular_file_is_refused(self) -> None:
        target = os.path.abspath(os.path.join(self.dir, "target"))
        open(target, "w").close()
        os.symlink(target, self.path)
        self.assertRaises(FifoError, create_fifo, self.path)
        self.assertTrue(os.path.exists(target))

    def test_a_stale_fifo_is_replaced(self) -> None:
        os.mkfifo(self.path, 0o644)
        # Held open, the old node keeps its inode number to itself.
        held = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self.addCleanup(os.close, held)
        fd, node = create_fifo(self.path)
        os.close(fd)
        self.assertNotEqual(node.st_ino, os.fstat(held).st_ino)
        self.assertEqual(stat.S_IMODE(os.lstat(self.path).st_mode), 0o600)

    def test_unwritable_directory(self) -> None:
        self.assertRaises(FifoError, create_fifo, os.path.join(self.dir, "no", "such.fifo"))


class FifoReadingTests(TestCase):
    timeout = 10

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, "isakmpd.fifo")
        self.lines: list[str] = []
        self.channel = open_control(reactor, self.path, self.handle)
        self.channel.start()
        self.addCleanup(self.channel.close)

    def handle(self, line: str) -> None:
        if line == "boom":
            raise RuntimeError("a broken command handler")
        self.lines.append(line)

    def write(self, data: bytes) -> None:
        """One writer: open, write, close (as ``echo S > fifo``)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    @inlineCallbacks
    def wait_for(self, count: int) -> Any:
        deadline = time.monotonic() + 5
        while len(self.lines) < count:
            if time.monotonic() > deadline:
                self.fail(f"only {self.lines!r} arrived")
            yield deferLater(reactor, 0.01, lambda: None)

    @inlineCallbacks
    def test_writers_come_and_go(self) -> Any:
        for number in range(5):
            self.write(f"line {number}\n".encode())
            yield self.wait_for(number + 1)
        self.assertEqual(self.lines, [f"line {n}" for n in range(5)])

    @inlineCallbacks
    def test_bad_input_never_stops_the_reader(self) -> Any:
        self.write(b"boom\n")
        for _ in range(20):                 # 80 kB without a newline, in pipe-sized bits
            self.write(b"x" * 4096)
            yield deferLater(reactor, 0.005, lambda: None)
        self.write(b"\n\xff\n")
        self.write(b"after\n")
        yield self.wait_for(2)
        self.assertEqual(self.lines, ["\udcff", "after"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_close_removes_the_fifo(self) -> None:
        self.channel.close()
        self.assertFalse(os.path.lexists(self.path))
        self.channel.close()            # twice is harmless

    def test_close_leaves_a_node_someone_else_made(self) -> None:
        os.unlink(self.path)
        os.mkfifo(self.path, 0o600)
        self.channel.close()
        self.assertTrue(os.path.lexists(self.path))
        os.unlink(self.path)
