"""RLWE key-additive masking (`fedgrad.crypto.lattice`): exact ring products, exact recovery at the bounds of the
docstring's proof, refusal beyond them, and the Paillier key layout's size."""
from __future__ import annotations

import random

import numpy as np
import pytest

from fedgrad.crypto.errors import AggregationError, EncodingError, PlaintextRangeError
from fedgrad.crypto.lattice import (
    DEGREE,
    ERROR_ETA,
    MaskLayout,
    RandomBytes,
    key_layout,
    negacyclic_mul,
    public_masks,
    sample_error,
    sample_secret,
)
from fedgrad.errors import ConfigError

MOD = 1 << 64


def seeded(seed: int) -> RandomBytes:
    return random.Random(seed).randbytes


def schoolbook(a: list[int], s: list[int]) -> list[int]:
    """a·s mod (X^N + 1, 2^64) with Python integers: the reference the FFT must equal."""
    n = len(a)
    out = [0] * n
    for i, ai in enumerate(a):
        for j, sj in enumerate(s):
            if sj:
                k = i + j
                out[k % n] += ai * sj if k < n else -ai * sj
    return [v % MOD for v in out]


@pytest.mark.parametrize("n", [8, 64])
def test_ring_product_matches_schoolbook(n: int) -> None:
    a = public_masks("run", 3, 2, degree=n)
    s = sample_secret(n, seeded(1))
    got = negacyclic_mul(a, s)
    for block in range(2):
        assert [int(v) for v in got[block]] == schoolbook([int(v) for v in a[block]], [int(v) for v in s])


def test_ring_product_exact_at_full_degree_with_extreme_inputs() -> None:
    """N = 4096, every limb at its maximum and s = ±1 everywhere: the float64 bound's worst case, against
    direct int64 convolutions of each limb (an independent path)."""
    a = np.full((1, DEGREE), MOD - 1, dtype=np.uint64)
    a[0, ::3] = np.uint64(0xFFFF_0000_FFFF_0000)
    s = np.where(np.arange(DEGREE) % 2 == 0, 1, -1).astype(np.int64)
    expected = np.zeros(DEGREE, dtype=np.uint64)
    for limb in range(4):
        part = ((a[0] >> np.uint64(16 * limb)) & np.uint64(0xFFFF)).astype(np.int64)
        full = np.convolve(part, s)
        nega = full[:DEGREE].copy()
        nega[:DEGREE - 1] -= full[DEGREE:]
        expected += nega.astype(np.uint64) << np.uint64(16 * limb)
    assert np.array_equal(negacyclic_mul(a, s)[0], expected)


def test_public_masks_are_distinct_per_block_run_and_round_and_reproducible() -> None:
    a = public_masks("run-a", 1, 2)
    assert a.dtype == np.uint64 and a.shape == (2, DEGREE)
    assert np.array_equal(a, public_masks("run-a", 1, 2))
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a, public_masks("run-a", 2, 2))
    assert not np.array_equal(a, public_masks("run-b", 1, 2))


def test_samplers_stay_in_their_supports_with_the_right_spread() -> None:
    s = sample_secret(DEGREE, seeded(2))
    assert set(np.unique(s).tolist()) == {-1, 0, 1}
    assert abs(float(np.mean(s == 0)) - 1 / 3) < 0.05
    e = sample_error((8, DEGREE), ERROR_ETA, seeded(3))
    assert np.abs(e).max() <= ERROR_ETA
    assert abs(float(e.var()) - ERROR_ETA / 2) < 0.5


def test_os_randomness_by_default() -> None:
    assert not np.array_equal(sample_secret(), sample_secret())


