"""End to end: a model and a strategy written outside the repository run in `fedgrad simulate` (local client
processes, which import the model from the scenario's folder), and `fedgrad.run` returns what the run wrote."""
from __future__ import annotations

import asyncio
import json

import numpy as np

import fedgrad
from fedgrad.cli.main import main
from fedgrad.results import read_summary
from fedgrad.results.schema import RoundRecord, RunSummary, from_json
from fedgrad.scenario import load_scenario


def test_simulate_runs_a_user_model_and_strategy_in_client_processes(tmp_path, custom_scenario, run_traces, capsys):
    scenario = custom_scenario()
    assert main(["simulate", str(scenario), "--insecure", "--set", "federation.processes=2"]) == 0
    run_dir = run_traces.only_run_dir(tmp_path / "runs")
    records = run_traces.metrics(run_dir)
    summary = read_summary(run_dir)
    assert [r.round for r in records] == [1, 2] and all(r.clients_used == 3 for r in records)
    assert records[-1].loss < summary.initial.loss
    model = run_traces.final_model(run_dir, 2)
    assert sorted(model) == ["global_model/body.0.bias", "global_model/body.0.weight", "global_model/body.2.bias",
                             "global_model/body.2.weight", "global_model/words.weight"]
    with np.load(run_dir / "checkpoint" / "round-000002.npz") as archive:  # FedAvgM's velocity, checkpointed
        velocity = {name for name in archive.files if name.startswith("strategy/")}
    assert velocity == {name.replace("global_model/", "strategy/") for name in model}
    assert "custom: final accuracy" in capsys.readouterr().out


def test_a_broken_user_model_is_one_line_and_leaves_no_run_directory(tmp_path, custom_scenario, capsys):
    scenario = custom_scenario(model={"name": "spam_nets:TwoLayerBag"})  # a class taking (vocab, dim, hidden)
    assert main(["simulate", str(scenario), "--insecure"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the tokenizer's progress bar
    assert last.startswith("fedgrad: error: model.name: spam_nets:TwoLayerBag(44, seed=1, no options) failed: "
                           "TypeError: ")
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_run_returns_the_records_and_summary_it_wrote(tmp_path, custom_scenario):
    result = fedgrad.run(custom_scenario(), insecure=True, federation__rounds=1, train__lr=0.02)
    assert result.run_dir.parent == tmp_path / "runs"
    assert result.scenario.federation.rounds == 1 and result.scenario.train.lr == 0.02
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert result.records == [from_json(RoundRecord, json.loads(line), "metrics.jsonl") for line in lines]
    assert len(lines) == 1 and result.records[0].round == 1 and result.summary.rounds == 1
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert result.summary == from_json(RunSummary, summary, "summary.json")
    assert load_scenario(result.run_dir / "config.toml") == result.scenario


def test_run_takes_a_scenario_object_inside_a_running_event_loop(tmp_path, custom_scenario):
    scenario = load_scenario(custom_scenario())

    async def notebook_cell() -> fedgrad.api.RunResult:  # Jupyter runs cells inside an event loop
        return fedgrad.run(scenario, insecure=True, federation__rounds=1)

    result = asyncio.run(notebook_cell())
    assert result.scenario == load_scenario(custom_scenario(federation={"rounds": 1}))
    assert [record.round for record in result.records] == [1]


def test_the_centralized_baseline_trains_the_user_model(tmp_path, custom_scenario, run_traces, capsys):
    assert main(["train", "--centralized", str(custom_scenario()), "--epochs", "2"]) == 0
    records = run_traces.metrics(run_traces.only_run_dir(tmp_path / "runs"))
    assert len(records) == 2 and records[-1].accuracy >= 0.9  # the fixture corpus is easy to separate
    assert "custom (centralized, 2 epochs" in capsys.readouterr().out
