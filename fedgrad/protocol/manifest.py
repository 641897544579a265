"""A model's manifest: the name, shape and dtype of each of its tensors, in payload order.

Models and plain updates travel as one payload of the tensors' raw bytes (``fedgrad.transport.codec``); the
manifest describes that payload, so a receiver checks it before a single payload byte arrives.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class DType(enum.Enum):
    """The element types a tensor may travel as (little-endian on the wire, whatever the host)."""

    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT32 = "int32"
    INT64 = "int64"

    @property
    def numpy(self) -> np.dtype:
        """The little-endian numpy dtype of this wire type."""
        return np.dtype(self.value).newbyteorder("<")

    @classmethod
    def of(cls, dtype: np.dtype) -> DType | None:
        """The wire type of a numpy dtype (either byte order), or None when it cannot travel."""
        return _BY_NUMPY.get(np.dtype(dtype).newbyteorder("<").str)

    def __str__(self) -> str:
        return self.value


_BY_NUMPY = {member.numpy.str: member for member in DType}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a payload: its name, shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: DType
