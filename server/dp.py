"""Client-level DP-FedAvg on the coordinator (``privacy.mode = "dp"``): clipped, unweighted sums released
with Gaussian noise, and the privacy they spend.

Every selected client clips its whole update to L2 norm C (``privacy.dp_clip``), so one client changes the
sum of updates by at most C; the released sum carries Gaussian noise of standard deviation z·C, with the
noise multiplier z calibrated by ``dp-accounting`` so that all ``federation.rounds`` rounds together spend
``privacy.epsilon`` at δ (``privacy.delta``, 0 = 1/clients²). Every update counts once, whatever the
client's example count (weights would make the sensitivity data-dependent), and the noisy sum is divided
by the fixed ``clients_per_round`` rather than the number that answered (see ``fedgrad.privacy.mechanism``).
The :class:`~fedgrad.privacy.PrivacyLedger` composes each released round with the noise it really carried;
the cumulative ε is in every round record and in the summary.

``dp_placement = "central"``: clients send clipped updates in plain; the coordinator checks each norm
(refusing one above C, up to float rounding), sums them exactly and adds the noise itself, drawn from
``noise_rng(seed, round)`` so that simulations repeat. A deployment would leave it unseeded: whoever knows
the seed can subtract the noise. The coordinator sees every clipped update, so it must be trusted.

``dp_placement = "distributed"``: runs packed Paillier secure aggregation underneath. Each client adds its
own share N(0, (zC)²/m) of the noise, m = ``clients_per_round``, before encrypting, so the decrypted sum
carries the full noise while the coordinator sees neither an update nor any one client's noise. When fewer
than m clients contribute, the sum carries less noise than planned; the ledger records the noise actually
present, ``z·sqrt(contributors/m)``, so the reported ε is the one spent. The coordinator cannot check
norms inside ciphertexts: clipping, like the plaintext range, rests on the clients (proving it would take
zero-knowledge proofs).

Quantization range under distributed DP (:func:`quantization_clip`). Paillier encodes each coordinate in
[-R, R] on a grid of R / (2^(value_bits-1) - 1). A clipped coordinate lies in [-C, C], the noise share has
standard deviation σ, and R = C + k·σ with k the smallest multiple of 0.5 for which the probability that
*any* noise draw of the run (parameters × clients_per_round × rounds) exceeds k·σ is at most
b = 1% of δ / (1 + e^ε). Outside that event the encoding clips nothing, so the run is
(ε, δ_Gauss + (1 + e^ε)·b)-DP; the Gaussian is calibrated for δ_Gauss = 99% of δ, and the total is δ.
For spam_fedavg (13k parameters, 10 clients, 10 rounds, ε = 4) k ≈ 7.5, and at 16 bits the grid step stays
four orders of magnitude below the noise on the sum. Like other continuous-noise implementations, the
analysis ignores the rounding of each client's values to that grid; a rigorous treatment would use the
distributed discrete Gaussian (Kairouz, Liu & Steinke, ICML 2021).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedgrad.metrics import PhaseTimer
from fedgrad.privacy import DPConfig, GaussianMechanism, default_delta, l2_norm, noise_rng
from fedgrad.scenario import Scenario
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import decode_tensors
from server.aggregation import Aggregation, PlainAggregation, RoundCohort, UpdateAccumulator
from server.secure import build_paillier_aggregation
from server.strategies import WeightedSum
from server.validation import Rejected

#: Relative slack on the norm check: clients clip in float64 and send float32 (``fedgrad.privacy.clipping``).
NORM_TOLERANCE = 1e-5
#: Share of δ that the quantization range may cost under distributed placement (module docstring).
TRUNCATION_DELTA_SHARE = 0.01


def quantization_clip(clip: float, share_std: float, *, draws: int, budget: float) -> tuple[float, float]:
    """``(R, k)``: the per-coordinate range R = clip + k·share_std for a clipped, noised update, with k the
    smallest multiple of 0.5 such that ``draws`` Gaussian draws exceed k standard deviations with
    probability at most ``budget`` (union bound; see the module docstring)."""
    k = 1.0
    while draws * math.erfc(k / math.sqrt(2.0)) > budget:
        k += 0.5
    return clip + k * share_std, k


class DPAggregation(Aggregation):
    """One run's DP-FedAvg: the calibrated mechanism, the ledger, and the sum underneath (plain or Paillier)."""

    def __init__(self, config: DPConfig, inner: Aggregation, *, delta: float, seed: int,
                 noise_range_sigmas: float | None = None) -> None:
        self.config = config
        self.mechanism: GaussianMechanism = config.mechanism()
        self.ledger = config.ledger()
        self.delta = delta
        self._inner = inner
        self._seed = seed
        self._noise_range_sigmas = noise_range_sigmas
        self.distributed = config.placement == "distributed"
        share_std = self.mechanism.share_std(config.share_contributors) if self.distributed else 0.0
        self.announcement = pb.DifferentialPrivacy(clip=config.clip, noise_std=share_std)

    def new_accumulator(self, specs: Sequence[pb.TensorSpec], cohort: RoundCohort) -> DPAccumulator:
        return DPAccumulator(self, self._inner.new_accumulator(specs, cohort), specs, cohort.round_number)

    def release(self, round_number: int, summed: WeightedSum, timer: PhaseTimer) -> tuple[WeightedSum, dict]:
        """The noisy sum over the fixed cohort size, and the round's privacy record (composed into the ledger)."""
        contributors = len(summed.contributors)
        if self.distributed:  # the clients' shares are in the sum already
            total = summed.total
            noise_multiplier = self.mechanism.effective_noise_multiplier(self.config.share_contributors, contributors)
        else:
            with timer.phase("aggregate"):
                total = self.mechanism.noise_sum(summed.total, noise_rng(self._seed, round_number))
            noise_multiplier = self.mechanism.noise_multiplier
        epsilon = self.ledger.record_round(noise_multiplier)
        released = WeightedSum(total=total, weight=float(self.config.clients_per_round),
                               contributors=summed.contributors)
        return released, {"epsilon_spent": epsilon, "noise_multiplier": noise_multiplier,
                          "contributors": contributors}

    def summary(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "mode": "dp", "placement": self.config.placement, "epsilon_target": self.config.epsilon,
            "epsilon_spent": self.ledger.epsilon, "delta": self.delta,
            "noise_multiplier": self.mechanism.noise_multiplier, "clip": self.config.clip,
            "accountant": self.config.accountant, "sampling_rate": self.config.sampling_rate,
            "rounds_accounted": self.ledger.rounds, "guarantee": self.config.guarantee(self.mechanism),
        }
        if self.distributed:
            entry["noise_share_std"] = self.announcement.noise_std
            entry["quantization_range_sigmas"] = self._noise_range_sigmas
            entry["secure_aggregation"] = self._inner.summary()
        return entry


