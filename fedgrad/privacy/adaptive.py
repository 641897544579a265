"""Quantile-based adaptive clipping for DP-FedAvg (Andrew, Thakkar, McMahan & Ramaswamy, NeurIPS 2021).

Instead of a fixed clip C, the coordinator tracks the γ-quantile of the clients' update norms. Each round every
contributing client's update yields one bit, ``b_i = 1`` when its norm was within the round's clip ``C_t``; the
coordinator releases the noisy count of those bits and moves the clip geometrically towards the quantile:

    C_{t+1} = C_t · exp(−η · (b̄ − γ)),   b̄ = (Σ_i (b_i − ½) + N(0, σ_b²)) / m + ½

with m the expected cohort size. The bits are centred (b_i − ½), so one client moves the count by ½ under
add/remove adjacency (by 1 under replace-one, where the update sum's sensitivity doubles too).

Privacy cost (the paper's Theorem 1): releasing the update sum with noise multiplier ``z_Δ`` together with the
count with standard deviation ``σ_b`` is one Gaussian mechanism with multiplier ``z = (z_Δ⁻² + (2σ_b)⁻²)^(-1/2)``.
So the accountant calibrates ``z`` for the target ε exactly as with a fixed clip, and the update noise is raised
to ``z_Δ = (z⁻² − (2σ_b)⁻²)^(-1/2)`` (:func:`update_noise_multiplier`): the clip's quantile estimate is paid for
out of the same budget, and every round is recorded in the ledger with ``z``. The paper's default
``σ_b = m / 20`` makes that price small (z_Δ is a few percent above z for m in the hundreds).

Under central placement the coordinator sees each clipped update, so it derives ``b_i`` from the norm it
receives (an update shorter than ``C_t`` was not clipped; one of norm ``C_t`` was, up to float rounding).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fedgrad.errors import ConfigError

#: The paper's choice of count noise: σ_b = expected cohort / 20.
COUNT_NOISE_DIVISOR = 20.0


def update_noise_multiplier(noise_multiplier: float, count_std: float) -> float:
    """``z_Δ`` for the update sum such that it and a count noised with ``count_std`` together spend what one
    Gaussian mechanism with ``noise_multiplier`` spends (module docstring)."""
    rest = noise_multiplier ** -2 - (2.0 * count_std) ** -2
    if not rest > 0:
        raise ConfigError(f"privacy.dp_clip_count_std = {count_std:g} is too small for noise multiplier "
                          f"{noise_multiplier:.3g}: it must exceed {noise_multiplier / 2:.3g} (half the multiplier)")
    return rest ** -0.5


@dataclass
class AdaptiveClip:
    """The clip of the next round, moved towards the ``target_quantile`` of the update norms."""

    clip: float
    target_quantile: float
    learning_rate: float
    count_std: float

    def __post_init__(self) -> None:
        if not 0.0 < self.target_quantile < 1.0:
            raise ConfigError(f"privacy.dp_clip_quantile must lie in (0, 1), got {self.target_quantile}")
        if not self.learning_rate > 0 or not self.clip > 0 or not self.count_std > 0:
            raise ConfigError("adaptive clipping needs a positive initial clip, learning rate and count noise")

    def update(self, noisy_centred_count: float, expected_cohort: float) -> float:
        """Move the clip after a round whose Σ(b_i − ½) + noise was ``noisy_centred_count``; the new clip."""
        fraction = noisy_centred_count / expected_cohort + 0.5
        self.clip *= math.exp(-self.learning_rate * (fraction - self.target_quantile))
        return self.clip
