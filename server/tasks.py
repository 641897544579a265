"""Tasks the coordinator hands out, and the global model encoded once per version for all of them.

A TRAIN or EVALUATE task is a small per-client header (weight, seed, settings) followed by the model's
chunks. The chunks are identical for every recipient of a model version, so they are encoded once
(:class:`ModelPayload`) and the same message objects are streamed to each client.

The header's ``config_json`` is a :class:`fedgrad.protocol.TaskConfig`: everything a client needs besides its
shard, so a client on another machine needs no scenario file. This module is where the coordinator's tasks
become protobuf messages.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from fedgrad.protocol import Announcement, TaskConfig
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import encode_tensors, split_payload
from fedgrad.transport.convert import announcement_to_pb


@dataclass(frozen=True)
class ModelPayload:
    """One version of the global model as manifest plus ready-to-send chunk messages."""

    version: int
    specs: tuple[pb.TensorSpec, ...]
    payload_bytes: int
    chunks: tuple[pb.TaskChunk, ...]

    @classmethod
    def encode(cls, version: int, model: Mapping[str, np.ndarray]) -> ModelPayload:
        specs, payload = encode_tensors(model)
        chunks = tuple(pb.TaskChunk(data=piece) for piece in split_payload(payload))
        return cls(version, tuple(specs), len(payload), chunks)


@dataclass(frozen=True)
class Task:
    """A header and, for TRAIN/EVALUATE, the model it refers to."""

    header: pb.TaskHeader
    model: ModelPayload | None = None

    @property
    def task_id(self) -> int:
        return self.header.task_id

    @property
    def kind(self) -> int:
        return self.header.kind

    def messages(self) -> Iterator[pb.TaskChunk]:
        """The stream GetTask sends: the header, then the model's chunks."""
        yield pb.TaskChunk(header=self.header)
        if self.model is not None:
            yield from self.model.chunks


def model_task(kind: pb.TaskKind, task_id: int, round_number: int, model: ModelPayload, config: TaskConfig,
               weight: float = 0.0, announcement: Announcement | None = None) -> Task:
    """A TRAIN or EVALUATE task carrying ``model`` (and, for TRAIN, how the update must be encoded)."""
    header = pb.TaskHeader(kind=kind, task_id=task_id, round=round_number, model_version=model.version,
                           config_json=config.to_json(), weight=weight, privacy=announcement_to_pb(announcement),
                           tensors=model.specs, payload_bytes=model.payload_bytes)
    return Task(header, model)


def signal_task(kind: pb.TaskKind, task_id: int) -> Task:
    """A WAIT or SHUTDOWN task: a header alone."""
    return Task(pb.TaskHeader(kind=kind, task_id=task_id))