class DPAccumulator(UpdateAccumulator):
    """One round attempt of DP-FedAvg around the sum ``inner`` computes (see the module docstring)."""

    def __init__(self, aggregation: DPAggregation, inner: UpdateAccumulator, specs: Sequence[pb.TensorSpec],
                 round_number: int) -> None:
        self._aggregation = aggregation
        self._inner = inner
        self._specs = list(specs)
        self._round = round_number
        self._report: dict[str, Any] = {}
        self.encoding = inner.encoding
        self.payload_bytes = inner.payload_bytes
        self.secure_aggregation = inner.secure_aggregation
        self.differential_privacy = aggregation.announcement

    def add(self, client_id: str, weight: float, payload: bytes | bytearray) -> None:
        if not self._aggregation.distributed:
            self._check_norm(payload)
        self._inner.add(client_id, 1.0, payload)  # every update counts once: the sum's sensitivity is the clip

    def _check_norm(self, payload: bytes | bytearray) -> None:
        clip = self._aggregation.config.clip
        norm = l2_norm(decode_tensors(self._specs, payload))
        if not norm <= clip * (1.0 + NORM_TOLERANCE):  # also refuses NaN
            raise Rejected.invalid(f"update has L2 norm {norm:.6g}, above the DP clip bound {clip:g}; "
                                   "clients must clip to privacy.dp_clip")

    def finalize(self, timer: PhaseTimer) -> WeightedSum:
        released, privacy = self._aggregation.release(self._round, self._inner.finalize(timer), timer)
        self._report = {"privacy": privacy}
        return released

    def round_report(self) -> dict[str, Any]:
        return self._report


def build_dp_aggregation(scenario: Scenario, model: Mapping[str, np.ndarray],
                         past_rounds: Sequence[Mapping[str, Any]] = ()) -> DPAggregation:
    """DP-FedAvg for ``scenario``, its ledger charged with ``past_rounds`` (records of rounds already released,
    when a run resumes); distributed placement generates a Paillier key (module docstring)."""
    privacy, fed = scenario.privacy, scenario.federation
    delta = privacy.delta or default_delta(fed.clients)
    distributed = privacy.dp_placement == "distributed"
    config = DPConfig(epsilon=privacy.epsilon, clip=privacy.dp_clip, clients=fed.clients,
                      clients_per_round=fed.clients_per_round, rounds=fed.rounds,
                      delta=delta * (1.0 - TRUNCATION_DELTA_SHARE) if distributed else delta,
                      placement=privacy.dp_placement)
    if not distributed:
        aggregation = DPAggregation(config, PlainAggregation(), delta=delta, seed=scenario.seed)
    else:
        aggregation = _distributed(scenario, model, config, delta)
    for record in past_rounds:
        aggregation.ledger.record_round(record["privacy"]["noise_multiplier"])
    return aggregation


def _distributed(scenario: Scenario, model: Mapping[str, np.ndarray], config: DPConfig,
                 delta: float) -> DPAggregation:
    """Distributed placement: packed Paillier underneath, its range sized for clipped + noised values."""
    privacy, fed = scenario.privacy, scenario.federation
    share_std = config.mechanism().share_std(config.share_contributors)
    n_params = sum(int(np.asarray(value).size) for value in model.values())
    # b = share·δ / (1 + e^ε), written with e^-ε so that a huge ε underflows to 0 instead of overflowing
    budget = TRUNCATION_DELTA_SHARE * delta * math.exp(-privacy.epsilon) / (1.0 + math.exp(-privacy.epsilon))
    clip, sigmas = quantization_clip(privacy.dp_clip, share_std, draws=n_params * fed.clients_per_round * fed.rounds,
                                     budget=budget)
    inner = build_paillier_aggregation(scenario, model, mode="paillier", clip=clip, unit_weights=True)
    return DPAggregation(config, inner, delta=delta, seed=scenario.seed, noise_range_sigmas=sigmas)
