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
from typing import TYPE_CHECKING

import numpy as np

from fedgrad.attacks import attacker_indices, backdoor_success, client_attack, save_attacks
from fedgrad.data import Shard
from fedgrad.errors import ConfigError
from fedgrad.models import model_from_config
from fedgrad.modes.base import PrivacyMode
from fedgrad.modes.resolve import privacy_mode
from fedgrad.protocol import TaskConfig
from fedgrad.results import RunWriter
from fedgrad.results.schema import RoundRecord, RunOutcome
from fedgrad.scenario import Scenario
from fedgrad.training import evaluate
from server.coordinator import Coordinator, FederationState, RoundSettings
from server.registry import RunTokens
from server.strategies import StateDict, Strategy, strategy_for

if TYPE_CHECKING:
    from server.canaries import CanaryClients

DATA_DIR = "data"


@dataclass(frozen=True)
class PreparedRun:
    scenario: Scenario
    writer: RunWriter
    vocab_size: int
    test: Shard
    trigger_ids: tuple[int, ...] = ()  # a backdoor attack's trigger, whose success each evaluation measures

    @property
    def data_dir(self) -> Path:
        """Where the shards live; ``fedgrad client --shard-dir`` points here."""
        return self.writer.run_dir / DATA_DIR


def prepare_run(scenario: Scenario) -> PreparedRun:
    """Build the scenario's federated dataset and save it into a fresh run directory."""
    check_strategy(scenario)  # privacy settings the mode refuses, a broken strategy, or one the mode cannot serve
    dataset = scenario.build_dataset()
    if scenario.user_references:  # a broken user model fails here, before the run directory exists
        model_from_config(scenario.model, len(dataset.vocab), seed=scenario.seed, code_dir=scenario.code_dir)
    attackers = attacker_indices(scenario.attack, scenario.federation.clients, scenario.seed)
    writer = RunWriter(scenario.output.dir, scenario)  # only once the data is good: no empty run dirs
    dataset.save(writer.run_dir / DATA_DIR)
    attack = client_attack(scenario.attack, dataset.vocab)
    save_attacks(writer.run_dir / DATA_DIR, attack, attackers)
    return PreparedRun(scenario, writer, len(dataset.vocab), dataset.test, attack.trigger_ids)


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
    strategy = check_strategy(scenario)

    def evaluate_on_test(state: StateDict) -> dict[str, float]:
        model.load_state_dict(state)
        metrics = evaluate(model, prepared.test)
        if prepared.trigger_ids:
            metrics["backdoor_success"] = backdoor_success(model, prepared.test, prepared.trigger_ids)
        return metrics

    canaries = canary_clients(scenario, mode, model.state_dict())

    def privacy_summary() -> RunOutcome:
        guarantee = mode.guarantee()
        return RunOutcome(privacy=dataclasses.replace(aggregation.summary(), settings=mode.settings_line(),
                                                      guarantee=guarantee.full, guarantee_short=guarantee.short),
                          empirical_privacy=canaries.summary() if canaries is not None else None)

    return Coordinator(
        settings=RoundSettings(rounds=fed.rounds, clients_per_round=fed.clients_per_round,
                               min_clients=fed.min_clients, round_timeout_s=fed.round_timeout_s,
                               join_grace_s=fed.round_timeout_s,
                               poisson_rate=fed.clients_per_round / fed.clients if fed.sampling == "poisson" else None),
        state=FederationState(global_model=model.state_dict(), rng=np.random.default_rng(scenario.seed),
                              strategy=strategy),
        client_ids=client_ids(scenario),
        new_accumulator=(aggregation.new_keeping_accumulator if strategy.needs_individual_updates
                         else aggregation.new_accumulator),
        evaluate=evaluate_on_test,
        task_config=TaskConfig.from_scenario(scenario, prepared.vocab_size),
        seed=scenario.seed,
        on_round=on_round,
        tokens=tokens,
        summary_entries=privacy_summary,
        close=aggregation.close,
        run_id=run_id,
        canaries=canaries,
    )


def canary_clients(scenario: Scenario, mode: PrivacyMode, model: StateDict) -> CanaryClients | None:
    """The run's canary clients (``server.canaries``), or None without ``privacy.canaries``; a one-line
    :class:`ConfigError` under a mode whose updates travel encrypted (its decryptors sum only signed updates of
    enrolled clients, which canaries are not)."""
    privacy, fed = scenario.privacy, scenario.federation
    if not privacy.canaries:
        return None
    if mode.encrypted:
        raise ConfigError(f"privacy.canaries: only where the coordinator sums updates in plaintext (privacy.mode "
                          f"{privacy.mode!r} sums signed, encrypted updates of enrolled clients; canaries are not)")
    from fedgrad.privacy.accounting import default_delta  # dp-accounting and scipy: only when measuring
    from server.canaries import CanaryClients

    return CanaryClients(count=privacy.canaries, norm=privacy.dp_clip, rate=fed.clients_per_round / fed.clients,
                         poisson=fed.sampling == "poisson", seed=scenario.seed, model=model,
                         delta=privacy.delta or default_delta(fed.clients))


def check_strategy(scenario: Scenario) -> Strategy:
    """The scenario's strategy, refused with a one-line :class:`ConfigError` when its options are wrong, when
    ``federation.min_clients`` is below the fewest updates its rule is defined for, or when it needs each client's
    update and the privacy mode hides them (the mode says why); the privacy mode itself first refuses settings it
    cannot run with."""
    mode = privacy_mode(scenario)
    strategy = strategy_for(scenario)
    fed = scenario.federation
    if fed.min_clients < strategy.min_updates:
        raise ConfigError(f"federation.min_clients: strategy {fed.strategy!r} with its options needs at least "
                          f"{strategy.min_updates} updates a round (got min_clients = {fed.min_clients})")
    if strategy.needs_individual_updates:
        hidden = mode.hides_individual_updates()
        if hidden:
            raise ConfigError(f"federation.strategy: {fed.strategy!r} needs each client's update, which "
                              f"privacy.mode = {scenario.privacy.mode!r} does not give: {hidden}")
    return strategy
