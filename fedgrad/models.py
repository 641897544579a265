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
- ``lstm``   — ``hidden``-dimensional word vectors read in order by the engine's LSTM over an email's
  first ``max_len`` words, its outputs averaged over the words present, and a linear read-out.
- ``"package.module:factory"`` — a user's model (:func:`user_model`; the contract is in
  ``docs/custom-models.md``): any :class:`fedgrad.nn.Module` with this ``forward``; subclassing
  :class:`SpamModel` gives it the default loss and probabilities.

Initialisation is seeded through the engine's generator (:func:`fedgrad.manual_seed`), so the same
seed gives the same starting weights on every client, process and device.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

import fedgrad as fg
from fedgrad import backend, nn
from fedgrad.data.vocabulary import PAD, UNK
from fedgrad.errors import ConfigError
from fedgrad.nn import functional as F
from fedgrad.nn.module import Parameter
from fedgrad.tensor import Tensor, generator, no_grad
from fedgrad.usercode import describe_failure, is_reference, load_reference

if TYPE_CHECKING:  # the scenario's schema names this module's models (MODEL_NAMES): only its type here
    from fedgrad.scenario import ModelConfig

# Word weights start in U(-BAG_INIT, BAG_INIT). The book draws U(-0.5, 0.5), but its scores are sums
# over an email's ~150 distinct words, so that starts with logits of magnitude ~3.5 where the
# sigmoid is flat and MSE barely learns; the book itself zeroes the weights before training the
# spam model. A small range keeps a seeded random start yet trains like zeros (on SpamAssassin it
# trails a zero start by a few points after the first epoch and matches it from about the third).
BAG_INIT = 0.01


class SpamModel(nn.Module):
    """Base of the spam classifiers: ``forward(ids) -> scores (B,)`` plus the model's own loss.

    A user model may subclass it to inherit ``loss_fn`` and ``predict_proba`` (scores read as logits).
    """

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


class LSTMClassifier(SpamModel):
    """Word vectors -> the engine's :class:`~fedgrad.nn.LSTM` over the first ``max_len`` words -> the mean of
    its outputs over the words present (padding excluded) -> a linear logit.

    A batch is cut to its longest email (within ``max_len``), so short emails cost short loops; the mean
    makes every step's output count, which trains faster than reading only the last state.
    """

    def __init__(self, vocab_size: int, hidden: int = 32, max_len: int = 64) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(vocab_size, hidden, padding_idx=PAD)
        self.lstm = nn.LSTM(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, ids: Any) -> Tensor:
        array = (ids.data if isinstance(ids, Tensor) else ids)[:, : self.max_len]
        xp = backend.array_module(array)
        present = array != PAD
        length = max(int(present.sum(axis=1).max()), 1) if array.size else 1
        array, present = array[:, :length], present[:, :length]
        steps = self.embedding(xp.ascontiguousarray(array.T))          # [L, B, H], time first
        outputs, _ = self.lstm(steps)
        mask = xp.ascontiguousarray(present.T[:, :, None]).astype(xp.float32)
        counts = xp.maximum(present.sum(axis=1), 1).astype(xp.float32)[:, None]
        pooled = (outputs * Tensor(mask)).sum(axis=0) / Tensor(counts)  # [B, H]
        return self.out(pooled).reshape(-1)


#: Each model class, called as ``cls(vocab_size, **options)`` (the base ``SpamModel`` takes no arguments).
_MODELS: dict[str, Callable[..., SpamModel]] = {"book": BookModel, "logreg": LogisticRegression, "mlp": EmbeddingMLP,
                                                "lstm": LSTMClassifier}
#: The built-in models' names, which ``model.name`` may take besides a user's factory.
MODEL_NAMES = tuple(_MODELS)


def build_model(name: str, vocab_size: int, *, seed: int = 0, **options: Any) -> SpamModel:
    """A freshly initialised model; the same ``(name, vocab_size, seed, options)`` gives the same weights.

    ``options`` are the model's own settings (``hidden`` for ``mlp``). This reseeds the engine's
    generator, which is what makes every client start from identical weights.
    """
    if name not in _MODELS:
        raise ConfigError(f"model.name: must be one of {', '.join(MODEL_NAMES)} or \"package.module:factory\" "
                          f"(got {name!r})")
    if vocab_size < 2:
        raise ConfigError(f"vocabulary has {vocab_size} entries; a model needs at least one word besides padding")
    fg.manual_seed(seed)
    return _MODELS[name](vocab_size, **options)


