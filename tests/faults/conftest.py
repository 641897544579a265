"""The fault-injection suite's shared pieces: its scenario, real processes, in-process federations, and the tally.

Every test here injects faults (killed processes) or sends bad input, and records each one in the
session's :class:`Tally`: faults injected and survived, bad inputs tried and rejected, data lost. At the
end of the session the tally is printed and written to ``runs/fault-tally.json``, the figures the
closing note reports. A fault counts as survived, and a bad input as rejected, only when the test's
checks after it passed (the ``with`` block ended without an exception).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from fedgrad.experiments.run import open_run
from fedgrad.security import create_pki
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import PROTOCOL_VERSION, ClientSecurity, ServerSecurity
from fedgrad.transport.codec import PayloadBuffer, decode_tensors, split_payload
from server.service import start_server

REPO = Path(__file__).resolve().parents[2]
TALLY_PATH = REPO / "runs" / "fault-tally.json"

@dataclass
class Tally:
    """Faults and bad inputs of the whole session (see the module docstring)."""

    faults_injected: int = 0
    faults_survived: int = 0
    bad_inputs_tried: int = 0
    bad_inputs_rejected: int = 0
    data_lost: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def fault(self, what: str) -> Iterator[None]:
        self.faults_injected += 1
        self.kinds[what] = self.kinds.get(what, 0) + 1
        yield
        self.faults_survived += 1

    @contextmanager
    def bad_input(self, what: str) -> Iterator[None]:
        self.bad_inputs_tried += 1
        self.kinds[what] = self.kinds.get(what, 0) + 1
        yield
        self.bad_inputs_rejected += 1

    def lost(self, count: int) -> None:
        """Rounds, updates or records that should exist and do not (tests assert it is 0, and count it)."""
        self.data_lost += count

    def as_dict(self) -> dict[str, object]:
        return {"faults_injected": self.faults_injected, "faults_survived": self.faults_survived,
                "bad_inputs_tried": self.bad_inputs_tried, "bad_inputs_rejected": self.bad_inputs_rejected,
                "data_lost": self.data_lost, "by_kind": dict(sorted(self.kinds.items()))}


TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return TALLY


def pytest_terminal_summary(terminalreporter) -> None:
    if not (TALLY.faults_injected or TALLY.bad_inputs_tried):
        return
    TALLY_PATH.parent.mkdir(exist_ok=True)
    TALLY_PATH.write_text(json.dumps(TALLY.as_dict(), indent=2) + "\n", encoding="utf-8")
    t = TALLY
    terminalreporter.write_line(
        f"fault tally: {t.faults_injected} faults injected, {t.faults_survived} survived; {t.bad_inputs_tried} bad "
        f"inputs tried, {t.bad_inputs_rejected} rejected; data lost: {t.data_lost} ({TALLY_PATH})")


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """A federation CA with the server certificate and client certificates 0..3."""
    directory = tmp_path_factory.mktemp("pki") / "tls"
    create_pki(directory, clients=4)
    return directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fedgrad_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedgrad.cli.main", *args]


class Processes:
    """Processes a test starts; whatever is still running at teardown is killed (by pid, in its own group)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        process = subprocess.Popen(fedgrad_command(*args), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True, cwd=REPO)
        log.close()
        self._started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL: no handler runs, no cleanup, like a machine losing power."""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self._started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    started = Processes(tmp_path / "process-logs")
    try:
        yield started
    finally:
        started.stop_all()


def wait_until(condition, timeout: float, what: str, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll_s)


async def wait_for(condition, timeout: float, what: str, poll_s: float = 0.005) -> None:
    """``wait_until`` for tests whose event loop also runs the coordinator."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(poll_s)


@dataclass
class Federation:
    """An in-process coordinator serving a run over TLS on localhost, with its run directory."""

    coordinator: object
    opened: object
    port: int
    run: object  # the asyncio task of coordinator.run()

    @property
    def run_dir(self) -> Path:
        return self.opened.prepared.writer.run_dir

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token_file(self) -> Path:
        return self.opened.token_file

    def records(self) -> list[dict]:
        return self.opened.prepared.writer.records


