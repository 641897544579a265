"""The records a round is made of: what a privacy mode announces with a TRAIN task, the encoded update that
comes back, a round's cohort and the weighted sum the round releases."""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Encoding(enum.IntEnum):
    """How an update's payload is encoded (the numbers are the wire enum's, ``proto/fedgrad.proto``)."""

    PLAIN = 1           # the delta's tensors, laid out as in the model's manifest
    PAILLIER = 2        # packed Paillier ciphertexts (``fedgrad.crypto`` wire format)
    PAILLIER_NAIVE = 3  # one Paillier ciphertext per value
    PAILLIER_MASKED = 4  # the mask key's Paillier ciphertexts, then the lattice-masked update (``crypto.masked``)


@dataclass(frozen=True)
class Announcement:
    """What a privacy mode tells each selected client about encoding its update for one round.

    ``mode`` names the mode (``fedgrad.modes``), which alone reads ``params``; ``public_key`` is the
    encryption key for encrypted modes; ``cohort`` is the round's selected clients, fixed before any upload,
    for modes whose clients sign what they contribute to.
    """

    mode: str
    params: Mapping[str, Any] = field(default_factory=dict)
    public_key: bytes = b""
    cohort: tuple[str, ...] = ()


@dataclass(frozen=True)
class EncodedUpdate:
    encoding: Encoding
    payload: bytes
    signature: bytes = b""  # modes whose decryptors verify contributions (``fedgrad.crypto.identity``)


@dataclass(frozen=True)
class RoundCohort:
    """The clients selected for one attempt at a round, with the strategy's aggregation weight of each."""

    round_number: int
    weights: Mapping[str, float]
    run_id: str = ""
    attempt: int = 1
    settings_digest: bytes = b""  # ``TaskConfig.settings_digest`` of the round's tasks
    model_digest: bytes = b""     # ``model_digest`` of the model the round's tasks carry

    @property
    def total_weight(self) -> float:
        """Σ weight over the cohort (exactly rounded, so it does not depend on the selection order)."""
        return math.fsum(self.weights.values())


@dataclass(frozen=True)
class ClientUpdate:
    """One client's update as it arrived, for a strategy that needs each one (a robust rule, QFedAvg): only a mode
    whose coordinator reads updates in plain can give it (``fedgrad.modes.base.Aggregation.new_keeping_accumulator``).
    """

    client_id: str
    weight: float                      # the strategy's aggregation weight for this client
    delta: Mapping[str, np.ndarray]    # the client's delta, unweighted, as decoded
    metrics: Mapping[str, float] = field(default_factory=dict)  # the client's reported training metrics


@dataclass(frozen=True)
class WeightedSum:
    """``Σ_k w_k·Δ_k`` per tensor (float64) and ``Σ_k w_k`` over one round's contributors; ``updates``: each of
    them, in client-id order, only from an accumulator that keeps them (empty otherwise: memory O(model))."""

    total: dict[str, np.ndarray]
    weight: float
    contributors: tuple[str, ...]
    updates: tuple[ClientUpdate, ...] = ()
