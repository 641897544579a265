"""Run directories: everything one experiment leaves on disk, for machines (JSON) and people (Markdown).

``runs/<scenario>-<YYYYmmdd-HHMMSS>/`` holds

- ``config.toml``    the resolved scenario (defaults and ``--set`` overrides applied), re-loadable;
- ``metrics.jsonl``  one JSON object per round, appended and fsynced as the round ends, so a run that
                     crashes or is interrupted still has every finished round on disk;
- ``summary.json``   final metrics and totals, written atomically once the run finishes;
- ``report.md``      a readable report rendered from the three files above (:func:`render_report`).

A round record has the layout built by :func:`round_record`::

    {"round", "accuracy", "precision", "recall", "f1", "loss",
     "clients_selected", "clients_used", "clients_dropped",
     "time_s": {"broadcast", "train", "encrypt", "upload", "aggregate", "decrypt", "evaluate", "total"},
     "bytes": {"down", "up"}, ...extra keys}
"""
from __future__ import annotations

import json
import math
import os
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from fedgrad.errors import DataError
from fedgrad.files import write_atomic
from fedgrad.metrics import PHASES
from fedgrad.scenario import Scenario

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"

METRIC_KEYS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "loss")
#: Measured only in runs with an ``[attack]`` that has them (``fedgrad.attacks``).
ATTACK_METRIC_KEYS: tuple[str, ...] = ("backdoor_success",)


def round_record(
    round_index: int,
    evaluation: dict[str, Any],
    *,
    clients_selected: int,
    clients_used: int,
    clients_dropped: int,
    time_s: dict[str, float],
    bytes_moved: dict[str, int],
    **extra: Any,
) -> dict[str, Any]:
    """One ``metrics.jsonl`` line in the documented layout.

    ``evaluation`` is :func:`fedgrad.training.evaluate`'s result on the test set; phases missing from
    ``time_s`` (e.g. ``encrypt`` in a plain run) are recorded as 0.0 so every line has the same keys.
    """
    record: dict[str, Any] = {"round": round_index}
    record.update({key: evaluation[key] for key in METRIC_KEYS})
    record.update({key: evaluation[key] for key in ATTACK_METRIC_KEYS if key in evaluation})
    record.update(clients_selected=clients_selected, clients_used=clients_used, clients_dropped=clients_dropped)
    unknown = set(time_s) - set(PHASES) - {"total"}
    if unknown:
        raise KeyError(f"unknown phase(s) {sorted(unknown)}; phases are {', '.join(PHASES)}")
    record["time_s"] = {phase: float(time_s.get(phase, 0.0)) for phase in (*PHASES, "total")}
    record["bytes"] = {"down": int(bytes_moved.get("down", 0)), "up": int(bytes_moved.get("up", 0))}
    record.update(extra)
    return record


