"""Canary clients (``privacy.canaries = K``): the run measures its own empirical ε (``fedgrad.privacy.empirical``).

K canary clients take part in rounds by the scenario's own sampling, at the real clients' rate
``clients_per_round / clients`` (Poisson: each canary independently; fixed: ``round(K · rate)`` of them, at
least one), drawn from their own seeded stream so that the real cohort, its training and the DP noise are the
same with and without canaries. A sampled canary's update is ``dp_clip · c_i`` (its fixed unit direction): the
coordinator encodes it with the round's own mode, as a client would (DP clipping to the round's clip included),
and folds it into the round's accumulator beside the real updates, so it reaches the model by the path theirs
take. In modes without DP nothing bounds real updates; ``dp_clip`` still sets the canaries' norm there.

Canaries are not clients: they never join, hold no data and are not counted in ``clients_used``, the local or
client-side evaluations, bytes or any metric; the test accuracy includes their effect on the model (their cost),
and a round's sum includes them (their weight is the mean weight of the round's real cohort; DP-FedAvg's fixed
denominator is unchanged, and its ``privacy.contributors`` counts them, as extra clients).
Each released model change feeds a :class:`~fedgrad.privacy.empirical.CanaryObserver`; the run's summary then
reports ε̂ for the final model and for all iterates. Secure aggregation is refused by the scenario (its
decryptors sum signed updates of enrolled clients only). A resumed run observes only the rounds it trains.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from fedgrad.modes.base import DEFAULT_CLIENT_PRIVACY, UpdateAccumulator
from fedgrad.modes.resolve import encode_update
from fedgrad.privacy.empirical import CanaryObserver, EpsilonEstimate, canary_direction, flatten, unflatten
from fedgrad.protocol import TrainTask
from fedgrad.results.schema import EmpiricalPrivacyReport, EpsilonEstimateReport

#: Stream of the canaries' sampling (distinct from every other seeded stream of a run).
SAMPLING_STREAM = 0x43414E41


class CanaryClients:
    """The K canaries of one run: who takes part in each round, their updates, and the adversary's statistics."""

    def __init__(self, *, count: int, norm: float, rate: float, poisson: bool, seed: int,
                 model: Mapping[str, np.ndarray], delta: float) -> None:
        self.count, self.norm, self.rate, self.poisson, self.seed, self.delta = count, norm, rate, poisson, seed, delta
        self._template = {name: np.asarray(value) for name, value in model.items()}
        self.dim = sum(value.size for value in self._template.values())
        self.observer = CanaryObserver(seed, count, self.dim)
        self.taking_part: dict[int, list[int]] = {}  # round number -> the canaries that took part

    def sampled(self, round_number: int) -> list[int]:
        """The canaries taking part in ``round_number`` (the same on every attempt at that round)."""
        rng = np.random.default_rng([self.seed, SAMPLING_STREAM, round_number])
        if self.poisson:
            return [int(i) for i in np.flatnonzero(rng.random(self.count) < self.rate)]
        size = min(self.count, max(1, round(self.count * self.rate)))
        return sorted(int(i) for i in rng.choice(self.count, size=size, replace=False))

    def update(self, index: int) -> dict[str, np.ndarray]:
        """Canary ``index``'s update: its direction scaled to ``norm``, shaped like the model."""
        return unflatten(self.norm * canary_direction(self.seed, index, self.dim), self._template)

    def contribute(self, round_number: int, task: TrainTask, accumulator: UpdateAccumulator, weight: float) -> int:
        """Encode every sampled canary's update as ``task`` (the round's TRAIN task) asks and fold it into
        ``accumulator`` with aggregation ``weight``; how many took part."""
        indices = self.taking_part[round_number] = self.sampled(round_number)
        for index in indices:
            client_id = f"canary-{index}"
            encoded = encode_update(replace(task, local_examples=1), client_id, self.update(index),
                                    DEFAULT_CLIENT_PRIVACY)
            accumulator.add(client_id, weight, encoded.payload)
        return len(indices)

    def released(self, before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray]) -> None:
        """A round moved the global model from ``before`` to ``after``: what the adversary sees."""
        self.observer.observe(flatten(after) - flatten(before))

    def summary(self) -> EmpiricalPrivacyReport:
        """The run summary's ``empirical_privacy`` entry."""
        estimates = self.observer.estimates(self.delta, seed=self.seed) if self.observer.rounds else {}
        final, iterates = estimates.get("final_model"), estimates.get("all_iterates")
        return EmpiricalPrivacyReport(
            canaries=self.count, norm=self.norm, sampling_rate=self.rate, delta=self.delta,
            rounds_observed=self.observer.rounds, dimension=self.dim,
            participations_mean=sum(map(len, self.taking_part.values())) / self.count,
            final_model=_report(final) if final else None, all_iterates=_report(iterates) if iterates else None)


def _report(estimate: EpsilonEstimate) -> EpsilonEstimateReport:
    return EpsilonEstimateReport(epsilon=estimate.epsilon, interval=estimate.interval, lower_bound=estimate.lower_bound,
                                 inserted=estimate.inserted, held_out=estimate.held_out, canaries=estimate.canaries,
                                 delta=estimate.delta)
