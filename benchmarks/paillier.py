"""Paillier secure aggregation costs, factor by factor: 2048-bit key, one core unless stated.

    .venv/bin/python benchmarks/paillier.py                       # quick (default): ~10 s plus key generation
    .venv/bin/python benchmarks/paillier.py --thorough [--trusted] [--json out.json] [--end-to-end [--scenario ...]]

Sections (all one-core figures are process CPU time, best of several runs: on a shared machine wall time also
counts other processes' load; CPU time of a single-threaded loop is what it would take on an idle core):

1. Encryption, what each technique contributes, per ciphertext and per parameter:
   textbook c = g^m·r^n with a generic g → g = n + 1 (g^m = 1 + mn) → DJN randomizer h_s^r with the default
   ⌈|n|/2⌉-bit exponent, still by powmod → the same from the fixed-base table (`djn`) → packing k values per
   ciphertext (`packing`). The opt-in 2λ-bit short exponent (`short_randomizer`) is shown beside the default, not
   folded into it. Each row gives its factor over the previous one, so no single bundled "naive vs packed" ratio.
   Then the client's full `UpdateEncoder.encrypt` (clip, quantize, pack, encrypt, frame) in µs/param for
   fractional weights and for integer weights (max_weight, `--max-weight`).
2. Threshold partial decryption (`threshold.partial_decrypt`, one decryptor, one core), per ciphertext and per
   parameter, next to a bare gmpy2.powmod with the same modulus n² and an exponent of the same bit length timed in
   the same run: the ratio is the overhead over that floor (target ≤ 1.2×). Also `combine` per ciphertext for t
   partials, proving and verifying the batched proof of correct partials (`prove_partials`), the key dealing
   time (two safe primes), and, with more than one core, a decryptor's
   `ParallelPartialDecryptor` on all cores (wall time).
3. Bytes per parameter on the wire (header included) for both weight encodings, and the packing layout table.

`--trusted` adds the trusted key holder's naive-vs-packed table (the earlier benchmark: encrypt, homomorphic add,
CRT decryption on one and all cores). `--end-to-end` also runs `fedgrad simulate` on the scenario in each mode,
none, paillier-trusted and paillier, and prints per-phase means, where a threshold release spends its time, and
the decrypt phase against its compute floor (t × ciphertexts × one bare powmod ÷ cores).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from benchmarks import secure_rounds
from fedgrad.crypto import Accumulator, KeyHolder, SecureAggConfig, SlotLayout, generate_keypair, make_encoder
from fedgrad.crypto.decryption import ParallelPartialDecryptor, available_cores, plan_parts
from fedgrad.crypto.djn import FastEncryptor, randomizer_base, randomizer_exponent_bits
from fedgrad.crypto.schemes import PackedScheme
from fedgrad.crypto.threshold import combine, deal, key_set, partial_decrypt, prove_partials, verify_partials
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width
from fedgrad.metrics import PHASES

TARGETS = {"encrypt_us": 12.0, "decrypt_us": 40.0, "bytes": 6.1}  # packed, per parameter (issue 5)
PARTIAL_FLOOR_TARGET = 1.2  # partial decryption ≤ 1.2 × a bare powmod of the same size
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
        seconds, payload = timed(partial(encoder.encrypt, update, float(weight)))
        encrypt_s.append(seconds)
        payloads.append(payload)
        progress.update()
    assert len(payloads[0]) == wire_bytes(mode, n_params, pub)
    accumulator = Accumulator(cfg, pub)
    add_s = [timed(partial(accumulator.add, f"client-{i}", payload))[0] for i, payload in enumerate(payloads)]
    aggregate = accumulator.payload()
    decrypt_s = min(timed(lambda: KeyHolder(priv, cfg, min_clients=2, cores=1).decrypt_aggregate(
        0, accumulator.contributors, aggregate))[0] for _ in range(DECRYPT_REPEATS))
    with KeyHolder(priv, cfg, min_clients=2) as holder:  # all cores; its first decryption starts the workers
        start_s, _ = timed(lambda: holder.decrypt_aggregate(0, accumulator.contributors, aggregate))

        def leave_one_out_decryption(number: int) -> Callable[[], Any]:
            """Decrypting the aggregate without client ``number`` (the leave-one-out is part of the timing)."""
            return lambda: holder.decrypt_aggregate(number, *leave_one_out(cfg, pub, payloads, number))

        parallel_s = min(timed(leave_one_out_decryption(number))[0]
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


def leave_one_out(cfg: SecureAggConfig, pub, payloads: list[bytes], number: int) -> tuple[frozenset[str], bytes]:
    """The aggregate of all payloads but one, which `number` picks: a fresh sum of the same decryption cost."""
    accumulator = Accumulator(cfg, pub)
    for i, payload in enumerate(payloads):
        if i != number % len(payloads):
            accumulator.add(f"client-{i}", payload)
    return accumulator.contributors, accumulator.payload()


def layout_table(key_bits: int, max_weight: int) -> list[dict[str, float]]:
    rows = []
    for weight in (0, max_weight):
        for max_clients in LAYOUT_CLIENTS:
            layout = SlotLayout.derive(16, max_clients, key_bits, weight)
            rows.append({"max_clients": max_clients, "max_weight": weight, "slot_bits": layout.slot_bits,
                         "slots": layout.slots, "bytes_per_param": (2 * key_bits // 8) / layout.slots})
    return rows


def cpu_best(fn: Callable[[], Any], repeats: int) -> float:
    """Best process CPU time of `repeats` calls of `fn` (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def encryption_factors(pub, count: int, repeats: int, slots: int) -> dict[str, Any]:
    """µs per ciphertext of each encryption variant on `count` random plaintexts (see the module docstring)."""
    n = gmpy2.mpz(pub.n)
    nsquare = n * n
    plaintexts = [gmpy2.mpz(secrets.randbelow(int(n))) for _ in range(count)]
    rs = [gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2) for _ in range(count)]
    g = gmpy2.mpz(secrets.randbelow(int(nsquare) - 2) + 2)  # a generic base: no shortcut for g^m
    h_s = randomizer_base(int(n))
    long_bits = randomizer_exponent_bits(int(n).bit_length())
    djn_rs = [gmpy2.mpz(secrets.randbits(long_bits)) for _ in range(count)]
    default, short = FastEncryptor(pub), FastEncryptor(pub, short_randomizer=True)
    default.encrypt([1]), short.encrypt([1])  # build the tables outside the timing

    def textbook() -> None:
        for m, r in zip(plaintexts, rs, strict=True):
            gmpy2.powmod(g, m, nsquare) * gmpy2.powmod(r, n, nsquare) % nsquare

    def g_n_plus_1() -> None:
        for m, r in zip(plaintexts, rs, strict=True):
            (m * n + 1) * gmpy2.powmod(r, n, nsquare) % nsquare

    def djn_powmod() -> None:
        for m, r in zip(plaintexts, djn_rs, strict=True):
            (m * n + 1) * gmpy2.powmod(h_s, r, nsquare) % nsquare

    rows = [("textbook g^m·r^n, generic g", textbook), ("g = n + 1", g_n_plus_1),
            (f"DJN h_s^r, {long_bits}-bit r, powmod", djn_powmod),
            ("DJN fixed-base table (default)", lambda: default.encrypt(plaintexts))]
    out: dict[str, Any] = {"rows": [], "slots": slots, "exponent_bits": long_bits,
                           "short_exponent_bits": short.exponent_bytes * 8,
                           "table_mb": default.exponent_bytes * 256 * (ciphertext_width(pub) + 32) / 2**20,
                           "short_table_mb": short.exponent_bytes * 256 * (ciphertext_width(pub) + 32) / 2**20}
    for label, fn in rows:
        out["rows"].append({"label": label, "us_per_ct": cpu_best(fn, repeats) / count * 1e6})
    out["short_us_per_ct"] = cpu_best(lambda: short.encrypt(plaintexts), repeats) / count * 1e6
    return out


