"""The coordinator over real gRPC on localhost, driven by a hand-written client that can misbehave.

No data or training here: the model is a hand-made state dict and "evaluation" reads the weights, so
each test checks exactly what the coordinator accepted, refused and computed.
"""
import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import grpc
import numpy as np
import pytest

from fedgrad.modes.plain import PlainAccumulator
from fedgrad.protocol import TaskConfig, TrainSettings
from fedgrad.results.schema import ClientEvaluation
from fedgrad.scenario import ModelConfig
from fedgrad.security import TokenIssuer
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import PROTOCOL_VERSION, open_channel
from fedgrad.transport.codec import PayloadBuffer, decode_tensors, encode_tensors, split_payload
from fedgrad.transport.convert import manifest_from_pb, manifest_to_pb
from server.coordinator import Coordinator, FederationState, RoundFailed, RoundSettings
from server.registry import RunTokens
from server.service import start_server
from server.strategies import FedAvg

SMALL_MODEL = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(1, np.float32)}


def weight_sums(model):
    """Stand-in for test-set evaluation: the metrics are functions of the weights."""
    total = float(sum(value.sum() for value in model.values()))
    return {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "loss": total}


@dataclass
class Federation:
    coordinator: Coordinator
    stub: pb_grpc.CoordinatorStub
    run: asyncio.Task
    records: list
    round_logged: asyncio.Event  # set when a round's record is logged (the round closed and was aggregated)
    address: str


@asynccontextmanager
async def serving(model, *, clients=("0", "1"), per_round=1, min_clients=1, rounds=1, timeout_s=10.0, tokens=None):
    records, round_logged = [], asyncio.Event()

    def log_round(record):
        records.append(record)
        round_logged.set()

    coordinator = Coordinator(
        settings=RoundSettings(rounds=rounds, clients_per_round=per_round, min_clients=min_clients,
                               round_timeout_s=timeout_s, join_grace_s=5.0),
        state=FederationState(global_model=dict(model), rng=np.random.default_rng(0), strategy=FedAvg()),
        client_ids=clients, new_accumulator=PlainAccumulator, evaluate=weight_sums,
        task_config=TaskConfig(ModelConfig(), 1, TrainSettings(epochs=1, batch_size=1, lr=0.1, optimizer="sgd")),
        seed=0, on_round=log_round, shutdown_grace_s=0.2, tokens=tokens)
    server, port = await start_server(coordinator, "127.0.0.1", 0)
    channel = open_channel(f"127.0.0.1:{port}")
    run = asyncio.create_task(coordinator.run())
    try:
        yield Federation(coordinator, pb_grpc.CoordinatorStub(channel), run, records, round_logged,
                         f"127.0.0.1:{port}")
    finally:
        run.cancel()
        await channel.close()
        await server.stop(None)


async def join(stub, client_id, n_examples=10, **overrides):
    request = dict(client_id=client_id, token=f"t{client_id}", n_examples=n_examples,
                   protocol_version=PROTOCOL_VERSION) | overrides
    return await stub.Join(pb.JoinRequest(**request), timeout=5)


async def credentials(stub, client_id, n_examples=10, token=None):
    token = f"t{client_id}" if token is None else token
    reply = await join(stub, client_id, n_examples, token=token)
    assert reply.accepted, reply.reason
    return pb.Credentials(run_id=reply.run_id, client_id=client_id, token=token)


async def host_tasks(stub, creds_by_id, last_task_ids=None, wait_s=5.0):
    """One GetTask call for several clients: its messages, in order."""
    request = pb.TaskRequest(wait_s=wait_s, clients=[
        pb.ClientPoll(credentials=creds, last_task_id=(last_task_ids or {}).get(cid, 0))
        for cid, creds in creds_by_id.items()])
    return [message async for message in stub.GetTask(request, timeout=wait_s + 10)]


async def get_task(stub, creds, last_task_id=0, wait_s=5.0):
    header, buffer = None, None
    request = pb.TaskRequest(clients=[pb.ClientPoll(credentials=creds, last_task_id=last_task_id)], wait_s=wait_s)
    async for message in stub.GetTask(request, timeout=wait_s + 10):
        if header is None:
            header, buffer = message.header, PayloadBuffer(message.header.payload_bytes)
        else:
            buffer.append(message.data)
    model = decode_tensors(manifest_from_pb(header.tensors), buffer.payload()) if header.payload_bytes else None
    return header, model


