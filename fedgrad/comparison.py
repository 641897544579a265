"""What privacy costs: one scenario run under several privacy settings, collected into one table.

``fedgrad compare`` plans a grid of *variants* (privacy mode x client count x Paillier key size), runs each
as a real ``fedgrad simulate`` child process (coordinator, client processes, gRPC), and sets every result
against the plain run (``none``) with the same number of clients. Three choices shape the numbers:

- **Same experiment.** Every variant is the user's scenario and ``--set`` values plus only the keys that
  define the variant, so all share corpus, split, partition, model initialisation and seed.
- **Child processes.** A variant is exactly what ``fedgrad simulate`` with the same ``--set`` values gives,
  and one that crashes or is refused (a mode not supported yet) fails alone: its error is reported in the
  table and the others still run.
- **One after another.** Time per round is half of what is being measured; two federations sharing the
  machine would slow each other down unevenly.

A comparison directory holds::

    compare-<timestamp>/
        results.json    everything, per-round series included: what ``fedgrad report`` re-renders from
        results.csv     one flat row per variant
        report.md       the table, the guarantees in words, notes, and the plots below
        accuracy_per_round.png  gap_vs_overhead.png  bytes_per_round.png
        logs/<variant>.log                         the child's stdout and stderr
        variants/<variant>/<scenario>-<timestamp>/ the child's run directory (metrics.jsonl, summary.json, ...)
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fedgrad.crypto.keys import security_bits
from fedgrad.errors import ConfigError
from fedgrad.files import write_atomic
from fedgrad.results import (METRIC_KEYS, create_run_dir, read_document, format_bytes, format_seconds, read_metrics,
                             read_summary)
from fedgrad.scenario import SECURE_KEY_BITS, Scenario, load_scenario

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
REPORT_FILE = "report.md"
LOG_DIR = "logs"
VARIANT_DIR = "variants"
PLOT_FILES = {"accuracy": "accuracy_per_round.png", "gap": "gap_vs_overhead.png", "bytes": "bytes_per_round.png"}

#: ``--privacy`` default: the baseline, both secure-aggregation schemes, and DP from strong to weak.
DEFAULT_PRIVACY = "none,paillier-naive,paillier,dp:1,dp:4,dp:8"
BASELINE_MODE = "none"
PAILLIER_MODES = ("paillier", "paillier-naive")
DP_PLACEMENTS = ("central", "distributed")
#: ``paillier-naive`` encrypts every value separately (about 10 ms each with a 2048-bit key, so minutes per
#: client per round for the book model): by default it runs this many rounds, which is enough to measure
#: its cost per round; its accuracy is then compared with ``none`` after the same round.
NAIVE_ROUNDS = 1
#: Round deadline given to ``paillier-naive``: the scenario's (about a minute) would drop every update.
NAIVE_ROUND_TIMEOUT_S = 3600.0
#: How often the progress display looks at a running variant's ``metrics.jsonl`` (and redraws).
POLL_S = 0.5
#: A stopped child (Ctrl-C) gets this long to stop its own client processes before it is killed.
STOP_GRACE_S = 15.0

#: Per-round phases of the table; ``transfer`` is the model broadcast plus the slowest upload.
PHASE_COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("train",), "encrypt": ("encrypt",), "transfer": ("broadcast", "upload"),
    "aggregate": ("aggregate",), "decrypt": ("decrypt",),
}


# ---- the grid ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivacySetting:
    """One entry of ``--privacy``: a ``privacy.mode``; for ``dp`` the target epsilon and optionally where the
    noise is added (``dp:EPS`` keeps the scenario's ``privacy.dp_placement``, ``dp:EPS:distributed`` sets it)."""

    mode: str
    epsilon: float | None = None
    placement: str | None = None

    @classmethod
    def parse(cls, text: str) -> PrivacySetting:
        mode, *values = text.strip().split(":")
        if mode == "dp" and len(values) in (1, 2):
            try:
                epsilon = float(values[0])
            except ValueError:
                raise ConfigError(f"--privacy: {text!r}: dp needs a target epsilon, e.g. dp:4") from None
            if not (math.isfinite(epsilon) and epsilon > 0):
                raise ConfigError(f"--privacy: {text!r}: epsilon must be a positive number")
            placement = values[1] if len(values) == 2 else None
            if placement not in (None, *DP_PLACEMENTS):
                raise ConfigError(f"--privacy: {text!r}: the noise placement is one of {', '.join(DP_PLACEMENTS)}")
            return cls("dp", epsilon, placement)
        if mode in (BASELINE_MODE, *PAILLIER_MODES) and not values:
            return cls(mode)
        raise ConfigError(f"--privacy: unknown setting {text!r} "
                          "(use none, paillier, paillier-naive, dp:EPSILON or dp:EPSILON:PLACEMENT)")

    @property
    def label(self) -> str:
        if self.epsilon is None:
            return self.mode
        return f"dp-eps{self.epsilon:g}" + (f"-{self.placement}" if self.placement else "")

    def overrides(self) -> list[str]:
        values = [f"privacy.mode={json.dumps(self.mode)}"]
        if self.epsilon is not None:
            values.append(f"privacy.epsilon={self.epsilon!r}")
        if self.placement is not None:
            values.append(f"privacy.dp_placement={json.dumps(self.placement)}")
        return values


def parse_privacy_list(text: str) -> list[PrivacySetting]:
    """``"none,paillier,dp:1"`` as settings, in order, duplicates dropped."""
    settings = [PrivacySetting.parse(item) for item in text.split(",") if item.strip()]
    if not settings:
        raise ConfigError("--privacy: name at least one setting")
    return list(dict.fromkeys(settings))


def parse_int_list(text: str, flag: str) -> list[int]:
    """``"3,10,100"`` as positive integers, in order, duplicates dropped."""
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag}: expected positive integers, got {text!r}")
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class Variant:
    """One run of the comparison: the scenario with ``overrides`` applied after the user's ``--set`` values."""

    name: str
    privacy: PrivacySetting
    scenario: Scenario             # resolved and validated, as the child will run it
    overrides: tuple[str, ...]
    baseline: str                  # the ``none`` variant with the same number of clients
    notes: tuple[str, ...] = ()    # what differs from the user's scenario beyond the privacy setting, and why

    @property
    def rounds(self) -> int:
        return self.scenario.federation.rounds


