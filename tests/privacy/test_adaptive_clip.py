"""Adaptive clipping (Andrew et al. 2021): the clip converges to the target quantile of the update norms, and
the noisy count that steers it is paid for inside the accounted ε."""
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from fedgrad.errors import ConfigError
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.dp import DPMode
from fedgrad.modes.plain import encode_plain
from fedgrad.privacy import clip_update, epsilon_spent, update_noise_multiplier
from fedgrad.protocol import RoundCohort
from fedgrad.results.schema import DPRoundReport, RoundRecord, RoundReport, round_record
from fedgrad.scenario import Scenario
from server.tasks import ModelPayload

COHORT = 200
MODEL = {"w": np.zeros(8, dtype=np.float32)}


def _scenario(**privacy) -> Scenario:
    return Scenario.from_dict({
        "name": "adaptive", "federation": {"clients": COHORT, "clients_per_round": COHORT, "rounds": 60},
        "privacy": {"mode": "dp", "epsilon": 8.0, "dp_clip": 0.1, "dp_adaptive_clip": True, **privacy}})


def released_round(number: int, report: DPRoundReport) -> RoundRecord:
    """The record of a DP round a run released before it was interrupted (what a resumed run reads back)."""
    scores = {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "loss": 0.69}
    return round_record(number, scores, clients_selected=3, clients_used=3, clients_dropped=0, time_s={},
                        report=RoundReport(privacy=report))


def test_the_update_noise_and_the_count_noise_together_spend_the_calibrated_multiplier():
    z, count_std = 1.3, 10.0
    z_update = update_noise_multiplier(z, count_std)
    assert z < z_update < 1.01 * z  # σ_b = m/20 with m = 200 costs under 1% more update noise
    # reference, straight from dp-accounting: the two Gaussian releases composed (RDP adds exactly) against one
    pair = dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(z_update),
                                          dp_accounting.GaussianDpEvent(2 * count_std)])
    both = rdp.RdpAccountant().compose(pair).get_epsilon(1e-6)
    single = rdp.RdpAccountant().compose(dp_accounting.GaussianDpEvent(z)).get_epsilon(1e-6)
    assert both == pytest.approx(single, rel=1e-9)
    with pytest.raises(ConfigError, match="count_std"):
        update_noise_multiplier(z, z / 2)


def test_the_clip_converges_to_the_target_quantile_and_every_round_is_accounted():
    mode = DPMode(_scenario(dp_clip_quantile=0.5, dp_clip_lr=0.5))
    aggregation = mode.aggregation(MODEL, noise_seed=7)
    specs = ModelPayload.encode(0, MODEL).specs
    rng = np.random.default_rng(0)
    clips = []
    for number in range(1, 61):
        accumulator = aggregation.new_accumulator(specs, RoundCohort(number, {str(i): 1.0 for i in range(COHORT)}))
        clip = float(accumulator.announcement.params["l2_clip"])
        clips.append(clip)
        for i in range(COHORT):  # norms uniform on [0, 2]: the median is 1
            direction = rng.normal(size=8)
            delta = {"w": (rng.uniform(0.0, 2.0) * direction / np.linalg.norm(direction)).astype(np.float32)}
            clipped, _ = clip_update(delta, clip)  # what the client does with the announced clip
            accumulator.add(str(i), 1.0, encode_plain(clipped).payload)
        assert accumulator.finalize(PhaseTimer()) is not None
        record = accumulator.round_report().privacy
        assert record is not None
        assert record.clip == clip and record.noise_multiplier == aggregation.mechanism.noise_multiplier
    assert clips[0] == 0.1 and clips[5] > 0.25  # all clipped at first: steps of up to e^(0.5·0.5) a round
    assert all(0.8 < clip < 1.25 for clip in clips[30:])
    assert abs(np.mean(clips[40:]) - 1.0) < 0.1
    summary = aggregation.summary()
    z = aggregation.mechanism.noise_multiplier
    assert summary.adaptive_clip is not None
    assert summary.adaptive_clip.update_noise_multiplier == update_noise_multiplier(z, COHORT / 20)
    assert summary.epsilon_spent == pytest.approx(epsilon_spent(z, 1.0, 60, 1 / COHORT**2), rel=1e-9)
    assert 7.9 < summary.epsilon_spent <= 8.0
    assert "0.5 quantile" in mode.guarantee().full


def test_a_resumed_run_continues_from_the_last_clip_and_distributed_placement_is_refused():
    mode = DPMode(_scenario())
    z = mode.config().mechanism().noise_multiplier
    resumed = mode.aggregation(MODEL, [released_round(1, DPRoundReport(epsilon_spent=1.0, noise_multiplier=z,
                                                                       contributors=3, clip=0.1, next_clip=0.37))])
    assert resumed.clip == 0.37 and resumed.ledger.rounds == 1
    assert math.isclose(resumed.params["l2_clip"], 0.37)
    with pytest.raises(ConfigError, match="dp_adaptive_clip"):
        DPMode(_scenario(dp_placement="distributed"))
