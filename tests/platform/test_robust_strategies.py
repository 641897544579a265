"""Strategies over each client's update (QFedAvg and the robust rules), computed by hand from their papers; the
``[federation.options]`` each built-in strategy reads; and the refusals of rules a privacy mode cannot serve."""
import numpy as np
import pytest

from fedgrad.errors import ConfigError
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.plain import KeepingAccumulator, PlainAccumulator
from fedgrad.protocol import ClientUpdate, WeightedSum
from fedgrad.scenario import Scenario
from fedgrad.transport.codec import encode_tensors
from server.experiment import check_strategy
from server.strategies import (
    Bulyan,
    ClientInfo,
    FedAdam,
    FedAvgM,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    QFedAvg,
    build_strategy,
    krum_scores,
)


def updates(*points: float | list[float], losses: tuple[float, ...] = ()) -> WeightedSum:
    """One update per point (a tensor "w"), clients "0", "1", ... in that order, weight 1."""
    kept = tuple(ClientUpdate(str(i), 1.0, {"w": np.atleast_1d(np.asarray(p, np.float32))},
                              {"start_loss": losses[i]} if losses else {})
                 for i, p in enumerate(points))
    total = {"w": np.sum([u.delta["w"].astype(np.float64) for u in kept], axis=0)}
    return WeightedSum(total=total, weight=float(len(kept)), contributors=tuple(u.client_id for u in kept),
                       updates=kept)


def test_fedmedian_is_the_coordinate_wise_median():
    """Yin et al. 2018: per coordinate. (1, 10), (2, -5), (100, 0) -> (2, 0); with a fourth (3, 7): the middle two
    averaged, (2.5, 3.5)."""
    np.testing.assert_allclose(FedMedian().aggregate(updates([1, 10], [2, -5], [100, 0]))["w"], [2, 0])
    np.testing.assert_allclose(FedMedian().aggregate(updates([1, 10], [2, -5], [100, 0], [3, 7]))["w"], [2.5, 3.5])


def test_fedtrimmedavg_drops_floor_beta_n_at_each_end():
    """Yin et al. 2018, beta-trimmed mean: beta = 0.25 of 4 values drops 1 at each end: (1, 2, 3, 100) -> 2.5;
    beta = 0.2 drops floor(0.8) = 0 -> the mean 26.5; beta = 0.4 of 5 drops 2 at each end of (-1, 2, 3, 5, 100): 3."""
    assert FedTrimmedAvg(beta=0.25).aggregate(updates(1, 2, 3, 100))["w"][0] == pytest.approx(2.5)
    assert FedTrimmedAvg(beta=0.2).aggregate(updates(1, 2, 3, 100))["w"][0] == pytest.approx(26.5)
    assert FedTrimmedAvg(beta=0.4).aggregate(updates(5, -1, 2, 100, 3))["w"][0] == pytest.approx(3.0)


def test_krum_and_multikrum_score_by_the_nearest_n_minus_f_minus_2():
    """Blanchard et al. 2017, f = 1, n = 5: each point's score sums its squared distances to its n - f - 2 = 2
    nearest. Points 0, 1, 2.5, 4, 100: 0 -> 1 + 6.25 = 7.25; 1 -> 1 + 2.25 = 3.25; 2.5 -> 2.25 + 2.25 = 4.5;
    4 -> 2.25 + 9 = 11.25; 100 -> 96^2 + 97.5^2. Krum picks 1; Multi-Krum m = 3 averages 1, 2.5 and 0 -> 3.5/3;
    m = 0 (n - f = 4) leaves out only 100: 7.5/4."""
    points = (0.0, 1.0, 2.5, 4.0, 100.0)
    np.testing.assert_allclose(krum_scores(np.array(points)[:, None], 1),
                               [7.25, 3.25, 4.5, 11.25, 96**2 + 97.5**2])
    assert Krum(f=1).aggregate(updates(*points))["w"][0] == pytest.approx(1.0)
    assert MultiKrum(f=1, m=3).aggregate(updates(*points))["w"][0] == pytest.approx(3.5 / 3)
    assert MultiKrum(f=1).aggregate(updates(*points))["w"][0] == pytest.approx(7.5 / 4)