def plan_variants(
    scenario_path: Path,
    user_overrides: Sequence[str],
    privacy: Sequence[PrivacySetting],
    *,
    clients: Sequence[int] | None = None,
    key_bits: Sequence[int] | None = None,
    rounds: int | None = None,
    naive_rounds: int = NAIVE_ROUNDS,
) -> list[Variant]:
    """Every variant of the grid, each validated up front (a bad combination fails before anything runs).

    ``none`` is always part of the grid: it is what every other variant is measured against. With
    ``clients``, each count keeps the scenario's participation rate (``clients_per_round / clients``) so
    that DP's sampling rate, and the share of data a round sees, stay the same. ``key_bits`` applies to the
    Paillier modes only. Names get ``-c<clients>`` / ``-k<bits>`` suffixes when those flags are given.
    """
    base = load_scenario(scenario_path, list(user_overrides))
    fed = base.federation
    settings = list(dict.fromkeys([PrivacySetting(BASELINE_MODE), *privacy]))
    variants = []
    for n_clients in clients or [fed.clients]:
        common = [f"federation.rounds={rounds}"] if rounds else []
        suffix = ""
        if clients:
            per_round = max(1, round(n_clients * fed.clients_per_round / fed.clients))
            common += [f"federation.clients={n_clients}", f"federation.clients_per_round={per_round}",
                       f"federation.min_clients={min(fed.min_clients, per_round)}"]
            suffix = f"-c{n_clients}"
        baseline = f"{BASELINE_MODE}{suffix}"
        for setting in settings:
            for bits in (key_bits or [None]) if setting.mode in PAILLIER_MODES else [None]:
                overrides = [*common, *setting.overrides()]
                name = setting.label + suffix
                if bits is not None:
                    overrides.append(f"privacy.key_bits={bits}")
                    name += f"-k{bits}"
                notes: list[str] = []
                if setting.mode == "paillier-naive":
                    overrides, notes = _reduce_naive(base, overrides, rounds or fed.rounds, naive_rounds)
                variants.append(Variant(name, setting, _validated(scenario_path, user_overrides, overrides, name),
                                        tuple(overrides), baseline, tuple(notes)))
    return variants


