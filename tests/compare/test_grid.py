"""The comparison grid, the guarantees in words, and the gaps and ratios to the baseline (no processes run)."""
from __future__ import annotations

import json
from dataclasses import astuple
from pathlib import Path

import pytest

from fedgrad.errors import ConfigError
from fedgrad.experiments import compare as comparison
from fedgrad.experiments.compare import Outcome, PrivacySetting, parse_int_list, parse_privacy_list, plan_variants
from fedgrad.modes.resolve import privacy_mode
from fedgrad.results import RunWriter
from fedgrad.results.schema import Traffic, round_record
from fedgrad.scenario import load_scenario


def test_privacy_list_parses_in_order_without_duplicates():
    settings = parse_privacy_list(" none,dp:4, paillier-naive,paillier-trusted,dp:4.0,none")
    assert settings == [PrivacySetting("none"), PrivacySetting("dp", 4.0), PrivacySetting("paillier-naive"),
                        PrivacySetting("paillier-trusted")]
    assert [s.label for s in settings] == ["none", "dp-eps4", "paillier-naive", "paillier-trusted"]
    assert PrivacySetting("dp", 0.5).overrides() == ['privacy.mode="dp"', "privacy.epsilon=0.5"]
    distributed = PrivacySetting.parse("dp:2:distributed")
    assert distributed.label == "paillier+dp-eps2"
    assert distributed.overrides()[-1] == 'privacy.dp_placement="distributed"'


@pytest.mark.parametrize("text", ["dp", "dp:", "dp:x", "dp:-1", "dp:0", "dp:inf", "dp:1:local", "dp:1:central:x",
                                  "laplace", "paillier:3", ","])
def test_bad_privacy_settings_are_config_errors(text):
    with pytest.raises(ConfigError, match="--privacy"):
        parse_privacy_list(text)


@pytest.mark.parametrize("text", ["3,x", "0,3", "", "-2"])
def test_bad_integer_lists_are_config_errors(text):
    with pytest.raises(ConfigError, match="--clients"):
        parse_int_list(text, "--clients")


def test_grid_always_has_the_baseline_and_applies_key_sizes_to_paillier_only(scenario):
    variants = plan_variants(scenario, [], parse_privacy_list("paillier-trusted,dp:2"), key_bits=[512, 1024])
    assert [v.name for v in variants] == ["none", "paillier-trusted-k512", "paillier-trusted-k1024", "dp-eps2"]
    assert {v.baseline for v in variants} == {"none"}
    by_name = {v.name: v for v in variants}
    assert by_name["paillier-trusted-k1024"].scenario.privacy.key_bits == 1024
    assert by_name["paillier-trusted-k1024"].scenario.privacy.mode == "paillier-trusted"
    assert by_name["dp-eps2"].scenario.privacy.epsilon == 2.0
    assert by_name["none"].scenario.privacy.mode == "none"


def test_client_counts_keep_the_participation_rate(scenario):
    variants = plan_variants(scenario, ["federation.clients_per_round=2", "federation.rounds=3"],
                             parse_privacy_list("none"), clients=[3, 9], rounds=2)
    assert [v.name for v in variants] == ["none-c3", "none-c9"]
    fed = variants[1].scenario.federation
    assert (fed.clients, fed.clients_per_round, fed.min_clients, fed.rounds) == (9, 6, 2, 2)
    assert variants[1].baseline == "none-c9"


def test_naive_paillier_is_reduced_and_says_so(scenario):
    [_, naive] = plan_variants(scenario, [], parse_privacy_list("paillier-naive"), naive_rounds=1)
    assert naive.rounds == 1
    assert naive.scenario.federation.round_timeout_s == comparison.NAIVE_ROUND_TIMEOUT_S
    assert any("1 round(s) instead of 2" in note for note in naive.notes)
    [_, unreduced] = plan_variants(scenario, [], parse_privacy_list("paillier-naive"), naive_rounds=5)
    assert unreduced.rounds == 2 and not any("instead of" in note for note in unreduced.notes)


def test_an_invalid_variant_fails_before_anything_runs(scenario):
    with pytest.raises(ConfigError, match=r"variant none-c5: federation.clients: the book partition"):
        plan_variants(scenario, ['data.partition="book"'], parse_privacy_list("none"), clients=[3, 5])


