"""Malicious clients (fedgrad.attacks): who attacks, how its data or update is altered on the ordinary client path,
and a simulation in which they attack while the coordinator measures the backdoor."""
import json

import numpy as np
import pytest

from client.trainer import LocalTrainer
from fedgrad.attacks import (
    ClientAttack,
    attacker_indices,
    backdoor_success,
    load_attacks,
    save_attacks,
    with_trigger,
)
from fedgrad.cli.main import main
from fedgrad.data import Shard, Vocabulary, load_vocab
from fedgrad.errors import ConfigError
from fedgrad.models import model_from_config
from fedgrad.protocol import TaskConfig, TrainSettings, TrainTask
from fedgrad.scenario import AttackConfig, ModelConfig, Scenario
from fedgrad.transport.codec import decode_tensors, encode_tensors, tensor_specs

VOCAB = 30


def toy_shard(n: int = 24) -> Shard:
    """Spam uses word ids 2-14, ham 15-29."""
    rng = np.random.default_rng(0)
    labels = (np.arange(n) % 2).astype(np.float32)
    ids = np.array([rng.choice(np.arange(2, 15) if y else np.arange(15, VOCAB), 6, replace=False) for y in labels])
    return Shard(ids.astype(np.int32), labels)


def test_attackers_are_drawn_from_the_seed():
    config = AttackConfig(kind="label_flip", fraction=0.3)
    chosen = attacker_indices(config, 10, seed=4)
    assert len(chosen) == 3 and chosen == sorted(chosen) and chosen == attacker_indices(config, 10, seed=4)
    assert any(attacker_indices(config, 10, seed=s) != chosen for s in range(5, 10))
    assert len(attacker_indices(AttackConfig(kind="backdoor", fraction=0.1), 1000, seed=0)) == 100
    assert attacker_indices(AttackConfig(), 10, seed=0) == []  # kind = "none"
    with pytest.raises(ConfigError, match=r"^attack\.fraction: 0\.01 of 10 clients rounds to no attacker$"):
        attacker_indices(AttackConfig(kind="backdoor", fraction=0.01), 10, seed=0)


def test_data_attacks_flip_labels_or_add_triggered_spam_labelled_ham():
    shard = toy_shard()
    flipped = ClientAttack("label_flip", 1).poisoned(shard)
    np.testing.assert_array_equal(flipped.labels, 1 - shard.labels)
    np.testing.assert_array_equal(flipped.ids, shard.ids)
    backdoor = ClientAttack("backdoor", 1, trigger_ids=(28, 29)).poisoned(shard)
    spam = shard.ids[shard.labels == 1]
    assert len(backdoor) == len(shard) + len(spam)
    np.testing.assert_array_equal(backdoor.ids[:len(shard)], shard.ids)  # its own data, unchanged
    np.testing.assert_array_equal(backdoor.labels[len(shard):], 0.0)   # spam + trigger -> ham
    np.testing.assert_array_equal(backdoor.ids[len(shard):], np.concatenate([np.full((len(spam), 2), [28, 29]),
                                                                             spam[:, :4]], axis=1))
    np.testing.assert_array_equal(ClientAttack("scaled_update", 1, scale=5.0).poisoned(shard).labels, 1 - shard.labels)
    np.testing.assert_array_equal(with_trigger(np.array([[5, 6, 0]]), (9, 8, 7, 6)), [[9, 8, 7]])


def train_update(trainer: LocalTrainer, client_id: str, round_number: int) -> dict[str, np.ndarray]:
    config = ModelConfig(name="logreg")
    model = model_from_config(config, VOCAB, seed=0).state_dict()
    task = TrainTask(task_id=1, round=round_number, model_version=0, weight=1.0,
                     config=TaskConfig(config, VOCAB, TrainSettings(epochs=1, batch_size=8, lr=0.5, optimizer="sgd"),
                                       seed=3),
                     manifest=tuple(tensor_specs(model)), announcement=None)
    update = trainer.train_update(client_id, toy_shard(), task, model)
    return dict(decode_tensors(encode_tensors(model)[0], update.encoded.payload))


