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
import hashlib
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import cast

import grpc
import numpy as np

from client.trainer import LocalTrainer
from fedgrad.data import Shard
from fedgrad.errors import FedgradError
from fedgrad.policy import PolicyRefused
from fedgrad.protocol import TaskConfig
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import PROTOCOL_VERSION
from fedgrad.transport.codec import PayloadBuffer, WireError, decode_tensors, payload_size, split_payload
from fedgrad.transport.convert import train_task_from_pb

log = logging.getLogger("fedgrad.client")

_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
_REFUSED = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _connection_broke(error: grpc.aio.AioRpcError) -> bool:
    """INTERNAL raised by gRPC's own core, not by the coordinator: the connection died mid-call (seen when the
    coordinator process is SIGKILLed while a call is in flight). As unreachable as UNAVAILABLE."""
    return error.code() == grpc.StatusCode.INTERNAL and (error.details() or "").startswith("Internal error from Core")


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

    def decode(self, specs: Sequence[pb.TensorSpec], payload: bytes | bytearray | memoryview) -> SharedModel:
        """The model ``specs`` and ``payload`` describe: the copy another client holds if the bytes are the same."""
        digest = hashlib.sha256()
        for spec in specs:
            digest.update(spec.SerializeToString(deterministic=True))
            digest.update(b"\0")
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

    def __init__(self, client_id: str, shard: Shard, stub: pb_grpc.CoordinatorStub, trainer: LocalTrainer,
                 executor: Executor, options: ClientOptions, token: str = "",
                 uploads: asyncio.Semaphore | None = None, models: SharedModels | None = None) -> None:
        """``uploads``: shared by the clients of one process, bounds how many of them upload at once; ``models``:
        the process's one copy of each model its clients hold."""
        self.client_id = client_id
        self.shard = shard
        self._token = token
        self._stub = stub
        self._trainer = trainer
        self._executor = executor
        self._options = options
        self._backoff = Backoff(options)
        self._uploads = uploads or asyncio.Semaphore(1)
        self._models = models if models is not None else SharedModels()

    async def run(self) -> None:
        credentials = await self._join()
        last_task_id = 0
        while True:
            try:
                header, model = await self._fetch_task(credentials, last_task_id)
                self._backoff.succeeded()
                if header.kind == pb.SHUTDOWN:
                    log.info("client %s: the run is over", self.client_id)
                    return
                if header.kind == pb.WAIT:
                    continue
                last_task_id = header.task_id
                if header.kind == pb.TRAIN:
                    assert model is not None  # _fetch_task decodes the model of every TRAIN and EVALUATE task
                    await self._train(credentials, header, model)
                elif header.kind == pb.EVALUATE:
                    assert model is not None
                    await self._evaluate(credentials, header, model)
                else:
                    raise ClientError(f"client {self.client_id}: unknown task kind {header.kind}")
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                    raise ClientError(f"client {self.client_id}: {error.details()}") from None
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    log.info("client %s: coordinator does not know us (%s); joining again", self.client_id,
                             error.details())
                    credentials, last_task_id = await self._join(), 0
                elif error.code() in _REFUSED:
                    log.warning("client %s: answer refused: %s", self.client_id, error.details())
                elif error.code() in _UNREACHABLE or _connection_broke(error):
                    await self._backoff.wait(error.details() or error.code().name)
                else:
                    raise ClientError(f"client {self.client_id}: {error.code().name}: {error.details()}") from None
            finally:
                model = None  # the next long poll may last a whole round: an idle client holds no model

    async def _join(self) -> pb.Credentials:
        request = pb.JoinRequest(client_id=self.client_id, token=self._token, n_examples=len(self.shard),
                                 protocol_version=PROTOCOL_VERSION)
        while True:
            try:
                reply = await self._stub.Join(request, timeout=self._options.rpc_timeout_s)
            except grpc.aio.AioRpcError as error:
                if error.code() not in _UNREACHABLE:
                    raise ClientError(f"client {self.client_id}: join failed: {error.code().name}: "
                                      f"{error.details()}") from None
                await self._backoff.wait(error.details() or error.code().name)
                continue
            if not reply.accepted:
                raise ClientError(f"client {self.client_id}: join refused: {reply.reason}")
            self._backoff.succeeded()
            log.info("client %s: joined run %s", self.client_id, reply.run_id)
            return pb.Credentials(run_id=reply.run_id, client_id=self.client_id, token=self._token)

    async def _fetch_task(self, credentials: pb.Credentials,
                          last_task_id: int) -> tuple[pb.TaskHeader, SharedModel | None]:
        """The next task's header and, for TRAIN/EVALUATE, the global model it carries."""
        options = self._options
        request = pb.TaskRequest(credentials=credentials, last_task_id=last_task_id, wait_s=options.wait_s)
        header, buffer = None, None
        async for message in self._stub.GetTask(request, timeout=options.wait_s + options.rpc_timeout_s):
            if header is None:
                if message.WhichOneof("part") != "header":
                    raise WireError("task stream does not start with a header")
                header = message.header
                if header.payload_bytes != payload_size(header.tensors):
                    raise WireError(f"task announces {header.payload_bytes} payload bytes for a manifest of "
                                    f"{payload_size(header.tensors)}")
                buffer = PayloadBuffer(header.payload_bytes)
            else:
                assert buffer is not None  # made with the header
                buffer.append(message.data)
        if header is None:
            raise WireError("empty task stream")
        assert buffer is not None
        if header.kind not in (pb.TRAIN, pb.EVALUATE):
            return header, None
        return header, self._models.decode(header.tensors, buffer.payload())

    async def _train(self, credentials: pb.Credentials, header: pb.TaskHeader, model: SharedModel) -> None:
        task = train_task_from_pb(header, credentials.run_id, len(self.shard))
        self._check_vocabulary(task.config)
        loop = asyncio.get_running_loop()
        try:
            update = await loop.run_in_executor(self._executor, self._trainer.train_update, self.client_id,
                                                self.shard, task, model)
        except PolicyRefused as refusal:  # the coordinator's task, not this client, is at fault: say so, next task
            log.warning("%s", refusal)
            decline = pb.TaskDecline(credentials=credentials, task_id=task.task_id, round=task.round,
                                     model_version=task.model_version, reason=str(refusal))
            await self._stub.DeclineTask(decline, timeout=self._options.rpc_timeout_s)
            return
        payload = update.encoded.payload
        update_header = pb.UpdateHeader(
            credentials=credentials, task_id=task.task_id, round=task.round, model_version=task.model_version,
            n_examples=len(self.shard), metrics=update.metrics, train_s=update.train_s, encrypt_s=update.encode_s,
            encoding=cast(pb.Encoding, int(update.encoded.encoding)),  # the wire enum has the same numbers
            tensors=header.tensors, payload_bytes=len(payload),
            signature=update.encoded.signature)

        async def stream() -> AsyncIterator[pb.UpdateChunk]:
            yield pb.UpdateChunk(header=update_header)
            for piece in split_payload(payload):
                yield pb.UpdateChunk(data=piece)

        while True:  # an upload the connection lost is sent again: the round waits for it otherwise
            try:
                async with self._uploads:
                    ack = await self._stub.SubmitUpdate(stream(), timeout=self._options.rpc_timeout_s)
                break
            except grpc.aio.AioRpcError as error:
                if error.code() not in _UNREACHABLE and not _connection_broke(error):
                    raise
                log.warning("client %s: upload lost (%s: %s); sending it again", self.client_id,
                            error.code().name, error.details())
                await self._backoff.wait(error.details() or error.code().name)
        self._backoff.succeeded()
        log.debug("client %s: %s", self.client_id, ack.detail)

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

    async def _evaluate(self, credentials: pb.Credentials, task: pb.TaskHeader, model: SharedModel) -> None:
        config = TaskConfig.from_json(task.config_json)
        self._check_vocabulary(config)
        loop = asyncio.get_running_loop()
        metrics = await loop.run_in_executor(self._executor, self._trainer.evaluate, self.shard, config, model)
        report = pb.EvaluationReport(credentials=credentials, task_id=task.task_id, round=task.round,
                                     model_version=task.model_version, n_examples=len(self.shard), metrics=metrics)
        ack = await self._stub.SubmitEvaluation(report, timeout=self._options.rpc_timeout_s)
        log.debug("client %s: %s", self.client_id, ack.detail)
