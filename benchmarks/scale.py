"""The coordinator's memory against the clients per round, for plain and threshold-Paillier rounds, both launchers.

    python benchmarks/scale.py [--scenario scenarios/spam_email_clients.toml] [--per-round 100,250,500,1000]
                               [--modes none,paillier] [--launchers local,ray] [--rounds 3] [--ray-cpus N]
                               [--quiet-busy 0.15] [--quiet-wait-s 180] [--json FILE]

Each combination of privacy mode (``--modes``, by the name ``privacy.mode`` takes), launcher (``--launchers``)
and clients per round (``--per-round``) runs the scenario (by default one client per training email, 4,837
clients in 4 client processes) as ``fedgrad simulate`` runs it: TLS, run tokens, for ``paillier`` a dealer
and three decryptor processes, the clients as local ``fedgrad client`` processes or as Ray tasks on a local
Ray cluster. The run directory is prepared here first and the simulation is started with ``fedgrad simulate
--resume RUN_DIR``, so that the process measured holds the coordinator (and the launcher's driver) but has
never parsed the corpus.

Read from /proc every 100 ms, the process tree every second (the sampler's own CPU time is recorded):

* the coordinator: the peak resident memory (VmHWM) of the ``simulate`` process, its highest RSS until the
  last round's record appears (the rounds, without the final evaluation of every client), and its RSS as
  each round's record appears;
* the clients: the peak resident memory of each client process (``fedgrad client``, or a Ray worker),
  summed: an upper bound of what they held at once;
* every process of the run on its own (the ``simulate`` process's whole tree, each by its role: coordinator,
  client, decryptor, or its executable's name, such as Ray's ``raylet`` and ``gcs_server``): its peak RSS
  (VmHWM, the kernel's own peak) and its peak proportional set size (PSS, from /proc/PID/smaps_rollup,
  sampled: a page shared by n processes counts 1/n in each, so PSS sums to what the processes hold together,
  where RSS counts shared pages, such as a forked parent's or Ray's object store, once per process).

The machine's floor for a round (plain rounds only, ``benchmarks/floor.py``): the seconds this process takes
to train ``--per-round`` clients of the prepared run and encode their updates with a client's own code
(``client.trainer.LocalTrainer``), one after another, no messaging at all; a round's seconds over the floor
is what the platform costs on top of the clients' work.

Reported per mode and launcher: the slope of the coordinator's peak against the clients per round
(least squares, MiB per +100 clients per round: what the coordinator holds per client of a round, such as
records, buffered uploads and queued contributions; a coordinator that streams updates shows ~0), and the
mean seconds per round. The target: under 250 MiB at 1,000 clients per round. With both launchers, per mode
and clients per round: Ray's seconds per round and memory over the local processes' (issue 24: within 20%),
each launcher's start-up (from starting ``simulate`` to its round 1 starting: the launcher, the client
processes or Ray workers, every client joining) and, measured once first, a bare ``ray.init()`` in a fresh
Python process. Each run waits for a quiet machine first (``benchmarks/machine.py``: less than ``--quiet-busy``
of all cores busy over 10 s, at most ``--quiet-wait-s``); the busy fraction and the load are recorded.

Issue 24's measurement (plain rounds at 1,000 of 4,837 clients per round, local processes and Ray; about 4
minutes on a quiet 2-core machine)::

    .venv/bin/python benchmarks/scale.py --modes none --launchers local,ray --per-round 1000 --rounds 3

and a check at a small size (about a minute)::

    .venv/bin/python benchmarks/scale.py --modes none --launchers local --per-round 10 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from benchmarks.floor import round_floor
from benchmarks.machine import ProcessTree, memory_kib, wait_for_quiet
from fedgrad.data import load_shard
from fedgrad.results import read_metrics
from fedgrad.scenario import load_scenario
from server.experiment import PreparedRun, client_ids, prepare_run
from server.registry import issue_run_tokens

REPO = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.1
TARGET_MIB = 250.0
#: Scenario overrides that turn each privacy mode on, by the name ``privacy.mode`` takes. A mode not listed
#: here runs with ``privacy.mode`` set and the scenario's other privacy settings.
MODES: dict[str, list[str]] = {
    "none": ['privacy.mode="none"'],
    "paillier": ['privacy.mode="paillier"', "privacy.key_bits=2048", "privacy.clip=1.0", "privacy.value_bits=16"],
}


@dataclass
class Measurement:
    mode: str
    launcher: str
    clients: int
    clients_per_round: int
    rounds: int
    coordinator_peak_mib: float        # VmHWM of the process hosting the coordinator
    coordinator_rounds_peak_mib: float  # its highest RSS seen until the last round's record appeared
    coordinator_after_each_round_mib: list[float]
    clients_peak_mib: float            # the client processes' peaks, summed
    client_processes: int
    coordinator_peak_pss_mib: float    # the highest PSS seen of the process hosting the coordinator
    clients_peak_pss_mib: float        # the client processes' highest PSS, summed
    processes: list[dict[str, Any]]    # every process of the run: role, pid, peak RSS and peak PSS in MiB
    sampler_cpu_s: float               # CPU seconds the sampler itself spent
    mean_round_s: float
    floor_s: float                     # train + encode the round's clients in one process, no messaging (0: not run)
    clients_used: list[int]
    accuracy: float
    wall_s: float
    startup_s: float                   # from starting ``simulate`` to its round 1 starting (launcher, clients joining)
    busy_before: float                 # fraction of all cores busy over the quiet window before the run
    load_before: float                 # 1-minute load average when the run started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "spam_email_clients.toml")
    parser.add_argument("--per-round", default="100,250,500,1000",
                        help="clients sampled per round (default: 100,250,500,1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per run (default: 3)")
    parser.add_argument("--modes", default="none,paillier", help="privacy modes by name (default: none,paillier)")
    parser.add_argument("--launchers", default="local,ray", help="local and/or ray (default: local,ray)")
    parser.add_argument("--ray-cpus", type=float,
                        help="CPUs Ray reserves per client worker (default: the launcher's, which lets every worker "
                             "run at once)")
    parser.add_argument("--quiet-busy", type=float, default=0.15,
                        help="before each run, wait until less than this fraction of all cores was busy over 10 s "
                             "(default: 0.15)")
    parser.add_argument("--quiet-wait-s", type=float, default=180.0,
                        help="the longest wait for a quiet machine before running anyway (default: 180)")
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "scale-benchmark.json",
                        help="where to write the measurements (default: runs/scale-benchmark.json)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "scale-benchmark",
                        help="run directories go here (default: runs/scale-benchmark)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.per_round.split(",")]
    results: list[Measurement] = []
    launchers = args.launchers.split(",")
    ray_init = bare_ray_init() if "ray" in launchers else {}
    for mode in args.modes.split(","):
        for launcher in launchers:
            for per_round in sizes:
                quiet = wait_for_quiet(args.quiet_busy, args.quiet_wait_s)
                results.append(measure(args.scenario, mode, launcher, per_round, args.rounds, args.ray_cpus,
                                       args.work_dir, quiet.busy))
                _write(args.json, results, ray_init)  # a long sweep keeps what it measured so far
    report(results, ray_init)
    print(f"\nwritten to {args.json}")
    return 0


def measure(scenario_path: Path, mode: str, launcher: str, per_round: int, rounds: int, ray_cpus: float | None,
            work_dir: Path, busy_before: float = 0.0) -> Measurement:
    overrides = [*MODES.get(mode, [f'privacy.mode="{mode}"']), f"federation.clients_per_round={per_round}",
                 f"federation.min_clients={max(per_round // 2, 2)}", f"federation.rounds={rounds}",
                 f"output.dir={work_dir}"]
    print(f"preparing {mode}, {launcher}: {per_round} clients per round ...", file=sys.stderr)
    prepared = prepare_run(load_scenario(scenario_path, overrides))
    run_dir = prepared.writer.run_dir
    issue_run_tokens(run_dir, client_ids(prepared.scenario))
    log = run_dir / "simulate.log"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with open(log, "wb") as output:
        ray = ["--ray-cpus", str(ray_cpus)] if launcher == "ray" and ray_cpus is not None else []
        simulate = subprocess.Popen([sys.executable, "-m", "fedgrad.cli.main", "simulate", "--resume", str(run_dir),
                                     "--launcher", launcher, *ray], stdout=output, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=REPO)
    sampler = MemorySampler(simulate.pid, run_dir, rounds)
    sampler.start()
    try:
        if simulate.wait(timeout=3600) != 0:
            raise SystemExit(f"the simulation failed; see {log}")
    finally:
        if simulate.poll() is None:
            simulate.kill()
        sampler.stop()
    records = read_metrics(run_dir)
    floor = floor_s(prepared, per_round) if mode == "none" else 0.0
    return Measurement(
        mode=mode, launcher=launcher, clients=prepared.scenario.federation.clients, clients_per_round=per_round,
        rounds=len(records), coordinator_peak_mib=sampler.peak_kib / 1024,
        coordinator_rounds_peak_mib=sampler.rounds_peak_kib / 1024,
        coordinator_after_each_round_mib=[round(kib / 1024, 1) for kib in sampler.after_round_kib],
        clients_peak_mib=sum(sampler.peaks("client", "VmHWM")) / 1024,
        client_processes=len(sampler.peaks("client", "VmHWM")),
        coordinator_peak_pss_mib=sampler.pss_peaks_kib.get(simulate.pid, 0) / 1024,
        clients_peak_pss_mib=sum(sampler.peaks("client", "Pss")) / 1024,
        processes=sampler.processes(), sampler_cpu_s=round(sampler.cpu_s, 2),
        mean_round_s=sum(r.time_s.total for r in records) / len(records), floor_s=floor,
        clients_used=[r.clients_used for r in records], accuracy=records[-1].accuracy,
        wall_s=time.perf_counter() - started,
        startup_s=sampler.record_seen_at[0] - started - records[0].time_s.total if sampler.record_seen_at else 0.0,
        busy_before=busy_before, load_before=load_before)


def bare_ray_init() -> dict[str, float]:
    """A bare ``ray.init()`` in a fresh Python process, as the launcher calls it (a local node, no dashboard):
    seconds to import ray, and to start the node and connect."""
    code = ("import json, time; started = time.perf_counter(); import ray; imported = time.perf_counter(); "
            "ray.init(include_dashboard=False, log_to_driver=False); ready = time.perf_counter(); ray.shutdown(); "
            "print(json.dumps({'import_s': imported - started, 'init_s': ready - imported}))")
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"a bare ray.init() failed: {done.stderr.strip().splitlines()[-1:]}")
    timings: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return timings


def launcher_comparison(results: list[Measurement]) -> list[dict[str, Any]]:
    """Per mode and clients per round measured with both launchers: Ray's figures over the local processes'
    (seconds per round, the coordinator's peak, the client processes' peak sums, RSS and PSS) and whether each
    is within 20%, with both start-ups."""
    out = []
    for mode, per_round in dict.fromkeys((r.mode, r.clients_per_round) for r in results):
        by_launcher = {r.launcher: r for r in results if (r.mode, r.clients_per_round) == (mode, per_round)}
        if {"local", "ray"} <= by_launcher.keys():
            local, ray = by_launcher["local"], by_launcher["ray"]
            figures = {name: getattr(ray, name) / getattr(local, name) for name in (
                "mean_round_s", "coordinator_peak_mib", "coordinator_peak_pss_mib", "clients_peak_mib",
                "clients_peak_pss_mib")}
            out.append({"mode": mode, "per_round": per_round, "ray_over_local": figures,
                        "within_20pct": {name: abs(ratio - 1) <= 0.2 for name, ratio in figures.items()},
                        "startup_s": {"local": local.startup_s, "ray": ray.startup_s}})
    return out


def floor_s(prepared: PreparedRun, clients: int) -> float:
    """The machine's floor (``benchmarks/floor.py``) for ``clients`` of ``prepared``'s clients: train and encode
    their updates with a client's own code, one after another in this process, no messaging."""
    shards = [load_shard(prepared.data_dir, index) for index in range(clients)]
    return round_floor(prepared.scenario, prepared.vocab_size, shards).seconds


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs (0 with fewer than two distinct xs)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def _status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB; empty once it has exited."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM") if key in fields}


