"""The fault-injection suite's shared pieces: a small corpus and scenario, real processes, and the tally.

Every test here injects faults (killed processes) or sends bad input, and records each one in the
session's :class:`Tally`: faults injected and survived, bad inputs tried and rejected, data lost. At the
end of the session the tally is printed and written to ``runs/fault-tally.json``, the figures the
closing note reports. A fault counts as survived, and a bad input as rejected, only when the test's
checks after it passed (the ``with`` block ended without an exception).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fedgrad.security import create_pki

REPO = Path(__file__).resolve().parents[2]
TALLY_PATH = REPO / "runs" / "fault-tally.json"

SPAM_WORDS = "free money offer winner click cash prize urgent discount credit loan cheap deal guaranteed".split()
HAM_WORDS = "meeting project schedule report team lunch attached review budget deadline minutes agenda notes".split()
COMMON_WORDS = "the and to of a in for is on that with this you it be".split()


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


def write_corpus(root: Path, per_class: int = 60) -> Path:
    """An Enron-style corpus (ham/, spam/ of 'Subject: ...' files) whose classes share no class words."""
    rng = np.random.default_rng(0)
    for label, words in (("spam", SPAM_WORDS), ("ham", HAM_WORDS)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            body = [rng.choice(words) if rng.random() < 0.5 else rng.choice(COMMON_WORDS) for _ in range(25)]
            (root / label / f"{i:04d}.{label}.txt").write_text(
                f"Subject: {' '.join(rng.choice(words, 3))}\n{' '.join(body)}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """A federation CA with the server certificate and client certificates 0..3."""
    directory = tmp_path_factory.mktemp("pki") / "tls"
    create_pki(directory, clients=4)
    return directory


def write_scenario(path: Path, corpus: Path, runs: Path, *, clients: int = 3, per_round: int = 3, rounds: int = 4,
                   min_clients: int = 2, timeout_s: float = 3.0, epochs: int = 1, extra: str = "") -> Path:
    """A fast scenario over ``corpus`` (logistic regression, IID) writing its runs below ``runs``."""
    path.write_text(f"""
name = "faults"
seed = 5
[data]
corpus = "{corpus}"
partition = "iid"
min_count = 1
[model]
name = "logreg"
[train]
epochs = {epochs}
batch_size = 8
lr = 0.5
[federation]
clients = {clients}
clients_per_round = {per_round}
rounds = {rounds}
min_clients = {min_clients}
round_timeout_s = {timeout_s}
[output]
dir = "{runs}"
{extra}
""", encoding="utf-8")
    return path


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


def metrics_lines(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def only_run_dir(root: Path) -> Path:
    dirs = [path for path in root.iterdir() if path.is_dir()] if root.exists() else []
    assert len(dirs) == 1, dirs
    return dirs[0]


def final_model(run_dir: Path, rounds: int) -> dict[str, np.ndarray]:
    """The global model after ``rounds`` rounds, from that round's checkpoint."""
    with np.load(run_dir / "checkpoint" / f"round-{rounds:06d}.npz") as archive:
        return {name: archive[name] for name in archive.files if name.startswith("global_model/")}


def learned(records: list[dict]) -> list[dict]:
    """The parts of round records that must not depend on timing."""
    return [{key: value for key, value in record.items() if key not in ("time_s", "bytes")} for record in records]
