"""The coordinator against its own clients (issue 21), with real client code (``LocalTrainer`` on each client's
shard) and real decryptors (2-of-3, in process).

Unpinned (clients and decryptors without a run policy take the coordinator's word): the test asserts what each
attack recovers, exactly the victim's update, except the one that per-round task digests stop for everyone.
Pinned to the operator's run policy: each attack is refused, the test asserts by which check, and that nothing
released to the coordinator is the victim's update.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from client.trainer import LocalTrainer
from fedgrad.crypto import InsecureKeyWarning
from fedgrad.data import Shard
from fedgrad.experiments.redteam import SUCCESS_STEPS
from fedgrad.experiments.redteam_clients import CLIENT_ATTACKS, ClientFederation, client_federation
from fedgrad.modes.base import ClientPrivacy
from fedgrad.policy import PolicyRefused, RunPolicy
from fedgrad.protocol import Announcement, TrainTask
from fedgrad.scenario import FederationConfig, ModelConfig, PrivacyConfig, Scenario, TrainConfig

VOCAB = 14
EXAMPLES = {f"c{i}": n for i, n in enumerate((30, 50, 20, 40, 25, 35, 45, 15, 30, 20))}
VICTIM, COLLUDERS = "c1", ("c4", "c7")  # three contributors: what decryptors without a policy release
MODES = ("paillier", "paillier-masked", "dp")

#: Pinned: the check that turns each attack down (a substring of the refusal), per mode.
REFUSALS = {
    "plaintext": {"paillier": "carries no privacy announcement", "dp": "carries no privacy announcement"},
    "own-key": {"paillier": "public key other than the policy's key set",
                "dp": "public key other than the policy's key set"},
    "zero-others": {"paillier": "training settings", "dp": "noise_std differ"},
    "reissue": {"paillier": "trained on the same model in round", "dp": "noise_std differ"},
    "claimed-dropouts": {"paillier": "below this decryptor's min_clients=5", "dp": "noise_std differ"},
}
for _refusals in REFUSALS.values():  # the hybrid mode is the threshold mode with another payload: same checks
    _refusals["paillier-masked"] = _refusals["paillier"]


def _scenario(mode: str) -> Scenario:
    privacy = PrivacyConfig(mode=mode, key_bits=512, insecure_key_bits=True, clip=1.0, epsilon=4.0, dp_clip=1.0,
                            dp_placement="distributed")
    return Scenario(name="redteam-clients", seed=7, model=ModelConfig(name="book"),
                    train=TrainConfig(epochs=1, batch_size=8, lr=0.5),
                    federation=FederationConfig(clients=len(EXAMPLES), clients_per_round=len(EXAMPLES), rounds=4,
                                                min_clients=2),
                    privacy=privacy)


def _shards() -> dict[str, Shard]:
    rng = np.random.default_rng(21)
    return {client: Shard(rng.integers(1, VOCAB, size=(n, 6)).astype(np.int32),
                          rng.integers(0, 2, size=n).astype(np.float32)) for client, n in EXAMPLES.items()}


def _federation(tmp_path: Path, mode: str, pinned: bool) -> ClientFederation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        return client_federation(tmp_path, _scenario(mode), _shards(), VOCAB, pinned=pinned, victim=VICTIM,
                                 colluders=COLLUDERS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", [name for name in CLIENT_ATTACKS if name != "zero-others"])
def test_unpinned_clients_give_the_victims_update_away(tmp_path, mode, name):
    federation = _federation(tmp_path, mode, pinned=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        outcome = CLIENT_ATTACKS[name](federation)
    assert outcome.succeeded, outcome
    assert outcome.recovered_error is not None and outcome.recovered_error < SUCCESS_STEPS


@pytest.mark.parametrize("mode", MODES)
def test_per_client_settings_are_refused_by_the_rounds_task_digest_even_unpinned(tmp_path, mode):
    """Clients told to train 0 epochs sign another task digest than the one the round was opened with: no
    decryptor folds them in, so no release holds the victim's update alone."""
    federation = _federation(tmp_path, mode, pinned=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        outcome = CLIENT_ATTACKS["zero-others"](federation)
    assert not outcome.succeeded and outcome.recovered_error is None
    assert outcome.refusal is not None and "contribution signature does not verify" in outcome.refusal
    assert federation.decryptors.obtained == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(CLIENT_ATTACKS))
