"""Strategies on hand-made state dicts: weights, averaging, and each server step computed by hand."""
import numpy as np
import pytest

from fedgrad.errors import ConfigError
from fedgrad.strategy_names import STRATEGY_NAMES
from server.strategies import (
    BUILTIN_STRATEGIES,
    ClientInfo,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedYogi,
    WeightedSum,
    build_strategy,
)

CLIENTS = [ClientInfo("0", 30), ClientInfo("1", 10)]


def weighted_sum(deltas: dict[str, tuple[float, dict[str, np.ndarray]]]) -> WeightedSum:
    names = next(iter(deltas.values()))[1].keys()
    total = {name: np.asarray(sum(w * d[name].astype(np.float64) for w, d in deltas.values())) for name in names}
    return WeightedSum(total=total, weight=sum(w for w, _ in deltas.values()), contributors=tuple(sorted(deltas)))


def test_fedavg_weights_by_examples_and_averages():
    strategy = FedAvg()
    instructions = strategy.configure(1, CLIENTS)
    assert {cid: i.weight for cid, i in instructions.items()} == {"0": 30.0, "1": 10.0}
    assert all(i.train_options == {} for i in instructions.values())
    summed = weighted_sum({"0": (30.0, {"w": np.array([1.0, 2.0], np.float32)}),
                           "1": (10.0, {"w": np.array([5.0, -2.0], np.float32)})})
    delta = strategy.aggregate(summed)
    assert delta["w"].dtype == np.float32
    np.testing.assert_allclose(delta["w"], [2.0, 1.0])  # (30*1 + 10*5)/40, (60 - 20)/40
    new = strategy.apply({"w": np.array([0.5, 0.5], np.float32)}, delta)
    np.testing.assert_allclose(new["w"], [2.5, 1.5])
    assert new["w"].dtype == np.float32


def test_fedavg_server_lr_scales_the_step():
    new = FedAvg(server_lr=0.5).apply({"w": np.zeros(2, np.float32)}, {"w": np.array([2.0, -4.0], np.float32)})
    np.testing.assert_allclose(new["w"], [1.0, -2.0])


def test_aggregate_refuses_zero_total_weight():
    with pytest.raises(ValueError, match="zero total weight"):
        FedAvg().aggregate(WeightedSum(total={"w": np.zeros(1)}, weight=0.0, contributors=()))


def test_fedprox_sends_mu_to_clients_and_steps_like_fedavg():
    strategy = FedProx(prox_mu=0.1)
    instructions = strategy.configure(3, CLIENTS)
    assert {cid: (i.weight, i.train_options) for cid, i in instructions.items()} == {
        "0": (30.0, {"prox_mu": 0.1}), "1": (10.0, {"prox_mu": 0.1})}
    model, delta = {"w": np.ones(3, np.float32)}, {"w": np.array([1, 2, 3], np.float32)}
    np.testing.assert_array_equal(strategy.apply(model, delta)["w"], FedAvg().apply(model, delta)["w"])


def test_fedadam_follows_the_adaptive_federated_optimization_update():
    eta, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    strategy = FedAdam(server_lr=eta, beta1=b1, beta2=b2, tau=tau)
    w = np.array([1.0, -1.0, 0.0], np.float32)
    d1, d2 = np.array([0.2, -0.4, 0.0], np.float32), np.array([-0.1, 0.3, 0.5], np.float32)
    w1 = strategy.apply({"w": w}, {"w": d1})["w"]
    m, v = (1 - b1) * d1, (1 - b2) * d1**2
    np.testing.assert_allclose(w1, w + eta * m / (np.sqrt(v) + tau), rtol=1e-6)
    # the first step is about eta * sign(delta) wherever the delta is not tiny
    np.testing.assert_allclose(w1[:2] - w[:2],
                               [eta * 0.1 * 0.2 / (0.1 * 0.2 + tau), -eta * 0.1 * 0.4 / (0.1 * 0.4 + tau)],
                               rtol=1e-5)
    w2 = strategy.apply({"w": w1}, {"w": d2})["w"]
    m, v = b1 * m + (1 - b1) * d2, b2 * v + (1 - b2) * d2**2
    np.testing.assert_allclose(w2, w1 + eta * m / (np.sqrt(v) + tau), rtol=1e-6)


def test_fedadam_state_round_trips_so_a_restored_strategy_takes_the_same_step():
    original = FedAdam(server_lr=0.05)
    model = {"a": np.ones((2, 2), np.float32), "b": np.zeros(3, np.float32)}
    delta = {"a": np.full((2, 2), 0.3, np.float32), "b": np.array([0.1, -0.2, 0.0], np.float32)}
    model = original.apply(model, delta)
    restored = FedAdam(server_lr=0.05)
    restored.load_state_dict(original.state_dict())
    assert sorted(original.state_dict()) == ["m.a", "m.b", "v.a", "v.b"]
    expected, got = original.apply(model, delta), restored.apply(model, delta)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)
    with pytest.raises(ValueError, match="different tensors"):
        FedAdam(server_lr=0.1).load_state_dict({"m.a": np.zeros(1)})
    with pytest.raises(ValueError, match="keeps no state"):
        FedAvg().load_state_dict({"m.a": np.zeros(1)})