def _role(pid: int, root: int) -> str:
    """What process ``pid`` of the tree below the ``simulate`` process ``root`` is: ``coordinator`` (``root``
    itself, also the Ray driver), ``client`` (a ``fedgrad client`` process, or a Ray worker: its command line is
    its task's name), ``decryptor``, or the name of its executable (Ray's ``gcs_server``, ``raylet``, ...)."""
    if pid == root:
        return "coordinator"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"
    if "fedgrad.cli.main client" in command or command.startswith("ray::"):
        return "client"
    if "fedgrad.cli.main decryptor" in command:
        return "decryptor"
    return name


class MemorySampler(threading.Thread):
    """Samples the coordinator's process and every process below it until stopped (see the module docstring)."""

    def __init__(self, pid: int, run_dir: Path, rounds: int) -> None:
        super().__init__(daemon=True)
        self._pid = pid
        self._tree = ProcessTree(pid)
        self._rounds = rounds
        self._metrics = run_dir / "metrics.jsonl"
        self._stopped = threading.Event()
        self.peak_kib = 0
        self.rounds_peak_kib = 0
        self.after_round_kib: list[int] = []
        self.record_seen_at: list[float] = []  # perf_counter when each round's record was first seen
        self.roles: dict[int, str] = {}
        self.rss_peaks_kib: dict[int, int] = {}  # VmHWM: the kernel's own peak of each process's RSS
        self.pss_peaks_kib: dict[int, int] = {}  # the highest PSS sampled
        self.cpu_s = 0.0  # what sampling cost this process's sampler thread

    def run(self) -> None:
        while not self._stopped.is_set():
            started = time.thread_time()
            status = _status_kib(self._pid)
            if "VmRSS" not in status:  # exited (or exiting)
                return
            self.peak_kib = max(self.peak_kib, status["VmHWM"])
            rounds = self._rounds_recorded()
            if rounds < self._rounds:  # the final evaluation of every client and the shutdown come after
                self.rounds_peak_kib = max(self.rounds_peak_kib, status["VmRSS"])
            while rounds > len(self.after_round_kib):
                self.after_round_kib.append(status["VmRSS"])
                self.record_seen_at.append(time.perf_counter())
            for pid in self._tree.pids():
                self._sample(pid)
            self.cpu_s += time.thread_time() - started
            self._stopped.wait(SAMPLE_S)

    def _sample(self, pid: int) -> None:
        if self.roles.get(pid) not in ("coordinator", "client", "decryptor"):  # a Ray worker names its task late
            role = _role(pid, self._pid)
            if role != "gone" or pid not in self.roles:  # an exiting process keeps the name it was seen with
                self.roles[pid] = role
        self.rss_peaks_kib[pid] = max(self.rss_peaks_kib.get(pid, 0), _status_kib(pid).get("VmHWM", 0))
        pss = memory_kib(Path(f"/proc/{pid}/smaps_rollup")).get("Pss", 0)  # 0 once it has exited
        self.pss_peaks_kib[pid] = max(self.pss_peaks_kib.get(pid, 0), pss)

    def peaks(self, role: str, kind: str) -> list[int]:
        """Each ``role`` process's peak ``kind`` (``VmHWM`` or ``Pss``) in KiB."""
        peaks = self.rss_peaks_kib if kind == "VmHWM" else self.pss_peaks_kib
        return [peaks[pid] for pid, r in self.roles.items() if r == role]

    def processes(self) -> list[dict[str, Any]]:
        """Every process seen holding memory, by role then pid: its peak RSS and peak PSS in MiB (a short-lived
        helper, such as ``ldconfig``, that exited before it was read is left out)."""
        order = {"coordinator": 0, "client": 1, "decryptor": 2}
        return [{"role": self.roles[pid], "pid": pid, "peak_rss_mib": round(self.rss_peaks_kib[pid] / 1024, 1),
                 "peak_pss_mib": round(self.pss_peaks_kib[pid] / 1024, 1)}
                for pid in sorted(self.roles, key=lambda pid: (order.get(self.roles[pid], 3), self.roles[pid], pid))
                if self.rss_peaks_kib[pid] or self.pss_peaks_kib[pid]]

    def _rounds_recorded(self) -> int:
        try:
            return self._metrics.read_bytes().count(b"\n")
        except OSError:
            return 0

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def summarize(results: list[Measurement]) -> dict[str, dict[str, Any]]:
    """Per mode and launcher: the coordinator's growth per +100 clients per round, and its figures at the most."""
    summary: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys((r.mode, r.launcher) for r in results):
        runs = sorted((r for r in results if (r.mode, r.launcher) == key), key=lambda r: r.clients_per_round)
        largest = runs[-1]
        summary["/".join(key)] = {
            "coordinator_mib_per_100_per_round": round(100 * slope([r.clients_per_round for r in runs],
                                                                   [r.coordinator_peak_mib for r in runs]), 2),
            "largest_per_round": largest.clients_per_round,
            "coordinator_peak_mib_at_largest": round(largest.coordinator_peak_mib, 1),
            "coordinator_rounds_peak_mib_at_largest": round(largest.coordinator_rounds_peak_mib, 1),
            "under_target": largest.coordinator_peak_mib < TARGET_MIB,
            "seconds_per_round_at_largest": round(largest.mean_round_s, 2),
            "floor_s_at_largest": round(largest.floor_s, 2),
        }
    return summary


