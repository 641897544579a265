"""Strategies on hand-made state dicts: weights, averaging, and each server step computed by hand."""
import numpy as np
import pytest

from fedgrad.errors import ConfigError
from server.strategies import ClientInfo, FedAdam, FedAvg, FedProx, WeightedSum, build_strategy

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
