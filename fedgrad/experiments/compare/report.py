"""The comparison's Markdown report (table, guarantees, notes, plots, runs) and the terminal summary, rendered
from ``results.json`` alone so that ``fedgrad report`` can redraw them."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedgrad.experiments.compare.frontier import frontier_rows
from fedgrad.experiments.compare.grid import BASELINE_MODE
from fedgrad.experiments.compare.results import PHASE_COLUMNS, read_results
from fedgrad.experiments.compare.robustness import NO_ATTACK, success_curves
from fedgrad.files import write_atomic
from fedgrad.results import format_bytes, format_seconds

REPORT_FILE = "report.md"
PLOT_FILES = {"epsilon": "accuracy_vs_epsilon.png", "gap": "gap_vs_overhead.png",
              "accuracy": "accuracy_per_round.png", "bytes": "bytes_per_round.png"}
PLOT_TITLES = {"epsilon": "Final test accuracy against ε", "gap": "Accuracy gap versus time overhead",
               "accuracy": "Test accuracy per round", "bytes": "Bytes per round"}
#: Drawn only for a comparison with ``--attack`` (``robustness``).
ATTACK_PLOT, ATTACK_PLOT_TITLE = "attack_success.png", "Attack success against the fraction of attackers"


def render_comparison(compare_dir: Path) -> Path:
    """(Re)draw the plots and (re)write ``report.md`` from ``results.json``; returns the report's path."""
    document = read_results(compare_dir)
    rows = document["variants"]
    frontier = frontier_rows(rows)
    drawn = _draw_plots(compare_dir, document["scenario"], frontier)
    sections = [_report_header(document), _report_frontier(document, frontier), _report_robustness(document, frontier),
                _report_table(rows), _report_empirical(rows),
                _report_guarantees(rows), _report_notes(rows), _report_plots(drawn), _report_runs(rows)]
    path = compare_dir / REPORT_FILE
    write_atomic(path, "\n\n".join(section for section in sections if section) + "\n")
    return path


def _draw_plots(compare_dir: Path, scenario: str, frontier: Sequence[dict[str, Any]]) -> list[str]:
    """Every plot the frontier has data for (accuracy against ε needs a DP setting); returns their keys."""
    from fedgrad.experiments import plots  # matplotlib only when drawing

    measured = [row for row in frontier if row["accuracy_per_round"]]
    drawn = []
    curves = _epsilon_curves(measured)
    if curves:
        references = {row["variant"]: _mean_std(row["accuracy"]) for row in measured if row["epsilon"] is None}
        plots.accuracy_vs_epsilon(curves, references, compare_dir / PLOT_FILES["epsilon"], baseline=BASELINE_MODE,
                                  title=f"{scenario}: final accuracy against ε, {_seeds_phrase(frontier)}")
        drawn.append("epsilon")
    plots.gap_vs_overhead([(row["variant"], row["round_time_ratio"]["mean"], _mean_std(row["accuracy_gap_pts"]))
                           for row in measured if row["round_time_ratio"] and row["accuracy_gap_pts"]],
                          compare_dir / PLOT_FILES["gap"], baseline=BASELINE_MODE)
    plots.accuracy_per_round(
        {row["variant"]: [(number, stat["mean"]) for number, stat in row["accuracy_per_round"]] for row in measured},
        compare_dir / PLOT_FILES["accuracy"], title=f"{scenario}: test accuracy per round, {_seeds_phrase(frontier)}",
        bands={row["variant"]: [(number, stat["mean"] - stat["std"], stat["mean"] + stat["std"])
                                for number, stat in row["accuracy_per_round"] if stat["std"] is not None]
               for row in measured})
    plots.bytes_per_round([(row["variant"], row["bytes_up_per_round"]["mean"], row["bytes_down_per_round"]["mean"])
                           for row in measured if row["bytes_up_per_round"] and row["bytes_down_per_round"]],
                          compare_dir / PLOT_FILES["bytes"])
    attack_curves = success_curves(measured)
    if attack_curves:
        plots.attack_success(attack_curves, compare_dir / ATTACK_PLOT,
                             title=f"{scenario}: attack success against the fraction of attackers, "
                                   f"{_seeds_phrase(frontier)}")
    return [*drawn, "gap", "accuracy", "bytes", *(["attack"] if attack_curves else [])]


