"""Tests of isakmpd.config.store: lookups, origins, FIFO-style changes, transactions."""

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config.store import OriginKind, Store, load


def empty_defaults(lookup):  # type: ignore[no-untyped-def]
    return iter(())


def make(text: str) -> Store:
    return load(text, "t.conf", defaults=empty_defaults)[0]


class LookupTests(SynchronousTestCase):
    def test_case_insensitive_keeps_spelling(self) -> None:
        store = make("[My-Peer]\nAddress=192.0.2.1\n")
        self.assertEqual(store.get_str("my-peer", "ADDRESS"), "192.0.2.1")
        self.assertEqual(store.get_section_names(), ["My-Peer"])
        self.assertEqual(store.binding("MY-PEER", "address").tag, "Address")
        self.assertTrue(store.has("my-peer"))
        self.assertTrue(store.has("my-peer", "address"))
        self.assertFalse(store.has("my-peer", "port"))

    def test_origin_of_file_value(self) -> None:
        store = make("\n[S]\nA=1\n")
        origin = store.binding("s", "a").origin
        self.assertEqual((origin.kind, origin.file, origin.line), (OriginKind.FILE, "t.conf", 3))
        self.assertEqual(str(origin), "t.conf:3")
        self.assertEqual(store.section_origin("s").line, 2)

    def test_header_alone_makes_no_section(self) -> None:
        store = make("[Empty]\n")
        self.assertFalse(store.has("empty"))
        self.assertEqual(store.section_origin("empty").line, 1)

    def test_get_num_and_list(self) -> None:
        store = make("[S]\nN=12abc\nB=abc\nL= a, b ,,c\n")
        self.assertEqual(store.get_num("s", "n"), 12)
        self.assertEqual(store.get_num("s", "b", 7), 0)
        self.assertEqual(store.get_num("s", "missing", 7), 7)
        self.assertEqual(store.get_list("s", "l"), ["a", "b", "c"])
        self.assertEqual(store.get_list("s", "missing"), [])
        self.assertIsNone(store.get_str("s", "missing"))
        self.assertEqual(store.get_str("s", "missing", "d"), "d")

    def test_defaults_never_override(self) -> None:
        def defaults(lookup):  # type: ignore[no-untyped-def]
            yield "S", "A", "default"
            yield "S", "B", "default"
        store, _ = load("[S]\nA=user\n", "t.conf", defaults=defaults)
        self.assertEqual(store.get_str("S", "A"), "user")
        self.assertEqual(store.binding("S", "B").origin.kind, OriginKind.DEFAULT)


class ChangeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make("[Phase 2]\nConnections=a,b\n")

    def test_set_without_force_ignored_when_present(self) -> None:
        self.assertFalse(self.store.set("phase 2", "connections", "x"))
        self.assertEqual(self.store.get_str("Phase 2", "Connections"), "a,b")
        self.assertTrue(self.store.set("phase 2", "connections", "x", force=True))
        self.assertEqual(self.store.get_str("Phase 2", "Connections"), "x")
        self.assertEqual(self.store.binding("Phase 2", "Connections").origin.kind,
                         OriginKind.FIFO)
        self.assertEqual(self.store.binding("Phase 2", "Connections").tag, "Connections")

    def test_set_new(self) -> None:
        self.assertTrue(self.store.set("New", "T", "v"))
        self.assertEqual(self.store.get_str("new", "t"), "v")

    def test_add(self) -> None:
        self.assertTrue(self.store.add("Phase 2", "Connections", "c"))
        self.assertEqual(self.store.get_str("Phase 2", "Connections"), "a,b,c")
        self.assertFalse(self.store.add("Phase 2", "Connections", "b"))
        self.assertTrue(self.store.add("Phase 2", "Passive-connections", "p"))
        self.assertEqual(self.store.get_str("Phase 2", "Passive-connections"), "p")

    def test_add_no_double_comma(self) -> None:
        self.store.set("Phase 2", "Connections", "a,", force=True)
        self.store.add("Phase 2", "Connections", "b")
        self.assertEqual(self.store.get_str("Phase 2", "Connections"), "a,b")

    def test_rmv(self) -> None:
        self.store.set("Phase 2", "Connections", "a,b,a", force=True)
        self.assertTrue(self.store.rmv("Phase 2", "Connections", "a"))
        self.assertEqual(self.store.get_str("Phase 2", "Connections"), "b")
        self.assertFalse(self.store.rmv("Phase 2", "Connections", "zz"))
        self.assertTrue(self.store.rmv("Phase 2", "Connections", "b"))
        self.assertFalse(self.store.has("Phase 2", "Connections"))

    def test_rm_and_rms(self) -> None:
        self.store.set("Phase 2", "Other", "1")
        self.assertTrue(self.store.remove("phase 2", "CONNECTIONS"))
        self.assertFalse(self.store.remove("phase 2", "connections"))
        self.assertTrue(self.store.has("Phase 2", "Other"))
        self.assertTrue(self.store.remove_section("PHASE 2"))
        self.assertFalse(self.store.has("Phase 2"))
        self.assertFalse(self.store.remove_section("Phase 2"))

    def test_transaction_commit_is_all_at_once(self) -> None:
        trans = self.store.begin()
        trans.set("X", "A", "1")
        trans.add("X", "A", "2")
        trans.remove("Phase 2", "Connections")
        self.assertFalse(self.store.has("X"))
        self.assertTrue(self.store.has("Phase 2", "Connections"))
        self.assertEqual(trans.commit(), [True, True, True])
        self.assertEqual(self.store.get_str("X", "A"), "1,2")
        self.assertFalse(self.store.has("Phase 2"))
        self.assertRaises(RuntimeError, trans.commit)

    def test_rollback(self) -> None:
        trans = self.store.begin()
        trans.remove_section("Phase 2")
        trans.rollback()
        self.assertTrue(self.store.has("Phase 2"))

    def test_context_manager_rolls_back_on_error(self) -> None:
        with self.assertRaises(ValueError), self.store.begin() as trans:
            trans.remove_section("Phase 2")
            raise ValueError("parse error")
        self.assertTrue(self.store.has("Phase 2"))

    def test_copy_is_independent(self) -> None:
        other = self.store.copy()
        other.remove_section("Phase 2")
        self.assertTrue(self.store.has("Phase 2"))
        self.assertEqual(len(self.store), 1)


