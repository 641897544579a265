"""The spam classifiers, built from the fedgrad engine.

Every model maps a padded ``[B, L]`` matrix of token ids (0 = padding; each email is its set of
unique words, see :mod:`fedgrad.data`) to one score per email, ``(B,)``, and carries the loss it is
trained with, so training, evaluation and the federation never need to know which model they hold:

- ``book``   — Trask's *Grokking Deep Learning* spam model: one weight per word, summed over the
  email's words, squashed with a sigmoid and trained with the book's MSE, which *sums* the squared
  errors over the batch (so the book's ``lr = 0.01`` with batches of 500 means what it meant there).
- ``logreg`` — the same bag-of-words linear score plus a bias, trained as logistic regression
  (mean binary cross-entropy on the logit).
- ``mlp``    — a mean-pooled ``hidden``-dimensional embedding, ReLU, and a linear read-out.

Initialisation is seeded through the engine's generator (:func:`fedgrad.manual_seed`), so the same
seed gives the same starting weights on every client, process and device.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import fedgrad as fg
from fedgrad import backend, nn
from fedgrad.data.vocabulary import PAD, UNK
from fedgrad.errors import ConfigError
from fedgrad.nn import functional as F
from fedgrad.nn.module import Parameter
from fedgrad.scenario import ModelConfig
from fedgrad.tensor import Tensor, generator

# Word weights start in U(-BAG_INIT, BAG_INIT). The book draws U(-0.5, 0.5), but its scores are sums
# over an email's ~150 distinct words, so that starts with logits of magnitude ~3.5 where the
# sigmoid is flat and MSE barely learns; the book itself zeroes the weights before training the
# spam model. A small range keeps a seeded random start yet trains like zeros (on SpamAssassin it
# trails a zero start by a few points after the first epoch and matches it from about the third).
BAG_INIT = 0.01


class SpamModel(nn.Module):
    """Base of the spam classifiers: ``forward(ids) -> scores (B,)`` plus the model's own loss."""

    #: How ``loss_fn`` reduces over the batch: "mean", or "sum" for the book's summed MSE.
    loss_reduction: str = "mean"

    def loss_fn(self, scores: Tensor, labels: Tensor) -> Tensor:
        """Mean binary cross-entropy of the scores, read as logits, against 0/1 labels."""
        return F.binary_cross_entropy_with_logits(scores, labels)

    def predict_proba(self, scores: Tensor) -> Tensor:
        """Probability of spam for each score."""
        return scores.sigmoid()


def _known_words(ids: Any) -> Any:
    """``ids`` with out-of-vocabulary words (``UNK``) turned into padding, so they add nothing to a sum.

    An email's score is a sum over its words; if every unknown word added the one shared ``UNK``
    weight, that weight would be multiplied by counts from 0 to several hundred and its updates
    would swing every score at once (training oscillates by several points of accuracy). The book
    has no unknown words at all: words it never learned simply add nothing.
    """
    array = ids.data if isinstance(ids, Tensor) else ids
    return backend.array_module(array).where(array == UNK, PAD, array)


def _bag_of_words(vocab_size: int, dim: int, mode: str) -> nn.EmbeddingBag:
    """An ``EmbeddingBag`` whose weights start in U(-BAG_INIT, BAG_INIT), padding row zero."""
    bag = nn.EmbeddingBag(vocab_size, dim, mode=mode, padding_idx=PAD)
    weight = generator().uniform(-BAG_INIT, BAG_INIT, size=(vocab_size, dim))
    weight[PAD] = 0.0
    bag.weight = Parameter(weight)
    return bag


class BookModel(SpamModel):
    """``sigmoid(sum of word weights)`` trained with the book's summed squared error."""

    loss_reduction = "sum"

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embedding = _bag_of_words(vocab_size, 1, "sum")

    def forward(self, ids: Any) -> Tensor:
        return self.embedding(_known_words(ids)).reshape(-1)

    def loss_fn(self, scores: Tensor, labels: Tensor) -> Tensor:
        """Sum over the batch of ``(sigmoid(score) - label)^2``, as the book's ``MSELoss``."""
        return F.mse_loss(scores.sigmoid(), labels) * scores.shape[0]


class LogisticRegression(SpamModel):
    """``sum of word weights + bias`` as a logit, trained with binary cross-entropy."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embedding = _bag_of_words(vocab_size, 1, "sum")
        self.bias = Parameter(np.zeros(1, dtype=np.float32))

    def forward(self, ids: Any) -> Tensor:
        return self.embedding(_known_words(ids)).reshape(-1) + self.bias


class EmbeddingMLP(SpamModel):
    """Mean of ``hidden``-dimensional word vectors -> ReLU -> linear logit.

    Unknown words keep their shared ``UNK`` vector here: in a mean its weight is bounded by 1.
    """

    def __init__(self, vocab_size: int, hidden: int = 32) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, hidden, mode="mean", padding_idx=PAD)
        self.relu = nn.ReLU()
        self.out = nn.Linear(hidden, 1)

    def forward(self, ids: Any) -> Tensor:
        return self.out(self.relu(self.embedding(ids))).reshape(-1)


#: Each model class, called as ``cls(vocab_size, **options)`` (the base ``SpamModel`` takes no arguments).
_MODELS: dict[str, Callable[..., SpamModel]] = {"book": BookModel, "logreg": LogisticRegression, "mlp": EmbeddingMLP}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)


def build_model(name: str, vocab_size: int, *, seed: int = 0, **options: Any) -> SpamModel:
    """A freshly initialised model; the same ``(name, vocab_size, seed, options)`` gives the same weights.

    ``options`` are the model's own settings (``hidden`` for ``mlp``). This reseeds the engine's
    generator, which is what makes every client start from identical weights.
    """
    if name not in _MODELS:
        raise ConfigError(f"model.name: must be one of {', '.join(MODEL_NAMES)} (got {name!r})")
    if vocab_size < 2:
        raise ConfigError(f"vocabulary has {vocab_size} entries; a model needs at least one word besides padding")
    fg.manual_seed(seed)
    return _MODELS[name](vocab_size, **options)


def model_from_config(config: ModelConfig, vocab_size: int, *, seed: int) -> SpamModel:
    """The scenario's ``[model]`` as a fresh model (``hidden`` applies to ``mlp`` only)."""
    options = {"hidden": config.hidden} if config.name == "mlp" else {}
    return build_model(config.name, vocab_size, seed=seed, **options)
