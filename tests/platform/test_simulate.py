"""End to end: `fedgrad simulate` with a real coordinator and client OS processes over gRPC on localhost."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fedgrad.cli.main import main
from fedgrad.cli.simulate import ClientFleet
from fedgrad.errors import FedgradError

SPAM_WORDS = "free money offer winner click cash prize urgent discount credit loan cheap deal guaranteed".split()
HAM_WORDS = "meeting project schedule report team lunch attached review budget deadline minutes agenda notes".split()
COMMON_WORDS = "the and to of a in for is on that with this you it be".split()


def write_enron_corpus(root: Path, per_class: int = 60) -> Path:
    """A small Enron-spam style corpus: ham/ and spam/ folders of 'Subject: ...' text files."""
    rng = np.random.default_rng(0)
    for label, words in (("spam", SPAM_WORDS), ("ham", HAM_WORDS)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            body = [rng.choice(words) if rng.random() < 0.5 else rng.choice(COMMON_WORDS) for _ in range(25)]
            (root / label / f"{i:04d}.{label}.txt").write_text(
                f"Subject: {' '.join(rng.choice(words, 3))}\n{' '.join(body)}\n", encoding="utf-8")
    return root


def write_scenario(tmp_path: Path, rounds: int = 2) -> Path:
    corpus = write_enron_corpus(tmp_path / "corpus")
    path = tmp_path / "fixture.toml"
    path.write_text(f"""
name = "fixture"
seed = 3
[data]
corpus = "{corpus}"
partition = "iid"
min_count = 1
[model]
name = "book"
[train]
batch_size = 8
lr = 0.02
[federation]
clients = 3
clients_per_round = 3
rounds = {rounds}
min_clients = 2
round_timeout_s = 20
[output]
dir = "{tmp_path / 'runs'}"
""", encoding="utf-8")
    return path


def only_run_dir(root: Path) -> Path:
    [run_dir] = [path for path in root.iterdir() if path.is_dir()]
    return run_dir


def learned_values(records):
    """Everything in the round records that must not depend on timing."""
    return [{key: value for key, value in record.items() if key not in ("time_s", "bytes")} for record in records]


def test_simulate_three_client_processes_two_rounds(tmp_path, capsys):
    scenario = write_scenario(tmp_path)
    assert main(["simulate", str(scenario), "--set", "federation.processes=3"]) == 0
    run_dir = only_run_dir(tmp_path / "runs")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())

    assert [r["round"] for r in records] == [1, 2]
    assert all(r["clients_used"] == 3 and r["clients_dropped"] == 0 for r in records)
    assert records[-1]["accuracy"] > summary["initial"]["accuracy"]
    assert records[1]["loss"] < records[0]["loss"] < summary["initial"]["loss"]
    assert all(r["bytes"]["up"] > 0 and r["bytes"]["down"] > 0 and r["time_s"]["total"] > 0 for r in records)
    assert summary["rounds"] == 2 and summary["processes"] == 3
    assert summary["final"]["accuracy"] == records[-1]["accuracy"]
    assert summary["client_evaluation"]["clients"] == 3
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == [f"client-process-{i}.log" for i in range(3)]
    assert (run_dir / "report.md").read_text().startswith("# Run `fixture`")
    out = capsys.readouterr().out
    assert "fixture: final accuracy" in out and str(run_dir) in out

    # The same seed gives the same metrics, whatever the number of processes and the arrival order.
    assert main(["simulate", str(scenario), "--set", "federation.processes=1"]) == 0
    second = [path for path in (tmp_path / "runs").iterdir() if path != run_dir]
    again = [json.loads(line) for line in (second[0] / "metrics.jsonl").read_text().splitlines()]
    assert learned_values(again) == learned_values(records)


def test_fleet_reports_when_every_client_process_fails(tmp_path):
    import asyncio

    async def scenario():
        fleet = ClientFleet(tmp_path / "logs")
        await fleet.start("127.0.0.1:1", tmp_path / "no-shards-here", ["0", "1"], 2)
        try:
            with pytest.raises(FedgradError, match="every client process exited.*missing .*shard-"):
                await fleet.supervise(asyncio.sleep(60))
        finally:
            await fleet.stop()

    asyncio.run(scenario())


def _processes_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_simulate_stops_every_client_process(tmp_path, signum):
    scenario = write_scenario(tmp_path, rounds=100000)
    command = [sys.executable, "-m", "fedgrad.cli.main", "simulate", str(scenario), "--set", "federation.processes=2"]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob("*/metrics.jsonl")):  # wait until rounds are running
            assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read().decode()
            time.sleep(0.05)
        assert len(_processes_mentioning(str(tmp_path))) == 3  # simulate and its two client processes
        parent.send_signal(signum)
        assert parent.wait(timeout=30) != 0
    finally:
        if parent.poll() is None:
            parent.kill()
    assert _processes_mentioning(str(tmp_path)) == []
    assert "Traceback" not in parent.stderr.read().decode()
    assert os.path.exists(only_run_dir(tmp_path / "runs") / "metrics.jsonl")