def _cohort(layout: MaskLayout, values: list[np.ndarray], masks: np.ndarray,
            error_fill: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    total = np.zeros(sum(v.size for v in values[:1]), dtype=np.uint64)
    key_sum = np.zeros(layout.degree, dtype=np.int64)
    for i, m in enumerate(values):
        if error_fill is None:
            c, s = layout.mask(m, masks, seeded(100 + i))
        else:
            s = sample_secret(layout.degree, seeded(100 + i))
            c = layout.encode(m, masks, s, np.full(masks.shape, error_fill, dtype=np.int64))
        total += c
        key_sum += s
    return total, key_sum


def test_cohort_sum_is_recovered_exactly() -> None:
    layout = MaskLayout.derive(max_clients=5, max_value=1000)
    rng = np.random.default_rng(0)
    values = [rng.integers(-1000, 1001, size=5000) for _ in range(5)]
    masks = public_masks("run", 0, layout.n_blocks(5000))
    total, key_sum = _cohort(layout, values, masks)
    assert np.array_equal(layout.unmask(total, masks, key_sum, 5), np.sum(values, axis=0))


@pytest.mark.parametrize("sign", [1, -1])
def test_exact_at_the_bounds(sign: int) -> None:
    """N_max clients, every value at ±V, every error at ±η, V the largest the proof allows (r = 0): still exact;
    one more and the layout is refused."""
    max_clients = 4
    delta = 1 << (2 * max_clients * ERROR_ETA).bit_length()
    top = ((1 << 63) - 1 - max_clients * ERROR_ETA) // (max_clients * delta)
    layout = MaskLayout.derive(max_clients, top)
    assert layout.dropped_bits == 0 and layout.delta == delta
    with pytest.raises(ConfigError):
        MaskLayout.derive(max_clients, top + 1)
    masks = public_masks("edge", 0, 1)
    values = [np.full(DEGREE, sign * top, dtype=np.int64) for _ in range(max_clients)]
    total, key_sum = _cohort(layout, values, masks, error_fill=sign * ERROR_ETA)
    got = layout.unmask(total, masks, key_sum, max_clients)
    assert np.array_equal(got, np.full(DEGREE, sign * top * max_clients))


@pytest.mark.parametrize("sign", [1, -1])
def test_exact_with_rounded_coefficients_at_the_value_bound(sign: int) -> None:
    """16-bit values with weights up to 1000: low bits are dropped on the wire and the sum is still exact."""
    max_clients, bound = 6, 1000 * ((1 << 15) - 1)
    layout = MaskLayout.derive(max_clients, bound)
    assert layout.dropped_bits > 0 and layout.value_bytes < 8
    masks = public_masks("round", 0, 2)
    values = [np.full(DEGREE + 5, sign * bound, dtype=np.int64) for _ in range(max_clients)]
    total, key_sum = _cohort(layout, values, masks, error_fill=sign * ERROR_ETA)
    got = layout.unmask(total, masks, key_sum, max_clients)
    assert np.array_equal(got, np.full(DEGREE + 5, sign * bound * max_clients))


def test_wire_width_per_cohort_size() -> None:
    bound = 1000 * ((1 << 15) - 1)
    assert (MaskLayout.derive(1000, bound).dropped_bits, MaskLayout.derive(1000, bound).delta_bits) == (16, 26)
    assert (MaskLayout.derive(10, bound).dropped_bits, MaskLayout.derive(10, bound).delta_bits) == (24, 28)


def test_delta_is_the_smallest_power_of_two_above_the_error_sum() -> None:
    layout = MaskLayout.derive(max_clients=1000, max_value=1)
    noise = 1000 * layout.noise_per_client
    assert layout.noise_per_client == ERROR_ETA + (1 << (layout.dropped_bits - 1))
    assert layout.delta > 2 * noise >= layout.delta // 2


def test_refuses_values_beyond_the_layout() -> None:
    layout = MaskLayout.derive(max_clients=3, max_value=10)
    masks = public_masks("run", 0, 1)
    with pytest.raises(EncodingError):
        layout.mask(np.array([11]), masks, seeded(0))


def test_refuses_more_contributors_than_the_layout() -> None:
    layout = MaskLayout.derive(max_clients=2, max_value=10)
    masks = public_masks("run", 0, 1)
    total, key_sum = _cohort(layout, [np.ones(3, dtype=np.int64)] * 2, masks)
    with pytest.raises(AggregationError):
        layout.unmask(total, masks, key_sum, 3)


def test_refuses_a_wrong_key_sum_and_a_forged_masked_vector() -> None:
    layout = MaskLayout.derive(max_clients=3, max_value=1000 * ((1 << 15) - 1))
    masks = public_masks("run", 0, 1)
    total, key_sum = _cohort(layout, [np.ones(DEGREE, dtype=np.int64)] * 3, masks)
    wrong = key_sum.copy()
    wrong[0] += 1 if wrong[0] < 3 else -1
    with pytest.raises(PlaintextRangeError):
        layout.unmask(total, masks, wrong, 3)
    with pytest.raises(PlaintextRangeError):
        garbage = np.random.default_rng(0).integers(0, 1 << (64 - layout.dropped_bits), total.size, dtype=np.uint64)
        layout.unmask(total + garbage, masks, key_sum, 3)
    with pytest.raises(PlaintextRangeError):
        layout.unmask(total, masks, np.full(DEGREE, 4, dtype=np.int64), 3)


def test_key_sum_rides_in_a_fixed_number_of_paillier_plaintexts() -> None:
    layout = key_layout(max_clients=1000, key_bits=2048)
    assert layout.slot_bits == 11 and layout.slots == 186 and layout.n_plaintexts(DEGREE) == 23
    secrets_ = [sample_secret(DEGREE, seeded(i)) for i in range(3)]
    packed = [layout.pack(s) for s in secrets_]
    summed = [sum(col) for col in zip(*packed, strict=True)]
    assert np.array_equal(layout.unpack_sums(summed, DEGREE, 3), np.sum(secrets_, axis=0))
