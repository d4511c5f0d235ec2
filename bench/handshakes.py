"""What a responder spends per tunnel: CPU per phase 1 + Quick Mode, per Quick Mode, memory.

Many initiator engines (distinct loopback addresses, 127.1.0.1 onwards)
negotiate Main Mode with a pre-shared key plus one Quick Mode each with one
responder engine at 192.0.2.1, over the in-memory network of the exchange tests
(tests/support/ikepair.py: no sockets; a manually advanced clock that keeps its
timers in a heap, as the reactor does; keeping no history of datagrams, log events
or ended exchanges, which would otherwise be most of what the garbage collector
scans), so the figures are the engine's own cost: decoding, policy, cryptography,
SA bookkeeping, the in-memory kernel, and the collector. The responder
draws from the system's randomness and freezes what it loaded before the first
tunnel, as the daemon does. Prints, for MODP2048 and ECP256 phase 1:

- responder CPU milliseconds per tunnel (process time spent inside its
  datagram_received), and the tunnels per second that CPU time allows;
- responder CPU microseconds per further Quick Mode on one established ISAKMP SA;
- responder memory per established tunnel (tracemalloc: what stays allocated after
  the initiators are gone, divided by the number of tunnels).

The initiators run in the same process, so a pass of the garbage collector is
charged to whichever side allocates when its threshold is crossed, and it scans
the initiators' young objects too. The passes that fell inside the responder's
calls came to about 50 us per ECP256 tunnel at 1,000 tunnels (measured with
gc.callbacks), part of it work a responder alone would not do. ``--rounds N`` repeats each CPU measurement and
prints the median and the range.

Usage: .venv/bin/python bench/handshakes.py [--tunnels N] [--quick N] [--rounds N]
"""

from __future__ import annotations

import argparse
import gc
import heapq
import ipaddress
import itertools
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import globalLogBeginner
from zope.interface import implementer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from isakmpd import collector
from isakmpd.config import load_config
from isakmpd.crypto.random import SystemRandom
from tests.support.ikepair import Network

RESPONDER = "192.0.2.1"
RESPONDER_NET = "192.0.2.0/24"
PSK = "bench pre-shared key"


def responder_config(transforms: str) -> str:
    return f"""[General]
Check-interval=\t3600

[Phase 1]
Default=\t\tpeer-any

[Phase 2]
Passive-connections=\tconn

[peer-any]
Phase=\t\t\t1
Configuration=\t\tp1
Authentication=\t\t{PSK}

[p1]
EXCHANGE_TYPE=\t\tID_PROT
Transforms=\t\t{transforms}

[conn]
Phase=\t\t\t2
ISAKMP-peer=\t\tpeer-any
Configuration=\t\tp2
Local-ID=\t\tnet

[p2]
EXCHANGE_TYPE=\t\tQUICK_MODE
Suites=\t\t\tQM-ESP-AES-128-SHA-SUITE

[net]
ID-type=\t\tIPV4_ADDR_SUBNET
Network=\t\t192.0.2.0
Netmask=\t\t255.255.255.0
"""


def initiator_config(transforms: str) -> str:
    """The same for every initiator (its address is its ID): loaded once, shared."""
    return f"""[General]
Check-interval=\t3600

[Phase 1]
{RESPONDER}=\t\tpeer

[peer]
Phase=\t\t\t1
Address=\t\t{RESPONDER}
Configuration=\t\tp1
Authentication=\t\t{PSK}

[p1]
EXCHANGE_TYPE=\t\tID_PROT
Transforms=\t\t{transforms}

[conn]
Phase=\t\t\t2
ISAKMP-peer=\t\tpeer
Configuration=\t\tp2
Remote-ID=\t\tnet

[p2]
EXCHANGE_TYPE=\t\tQUICK_MODE
Suites=\t\t\tQM-ESP-AES-128-SHA-SUITE

[net]
ID-type=\t\tIPV4_ADDR_SUBNET
Network=\t\t192.0.2.0
Netmask=\t\t255.255.255.0
"""


