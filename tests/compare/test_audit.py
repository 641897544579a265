"""`fedgrad audit`: the plain and the paillier-trusted coordinators read the canary (the latter with the key it
finds in its own process); the paillier and paillier-masked coordinators get no individual view and every red-team
attack is refused."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fedgrad.cli.main import main
from fedgrad.crypto import InsecureKeyWarning
from fedgrad.data import UNK
from fedgrad.errors import ConfigError
from fedgrad.experiments.audit import (
    AUDIT_JSON,
    NAMED_WORDS,
    View,
    attacks_for,
    best,
    comoving_groups,
    plant,
    read_audit,
)
from fedgrad.scenario import load_scenario


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, make_scenario) -> dict:
    directory = tmp_path_factory.mktemp("audit")
    scenario = make_scenario(directory)
    with pytest.warns(InsecureKeyWarning):  # the tiny scenario's 512-bit test key is announced loudly
        assert main(["audit", str(scenario), "--privacy",
                     "none,paillier-trusted,paillier,paillier-masked,dp:1,dp:1e6,dp:1:distributed",
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
    exclusive = _result(client_update, "20 rarest only this client changed")
    assert exclusive["recovered"] == exclusive["total"] == 6
    assert exclusive["chance_rate"] < 0.2 and exclusive["advantage"] > 0.8
    assert best(client_update)["advantage"] == exclusive["advantage"]  # rarity alone finds them too


def test_trusted_coordinator_decrypts_the_canary_with_the_key_in_its_own_process(audited):
    mode = audited["modes"]["paillier-trusted"]
    # the key holder's door refuses an aggregate of one ...
    assert "1 distinct contributor(s)" in mode["facts"]["single_update_refused"]
    # ... but the private key sits in the coordinator's objects, and decrypts every upload
    assert "1 Paillier private key(s)" in mode["facts"]["key_material"]
    decrypted = _view(mode, "client update, decrypted by the coordinator")
    assert decrypted["scope"] == "individual"
    exclusive = _result(decrypted, "20 rarest only this client changed")
    assert exclusive["recovered"] == exclusive["total"] == 6 and exclusive["chance_rate"] < 0.2
    # and so does the red team, through the key holder's own door
    outcomes = {outcome["name"]: outcome for outcome in mode["facts"]["redteam"]}
    assert len(outcomes) == 9
    assert {name for name, outcome in outcomes.items() if not outcome["succeeded"]} == {"ask twice for one round"}
    assert all(outcome["recovered_error"] < 0.5 for outcome in outcomes.values() if outcome["succeeded"])


@pytest.mark.parametrize("setting", ["paillier", "paillier-masked"])
def test_threshold_coordinator_gets_no_individual_view_and_every_attack_is_refused(audited, setting):
    mode = audited["modes"][setting]
    assert [view["scope"] for view in mode["views"]] == ["aggregate"]
    assert "0 Paillier private key(s), 0 key share(s), 0 factor(s) of n" in mode["facts"]["key_material"]
    outcomes = [outcome for outcome in mode["facts"]["redteam"] if "run policy)" not in outcome["name"]]
    assert len(outcomes) == 9
    for outcome in outcomes:
        assert not outcome["succeeded"] and outcome["refusal"], outcome["name"]
        assert outcome["recovered_error"] is None or outcome["recovered_error"] > 50, outcome["name"]
    # the attacks through the clients' own code: what succeeds without a run policy; with one, all are refused
    # but the colluders' own: in this cohort of 3 the two colluders are all the other contributors, the collusion
    # no secure aggregation stops (docs/threat-model.md)
    through_clients = {outcome["name"]: outcome for outcome in mode["facts"]["redteam"] if "run policy)" in
                       outcome["name"]}
    assert len(through_clients) == 10
    succeeded = sorted(name for name, outcome in through_clients.items() if outcome["succeeded"])
    assert succeeded == sorted([*(f"{name} (no run policy)" for name in (
        "no announcement: plaintext update", "a key the coordinator made",
        "same model and seeds re-issued without the victim", "claimed dropouts: victim + colluders")),
        "claimed dropouts: victim + colluders (run policy)"])
    assert "3 contributors out of an announced cohort of 3" in \
        through_clients["claimed dropouts: victim + colluders (run policy)"]["detail"]
    report = (audited["dir"] / "report.md").read_text()
    assert "epochs = 0 to everyone but the victim (run policy) | " in report
    assert "signature does not verify" in mode["facts"]["single_update_refused"]
    # The aggregate hides each update but not which rare words someone in the cohort used this round: naming the
    # 20 rarest words that moved, the attacker names the canary's far above chance (20 words of the vocabulary)
    aggregate = best(_view(mode, "aggregate"))
    assert aggregate["guesses"] == 20 and aggregate["chance_rate"] < 0.05
    assert aggregate["advantage"] > 0.5 and aggregate["fpr"] < 0.05


def test_dp_noise_defeats_the_attack_that_reads_a_plain_update(audited):
    strong, negligible = audited["modes"]["dp-eps1"], audited["modes"]["dp-eps1e+06"]
    assert strong["facts"]["epsilon_target"] == 1.0 and strong["facts"]["noise_multiplier"] > 1.0
    assert [view["name"] for view in strong["views"]] == ["client update", "aggregate",
                                                          "aggregate minus all other clients"]
    # DP's own adversary knows every other update: without noise that singles out the canary, as in plain FedAvg
    isolated = _result(_view(negligible, "aggregate minus all other clients"), "20 rarest only this client changed")
    assert isolated["recovered"] == 6 and isolated["chance_rate"] < 0.05
    # with the noise calibrated for epsilon = 1 (seeded, central placement) the same attack finds nothing
    isolated = _result(_view(strong, "aggregate minus all other clients"), "20 rarest only this client changed")
    assert isolated["recovered"] == 0
    # central placement: the coordinator itself still sees the clipped update in plaintext, and the report says so
    assert _result(_view(strong, "client update"), "20 rarest only this client changed")["recovered"] == 6
    assert "not from the coordinator" in strong["description"]


def test_distributed_dp_coordinator_finds_no_key_and_sees_only_the_noised_sum(audited):
    """Distributed DP runs on threshold Paillier: the coordinator's objects hold no private key and no key share,
    so it gets no view of any one client's update, only the released sum carrying every contributor's noise."""
    mode = audited["modes"]["paillier+dp-eps1"]  # dp:1:distributed, named as paillier+dp:1 is
    assert "0 Paillier private key(s), 0 key share(s)" in mode["facts"]["key_material"]
    assert mode["facts"]["secure_aggregation"]["mode"] == "paillier"
    assert [view["scope"] for view in mode["views"]] == ["aggregate", "aggregate"]
    assert "2 decryptors colluding" in mode["facts"]["guarantee"]
    # its description is the threshold decryptors' (not the trusted key holder's, which lives in the coordinator)
    assert "threshold Paillier key" in mode["description"] and "decryptors, which verify" in mode["description"]
    assert "key holder" not in mode["description"]
    # and so is its refusal: the attacks through the clients were refused, no key holder was asked
    section = (audited["dir"] / "report.md").read_text().split("## `paillier+dp-eps1`")[1].split("\n## ")[0]
    assert "Every attack on the canary client's update alone was refused" in section
    assert "key holder refused" not in section


def test_report_rerenders_from_audit_json(audited, capsys, tmp_path):
    audit_dir = audited["dir"]
    (audit_dir / "report.md").unlink()
    assert main(["report", str(audit_dir)]) == 0
    report = (audit_dir / "report.md").read_text()
    assert "20 rarest only this client changed" in report and "key holder refused" in report
    assert "## Active coordinator (red team)" in report
    assert "| `paillier-trusted` | `paillier` | `paillier-masked` |" in report
    assert "**recovered**" in report and "refused: " in report
    assert json.loads((audit_dir / AUDIT_JSON).read_text())["kind"] == "fedgrad-audit"
    # an audit written before each mode recorded its key holder renders the same refusal sentences
    older = tmp_path / "older"
    shutil.copytree(audit_dir, older)
    document = json.loads((older / AUDIT_JSON).read_text())
    for mode in document["modes"]:
        del mode["facts"]["key_holder"]
    (older / AUDIT_JSON).write_text(json.dumps(document))
    assert main(["report", str(older)]) == 0
    assert (older / "report.md").read_text() == report


def test_bad_settings_fail_before_any_work(scenario, capsys):
    assert main(["audit", str(scenario), "--privacy", "none,paillier-trusted",
                 "--set", "federation.min_clients=1"]) == 2
    assert "error: --privacy paillier-trusted: federation.min_clients" in capsys.readouterr().err
    assert not (scenario.parent / "runs").exists()
    with pytest.raises(ConfigError, match="--canary-copies"):
        plant(load_scenario(scenario), n_words=3, copies=1)


def test_unseen_words_that_moved_together_betray_a_repeated_email_and_noise_hides_them():
    """Words found only in the same emails move by the same amount in any sum of updates; the attacker names such
    groups of words it never saw in its own data, most changed per occurrence first. Under noise it is at chance."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(400)]
    rows = rng.normal(0.0, 1e-3, (400, 1))
    counts, public = rng.integers(5, 50, 400), rng.integers(1, 3, 400)
    secret, seen, unequal, weak = [10, 11, 12, 13], [20, 21, 22], [30, 31], [40, 41]
    rows[secret], counts[secret], public[secret] = -4e-3 * (1 + 1e-7 * rng.random((4, 1))), 5, 0
    rows[seen], counts[seen], public[seen] = 9e-3, 5, [0, 0, 1]      # one of its words is in the attacker's data
    rows[unequal], counts[unequal], public[unequal] = 9e-3, [5, 6], 0  # not the same emails: not a group
    rows[weak], counts[weak], public[weak] = 1e-3, 5, 0              # moved together, less per occurrence
    groups = comoving_groups(rows, counts, public == 0)
    assert [group.tolist() for group in groups] == [secret, weak]
    name = f"{NAMED_WORDS} unseen words that moved together"
    named = attacks_for(View("aggregate", "aggregate", "the sum", rows), NAMED_WORDS, counts, public)[name](words)
    assert len(named) == NAMED_WORDS and named[:6] == [words[i] for i in [*secret, *weak]]
    noised = rows + rng.normal(0.0, 1e-2, rows.shape)  # each row its own noise: the groups are gone
    named = attacks_for(View("aggregate", "aggregate", "the sum", noised, noise_std=1e-2), NAMED_WORDS, counts,
                        public)[name](words)
    assert len(named) == NAMED_WORDS and not {words[i] for i in secret} & set(named)