class RunWriter:
    """Creates a fresh run directory for ``scenario`` under ``root`` and writes its files.

    Usage: ``writer = RunWriter(scenario.output.dir, scenario)``, then ``writer.log_round(record)`` after
    every round and ``writer.finish(summary)`` at the end. :meth:`reopen` continues an existing run directory
    (a resumed run).
    """

    def __init__(self, root: str | Path, scenario: Scenario) -> None:
        self._open(create_run_dir(Path(root), scenario.name), scenario, [])
        write_atomic(self.run_dir / CONFIG_FILE, scenario.to_toml())

    @classmethod
    def reopen(cls, run_dir: str | Path, scenario: Scenario, records: list[dict[str, Any]]) -> RunWriter:
        """A writer continuing ``run_dir`` with exactly ``records`` logged: ``metrics.jsonl`` is rewritten
        (atomically) to hold them, so a round logged after them is dropped and will be logged again."""
        writer = cls.__new__(cls)
        writer._open(Path(run_dir), scenario, records)
        lines = "".join(json.dumps(record) + "\n" for record in records)
        write_atomic(writer.run_dir / METRICS_FILE, lines)
        return writer

    def _open(self, run_dir: Path, scenario: Scenario, records: list[dict[str, Any]]) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self._records: list[dict[str, Any]] = list(records)
        self._started_at = datetime.now().astimezone()
        self._started = time.perf_counter()

    @property
    def records(self) -> list[dict[str, Any]]:
        """The rounds logged so far (copies of what is in ``metrics.jsonl``)."""
        return list(self._records)

    def log_round(self, record: dict[str, Any]) -> None:
        """Append one round record as a JSON line and force it to disk."""
        record = _jsonable(record)
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._records.append(record)

    def finish(self, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``summary.json`` (totals over the logged rounds, then ``summary``'s keys) and ``report.md``.

        Returns the summary as written.
        """
        final = self._records[-1] if self._records else {}
        written = {
            "scenario": self.scenario.name,
            "run_dir": str(self.run_dir),
            "started": self._started_at.isoformat(timespec="seconds"),
            "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
            "wall_time_s": time.perf_counter() - self._started,
            "rounds": len(self._records),
            "final": {key: final[key] for key in METRIC_KEYS if key in final},
            "time_s": _column_totals(self._records, "time_s"),
            "bytes": _column_totals(self._records, "bytes"),
            **(summary or {}),
        }
        written = _jsonable(written)
        write_atomic(self.run_dir / SUMMARY_FILE, json.dumps(written, indent=2, allow_nan=False) + "\n")
        render_report(self.run_dir)
        return written


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The round records of a run. A truncated last line (a run killed mid-write) is ignored."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise DataError(f"{path}:{number}: not a JSON record ({exc.msg})") from None
    return records


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """``summary.json`` of a run, or None when the run has not finished."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def read_document(directory: Path, filename: str, kind: str, command: str) -> dict[str, Any]:
    """The JSON results document ``directory/filename`` written by ``command``, checked by its ``kind`` tag."""
    path = directory / filename
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{directory}: no {filename} here (not the output of `{command}`)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(document, dict) or document.get("kind") != kind:
        raise DataError(f"{path}: not the results of `{command}`")
    return document


def render_report(run_dir: str | Path) -> Path:
    """(Re)write ``report.md`` from ``config.toml``, ``metrics.jsonl`` and ``summary.json``; return its path."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    try:
        config = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{run_dir}: not a run directory (no {CONFIG_FILE})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{config_path}: invalid TOML ({exc})") from None
    records = read_metrics(run_dir)
    summary = read_summary(run_dir)
    sections = [
        _report_header(run_dir, config, summary),
        _report_config(config, summary),
        _report_final(records, summary),
        _report_rounds(records),
        _report_phases(records),
        _report_plots(run_dir),
    ]
    path = run_dir / REPORT_FILE
    write_atomic(path, "\n\n".join(section for section in sections if section) + "\n")
    return path


def _report_header(run_dir: Path, config: dict[str, Any], summary: dict[str, Any] | None) -> str:
    title = f"# Run `{config.get('name', run_dir.name)}`"
    if summary is None:
        return (f"{title}\n\nDirectory `{run_dir.name}`. **Not finished**: no `{SUMMARY_FILE}` "
                "(interrupted or still running).")
    return (
        f"{title}\n\nDirectory `{run_dir.name}`, started {summary.get('started', '?')}, "
        f"finished {summary.get('finished', '?')}, wall time {format_seconds(summary.get('wall_time_s'))}."
    )


def _report_config(config: dict[str, Any], summary: dict[str, Any] | None) -> str:
    data, model, train = config.get("data", {}), config.get("model", {}), config.get("train", {})
    fed, privacy = config.get("federation", {}), config.get("privacy", {})
    mode = (summary or {}).get("mode", "federated")
    training = (f"{train.get('epochs')} epoch(s), batch {train.get('batch_size')}, "
                f"{train.get('optimizer')} lr {train.get('lr')}")
    if train.get("momentum"):
        training += f" momentum {train.get('momentum')}"
    rows = [
        ("mode", mode),
        ("seed", config.get("seed")),
        ("corpus", f"`{data.get('corpus')}`, test fraction {data.get('test_fraction')}"),
        ("tokens", (f"min count {data.get('min_count')}, max length {data.get('max_len')}, "
                   f"max vocabulary {data.get('max_vocab') or 'unlimited'}")),
        ("model", model.get("name", "?") + (f" (hidden {model.get('hidden')})" if model.get("name") == "mlp" else "")),
        ("training", f"{training}, device {train.get('device')}"),
    ]
    if mode != "centralized":
        partition = data.get("partition", "?")
        if partition == "dirichlet":
            partition += f" (alpha {data.get('alpha')})"
        strategy = fed.get("strategy", "?")
        if strategy == "fedprox":
            strategy += f" (mu {fed.get('prox_mu')})"
        rows += [
            ("partition", f"{partition}, {fed.get('clients')} clients"),
            ("rounds", (f"{fed.get('rounds')}, {fed.get('clients_per_round')} clients per round "
                       f"(min {fed.get('min_clients')}), timeout {fed.get('round_timeout_s')} s")),
            ("strategy", f"{strategy}, server lr {fed.get('server_lr')}"),
            ("privacy", _privacy_text(privacy, summary)),
        ]
    lines = ["## Configuration", "", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    lines += ["", f"The full resolved scenario is in `{CONFIG_FILE}`."]
    return "\n".join(lines)


def _privacy_text(privacy: dict[str, Any], summary: dict[str, Any] | None) -> str:
    """The mode's own one-line settings (``fedgrad.modes``, kept in the summary) and its guarantee."""
    entry = (summary or {}).get("privacy") or {}
    text = str(entry.get("settings") or privacy.get("mode", "none"))
    return f"{text}; {entry['guarantee']}" if entry.get("guarantee") else text


def _report_final(records: list[dict[str, Any]], summary: dict[str, Any] | None) -> str:
    final = (summary or {}).get("final") or (records[-1] if records else None)
    if not final:
        return "## Final metrics\n\nNo round finished."
    rows = [("before training", (summary or {}).get("initial")), ("final", final)]
    lines = ["## Final metrics (test set)", "", "| model | accuracy | precision | recall | F1 | loss |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join([label, *(_metric(metrics, key) for key in METRIC_KEYS)]) + " |"
              for label, metrics in rows if metrics]
    return "\n".join(lines)


def _report_rounds(records: list[dict[str, Any]]) -> str:
    if not records:
        return ""
    lines = [
        "## Rounds",
        "",
        ("| round | accuracy | precision | recall | F1 | loss | clients used / selected | time | bytes down "
        "| bytes up |"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for record in records:
        cells = [str(record.get("round", "?")), *(_metric(record, key) for key in METRIC_KEYS)]
        cells.append(f"{record.get('clients_used', '?')} / {record.get('clients_selected', '?')}")
        cells.append(format_seconds(record.get("time_s", {}).get("total")))
        cells += [format_bytes(record.get("bytes", {}).get(direction)) for direction in ("down", "up")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_phases(records: list[dict[str, Any]]) -> str:
    if not records:
        return ""
    times, moved = _column_totals(records, "time_s"), _column_totals(records, "bytes")
    n = len(records)
    lines = ["## Time per phase", "", "| phase | total | mean per round |", "|---|---:|---:|"]
    lines += [f"| {phase} | {format_seconds(seconds)} | {format_seconds(seconds / n)} |"
              for phase, seconds in times.items()]
    lines += ["", "## Bytes moved", "", "| direction | total | mean per round |", "|---|---:|---:|"]
    for direction, label in (("down", "down (coordinator to clients)"), ("up", "up (clients to coordinator)")):
        total = moved.get(direction, 0)
        lines.append(f"| {label} | {format_bytes(total)} | {format_bytes(total / n)} |")
    return "\n".join(lines)


def _report_plots(run_dir: Path) -> str:
    """Links to the PNG plots next to the report (``fedgrad report`` draws them), if any."""
    images = sorted(run_dir.glob("*.png"))
    if not images:
        return ""
    return "\n\n".join(["## Plots", *(f"![{image.stem.replace('_', ' ')}]({image.name})" for image in images)])


def _column_totals(records: list[dict[str, Any]], column: str) -> dict[str, float]:
    """Sum the nested ``column`` dicts (``time_s`` or ``bytes``) over all records, key by key."""
    totals: dict[str, float] = {}
    for record in records:
        for key, value in record.get(column, {}).items():
            totals[key] = totals.get(key, 0) + value
    return totals


def _metric(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return "–"
    return f"{value:.4f}" if key == "loss" else f"{100 * value:.2f}%"


def format_seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    units, exponent = ("B", "KiB", "MiB", "GiB"), 0
    while value >= 1024 and exponent < len(units) - 1:
        value /= 1024
        exponent += 1
    return f"{value:.0f} B" if exponent == 0 else f"{value:.1f} {units[exponent]}"


def create_run_dir(root: Path, name: str) -> Path:
    """``root/<name>-<timestamp>``, with ``-2``, ``-3``, ... appended if another run took that name.

    ``mkdir`` without ``exist_ok`` is atomic, so two runs starting in the same second (even in two
    processes) never share a directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    base = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, suffix = root / base, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = root / f"{base}-{suffix}"


def _jsonable(value: Any) -> Any:
    """Plain-JSON copy: numpy scalars/arrays become Python numbers/lists, NaN and infinities become None."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
