"""Behaviour of the autograd engine itself: graph traversal, accumulation, aliasing, freeing."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import fedgrad as fg


def test_intermediate_used_at_different_depths_gets_all_contributions():
    """A non-leaf used directly and through a longer path must run its backward only once its
    gradient is complete (a topological-order bug shows up only here, not on leaves)."""
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    a = x * 3
    y = (a + (a * 2).exp().log() * 5).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [33.0, 33.0])


def test_leaf_gradients_accumulate_across_backward_calls():
    w = fg.tensor([1.0, -2.0], requires_grad=True)
    (w * 2).sum().backward()
    (w * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2 + 2, 2 - 4])


def test_leaf_gradients_never_alias():
    a = fg.tensor([1.0, 2.0], requires_grad=True)
    b = fg.tensor([3.0, 4.0], requires_grad=True)
    upstream = fg.tensor([1.0, 1.0])
    (a + b).backward(upstream)
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    assert not np.shares_memory(a.grad.numpy(), upstream.numpy())
    c = fg.tensor(np.ones((2, 3)), requires_grad=True)
    d = fg.tensor(np.ones((2, 3)), requires_grad=True)
    (c.reshape(3, 2) + d.reshape(3, 2)).sum().backward()
    assert not np.shares_memory(c.grad.numpy(), d.grad.numpy())
    c.grad.numpy()[...] = 5.0
    np.testing.assert_array_equal(d.grad.numpy(), np.ones((2, 3)))


def test_gradient_of_the_root_itself():
    x = fg.tensor([2.0], requires_grad=True)
    x.backward(fg.tensor([3.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [3.0])


def test_graph_is_freed_after_backward():
    x = fg.tensor(np.ones(3), requires_grad=True)
    hidden = x.exp()
    probe = weakref.ref(hidden.data)  # kept alive by the graph until backward frees it
    loss = (hidden * 2).sum()
    del hidden
    loss.backward()
    gc.collect()
    assert probe() is None
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()


def test_retain_graph_allows_a_second_backward():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_no_grad_records_nothing():
    x = fg.tensor([1.0], requires_grad=True)
    with fg.no_grad():
        y = x * 2
        assert not fg.is_grad_enabled()
    assert fg.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None

    @fg.no_grad()
    def evaluate(t):
        return t * 3

    assert not evaluate(x).requires_grad


def test_constants_record_no_graph():
    a = fg.tensor([1.0, 2.0])
    b = a * 2 + 1
    assert not b.requires_grad and b._ctx is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        b.sum().backward()


def test_detach_cuts_the_graph():
    x = fg.tensor([3.0], requires_grad=True)
    y = x * x.detach()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0])


def test_non_scalar_backward_needs_explicit_grad():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="explicit grad"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(fg.tensor([1.0]))


def test_dtype_defaults_and_preservation():
    assert fg.tensor([1.0, 2.0]).dtype == np.float32
    assert fg.tensor(np.zeros(2)).dtype == np.float32
    assert fg.tensor([1, 2]).dtype == np.int64
    assert fg.tensor(np.zeros(2, dtype=np.int32)).dtype == np.int32
    assert fg.tensor([1.0], dtype=fg.float64).dtype == np.float64
    x = fg.tensor([1.0], dtype=fg.float64)
    assert (x * 0.5 + 1).dtype == np.float64
    assert (fg.tensor([1.0]) * 0.5).dtype == np.float32
    assert (fg.tensor([1.0]) * np.array([0.5])).dtype == np.float32
    assert fg.randn(2, 3).dtype == np.float32 and fg.zeros((2, 3)).shape == (2, 3)
    with pytest.raises(TypeError, match="floating"):
        fg.tensor([1, 2], requires_grad=True)


def test_float32_gradients_stay_float32():
    w = fg.randn(4, 3, requires_grad=True)
    x = fg.randn(5, 4)
    ((x @ w).sigmoid() * 0.5).mean().backward()
    assert w.grad.dtype == np.float32


def test_numpy_operands_on_either_side():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([2.0, 3.0]) * x + x * np.array([1.0, 1.0])
    assert isinstance(y, fg.Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_factories_and_seeding():
    fg.manual_seed(3)
    a = fg.randn(4)
    fg.manual_seed(3)
    np.testing.assert_array_equal(a.numpy(), fg.randn(4).numpy())
    np.testing.assert_array_equal(fg.arange(3).numpy(), [0, 1, 2])
    np.testing.assert_array_equal(fg.ones(2).numpy(), [1.0, 1.0])
    assert fg.tensor(2.5).item() == 2.5
    assert "requires_grad=True" in repr(fg.zeros(1, requires_grad=True))


def test_comparisons_and_argmax_are_outside_the_graph():
    x = fg.tensor([[0.1, 0.9], [0.7, 0.3]], requires_grad=True)
    assert (x > 0.5).dtype == np.bool_ and not (x > 0.5).requires_grad
    np.testing.assert_array_equal(x.argmax(axis=1).numpy(), [1, 0])


def test_in_place_accumulation_never_touches_a_shared_buffer():
    """`a + b` hands the same array to both inputs; later sums into one must not leak into the other."""
    x = fg.tensor([1.0], requires_grad=True)
    y = fg.tensor([1.0], requires_grad=True)
    p = x * 1.0
    q = y * 1.0
    s = p + q  # p and q receive the same gradient array
    total = s + p * 4 + p * 2  # p gets two more contributions
    total.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [7.0])
    np.testing.assert_allclose(y.grad.numpy(), [1.0])
