"""The one-shot empirical ε estimator (`fedgrad.privacy.empirical`) against the analytic ε of the Gaussian
mechanism, where the truth is known: no training, only canaries and noise.

    .venv/bin/python benchmarks/empirical_epsilon.py [--dim 20000] [--canaries 1000] [--rounds 1,5] [--json out.json]

For each noise multiplier z and number of releases T: K inserted canaries (unit directions) are summed into
each of T releases, each with fresh N(0, z² I) noise; the adversary sees the final sum (final model) or every
release (all iterates). Both threat models have the same analytic ε, that of the Gaussian mechanism with
noise multiplier z/√T (T compositions of a Gaussian mechanism are one with z/√T; the sum of T releases is
one release of sensitivity T and noise z√T). The max-over-rounds statistic is weaker than the best test, so
ε̂ (all iterates) is expected below the truth for T > 1. Printed: the analytic ε, ε̂ with its 95% bootstrap
interval and the 95% threshold lower bound, for both threat models, and the load average.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import dp_accounting
import numpy as np

from fedgrad.privacy.empirical import CanaryObserver, canary_direction

DELTA = 1e-5
NOISE = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def analytic_epsilon(noise_multiplier: float, delta: float) -> float:
    if noise_multiplier == 0:
        return math.inf
    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier))
    return float(accountant.get_epsilon(delta))


def measure(z: float, rounds: int, dim: int, canaries: int, seed: int) -> dict[str, Any]:
    inserted = np.sum([canary_direction(seed, index, dim) for index in range(canaries)], axis=0)
    observer = CanaryObserver(seed, canaries, dim)
    noise = np.random.default_rng(seed + 1)
    for _ in range(rounds):
        observer.observe(inserted + noise.normal(0.0, z, dim))
    estimates = observer.estimates(DELTA, seed=seed)
    return {"z": z, "rounds": rounds, "analytic": analytic_epsilon(z / math.sqrt(rounds), DELTA),
            **{name: estimate.as_dict() for name, estimate in estimates.items()}}


def cell(estimate: dict) -> str:
    low, high = estimate["interval"]
    return f"{estimate['epsilon']:7.2f} [{low:6.2f}, {high:6.2f}] ≥{estimate['lower_bound']:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=20_000)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--rounds", default="1,5", help="comma-separated numbers of releases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [measure(z, int(t), args.dim, args.canaries, args.seed) for t in args.rounds.split(",") for z in NOISE]
    print(f"Gaussian mechanism, d = {args.dim}, K = {args.canaries} inserted + {args.canaries} held out, "
          f"δ = {DELTA:g}; cells: ε̂ [95% bootstrap] ≥ 95% threshold lower bound")
    print(f"{'z':>5} {'T':>3} {'analytic ε':>10}  {'final model':<33} {'all iterates':<33}")
    for row in rows:
        print(f"{row['z']:5g} {row['rounds']:3d} {row['analytic']:10.3f}  {cell(row['final_model']):<33} "
              f"{cell(row['all_iterates']):<33}")
    print(f"{time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
