"""The plain accumulator: correct weighted sums, bit-identical whatever the arrival order, all-or-nothing adds."""
import itertools

import numpy as np
import pytest

from fedgrad.metrics import PhaseTimer
from fedgrad.modes.plain import MAX_ABS_BITS, PlainAccumulator
from fedgrad.protocol import Refusal, Rejected
from fedgrad.transport.codec import encode_tensors

SHAPES = {"embedding.weight": (50, 4), "bias": (1,)}


def random_update(rng: np.random.Generator) -> dict[str, np.ndarray]:
    # magnitudes from 1e-9 to 1e3 so that float summation order would matter
    return {name: (rng.standard_normal(shape) * 10.0 ** rng.integers(-9, 4, size=shape)).astype(np.float32)
            for name, shape in SHAPES.items()}


def accumulator_for(updates) -> PlainAccumulator:
    specs, _ = encode_tensors(updates[0])
    return PlainAccumulator(specs)


def test_weighted_sum_matches_float64_reference():
    rng = np.random.default_rng(0)
    updates = [random_update(rng) for _ in range(4)]
    weights = [12.0, 1.0, 300.0, 7.5]
    acc = accumulator_for(updates)
    for k, (update, weight) in enumerate(zip(updates, weights, strict=True)):
        acc.add(str(k), weight, encode_tensors(update)[1])
    summed = acc.finalize(PhaseTimer())
    assert summed.weight == sum(weights) and summed.contributors == ("0", "1", "2", "3")
    for name in SHAPES:
        reference = sum(w * u[name].astype(np.float64) for w, u in zip(weights, updates, strict=True))
        np.testing.assert_allclose(summed.total[name], reference, rtol=1e-12, atol=1e-13)


def test_sum_is_bit_identical_for_every_arrival_order():
    rng = np.random.default_rng(1)
    updates = [random_update(rng) for _ in range(4)]
    weights = [3.0, 1.0, 0.1, 1e4]
    results = []
    for order in itertools.permutations(range(4)):
        acc = accumulator_for(updates)
        for k in order:
            acc.add(str(k), weights[k], encode_tensors(updates[k])[1])
        results.append(acc.finalize(PhaseTimer()))
    for other in results[1:]:
        assert other.weight == results[0].weight
        for name in SHAPES:
            assert other.total[name].tobytes() == results[0].total[name].tobytes()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_update_is_rejected_and_leaves_the_sum_untouched(bad):
    rng = np.random.default_rng(2)
    good = random_update(rng)
    acc = accumulator_for([good])
    acc.add("0", 2.0, encode_tensors(good)[1])
    poisoned = {name: value.copy() for name, value in good.items()}
    poisoned["bias"][0] = bad
    with pytest.raises(Rejected, match="'bias' contains NaN or infinite") as caught:
        acc.add("1", 2.0, encode_tensors(poisoned)[1])
    assert caught.value.kind == Refusal.INVALID
    summed = acc.finalize(PhaseTimer())
    assert summed.contributors == ("0",) and summed.weight == 2.0
    np.testing.assert_allclose(summed.total["embedding.weight"], 2.0 * good["embedding.weight"].astype(np.float64))


def test_values_beyond_the_exact_range_are_rejected():
    update = {name: np.zeros(shape, np.float32) for name, shape in SHAPES.items()}
    update["bias"][0] = -(2.0 ** (MAX_ABS_BITS - 6))
    acc = accumulator_for([update])
    acc.add("0", 63.0, encode_tensors(update)[1])  # just below the bound once weighted
    with pytest.raises(Rejected, match="aggregation bound"):
        acc.add("1", 64.0, encode_tensors(update)[1])
    summed = acc.finalize(PhaseTimer())
    assert summed.total["bias"][0] == -63.0 * 2.0 ** (MAX_ABS_BITS - 6)


def test_payload_size_is_announced():
    update = {name: np.zeros(shape, np.float32) for name, shape in SHAPES.items()}
    assert accumulator_for([update]).payload_bytes == (50 * 4 + 1) * 4
