"""`fedgrad simulate`: a whole federation on this machine, over real gRPC.

    fedgrad simulate SCENARIO.toml [--set section.key=value ...]

Builds the scenario's data into a fresh run directory, starts the coordinator in this process on a
free localhost port, and starts client OS processes (`fedgrad client`), each hosting a share of the
scenario's clients: federation.processes of them, or with 0 (the default) one per CPU core, at most
one per client and at most 16. Progress shows per round; at the end the table of rounds is printed and the run
directory holds config.toml, metrics.jsonl, summary.json, report.md, and logs/ with each client
process's log. Every client process is stopped on exit, on error and on Ctrl-C.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from fedgrad.cli.server import RoundProgress, add_set_option, logs_above_progress, print_results
from fedgrad.errors import FedgradError
from fedgrad.scenario import Scenario, load_scenario
from server.experiment import PreparedRun, build_coordinator, client_ids, prepare_run
from server.service import start_server

log = logging.getLogger("fedgrad.simulate")

#: Client processes get this long to exit on their own after the run, then this long after SIGTERM.
EXIT_GRACE_S = 10.0
TERMINATE_GRACE_S = 3.0
#: Most client processes ``federation.processes = 0`` starts (each costs ~100 MiB of memory).
MAX_AUTO_PROCESSES = 16
#: A client process gives up this long after losing the coordinator (e.g. when this process is killed).
CLIENT_CONNECT_TIMEOUT_S = 30.0

T = TypeVar("T")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("simulate", help="run a whole federation locally (coordinator + client processes)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path, help="scenario TOML file (see scenarios/)")
    add_set_option(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    prepared = prepare_run(load_scenario(args.scenario, args.overrides))
    with logs_above_progress(logging.WARNING):
        summary = asyncio.run(simulate(prepared))
    print_results(prepared, summary)
    return 0


def process_count(scenario: Scenario) -> int:
    """``federation.processes``, or when 0 one client process per core, at most one per client and at most
    ``MAX_AUTO_PROCESSES``. Measured on 2 cores (10 clients, 1 local epoch each): 1 process 0.100 s per
    round, 2 processes 0.066 s, 4 processes 0.072 s, 10 processes 0.073 s: more processes than cores only
    adds switching, fewer leaves a core idle."""
    fed = scenario.federation
    return fed.processes or min(fed.clients, os.cpu_count() or 1, MAX_AUTO_PROCESSES)


async def simulate(prepared: PreparedRun) -> dict[str, Any]:
    """Run ``prepared`` with local client processes; returns the summary as written."""
    main, loop = asyncio.current_task(), asyncio.get_running_loop()
    terminated = asyncio.Event()

    def on_sigterm() -> None:  # treated like Ctrl-C: unwind, stopping the children on the way out
        terminated.set()
        main.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    processes = process_count(prepared.scenario)
    with RoundProgress(prepared) as progress:
        coordinator = build_coordinator(prepared, progress.on_round)
        server, port = await start_server(coordinator, "127.0.0.1", 0)
        fleet = ClientFleet(prepared.writer.run_dir / "logs")
        try:
            await fleet.start(f"127.0.0.1:{port}", prepared.data_dir, client_ids(prepared.scenario), processes)
            extras = await fleet.supervise(coordinator.run())
            await fleet.wait_for_exit(EXIT_GRACE_S)
        except asyncio.CancelledError:
            if terminated.is_set():
                raise FedgradError("terminated by SIGTERM; client processes stopped") from None
            raise
        finally:
            await fleet.stop()
            await server.stop(grace=1.0)
            loop.remove_signal_handler(signal.SIGTERM)
    return prepared.writer.finish({**extras, "processes": processes})


class ClientFleet:
    """The client OS processes of a simulation, each in its own session so that a Ctrl-C reaches only
    this process, which then stops them in order (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._processes: list[tuple[asyncio.subprocess.Process, Path]] = []
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self, address: str, shard_dir: Path, ids: list[str], processes: int) -> None:
        """Start ``processes`` client processes hosting ``ids`` round-robin."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(variable, "1")  # one core per process; several processes share the machine
        for index in range(processes):
            hosted = ids[index::processes]
            log_path = self._log_dir / f"client-process-{index}.log"
            with open(log_path, "wb") as log_file:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "fedgrad.cli.main", "client", "--server", address,
                    "--shard-dir", str(shard_dir.resolve()), "--client-id", *hosted,
                    "--connect-timeout", str(CLIENT_CONNECT_TIMEOUT_S),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                    env=env, start_new_session=True)
            self._processes.append((process, log_path))
            self._watchers.append(asyncio.create_task(self._watch(process, log_path)))

    async def supervise(self, run: Awaitable[T]) -> T:
        """Await ``run``; fail fast if every client process exits before it finishes."""
        run_task = asyncio.ensure_future(run)
        all_exited = asyncio.ensure_future(asyncio.wait(self._watchers))  # cancelling it leaves the watchers be
        try:
            await asyncio.wait({run_task, all_exited}, return_when=asyncio.FIRST_COMPLETED)
            if not run_task.done():
                failed = [(p, path) for p, path in self._processes if p.returncode] or self._processes
                process, path = failed[0]
                raise FedgradError(f"every client process exited before the run finished (one exited with code "
                                   f"{process.returncode}: {_last_line(path)}); logs in {self._log_dir}")
            return run_task.result()
        finally:
            run_task.cancel()
            all_exited.cancel()

    async def wait_for_exit(self, timeout: float) -> None:
        """Give the clients ``timeout`` seconds to exit after SHUTDOWN (``stop`` ends the rest)."""
        _, running = await asyncio.wait(self._watchers, timeout=timeout)
        if running:
            log.warning("%d client process(es) still running %g s after the run ended; stopping them",
                        len(running), timeout)

    async def stop(self) -> None:
        """SIGTERM every client process still running, SIGKILL those that do not exit in time."""
        for watcher in self._watchers:
            watcher.cancel()  # exits from here on are ours, not failures worth a warning
        for process, _ in self._processes:
            if process.returncode is None:
                _signal_group(process, signal.SIGTERM)
        for process, _ in self._processes:
            try:
                await asyncio.wait_for(process.wait(), TERMINATE_GRACE_S)
            except TimeoutError:
                _signal_group(process, signal.SIGKILL)
                await process.wait()

    @staticmethod
    async def _watch(process: asyncio.subprocess.Process, log_path: Path) -> None:
        """Wait for ``process`` to exit and warn when it failed."""
        code = await process.wait()
        if code != 0:
            log.warning("client process %d exited with code %d: %s (log: %s)", process.pid, code,
                        _last_line(log_path), log_path)


def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"