@dataclass
class Lab:
    """What a fault test works with: a scratch directory, the corpus, the CA, processes, the tally, and the
    readers of a run's traces (``tests/conftest.py``)."""

    tmp: Path
    corpus: Path
    pki: Path
    processes: Processes
    tally: Tally
    traces: type
    write_scenario: Callable[..., Path]

    # helpers, reachable from the test modules (which cannot import this conftest)
    wait_until = staticmethod(wait_until)
    wait_for = staticmethod(wait_for)
    free_port = staticmethod(free_port)

    @property
    def runs(self) -> Path:
        return self.tmp / "runs"

    def scenario(self, name: str = "scenario.toml", *, clients: int = 3, per_round: int = 3, rounds: int = 4,
                 min_clients: int = 2, timeout_s: float = 3.0, epochs: int = 1,
                 privacy: Mapping[str, object] | None = None) -> Path:
        """A fast scenario over the corpus (logistic regression, IID) writing its runs below :attr:`runs`."""
        return self.write_scenario(
            self.tmp / name, self.corpus, self.runs, name="faults", seed=5, model={"name": "logreg"},
            train={"epochs": epochs, "batch_size": 8, "lr": 0.5},
            federation={"clients": clients, "clients_per_round": per_round, "rounds": rounds,
                        "min_clients": min_clients, "round_timeout_s": timeout_s},
            privacy=privacy or {})

    @asynccontextmanager
    async def federation(self, scenario: Path, *, resume: Path | None = None, mutual: bool = False,
                         port: int = 0) -> AsyncIterator[Federation]:
        """The coordinator of ``scenario`` (or of the run ``resume`` names) serving TLS (``mutual``: mTLS),
        checkpointing each round."""
        opened = open_run(None if resume else scenario, resume=resume)
        coordinator = opened.coordinator(SimpleNamespace(on_round=opened.prepared.writer.log_round))
        server, port = await start_server(coordinator, "127.0.0.1", port,
                                          ServerSecurity.from_dir(self.pki, mutual=mutual))
        run = asyncio.create_task(coordinator.run())
        try:
            yield Federation(coordinator, opened, port, run)
        finally:
            run.cancel()
            await server.stop(None)

    def manual_client(self, channel, client_id: str, token: str, n_examples: int) -> ManualClient:
        return ManualClient(channel, client_id, token, n_examples, self.tally)

    def client_security(self):
        return ClientSecurity.from_dir(self.pki)

    def client_process(self, name: str, federation_or_address, run_dir: Path, ids: list[str],
                       connect_timeout_s: float = 60.0) -> subprocess.Popen:
        """``fedgrad client`` hosting ``ids`` of the run in ``run_dir`` (TLS, tokens from the run's file)."""
        address = getattr(federation_or_address, "address", federation_or_address)
        return self.processes.start(name, "client", "--server", address, "--shard-dir", str(run_dir / "data"),
                                    "--client-id", *ids, "--token-file", str(run_dir / "auth" / "client-tokens.json"),
                                    "--tls-dir", str(self.pki), "--connect-timeout", str(connect_timeout_s),
                                    "--insecure-key-bits")


@pytest.fixture
def lab(tmp_path, enron_corpus, pki, processes, tally, run_traces, write_scenario) -> Lab:
    return Lab(tmp_path, enron_corpus, pki, processes, tally, run_traces, write_scenario)



class ManualClient:
    """A client driven call by call from a test, to send what a real client never would.

    ``refused``/``update`` expect the coordinator to refuse and count the attempt as a bad input;
    ``accepted`` insists on acceptance.
    """

    def __init__(self, channel, client_id: str, token: str, n_examples: int, tally: Tally) -> None:
        self.stub = pb_grpc.CoordinatorStub(channel)
        self.client_id, self.token, self.n_examples, self.tally = client_id, token, n_examples, tally
        self.last_task_id = 0

    async def join(self):
        reply = await self.stub.Join(pb.JoinRequest(client_id=self.client_id, token=self.token,
                                                    n_examples=self.n_examples, protocol_version=PROTOCOL_VERSION),
                                     timeout=10)
        assert reply.accepted, reply.reason
        self.credentials = pb.Credentials(run_id=reply.run_id, client_id=self.client_id, token=self.token)
        return self.credentials

    async def next_task(self, wait_s: float = 2.0):
        """The next task after the last one seen (WAIT included): ``(header, model or None)``."""
        header, buffer = None, None
        request = pb.TaskRequest(credentials=self.credentials, last_task_id=self.last_task_id, wait_s=wait_s)
        async for message in self.stub.GetTask(request, timeout=wait_s + 20):
            if header is None:
                header, buffer = message.header, PayloadBuffer(message.header.payload_bytes)
            else:
                buffer.append(message.data)
        self.last_task_id = header.task_id or self.last_task_id
        model = decode_tensors(header.tensors, buffer.payload()) if header.kind in (pb.TRAIN, pb.EVALUATE) else None
        return header, model

    async def train_task(self):
        while True:
            header, model = await self.next_task()
            if header.kind == pb.TRAIN:
                return header, model

    def header(self, task, payload: bytes, **fields):
        encoding = pb.PAILLIER if task.HasField("privacy") and task.privacy.public_key else pb.PLAIN
        values = dict(credentials=self.credentials, task_id=task.task_id, round=task.round,
                      model_version=task.model_version, n_examples=self.n_examples, metrics={"loss": 0.5},
                      encoding=encoding, tensors=task.tensors, payload_bytes=len(payload)) | fields
        return pb.UpdateHeader(**values)

    def messages(self, task, payload: bytes, **fields) -> list:
        return [pb.UpdateChunk(header=self.header(task, payload, **fields)),
                *(pb.UpdateChunk(data=piece) for piece in split_payload(payload))]

    async def send(self, messages, stub=None):
        async def stream():
            for message in messages:
                yield message

        return await (stub or self.stub).SubmitUpdate(stream(), timeout=10)

    async def refused(self, what: str, messages, code, fragment: str, stub=None) -> str:
        """Send ``messages`` as one update stream, which must be refused with ``code`` and ``fragment``."""
        with self.tally.bad_input(what):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await self.send(messages, stub)
            assert caught.value.code() == code, (what, caught.value.code(), caught.value.details())
            assert fragment.lower() in caught.value.details().lower(), (what, caught.value.details())
        return caught.value.details()

    async def update(self, what: str, task, payload: bytes, code, fragment: str, **fields) -> str:
        return await self.refused(what, self.messages(task, payload, **fields), code, fragment)

    async def accepted(self, task, payload: bytes, **fields) -> str:
        return (await self.send(self.messages(task, payload, **fields))).detail
