"""The coordinator SIGKILLed mid-run: `--resume` continues from the last checkpoint, the client processes
reconnect on their own, and the run ends with the model an uninterrupted run of the same seed ends with.

Kills are tied to events the test observes in the run directory, never to a wall-clock sleep: "round k's record
was written" (the kill can then land between logging round k and checkpointing it) or "round k's checkpoint was
written" (round k + 1 is under way). Which events, and which victims, are drawn from a seeded generator, so a
failing seed replays the same *schedule of events*. It does not replay the same instant: how far the coordinator
got between the event and the SIGKILL is up to the OS scheduler, and no test outside the process can pin that.
Each outcome is therefore checked against what must hold wherever the kill landed (same final model as the
uninterrupted run, every round recorded once).
"""
import asyncio
import json
import shutil
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from client.pool import run_clients
from client.session import ClientOptions
from fedgrad.cli.main import main
from fedgrad.data import load_shard, load_test, load_vocab
from fedgrad.models import model_from_config
from fedgrad.modes.base import ClientPrivacy
from fedgrad.scenario import load_scenario
from fedgrad.security.tokens import read_token_file
from fedgrad.training import evaluate
from server.checkpoint import CheckpointError, Checkpoints
from server.rounds import TrainingRound

pytestmark = pytest.mark.faults

ROUNDS = 6
#: How long a client process of the chaos test keeps trying to reach a coordinator that is gone: a safety net
#: only (every client is told SHUTDOWN), generous enough for a coordinator restart on a loaded machine.
CLIENT_PATIENCE_S = 30.0
# The join grace (= round timeout) must outlast the clients' reconnection backoff (at most 2 s), so that a
# resumed round samples from every client, as the uninterrupted run did.
TIMEOUT_S = 4.0


@pytest.fixture(scope="session")
def reference(tmp_path_factory, enron_corpus, write_scenario, run_traces):
    """The crash scenario run once without faults: its records and final model."""
    root = tmp_path_factory.mktemp("reference")
    # 10 local epochs: rounds of tens of milliseconds, so that a kill "after round k" lands before the run ends
    scenario = write_scenario(root / "crash.toml", enron_corpus, name="crash", seed=9, model={"name": "logreg"},
                              train={"batch_size": 8, "lr": 0.5, "epochs": 10},
                              federation={"clients_per_round": 2, "rounds": ROUNDS, "round_timeout_s": TIMEOUT_S})
    assert main(["simulate", str(scenario), "--insecure", "--set", f"output.dir={root / 'runs'}"]) == 0
    run_dir = run_traces.only_run_dir(root / "runs")
    return scenario, run_dir, run_traces.metrics(run_dir), run_traces.final_model(run_dir, ROUNDS)


def start_server(lab, name: str, port: int, *source: str):
    return lab.processes.start(name, "server", *source, "--port", str(port), "--tls-dir", str(lab.pki))


def new_run_dir(lab) -> Path:
    lab.wait_until(lambda: any((d / "auth" / "client-tokens.json").exists() for d in _dirs(lab.runs)), 60,
                   "the server to create the run")
    return lab.traces.only_run_dir(lab.runs)


def _dirs(root: Path) -> list[Path]:
    return [d for d in root.iterdir() if d.is_dir()] if root.exists() else []


def check_same_run_as(lab, run_dir: Path, reference, faults, damaged=()) -> None:
    """Measure the run's outcome into every fault it survived, then check it equals the reference run."""
    _, _, ref_records, ref_model = reference
    outcome = lab.measure_run(run_dir, ROUNDS, ref_model, damaged)
    for fault in faults:
        fault.measured(outcome)
    records = lab.traces.metrics(run_dir)
    assert outcome.survived, outcome.detail
    assert [r.round for r in records] == list(range(1, ROUNDS + 1))
    assert lab.traces.learned(records) == lab.traces.learned(ref_records)
    model = lab.traces.final_model(run_dir, ROUNDS)
    assert model.keys() == ref_model.keys()
    for name in model:
        np.testing.assert_array_equal(model[name], ref_model[name])
    assert json.loads((run_dir / "summary.json").read_text())["rounds"] == ROUNDS


