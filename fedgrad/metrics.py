"""Classification metrics, per-phase timers and byte counters: the numbers a round record holds.

Metrics are computed from a binary confusion matrix (spam = positive class) so that batches and
clients can be summed exactly before any ratio is taken. Where a ratio has a zero denominator it is
defined as 0.0 (scikit-learn's ``zero_division=0``): a model that never predicts spam has precision 0
and recall 0, not NaN, so every value stays a finite JSON number and the failure remains visible.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

#: Phases of one federated round, in the order they happen (``time_s`` in ``metrics.jsonl``).
PHASES: tuple[str, ...] = ("broadcast", "train", "encrypt", "upload", "aggregate", "decrypt", "evaluate")


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of a binary classifier's decisions; ``+`` merges matrices from several batches."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @classmethod
    def from_predictions(cls, predicted: np.ndarray, labels: np.ndarray) -> ConfusionMatrix:
        """Count from 0/1 (or boolean) predictions and labels of the same length."""
        predicted = np.asarray(predicted).astype(bool).ravel()
        labels = np.asarray(labels).astype(bool).ravel()
        if predicted.shape != labels.shape:
            raise ValueError(f"{predicted.shape[0]} predictions for {labels.shape[0]} labels")
        return cls(
            tp=int(np.count_nonzero(predicted & labels)),
            fp=int(np.count_nonzero(predicted & ~labels)),
            tn=int(np.count_nonzero(~predicted & ~labels)),
            fn=int(np.count_nonzero(~predicted & labels)),
        )

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return ConfusionMatrix(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def precision(self) -> float:
        """Share of predicted spam that is spam; 0.0 when nothing is predicted spam."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Share of spam that is caught; 0.0 when there is no spam."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall, as 2·TP / (2·TP + FP + FN); 0.0 when TP = 0."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "precision": self.precision, "recall": self.recall, "f1": self.f1}


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


class PhaseTimer:
    """Wall-clock seconds spent in each phase of a round, plus the round's total since creation.

    Phases may overlap (clients train while others upload), so ``total`` is measured separately and
    is not the sum of the phases. Durations measured elsewhere (a client's local training) are added
    with :meth:`add`.
    """

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._seconds = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        if name not in self._seconds:
            raise KeyError(f"unknown phase {name!r}; phases are {', '.join(PHASES)}")
        self._seconds[name] += seconds

    def as_dict(self) -> dict[str, float]:
        """``{phase: seconds, ..., "total": seconds since the timer was created}``."""
        return {**self._seconds, "total": time.perf_counter() - self._started}


@dataclass
class ByteCounter:
    """Payload bytes moved in a round: ``down`` = coordinator to clients, ``up`` = clients to coordinator."""

    down: int = 0
    up: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"down": self.down, "up": self.up}
