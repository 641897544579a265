import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgrad.crypto import EncodingError, SecureAggConfig
from fedgrad.crypto.quantize import dequantize, max_quantized, quantize, scale


def config(n_params=4, clip=1.0, value_bits=16):
    return SecureAggConfig(mode="paillier", n_params=n_params, clip=clip, value_bits=value_bits, max_clients=8)


@settings(max_examples=300, deadline=None)
@given(value_bits=st.integers(2, 32), clip=st.floats(1e-4, 1e4), weight=st.floats(1e-6, 1.0),
       seed=st.integers(0, 2**32 - 1))
def test_quantization_error_and_range(value_bits, clip, weight, seed):
    cfg = config(n_params=64, clip=clip, value_bits=value_bits)
    x = np.random.default_rng(seed).uniform(-2 * clip, 2 * clip, size=64)
    q = quantize(cfg, x, weight)
    assert q.dtype == np.int64
    assert np.abs(q).max() <= max_quantized(value_bits)
    target = weight * np.clip(x, -clip, clip)
    float_slack = 8 * np.finfo(np.float64).eps * clip  # the float64 arithmetic of this check itself
    assert np.abs(dequantize(cfg, q) - target).max() <= 0.5 / scale(cfg) + float_slack


def test_extremes_map_to_plus_minus_q():
    cfg = config()
    q = quantize(cfg, np.array([1.0, -1.0, 7.0, -7.0]), 1.0)
    assert q.tolist() == [32767, -32767, 32767, -32767]


def test_accepts_any_shape_with_the_right_size():
    assert quantize(config(), np.ones((2, 2), dtype=np.float32), 0.5).tolist() == [16384] * 4


@pytest.mark.parametrize("update,weight,match", [
    (np.zeros(3), 0.5, "expects 4"),
    (np.array([0.0, np.nan, 0.0, 0.0]), 0.5, "NaN"),
    (np.array([0.0, np.inf, 0.0, 0.0]), 0.5, "NaN"),
    (np.zeros(4), 0.0, "weight"),
    (np.zeros(4), 1.5, "weight"),
    (np.zeros(4), float("nan"), "weight"),
    (np.zeros(4), True, "weight"),
])
def test_unencodable_updates(update, weight, match):
    with pytest.raises(EncodingError, match=match):
        quantize(config(), update, weight)
