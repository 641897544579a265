"""The frontier: seeds in the grid, mean and spread over seeds, the ``paillier+dp`` setting, the plots' axes and
the canary attack per variant (no child processes, except the one end-to-end comparison at the bottom)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

import fedgrad
from fedgrad.cli.main import main
from fedgrad.errors import ConfigError
from fedgrad.experiments import compare as comparison
from fedgrad.experiments import plots
from fedgrad.experiments.audit import planted_round
from fedgrad.experiments.compare import (
    PrivacySetting,
    frontier_rows,
    parse_privacy_list,
    parse_seeds,
    plan_variants,
    spread,
)


def test_seeds_are_a_count_from_the_scenarios_seed_or_a_list():
    assert parse_seeds("3", 5) == [5, 6, 7]
    assert parse_seeds("0, 7,42,7", 5) == [0, 7, 42]
    assert parse_seeds("4,", 0) == [4]  # a list of one seed, not a count


@pytest.mark.parametrize("text", ["0", "x", "1,-2", "1,x", ","])
def test_bad_seeds_are_config_errors(text):
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text, 0)


@pytest.mark.parametrize("flags", [["--seeds", "0"], ["--seeds", "1,x"], ["--privacy", "paillier+dp:x"]])
def test_bad_compare_flags_are_one_line_errors(scenario, flags, capsys):
    assert main(["compare", str(scenario), *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fedgrad: error: ") and error.count("\n") == 1
    assert not (scenario.parent / "runs").exists()  # refused before anything ran


def test_the_grid_runs_every_setting_on_every_seed_against_none_on_the_same_seed(scenario):
    variants = plan_variants(scenario, [], parse_privacy_list("dp:8"), seeds=[1, 4])
    assert [v.name for v in variants] == ["none-s1", "dp-eps8-s1", "none-s4", "dp-eps8-s4"]
    assert [v.group for v in variants] == ["none", "dp-eps8", "none", "dp-eps8"]
    assert [v.baseline for v in variants] == ["none-s1", "none-s1", "none-s4", "none-s4"]
    assert [v.seed for v in variants] == [1, 1, 4, 4]
    assert "seed=4" in variants[3].overrides and variants[3].scenario.privacy.epsilon == 8.0
    assert [v.name for v in plan_variants(scenario, [], parse_privacy_list("dp:8"))] == ["none", "dp-eps8"]


def test_paillier_plus_dp_is_distributed_dp_under_that_secure_mode():
    setting = PrivacySetting.parse("paillier+dp:4")
    assert setting == PrivacySetting("dp", 4.0, "distributed", "paillier")
    assert setting.label == PrivacySetting.parse("dp:4:distributed").label == "paillier+dp-eps4"
    assert setting.overrides() == ['privacy.mode="dp"', "privacy.epsilon=4.0", 'privacy.dp_placement="distributed"',
                                   'privacy.dp_secure="paillier"']
    masked = PrivacySetting.parse("paillier-masked+dp:2")
    assert masked == PrivacySetting("dp", 2.0, "distributed", "paillier-masked")
    assert masked.label == "paillier-masked+dp-eps2" and masked.overrides()[-1] == 'privacy.dp_secure="paillier-masked"'
    for text in ("paillier+dp", "paillier+dp:0", "paillier+dp:4:central", "none+dp:4", "paillier-trusted+dp:4"):
        with pytest.raises(ConfigError, match="--privacy"):
            PrivacySetting.parse(text)


def test_spread_is_mean_and_sample_standard_deviation():
    stat = spread([0.9, None, 0.8, 1.0])
    assert stat is not None
    assert stat["mean"] == pytest.approx(0.9) and stat["std"] == pytest.approx(0.1)  # sqrt(0.02 / (3 - 1))
    assert (stat["min"], stat["max"], stat["n"]) == (0.8, 1.0, 3)
    assert spread([2.0]) == {"mean": 2.0, "std": None, "min": 2.0, "max": 2.0, "n": 1}
    assert spread([None]) is None


def _row(variant: str, group: str, seed: int, status: str = "ok", **values: Any) -> dict[str, Any]:
    return {**dict.fromkeys(comparison.STAT_KEYS), "variant": variant, "group": group, "seed": seed,
            "status": status, "privacy": group.split("-")[0], "epsilon": None, "dp_placement": None, "clients": 3,
            "guarantee": "g", **values}


def test_frontier_rows_summarise_finished_runs_per_setting():
    rows = [
        _row("none-s0", "none", 0, accuracy=0.90, accuracy_gap_pts=0.0, accuracy_per_round=[[1, 0.8], [2, 0.9]]),
        _row("dp-eps1-s0", "dp-eps1", 0, accuracy=0.70, accuracy_gap_pts=20.0, canary_rate=0.2,
             accuracy_per_round=[[1, 0.6], [2, 0.7]]),
        _row("none-s1", "none", 1, accuracy=0.94, accuracy_gap_pts=0.0, accuracy_per_round=[[1, 0.84], [2, 0.94]]),
        _row("dp-eps1-s1", "dp-eps1", 1, accuracy=0.80, accuracy_gap_pts=14.0, canary_rate=0.4,
             accuracy_per_round=[[1, 0.7], [2, 0.8]]),
        _row("dp-eps1-s2", "dp-eps1", 2, status="failed", accuracy=0.1, accuracy_per_round=[[1, 0.1]]),
    ]
    none, dp = frontier_rows(rows)
    assert (none["variant"], none["seeds"], none["runs"], none["finished"]) == ("none", [0, 1], 2, 2)
    assert (dp["variant"], dp["seeds"], dp["runs"], dp["finished"]) == ("dp-eps1", [0, 1, 2], 3, 2)
    assert dp["accuracy"]["mean"] == pytest.approx(0.75)  # the failed seed's number is left out
    assert dp["accuracy"]["std"] == pytest.approx(math.sqrt(2) * 0.05)
    assert dp["accuracy_gap_pts"]["mean"] == pytest.approx(17.0) and dp["canary_rate"]["mean"] == pytest.approx(0.3)
    assert [number for number, _ in dp["accuracy_per_round"]] == [1, 2]
    assert [stat["mean"] for _, stat in dp["accuracy_per_round"]] == pytest.approx([0.65, 0.75])
    assert none["canary_rate"] is None and none["accuracy_gap_pts"]["std"] == 0.0


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every figure a plot function draws, kept open for inspection (the PNG is still written)."""
    drawn: list[Any] = []

    def keep(figure: Any, path: Path) -> Path:
        figure.tight_layout()
        figure.savefig(path)
        drawn.append(figure)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    return drawn


