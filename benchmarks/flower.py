"""fedgrad and Flower side by side on one task: seconds per round, memory of all processes, bytes, accuracy.

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/flower.py [--per-round 10,100,1000] [--rounds 3] [--modes plain,secure]
                                          [--clients 4837] [--workers N] [--min-counts 5,2] [--repeats 3]
                                          [--quiet-load 0.5] [--flower-python PY] [--json FILE]

The bench extra (``flwr[simulation]==1.42.0``) pins ``ray==2.55.1`` and ``protobuf<7``, which conflict with the
``ray`` extra and with the protobuf that fedgrad's generated gRPC code needs, hence its own virtual environment
(``--flower-python``, default ``.venv-bench/bin/python``) for the Flower side; fedgrad runs with this script's
Python, in the project's own environment.

The task: ``scenarios/spam_many.toml`` (the book model, its local epochs, batch size and learning rate) with an
IID split over ``--clients`` clients (4837 = one email each: SpamAssassin's training split at test_fraction 0.2),
``--per-round`` of them sampled per round, ``--rounds`` rounds. For each number per round and each mode:

* fedgrad: ``fedgrad simulate`` (the product: a coordinator, ``--workers`` client processes hosting the
  virtual clients, gRPC over TLS; ``secure`` = ``--fedgrad-secure``: ``paillier-masked`` (default) or
  ``paillier``, threshold Paillier with its decryptor processes). Seconds per round (``time_s.total``) and gRPC
  bytes (``bytes``: down + up) come from the run's ``metrics.jsonl``; accuracy is the last round's.
* Flower: ``benchmarks/flower_app.py`` in Flower's simulation engine (Ray, ``--workers`` actors of one CPU;
  ``secure`` = SecAgg+). The dataset, model, initial weights and local training are fedgrad's own
  (``Scenario.build_dataset``, ``fedgrad.training.train_local`` with each client's fedgrad seed), so the
  difference measured is the platform. Seconds per round are the times between consecutive evaluations on the
  test set; bytes are the sizes of every message a client received and sent, serialized as Flower's protobuf
  ``Message``: in simulation they move in-process, not over a network.

Seconds per round is the mean over rounds 2..R: Flower starts its Ray actors (and they import fedgrad) during
round 1, while fedgrad's client processes have started and joined before its round 1; round 1 is shown apart.

Memory of all processes: each side runs as one child process of this script; every 100 ms the script lists
that child's whole process tree (every descendant, through /proc/<pid>/stat's parent pids: client processes,
decryptors, Ray's GCS, raylet and worker actors) and sums its members' resident memory; the figure reported
is the peak of that sum over the run (``RSS``). RSS counts a page shared by two processes twice (Ray's
workers share the object store), so the peak of the summed proportional set sizes (``PSS``: each shared page
divided among its sharers, from /proc/<pid>/smaps_rollup) is reported next to it. Both sides are measured
alike. (``getrusage(RUSAGE_CHILDREN)`` would give the largest single descendant's peak, not the sum.)
Memory is ranked by PSS: RSS sums flatter the side with fewer processes (Ray runs a dozen, each counting the
pages it shares with the others); both sums are checked against the target.

Fairness. Each configuration runs ``--repeats`` times per side, interleaved (fedgrad then Flower, then Flower
then fedgrad, ...), each run after waiting (up to ``--quiet-wait-s``) for the 1-minute load average to fall
below ``--quiet-load``; the load before and after each run is recorded, and a ratio measured on a machine that
never got quiet says so. A ratio is the median over the repeats of the pair measured together (repeat r of
each side), with the smallest and largest pair beside it. Two model sizes (``--min-counts``: the book model
has one weight per vocabulary word, and ``data.min_count`` sets the vocabulary): with the default 5 the model
(~12.9k weights, ~50 KiB) is below Ray's 100 KiB limit for objects passed inline, with 2 (~28k weights) above
it, where Flower's messages go through Ray's object store.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from fedgrad.results import read_metrics

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "spam_many.toml"
SAMPLE_S = 0.1
#: fedgrad's secure rows (``--fedgrad-secure``): the hybrid ``paillier-masked`` (default) or ``paillier``, both
#: with 3 decryptor processes of which any 2 decrypt, the settings of scenarios/spam_paillier.toml.
FEDGRAD_SECURE_MODES = ("paillier-masked", "paillier")
THRESHOLD_SETTINGS = ["privacy.decryptors=3", "privacy.threshold=2", "privacy.key_bits=2048", "privacy.clip=1.0",
                      "privacy.value_bits=16"]
SYSTEMS = ("fedgrad", "flower")


@dataclass
class Row:
    system: str             # fedgrad | flower
    mode: str               # plain | secure
    per_round: int
    rounds: int
    seconds_per_round: float  # mean over rounds 2..R (round 1 alone if R = 1)
    first_round_s: float      # round 1: includes Flower's lazy Ray actor start-up
    peak_rss_mib: float     # peak over the run of the sum of the process tree's RSS
    peak_pss_mib: float     # the same with PSS (shared pages divided among their sharers)
    peak_processes: int     # most processes in the tree at one sample
    bytes_per_round: float  # down + up
    accuracy: float         # after the last round
    wall_s: float           # the whole child process: start-up, data, rounds, shutdown
    min_count: int = 5      # data.min_count: the model's size (one weight per vocabulary word)
    weights: int = 0        # the model's weights (counted on the fedgrad side; 0 on Flower's)
    repeat: int = 0         # which repeat of this configuration
    load_before: float = 0.0  # 1-minute load average when the run started
    load_after: float = 0.0   # and when it ended
    secure_name: str = ""   # the secure aggregation of a secure row: fedgrad's mode, or Flower's SecAgg+


class TreeMemorySampler(threading.Thread):
    """Every ``interval_s``, sums RSS and PSS over ``pid`` and all its descendants; keeps the peaks of the sums."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_S, proc: Path = Path("/proc")) -> None:
        super().__init__(daemon=True)
        self._pid, self._interval_s, self._proc = pid, interval_s, proc
        self._stopped = threading.Event()
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self.peak_processes = 0

    def run(self) -> None:
        while not self._stopped.is_set():
            self.sample()
            self._stopped.wait(self._interval_s)

    def sample(self) -> None:
        tree = descendants(self._pid, parent_pids(self._proc))
        rss = pss = 0
        for pid in tree:
            memory = memory_kib(self._proc / str(pid) / "smaps_rollup")
            rss, pss = rss + memory.get("Rss", 0), pss + memory.get("Pss", 0)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.peak_processes = max(self.peak_processes, len(tree))

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def parent_pids(proc: Path = Path("/proc")) -> dict[int, int]:
    """pid -> parent pid of every process now running (those that exit while being read are left out)."""
    parents = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return parents


