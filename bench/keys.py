"""What one IKEv1 negotiation costs in cryptography, and what loading a config costs.

Prints, for a few typical suites, the mean time of:
- phase 1 (Main Mode, pre-shared key) as one side computes it: our DH key pair,
  the shared secret with the peer's value, SKEYID/SKEYID_d/a/e and the cipher key,
  HASH_I and HASH_R, and encrypting plus decrypting one 100-byte message;
- phase 2 (Quick Mode): HASH(1)/(2)/(3) and KEYMAT for both SAs, without PFS and
  with a PFS group (which adds a DH key pair and shared secret);
- loading and checking conf/isakmpd.conf (parse, about 39,000 generated default
  bindings, validation).

Run: .venv/bin/python bench/keys.py [--runs N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isakmpd.config import load_config
from isakmpd.crypto import dh, ipsec_keys, keys
from isakmpd.crypto.random import SeededRandom
from isakmpd.wire.constants import (
    AuthAlgorithm,
    EncryptionAlgorithm,
    EspTransform,
    HashAlgorithm,
)

# (label, cipher, key bits, hash, DH group, ESP transform, ESP key bits, ESP auth, PFS group)
SUITES = [
    ("3DES-SHA-GRP2 / ESP-3DES-SHA", EncryptionAlgorithm.TRIPLE_DES_CBC, None,
     HashAlgorithm.SHA, 2, EspTransform.TRIPLE_DES, None, AuthAlgorithm.HMAC_SHA, 2),
    ("AES-128-SHA-GRP14 / ESP-AES-128-SHA", EncryptionAlgorithm.AES_CBC, 128,
     HashAlgorithm.SHA, 14, EspTransform.AES, 128, AuthAlgorithm.HMAC_SHA, 14),
    ("AES-256-SHA2-256-GRP19 / ESP-AESGCM-256", EncryptionAlgorithm.AES_CBC, 256,
     HashAlgorithm.SHA2_256, 19, EspTransform.AES_GCM_16, 256, None, 19),
    ("AES-256-SHA2-512-GRP16 / ESP-AES-256-SHA2-512", EncryptionAlgorithm.AES_CBC, 256,
     HashAlgorithm.SHA2_512, 16, EspTransform.AES, 256, AuthAlgorithm.HMAC_SHA2_512, 16),
    ("AES-256-SHA2-384-GRP30 / ESP-AES-256-SHA2-384", EncryptionAlgorithm.AES_CBC, 256,
     HashAlgorithm.SHA2_384, 30, EspTransform.AES, 256, AuthAlgorithm.HMAC_SHA2_384, 30),
]


def mean_ms(runs: int, work: Callable[[], object]) -> float:
    work()  # warm caches (curve tables, imports) outside the measurement
    start = time.perf_counter()
    for _ in range(runs):
        work()
    return (time.perf_counter() - start) / runs * 1000.0


def bench_suite(suite: tuple[Any, ...], runs: int, rng: SeededRandom) -> tuple[float, float, float]:
    """Mean ms of phase 1, Quick Mode, and Quick Mode with PFS for one suite."""
    (_label, cipher, key_bits, hash_alg, group_no, esp, esp_bits, esp_auth, pfs_no) = suite
    group = dh.group(group_no)
    peer = group.generate(rng)
    pfs_group = dh.group(pfs_no)
    pfs_peer = pfs_group.generate(rng)
    ni, nr = rng.random_bytes(32), rng.random_bytes(32)
    cky_i, cky_r = rng.random_bytes(8), rng.random_bytes(8)
    sa_b, id_b = rng.random_bytes(80), rng.random_bytes(8)
    layout = ipsec_keys.esp_layout(esp, esp_bits, esp_auth)

    state: dict[str, keys.Phase1Keys] = {}

    def phase1() -> None:
        ours = group.generate(rng)
        g_xy = ours.shared_secret(peer.public_bytes)
        p1 = keys.derive_phase1_keys(hash_alg, cipher, key_bits, g_xy, ni, nr,
                                     cky_i, cky_r, psk=b"bench secret")
        keys.hash_i(hash_alg, p1.skeyid, ours.public_bytes, peer.public_bytes,
                    cky_i, cky_r, sa_b, id_b)
        keys.hash_r(hash_alg, p1.skeyid, ours.public_bytes, peer.public_bytes,
                    cky_i, cky_r, sa_b, id_b)
        chain = keys.IvChain.phase1(hash_alg, ours.public_bytes, peer.public_bytes,
                                    p1.cipher().block_size)
        ciphertext, _ = chain.encrypt(p1.cipher(), bytes(100))
        chain.decrypt(p1.cipher(), ciphertext)
        state["p1"] = p1

    def quick_mode(pfs: bool) -> None:
        p1 = state["p1"]
        g_qm = None
        if pfs:
            ours = pfs_group.generate(rng)
            g_qm = ours.shared_secret(pfs_peer.public_bytes)
        mid = 0x1234ABCD
        ipsec_keys.quick_mode_hash1(hash_alg, p1.skeyid_a, mid, sa_b)
        ipsec_keys.quick_mode_hash2(hash_alg, p1.skeyid_a, mid, ni, sa_b)
        ipsec_keys.quick_mode_hash3(hash_alg, p1.skeyid_a, mid, ni, nr)
        ipsec_keys.derive_sa_key_pair(hash_alg, p1.skeyid_d, layout, 0x11111111,
                                      0x22222222, ni, nr, g_qm)

    return (mean_ms(runs, phase1), mean_ms(runs, lambda: quick_mode(False)),
            mean_ms(runs, lambda: quick_mode(True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="repetitions per figure")
    args = parser.parse_args()
    rng = SeededRandom(b"bench/keys.py")

    print(f"{'suite':48} {'phase 1':>9} {'QM':>8} {'QM+PFS':>8}  (ms, mean of {args.runs})")
    for suite in SUITES:
        label = suite[0]
        p1_ms, qm_ms, pfs_ms = bench_suite(suite, args.runs, rng)
        print(f"{label:48} {p1_ms:9.3f} {qm_ms:8.3f} {pfs_ms:8.3f}")

    sample = Path(__file__).resolve().parent.parent / "conf" / "isakmpd.conf"
    text = sample.read_text()
    runs = max(1, args.runs // 10)
    load_ms = mean_ms(runs, lambda: load_config(text, str(sample)))
    store, _ = load_config(text, str(sample))
    sections = len(store.get_section_names())
    print(f"\nload + check {sample.name}: {load_ms:.1f} ms (mean of {runs}), "
          f"{sections} sections incl. generated ones")


if __name__ == "__main__":
    main()