def test_bulyan_selects_by_krum_then_averages_the_beta_closest_to_the_median():
    """El Mhamdi et al. 2018, f = 1, n = 7 = 4f + 3: theta = n - 2f = 5 Krum selections, then per coordinate the
    beta = theta - 2f = 3 values closest to the median, averaged. Points 0, 1, 3, 5.5, 11, 100, -100:
    - 7 left, 4 nearest: 3 scores 9 + 4 + 6.25 + 64 = 83.25 (5.5: 30.25 + 20.25 + 6.25 + 30.25 = 87): take 3;
    - 6 left, 3 nearest: 5.5 scores 30.25 + 20.25 + 30.25 = 80.75 (1: 1 + 20.25 + 100 = 121.25): take 5.5;
    - 5 left, 2 nearest: 1 scores 1 + 100 = 101 (0: 1 + 121 = 122): take 1;
    - 4 left, 1 nearest: 0 and 11 both score 11^2 = 121: the lower client id, 0;
    - 3 left, 1 nearest: 11 and 100 both 89^2: 11. Selected 0, 1, 3, 5.5, 11: median 3, the 3 closest are 3, 1,
      5.5, whose mean is 9.5/3 (the outliers 100 and -100 never count)."""
    assert Bulyan(f=1).aggregate(updates(0, 1, 3, 5.5, 11, 100, -100))["w"][0] == pytest.approx(9.5 / 3)


def test_qfedavg_weights_clients_by_their_loss_to_the_q():
    """Li et al. 2020, Algorithm 2, q = 1, L = 10: deltas 0.1 and -0.2 at losses 0.5 and 1:
    dw = -L*delta = (-1, 2); Delta = F^q*dw = (-0.5, 2), sum 1.5; h = q*F^(q-1)*dw^2 + L*F^q = (1 + 5, 4 + 10),
    sum 20; the step is -1.5/20 = -0.075 (the mean of the deltas would be -0.05: the lossier client weighs more)."""
    strategy = QFedAvg(q=1.0, lipschitz=10.0)
    assert strategy.aggregate(updates(0.1, -0.2, losses=(0.5, 1.0)))["w"][0] == pytest.approx(-0.075)
    # q = 0 is the unweighted mean of the deltas, whatever the losses
    assert QFedAvg(q=0.0, lipschitz=10.0).aggregate(updates(0.1, -0.2, losses=(0.5, 3.0)))["w"][0] == \
        pytest.approx(-0.05)
    assert all(i.train_options == {"report_start_loss": True}
               for i in strategy.configure(1, [ClientInfo("0", 3), ClientInfo("1", 5)]).values())
    with pytest.raises(ValueError, match="did not report its start_loss"):
        strategy.aggregate(updates(0.1, -0.2))


@pytest.mark.parametrize("strategy", [FedMedian(), FedTrimmedAvg(), Krum(), MultiKrum(), Bulyan(), QFedAvg()])
def test_rules_over_individual_updates_refuse_a_bare_sum_and_keep_no_state(strategy):
    assert strategy.needs_individual_updates and strategy.state_dict() == {}
    with pytest.raises(ValueError, match="needs each client's update"):
        strategy.aggregate(WeightedSum(total={"w": np.zeros(1)}, weight=3.0, contributors=("0", "1", "2")))


def test_the_keeping_accumulator_gives_each_update_in_client_order_and_the_same_sum():
    specs, _ = encode_tensors({"w": np.zeros(2, np.float32)})
    plain, keeping = PlainAccumulator(specs), KeepingAccumulator(specs)
    for cid, values, weight in (("b", [1.0, 2.0], 3.0), ("a", [-1.0, 0.5], 1.0)):
        payload = encode_tensors({"w": np.array(values, np.float32)})[1]
        plain.add(cid, weight, payload)
        keeping.add(cid, weight, payload)
    summed, kept = plain.finalize(PhaseTimer()), keeping.finalize(PhaseTimer())
    np.testing.assert_array_equal(kept.total["w"], summed.total["w"])
    assert summed.updates == () and [(u.client_id, u.weight) for u in kept.updates] == [("a", 1.0), ("b", 3.0)]
    np.testing.assert_array_equal(kept.updates[1].delta["w"], [1.0, 2.0])