def descendants(root: int, parents: dict[int, int]) -> list[int]:
    """``root`` (if running) and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, todo = [], [root] if root in parents else []
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory_kib(smaps_rollup: Path) -> dict[str, int]:
    """The kB fields of a /proc/<pid>/smaps_rollup (Rss, Pss, ...); empty if the process has gone."""
    try:
        lines = smaps_rollup.read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return fields


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
                        help="data.min_count of each model size (default: 5,2: below and above Ray's 100 KiB "
                             "inline-object limit)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side and configuration, interleaved "
                                                                "(default: 3)")
    parser.add_argument("--quiet-load", type=float, default=0.5,
                        help="wait before each run until the 1-minute load average is below this (default: 0.5)")
    parser.add_argument("--quiet-wait-s", type=float, default=600.0,
                        help="the longest wait for a quiet machine before running anyway (default: 600)")
    parser.add_argument("--flower-python", type=Path, default=REPO / ".venv-bench" / "bin" / "python",
                        help="a Python with the bench extra installed (default: .venv-bench/bin/python)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="fedgrad and/or flower (default: both)")
    parser.add_argument("--fedgrad-secure", choices=FEDGRAD_SECURE_MODES, default=FEDGRAD_SECURE_MODES[0],
                        help="fedgrad's secure aggregation for the secure rows (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "flower-benchmark.json",
                        help="where to write the measurements (default: runs/flower-benchmark.json)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "flower-benchmark",
                        help="fedgrad's run directories and the logs go here (default: runs/flower-benchmark)")
    args = parser.parse_args()
    per_round = [int(n) for n in args.per_round.split(",")]
    secure_per_round = [int(n) for n in args.secure_per_round.split(",")] if args.secure_per_round else per_round
    systems = args.systems.split(",")
    if "flower" in systems and not args.flower_python.exists():
        raise SystemExit(f"{args.flower_python} not found: install the bench extra in its own environment "
                         "(python3 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]') "
                         "or pass --flower-python")
    rows: list[Row] = []
    for min_count in [int(n) for n in args.min_counts.split(",")]:
        for mode in args.modes.split(","):
            for n in per_round if mode == "plain" else secure_per_round:
                for repeat in range(args.repeats):
                    for system in interleaved(systems, repeat):
                        load = wait_for_quiet(args.quiet_load, args.quiet_wait_s)
                        print(f"{system} {mode}: {n} of {args.clients} clients per round, {args.rounds} rounds, "
                              f"min_count {min_count}, repeat {repeat + 1} (load {load:.2f}) ...", file=sys.stderr,
                              flush=True)
                        row = measure(system, mode, n, args.clients, args.rounds, args.workers, args.work_dir,
                                      args.flower_python, min_count, repeat, args.fedgrad_secure)
                        rows.append(row)
                        print(format_table(rows[-1:]), file=sys.stderr, flush=True)
                        write_json(args.json, args.clients, args.workers, rows)  # a later failure keeps these
    print(format_table(rows))
    for line in target_lines(rows, args.quiet_load):
        print(line)
    print(f"\nwritten to {args.json}")
    return 0


def interleaved(systems: list[str], repeat: int) -> list[str]:
    """The order the systems run in for ``repeat``: alternating, so neither always goes first."""
    return systems if repeat % 2 == 0 else systems[::-1]


def wait_for_quiet(threshold: float, longest_s: float) -> float:
    """Wait until the 1-minute load average is below ``threshold`` (at most ``longest_s``); the load then."""
    deadline = time.monotonic() + longest_s
    while (load := os.getloadavg()[0]) >= threshold and time.monotonic() < deadline:
        time.sleep(5.0)  # the load average itself moves over a minute
    return load


def write_json(path: Path, clients: int, workers: int, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"clients": clients, "workers": workers, "rows": [asdict(r) for r in rows],
                                "ratios": ratios(rows)}, indent=2) + "\n", encoding="utf-8")


def scenario_overrides(clients: int, per_round: int, rounds: int, workers: int, secure_mode: str | None,
                       min_count: int = 5) -> list[str]:
    """The benchmark's task as ``--set`` overrides of scenarios/spam_many.toml, shared by both sides
    (``secure_mode``: fedgrad's secure aggregation for a secure row, None for a plain one)."""
    return ['data.partition="iid"', f"data.min_count={min_count}", f"federation.clients={clients}",
            f"federation.clients_per_round={per_round}",
            f"federation.min_clients={per_round}",
            f"federation.rounds={rounds}", f"federation.processes={workers}", "federation.round_timeout_s=3600",
            *([f"privacy.mode={json.dumps(secure_mode)}", *THRESHOLD_SETTINGS] if secure_mode else [])]


def measure(system: str, mode: str, per_round: int, clients: int, rounds: int, workers: int, work_dir: Path,
            flower_python: Path, min_count: int = 5, repeat: int = 0,
            fedgrad_secure: str = FEDGRAD_SECURE_MODES[0]) -> Row:
    secure_mode = fedgrad_secure if mode == "secure" else None
    overrides = scenario_overrides(clients, per_round, rounds, workers, secure_mode, min_count)
    out_dir = work_dir / f"{system}-{mode}-{per_round}-m{min_count}-r{repeat}"
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = [arg for override in overrides for arg in ("--set", override)]
    result = out_dir / "flower.json"
    if system == "fedgrad":
        command = [sys.executable, "-m", "fedgrad.cli.main", "simulate", str(SCENARIO), *sets,
                   "--set", f'output.dir="{out_dir}"']
    else:
        command = [str(flower_python), str(REPO / "benchmarks" / "flower_app.py"), "--scenario", str(SCENARIO), *sets,
                   "--workers", str(workers), "--out", str(result), *(["--secure"] if mode == "secure" else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "FLWR_TELEMETRY_ENABLED": "0"}
    log = out_dir / "output.log"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log, "wb") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, cwd=REPO)
    sampler = TreeMemorySampler(child.pid)
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
        checkpoints = sorted((run_dir / "checkpoint").glob("round-*.npz"))  # only the newest are kept
        if not checkpoints:
            raise SystemExit(f"fedgrad run {run_dir} kept no checkpoint to count the model's weights from")
        with np.load(checkpoints[-1]) as archive:
            weights = sum(archive[name].size for name in archive.files if name.startswith("global_model/"))
    else:
        flower = json.loads(result.read_text(encoding="utf-8"))
        round_s = flower["round_s"]
        bytes_total = flower["bytes_down"] + flower["bytes_up"]
        accuracy = flower["accuracy"][-1]
        weights = 0
    warm = round_s[1:] or round_s
    secure_name = "" if secure_mode is None else "SecAgg+" if system == "flower" else secure_mode
    return Row(system, mode, per_round, len(round_s), sum(warm) / len(warm), round_s[0],
               sampler.peak_rss_kib / 1024, sampler.peak_pss_kib / 1024, sampler.peak_processes,
               bytes_total / len(round_s), accuracy, wall_s, min_count, weights, repeat, load_before,
               os.getloadavg()[0], secure_name)