@implementer(IReactorTime)
class HeapClock:
    """A manually advanced clock keeping its calls in a heap, as the real reactor does.

    task.Clock re-sorts its whole list on every callLater; with hundreds of
    engines' timers on one clock that sort would dominate the figures, and no
    daemon pays it (the reactor pushes onto a heap). Like the reactor, cancelled
    calls stay in the heap until they are more than half of it, then the heap is
    rebuilt without them.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._order = itertools.count()
        self._cancelled = 0

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, func: Callable[..., Any], *args: Any,
                  **kw: Any) -> DelayedCall:
        call = DelayedCall(self.now + delay, func, args, kw, self._cancel,
                           self._push, seconds=self.seconds)
        self._push(call)
        return call

    def _push(self, call: DelayedCall) -> None:
        heapq.heappush(self._heap, (call.time, next(self._order), call))

    def _cancel(self, call: DelayedCall) -> None:
        self._cancelled += 1
        if self._cancelled > 50 and self._cancelled > len(self._heap) // 2:
            self.compact(call)

    def compact(self, cancelling: DelayedCall | None = None) -> None:
        """Drop cancelled and superseded entries (``cancelling`` is being cancelled)."""
        self._heap = [entry for entry in self._heap
                      if entry[2].active() and entry[0] == entry[2].time
                      and entry[2] is not cancelling]
        heapq.heapify(self._heap)
        self._cancelled = 0

    def getDelayedCalls(self) -> list[DelayedCall]:
        return [call for when, _n, call in self._heap if call.active() and when == call.time]

    def advance(self, amount: float) -> None:
        self.now += amount
        while self._heap and self._heap[0][0] <= self.now:
            when, _n, call = heapq.heappop(self._heap)
            if not call.active() or when != call.time:
                continue  # cancelled, or an entry left behind by reset()
            if call.delayed_time:
                call.time += call.delayed_time
                call.delayed_time = 0.0
                self._push(call)
                continue
            call.called = 1
            call.func(*call.args, **call.kw)


def initiator_addresses(count: int) -> list[str]:
    # Nothing is sent anywhere (in-memory network); loopback has room for many.
    hosts = list(itertools.islice(ipaddress.ip_network("127.1.0.0/16").hosts(), count))
    if count > len(hosts):
        raise SystemExit(f"at most {len(hosts)} tunnels (127.1.0.0/16)")
    return [str(host) for host in hosts[:count]]


class Meter:
    """Wraps an engine's datagram_received to add up the process time it takes."""

    def __init__(self, engine: Any) -> None:
        self.cpu = 0.0
        self._inner = engine.datagram_received

        def measured(data: bytes, local: Any, remote: Any) -> None:
            start = time.process_time()
            self._inner(data, local, remote)
            self.cpu += time.process_time() - start

        engine.datagram_received = measured


def settle() -> None:
    """Collect, freeze what exists and raise the collector's thresholds, as the daemon
    does once it has started (:func:`isakmpd.collector.settle`).

    Here that also keeps the initiators' configurations (which a real responder
    does not have) out of the responder's collections.
    """
    collector.settle()


def bench_tunnels(transforms: str, count: int, *, memory: bool = False
                  ) -> tuple[float, float, int]:
    """(responder CPU ms per tunnel, wall seconds, responder bytes per tunnel or 0).

    tracemalloc slows allocation down several times, so CPU and memory are
    measured in separate runs (``memory`` selects the memory run). Memory is what
    the responder still holds after the initiators are gone, against a baseline
    taken once the responder exists and one warm-up tunnel has loaded every module.
    """
    warm = Network(HeapClock())
    warm.add_node("responder", RESPONDER, responder_config(transforms), seed=1)
    first = initiator_addresses(1)[0]
    warm.add_node(first, first, initiator_config(transforms), seed=2)
    warm.nodes[first].engine.initiate_connection("conn")
    warm.run()
    del warm
    gc.collect()
    network = Network(HeapClock(), record=False)
    responder = network.add_node("responder", RESPONDER, responder_config(transforms), seed=1,
                                 rng=SystemRandom())
    meter = Meter(responder.engine)
    shared, _ = load_config(initiator_config(transforms))
    for node_ip in initiator_addresses(count):
        network.add_node(node_ip, node_ip, "", seed=hash(node_ip) & 0xffff, store=shared)
    settle()
    # Traced from here: what the initiators allocate later is freed with them.
    if memory:
        tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0] if memory else 0
    start = time.perf_counter()
    results: list[Any] = []
    for node_ip in initiator_addresses(count):
        network.nodes[node_ip].engine.initiate_connection("conn").addBoth(results.append)
    network.run(limit=20 * count + 100)
    wall = time.perf_counter() - start
    ready = sum(1 for sa in responder.engine.sadb.ipsec_sas() if sa.ready)
    gc.unfreeze()
    if ready != count:
        raise SystemExit(f"only {ready} of {count} tunnels came up with {transforms}")
    if not memory:
        return meter.cpu / count * 1000.0, wall, 0
    for node_ip in initiator_addresses(count):
        # Their lifetime timers on the shared clock would keep them alive.
        network.nodes[node_ip].engine.shutdown(send_deletes=False)
        del network.nodes[node_ip]
    network.queue.clear()
    # What the test network (not a daemon) keeps: delivered datagrams and log events.
    results.clear()
    network.delivered.clear()
    responder.received.clear()
    responder.events.clear()
    responder.finished.clear()
    responder.sender.sent.clear()
    network.clock.compact()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return meter.cpu / count * 1000.0, wall, max(0, after - baseline) // count


