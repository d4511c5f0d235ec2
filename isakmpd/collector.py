"""How the daemon uses Python's cyclic garbage collector.

A gateway's allocations are nearly all freed by reference counting the moment
an exchange ends; measured with ``bench/handshakes.py``, the collector finds no
cyclic garbage at all while a thousand tunnels come up, yet with the default
thresholds (700, 10, 10) it spends about a third of the responder's CPU time
scanning what is alive: the configuration with its tens of thousands of
generated bindings, and every SA with its keys, timers and kernel records.

:func:`settle` is called once the daemon has loaded everything it keeps for its
whole life. It collects once, moves what exists into the permanent generation
(:func:`gc.freeze`, never scanned again), and raises the thresholds so that the
young generations are scanned after tens of thousands of allocations instead
of hundreds. Cycles that do occur (an exception kept with its traceback, say)
are still collected, only later; the memory they hold meanwhile is small
against a gateway's.
"""

from __future__ import annotations

import gc

# (generation 0 allocations, generation 0 collections per generation 1 one,
# generation 1 collections per generation 2 one). CPython also postpones a full
# collection until a quarter of the oldest generation is new, whatever the third.
THRESHOLDS = (20_000, 20, 20)


def settle() -> None:
    """Collect, freeze what exists, and apply :data:`THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
