"""`Tensor` and reverse-mode automatic differentiation.

A tensor wraps one numpy (or cupy) array. When an op runs on tensors that require gradients, its
:class:`Function` node is kept on the result (``_ctx``) together with the input tensors; this is
the whole graph. ``backward`` then:

* visits nodes from a heap ordered by creation number, which is a topological order, so there
  is no recursion (the book's recursive ``backward`` dies past ~1,000 ops) and no separate sort;
* runs a node's backward only once all its uses have summed their gradients into it, and never
  waits on branches that do not lead to the output (the book's "wait for every child" counter
  deadlocks on those);
* frees each node once used, unless ``retain_graph=True``.

Gradients handed to leaves never alias one another, the caller's ``grad`` or forward data:
an op may legally return the same array for two inputs (``a + b``), or a view, so those are
copied at the leaf; arrays this module allocated itself while summing are handed over as they are.

Per-op cost is kept small because federated rounds run thousands of tiny steps: ``__slots__``,
no graph bookkeeping at all when grad mode is off or no input requires a gradient, and
gradients summed in place into buffers this module owns.
"""
from __future__ import annotations

import builtins
import functools
import heapq
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Self, TypeVar

import numpy as np
import numpy.typing as npt

from fedgrad import backend
from fedgrad.backend import Array

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

DEFAULT_FLOAT = float32

_new = object.__new__

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _GradMode(threading.local):
    """Per-thread grad mode, so a server thread evaluating under ``no_grad`` never disables
    recording for a thread that is training."""

    enabled = True


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    return _grad_mode.enabled


