"""What a comparison records: one row per variant, gaps and ratios to its baseline, ``results.json`` and
``results.csv``."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fedgrad.experiments.compare.frontier import frontier_rows
from fedgrad.experiments.compare.processes import LOG_DIR, Outcome
from fedgrad.experiments.compare.robustness import robustness_columns
from fedgrad.files import write_atomic
from fedgrad.modes.resolve import privacy_mode
from fedgrad.results import METRIC_KEYS, read_document, read_metrics, read_summary
from fedgrad.results.schema import (
    DPReport,
    EmpiricalPrivacyReport,
    EpsilonEstimateReport,
    RoundRecord,
    RunSummary,
    Scores,
)
from fedgrad.scenario import Scenario

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
#: Per-round phases of the table; ``transfer`` is the model broadcast plus the slowest upload.
PHASE_COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("train",), "encrypt": ("encrypt",), "transfer": ("broadcast", "upload"),
    "aggregate": ("aggregate",), "decrypt": ("decrypt",),
}


#: The canary attack on the variant's released round-1 aggregate (``canary.measure_canaries``).
CANARY_COLUMNS = ("canary_rate", "canary_fpr", "canary_chance", "canary_advantage", "canary_recovered",
                  "canary_attack", "canary_error")

#: Empirical ε of the run's canaries (``server.canaries``): ε̂, its 95% bootstrap interval and the 95% threshold
#: lower bound, for the final model and for all iterates.
EMPIRICAL_THREATS = {"final": "final_model", "all": "all_iterates"}
EMPIRICAL_COLUMNS = tuple(f"eps_hat_{short}{part}" for short in EMPIRICAL_THREATS
                          for part in ("", "_low", "_high", "_proven"))

#: Columns of ``results.csv`` (``results.json`` rows hold these plus the per-round series).
CSV_COLUMNS: tuple[str, ...] = (
    "variant", "group", "seed", "privacy", "epsilon", "dp_placement", "dp_secure", "clients", "key_bits", "status",
    "error", "rounds", "rounds_planned", "strategy", "attack", "attack_fraction",
    *METRIC_KEYS, "clean_accuracy", "attack_drop_pts", "backdoor_success", "baseline", "accuracy_gap_pts",
    "round_time_s", "round_time_ratio",
    *(f"{phase}_s" for phase in PHASE_COLUMNS), "bytes_up_per_client", "bytes_up_ratio", "bytes_up_per_round",
    "bytes_down_per_round", "epsilon_spent", *EMPIRICAL_COLUMNS, "canaries", *CANARY_COLUMNS, "wall_time_s",
    "processes", "guarantee", "notes", "run_dir", "log",
)


def collect(outcomes: Sequence[Outcome], compare_dir: Path,
            canaries: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per variant from its run directory and its canary result (``canary.measure_canaries``, by
    variant name; the canary columns stay empty without one), then the gaps and ratios to its ``none``
    baseline."""
    rows = [{**_row(outcome, compare_dir), **_canary_columns((canaries or {}).get(outcome.variant.name))}
            for outcome in outcomes]
    by_name = {row["variant"]: row for row in rows}
    for row in rows:
        _compare_with_baseline(row, by_name.get(row["baseline"]))
    robustness_columns(rows)
    return rows


def _row(outcome: Outcome, compare_dir: Path) -> dict[str, Any]:
    variant = outcome.variant
    scenario = variant.scenario
    records = read_metrics(outcome.run_dir) if outcome.run_dir else []
    summary = read_summary(outcome.run_dir) if outcome.run_dir else None
    mode = privacy_mode(scenario)
    profile = mode.profile()
    guarantee = mode.guarantee()
    short = guarantee.short
    # the run's own, when it got that far
    full = (summary.privacy.guarantee if summary and summary.privacy else None) or guarantee.full
    final = records[-1].scores if records else Scores()
    n = len(records)
    used = sum(record.clients_used for record in records)
    bytes_up = sum(record.moved.up for record in records)
    row: dict[str, Any] = {
        "variant": variant.name,
        "group": variant.group or variant.name,
        "seed": scenario.seed,
        "privacy": variant.privacy.mode,
        "epsilon": variant.privacy.epsilon,
        "clients": scenario.federation.clients,
        "key_bits": scenario.privacy.key_bits if profile.key_sizes else None,
        "dp_placement": scenario.privacy.dp_placement if profile.epsilon else None,
        "dp_secure": scenario.privacy.dp_secure if profile.epsilon and mode.encrypted else None,
        "status": outcome.status,
        "error": outcome.error,
        "rounds": n,
        "rounds_planned": variant.rounds,
        "strategy": variant.strategy.label if variant.strategy else scenario.federation.strategy,
        "attack": variant.attack.kind,
        "attack_fraction": variant.attack.fraction,
        # the setting without its attack: privacy and strategy (one curve of the attack-success plot)
        "setting": ((variant.group or variant.name).replace(f"-{variant.attack.label}", "", 1)
                    if variant.clean else None),
        **{key: getattr(final, key) for key in METRIC_KEYS},
        "backdoor_success": records[-1].backdoor_success if records else None,
        "baseline": variant.baseline,
        "clean_variant": variant.clean or None,
        "round_time_s": _mean(record.time_s.total for record in records),
        **{f"{column}_s": _mean(sum(getattr(record.time_s, phase) for phase in phases) for record in records)
           for column, phases in PHASE_COLUMNS.items()},
        "bytes_up_per_client": bytes_up / used if used else None,
        "bytes_up_per_round": bytes_up / n if n else None,
        "bytes_down_per_round": _mean(record.moved.down for record in records),
        "epsilon_spent": _epsilon_spent(summary, records),
        **_empirical_columns(summary.empirical_privacy if summary else None),
        "wall_time_s": outcome.seconds or None,
        "processes": summary.processes if summary else None,
        "guarantee": short,
        "guarantee_full": full,
        "notes": "; ".join(variant.notes) or None,
        "run_dir": _relative(outcome.run_dir, compare_dir),
        "log": f"{LOG_DIR}/{variant.name}.log" if outcome.status != "not run" else None,
        "accuracy_per_round": [[record.round, record.accuracy] for record in records],
    }
    return row


