"""fedgrad and Flower side by side on one task: seconds per round, memory of all processes, bytes, accuracy.

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/flower.py [--per-round 10,100,1000] [--rounds 3] [--modes plain,secure]
                                          [--clients 4837] [--workers N] [--min-counts 5,2] [--repeats 3]
                                          [--quiet-busy 0.15] [--quiet-wait-s 180] [--flower-python PY]
                                          [--json FILE] [--markdown FILE]

Issue 24's full measurement (plain rounds, both model sizes, 10/100/1,000 of 4,837 clients per round, each side
3 times: 36 runs of 15 s to 70 s, 25-35 minutes on a quiet 2-core machine, of which 6 minutes of 10-second quiet
checks; at load 7-15 one pair at 1,000 per round took 1 min 40 s: fedgrad 20 s, Flower 69 s)::

    .venv/bin/python benchmarks/flower.py --modes plain --rounds 3 --repeats 3

or the 1,000-per-round rows first (about 10 minutes), then the rest into another file::

    .venv/bin/python benchmarks/flower.py --modes plain --per-round 1000 --json runs/flower-1000.json
    .venv/bin/python benchmarks/flower.py --modes plain --per-round 10,100 --json runs/flower-10-100.json

and a check of the whole pipeline in about a minute (200 clients, 10 per round, one size, 2 repeats)::

    .venv/bin/python benchmarks/flower.py --modes plain --clients 200 --per-round 10 --min-counts 5 --repeats 2

The bench extra (``flwr[simulation]==1.42.0``) pins ``ray==2.55.1`` and ``protobuf<7``, which conflict with the
``ray`` extra and with the protobuf that fedgrad's generated gRPC code needs, hence its own virtual environment
(``--flower-python``, default ``.venv-bench/bin/python``) for the Flower side; fedgrad runs with this script's
Python, in the project's own environment.

**The task.** ``scenarios/spam_many.toml`` (the book model, its local epochs, batch size and learning rate) with
an IID split over ``--clients`` clients (4837 = one email each: SpamAssassin's training split at test_fraction
0.2), ``--per-round`` of them sampled per round, ``--rounds`` rounds. For each model size, mode and number per
round:

* fedgrad: ``fedgrad simulate`` (the product: a coordinator, ``--workers`` client processes hosting the
  virtual clients, gRPC over TLS; ``secure`` = ``--fedgrad-secure``: ``paillier-masked`` (default) or
  ``paillier``, threshold Paillier with its decryptor processes). Seconds per round (``time_s.total``: from
  sampling the cohort to the evaluation on the test set; the few milliseconds of writing the round's record
  and checkpoint between rounds are not in it) and gRPC bytes (``bytes``: down + up) come from the run's
  ``metrics.jsonl``; accuracy is the last round's.
* Flower: ``benchmarks/flower_app.py`` in Flower's simulation engine (Ray, ``--workers`` actors of one CPU;
  ``secure`` = SecAgg+). The dataset, model, initial weights and local training are fedgrad's own
  (``Scenario.build_dataset``, ``fedgrad.training.train_local`` with each client's fedgrad seed), so the
  difference measured is the platform. Seconds per round are the times between consecutive evaluations on the
  test set; bytes are the sizes of every message a client received and sent, serialized as Flower's protobuf
  ``Message``: in simulation they move in-process, not over a network.

Both sides report the model's weights and every comparison checks they are equal (the same task). Seconds per
round is the mean over rounds 2..R: Flower starts its Ray actors (and they import fedgrad) during round 1,
while fedgrad's client processes have started and joined before its round 1; round 1 is shown apart.

**Model sizes** (``--min-counts``; the book model has one float32 weight per vocabulary word, and
``data.min_count`` sets the vocabulary): 5 gives 12,905 weights = 51,620 bytes, below Ray's 100 KiB
(102,400 bytes) limit for objects passed inline; 2 gives 27,987 weights = 111,948 bytes, above it, where
Flower's messages go through Ray's object store. (At 4,837 clients; other ``--clients`` split the same
corpus, so the vocabulary is the same.) Each side reports the model as it holds it: after a SecAgg+ round
Flower's global model is float64 (103,240 bytes at min_count 5, above the limit), so its secure rounds after
the first move twice the bytes.

**Memory of all processes.** Each side runs as one child process of this script; every second the script lists
that child's whole process tree (every descendant, through /proc/<pid>/task/*/children: client processes,
decryptors, Ray's GCS, raylet and worker actors), and every 200 ms it sums its members' proportional set sizes
(``PSS``, from /proc/<pid>/smaps_rollup: each shared page divided among its sharers, so the sum is what the tree
holds) and resident sizes (``RSS``: a shared page counted once per process; Ray's dozen processes share its
object store and libraries, so RSS sums flatter the side with fewer processes). Memory is ranked by the peak PSS
sum over the rounds (until the last round's evaluation: fedgrad then evaluates the final model on every client,
which the Flower task does not do); the peak over the whole run is kept beside it. Both sums are checked against
the target. The sampler's own CPU time is recorded (reading a process's smaps_rollup costs ~0.6 ms at 200 MiB).

**Fairness.** Each configuration runs ``--repeats`` times per side, interleaved (fedgrad then Flower, then
Flower then fedgrad, ...). Before each run the script waits (up to ``--quiet-wait-s``) until the CPUs were
idle: less than ``--quiet-busy`` of all cores busy over ``--quiet-window-s`` (from /proc/stat). Not the
1-minute load average: it lags by a minute, so after each run it mostly reports that run itself, and waiting
for it to fall below 0.5 would add ~1.5 minutes per run. The busy fraction, the 1-minute load average before
and after each run, and whether the machine got quiet are recorded, and a figure measured on a machine that
never got quiet says so. Each figure is reported per side as its mean over the repeats with the smallest and
largest; a ratio is the mean over the repeats of the pair run together (repeat r of each side), with the
smallest and largest pair.

**The machine's floor** (``benchmarks/floor.py``): before each model size's plain runs, the seconds this
process takes to train and encode each number per round of its clients' updates with a client's own code,
no messaging (``--repeats`` passes); each side's seconds per round is reported over it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from benchmarks.floor import round_floor
from benchmarks.machine import ProcessTree, Quiet, memory_kib, wait_for_quiet
from fedgrad.results import read_metrics
from fedgrad.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "spam_many.toml"
SAMPLE_S = 0.2
#: Ray passes objects up to this size inline, larger ones through its object store (max_direct_call_object_size).
RAY_INLINE_LIMIT_BYTES = 100 * 1024
#: fedgrad's secure rows (``--fedgrad-secure``): the hybrid ``paillier-masked`` (default) or ``paillier``, both
#: with 3 decryptor processes of which any 2 decrypt, the settings of scenarios/spam_paillier.toml.
FEDGRAD_SECURE_MODES = ("paillier-masked", "paillier")
THRESHOLD_SETTINGS = ["privacy.decryptors=3", "privacy.threshold=2", "privacy.key_bits=2048", "privacy.clip=1.0",
                      "privacy.value_bits=16"]
SYSTEMS = ("fedgrad", "flower")
#: The figures reported per side as mean, smallest and largest over the repeats: (Row field, heading, format).
FIGURES = (("seconds_per_round", "s/round", ".3f"), ("first_round_s", "round 1 s", ".2f"),
           ("rounds_peak_pss_mib", "peak PSS sum (MiB)", ",.0f"), ("rounds_peak_rss_mib", "peak RSS sum (MiB)", ",.0f"),
           ("bytes_per_round", "bytes/round", ",.0f"), ("accuracy", "accuracy", ".4f"))


@dataclass
class Row:
    system: str             # fedgrad | flower
    mode: str               # plain | secure
    per_round: int
    rounds: int
    seconds_per_round: float  # mean over rounds 2..R (round 1 alone if R = 1)
    first_round_s: float      # round 1: includes Flower's lazy Ray actor start-up
    rounds_peak_pss_mib: float  # peak of the process tree's PSS sum until the last round's evaluation (ranked)
    rounds_peak_rss_mib: float  # the same with RSS
    peak_pss_mib: float     # peak PSS sum over the whole run (fedgrad: with the final evaluation on every client)
    peak_rss_mib: float     # peak RSS sum over the whole run
    peak_processes: int     # most processes in the tree at one sample
    bytes_per_round: float  # down + up
    accuracy: float         # after the last round
    wall_s: float           # the whole child process: start-up, data, rounds, shutdown
    min_count: int          # data.min_count: the model's size (one weight per vocabulary word)
    weights: int            # the model's weights, as the side itself counted them
    model_bytes: int        # the model as float32
    repeat: int             # which repeat of this configuration
    busy_before: float      # fraction of all cores busy over the quiet window before the run
    quiet: bool             # whether busy_before was below --quiet-busy (False: the wait timed out)
    load_before: float      # 1-minute load average when the run started
    load_after: float       # and when it ended
    sampler_cpu_s: float    # CPU seconds the memory sampler itself spent (it runs in this script's process)
    secure_name: str = ""   # the secure aggregation of a secure row: fedgrad's mode, or Flower's SecAgg+


@dataclass(frozen=True)
class Spread:
    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.fmean(values), min(values), max(values))

    def format(self, form: str) -> str:
        """``mean (low–high)``, or the one value when there is no spread to show."""
        if self.low == self.high:
            return format(self.mean, form)
        return f"{self.mean:{form}} ({self.low:{form}}–{self.high:{form}})"


class TreeMemorySampler(threading.Thread):
    """Every ``interval_s``, sums RSS and PSS over ``pid`` and all its descendants; keeps the peaks of the sums,
    over the whole run and while ``rounds_done()`` is false."""

    def __init__(self, pid: int, rounds_done: Callable[[], bool] = lambda: False, interval_s: float = SAMPLE_S,
                 proc: Path = Path("/proc")) -> None:
        super().__init__(daemon=True)
        self._tree, self._rounds_done, self._interval_s = ProcessTree(pid, proc=proc), rounds_done, interval_s
        self._proc = proc
        self._stopped = threading.Event()
        self.peak_rss_kib = self.peak_pss_kib = 0
        self.rounds_peak_rss_kib = self.rounds_peak_pss_kib = 0
        self.peak_processes = 0
        self.cpu_s = 0.0

    def run(self) -> None:
        while not self._stopped.is_set():
            started = time.thread_time()
            self.sample()
            self.cpu_s += time.thread_time() - started
            self._stopped.wait(self._interval_s)

    def sample(self) -> None:
        in_rounds = not self._rounds_done()  # asked first: a sample taken as the rounds end still counts
        tree = self._tree.pids()
        rss = pss = 0
        for pid in tree:
            memory = memory_kib(self._proc / str(pid) / "smaps_rollup")
            rss, pss = rss + memory.get("Rss", 0), pss + memory.get("Pss", 0)
        self.peak_rss_kib, self.peak_pss_kib = max(self.peak_rss_kib, rss), max(self.peak_pss_kib, pss)
        if in_rounds:
            self.rounds_peak_rss_kib = max(self.rounds_peak_rss_kib, rss)
            self.rounds_peak_pss_kib = max(self.rounds_peak_pss_kib, pss)
        self.peak_processes = max(self.peak_processes, len(tree))

    def stop(self) -> None:
        self._stopped.set()
        self.join()


@dataclass
class Settings:
    """What every run of one benchmark shares (the command line, parsed)."""

    clients: int
    rounds: int
    workers: int
    work_dir: Path
    flower_python: Path
    fedgrad_secure: str = FEDGRAD_SECURE_MODES[0]
    quiet_busy: float = 0.15
    quiet_window_s: float = 10.0
    quiet_wait_s: float = 180.0
    floors: dict[str, list[float]] = field(default_factory=dict)  # "min_count/per_round" -> seconds of each pass

    def wait_for_quiet(self) -> Quiet:
        return wait_for_quiet(self.quiet_busy, self.quiet_wait_s, self.quiet_window_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-round", default="10,100,1000", help="clients per round (default: 10,100,1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per run (default: 3)")
    parser.add_argument("--modes", default="plain,secure", help="plain and/or secure (default: plain,secure)")
    parser.add_argument("--secure-per-round", default=None,
                        help="clients per round for the secure rows (default: those of --per-round)")
    parser.add_argument("--clients", type=int, default=4837,
                        help="clients in the federation (default: 4837, one email each)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="fedgrad client processes = Flower Ray actors (default: one per core)")
    parser.add_argument("--min-counts", default="5,2",
                        help="data.min_count of each model size (default: 5,2: 51,620 and 111,948 bytes, below and "
                             "above Ray's 100 KiB inline-object limit)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side and configuration, interleaved "
                                                                "(default: 3)")
    parser.add_argument("--quiet-busy", type=float, default=0.15,
                        help="before each run, wait until less than this fraction of all cores was busy over "
                             "--quiet-window-s (default: 0.15)")
    parser.add_argument("--quiet-window-s", type=float, default=10.0,
                        help="the window the busy fraction is measured over (default: 10)")
    parser.add_argument("--quiet-wait-s", type=float, default=180.0,
                        help="the longest wait for a quiet machine before running anyway, which the results then "
                             "say (default: 180)")
    parser.add_argument("--flower-python", type=Path, default=REPO / ".venv-bench" / "bin" / "python",
                        help="a Python with the bench extra installed (default: .venv-bench/bin/python)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="fedgrad and/or flower (default: both)")
    parser.add_argument("--fedgrad-secure", choices=FEDGRAD_SECURE_MODES, default=FEDGRAD_SECURE_MODES[0],
                        help="fedgrad's secure aggregation for the secure rows (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "flower-benchmark.json",
                        help="where to write the measurements (default: runs/flower-benchmark.json)")
    parser.add_argument("--markdown", type=Path,
                        help="where to write the tables for people (default: the --json file's name with .md)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "flower-benchmark",
                        help="fedgrad's run directories and the logs go here (default: runs/flower-benchmark)")
    args = parser.parse_args()
    per_round = [int(n) for n in args.per_round.split(",")]
    secure_per_round = [int(n) for n in args.secure_per_round.split(",")] if args.secure_per_round else per_round
    systems = args.systems.split(",")
    modes = args.modes.split(",")
    if "flower" in systems and not args.flower_python.exists():
        raise SystemExit(f"{args.flower_python} not found: install the bench extra in its own environment "
                         "(python3 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]') "
                         "or pass --flower-python")
    markdown = args.markdown or args.json.with_suffix(".md")
    settings = Settings(args.clients, args.rounds, args.workers, args.work_dir, args.flower_python,
                        args.fedgrad_secure, args.quiet_busy, args.quiet_window_s, args.quiet_wait_s)
    rows: list[Row] = []
    for min_count in [int(n) for n in args.min_counts.split(",")]:
        if "plain" in modes:
            measure_floors(settings, min_count, per_round, args.repeats)
        for mode in modes:
            for n in per_round if mode == "plain" else secure_per_round:
                for repeat in range(args.repeats):
                    for system in interleaved(systems, repeat):
                        quiet = settings.wait_for_quiet()
                        print(f"{system} {mode}: {n} of {args.clients} clients per round, {args.rounds} rounds, "
                              f"min_count {min_count}, repeat {repeat + 1} (cores {100 * quiet.busy:.0f}% busy, "
                              f"load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
                        rows.append(measure(settings, system, mode, n, min_count, repeat, quiet))
                        print(format_runs(rows[-1:]), file=sys.stderr, flush=True)
                        write_results(args.json, markdown, settings, rows)  # a later failure keeps these
    print(format_report(rows, settings.floors))
    for line in target_lines(rows, settings.floors):
        print(line)
    print(f"\nwritten to {args.json} and {markdown}")
    return 0


def interleaved(systems: list[str], repeat: int) -> list[str]:
    """The order the systems run in for ``repeat``: alternating, so neither always goes first."""
    return systems if repeat % 2 == 0 else systems[::-1]


def measure_floors(settings: Settings, min_count: int, per_round: list[int], repeats: int) -> None:
    """The machine's floor (``benchmarks/floor.py``) of each number per round, at this model size, into
    ``settings.floors``; one untimed warm-up pass first."""
    scenario = load_scenario(SCENARIO, scenario_overrides(settings.clients, max(per_round), settings.rounds,
                                                          settings.workers, None, min_count))
    dataset = scenario.build_dataset()
    vocab_size = len(dataset.vocab)
    round_floor(scenario, vocab_size, dataset.shards[:10])
    settings.wait_for_quiet()
    for n in per_round:
        passes = [round_floor(scenario, vocab_size, dataset.shards[:n]).seconds for _ in range(repeats)]
        settings.floors[floor_key(min_count, n)] = passes
        print(f"floor: {n} clients, min_count {min_count}: {Spread.of(passes).format('.3f')} s", file=sys.stderr,
              flush=True)


def floor_key(min_count: int, per_round: int) -> str:
    return f"{min_count}/{per_round}"


def write_results(json_path: Path, markdown_path: Path, settings: Settings, rows: list[Row]) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"clients": settings.clients, "workers": settings.workers,
                                     "rounds": settings.rounds, "quiet_busy": settings.quiet_busy,
                                     "quiet_window_s": settings.quiet_window_s, "rows": [asdict(r) for r in rows],
                                     "floors_s": settings.floors, "summary": summary(rows),
                                     "ratios": ratios(rows)}, indent=2) + "\n", encoding="utf-8")
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    targets = "\n".join(target_lines(rows, settings.floors))
    markdown_path.write_text(format_report(rows, settings.floors) + "\n\n" + targets + "\n", encoding="utf-8")


def scenario_overrides(clients: int, per_round: int, rounds: int, workers: int, secure_mode: str | None,
                       min_count: int = 5) -> list[str]:
    """The benchmark's task as ``--set`` overrides of scenarios/spam_many.toml, shared by both sides
    (``secure_mode``: fedgrad's secure aggregation for a secure row, None for a plain one)."""
    return ['data.partition="iid"', f"data.min_count={min_count}", f"federation.clients={clients}",
            f"federation.clients_per_round={per_round}",
            f"federation.min_clients={per_round}",
            f"federation.rounds={rounds}", f"federation.processes={workers}", "federation.round_timeout_s=3600",
            *([f"privacy.mode={json.dumps(secure_mode)}", *THRESHOLD_SETTINGS] if secure_mode else [])]


def measure(settings: Settings, system: str, mode: str, per_round: int, min_count: int, repeat: int,
            quiet: Quiet) -> Row:
    secure_mode = settings.fedgrad_secure if mode == "secure" else None
    overrides = scenario_overrides(settings.clients, per_round, settings.rounds, settings.workers, secure_mode,
                                   min_count)
    out_dir = settings.work_dir / f"{system}-{mode}-{per_round}-m{min_count}-r{repeat}"
    shutil.rmtree(out_dir, ignore_errors=True)  # an earlier benchmark's run here would be read as this one's
    out_dir.mkdir(parents=True)
    sets = [arg for override in overrides for arg in ("--set", override)]
    result, marker = out_dir / "flower.json", out_dir / "rounds-done"
    rounds_done: Callable[[], bool]
    if system == "fedgrad":
        command = [sys.executable, "-m", "fedgrad.cli.main", "simulate", str(SCENARIO), *sets,
                   "--set", f'output.dir="{out_dir}"']

        def rounds_done() -> bool:
            return any(path.read_bytes().count(b"\n") >= settings.rounds for path in out_dir.glob("*/metrics.jsonl"))
    else:
        command = [str(settings.flower_python), str(REPO / "benchmarks" / "flower_app.py"), "--scenario",
                   str(SCENARIO), *sets, "--workers", str(settings.workers), "--out", str(result),
                   "--rounds-done", str(marker), *(["--secure"] if mode == "secure" else [])]
        rounds_done = marker.exists
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "FLWR_TELEMETRY_ENABLED": "0"}
    log = out_dir / "output.log"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log, "wb") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, cwd=REPO)
    sampler = TreeMemorySampler(child.pid, rounds_done)
    sampler.start()
    try:
        code = child.wait()
    finally:
        if child.poll() is None:
            child.kill()
        sampler.stop()
    wall_s = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{system} {mode} at {per_round} per round failed (exit {code}); see {log}")
    if system == "fedgrad":
        (run_dir,) = [path for path in out_dir.iterdir() if (path / "metrics.jsonl").exists()]
        records = read_metrics(run_dir)
        round_s = [r.time_s.total for r in records]
        bytes_total = sum(r.moved.down + r.moved.up for r in records)
        accuracy = records[-1].accuracy
        weights, model_bytes = checkpoint_size(run_dir)
    else:
        flower = json.loads(result.read_text(encoding="utf-8"))
        round_s = flower["round_s"]
        bytes_total = flower["bytes_down"] + flower["bytes_up"]
        accuracy = flower["accuracy"][-1]
        weights, model_bytes = flower["weights"], flower["model_bytes"]
    warm = round_s[1:] or round_s
    secure_name = "" if secure_mode is None else "SecAgg+" if system == "flower" else secure_mode
    return Row(system, mode, per_round, len(round_s), sum(warm) / len(warm), round_s[0],
               sampler.rounds_peak_pss_kib / 1024, sampler.rounds_peak_rss_kib / 1024,
               sampler.peak_pss_kib / 1024, sampler.peak_rss_kib / 1024, sampler.peak_processes,
               bytes_total / len(round_s), accuracy, wall_s, min_count, weights, model_bytes, repeat, quiet.busy,
               quiet.quiet, load_before, os.getloadavg()[0], sampler.cpu_s, secure_name)


