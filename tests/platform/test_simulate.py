"""End to end: `fedgrad simulate` with a real coordinator and client OS processes over gRPC on localhost."""
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fedgrad.cli.main import main
from fedgrad.errors import FedgradError
from fedgrad.launchers import ClientFleet
from fedgrad.results import read_summary
from fedgrad.transport.channel import ignore_cancelled_rpcs


@pytest.fixture
def write_fixture_scenario(tmp_path, enron_corpus, write_scenario) -> Callable[..., Path]:
    """``write_fixture_scenario(rounds=2)``: 3 clients on the shared corpus, runs below ``tmp_path / "runs"``."""
    return lambda rounds=2: write_scenario(
        tmp_path / "fixture.toml", enron_corpus, tmp_path / "runs", name="fixture", seed=3,
        train={"batch_size": 8, "lr": 0.02}, federation={"rounds": rounds, "round_timeout_s": 20})


def test_simulate_three_client_processes_two_rounds(tmp_path, capsys, write_fixture_scenario, run_traces):
    scenario = write_fixture_scenario()
    assert main(["simulate", str(scenario), "--set", "federation.processes=3"]) == 0
    run_dir = run_traces.only_run_dir(tmp_path / "runs")
    records = run_traces.metrics(run_dir)
    summary = read_summary(run_dir)

    assert [r.round for r in records] == [1, 2]
    assert all(r.clients_used == 3 and r.clients_dropped == 0 for r in records)
    assert records[-1].accuracy > summary.initial.accuracy
    assert records[1].loss < records[0].loss < summary.initial.loss
    assert all(r.moved.up > 0 and r.moved.down > 0 and r.time_s.total > 0 for r in records)
    assert summary.rounds == 2 and summary.processes == 3
    assert summary.final.accuracy == records[-1].accuracy
    assert summary.client_evaluation.clients == 3
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == [f"client-process-{i}.log" for i in range(3)]
    assert (run_dir / "report.md").read_text().startswith("# Run `fixture`")
    out = capsys.readouterr().out
    assert "fixture: final accuracy" in out and str(run_dir) in out

    # The same seed gives the same metrics, whatever the number of processes and the arrival order.
    assert main(["simulate", str(scenario), "--set", "federation.processes=1"]) == 0
    second = [path for path in (tmp_path / "runs").iterdir() if path != run_dir]
    again = run_traces.metrics(second[0])
    assert run_traces.learned(again) == run_traces.learned(records)


def test_fleet_reports_when_every_client_process_fails(tmp_path):
    import asyncio

    async def scenario():
        fleet = ClientFleet(tmp_path / "logs")
        await fleet.start("127.0.0.1:1", tmp_path / "no-shards-here", ["0", "1"], 2)
        try:
            with pytest.raises(FedgradError, match=r"every client process exited.*missing .*shard-"):
                await fleet.supervise(asyncio.sleep(60))
        finally:
            await fleet.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_simulate_stops_every_client_process(tmp_path, signum, write_fixture_scenario, run_traces):
    scenario = write_fixture_scenario(rounds=100000)
    command = [sys.executable, "-m", "fedgrad.cli.main", "simulate", str(scenario), "--set", "federation.processes=2"]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob("*/metrics.jsonl")):  # wait until rounds are running
            assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read().decode()
            time.sleep(0.05)
        assert len(run_traces.pids_mentioning(str(tmp_path))) == 3  # simulate and its two client processes
        parent.send_signal(signum)
        assert parent.wait(timeout=30) != 0
    finally:
        if parent.poll() is None:
            parent.kill()
    assert run_traces.pids_mentioning(str(tmp_path)) == []
    assert "Traceback" not in parent.stderr.read().decode()
    assert os.path.exists(run_traces.only_run_dir(tmp_path / "runs") / "metrics.jsonl")


def test_an_interrupted_run_does_not_log_its_cancelled_rpcs_but_logs_real_errors(caplog):
    """grpc.aio reports RPC tasks cancelled by Ctrl-C to the loop's exception handler (grpc/grpc#24716);
    every fedgrad gRPC server (new_server) drops exactly those reports, so an interrupted run prints no traceback."""
    loop = asyncio.new_event_loop()
    try:
        ignore_cancelled_rpcs(loop)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.call_exception_handler({"message": "rpc task", "exception": asyncio.CancelledError()})
            assert caplog.records == []
            loop.call_exception_handler({"message": "broken handler", "exception": ValueError("boom")})
    finally:
        loop.close()
    assert [record.getMessage() for record in caplog.records] == ["broken handler"]
    assert isinstance(caplog.records[0].exc_info[1], ValueError)
