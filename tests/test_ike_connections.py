"""The connection checker: which connections are started, when, and how often."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config import load_config
from isakmpd.ike.connections import ConnectionManager

CONFIG = """\
[General]
Check-interval=\t30

[Phase 2]
Connections=\tnet-a, net-b
"""


@dataclass
class FakeSA:
    name: str
    ready: bool = True


@dataclass
class FakeSadb:
    sas: list[FakeSA] = field(default_factory=list)

    def ipsec_by_name(self, name: str) -> list[FakeSA]:
        return [sa for sa in self.sas if sa.name.lower() == name.lower()]


class FakeEngine:
    """Records initiate_connection calls; the test fires their Deferreds."""

    def __init__(self, text: str = CONFIG) -> None:
        self.store, _ = load_config(text, "test.conf")
        self.sadb = FakeSadb()
        self.started: list[tuple[str, Deferred[Any]]] = []

    def initiate_connection(self, connection: str) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.started.append((connection, d))
        return d

    def names(self) -> list[str]:
        return [name for name, _ in self.started]


class ConnectionManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.engine = FakeEngine()
        self.manager = ConnectionManager(self.engine, self.clock)

    def test_first_check_at_once_then_every_interval(self) -> None:
        self.manager.start()
        self.assertEqual(self.engine.names(), ["net-a", "net-b"])
        # Still negotiating: a check does not start them twice.
        self.clock.advance(30)
        self.assertEqual(self.engine.names(), ["net-a", "net-b"])
        # net-a comes up, net-b fails: the next check restarts only net-b.
        self.engine.sadb.sas.append(FakeSA("net-a"))
        self.engine.started[0][1].callback(None)
        self.engine.started[1][1].errback(RuntimeError("NO_PROPOSAL_CHOSEN"))
        self.clock.advance(29)
        self.assertEqual(len(self.engine.started), 2)
        self.clock.advance(1)
        self.assertEqual(self.engine.names(), ["net-a", "net-b", "net-b"])

    def test_connection_that_goes_down_is_restarted(self) -> None:
        self.manager.start()
        for _, d in self.engine.started:
            d.callback(None)
        self.engine.sadb.sas = [FakeSA("net-a"), FakeSA("net-b")]
        self.clock.advance(30)
        self.assertEqual(len(self.engine.started), 2)
        self.engine.sadb.sas = [FakeSA("net-b"), FakeSA("net-a", ready=False)]
        self.clock.advance(30)
        self.assertEqual(self.engine.names()[2:], ["net-a"])

    def test_passive_mode_initiates_nothing_until_active(self) -> None:
        self.manager.passive = True
        self.manager.start()
        self.clock.advance(120)
        self.assertEqual(self.engine.started, [])
        self.manager.set_passive(False)
        self.assertEqual(self.engine.names(), ["net-a", "net-b"])

    def test_add_checks_at_once_and_remove_stops_keeping_it_up(self) -> None:
        self.manager.start()
        self.assertTrue(self.manager.add("net-c"))
        self.assertFalse(self.manager.add("NET-C"))
        self.assertEqual(self.engine.names(), ["net-a", "net-b", "net-c"])
        for _, d in self.engine.started:
            d.errback(RuntimeError("peer unreachable"))
        self.assertTrue(self.manager.remove("net-a"))
        self.assertFalse(self.manager.remove("net-a"))
        self.clock.advance(30)
        self.assertEqual(self.engine.names()[3:], ["net-b", "net-c"])
        self.assertEqual(self.manager.active, ["net-b", "net-c"])

    def test_stop_cancels_the_timer(self) -> None:
        self.manager.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.manager.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bad_interval_falls_back_to_default(self) -> None:
        engine = FakeEngine("[General]\nCheck-interval=\t0\n")
        manager = ConnectionManager(engine, self.clock)
        self.assertEqual(manager.check_interval, 60)

    def test_reload_drops_runtime_additions(self) -> None:
        self.manager.start()
        self.manager.add("net-c")
        self.manager.load()
        self.assertEqual(self.manager.active, ["net-a", "net-b"])

    def test_failure_is_not_left_unhandled(self) -> None:
        # An errback with nobody else listening must not become an unhandled error
        # (trial would flag it when the Deferred is garbage collected).
        self.manager.start()
        self.engine.started[0][1].errback(RuntimeError("boom"))
        self.assertEqual(self.flushLoggedErrors(RuntimeError), [])