class LoadTests(SynchronousTestCase):
    def test_reload_is_a_new_store(self) -> None:
        first, _ = load("[S]\nA=1\n", "t.conf")
        first.set("S", "B", "fifo")
        second, _ = load("[S]\nA=2\n", "t.conf")
        self.assertEqual(second.get_str("S", "A"), "2")
        self.assertFalse(second.has("S", "B"))
        self.assertEqual(first.get_str("S", "A"), "1")

    def test_parse_diagnostics_returned(self) -> None:
        _, diagnostics = load("[S]\nA=1\nA=2\n", "t.conf")
        self.assertEqual([(d.file, d.line, d.tag) for d in diagnostics], [("t.conf", 3, "A")])


class MemoTests(SynchronousTestCase):
    """Store.memo: derived values live until the store changes."""

    def setUp(self) -> None:
        self.store, _ = load("[peer]\nAddress=\t192.0.2.1\n")
        self.calls = 0

    def derive(self) -> str | None:
        self.calls += 1
        return self.store.get_str("peer", "Address")

    def test_remembered_until_a_change(self) -> None:
        self.assertEqual(self.store.memo("address", self.derive), "192.0.2.1")
        self.assertEqual(self.store.memo("address", self.derive), "192.0.2.1")
        self.assertEqual(self.calls, 1)
        self.store.set("peer", "Address", "192.0.2.2", force=True)
        self.assertEqual(self.store.memo("address", self.derive), "192.0.2.2")
        self.assertEqual(self.calls, 2)

    def test_unchanged_store_keeps_the_memo(self) -> None:
        self.store.memo("address", self.derive)
        self.assertFalse(self.store.set("peer", "Address", "192.0.2.9"))  # exists: no-op
        self.assertFalse(self.store.remove("nothing", "here"))
        self.store.memo("address", self.derive)
        self.assertEqual(self.calls, 1)

    def test_every_kind_of_change_clears_it(self) -> None:
        for change in (lambda: self.store.add("peer", "Flags", "x"),
                       lambda: self.store.rmv("peer", "Flags", "x"),
                       lambda: self.store.set("peer", "Port", "4500"),
                       lambda: self.store.remove("peer", "Port"),
                       lambda: self.store.remove_section("peer")):
            self.store.memo("address", self.derive)
            before = self.calls
            self.assertTrue(change())
            self.store.memo("address", self.derive)
            self.assertEqual(self.calls, before + 1)

    def test_exceptions_are_not_remembered(self) -> None:
        def broken() -> str:
            self.calls += 1
            raise ValueError("no")

        self.assertRaises(ValueError, self.store.memo, "k", broken)
        self.assertRaises(ValueError, self.store.memo, "k", broken)
        self.assertEqual(self.calls, 2)

    def test_bounded(self) -> None:
        from isakmpd.config.store import MEMO_LIMIT
        for n in range(MEMO_LIMIT + 10):
            self.store.memo(("peer", n), lambda n=n: n)
        self.assertLessEqual(len(self.store._memo), MEMO_LIMIT)
        self.assertEqual(self.store.memo(("peer", 3), lambda: -1), -1)
