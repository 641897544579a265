"""`fedgrad policy`: the operator's run policy, written next to the key set and the enrollment.

    fedgrad policy SCENARIO.toml --key-set keyset.json --data-dir DIR --out policy.json
                   [--run RUN] [--coordinator-cert PEM] [--min-fraction 0.5] [--set SECTION.KEY=VALUE ...]

The policy fixes, for one federation, what the coordinator must not decide: the run id, the key set (its
fingerprint), the scenario's privacy mode and settings (each client computes the announcement it accepts from
them, its DP noise share included), the training settings that shape an update, min_clients, the share of each
announced cohort a release needs, and (--coordinator-cert) the client certificate the coordinator presents to the
decryptors, who then answer it alone over mutual TLS. DIR is the data split of the scenario (`fedgrad data
split`), read for its vocabulary size. Give the file to every client (`fedgrad client --policy`) and decryptor
(`fedgrad decryptor --policy`) out of band, as the enrollment; the coordinator needs only the run id
(`fedgrad server --run-id`).
"""
from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from fedgrad.cli.common import add_set_option
from fedgrad.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from fedgrad.policy import DEFAULT_MIN_FRACTION

    parser = subparsers.add_parser("policy", help="write the operator's run policy that clients and decryptors pin",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path, help="scenario TOML file")
    parser.add_argument("--key-set", type=Path, required=True, metavar="FILE", help="the public keyset.json")
    parser.add_argument("--data-dir", type=Path, required=True, metavar="DIR",
                        help="the scenario's data split (fedgrad data split), for its vocabulary size")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="the policy to write")
    parser.add_argument("--run", metavar="RUN", help="the run id (default: a fresh random one)")
    parser.add_argument("--coordinator-cert", type=Path, metavar="PEM",
                        help="the coordinator's client certificate for the decryptors (fedgrad certs --clients)")
    parser.add_argument("--min-fraction", type=float, default=DEFAULT_MIN_FRACTION, metavar="F",
                        help=f"share of each announced cohort a release needs (default: {DEFAULT_MIN_FRACTION:g})")
    add_set_option(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from fedgrad.crypto.threshold import KeySet
    from fedgrad.data import load_vocab
    from fedgrad.policy import make_policy
    from fedgrad.scenario import load_scenario

    if args.out.exists():
        raise ConfigError(f"{args.out} exists; a policy is written once per federation (choose another --out)")
    scenario = load_scenario(args.scenario, args.overrides)
    policy = make_policy(scenario, len(load_vocab(args.data_dir)), KeySet.load(args.key_set),
                         run=args.run or uuid.uuid4().hex, min_fraction=args.min_fraction,
                         coordinator_cert=args.coordinator_cert)
    policy.save(args.out)
    print(f"run policy for run {policy.run!r} ({policy.mode}, min_clients={policy.min_clients}, "
          f"min_fraction={policy.min_fraction:g}) in {args.out}; give it to every client and decryptor")
    return 0
