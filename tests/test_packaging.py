"""The package is wired into Twisted: ``twistd isakmpd`` exists and says what it can do."""

import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from isakmpd import cli, tap
from isakmpd.service import IsakmpdService


class PluginTests(SynchronousTestCase):
    def test_plugin_is_discovered(self) -> None:
        names = [maker.tapname for maker in getPlugins(IServiceMaker)]
        self.assertIn("isakmpd", names)

    def test_twistd_help_lists_isakmpd(self) -> None:
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
            check=False, capture_output=True, text=True, timeout=60)
        self.assertIn("isakmpd", result.stdout)

    def test_service_without_kernel_backend_refuses_honestly(self) -> None:
        options = tap.Options()
        options.parseOptions([])
        with self.assertRaises(SystemExit) as caught:
            tap.makeService(options)
        self.assertIn("XFRM kernel backend is not built yet", str(caught.exception))
        self.assertIn("-n", str(caught.exception))

    def test_service_with_memory_kernel(self) -> None:
        options = tap.Options()
        options.parseOptions(["-n", "-c", "/nonexistent.conf", "-p", "1500", "-N", "1501",
                              "-4", "-r", "seed"])
        service = tap.makeService(options)
        self.assertIsInstance(service, IsakmpdService)
        settings = service.settings
        self.assertEqual((settings.port, settings.nat_t_port, settings.seed),
                         (1500, 1501, b"seed"))

    def test_bad_options(self) -> None:
        for argv in (["-p", "0"], ["-p", "x"], ["-4", "-6"], ["-p", "700", "-N", "700"],
                     ["-Z"]):
            options = tap.Options()
            with self.assertRaises(usage.UsageError, msg=argv):
                options.parseOptions(argv)

    def test_console_script_exits_1_without_a_kernel_or_with_bad_options(self) -> None:
        self.assertEqual(cli.main([]), 1)
        self.assertEqual(cli.main(["--bogus"]), 1)
