"""Recurrent cells and a sequence LSTM.

Each cell concatenates ``[x, h]`` and computes every gate with one matmul of width
``gates * hidden`` (the book used one small matmul per gate: four times the Python and BLAS
call overhead for the same arithmetic). Weights are therefore one ``(gates*H, I+H)`` matrix
and one bias; PyTorch's ``weight_ih``/``weight_hh`` are its column blocks and PyTorch's two
biases add up to ``bias``. Gate order is PyTorch's: input, forget, cell, output.
"""
from __future__ import annotations

import math

from fedgrad import ops
from fedgrad.nn.layers import uniform_parameter
from fedgrad.nn.module import Module, ModuleList
from fedgrad.tensor import Tensor, zeros


class _FusedCell(Module):
    """Shared by the cells: ``weight (gates*H, I+H)``, ``bias (gates*H)`` from U(-1/sqrt(H), 1/sqrt(H))
    as in PyTorch, and the single ``[x, h] @ weight.T + bias`` that computes every gate."""

    gates: int = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight = uniform_parameter((self.gates * hidden_size, input_size + hidden_size), bound)
        self.bias = uniform_parameter((self.gates * hidden_size,), bound) if bias else None

    def _gates(self, x: Tensor, h: Tensor) -> Tensor:
        xh = ops.cat([x, h], axis=1)
        if self.bias is None:
            return ops.Linear.apply(xh, self.weight)
        return ops.Linear.apply(xh, self.weight, self.bias)

    def _zeros(self, x: Tensor) -> Tensor:
        return zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias is not None}"


class RNNCell(_FusedCell):
    """Elman cell: ``h' = tanh([x, h] @ weight.T + bias)`` (or ReLU)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        pre = self._gates(x, self._zeros(x) if h is None else h)
        return pre.tanh() if self.nonlinearity == "tanh" else pre.relu()


class LSTMCell(_FusedCell):
    """One LSTM step: ``(x [B, I], (h, c) [B, H]) -> (h', c')``; state defaults to zeros."""

    gates = 4

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if state is None:
            h = c = self._zeros(x)
        else:
            h, c = state
        gates = self._gates(x, h)
        size = self.hidden_size
        i = gates[:, :size].sigmoid()
        f = gates[:, size : 2 * size].sigmoid()
        g = gates[:, 2 * size : 3 * size].tanh()
        o = gates[:, 3 * size :].sigmoid()
        c = f * c + i * g
        return o * c.tanh(), c


class LSTM(Module):
    """Multi-layer LSTM over a sequence.

    Input ``[T, B, I]`` (``[B, T, I]`` with ``batch_first``); returns the last layer's outputs
    for every step (same layout) and ``(h_n, c_n)``, each ``[num_layers, B, H]``. Layer ``k``'s
    cell is ``cells.k`` in ``state_dict``."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.batch_first = num_layers, batch_first
        self.cells = ModuleList(
            LSTMCell(input_size if k == 0 else hidden_size, hidden_size, bias) for k in range(num_layers)
        )

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        time_axis = 1 if self.batch_first else 0
        steps = [x[:, t] if self.batch_first else x[t] for t in range(x.shape[time_axis])]
        final_h, final_c = [], []
        for k, cell in enumerate(self.cells):
            layer_state = None if state is None else (state[0][k], state[1][k])
            outputs = []
            for step in steps:
                layer_state = cell(step, layer_state)
                outputs.append(layer_state[0])
            steps = outputs
            assert layer_state is not None
            final_h.append(layer_state[0])
            final_c.append(layer_state[1])
        return ops.stack(steps, axis=time_axis), (ops.stack(final_h), ops.stack(final_c))

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first={self.batch_first}"

