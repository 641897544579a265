"""What the canary clients of `privacy.canaries` cost in accuracy: the same run with and without them, side by side.

    .venv/bin/python benchmarks/canary_cost.py scenarios/spam_dp_many.toml --privacy none,dp:4 --seeds 0,1,2 \
        --canaries 1000 [--rounds 3] [--set key=value ...] [--json out.json]

Each pair shares everything but the canaries: the seed (split, initial model, cohorts, local shuffling), and the
DP noise, which real runs draw from the OS and which here, in both runs of a pair, is drawn from the scenario's
seed round by round (the aggregation's ``noise_seed``, as the audit's replay does). The canaries draw their
sampling from their own stream (``server.canaries``), so the real cohorts are the same too: the difference in
final test accuracy is the canaries' effect on the model, the trajectory's sensitivity to it included. Printed:
each pair's accuracies and difference, the mean and sample standard deviation of the differences per setting,
each run's ε̂, and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import fedgrad
from fedgrad.modes.dp import DPAggregation, DPMode


def seeded_noise(seed: int) -> None:
    """Make every DP aggregation of this process draw its noise from ``seed`` (see the module docstring)."""
    aggregation = DPMode.aggregation

    def seeded(self: DPMode, model: Mapping[str, np.ndarray], past_rounds: Any = (), *,
               noise_seed: int | None = None) -> DPAggregation:
        return aggregation(self, model, past_rounds, noise_seed=seed)

    DPMode.aggregation = seeded  # type: ignore[method-assign]


def setting_overrides(setting: str) -> dict[str, Any]:
    if setting.startswith("dp:"):
        return {"privacy.mode": "dp", "privacy.epsilon": float(setting[3:])}
    return {"privacy.mode": setting}


def run_once(scenario: str, seed: int, setting: str, canaries: int, rounds: int | None, sets: dict[str, Any],
             output: str) -> dict[str, Any]:
    overrides = {**sets, **setting_overrides(setting), "seed": seed, "privacy.canaries": canaries,
                 "output.dir": output}
    if rounds is not None:
        overrides["federation.rounds"] = rounds
    result = fedgrad.run(scenario, **overrides)
    empirical = result.summary.empirical_privacy
    return {"accuracy": result.summary.final.accuracy,
            "eps_hat_final": empirical.final_model.epsilon if empirical and empirical.final_model else None,
            "eps_hat_all": empirical.all_iterates.epsilon if empirical and empirical.all_iterates else None}


def value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario")
    parser.add_argument("--privacy", default="none,dp:4")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", default="runs/canary-cost")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    sets = {key: value(text) for key, text in (item.split("=", 1) for item in args.set)}
    started = time.perf_counter()
    rows = []
    for setting in args.privacy.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            seeded_noise(seed)
            without, with_ = (run_once(args.scenario, seed, setting, k, args.rounds, sets, args.output)
                              for k in (0, args.canaries))
            row = {"setting": setting, "seed": seed, "without": without["accuracy"], "with": with_["accuracy"],
                   "eps_hat_final": with_["eps_hat_final"], "eps_hat_all": with_["eps_hat_all"]}
            rows.append(row)
            print(f"{setting:>8} seed {seed}: accuracy {100 * row['without']:.2f}% without, {100 * row['with']:.2f}% "
                  f"with {args.canaries} canaries ({100 * (row['with'] - row['without']):+.2f} pts); ε̂ final "
                  f"{row['eps_hat_final']:.2f}, all iterates {row['eps_hat_all']:.2f}", flush=True)
    for setting in args.privacy.split(","):
        differences = [100 * (row["with"] - row["without"]) for row in rows if row["setting"] == setting]
        spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
        print(f"{setting:>8}: canaries' cost {-statistics.mean(differences):+.2f} ± {spread:.2f} pts "
              f"over {len(differences)} seed(s) (positive: accuracy lost)")
    print(f"{time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
