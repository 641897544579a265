"""Empirical ε from random canaries: the one-shot estimator of Andrew, Kairouz, Oh, Oprea, McMahan and
Suriyakumar, "One-shot Empirical Privacy Estimation for Federated Learning" (ICLR 2024, arXiv 2302.03098).

The method (the paper's estimator for the Gaussian mechanism, then for federated training with canary clients;
its reference implementation is the ``one_shot_epe`` directory of google-research/federated, from which the
threat models' statistics below were checked; the paper's body was not available while writing this, so its
sections are named, not its equation numbers):

1. Draw ``2K`` directions ``c_i`` uniformly on the unit sphere of the model's ``d`` parameters (a normalized
   standard normal vector). The first ``K`` are *inserted*: canary clients that, whenever sampled, send
   ``clip · c_i`` as their update (the largest update the mechanism admits, pointing nowhere the data does). The
   other ``K`` are *held out*: never sent, they show what the statistic looks like for a canary that was absent.
2. Statistic: the cosine ``<c_i, Δ> / ||Δ||`` between a canary and what the adversary sees.
   *Final model*: ``Δ = θ_T - θ_0``, the released model minus the initial one. *All iterates* (the adversary
   who sees every round's model; ``max_model_delta_cosines`` in the reference implementation): the maximum
   over rounds ``t`` of the cosine with the round's model change ``θ_t - θ_{t-1}``, for inserted and held-out
   canaries alike. Unlike the paper, the cosines are taken in a whitened frame (``whitening``: each coordinate
   scaled by the inverse square root of its energy in the released changes, above a floor), which takes out
   most of the real updates (see *Real updates* below) and leaves the bare mechanism's statistic as it was.
3. In high dimension a held-out canary's cosine is ``N(0, 1/d)`` and an inserted one's is Gaussian too (the
   paper's asymptotic analysis of the Gaussian mechanism), so the estimator fits ``N(μ₀, σ²)`` to the held-out
   statistics and ``N(μ₁, σ²)`` to the inserted ones (one pooled variance, see ``estimate_epsilon``) and reports
   ``ε̂``, the ε at which the pair is (ε, δ)-indistinguishable: the least ε with
   ``δ(ε) = max(H_ε(P‖Q), H_ε(Q‖P)) ≤ δ``, ``H_ε(P‖Q) = P[L > ε] - e^ε Q[L > ε]`` (the hockey-stick divergence)
   and ``L = log p/q``, a quadratic in the observation when the variances differ (``two_gaussian_epsilon``). For
   the Gaussian mechanism with noise multiplier ``z`` this recovers its ε exactly as ``d → ∞`` (ibid.):
   the two fits become ``N(0, z²)`` and ``N(1, z²)`` scaled by the same factor.

Bias. The other inserted canaries add to each one's statistic as noise would: ``z²`` behaves as ``z²/T + K/d``
after T releases, so ε̂ falls below the truth unless ``d ≫ K·T/z²`` (``benchmarks/empirical_epsilon.py``).

Real updates. In a federated run the clients' own updates add to every canary's statistic as noise would: along
a random direction their sum has norm ``||S_t||/√d``. On spam_dp_many (about 1,000 clipped one-email updates a
round, d = 12,905) that is 1.4 to 1.8 clip norms a round, against the mechanism's ``z`` clip norms (z = 0.88 to
3.2 for ε = 8 to 1 over 5 rounds): the plain cosine measures the noise multiplier ``sqrt(z² + 1.5²)`` and
cannot tell ε = 8 from ε = 4. The real updates concentrate on few coordinates (98% of the released changes'
energy in 10% of them), which ``whitening`` down-weights. Measured on the changes a 5-round ``none`` run
released (K = 1000, seed 0), with the mechanism's noise added for each ε: ε̂ (all iterates) for none, ε = 8, 4, 2
and 1 is 3.8, 1.5, 1.2, 0.7, 0.1 with the plain cosine and 8.1, 2.1, 1.5, 0.8, 0.0 whitened (final model: 1.9,
1.7, 1.3, 1.2, 0.4 and 5.6, 2.3, 1.5, 1.3, 0.3). What is left of them biases ε̂ down, never up (held-out and
inserted canaries see it alike), and is not in ``interval``: a run's ε̂ under ``none`` (no noise) is the ceiling
it leaves at that K and T.

Error. ``ε̂`` is a point estimate from ``K + K`` samples; ``interval`` is a percentile bootstrap over the
canaries (resampling both sets). ``lower_bound`` is what the same statistics *prove* at the given confidence:
the classic threshold test of Jagielski et al. (2020) with Clopper-Pearson bounds on its false-positive and
false-negative rates, maximised over thresholds; it cannot exceed about ``log K``.

What ε̂ is not: an upper bound. It measures one attack (random canaries against the released model); a
stronger adversary (crafted canaries, known data) may do better, and nothing here bounds the mechanism.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special, stats

#: Bootstrap resamples behind ``EpsilonEstimate.interval``.
BOOTSTRAP = 200
#: Confidence of the interval and of the lower bound.
CONFIDENCE = 0.95
#: Canary directions are drawn this many at a time (memory: CHUNK · d float64).
CHUNK = 64
#: ε̂ is searched up to this value (beyond it the two samples are separated for any practical purpose).
MAX_EPSILON = 1e3
#: Coordinates whose energy in the released changes is above this quantile are down-weighted (``whitening``).
WHITENING_QUANTILE = 0.9


# ---- the canaries --------------------------------------------------------------------------------------------

def canary_direction(seed: int, index: int, dim: int) -> np.ndarray:
    """Canary ``index``'s unit direction in ``d = dim`` dimensions (float64), reproducible from ``(seed, index)``:
    a standard normal vector normalized, i.e. uniform on the sphere."""
    vector = np.random.default_rng([seed, index]).standard_normal(dim)
    return vector / np.linalg.norm(vector)


def _directions(seed: int, indices: Sequence[int], dim: int) -> Iterator[np.ndarray]:
    """The directions of ``indices`` as row blocks of at most ``CHUNK`` rows."""
    for start in range(0, len(indices), CHUNK):
        yield np.stack([canary_direction(seed, index, dim) for index in indices[start:start + CHUNK]])


def flatten(state: Mapping[str, np.ndarray]) -> np.ndarray:
    """A model (or a model change) as one float64 vector, tensors in sorted-name order (the canaries' frame)."""
    return np.concatenate([np.asarray(state[name], dtype=np.float64).ravel() for name in sorted(state)])


def unflatten(vector: np.ndarray, like: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``vector`` (as ``flatten`` orders it) cut back into tensors shaped and typed like ``like``'s."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for name in sorted(like):
        template = np.asarray(like[name])
        out[name] = vector[offset:offset + template.size].reshape(template.shape).astype(template.dtype)
        offset += template.size
    if offset != vector.size:
        raise ValueError(f"a vector of {vector.size} values does not fit a model of {offset}")
    return {name: out[name] for name in like}


# ---- ε of two Gaussians --------------------------------------------------------------------------------------

def _log_mass(lo: float, hi: float, mean: float, std: float) -> float:
    """``log P[lo < Y < hi]`` for ``Y ~ N(mean, std²)``, accurate far in either tail."""
    a, b = (lo - mean) / std, (hi - mean) / std
    if a > 0:  # both in the upper tail: use survival functions, P[Y > x] = Φ(-x)
        return _log_diff(float(special.log_ndtr(-a)), float(special.log_ndtr(-b)))
    return _log_diff(float(special.log_ndtr(b)), float(special.log_ndtr(a)))


def _log_diff(log_x: float, log_y: float) -> float:
    """``log(x - y)`` from ``log x >= log y``."""
    if log_y == -math.inf:
        return log_x
    if log_y >= log_x:
        return -math.inf
    return log_x + math.log1p(-math.exp(log_y - log_x))


def _log_hockey_stick(p: tuple[float, float], q: tuple[float, float], epsilon: float) -> float:
    """``log H_ε(P‖Q)`` (−inf when it is 0) for ``P = N(p)``, ``Q = N(q)`` given as (mean, std): the mass
    ``P[S] - e^ε Q[S]`` of the set ``S = {y: log p(y)/q(y) > ε}``, where the log ratio is ``a y² + b y + c``."""
    (m1, s1), (m0, s0) = p, q
    a = 0.5 * (1 / s0**2 - 1 / s1**2)
    b = m1 / s1**2 - m0 / s0**2
    c = 0.5 * (m0**2 / s0**2 - m1**2 / s1**2) + math.log(s0 / s1)
    intervals: list[tuple[float, float]]
    if a == 0:
        if b == 0:
            return -math.inf  # identical distributions
        root = (epsilon - c) / b
        intervals = [(root, math.inf)] if b > 0 else [(-math.inf, root)]
    else:
        discriminant = b * b - 4 * a * (c - epsilon)
        if discriminant <= 0:
            return 0.0 if a > 0 else -math.inf  # the ratio is above ε everywhere (vacuous) or nowhere
        r1, r2 = sorted(((-b - math.sqrt(discriminant)) / (2 * a), (-b + math.sqrt(discriminant)) / (2 * a)))
        intervals = [(-math.inf, r1), (r2, math.inf)] if a > 0 else [(r1, r2)]
    log_p = float(np.logaddexp.reduce([_log_mass(lo, hi, m1, s1) for lo, hi in intervals]))
    log_q = float(np.logaddexp.reduce([_log_mass(lo, hi, m0, s0) for lo, hi in intervals]))
    if log_p == -math.inf:
        return -math.inf
    return _log_diff(log_p, epsilon + log_q)


def two_gaussian_epsilon(null: tuple[float, float], alternative: tuple[float, float], delta: float) -> float:
    """The least ε at which ``N(null)`` and ``N(alternative)`` (each (mean, std)) are (ε, δ)-indistinguishable in
    both directions (see the module docstring); ``MAX_EPSILON`` when even that does not reach δ. Equal stds
    ``z`` and means 0 and 1 give the Gaussian mechanism's ε (Balle & Wang 2018, Theorem 8)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if min(null[1], alternative[1]) <= 0:
        raise ValueError("both Gaussians need a positive standard deviation")
    log_delta = math.log(delta)

    def excess(epsilon: float) -> float:
        return max(_log_hockey_stick(alternative, null, epsilon), _log_hockey_stick(null, alternative, epsilon)) \
            - log_delta

    if excess(0.0) <= 0:
        return 0.0
    if excess(MAX_EPSILON) > 0:
        return MAX_EPSILON
    high = 1.0
    while excess(high) > 0:
        high *= 4
    return float(optimize.brentq(excess, 0.0 if high == 1.0 else high / 4, high, xtol=1e-6))


# ---- the lower bound a threshold test proves ---------------------------------------------------------------

def _clopper_pearson_high(errors: np.ndarray, trials: int, alpha: float) -> np.ndarray:
    """One-sided upper Clopper-Pearson bounds on error rates, each holding with probability 1 - alpha."""
    return np.where(errors >= trials, 1.0, stats.beta.ppf(1 - alpha, errors + 1, np.maximum(trials - errors, 1)))


def threshold_lower_bound(held_out: np.ndarray, inserted: np.ndarray, delta: float,
                          confidence: float = CONFIDENCE) -> float:
    """The ε a threshold test on the statistics proves with ``confidence`` (Jagielski et al. 2020): for every
    threshold, upper bounds on the false-positive rate (held out, at or above it) and false-negative rate
    (inserted, below it) give ``ε >= log((1 - δ - FNR) / FPR)`` and ``log((1 - δ - FPR) / FNR)``; the largest.
    Both bounds hold together with the given confidence (each at half its failure probability)."""
    alpha = (1 - confidence) / 2
    thresholds = np.unique(np.concatenate([held_out, inserted]))
    false_positives = held_out.size - np.searchsorted(np.sort(held_out), thresholds, side="left")
    false_negatives = np.searchsorted(np.sort(inserted), thresholds, side="left")
    fpr = _clopper_pearson_high(false_positives, held_out.size, alpha)
    fnr = _clopper_pearson_high(false_negatives, inserted.size, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        bounds = np.maximum(np.log((1 - delta - fnr) / fpr), np.log((1 - delta - fpr) / fnr))
    bounds = bounds[np.isfinite(bounds)]
    return float(max(bounds.max(initial=0.0), 0.0))


# ---- the estimate -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EpsilonEstimate:
    """ε̂ of one threat model, with its error (see the module docstring)."""

    epsilon: float                  # ε̂: ε of the two fitted Gaussians
    interval: tuple[float, float]   # bootstrap interval of ε̂ at CONFIDENCE
    lower_bound: float              # what a threshold test proves at CONFIDENCE
    inserted: tuple[float, float]   # (mean, std) of the inserted canaries' statistic
    held_out: tuple[float, float]   # (mean, std) of the held-out canaries' statistic
    canaries: int                   # K (inserted; as many held out)
    delta: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _fit(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1))


def _epsilon(null: np.ndarray, alt: np.ndarray, delta: float) -> float:
    """ε of the two Gaussians fitted to ``null`` and ``alt`` with one pooled variance."""
    (m0, s0), (m1, s1) = _fit(null), _fit(alt)
    pooled = math.sqrt(((null.size - 1) * s0**2 + (alt.size - 1) * s1**2) / (null.size + alt.size - 2))
    return two_gaussian_epsilon((m0, pooled), (m1, pooled), delta)


def estimate_epsilon(held_out: Sequence[float] | np.ndarray, inserted: Sequence[float] | np.ndarray, delta: float,
                     *, seed: int = 0, bootstrap: int = BOOTSTRAP) -> EpsilonEstimate:
    """ε̂ from the held-out and inserted canaries' statistics (cosines, or their maxima over rounds).

    One variance is fitted to both samples (pooled): under the Gaussian mechanism an inserted and a held-out
    canary see the same noise, so their statistics differ by a shift (the paper's Algorithm 1 computes ε of
    ``N(0, σ²)`` against ``N(μ, σ²)``; so do the maxima over rounds when every canary takes part in every
    round). The reference implementation fits the maxima's two variances apart; measured on the bare Gaussian
    mechanism (``benchmarks/empirical_epsilon.py``, d = 20,000, K = 1000, one release), that turns sampling
    error in the variances (about ``sqrt(2/K)``) into ε̂ well above the truth at δ = 1e-5 (z = 1: 5.78 for
    4.38; z = 4: 1.88 for 0.93), so it is not used here.
    """
    null, alt = np.asarray(held_out, dtype=np.float64), np.asarray(inserted, dtype=np.float64)
    if min(null.size, alt.size) < 2:
        raise ValueError("estimating ε needs at least two inserted and two held-out canaries")
    rng = np.random.default_rng(seed)
    resampled = [_epsilon(rng.choice(null, null.size), rng.choice(alt, alt.size), delta)
                 for _ in range(bootstrap)]
    tail = (1 - CONFIDENCE) / 2
    interval = ((float(np.quantile(resampled, tail)), float(np.quantile(resampled, 1 - tail))) if bootstrap
                else (math.nan, math.nan))
    return EpsilonEstimate(_epsilon(null, alt, delta), interval, threshold_lower_bound(null, alt, delta),
                           _fit(alt), _fit(null), int(alt.size), delta)


class CanaryObserver:
    """The adversary's statistics over a run: fed every released model change, it computes at the end each
    canary's cosine with the total change (final model) and its largest cosine with one round's change (all
    iterates), both in the whitened frame of ``whitening`` (see there).

    Canaries ``0 .. canaries-1`` are inserted, ``canaries .. 2·canaries-1`` held out (``canary_direction``).
    Memory: the ``T·d`` released changes; the ``2K`` directions are generated once, ``CHUNK`` at a time, when the
    statistics are computed (the rounds themselves only store their change).
    """

    def __init__(self, seed: int, canaries: int, dim: int) -> None:
        if canaries < 2:
            raise ValueError(f"estimating ε needs at least 2 canaries, got {canaries}")
        self.seed, self.canaries, self.dim = seed, canaries, dim
        self.changes: list[np.ndarray] = []

    @property
    def rounds(self) -> int:
        return len(self.changes)

    def observe(self, change: np.ndarray) -> None:
        """One round's released model change ``θ_t - θ_{t-1}`` (as ``flatten`` orders it)."""
        if change.shape != (self.dim,):
            raise ValueError(f"a model change of shape {change.shape} is not ({self.dim},)")
        self.changes.append(np.asarray(change, dtype=np.float64).copy())

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Every canary's statistic (inserted first, then held out) for the final model and for all iterates: its
        cosine with the whitened total change, and its largest cosine with one round's whitened change (0 for a
        zero change)."""
        if not self.changes:
            raise ValueError("no round was observed")
        changes = np.stack(self.changes)
        scale = np.sqrt(whitening(changes))
        rounds = changes * scale
        total = rounds.sum(axis=0)
        rounds /= np.maximum(np.linalg.norm(rounds, axis=1), np.finfo(float).tiny)[:, None]
        total /= max(float(np.linalg.norm(total)), np.finfo(float).tiny)
        final, every = [], []
        for block in _directions(self.seed, list(range(2 * self.canaries)), self.dim):
            block = block * scale
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            final.append(block @ total)
            every.append((block @ rounds.T).max(axis=1))
        return np.concatenate(final), np.concatenate(every)

    def estimates(self, delta: float, seed: int = 0, bootstrap: int = BOOTSTRAP) -> dict[str, EpsilonEstimate]:
        """ε̂ for the adversary who sees the final model and for the one who sees every round's model (the same
        statistics, hence the same estimate, after one round)."""
        k = self.canaries
        final, every = self.statistics()
        iterates = estimate_epsilon(every[k:], every[:k], delta, seed=seed, bootstrap=bootstrap)
        if self.rounds == 1:
            return {"final_model": iterates, "all_iterates": iterates}
        return {"final_model": estimate_epsilon(final[k:], final[:k], delta, seed=seed, bootstrap=bootstrap),
                "all_iterates": iterates}


def whitening(changes: np.ndarray) -> np.ndarray:
    """The weight of each coordinate in the adversary's frame, from the released changes ``[T, d]`` alone:
    ``1 / max(e_j, e_q)``, where ``e_j`` is coordinate ``j``'s mean square over the rounds and ``e_q`` its
    ``WHITENING_QUANTILE`` quantile over the coordinates.

    A held-out canary's cosine with the release varies by the release's energy along it, noise and real updates
    alike; real updates concentrate on few coordinates (the frequent words' rows: 98% of the energy of
    spam_dp_many's released changes lies in 10% of the coordinates), so along a random direction they act as
    noise far above the mechanism's. Weighting each coordinate by the inverse of its energy (the likelihood-ratio
    test for a known shift under independent Gaussian coordinates) takes them out where they dominate; the floor
    keeps the weights of the other coordinates equal, so that on the bare mechanism (noise alone, every
    coordinate alike) the statistic stays the paper's cosine up to the few coordinates above the floor. Held-out
    and inserted canaries go through the same frame, so the held-out ones still show what absence looks like.
    """
    energy = np.mean(np.square(changes), axis=0)
    floor = float(np.quantile(energy, WHITENING_QUANTILE))
    if floor <= 0:  # a release that moved at most a tenth of the coordinates: every moved one at full weight
        floor = float(energy[energy > 0].min(initial=1.0))
    return 1.0 / np.maximum(energy, floor)