def test_accuracy_against_epsilon_has_labelled_axes_a_none_line_and_one_legend(tmp_path, figures):
    curves: dict[str, list[tuple[float, plots.Spread]]] = {
        "dp (central noise)": [(8.0, (0.9, 0.01)), (1.0, (0.7, 0.05)), (4.0, (0.85, None))],
        "paillier+dp (distributed noise)": [(4.0, (0.84, 0.02))]}
    path = plots.accuracy_vs_epsilon(curves, {"paillier": (0.93, None), "none": (0.94, 0.005)},
                                     tmp_path / "eps.png", baseline="none", title="t")
    assert path.read_bytes().startswith(b"\x89PNG")
    [figure] = figures
    [axes] = figure.axes
    assert axes.get_xlabel().startswith("ε spent") and axes.get_ylabel() == "final test accuracy (%)"
    assert axes.get_xscale() == "log" and axes.get_title() == "t"
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["none (no ε)", "paillier (no ε)", "dp (central noise)", "paillier+dp (distributed noise)"]
    none_line = next(line for line in axes.get_lines() if line.get_label() == "none (no ε)")
    assert np.asarray(none_line.get_ydata()).tolist() == [94.0, 94.0] and none_line.get_linestyle() == "-"
    central = next(container for container in axes.containers
                   if isinstance(container, ErrorbarContainer) and container.get_label() == "dp (central noise)")
    assert np.asarray(central.lines[0].get_xdata()).tolist() == [1.0, 4.0, 8.0]  # sorted by ε
    assert np.asarray(central.lines[0].get_ydata()) == pytest.approx([70.0, 85.0, 90.0])


