"""isakmpd.log: isakmpd's line format, syslog priorities, which events print, debug
levels from -D / [General] Loglevel, D T, and the engine's -v and debug lines."""

from __future__ import annotations

import io
import re
import time
from typing import Any

from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from isakmpd import debug
from isakmpd import log as isakmpd_log
from isakmpd.config import load_config
from isakmpd.debug import DebugClass
from isakmpd.service import DaemonSettings
from tests.support.ikepair import EAST, WEST, collect, make_pair

# A fixed moment with a known fraction of a second.
WHEN = 1_700_000_000.123456


def stamp(when: float = WHEN) -> str:
    local = time.localtime(when)
    return f"{local.tm_hour:02d}{local.tm_min:02d}{local.tm_sec:02d}.123456"


def event(text: str, level: LogLevel = LogLevel.info, namespace: str = "isakmpd.ike.engine",
          **fields: Any) -> dict[str, Any]:
    return {"log_format": text, "log_level": level, "log_namespace": namespace,
            "log_time": WHEN, **fields}


class LevelsTestCase(SynchronousTestCase):

    def setUp(self) -> None:
        debug.reset()
        self.addCleanup(debug.reset)


class FormatTests(LevelsTestCase):
    """The line format of isakmpd's log.c _log_print."""

    def test_normal_line(self) -> None:
        self.assertEqual(isakmpd_log.format_line(event("phase 1 failed")),
                         f"{stamp()} Default phase 1 failed")
        # Warnings and errors are log_print / log_error lines: "Default" too.
        self.assertEqual(isakmpd_log.format_line(event("bad", LogLevel.error)),
                         f"{stamp()} Default bad")

    def test_debug_line_has_class_name_and_level(self) -> None:
        line = isakmpd_log.format_line(event(
            "sending", LogLevel.debug, **debug.fields(DebugClass.MESSAGE, 7)))
        self.assertEqual(line, f"{stamp()} Mesg 07 sending")
        names = [isakmpd_log.format_line(event("x", LogLevel.debug, **debug.fields(c, 10)))
                 .split(" ", 2)[1] for c in DebugClass]
        self.assertEqual(names, ["Misc", "Trpt", "Mesg", "Cryp", "Timr", "Sdep", "SA", "Exch",
                                 "Negt", "Plcy", "UI"])
        # "SA  " and "UI  " keep isakmpd's padding to four characters.
        self.assertIn(" SA   10 x", isakmpd_log.format_line(
            event("x", LogLevel.debug, **debug.fields(DebugClass.SA, 10))))

    def test_every_line_of_a_dump_has_the_prefix(self) -> None:
        line = isakmpd_log.format_line(event(
            "HASH\nSA\nNONCE", LogLevel.debug, **debug.fields(DebugClass.MESSAGE, 70)))
        self.assertEqual(line.split("\n"), [f"{stamp()} Mesg 70 {text}"
                                            for text in ("HASH", "SA", "NONCE")])

    def test_report_line(self) -> None:
        line = isakmpd_log.format_line(event("SA name: conn", isakmpd_report=True))
        self.assertEqual(line, f"{stamp()} Report> SA name: conn")

    def test_untagged_debug_is_misc_50(self) -> None:
        self.assertEqual(isakmpd_log.format_line(event("x", LogLevel.debug)),
                         f"{stamp()} Misc 50 x")

    def test_failure_adds_the_traceback(self) -> None:
        from twisted.python.failure import Failure
        try:
            raise ValueError("boom")
        except ValueError:
            failure = Failure()
        line = isakmpd_log.format_line(event("internal error", LogLevel.critical,
                                             log_failure=failure))
        self.assertTrue(line.startswith(f"{stamp()} Default internal error\n"))
        self.assertIn("ValueError: boom", line)


