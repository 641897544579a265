"""Clients SIGKILLed mid-round: the round closes at its deadline with the others, or is retried when too
few remain; a dead client is not selected again (no timeout per round it is drawn for) until it comes back."""
import asyncio

import pytest

from fedgrad.protocol import TrainTask

pytestmark = pytest.mark.faults

# The retried attempt waits up to this long for the restarted client, twice: time for a new process to start
# on a loaded machine.
TIMEOUT_S = 5.0


async def kill_while_training(lab, federation, process, client_id: str, after_round: int) -> int:
    """SIGKILL ``process`` as soon as the coordinator has delivered ``client_id`` a TRAIN task of a round after
    ``after_round`` (so the client holds the task and has not answered it); returns the number of that round.

    The moment is an event, not a poll of the client's state: the coordinator's ``task_delivered`` (which the
    service calls once the whole task went out) is wrapped to set an asyncio event, on the same loop, before
    the coordinator carries on. The kill happens before the loop runs anything else.
    """
    coordinator = federation.coordinator
    delivered_round: list[int] = []
    event = asyncio.Event()
    original = coordinator.task_delivered

    def spy(client, task, nbytes):
        original(client, task, nbytes)
        if (client.client_id == client_id and isinstance(task.task, TrainTask) and task.task.round > after_round
                and not event.is_set()):
            delivered_round.append(task.task.round)
            lab.processes.kill(process)  # synchronously: the client never gets to answer
            event.set()

    coordinator.task_delivered = spy
    try:
        await asyncio.wait_for(event.wait(), 60)
    finally:
        coordinator.task_delivered = original
    return delivered_round[0]


def registry_polls(registry, client_id: str) -> int:
    record = registry.get(client_id)
    return -1 if record is None else record.polls


def test_killed_client_drops_out_of_its_round_is_not_reselected_and_rejoins(lab, tally):
    rounds = 12  # local training of ~0.2 s per round leaves the restarted client time to come back
    timeout_s = 3.0
    scenario = lab.scenario(rounds=rounds, min_clients=2, timeout_s=timeout_s, epochs=150)

    async def run():
        async with lab.federation(scenario) as fed:
            registry = fed.coordinator.registry
            back = asyncio.Event()
            killed: list[int] = []
            train_round = fed.coordinator._train_round

            async def gated(number):
                # Round killed_in + 2 opens only once the restarted client is back (an event, so the run cannot
                # end, however slowly the new process starts, before a round could see it selected again).
                if killed and number == killed[0] + 2:
                    await asyncio.wait_for(back.wait(), 60)
                return await train_round(number)

            fed.coordinator._train_round = gated
            lab.client_process("clients-0-1", fed, fed.run_dir, ["0", "1"])
            victim = lab.client_process("client-2", fed, fed.run_dir, ["2"])
            with tally.fault("client SIGKILL mid-round") as fault:
                killed.append(await kill_while_training(lab, fed, victim, "2", after_round=1))
                await lab.wait_for(lambda: len(fed.records()) >= killed[0] + 1, 30, "the round after the kill")
                lab.client_process("client-2-again", fed, fed.run_dir, ["2"])  # the client comes back
                await lab.wait_for(lambda: registry_polls(registry, "2") > 0, 60, "client 2 back")
                back.set()
                await asyncio.wait_for(fed.run, 60)
                fault.measured(lab.measure_run(fed.run_dir, rounds, summary=False))
            return killed[0], fed.records(), registry.get("2")

    killed_in, records, victim_record = asyncio.run(run())
    assert [r.round for r in records] == list(range(1, rounds + 1))
    by_round = {r.round: r for r in records}
    dropped = by_round[killed_in]
    # The round it died in closed at the deadline with the two others.
    assert (dropped.clients_selected, dropped.clients_used, dropped.clients_dropped) == (3, 2, 1)
    assert dropped.time_s.total >= timeout_s * 0.9
    # The next round did not select it, so it had no one to wait for: it closed when its two answered.
    after = by_round[killed_in + 1]
    assert (after.clients_selected, after.clients_used, after.clients_dropped,
            after.attempts) == (2, 2, 0, 1)
    # Back after the restart: every round opened after it returned has all three again.
    reopened = records[killed_in + 1:]
    assert reopened, f"client 2 was killed in round {killed_in}: no round left to see it selected again"
    assert all(r.clients_selected == 3 == r.clients_used for r in reopened)
    assert not victim_record.lost
    assert all(r.clients_used >= 2 and r.clients_used + r.clients_dropped == r.clients_selected
               for r in records)


@pytest.mark.filterwarnings("ignore::fedgrad.crypto.InsecureKeyWarning")
@pytest.mark.parametrize("mode", ["none", "paillier-trusted"])
def test_round_left_with_too_few_clients_is_retried_and_never_aggregated_short(lab, tally, mode):
    """min_clients = 3 of 3: a kill leaves the attempt short; it is retried (the short attempt is never summed,
    under Paillier never decrypted) and completes once the client is back."""
    privacy = {} if mode == "none" else {"mode": "paillier-trusted", "key_bits": 512, "insecure_key_bits": True,
                                         "clip": 5.0}
    scenario = lab.scenario(rounds=3, min_clients=3, timeout_s=TIMEOUT_S, epochs=30, privacy=privacy)

    async def run():
        async with lab.federation(scenario) as fed:
            lab.client_process("clients-0-1", fed, fed.run_dir, ["0", "1"])
            victim = lab.client_process("client-2", fed, fed.run_dir, ["2"])
            with tally.fault("client SIGKILL leaving fewer than min_clients") as fault:
                killed_in = await kill_while_training(lab, fed, victim, "2", after_round=1)
                registry = fed.coordinator.registry
                # The attempt fails at its deadline; the retry waits (up to a timeout) for the client to return.
                await lab.wait_for(lambda: registry.get("2").lost, TIMEOUT_S * 3, "the attempt to fail")
                assert len(fed.records()) == killed_in - 1
                lab.client_process("client-2-again", fed, fed.run_dir, ["2"])
                await asyncio.wait_for(fed.run, 60)
                fault.measured(lab.measure_run(fed.run_dir, 3, summary=False))
            return killed_in, fed.records()

    killed_in, records = asyncio.run(run())
    assert [r.round for r in records] == [1, 2, 3]
    retried = records[killed_in - 1]
    assert retried.attempts >= 2 and retried.clients_used == 3
    assert all(r.clients_used == 3 for r in records)
