"""``privacy.mode = "dp"``: client-level DP-FedAvg, clipped unweighted sums released with Gaussian noise, and the
privacy they spend.

Every selected client clips its whole update to L2 norm C (``privacy.dp_clip``), so one client changes the
sum of updates by at most C; the released sum carries Gaussian noise of standard deviation z·C, with the
noise multiplier z calibrated by ``dp-accounting`` so that all ``federation.rounds`` rounds together spend
``privacy.epsilon`` at δ (``privacy.delta``, 0 = 1/clients²). Every update counts once, whatever the
client's example count (weights would make the sensitivity data-dependent), and the noisy sum is divided
by the fixed ``clients_per_round`` rather than the number that answered (see ``fedgrad.privacy.mechanism``).
The :class:`~fedgrad.privacy.PrivacyLedger` composes each released round with the noise it really carried;
the cumulative ε is in every round record and in the summary.

Noise comes from the operating system's entropy (``noise_rng(None)``), never from the scenario's seed: anyone
who could regenerate the noise could subtract it. Only tests inject a seed, explicitly.

``dp_placement = "central"``: clients send clipped updates in plain; the coordinator checks each norm
(refusing one above C, up to float rounding), sums them exactly and adds the noise itself. The coordinator
sees every clipped update, so it must be trusted.

``dp_placement = "distributed"``: runs threshold secure aggregation underneath (``privacy.dp_secure``: ``paillier``,
``fedgrad.modes.paillier``, or ``paillier-masked``, ``fedgrad.modes.paillier_masked``, announced to clients as
``secure_mode``: a t-of-k key dealt to decryptor processes, clients signing their contributions with their own
identities), with every client's weight fixed at 1. Each client clips its update, adds its own share
N(0, (zC)²/m) of the noise, m = ``clients_per_round``, drawn from the operating system's entropy, and encrypts
and signs the result.
The decryptors release only sums of at least ``min_clients`` signed contributions, so the coordinator never
obtains a sum without the contributors' noise: reading one client's update takes t decryptors colluding, or the
coordinator together with all other contributors of the round (who can subtract their own noisy updates), and
even then it carries that client's noise share.

Dropped clients. When fewer than m clients contribute (timeouts, or a coordinator dropping uploads on purpose),
the sum carries less noise than planned; the ledger records the noise actually present,
``z·sqrt(contributors/m)``, so the reported ε is the one spent, and the guarantee states the worst case up front
(every round cut to ``min_clients``: :meth:`DPMode.worst_case_epsilon`). Under Poisson sampling a round can also
have more contributors than m, hence more noise, which the ledger records the same way. The coordinator cannot
check norms inside ciphertexts: clipping, like the plaintext range, rests on the clients (proving it would take
zero-knowledge proofs).

Quantization range under distributed DP (:func:`quantization_clip`). Paillier encodes each coordinate in
[-R, R] on a grid of R / (2^(value_bits-1) - 1). A clipped coordinate lies in [-C, C], the noise share has
standard deviation σ, and R = C + k·σ with k the smallest multiple of 0.5 for which the probability that
*any* noise draw of the run (parameters × clients_per_round × rounds) exceeds k·σ is at most
b = 1% of δ / (1 + e^ε). Outside that event the encoding clips nothing, so the run is
(ε, δ_Gauss + (1 + e^ε)·b)-DP; the Gaussian is calibrated for δ_Gauss = 99% of δ, and the total is δ.
For spam_fedavg (13k parameters, 10 clients, 10 rounds, ε = 4) k ≈ 7.5, and at 16 bits the grid step stays
four orders of magnitude below the noise on the sum. Like other continuous-noise implementations, the
analysis ignores the rounding of each client's values to that grid (each value moves by at most half a step,
and the rounding of the protected client's own value by at most ``sqrt(parameters)·step/2`` in L2, which is
not added to the sensitivity); a rigorous treatment would use the distributed discrete Gaussian (Kairouz, Liu &
Steinke, ICML 2021). That, and the Gaussian sampled in floating point (``fedgrad.privacy.rng``), are the two
places where the stated ε is the continuous mechanism's, not a proof about the bits on the wire.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedgrad.errors import ConfigError
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.base import (
    Aggregation,
    ClientPrivacy,
    EncodingRefused,
    Guarantee,
    Manifest,
    PrivacyMode,
    Profile,
    UpdateAccumulator,
)
from fedgrad.modes.paillier import PaillierMode, ThresholdSettings, threshold_aggregation, threshold_round
from fedgrad.modes.paillier_common import parameter_count
from fedgrad.modes.plain import PlainAccumulator, PlainAggregation, encode_plain
from fedgrad.modes.registry import MODE_NAMES
from fedgrad.modes.resolve import mode_class
from fedgrad.privacy import DPConfig, GaussianMechanism, default_delta, epsilon_spent, l2_norm, noise_rng
from fedgrad.privacy.adaptive import COUNT_NOISE_DIVISOR, AdaptiveClip, update_noise_multiplier
from fedgrad.privacy.clipping import clip_update
from fedgrad.privacy.mechanism import add_gaussian_noise
from fedgrad.protocol import Announcement, EncodedUpdate, Rejected, RoundCohort, TrainTask, WeightedSum
from fedgrad.results.schema import (
    AdaptiveClipReport,
    DPReport,
    DPRoundReport,
    PrivacyReport,
    RoundRecord,
    RoundReport,
    ThresholdReport,
)
from fedgrad.scenario import Scenario

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

    def __init__(self, config: DPConfig, inner: Aggregation, *, delta: float, noise_seed: int | None = None,
                 noise_range_sigmas: float | None = None, adaptive: AdaptiveClip | None = None,
                 secure_mode: str = "") -> None:
        """``secure_mode``: under distributed placement, the threshold mode ``inner`` is (clients encode with it)."""
        self.config = config
        self.mechanism: GaussianMechanism = config.mechanism()
        self.ledger = config.ledger()
        self.delta = delta
        self.adaptive = adaptive
        #: The update sum's noise multiplier: the accounted one, raised when adaptive clipping spends part of it.
        self.update_multiplier = (update_noise_multiplier(self.mechanism.noise_multiplier, adaptive.count_std)
                                  if adaptive is not None else self.mechanism.noise_multiplier)
        self._inner = inner
        self._noise_seed = noise_seed
        self._noise_range_sigmas = noise_range_sigmas
        self._secure_mode = secure_mode
        self.distributed = config.placement == "distributed"
        self._share_std = self.mechanism.share_std(config.share_contributors) if self.distributed else 0.0

    @property
    def clip(self) -> float:
        """This round's clip: the scenario's, or where adaptive clipping has moved it."""
        return self.adaptive.clip if self.adaptive is not None else self.config.clip

    @property
    def params(self) -> dict[str, float]:
        """What the round's announcement tells clients (:class:`DPAnnouncement`): the L2 clip and their noise
        share's standard deviation."""
        return DPAnnouncement(self.clip, self._share_std, self._secure_mode).params()

    def new_accumulator(self, specs: Manifest, cohort: RoundCohort) -> DPAccumulator:
        return DPAccumulator(self, self._inner.new_accumulator(specs, cohort), specs, cohort.round_number)

    def release(self, round_number: int, summed: WeightedSum, timer: PhaseTimer, *, clip: float,
                unclipped: int) -> tuple[WeightedSum, DPRoundReport]:
        """The noisy sum over the fixed cohort size, and the round's privacy record (composed into the ledger);
        ``clip`` is the round's, ``unclipped`` how many updates were shorter (adaptive clipping's bits)."""
        contributors = len(summed.contributors)
        round_clip = next_clip = None  # adaptive clipping's step (central placement)
        if self.distributed:  # the clients' shares are in the sum already
            total = summed.total
            noise_multiplier = self.mechanism.effective_noise_multiplier(self.config.share_contributors, contributors)
        else:
            with timer.phase("aggregate"):
                seed = self._noise_seed
                rng = noise_rng(seed, round_number) if seed is not None else noise_rng()
                total = GaussianMechanism(self.update_multiplier, clip).noise_sum(summed.total, rng)
                if self.adaptive is not None:
                    noisy_count = unclipped - contributors / 2 + rng.normal(0.0, self.adaptive.count_std)
                    round_clip, next_clip = clip, self.adaptive.update(noisy_count, self.config.clients_per_round)
            noise_multiplier = self.mechanism.noise_multiplier
        epsilon = self.ledger.record_round(noise_multiplier)
        released = WeightedSum(total=total, weight=float(self.config.clients_per_round),
                               contributors=summed.contributors)
        return released, DPRoundReport(epsilon_spent=epsilon, noise_multiplier=noise_multiplier,
                                       contributors=contributors, clip=round_clip, next_clip=next_clip)

    def summary(self) -> DPReport:
        adaptive = (AdaptiveClipReport(final_clip=self.adaptive.clip, quantile=self.adaptive.target_quantile,
                                       learning_rate=self.adaptive.learning_rate,
                                       count_noise_std=self.adaptive.count_std,
                                       update_noise_multiplier=self.update_multiplier)
                    if self.adaptive is not None else None)
        secure = self._inner.summary() if self.distributed else None
        assert secure is None or isinstance(secure, ThresholdReport), "distributed DP sums under threshold Paillier"
        return DPReport(
            mode=DPMode.name, placement=self.config.placement, epsilon_target=self.config.epsilon,
            epsilon_spent=self.ledger.epsilon, delta=self.delta, noise_multiplier=self.mechanism.noise_multiplier,
            clip=self.config.clip, accountant=self.config.accountant, sampling=self.config.sampling,
            sampling_rate=self.config.sampling_rate, adjacency=self.config.sampling_model.adjacency,
            rounds_accounted=self.ledger.rounds, adaptive_clip=adaptive,
            noise_share_std=self._share_std if self.distributed else None,
            quantization_range_sigmas=self._noise_range_sigmas if self.distributed else None,
            secure_aggregation=secure)

    def close(self) -> None:
        self._inner.close()