def ratios(rows: list[Row]) -> list[dict[str, float | int | str]]:
    """For each configuration (mode, per round, model size) measured on both sides: Flower's time over fedgrad's
    (the speed-up), fedgrad's memory and bytes over Flower's, the accuracy difference in points; each the median
    over the repeats measured on both sides (repeat r of each side is a pair), with the smallest and largest
    pair as ``*_min`` and ``*_max``; ``max_load``: the highest load average around any of those runs."""
    by_key = {(r.system, r.mode, r.per_round, r.min_count, r.repeat): r for r in rows}
    configurations = dict.fromkeys((mode, n, m) for (system, mode, n, m, _) in by_key if system == "fedgrad")
    out: list[dict[str, float | int | str]] = []
    for mode, n, min_count in configurations:
        pairs = [(ours, theirs) for (system, m, k, c, repeat), ours in by_key.items()
                 if (system, m, k, c) == ("fedgrad", mode, n, min_count)
                 and (theirs := by_key.get(("flower", mode, n, min_count, repeat))) is not None]
        if not pairs:
            continue
        figures = {"speedup": [t.seconds_per_round / o.seconds_per_round for o, t in pairs],
                   "rss_ratio": [o.peak_rss_mib / t.peak_rss_mib for o, t in pairs],
                   "pss_ratio": [o.peak_pss_mib / t.peak_pss_mib for o, t in pairs],
                   "bytes_ratio": [o.bytes_per_round / t.bytes_per_round for o, t in pairs],
                   "accuracy_diff_pt": [100 * (o.accuracy - t.accuracy) for o, t in pairs]}
        entry: dict[str, float | int | str] = {"mode": mode, "per_round": n, "min_count": min_count,
                                               "weights": max(o.weights for o, _ in pairs), "pairs": len(pairs),
                                               "max_load": max(max(r.load_before, r.load_after)
                                                               for pair in pairs for r in pair)}
        for name, values in figures.items():
            entry[name] = statistics.median(values)
            entry[f"{name}_min"], entry[f"{name}_max"] = min(values), max(values)
        out.append(entry)
    return out


