"""The fault-injection suite's shared pieces: its scenario, real processes, in-process federations, and the tally.

Every test here injects faults (killed processes) or sends bad input, and records each one in the
session's :class:`Tally`. The tally counts *measured outcomes*, not passing tests:

* a fault is *survived* only when the test measured, from what the run left behind, that the run finished
  (every round recorded once, ``summary.json`` written), that its final model equals the reference run's
  (where the test has one), and that no round record or checkpoint was lost or corrupted
  (:func:`measure_run`); a fault whose outcome was never measured counts as not survived;
* a bad input is *rejected* only when the test observed the refusal (the status code or exit code and the
  message it got) and reported it with :meth:`BadInput.refused`.

The measurements are recorded before the test asserts on them, so a failing run shows in the tally as a
fault not survived or data lost, with what was measured, instead of vanishing with the test. At the end of the
session the tally is printed and written to ``fault-tally.json`` in pytest's temporary directory (or to
``$FEDGRAD_FAULT_TALLY``), never into the repository.
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
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import numpy as np
import pytest

from fedgrad.experiments.run import OpenedRun, RoundProgress, open_run
from fedgrad.results.schema import RoundRecord
from fedgrad.security import create_pki
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import PROTOCOL_VERSION, ClientSecurity, ServerSecurity
from fedgrad.transport.codec import PayloadBuffer, decode_tensors, split_payload
from fedgrad.transport.convert import manifest_from_pb
from server.coordinator import Coordinator
from server.service import start_server

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunOutcome:
    """What :func:`measure_run` read from a run directory after a fault."""

    finished: bool                 # every round 1..R recorded exactly once and summary.json says R rounds
    model_matches: bool | None     # final model bit-identical to the reference (None: the test has none)
    rounds_lost: int               # rounds of 1..R with no record
    files_corrupt: int             # checkpoints that fail their digest, unparseable metrics or summary lines
    detail: str = ""

    @property
    def survived(self) -> bool:
        return self.finished and self.model_matches is not False and not self.rounds_lost and not self.files_corrupt


def measure_run(run_dir: Path, rounds: int, reference_model: Mapping[str, np.ndarray] | None = None,
                damaged: Sequence[Path] = (), *, summary: bool = True) -> RunOutcome:
    """Measure a run's outcome from its files alone: records, summary, checkpoints and final model.

    ``damaged`` names files the test corrupted on purpose (they are not the run's fault if still there);
    ``summary=False`` for an in-process federation (:meth:`Lab.federation`), which writes no ``summary.json``.
    """
    import numpy as np

    from server.checkpoint import CheckpointError, Checkpoints, load_checkpoint

    problems: list[str] = []
    corrupt = 0
    rounds_seen: list[int] = []
    metrics = run_dir / "metrics.jsonl"
    for line in (metrics.read_text(encoding="utf-8").splitlines() if metrics.exists() else []):
        try:
            rounds_seen.append(int(json.loads(line)["round"]))
        except (ValueError, KeyError, TypeError):
            corrupt += 1
            problems.append(f"bad metrics line {line[:60]!r}")
    summary_rounds = None
    if (run_dir / "summary.json").exists():
        try:
            summary_rounds = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["rounds"]
        except (ValueError, KeyError, TypeError):
            corrupt += 1
            problems.append("summary.json unreadable")
    damaged_paths = {Path(d).resolve() for d in damaged}
    for path in Checkpoints(run_dir).files() if (run_dir / "checkpoint").exists() else []:
        if path.resolve() in damaged_paths:
            continue
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            corrupt += 1
            problems.append(str(exc))
    lost = len(set(range(1, rounds + 1)) - set(rounds_seen))
    finished = rounds_seen == list(range(1, rounds + 1)) and (summary_rounds == rounds or not summary)
    if not finished:
        problems.append(f"rounds recorded {rounds_seen}, summary says {summary_rounds}")
    model_matches = None
    if reference_model is not None:
        final = run_dir / "checkpoint" / f"round-{rounds:06d}.npz"
        try:
            with np.load(final) as archive:
                model = {n: archive[n] for n in archive.files if n.startswith("global_model/")}
            model_matches = model.keys() == reference_model.keys() and all(
                np.array_equal(model[n], reference_model[n]) for n in model)
        except (OSError, ValueError) as exc:
            model_matches = False
            problems.append(f"final model unreadable: {exc}")
        if not model_matches:
            problems.append("final model differs from the reference")
    return RunOutcome(finished, model_matches, lost, corrupt, "; ".join(problems))


class Fault:
    """One injected fault; its outcome is what the test measured (:meth:`measured`), nothing else."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.outcome: RunOutcome | None = None

    def measured(self, outcome: RunOutcome) -> RunOutcome:
        self.outcome = outcome
        return outcome


class BadInput:
    """One bad input; it counts as rejected only once the test reports the refusal it observed."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.evidence: str | None = None

    def refused(self, evidence: object) -> None:
        """Record the observed refusal (a status code and message, an exit code and error line)."""
        self.evidence = str(evidence)


@dataclass
class Tally:
    """Faults and bad inputs of the whole session, by measured outcome (see the module docstring)."""

    faults: list[Fault] = field(default_factory=list)
    bad_inputs: list[BadInput] = field(default_factory=list)
    extra_lost: int = 0
    path: Path | None = None

    @contextmanager
    def fault(self, what: str) -> Iterator[Fault]:
        record = Fault(what)
        self.faults.append(record)
        yield record

    @contextmanager
    def bad_input(self, what: str) -> Iterator[BadInput]:
        record = BadInput(what)
        self.bad_inputs.append(record)
        yield record

    def lost(self, count: int) -> None:
        """Updates or records that should exist and do not, measured by a test outside a run outcome."""
        self.extra_lost += count

    @property
    def faults_injected(self) -> int:
        return len(self.faults)

    @property
    def faults_survived(self) -> int:
        return sum(1 for f in self.faults if f.outcome is not None and f.outcome.survived)

    @property
    def bad_inputs_tried(self) -> int:
        return len(self.bad_inputs)

    @property
    def bad_inputs_rejected(self) -> int:
        return sum(1 for b in self.bad_inputs if b.evidence is not None)

    @property
    def data_lost(self) -> int:
        return self.extra_lost + sum(f.outcome.rounds_lost + f.outcome.files_corrupt
                                     for f in self.faults if f.outcome is not None)

    def as_dict(self) -> dict[str, object]:
        kinds: dict[str, int] = {}
        records: list[Fault | BadInput] = [*self.faults, *self.bad_inputs]
        for record in records:
            kinds[record.kind] = kinds.get(record.kind, 0) + 1
        return {"faults_injected": self.faults_injected, "faults_survived": self.faults_survived,
                "faults_unmeasured": sum(1 for f in self.faults if f.outcome is None),
                "bad_inputs_tried": self.bad_inputs_tried, "bad_inputs_rejected": self.bad_inputs_rejected,
                "data_lost": self.data_lost, "by_kind": dict(sorted(kinds.items())),
                "faults_not_survived": [{"kind": f.kind, "detail": f.outcome.detail if f.outcome else "not measured"}
                                        for f in self.faults if f.outcome is None or not f.outcome.survived],
                "bad_inputs_not_rejected": [b.kind for b in self.bad_inputs if b.evidence is None]}


TALLY = Tally()


@pytest.fixture(scope="session")
def tally(tmp_path_factory) -> Tally:
    if TALLY.path is None:
        override = os.environ.get("FEDGRAD_FAULT_TALLY")
        TALLY.path = Path(override) if override else tmp_path_factory.getbasetemp() / "fault-tally.json"
    return TALLY


def pytest_terminal_summary(terminalreporter) -> None:
    if not (TALLY.faults or TALLY.bad_inputs) or TALLY.path is None:
        return
    TALLY.path.parent.mkdir(parents=True, exist_ok=True)
    TALLY.path.write_text(json.dumps(TALLY.as_dict(), indent=2) + "\n", encoding="utf-8")
    t = TALLY
    terminalreporter.write_line(
        f"fault tally (measured): {t.faults_injected} faults injected, {t.faults_survived} survived; "
        f"{t.bad_inputs_tried} bad inputs tried, {t.bad_inputs_rejected} seen rejected; data lost or corrupt: "
        f"{t.data_lost} ({TALLY.path})")


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

    coordinator: Coordinator
    opened: OpenedRun
    port: int
    run: asyncio.Task[Any]  # the asyncio task of coordinator.run()

    @property
    def run_dir(self) -> Path:
        return self.opened.prepared.writer.run_dir

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token_file(self) -> Path:
        return self.opened.token_file

    def records(self) -> list[RoundRecord]:
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
    measure_run = staticmethod(measure_run)

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
        # a stand-in for the RoundProgress of `fedgrad run`, with the one method the coordinator calls
        progress = cast(RoundProgress, SimpleNamespace(on_round=opened.prepared.writer.log_round))
        coordinator = opened.coordinator(progress)
        server, port = await start_server(coordinator, "127.0.0.1", port,
                                          ServerSecurity.from_dir(self.pki, mutual=mutual))
        run = asyncio.create_task(coordinator.run())
        try:
            yield Federation(coordinator, opened, port, run)
        finally:
            # The server goes first, like a dead process: a coordinator cancelled while still serving would
            # tell whichever client is polling at that instant that the run is over (its shutdown), and a test
            # that resumes the run would wait for that client forever.
            await server.stop(None)
            run.cancel()

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
        request = pb.TaskRequest(clients=[pb.ClientPoll(credentials=self.credentials, last_task_id=self.last_task_id)],
                                 wait_s=wait_s)
        async for message in self.stub.GetTask(request, timeout=wait_s + 20):
            if header is None:
                header, buffer = message.header, PayloadBuffer(message.header.payload_bytes)
            else:
                buffer.append(message.data)
        self.last_task_id = header.task_id or self.last_task_id
        carries_model = header.kind in (pb.TRAIN, pb.EVALUATE)
        model = decode_tensors(manifest_from_pb(header.tensors), buffer.payload()) if carries_model else None
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
        return [pb.AnswerChunk(update=self.header(task, payload, **fields)),
                *(pb.AnswerChunk(data=piece) for piece in split_payload(payload))]

    async def send(self, messages, stub=None) -> list:
        """One Answer call carrying ``messages``: its acknowledgements."""
        async def stream():
            for message in messages:
                yield message

        return [ack async for ack in (stub or self.stub).Answer(stream(), timeout=10)]

    async def refused(self, what: str, messages, code, fragment: str, stub=None) -> str:
        """Send ``messages`` in one Answer call: every answer in it must be refused with ``code`` and ``fragment``
        (in its acknowledgement, or, for a call that breaks the framing or the size limit, the call's status)."""
        with self.tally.bad_input(what) as bad:
            try:
                outcomes = [(_STATUS[ack.status], ack.detail) for ack in await self.send(messages, stub)]
            except grpc.aio.AioRpcError as error:
                outcomes = [(error.code(), error.details() or "")]
            assert outcomes, what
            if all(got == code and fragment.lower() in details.lower() for got, details in outcomes):
                bad.refused("; ".join(f"{got.name}: {details}" for got, details in outcomes))
            for got, details in outcomes:
                assert got == code, (what, got, details)
                assert fragment.lower() in details.lower(), (what, details)
        return outcomes[0][1]

    async def update(self, what: str, task, payload: bytes, code, fragment: str, **fields) -> str:
        return await self.refused(what, self.messages(task, payload, **fields), code, fragment)

    async def accepted(self, task, payload: bytes, **fields) -> str:
        [ack] = await self.send(self.messages(task, payload, **fields))
        assert ack.status == 0, ack.detail
        return ack.detail


_STATUS = {code.value[0]: code for code in grpc.StatusCode}