def checkpoint_size(run_dir: Path) -> tuple[int, int]:
    """The global model's weights and bytes, from the newest checkpoint a fedgrad run kept."""
    checkpoints = sorted((run_dir / "checkpoint").glob("round-*.npz"))  # only the newest are kept
    if not checkpoints:
        raise SystemExit(f"fedgrad run {run_dir} kept no checkpoint to count the model's weights from")
    with np.load(checkpoints[-1]) as archive:
        tensors = [archive[name] for name in archive.files if name.startswith("global_model/")]
    return sum(t.size for t in tensors), sum(t.size for t in tensors) * 4  # sent as float32


def configurations(rows: list[Row]) -> list[tuple[str, int, int]]:
    """(mode, per round, min_count) of the rows, in the order measured."""
    return list(dict.fromkeys((r.mode, r.per_round, r.min_count) for r in rows))


def summary(rows: list[Row]) -> list[dict[str, object]]:
    """Per configuration and side: each of ``FIGURES`` as mean, smallest and largest over the repeats."""
    out: list[dict[str, object]] = []
    for mode, n, min_count in configurations(rows):
        for system in SYSTEMS:
            runs = [r for r in rows if (r.system, r.mode, r.per_round, r.min_count) == (system, mode, n, min_count)]
            if runs:
                out.append({"system": system, "mode": mode, "per_round": n, "min_count": min_count,
                            "weights": runs[0].weights, "model_bytes": runs[0].model_bytes, "runs": len(runs),
                            "quiet": all(r.quiet for r in runs),
                            **{name: asdict(Spread.of([getattr(r, name) for r in runs])) for name, _, _ in FIGURES}})
    return out


