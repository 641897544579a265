"""Per-round bookkeeping: an update counts only from a client selected for the round, only once, only for
the open task and the model it was given; replays, duplicates, stale and late answers are refused."""
import asyncio

import grpc
import numpy as np
import pytest

from fedgrad.data import load_shard
from fedgrad.security.tokens import read_token_file
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.channel import open_channel
from fedgrad.transport.codec import encode_tensors

pytestmark = pytest.mark.faults

STALE = grpc.StatusCode.FAILED_PRECONDITION


async def train_tasks(clients: dict, count: int) -> dict:
    """Poll every client (short long polls) until ``count`` of them hold a TRAIN task: {client id: (task, model)}."""
    got: dict = {}
    while len(got) < count:
        waiting = [cid for cid in clients if cid not in got]
        for cid, (task, model) in zip(waiting, await asyncio.gather(*(clients[cid].next_task(wait_s=0.3)
                                                                      for cid in waiting)), strict=True):
            if task.kind == pb.TRAIN:
                got[cid] = (task, model)
    return got


def test_only_selected_clients_once_for_the_open_task_and_model(lab, tally):
    scenario = lab.scenario(clients=3, per_round=2, min_clients=2, rounds=2, timeout_s=2.0)

    async def run():
        async with lab.federation(scenario) as fed, open_channel(fed.address, lab.client_security()) as channel:
            tokens = read_token_file(fed.token_file, ["0", "1", "2"])
            sizes = {cid: len(load_shard(fed.run_dir / "data", int(cid))) for cid in tokens}
            clients = {cid: lab.manual_client(channel, cid, tokens[cid], sizes[cid]) for cid in tokens}
            for client in clients.values():
                await client.join()
            first = await train_tasks(clients, 2)
            selected = sorted(first)
            [outsider] = sorted(set(clients) - set(selected))
            a = selected[0]
            task_a, model = first[a]
            zeros = encode_tensors({name: np.zeros_like(value) for name, value in model.items()})[1]

            await clients[outsider].update("update from a client not selected", task_a, zeros, STALE,
                                           f"client '{outsider}' is not selected for round 1")
            assert "accepted for round 1 (1/2)" in await clients[a].accepted(task_a, zeros)
            await clients[a].update("the same update twice", task_a, zeros, STALE, f"'{a}' already answered round 1")

            # Round 1, attempt 1 times out with one answer (min_clients = 2) and is retried with new tasks.
            attempt2 = {cid: task for cid, (task, _) in (await train_tasks(clients, 2)).items()}
            assert len(attempt2) == 2 and all(task.round == 1 for task in attempt2.values())
            await clients[a].update("answer to a withdrawn attempt", task_a, zeros, STALE,
                                    "open task is" if a in attempt2 else "is not selected")
            for cid, task in attempt2.items():
                await clients[cid].accepted(task, zeros)
            await lab.wait_for(lambda: len(fed.records()) == 1, 10, "round 1")
            late, late_task = next(iter(attempt2.items()))
            await clients[late].update("update after its round closed", late_task, zeros, STALE, "round 1")

            round2 = await train_tasks(clients, 2)
            replayer = next(cid for cid in round2 if cid in attempt2)
            task_2 = round2[replayer][0]
            assert task_2.round == 2 and task_2.model_version == 1
            await clients[replayer].update("replay of the previous round's update", attempt2[replayer], zeros, STALE,
                                           "answer is for round 1")
            await clients[replayer].update("update computed from an old model", task_2, zeros, STALE,
                                           "model version 0", model_version=0)
            return fed.records()

    records = asyncio.run(run())
    [record] = records
    assert (record.attempts, record.clients_selected, record.clients_used) == (2, 2, 2)
