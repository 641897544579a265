import itertools
import math

import pytest

from fedgrad.errors import ConfigError
from fedgrad.privacy import (
    DPConfig,
    FixedSizeSampling,
    PoissonSampling,
    PrivacyLedger,
    calibrate_noise_multiplier,
    default_delta,
    epsilon_spent,
    sampling_model,
)

# The typical setting of the issue: 100 clients, 10 per round, 10 rounds, delta = 1/N^2.
Q, ROUNDS, DELTA = 0.1, 10, 1e-4


@pytest.mark.parametrize("target", [1.0, 8.0])
def test_calibrated_noise_multiplier_is_the_smallest_meeting_the_target(target):
    z = calibrate_noise_multiplier(target, DELTA, Q, ROUNDS)
    spent = epsilon_spent(z, Q, ROUNDS, DELTA)
    assert spent <= target
    assert spent == pytest.approx(target, rel=1e-3)
    assert epsilon_spent(z * 0.999, Q, ROUNDS, DELTA) > target


def test_mechanism_std_on_the_sum_is_noise_multiplier_times_clip():
    config = DPConfig(epsilon=4.0, clip=0.5, clients=100, clients_per_round=10, rounds=10)
    assert config.target_delta == default_delta(100) == 1e-4
    assert config.sampling_rate == 0.1
    mechanism = config.mechanism()
    assert mechanism.noise_multiplier == calibrate_noise_multiplier(4.0, 1e-4, 0.1, 10)
    assert mechanism.sum_std == pytest.approx(mechanism.noise_multiplier * 0.5)
    assert mechanism.share_std(10) == pytest.approx(mechanism.sum_std / math.sqrt(10))
    assert epsilon_spent(mechanism.noise_multiplier, 0.1, 10, 1e-4) <= 4.0


def test_more_privacy_needs_more_noise_and_more_rounds_spend_more():
    z1, z4, z8 = (calibrate_noise_multiplier(e, DELTA, Q, ROUNDS) for e in (1.0, 4.0, 8.0))
    assert z1 > z4 > z8 > 0
    assert epsilon_spent(1.0, Q, 5, DELTA) < epsilon_spent(1.0, Q, 10, DELTA) < epsilon_spent(1.0, Q, 20, DELTA)
    assert epsilon_spent(1.0, 0.05, 10, DELTA) < epsilon_spent(1.0, 0.1, 10, DELTA)
    assert epsilon_spent(0.0, Q, ROUNDS, DELTA) == math.inf


def test_ledger_reports_epsilon_per_round_and_ends_at_the_whole_run():
    z = calibrate_noise_multiplier(4.0, DELTA, Q, ROUNDS)
    ledger = PrivacyLedger(Q, DELTA)
    assert ledger.epsilon == 0.0
    per_round = [ledger.record_round(z) for _ in range(ROUNDS)]
    assert ledger.rounds == ROUNDS and ledger.history == per_round
    assert all(a < b for a, b in itertools.pairwise(per_round))
    assert per_round[2] == pytest.approx(epsilon_spent(z, Q, 3, DELTA), rel=1e-9)
    assert ledger.epsilon == pytest.approx(epsilon_spent(z, Q, ROUNDS, DELTA), rel=1e-9)
    assert ledger.epsilon <= 4.0


def test_ledger_charges_more_for_rounds_with_less_noise():
    honest, short = PrivacyLedger(Q, DELTA), PrivacyLedger(Q, DELTA)
    honest.record_round(1.0)
    short.record_round(0.7)
    assert short.epsilon > honest.epsilon


def test_pld_accountant_is_tighter_than_rdp():
    rdp_eps = epsilon_spent(1.0, Q, ROUNDS, DELTA, "rdp")
    pld_eps = epsilon_spent(1.0, Q, ROUNDS, DELTA, "pld")
    assert 0.5 * rdp_eps < pld_eps < rdp_eps


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(epsilon=0.0), "epsilon"),
        (dict(clip=-1.0), "clip"),
        (dict(clients_per_round=101), "clients_per_round"),
        (dict(rounds=0), "rounds"),
        (dict(delta=1.0), "delta"),
        (dict(placement="local"), "placement"),
        (dict(accountant="moments"), "accountant"),
        (dict(min_contributors=3), "min_contributors"),
        (dict(placement="distributed", min_contributors=11), "min_contributors"),
    ],
)
def test_bad_dp_configuration_raises_config_error(kwargs, key):
    base = dict(epsilon=4.0, clip=1.0, clients=100, clients_per_round=10, rounds=10)
    with pytest.raises(ConfigError, match=key):
        DPConfig(**{**base, **kwargs})


