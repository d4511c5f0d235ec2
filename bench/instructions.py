"""Instructions the responder of bench/handshakes.py executes per tunnel or per Quick Mode.

Wall-clock figures on a shared or virtual machine vary by up to a third from run to
run; instruction counts under callgrind vary by about a quarter of a percent, so
changes to the hot path are compared with this script. It runs the same scenarios
as bench/handshakes.py, but calls the responder's ``datagram_received`` through
``operator.methodcaller`` so that callgrind, told to collect only inside that
function, counts the responder's work and nothing of the initiators'::

    valgrind --tool=callgrind --toggle-collect=methodcaller_call \\
        --callgrind-out-file=/tmp/cg.out .venv/bin/python bench/instructions.py qm 300

prints nothing itself: divide callgrind's "Collected" figure by the count (300 Quick
Modes here; ``14 100`` or ``19 100`` for 100 MODP2048 or ECP256 tunnels), and read
``callgrind_annotate /tmp/cg.out`` for where they go. Set PYTHONHASHSEED=0 on both
sides of a comparison.

Usage: python bench/instructions.py qm|GROUP COUNT
"""

from __future__ import annotations

import operator
import sys
from pathlib import Path
from typing import Any

from twisted.logger import globalLogBeginner

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import handshakes  # after the path is set


class CountedMeter:
    """Stands in for handshakes.Meter: the responder's calls go through methodcaller."""

    def __init__(self, engine: Any) -> None:
        self.cpu = 0.0
        inner = type("Inner", (), {"datagram_received": engine.datagram_received})()

        def counted(data: bytes, local: Any, remote: Any) -> None:
            operator.methodcaller("datagram_received", data, local, remote)(inner)

        engine.datagram_received = counted


def main() -> None:
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        sys.exit(__doc__.rsplit("Usage: ", 1)[1])
    which, count = sys.argv[1], int(sys.argv[2])
    globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)
    handshakes.Meter = CountedMeter                     # type: ignore[misc]
    if which == "qm":
        handshakes.bench_quick_modes("AES-128-SHA-GRP19", count)
    else:
        handshakes.bench_tunnels(f"AES-128-SHA-GRP{which}", count)


if __name__ == "__main__":
    main()
