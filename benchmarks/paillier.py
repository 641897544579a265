"""Paillier secure aggregation, naive vs packed, side by side: 2048-bit key, one core.

    .venv/bin/python benchmarks/paillier.py [--params 30000] [--clients 10] [--naive-sample 16] [--json out.json]
                                            [--end-to-end [--scenario scenarios/spam_fedavg.toml]]

For each scheme: client encryption (µs/param), coordinator homomorphic add incl. payload validation
(µs/param/client), key-holder decryption of the aggregate (µs/param) and wire size (bytes/param), then the
packed/naive ratios. The naive scheme (one phe ciphertext per value, ~10 ms each) is timed on a sample of
`--naive-sample` parameters and extrapolated per parameter, which is exact up to noise because every value
costs the same. Each figure is the best over the round's clients (decryption: best of `DECRYPT_REPEATS`),
the usual way to keep other load on a shared machine out of a micro-benchmark. The table is one core throughout;
below it, the packed decryption as the key holder runs it, on all cores with its worker processes (see
fedgrad/crypto/decryption.py), timed on leave-one-client-out aggregates once the workers have started.

`--end-to-end` also runs `fedgrad simulate` on the scenario twice, with privacy.mode "none" and "paillier"
(same data, split and seed; about a minute on 2 cores for spam_fedavg), and prints the mean round time of each,
their ratio, the mean time per phase (metrics.jsonl `time_s`), bytes per round, final accuracies, and the
phase that dominates a paillier round. Phases are per-round critical-path figures (train and encrypt are the
slowest client's), so they overlap and do not add up to the round time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fedgrad.crypto import Accumulator, KeyHolder, SecureAggConfig, SlotLayout, generate_keypair, make_encoder
from fedgrad.crypto.decryption import available_cores, plan_parts
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width
from fedgrad.metrics import PHASES

TARGETS = {"encrypt_us": 12.0, "decrypt_us": 40.0, "bytes": 6.1}  # packed, per parameter (issue 5)
LAYOUT_CLIENTS = (10, 100, 256, 257, 1024)
DECRYPT_REPEATS = 5  # the key holder decrypts once per round; repeat it with fresh holders for a stable figure
MIN_CLIENTS = 3  # the all-cores figure decrypts leave-one-out aggregates, which need 2 contributors


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def wire_bytes(mode: str, n_params: int, pub) -> int:
    """Size of one client payload for an `n_params`-value update (header + fixed-width ciphertexts)."""
    cfg = SecureAggConfig(mode=mode, n_params=n_params, clip=1.0, value_bits=16, max_clients=100)
    return HEADER_BYTES + make_encoder(cfg, pub).scheme.n_ciphertexts * ciphertext_width(pub)


def measure_scheme(mode: str, n_params: int, model_params: int, n_clients: int, key,
                   progress: tqdm) -> dict[str, float]:
    """Per-parameter costs of one round with `n_clients` clients, timed on an `n_params`-value update;
    the wire size is that of the full `model_params`-value update."""
    pub, priv = key
    cfg = SecureAggConfig(mode=mode, n_params=n_params, clip=1.0, value_bits=16, max_clients=100)
    rng = np.random.default_rng(0)
    encoder = make_encoder(cfg, pub)
    warmup_s, _ = timed(lambda: encoder.encrypt(np.zeros(n_params), 1.0))  # packed: builds the DJN table
    weights = rng.dirichlet(np.ones(n_clients))
    encrypt_s, payloads = [], []
    for weight in weights:
        update = rng.normal(0.0, 0.3, n_params)
        seconds, payload = timed(lambda: encoder.encrypt(update, float(weight)))
        encrypt_s.append(seconds)
        payloads.append(payload)
        progress.update()
    assert len(payloads[0]) == wire_bytes(mode, n_params, pub)
    accumulator = Accumulator(cfg, pub)
    add_s = [timed(lambda: accumulator.add(f"client-{i}", payload))[0] for i, payload in enumerate(payloads)]
    aggregate = accumulator.payload()
    decrypt_s = min(timed(lambda: KeyHolder(priv, cfg, min_clients=2, cores=1).decrypt_aggregate(
        0, accumulator.contributors, aggregate))[0] for _ in range(DECRYPT_REPEATS))
    with KeyHolder(priv, cfg, min_clients=2) as holder:  # all cores; its first decryption starts the workers
        start_s, _ = timed(lambda: holder.decrypt_aggregate(0, accumulator.contributors, aggregate))
        parallel_s = min(timed(lambda: holder.decrypt_aggregate(number, *leave_one_out(cfg, pub, payloads, number)))[0]
                         for number in range(1, min(DECRYPT_REPEATS, n_clients) + 1))
    progress.update()
    return {
        "params_timed": n_params,
        "ciphertexts": encoder.scheme.n_ciphertexts,
        "first_encrypt_ms": warmup_s * 1e3,
        "encrypt_us": min(encrypt_s) / n_params * 1e6,
        "add_us": min(add_s) / n_params * 1e6,
        "decrypt_us": decrypt_s / n_params * 1e6,
        "decrypt_workers": plan_parts(encoder.scheme.n_ciphertexts, available_cores()),
        "decrypt_parallel_us": parallel_s / n_params * 1e6,
        "first_decrypt_parallel_ms": start_s * 1e3,
        "bytes": wire_bytes(mode, model_params, pub) / model_params,
    }


def leave_one_out(cfg: SecureAggConfig, pub, payloads: list[bytes], number: int) -> tuple[list[str], bytes]:
    """The aggregate of all payloads but one, which `number` picks: a fresh sum of the same decryption cost."""
    accumulator = Accumulator(cfg, pub)
    for i, payload in enumerate(payloads):
        if i != number % len(payloads):
            accumulator.add(f"client-{i}", payload)
    return accumulator.contributors, accumulator.payload()


def layout_table(key_bits: int) -> list[dict[str, float]]:
    rows = []
    for max_clients in LAYOUT_CLIENTS:
        layout = SlotLayout.derive(16, max_clients, key_bits)
        rows.append({"max_clients": max_clients, "slot_bits": layout.slot_bits, "slots": layout.slots,
                     "bytes_per_param": (2 * key_bits // 8) / layout.slots})
    return rows


def report(results: dict[str, Any]) -> None:
    naive, packed = results["naive"], results["packed"]
    print(f"\nPaillier secure aggregation, {results['key_bits']}-bit key, one core (single-threaded), "
          f"{results['params']} params, {results['clients']} clients, load avg {results['load_avg']:.2f}")
    print(f"naive timed on {naive['params_timed']} params and extrapolated per param (wire size: full model); "
          f"packed timed on all {packed['params_timed']} ({packed['ciphertexts']} ciphertexts); "
          f"packed one-off DJN table build + first encryption: {packed['first_encrypt_ms']:.0f} ms\n")
    print(f"{'per parameter':<34}{'naive':>12}{'packed':>12}{'packed/naive':>14}{'speedup':>10}{'target':>14}")
    rows = [("encrypt (µs)", "encrypt_us", "{:.2f}"), ("homomorphic add (µs per client)", "add_us", "{:.3f}"),
            ("decrypt aggregate (µs)", "decrypt_us", "{:.2f}"), ("wire (bytes)", "bytes", "{:.2f}")]
    for label, key, fmt in rows:
        target = TARGETS.get(key)
        verdict = "" if target is None else ("≤{:g} {}".format(target, "ok" if packed[key] <= target else "MISSED"))
        print(f"{label:<34}{fmt.format(naive[key]):>12}{fmt.format(packed[key]):>12}"
              f"{packed[key] / naive[key]:>14.4f}{naive[key] / packed[key]:>9.0f}×{verdict:>14}")
    workers = packed["decrypt_workers"]
    where = f"{workers} worker processes" if workers > 1 else "in process: too few ciphertexts for workers"
    print(f"\npacked decrypt aggregate (µs/param) on all {available_cores()} cores, {where}: "
          f"{packed['decrypt_parallel_us']:.2f} ({packed['decrypt_us'] / packed['decrypt_parallel_us']:.2f}× the "
          f"one-core {packed['decrypt_us']:.2f}); the key holder's first decryption, which also starts its "
          f"workers: {packed['first_decrypt_parallel_ms']:.0f} ms")
    print(f"\npacking layout for value_bits=16, {results['key_bits']}-bit key "
          "(bound and proof: fedgrad/crypto/packing.py)")
    print(f"{'max_clients':>12}{'slot bits':>11}{'slots/ct':>10}{'bytes/param':>13}")
    for row in results["layouts"]:
        print(f"{row['max_clients']:>12}{row['slot_bits']:>11}{row['slots']:>10}{row['bytes_per_param']:>13.2f}")


def simulate(scenario: Path, mode: str, key_bits: int, out_dir: Path) -> dict[str, Any]:
    """Run `fedgrad simulate` on `scenario` with `privacy.mode = mode`; per-round means from its run directory."""
    overrides = [f'privacy.mode="{mode}"', f"privacy.key_bits={key_bits}", f'output.dir="{out_dir}"']
    command = [sys.executable, "-m", "fedgrad.cli.main", "simulate", str(scenario)]
    done = subprocess.run([*command, *(arg for override in overrides for arg in ("--set", override))],
                          capture_output=True, text=True)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"fedgrad simulate ({mode}) failed: {lines[-1] if lines else done.returncode}")
    [run_dir] = out_dir.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    rounds = summary["rounds"]
    return {"run_dir": str(run_dir), "rounds": rounds, "accuracy": summary["final"]["accuracy"],
            "time_s": {phase: seconds / rounds for phase, seconds in summary["time_s"].items()},
            "bytes": {direction: moved / rounds for direction, moved in summary["bytes"].items()}}


def end_to_end(scenario: Path, key_bits: int) -> dict[str, Any]:
    """`simulate` with and without secure aggregation, and what the difference is made of."""
    runs = {}
    with tempfile.TemporaryDirectory(prefix="fedgrad-bench-") as tmp:
        for mode in tqdm(("none", "paillier"), desc="end to end", file=sys.stderr):
            runs[mode] = simulate(scenario, mode, key_bits, Path(tmp) / mode)
    plain, secure = runs["none"]["time_s"], runs["paillier"]["time_s"]
    dominant = max(PHASES, key=lambda phase: secure[phase])
    overhead = max(PHASES, key=lambda phase: secure[phase] - plain[phase])
    return {"scenario": str(scenario), "key_bits": key_bits, **runs,
            "round_time_ratio": secure["total"] / plain["total"], "dominant_phase": dominant,
            "largest_overhead_phase": overhead}


def report_end_to_end(e2e: dict[str, Any]) -> None:
    plain, secure = e2e["none"], e2e["paillier"]
    print(f"\nend to end: fedgrad simulate {e2e['scenario']}, privacy.mode none vs paillier "
          f"({e2e['key_bits']}-bit key), {plain['rounds']} rounds; means per round")
    print(f"{'':<24}{'none':>12}{'paillier':>12}{'ratio':>9}")
    for phase in (*PHASES, "total"):
        a, b = plain["time_s"][phase], secure["time_s"][phase]
        ratio = f"{b / a:>8.1f}×" if a > 0 else f"{'–':>9}"
        print(f"{'time ' + phase + ' (s)':<24}{a:>12.4f}{b:>12.4f}{ratio}")
    for direction in ("up", "down"):
        a, b = plain["bytes"][direction], secure["bytes"][direction]
        print(f"{'bytes ' + direction + ' (KiB)':<24}{a / 1024:>12.1f}{b / 1024:>12.1f}{b / a:>8.2f}×")
    print(f"{'final accuracy':<24}{100 * plain['accuracy']:>11.2f}%{100 * secure['accuracy']:>11.2f}%")
    dominant, overhead = e2e["dominant_phase"], e2e["largest_overhead_phase"]
    seconds = secure["time_s"][dominant]
    print(f"\nround time paillier/none: {e2e['round_time_ratio']:.1f}×; dominant phase of a paillier round: "
          f"{dominant} ({seconds:.3f} s of {secure['time_s']['total']:.3f} s); largest overhead over none: "
          f"{overhead} (+{secure['time_s'][overhead] - plain['time_s'][overhead]:.3f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=int, default=30_000, help="update length for the packed scheme")
    parser.add_argument("--clients", type=int, default=10, help="clients per round (timing repeats)")
    parser.add_argument("--naive-sample", type=int, default=16, help="parameters timed for the naive scheme")
    parser.add_argument("--key-bits", type=int, choices=(2048, 3072), default=2048)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also time `fedgrad simulate` on --scenario with privacy none vs paillier")
    parser.add_argument("--scenario", type=Path, default=Path(__file__).resolve().parent.parent / "scenarios" /
                        "spam_fedavg.toml", help="scenario for --end-to-end (default: scenarios/spam_fedavg.toml)")
    args = parser.parse_args(argv)
    if args.clients < MIN_CLIENTS:
        parser.error(f"--clients must be at least {MIN_CLIENTS}")

    key = generate_keypair(args.key_bits)
    with tqdm(total=2 * (args.clients + 1), desc="paillier benchmark", file=sys.stderr) as progress:
        naive = measure_scheme("paillier-naive", args.naive_sample, args.params, args.clients, key, progress)
        packed = measure_scheme("paillier", args.params, args.params, args.clients, key, progress)
    results = {"key_bits": args.key_bits, "params": args.params, "clients": args.clients,
               "load_avg": os.getloadavg()[0], "naive": naive, "packed": packed,
               "layouts": layout_table(args.key_bits)}
    report(results)
    if args.end_to_end:
        results["end_to_end"] = end_to_end(args.scenario, args.key_bits)
        report_end_to_end(results["end_to_end"])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