def test_coordinator_killed_at_random_points_resumes_to_the_same_model(lab, tally, reference):
    scenario = reference[0]
    rng = np.random.default_rng(20261123)
    kill_after = sorted(int(k) for k in rng.choice(np.arange(1, ROUNDS - 1), size=2, replace=False))
    # The event each kill waits for: round k's record ("logged": maybe before its checkpoint) or its checkpoint.
    moments = [str(m) for m in rng.choice(["logged", "checkpointed"], size=len(kill_after))]
    port = lab.free_port()
    server = start_server(lab, "server-0", port, str(scenario), "--set", f"output.dir={lab.runs}")
    run_dir = new_run_dir(lab)
    clients = lab.client_process("clients", f"127.0.0.1:{port}", run_dir, ["0", "1", "2"])
    faults, damaged = [], []
    with ExitStack() as survived:
        for attempt, (k, moment) in enumerate(zip(kill_after, moments, strict=True), start=1):
            if moment == "logged":
                lab.wait_until(lambda k=k: len(lab.traces.metrics(run_dir)) >= k, 60, f"round {k}'s record")
            else:
                # round k's checkpoint or a later one: the previous of two is deleted when the next is written, so
                # a fast round must not make the event pass unseen between two polls
                lab.wait_until(lambda k=k: any(int(path.stem.removeprefix("round-")) >= k
                                               for path in (run_dir / "checkpoint").glob("round-*.npz")), 60,
                               f"round {k}'s checkpoint")
            faults.append(survived.enter_context(tally.fault(f"coordinator SIGKILL after round {moment}")))
            lab.processes.kill(server)
            if attempt == len(kill_after):  # the newest checkpoint is then found damaged as well
                corrupt = survived.enter_context(tally.bad_input("corrupt checkpoint"))
                newest = Checkpoints(run_dir).files()[0]
                newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
                (newest.parent / f".{newest.name}.deadbeef.tmp").write_bytes(b"half a checkpoint")
                damaged.append(newest)
            server = start_server(lab, f"server-{attempt}", port, "--resume", str(run_dir))
        assert server.wait(timeout=120) == 0, lab.processes.log(f"server-{len(kill_after)}")
        assert clients.wait(timeout=30) == 0, lab.processes.log("clients")
        check_same_run_as(lab, run_dir, reference, faults, damaged)
        last_log = lab.processes.log(f"server-{len(kill_after)}")
        assert "corrupt or partially written checkpoint" in last_log and "instead" in last_log
        corrupt.refused("resumed from the previous checkpoint: " + next(
            line for line in last_log.splitlines() if "corrupt or partially written checkpoint" in line))
        assert "joining again" in lab.processes.log("clients")  # they noticed the new coordinator and rejoined


def test_killed_simulate_resumes_with_new_client_processes_and_leaves_no_orphans(lab, tally, reference):
    scenario = reference[0]
    simulate = lab.processes.start("simulate", "simulate", str(scenario), "--set", f"output.dir={lab.runs}")
    run_dir = new_run_dir(lab)
    lab.wait_until(lambda: len(lab.traces.metrics(run_dir)) >= 2, 60, "two rounds")
    with tally.fault("simulate SIGKILL mid-run") as fault:
        lab.processes.kill(simulate)
        lab.wait_until(lambda: not lab.traces.pids_mentioning(str(run_dir)), 10, "the orphaned clients to exit")
        assert main(["simulate", "--resume", str(run_dir)]) == 0
        check_same_run_as(lab, run_dir, reference, [fault])


