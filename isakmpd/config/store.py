"""The configuration database: sections of tags of values, changed in transactions.

Owns what OpenBSD's ``conf.c`` keeps in its hash table (inventory §2.1, §1.3):

* lookups of sections and tags are case-insensitive; the spelling a value was
  first given with is kept for display (reports, ``C get``, diagnostics);
* every value remembers where it came from (:class:`Origin`: a file and line, the
  generated defaults, or the FIFO), so a check can name the line to change;
* changes go through a :class:`Transaction`: operations are queued and applied in
  order at :meth:`Transaction.commit`, all at once, or dropped by
  :meth:`Transaction.rollback`; the FIFO's ``C set``/``add``/``rmv``/``rm``/``rms``
  map one-to-one onto its methods;
* reloading never edits a store in place: :func:`load` parses afresh into a new
  store (file bindings first, then the generated defaults, which never override);
* :meth:`Store.memo` keeps what readers derive from the values (parsed policy,
  the peer address table) until the next change, so a busy gateway does not
  re-parse its configuration for every message.

Pure: no I/O; reading the file is :mod:`isakmpd.fileutil`'s job.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Self, TypeVar

from isakmpd.config.parser import Diagnostic, parse
from isakmpd.config.values import atoi, split_list

__all__ = [
    "DEFAULT_ORIGIN",
    "FIFO_ORIGIN",
    "Binding",
    "Origin",
    "OriginKind",
    "Store",
    "Transaction",
    "load",
]


class OriginKind(enum.Enum):
    FILE = "file"
    DEFAULT = "default"
    FIFO = "fifo"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value (or a section) came from."""

    kind: OriginKind
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.kind is OriginKind.FILE:
            return f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        return self.kind.value


DEFAULT_ORIGIN = Origin(OriginKind.DEFAULT)
FIFO_ORIGIN = Origin(OriginKind.FIFO)


class Binding(NamedTuple):
    """One tag of one section: the spellings for display, the value, its origin."""

    section: str
    tag: str
    value: str
    origin: Origin


@dataclass(slots=True)
class _Section:
    name: str
    origin: Origin
    tags: dict[str, Binding] = field(default_factory=dict)


class _Op(enum.Enum):
    SET = "set"
    ADD = "add"
    RMV = "rmv"
    RM = "rm"
    RMS = "rms"


@dataclass(frozen=True, slots=True)
class _Pending:
    op: _Op
    section: str
    tag: str | None
    value: str | None
    force: bool
    origin: Origin


_T = TypeVar("_T")

#: Derived values kept per store before the memo starts over: keys can come from
#: peers (their addresses and IDs), so the memo must not grow without bound.
MEMO_LIMIT = 4096