def _epsilon_curves(frontier: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, tuple[float, float | None]]]]:
    """DP settings as curves of (ε spent, accuracy): one per noise placement (and client count, when several);
    then every setting with canaries at its measured ε̂ (mean over seeds), final model and all iterates."""
    several_counts = len({row["clients"] for row in frontier}) > 1
    curves: dict[str, list[tuple[float, tuple[float, float | None]]]] = {}
    for row in frontier:
        if row["epsilon"] is None or not row["accuracy"]:
            continue
        label = (f"{row['dp_secure']}+dp (distributed noise)" if row["dp_placement"] == "distributed"
                 else "dp (central noise)")
        if several_counts:
            label += f", {row['clients']} clients"
        epsilon = row["epsilon_spent"]["mean"] if row["epsilon_spent"] else row["epsilon"]
        curves.setdefault(label, []).append((epsilon, _mean_std(row["accuracy"])))
    for row in frontier:  # where each setting's canaries put it (ε̂ > 0 only: the axis is logarithmic)
        for key, threat in (("eps_hat_final", "final model"), ("eps_hat_all", "all iterates")):
            if row[key] and row[key]["mean"] > 0 and row["accuracy"]:
                label = f"ε̂ {threat}" + (f", {row['clients']} clients" if several_counts else "")
                curves.setdefault(label, []).append((row[key]["mean"], _mean_std(row["accuracy"])))
    return curves


def _mean_std(stat: dict[str, Any]) -> tuple[float, float | None]:
    return stat["mean"], stat["std"]


def _seeds_phrase(frontier: Sequence[dict[str, Any]]) -> str:
    runs = max((row["runs"] for row in frontier), default=1)
    return "one seed" if runs == 1 else f"mean ± std over {runs} seeds"


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