class no_grad:
    """Context manager (and decorator) that disables graph recording: ops only compute values."""

    __slots__ = ("_previous",)

    def __enter__(self) -> None:
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = False

    def __exit__(self, *exc: object) -> None:
        _grad_mode.enabled = self._previous

    def __call__(self, func: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(func)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with no_grad():
                return func(*args, **kwargs)

        return wrapper


class Function:
    """One differentiable op: ``forward`` on raw arrays, ``backward`` from the output gradient.

    Subclasses keep whatever ``backward`` needs in their own ``__slots__`` during ``forward``.
    ``self.needs_grad`` (a tuple of bools, one per tensor input, or ``()`` when no graph is
    recorded) is set before ``forward`` runs so forwards can skip saving what no one will use,
    and backwards can skip gradients for inputs that do not require one. ``backward`` returns
    one array (or ``None``) per tensor input, in order, shaped like that input; it must never
    modify the incoming gradient in place.

    ``seq`` numbers recorded nodes in creation order. An op's output is always created after its
    inputs, so visiting nodes by decreasing ``seq`` is a topological order of any graph: the
    backward pass needs no separate sort, only a heap of the nodes that received a gradient.
    """

    __slots__ = ("inputs", "needs_grad", "seq")

    inputs: tuple[Tensor, ...]
    needs_grad: tuple[bool, ...]
    seq: int

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        fn = cls()
        count = len(inputs)
        track = False
        needs: tuple[bool, ...]
        if _grad_mode.enabled:
            if count == 1:
                track = inputs[0].requires_grad
                needs = _NEEDS_ONE
            elif count == 2:
                first, second = inputs[0].requires_grad, inputs[1].requires_grad
                track = first or second
                needs = (first, second)
            else:
                needs = tuple([t.requires_grad for t in inputs])
                track = True in needs
        if track:
            fn.needs_grad = needs
            fn.inputs = inputs
            fn.seq = next(_sequence)
        else:
            fn.needs_grad = ()
        if count == 1:
            data = fn.forward(inputs[0].data, **params)
        elif count == 2:
            data = fn.forward(inputs[0].data, inputs[1].data, **params)
        else:
            data = fn.forward(*[t.data for t in inputs], **params)
        if type(data) is not np.ndarray and isinstance(data, np.generic):
            data = np.asarray(data)  # numpy ops on 0-d arrays return scalars
        out = _new(Tensor)
        out.data = data
        out.grad = None
        out.requires_grad = track
        out._ctx = fn if track else None
        return out

    def forward(self, *arrays: Array, **params: Any) -> Array:
        raise NotImplementedError

    def backward(self, grad: Array) -> tuple[Array | SliceGrad | None, ...]:
        raise NotImplementedError


_NEEDS_ONE = (True,)
_sequence = itertools.count()


class SliceGrad:
    """Gradient that is zero except on ``index`` (a basic index: ints, slices, masks).

    ``x[t]`` in a loop over a sequence would otherwise hand back a zero-filled array the size
    of ``x`` for every step, making backward quadratic in sequence length. The backward pass
    writes ``values`` into the summed gradient buffer of the input in place instead."""

    __slots__ = ("index", "values")

    def __init__(self, index: Any, values: Array) -> None:
        self.index = index
        self.values = values


class _FreedGraph(Function):
    """Marks a node whose graph was released by an earlier ``backward`` (never applied or run)."""

    __slots__ = ()


_FREED: Function = _FreedGraph()


def _as_array(data: Any, dtype: npt.DTypeLike | None, device: str | None) -> Array:
    """Array for a new tensor. Floats default to float32; numpy arrays of the right dtype on
    the right device are used without a copy (like ``torch.from_numpy``)."""
    if isinstance(data, Tensor):
        data = data.data
    if device is not None:
        data = backend.to_device(data, device)
        xp = backend.get_xp(device)
    else:
        xp = backend.array_module(data)
    if dtype is not None:
        return xp.asarray(data, dtype=dtype)
    array = xp.asarray(data)
    kind = array.dtype.kind
    if kind == "f" and array.dtype != DEFAULT_FLOAT:
        return array.astype(DEFAULT_FLOAT)
    if kind not in "fiub":
        raise TypeError(f"cannot make a tensor from data of dtype {array.dtype}")
    return array


def _make(data: Array, requires_grad: bool, ctx: Function | None) -> Tensor:
    """Fast internal constructor: no conversion, no checks."""
    if type(data) is not np.ndarray and isinstance(data, np.generic):
        data = np.asarray(data)  # numpy reductions of 0-d arrays return scalars
    t = _new(Tensor)
    t.data = data
    t.grad = None
    t.requires_grad = requires_grad
    t._ctx = ctx
    return t


class Tensor:
    """An n-dimensional array that can record the ops applied to it for ``backward``.

    ``Tensor(data, requires_grad=False, dtype=None, device=None)``: floating data becomes
    float32 unless ``dtype`` says otherwise; integer and bool data keep their dtype.
    ``device=None`` keeps the data where it is (numpy on CPU, cupy on a GPU).
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_ufunc__ = None  # make `ndarray op Tensor` defer to Tensor's reflected operators

    data: Array
    grad: Tensor | None
    requires_grad: bool
    _ctx: Function | None

    def __init__(
        self, data: Any, requires_grad: bool = False, dtype: npt.DTypeLike | None = None, device: str | None = None
    ) -> None:
        self.data = _as_array(data, dtype, device)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require gradients, not {self.data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, ...]:
        shape: tuple[int, ...] = self.data.shape
        return shape

    @property
    def dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = self.data.dtype
        return dtype

    @property
    def ndim(self) -> int:
        ndim: int = self.data.ndim
        return ndim

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def T(self) -> Tensor:
        return _ops.Permute.apply(self, axes=tuple(reversed(range(self.data.ndim))))

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __repr__(self) -> str:
        body = np.array2string(backend.to_host(self.data), separator=", ", prefix="tensor(")
        extras = ""
        if self.data.dtype != DEFAULT_FLOAT:
            extras += f", dtype={self.data.dtype}"
        if self.device != backend.CPU:
            extras += f", device='{self.device}'"
        if self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}{extras})"

    # ------------------------------------------------------------------ conversion
    def numpy(self) -> npt.NDArray[Any]:
        """Host numpy array with the values (shares memory on CPU, like torch)."""
        return backend.to_host(self.data)

    def item(self) -> builtins.float | int | bool:
        value: builtins.float | int | bool = self.data.item()
        return value

    def tolist(self) -> Any:
        return backend.to_host(self.data).tolist()

    def detach(self) -> Tensor:
        """Same data, cut from the graph."""
        return _make(self.data, False, None)

    def requires_grad_(self, requires_grad: bool = True) -> Self:
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require gradients, not {self.data.dtype}")
        self.requires_grad = requires_grad
        return self

    def to(self, device: str) -> Tensor:
        """This tensor on ``device`` (itself when already there); differentiable."""
        target = backend.parse_device(device)
        if target == self.device:
            return self
        return _ops.ToDevice.apply(self, device=target)

    def astype(self, dtype: npt.DTypeLike) -> Tensor:
        """Differentiable dtype cast (itself when the dtype already matches)."""
        if np.dtype(dtype) == self.data.dtype:
            return self
        return _ops.Cast.apply(self, dtype=np.dtype(dtype))

    def float(self) -> Tensor:
        return self.astype(float32)

    def double(self) -> Tensor:
        return self.astype(float64)

    # ------------------------------------------------------------------ autograd
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the gradient of some scalar with respect to ``self``; it may be omitted only
        when ``self`` holds a single value.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        xp = backend.array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() needs an explicit grad for a non-scalar output of shape {self.shape}")
            root = xp.ones_like(self.data)
        else:
            root = grad.data if isinstance(grad, Tensor) else xp.asarray(grad)
            if root.shape != self.data.shape:
                raise ValueError(f"grad of shape {root.shape} for a tensor of shape {self.shape}")
            if root.dtype != self.data.dtype:
                root = root.astype(self.data.dtype)
        _run_backward(self, root, retain_graph)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Any) -> Tensor:
        return _ops.Add.apply(self, lift(other, self))

    def __radd__(self, other: Any) -> Tensor:
        return _ops.Add.apply(lift(other, self), self)

    def __sub__(self, other: Any) -> Tensor:
        return _ops.Sub.apply(self, lift(other, self))

    def __rsub__(self, other: Any) -> Tensor:
        return _ops.Sub.apply(lift(other, self), self)

    def __mul__(self, other: Any) -> Tensor:
        return _ops.Mul.apply(self, lift(other, self))

    def __rmul__(self, other: Any) -> Tensor:
        return _ops.Mul.apply(lift(other, self), self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ops.Div.apply(self, lift(other, self))

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops.Div.apply(lift(other, self), self)

    def __pow__(self, other: Any) -> Tensor:
        return _ops.Pow.apply(self, lift(other, self))

    def __rpow__(self, other: Any) -> Tensor:
        return _ops.Pow.apply(lift(other, self), self)

    def __neg__(self) -> Tensor:
        return _ops.Neg.apply(self)

    def __matmul__(self, other: Any) -> Tensor:
        return _ops.MatMul.apply(self, lift(other, self))

    def __rmatmul__(self, other: Any) -> Tensor:
        return _ops.MatMul.apply(lift(other, self), self)

    def __getitem__(self, index: Any) -> Tensor:
        return _ops.GetItem.apply(self, index=_unwrap_index(index, self.data))

    # comparisons give bool tensors outside the graph (not differentiable)
    def __lt__(self, other: Any) -> Tensor:
        return _make(self.data < _raw(other), False, None)

    def __le__(self, other: Any) -> Tensor:
        return _make(self.data <= _raw(other), False, None)

    def __gt__(self, other: Any) -> Tensor:
        return _make(self.data > _raw(other), False, None)

    def __ge__(self, other: Any) -> Tensor:
        return _make(self.data >= _raw(other), False, None)

    # ------------------------------------------------------------------ methods
    def matmul(self, other: Any) -> Tensor:
        return _ops.MatMul.apply(self, lift(other, self))

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return _ops.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return _ops.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Maximum; ties share the gradient equally."""
        return _ops.Max.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: int | None = None) -> Tensor:
        """Indices of the maxima (not differentiable)."""
        return _make(self.data.argmax(axis=axis), False, None)

    def exp(self) -> Tensor:
        return _ops.Exp.apply(self)

    def log(self) -> Tensor:
        return _ops.Log.apply(self)

    def sqrt(self) -> Tensor:
        return _ops.Sqrt.apply(self)

    def abs(self) -> Tensor:
        return _ops.Abs.apply(self)

    def clip(self, min: builtins.float | None = None, max: builtins.float | None = None) -> Tensor:
        """Values limited to ``[min, max]``; gradient flows where ``min <= x <= max``."""
        return _ops.Clip.apply(self, low=min, high=max)

    def sigmoid(self) -> Tensor:
        return _ops.Sigmoid.apply(self)

    def tanh(self) -> Tensor:
        return _ops.Tanh.apply(self)

    def relu(self) -> Tensor:
        return _ops.Relu.apply(self)

    def softmax(self, axis: int = -1) -> Tensor:
        return _ops.Softmax.apply(self, axis=axis)

    def log_softmax(self, axis: int = -1) -> Tensor:
        return _ops.LogSoftmax.apply(self, axis=axis)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        return _ops.Reshape.apply(self, shape=_shape(shape))

    view = reshape

    def flatten(self) -> Tensor:
        return self.reshape(-1)

    def squeeze(self, axis: int) -> Tensor:
        if self.data.shape[axis] != 1:
            raise ValueError(f"cannot squeeze axis {axis} of size {self.data.shape[axis]}")
        shape = list(self.data.shape)
        del shape[axis]
        return self.reshape(shape)

    def unsqueeze(self, axis: int) -> Tensor:
        shape = list(self.data.shape)
        shape.insert(axis if axis >= 0 else len(shape) + 1 + axis, 1)
        return self.reshape(shape)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Swap two axes (PyTorch semantics); ``.T`` reverses all of them."""
        axes = list(range(self.data.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return _ops.Permute.apply(self, axes=tuple(axes))

    def permute(self, *axes: int) -> Tensor:
        return _ops.Permute.apply(self, axes=axes)

    def index_select(self, axis: int, indices: Any) -> Tensor:
        """Rows (or slices along ``axis``) picked by an integer array, repeats allowed.

        The backward is a vectorised scatter-add, so repeated indices accumulate (the book's
        version overwrote them in a Python loop)."""
        return _ops.IndexSelect.apply(self, indices=_raw(indices), axis=axis)


def lift(value: Any, like: Tensor) -> Tensor:
    """``value`` as an operand for ``like``: tensors pass through; anything else becomes a
    constant tensor on ``like``'s device. Python numbers and float arrays take
    ``like``'s float dtype, so ``x64 * 0.5`` stays float64 and ``x32 * 0.5`` stays float32."""
    if isinstance(value, Tensor):
        return value
    like_dtype = like.data.dtype
    xp = backend.array_module(like.data)
    if isinstance(value, (bool, int, float)):
        if like_dtype.kind == "f" or isinstance(value, (bool, int)):
            return _make(xp.asarray(value, dtype=like_dtype), False, None)
        return _make(xp.asarray(value), False, None)  # int tensor with a float: numpy promotion
    array = xp.asarray(value)
    if array.dtype.kind == "f" and like_dtype.kind == "f" and array.dtype != like_dtype:
        array = array.astype(like_dtype)
    return _make(array, False, None)


