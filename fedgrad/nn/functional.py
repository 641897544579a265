"""Stateless versions of the layers and losses (``fedgrad.nn.functional as F``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from fedgrad import backend, ops
from fedgrad.backend import Array
from fedgrad.tensor import Tensor, generator, lift


def _ids(ids: Any, weight: Tensor) -> Array:
    """Raw integer array from a tensor, array or nested list of token ids, on ``weight``'s device."""
    array = ids.data if isinstance(ids, Tensor) else ids
    if not hasattr(array, "dtype"):
        array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, not {array.dtype}")
    return backend.to_device(array, weight.device)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with ``weight`` shaped ``(out_features, in_features)``."""
    if bias is None:
        return ops.Linear.apply(x, weight)
    return ops.Linear.apply(x, weight, bias)


def relu(x: Tensor) -> Tensor:
    return x.relu()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.softmax(axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.log_softmax(axis)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` (inverted
    dropout, so evaluation needs no rescaling). Identity when not training or ``p == 0``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    keep = generator().random(x.shape) >= p
    mask = backend.to_device((keep / (1.0 - p)).astype(x.dtype), x.device)
    return x * Tensor(mask, dtype=mask.dtype)


def embedding(ids: Any, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` for integer ``ids`` of any shape -> ``ids.shape + (dim,)``.
    The ``padding_idx`` row gets no gradient."""
    return ops.IndexSelect.apply(weight, indices=_ids(ids, weight), axis=0, padding_idx=padding_idx)


def embedding_bag(ids: Any, weight: Tensor, mode: str = "sum", padding_idx: int | None = 0) -> Tensor:
    """Sum or mean of the embeddings of each row of a padded ``[B, L]`` id matrix -> ``[B, dim]``;
    ``padding_idx`` tokens are skipped (see :class:`fedgrad.ops.EmbeddingBag`)."""
    return ops.EmbeddingBag.apply(weight, ids=_ids(ids, weight), mode=mode, padding_idx=padding_idx)


def mse_loss(input: Tensor, target: Any) -> Tensor:
    """Mean squared error over all elements."""
    return ops.MSELoss.apply(input, lift(target, input))


def binary_cross_entropy_with_logits(logits: Tensor, target: Any) -> Tensor:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against 0/1 (or soft) targets."""
    return ops.BCEWithLogitsLoss.apply(logits, lift(target, logits))


def cross_entropy(logits: Tensor, target: Any) -> Tensor:
    """Mean over the batch of ``-log_softmax(logits)[i, target[i]]``; ``target`` holds class ids."""
    return ops.CrossEntropyLoss.apply(logits, targets=_ids(target, logits))
