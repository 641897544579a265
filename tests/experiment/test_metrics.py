"""Metrics from hand-computed confusion matrices, timers and byte counters."""
from __future__ import annotations

import time

import numpy as np
import pytest

from fedgrad.metrics import PHASES, ByteCounter, ConfusionMatrix, PhaseTimer


def test_counts_from_predictions():
    predicted = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    labels = np.array([1, 0, 0, 1, 1, 0, 1, 1])
    cm = ConfusionMatrix.from_predictions(predicted, labels)
    assert (cm.tp, cm.fp, cm.tn, cm.fn) == (3, 1, 2, 2)
    assert cm.n == 8
    assert cm.accuracy == pytest.approx(5 / 8)
    assert cm.precision == pytest.approx(3 / 4)
    assert cm.recall == pytest.approx(3 / 5)
    # harmonic mean of 3/4 and 3/5
    assert cm.f1 == pytest.approx(2 * 0.75 * 0.6 / (0.75 + 0.6))


def test_float_labels_and_boolean_predictions():
    cm = ConfusionMatrix.from_predictions(np.array([True, False]), np.array([1.0, 1.0], dtype=np.float32))
    assert (cm.tp, cm.fp, cm.tn, cm.fn) == (1, 0, 0, 1)


def test_no_positive_predictions_gives_zero_precision_and_f1():
    cm = ConfusionMatrix(tp=0, fp=0, tn=7, fn=3)
    assert cm.as_dict() == {"accuracy": 0.7, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_no_spam_at_all():
    cm = ConfusionMatrix(tp=0, fp=2, tn=8, fn=0)
    assert (cm.accuracy, cm.precision, cm.recall, cm.f1) == (0.8, 0.0, 0.0, 0.0)
    assert ConfusionMatrix().as_dict() == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_perfect_classifier():
    cm = ConfusionMatrix(tp=4, fp=0, tn=6, fn=0)
    assert cm.as_dict() == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_matrices_add_up_batch_by_batch():
    rng = np.random.default_rng(0)
    predicted, labels = rng.integers(0, 2, 1000), rng.integers(0, 2, 1000)
    whole = ConfusionMatrix.from_predictions(predicted, labels)
    parts = sum(
        (ConfusionMatrix.from_predictions(predicted[i : i + 64], labels[i : i + 64]) for i in range(0, 1000, 64)),
        ConfusionMatrix(),
    )
    assert parts == whole


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        ConfusionMatrix.from_predictions(np.ones(3), np.ones(4))


def test_phase_timer_accumulates_and_reports_total():
    timer = PhaseTimer()
    with timer.phase("train"):
        time.sleep(0.01)
    timer.add("train", 0.5)
    timer.add("upload", 0.25)
    times = timer.as_dict()
    assert list(times) == [*PHASES, "total"]
    assert times["train"] >= 0.51 and times["upload"] == 0.25 and times["encrypt"] == 0.0
    assert 0.01 <= times["total"] < 0.5  # wall time, not the sum of (possibly overlapping) phases
    with pytest.raises(KeyError):
        timer.add("nap", 1.0)


def test_phase_timer_counts_time_of_a_failing_phase():
    timer = PhaseTimer()
    with pytest.raises(RuntimeError), timer.phase("aggregate"):
        time.sleep(0.005)
        raise RuntimeError
    assert timer.as_dict()["aggregate"] >= 0.005


def test_byte_counter():
    counter = ByteCounter()
    counter.down += 100
    counter.up += 7
    assert counter.as_dict() == {"down": 100, "up": 7}