async def submit(stub, creds, task, delta, *, payload=None, messages=None, **header_fields):
    """Send ``delta`` as the answer to ``task``; keyword arguments override header fields."""
    specs, encoded = encode_tensors(delta)
    payload = encoded if payload is None else payload
    fields = dict(credentials=creds, task_id=task.task_id, round=task.round, model_version=task.model_version,
                  n_examples=10, encoding=pb.PLAIN, tensors=manifest_to_pb(specs), payload_bytes=len(encoded),
                  metrics={"loss": 0.5}, train_s=0.01) | header_fields
    if messages is None:
        messages = [pb.AnswerChunk(update=pb.UpdateHeader(**fields))]
        messages += [pb.AnswerChunk(data=piece) for piece in split_payload(payload)]
    [ack] = await answer(stub, messages)
    return ack


async def answer(stub, messages):
    """One Answer call carrying ``messages``: its acknowledgements."""

    async def stream() -> AsyncIterator[pb.AnswerChunk]:
        for message in messages:
            yield message

    return [ack async for ack in stub.Answer(stream(), timeout=10)]


async def refused(answered, code, match):
    """``answered`` (an answer's acknowledgement) says it was refused with ``code``, for a reason with ``match``."""
    ack = await answered
    assert ack.status == code.value[0], (ack.status, ack.detail)
    assert match in ack.detail, ack.detail


async def call_refused(call, code, match):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert match in (caught.value.details() or ""), caught.value.details()


async def take_tasks(stub, creds_by_id, wait_s=0.5):
    """GetTask for several clients at once: {client_id: (header, model)}."""
    answers = await asyncio.gather(*(get_task(stub, creds, wait_s=wait_s) for creds in creds_by_id.values()))
    return dict(zip(creds_by_id, answers, strict=True))


async def finish_evaluation(fed, creds_by_id, last_task_ids, examples=None):
    """Answer the final EVALUATE tasks, collect SHUTDOWN, and return the run's summary."""
    for client_id, creds in creds_by_id.items():
        task, model = await get_task(fed.stub, creds, last_task_ids.get(client_id, 0))
        assert task.kind == pb.EVALUATE and model is not None
        [ack] = await answer(fed.stub, [pb.AnswerChunk(evaluation=pb.EvaluationReport(
            credentials=creds, task_id=task.task_id, round=task.round, model_version=task.model_version,
            n_examples=(examples or {}).get(client_id, 10),
            metrics={"accuracy": 0.75 if client_id == "0" else 0.25, "loss": 1.0}))])
        assert ack.status == 0, ack.detail
        last_task_ids[client_id] = task.task_id
    for client_id, creds in creds_by_id.items():
        task, _ = await get_task(fed.stub, creds, last_task_ids[client_id])
        assert task.kind == pb.SHUTDOWN
    return await asyncio.wait_for(fed.run, 10)


def test_join_refuses_unknown_clients_and_protocol_versions():
    async def scenario():
        async with serving(SMALL_MODEL) as fed:
            reply = await join(fed.stub, "7")
            assert not reply.accepted and "unknown client id '7'" in reply.reason
            reply = await join(fed.stub, "0", protocol_version=PROTOCOL_VERSION + 1)
            assert not reply.accepted and "protocol version" in reply.reason
            creds = await credentials(fed.stub, "0")
            bad_token = pb.Credentials(run_id=creds.run_id, client_id="0", token="forged")
            await call_refused(get_task(fed.stub, bad_token), grpc.StatusCode.UNAUTHENTICATED, "token")
            other_run = pb.Credentials(run_id="elsewhere", client_id="0", token=creds.token)
            await call_refused(get_task(fed.stub, other_run), grpc.StatusCode.UNAUTHENTICATED, "join again")
            not_joined = pb.Credentials(run_id=creds.run_id, client_id="1", token="t1")
            await call_refused(get_task(fed.stub, not_joined), grpc.StatusCode.UNAUTHENTICATED, "has not joined")

    asyncio.run(scenario())


