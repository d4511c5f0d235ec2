"""Tests of isakmpd.config.parser (lexical rules of isakmpd.conf(5)) and config.values."""

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config import values
from isakmpd.config.parser import Severity, parse


def bindings(text: str) -> dict[tuple[str, str], str]:
    return {(e.section, e.tag): e.value for e in parse(text, "t.conf").entries}


class LexicalTests(SynchronousTestCase):
    def test_comments_only_in_column_1(self) -> None:
        result = parse("# c\n; c\n[S]\nA=1 # not a comment\n #x=2\n", "t.conf")
        self.assertEqual([(e.tag, e.value) for e in result.entries],
                         [("A", "1 # not a comment")])
        messages = " ".join(str(d) for d in result.diagnostics)
        self.assertIn("t.conf:4", messages)          # the inline '#' is flagged
        self.assertIn("t.conf:5", messages)          # the indented assignment is ignored

    def test_continuation_joins_lines(self) -> None:
        self.assertEqual(bindings("[S]\nA=x,\\\ny\n"), {("S", "A"): "x,  y"})

    def test_comment_with_backslash_swallows_next_line(self) -> None:
        result = parse("[S]\n# c \\\nA=1\nB=2\n", "t.conf")
        self.assertEqual([e.tag for e in result.entries], ["B"])
        self.assertTrue(result.diagnostics)

    def test_first_equals_splits_and_blanks_trimmed(self) -> None:
        self.assertEqual(bindings("[S]\nA=  b=c  \t\n"), {("S", "A"): "b=c"})

    def test_tag_stops_at_blank(self) -> None:
        self.assertEqual(bindings("[S]\nTag =v\n"), {("S", "Tag"): "v"})

    def test_section_header_rest_ignored(self) -> None:
        result = parse("[My Sec] junk\nA=1\n", "t.conf")
        self.assertEqual(result.entries[0].section, "My Sec")
        self.assertEqual(result.diagnostics[0].line, 1)

    def test_unmatched_bracket_ignores_until_next_header(self) -> None:
        result = parse("[S\nA=1\n[T]\nB=2\n", "t.conf")
        self.assertEqual([(e.section, e.tag) for e in result.entries], [("T", "B")])
        self.assertEqual(result.diagnostics[0].severity, Severity.ERROR)
        self.assertEqual(result.diagnostics[0].line, 1)

    def test_assignment_before_section_ignored(self) -> None:
        result = parse("A=1\n[S]\n", "t.conf")
        self.assertEqual(result.entries, [])
        self.assertEqual(result.diagnostics[0].line, 1)

    def test_syntax_error_line(self) -> None:
        result = parse("[S]\nnonsense\nA=1\n", "t.conf")
        self.assertEqual(len(result.entries), 1)
        self.assertEqual((result.diagnostics[0].line, result.diagnostics[0].severity),
                         (2, Severity.ERROR))

    def test_duplicate_first_wins_case_insensitive(self) -> None:
        result = parse("[S]\nA=1\n[s]\na=2\n", "t.conf")
        self.assertEqual([(e.tag, e.value) for e in result.entries], [("A", "1")])
        diagnostic = result.diagnostics[0]
        self.assertEqual((diagnostic.line, diagnostic.severity), (4, Severity.WARNING))
        self.assertIn("line 2", diagnostic.message)

    def test_unterminated_last_line_ignored(self) -> None:
        result = parse("[S]\nA=1\nB=2", "t.conf")
        self.assertEqual([e.tag for e in result.entries], ["A"])
        self.assertEqual(result.diagnostics[0].line, 3)

    def test_crlf(self) -> None:
        self.assertEqual(bindings("[S]\r\nA=1\r\n"), {("S", "A"): "1"})

    def test_never_raises_on_garbage(self) -> None:
        parse("[\n]\n=\n\\\n\x00\n[]\n=x\n\\", "t.conf")

    def test_section_header_line_recorded(self) -> None:
        result = parse("\n[S]\n", "t.conf")
        self.assertEqual((result.sections[0].name, result.sections[0].line), ("S", 2))


class ValueTests(SynchronousTestCase):
    def test_split_list(self) -> None:
        self.assertEqual(values.split_list(" a , b,,c ,"), (["a", "b", "c"], 2))

    def test_atoi(self) -> None:
        self.assertEqual(values.atoi(" 42abc"), 42)
        self.assertEqual(values.atoi("-3"), -3)
        self.assertEqual(values.atoi("abc"), 0)
        self.assertEqual(values.atoi("+007"), 7)

    def test_huge_numbers_do_not_raise(self) -> None:
        # int() refuses strings of more than 4300 digits; such numbers saturate.
        huge = "9" * 5000
        self.assertGreater(values.atoi(huge), 2**64)
        self.assertLess(values.atoi("-" + huge), -2**64)
        self.assertGreater(values.parse_int(huge), 2**64)
        self.assertEqual(values.parse_int("0" * 5000 + "12"), 12)
        self.assertGreater(values.parse_offer(f"5,1:{huge}").high, 2**64)
        self.assertTrue(values.match_number(f"5,1:{huge}", 2**32))
        self.assertFalse(values.match_number(huge, 5))
        self.assertRaises(ValueError, values.parse_offer, f"5,{huge}:1")

    def test_offer(self) -> None:
        offer = values.parse_offer("3600,60:86400")
        self.assertEqual((offer.value, offer.low, offer.high), (3600, 60, 86400))
        self.assertEqual(values.offered_value("3600,60:86400"), 3600)
        self.assertTrue(values.match_number("3600,60:86400", 60))
        self.assertTrue(values.match_number("3600,60:86400", 86400))
        self.assertFalse(values.match_number("3600,60:86400", 59))
        self.assertTrue(values.match_number("128", 128))
        self.assertFalse(values.match_number("128", 256))
        self.assertTrue(values.match_number("ANY", 5))
        self.assertFalse(values.match_number("any", 5))   # ANY is case-sensitive
        self.assertFalse(values.match_number("x", 5))
        self.assertRaises(ValueError, values.parse_offer, "10,20:5")
        self.assertRaises(ValueError, values.parse_offer, "1,2")


class KeyMaterialTests(SynchronousTestCase):
    """Diagnostics go to logs: they never repeat a value, which may be a key."""

    def test_ignored_assignments_do_not_show_their_value(self) -> None:
        text = ("Authentication=\tbefore-any-section-secret\n"
                "[peer]\n"
                "  Authentication=\tindented-secret\n"
                "Authentication=\tlast-line-secret")
        result = parse(text, "k.conf")
        messages = " ".join(str(d) for d in result.diagnostics)
        self.assertEqual(len(result.diagnostics), 3)
        self.assertNotIn("secret", messages)
        self.assertIn("Authentication=...", messages)