class Store:
    """Sections → tags → values, case-insensitive, with origins.

    Reading is direct; every change goes through :meth:`begin` (or the one-shot
    helpers :meth:`set`, :meth:`add`, :meth:`rmv`, :meth:`remove`,
    :meth:`remove_section`, each one transaction).
    """

    def __init__(self) -> None:
        self._sections: dict[str, _Section] = {}
        # Where each file section header was first seen; a header alone does not
        # create a section (as in conf.c), but it gives checks a line to name.
        self._headers: dict[str, Origin] = {}
        self._memo: dict[Hashable, Any] = {}

    # -- reading ----------------------------------------------------------

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()``, remembered under ``key`` until the store next changes.

        For values derived only from the store's contents; ``compute`` must not
        change the store, and the value must not be mutated by whoever gets it.
        An exception from ``compute`` is not remembered.
        """
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        value = compute()
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = value
        return value

    def _changed(self) -> None:
        self._memo.clear()

    def binding(self, section: str, tag: str) -> Binding | None:
        """The binding of ``[section]:tag``, or None."""
        found = self._sections.get(section.lower())
        if found is None:
            return None
        return found.tags.get(tag.lower())

    def get_str(self, section: str, tag: str, default: str | None = None) -> str | None:
        """The value of ``[section]:tag`` as written, or ``default``."""
        # (binding(), without the call: policy reads several values per message)
        found = self._sections.get(section.lower())
        bound = None if found is None else found.tags.get(tag.lower())
        return default if bound is None else bound.value

    def get_num(self, section: str, tag: str, default: int = 0) -> int:
        """``atoi`` of the value (0 when it does not start with a number), or ``default``."""
        return self.memo(("num", section.lower(), tag.lower(), default),
                         lambda: self._num(section, tag, default))

    def _num(self, section: str, tag: str, default: int) -> int:
        bound = self.binding(section, tag)
        return default if bound is None else atoi(bound.value)

    def get_list(self, section: str, tag: str) -> list[str]:
        """The comma list of ``[section]:tag``, trimmed, empty elements skipped ([] if unset)."""
        bound = self.binding(section, tag)
        return [] if bound is None else split_list(bound.value)[0]

    def has(self, section: str, tag: str | None = None) -> bool:
        """Whether the section exists (``tag`` None) or the tag exists in it."""
        found = self._sections.get(section.lower())
        if found is None:
            return False
        return tag is None or tag.lower() in found.tags

    def get_section_names(self) -> list[str]:
        """Every section name, spelled as first given, in creation order."""
        return [section.name for section in self._sections.values()]

    def section_name(self, section: str) -> str | None:
        """The display spelling of a section, or None when it does not exist."""
        found = self._sections.get(section.lower())
        return None if found is None else found.name

    def section_origin(self, section: str) -> Origin | None:
        """Where the section was first created (its header line for a file section)."""
        found = self._sections.get(section.lower())
        if found is not None:
            return found.origin
        return self._headers.get(section.lower())

    def tags(self, section: str) -> list[Binding]:
        """The bindings of a section in creation order ([] when it does not exist)."""
        found = self._sections.get(section.lower())
        return [] if found is None else list(found.tags.values())

    def __iter__(self) -> Iterator[Binding]:
        for section in self._sections.values():
            yield from section.tags.values()

    def __len__(self) -> int:
        return sum(len(section.tags) for section in self._sections.values())

    # -- changing ----------------------------------------------------------

    def begin(self) -> Transaction:
        """Start a transaction; nothing changes until its :meth:`~Transaction.commit`."""
        return Transaction(self)

    def set(self, section: str, tag: str, value: str, *, force: bool = False,
            origin: Origin = FIFO_ORIGIN) -> bool:
        """One-shot ``C set``; returns whether the value was stored."""
        with self.begin() as trans:
            trans.set(section, tag, value, force=force, origin=origin)
        return trans.results[0]

    def add(self, section: str, tag: str, value: str, *, origin: Origin = FIFO_ORIGIN) -> bool:
        """One-shot ``C add``; returns whether the store changed."""
        with self.begin() as trans:
            trans.add(section, tag, value, origin=origin)
        return trans.results[0]

    def rmv(self, section: str, tag: str, value: str) -> bool:
        """One-shot ``C rmv``; returns whether the store changed."""
        with self.begin() as trans:
            trans.rmv(section, tag, value)
        return trans.results[0]

    def remove(self, section: str, tag: str) -> bool:
        """One-shot ``C rm``; returns whether the tag existed."""
        with self.begin() as trans:
            trans.remove(section, tag)
        return trans.results[0]

    def remove_section(self, section: str) -> bool:
        """One-shot ``C rms``; returns whether the section existed."""
        with self.begin() as trans:
            trans.remove_section(section)
        return trans.results[0]

    def copy(self) -> Store:
        """An independent store with the same bindings."""
        other = Store()
        for key, section in self._sections.items():
            other._sections[key] = _Section(section.name, section.origin, dict(section.tags))
        other._headers = dict(self._headers)
        return other

    # -- applied by Transaction.commit --------------------------------------

    def _apply(self, pending: _Pending) -> bool:
        changed = self._apply_one(pending)
        if changed:
            self._changed()
        return changed

    def _apply_one(self, pending: _Pending) -> bool:
        if pending.op is _Op.RMS:
            return self._sections.pop(pending.section.lower(), None) is not None
        assert pending.tag is not None
        key = pending.tag.lower()
        current = self.binding(pending.section, pending.tag)
        if pending.op is _Op.RM:
            if current is None:
                return False
            self._drop(pending.section, key)
            return True
        assert pending.value is not None
        if pending.op is _Op.SET:
            if current is not None and not pending.force:
                return False
            self._put(pending.section, pending.tag, pending.value, pending.origin, current)
            return True
        if pending.op is _Op.ADD:
            if current is None:
                self._put(pending.section, pending.tag, pending.value, pending.origin, None)
                return True
            items, _ = split_list(current.value)
            if pending.value.strip() in items:
                return False
            text = current.value
            separator = "" if text.rstrip().endswith(",") or not text.strip() else ","
            self._put(pending.section, pending.tag, text + separator + pending.value,
                      pending.origin, current)
            return True
        # RMV
        if current is None:
            return False
        items, _ = split_list(current.value)
        kept = [item for item in items if item != pending.value.strip()]
        if len(kept) == len(items):
            return False
        if kept:
            self._put(pending.section, pending.tag, ",".join(kept), pending.origin, current)
        else:
            self._drop(pending.section, key)
        return True

    def _put(self, section: str, tag: str, value: str, origin: Origin,
             current: Binding | None) -> None:
        found = self._sections.get(section.lower())
        if found is None:
            found = _Section(section, self._headers.get(section.lower(), origin))
            self._sections[section.lower()] = found
        if current is not None:
            # Keep the first spelling of the tag for display.
            tag = current.tag
        found.tags[tag.lower()] = Binding(found.name, tag, value, origin)

    def _drop(self, section: str, key: str) -> None:
        found = self._sections[section.lower()]
        del found.tags[key]
        if not found.tags:
            del self._sections[section.lower()]

    def _put_many(self, bindings: Iterator[tuple[str, str, str]], origin: Origin) -> None:
        """Insert bindings that do not exist yet, silently (for generated defaults)."""
        self._changed()
        for section, tag, value in bindings:
            found = self._sections.get(section.lower())
            if found is None:
                found = _Section(section, origin)
                self._sections[section.lower()] = found
            key = tag.lower()
            if key not in found.tags:
                found.tags[key] = Binding(found.name, tag, value, origin)

    def _note_header(self, section: str, origin: Origin) -> None:
        """Record where a section header is (a tag-less section still has a location)."""
        self._headers.setdefault(section.lower(), origin)


class Transaction:
    """A queue of changes applied together by :meth:`commit` (``conf_begin``/``conf_end``).

    Operations are evaluated at commit time in the order given, so a later one
    sees the effect of an earlier one. ``results`` then holds, per operation,
    whether it changed the store. Used as a context manager it commits on normal
    exit and rolls back when the block raises.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[_Pending] = []
        self._done = False
        self.results: list[bool] = []

    def _queue(self, op: _Op, section: str, tag: str | None = None, value: str | None = None,
               force: bool = False, origin: Origin = FIFO_ORIGIN) -> None:
        if self._done:
            raise RuntimeError("this configuration transaction is already finished")
        self._pending.append(_Pending(op, section, tag, value, force, origin))

    def set(self, section: str, tag: str, value: str, *, force: bool = False,
            origin: Origin = FIFO_ORIGIN) -> None:
        """``C set``: store the value; without ``force`` an existing tag is left alone."""
        self._queue(_Op.SET, section, tag, value, force, origin)

    def add(self, section: str, tag: str, value: str, *, origin: Origin = FIFO_ORIGIN) -> None:
        """``C add``: append to the comma list unless an equal element exists; set if missing."""
        self._queue(_Op.ADD, section, tag, value, True, origin)

    def rmv(self, section: str, tag: str, value: str, *,
            origin: Origin = FIFO_ORIGIN) -> None:
        """``C rmv``: drop every element equal to ``value``; the tag goes when none is left."""
        self._queue(_Op.RMV, section, tag, value, True, origin)

    def remove(self, section: str, tag: str) -> None:
        """``C rm``: remove the tag."""
        self._queue(_Op.RM, section, tag)

    def remove_section(self, section: str) -> None:
        """``C rms``: remove the whole section."""
        self._queue(_Op.RMS, section)

    def commit(self) -> list[bool]:
        """Apply every queued operation, in order; return what each one changed."""
        if self._done:
            raise RuntimeError("this configuration transaction is already finished")
        self._done = True
        # No operation can fail half-way, so applying them in one go (no other
        # code runs in between) is atomic for every reader.
        self.results = [self._store._apply(pending) for pending in self._pending]
        self._pending = []
        return self.results

    def rollback(self) -> None:
        """Drop every queued operation."""
        self._done = True
        self._pending = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._done:
            return
        if kind is None:
            self.commit()
        else:
            self.rollback()


DefaultsFactory = Callable[[Callable[[str, str], "str | None"]], Iterator[tuple[str, str, str]]]


def load(text: str, filename: str = "<config>", *,
         defaults: DefaultsFactory | None = None) -> tuple[Store, list[Diagnostic]]:
    """Parse ``text`` into a new store and add the generated defaults.

    Returns the store and the parser's diagnostics (see
    :func:`isakmpd.config.check` for the consistency checks). ``defaults`` is
    the generator of default bindings; it defaults to
    :func:`isakmpd.config.defaults.generate`.
    """
    if defaults is None:
        from isakmpd.config.defaults import generate as defaults
    result = parse(text, filename)
    store = Store()
    for header in result.sections:
        store._note_header(header.name, Origin(OriginKind.FILE, header.file, header.line))
    for entry in result.entries:
        store._put(entry.section, entry.tag, entry.value,
                   Origin(OriginKind.FILE, entry.file, entry.line),
                   store.binding(entry.section, entry.tag))
    store._put_many(defaults(store.get_str), DEFAULT_ORIGIN)
    return store, list(result.diagnostics)
