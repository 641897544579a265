"""`fedgrad compare`: what privacy costs, measured on one scenario.

    fedgrad compare SCENARIO.toml [--privacy none,paillier-naive,paillier,dp:1,dp:4,dp:8]
                    [--clients 3,10,100] [--key-bits 2048,3072] [--rounds N] [--set section.key=value ...]

Runs every variant (privacy setting x client count x Paillier key size) as a full `fedgrad simulate`, one
after another, on the same data, split and seed, with one progress display over all of them; `none` always
runs, as the baseline. Writes OUTPUT_DIR/compare-<timestamp>/ with results.csv, results.json, report.md (the
table: accuracy, precision, recall, F1, gap to `none`, time per round and per phase, bytes up per client, the
privacy guarantee in words) and three plots. A variant that fails is reported with its error and does not stop
the others (the exit status is then 1); Ctrl-C stops the running one and writes what finished.
`paillier-naive` (one ciphertext per value, minutes per round) runs --naive-rounds rounds; the report says so.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedgrad.cli.common import add_set_option
from fedgrad.errors import ConfigError
from fedgrad.experiments import compare
from fedgrad.scenario import load_scenario


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("compare", help="run a scenario under several privacy settings and compare",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path, help="scenario TOML file (see scenarios/)")
    parser.add_argument("--privacy", default=compare.DEFAULT_PRIVACY, metavar="LIST",
                        help="comma-separated settings: none, paillier, paillier-naive, "
                             "dp:EPSILON[:central|:distributed] (where the DP noise is added; the scenario's "
                             f"privacy.dp_placement if not given). Default: {compare.DEFAULT_PRIVACY}")
    parser.add_argument("--clients", metavar="LIST",
                        help="comma-separated client counts, e.g. 3,10,100 (default: the scenario's)")
    parser.add_argument("--key-bits", metavar="LIST",
                        help="comma-separated Paillier key sizes for the paillier modes, e.g. 2048,3072")
    parser.add_argument("--rounds", type=int, metavar="N", help="rounds for every variant (default: the scenario's)")
    parser.add_argument("--naive-rounds", type=int, default=compare.NAIVE_ROUNDS, metavar="N",
                        help=f"rounds for paillier-naive at most (default: {compare.NAIVE_ROUNDS})")
    add_set_option(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--rounds", args.rounds), ("--naive-rounds", args.naive_rounds)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: must be >= 1 (got {value})")
    variants = compare.plan_variants(
        args.scenario, args.overrides, compare.parse_privacy_list(args.privacy),
        clients=compare.parse_int_list(args.clients, "--clients") if args.clients else None,
        key_bits=compare.parse_int_list(args.key_bits, "--key-bits") if args.key_bits else None,
        rounds=args.rounds, naive_rounds=args.naive_rounds)
    base = load_scenario(args.scenario, args.overrides)
    compare_dir = compare.new_comparison_dir(base)
    print(f"comparing {len(variants)} variants of {base.name}: {', '.join(v.name for v in variants)}\n"
          f"results: {compare_dir}", file=sys.stderr)
    outcomes = compare.run_variants(args.scenario, args.overrides, variants, compare_dir)
    rows = compare.collect(outcomes, compare_dir)
    compare.write_results(compare_dir, compare.comparison_meta(args.scenario, args.overrides, base,
                                                                     _command_line(args)), rows)
    report = compare.render_comparison(compare_dir)
    print("\n".join(compare.summary_lines(rows)))
    print(f"report: {report}")
    if any(outcome.status == "interrupted" for outcome in outcomes):
        print("fedgrad: interrupted; the table holds the variants that finished", file=sys.stderr)
        return 130
    return 0 if all(outcome.status == "ok" for outcome in outcomes) else 1


def _command_line(args: argparse.Namespace) -> list[str]:
    """The command as it could be typed again (recorded in results.json and the report)."""
    words = ["compare", str(args.scenario), "--privacy", args.privacy]
    for flag, value in (("--clients", args.clients), ("--key-bits", args.key_bits), ("--rounds", args.rounds),
                        ("--naive-rounds", args.naive_rounds)):
        if value is not None:
            words += [flag, str(value)]
    for override in args.overrides:
        words += ["--set", override]
    return words