def test_gap_and_per_round_plots_label_their_axes(tmp_path, figures):
    plots.gap_vs_overhead([("dp-eps1", 1.2, (17.0, 4.0)), ("paillier", 30.0, (0.0, None))], tmp_path / "gap.png",
                          baseline="none")
    plots.accuracy_per_round({"none": [(1, 0.8), (2, 0.9)], "dp-eps1": [(1, 0.6), (2, 0.7)]},
                             tmp_path / "rounds.png", title="r", bands={"dp-eps1": [(1, 0.55, 0.65), (2, 0.6, 0.8)]})
    gap, rounds = (figure.axes[0] for figure in figures)
    assert gap.get_xlabel() == "wall time per round relative to none (log scale)"
    assert gap.get_ylabel() == "accuracy lost vs none (points)"
    assert [text.get_text() for text in gap.texts] == ["dp-eps1", "paillier"]
    assert (rounds.get_xlabel(), rounds.get_ylabel()) == ("round", "test accuracy (%)")
    assert [text.get_text() for text in rounds.get_legend().get_texts()] == ["none", "dp-eps1"]
    [band] = rounds.collections  # the shaded spread around dp-eps1 only
    assert band.get_paths()[0].vertices[:, 1].min() == pytest.approx(55.0)


def test_the_canary_attack_on_a_released_aggregate_is_scored_against_chance(scenario):
    none, dp = plan_variants(scenario, [], parse_privacy_list("dp:8"))
    planted = planted_round(none.scenario, n_words=5)
    vocab_size = len(planted.data.vocab)
    for variant in (none, dp):
        result = planted.aggregate_leakage(variant.scenario)
        assert result["total"] == 5 and result["recovered"] == len(result["canary_words_recovered"])
        assert result["rate"] == result["recovered"] / 5
        assert result["chance_rate"] == pytest.approx(min(1.0, result["guesses"] / vocab_size))
        assert result["advantage"] == pytest.approx(result["rate"] - result["chance_rate"])
    # without noise the canary client's words stand out in the plain average: the attack beats chance
    plain = planted.aggregate_leakage(none.scenario)
    assert plain["advantage"] > 0 and set(plain["canary_words_recovered"]) <= set(planted.data.canary.words)


def test_compare_runs_every_setting_on_two_seeds_and_writes_the_frontier(scenario):
    result = fedgrad.compare(scenario, privacy="dp:8", seeds=2, rounds=1, train__lr=0.05)
    assert result.ok and result.statuses == {"none-s1": "ok", "dp-eps8-s1": "ok", "none-s2": "ok", "dp-eps8-s2": "ok"}
    assert [row["variant"] for row in result.frontier] == ["none", "dp-eps8"]
    none, dp = result.frontier
    assert none["finished"] == dp["finished"] == 2 and dp["seeds"] == [1, 2]
    accuracies = [row["accuracy"] for row in result.rows if row["group"] == "dp-eps8"]
    assert dp["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert 0 < dp["epsilon_spent"]["mean"] <= 8.0 * (1 + 1e-6)
    assert all(row["canary_rate"] is not None and row["canary_chance"] is not None for row in result.rows)

    document = json.loads((result.directory / "results.json").read_text())
    assert document["seeds"] == [1, 2] and document["command"][-6:] == [
        "--seeds", "1,2", "--rounds", "1", "--set", "train.lr=0.05"]
    assert document["frontier"] == result.frontier
    configs = [(result.directory / row["run_dir"] / "config.toml").read_text() for row in result.rows]
    assert ["seed = 1" in config for config in configs] == [True, True, False, False]
    assert all("lr = 0.05" in config for config in configs)  # the keyword override reached every run
    report = result.report.read_text()
    assert "## Frontier" in report and "| `dp-eps8` | 2/2 |" in report
    for name in comparison.PLOT_FILES.values():
        assert f"]({name})" in report and (result.directory / name).read_bytes().startswith(b"\x89PNG")