def ratios(rows: list[Row]) -> list[dict[str, object]]:
    """For each configuration measured on both sides: Flower's time over fedgrad's (the speed-up), fedgrad's
    memory and bytes over Flower's, the accuracy difference in points; each the mean over the repeats measured
    on both sides (repeat r of each side is a pair) with the smallest and largest pair; ``quiet``: whether every
    one of those runs started on a quiet machine. Refuses pairs whose models differ (not the same task)."""
    by_key = {(r.system, r.mode, r.per_round, r.min_count, r.repeat): r for r in rows}
    out: list[dict[str, object]] = []
    for mode, n, min_count in configurations(rows):
        pairs = [(ours, theirs) for (system, m, k, c, repeat), ours in by_key.items()
                 if (system, m, k, c) == ("fedgrad", mode, n, min_count)
                 and (theirs := by_key.get(("flower", mode, n, min_count, repeat))) is not None]
        if not pairs:
            continue
        for ours, theirs in pairs:
            if (ours.weights, ours.rounds) != (theirs.weights, theirs.rounds):
                raise ValueError(f"{mode} at {n} per round, min_count {min_count}: fedgrad ran {ours.rounds} rounds "
                                 f"of a model of {ours.weights:,} weights and Flower {theirs.rounds} of "
                                 f"{theirs.weights:,}: not the same task")
        figures = {"speedup": [t.seconds_per_round / o.seconds_per_round for o, t in pairs],
                   "pss_ratio": [o.rounds_peak_pss_mib / t.rounds_peak_pss_mib for o, t in pairs],
                   "rss_ratio": [o.rounds_peak_rss_mib / t.rounds_peak_rss_mib for o, t in pairs],
                   "bytes_ratio": [o.bytes_per_round / t.bytes_per_round for o, t in pairs],
                   "accuracy_diff_pt": [100 * (o.accuracy - t.accuracy) for o, t in pairs]}
        out.append({"mode": mode, "per_round": n, "min_count": min_count, "weights": pairs[0][0].weights,
                    "model_bytes": pairs[0][0].model_bytes, "pairs": len(pairs),
                    "quiet": all(r.quiet for pair in pairs for r in pair),
                    "max_load": max(max(r.load_before, r.load_after) for pair in pairs for r in pair),
                    **{name: asdict(Spread.of(values)) for name, values in figures.items()}})
    return out


