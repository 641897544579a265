"""Coordinator memory per client and per update, for plain and Paillier aggregation.

    python benchmarks/scale.py [--scenario scenarios/spam_many.toml] [--clients 250,500,1000] [--per-round 50]
                               [--rounds 20] [--modes none,paillier] [--processes 4] [--json FILE]

For each privacy mode (``--modes``, by the name ``privacy.mode`` takes) and each federation size
(``--clients``, all with ``--per-round`` clients sampled per round), the scenario runs as a real federation on
this machine: the coordinator is its own process (``fedgrad server --resume`` on a run directory prepared
here, so that the memory measured is the coordinator's and not the corpus parser's), the clients are
``--processes`` ``fedgrad client`` processes hosting the virtual clients, with TLS and run tokens as
``simulate`` uses them.

The coordinator's resident memory (VmRSS, from /proc every 20 ms) is read at three kinds of moments: when it
is up and waiting for its first client (``idle``: the interpreter, the model, the test set, the key pair),
as each round's record appears, and at its peak (VmHWM). What is reported is growth, never a whole-process
ratio that the interpreter's fixed footprint pushes toward 1:

* per client: the slope, over the sizes, of the RSS after round 1 above idle against the number of clients
  (least squares; what each joined client costs the coordinator: registry record, token, open streams);
* per update: the slope, within each run, of the RSS after each round against the number of updates folded
  in so far, per 100 updates: over rounds 2..R (warm-up included: the allocator's pools filling, clients
  sampled for the first time) and over the second half of the rounds (steady state: a coordinator that kept
  updates, or leaked per update, grows here; a bounded one shows ~0); and the peak above the RSS after round 1;
* for scale, what one round's updates would take if held side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from fedgrad.results import read_metrics
from fedgrad.scenario import load_scenario
from fedgrad.security import create_pki
from server.experiment import client_ids, prepare_run
from server.registry import AUTH_DIR, CLIENT_TOKENS_FILE, issue_run_tokens

REPO = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.02
#: Scenario overrides that turn each privacy mode on, by the name ``privacy.mode`` takes. A mode not listed
#: here runs with ``privacy.mode`` set and the scenario's other privacy settings.
MODES: dict[str, list[str]] = {
    "none": ['privacy.mode="none"'],
    "paillier": ['privacy.mode="paillier"', "privacy.key_bits=2048", "privacy.clip=1.0", "privacy.value_bits=16"],
}


@dataclass
class Measurement:
    mode: str
    clients: int
    clients_per_round: int
    rounds: int
    idle_rss_mib: float               # up, waiting for the first client
    rss_after_each_round_mib: list[float]
    peak_rss_mib: float
    held_updates_mib: float           # one round's updates, if held side by side (the coordinator does not)
    mean_round_s: float
    wall_s: float
    growth_per_100_updates_kib: float = field(default=0.0)  # slope of RSS over rounds 2..R
    steady_growth_per_100_updates_kib: float = field(default=0.0)  # ... over the second half of the rounds

    @property
    def above_idle_after_round_1_mib(self) -> float:
        return self.rss_after_each_round_mib[0] - self.idle_rss_mib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "spam_many.toml")
    parser.add_argument("--clients", default="250,500,1000", help="federation sizes (default: 250,500,1000)")
    parser.add_argument("--per-round", type=int, default=50, help="clients sampled per round (default: 50)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per federation (default: 20)")
    parser.add_argument("--modes", default="none,paillier", help="privacy modes by name (default: none,paillier)")
    parser.add_argument("--paillier-clients", default=None,
                        help="sizes for modes other than none (default: the largest of --clients only)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default: 4)")
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "scale-benchmark.json",
                        help="where to write the measurements (default: runs/scale-benchmark.json)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "scale-benchmark",
                        help="run directories go here (default: runs/scale-benchmark)")
    args = parser.parse_args()
    sizes = [int(c) for c in args.clients.split(",")]
    other_sizes = [int(c) for c in args.paillier_clients.split(",")] if args.paillier_clients else [max(sizes)]
    results: list[Measurement] = []
    for mode in args.modes.split(","):
        for clients in (sizes if mode == "none" else other_sizes):
            results.append(measure(args.scenario, mode, clients, min(args.per_round, clients), args.rounds,
                                   args.processes, args.work_dir))
    summary = summarize(results)
    report(results, summary)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"measurements": [asdict(r) for r in results], "summary": summary},
                                    indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.json}")
    return 0


def measure(scenario_path: Path, mode: str, clients: int, per_round: int, rounds: int, processes: int,
            work_dir: Path) -> Measurement:
    overrides = [*MODES.get(mode, [f'privacy.mode="{mode}"']), f"federation.clients={clients}",
                 f"federation.clients_per_round={per_round}", f"federation.min_clients={max(per_round // 2, 1)}",
                 f"federation.rounds={rounds}", f"federation.processes={min(processes, clients)}",
                 f"output.dir={work_dir}"]
    print(f"preparing {mode}: {clients} clients ({per_round} per round) ...", file=sys.stderr)
    prepared = prepare_run(load_scenario(scenario_path, overrides))
    run_dir = prepared.writer.run_dir
    ids = client_ids(prepared.scenario)
    issue_run_tokens(run_dir, ids)
    create_pki(run_dir / "tls")
    port = _free_port()
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    coordinator_log = logs / "coordinator.log"
    coordinator = _start(coordinator_log, "server", "--resume", str(run_dir), "--port", str(port),
                         "--tls-dir", str(run_dir / "tls"))
    sampler = RssSampler(coordinator.pid, run_dir)
    sampler.start()
    workers = []
    try:
        # The event "up and waiting for its first client", from the coordinator's own log.
        _wait_for_line(coordinator_log, "waiting for clients", coordinator, timeout_s=600)
        time.sleep(3 * SAMPLE_S)
        idle_kib = sampler.current_kib
        workers = [_start(logs / f"clients-{i}.log", "client", "--server", f"127.0.0.1:{port}",
                          "--shard-dir", str(run_dir / "data"), "--client-id", *ids[i::processes],
                          "--token-file", str(run_dir / AUTH_DIR / CLIENT_TOKENS_FILE),
                          "--tls-dir", str(run_dir / "tls"))
                   for i in range(min(processes, clients))]
        if coordinator.wait(timeout=3600) != 0:
            raise SystemExit(f"the coordinator failed; see {coordinator_log}")
        for worker in workers:
            worker.wait(timeout=120)
    finally:
        for process in (coordinator, *workers):
            if process.poll() is None:
                process.kill()
        sampler.stop()
    wall_s = time.perf_counter() - started
    records = read_metrics(run_dir)
    update_bytes = records[0]["bytes"]["up"] / max(records[0]["clients_used"], 1)
    after_round = [kib / 1024 for kib in sampler.after_round_kib]
    used = [r["clients_used"] for r in records]
    measurement = Measurement(
        mode=mode, clients=clients, clients_per_round=per_round, rounds=len(records),
        idle_rss_mib=idle_kib / 1024, rss_after_each_round_mib=[round(v, 2) for v in after_round],
        peak_rss_mib=sampler.peak_kib / 1024, held_updates_mib=per_round * update_bytes / 2**20,
        mean_round_s=sum(r["time_s"]["total"] for r in records) / len(records), wall_s=wall_s)
    # RSS after rounds 2..R against the updates folded in by then: KiB per 100 updates.
    cumulative = [sum(used[:k + 1]) for k in range(len(used))]
    if len(after_round) >= 3:
        measurement.growth_per_100_updates_kib = 100 * 1024 * _slope(cumulative[1:len(after_round)], after_round[1:])
        half = len(after_round) // 2
        measurement.steady_growth_per_100_updates_kib = 100 * 1024 * _slope(cumulative[half:len(after_round)],
                                                                             after_round[half:])
    return measurement


def summarize(results: list[Measurement]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for mode in dict.fromkeys(r.mode for r in results):
        runs = [r for r in results if r.mode == mode]
        entry: dict[str, Any] = {
            "growth_per_100_updates_kib": [round(r.growth_per_100_updates_kib, 1) for r in runs],
            "steady_growth_per_100_updates_kib": [round(r.steady_growth_per_100_updates_kib, 1) for r in runs],
            "peak_above_round_1_mib": [round(r.peak_rss_mib - r.rss_after_each_round_mib[0], 2) for r in runs],
        }
        if len({r.clients for r in runs}) >= 2:
            entry["per_client_kib"] = round(1024 * _slope([r.clients for r in runs],
                                                          [r.above_idle_after_round_1_mib for r in runs]), 2)
        summary[mode] = entry
    return summary


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


class RssSampler(threading.Thread):
    """Samples a process's VmRSS/VmHWM until stopped; notes the RSS as each round's record appears."""

    def __init__(self, pid: int, run_dir: Path) -> None:
        super().__init__(daemon=True)
        self._status = Path(f"/proc/{pid}/status")
        self._metrics = run_dir / "metrics.jsonl"
        self._stopped = threading.Event()
        self.peak_kib = 0
        self.current_kib = 0
        self.after_round_kib: list[int] = []

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                fields = dict(line.split(":", 1) for line in self._status.read_text().splitlines() if ":" in line)
            except OSError:  # the process has exited
                return
            if "VmRSS" not in fields:  # exited, not yet reaped
                return
            rss, hwm = (int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM"))
            self.current_kib = rss
            self.peak_kib = max(self.peak_kib, hwm)
            rounds = self._rounds_recorded()
            while rounds > len(self.after_round_kib):
                self.after_round_kib.append(rss)
            time.sleep(SAMPLE_S)

    def _rounds_recorded(self) -> int:
        try:
            return self._metrics.read_bytes().count(b"\n")
        except OSError:
            return 0

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def report(results: list[Measurement], summary: dict[str, dict[str, Any]]) -> None:
    header = ("mode", "clients", "per round", "idle RSS", "RSS after round 1", "above idle", "per 100 updates",
              "same, 2nd half", "peak above round 1", "if updates held", "round time")
    rows = [(r.mode, f"{r.clients:,}", str(r.clients_per_round), f"{r.idle_rss_mib:.1f} MiB",
             f"{r.rss_after_each_round_mib[0]:.1f} MiB", f"{r.above_idle_after_round_1_mib:+.1f} MiB",
             f"{r.growth_per_100_updates_kib:+.0f} KiB", f"{r.steady_growth_per_100_updates_kib:+.0f} KiB",
             f"{r.peak_rss_mib - r.rss_after_each_round_mib[0]:+.1f} MiB",
             f"{r.held_updates_mib:.1f} MiB", f"{r.mean_round_s:.2f} s") for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    for mode, entry in summary.items():
        per_client = entry.get("per_client_kib")
        print(f"\n{mode}: " + (f"{per_client:.1f} KiB per joined client (slope over sizes); " if per_client is not None
                                 else "") +
              f"growth per 100 updates after round 1: {entry['growth_per_100_updates_kib']} KiB, "
              f"over the second half: {entry['steady_growth_per_100_updates_kib']} KiB")


def _wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the coordinator exited early; see {log}")
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise SystemExit(f"the coordinator did not log {text!r} within {timeout_s:g} s; see {log}")


def _start(log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with open(log, "wb") as output:
        return subprocess.Popen([sys.executable, "-m", "fedgrad.cli.main", *args], stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
