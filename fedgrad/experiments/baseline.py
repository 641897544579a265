"""The centralized baseline a federated run is measured against (``fedgrad train --centralized``,
``fedgrad.baseline``).

Builds the scenario's dataset exactly as a simulation does (same corpus, split, vocabulary and seed), pools every
client's training shard, trains the scenario's model on it with the scenario's ``[train]`` settings, and evaluates
on the same held-out test set after every epoch. By default it runs ``federation.rounds x train.epochs`` epochs:
as many passes over each example as the federated run makes when every client takes part in every round.

The run directory (``output.dir``/<scenario>-<timestamp>) has the same files as a federated run, with one record
per epoch in metrics.jsonl; its report says ``mode: centralized``.
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
from tqdm import tqdm

from fedgrad.errors import ConfigError
from fedgrad.metrics import PhaseTimer
from fedgrad.models import model_from_config
from fedgrad.results import RunWriter
from fedgrad.results.schema import RunOutcome, RunSummary, Scores, round_record
from fedgrad.scenario import Scenario
from fedgrad.training import evaluate, train_local


def train_centralized(scenario: Scenario, *, epochs: int | None = None) -> tuple[RunWriter, RunSummary]:
    """Train ``scenario``'s model on the pooled training data for ``epochs`` (default: ``federation.rounds x
    train.epochs``); the run directory's writer (its records, its directory) and the run's summary."""
    fed, train = scenario.federation, scenario.train
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"epochs: must be an integer >= 1 (got {epochs!r})")
    epochs = epochs or fed.rounds * train.epochs
    dataset = scenario.build_dataset()
    pooled, test = dataset.train, dataset.test
    model = model_from_config(scenario.model, len(dataset.vocab), seed=scenario.seed,
                              code_dir=scenario.code_dir).to(train.device)
    writer = RunWriter(scenario.output.dir, scenario)  # only once the data loaded: no empty run dirs
    initial = evaluate(model, test)
    with tqdm(total=epochs, desc=f"{scenario.name} (centralized)", unit="epoch", file=sys.stderr,
              dynamic_ncols=True) as bar:
        for epoch in range(1, epochs + 1):
            timer = PhaseTimer()
            with timer.phase("train"):
                trained = train_local(model, pooled, epochs=1, batch_size=train.batch_size, lr=train.lr,
                                      optimizer=train.optimizer, momentum=train.momentum,
                                      seed=epoch_seed(scenario.seed, epoch))
            with timer.phase("evaluate"):
                evaluation = evaluate(model, test)
            writer.log_round(round_record(
                epoch, evaluation, clients_selected=1, clients_used=1, clients_dropped=0,
                time_s=timer.as_dict(), train_loss=trained["loss"]))
            bar.set_postfix(acc=f"{100 * evaluation['accuracy']:.2f}%", loss=f"{trained['loss']:.4f}", refresh=False)
            bar.update(1)
    summary = writer.finish(RunOutcome(
        mode="centralized", epochs=epochs, initial=dataclasses.replace(Scores.of(initial), n=None),
        train_examples=len(pooled), test_examples=len(test), vocab_size=len(dataset.vocab)))
    return writer, summary


def epoch_seed(seed: int, epoch: int) -> int:
    """Shuffling seed of one epoch, derived from the scenario seed so a rerun repeats every epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