class DPAccumulator(UpdateAccumulator):
    """One round attempt of DP-FedAvg around the sum ``inner`` computes (see the module docstring)."""

    def __init__(self, aggregation: DPAggregation, inner: UpdateAccumulator, specs: Manifest,
                 round_number: int) -> None:
        self._aggregation = aggregation
        self._inner = inner
        self._plain = PlainAccumulator(specs) if not aggregation.distributed else None
        self._round = round_number
        self._clip = aggregation.clip
        self._unclipped = 0
        self._report = RoundReport()
        self.encoding = inner.encoding
        self.payload_bytes = inner.payload_bytes
        underneath = inner.announcement
        self.announcement = Announcement(
            DPMode.name, {**(underneath.params if underneath else {}), **aggregation.params},
            underneath.public_key if underneath else b"", underneath.cohort if underneath else ())

    def add(self, client_id: str, weight: float, payload: bytes | bytearray, signature: bytes = b"",
            examples: int = 0) -> None:
        if self._plain is not None:
            self._unclipped += self._check_norm(self._plain.tensors(payload))
        # every update counts once (weight 1, one "example" under secure aggregation): sensitivity is the clip
        self._inner.add(client_id, 1.0, payload, signature, 1)

    def _check_norm(self, tensors: Mapping[str, np.ndarray]) -> bool:
        """Refuse an update above the round's clip; whether it was shorter, i.e. not clipped by its client."""
        clip = self._clip
        norm = l2_norm(tensors)
        if not norm <= clip * (1.0 + NORM_TOLERANCE):  # also refuses NaN
            raise Rejected.invalid(f"update has L2 norm {norm:.6g}, above the DP clip bound {clip:g}; "
                                   "clients must clip to the round's announced clip")
        return norm < clip * (1.0 - NORM_TOLERANCE)

    def finalize(self, timer: PhaseTimer) -> WeightedSum | None:
        summed = self._inner.finalize(timer)
        if summed is None:
            self._report = self._inner.round_report()
            return None
        released, privacy = self._aggregation.release(self._round, summed, timer, clip=self._clip,
                                                      unclipped=self._unclipped)
        self._report = dataclasses.replace(self._inner.round_report(), privacy=privacy)  # and the decryptors' stats
        return released

    def round_report(self) -> RoundReport:
        return self._report


