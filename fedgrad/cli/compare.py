"""`fedgrad compare`: what privacy costs, measured on one scenario.

    fedgrad compare SCENARIO.toml [--privacy none,paillier,dp:1,dp:2,dp:4,dp:8,paillier+dp:4] [--seeds 3]
                    [--clients 3,10,100] [--key-bits 2048,3072] [--rounds N] [--set section.key=value ...]
                    [--strategies fedavg,fedmedian,krum:f=3] [--attack label_flip:0.1,backdoor:0.3]

Runs every variant (privacy setting x client count x Paillier key size x seed) as a full `fedgrad simulate`,
one after another, on the same data, split and seed, with one progress display over all of them; `none` always
runs, as the baseline. Then replays round 1 with the leakage audit's canary planted and attacks each variant's
released aggregate (--no-canary skips it). Writes OUTPUT_DIR/compare-<timestamp>/ with results.csv,
results.json, report.md (the frontier: accuracy and F1, gap to `none`, time per round, bytes, ε spent and
canary words recovered against chance, mean ± standard deviation over the seeds; then every run with time per
phase and the privacy guarantee in words) and four plots (accuracy against ε, accuracy gap against time
overhead, accuracy per round, bytes per round). A variant that fails is reported with its error and does not
stop the others (the exit status is then 1); Ctrl-C stops the running one and writes what finished.
`paillier-naive` (one ciphertext per value, minutes per round) runs --naive-rounds rounds; the report says so.
With --strategies and --attack the grid also spans aggregation strategies and attacks (each setting runs clean
too): the report adds a robustness table (clean accuracy, accuracy under attack, backdoor success) and a plot of
attack success against the attackers' fraction; a rule that a privacy mode cannot serve is listed as not run.
The same from Python: `fedgrad.experiments.compare.run_comparison`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedgrad.cli.common import add_set_option
from fedgrad.experiments import compare


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("compare", help="run a scenario under several privacy settings and compare",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path, help="scenario TOML file (see scenarios/)")
    parser.add_argument("--privacy", default=compare.DEFAULT_PRIVACY, metavar="LIST",
                        help="comma-separated settings: none, paillier, paillier-trusted, paillier-naive, "
                             "dp:EPSILON[:central|:distributed] (where the DP noise is added; the scenario's "
                             "privacy.dp_placement if not given), paillier+dp:EPSILON (= dp:EPSILON:distributed: "
                             f"noise shares summed under encryption). Default: {compare.DEFAULT_PRIVACY}")
    parser.add_argument("--clients", metavar="LIST",
                        help="comma-separated client counts, e.g. 3,10,100 (default: the scenario's)")
    parser.add_argument("--key-bits", metavar="LIST",
                        help="comma-separated Paillier key sizes for the paillier modes, e.g. 2048,3072")
    parser.add_argument("--seeds", metavar="N|LIST",
                        help="run every setting on N seeds (the scenario's seed and the next N-1) or on the listed "
                             "ones, e.g. 0,7,42; the table gives mean ± standard deviation over them. Default: the "
                             "scenario's seed, once")
    parser.add_argument("--no-canary", dest="canary", action="store_false",
                        help="skip the canary attack on each variant's released aggregate (round 1 replayed "
                             "in this process with the leakage audit's canary planted)")
    parser.add_argument("--strategies", metavar="LIST",
                        help="comma-separated aggregation strategies, options after ':' as key=value, e.g. "
                             "fedavg,fedmedian,krum:f=3,fedtrimmedavg:beta=0.3 (default: the scenario's)")
    parser.add_argument("--attack", metavar="LIST",
                        help="comma-separated attacks kind:fraction (label_flip, scaled_update, backdoor), e.g. "
                             "label_flip:0.1,backdoor:0.3; every setting also runs clean, and the report gives "
                             "clean accuracy, accuracy under attack and backdoor success")
    parser.add_argument("--rounds", type=int, metavar="N", help="rounds for every variant (default: the scenario's)")
    parser.add_argument("--naive-rounds", type=int, default=compare.NAIVE_ROUNDS, metavar="N",
                        help=f"rounds for paillier-naive at most (default: {compare.NAIVE_ROUNDS})")
    add_set_option(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    result = compare.run_comparison(
        args.scenario, privacy=args.privacy, seeds=args.seeds,
        clients=compare.parse_int_list(args.clients, "--clients") if args.clients else None,
        key_bits=compare.parse_int_list(args.key_bits, "--key-bits") if args.key_bits else None,
        rounds=args.rounds, naive_rounds=args.naive_rounds, overrides=args.overrides, canary=args.canary,
        strategies=args.strategies, attacks=args.attack)
    print("\n".join(compare.summary_lines(result.frontier)))
    print(f"report: {result.report}")
    if result.interrupted:
        print("fedgrad: interrupted; the table holds the variants that finished", file=sys.stderr)
        return 130
    return 0 if result.ok else 1