def format_table(rows: list[Row]) -> str:
    """One line per run, then one line of ratios per configuration measured on both sides (median, and the
    smallest to largest pair)."""
    header = ("system", "aggregation", "per round", "weights", "s/round", "round 1 s", "peak PSS sum",
              "peak RSS sum", "procs", "bytes/round", "accuracy", "load")
    lines = [(r.system, r.secure_name or r.mode, f"{r.per_round:,}",
              f"{r.weights:,}" if r.weights else f"min_count {r.min_count}", f"{r.seconds_per_round:.2f}",
              f"{r.first_round_s:.2f}", f"{r.peak_pss_mib:,.0f} MiB", f"{r.peak_rss_mib:,.0f} MiB",
              str(r.peak_processes), f"{r.bytes_per_round:,.0f}", f"{100 * r.accuracy:.2f} %",
              f"{r.load_before:.2f}-{r.load_after:.2f}") for r in rows]

    def spread(ratio: dict[str, float | int | str], name: str, form: str) -> str:
        low, high = float(ratio[f"{name}_min"]), float(ratio[f"{name}_max"])
        return format(float(ratio[name]), form) + (f" ({low:{form}}..{high:{form}})" if int(ratio["pairs"]) > 1 else "")

    for ratio in ratios(rows):
        lines.append(("fedgrad/flower", str(ratio["mode"]), f"{ratio['per_round']:,}",
                      f"{ratio['weights']:,}" if ratio["weights"] else f"min_count {ratio['min_count']}",
                      spread(ratio, "speedup", ".2f") + "x faster", "", "x" + spread(ratio, "pss_ratio", ".3f"),
                      "x" + spread(ratio, "rss_ratio", ".3f"), f"{ratio['pairs']} pairs",
                      "x" + spread(ratio, "bytes_ratio", ".2f"),
                      spread(ratio, "accuracy_diff_pt", "+.2f") + " pt", f"<= {float(ratio['max_load']):.2f}"))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True))
                     for line in [header, *lines])


