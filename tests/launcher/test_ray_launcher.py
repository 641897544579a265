"""`simulate --launcher ray` on real Ray (the `ray` extra): without Ray a one-line error before any work; on a
local cluster the run learns exactly what the local-process launcher learns for the same seed; on a two-node
cluster that loses a node mid-run the lost clients come back on the other node and the run ends as if nothing
happened; SIGTERM and Ctrl-C stop the Ray work and the cluster the run started, leaving no process behind; more
workers than CPUs share the CPUs (or, with a --ray-cpus that cannot fit, the run is refused before it starts); on a
cluster busy with other work no round starts before every worker has its CPUs.

Every cluster here keeps its files (and finds clusters) in a private RAY_TMPDIR, and every Ray port is an
ephemeral one, so these tests neither see nor disturb another Ray on the machine. A run that starts its own
cluster runs in a child process in a session of its own: Ray makes the process that starts a cluster a process
group leader, which pytest should not become, and the session is how the test finds every process the run
started (raylet, GCS, workers), whatever they renamed themselves to.

The existing clusters the other tests use are started as a user starts them, with ``ray start --block`` in a
session of its own, never by pytest itself: Ray forks a node's processes with a Python ``preexec_fn``, which is
unsafe in a process where gRPC threads run (pytest's, after the in-process runs), and made node start-up time out
now and then. One head serves the whole module; the node-loss test adds its second node to it.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray  # the ray extra (pip install -e '.[test,ray]'); not skipped without it: CI must run these on real Ray

from fedgrad.cli.main import main
from fedgrad.errors import ConfigError
from fedgrad.launchers.ray import worker_cpus
from server.coordinator import Coordinator
from server.registry import ClientRegistry

ROUNDS = 3
#: Safety nets only: every wait below ends on an event (a process exit, a file written) long before these.
START_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 120.0
REAP_TIMEOUT_S = 30.0


#: Where the shared head's Ray client server may listen (Ray needs a fixed port there; this suite's range).
RAY_CLIENT_PORTS = range(55000, 56000)
#: ``ray start --block`` prints this once its node is up (for a node joining a cluster: registered with the GCS).
NODE_UP = "This command will now block forever"


def federation_scenario(write_scenario, enron_corpus, path: Path, runs: Path, *, rounds: int = ROUNDS,
                        processes: int = 2) -> Path:
    """4 clients in 2 workers, all 4 needed every round (a lost client must come back for a round to close)."""
    return write_scenario(path, enron_corpus, runs, name="ray", seed=7, model={"name": "logreg"},
                          train={"batch_size": 8},
                          federation={"clients": 4, "clients_per_round": 4, "min_clients": 4, "rounds": rounds,
                                      "processes": processes})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, write_scenario, enron_corpus, run_traces) -> Path:
    """The run directory of the scenario run with local client processes."""
    root = tmp_path_factory.mktemp("local")
    scenario = federation_scenario(write_scenario, enron_corpus, root / "ray.toml", root / "runs")
    assert main(["simulate", str(scenario), "--insecure"]) == 0
    return run_traces.only_run_dir(root / "runs")


def free_port(ports: range) -> int:
    """A port of ``ports`` that nothing listens on now, starting at a random one."""
    start = random.randrange(len(ports))
    for offset in range(len(ports)):
        port = ports[(start + offset) % len(ports)]
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {ports}")


def private_tmpdir() -> str:
    """A private, short (Unix socket paths are limited to ~107 bytes) directory for a cluster's files."""
    return tempfile.mkdtemp(prefix="fgray-", dir="/tmp")


def remove_tmpdir(directory: str) -> None:
    if not os.environ.get("KEEP_RAY_TMPDIR"):
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def ray_env(monkeypatch) -> Iterator[None]:
    """Ray's settings for one test, all put back after it: ray.init sets variables of its own (RAY_AUTH_MODE)
    and, called in this process, its own SIGTERM handler; no RAY_ADDRESS from outside."""
    environment = dict(os.environ)
    sigterm = signal.getsignal(signal.SIGTERM)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # CI has no network to report to
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield
    if ray.is_initialized():
        ray.shutdown()
    os.environ.clear()
    os.environ.update(environment)
    signal.signal(signal.SIGTERM, sigterm)


