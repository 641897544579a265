"""The Gaussian mechanism of client-level DP-FedAvg and where its noise is added.

A round of DP-FedAvg (McMahan et al., 2018):

1. every selected client clips its whole update to L2 norm ``C`` (``clipping.clip_update``);
2. the sum of the clipped updates receives Gaussian noise of standard deviation ``z * C``;
3. the coordinator divides the noisy sum by the *expected* cohort size ``clients_per_round`` (a fixed
   denominator: dividing by the actual number of contributors would make the sensitivity data-dependent).

Where the noise of step 2 is added is the ``placement``:

``central``
    The coordinator adds ``N(0, (zC)^2)`` to the plaintext sum. It sees every clipped update in the clear, so
    it must be trusted; the guarantee protects clients from everyone who sees the released model.
``distributed``
    Each of ``m`` contributing clients adds ``N(0, (zC)^2 / m)`` to its own clipped update before secure
    aggregation. Independent Gaussians add up, so the decrypted aggregate carries the full variance
    ``(zC)^2`` while the coordinator never sees an individual update (threshold Paillier, ``fedgrad.modes.dp``)
    or the noise of any one client.

Caveat of distributed noise: the shares are sized for ``m`` contributors in advance, but clients drop out.
If only ``m' < m`` shares reach the aggregate, its variance is ``(m'/m) (zC)^2``, less than planned. Two
answers are provided:

* ``DPConfig.min_contributors`` (in ``fedgrad.privacy.config``): size the shares for the smallest cohort the
  key holder will ever decrypt (Paillier's ``min_clients``). Then every aggregate that is decrypted carries at
  least the planned noise; the price is extra noise (factor ``m'/min_contributors`` in variance) when more
  clients contribute.
* Whatever the sizing, the coordinator records ``effective_noise_multiplier(designed, actual)`` in the
  ``PrivacyLedger`` every round, so the reported epsilon is the one actually spent, never the planned one.

The analysis, as is common practice, counts the protected client's own share in the aggregate noise; a
stricter reading of add/remove adjacency credits only the others' shares, i.e. records
``effective_noise_multiplier(designed, actual - 1)``.

This module runs on clients too, so it does not import ``dp-accounting`` (scipy and ~65 MiB of memory);
calibration lives in ``fedgrad.privacy.config`` and ``fedgrad.privacy.accounting`` on the coordinator.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar, overload

import numpy as np

UpdateT = TypeVar("UpdateT", np.ndarray, Mapping[str, np.ndarray])


@overload
def add_gaussian_noise(update: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray: ...
@overload
def add_gaussian_noise(update: Mapping[str, np.ndarray], std: float,
                       rng: np.random.Generator) -> dict[str, np.ndarray]: ...
def add_gaussian_noise(update: np.ndarray | Mapping[str, np.ndarray], std: float,
                       rng: np.random.Generator) -> np.ndarray | dict[str, np.ndarray]:
    """Copy of ``update`` (an array or a name -> array mapping) plus i.i.d. ``N(0, std^2)`` noise.

    Noise is drawn in float64 and cast to each array's dtype. Mapping entries are drawn in sorted-name order,
    so the same generator gives the same noise whatever order the mapping was built in.
    """
    if std < 0:
        raise ValueError(f"noise std must be non-negative, got {std}")

    def noisy(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        return (array.astype(np.float64) + rng.normal(0.0, std, size=array.shape)).astype(array.dtype)

    if isinstance(update, Mapping):
        noised = {name: noisy(update[name]) for name in sorted(update)}
        return {name: noised[name] for name in update}
    return noisy(update)


@dataclass(frozen=True)
class GaussianMechanism:
    """Calibrated noise for one round: standard deviation ``noise_multiplier * clip`` on the sum of updates."""

    noise_multiplier: float
    clip: float

    @property
    def sum_std(self) -> float:
        """Standard deviation of the noise the aggregate (sum of clipped updates) must carry."""
        return self.noise_multiplier * self.clip

    def share_std(self, contributors: int) -> float:
        """Per-client standard deviation so that ``contributors`` independent shares sum to ``sum_std``."""
        if contributors < 1:
            raise ValueError(f"noise must be shared among at least one contributor, got {contributors}")
        return self.sum_std / math.sqrt(contributors)

    def noise_sum(self, update_sum: UpdateT, rng: np.random.Generator) -> UpdateT:
        """Central placement: the coordinator noises the plaintext sum of clipped updates."""
        return add_gaussian_noise(update_sum, self.sum_std, rng)

    def noise_share(self, clipped_update: UpdateT, contributors: int, rng: np.random.Generator) -> UpdateT:
        """Distributed placement: one client adds its share before secure aggregation.

        ``rng`` must be this client's own stream (``noise_rng(seed, round, client)``); see ``fedgrad.privacy.rng``.
        """
        return add_gaussian_noise(clipped_update, self.share_std(contributors), rng)

    def effective_noise_multiplier(self, designed_contributors: int, actual_contributors: int) -> float:
        """Noise multiplier the aggregate really carries when shares sized for ``designed_contributors`` came
        from ``actual_contributors`` clients: ``z * sqrt(actual / designed)``. Record this in the ledger."""
        if designed_contributors < 1 or actual_contributors < 1:
            raise ValueError(
                f"contributor counts must be positive, got designed={designed_contributors}, "
                f"actual={actual_contributors}"
            )
        return self.noise_multiplier * math.sqrt(actual_contributors / designed_contributors)