def _write(path: Path, results: list[Measurement], ray_init: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"measurements": [asdict(r) for r in results], "summary": summarize(results),
                                "launchers": launcher_comparison(results), "bare_ray_init": ray_init},
                               indent=2) + "\n", encoding="utf-8")


def report(results: list[Measurement], ray_init: dict[str, float]) -> None:
    header = ("mode", "launcher", "clients", "per round", "coordinator peak", "PSS", "in rounds", "after each round",
              "clients' peaks (sum)", "PSS", "round time", "floor", "used", "accuracy", "start-up", "busy", "load")
    rows = [(r.mode, r.launcher, f"{r.clients:,}", str(r.clients_per_round), f"{r.coordinator_peak_mib:.1f} MiB",
             f"{r.coordinator_peak_pss_mib:.1f} MiB", f"{r.coordinator_rounds_peak_mib:.1f} MiB",
             " ".join(f"{v:.0f}" for v in r.coordinator_after_each_round_mib) + " MiB",
             f"{r.clients_peak_mib:.0f} MiB in {r.client_processes}", f"{r.clients_peak_pss_mib:.0f} MiB",
             f"{r.mean_round_s:.2f} s", f"{r.floor_s:.2f} s" if r.floor_s else "-",
             "/".join(str(u) for u in r.clients_used), f"{100 * r.accuracy:.2f}%", f"{r.startup_s:.1f} s",
             f"{100 * r.busy_before:.0f}%", f"{r.load_before:.2f}") for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    print("\nper process (peak RSS / peak PSS, MiB):")
    for r in results:
        print(f"  {r.mode}/{r.launcher}/{r.clients_per_round} (sampler {r.sampler_cpu_s:.1f} CPU s): " + ", ".join(
            f"{p['role']} {p['peak_rss_mib']:.0f}/{p['peak_pss_mib']:.0f}" for p in r.processes))
    for key, entry in summarize(results).items():
        verdict = "under" if entry["under_target"] else "OVER"
        print(f"\n{key}: coordinator {entry['coordinator_mib_per_100_per_round']:+.2f} MiB per +100 clients per round; "
              f"peak {entry['coordinator_peak_mib_at_largest']:.1f} MiB (in rounds "
              f"{entry['coordinator_rounds_peak_mib_at_largest']:.1f} MiB) at {entry['largest_per_round']} per round "
              f"({verdict} the {TARGET_MIB:.0f} MiB target), {entry['seconds_per_round_at_largest']:.2f} s per round"
              + (f", {entry['seconds_per_round_at_largest'] / entry['floor_s_at_largest']:.1f}x the machine's floor "
                 f"of {entry['floor_s_at_largest']:.2f} s" if entry["floor_s_at_largest"] else ""))
    for entry in launcher_comparison(results):
        ratios = ", ".join(f"{name} x{ratio:.2f}{'' if entry['within_20pct'][name] else ' (not within 20%)'}"
                           for name, ratio in entry["ray_over_local"].items())
        print(f"\n{entry['mode']} at {entry['per_round']} per round, Ray over local processes: {ratios}; start-up "
              f"{entry['startup_s']['ray']:.1f} s with Ray, {entry['startup_s']['local']:.1f} s local")
    if ray_init:
        print(f"a bare ray.init() in a fresh process: {ray_init['init_s']:.1f} s (importing ray "
              f"{ray_init['import_s']:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