@pytest.fixture
def ray_tmpdir(ray_env, monkeypatch) -> Iterator[str]:
    """A private RAY_TMPDIR for the cluster a run starts (where it would find another cluster: it finds none)."""
    directory = private_tmpdir()
    monkeypatch.setenv("RAY_TMPDIR", directory)
    yield directory
    remove_tmpdir(directory)


@dataclass
class RayNode:
    """A node started by ``ray start ... --block`` in a session of its own; killing the session removes it."""

    process: subprocess.Popen
    tmpdir: str

    @classmethod
    def start(cls, *args: str, env: dict[str, str]) -> RayNode:
        """Start a node with ``args``, without the log monitor (it streams worker logs to drivers, which the runs
        here turn off): Ray gives a starting node a fixed 30 s to register its raylet, and on a starved machine
        every helper process that starts with it takes CPU from the raylet and the GCS."""
        tmpdir = private_tmpdir()
        process = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--block",
                                    "--dashboard-agent-listen-port=0", "--include-log-monitor=false", *args],
                                   stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**env, "RAY_TMPDIR": tmpdir}, start_new_session=True)
        node = cls(process, tmpdir)
        output = []
        assert process.stdout is not None
        for line in process.stdout:  # ends when the node is up, or with the output when ray start failed
            output.append(line)
            if NODE_UP in line:
                break
        else:
            node.stop()
            raise AssertionError(f"ray start failed (load average {os.getloadavg()}):\n" + "".join(output))
        # keep reading what it prints (a node that died), so that it never blocks on a full pipe
        threading.Thread(target=process.stdout.read, daemon=True).start()
        return node

    @property
    def address(self) -> str:
        """The GCS address of a head node (``ray start`` writes it before the node is up)."""
        return (Path(self.tmpdir) / "ray" / "ray_current_cluster").read_text().strip()

    def kill(self) -> None:
        """SIGKILL every process of the node's session (ray start, GCS, raylet, its workers: Ray puts some in
        process groups of their own) until none is left."""
        deadline = time.monotonic() + REAP_TIMEOUT_S
        while (left := session_pids(self.process.pid)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.poll()  # reap ray start itself, our child
            time.sleep(0.05)
        assert self.process.wait() != 0 and left == [], process_names(left)

    def stop(self) -> None:
        self.kill()
        remove_tmpdir(self.tmpdir)


#: The environment of the nodes ``ray start`` starts here. Without a token: Ray reads RAY_AUTH_MODE once per
#: process, so pytest, which imported Ray before any test ran, could not present one to a cluster.
NODE_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def shared_head() -> Iterator[RayNode]:
    """One head node with 2 CPUs for the module's tests on an existing cluster."""
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    # every port ephemeral but the Ray client server's (10001 by default), which must be a fixed one
    node = RayNode.start("--head", "--port=0", f"--ray-client-server-port={free_port(RAY_CLIENT_PORTS)}",
                         "--num-cpus=2", "--include-dashboard=false", "--no-monitor",  # no autoscaler: fixed nodes
                         env={**environment, **NODE_ENV})
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def head(shared_head, ray_env) -> RayNode:
    """The shared head, for one test (Ray's settings put back after it)."""
    return shared_head


def session_pids(session: int) -> list[int]:
    """Processes in session ``session`` (field 6 of /proc/PID/stat)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == session:
                pids.append(int(entry.name))
    return pids


def process_names(pids: list[int]) -> list[str]:
    names = []
    for pid in pids:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue
    return names


def niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def wait_until_session_empty(session: int) -> list[str]:
    """Wait until nothing is left in ``session`` (processes exit a moment after being killed); what is left, by
    name."""
    deadline = time.monotonic() + REAP_TIMEOUT_S
    while (left := session_pids(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return process_names(left)


def descendants_named(prefix: str) -> list[int]:
    """Processes below this one (say, the workers of a cluster it started) whose name starts with ``prefix``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found = []
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor not in (None, 0, 1, os.getpid()):
            ancestor = parents.get(ancestor)
        if ancestor == os.getpid() and any(name.startswith(prefix) for name in process_names([pid])):
            found.append(pid)
    return found


#: ``fedgrad ARGS`` as a terminal starts it, where Ctrl-C (SIGINT) interrupts it: a process inherits an ignored
#: SIGINT (pytest run as a background job of a non-interactive shell, say), and Python keeps ignoring it then.
FEDGRAD_AS_IN_A_TERMINAL = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                            "from fedgrad.cli.main import main; sys.exit(main(sys.argv[1:]))")


