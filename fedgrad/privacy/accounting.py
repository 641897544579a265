"""Privacy accounting for client-level DP-FedAvg, delegated to Google's maintained ``dp-accounting`` library.

One training round of DP-FedAvg is a sampled Gaussian mechanism: every client takes part with probability
``q = clients_per_round / clients`` and the sum of clipped updates (sensitivity ``C``) receives Gaussian noise
of standard deviation ``z * C``. As a ``DpEvent`` that is ``PoissonSampledDpEvent(q, GaussianDpEvent(z))``,
and ``R`` rounds are ``SelfComposedDpEvent(round, R)``. The accountant turns such an event into
``(epsilon, delta)``; nothing here re-derives that math.

Two accountants are offered:

* ``"rdp"`` (default): Rényi DP with the library's default orders. Fast (a few tens of milliseconds per
  evaluation) and slightly loose.
* ``"pld"``: privacy-loss distributions. Tighter (about 10% less noise for the same epsilon in typical
  settings) but around a second per evaluation, so calibration takes several seconds.

Sampling model (``federation.sampling``), and the adjacency each one is accounted under (a neighbouring
federation differs in one *client*, all of its data):

* ``PoissonSampling(q)``: every client joins a round independently with probability ``q`` (the cohort size
  varies; the coordinator divides the noisy sum by the expected size ``q·N``). Accounted exactly as
  ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` under **add/remove-one** adjacency: one client changes the
  sum of clipped updates by at most ``C``.
* ``FixedSizeSampling(N, m)``: exactly ``m`` of ``N`` clients, uniformly without replacement. Accounted as
  ``SampledWithoutReplacementDpEvent(N, m, GaussianDpEvent(z / 2))`` under **replace-one** adjacency (``N`` is
  public; RDP accountant only, Wang, Balle & Kasiviswanathan 2019, Thm. 27): replacing one client's update by
  another moves the sum by up to ``2C``, so the Gaussian's multiplier relative to that sensitivity is ``z/2``.
  With ``m = N`` (every client every round) no sampling happens and add/remove adjacency holds as for ``q = 1``.

The reported ``δ`` is the one given; ``DPMode`` uses ``1/N²`` unless the scenario sets ``privacy.delta``.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import dp_accounting
from dp_accounting import pld, rdp

from fedgrad.errors import ConfigError

AccountantName = Literal["rdp", "pld"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "pld")
SAMPLINGS: tuple[str, ...] = ("poisson", "fixed")


@dataclass(frozen=True)
class PoissonSampling:
    """Each client joins a round independently with probability ``rate``: add/remove-one adjacency."""

    rate: float
    adjacency = "add/remove one client"
    search_floor = 0.0  # where calibration starts its search for the noise multiplier

    def check(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"sampling rate (clients_per_round / clients) must be in (0, 1], got {self.rate}")

    def event(self, noise_multiplier: float) -> dp_accounting.DpEvent:
        return dp_accounting.PoissonSampledDpEvent(self.rate, dp_accounting.GaussianDpEvent(noise_multiplier))

    def relation(self) -> dp_accounting.NeighboringRelation:
        return dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE


@dataclass(frozen=True)
class FixedSizeSampling:
    """Exactly ``cohort`` of ``population`` clients a round, without replacement: replace-one adjacency (see
    the module docstring); the whole population every round is no sampling, accounted as Poisson at rate 1."""

    population: int
    cohort: int
    adjacency = "replace one client"
    search_floor = 1e-6  # the without-replacement RDP bound divides by the multiplier: never search from 0

    @property
    def rate(self) -> float:
        return self.cohort / self.population

    def check(self) -> None:
        if not 1 <= self.cohort <= self.population:
            raise ConfigError(f"a fixed-size cohort must hold 1 to {self.population} clients, got {self.cohort}")

    def event(self, noise_multiplier: float) -> dp_accounting.DpEvent:
        return dp_accounting.SampledWithoutReplacementDpEvent(
            self.population, self.cohort, dp_accounting.GaussianDpEvent(noise_multiplier / 2.0))

    def relation(self) -> dp_accounting.NeighboringRelation:
        return dp_accounting.NeighboringRelation.REPLACE_ONE


def sampling_model(kind: str, population: int, cohort: int) -> PoissonSampling | FixedSizeSampling:
    """The accounting model of ``federation.sampling = kind`` for ``cohort`` (expected) of ``population``."""
    if kind == "poisson" or (kind == "fixed" and cohort == population):
        return PoissonSampling(cohort / population)
    if kind == "fixed":
        return FixedSizeSampling(population, cohort)
    raise ConfigError(f"unknown sampling {kind!r}; choose one of {', '.join(SAMPLINGS)}")


#: A sampling model, or a bare rate for Poisson sampling at that rate.
Sampling = PoissonSampling | FixedSizeSampling | float


def _model(sampling: Sampling) -> PoissonSampling | FixedSizeSampling:
    return PoissonSampling(sampling) if isinstance(sampling, float | int) else sampling


class _DropRdpConvergenceWarnings(logging.Filter):
    """The RDP accountant warns when a fractional order's series does not converge and then simply drops that
    order, which only makes the bound marginally looser. The warning is noise for users, so it is filtered."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to converge" not in record.getMessage()


logging.getLogger("absl").addFilter(_DropRdpConvergenceWarnings())


