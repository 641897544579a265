"""Target guarantee of a DP-FedAvg run (``DPConfig``) and its calibration into a ``GaussianMechanism``.

Coordinator-side: it needs the accountant. Clients receive the calibrated noise multiplier, clip bound and
share count from the coordinator and only use ``fedgrad.privacy.mechanism``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedgrad.errors import ConfigError
from fedgrad.privacy.accounting import (
    ACCOUNTANTS,
    SAMPLINGS,
    AccountantName,
    FixedSizeSampling,
    PoissonSampling,
    PrivacyLedger,
    calibrate_noise_multiplier,
    default_delta,
    sampling_model,
)
from fedgrad.privacy.mechanism import GaussianMechanism

Placement = Literal["central", "distributed"]
PLACEMENTS: tuple[str, ...] = ("central", "distributed")


@dataclass(frozen=True)
class DPConfig:
    """Target guarantee of a DP-FedAvg run and everything needed to calibrate its noise.

    ``delta`` defaults to ``1 / clients**2``. ``sampling`` is how the coordinator draws each round's cohort
    (``federation.sampling``: ``"poisson"`` or ``"fixed"``), which fixes the adjacency of the guarantee
    (``fedgrad.privacy.accounting``). ``min_contributors`` (distributed placement only) is how many
    shares the noise is split into; it defaults to ``clients_per_round`` (see ``fedgrad.privacy.mechanism``
    for the dropout trade-off).
    """

    epsilon: float
    clip: float
    clients: int
    clients_per_round: int
    rounds: int
    delta: float | None = None
    placement: Placement = "central"
    accountant: AccountantName = "rdp"
    min_contributors: int | None = None
    sampling: str = "poisson"

    def __post_init__(self) -> None:
        if not self.epsilon > 0:
            raise ConfigError(f"privacy.epsilon must be positive, got {self.epsilon}")
        if not self.clip > 0:
            raise ConfigError(f"privacy.clip must be positive, got {self.clip}")
        if self.clients < 1:
            raise ConfigError(f"federation.clients must be at least 1, got {self.clients}")
        if not 1 <= self.clients_per_round <= self.clients:
            raise ConfigError(
                f"federation.clients_per_round must be in [1, {self.clients}], got {self.clients_per_round}"
            )
        if self.rounds < 1:
            raise ConfigError(f"federation.rounds must be at least 1, got {self.rounds}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta must be in (0, 1), got {self.delta}")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"unknown DP placement {self.placement!r}; choose one of {', '.join(PLACEMENTS)}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"unknown privacy accountant {self.accountant!r}; choose one of {', '.join(ACCOUNTANTS)}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling {self.sampling!r}; choose one of {', '.join(SAMPLINGS)}")
        if self.min_contributors is not None:
            if self.placement != "distributed":
                raise ConfigError("min_contributors only applies to distributed DP placement")
            if not 1 <= self.min_contributors <= self.clients_per_round:
                raise ConfigError(
                    f"min_contributors must be in [1, {self.clients_per_round}], got {self.min_contributors}"
                )

    @property
    def target_delta(self) -> float:
        return default_delta(self.clients) if self.delta is None else self.delta

    @property
    def sampling_rate(self) -> float:
        return self.clients_per_round / self.clients

    @property
    def sampling_model(self) -> PoissonSampling | FixedSizeSampling:
        """What the accountant is told about each round's cohort (and hence the adjacency)."""
        return sampling_model(self.sampling, self.clients, self.clients_per_round)

    @property
    def share_contributors(self) -> int:
        """Number of shares the noise is split into under distributed placement."""
        return self.clients_per_round if self.min_contributors is None else self.min_contributors

    def mechanism(self) -> GaussianMechanism:
        """Calibrate the smallest noise multiplier meeting ``(epsilon, target_delta)`` after all rounds."""
        z = calibrate_noise_multiplier(
            self.epsilon, self.target_delta, self.sampling_model, self.rounds, self.accountant
        )
        return GaussianMechanism(noise_multiplier=z, clip=self.clip)

    def ledger(self) -> PrivacyLedger:
        """A fresh per-round account for this run."""
        return PrivacyLedger(self.sampling_model, self.target_delta, self.accountant)
