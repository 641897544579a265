"""Canary clients (``privacy.canaries``, server/canaries.py) in a real run over gRPC, and their pieces alone."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fedgrad.errors import ConfigError
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.plain import PlainAccumulator
from fedgrad.modes.resolve import privacy_mode
from fedgrad.privacy.empirical import canary_direction, flatten
from fedgrad.protocol import TaskConfig, TrainTask
from fedgrad.scenario import Scenario
from fedgrad.transport.codec import encode_tensors
from server.canaries import CanaryClients
from server.experiment import canary_clients

MODEL = {"w": np.zeros((6, 2), dtype=np.float32), "b": np.zeros(3, dtype=np.float32)}


def canaries(count: int = 40, rate: float = 0.25, poisson: bool = True) -> CanaryClients:
    return CanaryClients(count=count, norm=0.5, rate=rate, poisson=poisson, seed=7, model=MODEL, delta=1e-5)


def test_a_canary_sends_its_direction_at_the_clip_norm() -> None:
    flock = canaries()
    update = flock.update(3)
    assert list(update) == ["w", "b"] and update["w"].dtype == np.float32
    np.testing.assert_allclose(flatten(update), 0.5 * canary_direction(7, 3, 15), rtol=1e-6)


def test_canaries_take_part_at_the_scenarios_rate_and_the_same_on_a_retry() -> None:
    flock = canaries(count=400)
    rounds = [flock.sampled(number) for number in range(1, 21)]
    assert flock.sampled(5) == rounds[4]  # a retried round adds the same canaries
    assert np.mean([len(r) for r in rounds]) == pytest.approx(100, rel=0.1)  # Poisson at rate 1/4
    assert len({len(r) for r in rounds}) > 1
    fixed = canaries(count=10, rate=0.25, poisson=False)
    assert {len(fixed.sampled(number)) for number in range(1, 6)} == {2}  # round(10 * 0.25), exactly


def test_canaries_are_folded_in_by_the_modes_own_accumulator() -> None:
    flock = canaries(count=4, rate=1.0)
    specs, _ = encode_tensors(MODEL)
    accumulator = PlainAccumulator(specs)
    task = TrainTask(0, 1, 0, 1.0, TaskConfig.from_scenario(Scenario(name="canaries"), 10), tuple(specs), None)
    assert flock.contribute(1, task, accumulator, weight=2.0) == 4
    summed = accumulator.finalize(PhaseTimer())
    expected = sum(0.5 * 2.0 * canary_direction(7, index, 15) for index in range(4))
    np.testing.assert_allclose(flatten(summed.total), expected, atol=1e-6)
    assert summed.contributors == ("canary-0", "canary-1", "canary-2", "canary-3")


@pytest.mark.parametrize("secure", [('privacy.mode="paillier"',), ('privacy.mode="paillier-masked"',),
                                    ('privacy.mode="dp"', 'privacy.dp_placement="distributed"')])
def test_secure_aggregation_refuses_canaries(scenario, secure) -> None:
    encrypted = scenario(*secure, "privacy.canaries=4")
    with pytest.raises(ConfigError, match=r"privacy\.canaries"):
        canary_clients(encrypted, privacy_mode(encrypted), {})
    with pytest.raises(ConfigError, match=r"privacy\.canaries"):
        scenario("privacy.canaries=1")


@pytest.mark.parametrize("mode", ["none", "dp"])
def test_a_run_with_canaries_reports_empirical_epsilon_and_counts_only_real_clients(scenario, run, mode) -> None:
    plain = run(scenario(f'privacy.mode="{mode}"', "privacy.epsilon=1e6"))
    measured = run(scenario(f'privacy.mode="{mode}"', "privacy.epsilon=1e6", "privacy.canaries=6"))
    # every client takes part in every round of the fixture (3 of 3), and so does every canary (rate 1)
    assert [r.canaries for r in measured.records] == [6, 6, 6]
    assert [r.clients_used for r in measured.records] == [r.clients_used for r in plain.records] == [3, 3, 3]
    assert measured.summary.client_evaluation is not None and measured.summary.client_evaluation.clients == 3
    entry = measured.summary.empirical_privacy
    assert entry is not None
    assert entry.canaries == 6 and entry.rounds_observed == 3 and entry.participations_mean == 3
    for estimate in (entry.final_model, entry.all_iterates):
        assert estimate is not None and estimate.epsilon is not None and estimate.lower_bound is not None
        assert estimate.canaries == 6 and estimate.epsilon > 0 and estimate.lower_bound >= 0
        # six unit-norm canaries move the small model towards themselves: they stand out from the held-out ones
        assert estimate.inserted[0] > estimate.held_out[0] + estimate.held_out[1]
    assert plain.summary.empirical_privacy is None
    on_disk = json.loads((measured.run_dir / "summary.json").read_text())["empirical_privacy"]
    assert on_disk["final_model"]["canaries"] == 6 and len(on_disk["all_iterates"]["interval"]) == 2
    assert measured.losses != plain.losses  # the canaries did reach the model