def threshold_mode(name: str) -> type[PaillierMode] | None:
    """The registered threshold mode ``name`` (one distributed DP can sum its noise shares under), or None."""
    if name not in MODE_NAMES:
        return None
    cls = mode_class(name)
    return cls if issubclass(cls, PaillierMode) else None


def noise_stream(client_id: str) -> int:
    """A 64-bit stream index for ``client_id``: distinct clients draw independent noise from one seed."""
    return int.from_bytes(hashlib.sha256(client_id.encode("utf-8")).digest()[:8], "big")


@dataclass(frozen=True)
class DPSettings:
    """``dp``'s settings (the ``privacy.epsilon``, ``delta`` and ``dp_*`` keys). Under distributed placement the
    threshold mode's settings (:class:`~fedgrad.modes.paillier.ThresholdSettings`) apply too, with every client's
    weight fixed at 1 and the quantization range derived from the noise (:meth:`DPMode.secure_settings`)."""

    epsilon: float            # target ε over the whole run
    delta: float              # 0: 1/N² with N the number of clients
    clip: float               # L2 bound on each client's update
    placement: str            # "central" (the coordinator adds the noise) or "distributed" (each client a share)
    adaptive_clip: bool       # central only: move the clip towards a quantile of the update norms
    clip_quantile: float      # adaptive clipping: the target quantile
    clip_lr: float            # adaptive clipping: geometric learning rate of the clip
    clip_count_std: float     # adaptive clipping: noise on the count of unclipped updates; 0: clients_per_round / 20
    secure: str               # distributed: the threshold mode the noise shares are summed under (privacy.dp_secure)

    @property
    def distributed(self) -> bool:
        return self.placement == "distributed"

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> DPSettings:
        privacy = scenario.privacy
        settings = cls(epsilon=privacy.epsilon, delta=privacy.delta, clip=privacy.dp_clip,
                       placement=privacy.dp_placement, adaptive_clip=privacy.dp_adaptive_clip,
                       clip_quantile=privacy.dp_clip_quantile, clip_lr=privacy.dp_clip_lr,
                       clip_count_std=privacy.dp_clip_count_std, secure=privacy.dp_secure)
        if settings.adaptive_clip and settings.distributed:
            raise ConfigError("privacy.dp_adaptive_clip: only with dp_placement = \"central\" (under secure "
                              "aggregation the clipping bits would have to travel encrypted, which fedgrad does not "
                              "do yet)")
        if settings.distributed:
            if threshold_mode(settings.secure) is None:
                raise ConfigError(f"privacy.dp_secure: must be a threshold secure-aggregation mode (one of "
                                  f"{', '.join(DPMode.underneath())}; got {settings.secure!r})")
            ThresholdSettings.from_scenario(scenario)  # the threshold Paillier underneath refuses what it cannot run
        return settings