def _spread(entry: dict[str, object], name: str) -> Spread:
    value = entry[name]
    assert isinstance(value, dict)
    return Spread(**value)


def _markdown(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(line) + " |" for line in lines)])


def _model(min_count: int, model_bytes: int) -> str:
    side = "above" if model_bytes > RAY_INLINE_LIMIT_BYTES else "below"
    return f"{model_bytes:,} B ({side} 100 KiB; min_count {min_count})"


def format_runs(rows: list[Row]) -> str:
    """One markdown line per run."""
    header = ("system", "aggregation", "per round", "model", "repeat", "s/round", "round 1 s", "peak PSS sum",
              "peak RSS sum", "whole run PSS / RSS", "procs", "bytes/round", "accuracy", "wall s", "busy", "load",
              "sampler CPU s")
    return _markdown(header, [
        (r.system, r.secure_name or r.mode, f"{r.per_round:,}", _model(r.min_count, r.model_bytes), str(r.repeat + 1),
         f"{r.seconds_per_round:.3f}", f"{r.first_round_s:.2f}", f"{r.rounds_peak_pss_mib:,.0f} MiB",
         f"{r.rounds_peak_rss_mib:,.0f} MiB", f"{r.peak_pss_mib:,.0f} / {r.peak_rss_mib:,.0f} MiB",
         str(r.peak_processes), f"{r.bytes_per_round:,.0f}", f"{100 * r.accuracy:.2f} %", f"{r.wall_s:.0f}",
         f"{100 * r.busy_before:.0f} %" + ("" if r.quiet else " (not quiet)"),
         f"{r.load_before:.2f}–{r.load_after:.2f}",
         f"{r.sampler_cpu_s:.1f}") for r in rows])


