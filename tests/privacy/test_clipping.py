import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedgrad.privacy import clip_by_l2, clip_update, l2_norm

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(update=arrays(np.float32, st.integers(1, 300), elements=finite), c=st.floats(1e-3, 1e3))
def test_clipping_bounds_every_update_and_keeps_its_direction(update, c):
    clipped, was_clipped = clip_by_l2(update, c)
    norm = l2_norm(update)
    assert clipped.dtype == update.dtype and clipped.shape == update.shape
    assert l2_norm(clipped) <= c * (1 + 1e-6)
    assert was_clipped == (norm > c)
    if was_clipped:
        np.testing.assert_allclose(clipped, update * np.float32(c / norm), rtol=1e-5, atol=1e-30)
    else:
        np.testing.assert_array_equal(clipped, update)


def test_short_update_is_returned_unchanged_as_a_copy():
    update = np.array([0.3, 0.4], dtype=np.float32)
    clipped, was_clipped = clip_by_l2(update, 1.0)
    assert not was_clipped
    np.testing.assert_array_equal(clipped, update)
    clipped[0] = 9
    assert update[0] == np.float32(0.3)


def test_state_dict_update_is_clipped_by_its_global_norm():
    update = {"emb": np.full((4, 2), 3.0, dtype=np.float32), "bias": np.array([4.0], dtype=np.float32)}
    assert l2_norm(update) == pytest.approx(np.sqrt(8 * 9 + 16))
    clipped, was_clipped = clip_update(update, 2.0)
    assert was_clipped
    assert l2_norm(clipped) == pytest.approx(2.0, rel=1e-6)
    scale = 2.0 / np.sqrt(88)
    np.testing.assert_allclose(clipped["emb"], 3.0 * scale, rtol=1e-6)
    np.testing.assert_allclose(clipped["bias"], 4.0 * scale, rtol=1e-6)
    assert list(clipped) == ["emb", "bias"]


def test_norm_of_large_float32_update_does_not_overflow():
    update = np.full(10, 1e30, dtype=np.float32)
    clipped, was_clipped = clip_by_l2(update, 1.0)
    assert was_clipped and np.isfinite(clipped).all()
    assert l2_norm(clipped) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_update_is_refused(bad):
    with pytest.raises(ValueError, match="NaN or Inf"):
        clip_by_l2(np.array([1.0, bad]), 1.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        clip_update({"w": np.array([bad])}, 1.0)


@pytest.mark.parametrize("c", [0.0, -1.0, np.nan])
def test_clip_bound_must_be_positive(c):
    with pytest.raises(ValueError, match="positive"):
        clip_by_l2(np.ones(3), c)
