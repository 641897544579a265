"""fedgrad: a small autograd engine (numpy/cupy) and a federated-learning platform built on it."""
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

__all__ = [
    "DeviceError",
    "Tensor",
    "arange",
    "bool_",
    "cat",
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
    "stack",
    "tensor",
    "where",
    "zeros",
]