def bench_quick_modes(transforms: str, count: int) -> float:
    """Responder CPU microseconds per Quick Mode on one established ISAKMP SA."""
    network = Network(HeapClock(), record=False)
    responder = network.add_node("responder", RESPONDER, responder_config(transforms), seed=1,
                                 rng=SystemRandom())
    ip = initiator_addresses(1)[0]
    initiator = network.add_node(ip, ip, initiator_config(transforms), seed=2)
    initiator.engine.initiate_connection("conn")
    network.run()
    meter = Meter(responder.engine)
    settle()
    for _ in range(count):
        initiator.engine.initiate_connection("conn")
        network.run()
    gc.unfreeze()
    ready = sum(1 for sa in responder.engine.sadb.ipsec_sas() if sa.ready)
    if ready != count + 1:
        raise SystemExit(f"only {ready} of {count + 1} Quick Modes completed")
    return meter.cpu / count * 1e6


def main() -> None:
    # Module-level loggers go to the global publisher, which buffers events until
    # logging begins (a daemon begins at once); discard them like a quiet daemon.
    globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnels", type=int, default=200, help="initiators per run")
    parser.add_argument("--quick", type=int, default=200, help="Quick Modes on one SA")
    parser.add_argument("--rounds", type=int, default=1,
                        help="CPU runs per figure: the median is printed, and the range "
                             "when there are several (the timings of a shared or virtual "
                             "machine vary from run to run)")
    args = parser.parse_args()
    rounds = max(1, args.rounds)
    print(f"{args.tunnels} initiators against one responder (in-memory network), "
          "PSK Main Mode + one Quick Mode (ESP AES-128/SHA1) each"
          + (f"; median of {rounds} runs (range)" if rounds > 1 else ""))
    print(f"{'phase 1':28} {'resp. CPU ms/tunnel':>20} {'tunnels/s':>10} "
          f"{'QM us':>14} {'KB/tunnel':>10}")
    for label, transforms in (("AES-128-SHA MODP2048 (14)", "AES-128-SHA-GRP14"),
                              ("AES-128-SHA ECP256 (19)", "AES-128-SHA-GRP19")):
        cpu = sorted(bench_tunnels(transforms, args.tunnels)[0] for _ in range(rounds))
        _cpu, _wall, per_tunnel = bench_tunnels(transforms, args.tunnels, memory=True)
        qm = sorted(bench_quick_modes(transforms, args.quick) for _ in range(rounds))
        cpu_ms, qm_us = statistics.median(cpu), statistics.median(qm)
        cpu_text, qm_text = f"{cpu_ms:.3f}", f"{qm_us:.0f}"
        if rounds > 1:
            cpu_text += f" ({cpu[0]:.2f}-{cpu[-1]:.2f})"
            qm_text += f" ({qm[0]:.0f}-{qm[-1]:.0f})"
        print(f"{label:28} {cpu_text:>20} {1000.0 / cpu_ms:10.0f} {qm_text:>14} "
              f"{per_tunnel / 1024:10.1f}")
    print("targets (issue 3): 1.3 ms per MODP2048 tunnel, 0.45 ms per ECP256 tunnel, "
          "200 us per Quick Mode, 10 KB per tunnel")


if __name__ == "__main__":
    main()
