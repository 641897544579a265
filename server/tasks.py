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
from typing import Any

import numpy as np

from fedgrad.protocol import Announcement, TaskConfig, model_digest
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import decode_tensors, encode_tensors, split_payload
from fedgrad.transport.convert import announcement_to_pb


@dataclass(frozen=True)
class ModelPayload:
    """One version of the global model as manifest plus ready-to-send chunk messages."""

    version: int
    specs: tuple[pb.TensorSpec, ...]
    payload_bytes: int
    chunks: tuple[pb.TaskChunk, ...]
    digest: bytes = b""  # ``model_digest`` of the tensors as clients decode them, which clients sign

    @classmethod
    def encode(cls, version: int, model: Mapping[str, np.ndarray]) -> ModelPayload:
        specs, payload = encode_tensors(model)
        chunks = tuple(pb.TaskChunk(data=piece) for piece in split_payload(payload))
        return cls(version, tuple(specs), len(payload), chunks, model_digest(decode_tensors(specs, payload)))


@dataclass(frozen=True)
class Task:
    """A header and, for TRAIN/EVALUATE, the model it refers to.

    The header message is built when the task is sent, from this client's own fields and the round's
    announcement (``privacy``, one message shared by every task of the round): a secure round's announcement
    lists the whole cohort, and a thousand tasks each holding a copy of a thousand-member cohort would cost
    the coordinator memory quadratic in the clients per round.
    """

    fields: Mapping[str, Any]
    model: ModelPayload | None = None
    privacy: pb.PrivacyAnnouncement | None = None

    @property
    def task_id(self) -> int:
        return int(self.fields["task_id"])

    @property
    def kind(self) -> int:
        return int(self.fields["kind"])

    @property
    def header(self) -> pb.TaskHeader:
        return pb.TaskHeader(**self.fields, privacy=self.privacy)

    def messages(self) -> Iterator[pb.TaskChunk]:
        """The stream GetTask sends: the header, then the model's chunks."""
        yield pb.TaskChunk(header=self.header)
        if self.model is not None:
            yield from self.model.chunks


def privacy_message(announcement: Announcement | None) -> pb.PrivacyAnnouncement | None:
    """A round's announcement as the message its tasks share (made once per round)."""
    return announcement_to_pb(announcement)


def model_task(kind: pb.TaskKind, task_id: int, round_number: int, model: ModelPayload, config: TaskConfig,
               weight: float = 0.0, privacy: pb.PrivacyAnnouncement | None = None) -> Task:
    """A TRAIN or EVALUATE task carrying ``model`` (and, for TRAIN, how the update must be encoded)."""
    fields = dict(kind=kind, task_id=task_id, round=round_number, model_version=model.version,
                  config_json=config.to_json(), weight=weight, tensors=model.specs, payload_bytes=model.payload_bytes)
    return Task(fields, model, privacy)


def signal_task(kind: pb.TaskKind, task_id: int) -> Task:
    """A WAIT or SHUTDOWN task: a header alone."""
    return Task(dict(kind=kind, task_id=task_id))

