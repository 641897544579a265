import math

import numpy as np
import pytest

from fedgrad.privacy import DPConfig, GaussianMechanism, add_gaussian_noise, clip_update, noise_rng


def _client_updates(n_clients: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {"embedding": rng.normal(0, 1, (50, 2)).astype(np.float32), "bias": rng.normal(0, 1, (1,)).astype(np.float32)}
        for _ in range(n_clients)
    ]


def _sum(updates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.sum([u[name] for u in updates], axis=0) for name in updates[0]}


@pytest.mark.parametrize("placement", ["central", "distributed"])
def test_huge_epsilon_aggregate_equals_the_plain_aggregate_of_clipped_updates(placement):
    config = DPConfig(epsilon=1e6, clip=1.0, clients=10, clients_per_round=10, rounds=1, placement=placement)
    mechanism = config.mechanism()
    assert mechanism.sum_std < 1e-3
    clipped = [clip_update(update, config.clip)[0] for update in _client_updates(10)]
    plain = _sum(clipped)
    if placement == "central":
        private = mechanism.noise_sum(plain, noise_rng(0, 0))
    else:
        m = config.share_contributors
        private = _sum([mechanism.noise_share(u, m, noise_rng(0, 0, k)) for k, u in enumerate(clipped)])
    for name in plain:
        np.testing.assert_allclose(private[name], plain[name], atol=6 * mechanism.sum_std)
        assert not np.array_equal(private[name], plain[name])  # noise was added, it is just negligible


def test_distributed_shares_sum_to_the_central_noise_variance():
    mechanism = GaussianMechanism(noise_multiplier=0.8, clip=2.0)
    m, dim = 10, 200_000
    zeros = np.zeros(dim, dtype=np.float64)
    central = mechanism.noise_sum(zeros, noise_rng(7, 0))
    distributed = sum(mechanism.noise_share(zeros, m, noise_rng(7, 0, k)) for k in range(m))
    target = mechanism.sum_std**2
    # The sample variance of 200k Gaussians is within 1.5% of the truth far beyond 4 standard errors (0.3%).
    assert np.var(central) == pytest.approx(target, rel=0.015)
    assert np.var(distributed) == pytest.approx(target, rel=0.015)
    assert abs(np.mean(distributed)) < 4 * mechanism.sum_std / math.sqrt(dim)


def test_clients_sharing_one_stream_would_multiply_the_noise():
    mechanism = GaussianMechanism(noise_multiplier=1.0, clip=1.0)
    m, zeros = 10, np.zeros(50_000)
    correlated = sum(mechanism.noise_share(zeros, m, noise_rng(7, 0)) for _ in range(m))
    assert np.var(correlated) == pytest.approx(m * mechanism.sum_std**2, rel=0.05)


def test_dropouts_lower_the_effective_noise_and_sizing_for_the_floor_keeps_it():
    mechanism = GaussianMechanism(noise_multiplier=1.0, clip=1.0)
    assert mechanism.effective_noise_multiplier(10, 10) == pytest.approx(1.0)
    assert mechanism.effective_noise_multiplier(10, 7) == pytest.approx(math.sqrt(0.7))
    # Shares sized for the 3 contributors the key holder requires never carry less than the planned noise.
    assert all(mechanism.effective_noise_multiplier(3, actual) >= 1.0 for actual in range(3, 11))
    config = DPConfig(epsilon=4, clip=1, clients=100, clients_per_round=10, rounds=10,
                      placement="distributed", min_contributors=3)
    assert config.share_contributors == 3


def test_noise_is_reproducible_from_a_seed_and_independent_of_dict_order():
    update = {"a": np.ones(4, dtype=np.float32), "b": np.zeros((2, 3), dtype=np.float32)}
    reordered = {"b": update["b"], "a": update["a"]}
    first = add_gaussian_noise(update, 0.5, noise_rng(3, 1, 2))
    second = add_gaussian_noise(reordered, 0.5, noise_rng(3, 1, 2))
    assert list(first) == ["a", "b"] and list(second) == ["b", "a"]
    for name in update:
        np.testing.assert_array_equal(first[name], second[name])
        assert first[name].dtype == np.float32
    other = add_gaussian_noise(update, 0.5, noise_rng(3, 1, 3))
    assert not np.array_equal(first["a"], other["a"])


def test_unseeded_noise_comes_from_fresh_entropy():
    assert noise_rng().integers(2**62) != noise_rng().integers(2**62)


def test_bad_noise_arguments_are_rejected():
    with pytest.raises(ValueError):
        add_gaussian_noise(np.zeros(2), -1.0, noise_rng(0))
    with pytest.raises(ValueError):
        GaussianMechanism(1.0, 1.0).share_std(0)
    with pytest.raises(ValueError):
        noise_rng(0, -1)