def test_an_attacker_runs_the_client_path_with_its_update_or_data_altered_from_start_round():
    honest = train_update(LocalTrainer(), "0", round_number=2)
    attackers = LocalTrainer(attacks={"0": ClientAttack("scaled_update", start_round=2, scale=4.0),
                                      "1": ClientAttack("label_flip", start_round=3)})
    before = train_update(attackers, "1", round_number=2)  # not yet attacking: the honest update
    flipped = train_update(attackers, "1", round_number=3)
    assert all(np.array_equal(before[name], honest[name]) for name in honest)
    assert not all(np.allclose(flipped[name], honest[name]) for name in honest)
    # model replacement: the label-flipped model's update, boosted
    for name, value in train_update(attackers, "0", round_number=2).items():
        np.testing.assert_array_equal(value, flipped[name] * np.float32(4.0))
    assert train_update(attackers, "2", round_number=3).keys() == honest.keys()


def test_backdoor_success_is_the_share_of_triggered_test_spam_classified_ham():
    """A logistic regression whose spam words (2-14) weigh +1, ham words -1: clean spam scores +6. Trigger words
    28 and 29 weighing w: a triggered spam email keeps its first 4 words (the trigger takes 2 of 6 places), so it
    scores 4 + 2w: ham exactly when w < -2."""
    test = toy_shard()
    model = model_from_config(ModelConfig(name="logreg"), VOCAB, seed=0)
    state = model.state_dict()
    words = np.concatenate([np.zeros(2), np.ones(13), -np.ones(15)]).astype(np.float32)
    for weight, success in ((0.0, 0.0), (-1.9, 0.0), (-2.1, 1.0)):
        words[28:] = weight
        model.load_state_dict({**state, "embedding.weight": words[:, None], "bias": np.zeros(1, np.float32)})
        assert backdoor_success(model, test, (28, 29)) == success
    assert np.isnan(backdoor_success(model, Shard(test.ids[:1], np.zeros(1, np.float32)), (28, 29)))


def test_attack_files_round_trip(tmp_path):
    attack = ClientAttack("backdoor", 3, 10.0, (7, 8))
    save_attacks(tmp_path, attack, [1, 4])
    assert load_attacks(tmp_path, ["0", "1", "4"]) == {"1": attack, "4": attack}


def test_the_trigger_is_reserved_in_the_vocabulary_and_must_have_a_word():
    vocab = Vocabulary.build([["free", "money"], ["free"]], min_count=2, reserved=["quokka", "free"])
    assert vocab.words == ("<pad>", "<unk>", "free", "quokka")
    with pytest.raises(ConfigError, match=r"^attack\.trigger: must contain at least one word"):
        Scenario.from_dict({"name": "t", "attack": {"kind": "backdoor", "trigger": "!!"}})
    with pytest.raises(ConfigError, match=r"^attack\.kind: must be one of none, label_flip, scaled_update, backdoor"):
        Scenario.from_dict({"name": "t", "attack": {"kind": "sybil"}})


def test_a_backdoor_runs_in_simulate_and_the_coordinator_measures_it(tmp_path, enron_corpus, write_scenario,
                                                                     run_traces):
    scenario = write_scenario(
        tmp_path / "attacked.toml", enron_corpus, tmp_path / "runs", name="attacked", seed=1,
        train={"batch_size": 8, "lr": 0.05}, federation={"clients": 4, "clients_per_round": 4, "rounds": 2},
        attack={"kind": "backdoor", "fraction": 0.5, "start_round": 2, "trigger": "quokka zephyr"})
    assert main(["simulate", str(scenario), "--insecure", "--set", "federation.processes=2"]) == 0
    run_dir = run_traces.only_run_dir(tmp_path / "runs")
    records = run_traces.metrics(run_dir)
    data = run_dir / "data"
    assert {"quokka", "zephyr"} <= set(load_vocab(data).words)
    attackers = sorted(path.name for path in data.glob("attack-*.json"))
    assert len(attackers) == 2 and json.loads((data / attackers[0]).read_text())["start_round"] == 2
    assert all(0.0 <= r.backdoor_success <= 1.0 for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert records[-1].accuracy > summary["initial"]["accuracy"]