class WantedTests(LevelsTestCase):
    """What is printed at which levels."""

    def test_default_verbosity(self) -> None:
        wanted = isakmpd_log.wanted
        self.assertTrue(wanted(event("ISAKMP SA established")))
        self.assertTrue(wanted(event("refused", LogLevel.warn)))
        self.assertTrue(wanted(event("Twisted trouble", LogLevel.error, namespace="twisted")))
        # Twisted's own chatter and every debug line stay quiet without -D.
        self.assertFalse(wanted(event("UDP Port 500 Opened", namespace="twisted.internet")))
        self.assertFalse(wanted(event("Main loop", namespace="log_legacy")))
        self.assertFalse(wanted(event("x", LogLevel.debug)))
        self.assertFalse(wanted(event("x", LogLevel.debug,
                                      **debug.fields(DebugClass.MESSAGE, 1))))
        self.assertTrue(wanted(event("report", LogLevel.info, namespace="x",
                                     isakmpd_report=True)))

    def test_class_levels(self) -> None:
        debug.set_level(DebugClass.MESSAGE, 40)
        self.assertTrue(isakmpd_log.wanted(event("x", LogLevel.debug,
                                                 **debug.fields(DebugClass.MESSAGE, 40))))
        self.assertFalse(isakmpd_log.wanted(event("x", LogLevel.debug,
                                                  **debug.fields(DebugClass.MESSAGE, 41))))
        self.assertFalse(isakmpd_log.wanted(event("x", LogLevel.debug,
                                                  **debug.fields(DebugClass.SA, 1))))
        self.assertFalse(isakmpd_log.wanted(event("x", LogLevel.debug)))
        debug.set_level(DebugClass.MISC, 50)
        self.assertTrue(isakmpd_log.wanted(event("x", LogLevel.debug)))
        self.assertTrue(isakmpd_log.wanted(event("Opened", namespace="twisted")))

    def test_stderr_observer(self) -> None:
        stream = io.StringIO()
        observer = isakmpd_log.make_observer(None, to_stderr=True, stream=stream)
        logger = Logger(namespace="isakmpd.test", observer=observer)
        logger.info("one {what}", what="line")
        logger.debug("hidden", **debug.fields(DebugClass.EXCHANGE, 10))
        debug.set_level(DebugClass.EXCHANGE, 10)
        logger.debug("shown {n}", n=2, **debug.fields(DebugClass.EXCHANGE, 10))
        lines = stream.getvalue().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], r"^\d{6}\.\d{6} Default one line$")
        self.assertRegex(lines[1], r"^\d{6}\.\d{6} Exch 10 shown 2$")


class FakeSyslog:
    LOG_PID, LOG_CONS, LOG_DAEMON = 0x01, 0x02, 3 << 3

    def __init__(self) -> None:
        self.opened: tuple[Any, ...] | None = None
        self.lines: list[tuple[int, str]] = []

    def openlog(self, *args: Any) -> None:
        self.opened = args

    def syslog(self, priority: int, text: str) -> None:
        self.lines.append((priority, text))


class SyslogTests(LevelsTestCase):

    def test_ident_facility_and_priorities(self) -> None:
        fake = FakeSyslog()
        observer = isakmpd_log.make_observer(None, to_stderr=False, syslog_module=fake)
        self.assertEqual(fake.opened, ("isakmpd", fake.LOG_PID | fake.LOG_CONS,
                                       fake.LOG_DAEMON))
        debug.set_level(DebugClass.SA, 10)
        for level, text in ((LogLevel.info, "notice"), (LogLevel.warn, "warning"),
                            (LogLevel.error, "error"), (LogLevel.critical, "critical")):
            observer(event(text, level))
        observer(event("dbg", LogLevel.debug, **debug.fields(DebugClass.SA, 10)))
        observer(event("not shown", LogLevel.debug, **debug.fields(DebugClass.SA, 11)))
        observer(event("report", isakmpd_report=True))
        observer(event("two\nlines", LogLevel.warn))
        # log.c: log_print NOTICE, log_error ERR, log_fatal CRIT, log_debug INFO,
        # reports ALERT; the text only, no time or class.
        self.assertEqual(fake.lines, [(5, "notice"), (4, "warning"), (3, "error"),
                                      (2, "critical"), (6, "dbg"), (1, "report"),
                                      (4, "two"), (4, "lines")])


