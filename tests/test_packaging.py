"""The package is wired into Twisted: ``twistd isakmpd`` exists and says what it can do."""

import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from isakmpd import cli, tap


class PluginTests(SynchronousTestCase):
    def test_plugin_is_discovered(self) -> None:
        names = [maker.tapname for maker in getPlugins(IServiceMaker)]
        self.assertIn("isakmpd", names)

    def test_twistd_help_lists_isakmpd(self) -> None:
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
            check=False, capture_output=True, text=True, timeout=60)
        self.assertIn("isakmpd", result.stdout)

    def test_service_refuses_honestly_until_it_exists(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            tap.makeService(tap.Options())
        self.assertIn("not available yet", str(caught.exception))

    def test_console_script_exits_1(self) -> None:
        self.assertEqual(cli.main([]), 1)
