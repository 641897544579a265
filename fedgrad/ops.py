"""Every differentiable op, each a :class:`~fedgrad.tensor.Function` with its own backward.

Conventions (see ``Function``): ``forward`` receives raw arrays (numpy or cupy) and keyword
parameters; ``backward`` returns one gradient per tensor input, or ``None`` where that input
does not need one. Inputs are read back from ``self.inputs`` rather than saved twice, and only
what cannot be recomputed cheaply (outputs, softmax probabilities) is stored.

Binary ops broadcast like numpy; :func:`unbroadcast` sums a gradient back to an input's shape.
Array functions come from :func:`fedgrad.backend.array_module`, so the same code runs on cupy.

Besides the primitive ops there are a few fused ones where composing primitives would cost
memory passes or Python overhead on hot paths: ``Linear`` (one matmul plus bias),
``EmbeddingBag`` (gather + pool with a bincount scatter-add backward), and the three losses.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedgrad import backend
from fedgrad.backend import Array
from fedgrad.tensor import Function, SliceGrad, Tensor, lift

xp_of = backend.array_module


def unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``grad`` over the axes numpy broadcasting added or stretched to reach ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return tuple(sorted(int(a) % ndim if ndim else 0 for a in axis))


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


# ---------------------------------------------------------------------------- arithmetic
class Add(Function):
    __slots__ = ()

    def forward(self, a: Array, b: Array) -> Array:
        return a + b

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.inputs
        need_a, need_b = self.needs_grad
        return (
            unbroadcast(grad, a.data.shape) if need_a else None,
            unbroadcast(grad, b.data.shape) if need_b else None,
        )


class Sub(Function):
    __slots__ = ()

    def forward(self, a: Array, b: Array) -> Array:
        return a - b

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.inputs
        need_a, need_b = self.needs_grad
        return (
            unbroadcast(grad, a.data.shape) if need_a else None,
            unbroadcast(-grad, b.data.shape) if need_b else None,
        )


class Mul(Function):
    __slots__ = ()

    def forward(self, a: Array, b: Array) -> Array:
        return a * b

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.inputs
        need_a, need_b = self.needs_grad
        return (
            unbroadcast(grad * b.data, a.data.shape) if need_a else None,
            unbroadcast(grad * a.data, b.data.shape) if need_b else None,
        )


class Div(Function):
    __slots__ = ("out",)

    def forward(self, a: Array, b: Array) -> Array:
        self.out = a / b
        return self.out

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.inputs
        need_a, need_b = self.needs_grad
        grad_a = grad / b.data
        return (
            unbroadcast(grad_a, a.data.shape) if need_a else None,
            unbroadcast(-grad_a * self.out, b.data.shape) if need_b else None,
        )


class Pow(Function):
    __slots__ = ("out",)

    def forward(self, a: Array, b: Array) -> Array:
        self.out = a**b
        return self.out

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.inputs
        need_a, need_b = self.needs_grad
        grad_a = grad_b = None
        if need_a:
            grad_a = unbroadcast(grad * b.data * a.data ** (b.data - 1), a.data.shape)
        if need_b:
            grad_b = unbroadcast(grad * self.out * xp_of(a.data).log(a.data), b.data.shape)
        return grad_a, grad_b


class Neg(Function):
    __slots__ = ()

    def forward(self, x: Array) -> Array:
        return -x

    def backward(self, grad: Array) -> tuple[Array]:
        return (-grad,)


class MatMul(Function):
    """``a @ b`` with numpy semantics: 1-D operands are promoted, batch dimensions broadcast."""

    __slots__ = ()

    def forward(self, a: Array, b: Array) -> Array:
        return a @ b

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.inputs[0].data, self.inputs[1].data
        need_a, need_b = self.needs_grad
        if a.ndim == 1 and b.ndim == 1:
            return (grad * b if need_a else None, grad * a if need_b else None)
        a2, b2, g2 = a, b, grad
        if a.ndim == 1:
            a2, g2 = a[None, :], g2[..., None, :]
        if b.ndim == 1:
            b2, g2 = b[:, None], g2[..., None]
        grad_a = grad_b = None
        if need_a:
            grad_a = unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if need_b:
            if b2.ndim == 2 and a2.ndim > 2:  # shared weight: one 2-D matmul, not a batched one
                grad_b = a2.reshape(-1, a2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
            else:
                grad_b = unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape)
            grad_b = grad_b.reshape(b.shape)
        return grad_a, grad_b


# ---------------------------------------------------------------------------- shape
class Reshape(Function):
    __slots__ = ()

    def forward(self, x: Array, shape: tuple[int, ...]) -> Array:
        return x.reshape(shape)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad.reshape(self.inputs[0].data.shape),)


class Permute(Function):
    __slots__ = ("axes",)

    def forward(self, x: Array, axes: tuple[int, ...]) -> Array:
        self.axes = axes
        return x.transpose(axes)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad.transpose(np.argsort(self.axes)),)


class GetItem(Function):
    """``x[index]`` for ints, slices, None, Ellipsis, bool masks and integer arrays.

    Basic indexing cannot repeat an element, so its backward is a :class:`SliceGrad` that the
    engine adds into the input's gradient in place; integer arrays can repeat, so theirs is a
    scatter-add (one bincount for a single index array on the first axis)."""

    __slots__ = ("index",)

    def forward(self, x: Array, index: Any) -> Array:
        self.index = index
        return x[index]

    def backward(self, grad: Array) -> tuple[Array | SliceGrad]:
        x = self.inputs[0].data
        index = self.index
        xp = xp_of(grad)
        if _is_basic_index(index):
            return (SliceGrad(index, grad),)
        if _is_integer_array(index) and x.ndim >= 1:
            ids = xp.where(index < 0, index + x.shape[0], index)
            rows = grad.reshape(ids.size, -1)
            return (backend.scatter_add_rows(ids, rows, x.shape[0], x.dtype).reshape(x.shape),)
        out = xp.zeros(x.shape, dtype=x.dtype)
        backend.scatter_add(out, index, grad)
        return (out,)


def _is_integer_array(item: Any) -> bool:
    dtype = getattr(item, "dtype", None)
    return dtype is not None and getattr(item, "ndim", 0) > 0 and dtype.kind in "iu"


def _is_basic_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    for item in items:
        if item is None or item is Ellipsis or isinstance(item, (int, np.integer, slice)):
            continue
        if getattr(item, "dtype", None) is not None and item.dtype.kind == "b":
            continue  # a mask selects each element at most once
        if getattr(item, "ndim", None) == 0 and item.dtype.kind in "iu":
            continue
        return False
    return True


class IndexSelect(Function):
    """``take(x, indices, axis)``: slices of ``x`` along ``axis`` picked by an integer array of
    any shape (output shape ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``).

    The backward is a scatter-add done by one ``bincount`` (see ``backend.scatter_add_rows``)
    rather than a Python loop or ``np.add.at``. ``padding_idx``, when given, names a slice that
    receives no gradient (embedding padding rows)."""

    __slots__ = ("indices", "axis", "padding_idx")

    def forward(self, x: Array, indices: Array, axis: int = 0, padding_idx: int | None = None) -> Array:
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, not {indices.dtype}")
        self.indices = indices = indices.astype(xp_of(x).intp, copy=False)
        self.axis = axis % x.ndim
        self.padding_idx = padding_idx
        return xp_of(x).take(x, indices, axis=self.axis)

    def backward(self, grad: Array) -> tuple[Array]:
        x = self.inputs[0].data
        xp = xp_of(grad)
        axis, k = self.axis, self.indices.ndim
        if axis:  # bring the index dimensions to the front
            grad = xp.moveaxis(grad, tuple(range(axis, axis + k)), tuple(range(k)))
        rest = x.shape[:axis] + x.shape[axis + 1 :]
        rows = grad.reshape(self.indices.size, -1)
        out = backend.scatter_add_rows(self.indices, rows, x.shape[axis], x.dtype)
        if self.padding_idx is not None:
            out[self.padding_idx] = 0
        out = out.reshape((x.shape[axis], *rest))
        if axis:
            out = xp.moveaxis(out, 0, axis)
        return (out,)


class Cat(Function):
    __slots__ = ("axis", "offsets")

    def forward(self, *arrays: Array, axis: int = 0) -> Array:
        self.axis = axis
        self.offsets = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return xp_of(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        parts = xp_of(grad).split(grad, self.offsets, axis=self.axis)
        return tuple(p if need else None for p, need in zip(parts, self.needs_grad, strict=True))


class Stack(Function):
    __slots__ = ("axis",)

    def forward(self, *arrays: Array, axis: int = 0) -> Array:
        self.axis = axis
        return xp_of(arrays[0]).stack(arrays, axis=axis)

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        moved = xp_of(grad).moveaxis(grad, self.axis, 0)
        return tuple(moved[i] if need else None for i, need in enumerate(self.needs_grad))


class Where(Function):
    __slots__ = ("condition",)

    def forward(self, a: Array, b: Array, condition: Array) -> Array:
        self.condition = condition
        return xp_of(a).where(condition, a, b)

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.inputs
        need_a, need_b = self.needs_grad
        xp = xp_of(grad)
        return (
            unbroadcast(xp.where(self.condition, grad, 0), a.data.shape) if need_a else None,
            unbroadcast(xp.where(self.condition, 0, grad), b.data.shape) if need_b else None,
        )


class Cast(Function):
    __slots__ = ()

    def forward(self, x: Array, dtype: np.dtype[Any]) -> Array:
        return x.astype(dtype)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad.astype(self.inputs[0].data.dtype),)


class ToDevice(Function):
    __slots__ = ("source",)

    def forward(self, x: Array, device: str) -> Array:
        self.source = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(self, grad: Array) -> tuple[Array]:
        return (backend.to_device(grad, self.source),)


# ---------------------------------------------------------------------------- reductions
class Sum(Function):
    __slots__ = ("kept",)

    def forward(self, x: Array, axis: int | Sequence[int] | None, keepdims: bool) -> Array:
        self.kept = _kept_shape(x.shape, _axes(axis, x.ndim))
        return x.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad: Array) -> tuple[Array]:
        shape = self.inputs[0].data.shape
        return (xp_of(grad).broadcast_to(grad.reshape(self.kept), shape),)


class Mean(Function):
    __slots__ = ("kept", "count")

    def forward(self, x: Array, axis: int | Sequence[int] | None, keepdims: bool) -> Array:
        axes = _axes(axis, x.ndim)
        self.kept = _kept_shape(x.shape, axes)
        self.count = int(np.prod([x.shape[a] for a in axes]))
        return x.mean(axis=axis, keepdims=keepdims)

    def backward(self, grad: Array) -> tuple[Array]:
        shape = self.inputs[0].data.shape
        return (xp_of(grad).broadcast_to(grad.reshape(self.kept) / self.count, shape),)


class Max(Function):
    """Maximum over axes; tied maxima share the gradient equally (as ``torch.amax``)."""

    __slots__ = ("kept_max", "axes")

    def forward(self, x: Array, axis: int | Sequence[int] | None, keepdims: bool) -> Array:
        self.kept_max = x.max(axis=axis, keepdims=True)
        self.axes = _axes(axis, x.ndim)
        if keepdims:
            return self.kept_max
        return self.kept_max.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, grad: Array) -> tuple[Array]:
        x = self.inputs[0].data
        mask = x == self.kept_max
        share = grad.reshape(self.kept_max.shape) / mask.sum(axis=self.axes, keepdims=True)
        return (mask * share,)


# ---------------------------------------------------------------------------- elementwise
class Exp(Function):
    __slots__ = ("out",)

    def forward(self, x: Array) -> Array:
        self.out = xp_of(x).exp(x)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad * self.out,)


class Log(Function):
    __slots__ = ()

    def forward(self, x: Array) -> Array:
        return xp_of(x).log(x)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad / self.inputs[0].data,)


class Sqrt(Function):
    __slots__ = ("out",)

    def forward(self, x: Array) -> Array:
        self.out = xp_of(x).sqrt(x)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad / (2 * self.out),)


class Abs(Function):
    __slots__ = ()

    def forward(self, x: Array) -> Array:
        return xp_of(x).abs(x)

    def backward(self, grad: Array) -> tuple[Array]:
        x = self.inputs[0].data
        return (grad * xp_of(x).sign(x),)


class Clip(Function):
    __slots__ = ("low", "high")

    def forward(self, x: Array, low: float | None, high: float | None) -> Array:
        self.low, self.high = low, high
        return xp_of(x).clip(x, low, high)

    def backward(self, grad: Array) -> tuple[Array]:
        x = self.inputs[0].data
        inside = xp_of(x).ones(x.shape, dtype=bool)
        if self.low is not None:
            inside &= x >= self.low
        if self.high is not None:
            inside &= x <= self.high
        return (grad * inside,)


def stable_sigmoid(x: Array) -> Array:
    """1 / (1 + e^-x) without overflow and with full relative precision for very negative x."""
    xp = xp_of(x)
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return xp.where(x >= 0, r, e * r)


class Sigmoid(Function):
    __slots__ = ("out",)

    def forward(self, x: Array) -> Array:
        self.out = stable_sigmoid(x)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        out = self.out
        return (grad * out * (1 - out),)


class Tanh(Function):
    __slots__ = ("out",)

    def forward(self, x: Array) -> Array:
        self.out = xp_of(x).tanh(x)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        out = self.out
        return (grad * (1 - out * out),)


class Relu(Function):
    __slots__ = ()

    def forward(self, x: Array) -> Array:
        return xp_of(x).maximum(x, 0)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad * (self.inputs[0].data > 0),)


class Softmax(Function):
    __slots__ = ("axis", "out")

    def forward(self, x: Array, axis: int) -> Array:
        xp = xp_of(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.axis = axis
        self.out = e / e.sum(axis=axis, keepdims=True)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        out = self.out
        return (out * (grad - (grad * out).sum(axis=self.axis, keepdims=True)),)


def log_softmax_array(x: Array, axis: int) -> Array:
    """``x - logsumexp(x)`` computed after subtracting the max, so it never overflows."""
    xp = xp_of(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    __slots__ = ("axis", "out")

    def forward(self, x: Array, axis: int) -> Array:
        self.axis = axis
        self.out = log_softmax_array(x, axis)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        xp = xp_of(grad)
        return (grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True),)


# ---------------------------------------------------------------------------- fused layers
class Linear(Function):
    """``x @ w.T + b`` with ``w`` stored ``(out, in)`` as in PyTorch: one node, bias added in place."""

    __slots__ = ()

    def forward(self, x: Array, w: Array, b: Array | None = None) -> Array:
        # For a batch, (w @ x.T).T is the same product with the long (out_features) side first,
        # which OpenBLAS runs up to 1.6x faster than x @ w.T; the result is a transposed view.
        out = (w @ x.T).T if x.ndim == 2 else x @ w.T
        if b is not None:
            out += b
        return out

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        x, w = self.inputs[0].data, self.inputs[1].data
        needs = self.needs_grad
        grad_x = grad @ w if needs[0] else None
        grad_w = grad_b = None
        if needs[1] or (len(needs) > 2 and needs[2]):
            g2 = grad.reshape(-1, grad.shape[-1])
            if needs[1]:
                grad_w = g2.T @ x.reshape(-1, x.shape[-1])
            if len(needs) > 2 and needs[2]:
                grad_b = g2.sum(axis=0)
        return (grad_x, grad_w, grad_b)[: len(needs)]


EMBEDDING_BAG_MODES = ("sum", "mean")


class EmbeddingBag(Function):
    """Pool embedding rows over each row of a padded id matrix ``[B, L]`` -> ``[B, D]``.

    Tokens equal to ``padding_idx`` are left out of the pool (and of the mean's count), and
    their row receives no gradient, as in ``torch.nn.EmbeddingBag``. Fusing gather and pool
    avoids building the ``[B, L, D]`` gradient; the weight gradient is one bincount.

    On the CPU, padding (often half of a batch of emails) is dropped once in the forward: the
    gather, the per-bag sums (``add.reduceat``) and the scatter-add then touch only real tokens,
    and the scatter no longer piles every padding token into one bin, which serialises it."""

    __slots__ = ("ids", "flat", "counts", "mode", "padding_idx", "divisor")

    ids: Array | None  # the [B, L] id matrix, when every token was pooled
    flat: Array | None  # or the real tokens' ids, bag after bag, when padding was dropped
    counts: Array
    mode: str
    padding_idx: int | None
    divisor: Array

    def forward(self, weight: Array, ids: Array, mode: str, padding_idx: int | None) -> Array:
        if ids.ndim != 2:
            raise ValueError(f"embedding_bag expects ids of shape [B, L], got {ids.shape}")
        if mode not in EMBEDDING_BAG_MODES:
            raise ValueError(f"embedding_bag mode must be one of {EMBEDDING_BAG_MODES}, not {mode!r}")
        xp = xp_of(weight)
        self.mode, self.padding_idx = mode, padding_idx
        if padding_idx is not None and xp is np:
            out = self._pool_real_tokens(weight, ids, padding_idx)
        else:
            out = self._pool_all_tokens(weight, ids, padding_idx)
        if mode == "mean":
            self.divisor = xp.maximum(self.counts, 1).astype(weight.dtype)[:, None]
            out /= self.divisor
        return out

    def _pool_real_tokens(self, weight: np.ndarray, ids: np.ndarray, padding_idx: int) -> np.ndarray:
        keep = ids != padding_idx
        self.ids = None
        self.counts = counts = keep.sum(axis=1, dtype=np.int32)  # int32 sums bools ~2x faster than intp
        self.flat = flat = ids[keep]  # row-major, so bag b's tokens are the next counts[b] entries
        out = np.zeros((ids.shape[0], weight.shape[1]), dtype=weight.dtype)
        if flat.size:
            values = weight[:, 0].take(flat)[:, None] if weight.shape[1] == 1 else weight.take(flat, axis=0)
            starts = np.cumsum(counts, dtype=np.intp) - counts
            nonempty = counts > 0
            out[nonempty] = np.add.reduceat(values, starts[nonempty], axis=0)
        return out

    def _pool_all_tokens(self, weight: Array, ids: Array, padding_idx: int | None) -> Array:
        xp = xp_of(weight)
        self.ids, self.flat = ids, None
        out = weight.take(ids, axis=0).sum(axis=1)
        self.counts = xp.full(ids.shape[0], ids.shape[1])
        if padding_idx is not None:
            n_pad = (ids == padding_idx).sum(axis=1)
            out -= n_pad[:, None].astype(weight.dtype) * weight[padding_idx]
            self.counts = self.counts - n_pad
        return out

    def backward(self, grad: Array) -> tuple[Array]:
        weight = self.inputs[0].data
        xp = xp_of(grad)
        if self.mode == "mean":
            grad = grad / self.divisor
        if grad.shape[1] == 1:  # float64 weights: bincount's own accumulator type, so it converts nothing
            grad = grad.astype(xp.float64)
        if self.flat is not None:
            rows = xp.repeat(grad, self.counts, axis=0)
            return (backend.scatter_add_rows(self.flat, rows, weight.shape[0], weight.dtype),)
        ids = self.ids
        assert ids is not None  # forward sets one of flat and ids
        rows = xp.repeat(grad, ids.shape[1], axis=0)
        out = backend.scatter_add_rows(ids, rows, weight.shape[0], weight.dtype)
        if self.padding_idx is not None:
            out[self.padding_idx] = 0
        return (out,)


# ---------------------------------------------------------------------------- losses
class MSELoss(Function):
    """``mean((x - y)^2)``; both inputs may require grad."""

    __slots__ = ("diff",)

    def forward(self, x: Array, y: Array) -> Array:
        self.diff = x - y
        return (self.diff * self.diff).mean()

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        x, y = self.inputs
        need_x, need_y = self.needs_grad
        scaled = self.diff * (grad * (2.0 / self.diff.size))
        return (
            unbroadcast(scaled, x.data.shape) if need_x else None,
            unbroadcast(-scaled, y.data.shape) if need_y else None,
        )


class BCEWithLogitsLoss(Function):
    """Mean binary cross-entropy on logits: ``max(x,0) - x*y + log(1 + e^-|x|)``, stable for any x."""

    __slots__ = ()

    def forward(self, x: Array, y: Array) -> Array:
        xp = xp_of(x)
        loss = xp.maximum(x, 0) - x * y + xp.log1p(xp.exp(-xp.abs(x)))
        return loss.mean()

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        x, y = self.inputs[0].data, self.inputs[1].data
        need_x, need_y = self.needs_grad
        scale = grad / _broadcast_size(x.shape, y.shape)
        return (
            unbroadcast((stable_sigmoid(x) - y) * scale, x.shape) if need_x else None,
            unbroadcast(-x * scale, y.shape) if need_y else None,
        )


def _broadcast_size(*shapes: tuple[int, ...]) -> int:
    return int(np.prod(np.broadcast_shapes(*shapes)))


class CrossEntropyLoss(Function):
    """Mean over the batch of ``-log softmax(x)[target]`` for logits ``[N, C]`` and integer targets ``[N]``.

    The backward is ``(softmax - onehot) * grad / N``: it scales by the incoming gradient (the
    book's version dropped it, so ``2 * loss`` or a weighted sum of losses got wrong gradients)
    and by ``1/N`` to match the batch mean."""

    __slots__ = ("targets", "rows", "probs")

    def forward(self, x: Array, targets: Array) -> Array:
        if x.ndim != 2 or targets.shape != x.shape[:1]:
            raise ValueError(f"cross_entropy expects logits [N, C] and targets [N], got {x.shape} and {targets.shape}")
        if targets.dtype.kind not in "iu":
            raise TypeError(f"cross_entropy targets must be integers, not {targets.dtype}")
        xp = xp_of(x)
        self.targets = targets
        rows = xp.arange(x.shape[0])
        self.rows = rows
        shifted = x - x.max(axis=1, keepdims=True)
        exp = xp.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        if self.needs_grad:
            self.probs = exp / total
        return (xp.log(total[:, 0]) - shifted[rows, targets]).mean()

    def backward(self, grad: Array) -> tuple[Array]:
        out = self.probs.copy()
        out[self.rows, self.targets] -= 1
        out *= grad / out.shape[0]
        return (out,)


# ---------------------------------------------------------------------------- functional API
def matmul(a: Tensor, b: Tensor) -> Tensor:
    return a @ b


def cat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Concatenate along an existing axis."""
    return Cat.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join along a new axis."""
    return Stack.apply(*tensors, axis=axis)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Elementwise ``a`` where ``condition`` else ``b``; the condition is not differentiated."""
    like = a if isinstance(a, Tensor) else b
    if not isinstance(like, Tensor):
        raise TypeError("where() needs at least one tensor among a and b")
    cond = backend.to_device(condition.data if isinstance(condition, Tensor) else condition, like.device)
    return Where.apply(lift(a, like), lift(b, like), condition=cond)
