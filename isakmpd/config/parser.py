"""Lexical parser for isakmpd.conf(5).

This follows the rules of OpenBSD's ``conf.c`` (conf_parse / conf_parse_line),
restated in inventory §2.1:

* a line is a comment only if its *first* character is ``#`` or ``;``; there is
  no end-of-line comment, a ``#`` after a value is part of the value;
* a backslash right before the newline joins the next line (both characters
  become blanks), so a comment ending in ``\\`` swallows the next line too;
* ``[name]`` starts in column 1; the name runs to the first ``]`` and the rest of
  the line is ignored; an unmatched ``[`` makes the parser ignore assignments
  until the next good header; assignments before any header are ignored;
* an assignment is split at the first ``=``; the tag is the text from column 1 up
  to the first blank, tab or ``=``; the value starts after ``=`` with leading
  blanks skipped and has trailing white space removed;
* other non-blank lines are syntax errors; an unterminated last line is ignored;
* section and tag names compare case-insensitively and the *first* binding of a
  tag wins; later duplicates are reported and ignored.

Nothing here raises on bad input: every problem becomes a :class:`Diagnostic`
carrying the file, line, section and tag it is about, worded so that the user
knows what to change (DESIGN.md §5).  The module is pure (DESIGN.md §2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Diagnostic", "Entry", "ParseResult", "SectionHeader", "Severity", "parse"]


class Severity(enum.Enum):
    """How bad a diagnostic is.

    ``ERROR``: the configuration does not do what was written (a missing
    section, an unknown algorithm ...).  ``WARNING``: a line was ignored or is
    probably not meant the way it reads.  ``INFO``: worth knowing, nothing wrong.
    """

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One message about a configuration, located as precisely as known."""

    file: str | None
    line: int | None
    section: str | None
    tag: str | None
    message: str
    severity: Severity = Severity.WARNING

    def location(self) -> str:
        """``file:line: [section]:tag`` with the parts that are known."""
        parts = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.section is not None:
            where = f"[{self.section}]"
            if self.tag is not None:
                where += f":{self.tag}"
            parts.append(where)
        return ": ".join(parts)

    def __str__(self) -> str:
        location = self.location()
        prefix = f"{location}: " if location else ""
        return f"{prefix}{self.severity}: {self.message}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``tag=value`` binding read from a file, spelled as written."""

    section: str
    tag: str
    value: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class SectionHeader:
    """Where a section was first opened (used to locate "missing tag" messages)."""

    name: str
    file: str
    line: int


@dataclass
class ParseResult:
    """The bindings of a file in file order (first binding of each tag only)."""

    entries: list[Entry] = field(default_factory=list)
    sections: list[SectionHeader] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


_BLANKS = " \t\r\f\v"


def _logical_lines(text: str) -> tuple[list[tuple[int, str, bool]], tuple[int, str] | None]:
    """Split ``text`` into (first physical line number, logical line, continued).

    A backslash immediately before a newline joins the next physical line; as in
    conf.c both characters become blanks.  ``continued`` tells whether the line
    was joined with a following one.  Returns the complete lines and, if the text
    does not end in a newline, the unterminated remainder.
    """
    lines: list[tuple[int, str, bool]] = []
    pieces: list[str] = []
    number = 0
    start = 1
    physicals = text.split("\n")
    # The element after the last newline is "" exactly when the text ends with one.
    tail = physicals.pop()
    for physical in physicals:
        number += 1
        if not pieces:
            start = number
        if physical.endswith("\\"):
            # conf.c replaces the backslash and the newline by two blanks.
            pieces.append(physical[:-1] + "  ")
            continue
        pieces.append(physical)
        lines.append((start, "".join(pieces), len(pieces) > 1))
        pieces = []
    if pieces or tail:
        if not pieces:
            start = number + 1
        return lines, (start, "".join(pieces) + tail)
    return lines, None


