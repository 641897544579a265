"""Refusals the coordinator sends back, and the manifest check every plain update must pass.

A refused call is answered with a gRPC status code and a one-line message naming what was wrong, so
a client (or the person reading its log) can tell a stale update from a corrupt one. Nothing about a
refusal is fatal to the run: the offending call fails, the round goes on.
"""
from __future__ import annotations

from collections.abc import Sequence

import grpc

from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import WireError, manifest


class Rejected(Exception):
    """A call the coordinator refuses; ``code`` is the gRPC status the caller receives."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def invalid(cls, message: str) -> Rejected:
        """The request itself is malformed (bad manifest, NaN, truncated stream)."""
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def stale(cls, message: str) -> Rejected:
        """A well-formed request that does not fit the coordinator's state (wrong round, not selected, late)."""
        return cls(grpc.StatusCode.FAILED_PRECONDITION, message)

    @classmethod
    def unauthenticated(cls, message: str) -> Rejected:
        """Unknown run, client or token: the client should join (again)."""
        return cls(grpc.StatusCode.UNAUTHENTICATED, message)

    @classmethod
    def resource(cls, message: str) -> Rejected:
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def check_manifest(expected: Sequence[pb.TensorSpec], received: Sequence[pb.TensorSpec]) -> None:
    """Raise :class:`Rejected` unless ``received`` lists the same tensors (name, shape, dtype, order)."""
    try:
        want, got = manifest(expected), manifest(received)
    except WireError as error:
        raise Rejected.invalid(str(error)) from None
    if want == got:
        return
    want_names, got_names = [entry[0] for entry in want], [entry[0] for entry in got]
    missing = [name for name in want_names if name not in got_names]
    if missing:
        raise Rejected.invalid(f"update lacks tensor(s) {', '.join(map(repr, missing))}")
    extra = [name for name in got_names if name not in want_names]
    if extra:
        raise Rejected.invalid(f"update has unknown tensor(s) {', '.join(map(repr, extra))}")
    repeated = sorted({name for name in got_names if got_names.count(name) > 1})
    if repeated:
        raise Rejected.invalid(f"update lists tensor(s) {', '.join(map(repr, repeated))} more than once")
    if want_names != got_names:
        raise Rejected.invalid("update lists the model's tensors in a different order")
    for (name, shape, dtype), (_, got_shape, got_dtype) in zip(want, got):
        if shape != got_shape:
            raise Rejected.invalid(f"tensor {name!r} has shape {list(got_shape)}, the model's is {list(shape)}")
        if dtype != got_dtype:
            raise Rejected.invalid(f"tensor {name!r} has dtype {got_dtype}, the model's is {dtype}")
