"""Clients SIGKILLed mid-round: the round closes at its deadline with the others, or is retried when too
few remain; a dead client is not selected again (no timeout per round it is drawn for) until it comes back."""
import asyncio

import pytest

pytestmark = pytest.mark.faults

TIMEOUT_S = 3.0


async def kill_while_training(lab, federation, process, client_id: str, after_round: int) -> int:
    """SIGKILL ``process`` once ``client_id`` has received a TRAIN task of a round after ``after_round`` and is
    training on it (its long poll ended with the delivery); returns the number of that round."""
    record = federation.coordinator.registry
    await lab.wait_for(lambda: len(federation.records()) >= after_round, 30, f"round {after_round}")
    await lab.wait_for(lambda: registry_polls(record, client_id) == 1, 10, f"client {client_id} polling")
    await lab.wait_for(lambda: registry_polls(record, client_id) == 0, 10, f"client {client_id} taking its task")
    lab.processes.kill(process)
    return len(federation.records()) + 1


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
            lab.client_process("clients-0-1", fed, fed.run_dir, ["0", "1"])
            victim = lab.client_process("client-2", fed, fed.run_dir, ["2"])
            with tally.fault("client SIGKILL mid-round"):
                killed_in = await kill_while_training(lab, fed, victim, "2", after_round=1)
                await lab.wait_for(lambda: len(fed.records()) >= killed_in + 1, 30, "the rounds after the kill")
                lab.client_process("client-2-again", fed, fed.run_dir, ["2"])  # the client comes back
                await lab.wait_for(lambda: registry_polls(registry, "2") > 0, 30, "client 2 back")
                back_after = len(fed.records())
                await asyncio.wait_for(fed.run, 60)
            return killed_in, back_after, fed.records(), registry.get("2")

    killed_in, back_after, records, victim_record = asyncio.run(run())
    assert [r["round"] for r in records] == list(range(1, rounds + 1))
    lab.tally.lost(rounds - len(records))
    by_round = {r["round"]: r for r in records}
    dropped = by_round[killed_in]
    # The round it died in closed at the deadline with the two others.
    assert (dropped["clients_selected"], dropped["clients_used"], dropped["clients_dropped"]) == (3, 2, 1)
    assert dropped["time_s"]["total"] >= timeout_s * 0.9
    # The next round did not select it, so it did not wait for the deadline.
    after = by_round[killed_in + 1]
    assert (after["clients_selected"], after["clients_used"]) == (2, 2)
    assert after["time_s"]["total"] < timeout_s * 0.9
    # Back after the restart: every round opened after it returned has all three again.
    reopened = records[back_after + 1:]
    assert reopened, f"client 2 came back only after round {back_after}: no round left to see it selected"
    assert all(r["clients_selected"] == 3 == r["clients_used"] for r in reopened)
    assert not victim_record.lost
    assert all(r["clients_used"] >= 2 and r["clients_used"] + r["clients_dropped"] == r["clients_selected"]
               for r in records)


@pytest.mark.filterwarnings("ignore::fedgrad.crypto.InsecureKeyWarning")
@pytest.mark.parametrize("mode", ["none", "paillier-trusted"])
def test_round_left_with_too_few_clients_is_retried_and_never_aggregated_short(lab, tally, mode):
    """min_clients = 3 of 3: a kill leaves the attempt short; it is retried (the short attempt is never summed,
    under Paillier never decrypted) and completes once the client is back."""
    privacy = {} if mode == "none" else {"mode": "paillier-trusted", "key_bits": 512, "insecure_key_bits": True, "clip": 5.0}
    scenario = lab.scenario(rounds=3, min_clients=3, timeout_s=TIMEOUT_S, epochs=30, privacy=privacy)

    async def run():
        async with lab.federation(scenario) as fed:
            lab.client_process("clients-0-1", fed, fed.run_dir, ["0", "1"])
            victim = lab.client_process("client-2", fed, fed.run_dir, ["2"])
            with tally.fault("client SIGKILL leaving fewer than min_clients"):
                killed_in = await kill_while_training(lab, fed, victim, "2", after_round=1)
                registry = fed.coordinator.registry
                # The attempt fails at its deadline; the retry waits (up to a timeout) for the client to return.
                await lab.wait_for(lambda: registry.get("2").lost, TIMEOUT_S * 3, "the attempt to fail")
                assert len(fed.records()) == killed_in - 1
                lab.client_process("client-2-again", fed, fed.run_dir, ["2"])
                await asyncio.wait_for(fed.run, 60)
            return killed_in, fed.records()

    killed_in, records = asyncio.run(run())
    assert [r["round"] for r in records] == [1, 2, 3]
    lab.tally.lost(3 - len(records))
    retried = records[killed_in - 1]
    assert retried["attempts"] >= 2 and retried["clients_used"] == 3
    assert all(r["clients_used"] == 3 for r in records)
