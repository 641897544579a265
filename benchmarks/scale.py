"""Coordinator memory and round time at cross-device scale, side by side with a federation ten times smaller.

    python benchmarks/scale.py [--scenario scenarios/spam_many.toml] [--rounds 10] [--processes 4] [--json FILE]

Runs the scenario (1,000 virtual clients, 100 sampled per round) and the same scenario with a tenth of the
clients and a tenth per round, each as a real federation on this machine: the coordinator is its own
process (``fedgrad server --resume`` on a run directory prepared here, so that the memory measured is the
coordinator's and not the corpus parser's), the clients are ``--processes`` ``fedgrad client`` processes
hosting the virtual clients, with TLS and run tokens as ``simulate`` uses them.

The coordinator's resident memory is sampled every 20 ms from /proc (VmRSS, and VmHWM, the kernel's
high-water mark). Printed per size: peak RSS, RSS when the first round ended, growth after that, the
memory the round's updates would take if the coordinator held them side by side (which it does not:
each is folded into the running sum as it arrives), and the mean round time with its busiest phase; then
the 1,000 / 100 ratios. Bounded memory shows as a ratio near 1 and no growth after the first round.
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
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from fedgrad.results import read_metrics  # noqa: E402
from fedgrad.scenario import load_scenario  # noqa: E402
from fedgrad.security import create_pki  # noqa: E402
from server.experiment import client_ids, prepare_run  # noqa: E402
from server.registry import AUTH_DIR, CLIENT_TOKENS_FILE, issue_run_tokens  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.02


@dataclass
class Measurement:
    clients: int
    clients_per_round: int
    rounds: int
    peak_rss_mib: float
    rss_after_first_round_mib: float
    growth_after_first_round_mib: float
    held_updates_mib: float          # what one round's updates would take if held side by side
    mean_round_s: float
    slowest_phase: str
    wall_s: float
    rss_after_each_round_mib: list[float]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "spam_many.toml")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per federation (default: 10)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default: 4)")
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "scale-benchmark.json",
                        help="where to write the measurements (default: runs/scale-benchmark.json)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "scale-benchmark",
                        help="run directories go here (default: runs/scale-benchmark)")
    args = parser.parse_args()
    base = load_scenario(args.scenario)
    fed = base.federation
    sizes = [(fed.clients, fed.clients_per_round, fed.min_clients),
             (max(fed.clients // 10, 2), max(fed.clients_per_round // 10, 2), max(fed.min_clients // 10, 2))]
    results = [measure(args.scenario, clients, per_round, min_clients, args.rounds, args.processes, args.work_dir)
               for clients, per_round, min_clients in sizes]
    report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    big, small = results
    args.json.write_text(json.dumps({"measurements": [asdict(r) for r in results],
                                     "ratios": _ratios(big, small)}, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.json}")
    return 0


def measure(scenario_path: Path, clients: int, per_round: int, min_clients: int, rounds: int, processes: int,
            work_dir: Path) -> Measurement:
    overrides = [f"federation.clients={clients}", f"federation.clients_per_round={per_round}",
                 f"federation.min_clients={min_clients}", f"federation.rounds={rounds}",
                 f"federation.processes={min(processes, clients)}", f"output.dir={work_dir}"]
    print(f"preparing {clients} clients ({per_round} per round) ...", file=sys.stderr)
    prepared = prepare_run(load_scenario(scenario_path, overrides))
    run_dir = prepared.writer.run_dir
    ids = client_ids(prepared.scenario)
    issue_run_tokens(run_dir, ids)
    create_pki(run_dir / "tls")
    port = _free_port()
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    coordinator = _start(logs / "coordinator.log", "server", "--resume", str(run_dir), "--port", str(port),
                         "--tls-dir", str(run_dir / "tls"))
    sampler = RssSampler(coordinator.pid, run_dir)
    sampler.start()
    workers = [_start(logs / f"clients-{i}.log", "client", "--server", f"127.0.0.1:{port}",
                      "--shard-dir", str(run_dir / "data"), "--client-id", *ids[i::processes],
                      "--token-file", str(run_dir / AUTH_DIR / CLIENT_TOKENS_FILE), "--tls-dir", str(run_dir / "tls"))
               for i in range(min(processes, clients))]
    try:
        if coordinator.wait(timeout=1800) != 0:
            raise SystemExit(f"the coordinator failed; see {logs / 'coordinator.log'}")
        for worker in workers:
            worker.wait(timeout=60)
    finally:
        for process in (coordinator, *workers):
            if process.poll() is None:
                process.kill()
        sampler.stop()
    wall_s = time.perf_counter() - started
    records = read_metrics(run_dir)
    update_bytes = records[0]["bytes"]["up"] / max(records[0]["clients_used"], 1)
    phases = {phase: sum(r["time_s"][phase] for r in records) for phase in records[0]["time_s"] if phase != "total"}
    return Measurement(
        clients=clients, clients_per_round=per_round, rounds=len(records),
        peak_rss_mib=sampler.peak_kib / 1024, rss_after_first_round_mib=sampler.at_first_round_kib / 1024,
        growth_after_first_round_mib=(sampler.peak_kib - sampler.at_first_round_kib) / 1024,
        held_updates_mib=per_round * update_bytes / 2**20,
        mean_round_s=sum(r["time_s"]["total"] for r in records) / len(records),
        slowest_phase=max(phases, key=phases.get), wall_s=wall_s,
        rss_after_each_round_mib=[round(kib / 1024, 1) for kib in sampler.after_round_kib])


class RssSampler(threading.Thread):
    """Samples a process's VmRSS/VmHWM until stopped; notes the RSS when the run's first round is recorded."""

    def __init__(self, pid: int, run_dir: Path) -> None:
        super().__init__(daemon=True)
        self._status = Path(f"/proc/{pid}/status")
        self._metrics = run_dir / "metrics.jsonl"
        self._stopped = threading.Event()
        self.peak_kib = 0
        self.after_round_kib: list[int] = []  # RSS sampled as each round's record appeared

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                fields = dict(line.split(":", 1) for line in self._status.read_text().splitlines() if ":" in line)
            except OSError:  # the process has exited
                return
            if "VmRSS" not in fields:  # exited, not yet reaped
                return
            rss, hwm = (int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM"))
            self.peak_kib = max(self.peak_kib, hwm)
            rounds = self._rounds_recorded()
            if rounds > len(self.after_round_kib):
                self.after_round_kib.append(rss)
            time.sleep(SAMPLE_S)

    def _rounds_recorded(self) -> int:
        try:
            return self._metrics.read_bytes().count(b"\n")
        except OSError:
            return 0

    @property
    def at_first_round_kib(self) -> int:
        return self.after_round_kib[0] if self.after_round_kib else 0

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def report(results: list[Measurement]) -> None:
    header = ("clients", "per round", "peak RSS", "RSS after round 1", "growth since", "if updates held",
              "round time", "busiest phase")
    rows = [(f"{r.clients:,}", str(r.clients_per_round), f"{r.peak_rss_mib:.0f} MiB",
             f"{r.rss_after_first_round_mib:.0f} MiB", f"{r.growth_after_first_round_mib:+.1f} MiB",
             f"{r.held_updates_mib:.1f} MiB", f"{r.mean_round_s:.3f} s", r.slowest_phase) for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
    big, small = results
    ratios = _ratios(big, small)
    print(f"\n{big.clients:,} vs {small.clients:,} clients: peak coordinator RSS x{ratios['peak_rss']:.2f}, "
          f"round time x{ratios['round_time']:.2f} (for x{big.clients_per_round / small.clients_per_round:.0f} "
          "updates per round)")


def _ratios(big: Measurement, small: Measurement) -> dict[str, float]:
    return {"peak_rss": big.peak_rss_mib / small.peak_rss_mib, "round_time": big.mean_round_s / small.mean_round_s}


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