def format_report(rows: list[Row], floors: dict[str, list[float]] | None = None) -> str:
    """Markdown for people: per configuration, each side's figures as mean (smallest–largest) over the repeats
    and its seconds per round over the machine's floor, then the ratios (mean pair, smallest–largest); then
    every run."""
    floors = floors or {}
    header = ("per round", "model", "aggregation", "system", "runs", *(heading for _, heading, _ in FIGURES),
              "x floor")
    lines = []
    for entry in summary(rows):
        n, min_count = int(str(entry["per_round"])), int(str(entry["min_count"]))
        floor = floors.get(floor_key(min_count, n)) if entry["mode"] == "plain" else None
        seconds = _spread(entry, "seconds_per_round")
        over_floor = f"{seconds.mean / statistics.fmean(floor):.2f}" if floor else ""
        aggregation = str(entry["mode"]) if entry["mode"] == "plain" else next(
            r.secure_name for r in rows if (r.system, r.mode) == (entry["system"], entry["mode"]))
        lines.append((f"{n:,}", _model(min_count, int(str(entry["model_bytes"]))), aggregation,
                      str(entry["system"]) + ("" if entry["quiet"] else " (not quiet)"), str(entry["runs"]),
                      *(_spread(entry, name).format(form) for name, _, form in FIGURES), over_floor))
    ratio_header = ("per round", "model", "mode", "pairs", "fedgrad faster", "PSS fedgrad/Flower",
                    "RSS fedgrad/Flower", "bytes fedgrad/Flower", "accuracy fedgrad − Flower", "max load")
    ratio_lines = [(f"{int(str(r['per_round'])):,}", _model(int(str(r["min_count"])), int(str(r["model_bytes"]))),
                    str(r["mode"]), str(r["pairs"]), _spread(r, "speedup").format(".2f") + "x",
                    "x" + _spread(r, "pss_ratio").format(".3f"), "x" + _spread(r, "rss_ratio").format(".3f"),
                    "x" + _spread(r, "bytes_ratio").format(".2f"),
                    _spread(r, "accuracy_diff_pt").format("+.2f") + " pt",
                    f"{float(str(r['max_load'])):.2f}" + ("" if r["quiet"] else " (not quiet)"))
                   for r in ratios(rows)]
    floor_lines = [f"- floor ({n} clients, min_count {m}): {Spread.of(s).format('.3f')} s"
                   for (m, n), s in ((key.split("/"), s) for key, s in floors.items())]
    return "\n\n".join(part for part in [
        _markdown(header, lines) if lines else "", _markdown(ratio_header, ratio_lines) if ratio_lines else "",
        "\n".join(floor_lines), format_runs(rows)] if part)


