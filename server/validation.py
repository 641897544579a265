"""The manifest check every update must pass before its payload is read: a refusal names what is wrong."""
from __future__ import annotations

from collections.abc import Sequence

from fedgrad.protocol import Rejected
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import Manifest, WireError, manifest


def check_manifest(expected: Sequence[pb.TensorSpec], got: Manifest) -> None:
    """Raise :class:`Rejected` unless ``got`` lists the same tensors (name, shape, dtype, order)."""
    try:
        want = manifest(expected)
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
    for (name, shape, dtype), (_, got_shape, got_dtype) in zip(want, got, strict=True):
        if shape != got_shape:
            raise Rejected.invalid(f"tensor {name!r} has shape {list(got_shape)}, the model's is {list(shape)}")
        if dtype != got_dtype:
            raise Rejected.invalid(f"tensor {name!r} has dtype {got_dtype}, the model's is {dtype}")
