"""What several commands share: the run-source and ``--set`` options, log routing above the progress bar, and
the printed table of rounds."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fedgrad.results import METRIC_KEYS
from server.experiment import PreparedRun


def add_run_source(parser: argparse.ArgumentParser) -> None:
    """SCENARIO.toml for a new run, or --resume RUN_DIR for an interrupted one (shared with simulate)."""
    parser.add_argument("scenario", type=Path, nargs="?", help="scenario TOML file (see scenarios/)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint instead of starting one")
    add_set_option(parser)


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a scenario value, e.g. --set federation.rounds=3 (repeatable)")


@contextmanager
def logs_above_progress(level: int) -> Iterator[None]:
    """Route fedgrad's log records through tqdm so they print above the bar instead of through it."""

    class TqdmHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("fedgrad")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def print_results(prepared: PreparedRun, summary: dict[str, Any]) -> None:
    """The per-round table and the final line, on stdout."""
    columns = ("round", *METRIC_KEYS, "clients", "time", "up", "down")
    rows = []
    for record in prepared.writer.records:
        rows.append((
            str(record["round"]),
            *(f"{record[key]:.4f}" if key == "loss" else f"{100 * record[key]:.2f}%" for key in METRIC_KEYS),
            f"{record['clients_used']}/{record['clients_selected']}",
            f"{record['time_s']['total']:.3f}s",
            _size(record["bytes"]["up"]),
            _size(record["bytes"]["down"]),
        ))
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    final, initial = summary["final"], summary["initial"]
    rounds = max(summary["rounds"], 1)
    print(f"\n{prepared.scenario.name}: final accuracy {100 * final['accuracy']:.2f}% (initial "
          f"{100 * initial['accuracy']:.2f}%), F1 {final['f1']:.4f}, mean round "
          f"{summary['time_s']['total'] / rounds:.3f}s, {_size(summary['bytes']['up'] / rounds)} up and "
          f"{_size(summary['bytes']['down'] / rounds)} down per round")
    print(f"results: {summary['run_dir']}")


def _size(nbytes: float) -> str:
    if nbytes < 1024:
        return f"{nbytes:.0f} B"
    if nbytes < 1024**2:
        return f"{nbytes / 1024:.1f} KiB"
    return f"{nbytes / 1024**2:.1f} MiB"
