"""Regression tests for the known defects of the Grokking Deep Learning ch.13 framework.

Each test reproduces the situation in which the book's code goes wrong and checks the right
answer (numerical gradients or closed forms)."""
from __future__ import annotations

import sys

import numpy as np

import fedgrad as fg
from fedgrad.nn import functional as F


def test_dead_branch_does_not_deadlock():
    """Book: a tensor waits for a gradient from *every* child before propagating, so a child that
    never reaches the loss (a monitored activation, an unused head) blocks its gradient for ever."""
    w = fg.tensor([[0.5, -1.0], [2.0, 0.3]], requires_grad=True)
    x = fg.tensor([[1.0, 2.0]])
    hidden = x @ w
    _unused_head = (hidden * 3).sigmoid()  # a child of `hidden` that never gets a gradient
    loss = hidden.sum()
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), [[1.0, 1.0], [2.0, 2.0]])


def test_matmul_backward_through_a_recurrent_chain(gradcheck):
    """Book: mm backward in RNN/LSTM chains accumulated into gradient objects shared between time
    steps, so a weight reused at every step got a wrong total. Check a plain-matmul RNN
    unrolled over 6 steps against central differences, for the recurrent and input weights."""
    xs = np.random.default_rng(0).standard_normal((6, 2, 3))

    def rnn(w_x, w_h, h0):
        h = h0
        for t in range(xs.shape[0]):
            h = (fg.tensor(xs[t], dtype=fg.float64) @ w_x + h @ w_h).tanh()
        return h

    gradcheck(rnn, [np.random.default_rng(1).standard_normal(s) * 0.5 for s in [(3, 4), (4, 4), (2, 4)]])


def test_index_select_accumulates_repeated_indices():
    """Book: index_select's backward is a Python loop over indices that must add, not assign,
    rows hit several times; check against np.add.at for repeated 2-D indices."""
    weight = fg.tensor(np.eye(5), requires_grad=True)
    ids = np.array([[1, 2, 3], [2, 3, 4], [3, 3, 3]])
    upstream = np.random.default_rng(2).standard_normal((3, 3, 5))
    weight.index_select(0, ids).backward(upstream)
    expected = np.zeros((5, 5))
    np.add.at(expected, ids.reshape(-1), upstream.reshape(-1, 5))
    np.testing.assert_allclose(weight.grad.numpy(), expected, rtol=1e-6)


def test_cross_entropy_uses_upstream_gradient_and_batch_mean():
    """Book: cross_entropy's backward returned softmax - onehot whatever gradient arrived, and
    without the 1/N of the batch mean; so `3 * loss` had the same gradient as `loss`."""
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    targets = np.array([0, 2])
    x = fg.tensor(logits, requires_grad=True, dtype=fg.float64)
    (F.cross_entropy(x, targets) * 3.0).backward()
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = (probs - np.eye(3)[targets]) * 3.0 / len(targets)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-10)


def test_backward_depth_is_not_limited_by_recursion():
    """Book: backward recurses once per op, so graphs deeper than the recursion limit (about
    1,000 frames) crash. Run a 10,000-op chain with a deliberately low limit."""
    x = fg.tensor([0.5], requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        y.backward()
    finally:
        sys.setrecursionlimit(limit)
    np.testing.assert_allclose(x.grad.numpy(), [1.0001**10_000], rtol=1e-3)