def model_from_config(config: ModelConfig, vocab_size: int, *, seed: int, code_dir: str = "") -> SpamModel:
    """The scenario's ``[model]`` as a fresh model: a built-in one (``hidden`` for ``mlp`` and ``lstm``,
    ``max_len`` for ``lstm``) or the user factory ``config.name`` names, imported from ``code_dir`` or
    ``PYTHONPATH`` and called with ``config.options``."""
    if is_reference(config.name):
        return user_model(config.name, vocab_size, seed=seed, code_dir=code_dir, **config.options)
    options: dict[str, int] = {}
    if config.name in ("mlp", "lstm"):
        options["hidden"] = config.hidden
    if config.name == "lstm":
        options["max_len"] = config.max_len
    return build_model(config.name, vocab_size, seed=seed, **options)


#: The batch a user model is checked on: two emails of three words (the second one padded).
_PROBE_LENGTH = 3


def user_model(reference: str, vocab_size: int, *, seed: int, code_dir: str = "", **options: Any) -> SpamModel:
    """``factory(vocab_size, seed=seed, **options)`` for the factory ``reference`` names, checked against the
    contract (an :class:`~fedgrad.nn.Module` with parameters whose ``forward`` maps ``[B, L]`` ids to ``[B]``
    scores) on a two-email batch; a model that is not a :class:`SpamModel` gets its defaults through
    :class:`UserModel`. Every failure is one :class:`ConfigError` naming ``model.name``."""
    factory = load_reference(reference, key="model.name", code_dir=code_dir)
    if not callable(factory):
        raise ConfigError(f"model.name: {reference!r} is a {type(factory).__name__}, not a callable factory")
    fg.manual_seed(seed)
    try:
        built = factory(vocab_size, seed=seed, **options)
    except Exception as error:  # noqa: BLE001 - user code may raise anything; the key is what the user needs
        raise ConfigError(f"model.name: {reference}({vocab_size}, seed={seed}, "
                          f"{', '.join(f'{k}={v!r}' for k, v in options.items()) or 'no options'}) failed: "
                          f"{describe_failure(error)}") from None
    if not isinstance(built, nn.Module):
        raise ConfigError(f"model.name: {reference!r} returned a {type(built).__name__}, not a fedgrad.nn.Module")
    model = built if isinstance(built, SpamModel) else UserModel(built)
    if not list(model.parameters()):
        raise ConfigError(f"model.name: {reference!r} returned a model without parameters: nothing to train")
    _check_forward(reference, model, vocab_size)
    return model


class UserModel(SpamModel):
    """A user's :class:`~fedgrad.nn.Module` as a :class:`SpamModel`: its own ``loss_fn``/``predict_proba`` where
    it has them, the defaults (binary cross-entropy on logits, sigmoid) where it does not. Its parameters
    are named ``net.<the user's names>``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, ids: Any) -> Tensor:
        scores: Tensor = self.net(ids)
        return scores

    def loss_fn(self, scores: Tensor, labels: Tensor) -> Tensor:
        own = getattr(self.net, "loss_fn", None)
        return own(scores, labels) if callable(own) else super().loss_fn(scores, labels)

    def predict_proba(self, scores: Tensor) -> Tensor:
        own = getattr(self.net, "predict_proba", None)
        return own(scores) if callable(own) else super().predict_proba(scores)


def _check_forward(reference: str, model: SpamModel, vocab_size: int) -> None:
    ids = np.zeros((2, _PROBE_LENGTH), dtype=np.int32)
    ids[0] = np.arange(1, _PROBE_LENGTH + 1) % vocab_size
    ids[1, 0] = 1
    try:
        with no_grad():
            scores = model(ids)
    except Exception as error:  # noqa: BLE001 - user code may raise anything
        raise ConfigError(f"model.name: {reference!r}: forward(ids [2, {_PROBE_LENGTH}]) failed: "
                          f"{describe_failure(error)}") from None
    shape = getattr(scores, "shape", None)
    if not isinstance(scores, Tensor) or shape != (2,):
        got = f"a Tensor of shape {shape}" if isinstance(scores, Tensor) else f"a {type(scores).__name__}"
        raise ConfigError(f"model.name: {reference!r}: forward(ids [B, L]) must return a Tensor of scores [B]; "
                          f"for B = 2 it returned {got}")
