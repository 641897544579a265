"""The comparison's Markdown report (table, guarantees, notes, plots, runs) and the terminal summary, rendered
from ``results.json`` alone so that ``fedgrad report`` can redraw them."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedgrad.experiments.compare.grid import BASELINE_MODE
from fedgrad.experiments.compare.results import PHASE_COLUMNS, read_results
from fedgrad.files import write_atomic
from fedgrad.results import format_bytes, format_seconds

REPORT_FILE = "report.md"
PLOT_FILES = {"accuracy": "accuracy_per_round.png", "gap": "gap_vs_overhead.png", "bytes": "bytes_per_round.png"}


def render_comparison(compare_dir: Path) -> Path:
    """(Re)draw the three plots and (re)write ``report.md`` from ``results.json``; returns the report's path."""
    from fedgrad.experiments import plots  # matplotlib only when drawing

    document = read_results(compare_dir)
    rows = document["variants"]
    measured = [row for row in rows if row["accuracy_per_round"]]
    plots.accuracy_per_round({row["variant"]: [tuple(point) for point in row["accuracy_per_round"]]
                              for row in measured}, compare_dir / PLOT_FILES["accuracy"],
                             title=f"{document['scenario']}: test accuracy per round")
    plots.gap_vs_overhead([(row["variant"], row["round_time_ratio"], row["accuracy_gap_pts"]) for row in measured
                           if row["round_time_ratio"] and row["accuracy_gap_pts"] is not None],
                          compare_dir / PLOT_FILES["gap"], baseline=BASELINE_MODE)
    plots.bytes_per_round([(row["variant"], row["bytes_up_per_round"], row["bytes_down_per_round"])
                           for row in measured], compare_dir / PLOT_FILES["bytes"])
    sections = [_report_header(document), _report_table(rows), _report_guarantees(rows), _report_notes(rows),
                _report_plots(), _report_runs(rows)]
    path = compare_dir / REPORT_FILE
    write_atomic(path, "\n\n".join(section for section in sections if section) + "\n")
    return path


def _report_header(document: dict[str, Any]) -> str:
    overrides = ", ".join(f"`{value}`" for value in document["overrides"]) or "none"
    return "\n".join([
        f"# Comparison `{document['scenario']}`: accuracy versus the cost of privacy",
        "",
        (f"Scenario `{document['scenario_path']}` (seed {document['seed']}; `--set` overrides: {overrides}), "
        f"created {document['created']} by `{' '.join(document['command'])}`."),
        "",
        ("Each variant is a full `fedgrad simulate` run (coordinator, client processes, gRPC) on the same data, "
        "split, partition and seed, run one after another on this machine so that their timings compare. "
        f"**Gap** is `{BASELINE_MODE}`'s test accuracy minus the variant's after the same round, in percentage "
        f"points (positive: accuracy lost to privacy). **×** columns are ratios to `{BASELINE_MODE}` with the "
        "same number of clients. Times are means per round, each phase measured by the coordinator along the "
        "round's critical path (the slowest client); **transfer** is the model broadcast plus the slowest upload. "
        "Clients that share a client process (see *Runs*) work one after another, so a slow encryption also "
        "lengthens the others' broadcast, the wait for their turn. **up/client** is bytes uploaded per "
        "participating client per round."),
    ])


def _report_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("variant", "status", "rounds", "accuracy", "precision", "recall", "F1", "gap (pts)", "time/round",
              "×", *PHASE_COLUMNS, "up/client", "×", "coordinator sees")
    lines = ["## Results", "", "| " + " | ".join(header) + " |",
             "|---|---|---:|" + "---:|" * (len(header) - 4) + "---|"]
    for row in rows:
        cells = [
            f"`{row['variant']}`",
            row["status"] + ("*" if row["notes"] else ""),
            f"{row['rounds']}/{row['rounds_planned']}",
            *(_percent(row[key]) for key in ("accuracy", "precision", "recall", "f1")),
            _signed(row["accuracy_gap_pts"]),
            format_seconds(row["round_time_s"]),
            _times(row["round_time_ratio"]),
            *(format_seconds(row[f"{phase}_s"]) for phase in PHASE_COLUMNS),
            format_bytes(row["bytes_up_per_client"]),
            _times(row["bytes_up_ratio"]),
            row["guarantee"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(row["notes"] for row in rows):
        lines += ["", "\\* ran with the adjustments listed under *Notes*."]
    return "\n".join(lines)


def _report_guarantees(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["## Privacy guarantees", "", "| variant | guarantee | ε spent (reported by the run) |", "|---|---|---:|"]
    for row in rows:
        spent = "–" if row["epsilon_spent"] is None else f"{row['epsilon_spent']:.3g}"
        lines.append(f"| `{row['variant']}` | {row['guarantee_full']} | {spent} |")
    return "\n".join(lines)


def _report_notes(rows: Sequence[dict[str, Any]]) -> str:
    items = []
    for row in rows:
        if row["notes"]:
            items.append(f"- `{row['variant']}`: {row['notes']}.")
        if row["status"] != "ok":
            reason = f": {row['error']}" if row["error"] else ""
            log = f" (log: `{row['log']}`)" if row["log"] else ""
            items.append(f"- `{row['variant']}` **{row['status']}**{reason}{log}.")
    return "\n".join(["## Notes", "", *items]) if items else ""


def _report_plots() -> str:
    return "\n".join([
        "## Plots", "",
        f"![Test accuracy per round]({PLOT_FILES['accuracy']})", "",
        f"![Accuracy gap versus time overhead]({PLOT_FILES['gap']})", "",
        f"![Bytes per round]({PLOT_FILES['bytes']})",
    ])


def _report_runs(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["## Runs", "", "| variant | run directory | log | clients / client processes | wall time |",
             "|---|---|---|---:|---:|"]
    for row in rows:
        run_dir = f"[`{row['run_dir']}`]({row['run_dir']}/report.md)" if row["run_dir"] else "–"
        log = f"[`{row['log']}`]({row['log']})" if row["log"] else "–"
        processes = f"{row['clients']} / {row['processes'] or '–'}"
        lines.append(f"| `{row['variant']}` | {run_dir} | {log} | {processes} | {format_seconds(row['wall_time_s'])} |")
    return "\n".join(lines)


def summary_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """A compact table for the terminal."""
    header = ("variant", "status", "accuracy", "gap", "time/round", "×", "up/client", "×")
    table = [header] + [(
        row["variant"], row["status"], _percent(row["accuracy"]), _signed(row["accuracy_gap_pts"]),
        format_seconds(row["round_time_s"]), _times(row["round_time_ratio"]),
        format_bytes(row["bytes_up_per_client"]), _times(row["bytes_up_ratio"]),
    ) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width)
                      in enumerate(zip(line, widths, strict=True))) for line in table]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _times(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}×" if value >= 1000 else f"{value:.3g}×"
