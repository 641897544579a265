"""Local training and evaluation of a spam model on one shard: the work a client does each round,
and what the centralized baseline does on the pooled data.

Both are device-agnostic: batches are moved to wherever the model's parameters live (``cpu`` or a
``cuda`` device), and results come back as plain Python numbers.
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

import fedgrad as fg
from fedgrad import backend
from fedgrad.data import Shard
from fedgrad.metrics import ConfusionMatrix
from fedgrad.models import SpamModel
from fedgrad.optim import SGD, Adam, Optimizer
from fedgrad.tensor import Tensor

#: A score is spam when its probability is above this (the book's ``pred > 0.5``).
THRESHOLD = 0.5


def client_seed(seed: int, round_number: int, client_id: str) -> int:
    """The local-training seed of ``client_id`` in ``round_number``: a pure function of the three, so a
    client trains identically whichever process hosts it and however often the round is retried."""
    words = [seed, round_number, zlib.crc32(client_id.encode())]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def make_optimizer(name: str, model: SpamModel, *, lr: float, momentum: float) -> Optimizer:
    """``sgd`` (with optional momentum) or ``adam`` over the model's parameters."""
    if name == "sgd":
        return SGD(model.parameters(), lr=lr, momentum=momentum)
    if name == "adam":
        return Adam(model.parameters(), lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adam'")


def train_local(
    model: SpamModel,
    shard: Shard,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str,
    momentum: float,
    seed: int,
    prox_mu: float = 0.0,
) -> dict[str, Any]:
    """Train ``model`` in place for ``epochs`` passes over ``shard``; return ``{loss, n_examples, steps}``.

    Each epoch visits the examples in an order drawn from ``seed`` (so a run is reproducible), in
    batches of ``batch_size``; the last batch of an epoch may be smaller rather than dropped, because a
    client's shard can be smaller than one batch. A fresh optimizer is made for each call: in
    federated training the model it starts from is the new global one.

    With ``prox_mu > 0`` (FedProx) the objective gains ``(prox_mu / 2) * ||w - w_start||^2``, which
    keeps the local model near the global model it started from when clients' data differ.

    ``loss`` is the mean per-example loss (the model's own loss, without the proximal term) over the
    last epoch, measured on the fly while training.
    """
    n = len(shard)
    steps = 0
    if n == 0:
        return {"loss": float("nan"), "n_examples": 0, "steps": 0}
    device = _device_of(model)
    opt = make_optimizer(optimizer, model, lr=lr, momentum=momentum)
    anchors = [(param, Tensor(param.data.copy())) for param in model.parameters()] if prox_mu > 0 else []
    rng = np.random.default_rng(seed)
    model.train()
    epoch_loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        epoch_loss = 0.0
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            ids, labels = _batch_on(device, shard, batch)
            loss = model.loss_fn(model(ids), labels)
            objective = loss
            for param, anchor in anchors:
                objective = objective + ((param - anchor) ** 2).sum() * (prox_mu / 2)
            opt.zero_grad()
            objective.backward()
            opt.step()
            epoch_loss += _summed(model, loss.item(), len(batch))
            steps += 1
    return {"loss": epoch_loss / n, "n_examples": n, "steps": steps}


def evaluate(model: SpamModel, shard: Shard, batch_size: int = 1000) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (spam = positive; see :mod:`fedgrad.metrics` for the 0/0
    convention), mean per-example loss and the number of examples ``n``."""
    device = _device_of(model)
    model.eval()
    confusion = ConfusionMatrix()
    total_loss = 0.0
    with fg.no_grad():
        for start in range(0, len(shard), batch_size):
            batch = slice(start, start + batch_size)
            ids, labels = _batch_on(device, shard, batch)
            scores = model(ids)
            total_loss += _summed(model, model.loss_fn(scores, labels).item(), len(labels))
            predicted = model.predict_proba(scores).numpy() > THRESHOLD
            confusion = confusion + ConfusionMatrix.from_predictions(predicted, shard.labels[batch])
    n = len(shard)
    return {**confusion.as_dict(), "loss": total_loss / n if n else float("nan"), "n": n}


def _device_of(model: SpamModel) -> str:
    return next(iter(model.parameters())).device


def _batch_on(device: str, shard: Shard, rows: Any) -> tuple[Any, Tensor]:
    """Token ids (a raw array, as embedding layers take them) and labels of ``rows`` on ``device``."""
    return backend.to_device(shard.ids[rows], device), Tensor(shard.labels[rows], device=device)


def _summed(model: SpamModel, batch_loss: float, batch_len: int) -> float:
    """The batch's total loss, whichever way the model reduces its loss over a batch."""
    return batch_loss if model.loss_reduction == "sum" else batch_loss * batch_len
