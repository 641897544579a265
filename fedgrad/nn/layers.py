"""Feed-forward layers. Initialisations follow PyTorch's defaults so results are comparable."""
from __future__ import annotations

import math
from typing import Any

from fedgrad import ops
from fedgrad.nn import functional as F
from fedgrad.nn.module import Module, Parameter
from fedgrad.tensor import Tensor, generator


def uniform_parameter(shape: tuple[int, ...], bound: float) -> Parameter:
    """Parameter drawn from U(-bound, bound) with fedgrad's seeded generator."""
    return Parameter(generator().uniform(-bound, bound, size=shape))


class Linear(Module):
    """``y = x @ weight.T + bias``; ``weight`` is ``(out_features, in_features)`` as in PyTorch,
    initialised from U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = uniform_parameter((out_features, in_features), bound)
        self.bias = uniform_parameter((out_features,), bound) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if self.bias is None:
            return ops.Linear.apply(x, self.weight)
        return ops.Linear.apply(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _embedding_weight(num_embeddings: int, embedding_dim: int, padding_idx: int | None) -> Parameter:
    """N(0, 1) rows with the padding row zeroed, as PyTorch does."""
    weight = generator().standard_normal((num_embeddings, embedding_dim))
    if padding_idx is not None:
        if not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(f"padding_idx {padding_idx} out of range for {num_embeddings} embeddings")
        weight[padding_idx] = 0.0
    return Parameter(weight)


class Embedding(Module):
    """Lookup table: integer ids of any shape -> ``ids.shape + (embedding_dim,)``.

    The backward is a scatter-add into the rows that were used (one ``bincount``), so a
    50,000-row table costs what the batch touches plus one pass over the gradient buffer."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = None if padding_idx is None else padding_idx % num_embeddings
        self.weight = _embedding_weight(num_embeddings, embedding_dim, self.padding_idx)

    def forward(self, ids: Any) -> Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}"


class EmbeddingBag(Module):
    """Sum or mean of token embeddings per row of a padded ``[B, L]`` id matrix -> ``[B, dim]``.

    Tokens equal to ``padding_idx`` (default 0, the vocabulary's ``PAD``) are excluded from the
    pool and from the mean's count; gather, pool and the scatter-add backward are one fused op."""

    def __init__(self, num_embeddings: int, embedding_dim: int, mode: str = "sum", padding_idx: int | None = 0):
        super().__init__()
        if mode not in ops.EMBEDDING_BAG_MODES:
            raise ValueError(f"EmbeddingBag mode must be one of {ops.EMBEDDING_BAG_MODES}, not {mode!r}")
        self.num_embeddings, self.embedding_dim, self.mode = num_embeddings, embedding_dim, mode
        self.padding_idx = None if padding_idx is None else padding_idx % num_embeddings
        self.weight = _embedding_weight(num_embeddings, embedding_dim, self.padding_idx)

    def forward(self, ids: Any) -> Tensor:
        return F.embedding_bag(ids, self.weight, self.mode, self.padding_idx)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}, padding_idx={self.padding_idx}"


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Dropout(Module):
    """Inverted dropout while training; identity in ``eval()`` mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