def test_update_validation_rejects_bad_updates_and_accepts_a_good_one():
    async def scenario():
        async with serving(SMALL_MODEL) as fed:
            creds = {cid: await credentials(fed.stub, cid) for cid in ("0", "1")}
            tasks = await take_tasks(fed.stub, creds)
            kinds = {cid: task.kind for cid, (task, _) in tasks.items()}
            assert sorted(kinds.values()) == [pb.TRAIN, pb.WAIT]
            chosen = next(cid for cid, kind in kinds.items() if kind == pb.TRAIN)
            other = "1" if chosen == "0" else "0"
            task, model = tasks[chosen]
            assert task.round == 1 and task.model_version == 0 and task.weight == 10.0
            for name, value in SMALL_MODEL.items():
                np.testing.assert_array_equal(model[name], value)
            good = {"w": np.full((3, 2), 0.5, np.float32), "b": np.array([2.0], np.float32)}
            mine, stub = creds[chosen], fed.stub
            invalid, stale = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION

            await refused(submit(stub, creds[other], task, good), stale, f"client '{other}' is not selected")
            await refused(submit(stub, mine, task, good, round=2), stale, "answer is for round 2")
            await refused(submit(stub, mine, task, good, task_id=task.task_id + 5), stale, "open task is")
            await refused(submit(stub, mine, task, good, model_version=3), stale, "model version 3")
            await refused(submit(stub, mine, task, {"w": good["w"], "bias": good["b"]}), invalid, "lacks tensor(s) 'b'")
            await refused(submit(stub, mine, task, {**good, "extra": good["b"]}), invalid, "unknown tensor(s) 'extra'")
            await refused(submit(stub, mine, task, {"b": good["b"], "w": good["w"]}), invalid, "different order")
            await refused(submit(stub, mine, task, {**good, "w": np.zeros((2, 3), np.float32)}), invalid,
                          "'w' has shape [2, 3], the model's is [3, 2]")
            await refused(submit(stub, mine, task, {**good, "b": good["b"].astype(np.float64)}), invalid,
                          "'b' has dtype float64")
            await refused(submit(stub, mine, task, {**good, "w": np.full((3, 2), np.nan, np.float32)}), invalid,
                          "'w' contains NaN")
            await refused(submit(stub, mine, task, good, encoding=pb.PAILLIER), invalid, "encoding PAILLIER")
            await refused(submit(stub, mine, task, good, encoding=42), invalid, "encoding #42")
            odd_dtype = manifest_to_pb(encode_tensors(good)[0])
            odd_dtype[1].dtype = cast(pb.DType, 99)  # no such dtype
            await refused(submit(stub, mine, task, good, tensors=odd_dtype), invalid, "'b': unknown dtype code 99")
            await refused(submit(stub, mine, task, good, n_examples=99), invalid, "claims 99 examples")
            await refused(submit(stub, mine, task, good, metrics={"loss": float("nan")}), invalid,
                          "metric(s) loss are not finite")
            await refused(submit(stub, mine, task, good, train_s=-1.0), invalid, "non-negative seconds")
            await refused(submit(stub, mine, task, good, payload_bytes=10**9), invalid, "announces 1000000000")
            payload = encode_tensors(good)[1]
            await refused(submit(stub, mine, task, good, payload=payload[:-4]), invalid, "stream ended after")
            await refused(submit(stub, mine, task, good, payload=payload + b"xxxx"), invalid, "more than the announced")
            await call_refused(submit(stub, mine, task, good, messages=[pb.AnswerChunk(data=payload)]), invalid,
                          "must start with its header")
            forged = pb.Credentials(run_id=mine.run_id, client_id=chosen, token="forged")
            await call_refused(submit(stub, forged, task, good), grpc.StatusCode.UNAUTHENTICATED, "token")
            assert fed.records == []  # nothing so far was accepted

            ack = await submit(stub, mine, task, good)
            assert "accepted for round 1 (1/1)" in ack.detail
            await refused(submit(stub, mine, task, good), stale, "")  # a replay of the same update

            summary = await finish_evaluation(fed, creds, {chosen: task.task_id})
            [record] = fed.records
            assert (record.round, record.clients_selected, record.clients_used) == (1, 1, 1)
            assert record.loss == pytest.approx(6 * 0.5 + 2.0)  # new model = old + the one delta
            assert record.moved.up > 7 * 4 and record.moved.down > 7 * 4
            assert record.local == {"loss": 0.5}
            assert summary.initial.loss == 0.0
            assert summary.client_evaluation == ClientEvaluation(clients=2, accuracy=0.5, loss=1.0, accuracy_min=0.25,
                                                                 accuracy_max=0.75)

    asyncio.run(scenario())