def _reduce_naive(base: Scenario, overrides: list[str], planned_rounds: int,
                  naive_rounds: int) -> tuple[list[str], list[str]]:
    """``paillier-naive`` on fewer rounds and with a long round deadline; the notes say so in the report."""
    notes = []
    overrides = list(overrides)
    if naive_rounds < planned_rounds:
        overrides.append(f"federation.rounds={naive_rounds}")
        notes.append(f"run for {naive_rounds} round(s) instead of {planned_rounds}: one Paillier ciphertext per "
                     "value costs minutes per client and round; time and bytes are per round and compare "
                     f"directly, accuracy is compared with {BASELINE_MODE} after the same round")
    if base.federation.round_timeout_s < NAIVE_ROUND_TIMEOUT_S:
        overrides.append(f"federation.round_timeout_s={NAIVE_ROUND_TIMEOUT_S}")
        notes.append(f"round deadline raised to {NAIVE_ROUND_TIMEOUT_S:g} s (the scenario's "
                     f"{base.federation.round_timeout_s:g} s would drop every encrypted update)")
    return overrides, notes


def _validated(path: Path, user_overrides: Sequence[str], overrides: Sequence[str], name: str) -> Scenario:
    try:
        return load_scenario(path, [*user_overrides, *overrides])
    except ConfigError as exc:
        raise ConfigError(f"variant {name}: {exc}") from None


# ---- privacy in words ------------------------------------------------------------------------------------------


def privacy_guarantee(scenario: Scenario) -> tuple[str, str]:
    """``(short, full)`` description of what a run's privacy setting protects, and from whom.

    ``short`` fits a table cell (what the coordinator sees); ``full`` is the sentence for the report. For DP
    the numbers come from the same calibration the coordinator uses (``DPConfig``, ``dp-accounting``).
    """
    privacy, fed = scenario.privacy, scenario.federation
    if privacy.mode == BASELINE_MODE:
        return ("plaintext updates",
                "none: the coordinator sees every client's update in plaintext; with a bag-of-words model "
                "that reveals which words each client's emails contain")
    if privacy.mode in PAILLIER_MODES:
        strength = f"~{security_bits(privacy.key_bits)}-bit security"
        if privacy.key_bits < SECURE_KEY_BITS:
            strength = "INSECURE test key"
        scheme = "packed Paillier" if privacy.mode == "paillier" else "one Paillier ciphertext per value"
        return (f"ciphertexts; sum of >= {fed.min_clients}",
                f"secure aggregation ({scheme}, {privacy.key_bits}-bit key, {strength}): the coordinator sees each "
                f"client's update only as ciphertext and decrypts only the sum of at least {fed.min_clients} "
                "clients' updates; no differential-privacy bound on what that sum or the model reveals")
    from fedgrad.privacy import DPConfig  # dp-accounting (scipy) only when a DP variant is described

    config = DPConfig(epsilon=privacy.epsilon, clip=privacy.dp_clip, clients=fed.clients,
                      clients_per_round=fed.clients_per_round, rounds=fed.rounds, delta=privacy.delta or None,
                      placement=privacy.dp_placement)
    sees = "plaintext clipped updates" if config.placement == "central" else "noisy sum only"
    return (f"(ε={config.epsilon:g}, δ={config.target_delta:.0e})-DP; {sees}",
            config.guarantee(config.mechanism()))


# ---- running ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How one variant's child process ended."""

    variant: Variant
    status: str                 # ok | failed | interrupted | not run
    error: str | None = None
    run_dir: Path | None = None
    seconds: float = 0.0


