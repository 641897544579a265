"""Checkpoints: what a killed coordinator needs to carry on from its last completed round.

After every round the coordinator's whole :class:`~server.coordinator.FederationState` (global model,
strategy state, sampling RNG, round and model-version counters, the initial metrics) is written, with
the round records so far, to ``RUN_DIR/checkpoint/round-<NNNNNN>.npz``; the newest ``KEEP`` are kept.
Resuming from one and running the remaining rounds gives the same final model, bit for bit, as a run
that was never interrupted: sampling draws from the restored RNG, client seeds are a function of
(seed, round, client), and the plain aggregate is an exact integer sum (``fedgrad.modes.plain``).

Crash safety. A checkpoint is written to a temporary file, fsynced and renamed into place
(:func:`fedgrad.files.write_atomic`), so a kill mid-write leaves the previous checkpoint as it
was. Each file also carries a SHA-256 over its content; a file that fails to parse or to match its
digest (a truncated copy, a bad disk) is reported by name and the previous one is used instead. Only
when no checkpoint at all can be read does resuming stop, with an error: starting over silently
would throw away finished rounds.

The state is saved generically, field by field, so a field added to ``FederationState`` is saved too:
arrays by name (dicts of numpy arrays), numpy Generators by their bit-generator state, objects with
``state_dict()``/``load_state_dict()`` (strategies, and whatever else keeps server-side state) through
those, and plain JSON values as they are. A field of any other type fails the first save loudly,
instead of being silently left out of the checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedgrad.attacks import client_attack
from fedgrad.data import load_test, load_vocab
from fedgrad.errors import ConfigError, DataError
from fedgrad.files import PRIVATE_MODE, write_atomic
from fedgrad.results import CONFIG_FILE, SUMMARY_FILE, RunWriter
from fedgrad.results.schema import RoundRecord, from_json, to_json
from fedgrad.scenario import load_scenario
from server.coordinator import FederationState
from server.experiment import DATA_DIR, PreparedRun

log = logging.getLogger("fedgrad.server")

CHECKPOINT_DIR = "checkpoint"
FORMAT = "fedgrad-checkpoint"
VERSION = 1
#: Checkpoints kept: the newest, and one to fall back on if the newest turns out unreadable.
KEEP = 2

_META = "__meta__"
_FILE = re.compile(r"round-(\d{6,})\.npz")


class CheckpointError(DataError):
    """A checkpoint that cannot be used; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class Checkpoint:
    """A saved ``FederationState`` (in saved form) and the round records up to it."""

    path: Path
    completed_rounds: int
    records: list[RoundRecord]
    _meta_fields: dict[str, Any]
    _array_fields: dict[str, dict[str, np.ndarray]]

    def restore(self, state: FederationState) -> None:
        """Overwrite ``state`` (freshly built from the same scenario) with the saved one."""
        saved = set(self._meta_fields) | set(self._array_fields)
        expected = {f.name for f in dataclasses.fields(state)}
        if saved != expected:
            raise CheckpointError(f"{self.path}: saved state has fields {sorted(saved)}, this version of fedgrad "
                                  f"expects {sorted(expected)}")
        for name in sorted(expected):
            current = getattr(state, name)
            try:
                if isinstance(current, np.random.Generator):
                    current.bit_generator.state = self._meta_fields[name]
                elif _has_state_dict(current):
                    current.load_state_dict(self._array_fields[name])
                elif name in self._array_fields:
                    setattr(state, name, {key: value.copy() for key, value in self._array_fields[name].items()})
                else:
                    setattr(state, name, self._meta_fields[name])
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{self.path}: cannot restore {name}: {exc}") from None
        if state.completed_rounds != self.completed_rounds:
            raise CheckpointError(f"{self.path}: file name and content disagree on the round")


