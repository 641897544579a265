"""`fedgrad report`: re-render the report and plots of a finished run, comparison or audit.

    fedgrad report DIR

DIR is what `fedgrad simulate` / `fedgrad server` / `fedgrad train` created (report.md and an
accuracy-per-round plot are redrawn from config.toml, metrics.jsonl and summary.json), what
`fedgrad compare` created (report.md and its three plots, from results.json), or what `fedgrad audit`
created (report.md, from audit.json). Nothing is re-run: edit nothing by hand and the output is the same.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fedgrad.errors import DataError

ACCURACY_PLOT = "accuracy_per_round.png"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("report", help="re-render the report and plots of a run, comparison or audit",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="a run, comparison (compare-*) or audit (audit-*) directory")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    directory: Path = args.directory
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    print(f"report: {render(directory)}")
    return 0


def render(directory: Path) -> Path:
    """Re-render whatever kind of result ``directory`` holds; returns the report's path."""
    from fedgrad import results
    from fedgrad.experiments import audit, compare

    if compare.is_comparison_dir(directory):
        return compare.render_comparison(directory)
    if audit.is_audit_dir(directory):
        return audit.render_audit_report(directory)
    if not (directory / results.CONFIG_FILE).is_file():
        raise DataError(f"{directory}: not a run, comparison or audit directory "
                        f"(no {results.CONFIG_FILE}, {compare.RESULTS_JSON} or {audit.AUDIT_JSON})")
    return render_run(directory)


def render_run(run_dir: Path) -> Path:
    """A single run: its accuracy-per-round plot, then ``report.md`` (which links the plots it finds)."""
    from fedgrad import results
    from fedgrad.experiments import plots

    records = results.read_metrics(run_dir)
    if records:
        plots.accuracy_per_round({"test accuracy": [(record.round, record.accuracy) for record in records]},
                                 run_dir / ACCURACY_PLOT, title=f"{run_dir.name}: test accuracy per round")
    return results.render_report(run_dir)