def start_simulate(scenario: Path, *args: str) -> subprocess.Popen:
    """``fedgrad simulate SCENARIO --launcher ray ARGS`` in a session of its own."""
    return subprocess.Popen([sys.executable, "-c", FEDGRAD_AS_IN_A_TERMINAL, "simulate", str(scenario), "--launcher",
                             "ray", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def run_to_the_end(process: subprocess.Popen) -> None:
    """Wait for a ``start_simulate`` run to succeed; the cluster it started must end with it (no raylet, GCS or
    worker left in the run's session)."""
    try:
        _, err = process.communicate(timeout=START_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err.decode()
    assert wait_until_session_empty(process.pid) == []


def test_without_ray_the_launcher_is_a_clear_error_before_any_work(tmp_path, write_scenario, enron_corpus,
                                                                     monkeypatch, capsys):
    scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["simulate", str(scenario), "--launcher", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--launcher ray needs Ray" in err and "pip install" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_ray_options_need_the_ray_launcher(tmp_path, write_scenario, enron_corpus, capsys):
    scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs")
    assert main(["simulate", str(scenario), "--ray-cpus", "2"]) == 2
    assert "only used with --launcher ray" in capsys.readouterr().err
    assert main(["simulate", str(scenario), "--launcher", "ray", "--ray-cpus", "0"]) == 2
    assert "--ray-cpus must be a positive number of CPUs" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_local_ray_cluster_learns_what_local_processes_learn(tmp_path, ray_tmpdir, reference, write_scenario,
                                                               enron_corpus, run_traces):
    scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs")
    process = start_simulate(scenario, "--insecure", "--ray-cpus", "1")
    run_to_the_end(process)
    run_dir = run_traces.only_run_dir(tmp_path / "runs")
    records = run_traces.metrics(run_dir)
    assert len(records) == ROUNDS and all(record.clients_used == 4 for record in records)
    assert run_traces.learned(records) == run_traces.learned(run_traces.metrics(reference))
    ours, theirs = run_traces.final_model(run_dir, ROUNDS), run_traces.final_model(reference, ROUNDS)
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[name], theirs[name]) for name in ours)
    assert json.loads((run_dir / "summary.json").read_text())["processes"] == 2


@pytest.fixture
def second_node(head) -> Iterator[RayNode]:
    """A second node with 2 CPUs joined to the shared head (one client worker fits on either)."""
    node = RayNode.start(f"--address={head.address}", "--num-cpus=2", env={**os.environ, **NODE_ENV})
    try:
        yield node
    finally:
        node.stop()


def test_a_run_survives_losing_a_node(tmp_path, head, second_node, reference, write_scenario, enron_corpus,
                                      run_traces, monkeypatch):
    """Right after round 1's record is written, the node that is not the head is killed with the client
    worker Ray spread onto it. Ray reruns that worker on the head, its clients rejoin, round 2 waits for them
    (min_clients = all), and the run ends with the very model an undisturbed run reaches."""
    joins: dict[str, int] = {}
    removed_after_rounds: list[int] = []
    original_join, original_train_round = ClientRegistry.join, Coordinator._train_round

    def counting_join(registry, client_id, token, n_examples):
        joins[client_id] = joins.get(client_id, 0) + 1
        return original_join(registry, client_id, token, n_examples)

    async def train_round(coordinator, number):
        if number == 2:  # round 1 is recorded: metrics.jsonl has its line
            removed_after_rounds.append(len(run_traces.metrics(run_traces.only_run_dir(tmp_path / "runs"))))
            # the fleet connected this process to the head, the node it must keep
            (head_node,) = [node for node in ray.nodes() if node["Alive"]
                            and "node:__internal_head__" in node["Resources"]]
            assert ray.get_runtime_context().get_node_id() == head_node["NodeID"]
            second_node.kill()
        return await original_train_round(coordinator, number)

    monkeypatch.setattr(ClientRegistry, "join", counting_join)
    monkeypatch.setattr(Coordinator, "_train_round", train_round)
    scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs")
    assert main(["simulate", str(scenario), "--launcher", "ray", "--ray-address", head.address]) == 0
    assert removed_after_rounds == [1]
    # the clients of the worker on the lost node joined again, the others once
    assert sorted(joins.values()) == [1, 1, 2, 2], joins
    run_dir = run_traces.only_run_dir(tmp_path / "runs")
    records = run_traces.metrics(run_dir)
    assert [record.clients_used for record in records] == [4] * ROUNDS
    assert run_traces.learned(records) == run_traces.learned(run_traces.metrics(reference))
    ours, theirs = run_traces.final_model(run_dir, ROUNDS), run_traces.final_model(reference, ROUNDS)
    assert all(np.array_equal(ours[name], theirs[name]) for name in theirs)
    assert not ray.is_initialized()  # the fleet disconnected; the cluster it did not start is still up
    assert head.process.poll() is None and "raylet" in process_names(session_pids(head.process.pid))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_a_run_stops_its_ray_cluster(tmp_path, ray_tmpdir, signum, write_scenario, enron_corpus,
                                              run_traces):
    """SIGTERM to the process (``kill``), or SIGINT to its process group (Ctrl-C in a terminal), once round 1
    is recorded: the run stops early, and the cluster it started (raylet, GCS, the workers) goes with it. Its client
    workers ran at its own priority."""
    scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs",
                                   rounds=100000)
    process = start_simulate(scenario)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not list((tmp_path / "runs").glob("*/metrics.jsonl")):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
            time.sleep(0.05)
        names = process_names(session_pids(process.pid))
        assert "raylet" in names and "gcs_server" in names, names
        # the client workers run at the run's priority, as local client processes do (Ray's default: 15 below)
        workers = [pid for pid in session_pids(process.pid) if process_names([pid]) == ["ray::host_clien"]]
        assert len(workers) == 2 and {niceness(pid) for pid in workers} == {niceness(process.pid)}
        if signum == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=EXIT_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == (130 if signum == signal.SIGINT else 2), err.decode()
    assert "Traceback" not in err.decode(), err.decode()[-4000:]  # (what came with it, when it fails)
    assert wait_until_session_empty(process.pid) == []
    run_dir = run_traces.only_run_dir(tmp_path / "runs")
    assert not (run_dir / "summary.json").exists()


def test_stopping_a_run_on_an_existing_cluster_cancels_its_workers_and_leaves_the_cluster(tmp_path, head,
                                                                                          write_scenario,
                                                                                          enron_corpus):
    scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs",
                                   rounds=100000)
    process = start_simulate(scenario, "--ray-address", head.address)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not list((tmp_path / "runs").glob("*/metrics.jsonl")):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
            time.sleep(0.05)
        assert len(descendants_named("ray::host_clien")) == 2  # the run's two client workers, on our cluster
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=EXIT_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 2 and "terminated by SIGTERM" in err.decode(), err.decode()
    deadline = time.monotonic() + REAP_TIMEOUT_S
    while descendants_named("ray::host_clien") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert descendants_named("ray::host_clien") == []  # its workers were cancelled
    assert wait_until_session_empty(process.pid) == []  # it started no Ray processes of its own
    ray.init(address=head.address, log_to_driver=False)  # and the cluster it did not start still works
    assert ray.get(ray.remote(lambda: "still up").remote()) == "still up"


