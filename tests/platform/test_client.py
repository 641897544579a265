"""The client pool against a real coordinator: late start, coordinator restart, clean exit on SHUTDOWN."""
import asyncio
import dataclasses
import socket
import weakref
from typing import cast

import grpc
import numpy as np
import pytest

from client.connection import Answers, CoordinatorConnection, CoordinatorStub, Unreachable, next_tasks
from client.pool import run_clients
from client.session import ClientError, ClientOptions, SharedModels
from client.trainer import LocalTrainer
from fedgrad.data import Shard
from fedgrad.models import model_from_config
from fedgrad.modes.plain import PlainAccumulator
from fedgrad.protocol import EvaluationReport, TaskConfig, TrainSettings, TrainTask
from fedgrad.scenario import ModelConfig
from fedgrad.training import evaluate
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import WireError, encode_tensors
from fedgrad.transport.convert import task_to_pb
from server.coordinator import Coordinator, FederationState, RoundSettings
from server.service import start_server
from server.strategies import FedAvg

VOCAB = 30
FAST_RETRY = ClientOptions(wait_s=2.0, rpc_timeout_s=10.0, connect_timeout_s=20.0, backoff_max_s=0.2)


def toy_shard(seed: int, n: int = 24) -> Shard:
    """Spam uses word ids 1-14, ham 15-29: linearly separable bags of 6 words."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.float32)
    ids = np.array([rng.choice(np.arange(1, 15) if y else np.arange(15, VOCAB), 6, replace=False) for y in labels])
    return Shard(ids.astype(np.int32), labels)


def coordinator(rounds: int, test: Shard, round_logged: asyncio.Event | None = None) -> tuple[Coordinator, list]:
    """A coordinator of the two toy clients; its records, and ``round_logged`` set as each is logged."""
    config = ModelConfig(name="logreg")
    model = model_from_config(config, VOCAB, seed=0)

    def evaluate_on_test(state):
        model.load_state_dict(state)
        return evaluate(model, test)

    records = []

    def log_round(record):
        records.append(record)
        if round_logged is not None:
            round_logged.set()

    return Coordinator(
        settings=RoundSettings(rounds=rounds, clients_per_round=2, min_clients=2, round_timeout_s=20.0,
                               join_grace_s=5.0),
        state=FederationState(global_model=model.state_dict(), rng=np.random.default_rng(0), strategy=FedAvg()),
        client_ids=["0", "1"], new_accumulator=PlainAccumulator, evaluate=evaluate_on_test,
        task_config=TaskConfig(config, VOCAB, TrainSettings(epochs=2, batch_size=8, lr=0.5, optimizer="sgd")),
        seed=0, on_round=log_round, shutdown_grace_s=2.0), records


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SHARDS = {"0": toy_shard(1), "1": toy_shard(2)}


def test_clients_wait_for_a_late_coordinator_train_and_exit_on_shutdown():
    async def scenario():
        port = free_port()
        clients = asyncio.create_task(run_clients(f"127.0.0.1:{port}", SHARDS, options=FAST_RETRY))
        await asyncio.sleep(0.5)  # clients are retrying by now
        assert not clients.done()
        coord, records = coordinator(rounds=3, test=toy_shard(3))
        server, _ = await start_server(coord, "127.0.0.1", port)
        try:
            summary = await asyncio.wait_for(coord.run(), 30)
            await asyncio.wait_for(clients, 10)  # returns (exit 0) after SHUTDOWN
        finally:
            await server.stop(None)
        assert [r.clients_used for r in records] == [2, 2, 2]
        assert summary.initial is not None and summary.initial.accuracy is not None
        assert records[-1].accuracy == 1.0 and summary.initial.accuracy < 1.0
        assert records[-1].loss is not None and records[0].loss is not None and records[-1].loss < records[0].loss
        assert summary.client_evaluation is not None and summary.client_evaluation.clients == 2

    asyncio.run(scenario())


def test_the_clients_of_a_process_share_one_read_only_model_and_hold_none_between_rounds(monkeypatch):
    """Each client receives the round's model (its bytes, counted per client); the process never holds two copies
    of it at once (every client of the round that holds it holds the same read-only object), and none once the
    round is over."""
    seen: list[tuple[int, str, weakref.ref]] = []  # (round, client, the model it trained from)
    dead_before: dict[int, bool] = {}  # round -> every earlier round's model was freed when it started
    one_copy: list[bool] = []  # at each training: every live model of its round is the one it trains from
    train_update = LocalTrainer.train_update

    def recording(trainer, client_id, shard, task, global_model):
        if task.round not in dead_before:
            dead_before[task.round] = all(model() is None for round_, _, model in seen if round_ < task.round)
        one_copy.append(all(model() is None or model() is global_model for round_, _, model in seen
                            if round_ == task.round))
        assert all(not array.flags.writeable for array in global_model.values())
        seen.append((task.round, client_id, weakref.ref(global_model)))
        return train_update(trainer, client_id, shard, task, global_model)

    monkeypatch.setattr(LocalTrainer, "train_update", recording)

    async def scenario():
        port = free_port()
        coord, records = coordinator(rounds=2, test=toy_shard(3))
        server, _ = await start_server(coord, "127.0.0.1", port)
        try:
            clients = asyncio.create_task(run_clients(f"127.0.0.1:{port}", SHARDS, options=FAST_RETRY))
            await asyncio.wait_for(coord.run(), 30)
            await asyncio.wait_for(clients, 10)
        finally:
            await server.stop(None)
        assert [r.clients_used for r in records] == [2, 2]
        assert all(r.moved.down > 0 for r in records)

    asyncio.run(scenario())
    assert sorted((round_, client) for round_, client, _ in seen) == [(1, "0"), (1, "1"), (2, "0"), (2, "1")]
    assert dead_before == {1: True, 2: True} and one_copy == [True] * 4


def test_shared_models_keep_one_copy_per_distinct_model_while_it_is_held():
    specs, payload = encode_tensors({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    models = SharedModels()
    first = models.decode(specs, bytearray(payload))
    assert models.decode(specs, bytes(payload)) is first and len(models) == 1
    assert not first["w"].flags.writeable and np.array_equal(first["w"], np.arange(6).reshape(2, 3))
    other_specs, other_payload = encode_tensors({"w": np.ones((2, 3), dtype=np.float32)})
    other = models.decode(other_specs, other_payload)
    assert other is not first and len(models) == 2
    renamed, same_bytes = encode_tensors({"v": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert same_bytes == payload and models.decode(renamed, same_bytes) is not first  # the manifest counts
    del first, other
    assert len(models) == 0  # nobody holds them any more


def test_clients_rejoin_a_restarted_coordinator():
    async def scenario():
        first_round = asyncio.Event()
        first, first_records = coordinator(rounds=10**6, test=toy_shard(3), round_logged=first_round)
        server, port = await start_server(first, "127.0.0.1", 0)
        first_run = asyncio.create_task(first.run())
        clients = asyncio.create_task(run_clients(f"127.0.0.1:{port}", SHARDS, options=FAST_RETRY))
        await asyncio.wait_for(first_round.wait(), 60)  # the event: a round of the first run completed
        await server.stop(None)  # the coordinator dies mid-run
        first_run.cancel()
        # No pause to "let the clients notice": whatever they were doing (polling, training, submitting), each
        # gets UNAVAILABLE now or UNAUTHENTICATED from the new run, and both must lead it back in.

        second, records = coordinator(rounds=2, test=toy_shard(3))
        server, _ = await start_server(second, "127.0.0.1", port)
        try:
            await asyncio.wait_for(second.run(), 60)
            await asyncio.wait_for(clients, 30)
        finally:
            await server.stop(None)
            first_run.cancel()
            await asyncio.gather(first_run, return_exceptions=True)
        assert first_records and second.run_id != first.run_id
        assert [r.clients_used for r in records] == [2, 2]

    asyncio.run(scenario())


def test_client_gives_up_on_refused_join():
    async def scenario():
        coord, _ = coordinator(rounds=1, test=toy_shard(3))
        server, port = await start_server(coord, "127.0.0.1", 0)
        try:
            with pytest.raises(ClientError, match="client 5: join refused: unknown client id '5'"):
                await run_clients(f"127.0.0.1:{port}", {"5": toy_shard(1)}, options=FAST_RETRY)
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_client_gives_up_when_the_coordinator_never_comes():
    async def scenario():
        options = dataclasses.replace(FAST_RETRY, connect_timeout_s=0.5)
        with pytest.raises(ClientError, match=r"coordinator unreachable for over 0.5 s"):
            await run_clients(f"127.0.0.1:{free_port()}", {"0": toy_shard(1)}, options=options)

    asyncio.run(scenario())


def test_backoff_counts_the_deadline_from_the_first_failure_not_from_the_last_success(monkeypatch):
    """Time a client spends working (waiting for its process's training thread) after its last successful call
    is not time without contact: one failure after 100 s of work is retried, 0.5 s of failures ends it."""
    from client import session

    clock = [1000.0]
    monkeypatch.setattr(session.time, "monotonic", lambda: clock[0])
    backoff = session.Backoff(ClientOptions(connect_timeout_s=0.5, backoff_base_s=0.0, backoff_max_s=0.0))

    async def scenario():
        backoff.succeeded()
        clock[0] += 100.0  # trained and encrypted for 100 s, then the upload fails once
        await backoff.wait("CANCELLED")
        clock[0] += 0.4
        await backoff.wait("CANCELLED")  # still within 0.5 s of the first failure
        clock[0] += 0.2
        with pytest.raises(ClientError, match=r"unreachable for over 0.5 s \(CANCELLED\)"):
            await backoff.wait("CANCELLED")
        backoff.succeeded()  # a success starts a new run of failures
        clock[0] += 100.0
        await backoff.wait("UNAVAILABLE")

    asyncio.run(scenario())


class ScriptedStub:
    """A coordinator that answers every task request with the messages it is given (a hostile one, say)."""

    def __init__(self, messages) -> None:
        self.messages = messages

    def GetTask(self, request, timeout):
        async def stream():
            for message in self.messages:
                yield message
        return stream()


def test_a_task_call_s_answer_is_refused_when_it_names_a_client_that_did_not_ask_or_reuses_no_model():
    specs, payload = encode_tensors({"w": np.arange(6, dtype=np.float32)})
    config = TaskConfig(ModelConfig(), VOCAB, TrainSettings(epochs=1, batch_size=4, lr=0.1, optimizer="sgd"))

    def header(task_id, client_id, model_as_before=False):
        message = task_to_pb(TrainTask(task_id, 1, 0, 1.0, config, tuple(specs), None))
        message.client_id, message.model_as_before = client_id, model_as_before
        return pb.TaskChunk(header=message)

    async def answers(messages):
        stub = cast(CoordinatorStub, ScriptedStub(messages))
        polls = [(CoordinatorConnection(stub, cid, "", 5.0), 0) for cid in ("0", "1")]
        return [(cid, task.task_id, bytes(model)) async for cid, task, model in next_tasks(stub, polls, 1.0, 5.0)]

    async def scenario():
        data = pb.TaskChunk(data=payload)
        assert await answers([header(1, "0"), data, header(2, "1", model_as_before=True)]) == [
            ("0", 1, payload), ("1", 2, payload)]
        for messages, fragment in (([header(1, "7"), data], "names client '7', which did not ask"),
                                   ([header(1, "0", model_as_before=True)], "reuses a model the call has not"),
                                   ([header(1, "0"), header(2, "1")], "task 1 ends before its payload"),
                                   ([header(1, "0")], "task 1 ends before its payload"),
                                   ([data], "data outside a task's payload"),
                                   ([header(1, "0"), data, data], "data outside a task's payload")):
            with pytest.raises(WireError, match=fragment):
                await answers(messages)

    asyncio.run(scenario())


class EndedAnswerCall:
    """An Answer call the coordinator ended (it died) before the client's answer was written."""

    async def write(self, message) -> None:
        raise asyncio.InvalidStateError("RPC already finished.")

    async def done_writing(self) -> None:
        raise asyncio.InvalidStateError("RPC already finished.")

    def cancel(self) -> None:
        pass

    async def __aiter__(self):
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   details="the coordinator is gone")
        yield


def test_an_answer_written_to_a_call_that_already_ended_is_lost_not_a_crash():
    """The process sends the answer again (Unreachable), instead of dying of grpc's InvalidStateError."""
    class Stub:
        def Answer(self, timeout):
            return EndedAnswerCall()

    async def scenario():
        stub = cast(CoordinatorStub, Stub())
        answers = Answers(stub, 5.0)
        report = EvaluationReport(1, 1, 0, 1, {"accuracy": 1.0, "loss": 0.0})
        with pytest.raises(Unreachable, match="the coordinator is gone"):
            await answers.evaluation(CoordinatorConnection(stub, "0", "", 5.0), report)

    asyncio.run(scenario())