def _empirical_columns(report: EmpiricalPrivacyReport | None) -> dict[str, Any]:
    """The run summary's ``empirical_privacy`` (``server.canaries``) as ``EMPIRICAL_COLUMNS``; empty without."""
    columns: dict[str, Any] = {"canaries": report.canaries if report else None}
    for short, threat in EMPIRICAL_THREATS.items():
        estimate: EpsilonEstimateReport | None = getattr(report, threat) if report else None
        low, high = estimate.interval if estimate else (None, None)
        columns.update({f"eps_hat_{short}": estimate.epsilon if estimate else None, f"eps_hat_{short}_low": low,
                        f"eps_hat_{short}_high": high,
                        f"eps_hat_{short}_proven": estimate.lower_bound if estimate else None})
    return columns


def _canary_columns(result: Mapping[str, Any] | None) -> dict[str, Any]:
    result = result or {}
    recovered = f"{result['recovered']}/{result['total']}" if "recovered" in result else None
    return {"canary_rate": result.get("rate"), "canary_fpr": result.get("fpr"),
            "canary_chance": result.get("chance_rate"), "canary_advantage": result.get("advantage"),
            "canary_recovered": recovered,
            "canary_attack": result.get("attack"), "canary_error": result.get("error")}


def _epsilon_spent(summary: RunSummary | None, records: Sequence[RoundRecord]) -> float | None:
    """Epsilon the run's privacy ledger reports as spent: from ``summary.json``, or the last round record of a
    run that did not finish; None for runs without DP."""
    if summary is not None and isinstance(summary.privacy, DPReport):
        return summary.privacy.epsilon_spent
    last = records[-1].privacy if records else None
    return last.epsilon_spent if last is not None else None


def _compare_with_baseline(row: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    """Accuracy gap (points lost, at the same round) and cost ratios relative to the baseline run."""
    row["accuracy_gap_pts"] = row["round_time_ratio"] = row["bytes_up_ratio"] = None
    if baseline is None or not row["accuracy_per_round"]:
        return
    last_round = row["accuracy_per_round"][-1][0]
    reference = dict(baseline["accuracy_per_round"]).get(last_round)
    if reference is not None:
        row["accuracy_gap_pts"] = 100 * (reference - row["accuracy"])
    row["round_time_ratio"] = _ratio(row["round_time_s"], baseline["round_time_s"])
    row["bytes_up_ratio"] = _ratio(row["bytes_up_per_client"], baseline["bytes_up_per_client"])


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


def _relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def write_results(compare_dir: Path, meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """``results.json`` (meta, full rows, and the frontier: one row per setting over its seeds) and
    ``results.csv`` (flat rows)."""
    document = {**meta, "variants": list(rows), "frontier": frontier_rows(rows)}
    write_atomic(compare_dir / RESULTS_JSON, json.dumps(document, indent=2, allow_nan=False) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if row.get(key) is None else row[key] for key in CSV_COLUMNS} for row in rows)
    write_atomic(compare_dir / RESULTS_CSV, buffer.getvalue())


def comparison_meta(scenario_path: Path, user_overrides: Sequence[str], base: Scenario,
                    command: Sequence[str], seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """What ``results.json`` says about the comparison as a whole; ``command`` is the ``fedgrad`` argv and
    ``seeds`` the seeds every setting ran on (None: the scenario's own)."""
    return {
        "kind": "fedgrad-comparison",
        "scenario": base.name,
        "scenario_path": str(scenario_path),
        "overrides": list(user_overrides),
        "seed": base.seed,
        "seeds": list(seeds) if seeds else [base.seed],
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": ["fedgrad", *command],
    }


def is_comparison_dir(path: Path) -> bool:
    return (path / RESULTS_JSON).is_file()


def read_results(compare_dir: Path) -> dict[str, Any]:
    return read_document(compare_dir, RESULTS_JSON, "fedgrad-comparison", "fedgrad compare")
