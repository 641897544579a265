"""fedgrad: a small autograd engine (numpy/cupy) and a federated-learning platform built on it.

``import fedgrad`` loads the engine only. The platform's Python API (``fedgrad.run``) is imported on first use
(:func:`__getattr__`), so the engine never pulls in gRPC, and ``fedgrad.api`` may import ``fedgrad`` freely.
"""
import importlib
from typing import TYPE_CHECKING, Any

from fedgrad import nn, optim
from fedgrad.backend import DeviceError
from fedgrad.ops import cat, matmul, stack, where
from fedgrad.tensor import (
    Tensor,
    arange,
    bool_,
    float32,
    float64,
    int32,
    int64,
    is_grad_enabled,
    manual_seed,
    no_grad,
    ones,
    randn,
    tensor,
    zeros,
)

if TYPE_CHECKING:
    from fedgrad.api import baseline, compare, run

#: Attributes imported on first use (the platform, kept out of ``import fedgrad``), and the module of each.
_LAZY = {"run": "fedgrad.api", "compare": "fedgrad.api", "baseline": "fedgrad.api"}


def __getattr__(name: str) -> Any:
    """``fedgrad.run``, ``fedgrad.compare``, ``fedgrad.baseline`` (the :data:`_LAZY` names) from their module,
    imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fedgrad' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DeviceError",
    "Tensor",
    "arange",
    "baseline",
    "bool_",
    "cat",
    "compare",
    "float32",
    "float64",
    "int32",
    "int64",
    "is_grad_enabled",
    "manual_seed",
    "matmul",
    "nn",
    "no_grad",
    "ones",
    "optim",
    "randn",
    "run",
    "stack",
    "tensor",
    "where",
    "zeros",
]