def default_delta(n_clients: int) -> float:
    """``1 / N**2``: comfortably below ``1 / N``, the point where a mechanism may reveal one client outright."""
    if n_clients < 1:
        raise ConfigError(f"number of clients must be at least 1, got {n_clients}")
    return 1.0 / n_clients**2


def _check(sampling: Sampling, rounds: int, delta: float, accountant: str) -> None:
    model = _model(sampling)
    model.check()
    if isinstance(model, FixedSizeSampling) and accountant != "rdp":
        raise ConfigError("fixed-size sampling is accounted with the rdp accountant only (dp-accounting's PLD "
                          "accountant has no sampling without replacement); use federation.sampling = "
                          "\"poisson\" or the rdp accountant")
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}")
    if not 0.0 < delta < 1.0:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"unknown privacy accountant {accountant!r}; choose one of {', '.join(ACCOUNTANTS)}")


def make_accountant(accountant: AccountantName = "rdp", sampling: Sampling = 1.0) -> dp_accounting.PrivacyAccountant:
    """A fresh accountant for the adjacency of ``sampling`` (add/remove one client unless fixed-size)."""
    relation = _model(sampling).relation()
    if accountant == "rdp":
        return rdp.RdpAccountant(neighboring_relation=relation)
    if accountant == "pld":
        return pld.PLDAccountant(neighboring_relation=relation)
    raise ConfigError(f"unknown privacy accountant {accountant!r}; choose one of {', '.join(ACCOUNTANTS)}")


def round_event(noise_multiplier: float, sampling: Sampling) -> dp_accounting.DpEvent:
    """One DP-FedAvg round: sampled clients, Gaussian noise ``noise_multiplier * C`` on the sum of updates."""
    return _model(sampling).event(noise_multiplier)


def training_event(noise_multiplier: float, sampling: Sampling, rounds: int) -> dp_accounting.DpEvent:
    """``rounds`` identical DP-FedAvg rounds."""
    return dp_accounting.SelfComposedDpEvent(round_event(noise_multiplier, sampling), rounds)


@functools.lru_cache(maxsize=256)
def epsilon_spent(
    noise_multiplier: float,
    sampling: Sampling,
    rounds: int,
    delta: float,
    accountant: AccountantName = "rdp",
) -> float:
    """Epsilon at ``delta`` after ``rounds`` rounds with noise multiplier ``z`` (``inf`` for ``z == 0``);
    ``sampling`` is a sampling model or a Poisson rate."""
    _check(sampling, rounds, delta, accountant)
    if noise_multiplier < 0:
        raise ConfigError(f"noise multiplier must be non-negative, got {noise_multiplier}")
    if noise_multiplier == 0:
        return float("inf")
    event = training_event(noise_multiplier, sampling, rounds)
    return float(make_accountant(accountant, sampling).compose(event).get_epsilon(delta))


@functools.lru_cache(maxsize=64)
def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling: Sampling,
    rounds: int,
    accountant: AccountantName = "rdp",
    tol: float = 1e-4,
) -> float:
    """Smallest noise multiplier ``z`` whose ``rounds``-round epsilon at ``delta`` is at most ``target_epsilon``.

    Uses ``dp_accounting.calibrate_dp_mechanism`` (bracket search, then Brent's method, then a bisection
    fallback), which guarantees the returned ``z`` does not exceed the budget and lies within ``tol`` of the
    optimum. Results are cached: the call is pure and costs up to a few seconds with the PLD accountant.
    """
    _check(sampling, rounds, delta, accountant)
    if not target_epsilon > 0:
        raise ConfigError(f"target epsilon must be positive, got {target_epsilon}")
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: make_accountant(accountant, sampling),
            lambda z: training_event(z, sampling, rounds),
            target_epsilon,
            delta,
            bracket_interval=dp_accounting.LowerEndpointAndGuess(_model(sampling).search_floor, 1.0),
            tol=tol,
        )
    )


class PrivacyLedger:
    """Running account of the privacy spent by a training run, one round at a time.

    Rounds may carry different noise multipliers: with distributed noise, a round with more contributors
    than the noise shares were sized for carries more noise than planned (see
    ``GaussianMechanism.effective_noise_multiplier``), and recording the effective value keeps the reported
    epsilon honest. Each round costs one accountant composition (milliseconds with RDP, about a second
    with PLD).
    """

    def __init__(self, sampling: Sampling, delta: float, accountant: AccountantName = "rdp") -> None:
        _check(sampling, 1, delta, accountant)
        self.sampling = _model(sampling)
        self.delta = delta
        self.accountant_name = accountant
        self._accountant = make_accountant(accountant, sampling)
        self.history: list[float] = []

    def record_round(self, noise_multiplier: float) -> float:
        """Compose one round and return the cumulative epsilon after it."""
        if not noise_multiplier > 0:
            raise ConfigError(f"a DP round needs a positive noise multiplier, got {noise_multiplier}")
        self._accountant.compose(round_event(noise_multiplier, self.sampling))
        self.history.append(float(self._accountant.get_epsilon(self.delta)))
        return self.history[-1]

    @property
    def rounds(self) -> int:
        return len(self.history)

    @property
    def epsilon(self) -> float:
        """Cumulative epsilon so far (0 before the first round)."""
        return self.history[-1] if self.history else 0.0