def test_more_workers_than_cpus_share_them_and_all_clients_train_from_round_1(tmp_path, head, write_scenario,
                                                                                enron_corpus, run_traces):
    """4 workers of one client each on the 2-CPU head: half a CPU each, all four running at once."""
    scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs",
                                   rounds=1, processes=4)
    assert main(["simulate", str(scenario), "--launcher", "ray", "--ray-address", head.address]) == 0
    (record,) = run_traces.metrics(run_traces.only_run_dir(tmp_path / "runs"))
    assert record.clients_used == 4


def test_no_round_starts_before_every_worker_has_its_cpus(tmp_path, head, write_scenario, enron_corpus, run_traces,
                                                          monkeypatch):
    """The workers fit on the head's 2 CPUs, but another job holds both: the run waits, saying so, and the
    coordinator starts waiting for clients only once that job has freed them and every worker runs; all four
    clients then train from round 1. (Without the reservation the coordinator would start at once, with clients
    missing until their worker gets a CPU.)"""
    ray.init(address=head.address, log_to_driver=False)  # the run uses this connection

    class OtherJob:
        def running(self) -> bool:
            return True

    other_job: Any = ray.remote(num_cpus=2)(OtherJob).remote()
    assert ray.get(other_job.running.remote())  # it holds both CPUs now
    held_when_coordinator_waited: list[bool] = []

    def free_the_cpus() -> None:
        nonlocal other_job
        if other_job is not None:
            ray.kill(other_job)
            other_job = None

    class OnWaiting(logging.Handler):  # the run says it waits for CPUs: the other job ends
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for the Ray cluster to free" in record.getMessage():
                free_the_cpus()

    original_await_clients = Coordinator._await_clients

    async def await_clients(coordinator):
        held_when_coordinator_waited.append(other_job is not None)
        free_the_cpus()  # (so that a run that did not wait still ends)
        return await original_await_clients(coordinator)

    monkeypatch.setattr(Coordinator, "_await_clients", await_clients)
    monkeypatch.setattr("fedgrad.launchers.ray.RESERVATION_NOTICE_S", 0.0)  # say it as soon as the run waits
    handler = OnWaiting()
    logging.getLogger("fedgrad.simulate").addHandler(handler)
    try:
        scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs",
                                       rounds=1)
        assert main(["simulate", str(scenario), "--launcher", "ray", "--ray-address", head.address]) == 0
    finally:
        logging.getLogger("fedgrad.simulate").removeHandler(handler)
        free_the_cpus()
    assert held_when_coordinator_waited == [False]
    (record,) = run_traces.metrics(run_traces.only_run_dir(tmp_path / "runs"))
    assert record.clients_used == 4
    assert {group["state"] for group in ray.util.placement_group_table().values()} == {"REMOVED"}  # CPUs freed


