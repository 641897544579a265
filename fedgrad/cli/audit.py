"""`fedgrad audit`: can the coordinator read a client's email? Measured per privacy mode.

    fedgrad audit SCENARIO.toml [--privacy none,paillier-trusted,paillier,paillier-masked,dp:1,dp:8]
                  [--canary-words 6] [--canary-client K] [--canary-copies N] [--set section.key=value ...]

Plants a canary email ("my computer password is" + pseudo-words found nowhere in the corpus) in one client's
shard, often enough for its words to enter the vocabulary; trains round 1 with the platform's client code;
builds what the coordinator observes in each mode (plain deltas; under Paillier, what it decrypts with the key
material it finds in its own process, and the decrypted aggregate; clipped and noised DP updates) and lets an
attacker recover words from it. Under paillier-trusted and paillier the active coordinator of
fedgrad.experiments.redteam also plays every attack on the canary client's update (report: the modes side by
side). Reports, per mode and
observation, the canary words recovered, their share, and the share guessing would hit. Writes
OUTPUT_DIR/audit-<timestamp>/ with audit.json and report.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fedgrad.cli.common import add_set_option


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from fedgrad.experiments.audit import DEFAULT_PRIVACY

    parser = subparsers.add_parser("audit", help="measure how much of a planted email the coordinator can recover",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path, help="scenario TOML file (see scenarios/)")
    parser.add_argument("--privacy", default=DEFAULT_PRIVACY, metavar="LIST",
                        help="comma-separated settings: none, paillier-trusted, paillier, paillier-naive, "
                             f"dp:EPSILON[:central|:distributed], paillier+dp:EPSILON (default: {DEFAULT_PRIVACY})")
    parser.add_argument("--canary-words", type=int, default=6, metavar="N",
                        help="secret pseudo-words in the canary email (default: 6)")
    parser.add_argument("--canary-client", type=int, default=0, metavar="K",
                        help="the client whose shard holds the canary (default: 0)")
    parser.add_argument("--canary-copies", type=int, default=None, metavar="N",
                        help="copies of the canary email planted (default: data.min_count, the fewest that "
                             "put its words in the vocabulary)")
    add_set_option(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from fedgrad.errors import ConfigError
    from fedgrad.experiments.audit import best, read_audit, run_audit
    from fedgrad.experiments.compare.grid import parse_privacy_list

    if args.canary_words < 1:
        raise ConfigError(f"--canary-words: must be >= 1 (got {args.canary_words})")
    command = ["audit", str(args.scenario), "--privacy", args.privacy, "--canary-words", str(args.canary_words),
               "--canary-client", str(args.canary_client)]
    if args.canary_copies is not None:
        command += ["--canary-copies", str(args.canary_copies)]
    for override in args.overrides:
        command += ["--set", override]
    audit_dir = run_audit(args.scenario, args.overrides, parse_privacy_list(args.privacy), n_words=args.canary_words,
                          client=args.canary_client, copies=args.canary_copies, command=command)
    document = read_audit(audit_dir)
    print(f"canary: {document['canary']['text']!r} x{document['canary']['copies']} in client "
          f"{document['canary']['client']}'s shard")
    for mode in document["modes"]:
        for view in mode["views"]:
            result = best(view)
            print(f"{mode['setting']:>14}  {view['name']:<34} {result['attack']:<30} "
                  f"recovered {result['recovered']}/{result['total']} naming {result['guesses']:>6} words: "
                  f"rate {100 * result['rate']:5.1f}%, chance {100 * result['chance_rate']:6.2f}%")
    for mode in document["modes"]:
        outcomes = mode["facts"].get("redteam") or []
        if outcomes:
            recovered = [outcome["name"] for outcome in outcomes if outcome["succeeded"]]
            print(f"{mode['setting']:>14}  red team: {len(recovered)} of {len(outcomes)} attacks recovered the "
                  f"canary client's update" + (f" ({', '.join(recovered)})" if recovered else ", every one refused"))
    print(f"report: {audit_dir / 'report.md'}")
    return 0
