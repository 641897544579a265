"""The client pool against a real coordinator: late start, coordinator restart, clean exit on SHUTDOWN."""
import asyncio
import dataclasses
import socket

import numpy as np
import pytest

from client.pool import run_clients
from client.session import ClientError, ClientOptions
from fedgrad.data import Shard
from fedgrad.models import model_from_config
from fedgrad.modes.plain import PlainAccumulator
from fedgrad.protocol import TaskConfig, TrainSettings
from fedgrad.scenario import ModelConfig
from fedgrad.training import evaluate
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
        assert [r["clients_used"] for r in records] == [2, 2, 2]
        assert records[-1]["accuracy"] == 1.0 and summary["initial"]["accuracy"] < 1.0
        assert records[-1]["loss"] < records[0]["loss"]
        assert summary["client_evaluation"]["clients"] == 2

    asyncio.run(scenario())


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
        assert [r["clients_used"] for r in records] == [2, 2]

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
