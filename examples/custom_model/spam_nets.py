"""A user's own spam model, written outside fedgrad: ``model.name = "spam_nets:make_two_layer"``.

The factory gets the vocabulary size, the scenario's seed and the ``[model] options`` table as keywords, and
returns a :class:`fedgrad.nn.Module` whose ``forward`` maps padded token ids ``[B, L]`` to scores ``[B]``.
Subclassing :class:`fedgrad.models.SpamModel` gives it the default loss (binary cross-entropy on the scores as
logits) and ``predict_proba`` (sigmoid); override either to change them.
"""
from __future__ import annotations

from typing import Any

from fedgrad import nn
from fedgrad.models import SpamModel
from fedgrad.tensor import Tensor


class TwoLayerBag(SpamModel):
    """Mean of ``dim``-wide word vectors -> Linear -> Tanh -> Linear: one score per email."""

    def __init__(self, vocab_size: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.words = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, ids: Any) -> Tensor:
        scores: Tensor = self.body(self.words(ids)).reshape(-1)
        return scores


def make_two_layer(vocab_size: int, *, seed: int, dim: int = 16, hidden: int = 16) -> TwoLayerBag:
    """The factory the scenario names. fedgrad has already seeded the engine's generator with ``seed``, so
    every client builds the same starting weights; ``seed`` is here for factories that draw on their own."""
    return TwoLayerBag(vocab_size, dim, hidden)