def test_bad_accounting_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="sampling rate"):
        epsilon_spent(1.0, 1.5, ROUNDS, DELTA)
    with pytest.raises(ConfigError, match="delta"):
        calibrate_noise_multiplier(1.0, 0.0, Q, ROUNDS)
    with pytest.raises(ConfigError, match="clients"):
        default_delta(0)


def _dp_accounting_epsilon(relation, event, rounds: int, delta: float) -> float:
    """The reference: dp-accounting's RDP accountant, driven directly (no fedgrad code in between)."""
    import dp_accounting
    from dp_accounting import rdp

    accountant = rdp.RdpAccountant(neighboring_relation=relation)
    return accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds)).get_epsilon(delta)


def test_poisson_and_fixed_size_sampling_match_dp_accounting_under_their_adjacency():
    import dp_accounting

    relation = dp_accounting.NeighboringRelation
    z, n, m = 1.7, 4837, 1000
    poisson = _dp_accounting_epsilon(relation.ADD_OR_REMOVE_ONE,
                                     dp_accounting.PoissonSampledDpEvent(m / n, dp_accounting.GaussianDpEvent(z)),
                                     15, 1 / n**2)
    # replace-one: one client swapped for another moves the sum of clipped updates by up to 2C, so the Gaussian
    # of standard deviation zC has multiplier z/2 relative to that sensitivity
    fixed = _dp_accounting_epsilon(relation.REPLACE_ONE,
                                   dp_accounting.SampledWithoutReplacementDpEvent(
                                       n, m, dp_accounting.GaussianDpEvent(z / 2)), 15, 1 / n**2)
    assert epsilon_spent(z, PoissonSampling(m / n), 15, 1 / n**2) == pytest.approx(poisson, rel=1e-12)
    assert epsilon_spent(z, m / n, 15, 1 / n**2) == pytest.approx(poisson, rel=1e-12)  # a bare rate is Poisson
    assert epsilon_spent(z, FixedSizeSampling(n, m), 15, 1 / n**2) == pytest.approx(fixed, rel=1e-12)
    assert fixed > 2 * poisson  # the price of replace-one adjacency


def test_the_sampling_model_follows_the_scenario_and_full_cohorts_are_not_sampled():
    assert sampling_model("poisson", 4837, 1000) == PoissonSampling(1000 / 4837)
    assert sampling_model("fixed", 4837, 1000) == FixedSizeSampling(4837, 1000)
    assert sampling_model("fixed", 10, 10) == PoissonSampling(1.0)  # everyone every round: add/remove holds
    assert FixedSizeSampling(4837, 1000).adjacency == "replace one client"
    assert PoissonSampling(0.2).adjacency == "add/remove one client"


def test_fixed_size_sampling_calibrates_more_noise_and_its_ledger_spends_exactly_the_target():
    base = dict(epsilon=4.0, clip=1.0, clients=1000, clients_per_round=100, rounds=5)
    poisson, fixed = DPConfig(**base, sampling="poisson"), DPConfig(**base, sampling="fixed")
    z_poisson, z_fixed = poisson.mechanism().noise_multiplier, fixed.mechanism().noise_multiplier
    assert z_fixed > 1.5 * z_poisson
    ledger = fixed.ledger()
    for _ in range(5):
        ledger.record_round(z_fixed)
    assert 3.99 < ledger.epsilon <= 4.0
    assert ledger.epsilon == pytest.approx(epsilon_spent(z_fixed, FixedSizeSampling(1000, 100), 5, 1e-6), rel=1e-9)


def test_fixed_size_sampling_needs_the_rdp_accountant():
    with pytest.raises(ConfigError, match="rdp accountant"):
        epsilon_spent(1.0, FixedSizeSampling(100, 10), 5, 1e-4, "pld")
    with pytest.raises(ConfigError, match="sampling"):
        DPConfig(epsilon=1.0, clip=1.0, clients=10, clients_per_round=5, rounds=2, sampling="shuffled")