def parse(text: str, filename: str = "<config>") -> ParseResult:
    """Parse isakmpd.conf ``text``; ``filename`` is used in diagnostics only."""
    result = ParseResult()
    # Files written on other systems may have CRLF line ends; isakmpd would keep
    # the CR as part of the value only to strip it as trailing white space, so
    # dropping it up front changes nothing but the line-continuation test.
    text = text.replace("\r\n", "\n")
    lines, unterminated = _logical_lines(text)

    seen: dict[tuple[str, str], Entry] = {}
    opened: set[str] = set()
    section: str | None = None
    # Why assignments are currently ignored: None (not ignored), or the line of
    # the bad header, or 0 for "no header yet".
    ignoring_since: int | None = 0

    def report(line: int, message: str, sect: str | None = None, tag: str | None = None,
               severity: Severity = Severity.WARNING) -> None:
        result.diagnostics.append(Diagnostic(filename, line, sect, tag, message, severity))

    for number, line, continued in lines:
        if not line:
            continue
        first = line[0]
        if first in "#;":
            if continued:
                report(number, "this comment ends with a backslash, so the next line is "
                       "part of the comment and ignored; remove the trailing '\\'")
            continue

        if first == "[":
            close = line.find("]")
            if close == -1:
                report(number, f"section header {line.strip()!r} has no closing ']'; the "
                       "assignments up to the next section header are ignored; "
                       "write it as [name]", severity=Severity.ERROR)
                section = None
                ignoring_since = number
                continue
            name = line[1:close]
            section = name
            ignoring_since = None
            rest = line[close + 1:].strip(_BLANKS)
            if rest:
                report(number, f"text {rest!r} after the section header is ignored; put it "
                       "on a line of its own", name)
            if name == "":
                report(number, "empty section name '[]'; give the section a name", name)
            elif name != name.strip(_BLANKS):
                report(number, f"section name {name!r} has blanks at its start or end, "
                       "which are part of the name (isakmpd does not strip them), so "
                       f"references to {name.strip(_BLANKS)!r} will not find it; remove "
                       "the blanks inside the brackets", name)
            if name.lower() not in opened:
                opened.add(name.lower())
                result.sections.append(SectionHeader(name, filename, number))
            continue

        equals = line.find("=")
        if equals == -1:
            stripped = line.strip(_BLANKS)
            if not stripped:
                continue
            if stripped.startswith("["):
                report(number, f"section header {stripped!r} is indented; a section "
                       "header must start in column 1", section, severity=Severity.ERROR)
            else:
                report(number, f"syntax error: {stripped!r} is neither a comment, a "
                       "[section] header nor a tag=value assignment; the line is ignored",
                       section, severity=Severity.ERROR)
            continue

        if section is None:
            if ignoring_since == 0:
                why = "it comes before the first [section] header"
            else:
                why = f"the section header at line {ignoring_since} is malformed"
            report(number, f"assignment {_without_value(line)!r} ignored because {why}")
            continue

        # The tag runs from column 1 to the first blank, tab or '='.
        end = equals
        for index, char in enumerate(line[:equals]):
            if char in " \t":
                end = index
                break
        tag = line[:end]
        value = line[equals + 1:].lstrip(" \t").rstrip(_BLANKS)

        if tag == "":
            if line[0] in " \t":
                report(number, f"indented assignment {_without_value(line)!r} ignored: "
                       "the tag must start in column 1 (isakmpd reads an empty tag "
                       "here); remove the leading blanks", section)
            else:
                report(number, "assignment with no tag before '=' ignored", section)
            continue
        junk = line[end:equals].strip(_BLANKS)
        if junk:
            report(number, f"text {junk!r} between the tag {tag!r} and '=' is ignored; "
                   "a tag cannot contain blanks", section, tag)
        if _has_trailing_comment(value):
            report(number, "the value contains ' #' or ' ;': isakmpd.conf has no "
                   "end-of-line comments, so that text is part of the value; put the "
                   "comment on a line of its own", section, tag)

        key = (section.lower(), tag.lower())
        first_entry = seen.get(key)
        if first_entry is not None:
            report(number, f"duplicate tag ignored: the first value, given at line "
                   f"{first_entry.line}, is used; remove one of them", section, tag)
            continue
        entry = Entry(section, tag, value, filename, number)
        seen[key] = entry
        result.entries.append(entry)

    if unterminated is not None:
        number, line = unterminated
        stripped = _without_value(line)
        if stripped and stripped[0] not in "#;":
            report(number, f"the last line {stripped!r} does not end with a newline and "
                   "is ignored (as isakmpd does); add a newline at the end of the file",
                   section)
    return result


def _without_value(line: str) -> str:
    """The line for a message, with an assignment's value elided.

    Values can be pre-shared keys (``Authentication=``); diagnostics end up in logs,
    which must not carry key material.
    """
    stripped = line.strip(_BLANKS)
    equals = stripped.find("=")
    return stripped if equals == -1 else stripped[:equals + 1] + "..."


def _has_trailing_comment(value: str) -> bool:
    for marker in (" #", "\t#", " ;", "\t;"):
        if marker in value:
            return True
    return False
