"""``TaskConfig``: everything a client needs besides its shard and the model, typed on both sides.

The coordinator builds one per run from the scenario (:meth:`TaskConfig.from_scenario`), specialises it per
client and round (:meth:`TaskConfig.for_client`: the strategy's local options and the client's training seed),
and sends it as JSON in the task header; the client reads it back with :meth:`TaskConfig.from_json`. A client on
another machine needs no scenario file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedgrad.errors import ConfigError
from fedgrad.scenario import ModelConfig, Scenario


@dataclass(frozen=True)
class TrainSettings:
    """Local training settings (the keyword arguments of ``fedgrad.training.train_local``, and
    ``report_start_loss``: whether the client also reports ``start_loss``, its loss on the received model before
    training, which QFedAvg weighs clients by)."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float = 0.0
    prox_mu: float = 0.0
    report_start_loss: bool = False


@dataclass(frozen=True)
class TaskConfig:
    """The model to build, how to train it locally, where, and (TRAIN tasks only) this client's seed."""

    model: ModelConfig
    vocab_size: int
    train: TrainSettings
    device: str = "cpu"
    seed: int | None = None

    @classmethod
    def from_scenario(cls, scenario: Scenario, vocab_size: int) -> TaskConfig:
        train = scenario.train
        return cls(model=scenario.model, vocab_size=vocab_size, device=train.device,
                   train=TrainSettings(epochs=train.epochs, batch_size=train.batch_size, lr=train.lr,
                                       optimizer=train.optimizer, momentum=train.momentum))

    def for_client(self, seed: int, train_options: Mapping[str, Any]) -> TaskConfig:
        """This configuration with a client's training seed and a strategy's local options (``prox_mu``)."""
        try:
            train = dataclasses.replace(self.train, **train_options)
        except TypeError as error:
            raise ConfigError(f"unknown local training option: {error}") from None
        return dataclasses.replace(self, train=train, seed=seed)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def settings_digest(self) -> bytes:
        """SHA-256 of what shapes an update besides the data and the model's values: the model, the vocabulary
        and the local training settings (not the seed, which is the client's own under a run policy, nor the
        device)."""
        settings = {"model": dataclasses.asdict(self.model), "vocab_size": self.vocab_size,
                    "train": dataclasses.asdict(self.train)}
        return hashlib.sha256(b"fedgrad/task-settings/v1\0" + json.dumps(settings, sort_keys=True).encode()).digest()

    @classmethod
    def from_json(cls, text: str) -> TaskConfig:
        """Parse a task's configuration; :class:`ConfigError` with one line saying what is wrong."""
        try:
            data = json.loads(text)
            return cls(model=ModelConfig(**data["model"]), vocab_size=int(data["vocab_size"]),
                       train=TrainSettings(**data["train"]), device=str(data["device"]), seed=data.get("seed"))
        except (ValueError, TypeError, KeyError) as error:
            raise ConfigError(f"malformed task configuration: {error}") from None


def model_digest(tensors: Mapping[str, np.ndarray]) -> bytes:
    """SHA-256 over a model's tensors in their order: names, shapes, dtypes and bytes."""
    digest = hashlib.sha256(b"fedgrad/model/v1\0")
    for name, value in tensors.items():
        array = np.ascontiguousarray(value)
        digest.update(f"{name}\0{array.shape}\0{array.dtype.str}\0".encode())
        digest.update(array.tobytes())
    return digest.digest()


def task_digest(settings_digest: bytes, model_digest: bytes) -> bytes:
    """What a client signs for the task it trained (``fedgrad.crypto.identity``, signature v2)."""
    return hashlib.sha256(b"fedgrad/task/v1\0" + settings_digest + model_digest).digest()
