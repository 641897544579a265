"""One virtual client's conversation with the coordinator: join, take tasks, answer them, until SHUTDOWN.

Failures are sorted by what they mean:

- the coordinator is unreachable (not up yet, restarting, network trouble: UNAVAILABLE and friends):
  retry with capped exponential backoff and full jitter, so a restarted coordinator is not hit by
  every client at the same instant; give up after ``connect_timeout_s`` without contact;
- the coordinator no longer knows this client (UNAUTHENTICATED: it restarted with a new run): join again
  (presenting the same run token: a resumed run accepts the tokens it issued before the restart);
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
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from client.connection import CallFailed, CoordinatorConnection, JoinRefused, Unreachable
from client.trainer import LocalTrainer
from fedgrad.data import Shard
from fedgrad.errors import FedgradError
from fedgrad.policy import PolicyRefused
from fedgrad.protocol import (
    EvaluateTask,
    EvaluationReport,
    Refusal,
    ShutdownTask,
    Task,
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
        self._random = random.Random()

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
        await asyncio.sleep(self._random.uniform(0, ceiling))


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
    """Client ``client_id`` with its shard; ``run()`` returns when the coordinator says SHUTDOWN."""

    def __init__(self, client_id: str, shard: Shard, connection: CoordinatorConnection, trainer: LocalTrainer,
                 executor: Executor, options: ClientOptions, uploads: asyncio.Semaphore | None = None,
                 models: SharedModels | None = None) -> None:
        """``uploads``: shared by the clients of one process, bounds how many of them upload at once; ``models``:
        the process's one copy of each model its clients hold."""
        self.client_id = client_id
        self.shard = shard
        self._connection = connection
        self._trainer = trainer
        self._executor = executor
        self._options = options
        self._backoff = Backoff(options)
        self._uploads = uploads or asyncio.Semaphore(1)
        self._models = models if models is not None else SharedModels()

    async def run(self) -> None:
        await self._join()
        last_task_id = 0
        while True:
            try:
                task, model = await self._next_task(last_task_id)
                self._backoff.succeeded()
                if isinstance(task, ShutdownTask):
                    log.info("client %s: the run is over", self.client_id)
                    return
                if isinstance(task, WaitTask):
                    continue
                last_task_id = task.task_id
                assert model is not None  # _next_task decodes the model of every TRAIN and EVALUATE task
                if isinstance(task, TrainTask):
                    await self._train(task, model)
                else:
                    await self._evaluate(task, model)
            except CallFailed as error:
                if error.refusal == Refusal.REVOKED:
                    raise ClientError(f"client {self.client_id}: {error.details}") from None
                if error.refusal == Refusal.UNAUTHENTICATED:
                    log.info("client %s: coordinator does not know us (%s); joining again", self.client_id,
                             error.details)
                    await self._join()
                    last_task_id = 0
                elif error.refusal in _REFUSED:
                    log.warning("client %s: answer refused: %s", self.client_id, error.details)
                else:
                    raise ClientError(f"client {self.client_id}: {error}") from None
            except Unreachable as error:
                await self._backoff.wait(str(error))
            finally:
                model = None  # the next long poll may last a whole round: an idle client holds no model

    async def _join(self) -> None:
        while True:
            try:
                run_id = await self._connection.join(len(self.shard))
            except Unreachable as error:
                await self._backoff.wait(str(error))
                continue
            except CallFailed as error:
                raise ClientError(f"client {self.client_id}: join failed: {error}") from None
            except JoinRefused as refusal:
                raise ClientError(f"client {self.client_id}: join refused: {refusal}") from None
            self._backoff.succeeded()
            log.info("client %s: joined run %s", self.client_id, run_id)
            return

    async def _next_task(self, last_task_id: int) -> tuple[Task, SharedModel | None]:
        """The next task and, for TRAIN/EVALUATE, the global model it carries."""
        task, payload = await self._connection.next_task(last_task_id, self._options.wait_s)
        if isinstance(task, TrainTask | EvaluateTask):
            return task, self._models.decode(task.manifest, payload)
        return task, None

    async def _train(self, task: TrainTask, model: SharedModel) -> None:
        task = dataclasses.replace(task, run_id=self._connection.run_id, local_examples=len(self.shard))
        self._check_vocabulary(task.config)
        loop = asyncio.get_running_loop()
        try:
            update = await loop.run_in_executor(self._executor, self._trainer.train_update, self.client_id,
                                                self.shard, task, model)
        except PolicyRefused as refusal:  # the coordinator's task, not this client, is at fault: say so, next task
            log.warning("%s", refusal)
            await self._connection.decline(TaskDecline(task.task_id, task.round, task.model_version, str(refusal)))
            return
        payload = update.encoded.payload
        header = UpdateAnnouncement(
            task_id=task.task_id, round=task.round, model_version=task.model_version, n_examples=len(self.shard),
            metrics=update.metrics, train_s=update.train_s, encrypt_s=update.encode_s,
            encoding=update.encoded.encoding, raw_encoding=int(update.encoded.encoding), manifest=task.manifest,
            payload_bytes=len(payload), signature=update.encoded.signature)
        while True:  # an upload the connection lost is sent again: the round waits for it otherwise
            try:
                async with self._uploads:
                    detail = await self._connection.submit_update(header, payload)
                break
            except Unreachable as error:
                log.warning("client %s: upload lost (%s: %s); sending it again", self.client_id, error.status,
                            error.details)
                await self._backoff.wait(str(error))
        self._backoff.succeeded()
        log.debug("client %s: %s", self.client_id, detail)

    def _check_vocabulary(self, config: TaskConfig) -> None:
        """Refuse a task whose model cannot read this client's shard.

        A shard written from another scenario or corpus (a stale ``fedgrad data split``) has token ids
        the model has no weights for; say so instead of failing inside training.
        """
        vocab_size = config.vocab_size
        if self.shard.ids.size and int(self.shard.ids.max()) >= vocab_size:
            raise ClientError(f"client {self.client_id}: the shard has token ids up to {int(self.shard.ids.max())} "
                              f"but the coordinator's vocabulary has {vocab_size} words; was it split from "
                              "the same scenario (fedgrad data split)?")

    async def _evaluate(self, task: EvaluateTask, model: SharedModel) -> None:
        self._check_vocabulary(task.config)
        loop = asyncio.get_running_loop()
        metrics = await loop.run_in_executor(self._executor, self._trainer.evaluate, self.shard, task.config, model)
        detail = await self._connection.submit_evaluation(
            EvaluationReport(task.task_id, task.round, task.model_version, len(self.shard), metrics))
        log.debug("client %s: %s", self.client_id, detail)
