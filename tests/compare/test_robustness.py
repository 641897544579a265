"""`fedgrad compare --strategies ... --attack ...`: the grid over strategies and attacks, the combinations left out,
and the robustness table and plot of the report (real `fedgrad simulate` children)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fedgrad.cli.main import main
from fedgrad.errors import ConfigError
from fedgrad.experiments.compare import parse_privacy_list, plan_variants
from fedgrad.experiments.compare.report import ATTACK_PLOT
from fedgrad.experiments.compare.robustness import (
    AttackSetting,
    StrategySetting,
    parse_attack_list,
    parse_strategy_list,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIVE_CLIENTS = ["federation.clients=5", "federation.clients_per_round=5"]


def test_strategies_and_attacks_parse_with_options_and_one_line_errors():
    assert parse_strategy_list("fedavg,krum:f=2,fedtrimmedavg:beta=0.3") == [
        StrategySetting("fedavg"), StrategySetting("krum", (("f", 2),)), StrategySetting("fedtrimmedavg",
                                                                                          (("beta", 0.3),))]
    assert StrategySetting("krum", (("f", 2),)).label == "krum-f2"
    assert parse_attack_list("label_flip:0.1,backdoor:0.3") == [AttackSetting(), AttackSetting("label_flip", 0.1),
                                                                 AttackSetting("backdoor", 0.3)]
    for text, message in (("krum:f=x", r"^--strategies: 'krum:f=x': options are key=number"),
                          ("krum:m=2", r"^federation\.options\.m: not an option of strategy 'krum'"),
                          ("fedsgd", r"^--strategies: unknown strategy 'fedsgd'")):
        with pytest.raises(ConfigError, match=message):
            parse_strategy_list(text)
    for text in ("label_flip", "sybil:0.1", "backdoor:1.5"):
        with pytest.raises(ConfigError, match=r"^--attack: "):
            parse_attack_list(text)


def test_the_grid_spans_strategies_and_attacks_and_leaves_out_what_cannot_run(scenario):
    skipped: list[tuple[str, str]] = []
    variants = plan_variants(scenario, FIVE_CLIENTS, parse_privacy_list("paillier-trusted"),
                             strategies=parse_strategy_list("fedavg,krum:f=1,bulyan:f=1"),
                             attacks=parse_attack_list("label_flip:0.4"), skipped=skipped)
    assert [(v.name, v.baseline, v.clean) for v in variants] == [
        ("none-fedavg-clean", "none-fedavg-clean", "none-fedavg-clean"),
        ("paillier-trusted-fedavg-clean", "none-fedavg-clean", "paillier-trusted-fedavg-clean"),
        ("none-fedavg-label_flip-0.4", "none-fedavg-label_flip-0.4", "none-fedavg-clean"),
        ("paillier-trusted-fedavg-label_flip-0.4", "none-fedavg-label_flip-0.4", "paillier-trusted-fedavg-clean"),
        ("none-krum-f1-clean", "none-krum-f1-clean", "none-krum-f1-clean"),
        ("none-krum-f1-label_flip-0.4", "none-krum-f1-label_flip-0.4", "none-krum-f1-clean")]
    krum = variants[-1]
    assert krum.scenario.federation.min_clients == 5 and krum.scenario.federation.options == {"f": 1}
    assert krum.scenario.attack.kind == "label_flip" and krum.scenario.attack.fraction == 0.4
    assert "federation.min_clients raised from 2 to 5" in krum.notes[0]
    reasons = dict(skipped)
    assert "secure aggregation exists to hide each client's update" in reasons["paillier-trusted-krum-f1-clean"]
    assert reasons["none-bulyan-f1-clean"] == ("bulyan needs at least 7 updates a round, more than "
                                               "federation.clients_per_round = 5")
    assert len(skipped) == 6


@pytest.fixture(scope="module")
def robustness(tmp_path_factory: pytest.TempPathFactory, make_scenario) -> Path:
    scenario = make_scenario(tmp_path_factory.mktemp("robust"))
    assert main(["compare", str(scenario), "--privacy", "none,dp:8", "--strategies", "fedavg,fedmedian",
                 "--attack", "backdoor:0.4", "--no-canary",
                 *(word for value in FIVE_CLIENTS for word in ("--set", value))]) == 0
    [compare_dir] = (scenario.parent / "runs").glob("compare-*")
    return compare_dir


def test_compare_reports_clean_accuracy_accuracy_under_attack_and_backdoor_success(robustness):
    with open(robustness / "results.csv", newline="") as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == sorted(f"{privacy}-{strategy}-{attack}" for privacy in ("none", "dp-eps8")
                                  for strategy in ("fedavg", "fedmedian")
                                  for attack in ("clean", "backdoor-0.4")
                                  if not (privacy == "dp-eps8" and strategy == "fedmedian"))
    assert all(row["status"] == "ok" for row in rows.values())
    for name, row in rows.items():
        clean = rows[name.replace("backdoor-0.4", "clean")]
        assert float(row["clean_accuracy"]) == float(clean["accuracy"])
        assert float(row["attack_drop_pts"]) == pytest.approx(100 * (float(clean["accuracy"]) - float(row["accuracy"])))
        assert (row["backdoor_success"] != "") == ("backdoor" in name)
    backdoor = rows["none-fedavg-backdoor-0.4"]
    assert backdoor["attack"] == "backdoor" and float(backdoor["attack_fraction"]) == 0.4
    assert 0.0 <= float(backdoor["backdoor_success"]) <= 1.0 and backdoor["strategy"] == "fedavg"

    document = json.loads((robustness / "results.json").read_text())
    assert [item["variant"] for item in document["skipped"]] == [
        "dp-eps8-fedmedian-clean", "dp-eps8-fedmedian-backdoor-0.4"]
    assert "--strategies" in document["command"] and "--attack" in document["command"]
    report = (robustness / "report.md").read_text()
    assert "## Robustness" in report and "| `none-fedmedian` | backdoor | 40% |" in report
    assert "- `dp-eps8-fedmedian-clean`: federation.strategy: 'fedmedian' needs each client's update" in report
    assert f"]({ATTACK_PLOT})" in report
    assert (robustness / ATTACK_PLOT).read_bytes().startswith(PNG_MAGIC)