class BeginLoggingTests(LevelsTestCase):

    def test_stderr_with_d(self) -> None:
        class Beginner:
            observers: Any = None

            def beginLoggingTo(self, observers: list[Any], redirectStandardIO: bool,
                               ) -> None:
                self.observers = observers
                self.redirect = redirectStandardIO

        beginner = Beginner()
        stream = io.StringIO()
        settings = DaemonSettings(debug=((None, 20), (DebugClass.MESSAGE, 70)), verbose=True)
        observer = isakmpd_log.begin_logging(settings, to_stderr=True, stream=stream,
                                             beginner=beginner)
        self.assertEqual(beginner.observers, [observer])
        self.assertFalse(beginner.redirect)
        self.assertEqual([debug.level(c) for c in DebugClass],
                         [20, 20, 70, 20, 20, 20, 20, 20, 20, 20, 20])
        self.assertTrue(debug.verbose())
        observer(event("hello"))
        self.assertTrue(stream.getvalue().endswith(" Default hello\n"))

    def test_syslog_without_d(self) -> None:
        fake = FakeSyslog()
        beginner = type("B", (), {"beginLoggingTo": lambda self, o, redirectStandardIO: None})()
        observer = isakmpd_log.begin_logging(DaemonSettings(), to_stderr=False,
                                             syslog_module=fake, beginner=beginner)
        self.assertIsInstance(observer, isakmpd_log.SyslogObserver)
        self.assertFalse(debug.verbose())


class ConfigLevelTests(LevelsTestCase):
    """[General] Loglevel / Logverbose (log.c log_reinit, inventory §4.10)."""

    def store(self, general: str) -> Any:
        store, _ = load_config(f"[General]\n{general}\n", "<test>")
        return store

    def test_loglevel_on_top_of_current_levels(self) -> None:
        events: list[dict] = []
        logger = Logger(observer=events.append)
        debug.set_level(DebugClass.SA, 5)
        debug.set_level(DebugClass.UI, 9)
        isakmpd_log.apply_config_levels(self.store("Loglevel=A=20,7=40,2=x,12=3"), logger)
        self.assertEqual([debug.level(c) for c in DebugClass],
                         [20, 20, 20, 20, 20, 20, 20, 40, 20, 20, 20])
        bad = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(bad, ["[General] Loglevel: invalid logging class or level: 2=x",
                               "[General] Loglevel: invalid logging class or level: 12=3"])
        self.assertIn("log level changed from 5 to 20 for class 6",
                      [formatEvent(e) for e in events])
        self.assertFalse(debug.verbose())
        # Reinitialised with another list: classes no longer named keep their level.
        isakmpd_log.apply_config_levels(self.store("Loglevel=3=60\nLogverbose=yes"), logger)
        self.assertEqual(debug.level(DebugClass.CRYPTO), 60)
        self.assertEqual(debug.level(DebugClass.EXCHANGE), 40)
        self.assertTrue(debug.verbose())

    def test_no_tags_change_nothing(self) -> None:
        debug.set_level(DebugClass.SA, 5)
        isakmpd_log.apply_config_levels(self.store("Retransmits=3"), Logger(observer=list))
        self.assertEqual(debug.level(DebugClass.SA), 5)
        self.assertFalse(debug.verbose())

    def test_settings_in_order(self) -> None:
        isakmpd_log.apply_settings(DaemonSettings(debug=((6, 30), (None, 10), (7, 50))))
        self.assertEqual((debug.level(DebugClass.SA), debug.level(DebugClass.EXCHANGE),
                          debug.level(DebugClass.MISC)), (10, 50, 10))