def new_comparison_dir(scenario: Scenario) -> Path:
    """``<output.dir>/compare-<timestamp>`` of the user's scenario."""
    return create_run_dir(Path(scenario.output.dir), "compare")


def run_variants(scenario_path: Path, user_overrides: Sequence[str], variants: Sequence[Variant],
                 compare_dir: Path) -> list[Outcome]:
    """Run every variant in turn with one progress bar over all their rounds; see the module docstring.

    Ctrl-C (or SIGTERM) stops the running child and its client processes; the outcomes so far are returned
    with that variant ``interrupted`` and the rest ``not run``, so the caller can still write what finished.
    """
    outcomes: list[Outcome] = []
    with tqdm(total=sum(v.rounds for v in variants), unit="round", file=sys.stderr, dynamic_ncols=True) as bar, \
            _sigterm_as_interrupt():
        for index, variant in enumerate(variants):
            bar.set_description(f"{variant.name} ({index + 1}/{len(variants)})", refresh=False)
            bar.set_postfix_str("")
            try:
                outcome = _run_child(scenario_path, user_overrides, variant, compare_dir, bar)
            except KeyboardInterrupt:
                outcomes.append(Outcome(variant, "interrupted", "stopped by the user",
                                        _run_dir_of(compare_dir / VARIANT_DIR / variant.name)))
                outcomes += [Outcome(later, "not run") for later in variants[index + 1:]]
                break
            outcomes.append(outcome)
            if outcome.status != "ok":
                bar.write(f"{variant.name}: failed: {outcome.error}", file=sys.stderr)
    return outcomes


def _run_child(scenario_path: Path, user_overrides: Sequence[str], variant: Variant, compare_dir: Path,
               bar: tqdm) -> Outcome:
    out_root = (compare_dir / VARIANT_DIR / variant.name).resolve()
    log_path = compare_dir / LOG_DIR / f"{variant.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sets = [*user_overrides, *variant.overrides, f"output.dir={json.dumps(str(out_root))}"]
    command = [sys.executable, "-m", "fedgrad.cli.main", "simulate", str(scenario_path),
               *(arg for value in sets for arg in ("--set", value))]
    # The child's own progress bars would only garble its log: this process shows the one display.
    env = {**os.environ, "TQDM_DISABLE": "1"}
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(command) + "\n").encode())
        log.flush()
        # Its own session: a Ctrl-C reaches only this process, which then stops the child in order.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    shown = 0
    try:
        while True:
            try:
                code = process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                code = None
            records = read_metrics(run_dir) if (run_dir := _run_dir_of(out_root)) else []
            if len(records) > shown:
                bar.update(len(records) - shown)
                shown = len(records)
                bar.set_postfix(acc=f"{100 * records[-1]['accuracy']:.2f}%",
                                round=f"{records[-1]['time_s']['total']:.2f}s", refresh=False)
            else:
                bar.refresh()  # keeps the elapsed time moving through a long round
            if code is not None:
                break
    except BaseException:
        _stop(process)
        raise
    finally:
        if bar.total is not None:
            bar.total -= variant.rounds - shown  # rounds that will never come (a failure, a stop)
            bar.refresh()
    seconds = time.perf_counter() - started
    run_dir = _run_dir_of(out_root)
    if code == 0 and run_dir is not None and read_summary(run_dir) is not None:
        return Outcome(variant, "ok", run_dir=run_dir, seconds=seconds)
    return Outcome(variant, "failed", f"exit code {code}: {_last_line(log_path)}", run_dir, seconds)


def _run_dir_of(out_root: Path) -> Path | None:
    """The child's run directory: the one directory it creates under its ``output.dir``."""
    if not out_root.is_dir():
        return None
    found = sorted(path for path in out_root.iterdir() if path.is_dir())
    return found[-1] if found else None


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the child (``simulate`` then stops its client processes), SIGKILL it if it does not exit."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while children run, so they are stopped rather than orphaned."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if len(lines) > 1 else "no output"


# ---- collecting ------------------------------------------------------------------------------------------------