def test_unusable_checkpoints_and_finished_runs_are_clear_errors(lab, tally, reference, capsys):
    _, finished, _, _ = reference
    with tally.bad_input("resume a finished run") as bad:
        assert main(["server", "--resume", str(finished)]) == 2
        message = _one_line_error(capsys)
        assert "already finished" in message
        bad.refused(f"exit 2: {message}")

    run_dir = lab.tmp / "interrupted"
    shutil.copytree(finished, run_dir)
    (run_dir / "summary.json").unlink()
    files = Checkpoints(run_dir).files()
    assert len(files) == 2
    with tally.bad_input("checkpoint with a flipped byte") as bad:
        data = bytearray(files[0].read_bytes())
        data[len(data) // 2] ^= 0xFF
        files[0].write_bytes(bytes(data))
        assert Checkpoints(run_dir).latest().completed_rounds == ROUNDS - 1  # falls back, saying so
        bad.refused(f"fell back to round {ROUNDS - 1}")
    with tally.bad_input("no readable checkpoint") as bad:
        files[1].write_bytes(b"PK\x03\x04 not really a zip")
        with pytest.raises(CheckpointError, match="no usable checkpoint"):
            Checkpoints(run_dir).latest()
        assert main(["simulate", "--resume", str(run_dir)]) == 2
        message = _one_line_error(capsys)
        assert "no usable checkpoint" in message and "round-000006.npz" in message and "start the run over" in message
        bad.refused(f"exit 2: {message}")
    with tally.bad_input("resume something that is not a run") as bad:
        assert main(["server", "--resume", str(lab.tmp)]) == 2
        message = _one_line_error(capsys)
        assert "not a run directory" in message
        bad.refused(f"exit 2: {message}")


@pytest.mark.parametrize("seed", [7, 11, 2024])
def test_random_client_and_coordinator_kills_end_with_correct_metrics(lab, tally, seed):
    """Chaos, seeded: clients and the coordinator die at random points and come back; the run completes,
    every round is recorded once, and the recorded metrics are those of the final model.

    Every round needs all three clients (min_clients = 3), so the run cannot end while a restarted client is
    still starting: each client process ends the run with exit 0, told SHUTDOWN by the coordinator, whatever
    the timing. (With min_clients = 2 a client restarted near the end could find the run over, or join as the
    coordinator exits, and which of those happened was up to the scheduler.) A round whose client died waits
    for it: the restarted process takes the task from its mailbox, or the attempt is retried; the round
    timeout gives a restart on a loaded machine up to three times 10 s."""
    rounds, timeout_s = 8, 10.0
    scenario = lab.scenario(rounds=rounds, min_clients=3, timeout_s=timeout_s, epochs=20)
    rng = np.random.default_rng(seed)
    port = lab.free_port()
    server = start_server(lab, "server-0", port, str(scenario))
    run_dir = new_run_dir(lab)
    log_names: dict[str, str] = {}

    def client(cid: str, number: int):
        log_names[cid] = f"client-{cid}-{number}"
        return lab.client_process(log_names[cid], f"127.0.0.1:{port}", run_dir, [cid], CLIENT_PATIENCE_S)

    clients = {cid: client(cid, 0) for cid in "012"}
    events = sorted((int(rng.integers(1, rounds - 2)), str(rng.choice(["coordinator", "0", "1", "2"])))
                    for _ in range(4))
    faults = []
    with ExitStack() as survived:
        for number, (after_round, victim) in enumerate(events, start=1):
            lab.wait_until(lambda after_round=after_round: len(lab.traces.metrics(run_dir)) >= after_round, 90,
                           f"round {after_round}")
            faults.append(survived.enter_context(tally.fault(
                f"{'coordinator' if victim == 'coordinator' else 'client'} SIGKILL after a round's record")))
            if victim == "coordinator":
                lab.processes.kill(server)
                server = start_server(lab, f"server-{number}", port, "--resume", str(run_dir))
            elif clients[victim].poll() is None:
                lab.processes.kill(clients[victim])  # returns once the process is reaped
                clients[victim] = client(victim, number)
        assert server.wait(timeout=180) == 0
        outcome = lab.measure_run(run_dir, rounds)
        for fault in faults:
            fault.measured(outcome)
        for cid, process in clients.items():
            code = process.wait(timeout=60)
            log = lab.processes.log(log_names[cid])
            assert code == 0 and "the run is over" in log, (cid, code, log[-500:])
        assert outcome.survived, outcome.detail
        records = lab.traces.metrics(run_dir)
        assert [r.round for r in records] == list(range(1, rounds + 1))
        assert all(r.clients_used == 3 for r in records)
        # The recorded metrics are those of the model the run ended with.
        scenario_ = load_scenario(run_dir / "config.toml")
        model = model_from_config(scenario_.model, len(load_vocab(run_dir / "data")), seed=0)
        model.load_state_dict({name.partition("/")[2]: value
                               for name, value in lab.traces.final_model(run_dir, rounds).items()})
        recomputed = evaluate(model, load_test(run_dir / "data"))
        assert (records[-1].accuracy, records[-1].loss) == (recomputed["accuracy"], recomputed["loss"])
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["final"]["accuracy"] == records[-1].accuracy


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fedgrad: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.filterwarnings("ignore::fedgrad.crypto.InsecureKeyWarning")
def test_secure_aggregation_resumes_under_a_fresh_key_to_the_same_model(lab, tally):
    """The resumed coordinator generates a new Paillier key pair (nothing encrypted under the old one is ever
    decrypted again), and the exact integer aggregation still ends with the uninterrupted run's model."""
    rounds = 4
    scenario = lab.scenario(rounds=rounds, min_clients=3, timeout_s=5.0, privacy={
        "mode": "paillier-trusted", "key_bits": 512, "insecure_key_bits": True, "clip": 5.0})
    privacy = ClientPrivacy(allow_insecure_keys=True)
    options = ClientOptions(wait_s=1.0, rpc_timeout_s=20.0, connect_timeout_s=20.0, backoff_max_s=0.2)

    async def run(kill_after: int | None) -> tuple[Path, list[bytes]]:
        port, keys = lab.free_port(), []
        async with lab.federation(scenario, port=port) as fed:
            ids = ["0", "1", "2"]
            shards = {cid: load_shard(fed.run_dir / "data", int(cid)) for cid in ids}
            clients = asyncio.create_task(run_clients(fed.address, shards, options=options, privacy=privacy,
                                                      tokens=read_token_file(fed.token_file, ids),
                                                      security=lab.client_security()))
            keys.append(await public_key_of(lab, fed, clients))
            if kill_after is None:
                await asyncio.wait_for(fed.run, 60)
                await asyncio.wait_for(clients, 20)
                return fed.run_dir, keys
            await lab.wait_for(lambda: len(fed.records()) >= kill_after, 60, f"round {kill_after}")
        # Leaving the block stops the coordinator mid-run; a new one resumes from the checkpoint.
        with tally.fault("coordinator stopped mid-run under secure aggregation") as fault:
            async with lab.federation(scenario, resume=fed.run_dir, port=port) as resumed:
                keys.append(await public_key_of(lab, resumed, clients))
                await asyncio.wait_for(resumed.run, 120)
                await asyncio.wait_for(clients, 30)
            fault.measured(lab.measure_run(fed.run_dir, rounds, lab.traces.final_model(clean_dir, rounds),
                                               summary=False))
        return fed.run_dir, keys

    clean_dir, _ = asyncio.run(run(None))
    resumed_dir, keys = asyncio.run(run(2))
    assert keys[0] != keys[1]
    assert [r.round for r in lab.traces.metrics(resumed_dir)] == list(range(1, rounds + 1))
    assert lab.traces.learned(lab.traces.metrics(resumed_dir)) == lab.traces.learned(lab.traces.metrics(clean_dir))
    clean, resumed = lab.traces.final_model(clean_dir, rounds), lab.traces.final_model(resumed_dir, rounds)
    for name in clean:
        np.testing.assert_array_equal(resumed[name], clean[name])


async def public_key_of(lab, federation, clients: asyncio.Task) -> bytes:
    """The Paillier public key the coordinator announces, as a TRAIN task carries it.

    The event is the first training round opening, which needs all three clients back. The safety net is
    generous: a client whose call was cut when the old coordinator stopped may only notice at that call's
    deadline (the clients' rpc_timeout_s, 20 s) on a loaded machine. A client that gave up fails at once.
    """
    def opened() -> bool:
        if clients.done():
            clients.result()  # raises the client's error, if it ended with one
            raise AssertionError("the clients ended before a training round opened")
        return isinstance(federation.coordinator._dispatch, TrainingRound)

    try:
        await lab.wait_for(opened, 90, "a training round")
    except AssertionError as timed_out:  # say where every task of this loop is stuck, for the record
        stacks = [f"{task.get_name()}: " + " < ".join(f"{frame.f_code.co_name}:{frame.f_lineno}"
                                                     for frame in task.get_stack(limit=8))
                  for task in asyncio.all_tasks()]
        joined = sorted(r.client_id for r in federation.coordinator.registry.clients())
        raise AssertionError(f"{timed_out}; joined: {joined}\n" + "\n".join(stacks)) from None
    return bytes(federation.coordinator._dispatch.accumulator.announcement.public_key)