def test_build_strategy_by_name():
    assert isinstance(build_strategy("fedavg", server_lr=1.0), FedAvg)
    prox = build_strategy("fedprox", server_lr=1.0, prox_mu=0.01)
    assert isinstance(prox, FedProx) and prox.prox_mu == 0.01
    adam = build_strategy("fedadam", server_lr=0.03)
    assert isinstance(adam, FedAdam) and adam.server_lr == 0.03
    with pytest.raises(ConfigError, match=r"federation.strategy"):
        build_strategy("fedsgd", server_lr=1.0)


def test_fedavgm_accumulates_server_momentum_by_hand():
    """Hsu et al. 2019: u <- beta*u + delta, w <- w + eta*u. eta = 0.5, beta = 0.9, w0 = 1:
    round 1, delta 0.2: u = 0.2, w = 1 + 0.1 = 1.1; round 2, delta -0.1: u = 0.18 - 0.1 = 0.08, w = 1.14."""
    strategy = FedAvgM(server_lr=0.5, momentum=0.9)
    w1 = strategy.apply({"w": np.array([1.0], np.float32)}, {"w": np.array([0.2], np.float32)})["w"]
    np.testing.assert_allclose(w1, [1.1], rtol=1e-6)
    w2 = strategy.apply({"w": w1}, {"w": np.array([-0.1], np.float32)})["w"]
    np.testing.assert_allclose(w2, [1.14], rtol=1e-6)
    assert FedAvgM(momentum=0.0).apply({"w": w1}, {"w": np.array([0.3], np.float32)})["w"] == pytest.approx(1.4)


def test_fedadagrad_adds_squared_deltas_by_hand():
    """Reddi et al. 2021, Algorithm 2 (FedAdagrad): v <- v + delta^2. eta = 0.1, beta1 = 0.5, tau = 0, w0 = 0:
    round 1, delta 0.4: m = 0.2, v = 0.16, w = 0.1*0.2/0.4 = 0.05;
    round 2, delta 0.3: m = 0.1 + 0.15 = 0.25, v = 0.16 + 0.09 = 0.25, w = 0.05 + 0.1*0.25/0.5 = 0.1."""
    strategy = FedAdagrad(server_lr=0.1, beta1=0.5, tau=0.0)
    w1 = strategy.apply({"w": np.zeros(1, np.float32)}, {"w": np.array([0.4], np.float32)})["w"]
    np.testing.assert_allclose(w1, [0.05], rtol=1e-6)
    w2 = strategy.apply({"w": w1}, {"w": np.array([0.3], np.float32)})["w"]
    np.testing.assert_allclose(w2, [0.1], rtol=1e-6)


def test_fedyogi_moves_the_second_moment_by_the_sign_rule_by_hand():
    """Reddi et al. 2021, Algorithm 2 (FedYogi): v <- v - (1-beta2)*delta^2*sign(v - delta^2).
    eta = 1, beta1 = 0, beta2 = 0.5, tau = 0, two coordinates, w0 = 0:
    round 1, delta (0.4, 0.2): sign(0 - d^2) = -1, v = 0.5*d^2 = (0.08, 0.02); m = d, w = d/sqrt(v) = (sqrt2, sqrt2);
    round 2, delta (0.2, 0.4): d^2 = (0.04, 0.16); v1 - d^2 = (+0.04, -0.14), so v = (0.08 - 0.02, 0.02 + 0.08)
    = (0.06, 0.10) (Adam would give (0.06, 0.09): Yogi grows v additively), w = w1 + d/sqrt(v)."""
    strategy = FedYogi(server_lr=1.0, beta1=0.0, beta2=0.5, tau=0.0)
    w0 = np.zeros(2, np.float32)
    w1 = strategy.apply({"w": w0}, {"w": np.array([0.4, 0.2], np.float32)})["w"]
    np.testing.assert_allclose(w1, [np.sqrt(2), np.sqrt(2)], rtol=1e-6)
    w2 = strategy.apply({"w": w1}, {"w": np.array([0.2, 0.4], np.float32)})["w"]
    np.testing.assert_allclose(strategy.state_dict()["v.w"], [0.06, 0.10], rtol=1e-6)
    np.testing.assert_allclose(w2, w1 + np.array([0.2 / np.sqrt(0.06), 0.4 / np.sqrt(0.10)]), rtol=1e-6)


@pytest.mark.parametrize("make", [lambda: FedAvgM(0.5), lambda: FedAdagrad(0.05), lambda: FedYogi(0.05)])
def test_stateful_strategies_restore_from_their_state_and_take_the_same_step(make):
    original = make()
    model = {"a": np.ones((2, 2), np.float32), "b": np.zeros(3, np.float32)}
    delta = {"a": np.full((2, 2), 0.3, np.float32), "b": np.array([0.1, -0.2, 0.0], np.float32)}
    model = original.apply(model, delta)
    restored = make()
    restored.load_state_dict(original.state_dict())
    expected, got = original.apply(model, delta), restored.apply(model, delta)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)
    with pytest.raises(ValueError, match="unexpected"):
        make().load_state_dict({"x.a": np.zeros(1)})


def test_the_scenario_schema_names_exactly_the_built_in_strategies():
    assert STRATEGY_NAMES == tuple(BUILTIN_STRATEGIES)
    for name in STRATEGY_NAMES:
        assert build_strategy(name, server_lr=0.1, prox_mu=0.01).name == name
