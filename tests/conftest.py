"""What the suites that run whole federations share: a small Enron-layout corpus, scenario files written from
the few settings a suite cares about, and readers for what a run leaves behind.

Test modules cannot import a conftest (pytest runs with ``--import-mode=importlib``), so the helpers reach
them as fixtures: ``enron_corpus``, ``write_enron_corpus``, ``write_scenario``, ``run_traces`` and
``custom_scenario`` (the user model and strategy of ``examples/custom_model``, outside the repository).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedgrad.results import read_metrics
from fedgrad.results.schema import PhaseTimes, RoundRecord, Traffic

SPAM_WORDS = "free money offer winner click cash prize urgent discount credit loan cheap deal guaranteed".split()
HAM_WORDS = "meeting project schedule report team lunch attached review budget deadline minutes agenda notes".split()
COMMON_WORDS = "the and to of a in for is on that with this you it be".split()

#: What every test federation has unless a suite says otherwise: 3 IID clients, all sampled each round, at
#: least 2 needed, the book's model.
SCENARIO_DEFAULTS: Mapping[str, Mapping[str, object]] = {
    "data": {"partition": "iid", "min_count": 1},
    "model": {"name": "book"},
    "federation": {"clients": 3, "clients_per_round": 3, "min_clients": 2},
}


def write_enron_corpus(root: Path, class_words: Mapping[str, Sequence[str]], common_words: Sequence[str], *,
                       rng: np.random.Generator, per_class: int = 60, own_share: float = 0.5,
                       body_words: int = 25) -> Path:
    """One folder per class of 'Subject: ...' text files (the Enron-spam layout the loaders read).

    A body word is one of its class's words with probability ``own_share``, else a common word; the subject is
    three class words. Everything is drawn from ``rng``, so a seeded generator gives the same corpus every time.
    """
    for label, own in class_words.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            body = [rng.choice(own) if rng.random() < own_share else rng.choice(common_words)
                    for _ in range(body_words)]
            (root / label / f"{i:04d}.{label}.txt").write_text(
                f"Subject: {' '.join(rng.choice(own, 3))}\n{' '.join(body)}\n", encoding="utf-8")
    return root


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def write_scenario(path: Path, corpus: Path, runs: Path | None = None, *, name: str, seed: int | None = None,
                   **sections: Mapping[str, object]) -> Path:
    """Write the scenario ``name`` over ``corpus`` to ``path``: :data:`SCENARIO_DEFAULTS` with ``sections``
    (``train={"lr": 0.5}``, ``privacy={...}``) merged in, its runs going below ``runs`` when given."""
    tables = {section: dict(values) for section, values in SCENARIO_DEFAULTS.items()}
    tables["data"]["corpus"] = corpus
    for section, values in sections.items():
        tables.setdefault(section, {}).update(values)
    if runs is not None:
        tables["output"] = {"dir": runs}
    lines = [f"name = {_toml_value(name)}"] + ([f"seed = {seed}"] if seed is not None else [])
    for section, values in tables.items():
        if values:
            lines += [f"[{section}]", *(f"{key} = {_toml_value(value)}" for key, value in values.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class RunTraces:
    """Reading what a run leaves behind: its directory, its round records, its checkpointed model, and any
    process still working on it."""

    @staticmethod
    def only_run_dir(root: Path) -> Path:
        """The one run directory below ``root`` (a scenario's ``output.dir``)."""
        dirs = [path for path in root.iterdir() if path.is_dir()] if root.exists() else []
        assert len(dirs) == 1, dirs
        return dirs[0]

    @staticmethod
    def metrics(run_dir: Path) -> list[RoundRecord]:
        """The round records logged so far (none before the first round, so it can be polled)."""
        return read_metrics(run_dir)

    @staticmethod
    def learned(records: Sequence[RoundRecord]) -> list[RoundRecord]:
        """The parts of round records that must not depend on timing."""
        return [dataclasses.replace(record, time_s=PhaseTimes(), moved=Traffic()) for record in records]

    @staticmethod
    def final_model(run_dir: Path, rounds: int) -> dict[str, np.ndarray]:
        """The global model after ``rounds`` rounds, from that round's checkpoint."""
        with np.load(run_dir / "checkpoint" / f"round-{rounds:06d}.npz") as archive:
            return {name: archive[name] for name in archive.files if name.startswith("global_model/")}

    @staticmethod
    def pids_mentioning(marker: str) -> list[int]:
        """Processes (other than this one) whose command line contains ``marker``, such as a run's path."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids


@pytest.fixture(scope="session")
def enron_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 spam and 60 ham emails whose classes share no class words: learnable in a round or two. Written once
    per session; tests only read it."""
    return write_enron_corpus(tmp_path_factory.mktemp("enron-corpus"), {"spam": SPAM_WORDS, "ham": HAM_WORDS},
                              COMMON_WORDS, rng=np.random.default_rng(0))


@pytest.fixture(name="write_enron_corpus", scope="session")
def _write_enron_corpus() -> Callable[..., Path]:
    """:func:`write_enron_corpus`, for a suite that needs other words than :func:`enron_corpus` has."""
    return write_enron_corpus


@pytest.fixture(name="write_scenario", scope="session")
def _write_scenario() -> Callable[..., Path]:
    """:func:`write_scenario`."""
    return write_scenario


@pytest.fixture(scope="session")
def run_traces() -> type[RunTraces]:
    """:class:`RunTraces`."""
    return RunTraces


#: The user model and strategy of examples/custom_model, as a scenario names them.
CUSTOM_MODEL, CUSTOM_STRATEGY = "spam_nets:make_two_layer", "server_momentum:FedAvgMomentum"


@pytest.fixture
def custom_scenario(tmp_path: Path, enron_corpus: Path) -> Callable[..., Path]:
    """``custom_scenario(**sections)``: the example's user model and strategy, copied to ``tmp_path / "lab"``
    (outside the repository and off ``sys.path``) next to the scenario that names them: 3 clients, 2 rounds, runs
    below ``tmp_path / "runs"``."""
    code = tmp_path / "lab"
    code.mkdir()
    example = Path(__file__).resolve().parents[1] / "examples" / "custom_model"
    for module in ("spam_nets.py", "server_momentum.py"):
        shutil.copy(example / module, code / module)

    def write(**sections: Mapping[str, object]) -> Path:
        tables: dict[str, dict[str, object]] = {
            "model": {"name": CUSTOM_MODEL}, "train": {"batch_size": 8, "lr": 0.05, "optimizer": "adam"},
            "federation": {"rounds": 2, "round_timeout_s": 60, "strategy": CUSTOM_STRATEGY}}
        for section, values in sections.items():
            tables.setdefault(section, {}).update(values)
        return write_scenario(code / "custom.toml", enron_corpus, tmp_path / "runs", name="custom", seed=1, **tables)

    return write


class LoopThread:
    """An asyncio loop in a daemon thread, for grpc.aio servers that blocking clients call into."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()