class ToggleTests(LevelsTestCase):
    """FIFO D T: save and zero every level, then restore them."""

    def test_toggle(self) -> None:
        debug.set_level(DebugClass.MISC, 60)
        debug.set_level(DebugClass.SA, 30)
        events: list[dict] = []
        logger = Logger(observer=events.append)
        self.assertTrue(isakmpd_log.toggle(logger))
        self.assertTrue(all(debug.level(c) == 0 for c in DebugClass))
        self.assertFalse(debug.enabled(DebugClass.SA, 1))
        self.assertFalse(isakmpd_log.toggle(logger))
        self.assertEqual((debug.level(DebugClass.MISC), debug.level(DebugClass.SA)), (60, 30))
        self.assertEqual([formatEvent(e) for e in events],
                         ["debug levels cleared", "debug levels restored"])
        # The plain toggle of isakmpd.debug, as the FIFO may call it.
        self.assertTrue(debug.toggle())
        self.assertEqual(debug.level(DebugClass.SA), 0)
        self.assertFalse(debug.toggle())
        self.assertEqual(debug.level(DebugClass.SA), 30)


def run_pair(**kwargs: Any) -> tuple[Any, Any, Any]:
    network, west, east = make_pair(**kwargs)
    box = collect(west.engine.initiate_connection("conn"))
    network.run()
    assert box and not hasattr(box[0], "getErrorMessage"), box
    return network, west, east


def texts(node: Any) -> list[str]:
    return [formatEvent(e) for e in node.events]


class VerboseLineTests(LevelsTestCase):
    """-v: isakmpd's "phase 1 done", "quick mode done" and "made us delete live SA"."""

    def test_done_lines(self) -> None:
        debug.set_verbose(True)
        _network, west, east = run_pair()
        self.assertIn(f"isakmpd: phase 1 done: initiator id {WEST}, responder id {EAST}, "
                      f"src: {WEST} dst: {EAST}", texts(west))
        self.assertIn(f"isakmpd: phase 1 done (as responder): initiator id {WEST}, "
                      f"responder id {EAST}, src: {EAST} dst: {WEST}", texts(east))
        self.assertIn(f"isakmpd: quick mode done: src: {WEST} dst: {EAST}", texts(west))
        self.assertIn(f"isakmpd: quick mode done (as responder): src: {EAST} dst: {WEST}",
                      texts(east))

    def test_peer_made_us_delete_live_sa(self) -> None:
        debug.set_verbose(True)
        network, west, east = run_pair()
        [ipsec] = west.engine.sadb.ipsec_by_name("conn")
        west.engine.delete_ipsec_sa(ipsec)
        network.run()
        self.assertIn(f"isakmpd: Peer {WEST} made us delete live SA conn for proto 3, "
                      "initiator id: 203.0.113.0/255.255.255.128, responder id: "
                      "203.0.113.128/255.255.255.128", texts(east))
        [isakmp] = west.engine.sadb.isakmp_sas()
        west.engine.delete_isakmp_sa(isakmp)
        network.run()
        self.assertIn(f"isakmpd: Peer {WEST} made us delete live SA peer for proto 1, "
                      f"initiator id: {WEST}, responder id: {EAST}", texts(east))

    def test_fading_sa_is_not_live(self) -> None:
        debug.set_verbose(True)
        network, west, east = run_pair()
        [ipsec] = east.engine.sadb.ipsec_by_name("conn")
        ipsec.fading = True
        west.engine.delete_ipsec_sa(west.engine.sadb.ipsec_by_name("conn")[0])
        network.run()
        self.assertFalse(east.engine.sadb.ipsec_by_name("conn"))
        self.assertFalse([t for t in texts(east) if "made us delete" in t])

    def test_quiet_without_v(self) -> None:
        network, west, east = run_pair()
        west.engine.delete_ipsec_sa(west.engine.sadb.ipsec_by_name("conn")[0])
        network.run()
        for node in (west, east):
            self.assertFalse([t for t in texts(node) if t.startswith("isakmpd: ")])


