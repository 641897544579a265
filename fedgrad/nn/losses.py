"""Loss modules; each is the batch mean of its ``fedgrad.nn.functional`` counterpart."""
from __future__ import annotations

from typing import Any

from fedgrad.nn import functional as F
from fedgrad.nn.module import Module
from fedgrad.tensor import Tensor


class MSELoss(Module):
    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.mse_loss(input, target)


class CrossEntropyLoss(Module):
    """Logits ``[N, C]`` and integer class ids ``[N]``."""

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(logits, target)


class BCEWithLogitsLoss(Module):
    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, target)
