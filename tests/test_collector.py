"""isakmpd.collector: the daemon's garbage-collector settings."""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from isakmpd import collector


class SettleTests(SynchronousTestCase):
    def setUp(self) -> None:
        previous = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *previous)
        self.addCleanup(gc.unfreeze)

    def test_freezes_what_exists_and_raises_thresholds(self) -> None:
        gc.unfreeze()
        kept = [object() for _ in range(3)]          # something alive to freeze
        collector.settle()
        self.assertGreater(gc.get_freeze_count(), len(kept))
        self.assertEqual(gc.get_threshold(), collector.THRESHOLDS)
        # Young collections wait for many more allocations than the default 700.
        self.assertGreater(collector.THRESHOLDS[0], 700)