def test_workers_that_cannot_all_run_are_refused_before_the_run(tmp_path, head, write_scenario, enron_corpus,
                                                                 capsys):
    scenario = federation_scenario(write_scenario, enron_corpus, tmp_path / "ray.toml", tmp_path / "runs",
                                   processes=4)
    assert main(["simulate", str(scenario), "--launcher", "ray", "--ray-address", head.address,
                 "--ray-cpus", "1"]) == 2
    err = capsys.readouterr().err
    assert ("4 client workers x 1 CPUs do not all fit on the Ray cluster (1 node with 2 CPUs, room for 2): use "
            "--ray-cpus 0.5 or less, or federation.processes = 2, or a larger cluster") in err
    assert "Traceback" not in err and not list((tmp_path / "runs").glob("*/metrics.jsonl"))


@pytest.mark.parametrize(("nodes", "workers", "share"), [
    ([2.0], 2, 1.0),          # one CPU each: the default, when it fits
    ([16.0], 4, 1.0),         # never more than one by default
    ([2.0], 4, 0.5),
    ([2.0], 3, 0.6666),       # rounded down to Ray's 1/10,000 CPU
    ([2.0, 2.0], 3, 1.0),     # two on one node, one on the other
    ([1.0, 3.0], 3, 1.0),
    ([1.5, 1.5], 3, 0.75),    # a worker runs on one node: 1.5 + 1.5 CPUs hold two workers of 1 CPU, not three
])
def test_a_worker_cpu_share_lets_every_worker_run_at_once(nodes, workers, share):
    assert worker_cpus(nodes, workers) == share
    assert worker_cpus(nodes, workers, share) == share  # the same share, asked for, fits


def test_a_cpu_share_that_does_not_fit_is_a_one_line_error_saying_what_fits():
    with pytest.raises(ConfigError, match=r"^3 client workers x 1.5 CPUs do not all fit on the Ray cluster "
                                          r"\(2 nodes with 2 \+ 2 CPUs, room for 2\): use --ray-cpus 1 or less, or "
                                          r"federation.processes = 2, or a larger cluster$"):
        worker_cpus([2.0, 2.0], 3, 1.5)
    with pytest.raises(ConfigError, match=r"room for 0\): use --ray-cpus 2 or less, or a larger cluster$"):
        worker_cpus([2.0], 1, 3.0)
    with pytest.raises(ConfigError, match=r"^the Ray cluster \(1 node with 0 CPUs\) has no room for 2 client"):
        worker_cpus([0.0], 2)


@pytest.mark.slow
def test_ray_workers_run_a_user_model_and_strategy(tmp_path, ray_tmpdir, custom_scenario, run_traces):
    """The model's module is in the scenario's folder only: each Ray worker imports it from there."""
    process = start_simulate(custom_scenario(federation={"processes": 2}), "--insecure")
    run_to_the_end(process)
    run_dir = run_traces.only_run_dir(tmp_path / "runs")
    records = run_traces.metrics(run_dir)
    assert [r.round for r in records] == [1, 2] and all(r.clients_used == 3 for r in records)
    assert "global_model/body.0.weight" in run_traces.final_model(run_dir, 2)
