"""A client process's calls to the coordinator: the clients' gRPC edge, in records.

A virtual client joins and answers with its own :class:`CoordinatorConnection`; :func:`next_tasks` asks for the
tasks of all the clients of a process in one call.

Each call converts its records to protobuf and back (``fedgrad.transport.convert``) and turns gRPC's failures into
what they mean to a client: :class:`Unreachable` (the coordinator is not up, restarting, or the connection died
mid-call), or :class:`CallFailed` for an answer with an error status, carrying the
:class:`~fedgrad.protocol.Refusal` kind the status stands for. ``client.session`` decides what to do about each.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence

import grpc

from fedgrad.protocol import (
    EvaluateTask,
    EvaluationReport,
    Refusal,
    Task,
    TaskDecline,
    TrainTask,
    UpdateAnnouncement,
    WaitTask,
)
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import PROTOCOL_VERSION
from fedgrad.transport.codec import PayloadBuffer, WireError, payload_size, split_payload
from fedgrad.transport.convert import (
    evaluation_report_to_pb,
    task_decline_to_pb,
    task_from_pb,
    update_announcement_to_pb,
)
from fedgrad.transport.interceptors import REFUSALS

_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class Unreachable(Exception):
    """The call did not reach the coordinator, or the connection died while it was in flight."""

    def __init__(self, status: str, details: str) -> None:
        super().__init__(details or status)
        self.status = status
        self.details = details


class CallFailed(Exception):
    """The coordinator answered with an error status; ``refusal`` is the kind of refusal it stands for (None: a
    status no refusal maps to, a bug or a misconfiguration)."""

    def __init__(self, status: str, details: str, refusal: Refusal | None) -> None:
        super().__init__(f"{status}: {details}")
        self.status = status
        self.details = details
        self.refusal = refusal


class JoinRefused(Exception):
    """The coordinator turned the client away at join; the message is its reason."""


#: The coordinator's calls on one channel (the type, for code above this edge).
CoordinatorStub = pb_grpc.CoordinatorStub


def coordinator_stub(channel: grpc.aio.Channel) -> pb_grpc.CoordinatorStub:
    """The coordinator's calls on ``channel`` (one stub serves every client of a process)."""
    return pb_grpc.CoordinatorStub(channel)


def _failure(error: grpc.aio.AioRpcError) -> Unreachable | CallFailed:
    code, details = error.code(), error.details() or ""
    # INTERNAL raised by gRPC's own core, not by the coordinator: the connection died mid-call (seen when the
    # coordinator process is SIGKILLed while a call is in flight). As unreachable as UNAVAILABLE.
    if code in _UNREACHABLE or (code == grpc.StatusCode.INTERNAL and details.startswith("Internal error from Core")):
        return Unreachable(code.name, details)
    return CallFailed(code.name, details, REFUSALS.get(code))


async def next_tasks(stub: CoordinatorStub, polls: Sequence[tuple[CoordinatorConnection, int]],
                     wait_s: float, rpc_timeout_s: float) -> AsyncIterator[tuple[str, Task, bytearray]]:
    """The tasks of the clients of ``polls`` (each with the last task it received), asked for in one call that the
    coordinator may hold ``wait_s``: ``(client id, task, its payload)`` as each arrives, the payload empty for WAIT
    and SHUTDOWN and the same object as the previous task's when the coordinator says the model is the same;
    :class:`WireError` for a stream that does not parse or names a client not asked for."""
    asked = {connection.client_id for connection, _ in polls}
    request = pb.TaskRequest(wait_s=wait_s, clients=[
        pb.ClientPoll(credentials=connection.credentials, last_task_id=last_task_id)
        for connection, last_task_id in polls])
    carried = bytearray()  # the payload of the call's last task that carried its model
    client_id, task, buffer, size = "", None, None, 0
    try:
        async for message in stub.GetTask(request, timeout=wait_s + rpc_timeout_s):
            if message.WhichOneof("part") == "header":
                if task is not None:
                    raise WireError(f"task {task.task_id} ends before its payload")
                client_id, task = message.header.client_id, task_from_pb(message.header)
                if not isinstance(task, WaitTask) and client_id not in asked:
                    raise WireError(f"task {task.task_id} names client {client_id!r}, which did not ask for it")
                size = payload_size(task.manifest) if isinstance(task, TrainTask | EvaluateTask) else 0
                if not message.header.model_as_before:
                    buffer = PayloadBuffer(size)
                elif size and len(carried) == size:
                    buffer = None
                else:
                    raise WireError(f"task {task.task_id} reuses a model the call has not carried")
            elif task is None or buffer is None:
                raise WireError("task stream carries data outside a task's payload")
            else:
                buffer.append(message.data)
            if buffer is None or buffer.complete:
                if buffer is not None and size:
                    carried = buffer.payload()
                yield client_id, task, carried if size else bytearray()
                task = None
    except grpc.aio.AioRpcError as error:
        raise _failure(error) from None
    if task is not None:
        raise WireError(f"task {task.task_id} ends before its payload")


