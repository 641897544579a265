"""Run directories: unique names, valid JSON/JSONL, atomic summary, readable report."""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib

import numpy as np
import pytest

from fedgrad.errors import DataError
from fedgrad.metrics import PHASES
from fedgrad.results import RunWriter, read_metrics, read_summary, render_report
from fedgrad.results.schema import RoundRecord, RunOutcome, Traffic, round_record, to_json
from fedgrad.scenario import Scenario, load_scenario


def scenario(name: str = "demo") -> Scenario:
    return Scenario.from_dict({"name": name, "federation": {"clients": 3, "clients_per_round": 3}})


def record(round_index: int, accuracy: float | np.floating) -> RoundRecord:
    evaluation = {"accuracy": accuracy, "precision": 0.9, "recall": 0.8, "f1": 0.847, "loss": 0.1, "n": 100}
    return round_record(
        round_index,
        evaluation,
        clients_selected=3,
        clients_used=2,
        clients_dropped=1,
        time_s={"broadcast": 0.01, "train": 0.2, "total": 0.3},
        moved=Traffic(down=3000, up=2048),
    )


def test_round_record_layout(tmp_path):
    writer = RunWriter(tmp_path, scenario())
    writer.log_round(record(1, 0.9))
    [line] = [json.loads(line) for line in (writer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert list(line) == ["schema_version", "round", "accuracy", "precision", "recall", "f1", "loss",
                          "clients_selected", "clients_used", "clients_dropped", "time_s", "bytes"]
    assert list(line["time_s"]) == [*PHASES, "total"] and line["time_s"]["encrypt"] == 0.0
    assert line["bytes"] == {"down": 3000, "up": 2048}
    assert "n" not in line
    with pytest.raises(KeyError):
        round_record(1, {"accuracy": 1, "precision": 1, "recall": 1, "f1": 1, "loss": 0}, clients_selected=1,
                     clients_used=1, clients_dropped=0, time_s={"sleep": 1.0})


def test_run_dir_files(tmp_path):
    writer = RunWriter(tmp_path / "runs", scenario())
    assert re.fullmatch(r"demo-\d{8}-\d{6}", writer.run_dir.name)
    config = tomllib.loads((writer.run_dir / "config.toml").read_text())
    assert config["name"] == "demo" and config["federation"]["clients"] == 3
    assert load_scenario(writer.run_dir / "config.toml") == scenario()

    writer.log_round(record(1, 0.80))
    # numpy scalars and NaN must still give strict JSON; keys this version does not know are kept
    writer.log_round(dataclasses.replace(record(2, np.float32(0.9)), loss=float("nan"),
                                         extra={"epsilon": np.float64(1.5)}))
    lines = (writer.run_dir / "metrics.jsonl").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert [p["round"] for p in parsed] == [1, 2]
    assert parsed[1]["loss"] is None and parsed[1]["epsilon"] == 1.5
    assert parsed[1]["accuracy"] == pytest.approx(0.9)
    assert read_metrics(writer.run_dir) == writer.records
    assert writer.records[1].loss is None and writer.records[1].extra == {"epsilon": 1.5}
    assert not (writer.run_dir / "summary.json").exists()

    summary = writer.finish(RunOutcome(processes=2))
    on_disk = json.loads((writer.run_dir / "summary.json").read_text())
    assert read_summary(writer.run_dir) == summary
    assert on_disk["schema_version"] == 1
    assert on_disk["rounds"] == 2 and on_disk["processes"] == 2 and on_disk["scenario"] == "demo"
    assert "mode" not in on_disk and "privacy" not in on_disk  # optional entries the run did not report
    assert on_disk["final"]["accuracy"] == pytest.approx(0.9) and summary.final.accuracy == pytest.approx(0.9)
    assert on_disk["time_s"]["train"] == pytest.approx(0.4) and summary.time_s.train == pytest.approx(0.4)
    assert on_disk["bytes"] == {"down": 6000, "up": 4096} and summary.moved == Traffic(down=6000, up=4096)
    assert not list(writer.run_dir.glob(".*.tmp"))
    assert (writer.run_dir / "report.md").exists()


def test_same_second_runs_get_distinct_dirs(tmp_path):
    dirs = {RunWriter(tmp_path, scenario()).run_dir for _ in range(5)}
    assert len(dirs) == 5 and all(d.is_dir() for d in dirs)


def test_report_contents(tmp_path):
    writer = RunWriter(tmp_path, scenario())
    for i, acc in enumerate([0.7, 0.85, 0.95], start=1):
        writer.log_round(record(i, acc))
    writer.finish()
    report = (writer.run_dir / "report.md").read_text()
    assert report.startswith("# Run `demo`")
    assert "| partition | dirichlet (alpha 0.5), 3 clients |" in report
    assert "| privacy | none |" in report
    rounds = [line for line in report.splitlines() if re.match(r"\| [0-9] \|", line)]
    assert len(rounds) == 3
    assert rounds[2].startswith(
        "| 3 | 95.00% | 90.00% | 80.00% | 84.70% | 0.1000 | 2 / 3 | 300.0 ms | 2.9 KiB | 2.0 KiB |")
    assert "| train | 600.0 ms | 200.0 ms |" in report
    assert "| up (clients to coordinator) | 6.0 KiB | 2.0 KiB |" in report
    final = report.split("## Final metrics")[1].split("##")[0]
    assert "95.00%" in final


def test_render_report_of_unfinished_run_and_truncated_line(tmp_path):
    writer = RunWriter(tmp_path, scenario())
    writer.log_round(record(1, 0.6))
    with open(writer.run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"round": 2, "accur')  # killed mid-write
    assert [r.round for r in read_metrics(writer.run_dir)] == [1]
    report = render_report(writer.run_dir).read_text()
    assert "Not finished" in report and "60.00%" in report


def test_corrupt_middle_line_is_a_data_error(tmp_path):
    writer = RunWriter(tmp_path, scenario())
    (writer.run_dir / "metrics.jsonl").write_text(json.dumps(to_json(record(1, 0.5))) + '\nnot json\n{"round": 3}\n')
    with pytest.raises(DataError, match=r"metrics\.jsonl:2: not a JSON record"):
        read_metrics(writer.run_dir)


def test_render_report_needs_a_run_dir(tmp_path):
    with pytest.raises(DataError, match="not a run directory"):
        render_report(tmp_path)


def test_centralized_report_omits_federation(tmp_path):
    writer = RunWriter(tmp_path, scenario())
    writer.log_round(record(1, 0.99))
    writer.finish(RunOutcome(mode="centralized"))
    report = (writer.run_dir / "report.md").read_text()
    assert "| mode | centralized |" in report and "| strategy |" not in report


def test_reopen_continues_a_run_with_exactly_the_given_records(tmp_path):
    first = RunWriter(tmp_path, scenario())
    for index in (1, 2, 3):
        first.log_round(record(index, 0.5 + index / 10))
    kept = first.records[:2]  # round 3 was logged after the last checkpoint: it is run again

    writer = RunWriter.reopen(first.run_dir, scenario(), kept)
    assert writer.run_dir == first.run_dir and writer.records == kept
    assert read_metrics(writer.run_dir) == kept
    writer.log_round(record(3, 0.75))
    summary = writer.finish()
    assert [r.round for r in read_metrics(writer.run_dir)] == [1, 2, 3]
    assert summary.rounds == 3 and summary.final.accuracy == pytest.approx(0.75)