def _report_frontier(document: dict[str, Any], frontier: Sequence[dict[str, Any]]) -> str:
    seeds = ", ".join(map(str, document.get("seeds", [document["seed"]])))
    header = ("setting", "runs ok", "accuracy", "F1", "gap (pts)", "time/round", "×", "up/client", "ε spent",
              "ε̂ final model", "ε̂ all iterates", "canary TPR", "FPR", "chance", "advantage (pts)",
              "coordinator sees / who must collude")
    lines = ["## Frontier", "",
             (f"Each setting ran on seed(s) {seeds}. Cells are the mean ± the sample standard deviation over the "
              "runs that finished (no ± for a single run); gaps and ratios are taken against `none` on the same "
              "seed first. **ε spent** is what each run's privacy ledger reports; **ε̂** is the empirical ε its canary "
              "clients measured (`--canaries`; see *Empirical privacy*). **canary TPR** is the share of the "
              "leakage audit's planted canary words that the best attack names among the few words it names off "
              "the variant's released round-1 aggregate (round 1 replayed in this process with the canary planted, "
              "released by the mode's own aggregation with its noise), **FPR** the share of other words it names; "
              "**chance** is the TPR of naming as many vocabulary words at random; **advantage** = TPR − chance, "
              "in points, is what the aggregate gave the attacker (about 0: nothing). `fedgrad audit` also "
              "measures what the coordinator reads off one update."),
             "", "| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(header) - 3) + "---|"]
    for row in frontier:
        cells = [
            f"`{row['variant']}`", f"{row['finished']}/{row['runs']}",
            _spread(row["accuracy"], _percent), _spread(row["f1"], _percent),
            _spread(row["accuracy_gap_pts"], _signed), _spread(row["round_time_s"], format_seconds),
            _times(row["round_time_ratio"]["mean"] if row["round_time_ratio"] else None),
            _spread(row["bytes_up_per_client"], format_bytes), _spread(row["epsilon_spent"], _epsilon),
            _spread(row["eps_hat_final"], _epsilon), _spread(row["eps_hat_all"], _epsilon),
            _spread(row["canary_rate"], _percent), _spread(row.get("canary_fpr"), _percent),
            _spread(row["canary_chance"], _percent), _spread(_points(row["canary_advantage"]), _signed),
            row["guarantee"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_robustness(document: dict[str, Any], frontier: Sequence[dict[str, Any]]) -> str:
    """Per setting and attack: clean accuracy, accuracy under attack, points lost and the backdoor's success; then
    the combinations left out and why. Empty for a comparison without --attack or --strategies."""
    attacked = [row for row in frontier if row.get("attack") not in (None, NO_ATTACK)]
    skipped = document.get("skipped") or []
    if not attacked and not skipped:
        return ""
    lines = ["## Robustness", ""]
    if attacked:
        lines += [("Each attacked run is set against the clean run of the same privacy setting, strategy and seed. "
                   "**Clean** is that run's test accuracy, **under attack** the attacked run's, after the same round; "
                   "**lost** is the difference in points. **Backdoor success** is the share of the test set's spam, "
                   "trigger added, that the final model classifies as ham (backdoor attacks only)."),
                  "", "| setting | attack | attackers | clean | under attack | lost (pts) | backdoor success |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in attacked:
            lines.append(f"| `{row['setting']}` | {row['attack']} | {100 * row['attack_fraction']:g}% | "
                         f"{_spread(row['clean_accuracy'], _percent)} | {_spread(row['accuracy'], _percent)} | "
                         f"{_spread(row['attack_drop_pts'], _signed)} | "
                         f"{_spread(row['backdoor_success'], _percent) if row['attack'] == 'backdoor' else '–'} |")
    if skipped:
        lines += ["", "Not run:", *(f"- `{item['variant']}`: {item['reason']}" for item in skipped)]
    return "\n".join(lines)


def _report_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("variant", "status", "rounds", "accuracy", "precision", "recall", "F1", "gap (pts)", "time/round",
              "×", *PHASE_COLUMNS, "up/client", "×", "coordinator sees")
    lines = ["## Every run", "", "| " + " | ".join(header) + " |",
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


def _report_empirical(rows: Sequence[dict[str, Any]]) -> str:
    """Each run's ε̂ (``server.canaries``) with its interval and what the threshold test proves, next to its ε."""
    measured = [row for row in rows if row.get("canaries")]
    if not measured:
        return ""
    lines = ["## Empirical privacy", "",
             (f"{measured[0]['canaries']} canary clients per run (`privacy.canaries`) took part by the scenario's "
              "sampling, each sending a fixed random direction at the clip norm through the round's own "
              "aggregation; as many held-out directions were never sent. **ε̂** is the ε of the Gaussians fitted to "
              "the cosines of the inserted and held-out canaries with the final model's change (final model) or "
              "their largest cosine with any one round's change (all iterates), Andrew et al. (ICLR 2024), taken "
              "with each coordinate weighted by the inverse of its energy in the released changes, so that the real "
              "updates, concentrated on few coordinates, do not drown the canaries; "
              "[a, b] is its 95% bootstrap interval over the canaries and **≥** what a threshold test on the same "
              "cosines proves at 95% confidence. ε̂ is a lower estimate from one attack, not a guarantee: ε spent "
              "bounds every attack. The canaries are in the model, so the accuracy columns include their cost; "
              "`benchmarks/canary_cost.py` measures it against the same runs without them."),
             "", "| run | ε spent | ε̂ final model | ε̂ all iterates |", "|---|---:|---:|---:|"]
    for row in measured:
        cells = [f"`{row['variant']}`", _epsilon(row["epsilon_spent"]),
                 *(_estimate(row, short) for short in ("final", "all"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _estimate(row: dict[str, Any], short: str) -> str:
    epsilon = row.get(f"eps_hat_{short}")
    if epsilon is None:
        return "–"
    low, high, proven = (row.get(f"eps_hat_{short}{part}") for part in ("_low", "_high", "_proven"))
    return f"{epsilon:.3g} [{_epsilon(low)}, {_epsilon(high)}] ≥ {_epsilon(proven)}"


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
        if row.get("canary_error"):
            items.append(f"- `{row['variant']}`: canary {row['canary_error']}.")
    return "\n".join(["## Notes", "", *items]) if items else ""


def _report_plots(drawn: Sequence[str]) -> str:
    titles, files = {**PLOT_TITLES, "attack": ATTACK_PLOT_TITLE}, {**PLOT_FILES, "attack": ATTACK_PLOT}
    return "\n\n".join(["## Plots", *(f"![{titles[key]}]({files[key]})" for key in drawn)])


def _report_runs(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["## Runs", "", "| variant | run directory | log | clients / client processes | wall time |",
             "|---|---|---|---:|---:|"]
    for row in rows:
        run_dir = f"[`{row['run_dir']}`]({row['run_dir']}/report.md)" if row["run_dir"] else "–"
        log = f"[`{row['log']}`]({row['log']})" if row["log"] else "–"
        processes = f"{row['clients']} / {row['processes'] or '–'}"
        lines.append(f"| `{row['variant']}` | {run_dir} | {log} | {processes} | {format_seconds(row['wall_time_s'])} |")
    return "\n".join(lines)


def summary_lines(frontier: Sequence[dict[str, Any]]) -> list[str]:
    """A compact frontier table for the terminal (means over the seeds)."""
    header = ("setting", "runs ok", "accuracy", "gap", "time/round", "×", "up/client", "ε spent", "ε̂ final", "ε̂ all",
              "canary TPR", "FPR", "chance", "advantage")
    table = [header] + [(
        row["variant"], f"{row['finished']}/{row['runs']}", _spread(row["accuracy"], _percent),
        _spread(row["accuracy_gap_pts"], _signed), _mean(row["round_time_s"], format_seconds),
        _mean(row["round_time_ratio"], _times), _mean(row["bytes_up_per_client"], format_bytes),
        _mean(row["epsilon_spent"], _epsilon), _mean(row["eps_hat_final"], _epsilon),
        _mean(row["eps_hat_all"], _epsilon), _mean(row["canary_rate"], _percent),
        _mean(row.get("canary_fpr"), _percent),
        _mean(row["canary_chance"], _percent), _mean(_points(row["canary_advantage"]), _signed),
    ) for row in frontier]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) if i < 1 else cell.rjust(width) for i, (cell, width)
                      in enumerate(zip(line, widths, strict=True))) for line in table]


def _spread(stat: dict[str, Any] | None, show: Callable[[float], str]) -> str:
    """``mean ± std`` of a frontier statistic, written with ``show`` (the std alone is written like a mean's
    difference); ``–`` when nothing was measured."""
    if stat is None:
        return "–"
    if stat["std"] is None:
        return show(stat["mean"])
    return f"{show(stat['mean'])} ± {show(stat['std']).lstrip('+')}"


def _mean(stat: dict[str, Any] | None, show: Callable[[float | None], str]) -> str:
    return show(stat["mean"] if stat else None)


def _points(stat: dict[str, Any] | None) -> dict[str, Any] | None:
    """A statistic of fractions in percentage points (the canary's advantage)."""
    if stat is None:
        return None
    return {key: value if key == "n" or value is None else 100 * value for key, value in stat.items()}


def _epsilon(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _times(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}×" if value >= 1000 else f"{value:.3g}×"
