"""Local training and evaluation on a synthetic separable dataset."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedgrad.data import Shard
from fedgrad.metrics import ConfusionMatrix
from fedgrad.models import build_model
from fedgrad.training import evaluate, train_local

SETTINGS: dict[str, dict[str, Any]] = {
    "book": dict(batch_size=50, lr=0.05, optimizer="sgd", momentum=0.0),
    "logreg": dict(batch_size=50, lr=0.5, optimizer="sgd", momentum=0.9),
    "mlp": dict(batch_size=50, lr=0.05, optimizer="adam", momentum=0.0),
}


@pytest.fixture(scope="module")
def data(separable):
    """(vocab size, 300 training emails, 200 test emails)."""
    return separable.vocab_size, separable.shard(300, seed=1), separable.shard(200, seed=2)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_accuracy_rises(name, data):
    vocab_size, train, test = data
    model = build_model(name, vocab_size, seed=0)
    before = evaluate(model, test)
    result = train_local(model, train, epochs=5, seed=0, **SETTINGS[name])
    after = evaluate(model, test)
    assert result["n_examples"] == 300 and result["steps"] == 5 * 6
    assert after["accuracy"] >= 0.97 and after["accuracy"] > before["accuracy"] + 0.2
    assert after["loss"] < before["loss"]
    assert 0 < result["loss"] < before["loss"]


def test_last_partial_batch_is_trained_not_dropped(separable):
    vocab_size = separable.vocab_size
    model = build_model("book", vocab_size, seed=0)
    result = train_local(model, separable.shard(30, seed=3), epochs=2, batch_size=500, lr=0.05,
                         optimizer="sgd", momentum=0.0, seed=0)
    assert result["steps"] == 2
    assert not np.array_equal(model.state_dict()["embedding.weight"],
                              build_model("book", vocab_size, seed=0).state_dict()["embedding.weight"])


def test_same_seed_same_run_different_seed_different_order(data):
    vocab_size, train, test = data

    def run(seed):
        model = build_model("logreg", vocab_size, seed=0)
        result = train_local(model, train, epochs=2, seed=seed, **SETTINGS["logreg"])
        return result, evaluate(model, test), model.state_dict()

    (r1, e1, w1), (r2, e2, w2), (_, _, w3) = run(5), run(5), run(6)
    assert r1 == r2 and e1 == e2
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    assert not np.array_equal(w1["embedding.weight"], w3["embedding.weight"])


def test_proximal_term_keeps_weights_near_the_start(data):
    vocab_size, train, _ = data
    start = build_model("logreg", vocab_size, seed=0).state_dict()

    def distance(mu):
        model = build_model("logreg", vocab_size, seed=0)
        train_local(model, train, epochs=3, seed=0, prox_mu=mu, **SETTINGS["logreg"])
        return sum(float(((value - start[name]) ** 2).sum()) for name, value in model.state_dict().items())

    free, tethered = distance(0.0), distance(1.0)
    assert tethered < 0.5 * free


def test_empty_shard_trains_nothing():
    model = build_model("book", 40, seed=0)
    empty = Shard(np.zeros((0, 10), dtype=np.int32), np.zeros(0, dtype=np.float32))
    result = train_local(model, empty, epochs=3, batch_size=10, lr=0.1, optimizer="sgd", momentum=0.0, seed=0)
    assert result["n_examples"] == 0 and result["steps"] == 0 and np.isnan(result["loss"])


def test_evaluate_matches_hand_computed_confusion_matrix():
    vocab_size = 40
    model = build_model("book", vocab_size, seed=0)
    weights = np.zeros((vocab_size, 1), dtype=np.float32)
    weights[2] = 1.0  # only word 2 marks spam
    model.load_state_dict({"embedding.weight": weights})
    ids = np.array([[2, 5], [2, 0], [3, 0], [4, 2], [6, 0]], dtype=np.int32)
    labels = np.array([1, 0, 1, 1, 0], dtype=np.float32)
    # predictions: spam, spam, ham (score 0 -> p = 0.5, not > 0.5), spam, ham
    result = evaluate(model, Shard(ids, labels), batch_size=2)
    expected = ConfusionMatrix(tp=2, fp=1, tn=1, fn=1).as_dict()
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    p = 1 / (1 + np.exp(-1.0))
    squared = [(p - 1) ** 2, p**2, 0.25, (p - 1) ** 2, 0.25]
    assert result["loss"] == pytest.approx(np.mean(squared), rel=1e-5)
    assert result["n"] == 5


@pytest.mark.parametrize("name", ["book", "mlp"])
def test_evaluate_does_not_depend_on_batch_size(name, data):
    vocab_size, train, test = data
    model = build_model(name, vocab_size, seed=0)
    train_local(model, train, epochs=1, seed=0, **SETTINGS[name])
    small, large = evaluate(model, test, batch_size=7), evaluate(model, test, batch_size=1000)
    assert small == pytest.approx(large, rel=1e-5)
