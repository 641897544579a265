"""Shared helpers for the engine tests: a float64 central-difference gradient checker.

The checker runs its ops on the device ``FEDGRAD_TEST_DEVICE`` names (default ``cpu``):
``FEDGRAD_TEST_DEVICE=cuda pytest tests/engine/test_gradcheck.py`` gradchecks every op on cupy, on a machine
with a GPU (the run stops with one line when the device is not there)."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pytest

import fedgrad as fg
from fedgrad import backend

#: Where the gradient checker's tensors live (``cpu``, ``cuda``, ``cuda:N``).
DEVICE = backend.parse_device(os.environ.get("FEDGRAD_TEST_DEVICE", "cpu"))
if DEVICE != backend.CPU:
    try:
        backend.get_xp(DEVICE)
    except backend.DeviceError as error:
        raise pytest.UsageError(f"FEDGRAD_TEST_DEVICE={DEVICE}: {error}") from None


def numerical_gradcheck(
    fn: Callable[..., fg.Tensor],
    arrays: Sequence[np.ndarray],
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    seed: int = 0,
) -> None:
    """Compare autograd gradients of ``sum(fn(*inputs) * R)`` (R random) with central differences.

    A random projection R checks the full Jacobian-vector product, not just the gradient of a
    plain sum, and it is passed as ``backward``'s explicit ``grad``, which checks that every op
    scales by the incoming gradient."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    tensors = [fg.Tensor(a.copy(), requires_grad=True, dtype=fg.float64, device=DEVICE) for a in arrays]
    out = fn(*tensors)
    assert out.dtype == np.float64, f"op changed float64 to {out.dtype}"
    assert out.device == DEVICE, f"op moved its result from {DEVICE} to {out.device}"
    projection = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(fg.Tensor(projection, dtype=fg.float64, device=DEVICE))

    def objective(values: list[np.ndarray]) -> float:
        with fg.no_grad():
            result = fn(*[fg.Tensor(v, dtype=fg.float64, device=DEVICE) for v in values])
        return float(np.sum(result.numpy() * projection))

    for k, (tensor, array) in enumerate(zip(tensors, arrays, strict=True)):
        assert tensor.grad is not None, f"input {k} received no gradient"
        assert tensor.grad.device == DEVICE, f"input {k}'s gradient is on {tensor.grad.device}"
        assert tensor.grad.shape == array.shape
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[k][index] += eps
            minus[k][index] -= eps
            numeric[index] = (objective(plus) - objective(minus)) / (2 * eps)
        np.testing.assert_allclose(tensor.grad.numpy(), numeric, rtol=rtol, atol=atol, err_msg=f"input {k}")


@pytest.fixture
def gradcheck() -> Callable[..., None]:
    return numerical_gradcheck


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
