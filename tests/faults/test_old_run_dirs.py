"""A run directory written before run records carried ``schema_version`` (main 1ddc958) resumes and
re-renders: DP's ledger picks up the rounds the old checkpoint holds, and the typed reader takes every file as
it is."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import fedgrad
import fedgrad.results
import server.checkpoint
from fedgrad.cli.main import main
from fedgrad.results import read_metrics, read_summary
from fedgrad.results.schema import DPReport, RoundRecord, RunSummary

pytestmark = pytest.mark.faults


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None and key != "extra"}


def main_format(record: RoundRecord | RunSummary) -> dict[str, Any]:
    """What main 1ddc958 wrote for ``record`` (``round_record(**extra)``, ``RunWriter.finish``), by hand: the
    layout of ``tests/experiment/test_run_records.py``'s ``MAIN_*`` lines, and no ``schema_version``."""
    if isinstance(record, RoundRecord):
        line = {"round": record.round, "accuracy": record.accuracy, "precision": record.precision,
                "recall": record.recall, "f1": record.f1, "loss": record.loss,
                "clients_selected": record.clients_selected, "clients_used": record.clients_used,
                "clients_dropped": record.clients_dropped, "time_s": dataclasses.asdict(record.time_s),
                "bytes": dataclasses.asdict(record.moved), "attempts": record.attempts,
                "model_version": record.model_version, "local": dict(record.local or {})}
        if record.privacy is not None:
            line["privacy"] = _without_none(dataclasses.asdict(record.privacy))
        return line
    assert record.initial is not None and record.client_evaluation is not None and record.privacy is not None
    return {"scenario": record.scenario, "run_dir": record.run_dir, "started": record.started,
            "finished": record.finished, "wall_time_s": record.wall_time_s, "rounds": record.rounds,
            "final": _without_none(dataclasses.asdict(record.final)), "time_s": dataclasses.asdict(record.time_s),
            "bytes": dataclasses.asdict(record.moved), "initial": dataclasses.asdict(record.initial),
            "client_evaluation": dataclasses.asdict(record.client_evaluation),
            "privacy": _without_none(dataclasses.asdict(record.privacy)), "processes": record.processes}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_interrupted_dp_run_from_before_versioning_resumes_with_its_ledger_and_re_renders(
        tmp_path, monkeypatch, enron_corpus, write_scenario):
    scenario = write_scenario(tmp_path / "old.toml", enron_corpus, tmp_path / "runs", name="old", seed=3,
                              federation={"rounds": 2}, privacy={"mode": "dp", "epsilon": 8.0, "delta": 1e-3})
    with monkeypatch.context() as old_fedgrad:  # main's writers for metrics.jsonl, summary.json and checkpoints
        old_fedgrad.setattr(fedgrad.results, "to_json", main_format)
        old_fedgrad.setattr(server.checkpoint, "to_json", main_format)
        old = fedgrad.run(scenario)
    run_dir = old.run_dir
    old_lines, old_summary = _lines(run_dir / "metrics.jsonl"), json.loads((run_dir / "summary.json").read_text())
    assert "schema_version" not in old_summary and not any("schema_version" in line for line in old_lines)
    assert [line["privacy"]["contributors"] for line in old_lines] == [3, 3]

    assert main(["report", str(run_dir)]) == 0  # the finished old run re-renders
    report = (run_dir / "report.md").read_text()
    assert f"| final | {100 * old_lines[-1]['accuracy']:.2f}% |" in report and "(ε=8, δ=1.0e-03)-DP" in report

    # A coordinator killed during round 2: no summary, round 2's checkpoint not written yet.
    (run_dir / "summary.json").unlink()
    (run_dir / "checkpoint" / "round-000002.npz").unlink()
    assert main(["simulate", "--resume", str(run_dir)]) == 0

    records, summary = read_metrics(run_dir), read_summary(run_dir)
    assert [record.round for record in records] == [1, 2]
    assert _lines(run_dir / "metrics.jsonl")[0] == {"schema_version": 1, **old_lines[0]}  # from the old checkpoint
    assert summary is not None and isinstance(summary.privacy, DPReport)
    assert isinstance(old.summary.privacy, DPReport)
    # the ledger charged the old checkpoint's round 1 and the resumed round 2: the uninterrupted run's ε
    assert summary.privacy.rounds_accounted == 2
    assert summary.privacy.epsilon_spent == pytest.approx(old.summary.privacy.epsilon_spent, rel=1e-12)
    assert json.loads((run_dir / "summary.json").read_text())["schema_version"] == 1
    assert main(["report", str(run_dir)]) == 0