def test_model_over_4_mib_goes_down_and_updates_come_back_in_chunks():
    big = {"w": np.random.default_rng(3).standard_normal((1100, 1000)).astype(np.float32),  # 4.2 MiB
           "b": np.ones(2, np.float32)}

    async def scenario():
        async with serving(big, per_round=2, min_clients=2) as fed:
            creds = {cid: await credentials(fed.stub, cid, n_examples=n) for cid, n in (("0", 30), ("1", 10))}
            tasks = await take_tasks(fed.stub, creds)
            deltas = {"0": 1.0, "1": -1.0}
            for cid, (task, model) in tasks.items():
                assert task.kind == pb.TRAIN
                np.testing.assert_array_equal(model["w"], big["w"])
                delta = {name: np.full_like(value, deltas[cid]) for name, value in big.items()}
                await submit(fed.stub, creds[cid], task, delta, n_examples=30 if cid == "0" else 10)
            await finish_evaluation(fed, creds, {cid: task.task_id for cid, (task, _) in tasks.items()},
                                    examples={"0": 30, "1": 10})
            [record] = fed.records
            mean_delta = (30 * 1.0 + 10 * -1.0) / 40
            expected = float(big["w"].astype(np.float64).sum() + 2) + mean_delta * (1100 * 1000 + 2)
            assert record.loss == pytest.approx(expected, rel=1e-5)
            assert record.moved.down > 2 * 1100 * 1000 * 4 and record.moved.up > 2 * 1100 * 1000 * 4

    asyncio.run(scenario())


def test_silent_client_is_dropped_at_the_deadline_and_its_late_update_refused():
    async def scenario():
        async with serving(SMALL_MODEL, per_round=2, min_clients=1, timeout_s=0.5) as fed:
            creds = {cid: await credentials(fed.stub, cid) for cid in ("0", "1")}
            tasks = await take_tasks(fed.stub, creds)
            delta = {name: np.ones_like(value) for name, value in SMALL_MODEL.items()}
            started = time.perf_counter()
            await submit(fed.stub, creds["0"], tasks["0"][0], delta)
            # The round closes at its deadline without client 1: wait for that event (its record), not a clock.
            await asyncio.wait_for(fed.round_logged.wait(), 30)
            await refused(submit(fed.stub, creds["1"], tasks["1"][0], delta), grpc.StatusCode.FAILED_PRECONDITION,
                          "no training round is open")
            # Client 1 was not polling when the round closed, so it counted as lost and was left out of
            # the final evaluation (it came back with its late update, in time for the SHUTDOWN).
            await finish_evaluation(fed, {"0": creds["0"]}, {"0": tasks["0"][0].task_id})
            assert (await get_task(fed.stub, creds["1"], tasks["1"][0].task_id))[0].kind == pb.SHUTDOWN
            [record] = fed.records
            assert (record.clients_selected, record.clients_used, record.clients_dropped) == (2, 1, 1)
            # It waited for the deadline (0.5 s), and not for anything much longer (the join grace is 5 s).
            assert 0.45 <= record.time_s.total < 4.5 and time.perf_counter() - started < 4.5

    asyncio.run(scenario())


