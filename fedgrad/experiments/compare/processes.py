"""Running the variants: each as a ``fedgrad simulate`` child process, one after another, with one progress bar.

- **Child processes.** A variant is exactly what ``fedgrad simulate`` with the same ``--set`` values gives,
  and one that crashes or is refused (a mode not supported yet) fails alone: its error is reported in the
  table and the others still run.
- **One after another.** Time per round is half of what is being measured; two federations sharing the
  machine would slow each other down unevenly.
- **Signals.** Ctrl-C or SIGTERM stops the running child and its client processes in order (SIGTERM to its
  process group, SIGKILL after a grace period); the outcomes so far are kept.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fedgrad.experiments.compare.grid import Variant
from fedgrad.results import create_run_dir, format_percent, read_metrics, read_summary
from fedgrad.scenario import Scenario

LOG_DIR = "logs"
VARIANT_DIR = "variants"
#: How often the progress display looks at a running variant's ``metrics.jsonl`` (and redraws).
POLL_S = 0.5
#: A stopped child (Ctrl-C) gets this long to stop its own client processes before it is killed.
STOP_GRACE_S = 15.0


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
            sigterm_as_interrupt():
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
                bar.set_postfix(acc=format_percent(records[-1].accuracy), round=f"{records[-1].time_s.total:.2f}s",
                                refresh=False)
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
def sigterm_as_interrupt() -> Iterator[None]:
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
