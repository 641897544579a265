"""The one-shot empirical ε estimator (fedgrad.privacy.empirical) where the truth is known: the bare Gaussian
mechanism, no training. Seeded; the tolerance is about 2.5 standard errors of ε̂ at K = 1000 canaries."""
from __future__ import annotations

import functools
import math

import dp_accounting
import numpy as np
import pytest

from fedgrad.privacy.empirical import (
    CanaryObserver,
    EpsilonEstimate,
    canary_direction,
    estimate_epsilon,
    flatten,
    threshold_lower_bound,
    two_gaussian_epsilon,
    unflatten,
    whitening,
)

DELTA = 1e-5
DIM = 20_000
CANARIES = 1000


def analytic_epsilon(noise_multiplier: float, delta: float = DELTA) -> float:
    """ε of the Gaussian mechanism (sensitivity 1, std ``noise_multiplier``) from dp-accounting's PLD accountant."""
    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier))
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize("z", [0.5, 1.0, 2.0, 4.0])
def test_two_gaussians_of_equal_spread_are_the_gaussian_mechanism(z: float) -> None:
    assert two_gaussian_epsilon((0.0, z), (1.0, z), DELTA) == pytest.approx(analytic_epsilon(z), rel=1e-3)


def test_two_gaussian_epsilon_edges() -> None:
    assert two_gaussian_epsilon((0.0, 1.0), (0.0, 1.0), DELTA) == 0.0
    assert two_gaussian_epsilon((0.0, 1.0), (-1.0, 1.0), DELTA) == pytest.approx(analytic_epsilon(1.0), rel=1e-3)
    # a wider alternative is distinguishable on its tails even at the same mean
    assert two_gaussian_epsilon((0.0, 1.0), (0.0, 1.5), DELTA) > 0.5
    assert two_gaussian_epsilon((0.0, 1e-3), (1.0, 1e-3), DELTA) == 1e3  # separated beyond the search range
    with pytest.raises(ValueError):
        two_gaussian_epsilon((0.0, 0.0), (1.0, 1.0), DELTA)


@functools.cache
def final_estimate(noise_multiplier: float) -> EpsilonEstimate:
    """ε̂ (final model) of the bare Gaussian mechanism with noise multiplier ``z``, 100 bootstrap resamples."""
    return bare_gaussian_mechanism(noise_multiplier).estimates(DELTA, bootstrap=100)["final_model"]


@functools.cache
def bare_gaussian_mechanism(noise_multiplier: float, seed: int = 0) -> CanaryObserver:
    """The sum of the K inserted canaries (unit vectors) plus N(0, z² I), observed once."""
    observer = CanaryObserver(seed, CANARIES, DIM)
    released = np.sum([canary_direction(seed, index, DIM) for index in range(CANARIES)], axis=0)
    observer.observe(released + np.random.default_rng(seed + 1).normal(0.0, noise_multiplier, DIM))
    return observer


@pytest.mark.parametrize("z", [1.0, 2.0, 4.0])
def test_estimate_lands_near_the_analytic_epsilon(z: float) -> None:
    truth = analytic_epsilon(z)
    final = final_estimate(z)
    assert abs(final.epsilon - truth) <= 0.15 * truth + 0.3, (final, truth)
    low, high = final.interval
    assert low < final.epsilon < high
    assert final.lower_bound < truth  # what the threshold test proves never exceeds the truth here
    assert final.canaries == CANARIES


def test_estimate_grows_as_noise_shrinks() -> None:
    estimates = [final_estimate(z).epsilon for z in (4.0, 1.0, 0.25)]
    assert estimates == sorted(estimates) and estimates[-1] > 2 * estimates[0]


def test_without_noise_the_estimate_is_large_and_the_proof_is_bounded_by_k() -> None:
    final = final_estimate(0.0)
    assert final.epsilon > 20
    # perfect separation of K + K samples proves at most about log K (Clopper-Pearson at 95%)
    assert math.log(CANARIES) - 2 < final.lower_bound < math.log(CANARIES)


def test_held_out_canaries_look_like_the_null() -> None:
    mean, std = final_estimate(1.0).held_out
    assert abs(mean) < 3 * std / math.sqrt(CANARIES)
    assert std == pytest.approx(1 / math.sqrt(DIM), rel=0.1)  # cosine of a random direction: N(0, 1/d)


def test_all_iterates_takes_the_largest_cosine_of_any_round() -> None:
    seed, k, dim = 3, 4, 64
    observer = CanaryObserver(seed, k, dim)
    first = canary_direction(seed, 0, dim)            # round 1 releases inserted canary 0 alone
    second = canary_direction(seed, 1, dim)           # round 2 inserted canary 1 alone
    observer.observe(first)
    observer.observe(second)
    final, every = observer.statistics()
    assert every[0] == pytest.approx(1.0) and every[1] == pytest.approx(1.0)
    assert 0.5 < min(final[:2]) and max(final[:2]) < 0.8  # each is half of the total: about cos 45°
    with pytest.raises(ValueError):
        observer.observe(np.zeros(dim + 1))


def test_threshold_lower_bound_needs_separation() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(size=(2, 500))
    assert threshold_lower_bound(same[0], same[1], DELTA) < 0.5
    assert threshold_lower_bound(np.zeros(500), np.ones(500), DELTA) > 4


def test_estimate_refuses_too_few_canaries() -> None:
    with pytest.raises(ValueError):
        estimate_epsilon([0.0], [1.0, 2.0], DELTA)


def test_flatten_round_trips_in_sorted_order() -> None:
    model = {"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), dtype=np.float32)}
    vector = flatten(model)
    assert vector.tolist() == [1, 1, 1, 1, 0, 1, 2]
    back = unflatten(vector, model)
    assert list(back) == ["b", "a"] and back["a"].dtype == np.float32 and back["b"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        unflatten(np.zeros(8), model)


def test_whitening_takes_out_real_updates_that_concentrate_on_few_coordinates() -> None:
    """Real updates add far more energy than the noise along every random direction (here 6.7 noise standard
    deviations) but on 5% of the coordinates; in the whitened frame ε̂ is the mechanism's again, and in the plain
    one (every coordinate at the same weight) it would be about that of z = 6.8 (0.6)."""
    observer = CanaryObserver(0, CANARIES, DIM)
    rng = np.random.default_rng(1)
    real = np.zeros(DIM)
    real[: DIM // 20] = rng.normal(0.0, 30.0, DIM // 20)
    released = np.sum([canary_direction(0, index, DIM) for index in range(CANARIES)], axis=0)
    observer.observe(released + rng.normal(0.0, 1.0, DIM) + real)
    truth = analytic_epsilon(1.0)
    final = observer.estimates(DELTA, bootstrap=0)["final_model"]
    assert abs(final.epsilon - truth) <= 0.15 * truth + 0.3, (final, truth)
    weights = whitening(observer.changes[0][None, :])
    assert np.median(weights[: DIM // 20]) < 0.05 * np.median(weights[DIM // 20:])  # the real coordinates