def encoder_per_param(pub, n_params: int, max_weight: int, repeats: int, max_clients: int = 100) -> dict[str, float]:
    """The client's whole `UpdateEncoder.encrypt`, µs/param (CPU), and its wire bytes/param."""
    cfg = SecureAggConfig(mode="paillier", n_params=n_params, clip=1.0, max_clients=max_clients,
                          max_weight=max_weight)
    encoder = make_encoder(cfg, pub)
    update = np.random.default_rng(0).normal(0.0, 0.3, n_params)
    weight: float | int = 37 if max_weight else 0.3
    encoder.encrypt(update, weight)  # table build
    seconds = cpu_best(lambda: encoder.encrypt(update, weight), repeats)
    payload = encoder.encrypt(update, weight)
    assert isinstance(encoder.scheme, PackedScheme)  # mode "paillier"
    return {"max_weight": max_weight, "slots": encoder.scheme.layout.slots,
            "slot_bits": encoder.scheme.layout.slot_bits, "encrypt_us": seconds / n_params * 1e6,
            "bytes": len(payload) / n_params}


def threshold_costs(count: int, repeats: int, slots: int, parties: int = 3, threshold: int = 2) -> dict[str, Any]:
    """Deal a 2048-bit t-of-k key; time one decryptor's partial decryption vs a bare powmod floor, and combine."""
    start = time.perf_counter()
    pub, shares = deal(2048, parties, threshold)
    deal_s = time.perf_counter() - start
    ciphertexts = FastEncryptor(pub).encrypt([secrets.randbelow(pub.n) for _ in range(count)])
    share = shares[0]
    nsquare = gmpy2.mpz(pub.n) ** 2
    exponent_bits = int(share.exponent).bit_length()
    exponents = [gmpy2.mpz(secrets.randbits(exponent_bits)) | (gmpy2.mpz(1) << (exponent_bits - 1))
                 for _ in range(count)]

    def floor() -> None:
        for c, e in zip(ciphertexts, exponents, strict=True):
            gmpy2.powmod(c, e, nsquare)

    # interleave the two so that both see the same machine state
    partial_s, floor_s = float("inf"), float("inf")
    for _ in range(repeats):
        partial_s = min(partial_s, cpu_best(lambda: partial_decrypt(share, ciphertexts), 1))
        floor_s = min(floor_s, cpu_best(floor, 1))
    partials = {s.index: partial_decrypt(s, ciphertexts) for s in shares[:threshold]}
    combine_s = cpu_best(lambda: combine(pub, partials, threshold, parties), repeats)
    keys, mine = key_set(shares), partials[share.index]
    proof = prove_partials(share, ciphertexts, mine)
    prove_s = cpu_best(lambda: prove_partials(share, ciphertexts, mine), max(1, repeats // 2))
    verify_s = cpu_best(lambda: verify_partials(keys, share.index, ciphertexts, mine, proof), max(1, repeats // 2))
    out: dict[str, Any] = {
        "parties": parties, "threshold": threshold, "deal_s": deal_s, "exponent_bits": exponent_bits,
        "partial_us_per_ct": partial_s / count * 1e6, "floor_us_per_ct": floor_s / count * 1e6,
        "ratio": partial_s / floor_s, "partial_us_per_param": partial_s / count * 1e6 / slots,
        "combine_us_per_ct": combine_s / count * 1e6, "prove_us_per_ct": prove_s / count * 1e6,
        "verify_us_per_ct": verify_s / count * 1e6, "cores": available_cores()}
    if out["cores"] > 1 and count >= 2 * out["cores"]:
        pool = ParallelPartialDecryptor(share, count, min_chunk=1)
        try:
            pool.decrypt(ciphertexts)  # starts the workers
            wall = min(timed(lambda: pool.decrypt(ciphertexts))[0] for _ in range(max(1, repeats // 2)))
        finally:
            pool.close()
        out["parallel_workers"] = pool.parts
        out["parallel_us_per_param"] = wall / count * 1e6 / slots
    return out


def report_factors(results: dict[str, Any]) -> None:
    enc, thr = results["encryption"], results["threshold"]
    print(f"\nPaillier costs, {results['key_bits']}-bit key, one core (process CPU time, best of "
          f"{results['repeats']}), load avg {results['load_avg']:.2f}")
    print("\n1. encryption: what each technique contributes")
    print(f"{'':<40}{'µs/ciphertext':>14}{'factor':>9}{'µs/param':>11}")
    previous = None
    for row in enc["rows"]:
        factor = "" if previous is None else f"{previous / row['us_per_ct']:.2f}×"
        print(f"{row['label']:<40}{row['us_per_ct']:>14.1f}{factor:>9}{row['us_per_ct']:>11.1f}")
        previous = row["us_per_ct"]
    packed = previous / enc["slots"]
    print(f"{'+ packing (' + str(enc['slots']) + ' values/ciphertext)':<40}{previous:>14.1f}{enc['slots']:>8}×"
          f"{packed:>11.2f}")
    print(f"{'opt-in short exponent (' + str(enc['short_exponent_bits']) + '-bit r)':<40}"
          f"{enc['short_us_per_ct']:>14.1f}{previous / enc['short_us_per_ct']:>8.2f}×"
          f"{enc['short_us_per_ct'] / enc['slots']:>11.2f}   (vs default; extra assumption, see djn)")
    print(f"fixed-base tables: {enc['table_mb']:.0f} MB default ({enc['exponent_bits']}-bit exponent, 8-bit windows),"
          f" {enc['short_table_mb']:.0f} MB short")
    print(f"\nclient UpdateEncoder.encrypt, {results['params']} params, default exponent:")
    for row in results["encoder"]:
        kind = "fractional weights" if not row["max_weight"] else f"integer weights W={row['max_weight']}"
        verdict = "ok" if row["encrypt_us"] <= TARGETS["encrypt_us"] else "MISSED"
        print(f"  {kind:<28} {row['slot_bits']} bit slots, {row['slots']}/ct: {row['encrypt_us']:.2f} µs/param "
              f"(target ≤{TARGETS['encrypt_us']:g} {verdict}), {row['bytes']:.2f} bytes/param on the wire")
    verdict = "ok" if thr["ratio"] <= PARTIAL_FLOOR_TARGET else "MISSED"
    print(f"\n2. threshold ({thr['threshold']}-of-{thr['parties']}, dealt in {thr['deal_s']:.1f} s incl. two "
          f"1024-bit safe primes), one decryptor, one core")
    print(f"  partial decryption  {thr['partial_us_per_ct'] / 1e3:8.2f} ms/ciphertext  "
          f"{thr['partial_us_per_param']:8.1f} µs/param ({enc['slots']} slots)")
    print(f"  bare powmod floor   {thr['floor_us_per_ct'] / 1e3:8.2f} ms/ciphertext  (mod n², "
          f"{thr['exponent_bits']}-bit exponent, same run)")
    print(f"  ratio partial/floor {thr['ratio']:8.3f}×  (target ≤{PARTIAL_FLOOR_TARGET} {verdict})")
    print(f"  combine ({thr['threshold']} partials) {thr['combine_us_per_ct']:8.1f} µs/ciphertext")
    print(f"  proof of correct partials (batched over {results['count']}): prove "
          f"{thr['prove_us_per_ct'] / 1e3:.2f} ms/ciphertext "
          f"({thr['prove_us_per_ct'] / thr['partial_us_per_ct']:.0%} of "
          f"the partials), verify one decryptor {thr['verify_us_per_ct'] / 1e3:.2f} ms/ciphertext")
    if "parallel_us_per_param" in thr:
        print(f"  all {thr['cores']} cores ({thr['parallel_workers']} workers, wall): "
              f"{thr['parallel_us_per_param']:.1f} µs/param")
    print(f"\n3. packing layout for value_bits=16, {results['key_bits']}-bit key "
          "(bound and proof: fedgrad/crypto/packing.py)")
    print(f"{'max_clients':>12}{'max_weight':>12}{'slot bits':>11}{'slots/ct':>10}{'bytes/param':>13}")
    for row in results["layouts"]:
        print(f"{row['max_clients']:>12}{row['max_weight']:>12}{row['slot_bits']:>11}{row['slots']:>10}"
              f"{row['bytes_per_param']:>13.2f}")


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


def simulate(scenario: Path, mode: str, key_bits: int, out_dir: Path) -> dict[str, Any]:
    """Run `fedgrad simulate` on `scenario` with `privacy.mode = mode`; per-round means from its run directory."""
    return secure_rounds.simulate(scenario, [f'privacy.mode="{mode}"', f"privacy.key_bits={key_bits}"], out_dir)


E2E_MODES = ("none", "paillier-trusted", "paillier")


def end_to_end(scenario: Path, key_bits: int, floor_us_per_ct: float) -> dict[str, Any]:
    """`simulate` in each mode of E2E_MODES, what a threshold round is made of, and its compute floor:
    t × ciphertexts × (one bare powmod, timed in this run) ÷ cores."""
    runs = {}
    with tempfile.TemporaryDirectory(prefix="fedgrad-bench-") as tmp:
        for mode in tqdm(E2E_MODES, desc="end to end", file=sys.stderr):
            runs[mode] = simulate(scenario, mode, key_bits, Path(tmp) / mode)
    secure = runs["paillier"]
    threshold = int(secure["decryptors"].get("decryptors_asked", 2))
    floor_s = threshold * secure["ciphertexts"] * floor_us_per_ct / 1e6 / available_cores()
    return {"scenario": str(scenario), "key_bits": key_bits, "runs": runs, "floor_s": floor_s,
            "decrypt_over_floor": secure["time_s"]["decrypt"] / floor_s,
            "round_time_ratio": {mode: runs[mode]["time_s"]["total"] / runs["none"]["time_s"]["total"]
                                 for mode in E2E_MODES}}


def report_end_to_end(e2e: dict[str, Any]) -> None:
    runs = e2e["runs"]
    print(f"\nend to end: fedgrad simulate {e2e['scenario']} ({e2e['key_bits']}-bit keys, "
          f"{runs['none']['rounds']} rounds, {available_cores()} cores); means per round")
    print(f"{'':<24}" + "".join(f"{mode:>18}" for mode in E2E_MODES))
    for phase in (*PHASES, "total"):
        print(f"{'time ' + phase + ' (s)':<24}" + "".join(f"{runs[m]['time_s'][phase]:>18.4f}" for m in E2E_MODES))
    for direction in ("up", "down"):
        print(f"{'bytes ' + direction + ' (KiB)':<24}"
              + "".join(f"{runs[m]['bytes'][direction] / 1024:>18.1f}" for m in E2E_MODES))
    print(f"{'final accuracy':<24}" + "".join(f"{100 * runs[m]['accuracy']:>17.2f}%" for m in E2E_MODES))
    print(f"{'round time / none':<24}" + "".join(f"{e2e['round_time_ratio'][m]:>17.2f}×" for m in E2E_MODES))
    stats = runs["paillier"]["decryptors"]
    if stats:
        print(f"\npaillier decryption, slowest of the {stats['decryptors_asked']:.0f} decryptors asked: verify "
              f"{stats['verify_s']:.3f} s, partial decryptions {stats['partial_s']:.3f} s, "
              f"proofs {stats['prove_s']:.3f} s; combine with proof checks on the coordinator "
              f"{stats['combine_s']:.3f} s")
    print(f"compute floor t × {runs['paillier']['ciphertexts']} ciphertexts × powmod ÷ {available_cores()} cores = "
          f"{e2e['floor_s']:.3f} s; decrypt phase {runs['paillier']['time_s']['decrypt']:.3f} s = "
          f"{e2e['decrypt_over_floor']:.2f}× the floor (target ≤ 1.3×)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thorough", action="store_true", help="more ciphertexts, parameters and repeats")
    parser.add_argument("--params", type=int, help="update length for the encoder timing "
                        "(default 3000, --thorough 30000)")
    parser.add_argument("--max-weight", type=int, default=1000, help="W for the integer-weight figures")
    parser.add_argument("--trusted", action="store_true",
                        help="also the trusted key holder's naive-vs-packed table (slower)")
    parser.add_argument("--clients", type=int, default=10, help="clients per round for --trusted")
    parser.add_argument("--naive-sample", type=int, default=16, help="parameters timed for the naive scheme")
    parser.add_argument("--key-bits", type=int, choices=(2048, 3072), default=2048)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also time `fedgrad simulate` on --scenario with privacy none, paillier-trusted, paillier")
    parser.add_argument("--scenario", type=Path, default=Path(__file__).resolve().parent.parent / "scenarios" /
                        "spam_fedavg.toml", help="scenario for --end-to-end (default: scenarios/spam_fedavg.toml)")
    args = parser.parse_args(argv)
    if args.clients < MIN_CLIENTS:
        parser.error(f"--clients must be at least {MIN_CLIENTS}")
    params = args.params or (30_000 if args.thorough else 3_000)
    count, repeats = (64, 5) if args.thorough else (16, 3)

    key = generate_keypair(args.key_bits)
    pub = key[0]
    slots = SlotLayout.derive(16, 100, args.key_bits).slots
    results: dict[str, Any] = {"key_bits": args.key_bits, "params": params, "repeats": repeats, "count": count,
                               "load_avg": os.getloadavg()[0]}
    with tqdm(total=3, desc="paillier benchmark", file=sys.stderr) as progress:
        results["encryption"] = encryption_factors(pub, count, repeats, slots)
        progress.update()
        results["encoder"] = [encoder_per_param(pub, params, weight, repeats) for weight in (0, args.max_weight)]
        progress.update()
        results["threshold"] = threshold_costs(count, repeats, slots)
        progress.update()
    results["layouts"] = layout_table(args.key_bits, args.max_weight)
    report_factors(results)
    if args.trusted:
        with tqdm(total=2 * (args.clients + 1), desc="trusted key holder", file=sys.stderr) as progress:
            naive = measure_scheme("paillier-naive", args.naive_sample, params, args.clients, key, progress)
            packed = measure_scheme("paillier", params, params, args.clients, key, progress)
        results.update({"clients": args.clients, "naive": naive, "packed": packed})
        report(results)
    if args.end_to_end:
        results["end_to_end"] = end_to_end(args.scenario, args.key_bits, results["threshold"]["floor_us_per_ct"])
        report_end_to_end(results["end_to_end"])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
