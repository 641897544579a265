"""Secure aggregation's price per round, mode by mode and model by model, side by side in one run.

    .venv/bin/python benchmarks/secure_rounds.py                    # spam_fedavg, spam_lstm, spam_email_clients
    .venv/bin/python benchmarks/secure_rounds.py --scenarios scenarios/spam_fedavg.toml --rounds 3 --json out.json

Each scenario runs ``fedgrad simulate`` once per privacy setting (``--settings``, ``fedgrad compare``'s
``--privacy`` spelling: ``none``, ``paillier``, ``paillier-masked``, ``paillier-masked+dp:4`` ...), all with the
same rounds, seed and machine, one after the other, after waiting for a quiet machine (``--quiet-busy``:
``benchmarks/machine.py``). For each it reports the steady-state seconds per round (the mean over rounds 2.. when
there are several: round 1 also starts the decryptors' worker processes), the ratio to ``none``, the final accuracy
and its gap to ``none`` in points, the decryptors' Paillier work per round (ciphertexts per update, the release's
partial decryption and proof seconds) and the bytes per parameter a client uploads. The issue-22 targets: the
hybrid (``paillier-masked``) at most 0.5 s per round on spam_fedavg and at most 1.5x ``none`` on spam_lstm and at
1,000 clients per round, accuracy within 0.1 pt of ``none``, the same decryptor work on every model.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from benchmarks.machine import wait_for_quiet
from fedgrad.experiments.compare.grid import parse_privacy_list
from fedgrad.results import read_metrics, read_summary
from fedgrad.results.schema import DPReport, PaillierReport

DEFAULT_SCENARIOS = ("scenarios/spam_fedavg.toml", "scenarios/spam_lstm.toml", "scenarios/spam_email_clients.toml")
DEFAULT_SETTINGS = "none,paillier,paillier-masked,paillier-masked+dp:4"


def simulate(scenario: Path, overrides: list[str], out_dir: Path) -> dict[str, Any]:
    """Run `fedgrad simulate` on `scenario` with `--set` `overrides`; what its run directory measured."""
    command = [sys.executable, "-m", "fedgrad.cli.main", "simulate", str(scenario)]
    overrides = [*overrides, f'output.dir="{out_dir}"']
    done = subprocess.run([*command, *(arg for override in overrides for arg in ("--set", override))],
                          capture_output=True, text=True)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"fedgrad simulate {' '.join(overrides)} failed: {lines[-1] if lines else done.returncode}")
    [run_dir] = out_dir.iterdir()
    summary, records = read_summary(run_dir), read_metrics(run_dir)
    if summary is None:
        raise RuntimeError(f"fedgrad simulate {' '.join(overrides)} left no summary in {run_dir}")
    rounds = summary.rounds
    released = [asdict(record.decryptors) for record in records if record.decryptors is not None]
    steady = records[1:] or records
    secure = summary.privacy  # distributed DP: the threshold mode underneath
    if isinstance(secure, DPReport) and secure.secure_aggregation is not None:
        secure = secure.secure_aggregation
    paillier = secure if isinstance(secure, PaillierReport) else None
    return {"run_dir": str(run_dir), "rounds": rounds, "accuracy": summary.final.accuracy,
            "round_s": [record.time_s.total for record in records],
            "steady_round_s": sum(record.time_s.total for record in steady) / len(steady),
            "ciphertexts": paillier.ciphertexts_per_update if paillier else None,
            "bytes_per_param": paillier.bytes_per_param if paillier else None,
            "dropped": sum(record.dropped is not None for record in records),
            "time_s": {phase: seconds / rounds for phase, seconds in asdict(summary.time_s).items()},
            "bytes": {direction: moved / rounds for direction, moved in asdict(summary.moved).items()},
            "decryptors": {name: sum(r[name] for r in released) / len(released) for name in released[0]}
            if released else {}}


def measure(scenarios: list[Path], settings_text: str, rounds: int) -> dict[str, Any]:
    settings = parse_privacy_list(settings_text)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fedgrad-secure-rounds-") as tmp:
        for scenario in scenarios:
            runs: dict[str, Any] = {}
            for setting in settings:
                print(f"{scenario.stem}: {setting.label} ...", file=sys.stderr, flush=True)
                out = Path(tmp) / scenario.stem / setting.label
                runs[setting.label] = simulate(scenario, [*setting.overrides(), f"federation.rounds={rounds}"], out)
            results[scenario.stem] = runs
    return results


def report(results: dict[str, Any]) -> None:
    header = (f"{'scenario':<20} {'setting':<24} {'s/round':>8} {'x none':>7} {'accuracy':>9} {'gap pt':>7} "
              f"{'Paillier cts':>12} {'partial s':>9} {'prove s':>8} {'B/param':>8} {'dropped':>7}")
    print(header)
    print("-" * len(header))
    for scenario, runs in results.items():
        base = runs.get("none")
        for label, run in runs.items():
            ratio = f"{run['steady_round_s'] / base['steady_round_s']:.2f}" if base else "-"
            gap = f"{100 * (run['accuracy'] - base['accuracy']):+.2f}" if base else "-"
            released = run["decryptors"]
            print(f"{scenario:<20} {label:<24} {run['steady_round_s']:>8.3f} {ratio:>7} "
                  f"{100 * run['accuracy']:>8.2f}% {gap:>7} {run['ciphertexts'] or '-':>12} "
                  f"{released.get('partial_s', 0.0):>9.3f} {released.get('prove_s', 0.0):>8.3f} "
                  f"{run['bytes_per_param'] or 0.0:>8.2f} {run['dropped']:>7}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", type=Path, default=[Path(p) for p in DEFAULT_SCENARIOS])
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"default: {DEFAULT_SETTINGS}")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per run (steady state: rounds 2..)")
    parser.add_argument("--quiet-busy", type=float, default=0.15,
                        help="wait until less than this fraction of all cores was busy over 10 s (default: 0.15)")
    parser.add_argument("--quiet-wait-s", type=float, default=600.0, help="wait at most this long for it")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    quiet = wait_for_quiet(args.quiet_busy, args.quiet_wait_s)
    load = os.getloadavg()[0]
    results = measure(args.scenarios, args.settings, args.rounds)
    print(f"cores {100 * quiet.busy:.0f}% busy before the runs{'' if quiet.quiet else ' (never quiet)'}; load average "
          f"at the start {load:.2f}, at the end {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    report(results)
    if args.json:
        args.json.write_text(json.dumps({"load_start": load, "busy_start": quiet.busy, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