def _raw(value: Any) -> Any:
    return value.data if isinstance(value, Tensor) else value


def _unwrap_index(index: Any, data: Array) -> Any:
    """``index`` with tensors unwrapped; for an array ``data`` on a GPU, host index arrays follow it there (as
    PyTorch accepts CPU index tensors for a CUDA tensor)."""
    raw = tuple(_raw(i) for i in index) if isinstance(index, tuple) else _raw(index)
    if type(data) is np.ndarray:
        return raw
    device = backend.device_of(data)

    def follow(item: Any) -> Any:
        return backend.to_device(item, device) if isinstance(item, np.ndarray) else item

    return tuple(map(follow, raw)) if isinstance(raw, tuple) else follow(raw)


def _run_backward(root: Tensor, root_grad: Array, retain_graph: bool) -> None:
    """Propagate ``root_grad`` to every leaf reachable from ``root``.

    Nodes are popped from a heap by decreasing ``seq`` (a topological order), so each node's
    gradient is complete before its backward runs, and only nodes that actually received a
    gradient are ever visited. Leaves are collected and finalised at the end."""
    grads: dict[int, Array] = {id(root): root_grad}
    owned: set[int] = set()  # ids of gradient buffers allocated here and held by nobody else
    leaves: list[Tensor] = []
    heap: list[tuple[int, Tensor]] = []
    _enqueue(root, heap, leaves)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        node = pop(heap)[1]
        grad = grads.pop(id(node))
        owned.discard(id(grad))
        ctx = node._ctx
        assert ctx is not None  # only nodes with a graph are queued
        for parent, parent_grad in zip(ctx.inputs, ctx.backward(grad), strict=True):
            if parent_grad is None:
                continue
            key = id(parent)
            previous = grads.get(key)
            if previous is None:
                if type(parent_grad) is SliceGrad:
                    parent_grad = _dense(parent, parent_grad)
                    owned.add(id(parent_grad))
                grads[key] = parent_grad
                parent_ctx = parent._ctx
                if parent_ctx is None:
                    leaves.append(parent)
                elif parent_ctx is _FREED:
                    _raise_freed()
                else:
                    push(heap, (-parent_ctx.seq, parent))
            elif type(parent_grad) is SliceGrad:
                if id(previous) not in owned:
                    previous = previous.copy()
                    grads[key] = previous
                    owned.add(id(previous))
                previous[parent_grad.index] += parent_grad.values
            elif id(previous) in owned:
                previous += parent_grad
            else:
                summed = previous + parent_grad
                grads[key] = summed
                owned.add(id(summed))
        if not retain_graph:
            node._ctx = _FREED
    handed_out: set[int] = {id(root_grad)}
    for leaf in leaves:
        grad = grads.pop(id(leaf))
        if leaf.requires_grad:
            _accumulate_leaf(leaf, grad, id(grad) in owned, handed_out)


