"""Bookkeeping for the tasks out in the field: one training-round attempt, or the final evaluation pass.

A dispatch knows which task it sent each client and accepts exactly one answer per task while it is
open. Every check an answer must pass before its payload is read lives in ``admit``; the order of the
checks is the order a person debugging a refusal would ask the questions in.

Phase times of a training round, as recorded in ``metrics.jsonl``:

- broadcast: from the round opening until the last selected client has received its model;
- train, encrypt: the slowest client's local training / encoding time, as the clients report them;
- upload: the slowest update stream, from its header to its last chunk, as the coordinator saw it;
- aggregate: folding updates into the sum, averaging, and the strategy's server step;
- decrypt: releasing an encrypted aggregate (secure aggregation only);
- evaluate: scoring the new global model on the held-out test set.

Clients run in parallel, so the per-client phases take the slowest client (the round's critical path).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass

from fedgrad.modes.base import UpdateAccumulator
from fedgrad.protocol import Rejected, UpdateAnnouncement, WeightedSum
from server.mailbox import Signal
from server.strategies import Instruction
from server.tasks import ModelPayload
from server.validation import check_manifest


@dataclass(frozen=True)
class Report:
    """What one client returned for its task."""

    n_examples: int
    metrics: dict[str, float]
    train_s: float = 0.0
    encrypt_s: float = 0.0
    upload_s: float = 0.0


class Dispatch:
    """Tasks sent to a set of clients for one round, and the answers received so far."""

    def __init__(self, round_number: int, model: ModelPayload, task_ids: Mapping[str, int], done: Signal) -> None:
        self.round_number = round_number
        self.model = model
        self.task_ids = dict(task_ids)
        self.reports: dict[str, Report] = {}
        self.declined: dict[str, str] = {}  # client id -> why it will not answer (its run policy's refusal)
        self.delivered_at: dict[str, float] = {}
        self.bytes_down = 0
        self.closed = False
        self.started = time.perf_counter()
        self._in_flight: set[str] = set()
        self._done = done

    @property
    def complete(self) -> bool:
        return len(self.reports) + len(self.declined) == len(self.task_ids)

    def delivered(self, client_id: str, nbytes: int) -> None:
        self.delivered_at[client_id] = time.perf_counter()
        self.bytes_down += nbytes

    def admit(self, client_id: str, task_id: int, round_number: int, model_version: int) -> None:
        """Raise :class:`Rejected` unless an answer from ``client_id`` to this dispatch may start."""
        if self.closed:
            raise Rejected.stale(f"round {self.round_number} is closed (deadline passed); the answer came too late")
        if round_number != self.round_number:
            raise Rejected.stale(f"answer is for round {round_number}, but round {self.round_number} is open")
        if client_id not in self.task_ids:
            raise Rejected.stale(f"client {client_id!r} is not selected for round {self.round_number}")
        if task_id != self.task_ids[client_id]:
            raise Rejected.stale(f"answer is for task {task_id}, the client's open task is {self.task_ids[client_id]}")
        if model_version != self.model.version:
            raise Rejected.stale(f"answer was computed from model version {model_version}, "
                                 f"the round uses version {self.model.version}")
        if client_id in self.reports or client_id in self._in_flight:
            raise Rejected.stale(f"client {client_id!r} already answered round {self.round_number}")
        self._in_flight.add(client_id)

    def release(self, client_id: str) -> None:
        """An admitted answer failed before completing; the client may send it again."""
        self._in_flight.discard(client_id)

    def accept_report(self, client_id: str, report: Report) -> None:
        """Record an admitted answer that carries no payload (an evaluation)."""
        self._require_open(client_id)
        self._store(client_id, report)

    def decline(self, client_id: str, reason: str) -> None:
        """Record that an admitted client will not answer (its run policy refused the task): the round stops
        waiting for it."""
        self._require_open(client_id)
        self._in_flight.discard(client_id)
        self.declined[client_id] = reason
        if self.complete:
            self._done.fire()

    def _require_open(self, client_id: str) -> None:
        if self.closed:
            self.release(client_id)
            raise Rejected.stale(f"round {self.round_number} closed while the answer was arriving")

    def _store(self, client_id: str, report: Report) -> None:
        self._in_flight.discard(client_id)
        self.reports[client_id] = report
        if self.complete:
            self._done.fire()

    def close(self) -> None:
        self.closed = True


class TrainingRound(Dispatch):
    """One attempt at a training round: the selected clients' tasks and the running weighted sum."""

    def __init__(self, round_number: int, model: ModelPayload, task_ids: Mapping[str, int], done: Signal,
                 instructions: Mapping[str, Instruction], accumulator: UpdateAccumulator) -> None:
        super().__init__(round_number, model, task_ids, done)
        self.instructions = dict(instructions)
        self.accumulator = accumulator
        self.bytes_up = 0
        self._aggregate_s = 0.0

    def admit_update(self, client_id: str, declared_examples: int, header: UpdateAnnouncement) -> None:
        self.admit(client_id, header.task_id, header.round, header.model_version)
        try:
            if header.encoding != self.accumulator.encoding:
                got = header.encoding.name if header.encoding is not None else f"#{header.raw_encoding}"
                raise Rejected.invalid(f"update encoding {got} is not accepted this "
                                       f"round (expected {self.accumulator.encoding.name})")
            if header.n_examples != declared_examples:
                raise Rejected.invalid(f"update claims {header.n_examples} examples, the client declared "
                                       f"{declared_examples} at join")
            check_manifest(self.model.specs, header.manifest)
            if header.payload_bytes != self.accumulator.payload_bytes:
                raise Rejected.invalid(f"update announces {header.payload_bytes} payload bytes, this round's "
                                       f"updates take {self.accumulator.payload_bytes}")
        except BaseException:
            self.release(client_id)
            raise

    def add_update(self, client_id: str, payload: bytes | bytearray, report: Report, nbytes: int,
                   signature: bytes = b"") -> None:
        """Fold an admitted, fully received update (``nbytes`` on the wire) into the sum and record it."""
        self._require_open(client_id)
        started = time.perf_counter()
        try:
            self.accumulator.add(client_id, self.instructions[client_id].weight, payload, signature,
                                 report.n_examples)
        except BaseException:
            self.release(client_id)
            raise
        finally:
            self._aggregate_s += time.perf_counter() - started
        self.bytes_up += nbytes
        self._store(client_id, report)

    def with_metrics(self, summed: WeightedSum) -> WeightedSum:
        """``summed`` whose individual updates (if it keeps them) carry their clients' reported metrics."""
        updates = tuple(dataclasses.replace(update, metrics=self.reports[update.client_id].metrics)
                        for update in summed.updates)
        return dataclasses.replace(summed, updates=updates) if updates else summed

    def phase_times(self) -> dict[str, float]:
        """This attempt's phases up to the sum of its updates (see the module docstring)."""
        def slowest(field: str) -> float:
            return max((getattr(report, field) for report in self.reports.values()), default=0.0)

        return {
            "broadcast": max((at - self.started for at in self.delivered_at.values()), default=0.0),
            "train": slowest("train_s"),
            "encrypt": slowest("encrypt_s"),
            "upload": slowest("upload_s"),
            "aggregate": self._aggregate_s,
        }

    def local_metrics(self) -> dict[str, float]:
        """Clients' own training metrics, averaged with their aggregation weights."""
        totals: dict[str, float] = {}
        weights: dict[str, float] = {}
        for client_id in sorted(self.reports):  # a fixed order: float sums must not depend on arrival order
            report, weight = self.reports[client_id], self.instructions[client_id].weight
            for name, value in report.metrics.items():
                totals[name] = totals.get(name, 0.0) + weight * value
                weights[name] = weights.get(name, 0.0) + weight
        return {name: totals[name] / weights[name] for name in sorted(totals) if weights[name] > 0}
