"""The packing bound, checked on plain integers (no encryption), so thousands of cases run in seconds.

The layout is checked by what any correct layout must satisfy, not by its current numbers: the worst-case sum
of ``max_clients`` updates fits its slot (and a slot one bit narrower would not hold it), the slots fit below
the modulus (``slots · width ≤ |n| − 1``) and one more slot would not.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fedgrad.crypto import PlaintextRangeError, SecureAggConfig, SlotLayout
from fedgrad.crypto.quantize import max_quantized, quantize
from fedgrad.errors import ConfigError


@pytest.mark.parametrize("max_clients", [1, 2, 100, 256, 257, 1000])
@pytest.mark.parametrize("value_bits", [8, 16, 24])
def test_layouts_for_a_2048_bit_key_hold_the_worst_case_and_waste_no_slot(value_bits, max_clients):
    layout = SlotLayout.derive(value_bits, max_clients, 2048)
    worst = max_clients * 2 * max_quantized(value_bits)  # every client at +Q, offset by Q: 2Q each
    assert worst < 2 ** layout.slot_bits                      # the worst-case sum never carries
    assert worst >= 2 ** (layout.slot_bits - 1)               # ... and needs every bit of the slot
    assert layout.slots * layout.slot_bits <= 2048 - 1       # every packed sum stays below n
    assert (layout.slots + 1) * layout.slot_bits > 2048 - 1  # ... and one more slot would not fit


@pytest.mark.parametrize("max_clients", [2, 10, 100, 256])
def test_wire_target_met_up_to_256_clients(max_clients):
    assert 512 / SlotLayout.derive(16, max_clients, 2048).slots <= 6.1


def test_key_too_small_for_one_slot():
    with pytest.raises(ConfigError, match="cannot hold"):
        SlotLayout.derive(32, 1 << 20, 48)


@settings(max_examples=2000, deadline=None)
@given(value_bits=st.integers(2, 32), max_clients=st.integers(1, 1 << 20), key_bits=st.integers(64, 4096))
def test_slot_width_is_the_smallest_that_holds_the_bound(value_bits, max_clients, key_bits):
    top = max_clients * 2 * max_quantized(value_bits)
    slot_bits = top.bit_length()
    assume(slot_bits <= key_bits - 1)
    layout = SlotLayout.derive(value_bits, max_clients, key_bits)
    assert top < 2 ** layout.slot_bits and (layout.slot_bits == 1 or top >= 2 ** (layout.slot_bits - 1))
    assert layout.plaintext_bits <= key_bits - 1 < layout.plaintext_bits + layout.slot_bits


KINDS = ("random", "plus_clip", "minus_clip", "extremes", "beyond_clip")


def client_updates(rng, kind, n_clients, n_params, clip):
    shape = (n_clients, n_params)
    if kind == "plus_clip":
        return np.full(shape, clip)
    if kind == "minus_clip":
        return np.full(shape, -clip)
    if kind == "extremes":
        return rng.choice([-clip, clip], size=shape)
    if kind == "beyond_clip":
        return rng.uniform(-5 * clip, 5 * clip, size=shape)
    return rng.normal(0.0, clip / 3, size=shape)


def pack_sum_unpack(layout, qs, n_params):
    """What the protocol computes: per plaintext, the (homomorphic) sum over clients, then decode."""
    totals = [sum(column) for column in zip(*(layout.pack(q) for q in qs), strict=True)]
    assert all(t < 2 ** (layout.key_bits - 1) for t in totals)  # below n: decryption returns it unreduced
    return layout.unpack_sums(totals, n_params, len(qs))


@settings(max_examples=1200, deadline=None)
@given(value_bits=st.integers(2, 32), max_clients=st.integers(1, 256), n_frac=st.floats(0, 1),
       key_bits=st.sampled_from([256, 512, 2048]), n_params=st.integers(1, 300), clip=st.floats(1e-3, 1e3),
       kind=st.sampled_from(KINDS), unit_weights=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_packed_sum_is_exact(value_bits, max_clients, n_frac, key_bits, n_params, clip, kind, unit_weights, seed):
    assume((max_clients * 2 * max_quantized(value_bits)).bit_length() <= key_bits - 1)
    rng = np.random.default_rng(seed)
    n_clients = 1 + round(n_frac * (max_clients - 1))
    cfg = SecureAggConfig(mode="paillier", n_params=n_params, clip=clip, value_bits=value_bits,
                          max_clients=max_clients)
    layout = SlotLayout.derive(value_bits, max_clients, key_bits)
    weights = np.ones(n_clients) if unit_weights else rng.uniform(1e-3, 1.0, size=n_clients)
    updates = client_updates(rng, kind, n_clients, n_params, clip)
    qs = [quantize(cfg, u, w) for u, w in zip(updates, weights, strict=True)]
    np.testing.assert_array_equal(pack_sum_unpack(layout, qs, n_params), np.sum(qs, axis=0))


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("value_bits,max_clients,key_bits", [(16, 256, 2048), (32, 5, 512), (2, 1, 64)])
def test_max_clients_at_the_extreme_fill_the_slots(sign, value_bits, max_clients, key_bits):
    layout = SlotLayout.derive(value_bits, max_clients, key_bits)
    cfg = SecureAggConfig(mode="paillier", n_params=2 * layout.slots, clip=1.0, value_bits=value_bits,
                          max_clients=max_clients)
    qs = [quantize(cfg, np.full(cfg.n_params, sign * 1.0), 1.0) for _ in range(max_clients)]
    sums = pack_sum_unpack(layout, qs, cfg.n_params)
    assert (sums == sign * max_clients * max_quantized(value_bits)).all()


def test_unpack_rejects_aggregates_that_break_the_bound():
    layout = SlotLayout.derive(8, 4, 128)  # Q = 127, 10-bit slots, 12 per plaintext
    zero = layout.pack(np.zeros(15, dtype=np.int64))  # 2 plaintexts, 9 padding slots
    assert layout.unpack_sums(zero, 15, 1).tolist() == [0] * 15
    with pytest.raises(PlaintextRangeError, match="above its last slot"):
        layout.unpack_sums([zero[0] + (1 << layout.plaintext_bits), zero[1]], 15, 1)
    with pytest.raises(PlaintextRangeError, match="padding"):
        layout.unpack_sums([zero[0], zero[1] + (1 << (layout.slot_bits * 5))], 15, 1)
    with pytest.raises(PlaintextRangeError, match="exceeds"):  # slot 0 = 255 > 1 · 2Q = 254
        layout.unpack_sums([zero[0] + 128, zero[1]], 15, 1)
    with pytest.raises(PlaintextRangeError, match="expected 2"):
        layout.unpack_sums(zero[:1], 15, 1)


def test_pack_refuses_values_outside_the_quantized_range():
    layout = SlotLayout.derive(8, 4, 128)
    for bad in (128, -128):
        with pytest.raises(ValueError, match="must lie in"):
            layout.pack(np.array([0, bad], dtype=np.int64))


# ---- integer weights carried in the plaintext (SecureAggConfig.max_weight = W ≥ 1) ----

def weighted_sum_unpack(layout, qs, weights, n_params):
    totals = [sum(column)
              for column in zip(*(layout.pack_weighted(q, w) for q, w in zip(qs, weights, strict=True)), strict=True)]
    assert all(t < 2 ** layout.plaintext_bits <= 2 ** (layout.key_bits - 1) for t in totals)  # no overflow, < n
    return layout.unpack_weighted(totals, n_params, len(qs))


@settings(max_examples=2000, deadline=None)
@given(value_bits=st.integers(2, 32), max_clients=st.integers(1, 1 << 20), max_weight=st.integers(1, 1 << 30),
       key_bits=st.integers(64, 4096))
def test_weighted_slot_width_bound(value_bits, max_clients, max_weight, key_bits):
    top = max_clients * max_weight * 2 * max_quantized(value_bits)
    assume(top.bit_length() <= min(key_bits - 1, 62))
    layout = SlotLayout.derive(value_bits, max_clients, key_bits, max_weight)
    assert top < 2 ** layout.slot_bits  # the worst slot sum fits ...
    assert layout.slot_bits <= value_bits + (max_clients * max_weight - 1).bit_length()  # ≤ b + ⌈log2(N·W)⌉
    assert max_clients * max_weight < 2 ** layout.slot_bits  # ... and so does the weight slot
    assert layout.plaintext_bits <= key_bits - 1


@settings(max_examples=600, deadline=None)
@given(value_bits=st.integers(2, 32), max_clients=st.integers(1, 64), max_weight=st.integers(1, 1 << 16),
       key_bits=st.sampled_from([256, 512, 2048]), n_params=st.integers(1, 200), n_frac=st.floats(0, 1),
       kind=st.sampled_from(("plus", "minus", "mixed")), heavy=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_worst_case_weighted_sums_are_exact(value_bits, max_clients, max_weight, key_bits, n_params, n_frac,
                                           kind, heavy, seed):
    """N = 1..N_max clients at ±Q with weight W (or random weights): exact (Σ n_i q_i, Σ n_i), no overflow."""
    assume((max_clients * max_weight * 2 * max_quantized(value_bits)).bit_length() <= min(key_bits - 1, 62))
    rng = np.random.default_rng(seed)
    n_clients = 1 + round(n_frac * (max_clients - 1))
    q_max = max_quantized(value_bits)
    layout = SlotLayout.derive(value_bits, max_clients, key_bits, max_weight)
    if kind == "plus":
        qs = np.full((n_clients, n_params), q_max, dtype=np.int64)
    elif kind == "minus":
        qs = np.full((n_clients, n_params), -q_max, dtype=np.int64)
    else:
        qs = rng.choice([-q_max, q_max], size=(n_clients, n_params)).astype(np.int64)
    weights = [max_weight] * n_clients if heavy else [int(w) for w in rng.integers(1, max_weight + 1, n_clients)]
    sums, total = weighted_sum_unpack(layout, qs, weights, n_params)
    assert total == sum(weights)
    np.testing.assert_array_equal(
        sums, sum(w * q.astype(object) for w, q in zip(weights, qs, strict=True)).astype(np.int64))


def test_all_clients_at_the_extremes_with_max_weight_fill_the_slots():
    layout = SlotLayout.derive(16, 100, 2048, 1000)
    assert (layout.slot_bits, layout.slots) == (33, 62)
    for sign in (1, -1):
        qs = [np.full(150, sign * layout.offset, dtype=np.int64)] * 100
        sums, total = weighted_sum_unpack(layout, qs, [1000] * 100, 150)
        assert total == 100_000 and (sums == sign * 100_000 * layout.offset).all()


def test_weighted_unpack_rejects_aggregates_that_break_the_bound():
    layout = SlotLayout.derive(8, 4, 256, 10)  # Q = 127, slot width bitlen(4·10·254) = 14, 18 slots
    q = np.zeros(20, dtype=np.int64)
    one = layout.pack_weighted(q, 3)  # 21 values incl. the weight slot → 2 plaintexts
    sums, total = layout.unpack_weighted(one, 20, 1)
    assert total == 3 and not sums.any()
    weight_slot = 20 - layout.slots  # in the second plaintext
    with pytest.raises(PlaintextRangeError, match="total weight"):  # 1 contributor cannot weigh 11 > W
        layout.unpack_weighted([one[0], one[1] + (8 << (weight_slot * layout.slot_bits))], 20, 1)
    with pytest.raises(PlaintextRangeError, match="total weight"):  # 4 contributors weigh at least 4, not 3
        layout.unpack_weighted(one, 20, 4)
    with pytest.raises(PlaintextRangeError, match="exceeds the bound for total weight 3"):  # slot 0 > 2Q·3
        layout.unpack_weighted([one[0] + 3 * 127 + 1, one[1]], 20, 1)
    with pytest.raises(PlaintextRangeError, match="padding"):
        layout.unpack_weighted([one[0], one[1] + (1 << ((weight_slot + 1) * layout.slot_bits))], 20, 1)
    with pytest.raises(PlaintextRangeError, match="above its last slot"):
        layout.unpack_weighted([one[0] + (1 << layout.plaintext_bits), one[1]], 20, 1)
    for bad_weight in (0, 11, True):
        with pytest.raises(ValueError, match="weight"):
            layout.pack_weighted(q, bad_weight)
    with pytest.raises(ValueError, match="pack_weighted"):
        layout.pack(q)
    with pytest.raises(ValueError, match="unpack_sums"):
        SlotLayout.derive(8, 4, 256).unpack_weighted(one, 20, 1)