def test_round_with_too_few_updates_is_retried_then_fails():
    async def scenario():
        async with serving(SMALL_MODEL, per_round=2, min_clients=2, timeout_s=0.3) as fed:
            creds = {cid: await credentials(fed.stub, cid) for cid in ("0", "1")}
            delta = {name: np.ones_like(value) for name, value in SMALL_MODEL.items()}
            last = {"0": 0, "1": 0}
            for _attempt in (1, 2):  # only client 0 answers: each attempt falls short of min_clients
                task, _ = await get_task(fed.stub, creds["0"], last["0"])
                assert task.kind == pb.TRAIN and task.round == 1
                last["0"] = task.task_id
                await submit(fed.stub, creds["0"], task, delta)
            # third attempt: client 1 polls again (so it is no longer lost), both answer, attempts == 3
            answers = await asyncio.gather(*(get_task(fed.stub, creds[cid], last[cid]) for cid in ("0", "1")))
            tasks = dict(zip(("0", "1"), answers, strict=True))
            for cid, (task, _) in tasks.items():
                await submit(fed.stub, creds[cid], task, delta)
            await finish_evaluation(fed, creds, {cid: task.task_id for cid, (task, _) in tasks.items()})
            [record] = fed.records
            assert record.attempts == 3 and record.clients_used == 2

        async with serving(SMALL_MODEL, per_round=2, min_clients=2, timeout_s=0.1) as fed:
            for cid in ("0", "1"):
                await credentials(fed.stub, cid)
            with pytest.raises(RoundFailed, match=r"round 1: fewer than federation.min_clients=2"):
                await asyncio.wait_for(fed.run, 10)

    asyncio.run(scenario())


def test_one_call_carries_every_asking_client_s_task_and_the_model_once_counted_per_client():
    delta = {name: np.ones_like(value) for name, value in SMALL_MODEL.items()}

    async def scenario():
        ids = ("0", "1", "2", "3")
        async with serving(SMALL_MODEL, clients=ids, per_round=3, min_clients=3) as fed:
            creds = {cid: await credentials(fed.stub, cid) for cid in ids}
            messages = await host_tasks(fed.stub, creds)
            headers = [m.header for m in messages if m.WhichOneof("part") == "header"]
            assert [h.kind for h in headers] == [pb.TRAIN] * 3 and len({h.client_id for h in headers}) == 3
            assert [m.WhichOneof("part") for m in messages] == ["header", "data", "header", "header"]
            assert [h.model_as_before for h in headers] == [False, True, True]
            model = decode_tensors(manifest_from_pb(headers[0].tensors), messages[1].data)
            assert all(np.array_equal(model[name], value) for name, value in SMALL_MODEL.items())
            for header in headers:
                await submit(fed.stub, creds[header.client_id], header, delta)
            await asyncio.wait_for(fed.round_logged.wait(), 30)
            [record] = fed.records
            # each client's bytes down counted as if the model had gone to it alone
            assert record.moved.down >= 3 * messages[1].ByteSize()
            last = {h.client_id: h.task_id for h in headers}
            evaluations = [m.header for m in await host_tasks(fed.stub, creds, last) if m.HasField("header")]
            assert [h.kind for h in evaluations] == [pb.EVALUATE] * 3  # the first wave (clients_per_round)
            assert [h.model_as_before for h in evaluations] == [False, True, True]

    asyncio.run(scenario())


def test_a_task_call_is_refused_whole_when_one_credential_is_not_valid_and_delivers_no_other_client_s_task():
    """The attacker holds client 0's credentials and knows the other ids: asking for the others with forged,
    borrowed or revoked tokens, or listing a client twice, gets the whole call refused (no task of anyone's, and
    nothing it could tell the valid credential's answer from); with its own credentials only it gets its own
    task, never another client's."""
    issuer = TokenIssuer.create("run")
    tokens = {cid: issuer.issue(cid) for cid in ("0", "1", "2")}

    async def scenario():
        async with serving(SMALL_MODEL, clients=tuple(tokens), per_round=3, min_clients=3,
                           tokens=RunTokens(issuer)) as fed:
            creds = {cid: await credentials(fed.stub, cid, token=token) for cid, token in tokens.items()}
            mine = creds["0"]
            unauthenticated = grpc.StatusCode.UNAUTHENTICATED
            forged = pb.Credentials(run_id=mine.run_id, client_id="1", token=tokens["1"][:-2] + "xx")
            borrowed = pb.Credentials(run_id=mine.run_id, client_id="1", token=tokens["0"])
            stale_run = pb.Credentials(run_id="another run", client_id="1", token=tokens["1"])
            for other, fragment in ((forged, "not valid"), (borrowed, "not valid"), (stale_run, "join again")):
                await call_refused(host_tasks(fed.stub, {"0": mine, "1": other}), unauthenticated, fragment)
                await call_refused(host_tasks(fed.stub, {"1": other, "0": mine}), unauthenticated, fragment)
            twice = pb.TaskRequest(wait_s=1.0, clients=[pb.ClientPoll(credentials=mine)] * 2)
            invalid = grpc.StatusCode.INVALID_ARGUMENT
            await call_refused(_drain(fed.stub.GetTask(twice, timeout=5)), invalid, "at most once")
            await call_refused(_drain(fed.stub.GetTask(pb.TaskRequest(wait_s=1.0), timeout=5)), invalid,
                               "at least one client")
            messages = await host_tasks(fed.stub, {"0": mine})
            assert [m.header.client_id for m in messages if m.HasField("header")] == ["0"]
            issuer.revoke("2")
            await call_refused(host_tasks(fed.stub, {"0": mine, "2": creds["2"]}), grpc.StatusCode.PERMISSION_DENIED,
                          "client '2' was revoked")
            # the refused calls delivered nothing: clients 1's task is still there for its own credentials
            [header] = [m.header for m in await host_tasks(fed.stub, {"1": creds["1"]}) if m.HasField("header")]
            assert header.client_id == "1" and header.kind == pb.TRAIN

    asyncio.run(scenario())


