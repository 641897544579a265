"""The one array-module seam between the engine and numpy / cupy.

Every place that must choose between numpy and cupy goes through this module, in the spirit of
Chainer's ``cuda.get_array_module``: ``get_xp(device)`` when creating arrays for a device,
``array_module(array)`` when an op needs the module its inputs live in.

cupy is imported lazily, only the first time a ``cuda`` device is asked for (or a cupy array is
seen), so CPU-only installs never pay for it or need it. Asking for ``cuda`` without cupy or
without a GPU raises :class:`DeviceError` (a :class:`~fedgrad.errors.FedgradError`) with a
one-line message instead of an ImportError deep in a stack.

cupy and cupyx ship no type information, so this module is also the typed seam to them: they are
imported with :func:`importlib.import_module` (typed :class:`~types.ModuleType`) and never named
in an ``import`` statement anywhere else; what the engine needs from them is wrapped here in
typed functions (:func:`scatter_add`, :func:`scatter_add_rows`, :func:`to_device`, ...). An
array of either module is an :data:`Array`.

Host memory: glibc hands every freed block of 128 KiB or more straight back to the kernel, so
each training step's large temporaries (gathered embeddings, id arrays, gradient buffers) are
page-faulted in again on the next step. In a VM a fault costs microseconds, which tripled the
spam model's step time. On import, :func:`keep_freed_host_memory` raises glibc's mmap and trim
thresholds so freed blocks up to 16 MiB stay in the heap and are reused; the process keeps at
most its peak working set plus 32 MiB. Set ``FEDGRAD_RETURN_FREED_MEMORY=1`` to opt out.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
import sys
from types import ModuleType
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from fedgrad.errors import FedgradError

CPU = "cpu"
CUDA = "cuda"

Array: TypeAlias = Any
"""An array of the engine's array module: ``numpy.ndarray`` on the CPU, ``cupy.ndarray`` on a GPU.
``Any`` because cupy has no stubs; the engine only uses the API the two modules share."""

_cupy: ModuleType | None = None


class DeviceError(FedgradError):
    """A device string that cannot be honoured: malformed, cupy missing, or no GPU present."""


def parse_device(device: str | None) -> str:
    """Canonical device name: ``"cpu"`` or ``"cuda:N"``; ``None`` means CPU.

    Only the syntax is checked here; :func:`get_xp` checks that a GPU is really there.
    """
    if device is None:
        return CPU
    name = str(device).strip().lower()
    if name == CPU:
        return CPU
    if name == CUDA:
        return "cuda:0"
    kind, sep, index = name.partition(":")
    if kind == CUDA and sep and index.isdigit():
        return f"cuda:{int(index)}"
    raise DeviceError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def _load_cupy() -> ModuleType:
    """Import cupy once and check that at least one GPU answers."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        raise DeviceError(
            "device 'cuda' needs cupy, which is not installed (pip install 'fedgrad[cuda]')"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001  (cupy raises CUDARuntimeError / driver errors without a GPU)
        raise DeviceError(f"device 'cuda' asked for but no usable GPU was found ({exc})") from None
    if count < 1:
        raise DeviceError("device 'cuda' asked for but no GPU was found")
    _cupy = cupy
    return cupy


def _cuda_index(device: str) -> int:
    cupy = _load_cupy()
    index = int(device.partition(":")[2])
    count = cupy.cuda.runtime.getDeviceCount()
    if index >= count:
        raise DeviceError(f"device {device!r} asked for but only {count} GPU(s) present")
    return index


def get_xp(device: str | None) -> ModuleType:
    """The array module (numpy or cupy) that holds arrays for ``device``."""
    name = parse_device(device)
    if name == CPU:
        return np
    _cuda_index(name)
    assert _cupy is not None
    return _cupy


def is_device_array(array: object) -> bool:
    """True for a cupy ndarray, without importing cupy when it was never loaded."""
    return type(array).__module__.startswith("cupy")


def array_module(array: object) -> ModuleType:
    """The module an array belongs to: numpy for numpy arrays and scalars, cupy for cupy arrays."""
    if type(array) is np.ndarray:
        return np
    if is_device_array(array):
        return _load_cupy()
    return np


def owns_writable_buffer(array: Array) -> bool:
    """Whether ``array`` owns its memory and may be written in place (cupy's arrays are always writable: their
    flags have no ``writeable``)."""
    flags = array.flags
    return bool(flags.owndata and getattr(flags, "writeable", True))


def device_of(array: Array) -> str:
    """Canonical device name of an array."""
    if is_device_array(array):
        return f"cuda:{array.device.id}"
    return CPU


def to_device(array: Any, device: str | None) -> Array:
    """``array`` on ``device``; returned as is when it is already there (no copy)."""
    name = parse_device(device)
    if name == CPU:
        return to_host(array)
    index = _cuda_index(name)
    cupy = _cupy
    assert cupy is not None
    if is_device_array(array) and array.device.id == index:
        return array
    with cupy.cuda.Device(index):
        return cupy.asarray(array)


def to_host(array: Any) -> npt.NDArray[Any]:
    """A numpy array with the same values (the array itself when it already is one)."""
    if is_device_array(array):
        host: npt.NDArray[Any] = array.get()
        return host
    return np.asarray(array)


def scatter_add(out: Array, index: Any, values: Array) -> None:
    """``out[index] += values`` in place, with repeated indices accumulated (``np.add.at``;
    ``cupyx.scatter_add`` on the GPU)."""
    if is_device_array(out):
        importlib.import_module("cupyx").scatter_add(out, index, values)
    else:
        np.add.at(out, index, values)


def scatter_add_rows(ids: Array, rows: Array, num_rows: int, dtype: npt.DTypeLike) -> Array:
    """``out[ids[k]] += rows[k]`` for a ``(num_rows, D)`` output, duplicates summed.

    This is the backward of every row gather (embeddings, ``index_select``). ``np.add.at`` is
    the obvious spelling but processes one index at a time; ``np.bincount`` with weights does the
    same sum in one vectorised pass (accumulating in float64, so it is also more accurate).
    For ``D > 1`` the row index and column are flattened into one bin id. On the GPU,
    ``cupyx.scatter_add`` does the same with atomics.
    """
    ids = ids.reshape(-1)
    width = rows.shape[-1]
    rows = rows.reshape(ids.shape[0], width)
    if is_device_array(rows):
        out = _load_cupy().zeros((num_rows, width), dtype=dtype)
        scatter_add(out, ids, rows)
        return out
    ids = ids.astype(np.intp, copy=False)  # bincount converts other integer types slowly
    if width == 1:
        summed = np.bincount(ids, weights=rows[:, 0], minlength=num_rows)
    else:
        flat = (ids[:, None] * width + np.arange(width)).reshape(-1)
        summed = np.bincount(flat, weights=rows.reshape(-1), minlength=num_rows * width)
    return summed.reshape(num_rows, width).astype(dtype)


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_host_memory(mmap_threshold: int = 16 << 20, trim_threshold: int = 32 << 20) -> bool:
    """Ask glibc to serve blocks below ``mmap_threshold`` from the heap and to keep up to
    ``trim_threshold`` bytes of free heap instead of returning it to the kernel (see the module
    docstring). Returns whether the settings were applied (False off glibc or when opted out)."""
    if os.environ.get("FEDGRAD_RETURN_FREED_MEMORY") == "1" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


keep_freed_host_memory()
