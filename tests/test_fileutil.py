"""Tests of isakmpd.fileutil: the secrecy rule and the configuration file loader."""

import os

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config import Severity
from isakmpd.fileutil import InsecureFileError, load_config_file, read_secure_file


class SecureFileTests(SynchronousTestCase):
    def write(self, text: str, mode: int) -> str:
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "isakmpd.conf")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, mode)
        return path

    def test_0600_accepted(self) -> None:
        path = self.write("[General]\nRetransmits=5\n", 0o600)
        self.assertEqual(read_secure_file(path), b"[General]\nRetransmits=5\n")

    def test_0644_refused_with_fix(self) -> None:
        path = self.write("x", 0o644)
        with self.assertRaises(InsecureFileError) as caught:
            read_secure_file(path)
        message = str(caught.exception)
        self.assertIn(path, message)
        self.assertIn(f"chmod 600 {path}", message)
        self.assertIn("0644", message)

    def test_group_write_refused(self) -> None:
        self.assertRaises(InsecureFileError, read_secure_file, self.write("x", 0o620))

    def test_other_owner_refused(self) -> None:
        path = self.write("x", 0o600)
        if os.stat(path).st_uid == 0:
            # Root may always own the file, so claim to run as some other user and
            # give the file to a third one.
            if os.getuid() != 0:
                raise self.skipTest("cannot chown without root")
            os.chown(path, 4242, -1)
            uid = 4343
        else:
            uid = os.getuid() + 1
        with self.assertRaises(InsecureFileError) as caught:
            read_secure_file(path, uid=uid, what="policy file")
        self.assertIn("policy file", str(caught.exception))
        self.assertIn("chown", str(caught.exception))

    def test_not_a_regular_file(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory, 0o700)
        self.assertRaises(InsecureFileError, read_secure_file, directory)

    def test_missing_raises_file_not_found(self) -> None:
        self.assertRaises(FileNotFoundError, read_secure_file, self.mktemp())


class LoadConfigFileTests(SynchronousTestCase):
    write = SecureFileTests.write

    def test_missing_file_gives_defaults(self) -> None:
        store, diagnostics = load_config_file(self.mktemp())
        self.assertEqual(store.get_str("General", "Retransmits"), "3")
        self.assertEqual([d.severity for d in diagnostics], [Severity.INFO])

    def test_insecure_file_ignored_with_error(self) -> None:
        path = self.write("[General]\nRetransmits=5\n", 0o644)
        store, diagnostics = load_config_file(path)
        self.assertEqual(store.get_str("General", "Retransmits"), "3")
        self.assertEqual(diagnostics[0].severity, Severity.ERROR)
        self.assertIn(f"chmod 600 {path}", str(diagnostics[0]))

    def test_good_file(self) -> None:
        path = self.write("[General]\nRetransmits=5\n", 0o600)
        store, diagnostics = load_config_file(path)
        self.assertEqual(store.get_num("General", "Retransmits"), 5)
        self.assertEqual(store.binding("General", "Retransmits").origin.file, path)
        self.assertEqual(diagnostics, [])
