"""isakmpd.debug: class levels gate debug messages before they are built."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from isakmpd import debug
from isakmpd.crypto.random import SeededRandom
from isakmpd.debug import DebugClass
from isakmpd.kernel import MemoryKernel
from tests.test_kernel_memory import esp_sa, flow


class LevelTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.addCleanup(debug.reset)

    def test_levels(self) -> None:
        self.assertFalse(debug.enabled(DebugClass.SA, 1))
        self.assertTrue(debug.enabled(DebugClass.SA, 0))
        debug.set_level(DebugClass.SA, 40)
        self.assertTrue(debug.enabled(DebugClass.SA, 40))
        self.assertFalse(debug.enabled(DebugClass.SA, 41))
        self.assertFalse(debug.enabled(DebugClass.EXCHANGE, 1))
        debug.set_level(None, 99)
        self.assertTrue(all(debug.level(c) == 99 for c in DebugClass))
        self.assertRaises(ValueError, debug.set_level, DebugClass.UI, 100)

    def test_kernel_messages_only_when_asked_for(self) -> None:
        events: list[dict] = []
        kernel = MemoryKernel(SeededRandom(1))
        kernel.log = Logger(observer=events.append)
        kernel.add_sa(esp_sa())
        kernel.add_flow(flow())
        self.assertEqual(events, [])
        debug.set_level(DebugClass.SYSDEP, 30)
        kernel.delete_sa(esp_sa().protocol, esp_sa().spi, esp_sa().dst)
        kernel.delete_flow(flow())
        self.assertEqual([e["log_format"].split(" {")[0] for e in events],
                         ["deleted SA", "deleted flow"])
        self.assertNotIn(esp_sa().enc_key.hex(), str(events[0]["sa"]))
