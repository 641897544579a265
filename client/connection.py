"""A client process's calls to the coordinator: the clients' gRPC edge, in records.

A virtual client joins and answers with its own :class:`CoordinatorConnection`; :func:`next_tasks` asks for the
tasks of all the clients of a process in one call.

Each call converts its records to protobuf and back (``fedgrad.transport.convert``) and turns gRPC's failures into
what they mean to a client: :class:`Unreachable` (the coordinator is not up, restarting, or the connection died
mid-call), or :class:`CallFailed` for an answer with an error status, carrying the
:class:`~fedgrad.protocol.Refusal` kind the status stands for. ``client.session`` decides what to do about each.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

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
    """Client ``client_id``'s calls, with the credentials of its last join; every call's deadline is
    ``rpc_timeout_s`` (on top of the long poll's wait for GetTask)."""

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

    async def submit_update(self, header: UpdateAnnouncement, payload: bytes) -> str:
        """Upload an update: its header, then its payload in chunks; the coordinator's acknowledgement."""
        message = update_announcement_to_pb(header, self._credentials)

        async def stream() -> AsyncIterator[pb.UpdateChunk]:
            yield pb.UpdateChunk(header=message)
            for piece in split_payload(payload):
                yield pb.UpdateChunk(data=piece)

        try:
            ack = await self._stub.SubmitUpdate(stream(), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from None
        return ack.detail

    async def submit_evaluation(self, report: EvaluationReport) -> str:
        try:
            ack = await self._stub.SubmitEvaluation(evaluation_report_to_pb(report, self._credentials),
                                                    timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from None
        return ack.detail

    async def decline(self, decline: TaskDecline) -> str:
        try:
            ack = await self._stub.DeclineTask(task_decline_to_pb(decline, self._credentials), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from None
        return ack.detail
