"""Distributed DP on threshold Paillier against an active coordinator: it cannot obtain a sum without the
clients' noise shares, and when it drops contributors to shrink the noise, the ledger charges the ε really spent.

The parties are real: the clients' own ``DPMode.encode`` (clip, noise share, encrypt, sign with their own
identity) and three in-process decryptors (2-of-3) that verify every signature and release at most once a round.
"""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from fedgrad.crypto import InsecureKeyWarning
from fedgrad.experiments.redteam import LocalDecryptors, enroll_clients, local_decryptors
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.base import ClientPrivacy
from fedgrad.modes.dp import DPAggregation, DPMode
from fedgrad.privacy import epsilon_spent
from fedgrad.protocol import RoundCohort, TaskConfig, TrainTask
from fedgrad.protocol.task_config import TrainSettings
from fedgrad.results.schema import DPRoundReport
from fedgrad.scenario import FederationConfig, ModelConfig, PrivacyConfig, Scenario
from server.tasks import ModelPayload

CLIENTS = [f"c{i}" for i in range(6)]
N_PARAMS = 400
CLIP = 1.0
MODEL = {"w": np.zeros(N_PARAMS, dtype=np.float32)}


def _scenario() -> Scenario:
    federation = FederationConfig(clients=len(CLIENTS), clients_per_round=len(CLIENTS), rounds=2, min_clients=2)
    return Scenario(name="dp-redteam", federation=federation,
                    privacy=PrivacyConfig(mode="dp", dp_placement="distributed", epsilon=4.0, dp_clip=CLIP,
                                          key_bits=512, insecure_key_bits=True))


@dataclasses.dataclass
class Federation:
    mode: DPMode
    aggregation: DPAggregation
    decryptors: LocalDecryptors
    privacy: ClientPrivacy
    deltas: dict[str, dict[str, np.ndarray]]
    run_id: str


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalDecryptors, ClientPrivacy]:
    """The clients' identities and the operator's enrollment, and a dealt 2-of-3 key in three decryptors."""
    directory = tmp_path_factory.mktemp("parties")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        identities, enrollment = enroll_clients(directory / "clients", CLIENTS)
        decryptors = local_decryptors(directory, key_bits=512, parties=3, threshold=2, enrollment=enrollment,
                                      min_clients=2, insecure_key_bits=True)
    return decryptors, ClientPrivacy(allow_insecure_keys=True, identity_dir=identities, enrollment=enrollment)


@pytest.fixture
def federation(parties: tuple[LocalDecryptors, ClientPrivacy], request: pytest.FixtureRequest) -> Federation:
    """A fresh run (its own run id, so the decryptors' once-per-round rule starts afresh) on the shared parties."""
    decryptors, privacy = parties
    mode = DPMode(_scenario(), decryptors=decryptors)
    aggregation = mode.aggregation(MODEL)
    rng = np.random.default_rng(3)
    deltas = {}
    for client in CLIENTS:  # each update has L2 norm exactly CLIP: nothing is scaled by clipping
        direction = rng.normal(size=N_PARAMS)
        deltas[client] = {"w": (CLIP * direction / np.linalg.norm(direction)).astype(np.float32)}
    decryptors.obtained.clear()
    return Federation(mode, aggregation, decryptors, privacy, deltas, request.node.name)


def _round(federation: Federation, number: int, contributors: list[str]
           ) -> tuple[dict[str, np.ndarray], DPRoundReport]:
    """One round whose cohort is every client, of which the coordinator folds in only ``contributors``."""
    specs = ModelPayload.encode(0, MODEL).specs
    cohort = RoundCohort(number, dict.fromkeys(CLIENTS, 1.0), run_id=federation.run_id, attempt=1)
    accumulator = federation.aggregation.new_accumulator(specs, cohort)
    config = TaskConfig(model=ModelConfig(), vocab_size=N_PARAMS,
                        train=TrainSettings(epochs=1, batch_size=8, lr=0.1, optimizer="sgd"))
    for task_id, client in enumerate(CLIENTS, start=1):
        task = TrainTask(task_id, number, 0, 1.0, config, specs, accumulator.announcement, federation.run_id, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyWarning)
            encoded = federation.mode.encode(task, client, federation.deltas[client], federation.privacy)
        if client in contributors:  # the others' uploads are simply dropped by the coordinator
            accumulator.add(client, 1.0, encoded.payload, encoded.signature, 1)
    released = accumulator.finalize(PhaseTimer())
    assert released is not None
    report = accumulator.round_report().privacy
    assert report is not None
    return released.total, report


def test_the_released_sum_always_carries_the_contributors_noise_shares(federation):
    """The coordinator obtains only the noised sum: subtracting every honest update leaves the noise shares of
    the contributors (std share·√contributors per coordinate), never zero."""
    total, _ = _round(federation, 1, CLIENTS)
    exact = sum(federation.deltas[client]["w"].astype(np.float64) for client in CLIENTS)
    residual = total["w"] - exact
    share_std = federation.aggregation.params["noise_std"]
    expected = share_std * math.sqrt(len(CLIENTS))
    assert expected > 0.5  # ε = 4 over 2 rounds with every client: far more noise than the quantization grid
    assert 0.85 * expected < np.std(residual) < 1.15 * expected  # 400 coordinates: ±3.5% at 1σ
    # the decryptors released exactly one sum for this round, over the contributors the clients signed for
    assert [len(obtained.contributors) for obtained in federation.decryptors.obtained] == [len(CLIENTS)]


def test_dropping_contributors_shrinks_the_noise_and_the_ledger_charges_for_it(federation):
    planned = federation.aggregation.mechanism.noise_multiplier
    _, honest = _round(federation, 1, CLIENTS)
    _, dropped = _round(federation, 2, CLIENTS[:2])  # the coordinator keeps only min_clients = 2 of 6 uploads
    assert honest.noise_multiplier == pytest.approx(planned)
    assert dropped.noise_multiplier == pytest.approx(planned * math.sqrt(2 / 6))
    sampling, delta = federation.mode.config().sampling_model, federation.aggregation.ledger.delta
    ledger = federation.aggregation.ledger
    # the ledger composed one round at z and one at z·√(2/6): more than the planned budget of 4 for two rounds
    assert ledger.epsilon > epsilon_spent(planned, sampling, 2, delta) + 1.0
    assert dropped.epsilon_spent == ledger.epsilon
    # the guarantee states the worst case (every round at min_clients) up front
    worst = federation.mode.worst_case_epsilon(federation.mode.config())
    assert worst == pytest.approx(epsilon_spent(planned * math.sqrt(2 / 6), sampling, 2, delta))
    assert ledger.epsilon < worst
    assert f"ε={worst:.3g}" in federation.mode.guarantee().full