def target_lines(rows: list[Row], floors: dict[str, list[float]] | None = None) -> list[str]:
    """Issue 24's targets at the largest number per round measured plain, for each model size (means over the
    repeats): fedgrad at least 10x faster per round, at most half of Flower's memory by PSS and by RSS sums, the
    same accuracy to within 0.5 pt; a configuration with a run that started on a machine not quiet says so. Then,
    where ``floors`` has it, fedgrad's seconds per round there over the machine's floor."""
    lines = []
    plain = [r for r in ratios(rows) if r["mode"] == "plain"]
    for min_count in dict.fromkeys(int(str(r["min_count"])) for r in plain):
        largest = max((r for r in plain if r["min_count"] == min_count), key=lambda r: int(str(r["per_round"])))
        where = f"{int(str(largest['per_round'])):,} per round, {_model(min_count, int(str(largest['model_bytes'])))}"
        speedup, pss, rss, accuracy = (_spread(largest, name) for name in
                                       ("speedup", "pss_ratio", "rss_ratio", "accuracy_diff_pt"))
        checks = [("at least 10x faster per round", speedup.format(".2f") + "x", speedup.mean >= 10),
                  ("at most half of Flower's memory (PSS sum)", "x" + pss.format(".3f"), pss.mean <= 0.5),
                  ("at most half of Flower's memory (RSS sum)", "x" + rss.format(".3f"), rss.mean <= 0.5),
                  ("accuracy within 0.5 pt", accuracy.format("+.2f") + " pt", abs(accuracy.mean) <= 0.5)]
        loaded = "" if largest["quiet"] else f" (a run started on a busy machine; load up to {largest['max_load']:.2f})"
        lines += [f"target at {where}, {name}: {figure} -> {'met' if ok else 'NOT met'}{loaded}"
                  for name, figure, ok in checks]
        floor = (floors or {}).get(floor_key(min_count, int(str(largest["per_round"]))))
        ours = next((e for e in summary(rows) if (e["system"], e["mode"], e["per_round"], e["min_count"]) ==
                     ("fedgrad", "plain", largest["per_round"], min_count)), None)
        if floor and ours is not None:
            seconds, floor_s = _spread(ours, "seconds_per_round").mean, statistics.fmean(floor)
            lines.append(f"at {where}, fedgrad's {seconds:.3f} s per round is {seconds / floor_s:.2f}x the machine's "
                         f"floor of {floor_s:.3f} s (training and encoding the round's clients in one process)")
    return lines


if __name__ == "__main__":
    sys.exit(main())
