"""Optimizers: `SGD` (momentum, weight decay) and `Adam`, with PyTorch's update rules.

Updates are written in place into ``param.data`` so that modules, optimizers and anything else
holding a parameter keep seeing the same object. Parameters whose ``grad`` is ``None`` (not
used in the last backward) are skipped, as in PyTorch.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from fedgrad import backend
from fedgrad.backend import Array
from fedgrad.tensor import Tensor


class Optimizer:
    """Holds the parameter list and per-parameter state arrays (``self.state[i][name]``)."""

    def __init__(self, params: Iterable[Tensor], defaults: dict[str, Any]):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for param in self.params:
            if not param.requires_grad:
                raise ValueError("optimizer got a tensor that does not require grad")
        self.defaults = dict(defaults)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    def step(self) -> None:
        raise NotImplementedError

    def _gradients(self) -> Iterator[tuple[Tensor, dict[str, Any], Array]]:
        """``(param, state, grad)`` for each parameter that received a gradient, with the L2 term
        ``weight_decay * param`` already added to ``grad`` (as PyTorch's SGD and Adam both do)."""
        weight_decay = self.defaults["weight_decay"]
        for param, slot in zip(self.params, self.state, strict=True):
            if param.grad is None:
                continue
            grad = param.grad.data
            if weight_decay:
                grad = grad + weight_decay * param.data
            yield param, slot, grad

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters and per-parameter state as host numpy arrays (plain Python values)."""
        return {
            "defaults": dict(self.defaults),
            "state": [
                {name: backend.to_host(v).copy() if hasattr(v, "shape") else v for name, v in slot.items()}
                for slot in self.state
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["state"]) != len(self.params):
            raise ValueError(f"state for {len(state['state'])} parameters, optimizer has {len(self.params)}")
        self.defaults.update(state["defaults"])
        self.state = [
            {
                name: backend.to_device(v, p.device).astype(p.dtype) if isinstance(v, np.ndarray) else v
                for name, v in slot.items()
            }
            for p, slot in zip(self.params, state["state"], strict=True)
        ]


class SGD(Optimizer):
    """``g = grad + weight_decay * p``; with momentum ``buf = momentum * buf + g`` (``buf = g`` on
    the first step); ``p -= lr * buf``."""

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid SGD settings lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def step(self) -> None:
        lr = self.defaults["lr"]
        momentum = self.defaults["momentum"]
        for param, slot, grad in self._gradients():
            if momentum:
                buf = slot.get("momentum_buffer")
                if buf is None:
                    buf = slot["momentum_buffer"] = grad.copy()
                else:
                    buf *= momentum
                    buf += grad
                grad = buf
            param.data -= lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is added to the gradient (L2),
    as in ``torch.optim.Adam``."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid Adam settings lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def step(self) -> None:
        lr, (beta1, beta2) = self.defaults["lr"], self.defaults["betas"]
        eps = self.defaults["eps"]
        for param, slot, grad in self._gradients():
            if not slot:
                xp = backend.array_module(param.data)
                slot.update(step=0, exp_avg=xp.zeros_like(param.data), exp_avg_sq=xp.zeros_like(param.data))
            slot["step"] += 1
            exp_avg, exp_avg_sq = slot["exp_avg"], slot["exp_avg_sq"]
            exp_avg *= beta1
            exp_avg += (1 - beta1) * grad
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            bias1 = 1 - beta1 ** slot["step"]
            bias2 = 1 - beta2 ** slot["step"]
            denom = backend.array_module(param.data).sqrt(exp_avg_sq / bias2) + eps
            param.data -= (lr / bias1) * exp_avg / denom
