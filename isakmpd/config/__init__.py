"""isakmpd.conf(5): parser, transactional store, generated defaults, checks. Pure: no I/O.

``parser`` turns text into bindings, ``values`` reads lists/numbers/offer ranges,
``store`` holds the bindings (transactions, origins), ``defaults`` generates the
built-in sections, ``validate`` reports what a user got wrong. :func:`load_config`
is the whole pipeline for a text already read (see :mod:`isakmpd.fileutil` for files).
"""

from __future__ import annotations

from isakmpd.config.parser import Diagnostic, Severity
from isakmpd.config.store import Store, load
from isakmpd.config.validate import Validation, validate

__all__ = ["Diagnostic", "Severity", "Store", "Validation", "load", "load_config", "validate"]


def load_config(text: str, filename: str = "<config>") -> tuple[Store, list[Diagnostic]]:
    """Parse, add defaults and check: the store and every diagnostic (parser's first)."""
    store, diagnostics = load(text, filename)
    return store, [*diagnostics, *validate(store).diagnostics]