def _enqueue(node: Tensor, heap: list[tuple[int, Tensor]], leaves: list[Tensor]) -> None:
    ctx = node._ctx
    if ctx is None:
        leaves.append(node)
    elif ctx is _FREED:
        _raise_freed()
    else:
        heap.append((-ctx.seq, node))


def _raise_freed() -> None:
    raise RuntimeError(
        "backward through a graph that an earlier backward() already freed; pass retain_graph=True to the first call"
    )


def _dense(parent: Tensor, grad: SliceGrad) -> Array:
    buffer = backend.array_module(parent.data).zeros(parent.data.shape, dtype=parent.data.dtype)
    buffer[grad.index] += grad.values
    return buffer


def _accumulate_leaf(leaf: Tensor, grad: Array, is_owned: bool, handed_out: set[int]) -> None:
    """Add ``grad`` into ``leaf.grad``. A gradient this pass did not allocate may be shared (the
    same array returned for two inputs, a view, the caller's ``grad``), so it is copied unless
    it is a fresh, writable array no other leaf has received."""
    if grad.dtype != leaf.data.dtype:
        grad = grad.astype(leaf.data.dtype)
        is_owned = True
    if grad.shape != leaf.data.shape:
        raise RuntimeError(f"gradient of shape {grad.shape} reached a leaf of shape {leaf.data.shape}")
    if leaf.grad is not None:
        leaf.grad = _make(leaf.grad.data + grad, False, None)
        return
    if not is_owned and (id(grad) in handed_out or not backend.owns_writable_buffer(grad)):
        grad = grad.copy()
    handed_out.add(id(grad))
    leaf.grad = _make(grad, False, None)


