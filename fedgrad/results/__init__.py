"""Run directories: everything one experiment leaves on disk, for machines (JSON) and people (Markdown).

``runs/<scenario>-<YYYYmmdd-HHMMSS>/`` holds

- ``config.toml``    the resolved scenario (defaults and ``--set`` overrides applied), re-loadable;
- ``metrics.jsonl``  one JSON object per round, appended and fsynced as the round ends, so a run that
                     crashes or is interrupted still has every finished round on disk;
- ``summary.json``   final metrics and totals, written atomically once the run finishes;
- ``report.md``      a readable report rendered from the three files above (:func:`render_report`).

Every line of ``metrics.jsonl`` is a :class:`~fedgrad.results.schema.RoundRecord` and ``summary.json`` a
:class:`~fedgrad.results.schema.RunSummary`, written and read by :mod:`fedgrad.results.schema` (which says what
each key holds and how run directories written before ``schema_version`` are read).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import tomllib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fedgrad.errors import DataError
from fedgrad.files import write_atomic
from fedgrad.results.schema import (
    PhaseTimes,
    RoundRecord,
    RunOutcome,
    RunSummary,
    Scores,
    Traffic,
    from_json,
    to_json,
)
from fedgrad.scenario import Scenario

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"

METRIC_KEYS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "loss")


class RunWriter:
    """Creates a fresh run directory for ``scenario`` under ``root`` and writes its files.

    Usage: ``writer = RunWriter(scenario.output.dir, scenario)``, then ``writer.log_round(record)`` after
    every round and ``writer.finish(outcome)`` at the end. :meth:`reopen` continues an existing run directory
    (a resumed run).
    """

    def __init__(self, root: str | Path, scenario: Scenario) -> None:
        self._open(create_run_dir(Path(root), scenario.name), scenario, [])
        write_atomic(self.run_dir / CONFIG_FILE, scenario.to_toml())

    @classmethod
    def reopen(cls, run_dir: str | Path, scenario: Scenario, records: Sequence[RoundRecord]) -> RunWriter:
        """A writer continuing ``run_dir`` with exactly ``records`` logged: ``metrics.jsonl`` is rewritten
        (atomically) to hold them, so a round logged after them is dropped and will be logged again."""
        writer = cls.__new__(cls)
        writer._open(Path(run_dir), scenario, records)
        write_atomic(writer.run_dir / METRICS_FILE, "".join(_line(record) for record in records))
        return writer

    def _open(self, run_dir: Path, scenario: Scenario, records: Sequence[RoundRecord]) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self._records: list[RoundRecord] = list(records)
        self._started_at = datetime.now().astimezone()
        self._started = time.perf_counter()

    @property
    def records(self) -> list[RoundRecord]:
        """The rounds logged so far, as ``metrics.jsonl`` holds them."""
        return list(self._records)

    def log_round(self, record: RoundRecord) -> None:
        """Append one round record as a JSON line and force it to disk."""
        line = _line(record)
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._records.append(from_json(RoundRecord, json.loads(line), str(self.run_dir / METRICS_FILE)))

    def finish(self, outcome: RunOutcome | None = None) -> RunSummary:
        """Write ``summary.json`` (totals over the logged rounds, then ``outcome``) and ``report.md``.

        Returns the summary as written.
        """
        records = self._records
        summary = RunSummary(
            scenario=self.scenario.name,
            run_dir=str(self.run_dir),
            started=self._started_at.isoformat(timespec="seconds"),
            finished=datetime.now().astimezone().isoformat(timespec="seconds"),
            wall_time_s=time.perf_counter() - self._started,
            rounds=len(records),
            final=records[-1].scores if records else Scores(),
            time_s=sum((record.time_s for record in records), PhaseTimes()),
            moved=sum((record.moved for record in records), Traffic()),
            **{f.name: getattr(outcome, f.name) for f in dataclasses.fields(RunOutcome)} if outcome else {},
        )
        document = to_json(summary)
        write_atomic(self.run_dir / SUMMARY_FILE, json.dumps(document, indent=2, allow_nan=False) + "\n")
        render_report(self.run_dir)
        return from_json(RunSummary, document, str(self.run_dir / SUMMARY_FILE))


def _line(record: RoundRecord) -> str:
    return json.dumps(to_json(record), allow_nan=False) + "\n"


def read_metrics(run_dir: str | Path) -> list[RoundRecord]:
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
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise DataError(f"{path}:{number}: not a JSON record ({exc.msg})") from None
        records.append(from_json(RoundRecord, data, f"{path}:{number}"))
    return records


def read_summary(run_dir: str | Path) -> RunSummary | None:
    """``summary.json`` of a run, or None when the run has not finished."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    return from_json(RunSummary, data, str(path))


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


