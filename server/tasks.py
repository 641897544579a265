"""Tasks the coordinator hands out, and the global model encoded once per version for all of them.

A TRAIN or EVALUATE task (``fedgrad.protocol``) is a small per-client header (weight, seed, settings) followed by
the model's payload. The payload is identical for every recipient of a model version, so it is encoded and cut
into chunks once (:class:`ModelPayload`) and every :class:`Delivery` of that version refers to the same pieces.
A round's tasks refer to its one announcement, never to copies of it: a secure round's announcement lists the
whole cohort, and a thousand tasks each holding a thousand-member cohort would cost memory quadratic in the
clients per round.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedgrad.protocol import (
    Announcement,
    EvaluateTask,
    Task,
    TaskConfig,
    TaskKind,
    TensorSpec,
    TrainTask,
    model_digest,
)
from fedgrad.transport.codec import decode_tensors, encode_tensors, split_payload


@dataclass(frozen=True, eq=False)
class ModelPayload:
    """One version of the global model as its manifest plus the payload's chunks, ready to send."""

    version: int
    specs: tuple[TensorSpec, ...]
    payload_bytes: int
    pieces: tuple[bytes, ...]
    digest: bytes = b""  # ``model_digest`` of the tensors as clients decode them, which clients sign

    @classmethod
    def encode(cls, version: int, model: Mapping[str, np.ndarray]) -> ModelPayload:
        specs, payload = encode_tensors(model)
        return cls(version, tuple(specs), len(payload), tuple(split_payload(payload)),
                   model_digest(decode_tensors(specs, payload)))


@dataclass(frozen=True)
class Delivery:
    """A task as posted to a client's mailbox and, for TRAIN/EVALUATE, the model payload it carries."""

    task: Task
    model: ModelPayload | None = None

    @property
    def task_id(self) -> int:
        return self.task.task_id

    @property
    def kind(self) -> TaskKind:
        return self.task.kind


def train_task(task_id: int, round_number: int, model: ModelPayload, config: TaskConfig, weight: float,
               announcement: Announcement | None) -> Delivery:
    """A TRAIN task carrying ``model``, and how the update must be encoded (None: plain)."""
    return Delivery(TrainTask(task_id, round_number, model.version, weight, config, model.specs, announcement), model)


def evaluate_task(task_id: int, round_number: int, model: ModelPayload, config: TaskConfig) -> Delivery:
    """An EVALUATE task carrying ``model``."""
    return Delivery(EvaluateTask(task_id, round_number, model.version, config, model.specs), model)