# ---------------------------------------------------------------------- factories and seeding
_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed fedgrad's generator (parameter init, ``randn``, dropout masks)."""
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The process-wide generator. Random values are drawn on the host and moved, so a seed
    gives the same numbers on CPU and GPU."""
    return _rng


def tensor(
    data: Any, requires_grad: bool = False, dtype: npt.DTypeLike | None = None, device: str | None = None
) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if len(shape) == 1 and not isinstance(shape[0], int):
        return tuple(shape[0])
    return tuple(shape)


def zeros(
    *shape: int | Sequence[int], dtype: npt.DTypeLike = float32, device: str | None = None, requires_grad: bool = False
) -> Tensor:
    data = backend.get_xp(device).zeros(_shape(shape), dtype=dtype)
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def ones(
    *shape: int | Sequence[int], dtype: npt.DTypeLike = float32, device: str | None = None, requires_grad: bool = False
) -> Tensor:
    data = backend.get_xp(device).ones(_shape(shape), dtype=dtype)
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def randn(
    *shape: int | Sequence[int], dtype: npt.DTypeLike = float32, device: str | None = None, requires_grad: bool = False
) -> Tensor:
    data = _rng.standard_normal(_shape(shape)).astype(dtype)
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def arange(
    start: float,
    stop: float | None = None,
    step: float = 1,
    dtype: npt.DTypeLike | None = None,
    device: str | None = None,
) -> Tensor:
    if stop is None:
        start, stop = 0, start
    data = np.arange(start, stop, step, dtype=dtype)
    return Tensor(data, dtype=dtype, device=device)


from fedgrad import ops as _ops  # noqa: E402  (ops subclass Function, defined above)