def test_clients_and_decryptors_pinned_to_the_policy_refuse(tmp_path, mode, name):
    federation = _federation(tmp_path, mode, pinned=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        outcome = CLIENT_ATTACKS[name](federation)
    assert not outcome.succeeded
    assert outcome.refusal is not None and REFUSALS[name][mode] in outcome.refusal, outcome.refusal
    # nothing of one client's update reached the coordinator: every sum the decryptors let it combine is of at
    # least the policy's share of an announced cohort
    for obtained in federation.decryptors.obtained:
        assert len(obtained.contributors) >= 5


def _task(federation: ClientFederation, round: int, announcement: Announcement | None, **changes) -> TrainTask:
    accumulator = federation.open(round, sorted(federation.trainers))
    honest = accumulator.announcement
    assert honest is not None
    params = {**honest.params, **changes.pop("params", {})}
    announcement = dataclasses.replace(honest, params=params, **changes)
    client = VICTIM
    return TrainTask(round, round, round - 1, 1.0, federation.config_for(client, round), tuple(federation.specs),
                     announcement, federation.run_id, EXAMPLES[client])


@pytest.mark.parametrize("change, reason", [
    ({"params": {"secure": "short"}}, "announced secure differ"),
    ({"mode": "paillier-trusted"}, "announces privacy mode 'paillier-trusted'"),
    ({"cohort": (VICTIM, *COLLUDERS, "c0")}, "the policy's min_clients is 5"),
    ({"cohort": (*COLLUDERS, "c0")}, "does not list each client once"),
])
def test_a_pinned_client_refuses_announcements_outside_its_policy(tmp_path, change, reason):
    federation = _federation(tmp_path, "paillier", pinned=True)
    task = _task(federation, 1, None, **change)
    if change.get("params", {}).get("secure") == "short":  # the randomizer rule and the weight cap, changed
        secure = dict(federation.secure.announcement([VICTIM]).params["secure"])
        assert task.announcement is not None
        task = dataclasses.replace(task, announcement=dataclasses.replace(
            task.announcement, params={"secure": {**secure, "short_randomizer": True, "max_weight": 1}}))
    with pytest.raises(PolicyRefused, match=reason):
        federation.trainers[VICTIM].train_update(VICTIM, federation.shards[VICTIM], task, dict(federation.model))


def test_a_pinned_client_trains_with_its_own_randomness(tmp_path):
    """Two clients given one task and model shuffle differently: the coordinator's seed is not used (fresh
    entropy per task); an operator's --training-seed makes a client reproducible without the coordinator."""
    federation = _federation(tmp_path, "paillier", pinned=True)
    task = _task(federation, 1, None)
    policy = RunPolicy.load(tmp_path / "policy.json")
    deltas = []
    for seed in (None, None, 5, 5):
        privacy = ClientPrivacy(allow_insecure_keys=True, policy=tmp_path / "policy.json", training_seed=seed)
        trainer = LocalTrainer(privacy=privacy)
        guard = trainer._guard
        assert guard is not None and guard.policy == policy
        config = dataclasses.replace(task.config, seed=guard.admit(task, VICTIM, federation.model))
        deltas.append(np.concatenate([v.reshape(-1) for v in trainer.train(
            federation.shards[VICTIM], config, federation.model).delta.values()]))
    assert not np.array_equal(deltas[0], deltas[1])
    assert np.array_equal(deltas[2], deltas[3])


def test_the_policy_file_round_trips_and_pins_the_key(tmp_path):
    federation = _federation(tmp_path, "dp", pinned=True)
    policy = RunPolicy.load(tmp_path / "policy.json")
    assert policy.scenario == _scenario("dp") and policy.vocab_size == VOCAB
    # ten per round: min_clients raised to half of them; the fraction also binds cohorts larger than announced
    assert (policy.min_clients, policy.min_fraction, policy.min_contributors(10), policy.min_contributors(14)) == \
        (5, 0.5, 5, 7)
    policy.check_key_set(federation.decryptors.key_set)


def test_pinned_decryptors_refuse_a_round_whose_task_settings_are_not_the_policys(tmp_path):
    federation = _federation(tmp_path, "paillier", pinned=True)
    lazy = dataclasses.replace(federation.config, train=dataclasses.replace(federation.config.train, epochs=0))
    federation.decryptors.open(federation.run_id, 1, 1, sorted(EXAMPLES), lazy.settings_digest(), bytes(32))
    refusals = federation.decryptors.refusals(federation.run_id, 1, 1)
    assert len(refusals) == 3
    assert all("not those of this decryptor's run policy" in str(refusal) for _, _, refusal in refusals)


@pytest.mark.parametrize("pinned", [False, True])
def test_a_client_sent_another_model_than_the_rounds_is_not_folded_in(tmp_path, pinned):
    """Model inconsistency (Pasquini et al., CCS 2022): the coordinator opens the round with one model and sends
    the victim another (one that would make the others' updates vanish, or single out the victim's data). The
    victim signs the digest of the model it received, not the round's: no decryptor folds it in."""
    federation = _federation(tmp_path, "paillier", pinned=pinned)
    accumulator = federation.open(1, sorted(EXAMPLES))
    crafted = {name: value + np.float32(0.25) for name, value in federation.model.items()}
    answer = federation.send(VICTIM, 1, accumulator.announcement, federation.config_for(VICTIM, 1), crafted)
    assert not isinstance(answer, str)
    payload, signature, _ = answer
    federation.decryptors.contribute(federation.run_id, 1, 1, VICTIM, EXAMPLES[VICTIM], payload, signature)
    refusals = federation.decryptors.refusals(federation.run_id, 1, 1)
    assert len(refusals) == 3
    assert all("contribution signature does not verify" in str(refusal) for _, _, refusal in refusals)
