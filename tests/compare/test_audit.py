"""`fedgrad audit`: the plain coordinator reads the canary, the Paillier coordinator sees only ciphertext."""
from __future__ import annotations

import json

import pytest

from fedgrad.cli.main import main
from fedgrad.crypto import InsecureKeyWarning
from fedgrad.data import UNK
from fedgrad.errors import ConfigError
from fedgrad.experiments.audit import AUDIT_JSON, best, plant, read_audit
from fedgrad.scenario import load_scenario


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, make_scenario) -> dict:
    directory = tmp_path_factory.mktemp("audit")
    scenario = make_scenario(directory)
    with pytest.warns(InsecureKeyWarning):  # the tiny scenario's 512-bit test key is announced loudly
        assert main(["audit", str(scenario), "--privacy", "none,paillier-trusted,dp:1,dp:1e6",
                     "--canary-words", "6"]) == 0
    [audit_dir] = (directory / "runs").iterdir()
    return {"dir": audit_dir, "document": read_audit(audit_dir),
            "modes": {mode["setting"]: mode for mode in read_audit(audit_dir)["modes"]}}


def _view(mode: dict, name: str) -> dict:
    [view] = [view for view in mode["views"] if view["name"] == name]
    return view


def _result(view: dict, attack: str) -> dict:
    [result] = [result for result in view["attacks"] if result["attack"] == attack]
    return result


def test_the_canary_words_are_in_the_vocabulary(scenario):
    data = plant(load_scenario(scenario), n_words=6, client=1)
    secret_ids = data.vocab.encode(data.canary.words)
    assert UNK not in secret_ids and set(secret_ids) <= set(data.canary_ids)
    assert data.copies == 2  # data.min_count: the fewest copies that make a word part of the vocabulary
    planted = data.shards[1]
    assert sum(set(secret_ids) <= set(row) for row in planted.ids.tolist()) == 2


def test_plain_coordinator_recovers_the_canary(audited):
    document = audited["document"]
    assert document["vocab_size"] > 500 and len(document["cohort"]) == 3
    client_update = _view(audited["modes"]["none"], "client update")
    exclusive = _result(client_update, "rows only this client changed")
    assert exclusive["recovered"] == exclusive["total"] == 6
    assert exclusive["chance_rate"] < 0.2 and exclusive["advantage"] > 0.8
    assert best(client_update) == exclusive


def test_paillier_coordinator_sees_no_per_client_plaintext(audited):
    mode = audited["modes"]["paillier-trusted"]
    assert "1 distinct contributor(s)" in mode["facts"]["single_update_refused"]
    ciphertext = _view(mode, "client ciphertext")
    assert ciphertext["scope"] == "individual"
    assert {result["attack"] for result in ciphertext["attacks"]} == {"changed rows", "top 6"}
    every_row = _result(ciphertext, "changed rows")
    assert every_row["chance_rate"] == 1.0 and every_row["advantage"] == 0.0  # it flags every word: no information
    # Six random guesses among more than 500 words hit two canary words with probability below 0.2%.
    assert _result(ciphertext, "top 6")["recovered"] <= 1
    # The aggregate is a different target: which words anyone used. It singles out nobody's words.
    aggregate = best(_view(mode, "aggregate"))
    assert aggregate["chance_rate"] > 0.9


def test_dp_noise_defeats_the_attack_that_reads_a_plain_update(audited):
    strong, negligible = audited["modes"]["dp-eps1"], audited["modes"]["dp-eps1e+06"]
    assert strong["facts"]["epsilon_target"] == 1.0 and strong["facts"]["noise_multiplier"] > 1.0
    assert [view["name"] for view in strong["views"]] == ["client update", "aggregate",
                                                          "aggregate minus all other clients"]
    # DP's own adversary knows every other update: without noise that singles out the canary, as in plain FedAvg
    isolated = _result(_view(negligible, "aggregate minus all other clients"), "rows only this client changed")
    assert isolated["recovered"] == 6 and isolated["chance_rate"] < 0.05
    # with the noise calibrated for epsilon = 1 (seeded, central placement) the same attack finds nothing
    isolated = _result(_view(strong, "aggregate minus all other clients"), "rows only this client changed")
    assert isolated["recovered"] == 0
    # central placement: the coordinator itself still sees the clipped update in plaintext, and the report says so
    assert _result(_view(strong, "client update"), "rows only this client changed")["recovered"] == 6
    assert "not from the coordinator" in strong["description"]


def test_report_rerenders_from_audit_json(audited, capsys):
    audit_dir = audited["dir"]
    (audit_dir / "report.md").unlink()
    assert main(["report", str(audit_dir)]) == 0
    report = (audit_dir / "report.md").read_text()
    assert "rows only this client changed" in report and "key holder refused" in report
    assert json.loads((audit_dir / AUDIT_JSON).read_text())["kind"] == "fedgrad-audit"


def test_bad_settings_fail_before_any_work(scenario, capsys):
    assert main(["audit", str(scenario), "--privacy", "none,paillier-trusted", "--set", "federation.min_clients=1"]) == 2
    assert "error: --privacy paillier-trusted: federation.min_clients" in capsys.readouterr().err
    assert not (scenario.parent / "runs").exists()
    with pytest.raises(ConfigError, match="--canary-copies"):
        plant(load_scenario(scenario), n_words=3, copies=1)
