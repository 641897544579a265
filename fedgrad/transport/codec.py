"""Tensors <-> wire bytes, and byte payloads <-> chunks of at most 1 MiB.

A model or plain update travels as one *payload*: its tensors' raw bytes (C order, little-endian)
concatenated in manifest order, described by its manifest (:class:`~fedgrad.protocol.TensorSpec`: name, shape,
dtype per tensor). Keeping the description apart from the bytes lets a receiver check the manifest before a
single payload byte arrives, know the exact length to expect (so truncated or oversized streams are refused),
and decode with zero-copy ``np.frombuffer`` views. The same chunking carries encrypted payloads, whose layout
the codec does not need to know.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from fedgrad.protocol import DType, TensorSpec

#: Largest payload slice in one message; well below the 4 MiB message limit (see ``channel``).
MAX_CHUNK_BYTES = 1 << 20


class WireError(ValueError):
    """A payload or manifest from the wire that does not decode; the message says what is wrong."""


def tensor_specs(tensors: Mapping[str, np.ndarray]) -> list[TensorSpec]:
    """The manifest of ``tensors`` in their iteration order (the payload order)."""
    specs = []
    for name, array in tensors.items():
        dtype = DType.of(array.dtype)
        if dtype is None:
            raise WireError(f"tensor {name!r}: dtype {array.dtype} cannot be sent "
                            "(use float32, float64, int32 or int64)")
        specs.append(TensorSpec(name, tuple(int(dim) for dim in array.shape), dtype))
    return specs


def payload_size(specs: Sequence[TensorSpec]) -> int:
    """Exact byte length of the payload that ``specs`` describe."""
    return sum(_count(spec) * spec.dtype.numpy.itemsize for spec in specs)


def encode_tensors(tensors: Mapping[str, np.ndarray]) -> tuple[list[TensorSpec], bytes]:
    """``(manifest, payload)`` for ``tensors``."""
    specs = tensor_specs(tensors)
    payload = b"".join(
        np.ascontiguousarray(array, dtype=spec.dtype.numpy).tobytes()
        for spec, array in zip(specs, tensors.values(), strict=True)
    )
    return specs, payload


def decode_tensors(specs: Sequence[TensorSpec], payload: bytes | bytearray | memoryview) -> dict[str, np.ndarray]:
    """The tensors of ``payload`` as read-only views into it, keyed by name in manifest order."""
    expected = payload_size(specs)
    if len(payload) != expected:
        raise WireError(f"payload has {len(payload)} bytes, the manifest describes {expected}")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        if spec.name in tensors:
            raise WireError(f"tensor {spec.name!r} appears twice in the manifest")
        dtype, count = spec.dtype.numpy, _count(spec)
        tensors[spec.name] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(spec.shape)
        offset += count * dtype.itemsize
    return tensors


def split_payload(payload: bytes, chunk_bytes: int = MAX_CHUNK_BYTES) -> Iterator[bytes]:
    """``payload`` in consecutive slices of at most ``chunk_bytes`` (nothing for an empty payload)."""
    for start in range(0, len(payload), chunk_bytes):
        yield payload[start:start + chunk_bytes]


class PayloadBuffer:
    """Reassembles a chunked payload of an announced length, refusing overflow and truncation.

    The buffer is allocated once at the announced size, which the receiver has already checked
    against what it expects, so a hostile stream cannot make it grow.
    """

    def __init__(self, expected_bytes: int) -> None:
        self._data = bytearray(expected_bytes)
        self._filled = 0

    def append(self, chunk: bytes) -> None:
        if len(chunk) > MAX_CHUNK_BYTES:
            raise WireError(f"chunk of {len(chunk)} bytes exceeds the {MAX_CHUNK_BYTES}-byte chunk limit")
        end = self._filled + len(chunk)
        if end > len(self._data):
            raise WireError(f"stream carries more than the announced {len(self._data)} payload bytes")
        self._data[self._filled:end] = chunk
        self._filled = end

    @property
    def complete(self) -> bool:
        return self._filled == len(self._data)

    def payload(self) -> bytearray:
        """The complete payload; raises when the stream ended early."""
        if self._filled != len(self._data):
            raise WireError(f"stream ended after {self._filled} of the announced {len(self._data)} payload bytes")
        return self._data


def _count(spec: TensorSpec) -> int:
    if any(dim < 0 for dim in spec.shape):
        raise WireError(f"tensor {spec.name!r}: negative dimension in shape {tuple(spec.shape)}")
    return math.prod(spec.shape)  # Python ints: a hostile shape cannot overflow
