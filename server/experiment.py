"""A federated run assembled from a scenario: data in the run directory, a coordinator, the results.

Both ``fedgrad server`` and ``fedgrad simulate`` go through here, so a run started either way is the
same experiment: the dataset is built once by the coordinator's side and saved as
``<run dir>/data/{vocab.json, test.npz, shard-<k>.npz}``; client ``k`` (wire id ``"k"``) trains on
``shard-<k>.npz`` and nothing else.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedgrad.data import Shard
from fedgrad.models import model_from_config
from fedgrad.modes.resolve import privacy_mode
from fedgrad.protocol import TaskConfig
from fedgrad.results import RunWriter
from fedgrad.results.schema import RoundRecord, RunOutcome
from fedgrad.scenario import Scenario
from fedgrad.training import evaluate
from server.coordinator import Coordinator, FederationState, RoundSettings
from server.registry import RunTokens
from server.strategies import StateDict, Strategy, build_strategy

DATA_DIR = "data"


@dataclass(frozen=True)
class PreparedRun:
    scenario: Scenario
    writer: RunWriter
    vocab_size: int
    test: Shard

    @property
    def data_dir(self) -> Path:
        """Where the shards live; ``fedgrad client --shard-dir`` points here."""
        return self.writer.run_dir / DATA_DIR


def prepare_run(scenario: Scenario) -> PreparedRun:
    """Build the scenario's federated dataset and save it into a fresh run directory."""
    dataset = scenario.build_dataset()
    if scenario.user_references:  # a broken user model or strategy fails here, before the run directory exists
        model_from_config(scenario.model, len(dataset.vocab), seed=scenario.seed, code_dir=scenario.code_dir)
        _strategy(scenario)
    writer = RunWriter(scenario.output.dir, scenario)  # only once the data is good: no empty run dirs
    dataset.save(writer.run_dir / DATA_DIR)
    return PreparedRun(scenario, writer, len(dataset.vocab), dataset.test)


def client_ids(scenario: Scenario) -> list[str]:
    """The wire ids of the scenario's clients: client ``k`` holds ``shard-<k>.npz``."""
    return [str(k) for k in range(scenario.federation.clients)]


def build_coordinator(prepared: PreparedRun, on_round: Callable[[RoundRecord], None],
                      tokens: RunTokens | None = None, decryptors: object = None,
                      run_id: str | None = None) -> Coordinator:
    """The coordinator for ``prepared``, its global model initialised from the scenario's seed; with
    ``tokens``, clients must present the run token issued to them. Secure aggregation generates the run's
    Paillier key here; DP calibrates its noise and accounts for the rounds ``prepared`` already holds. ``run_id``:
    the run an operator's run policy fixes (a fresh random id without one)."""
    scenario = prepared.scenario
    fed = scenario.federation
    model = model_from_config(scenario.model, prepared.vocab_size, seed=scenario.seed,
                              code_dir=scenario.code_dir)
    mode = privacy_mode(scenario, decryptors)
    aggregation = mode.aggregation(model.state_dict(), prepared.writer.records)

    def evaluate_on_test(state: StateDict) -> dict[str, float]:
        model.load_state_dict(state)
        return evaluate(model, prepared.test)

    def privacy_summary() -> RunOutcome:
        guarantee = mode.guarantee()
        return RunOutcome(privacy=dataclasses.replace(aggregation.summary(), settings=mode.settings(),
                                                      guarantee=guarantee.full, guarantee_short=guarantee.short))

    return Coordinator(
        settings=RoundSettings(rounds=fed.rounds, clients_per_round=fed.clients_per_round,
                               min_clients=fed.min_clients, round_timeout_s=fed.round_timeout_s,
                               join_grace_s=fed.round_timeout_s,
                               poisson_rate=fed.clients_per_round / fed.clients if fed.sampling == "poisson" else None),
        state=FederationState(global_model=model.state_dict(), rng=np.random.default_rng(scenario.seed),
                              strategy=_strategy(scenario)),
        client_ids=client_ids(scenario),
        new_accumulator=aggregation.new_accumulator,
        evaluate=evaluate_on_test,
        task_config=TaskConfig.from_scenario(scenario, prepared.vocab_size),
        seed=scenario.seed,
        on_round=on_round,
        tokens=tokens,
        summary_entries=privacy_summary,
        close=aggregation.close,
        run_id=run_id,
    )


def _strategy(scenario: Scenario) -> Strategy:
    fed = scenario.federation
    return build_strategy(fed.strategy, server_lr=fed.server_lr, prox_mu=fed.prox_mu, code_dir=scenario.code_dir)
