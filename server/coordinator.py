"""The coordinator: admits clients, runs the rounds, folds in updates, moves the global model.

Everything runs on one asyncio event loop. gRPC handlers (``server.service``) call the coordinator's
``join`` / ``authenticate`` / ``next_task`` / update and evaluation methods; the round loop (``run``)
opens a dispatch, posts tasks into the selected clients' mailboxes, and waits on a signal that fires
when the last answer arrives, or until ``round_timeout_s``. With one thread touching the state, a
check and the bookkeeping that follows it cannot interleave with another handler.

A round: sample ``clients_per_round`` of the joined clients with the seeded RNG (or, with Poisson
sampling, each joined client with probability ``clients_per_round / clients``), let the strategy
configure them, send TRAIN tasks, accumulate updates as they arrive, close at the deadline (clients
that did not answer are dropped from the round), retry the round with a fresh sample if fewer than
``min_clients`` answered, then average (strategy.aggregate), step (strategy.apply), evaluate on the
test set and report the round record. After the last round every client evaluates the final model
on its own shard (EVALUATE), and all clients are told to SHUTDOWN.

All state a restarted coordinator would need lives in :class:`FederationState`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedgrad.errors import FedgradError
from fedgrad.metrics import ByteCounter, PhaseTimer
from fedgrad.modes.base import AccumulatorFactory
from fedgrad.protocol import (
    EvaluationReport,
    Rejected,
    RoundCohort,
    ShutdownTask,
    TaskConfig,
    TaskDecline,
    TaskKind,
    TrainTask,
    UpdateAnnouncement,
)
from fedgrad.results.schema import ClientEvaluation, RoundRecord, RunOutcome, Scores, Traffic, round_record
from fedgrad.training import client_seed
from fedgrad.transport.channel import PROTOCOL_VERSION
from server.mailbox import Signal, Waiter
from server.registry import ClientRecord, ClientRegistry, RunTokens
from server.rounds import Dispatch, Report, TrainingRound
from server.strategies import ClientInfo, StateDict, Strategy
from server.tasks import Delivery, ModelPayload, evaluate_task, train_task

if TYPE_CHECKING:  # scipy behind it: imported by a run that has canaries only
    from server.canaries import CanaryClients

log = logging.getLogger("fedgrad.server")
#: A declining client's reason is logged up to this length.
MAX_REASON_CHARS = 400

#: Attempts at one round before the run gives up for lack of clients.
MAX_ROUND_ATTEMPTS = 3
#: Longest a GetTask call is held before it answers WAIT (the client then asks again).
MAX_LONG_POLL_S = 30.0
#: How long the coordinator waits, by default, for joined clients to collect their SHUTDOWN; a client
#: that died never does, so this is also what a dead client costs at the end of a run.
SHUTDOWN_GRACE_S = 5.0


def _completed(dispatch: Dispatch) -> Callable[[], bool]:
    """The condition "``dispatch`` is complete", bound to this dispatch rather than to a loop variable."""
    return lambda: dispatch.complete


def sample_cohort(rng: np.random.Generator, candidates: int, size: int, poisson_rate: float | None) -> list[int]:
    """Indices (ascending) of a round's cohort among ``candidates``: ``size`` of them uniformly without
    replacement (all when fewer), or with ``poisson_rate`` each one independently with that probability."""
    if poisson_rate is not None:
        return [int(i) for i in np.flatnonzero(rng.random(candidates) < poisson_rate)]
    return sorted(int(i) for i in rng.choice(candidates, size=min(size, candidates), replace=False))


class RoundFailed(FedgradError):
    """A round could not gather ``min_clients`` updates in ``MAX_ROUND_ATTEMPTS`` attempts."""


@dataclass(frozen=True)
class RoundSettings:
    """The federation settings the round loop uses (from the scenario's ``[federation]``)."""

    rounds: int
    clients_per_round: int
    min_clients: int
    round_timeout_s: float
    join_grace_s: float
    #: Poisson sampling: the probability with which each client joins a round (None: fixed-size cohorts).
    poisson_rate: float | None = None


@dataclass
class FederationState:
    """Everything that evolves over a run and that a checkpoint must hold to resume it."""

    global_model: StateDict
    rng: np.random.Generator
    strategy: Strategy
    completed_rounds: int = 0
    model_version: int = 0
    initial_metrics: dict[str, float] | None = None  # the untrained model on the test set


class Coordinator:
    """One federated run. Construct it, serve it with ``server.service``, then ``await run()``."""

    def __init__(
        self,
        *,
        settings: RoundSettings,
        state: FederationState,
        client_ids: Sequence[str],
        new_accumulator: AccumulatorFactory,
        evaluate: Callable[[StateDict], dict[str, float]],
        task_config: TaskConfig,
        seed: int,
        on_round: Callable[[RoundRecord], None] = lambda record: None,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
        tokens: RunTokens | None = None,
        summary_entries: Callable[[], RunOutcome] = RunOutcome,
        close: Callable[[], None] = lambda: None,
        run_id: str | None = None,
        canaries: CanaryClients | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.run_id = run_id or uuid.uuid4().hex  # an operator's run policy fixes it
        self.registry = ClientRegistry(client_ids, tokens)
        self._new_accumulator = new_accumulator
        self._evaluate = evaluate
        self._task_config = task_config
        self._seed = seed
        self._on_round = on_round
        self._shutdown_grace_s = shutdown_grace_s
        self._summary_entries = summary_entries
        self._close_aggregation = close
        self._canaries = canaries
        self._dispatch: Dispatch | None = None
        self._dispatch_done = Signal()
        self._last_task_id = 0
        self._model_payload: ModelPayload | None = None
        self._shutdown: Delivery | None = None

    # ---- called by the gRPC handlers -------------------------------------------------------------

    def join(self, client_id: str, token: str, n_examples: int, protocol_version: int) -> str:
        """Admit a client; the run's id, or :class:`Rejected` saying why not (logged)."""
        try:
            if protocol_version != PROTOCOL_VERSION:
                raise Rejected.invalid(f"protocol version {protocol_version} is not supported "
                                       f"(coordinator speaks {PROTOCOL_VERSION}); upgrade fedgrad")
            record = self.registry.join(client_id, token, n_examples)
        except Rejected as rejected:
            log.warning("refused join of client %r: %s", client_id, rejected)
            raise
        if self._shutdown is not None:
            record.mailbox.post(self._shutdown)
        log.info("client %s joined with %d examples (%d of %d joined)", record.client_id, record.n_examples,
                 self.registry.joined, len(self.registry.expected_ids))
        return self.run_id

    def authenticate(self, run_id: str, client_id: str, token: str) -> ClientRecord:
        """The joined client ``client_id`` of run ``run_id``; :class:`Rejected` (UNAUTHENTICATED) otherwise."""
        return self.authenticate_all([(run_id, client_id, token)])[0]

    def authenticate_all(self, credentials: Sequence[tuple[str, str, str]]) -> list[ClientRecord]:
        """:meth:`authenticate` each (run id, client id, token) of one request; the first not valid raises."""
        for run_id, _, _ in credentials:
            if run_id != self.run_id:
                raise Rejected.unauthenticated(f"run {run_id!r} is not this coordinator's run; join again")
        return self.registry.authenticate_all((client_id, token) for _, client_id, token in credentials)

    async def next_tasks(self, polls: Sequence[tuple[ClientRecord, int]],
                         wait_s: float) -> list[tuple[ClientRecord, Delivery]]:
        """The newest task of each client of ``polls`` (client, last task id it received) that has a newer one, as
        soon as one of them has; none after ``wait_s``. One waiter serves all of them (one call per process)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait_s, 0.0), MAX_LONG_POLL_S)
        waiter = Waiter()
        for record, _ in polls:
            record.mailbox.listen(waiter)
        try:
            timed_out = False
            while True:
                ready = [(record, task) for record, last_task_id in polls
                         if (task := record.mailbox.newer_than(last_task_id)) is not None]
                if ready or timed_out:
                    return ready
                timed_out = not await waiter.wait(deadline - loop.time())
        finally:
            for record, _ in polls:
                record.mailbox.leave(waiter)

    def task_delivered(self, client: ClientRecord, task: Delivery, nbytes: int) -> None:
        """The whole of ``task`` went out to ``client`` (``nbytes`` serialized)."""
        if task.kind == TaskKind.SHUTDOWN:
            self.registry.mark_shut_down(client)
        elif self._dispatch is not None and self._dispatch.task_ids.get(client.client_id) == task.task_id:
            self._dispatch.delivered(client.client_id, nbytes)

    def admit_update(self, client: ClientRecord, header: UpdateAnnouncement) -> TrainingRound:
        """Check an update's header before its payload is read; the round to hand the payload to."""
        round_ = self._dispatch
        if not isinstance(round_, TrainingRound):
            raise Rejected.stale(f"no training round is open (update for round {header.round})")
        _checked_metrics(header.metrics)
        if not all(math.isfinite(seconds) and seconds >= 0 for seconds in (header.train_s, header.encrypt_s)):
            raise Rejected.invalid("train_s and encrypt_s must be finite, non-negative seconds")
        round_.admit_update(client.client_id, client.n_examples, header)
        return round_

    def add_update(self, round_: TrainingRound, client: ClientRecord, header: UpdateAnnouncement,
                   payload: bytes | bytearray, nbytes: int, upload_s: float) -> str:
        report = Report(header.n_examples, dict(header.metrics), header.train_s, header.encrypt_s, upload_s)
        round_.add_update(client.client_id, payload, report, nbytes, header.signature)
        return f"update accepted for round {round_.round_number} ({len(round_.reports)}/{len(round_.task_ids)})"

    def decline_task(self, client: ClientRecord, decline: TaskDecline) -> str:
        """A client's run policy refused its TRAIN task: log the client's one-line reason and stop waiting."""
        dispatch = self._dispatch
        if not isinstance(dispatch, TrainingRound):
            raise Rejected.stale("no training round is open")
        dispatch.admit(client.client_id, decline.task_id, decline.round, decline.model_version)
        dispatch.decline(client.client_id, decline.reason)
        line = " ".join(decline.reason.split())[:MAX_REASON_CHARS]
        log.warning("round %d: client %s declined its task: %s", decline.round, client.client_id, line)
        return f"task {decline.task_id} declined"

    def add_evaluation(self, client: ClientRecord, report: EvaluationReport) -> str:
        dispatch = self._dispatch
        if dispatch is None or isinstance(dispatch, TrainingRound):
            raise Rejected.stale("no evaluation is open")
        metrics = _checked_metrics(report.metrics, required=("accuracy", "loss"))
        if report.n_examples != client.n_examples:
            raise Rejected.invalid(f"evaluation claims {report.n_examples} examples, the client declared "
                                   f"{client.n_examples} at join")
        dispatch.admit(client.client_id, report.task_id, report.round, report.model_version)
        dispatch.accept_report(client.client_id, Report(report.n_examples, metrics))
        return f"evaluation accepted ({len(dispatch.reports)}/{len(dispatch.task_ids)})"

    # ---- the round loop ----------------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        """Run all rounds; returns what the summary holds beyond the round records."""
        try:
            await self._await_clients()
            if self.state.initial_metrics is None:
                self.state.initial_metrics = await asyncio.to_thread(self._evaluate, self.state.global_model)
            while self.state.completed_rounds < self.settings.rounds:
                self._on_round(await self._train_round(self.state.completed_rounds + 1))
            client_evaluation = await self._evaluate_on_clients()
        finally:
            await self._shut_down()
            self._close_aggregation()
        initial = self.state.initial_metrics
        return dataclasses.replace(self._summary_entries(), initial=Scores.of(initial) if initial else None,
                                   client_evaluation=client_evaluation)

    async def _await_clients(self) -> None:
        """Wait for ``min_clients`` trainable clients, then up to ``join_grace_s`` for the rest to join.

        Waiting for everyone (not just the minimum) makes round 1 sample from the full federation, so a
        run does not depend on which clients happened to connect first.
        """
        settings, registry = self.settings, self.registry
        log.info("waiting for clients: %d needed, %d expected", settings.min_clients, len(registry.expected_ids))
        await registry.changed.wait_for(lambda: registry.trainable_count >= settings.min_clients)
        everyone = await registry.changed.wait_for(
            lambda: registry.joined == len(registry.expected_ids), settings.join_grace_s)
        if not everyone:
            log.warning("starting with %d of %d clients", registry.joined, len(registry.expected_ids))

    async def _train_round(self, number: int) -> RoundRecord:
        settings, state = self.settings, self.state
        timer, moved = PhaseTimer(), ByteCounter()
        model = self._current_model()
        for attempt in range(1, MAX_ROUND_ATTEMPTS + 1):
            await self.registry.changed.wait_for(  # lost clients may come back; don't open a round doomed to fail
                lambda: len(self.registry.available()) >= settings.min_clients, settings.round_timeout_s)
            round_ = self._open_training_round(number, model, attempt)
            await self._dispatch_done.wait_for(_completed(round_), settings.round_timeout_s)
            self._close(round_)
            self.registry.missed_deadline(cid for cid in round_.task_ids
                                          if cid not in round_.reports and cid not in round_.declined)
            for phase, seconds in round_.phase_times().items():
                timer.add(phase, seconds)
            moved.down += round_.bytes_down
            moved.up += round_.bytes_up
            if len(round_.reports) >= settings.min_clients:
                break
            log.warning("round %d attempt %d: %d of %d clients answered before the deadline (min_clients=%d); "
                        "retrying", number, attempt, len(round_.reports), len(round_.task_ids), settings.min_clients)
        else:
            raise RoundFailed(f"round {number}: fewer than federation.min_clients={settings.min_clients} updates "
                              f"in {MAX_ROUND_ATTEMPTS} attempts; are enough clients running?")

        summed = await asyncio.to_thread(round_.accumulator.finalize, timer)  # decryption takes a while
        if summed is not None:  # None: the mode dropped this round's aggregate (the record says why)
            before = state.global_model
            with timer.phase("aggregate"):
                delta = state.strategy.aggregate(round_.with_metrics(summed))
                state.global_model = state.strategy.apply(state.global_model, delta)
            state.model_version += 1
            if self._canaries is not None:  # what an adversary who sees every round's model sees
                await asyncio.to_thread(self._canaries.released, before, state.global_model)
        state.completed_rounds = number
        with timer.phase("evaluate"):
            evaluation = await asyncio.to_thread(self._evaluate, state.global_model)
        selected, used = len(round_.task_ids), len(round_.reports)
        return round_record(
            number, evaluation, clients_selected=selected, clients_used=used, clients_dropped=selected - used,
            time_s=timer.as_dict(), moved=Traffic(down=moved.down, up=moved.up), attempts=attempt,
            model_version=state.model_version, local=round_.local_metrics(), report=round_.accumulator.round_report(),
            canaries=len(self._canaries.taking_part[number]) if self._canaries is not None else None,
        )

    def _open_training_round(self, number: int, model: ModelPayload, attempt: int) -> TrainingRound:
        candidates = self.registry.available()
        picked = sample_cohort(self.state.rng, len(candidates), self.settings.clients_per_round,
                               self.settings.poisson_rate)
        selected = [candidates[i] for i in picked]
        instructions = self.state.strategy.configure(
            number, [ClientInfo(record.client_id, record.n_examples) for record in selected])
        # the round's one task, which secure modes' clients sign: its settings (the strategy's options of the first
        # selected client: a client given others signs another digest) and the model
        settings = (self._task_config.for_client(0, instructions[selected[0].client_id].train_options)
                    .settings_digest() if selected else b"")
        accumulator = self._new_accumulator(
            model.specs, RoundCohort(number, {cid: instruction.weight for cid, instruction in instructions.items()},
                                     run_id=self.run_id, attempt=attempt, settings_digest=settings,
                                     model_digest=model.digest))
        if self._canaries is not None:  # extra contributors, encoded and summed as the real updates are
            weights = [instruction.weight for instruction in instructions.values()]
            canary_task = TrainTask(0, number, model.version, 1.0, self._task_config,
                                    tuple(model.specs), accumulator.announcement, self.run_id)
            self._canaries.contribute(number, canary_task, accumulator, sum(weights) / len(weights) if weights else 1.0)
        tasks = {}
        for record in selected:
            instruction = instructions[record.client_id]
            config = self._task_config.for_client(client_seed(self._seed, number, record.client_id),
                                                  instruction.train_options)
            tasks[record.client_id] = train_task(self._next_task_id(), number, model, config, instruction.weight,
                                                 accumulator.announcement)
        round_ = TrainingRound(number, model, {cid: task.task_id for cid, task in tasks.items()},
                               self._dispatch_done, instructions, accumulator)
        self._open(round_, tasks)
        return round_

    async def _evaluate_on_clients(self) -> ClientEvaluation:
        """Every trainable client scores the final model on its own shard; pooled by example count.

        The test-set accuracy says how good the global model is on average; this says how evenly that
        holds across clients, which matters under label skew. Clients are asked in waves of
        ``clients_per_round``, so that no more copies of the model are in flight at once than in a training
        round: the coordinator's memory is bounded by the round size, not by the size of the federation.
        """
        model = self._current_model()
        available = [record.client_id for record in self.registry.available()]
        answered: dict[str, Report] = {}
        for start in range(0, len(available), self.settings.clients_per_round):
            tasks = {cid: evaluate_task(self._next_task_id(), self.state.completed_rounds, model,
                                        self._task_config)
                     for cid in available[start:start + self.settings.clients_per_round]}
            dispatch = Dispatch(self.state.completed_rounds, model,
                                {cid: task.task_id for cid, task in tasks.items()}, self._dispatch_done)
            self._open(dispatch, tasks)
            await self._dispatch_done.wait_for(_completed(dispatch), self.settings.round_timeout_s)
            self._close(dispatch)
            self.registry.missed_deadline(cid for cid in dispatch.task_ids if cid not in dispatch.reports)
            answered.update(dispatch.reports)
        reports = [answered[cid] for cid in sorted(answered)]
        examples = sum(report.n_examples for report in reports)
        if not examples:
            return ClientEvaluation(clients=0)
        accuracies = [report.metrics["accuracy"] for report in reports]
        return ClientEvaluation(
            clients=len(reports),
            accuracy=sum(r.n_examples * r.metrics["accuracy"] for r in reports) / examples,
            loss=sum(r.n_examples * r.metrics["loss"] for r in reports) / examples,
            accuracy_min=min(accuracies),
            accuracy_max=max(accuracies),
        )

    async def _shut_down(self) -> None:
        """Tell every client the run is over and give them a moment to hear it."""
        self._shutdown = Delivery(ShutdownTask(self._next_task_id()))
        for record in self.registry.clients():
            record.mailbox.post(self._shutdown)
        await self.registry.changed.wait_for(self.registry.all_gone, self._shutdown_grace_s)

    # ---- helpers -----------------------------------------------------------------------------------

    def _current_model(self) -> ModelPayload:
        """The global model encoded once per version, shared by every task that sends it."""
        if self._model_payload is None or self._model_payload.version != self.state.model_version:
            self._model_payload = ModelPayload.encode(self.state.model_version, self.state.global_model)
        return self._model_payload

    def _next_task_id(self) -> int:
        self._last_task_id += 1
        return self._last_task_id

    def _open(self, dispatch: Dispatch, tasks: dict[str, Delivery]) -> None:
        self._dispatch = dispatch
        for client_id, task in tasks.items():
            self._record(client_id).mailbox.post(task)

    def _close(self, dispatch: Dispatch) -> None:
        """No more answers; tasks nobody fetched are withdrawn so a late client does not start them."""
        dispatch.close()
        self._dispatch = None
        for client_id, task_id in dispatch.task_ids.items():
            self._record(client_id).mailbox.withdraw(task_id)

    def _record(self, client_id: str) -> ClientRecord:
        """A client that was given a task: it joined, and the registry never forgets a joined client."""
        record = self.registry.get(client_id)
        assert record is not None, f"client {client_id!r} was given a task without having joined"
        return record


def _checked_metrics(metrics: Mapping[str, float], required: Sequence[str] = ()) -> dict[str, float]:
    """A client's reported metrics, refused when one is missing or not a finite number."""
    missing = [name for name in required if name not in metrics]
    if missing:
        raise Rejected.invalid(f"metrics lack {', '.join(missing)}")
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:
        raise Rejected.invalid(f"metric(s) {', '.join(bad)} are not finite")
    return dict(metrics)
