"""Numerical gradient checks (float64, central differences) for every op, including
broadcasting and an input used several times."""
from __future__ import annotations

import numpy as np
import pytest

import fedgrad as fg
from fedgrad.nn import functional as F

R = np.random.default_rng(7)


def arr(*shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return R.uniform(low, high, size=shape)


def positive(*shape: int) -> np.ndarray:
    return R.uniform(0.5, 2.0, size=shape)


def away_from_zero(*shape: int) -> np.ndarray:
    """Values with |x| >= 0.2 so kinks (abs, relu, clip) are not straddled by finite differences."""
    return R.choice([-1.0, 1.0], size=shape) * R.uniform(0.2, 1.0, size=shape)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}
SHAPE_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((3, 4), ())]


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_binary_ops_broadcast(gradcheck, name, shapes):
    gradcheck(BINARY[name], [positive(*shapes[0]), positive(*shapes[1])])


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_ops_with_python_scalars(gradcheck, name):
    op = BINARY[name]
    gradcheck(lambda a: op(a, 1.7) + op(0.6, a), [positive(3, 2)])


def test_input_used_many_times(gradcheck):
    gradcheck(lambda a, b: a * a * b + (a - b) * a + a.exp() / b, [arr(3, 4), positive(3, 4)])


def test_neg(gradcheck):
    gradcheck(lambda a: -a * 3, [arr(5)])


@pytest.mark.parametrize(
    "shapes",
    [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
     ((1, 3, 4), (2, 4, 5))],
    ids=str,
)
def test_matmul(gradcheck, shapes):
    gradcheck(lambda a, b: a @ b, [arr(*shapes[0]), arr(*shapes[1])])


def test_matmul_chain_reuses_weight(gradcheck):
    gradcheck(lambda x, w: ((x @ w).tanh() @ w).tanh() @ w, [arr(2, 3), arr(3, 3)])


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reductions(gradcheck, op, axis, keepdims):
    data = R.permutation(24).reshape(2, 3, 4) / 7.0  # distinct values: max is differentiable
    gradcheck(lambda x: getattr(x, op)(axis=axis, keepdims=keepdims), [data])


def test_max_ties_share_gradient():
    x = fg.tensor([1.0, 3.0, 3.0, 0.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.5, 0.5, 0.0])


UNARY = {
    "exp": (lambda x: x.exp(), arr),
    "log": (lambda x: x.log(), positive),
    "sqrt": (lambda x: x.sqrt(), positive),
    "abs": (lambda x: x.abs(), away_from_zero),
    "clip": (lambda x: x.clip(-0.5, 0.5), away_from_zero),
    "clip_low_only": (lambda x: x.clip(min=0.3), away_from_zero),
    "sigmoid": (lambda x: x.sigmoid(), lambda *s: arr(*s, low=-6, high=6)),
    "tanh": (lambda x: x.tanh(), arr),
    "relu": (lambda x: x.relu(), away_from_zero),
    "softmax": (lambda x: x.softmax(axis=-1), arr),
    "softmax_axis0": (lambda x: x.softmax(axis=0), arr),
    "log_softmax": (lambda x: x.log_softmax(axis=-1), arr),
    "log_softmax_axis0": (lambda x: x.log_softmax(axis=0), arr),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops(gradcheck, name):
    op, make = UNARY[name]
    gradcheck(op, [make(3, 4)])


def test_softmax_is_stable_for_huge_logits():
    x = fg.tensor([[1000.0, 0.0, -1000.0]], requires_grad=True)
    y = x.log_softmax()
    assert np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(x.softmax().numpy(), [[1.0, 0.0, 0.0]], atol=1e-6)


def test_shape_ops(gradcheck):
    gradcheck(lambda x: x.reshape(4, 6).T.reshape(2, 12), [arr(2, 3, 4)])
    gradcheck(lambda x: x.transpose(0, 2), [arr(2, 3, 4)])
    gradcheck(lambda x: x.permute(1, 2, 0) * x.permute(1, 2, 0), [arr(2, 3, 4)])
    gradcheck(lambda x: x.unsqueeze(1).squeeze(1).flatten(), [arr(2, 3)])


@pytest.mark.parametrize(
    "index",
    [
        (slice(1, 3),),
        (1,),
        (slice(None), 2),
        (Ellipsis, slice(None, None, 2)),
        (None, 0),
        (np.array([0, 2, 2, 1]),),
        (np.array([-1, 0, -1]),),
        (np.array([[0, 1], [1, 1]]), slice(1, 3)),
        (np.array([0, 2]), np.array([1, 1])),
        (np.array([True, False, True, True]),),
    ],
    ids=repr,
)
def test_getitem(gradcheck, index):
    gradcheck(lambda x: x[index if len(index) > 1 else index[0]], [arr(4, 3)])


def test_getitem_slices_accumulate_in_place(gradcheck):
    """Slices of one tensor (the per-step pattern of a recurrent loop) sum into one gradient."""
    gradcheck(lambda x: x[0] * x[1] + x[1:3].sum(axis=0) + x[:, 1:2] * x[2], [arr(4, 3)])


def test_getitem_with_tensor_index():
    x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[fg.tensor([2, 2, 0])].sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0, 2.0])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_index_select(gradcheck, axis):
    indices = np.array([[0, 2], [2, 2], [1, 0]])
    gradcheck(lambda x: x.index_select(axis, indices), [arr(3, 3, 3)])