def _report_header(run_dir: Path, config: dict[str, Any], summary: RunSummary | None) -> str:
    title = f"# Run `{config.get('name', run_dir.name)}`"
    if summary is None:
        return (f"{title}\n\nDirectory `{run_dir.name}`. **Not finished**: no `{SUMMARY_FILE}` "
                "(interrupted or still running).")
    return (
        f"{title}\n\nDirectory `{run_dir.name}`, started {summary.started}, "
        f"finished {summary.finished}, wall time {format_seconds(summary.wall_time_s)}."
    )


def _report_config(config: dict[str, Any], summary: RunSummary | None) -> str:
    data, model, train = config.get("data", {}), config.get("model", {}), config.get("train", {})
    fed, privacy = config.get("federation", {}), config.get("privacy", {})
    mode = (summary.mode if summary else None) or "federated"
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


def _privacy_text(privacy: dict[str, Any], summary: RunSummary | None) -> str:
    """The mode's own one-line settings (``fedgrad.modes``, kept in the summary) and its guarantee."""
    report = summary.privacy if summary else None
    text = str((report.settings if report else None) or privacy.get("mode", "none"))
    return f"{text}; {report.guarantee}" if report and report.guarantee else text


def _report_final(records: list[RoundRecord], summary: RunSummary | None) -> str:
    final = summary.final if summary and summary.rounds else (records[-1].scores if records else None)
    if final is None:
        return "## Final metrics\n\nNo round finished."
    rows = [("before training", summary.initial if summary else None), ("final", final)]
    lines = ["## Final metrics (test set)", "", "| model | accuracy | precision | recall | F1 | loss |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join([label, *(_metric(scores, key) for key in METRIC_KEYS)]) + " |"
              for label, scores in rows if scores is not None]
    return "\n".join(lines)


def _report_rounds(records: list[RoundRecord]) -> str:
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
        cells = [str(record.round), *(_metric(record.scores, key) for key in METRIC_KEYS)]
        cells.append(f"{record.clients_used} / {record.clients_selected}")
        cells.append(format_seconds(record.time_s.total))
        cells += [format_bytes(record.moved.down), format_bytes(record.moved.up)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_phases(records: list[RoundRecord]) -> str:
    if not records:
        return ""
    times = sum((record.time_s for record in records), PhaseTimes())
    moved = sum((record.moved for record in records), Traffic())
    n = len(records)
    lines = ["## Time per phase", "", "| phase | total | mean per round |", "|---|---:|---:|"]
    lines += [f"| {phase.name} | {format_seconds(getattr(times, phase.name))} | "
              f"{format_seconds(getattr(times, phase.name) / n)} |" for phase in dataclasses.fields(times)]
    lines += ["", "## Bytes moved", "", "| direction | total | mean per round |", "|---|---:|---:|"]
    for total, label in ((moved.down, "down (coordinator to clients)"), (moved.up, "up (clients to coordinator)")):
        lines.append(f"| {label} | {format_bytes(total)} | {format_bytes(total / n)} |")
    return "\n".join(lines)


def _report_plots(run_dir: Path) -> str:
    """Links to the PNG plots next to the report (``fedgrad report`` draws them), if any."""
    images = sorted(run_dir.glob("*.png"))
    if not images:
        return ""
    return "\n\n".join(["## Plots", *(f"![{image.stem.replace('_', ' ')}]({image.name})" for image in images)])


def _metric(scores: Scores, key: str) -> str:
    value = getattr(scores, key)
    if value is None:
        return "–"
    return f"{value:.4f}" if key == "loss" else format_percent(value)


def format_percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


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
