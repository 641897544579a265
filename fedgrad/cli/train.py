"""`fedgrad train --centralized`: the baseline a federated run is measured against.

    fedgrad train --centralized SCENARIO.toml [--set section.key=value ...] [--epochs N]

Builds the scenario's dataset exactly as `fedgrad simulate` does (same corpus, split, vocabulary
and seed), pools every client's training shard, trains the scenario's model on it with the
scenario's [train] settings, and evaluates on the same held-out test set after every epoch. By
default it runs ``federation.rounds x train.epochs`` epochs: as many passes over each example as
the federated run makes when every client takes part in every round.

The run directory (``output.dir``/<scenario>-<timestamp>) has the same files as a federated run,
with one record per epoch in metrics.jsonl; its report says ``mode: centralized``. The work is
``fedgrad.experiments.baseline`` (``fedgrad.baseline`` from Python); this module parses and prints.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fedgrad.experiments.baseline import train_centralized
from fedgrad.results import format_percent
from fedgrad.results.schema import RoundRecord, RunSummary
from fedgrad.scenario import load_scenario

#: The printed table shows at most this many epochs (evenly spaced, always the last); all are in metrics.jsonl.
MAX_TABLE_ROWS = 20


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train the scenario's model centrally on the pooled data (baseline)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--centralized", action="store_true", required=True,
                        help="train on all clients' training data pooled in one place (required: the only mode)")
    parser.add_argument("scenario", type=Path, help="scenario TOML file (see scenarios/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a scenario value, e.g. --set train.lr=0.05 (repeatable)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="passes over the pooled data (default: federation.rounds x train.epochs)")
    parser.set_defaults(func=run)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def run(args: argparse.Namespace) -> int:
    writer, summary = train_centralized(load_scenario(args.scenario, args.overrides), epochs=args.epochs)
    print_table(writer.records, summary)
    return 0


def print_table(records: list[RoundRecord], summary: RunSummary) -> None:
    """Per-epoch test metrics (at most MAX_TABLE_ROWS rows) and the final line, on stdout."""
    step = -(-len(records) // MAX_TABLE_ROWS)  # ceil
    shown = records[::-1][::step][::-1]  # every step-th epoch counted back from the last
    columns = ("epoch", "accuracy", "precision", "recall", "f1", "test loss", "train loss", "time")
    rows = [
        (
            str(record.round),
            *(format_percent(value) for value in (record.accuracy, record.precision, record.recall, record.f1)),
            _number(record.loss),
            _number(record.train_loss),
            f"{record.time_s.total:.3f}s",
        )
        for record in shown
    ]
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    final = summary.final
    print(f"\n{summary.scenario} (centralized, {summary.epochs} epochs on {summary.train_examples} emails): "
          f"test accuracy {format_percent(final.accuracy)}, F1 {_number(final.f1)} "
          f"on {summary.test_examples} emails, {summary.wall_time_s:.1f}s")
    print(f"results: {summary.run_dir}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