def target_lines(rows: list[Row], quiet_load: float = float("inf")) -> list[str]:
    """Issue 24's targets at the largest number per round measured plain, for each model size (medians over the
    repeats): fedgrad at least 10x faster per round, at most half of Flower's memory by PSS and by RSS sums, the
    same accuracy to within 0.5 pt; a configuration measured above ``quiet_load`` says so."""
    lines = []
    for min_count in dict.fromkeys(int(r["min_count"]) for r in ratios(rows)):
        plain = [r for r in ratios(rows) if r["mode"] == "plain" and r["min_count"] == min_count]
        if not plain:
            continue
        largest = max(plain, key=lambda r: int(r["per_round"]))
        where = f"{largest['per_round']:,} per round, min_count {min_count}"
        if largest["weights"]:
            where += f" ({largest['weights']:,} weights)"
        checks = [("at least 10x faster per round", f"{largest['speedup']:.2f}x", float(largest["speedup"]) >= 10),
                  ("at most half of Flower's memory (PSS sum)", f"x{largest['pss_ratio']:.3f}",
                   float(largest["pss_ratio"]) <= 0.5),
                  ("at most half of Flower's memory (RSS sum)", f"x{largest['rss_ratio']:.3f}",
                   float(largest["rss_ratio"]) <= 0.5),
                  ("accuracy within 0.5 pt", f"{largest['accuracy_diff_pt']:+.2f} pt",
                   abs(float(largest["accuracy_diff_pt"])) <= 0.5)]
        loaded = (f" (measured at load up to {float(largest['max_load']):.2f}, not quiet)"
                  if float(largest["max_load"]) >= quiet_load else "")
        lines += [f"target at {where}, {name}: {figure} -> {'met' if ok else 'NOT met'}{loaded}"
                  for name, figure, ok in checks]
    return lines


if __name__ == "__main__":
    sys.exit(main())
