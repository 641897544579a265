"""The hybrid encoding (`fedgrad.crypto.masked`) against packed Paillier, side by side in one run, per model size.

    .venv/bin/python benchmarks/masked.py [--sizes 12900,420000] [--clients 1000] [--json out.json]

For each model size (default: spam_fedavg's and spam_lstm's parameter counts), with a real 2048-bit 2-of-3
threshold key:

- client: mask + key encryption (`MaskedEncoder.encrypt`) against packed Paillier (`UpdateEncoder.encrypt`),
  µs per parameter (wall, best of 3);
- wire: bytes per parameter of each upload;
- decryptors: Paillier ciphertexts per round to partially decrypt (the key sum against the packed update) and
  one decryptor's `partial_decrypt` seconds for them (the key sum measured; packed Paillier's extrapolated from
  the same per-ciphertext time, as it is one powmod each);
- coordinator: summing `--cohort` masked vectors in uint64 and unmasking, seconds.

Wall times on a shared machine: the load average is printed with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fedgrad.crypto.config import SecureAggConfig
from fedgrad.crypto.masked import MaskedEncoder, MaskedSum
from fedgrad.crypto.schemes import UpdateEncoder
from fedgrad.crypto.threshold import deal, partial_decrypt


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure(n_params: int, max_clients: int, cohort: int, pub: Any, share: Any) -> dict[str, float]:
    cfg = SecureAggConfig(mode="paillier", n_params=n_params, clip=1.0, value_bits=16, max_clients=max_clients,
                          max_weight=1000)
    update = np.random.default_rng(0).uniform(-1, 1, n_params)
    masked, packed = MaskedEncoder(cfg, pub), UpdateEncoder(cfg, pub)
    upload = masked.encrypt(update, 50, "bench", 1)
    payload = packed.encrypt(update, 50)
    masked_s = best_of(lambda: masked.encrypt(update, 50, "bench", 1))
    packed_s = best_of(lambda: packed.encrypt(update, 50), repeats=1)
    key_ciphertexts = masked.scheme.n_ciphertexts
    keys = [pub.raw_encrypt(1) for _ in range(key_ciphertexts)]
    partial_s = best_of(lambda: partial_decrypt(share, keys), repeats=1)
    total = MaskedSum(masked.scheme, "bench", 1)
    started = time.perf_counter()
    for i in range(cohort):
        total.add(f"c{i}", upload.masked)
    sum_s = time.perf_counter() - started
    return {
        "params": n_params,
        "client_masked_us_per_param": masked_s / n_params * 1e6,
        "client_packed_us_per_param": packed_s / n_params * 1e6,
        "bytes_per_param_masked": (len(upload.masked) + len(upload.key_payload)) / n_params,
        "bytes_per_param_packed": len(payload) / n_params,
        "decryptor_ciphertexts_masked": key_ciphertexts,
        "decryptor_ciphertexts_packed": packed.scheme.n_ciphertexts,
        "decryptor_partial_s_masked": partial_s,
        "decryptor_partial_s_packed": partial_s / key_ciphertexts * packed.scheme.n_ciphertexts,
        f"coordinator_sum_{cohort}_s": sum_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="12900,420000")
    parser.add_argument("--clients", type=int, default=1000, help="max_clients of the layouts")
    parser.add_argument("--cohort", type=int, default=10, help="masked vectors the coordinator sums")
    parser.add_argument("--json")
    args = parser.parse_args()
    pub, shares = deal(2048, 3, 2, rng=random.Random(7))
    rows = [measure(int(size), args.clients, args.cohort, pub, shares[0]) for size in args.sizes.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    for key in rows[0]:
        print(f"{key:34s}" + "".join(f"{row[key]:>14.4g}" for row in rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
