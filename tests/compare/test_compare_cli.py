"""`fedgrad compare` end to end (real `fedgrad simulate` children over gRPC) and `fedgrad report` re-rendering."""
from __future__ import annotations

import csv
import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedgrad.cli.main import main
from fedgrad.crypto import InsecureKeyWarning
from fedgrad.experiments.compare import PLOT_FILES, parse_privacy_list, plan_variants, run_variants

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, make_scenario) -> Path:
    scenario = make_scenario(tmp_path_factory.mktemp("compare"))
    # `none` joins as the baseline; the tiny scenario's 512-bit test key keeps Paillier fast, and the canary
    # replay, which deals Paillier keys in this process, announces it
    with pytest.warns(InsecureKeyWarning):
        assert main(["compare", str(scenario), "--privacy", "paillier-trusted,paillier,dp:8"]) == 0
    [compare_dir] = (scenario.parent / "runs").glob("compare-*")
    return compare_dir


def test_compare_writes_the_table_the_results_and_three_plots(compared):
    with open(compared / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["variant"] for row in rows] == ["none", "paillier-trusted", "paillier", "dp-eps8"]
    assert all(row["status"] == "ok" and row["rounds"] == "2" for row in rows)
    none, paillier, threshold, dp = rows
    assert threshold["accuracy"] == none["accuracy"] and float(threshold["decrypt_s"]) > 0.0
    assert "2-of-3 decryptors" in threshold["guarantee"]
    assert "key holder in the coordinator" in paillier["guarantee"]
    assert float(none["round_time_ratio"]) == 1.0 and float(none["accuracy_gap_pts"]) == 0.0
    assert float(paillier["bytes_up_ratio"]) > 1.0 and float(paillier["encrypt_s"]) > 0.0
    assert float(paillier["decrypt_s"]) > 0.0 and float(none["decrypt_s"]) == 0.0
    assert paillier["key_bits"] == "512" and "ciphertexts" in paillier["guarantee"]
    assert float(dp["bytes_up_per_client"]) > 0 and float(dp["round_time_s"]) > 0 and dp["guarantee"]
    assert 0 < float(dp["epsilon_spent"]) <= 8.0 * (1 + 1e-6)  # the run's own ledger

    document = json.loads((compared / "results.json").read_text())
    assert document["kind"] == "fedgrad-comparison"
    assert [len(row["accuracy_per_round"]) for row in document["variants"]] == [2, 2, 2, 2]
    assert "ε=8," in document["variants"][3]["guarantee_full"]
    assert "can read every client's update on its own" in document["variants"][1]["guarantee_full"]
    assert "2 of 3 decryptors must collude" in document["variants"][2]["guarantee_full"]

    report = (compared / "report.md").read_text()
    assert "| variant | status | rounds | accuracy | precision | recall | F1 | gap (pts) | time/round" in report
    for name in PLOT_FILES.values():
        assert f"]({name})" in report
        assert (compared / name).read_bytes().startswith(PNG_MAGIC)


def test_variants_share_data_split_and_seed_and_differ_only_in_privacy(compared):
    document = json.loads((compared / "results.json").read_text())
    run_dirs = [compared / row["run_dir"] for row in document["variants"]]
    for name in ("vocab.json", "test.npz", "shard-0.npz", "shard-2.npz"):
        assert len({(run_dir / "data" / name).read_bytes() for run_dir in run_dirs}) == 1
    configs = [(run_dir / "config.toml").read_text() for run_dir in run_dirs]
    modes = ('"none"', '"paillier-trusted"', '"paillier"', '"dp"')
    assert [f"mode = {mode}" in config for mode, config in zip(modes, configs, strict=True)] == [True] * 4
    assert all("seed = 1" in config for config in configs)


def test_children_log_to_files_and_stay_quiet(compared):
    log = (compared / "logs" / "dp-eps8.log").read_text()
    assert log.startswith("$ ") and "simulate" in log.splitlines()[0]
    assert "\r" not in log  # no progress bars in the logs: the parent shows the one display


