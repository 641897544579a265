"""What a client answers a task with: an update's header (its payload follows it), an evaluation report, or
a decline of a TRAIN task its run policy refuses."""
from __future__ import annotations

from dataclasses import dataclass

from fedgrad.protocol.manifest import TensorSpec
from fedgrad.protocol.records import Encoding


@dataclass(frozen=True)
class UpdateAnnouncement:
    """The header of an update, read before its payload: every check that needs no payload runs on this."""

    task_id: int
    round: int
    model_version: int
    n_examples: int
    metrics: dict[str, float]
    train_s: float
    encrypt_s: float
    encoding: Encoding | None           # None: a number this build does not know
    raw_encoding: int                   # the number as sent, for error messages
    manifest: tuple[TensorSpec, ...]    # the delta's tensors: must be the global model's
    payload_bytes: int
    signature: bytes = b""


@dataclass(frozen=True)
class EvaluationReport:
    """The answer to an EVALUATE task: ``fedgrad.training.evaluate`` on the client's shard."""

    task_id: int
    round: int
    model_version: int
    n_examples: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class TaskDecline:
    """A TRAIN task the client will not answer, with its one-line reason (outside its run policy)."""

    task_id: int
    round: int
    model_version: int
    reason: str
