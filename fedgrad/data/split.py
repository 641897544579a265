"""Stratified, seeded train/test split."""
from __future__ import annotations

import numpy as np

from fedgrad.errors import ConfigError


def train_test_split(labels: np.ndarray | list[int], test_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx), both sorted int64 positions into `labels`.

    Each class sends ``round(test_fraction * class_size)`` of its examples, chosen by a seeded
    permutation, to the test side, so both sides keep the corpus's spam rate and the same
    (labels, test_fraction, seed) always gives the same split.
    """
    labels = np.asarray(labels)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test_parts = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test_parts.append(members[: int(np.floor(test_fraction * len(members) + 0.5))])
    test_idx = np.sort(np.concatenate(test_parts)) if test_parts else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise ConfigError(f"test_fraction={test_fraction} leaves an empty train or test set of {len(labels)} emails")
    return train_idx.astype(np.int64), test_idx.astype(np.int64)