def test_cat_stack_where(gradcheck):
    gradcheck(lambda a, b: fg.cat([a, b, a], axis=1), [arr(2, 3), arr(2, 1)])
    gradcheck(lambda a, b: fg.stack([a, b, a], axis=1), [arr(2, 3), arr(2, 3)])
    cond = np.array([[True, False, True], [False, False, True]])
    gradcheck(lambda a, b: fg.where(cond, a, b), [arr(2, 3), arr(3)])
    gradcheck(lambda a: fg.where(cond, a, 0.5) * a, [arr(2, 3)])


def test_astype_roundtrip_keeps_gradient():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.double() * x.double()).float().sum()
    y.backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_linear(gradcheck):
    gradcheck(F.linear, [arr(5, 3), arr(4, 3), arr(4)])
    gradcheck(F.linear, [arr(2, 5, 3), arr(4, 3), arr(4)])
    gradcheck(lambda x, w: F.linear(x, w), [arr(3), arr(4, 3)])


def test_embedding(gradcheck):
    ids = np.array([[0, 2, 2], [1, 0, 3]])
    gradcheck(lambda w: F.embedding(ids, w) * 1.5, [arr(5, 3)])


@pytest.mark.parametrize("padding_idx", [0, 2])
def test_embedding_padding_row_gets_no_gradient(padding_idx):
    ids = np.array([[0, 2, 2], [1, 0, 3]])
    weight = arr(5, 3)
    plain = fg.tensor(weight, requires_grad=True, dtype=fg.float64)
    padded = fg.tensor(weight, requires_grad=True, dtype=fg.float64)
    upstream = R.standard_normal((2, 3, 3))
    F.embedding(ids, plain).backward(upstream)
    F.embedding(ids, padded, padding_idx=padding_idx).backward(upstream)
    expected = plain.grad.numpy().copy()
    expected[padding_idx] = 0.0
    np.testing.assert_array_equal(padded.grad.numpy(), expected)


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("padding_idx", [None, 0])
@pytest.mark.parametrize("dim", [1, 3])
def test_embedding_bag(gradcheck, mode, padding_idx, dim):
    ids = np.array([[3, 1, 1, 0], [2, 0, 0, 0], [0, 0, 0, 0], [4, 4, 2, 1]])
    weight = arr(5, dim)
    weight[0] = 0.7  # a non-zero padding row must still be left out of the pool
    gradcheck(lambda w: F.embedding_bag(ids, w, mode=mode, padding_idx=padding_idx), [weight])


def test_mse_loss(gradcheck):
    gradcheck(F.mse_loss, [arr(4, 3), arr(4, 3)])
    gradcheck(F.mse_loss, [arr(4, 3), arr(3)])


def test_bce_with_logits(gradcheck):
    gradcheck(F.binary_cross_entropy_with_logits, [arr(6, low=-4, high=4), R.uniform(0, 1, 6)])


def test_cross_entropy(gradcheck):
    targets = np.array([0, 3, 3, 1, 2])
    gradcheck(lambda x: F.cross_entropy(x, targets), [arr(5, 4)])


def test_losses_scale_by_upstream_gradient(gradcheck):
    targets = np.array([1, 0, 2])
    gradcheck(lambda x: F.cross_entropy(x, targets) * 3.0 - F.cross_entropy(x * 2, targets), [arr(3, 4)])


def test_rnn_cell_unrolled(gradcheck):
    fg.manual_seed(0)
    cell = fg.nn.RNNCell(3, 4)
    xs = arr(6, 2, 3)

    def unrolled(weight, bias, h0):
        cell.weight, cell.bias = weight, bias
        h = h0
        for t in range(xs.shape[0]):
            h = cell(fg.tensor(xs[t], dtype=fg.float64, device=h.device), h)
        return h

    gradcheck(unrolled, [arr(4, 7), arr(4), arr(2, 4)])


def test_lstm_cell_unrolled_over_six_steps(gradcheck):
    cell = fg.nn.LSTMCell(3, 4)
    steps = 6

    def unrolled(x, weight, bias, h0, c0):
        cell.weight, cell.bias = weight, bias
        state = (h0, c0)
        outputs = []
        for t in range(steps):
            state = cell(x[t], state)
            outputs.append(state[0])
        return fg.stack(outputs) + state[1].sum()

    gradcheck(unrolled, [arr(steps, 2, 3), arr(16, 7), arr(16), arr(2, 4), arr(2, 4)])


def test_lstm_sequence(gradcheck):
    fg.manual_seed(1)
    lstm = fg.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    for p in lstm.parameters():
        p.data = p.data.astype(np.float64)

    def run(x):
        output, (h, c) = lstm.to(x.device)(x)
        return output.sum(axis=1) + h.sum(axis=0) + c.sum(axis=0)

    gradcheck(run, [arr(2, 5, 3)])