@dataclass(frozen=True)
class DPAnnouncement:
    """What a DP round announces to each client besides the secure-aggregation config of distributed placement
    (``secure``, the threshold mode's): the L2 clip, the standard deviation of the client's noise share and, under
    distributed placement, the threshold mode to encode the noised update with (``secure_mode``)."""

    l2_clip: float
    noise_std: float = 0.0
    secure_mode: str = ""

    def params(self) -> dict[str, Any]:
        secure = {"secure_mode": self.secure_mode} if self.secure_mode else {}
        return {"l2_clip": self.l2_clip, "noise_std": self.noise_std, **secure}

    @classmethod
    def read(cls, params: Mapping[str, Any], client_id: str) -> DPAnnouncement:
        try:
            return cls(float(params["l2_clip"]), float(params.get("noise_std", 0.0)),
                       str(params.get("secure_mode", "")))
        except (KeyError, TypeError, ValueError):
            raise EncodingRefused(f"client {client_id}: the DP task announces no valid L2 clip") from None


class DPMode(PrivacyMode[DPSettings]):
    name = "dp"
    takes_epsilon = True

    @classmethod
    def read_settings(cls, scenario: Scenario) -> DPSettings:
        return DPSettings.from_scenario(scenario)

    @property
    def encrypted(self) -> bool:
        return self.settings.distributed

    @classmethod
    def encrypts(cls, announcement: Announcement) -> bool:
        return "secure" in announcement.params

    @property
    def needs_decryptors(self) -> bool:
        return self.settings.distributed

    @classmethod
    def underneath(cls) -> tuple[str, ...]:
        return tuple(name for name in MODE_NAMES if threshold_mode(name) is not None)

    @property
    def secure_mode(self) -> type[PaillierMode]:
        """The threshold mode under distributed placement."""
        mode = threshold_mode(self.settings.secure)
        assert mode is not None, "DPSettings refuses any other"
        return mode

    def hides_individual_updates(self) -> str:
        if self.encrypted:
            return super().hides_individual_updates()
        return ("the noise is calibrated to the sum of clipped updates; a rule that selects or ranks individual "
                "updates would release them without it (robust rules and DP do not compose here yet)")

    def target_delta(self) -> float:
        """δ: the scenario's, or 1/N² with N the number of clients."""
        return self.settings.delta or default_delta(self.scenario.federation.clients)

    def config(self) -> DPConfig:
        settings, fed = self.settings, self.scenario.federation
        delta = self.target_delta()
        return DPConfig(epsilon=settings.epsilon, clip=settings.clip, clients=fed.clients,
                        clients_per_round=fed.clients_per_round, rounds=fed.rounds,
                        delta=delta * (1.0 - TRUNCATION_DELTA_SHARE) if settings.distributed else delta,
                        placement=settings.placement, sampling=fed.sampling)

    def guarantee(self) -> Guarantee:
        config = self.config()
        mechanism = config.mechanism()
        settings = self.settings
        clip_text = (f"clip adapted from {config.clip:g} towards the {settings.clip_quantile:g} quantile of the "
                     "update norms, its noisy count paid for inside ε" if settings.adaptive_clip
                     else f"clip {config.clip:g}")
        dp = (f"client-level (ε={config.epsilon:g}, δ={config.target_delta:.1e})-DP after {config.rounds} rounds "
              f"[{config.accountant.upper()} accountant, noise multiplier {mechanism.noise_multiplier:.3f}, "
              f"{clip_text}, {config.sampling} sampling at rate {config.sampling_rate:.3g}, adjacency: "
              f"{config.sampling_model.adjacency}]")
        if not settings.distributed:
            return Guarantee(
                f"(ε={config.epsilon:g}, δ={config.target_delta:.0e})-DP; plaintext clipped updates",
                f"{dp} against everyone who sees the released models; the coordinator sees every clipped update "
                "in plaintext and adds the noise itself, so it can read one client's update on its own")
        secure = ThresholdSettings.from_scenario(self.scenario)
        m, t, k = self.scenario.federation.min_clients, secure.threshold, secure.decryptors
        return Guarantee(
            f"(ε={config.epsilon:g}, δ={config.target_delta:.0e})-DP; noised sums only; {t}-of-{k} decryptors",
            f"{dp}; each client adds its share of the noise (OS randomness) to its clipped update and encrypts it "
            f"under {self.secure_mode.encrypted_as} with {t}-of-{k} threshold decryptors, so they release "
            f"only noised sums of at least {m} signed clients: reading one client's update needs {t} decryptors "
            "colluding, or the coordinator "
            f"together with all other contributors of a round (at least {m - 1}), and even then it carries that "
            f"client's noise share. A coordinator that drops contributors down to {m} leaves less noise in the "
            f"sum; the ledger records the noise actually present, and against such a coordinator the run is "
            f"(ε={self.worst_case_epsilon(config):.3g}, δ={config.target_delta:.1e})-DP (every round at {m} "
            "contributors)")

    def profile(self) -> Profile:
        distributed = self.settings.distributed
        return Profile(key_holder="decryptors" if distributed else "", client_weights="unit", epsilon=True,
                       key_sizes=distributed)

    def describe_round(self, summary: PrivacyReport, *, client: int, sent: str) -> str:
        assert isinstance(summary, DPReport), "the summary of this mode's aggregation"
        fed = self.scenario.federation
        noise = (f"The released sum carries Gaussian noise of standard deviation "
                 f"{summary.noise_multiplier * summary.clip:.4g} (noise multiplier "
                 f"{summary.noise_multiplier:.3f}) and is divided by {fed.clients_per_round}. The last view is "
                 f"the strongest adversary DP is defined against: it knows every other client's clipped update and "
                 f"subtracts them from the released sum, leaving client {client}'s clipped update plus the noise.")
        if not self.settings.distributed:
            return (f"Client-level DP-FedAvg, central placement: each client clips its whole delta to L2 norm "
                    f"{summary.clip:g} and sends it in plaintext ({sent}); the coordinator adds the noise to the "
                    f"sum, so it sees every clipped update: central DP protects clients from whoever receives the "
                    f"model, not from the coordinator. {noise}")
        inner = summary.secure_aggregation  # the threshold Paillier aggregation the noise shares are summed under
        assert inner is not None, "distributed DP sums under threshold Paillier"
        return (f"Client-level DP-FedAvg, distributed placement: each client clips its whole delta to L2 norm "
                f"{summary.clip:g}, adds its share of the noise from OS randomness, {self.secure_mode.seals} a "
                f"{inner.key_bits}-bit threshold Paillier key ({inner.threshold}-of-{inner.decryptors} "
                f"decryptors, dealt outside the coordinator) and signs it ({sent} of ciphertext). "
                f"{threshold_round(fed.min_clients)} {noise}")

    def worst_case_epsilon(self, config: DPConfig) -> float:
        """ε after every round if each released sum carried only ``min_clients`` noise shares (distributed)."""
        z = config.mechanism().effective_noise_multiplier(config.share_contributors,
                                                          min(self.scenario.federation.min_clients,
                                                              config.share_contributors))
        return epsilon_spent(z, config.sampling_model, config.rounds, config.target_delta, config.accountant)

    def settings_line(self) -> str:
        settings = self.settings
        delta = settings.delta or "1/N^2"
        secure = f" under {settings.secure}" if settings.distributed else ""
        return f"dp ({settings.placement}{secure}), epsilon {settings.epsilon}, delta {delta}, clip {settings.clip}"

    def aggregation(self, model: Mapping[str, np.ndarray], past_rounds: Sequence[RoundRecord] = (),
                    *, noise_seed: int | None = None) -> DPAggregation:
        """DP-FedAvg, its ledger charged with ``past_rounds`` (records of rounds already released, when a run
        resumes); distributed placement runs the threshold mode's aggregation underneath. ``noise_seed``: tests
        only."""
        settings, fed = self.settings, self.scenario.federation
        config = self.config()
        delta = self.target_delta()
        if not settings.distributed:
            adaptive = (AdaptiveClip(settings.clip, settings.clip_quantile, settings.clip_lr,
                                     settings.clip_count_std or fed.clients_per_round / COUNT_NOISE_DIVISOR)
                        if settings.adaptive_clip else None)
            aggregation = DPAggregation(config, PlainAggregation(), delta=delta, noise_seed=noise_seed,
                                        adaptive=adaptive)
        else:
            secure, _, sigmas = self.secure_settings(parameter_count(model))
            inner = threshold_aggregation(secure, self.scenario, model, self.decryptors,
                                          self.secure_mode.aggregation_type)
            aggregation = DPAggregation(config, inner, delta=delta, noise_range_sigmas=sigmas,
                                        secure_mode=settings.secure)
        for record in past_rounds:
            if record.privacy is not None:
                aggregation.ledger.record_round(record.privacy.noise_multiplier)
                if aggregation.adaptive is not None and record.privacy.next_clip is not None:
                    aggregation.adaptive.clip = record.privacy.next_clip
        return aggregation

    def secure_settings(self, n_params: int) -> tuple[ThresholdSettings, float, float]:
        """Distributed placement for a model of ``n_params``: the threshold mode's settings underneath (values in
        [-R, R], every client's weight 1), each client's noise share's standard deviation, and R in noise standard
        deviations (``quantization_clip``)."""
        settings, fed = self.settings, self.scenario.federation
        config = self.config()
        share_std = config.mechanism().share_std(config.share_contributors)
        # b = share·δ / (1 + e^ε), written with e^-ε so that a huge ε underflows to 0 instead of overflowing
        budget = (TRUNCATION_DELTA_SHARE * self.target_delta() * math.exp(-settings.epsilon)
                  / (1.0 + math.exp(-settings.epsilon)))
        clip, sigmas = quantization_clip(settings.clip, share_std,
                                         draws=n_params * fed.clients_per_round * fed.rounds, budget=budget)
        secure = dataclasses.replace(ThresholdSettings.from_scenario(self.scenario), clip=clip, max_weight=1)
        return secure, share_std, sigmas

    def pinned_params(self, n_params: int) -> Mapping[str, Any]:
        if not self.settings.distributed:
            return super().pinned_params(n_params)
        secure, share_std, _ = self.secure_settings(n_params)
        packing = secure.packing(n_params, self.scenario.federation.effective_max_clients)
        announced = DPAnnouncement(self.settings.clip, share_std, self.settings.secure)
        return {"secure": packing.to_dict(), **announced.params()}

    @classmethod
    def encode(cls, task: TrainTask, client_id: str, delta: Mapping[str, np.ndarray],
               privacy: ClientPrivacy) -> EncodedUpdate:
        announcement = task.announcement
        assert announcement is not None, "a DP round announces its clip"
        announced = DPAnnouncement.read(announcement.params, client_id)
        update, _ = clip_update(dict(delta), announced.l2_clip)
        secure = cls.encrypts(announcement)
        if announced.noise_std > 0:
            if not secure:
                raise EncodingRefused(f"client {client_id}: the task asks for a DP noise share without secure "
                                      "aggregation, which would expose an update carrying only part of the noise")
            rng = noise_rng(privacy.noise_seed, task.round, noise_stream(client_id)) \
                if privacy.noise_seed is not None else noise_rng()
            update = add_gaussian_noise(update, announced.noise_std, rng)
        if not secure:
            return encode_plain(update)
        underneath = threshold_mode(announced.secure_mode or PaillierMode.name)
        if underneath is None:
            raise EncodingRefused(f"client {client_id}: the task names no threshold secure aggregation to send the "
                                  "noised update under")
        return underneath.encode(task, client_id, update, privacy)