#: Columns of ``results.csv`` (``results.json`` rows hold these plus the per-round series).
CSV_COLUMNS: tuple[str, ...] = (
    "variant", "privacy", "epsilon", "dp_placement", "clients", "key_bits", "status", "error", "rounds", "rounds_planned",
    *METRIC_KEYS, "baseline", "accuracy_gap_pts", "round_time_s", "round_time_ratio",
    *(f"{phase}_s" for phase in PHASE_COLUMNS), "bytes_up_per_client", "bytes_up_ratio", "bytes_up_per_round",
    "bytes_down_per_round", "epsilon_spent", "wall_time_s", "processes", "guarantee", "notes", "run_dir", "log",
)


def collect(outcomes: Sequence[Outcome], compare_dir: Path) -> list[dict[str, Any]]:
    """One row per variant from its run directory, then the gaps and ratios to its ``none`` baseline."""
    rows = [_row(outcome, compare_dir) for outcome in outcomes]
    by_name = {row["variant"]: row for row in rows}
    for row in rows:
        _compare_with_baseline(row, by_name.get(row["baseline"]))
    return rows


def _row(outcome: Outcome, compare_dir: Path) -> dict[str, Any]:
    variant = outcome.variant
    scenario = variant.scenario
    records = read_metrics(outcome.run_dir) if outcome.run_dir else []
    summary = (read_summary(outcome.run_dir) if outcome.run_dir else None) or {}
    short, full = privacy_guarantee(scenario)
    if variant.privacy.mode == "dp":  # the run's own ledger and calibration, when it got that far
        full = (summary.get("privacy") or {}).get("guarantee", full)
    final = records[-1] if records else {}
    n = len(records)
    used = sum(record.get("clients_used", 0) for record in records)
    bytes_up = sum(record["bytes"]["up"] for record in records)
    row: dict[str, Any] = {
        "variant": variant.name,
        "privacy": variant.privacy.mode,
        "epsilon": variant.privacy.epsilon,
        "clients": scenario.federation.clients,
        "key_bits": scenario.privacy.key_bits if variant.privacy.mode in PAILLIER_MODES else None,
        "dp_placement": scenario.privacy.dp_placement if variant.privacy.mode == "dp" else None,
        "status": outcome.status,
        "error": outcome.error,
        "rounds": n,
        "rounds_planned": variant.rounds,
        **{key: final.get(key) for key in METRIC_KEYS},
        "baseline": variant.baseline,
        "round_time_s": _mean(record["time_s"]["total"] for record in records),
        **{f"{column}_s": _mean(sum(record["time_s"][phase] for phase in phases) for record in records)
           for column, phases in PHASE_COLUMNS.items()},
        "bytes_up_per_client": bytes_up / used if used else None,
        "bytes_up_per_round": bytes_up / n if n else None,
        "bytes_down_per_round": _mean(record["bytes"]["down"] for record in records),
        "epsilon_spent": _epsilon_spent(summary, records),
        "wall_time_s": outcome.seconds or None,
        "processes": summary.get("processes"),
        "guarantee": short,
        "guarantee_full": full,
        "notes": "; ".join(variant.notes) or None,
        "run_dir": _relative(outcome.run_dir, compare_dir),
        "log": f"{LOG_DIR}/{variant.name}.log" if outcome.status != "not run" else None,
        "accuracy_per_round": [[record["round"], record["accuracy"]] for record in records],
    }
    return row