def test_a_broken_task_call_loses_the_clients_still_waiting_on_it_and_only_those():
    async def scenario():
        async with serving(SMALL_MODEL, clients=("0", "1", "2"), per_round=1, min_clients=1, timeout_s=60) as fed:
            creds = {cid: await credentials(fed.stub, cid) for cid in ("0", "1", "2")}
            registry = fed.coordinator.registry
            [header] = [m.header for m in await host_tasks(fed.stub, creds) if m.HasField("header")]
            waiting = {cid: c for cid, c in creds.items() if cid != header.client_id}
            process = open_channel(fed.address)  # the connection of a client process hosting the other two
            parked = pb_grpc.CoordinatorStub(process).GetTask(pb.TaskRequest(wait_s=20.0, clients=[
                pb.ClientPoll(credentials=c) for c in waiting.values()]), timeout=30)
            await until(lambda: all(registry.get(cid).polls == 1 for cid in waiting))  # the call is parked
            await process.close()  # the process died while its clients waited
            assert parked.cancelled() or parked.done()
            assert await registry.changed.wait_for(lambda: all(registry.get(cid).lost for cid in waiting), 10)
            assert not registry.get(header.client_id).lost  # it received its task and is working on it

    asyncio.run(scenario())


async def until(condition, timeout=10.0):
    """Wait for ``condition()`` (checked between event-loop turns), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def _drain(call):
    return [message async for message in call]


def test_one_answer_call_carries_many_clients_answers_each_checked_and_acknowledged_on_its_own():
    """A caller holding every client's credentials puts in one call: 0's good update, 1's update for another round,
    2's update whose payload overflows into the next answer's place, a truncated copy of 3's, then 3's good
    update. Each is acknowledged in order; only 0's and 3's count, each once."""
    good = {"w": np.full((3, 2), 0.5, np.float32), "b": np.array([2.0], np.float32)}
    specs, payload = encode_tensors(good)

    def update(creds, header, data, **fields):
        values = dict(credentials=creds, task_id=header.task_id, round=header.round, n_examples=10,
                      model_version=header.model_version, encoding=pb.PLAIN, tensors=manifest_to_pb(specs),
                      payload_bytes=len(payload), metrics={"loss": 0.5}) | fields
        return [pb.AnswerChunk(update=pb.UpdateHeader(**values)), pb.AnswerChunk(data=data)]

    async def scenario():
        ids = ("0", "1", "2", "3")
        async with serving(SMALL_MODEL, clients=ids, per_round=4, min_clients=2, timeout_s=5) as fed:
            creds = {cid: await credentials(fed.stub, cid) for cid in ids}
            headers = {m.header.client_id: m.header for m in await host_tasks(fed.stub, creds) if m.HasField("header")}
            acks = await answer(fed.stub, [*update(creds["0"], headers["0"], payload),
                                           *update(creds["1"], headers["1"], payload, round=7),
                                           *update(creds["2"], headers["2"], payload + b"\0" * 4),
                                           *update(creds["3"], headers["3"], payload[:-4]),
                                           *update(creds["3"], headers["3"], payload)])
            stale, invalid = (code.value[0] for code in (grpc.StatusCode.FAILED_PRECONDITION,
                                                         grpc.StatusCode.INVALID_ARGUMENT))
            assert [(ack.client_id, ack.status) for ack in acks] == [
                ("0", 0), ("1", stale), ("2", invalid), ("3", invalid), ("3", 0)]
            assert "answer is for round 7" in acks[1].detail and "more than the announced" in acks[2].detail
            assert "stream ended after" in acks[3].detail and "(2/4)" in acks[4].detail
            replay = await answer(fed.stub, update(creds["0"], headers["0"], payload))
            assert replay[0].status == grpc.StatusCode.FAILED_PRECONDITION.value[0]  # answered already
            await asyncio.wait_for(fed.round_logged.wait(), 60)  # the deadline closes the round without 1 and 2
            [record] = fed.records
            assert (record.clients_selected, record.clients_used) == (4, 2)
            assert record.loss == pytest.approx(6 * 0.5 + 2.0)  # the mean of the two identical good deltas

    asyncio.run(scenario())


def test_an_answer_whose_credentials_do_not_authenticate_ends_the_call_before_its_payload_is_read():
    """Anyone reaching the port: after one good answer of its own, an answer in another client's name (forged
    token, another run, a revoked client), an update announcing a huge payload, ends the call at once with the
    credentials' status; the coordinator waits for none of what follows (the good answer keeps its
    acknowledgement)."""
    issuer = TokenIssuer.create("run")
    tokens = {cid: issuer.issue(cid) for cid in ("0", "1", "2")}
    good = {"w": np.full((3, 2), 0.5, np.float32), "b": np.array([2.0], np.float32)}
    specs, payload = encode_tensors(good)

    async def scenario():
        async with serving(SMALL_MODEL, clients=tuple(tokens), per_round=3, min_clients=1, timeout_s=5,
                           tokens=RunTokens(issuer)) as fed:
            creds = {cid: await credentials(fed.stub, cid, token=token) for cid, token in tokens.items()}
            headers = {m.header.client_id: m.header for m in await host_tasks(fed.stub, creds) if m.HasField("header")}
            def update(creds_, header, **fields):
                values = dict(credentials=creds_, task_id=header.task_id, round=header.round, n_examples=10,
                              model_version=header.model_version, encoding=pb.PLAIN, tensors=manifest_to_pb(specs),
                              payload_bytes=len(payload), metrics={"loss": 0.5}) | fields
                return [pb.AnswerChunk(update=pb.UpdateHeader(**values)), pb.AnswerChunk(data=payload)]

            async def call(intruder):
                """Client 0's good update, then ``intruder``, then the call held open (the rest of a huge payload
                that never comes): a coordinator that kept reading would end it only at the deadline."""
                async def stream():
                    for message in [*update(creds["0"], headers["0"]), *intruder]:
                        yield message
                    await asyncio.Event().wait()
                acks = []
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    async for ack in fed.stub.Answer(stream(), timeout=20):
                        acks.append(ack)
                return acks, caught.value

            forged = pb.Credentials(run_id=creds["1"].run_id, client_id="1", token=tokens["1"][:-2] + "xx")
            acks, error = await call(update(forged, headers["1"], payload_bytes=1 << 40))
            assert [(ack.client_id, ack.status) for ack in acks] == [("0", 0)]
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "not valid" in error.details()
            other_run = pb.Credentials(run_id="another run", client_id="1", token=tokens["1"])
            acks, error = await call(update(other_run, headers["1"], payload_bytes=1 << 40))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "join again" in error.details()
            assert acks[0].status == grpc.StatusCode.FAILED_PRECONDITION.value[0]  # 0 had answered already
            issuer.revoke("2")
            acks, error = await call([pb.AnswerChunk(evaluation=pb.EvaluationReport(credentials=creds["2"]))])
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "revoked" in error.details()
            await asyncio.wait_for(fed.round_logged.wait(), 60)
            assert fed.records[0].clients_used == 1  # client 0's update, once

    asyncio.run(scenario())
