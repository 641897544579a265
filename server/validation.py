"""The manifest check every update must pass before its payload is read: a refusal names what is wrong."""
from __future__ import annotations

from collections.abc import Sequence

from fedgrad.protocol import Rejected, TensorSpec


def check_manifest(want: Sequence[TensorSpec], got: Sequence[TensorSpec]) -> None:
    """Raise :class:`Rejected` unless ``got`` lists the same tensors (name, shape, dtype, order)."""
    if tuple(want) == tuple(got):
        return
    want_names, got_names = [spec.name for spec in want], [spec.name for spec in got]
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
    for wanted, spec in zip(want, got, strict=True):
        if wanted.shape != spec.shape:
            raise Rejected.invalid(f"tensor {spec.name!r} has shape {list(spec.shape)}, the model's is "
                                   f"{list(wanted.shape)}")
        if wanted.dtype != spec.dtype:
            raise Rejected.invalid(f"tensor {spec.name!r} has dtype {spec.dtype}, the model's is {wanted.dtype}")
