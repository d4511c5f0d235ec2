"""Benchmark of isakmpd.crypto.dh: key generation and shared secret, per group.

Prints, for every supported group, the mean time of one key generation, of one
shared secret (including validation of the peer's value) and their sum, and which
code computes the group. For comparison it then times ``cryptography``'s
finite-field DH (deprecated in cryptography 50; its warning is silenced here only)
for groups 1, 2 and 14, loading the peer's public key each time as an exchange must.

Usage: python bench/dh.py [-n RUNS]   (default 100 runs per group, about 15 s in all)
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from isakmpd.crypto import dh
from isakmpd.crypto.dh_groups import MODP_PRIMES
from isakmpd.crypto.random import SeededRandom

Key = TypeVar("Key")


def _measure(generate: Callable[[], Key], agree: Callable[[Key], object],
             runs: int) -> tuple[float, float]:
    """Mean milliseconds of ``generate()`` and of ``agree(key)`` over ``runs`` keys."""
    start = time.perf_counter()
    keys = [generate() for _ in range(runs)]
    middle = time.perf_counter()
    for key in keys:
        agree(key)
    end = time.perf_counter()
    return (middle - start) / runs * 1000, (end - middle) / runs * 1000


def _our_agree(peer: bytes, pair: dh.DHKeyPair) -> bytes:
    return pair.shared_secret(peer)


def _pyca_agree(pyca_dh: Any, numbers: Any, peer_y: int, key: Any) -> bytes:
    # Loading the peer's value is part of every exchange, and where OpenSSL spends
    # its time for groups 1 and 2 (it checks the unnamed prime again).
    return key.exchange(pyca_dh.DHPublicNumbers(peer_y, numbers).public_key())


def bench_ours(runs: int) -> None:
    rng = SeededRandom(2409)
    print(f"{'group':<6}{'name':<11}{'keygen ms':>10}{'secret ms':>10}{'sum ms':>9}  path")
    for grp in dh.supported_groups():
        peer = grp.generate(rng).public_bytes
        grp.generate(rng).shared_secret(peer)  # warm-up (brainpool table, caches)
        keygen, secret = _measure(functools.partial(grp.generate, rng),
                                  functools.partial(_our_agree, peer), runs)
        print(f"{grp.number:<6}{grp.name:<11}{keygen:>10.3f}{secret:>10.3f}"
              f"{keygen + secret:>9.3f}  {grp.implementation}")


def bench_cryptography_dh(runs: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cryptography.hazmat.primitives.asymmetric import dh as pyca_dh

        print("\ncryptography finite-field DH (deprecated; for comparison only)")
        print(f"{'group':<6}{'keygen ms':>10}{'secret ms':>10}{'sum ms':>9}")
        for number in (1, 2, 14):
            params = pyca_dh.DHParameterNumbers(MODP_PRIMES[number], 2).parameters()
            peer_y = params.generate_private_key().public_key().public_numbers().y
            numbers = params.parameter_numbers()
            keygen, secret = _measure(
                params.generate_private_key,
                functools.partial(_pyca_agree, pyca_dh, numbers, peer_y), runs)
            print(f"{number:<6}{keygen:>10.3f}{secret:>10.3f}{keygen + secret:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=100, help="runs per group")
    args = parser.parse_args()
    import cryptography
    import gmpy2
    print(f"mean over {args.runs} runs; gmpy2 {gmpy2.version()} on {gmpy2.mp_version()}, "
          f"cryptography {cryptography.__version__}")
    print("(gmpy2's wheel bundles a generic GMP 6.3.0; built against Debian's GMP, as\n"
          " tests/run-all does, the MODP groups run about twice as fast)")
    bench_ours(args.runs)
    bench_cryptography_dh(args.runs)


if __name__ == "__main__":
    main()