class CoordinatorConnection:
    """Client ``client_id``'s join, and the credentials of its last join that its task requests and answers carry;
    every call's deadline is ``rpc_timeout_s`` (on top of the long poll's wait for GetTask)."""

    __slots__ = ("_stub", "_client_id", "_token", "_timeout", "_credentials")

    def __init__(self, stub: pb_grpc.CoordinatorStub, client_id: str, token: str, rpc_timeout_s: float) -> None:
        self._stub = stub
        self._client_id = client_id
        self._token = token
        self._timeout = rpc_timeout_s
        self._credentials = pb.Credentials(client_id=client_id, token=token)

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def run_id(self) -> str:
        """The run of the last join ("" before it)."""
        return self._credentials.run_id

    @property
    def credentials(self) -> pb.Credentials:
        return self._credentials

    async def join(self, n_examples: int) -> str:
        """Join (again) with ``n_examples`` training examples; the run's id, :class:`JoinRefused` when turned away."""
        request = pb.JoinRequest(client_id=self._client_id, token=self._token, n_examples=n_examples,
                                 protocol_version=PROTOCOL_VERSION)
        try:
            reply = await self._stub.Join(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from None
        if not reply.accepted:
            raise JoinRefused(reply.reason)
        self._credentials = pb.Credentials(run_id=reply.run_id, client_id=self._client_id, token=self._token)
        return reply.run_id


class Answers:
    """The answers (updates, evaluations, declines) of all the clients of a process, on one Answer call at a time.

    Each answer is written as soon as it is ready and :meth:`send` returns when the coordinator has acknowledged
    it (or raises :class:`CallFailed` with the refusal, :class:`Unreachable` when the call broke first: the caller
    sends it again). A call stays open while answers are :meth:`expected` (clients still at work) and ends when
    none is, so a round's answers from one process travel in one call. The coordinator reads a call's updates one
    after the other: what it buffers for a process is one call's flow-control window, however many clients.
    """

    def __init__(self, stub: CoordinatorStub, rpc_timeout_s: float) -> None:
        self._stub = stub
        self._timeout = rpc_timeout_s
        self._queue: deque[tuple[list[pb.AnswerChunk], asyncio.Future[str]]] = deque()
        self._changed = asyncio.Event()
        self._expected = 0
        self._driver: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def expected(self) -> Iterator[None]:
        """Keep the call open while the block runs (a client at work, whose answer will follow)."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1
            self._changed.set()

    async def update(self, connection: CoordinatorConnection, header: UpdateAnnouncement, payload: bytes) -> str:
        """Send an update: its header, then its payload in chunks."""
        messages = [pb.AnswerChunk(update=update_announcement_to_pb(header, connection.credentials))]
        messages += [pb.AnswerChunk(data=piece) for piece in split_payload(payload)]
        return await self._send(messages)

    async def evaluation(self, connection: CoordinatorConnection, report: EvaluationReport) -> str:
        return await self._send([pb.AnswerChunk(evaluation=evaluation_report_to_pb(report, connection.credentials))])

    async def decline(self, connection: CoordinatorConnection, decline: TaskDecline) -> str:
        return await self._send([pb.AnswerChunk(decline=task_decline_to_pb(decline, connection.credentials))])

    def close(self) -> None:
        if self._driver is not None:
            self._driver.cancel()

    async def _send(self, messages: list[pb.AnswerChunk]) -> str:
        acknowledged: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.append((messages, acknowledged))
        self._changed.set()
        if self._driver is None or self._driver.done():
            self._driver = asyncio.create_task(self._drive())
        return await acknowledged

    async def _drive(self) -> None:
        while self._queue:
            await self._call()

    async def _call(self) -> None:
        """One Answer call: write the queued answers while more are expected, then read the last acknowledgements."""
        call = self._stub.Answer(timeout=self._timeout)
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self._timeout / 2  # then end the call between answers, well before its deadline
        unacknowledged: deque[tuple[pb.AnswerChunk, asyncio.Future[str]]] = deque()
        reader = asyncio.create_task(_read_acks(call, unacknowledged))
        try:
            while self._queue or self._expected:
                while self._queue:
                    messages, acknowledged = self._queue.popleft()
                    if acknowledged.done():  # its sender gave up (cancelled)
                        continue
                    unacknowledged.append((messages[0], acknowledged))
                    for message in messages:
                        await call.write(message)
                if self._expected and not reader.done() and loop.time() < renew_at:
                    self._changed.clear()
                    changed = asyncio.create_task(self._changed.wait())
                    await asyncio.wait({changed, reader}, timeout=renew_at - loop.time(),
                                       return_when=asyncio.FIRST_COMPLETED)
                    changed.cancel()
                if reader.done() or (not self._queue and loop.time() >= renew_at):
                    break
            if not reader.done():
                await call.done_writing()
            await reader
        except grpc.aio.AioRpcError as error:
            failure: Exception = _failure(error)
        except WireError as error:
            failure = error
        except asyncio.InvalidStateError:  # a write after the call ended (the coordinator died or aborted it)
            failure = await _ended(reader)
        except BaseException:
            reader.cancel()
            call.cancel()
            raise
        else:
            return
        finally:
            reader.cancel()
        for _, acknowledged in unacknowledged:
            if not acknowledged.done():
                acknowledged.set_exception(failure)


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


async def _ended(reader: asyncio.Task[None]) -> Exception:
    """Why an Answer call ended under its writer: the status its acknowledgements' reader met."""
    try:
        await reader
    except grpc.aio.AioRpcError as error:
        return _failure(error)
    except WireError as error:
        return error
    return Unreachable("CANCELLED", "the answer call ended before its answers were written")


async def _read_acks(call: grpc.aio.StreamStreamCall,
                     unacknowledged: deque[tuple[pb.AnswerChunk, asyncio.Future[str]]]) -> None:
    """Settle each answer's future with its acknowledgement, in order; :class:`WireError` for one that does not
    match the answer it should acknowledge."""
    async for ack in call:
        if not unacknowledged:
            raise WireError("acknowledgement of an answer that was not sent")
        first, acknowledged = unacknowledged.popleft()
        answer = getattr(first, first.WhichOneof("part") or "update")
        if (ack.client_id, ack.task_id) != (answer.credentials.client_id, answer.task_id):
            raise WireError(f"acknowledgement for client {ack.client_id!r} task {ack.task_id}, expected client "
                            f"{answer.credentials.client_id!r} task {answer.task_id}")
        if acknowledged.done():
            continue
        if ack.status == 0:
            acknowledged.set_result(ack.detail)
        else:
            code = _STATUS_BY_NUMBER.get(ack.status, grpc.StatusCode.UNKNOWN)
            acknowledged.set_exception(CallFailed(code.name, ack.detail, REFUSALS.get(code)))
    if unacknowledged:
        raise WireError(f"the Answer call ended with {len(unacknowledged)} answer(s) unacknowledged")
