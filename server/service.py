"""The gRPC face of the coordinator: decode requests, call ``Coordinator``, turn refusals into status codes.

Handlers hold no state of their own; protobuf is converted to ``fedgrad.protocol`` records here. A refused
call ends with the gRPC status of its :class:`~fedgrad.protocol.Refusal` kind and its message, logged: at INFO
for stale or malformed answers (expected in a federation, not errors of the server), at WARNING for authentication
failures (someone is knocking who does not belong).

GetTask is one call per client process for all the clients it hosts; it tells the registry when each client's
long poll starts and ends, and whether it ended because the process went away before the client's task was
delivered: that is how a killed client process is noticed.

Memory. A round hands a model to every selected client at once and their updates arrive together. At most
:data:`MAX_TRANSFERS` model-carrying streams (task models out, update payloads in) are serialized or decoded
at a time; the others wait their turn, holding nothing but their request, so the coordinator's own copies of
models and payloads follow the model's size, not the clients per round. What gRPC buffers below that, updates
a client sent ahead of being read, is bounded by the calls (one Answer call's flow-control window per process,
whose updates are read one after the other);
``benchmarks/scale.py`` measures the whole process.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc

from fedgrad.errors import FedgradError
from fedgrad.protocol import Refusal, Rejected, WaitTask
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import PROTOCOL_VERSION, ServerSecurity, listen, new_server
from fedgrad.transport.codec import PayloadBuffer, WireError
from fedgrad.transport.convert import (
    TaskMessages,
    evaluation_report_from_pb,
    task_decline_from_pb,
    update_announcement_from_pb,
)
from fedgrad.transport.interceptors import STATUS_CODES, RefuseMalformedRequests
from server.coordinator import Coordinator
from server.registry import ClientRecord
from server.tasks import ModelPayload

log = logging.getLogger("fedgrad.server")

#: Model-carrying streams (a task's model out, an update's payload in) that move at once (see the docstring).
MAX_TRANSFERS = 64


class CoordinatorService(pb_grpc.CoordinatorServicer):
    def __init__(self, coordinator: Coordinator, max_transfers: int = MAX_TRANSFERS) -> None:
        self.coordinator = coordinator
        self._transfers = asyncio.Semaphore(max_transfers)
        self._messages = TaskMessages()

    async def Join(self, request: pb.JoinRequest, context: grpc.aio.ServicerContext) -> pb.JoinReply:
        try:
            run_id = self.coordinator.join(request.client_id, request.token, request.n_examples,
                                           request.protocol_version)
        except Rejected as rejected:
            return pb.JoinReply(accepted=False, reason=str(rejected), protocol_version=PROTOCOL_VERSION)
        return pb.JoinReply(accepted=True, run_id=run_id, protocol_version=PROTOCOL_VERSION)

    def _authenticate(self, credentials: pb.Credentials) -> ClientRecord:
        return self.coordinator.authenticate(credentials.run_id, credentials.client_id, credentials.token)

    def _authenticate_all(self, request: pb.TaskRequest) -> list[ClientRecord]:
        return self.coordinator.authenticate_all([(poll.credentials.run_id, poll.credentials.client_id,
                                                   poll.credentials.token) for poll in request.clients])

    async def GetTask(self, request: pb.TaskRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.TaskChunk]:
        polls = await self._polls(request, context)
        clients = [client for client, _ in polls]
        registry = self.coordinator.registry
        for client in clients:
            registry.poll_started(client)
        delivered: set[str] = set()
        ended = False
        try:
            tasks = await self.coordinator.next_tasks(polls, request.wait_s)
            try:  # the wait may have been long: a call naming a client revoked meanwhile gets no task
                self._authenticate_all(request)
            except Rejected as rejected:
                await _abort(context, rejected, _callers(request))
            if not tasks:
                for message in self._messages.stream(WaitTask(0)):
                    yield message
            sent_model: ModelPayload | None = None
            for client, task in tasks:
                model = task.model
                again = model is not None and model is sent_model
                nbytes = self._messages.payload_wire_bytes(model.pieces) if again and model is not None else 0
                async with self._transfers if model is not None and not again else contextlib.nullcontext():
                    for message in self._messages.stream(task.task, model.pieces if model is not None else (),
                                                         client_id=client.client_id, model_as_before=again):
                        nbytes += message.ByteSize()
                        yield message
                sent_model = model or sent_model
                delivered.add(client.client_id)
                self.coordinator.task_delivered(client, task, nbytes)
            ended = True
        finally:  # cancelled or closed early: the clients still waiting hung up (or died)
            for client in clients:
                registry.poll_ended(client, broken=not ended and client.client_id not in delivered)

    async def _polls(self, request: pb.TaskRequest,
                     context: grpc.aio.ServicerContext) -> list[tuple[ClientRecord, int]]:
        """The clients a task request asks for, with the last task each received. Every credential must be valid:
        a call presenting one that is not (forged, revoked, of another run) is refused as a whole, so no caller
        learns anything about the others, and a client process rejoins all of its clients."""
        try:
            clients = self._authenticate_all(request)
        except Rejected as rejected:
            await _abort(context, rejected, _callers(request))
        if not clients:
            await _abort(context, Rejected.invalid("a task request names at least one client"), "?")
        if len({client.client_id for client in clients}) < len(clients):
            await _abort(context, Rejected.invalid("a task request names each client at most once"), _callers(request))
        polls = [(client, poll.last_task_id) for client, poll in zip(clients, request.clients, strict=True)]
        return polls

    async def Answer(self, request_iterator: AsyncIterator[pb.AnswerChunk],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[pb.AnswerAck]:
        """Every answer of the call checked on its own and acknowledged in order as soon as it is complete. A
        refused answer (stale, invalid, over a bound) loses no other; credentials that do not authenticate end the
        call with their status, as data outside an update's announced payload does, before anything that follows
        is read (the answers before keep their acknowledgements): no caller without valid credentials makes the
        coordinator read a payload."""
        stream = _Messages(request_iterator)
        while (message := await stream.next()) is not None:
            part = message.WhichOneof("part")
            if part not in ("update", "evaluation", "decline"):
                await _abort(context, Rejected.invalid("data outside an update's announced payload: an update must "
                                                       "start with its header"), "?")
            answer = getattr(message, part)
            try:
                client = self._authenticate(answer.credentials)
            except Rejected as rejected:
                await _abort(context, rejected, answer.credentials.client_id)
            if part == "update":
                yield await self._update(client, message.update, stream)
            elif part == "evaluation":
                yield self._evaluation(client, message.evaluation)
            else:
                yield self._decline(client, message.decline)

    def _evaluation(self, client: ClientRecord, report: pb.EvaluationReport) -> pb.AnswerAck:
        try:
            detail = self.coordinator.add_evaluation(client, evaluation_report_from_pb(report))
        except Rejected as rejected:
            return _refused(report.credentials, report.task_id, rejected)
        return _accepted(report.credentials, report.task_id, detail)

    def _decline(self, client: ClientRecord, decline: pb.TaskDecline) -> pb.AnswerAck:
        try:
            detail = self.coordinator.decline_task(client, task_decline_from_pb(decline))
        except Rejected as rejected:
            return _refused(decline.credentials, decline.task_id, rejected)
        return _accepted(decline.credentials, decline.task_id, detail)

    async def _update(self, client: ClientRecord, header_pb: pb.UpdateHeader, stream: _Messages) -> pb.AnswerAck:
        """Receive the update of authenticated ``client`` that ``header_pb`` announces: its acknowledgement (a refused
        update's payload is read and dropped)."""
        started = time.perf_counter()
        credentials, task_id = header_pb.credentials, header_pb.task_id
        try:
            header = update_announcement_from_pb(header_pb)
            round_ = self.coordinator.admit_update(client, header)
        except (Rejected, WireError) as error:
            await _receive_payload(stream, header_pb.payload_bytes, keep=False)
            return _refused(credentials, task_id, _rejection(error))
        try:
            async with self._transfers:
                payload, nbytes = await _receive_payload(stream, header.payload_bytes)
                if isinstance(payload, WireError):
                    raise payload
                detail = self.coordinator.add_update(round_, client, header, payload, nbytes + header_pb.ByteSize(),
                                                     time.perf_counter() - started)
        except (Rejected, WireError) as error:
            round_.release(client.client_id)
            return _refused(credentials, task_id, _rejection(error))
        except BaseException:
            round_.release(client.client_id)
            raise
        return _accepted(credentials, task_id, detail)


class _Messages:
    """An Answer call's messages, one at a time, with one message of look-ahead to give back."""

    def __init__(self, messages: AsyncIterator[pb.AnswerChunk]) -> None:
        self._messages = aiter(messages)
        self._back: pb.AnswerChunk | None = None

    async def next(self) -> pb.AnswerChunk | None:
        """The next message; None when the call has no more."""
        message, self._back = self._back, None
        return message if message is not None else await anext(self._messages, None)

    def give_back(self, message: pb.AnswerChunk) -> None:
        self._back = message


async def _receive_payload(stream: _Messages, expected_bytes: int,
                           keep: bool = True) -> tuple[bytearray | WireError, int]:
    """The ``data`` messages of an update's payload, up to the ``expected_bytes`` its header announced (fewer
    when another answer or the call's end comes first): the payload, else the :class:`WireError` saying how it is
    not the announced one (a chunk that overflows it is read and dropped), and its size on the wire. Without
    ``keep`` (a refused update), the data is counted and dropped."""
    buffer, received, nbytes = PayloadBuffer(expected_bytes if keep else 0), 0, 0
    error: WireError | None = None
    while received < expected_bytes:
        message = await stream.next()
        if message is None:
            break
        if message.WhichOneof("part") != "data":
            stream.give_back(message)
            break
        received += len(message.data)
        nbytes += message.ByteSize()
        if keep and error is None:
            try:
                buffer.append(message.data)
            except WireError as overflow:
                error = overflow
    if error is None:
        try:
            return buffer.payload(), nbytes
        except WireError as short:
            error = short
    return error, nbytes


def _rejection(error: Rejected | WireError) -> Rejected:
    return error if isinstance(error, Rejected) else Rejected.invalid(str(error))


def _accepted(credentials: pb.Credentials, task_id: int, detail: str) -> pb.AnswerAck:
    return pb.AnswerAck(client_id=credentials.client_id, task_id=task_id, detail=detail)


def _refused(credentials: pb.Credentials, task_id: int, rejected: Rejected) -> pb.AnswerAck:
    code = _log_refusal(rejected, credentials.client_id, "an answer")
    return pb.AnswerAck(client_id=credentials.client_id, task_id=task_id, status=code.value[0], detail=str(rejected))


_AUTHENTICATION = {Refusal.UNAUTHENTICATED, Refusal.REVOKED}


def _callers(request: pb.TaskRequest) -> str:
    """The clients a task request names, for the log: the first and how many others."""
    ids = [poll.credentials.client_id for poll in request.clients]
    return ids[0] + (f" and {len(ids) - 1} others" if len(ids) > 1 else "") if ids else "?"


def _log_refusal(rejected: Rejected, client_id: str, what: str) -> grpc.StatusCode:
    code = STATUS_CODES[rejected.kind]
    level = logging.WARNING if rejected.kind in _AUTHENTICATION else logging.INFO
    log.log(level, "refused %s from client %r (%s): %s", what, client_id, code.name, rejected)
    return code


async def _abort(context: grpc.aio.ServicerContext, rejected: Rejected, client_id: str) -> None:
    await context.abort(_log_refusal(rejected, client_id, "a call"), str(rejected))


async def start_server(coordinator: Coordinator, host: str, port: int,
                       security: ServerSecurity | None = None) -> tuple[grpc.aio.Server, int]:
    """Serve ``coordinator`` on ``host:port`` (port 0 picks a free one), over TLS with ``security``;
    returns the server and its port."""
    server = new_server([RefuseMalformedRequests()])
    pb_grpc.add_CoordinatorServicer_to_server(CoordinatorService(coordinator), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = listen(server, address, security)
    if not bound:
        raise FedgradError(f"cannot listen on {address} (address in use, or not an address of this machine)")
    await server.start()
    return server, bound
