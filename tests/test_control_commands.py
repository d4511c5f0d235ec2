"""The FIFO's commands: parsing every form, and carrying each out on an engine pair.

The controller runs against west of the in-memory pair (tests/support/ikepair.py)
on a task.Clock, wrapped in a small stand-in for the daemon that records what the
service API (write_result, write_report, reinitialise, shutdown) was asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from isakmpd import debug
from isakmpd.capture import PacketCapture
from isakmpd.control import commands
from isakmpd.control.commands import (
    Capture,
    CommandError,
    Config,
    Connect,
    Controller,
    Debug,
    Delete,
    Mode,
    Simple,
    Teardown,
    parse,
)
from isakmpd.debug import DebugClass
from isakmpd.ike.connections import ConnectionManager
from tests.support.ikepair import EAST, make_pair, ready_ipsec


class ParseTests(SynchronousTestCase):
    def test_connect(self) -> None:
        self.assertEqual(parse("c conn"), Connect("conn"))
        self.assertEqual(parse("c  conn extra"), Connect("conn"))
        self.assertRaises(CommandError, parse, "c")
        self.assertRaises(CommandError, parse, "c " + "x" * 201)

    def test_config_set_add_rmv(self) -> None:
        self.assertEqual(parse("C set [General]:Retransmits=5"),
                         Config("set", "General", "Retransmits", "5"))
        self.assertEqual(parse("C set [General]:Retransmits=5 force"),
                         Config("set", "General", "Retransmits", "5", force=True))
        # Any fourth word forces, as in isakmpd; subcommands ignore case.
        self.assertEqual(parse("C SET [General]:Retransmits=5 yes"),
                         Config("set", "General", "Retransmits", "5", force=True))
        # The section may hold blanks; blanks around the tag go.
        self.assertEqual(parse("C add [Phase 2]:Connections = other"),
                         Config("add", "Phase 2", "Connections", "other"))
        self.assertEqual(parse("C rmv [Phase 2]:Connections=conn"),
                         Config("rmv", "Phase 2", "Connections", "conn"))

    def test_config_rm_rms_get(self) -> None:
        self.assertEqual(parse("C rm [peer]:Port"), Config("rm", "peer", "Port"))
        self.assertEqual(parse("C rms [peer]"), Config("rms", "peer"))
        self.assertEqual(parse("C get [General]:Check-interval"),
                         Config("get", "General", "Check-interval"))

    def test_config_malformed(self) -> None:
        for line in ("C", "C frob [a]:b=c", "C set a:b=c", "C set [a:b=c", "C set [a]b=c",
                     "C set [a]:b", "C set [a]:b=", "C set [a]:=c", "C rm [a]:",
                     "C rms [a] extra", "C set []:b=c", "C set [a]:b=" + "v" * 201):
            with self.assertRaises(CommandError, msg=line):
                parse(line)

    def test_delete(self) -> None:
        cookies = "00112233445566778899aabbccddeeff"
        self.assertEqual(parse(f"d {cookies} -"), Delete(bytes.fromhex(cookies), None))
        self.assertEqual(parse(f"d {cookies} 0000abcd"),
                         Delete(bytes.fromhex(cookies), 0xabcd))
        for line in ("d", f"d {cookies}", "d 0011 -", f"d {cookies} 12", f"d {cookies} zz",
                     f"d {cookies[:-1]}g -"):
            with self.assertRaises(CommandError, msg=line):
                parse(line)

    def test_debug(self) -> None:
        self.assertEqual(parse("D 3 20"), Debug(DebugClass.CRYPTO, 20))
        self.assertEqual(parse("D A 50"), Debug(None, 50))
        self.assertEqual(parse("D T"), Debug(toggle=True))
        for line in ("D", "D 11 5", "D 3 100", "D x 5", "D 3", "D 3 -1"):
            with self.assertRaises(CommandError, msg=line):
                parse(line)

    def test_mode_takes_prefixes(self) -> None:
        self.assertEqual(parse("M active"), Mode(False))
        self.assertEqual(parse("M a"), Mode(False))
        self.assertEqual(parse("M pass"), Mode(True))
        self.assertRaises(CommandError, parse, "M")
        self.assertRaises(CommandError, parse, "M sleepy")

    def test_capture(self) -> None:
        self.assertEqual(parse("p on"), Capture(True))
        self.assertEqual(parse("p on=/tmp/x.pcap"), Capture(True, "/tmp/x.pcap"))
        self.assertEqual(parse("p off"), Capture(False))
        for line in ("p", "p maybe", "p on="):
            with self.assertRaises(CommandError, msg=line):
                parse(line)

    def test_single_letters(self) -> None:
        for letter in "RrST":
            self.assertEqual(parse(letter), Simple(letter))
        self.assertEqual(parse("Q"), Simple("Q"))
        # Only the exact line Q shuts down.
        for line in ("Q ", "Quit", "Q now"):
            with self.assertRaises(CommandError, msg=line):
                parse(line)

    def test_teardown(self) -> None:
        self.assertEqual(parse("t conn"), Teardown(2, "conn"))
        self.assertEqual(parse("t quick conn"), Teardown(2, "conn"))
        self.assertEqual(parse("t main peer"), Teardown(1, "peer"))
        self.assertEqual(parse("t main"), Teardown(2, "main"))
        self.assertRaises(CommandError, parse, "t")
        self.assertRaises(CommandError, parse, "t sideways conn")

    def test_unknown(self) -> None:
        for line in ("x", "?", "hello", "\x00"):
            with self.assertRaises(CommandError, msg=line):
                parse(line)


class FakeCapture:
    def __init__(self) -> None:
        self.active = False
        self.calls: list[tuple[str, str | None]] = []

    def start(self, path: str | None = None) -> None:
        self.active = True
        self.calls.append(("start", path))

    def stop(self) -> None:
        self.active = False
        self.calls.append(("stop", None))


class FakeDaemon:
    """What the controller needs of IsakmpdService, recording the API calls."""

    def __init__(self, node: Any, clock: Any) -> None:
        self.engine = node.engine
        self.reactor = clock
        self.connections = ConnectionManager(node.engine, clock)
        self.results: list[str] = []
        self.reports: list[str | None] = []
        self.calls: list[str] = []
        self.capture: FakeCapture | None = FakeCapture()

    def write_result(self, text: str) -> None:
        self.results.append(text)

    def write_report(self, path: str | None = None) -> None:
        self.reports.append(path)

    def reinitialise(self) -> None:
        self.calls.append("reinitialise")

    def shutdown(self) -> None:
        self.calls.append("shutdown")


class ControllerTests(SynchronousTestCase):
    """Every command on west of a pair; east is a plain responder."""

    def setUp(self) -> None:
        self.network, self.west, self.east = make_pair()
        self.clock = self.network.clock
        self.daemon = FakeDaemon(self.west, self.clock)
        self.controller = Controller(self.daemon)
        self.controller.watch(self.west.engine)
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.addCleanup(debug.reset)

    def up(self) -> None:
        """Bring conn up the way the daemon does: the checker at start."""
        self.daemon.connections.start()
        self.network.run()
        self.assertEqual(len(ready_ipsec(self.west)), 1)
        self.assertEqual(len(ready_ipsec(self.east)), 1)

    def warnings(self) -> list[str]:
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in self.events
                if e.get("log_level") in (LogLevel.warn, LogLevel.error)]

    def line(self, text: str) -> None:
        self.controller.handle_line(text)
        self.network.run()

    # -- c, M, t, T ----------------------------------------------------------------

    def test_connect_starts_a_connection_at_once(self) -> None:
        self.west.engine.store.remove("Phase 2", "Connections")
        self.daemon.connections.start()
        self.network.run()
        self.assertEqual(ready_ipsec(self.west), [])
        self.line("c conn")
        self.assertEqual(len(ready_ipsec(self.west)), 1)
        self.assertEqual(self.daemon.connections.active, ["conn"])

    def test_connect_to_an_unknown_section_is_refused(self) -> None:
        self.daemon.connections.start()
        self.line("c nowhere")
        self.assertEqual(self.daemon.connections.active, ["conn"])
        self.assertTrue(any("no [nowhere] section" in w for w in self.warnings()))

    def test_passive_mode_initiates_nothing_until_active(self) -> None:
        self.line("M passive")
        self.daemon.connections.start()
        self.network.run()
        self.assertEqual(ready_ipsec(self.west), [])
        self.line("M act")
        self.assertEqual(len(ready_ipsec(self.west)), 1)

    def test_teardown_by_name_deletes_and_stops_keeping_up(self) -> None:
        self.up()
        self.line("t conn")
        self.assertEqual(ready_ipsec(self.west), [])
        self.assertEqual(ready_ipsec(self.east), [], "east got the DELETE")
        self.assertEqual(self.daemon.connections.active, [])
        # The checker does not bring it back.
        self.clock.advance(120)
        self.network.run()
        self.assertEqual(ready_ipsec(self.west), [])

    def test_teardown_main_by_name(self) -> None:
        self.up()
        self.line("t main peer")
        self.assertEqual(self.west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(self.east.engine.sadb.isakmp_sas(), [])

    def test_teardown_by_address(self) -> None:
        self.up()
        self.line(f"t quick {EAST}")
        self.assertEqual(ready_ipsec(self.west), [])
        self.assertEqual(ready_ipsec(self.east), [])
        self.assertEqual(self.daemon.connections.active, [])
        self.line(f"t main {EAST}")
        self.assertEqual(self.west.engine.sadb.isakmp_sas(), [])

    def test_teardown_all(self) -> None:
        self.up()
        self.line("T")
        self.assertEqual(self.west.engine.sadb.ipsec_sas(), [])
        self.assertEqual(self.east.engine.sadb.ipsec_sas(), [])
        self.assertEqual(len(self.west.engine.sadb.isakmp_sas()), 1, "phase 1 stays")
        self.assertEqual(self.daemon.connections.active, [])

    # -- d -----------------------------------------------------------------------------

    def test_delete_phase2_by_cookies_and_message_id(self) -> None:
        self.up()
        [ipsec] = ready_ipsec(self.west)
        msgid = self.controller.message_ids[ipsec]
        cookies = ipsec.isakmp_sa.cookies.hex()
        self.line(f"d {cookies} {msgid + 1 & 0xffffffff:08x}")
        self.assertEqual(len(ready_ipsec(self.west)), 1)
        self.assertTrue(any("no IPsec SA with message ID" in w for w in self.warnings()))
        self.line(f"d {cookies} {msgid:08x}")
        self.assertEqual(ready_ipsec(self.west), [])
        self.assertEqual(ready_ipsec(self.east), [])

    def test_delete_phase1(self) -> None:
        self.up()
        [isakmp] = self.west.engine.sadb.isakmp_sas()
        self.line(f"d {isakmp.cookies.hex()} -")
        self.assertEqual(self.west.engine.sadb.isakmp_sas(), [])
        self.assertEqual(self.east.engine.sadb.isakmp_sas(), [])
        self.line(f"d {isakmp.cookies.hex()} -")
        self.assertTrue(any("no ISAKMP SA with cookies" in w for w in self.warnings()))

    # -- C -------------------------------------------------------------------------------

    def test_config_set_respects_existing_values_unless_forced(self) -> None:
        store = self.west.engine.store
        self.line("C set [General]:Retransmits=7")
        self.assertEqual(store.get_str("General", "Retransmits"), "3")
        self.line("C set [General]:Retransmits=7 force")
        self.assertEqual(store.get_str("General", "Retransmits"), "7")
        self.line("C set [New section]:Fresh=value")
        self.assertEqual(store.get_str("new section", "fresh"), "value")

    def test_config_add_rmv_rm_rms(self) -> None:
        store = self.west.engine.store
        self.line("C add [x]:List=a")
        self.line("C add [x]:List=b")
        self.line("C add [x]:List=a")
        self.assertEqual(store.get_list("x", "List"), ["a", "b"])
        self.line("C rmv [x]:List=a")
        self.assertEqual(store.get_list("x", "List"), ["b"])
        self.line("C rmv [x]:List=b")
        self.assertFalse(store.has("x", "List"))
        self.line("C set [y]:A=1")
        self.line("C set [y]:B=2")
        self.line("C rm [y]:A")
        self.assertEqual((store.has("y", "A"), store.get_str("y", "B")), (False, "2"))
        self.line("C rms [y]")
        self.assertFalse(store.has("y"))

    def test_config_get_writes_the_result(self) -> None:
        self.line("C get [peer]:Address")
        self.line("C get [peer]:Nothing")
        self.line("C get [General]:Check-interval")      # a generated default counts
        self.assertEqual(self.daemon.results, [f"{EAST}\n", "", "60\n"])

    def test_malformed_config_line_changes_nothing(self) -> None:
        store = self.west.engine.store
        before = sorted(store)
        self.line("C set [General]:Retransmits")
        self.line("C set [General:Retransmits=9 force")
        self.assertEqual(sorted(store), before)
        self.assertEqual(len([w for w in self.warnings() if "ignored" in w]), 2)

    def test_connection_list_change_takes_effect_5s_later_and_restarts(self) -> None:
        self.west.engine.store.remove("Phase 2", "Connections")
        self.daemon.connections.start()
        self.network.run()
        self.line("C add [Phase 2]:Connections=conn")
        self.clock.advance(4)
        self.network.run()
        self.assertEqual(self.daemon.connections.active, [])
        # A newer change restarts the 5 s.
        self.line("C set [General]:Unrelated=1")
        self.line("C add [phase 2]:connections=conn")
        self.clock.advance(4)
        self.network.run()
        self.assertEqual(self.daemon.connections.active, [])
        self.clock.advance(1)
        self.network.run()
        self.assertEqual(self.daemon.connections.active, ["conn"])
        self.assertEqual(len(ready_ipsec(self.west)), 1)

    def test_connection_reinit_timer_cancelled_by_stop(self) -> None:
        self.line("C rmv [Phase 2]:Connections=conn")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.controller.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    # -- D, p ------------------------------------------------------------------------

    def test_debug_levels(self) -> None:
        self.line("D 6 40")
        self.assertEqual(debug.level(DebugClass.SA), 40)
        self.line("D A 10")
        self.assertEqual({debug.level(c) for c in DebugClass}, {10})

    def test_debug_toggle(self) -> None:
        from twisted.logger import formatEvent
        self.addCleanup(debug.reset)
        self.line("D 6 40")
        self.line("D 0 60")
        self.line("D T")
        self.assertEqual({debug.level(c) for c in DebugClass}, {0})
        self.line("D T")
        self.assertEqual((debug.level(DebugClass.SA), debug.level(DebugClass.MISC)), (40, 60))
        # isakmpd's Misc 50 lines, before clearing and after restoring.
        said = [formatEvent(e) for e in self.events]
        self.assertIn("debug levels cleared", said)
        self.assertIn("debug levels restored", said)

    def test_capture_on_off(self) -> None:
        capture = self.daemon.capture
        assert capture is not None
        self.line("p on")
        self.line("p on=/elsewhere.pcap")      # already running: only logged
        self.line("p off")
        self.line("p on=/elsewhere.pcap")
        self.assertEqual(capture.calls, [("start", None), ("stop", None),
                                         ("start", "/elsewhere.pcap")])

    def test_capture_with_the_real_capture(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.daemon.capture = PacketCapture(str(directory / "default.pcap"))
        self.addCleanup(self.daemon.capture.stop)
        self.line(f"p on={directory / 'chosen.pcap'}")
        self.assertTrue(self.daemon.capture.active)
        self.assertEqual((directory / "chosen.pcap").stat().st_mode & 0o777, 0o600)
        self.line("p off")
        self.assertFalse(self.daemon.capture.active)
        # A file others may read is refused, with the reason, and nothing starts.
        shared = directory / "shared.pcap"
        shared.write_bytes(b"")
        shared.chmod(0o644)
        self.line(f"p on={shared}")
        self.assertFalse(self.daemon.capture.active)
        self.assertTrue(any("packet capture not started" in w and str(shared) in w
                            for w in self.warnings()), self.warnings())

    def test_capture_missing_is_logged(self) -> None:
        self.daemon.capture = None
        self.line("p on")
        self.assertTrue(any("packet capture is not available" in w for w in self.warnings()))

    # -- Q, R, r, S --------------------------------------------------------------------

    def test_service_api_commands(self) -> None:
        self.up()
        self.line("Q now")
        self.line("R")
        self.line("r")
        self.line("S")
        self.line("Q")
        self.assertEqual(self.daemon.calls, ["reinitialise", "shutdown"])
        self.assertEqual(self.daemon.reports, [None])
        [result] = self.daemon.results
        self.assertIn("SA name: conn (Phase 2)", result)
        self.assertIn("SA name: peer (Phase 1/Initiator)", result)

    # -- robustness ------------------------------------------------------------------

    def test_bad_lines_are_logged_and_ignored(self) -> None:
        for text in ("garbage", "C", "d nonsense", "\udcff\udcfe", "t", "Z" * 5000):
            self.line(text)
        warnings = self.warnings()
        self.assertEqual(len(warnings), 6, warnings)
        self.assertTrue(all("ignored" in w for w in warnings))
        self.assertTrue(any("'garbage'" in w and "unknown command" in w for w in warnings))
        self.line("C set [General]:Alive=yes")
        self.assertEqual(self.west.engine.store.get_str("General", "Alive"), "yes")

    def test_a_failing_command_does_not_escape(self) -> None:
        def boom() -> None:
            raise RuntimeError("broken")
        self.daemon.reinitialise = boom   # type: ignore[method-assign]
        self.line("R")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.line("C set [General]:Alive=yes")
        self.assertEqual(self.west.engine.store.get_str("General", "Alive"), "yes")

    def test_reinit_delay_is_five_seconds(self) -> None:
        self.assertEqual(commands.CONNECTION_REINIT_DELAY, 5.0)
