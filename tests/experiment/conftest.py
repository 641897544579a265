"""Fixtures for the experiment-layer tests: a small, linearly separable bag-of-words dataset."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fedgrad.data import Shard


@dataclass(frozen=True)
class SeparableData:
    """Ids 2..9 are "spam words", 10..17 "ham words", 18..39 neutral; every email has 3 class words
    and 5 neutral ones, padded to 10 (0 = padding, 1 = UNK as in fedgrad.data)."""

    vocab_size: int = 40
    max_len: int = 10

    def shard(self, n: int, seed: int) -> Shard:
        rng = np.random.default_rng(seed)
        labels = (rng.random(n) < 0.4).astype(np.float32)
        ids = np.zeros((n, self.max_len), dtype=np.int32)
        for row, label in enumerate(labels):
            first = 2 if label else 10
            words = np.concatenate([rng.choice(np.arange(first, first + 8), 3, replace=False),
                                    rng.choice(np.arange(18, self.vocab_size), 5, replace=False)])
            ids[row, : len(words)] = rng.permutation(words)
        return Shard(ids, labels)


@pytest.fixture(scope="session")
def separable() -> SeparableData:
    return SeparableData()