def test_report_rerenders_a_comparison_and_a_single_run(compared, capsys):
    for name in ("report.md", *PLOT_FILES.values()):
        (compared / name).unlink()
    assert main(["report", str(compared)]) == 0
    assert all((compared / name).exists() for name in ("report.md", *PLOT_FILES.values()))

    run_dir = compared / json.loads((compared / "results.json").read_text())["variants"][0]["run_dir"]
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "accuracy_per_round.png").read_bytes().startswith(PNG_MAGIC)
    assert "](accuracy_per_round.png)" in (run_dir / "report.md").read_text()


def test_report_refuses_a_directory_that_holds_no_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run, comparison or audit directory" in capsys.readouterr().err


def test_a_failing_variant_is_reported_and_does_not_stop_the_others(scenario, tmp_path):
    none, dp = plan_variants(scenario, [], parse_privacy_list("dp:8"))
    broken = dataclasses.replace(none, name="broken", overrides=(*none.overrides, 'data.corpus="/no/such/corpus"'))
    failed, succeeded = run_variants(scenario, [], [broken, dp], tmp_path / "cmp")
    assert failed.error is not None and succeeded.run_dir is not None
    assert failed.status == "failed" and "fedgrad: error" in failed.error and "/no/such/corpus" in failed.error
    assert succeeded.status == "ok" and (succeeded.run_dir / "summary.json").exists()


def test_ctrl_c_stops_the_children_and_keeps_what_finished(scenario, tmp_path, run_traces):
    command = [sys.executable, "-m", "fedgrad.cli.main", "compare", str(scenario), "--privacy", "dp:8",
               "--rounds", "100000"]
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob("compare-*/variants/none/*/metrics.jsonl")):
            assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read().decode()
            time.sleep(0.05)
        assert len(run_traces.pids_mentioning(str(tmp_path))) >= 3  # compare, simulate, a client process
        parent.send_signal(signal.SIGINT)
        assert parent.wait(timeout=30) == 130
    finally:
        if parent.poll() is None:
            parent.kill()
    deadline = time.monotonic() + 10
    while run_traces.pids_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run_traces.pids_mentioning(str(tmp_path)) == []
    [compare_dir] = (tmp_path / "runs").glob("compare-*")
    rows = json.loads((compare_dir / "results.json").read_text())["variants"]
    assert [(row["variant"], row["status"]) for row in rows] == [("none", "interrupted"), ("dp-eps8", "not run")]
    assert rows[0]["rounds"] >= 1 and "interrupted" in (compare_dir / "report.md").read_text()


def test_canaries_put_measured_epsilon_next_to_the_accounted_one(scenario):
    """`--canaries K`: every plaintext-summing variant runs K canary clients; the frontier, the per-run section and
    results.csv give ε̂ (final model, all iterates) next to ε spent; paillier runs without and says why."""
    assert main(["compare", str(scenario), "--privacy", "paillier,dp:8", "--no-canary", "--canaries", "6"]) == 0
    [compare_dir] = (scenario.parent / "runs").glob("compare-*")
    with open(compare_dir / "results.csv", newline="") as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    for name in ("none", "dp-eps8"):
        row = rows[name]
        assert row["status"] == "ok" and row["canaries"] == "6"
        for short in ("final", "all"):
            low, epsilon, high = (float(row[f"eps_hat_{short}{part}"]) for part in ("_low", "", "_high"))
            assert 0 <= low <= epsilon <= high and float(row[f"eps_hat_{short}_proven"]) >= 0
    assert rows["paillier"]["canaries"] == "" and rows["paillier"]["eps_hat_final"] == ""
    assert "no canaries (no ε̂)" in rows["paillier"]["notes"]
    report = (compare_dir / "report.md").read_text()
    assert "ε̂ final model | ε̂ all iterates" in report and "## Empirical privacy" in report
    assert "| `dp-eps8` | " in report.split("## Empirical privacy")[1]
    document = json.loads((compare_dir / "results.json").read_text())
    assert "--canaries" in document["command"]
    frontier = {row["variant"]: row for row in document["frontier"]}
    assert frontier["dp-eps8"]["eps_hat_final"]["n"] == 1 and frontier["paillier"]["eps_hat_final"] is None
    assert (compare_dir / PLOT_FILES["epsilon"]).read_bytes().startswith(PNG_MAGIC)
