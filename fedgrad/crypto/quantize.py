"""Clip, weight and quantize an update to signed fixed point; the inverse for aggregates.

A client's contribution is q = rint(w · clip(x, -C, C) · S) with scale S = Q / C and Q = 2**(b-1) - 1.
Because the weight w lies in (0, 1], |w · clip(x)| ≤ C and therefore |q| ≤ Q: weighting never widens
the range a slot must hold (see `packing` for why that makes the headroom bound independent of the weights).
The aggregate Σ_i q_i is exact; dividing by S once, after decryption, gives Σ_i w_i x_i up to
quantization error ≤ N / (2S).

Integer weights (`SecureAggConfig.max_weight` = W ≥ 1): the client quantizes its unweighted update,
q = rint(clip(x, -C, C) · S), and sends n_i = min(example count, W) next to it (`capped_weight`); the packing
encrypts n_i·q and n_i (see `packing`), and `weighted_mean` divides Σ n_i q_i by S · Σ n_i after decryption.
"""
from __future__ import annotations

import math

import numpy as np

from fedgrad.crypto.config import SecureAggConfig
from fedgrad.crypto.errors import EncodingError


def max_quantized(value_bits: int) -> int:
    """Q = 2**(b-1) - 1: the largest |q| (symmetric, so +C and -C quantize to ±Q)."""
    return (1 << (value_bits - 1)) - 1


def scale(cfg: SecureAggConfig) -> float:
    """S = Q / C: quantization steps per unit of the update."""
    return max_quantized(cfg.value_bits) / cfg.clip


def quantize(cfg: SecureAggConfig, update: np.ndarray, weight: float) -> np.ndarray:
    """Return int64 q with |q| ≤ Q for a flat (or flattenable) update of `cfg.n_params` values."""
    x = np.asarray(update, dtype=np.float64).reshape(-1)
    if x.size != cfg.n_params:
        raise EncodingError(f"update has {x.size} values, the secure-aggregation config expects {cfg.n_params}")
    if not np.isfinite(x).all():
        raise EncodingError("update contains NaN or infinite values; refusing to encrypt it")
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating)) \
            or not math.isfinite(weight) or not 0.0 < weight <= 1.0:
        raise EncodingError(f"client weight must lie in (0, 1], got {weight!r}")
    q_max = max_quantized(cfg.value_bits)
    q = np.rint(np.clip(x, -cfg.clip, cfg.clip) * (float(weight) * scale(cfg))).astype(np.int64)
    # |w·x·S| ≤ Q up to one float64 rounding, so rint already lands in [-Q, Q]; the clip makes the
    # packing bound a property of this code rather than of floating-point arithmetic.
    np.clip(q, -q_max, q_max, out=q)
    return q


def capped_weight(cfg: SecureAggConfig, weight: object) -> int:
    """A client's integer weight n_i: its example count (an integer ≥ 1), capped at `cfg.max_weight`."""
    if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)) or weight < 1:
        raise EncodingError(f"client weight must be an integer example count >= 1, got {weight!r}")
    return min(int(weight), cfg.max_weight)


def dequantize(cfg: SecureAggConfig, integer_sum: np.ndarray) -> np.ndarray:
    """Σ_i q_i → Σ_i w_i x_i as float64 (exact integers below 2**53, one division each)."""
    return integer_sum.astype(np.float64) / scale(cfg)


def weighted_mean(cfg: SecureAggConfig, integer_sum: np.ndarray, total_weight: int) -> np.ndarray:
    """Σ_i n_i q_i / (S · Σ_i n_i): the FedAvg mean of an integer-weighted aggregate, as float64."""
    if total_weight < 1:
        raise EncodingError(f"total weight must be positive, got {total_weight}")
    return integer_sum.astype(np.float64) / (scale(cfg) * total_weight)