def _epsilon_spent(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> float | None:
    """Epsilon the run's privacy ledger reports as spent: from ``summary.json``, or the last round record of a
    run that did not finish; None for runs without DP."""
    for source in (summary, records[-1] if records else {}):
        value = (source.get("privacy") or {}).get("epsilon_spent")
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _compare_with_baseline(row: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    """Accuracy gap (points lost, at the same round) and cost ratios relative to the baseline run."""
    row["accuracy_gap_pts"] = row["round_time_ratio"] = row["bytes_up_ratio"] = None
    if baseline is None or not row["accuracy_per_round"]:
        return
    last_round = row["accuracy_per_round"][-1][0]
    reference = dict((r, a) for r, a in baseline["accuracy_per_round"]).get(last_round)
    if reference is not None:
        row["accuracy_gap_pts"] = 100 * (reference - row["accuracy"])
    row["round_time_ratio"] = _ratio(row["round_time_s"], baseline["round_time_s"])
    row["bytes_up_ratio"] = _ratio(row["bytes_up_per_client"], baseline["bytes_up_per_client"])


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


def _relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def write_results(compare_dir: Path, meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """``results.json`` (meta and full rows) and ``results.csv`` (flat rows)."""
    document = {**meta, "variants": list(rows)}
    write_atomic(compare_dir / RESULTS_JSON, json.dumps(document, indent=2, allow_nan=False) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if row.get(key) is None else row[key] for key in CSV_COLUMNS} for row in rows)
    write_atomic(compare_dir / RESULTS_CSV, buffer.getvalue())


def comparison_meta(scenario_path: Path, user_overrides: Sequence[str], base: Scenario,
                    command: Sequence[str]) -> dict[str, Any]:
    """What ``results.json`` says about the comparison as a whole; ``command`` is the ``fedgrad`` argv."""
    return {
        "kind": "fedgrad-comparison",
        "scenario": base.name,
        "scenario_path": str(scenario_path),
        "overrides": list(user_overrides),
        "seed": base.seed,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": ["fedgrad", *command],
    }


def is_comparison_dir(path: Path) -> bool:
    return (path / RESULTS_JSON).is_file()


def read_results(compare_dir: Path) -> dict[str, Any]:
    return read_document(compare_dir, RESULTS_JSON, "fedgrad-comparison", "fedgrad compare")


# ---- the report ------------------------------------------------------------------------------------------------


def render_comparison(compare_dir: Path) -> Path:
    """(Re)draw the three plots and (re)write ``report.md`` from ``results.json``; returns the report's path."""
    from fedgrad import plots  # matplotlib only when drawing

    document = read_results(compare_dir)
    rows = document["variants"]
    measured = [row for row in rows if row["accuracy_per_round"]]
    plots.accuracy_per_round({row["variant"]: [tuple(point) for point in row["accuracy_per_round"]]
                              for row in measured}, compare_dir / PLOT_FILES["accuracy"],
                             title=f"{document['scenario']}: test accuracy per round")
    plots.gap_vs_overhead([(row["variant"], row["round_time_ratio"], row["accuracy_gap_pts"]) for row in measured
                           if row["round_time_ratio"] and row["accuracy_gap_pts"] is not None],
                          compare_dir / PLOT_FILES["gap"], baseline=BASELINE_MODE)
    plots.bytes_per_round([(row["variant"], row["bytes_up_per_round"], row["bytes_down_per_round"])
                           for row in measured], compare_dir / PLOT_FILES["bytes"])
    sections = [_report_header(document), _report_table(rows), _report_guarantees(rows), _report_notes(rows),
                _report_plots(), _report_runs(rows)]
    path = compare_dir / REPORT_FILE
    write_atomic(path, "\n\n".join(section for section in sections if section) + "\n")
    return path


def _report_header(document: dict[str, Any]) -> str:
    overrides = ", ".join(f"`{value}`" for value in document["overrides"]) or "none"
    return "\n".join([
        f"# Comparison `{document['scenario']}`: accuracy versus the cost of privacy",
        "",
        f"Scenario `{document['scenario_path']}` (seed {document['seed']}; `--set` overrides: {overrides}), "
        f"created {document['created']} by `{' '.join(document['command'])}`.",
        "",
        "Each variant is a full `fedgrad simulate` run (coordinator, client processes, gRPC) on the same data, "
        "split, partition and seed, run one after another on this machine so that their timings compare. "
        f"**Gap** is `{BASELINE_MODE}`'s test accuracy minus the variant's after the same round, in percentage "
        f"points (positive: accuracy lost to privacy). **×** columns are ratios to `{BASELINE_MODE}` with the "
        "same number of clients. Times are means per round, each phase measured by the coordinator along the "
        "round's critical path (the slowest client); **transfer** is the model broadcast plus the slowest upload. "
        "Clients that share a client process (see *Runs*) work one after another, so a slow encryption also "
        "lengthens the others' broadcast, the wait for their turn. **up/client** is bytes uploaded per "
        "participating client per round.",
    ])


def _report_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("variant", "status", "rounds", "accuracy", "precision", "recall", "F1", "gap (pts)", "time/round",
              "×", *PHASE_COLUMNS, "up/client", "×", "coordinator sees")
    lines = ["## Results", "", "| " + " | ".join(header) + " |",
             "|---|---|---:|" + "---:|" * (len(header) - 4) + "---|"]
    for row in rows:
        cells = [
            f"`{row['variant']}`",
            row["status"] + ("*" if row["notes"] else ""),
            f"{row['rounds']}/{row['rounds_planned']}",
            *(_percent(row[key]) for key in ("accuracy", "precision", "recall", "f1")),
            _signed(row["accuracy_gap_pts"]),
            format_seconds(row["round_time_s"]),
            _times(row["round_time_ratio"]),
            *(format_seconds(row[f"{phase}_s"]) for phase in PHASE_COLUMNS),
            format_bytes(row["bytes_up_per_client"]),
            _times(row["bytes_up_ratio"]),
            row["guarantee"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(row["notes"] for row in rows):
        lines += ["", "\\* ran with the adjustments listed under *Notes*."]
    return "\n".join(lines)


def _report_guarantees(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["## Privacy guarantees", "", "| variant | guarantee | ε spent (reported by the run) |", "|---|---|---:|"]
    for row in rows:
        spent = "–" if row["epsilon_spent"] is None else f"{row['epsilon_spent']:.3g}"
        lines.append(f"| `{row['variant']}` | {row['guarantee_full']} | {spent} |")
    return "\n".join(lines)


def _report_notes(rows: Sequence[dict[str, Any]]) -> str:
    items = []
    for row in rows:
        if row["notes"]:
            items.append(f"- `{row['variant']}`: {row['notes']}.")
        if row["status"] != "ok":
            reason = f": {row['error']}" if row["error"] else ""
            log = f" (log: `{row['log']}`)" if row["log"] else ""
            items.append(f"- `{row['variant']}` **{row['status']}**{reason}{log}.")
    return "\n".join(["## Notes", "", *items]) if items else ""


def _report_plots() -> str:
    return "\n".join([
        "## Plots", "",
        f"![Test accuracy per round]({PLOT_FILES['accuracy']})", "",
        f"![Accuracy gap versus time overhead]({PLOT_FILES['gap']})", "",
        f"![Bytes per round]({PLOT_FILES['bytes']})",
    ])


def _report_runs(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["## Runs", "", "| variant | run directory | log | clients / client processes | wall time |",
             "|---|---|---|---:|---:|"]
    for row in rows:
        run_dir = f"[`{row['run_dir']}`]({row['run_dir']}/report.md)" if row["run_dir"] else "–"
        log = f"[`{row['log']}`]({row['log']})" if row["log"] else "–"
        processes = f"{row['clients']} / {row['processes'] or '–'}"
        lines.append(f"| `{row['variant']}` | {run_dir} | {log} | {processes} | {format_seconds(row['wall_time_s'])} |")
    return "\n".join(lines)


def summary_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """A compact table for the terminal."""
    header = ("variant", "status", "accuracy", "gap", "time/round", "×", "up/client", "×")
    table = [header] + [(
        row["variant"], row["status"], _percent(row["accuracy"]), _signed(row["accuracy_gap_pts"]),
        format_seconds(row["round_time_s"]), _times(row["round_time_ratio"]),
        format_bytes(row["bytes_up_per_client"]), _times(row["bytes_up_ratio"]),
    ) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width)
                      in enumerate(zip(line, widths))) for line in table]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _times(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}×" if value >= 1000 else f"{value:.3g}×"

