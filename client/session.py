"""The conversation of a process's virtual clients with the coordinator: each joins, all of them take tasks
through one long poll, each answers its own (on the process's one answer stream), until SHUTDOWN.

Failures are sorted by what they mean:

- the coordinator is unreachable (not up yet, restarting, network trouble: UNAVAILABLE and friends):
  retry with capped exponential backoff and full jitter, so a restarted coordinator is not hit by
  every process at the same instant; give up after ``connect_timeout_s`` without contact;
- the coordinator no longer knows the clients (UNAUTHENTICATED: it restarted with a new run): they join again
  (presenting the same run tokens: a resumed run accepts the tokens it issued before the restart);
- the client was revoked (PERMISSION_DENIED): stop, with the coordinator's message;
- the coordinator refused one answer (late, wrong round, invalid): log it and take the next task;
- anything else is a bug or a misconfiguration and ends the process with its message.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from client.connection import (
    Answers,
    CallFailed,
    CoordinatorConnection,
    CoordinatorStub,
    JoinRefused,
    Unreachable,
    next_tasks,
)
from client.trainer import LocalTrainer
from fedgrad.data import Shard
from fedgrad.errors import FedgradError
from fedgrad.policy import PolicyRefused
from fedgrad.protocol import (
    EvaluateTask,
    EvaluationReport,
    Refusal,
    ShutdownTask,
    TaskConfig,
    TaskDecline,
    TensorSpec,
    TrainTask,
    UpdateAnnouncement,
    WaitTask,
)
from fedgrad.transport.codec import decode_tensors

log = logging.getLogger("fedgrad.client")

#: Refusals of one answer (late, wrong round, invalid, over a bound): the client logs them and takes the next task.
_REFUSED = {Refusal.INVALID, Refusal.STALE, Refusal.RESOURCE}


class ClientError(FedgradError):
    """A client cannot take part: refused at join, coordinator gone, or a task it cannot do."""


@dataclass(frozen=True)
class ClientOptions:
    wait_s: float = 20.0             # how long the coordinator may hold a GetTask call before WAIT
    rpc_timeout_s: float = 60.0      # deadline of every call (on top of wait_s for GetTask)
    connect_timeout_s: float = 120.0  # give up after this long without reaching the coordinator
    backoff_base_s: float = 0.05
    # Kept below the smallest sensible round timeout: a restarted coordinator waits that long (its join
    # grace) for the clients it had, so every live client is back before the first resumed round samples.
    backoff_max_s: float = 2.0


DEFAULT_CLIENT_OPTIONS = ClientOptions()  # the defaults; shared safely because ClientOptions is frozen


#: The jitter of every backoff of a process: one generator, not one per client (seeding one costs a system call).
_JITTER = random.Random()


class Backoff:
    """Capped exponential backoff with full jitter, and a deadline on a run of failed calls.

    The deadline counts from the first failure since the last successful call, not from that call: a client
    of a process hosting thousands waits its turn for the training thread (minutes under Paillier), and that
    time must not count as "without contact" when its upload then meets one transient failure.
    """

    def __init__(self, options: ClientOptions) -> None:
        self._options = options
        self._attempt = 0
        self._failing_since: float | None = None

    def succeeded(self) -> None:
        self._attempt = 0
        self._failing_since = None

    async def wait(self, reason: str) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > self._options.connect_timeout_s:
            raise ClientError(f"coordinator unreachable for over {self._options.connect_timeout_s:g} s ({reason})")
        ceiling = min(self._options.backoff_max_s, self._options.backoff_base_s * 2 ** self._attempt)
        self._attempt += 1
        await asyncio.sleep(_JITTER.uniform(0, ceiling))


class SharedModel(dict[str, np.ndarray]):
    """A global model as its clients receive it: read-only arrays, by name (a dict that weak references reach)."""


class SharedModels:
    """One copy of each global model the clients of a process hold at the same time.

    The coordinator sends a round's model to every client (its bytes are counted per client); the process
    keeps one decoded copy per distinct manifest and payload, which every client holding it shares
    read-only. Copies are held by the clients only (weak references here): a model no client holds any more
    is freed, so a process whose clients are idle between rounds holds no model.
    """

    def __init__(self) -> None:
        self._models: weakref.WeakValueDictionary[bytes, SharedModel] = weakref.WeakValueDictionary()

    def decode(self, specs: Sequence[TensorSpec], payload: bytes | bytearray | memoryview) -> SharedModel:
        """The model ``specs`` and ``payload`` describe: the copy another client holds if the bytes are the same."""
        described = repr([(spec.name, spec.shape, spec.dtype.value) for spec in specs]).encode()
        digest = hashlib.sha256(hashlib.sha256(described).digest())
        digest.update(payload)
        key = digest.digest()
        model = self._models.get(key)
        if model is None:
            model = SharedModel(decode_tensors(specs, payload))
            for array in model.values():
                array.flags.writeable = False  # views into a (writable) receive buffer: nobody may change them
            self._models[key] = model
        return model

    def __len__(self) -> int:
        return len(self._models)


class VirtualClient:
    """Client ``client_id`` between rounds: its shard, its credentials and the newest task it received, nothing
    else (no coroutine, call or model of its own); :class:`ClientHost` works for it while it has a task."""

    __slots__ = ("client_id", "shard", "connection", "last_task_id", "shut_down")

    def __init__(self, client_id: str, shard: Shard, connection: CoordinatorConnection) -> None:
        self.client_id = client_id
        self.shard = shard
        self.connection = connection
        self.last_task_id = 0
        self.shut_down = False

    def check_vocabulary(self, config: TaskConfig) -> None:
        """Refuse a task whose model cannot read this client's shard.

        A shard written from another scenario or corpus (a stale ``fedgrad data split``) has token ids
        the model has no weights for; say so instead of failing inside training.
        """
        vocab_size = config.vocab_size
        if self.shard.ids.size and int(self.shard.ids.max()) >= vocab_size:
            raise ClientError(f"client {self.client_id}: the shard has token ids up to {int(self.shard.ids.max())} "
                              f"but the coordinator's vocabulary has {vocab_size} words; was it split from "
                              "the same scenario (fedgrad data split)?")


class ClientHost:
    """The virtual clients of one process: ``run()`` joins them, asks for all their tasks in one long poll at a
    time, works on each task as it arrives (training on the process's one worker thread), and returns when every
    client has been told SHUTDOWN."""

    def __init__(self, stub: CoordinatorStub, clients: Sequence[VirtualClient], trainer: LocalTrainer,
                 executor: Executor, options: ClientOptions, models: SharedModels | None = None) -> None:
        """``models``: the process's one copy of each model its clients hold."""
        self._stub = stub
        self._answers = Answers(stub, options.rpc_timeout_s)
        self._clients = {client.client_id: client for client in clients}
        self._trainer = trainer
        self._executor = executor
        self._options = options
        self._models = models if models is not None else SharedModels()
        self._work: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._poller: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self._poller = asyncio.create_task(self._poll())
        try:
            # Returns once every client has been told SHUTDOWN: the run is over, so an answer still on its way is
            # moot (the coordinator may already be gone; retrying would hold the process for connect_timeout_s).
            await self._poller
        except asyncio.CancelledError:
            if self._failure is None:
                raise
        finally:
            for work in self._work:
                work.cancel()
            self._answers.close()
        if self._failure is not None:
            raise self._failure

    async def _poll(self) -> None:
        await self._join(self._clients.values())
        backoff = Backoff(self._options)
        while waiting := [client for client in self._clients.values() if not client.shut_down]:
            try:
                await self._take_tasks(waiting)
                backoff.succeeded()
            except CallFailed as error:
                if error.refusal == Refusal.REVOKED:  # the coordinator's message names the client
                    raise ClientError(error.details) from None
                if error.refusal != Refusal.UNAUTHENTICATED:
                    raise ClientError(f"task request refused: {error}") from None
                log.info("the coordinator does not know our clients (%s); joining again", error.details)
                await self._join(waiting)
            except Unreachable as error:
                await backoff.wait(str(error))

    async def _take_tasks(self, waiting: Sequence[VirtualClient]) -> None:
        """One long poll for the ``waiting`` clients: start the work of each task as it arrives."""
        polls = [(client.connection, client.last_task_id) for client in waiting]
        shared: tuple[bytearray, Sequence[TensorSpec], SharedModel] | None = None  # the call's last model
        async for client_id, task, payload in next_tasks(self._stub, polls, self._options.wait_s,
                                                         self._options.rpc_timeout_s):
            if isinstance(task, WaitTask):
                continue
            client = self._clients[client_id]
            client.last_task_id = task.task_id
            if isinstance(task, ShutdownTask):
                client.shut_down = True
                log.info("client %s: the run is over", client_id)
                continue
            assert isinstance(task, TrainTask | EvaluateTask)
            if shared is None or shared[0] is not payload or shared[1] != task.manifest:
                shared = payload, task.manifest, self._models.decode(task.manifest, payload)
            self._start(self._train(client, task, shared[2]) if isinstance(task, TrainTask)
                        else self._evaluate(client, task, shared[2]))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._expected(work))
        self._work.add(task)
        task.add_done_callback(self._finished)

    async def _expected(self, work: Coroutine[Any, Any, None]) -> None:
        with self._answers.expected():  # the process's answer call stays open for this client's answer
            await work

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
            if self._poller is not None:
                self._poller.cancel()

    async def _join(self, clients: Iterable[VirtualClient]) -> None:
        """(Re)join ``clients``; the newest task each received starts over (a new run numbers its own)."""
        await asyncio.gather(*(self._join_one(client) for client in clients))

    async def _join_one(self, client: VirtualClient) -> None:
        backoff = Backoff(self._options)
        while True:
            try:
                run_id = await client.connection.join(len(client.shard))
            except Unreachable as error:
                await backoff.wait(str(error))
                continue
            except CallFailed as error:
                raise ClientError(f"client {client.client_id}: join failed: {error}") from None
            except JoinRefused as refusal:
                raise ClientError(f"client {client.client_id}: join refused: {refusal}") from None
            client.last_task_id = 0
            log.info("client %s: joined run %s", client.client_id, run_id)
            return

    async def _answer(self, client: VirtualClient, call: Callable[[], Awaitable[str]]) -> None:
        """Send one answer; an answer the connection lost is sent again (the round waits for it otherwise)."""
        backoff = Backoff(self._options)
        while True:
            try:
                log.debug("client %s: %s", client.client_id, await call())
                return
            except Unreachable as error:
                log.warning("client %s: answer lost (%s: %s); sending it again", client.client_id, error.status,
                            error.details)
                await backoff.wait(str(error))
            except CallFailed as error:
                if error.refusal == Refusal.REVOKED:  # the coordinator's message names the client
                    raise ClientError(error.details) from None
                if error.refusal == Refusal.UNAUTHENTICATED:  # a restarted coordinator: the poll rejoins
                    log.info("client %s: coordinator does not know us (%s)", client.client_id, error.details)
                elif error.refusal in _REFUSED:
                    log.warning("client %s: answer refused: %s", client.client_id, error.details)
                else:
                    raise ClientError(f"client {client.client_id}: {error}") from None
                return

    async def _train(self, client: VirtualClient, task: TrainTask, model: SharedModel) -> None:
        connection = client.connection
        task = dataclasses.replace(task, run_id=connection.run_id, local_examples=len(client.shard))
        client.check_vocabulary(task.config)
        loop = asyncio.get_running_loop()
        try:
            update = await loop.run_in_executor(self._executor, self._trainer.train_update, client.client_id,
                                                client.shard, task, model)
        except PolicyRefused as refusal:  # the coordinator's task, not this client, is at fault: say so, next task
            log.warning("%s", refusal)
            decline = TaskDecline(task.task_id, task.round, task.model_version, str(refusal))
            await self._answer(client, lambda: self._answers.decline(connection, decline))
            return
        del model  # the upload may wait its turn: the model is not needed any more
        payload = update.encoded.payload
        header = UpdateAnnouncement(
            task_id=task.task_id, round=task.round, model_version=task.model_version, n_examples=len(client.shard),
            metrics=update.metrics, train_s=update.train_s, encrypt_s=update.encode_s,
            encoding=update.encoded.encoding, raw_encoding=int(update.encoded.encoding), manifest=task.manifest,
            payload_bytes=len(payload), signature=update.encoded.signature)
        await self._answer(client, lambda: self._answers.update(connection, header, payload))

    async def _evaluate(self, client: VirtualClient, task: EvaluateTask, model: SharedModel) -> None:
        client.check_vocabulary(task.config)
        loop = asyncio.get_running_loop()
        metrics = await loop.run_in_executor(self._executor, self._trainer.evaluate, client.shard, task.config,
                                             model)
        del model
        report = EvaluationReport(task.task_id, task.round, task.model_version, len(client.shard), metrics)
        await self._answer(client, lambda: self._answers.evaluation(client.connection, report))
