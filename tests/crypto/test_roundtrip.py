"""End to end through the public API: encoders → Accumulator → KeyHolder, exact to the bit."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgrad.crypto import Accumulator, KeyHolder, SecureAggConfig, make_encoder
from fedgrad.crypto.quantize import quantize, scale


def aggregate(cfg, key, updates, weights, min_clients=2):
    pub, priv = key
    encoder, accumulator = make_encoder(cfg, pub), Accumulator(cfg, pub)
    for i, (update, weight) in enumerate(zip(updates, weights, strict=True)):
        accumulator.add(f"client-{i}", encoder.encrypt(update, weight))
    holder = KeyHolder(priv, cfg, min_clients=min_clients)
    return holder.decrypt_aggregate(round=0, contributors=accumulator.contributors, payload=accumulator.payload())


def exact_sum(cfg, updates, weights):
    return np.sum([quantize(cfg, u, w) for u, w in zip(updates, weights, strict=True)], axis=0) / scale(cfg)


@settings(max_examples=250, deadline=None)
@given(n_clients=st.integers(2, 256), headroom=st.integers(0, 64), value_bits=st.integers(2, 24),
       n_params=st.integers(1, 60), clip=st.floats(1e-3, 1e3), kind=st.sampled_from(["random", "plus", "minus"]),
       seed=st.integers(0, 2**32 - 1))
def test_packed_round_trip_is_exact(small_key, n_clients, headroom, value_bits, n_params, clip, kind, seed):
    rng = np.random.default_rng(seed)
    cfg = SecureAggConfig(mode="paillier", n_params=n_params, clip=clip, value_bits=value_bits,
                          max_clients=n_clients + headroom)
    weights = rng.uniform(1e-3, 1.0, size=n_clients)
    updates = {"random": rng.uniform(-2 * clip, 2 * clip, size=(n_clients, n_params)),
               "plus": np.full((n_clients, n_params), clip), "minus": np.full((n_clients, n_params), -clip)}[kind]
    np.testing.assert_array_equal(aggregate(cfg, small_key, updates, weights), exact_sum(cfg, updates, weights))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_real_key_max_clients_at_the_extreme(real_key, sign):
    cfg = SecureAggConfig(mode="paillier", n_params=170, clip=0.5, max_clients=256)  # 2 ciphertexts of 85 slots
    updates, weights = np.full((256, 170), sign * 0.5), np.ones(256)
    result = aggregate(cfg, real_key, updates, weights)
    assert (result == sign * 256 * 0.5).all()


def test_real_key_weighted_fedavg(real_key):
    rng = np.random.default_rng(7)
    cfg = SecureAggConfig(mode="paillier", n_params=1000, clip=1.0, max_clients=100)
    examples = np.array([120, 30, 850])
    weights, updates = examples / examples.sum(), rng.normal(0, 0.4, size=(3, 1000))
    result = aggregate(cfg, real_key, updates, weights)
    np.testing.assert_array_equal(result, exact_sum(cfg, updates, weights))
    fedavg = (weights[:, None] * np.clip(updates, -1, 1)).sum(axis=0)
    assert np.abs(result - fedavg).max() <= 3 * 0.5 / scale(cfg)


@pytest.mark.parametrize("key_name,n_params", [("small_key", 40), ("real_key", 3)])
def test_naive_scheme_matches_packed_bit_for_bit(request, key_name, n_params):
    key = request.getfixturevalue(key_name)
    rng = np.random.default_rng(3)
    updates, weights = rng.normal(0, 1, size=(3, n_params)), [0.5, 0.3, 0.2]
    naive, packed = (SecureAggConfig(mode=mode, n_params=n_params, clip=1.0, max_clients=10)
                     for mode in ("paillier-naive", "paillier"))
    assert make_encoder(naive, key[0]).scheme.n_ciphertexts == n_params
    result = aggregate(naive, key, updates, weights)
    np.testing.assert_array_equal(result, exact_sum(naive, updates, weights))
    np.testing.assert_array_equal(result, aggregate(packed, key, updates, weights))