def test_guarantees_in_words(scenario):
    none, paillier, dp = plan_variants(scenario, [], parse_privacy_list("paillier-trusted,dp:1"))
    assert privacy_mode(none.scenario).guarantee().short == "plaintext updates"
    short, full = astuple(privacy_mode(paillier.scenario).guarantee())
    assert "sum of >= 2" in short and "INSECURE" in full and "512-bit" in full
    short, full = astuple(privacy_mode(dp.scenario).guarantee())
    assert short.startswith("(ε=1, δ=1e-01)-DP")  # delta defaults to 1/N^2 with N = 3 clients
    assert "ε=1," in full and "noise multiplier" in full


def _fake_run(root: Path, scenario_path: Path, overrides: list[str], accuracies: list[float],
              seconds: float, up: int) -> Path:
    """A finished run directory with the given per-round accuracies, round times and upload bytes."""
    writer = RunWriter(root, load_scenario(scenario_path, overrides))
    for number, accuracy in enumerate(accuracies, start=1):
        evaluation = {"accuracy": accuracy, "precision": 0.5, "recall": 0.5, "f1": 0.5, "loss": 0.1}
        writer.log_round(round_record(number, evaluation, clients_selected=3, clients_used=2, clients_dropped=1,
                                      time_s={"train": seconds / 2, "broadcast": 0.1, "upload": 0.2,
                                              "total": seconds},
                                      moved=Traffic(up=up, down=10)))
    writer.finish()
    return writer.run_dir


def test_gaps_and_ratios_are_relative_to_the_baseline_at_the_same_round(scenario, tmp_path):
    none, naive, dp = plan_variants(scenario, [], parse_privacy_list("paillier-naive,dp:8"))
    outcomes = [
        Outcome(none, "ok", run_dir=_fake_run(tmp_path / "a", scenario, [], [0.80, 0.90], 1.0, 200)),
        Outcome(naive, "ok", run_dir=_fake_run(tmp_path / "b", scenario, [], [0.79], 50.0, 20_000)),
        Outcome(dp, "failed", "exit code 2: fedgrad: error: nope"),
    ]
    rows = {row["variant"]: row for row in comparison.collect(outcomes, tmp_path)}
    assert rows["none"]["accuracy_gap_pts"] == 0.0 and rows["none"]["round_time_ratio"] == 1.0
    naive_row = rows["paillier-naive"]
    assert naive_row["accuracy_gap_pts"] == pytest.approx(1.0)  # 80% (none after round 1) - 79%
    assert naive_row["round_time_ratio"] == pytest.approx(50.0)
    assert naive_row["bytes_up_per_client"] == 10_000 and naive_row["bytes_up_ratio"] == pytest.approx(100.0)
    assert naive_row["transfer_s"] == pytest.approx(0.3)
    assert naive_row["rounds"] == 1 and naive_row["rounds_planned"] == 1 and "instead of" in naive_row["notes"]
    assert rows["dp-eps8"]["status"] == "failed" and rows["dp-eps8"]["accuracy"] is None
    assert rows["dp-eps8"]["accuracy_gap_pts"] is None

    comparison.write_results(tmp_path, {"kind": "fedgrad-comparison", "scenario": "tiny", "scenario_path": "x",
                                        "overrides": [], "seed": 1, "created": "now", "command": ["fedgrad"]},
                             list(rows.values()))
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:4] == ["variant", "group", "seed", "privacy"] and len(csv_lines) == 4
    assert json.loads((tmp_path / "results.json").read_text())["variants"][1]["accuracy_per_round"] == [[1, 0.79]]
    report = comparison.render_comparison(tmp_path).read_text()
    assert "fedgrad: error: nope" in report and "instead of 2" in report
    drawn = [name for name in comparison.PLOT_FILES.values() if f"]({name})" in report]
    assert drawn == ["gap_vs_overhead.png", "accuracy_per_round.png", "bytes_per_round.png"]  # no DP run finished
    assert all((tmp_path / name).stat().st_size > 0 for name in drawn)