class Checkpoints:
    """The checkpoint directory of one run."""

    def __init__(self, run_dir: Path | str) -> None:
        self.directory = Path(run_dir) / CHECKPOINT_DIR

    def save(self, state: FederationState, records: Sequence[RoundRecord]) -> Path:
        """Write ``state`` and ``records`` atomically as the checkpoint of ``state.completed_rounds``."""
        meta_fields: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for field in dataclasses.fields(state):
            value = getattr(state, field.name)
            if isinstance(value, np.random.Generator):
                meta_fields[field.name] = value.bit_generator.state
            elif _has_state_dict(value):
                arrays.update(_prefixed(field.name, value.state_dict()))
                meta_fields.setdefault("__array_fields__", []).append(field.name)
            elif isinstance(value, Mapping) and all(isinstance(v, np.ndarray) for v in value.values()) and value:
                arrays.update(_prefixed(field.name, value))
                meta_fields.setdefault("__array_fields__", []).append(field.name)
            elif _is_json(value := _plain(value)):
                meta_fields[field.name] = value
            else:
                raise TypeError(f"FederationState.{field.name} ({type(value).__name__}) cannot be checkpointed: "
                                "give it state_dict()/load_state_dict(), or keep it a dict of arrays or JSON values")
        meta = {"format": FORMAT, "version": VERSION, "completed_rounds": state.completed_rounds,
                "fields": meta_fields, "records": [to_json(record) for record in records]}
        meta["digest"] = _digest(meta, arrays)
        buffer = io.BytesIO()
        contents = {**arrays, _META: np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
        np.savez(buffer, allow_pickle=False, **contents)  # numeric arrays only (load refuses pickles too)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"round-{state.completed_rounds:06d}.npz"
        write_atomic(path, buffer.getvalue(), PRIVATE_MODE)  # the model is the federation's; keep it private
        for old in self.files()[KEEP:]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Checkpoint | None:
        """The newest readable checkpoint; None when there is none at all (the run never finished a round).

        An unreadable newer file is skipped with a warning naming it; if every file is unreadable,
        :class:`CheckpointError` lists them.
        """
        problems = []
        for path in self.files():
            try:
                checkpoint = load_checkpoint(path)
            except CheckpointError as error:
                log.warning("%s; trying the previous checkpoint", error)
                problems.append(str(error))
                continue
            if problems:
                log.warning("resuming from %s (round %d) instead", path.name, checkpoint.completed_rounds)
            return checkpoint
        if problems:
            raise CheckpointError("no usable checkpoint: " + "; ".join(problems) +
                                  f" (move {self.directory} away to start the run over)")
        return None

    def files(self) -> list[Path]:
        """Checkpoint files, newest round first."""
        if not self.directory.is_dir():
            return []
        found = [(int(match.group(1)), path) for path in self.directory.iterdir()
                 if (match := _FILE.fullmatch(path.name))]
        return [path for _, path in sorted(found, reverse=True)]


def reopen_run(run_dir: Path | str) -> tuple[PreparedRun, Checkpoint | None]:
    """An interrupted run, ready to continue: its scenario and data from ``run_dir`` and its latest checkpoint.

    ``metrics.jsonl`` is rewritten to hold exactly the checkpoint's rounds: a round logged after the
    last checkpoint was written (the coordinator died in between) is run again and logged again, with
    the same result.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    if (run_dir / SUMMARY_FILE).exists():
        raise ConfigError(f"{run_dir}: the run already finished ({SUMMARY_FILE} exists); nothing to resume")
    scenario = load_scenario(run_dir / CONFIG_FILE)
    data_dir = run_dir / DATA_DIR
    test, vocab = load_test(data_dir), load_vocab(data_dir)
    checkpoint = Checkpoints(run_dir).latest()
    records = checkpoint.records if checkpoint is not None else []
    writer = RunWriter.reopen(run_dir, scenario, records)
    trigger = client_attack(scenario.attack, vocab).trigger_ids
    return PreparedRun(scenario, writer, len(vocab), test, trigger), checkpoint


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read and verify one checkpoint file; :class:`CheckpointError` says what is wrong with it."""
    path = Path(path)
    try:
        data = path.read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except KeyError:
        raise CheckpointError(f"{path}: not a checkpoint (no metadata)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt or partially written checkpoint ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')} (this fedgrad reads {VERSION})")
    digest = meta.pop("digest", None)
    if digest != _digest(meta, arrays):
        raise CheckpointError(f"{path}: content does not match its digest (corrupted on disk)")
    array_fields: dict[str, dict[str, np.ndarray]] = {name: {} for name in meta["fields"].pop("__array_fields__", [])}
    for key, value in arrays.items():
        field, _, name = key.partition("/")
        array_fields.setdefault(field, {})[name] = value
    records = [from_json(RoundRecord, record, f"{path}: round record {number}")
               for number, record in enumerate(meta["records"], start=1)]
    return Checkpoint(path, int(meta["completed_rounds"]), records, meta["fields"], array_fields)


def _has_state_dict(value: Any) -> bool:
    return callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None))


def _prefixed(field: str, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    for name, value in tensors.items():
        if not isinstance(value, np.ndarray):
            raise TypeError(f"FederationState.{field}: state entry {name!r} is {type(value).__name__}, not an array")
    return {f"{field}/{name}": np.ascontiguousarray(value) for name, value in tensors.items()}


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars (as evaluation metrics may hold) turned into Python numbers."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _digest(meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the metadata and every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode("utf-8"))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
