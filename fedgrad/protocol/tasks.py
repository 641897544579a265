"""The tasks the coordinator hands its clients: TRAIN and EVALUATE carry the global model, WAIT and SHUTDOWN
are signals.

Each kind is its own record; :data:`Task` is any of them, and ``task.kind`` says which (the numbers of
:class:`TaskKind` are the wire enum's, ``proto/fedgrad.proto``).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from fedgrad.protocol.manifest import TensorSpec
from fedgrad.protocol.records import Announcement
from fedgrad.protocol.task_config import TaskConfig


class TaskKind(enum.IntEnum):
    """What a task asks of a client."""

    TRAIN = 1     # train on the local shard from the attached model, submit the delta
    EVALUATE = 2  # evaluate the attached model on the local shard, submit the metrics
    WAIT = 3      # nothing for this client yet: ask again
    SHUTDOWN = 4  # the run is over: exit


@dataclass(frozen=True)
class TrainTask:
    """A TRAIN task. The last three fields are the client's own context, never sent: the run it joined, its
    example count and the digest of the model it received (computed by the client itself)."""

    kind: ClassVar[TaskKind] = TaskKind.TRAIN

    task_id: int
    round: int
    model_version: int
    weight: float                      # the strategy's aggregation weight for this client
    config: TaskConfig
    manifest: tuple[TensorSpec, ...]   # the global model's tensors, in payload order
    announcement: Announcement | None  # None: send the delta in plain
    run_id: str = ""
    local_examples: int = 0            # the client's own example count (its weight under ``paillier``)
    model_digest: bytes = b""          # ``model_digest`` of the model received

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """The model's tensors in payload order."""
        return tuple(spec.name for spec in self.manifest)


@dataclass(frozen=True)
class EvaluateTask:
    """An EVALUATE task: score the attached model on the local shard."""

    kind: ClassVar[TaskKind] = TaskKind.EVALUATE

    task_id: int
    round: int
    model_version: int
    config: TaskConfig
    manifest: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class WaitTask:
    """Nothing for this client yet; ``task_id`` is the newest task it already has."""

    kind: ClassVar[TaskKind] = TaskKind.WAIT

    task_id: int


@dataclass(frozen=True)
class ShutdownTask:
    """The run is over."""

    kind: ClassVar[TaskKind] = TaskKind.SHUTDOWN

    task_id: int


Task = TrainTask | EvaluateTask | WaitTask | ShutdownTask