def test_options_are_typed_per_strategy_and_refused_in_one_line():
    assert build_strategy("krum", server_lr=1.0, options={"f": 2}).min_updates == 7
    multikrum = build_strategy("multikrum", server_lr=1.0, options={"f": 1, "m": 9})
    assert isinstance(multikrum, MultiKrum) and multikrum.min_updates == 9
    assert build_strategy("fedtrimmedavg", server_lr=1.0, options={"beta": 0.1}).beta == 0.1  # type: ignore[attr-defined]
    qfedavg = build_strategy("qfedavg", server_lr=1.0, local_lr=0.05, options={"q": 2})
    assert isinstance(qfedavg, QFedAvg) and (qfedavg.q, qfedavg.lipschitz) == (2.0, 20.0)
    adam = build_strategy("fedadam", server_lr=0.1, options={"beta1": 0.5, "tau": 1e-2})
    assert isinstance(adam, FedAdam) and (adam.beta1, adam.beta2, adam.tau) == (0.5, 0.99, 1e-2)
    momentum = build_strategy("fedavgm", server_lr=0.5, options={"momentum": 0.0})
    assert isinstance(momentum, FedAvgM) and momentum.momentum == 0.0
    for name, options, message in (
            ("krum", {"m": 2}, r"^federation\.options\.m: not an option of strategy 'krum' \(known: f\)$"),
            ("fedavg", {"f": 1}, r"^federation\.options\.f: not an option of strategy 'fedavg' \(it takes none\)$"),
            ("krum", {"f": 1.5}, r"^federation\.options\.f: expected an integer \(got 1\.5\)$"),
            ("krum", {"f": -1}, r"^federation\.options\.f: must be >= 0 \(got -1\)$"),
            ("fedtrimmedavg", {"beta": 0.5}, r"^federation\.options\.beta: must be < 0\.5 \(got 0\.5\)$"),
            ("qfedavg", {"q": True}, r"^federation\.options\.q: expected a number \(got True\)$")):
        with pytest.raises(ConfigError, match=message):
            build_strategy(name, server_lr=1.0, options=options)


def scenario(strategy: str, **sections: dict) -> Scenario:
    federation = {"clients": 10, "clients_per_round": 10, "strategy": strategy, **sections.pop("federation", {})}
    return Scenario.from_dict({"name": "t", "federation": federation, **sections})


def test_a_scenario_with_options_builds_its_strategy_and_min_clients_must_reach_the_rule():
    assert isinstance(check_strategy(scenario("bulyan", federation={"min_clients": 7})), Bulyan)
    with pytest.raises(ConfigError, match=r"^federation\.min_clients: strategy 'krum' with its options needs at least "
                                          r"7 updates a round \(got min_clients = 5\)$"):
        check_strategy(scenario("krum", federation={"min_clients": 5, "options": {"f": 2}}))
    with pytest.raises(ConfigError, match=r"^federation\.options\.q: must be >= 0"):
        check_strategy(scenario("qfedavg", federation={"options": {"q": -1.0}}))


@pytest.mark.parametrize("privacy, reason", [
    ({"mode": "paillier", "key_bits": 256, "insecure_key_bits": True}, "secure aggregation exists to hide"),
    ({"mode": "paillier-trusted", "key_bits": 256, "insecure_key_bits": True}, "secure aggregation exists to hide"),
    ({"mode": "paillier-masked", "key_bits": 256, "insecure_key_bits": True}, "secure aggregation exists to hide"),
    ({"mode": "dp", "dp_placement": "distributed", "key_bits": 256, "insecure_key_bits": True},
     "secure aggregation exists to hide"),
    ({"mode": "dp"}, "noise is calibrated to the sum of clipped updates"),
])
@pytest.mark.parametrize("strategy", ["fedmedian", "krum", "qfedavg"])
def test_modes_that_hide_updates_refuse_rules_that_need_them_with_the_reason(privacy, reason, strategy):
    robust = scenario(strategy, federation={"min_clients": 5}, privacy=privacy)
    with pytest.raises(ConfigError, match=rf"^federation\.strategy: '{strategy}' needs each client's update, which "
                                          rf"privacy\.mode = '{privacy['mode']}' does not give: .*{reason}") as caught:
        check_strategy(robust)
    assert "\n" not in str(caught.value)
    assert check_strategy(scenario("fedavg", federation={"min_clients": 5}, privacy=privacy)).name == "fedavg"