class EngineDebugTests(LevelsTestCase):
    """Debug lines of the engine: off by default, by class and level, no keys."""

    def debug_events(self, node: Any) -> list[dict]:
        return [e for e in node.events if e["log_level"] == LogLevel.debug]

    def test_nothing_without_levels(self) -> None:
        _network, west, east = run_pair()
        self.assertEqual(self.debug_events(west) + self.debug_events(east), [])

    def test_message_and_exchange_classes(self) -> None:
        debug.set_level(DebugClass.MESSAGE, 10)
        debug.set_level(DebugClass.EXCHANGE, 30)
        _network, west, _east = run_pair()
        events = self.debug_events(west)
        classes = {(e[debug.CLASS_KEY], e[debug.LEVEL_KEY]) for e in events}
        self.assertEqual(classes, {(DebugClass.MESSAGE, 10), (DebugClass.EXCHANGE, 10),
                                   (DebugClass.EXCHANGE, 30)})
        lines = [formatEvent(e) for e in events]
        sent = [line for line in lines if line.startswith(f"sending to {EAST}:500: ")]
        received = [line for line in lines if line.startswith(f"received from {EAST}:500: ")]
        # Main Mode 3 + 3, Quick Mode 2 + 1: ours and theirs, in clear.
        self.assertEqual((len(sent), len(received)), (5, 4), lines)
        self.assertTrue(any("QUICK_MODE" in line and "HASH, SA, NONCE" in line
                            for line in sent), sent)
        self.assertTrue(any(re.search(r"step recv_", line) for line in lines))
        self.assertTrue(any(line.endswith(": finished") for line in lines))

    def test_no_key_material_at_any_level(self) -> None:
        debug.set_level(None, 99)
        _network, west, east = run_pair()
        text = "\n".join(texts(west) + texts(east))
        self.assertIn("sending to", text)
        [isakmp] = west.engine.sadb.isakmp_sas()
        keys = isakmp.keys
        assert keys is not None
        secrets = [keys.skeyid, keys.skeyid_d, keys.skeyid_a, keys.skeyid_e, keys.cipher_key]
        for sa in west.kernel.sas.values():
            secrets += [sa.enc_key, sa.auth_key]
        for secret in secrets:
            if secret:
                self.assertNotIn(secret.hex(), text)
                self.assertNotIn(secret.hex().upper(), text)


class CommandLineTests(SynchronousTestCase):
    """-D, -v, -L and -l reach the settings."""

    def test_flags_accepted(self) -> None:
        from isakmpd import tap
        options = tap.Options()
        options.parseOptions(["-n", "-v", "-D", "7=30", "-D", "A=5", "-l", "/tmp/x.pcap"])
        settings = options.settings()
        self.assertEqual((settings.verbose, settings.debug, settings.capture_file),
                         (True, ((7, 30), (None, 5)), "/tmp/x.pcap"))
        options = tap.Options()
        options.parseOptions(["-n", "-L"])
        self.assertEqual(options.settings().capture_file, "/var/run/isakmpd.pcap")


class CheapInfoTests(SynchronousTestCase):
    """isakmpd.log.info hands the observer the event Logger.info would."""

    def test_same_event_as_logger_info(self) -> None:
        events: list[dict[str, Any]] = []
        logger = Logger(namespace="isakmpd.test", source=self, observer=events.append)
        logger.info("SA {sa} up", sa="x")
        isakmpd_log.info(logger, "SA {sa} up", sa="x")
        twisted_event, ours = events
        self.assertLess(abs(twisted_event.pop("log_time") - ours.pop("log_time")), 60)
        self.assertEqual(ours, twisted_event)
        self.assertEqual(formatEvent(ours), "SA x up")

    def test_other_loggers_get_their_own_info(self) -> None:
        calls: list[tuple[str, dict[str, Any]]] = []

        class Other:
            def info(self, fmt: str, **kwargs: Any) -> None:
                calls.append((fmt, kwargs))

        isakmpd_log.info(Other(), "x {a}", a=1)
        self.assertEqual(calls, [("x {a}", {"a": 1})])
