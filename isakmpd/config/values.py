"""How isakmpd.conf(5) values are read: lists, numbers and offer/accept ranges.

Owns the value-level rules of inventory §2.1, shared by the store's getters, the
generated defaults and the checks:

* comma lists: elements are trimmed, empty elements are skipped (``conf_get_list``);
* numbers are read like C's ``atoi``: leading blanks, an optional sign, the leading
  digits; no digits means 0 (``conf_get_num``);
* offer/accept values ``X`` or ``X,Y:Z``: the offered value is ``X``; a received
  value ``v`` matches ``X`` alone when ``v == X`` and ``X,Y:Z`` when ``Y <= v <= Z``
  (``conf_match_num``); the literal ``ANY`` (case-sensitive) matches everything.

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ANY",
    "Offer",
    "atoi",
    "is_any",
    "match_number",
    "offered_value",
    "parse_int",
    "parse_offer",
    "split_list",
]

ANY = "ANY"

_ATOI = re.compile(r"[ \t\n\r\f\v]*([+-]?[0-9]+)")
_INT = re.compile(r"[0-9]+")
_OFFER = re.compile(r"\s*([0-9]+)\s*(?:,\s*([0-9]+)\s*:\s*([0-9]+)\s*)?")
# Numbers longer than this saturate: far beyond any value a tag can take, and
# int() refuses strings of more than 4300 digits (sys.get_int_max_str_digits).
_MAX_DIGITS = 100


def _decimal(digits: str) -> int:
    """``int(digits)`` for a run of ASCII digits, saturating absurdly long ones."""
    digits = digits.lstrip("0")
    if len(digits) > _MAX_DIGITS:
        return 10 ** _MAX_DIGITS
    return int(digits or "0")


def split_list(value: str) -> tuple[list[str], int]:
    """Split a comma list; return (trimmed non-empty elements, number of empty ones)."""
    items: list[str] = []
    empty = 0
    for piece in value.split(","):
        piece = piece.strip()
        if piece:
            items.append(piece)
        else:
            empty += 1
    return items, empty


def atoi(text: str) -> int:
    """C ``atoi``: the leading (signed) decimal number of ``text``, or 0."""
    match = _ATOI.match(text)
    if match is None:
        return 0
    number = match.group(1)
    value = _decimal(number.lstrip("+-"))
    return -value if number.startswith("-") else value


def parse_int(text: str) -> int | None:
    """A whole non-negative decimal number (blanks around allowed), else None."""
    text = text.strip()
    return _decimal(text) if _INT.fullmatch(text) else None


def is_any(text: str) -> bool:
    """Whether ``text`` is the wildcard ``ANY`` (case-sensitive, as isakmpd)."""
    return text.strip() == ANY


@dataclass(frozen=True, slots=True)
class Offer:
    """A parsed ``X`` or ``X,Y:Z`` value: offer ``value``, accept ``low..high``."""

    value: int
    low: int
    high: int

    @property
    def is_range(self) -> bool:
        return (self.low, self.high) != (self.value, self.value)

    def matches(self, number: int) -> bool:
        return self.low <= number <= self.high


@lru_cache(maxsize=1024)
def parse_offer(text: str) -> Offer:
    """Parse ``X`` or ``X,Y:Z``; raise ValueError with a readable reason otherwise.

    Remembered per text (configured values are matched against every offer).
    """
    match = _OFFER.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a number, nor of the form 'offer,min:max' "
                         "(e.g. 3600 or 3600,60:86400)")
    value = _decimal(match.group(1))
    if match.group(2) is None:
        return Offer(value, value, value)
    low, high = _decimal(match.group(2)), _decimal(match.group(3))
    if low > high:
        raise ValueError(f"{text!r}: the minimum {low} is larger than the maximum {high}")
    return Offer(value, low, high)


def offered_value(text: str) -> int:
    """The value to send for an offer/accept text: the leading number (atoi-like)."""
    return atoi(text)


def match_number(text: str, number: int) -> bool:
    """Whether a received ``number`` is acceptable for the configured ``text``.

    ``ANY`` accepts everything; ``X`` accepts exactly X; ``X,Y:Z`` accepts Y..Z.
    A malformed text accepts nothing.
    """
    if is_any(text):
        return True
    try:
        return parse_offer(text).matches(number)
    except ValueError:
        return False
