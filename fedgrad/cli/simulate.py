"""`fedgrad simulate`: a whole federation on this machine, over real gRPC.

    fedgrad simulate SCENARIO.toml [--set section.key=value ...] [--insecure | --mtls]
    fedgrad simulate --resume RUN_DIR
    fedgrad simulate SCENARIO.toml --launcher ray [--ray-address ADDR] [--ray-cpus N] [--host ADDRESS]

Builds the scenario's data into a fresh run directory, starts the coordinator in this process on a
free localhost port, and starts client OS processes (`fedgrad client`), each hosting a share of the
scenario's clients: federation.processes of them, or with 0 (the default) one per CPU core, at most
one per client and at most 16. Progress shows per round; at the end the table of rounds is printed and the run
directory holds config.toml, metrics.jsonl, summary.json, report.md, and logs/ with each client
process's log. Every client process is stopped on exit, on error and on Ctrl-C, and exits by itself
if this process is killed.

The channel uses TLS with a CA made for the run (RUN_DIR/tls; --mtls adds client certificates), and
each client presents a run token read from RUN_DIR/auth/client-tokens.json (mode 600, never on a command
line); --insecure turns TLS off. The coordinator checkpoints after every round: if this process dies,
`fedgrad simulate --resume RUN_DIR` continues from the last completed round with new client processes
and ends with the same model an uninterrupted run would have.

--launcher ray runs the client workers as Ray tasks instead, --ray-cpus CPUs each (default 1), on the
cluster at --ray-address or, without it, on a local Ray cluster started for the run and shut down at its
end (Ray comes with the `ray` extra; see client/ray_launcher.py). With a cluster of several machines,
--host must be an address of this machine that the cluster's nodes can reach.
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
from typing import Any, Protocol, TypeVar

from client.encoding import ClientPrivacy
from fedgrad.cli.server import OpenedRun, RoundProgress, add_run_source, logs_above_progress, open_run, print_results
from fedgrad.errors import ConfigError, FedgradError
from fedgrad.scenario import Scenario
from fedgrad.security import create_pki
from fedgrad.transport.channel import ServerSecurity
from server.experiment import client_ids
from server.service import start_server

log = logging.getLogger("fedgrad.simulate")

#: Client processes get this long to exit on their own after the run, then this long after SIGTERM.
EXIT_GRACE_S = 10.0
TERMINATE_GRACE_S = 3.0
#: Most client processes ``federation.processes = 0`` starts (each costs ~100 MiB of memory).
MAX_AUTO_PROCESSES = 16
#: A client process gives up this long after losing the coordinator.
CLIENT_CONNECT_TIMEOUT_S = 30.0
#: Where a simulation keeps the CA and certificates it makes for itself.
TLS_DIR = "tls"

T = TypeVar("T")


class Fleet(Protocol):
    """Where a simulation's client workers run: local OS processes (:class:`ClientFleet`) or Ray tasks
    (:class:`client.ray_launcher.RayFleet`)."""

    async def start(self, address: str, shard_dir: Path, ids: list[str], workers: int, token_file: Path | None,
                    tls_dir: Path | None, privacy: ClientPrivacy) -> None: ...

    async def supervise(self, run: Awaitable[T]) -> T: ...

    async def wait_for_exit(self, timeout: float) -> None: ...

    async def stop(self) -> None: ...


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("simulate", help="run a whole federation locally (coordinator + client processes)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_source(parser)
    security = parser.add_mutually_exclusive_group()
    security.add_argument("--insecure", action="store_true", help="plaintext gRPC instead of TLS")
    security.add_argument("--mtls", action="store_true", help="mutual TLS: client processes present certificates")
    parser.add_argument("--launcher", choices=("local", "ray"), default="local",
                        help="where client workers run: local OS processes (default) or tasks on a Ray cluster")
    parser.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to use with --launcher ray: 'auto' or "
                                                               "HOST:PORT (default: a cluster Ray finds, else a "
                                                               "local one started for the run)")
    parser.add_argument("--ray-cpus", metavar="N", type=float, help="CPUs Ray reserves for each client worker with "
                                                                    "--launcher ray (default: 1)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the coordinator listens on and clients dial (default: 127.0.0.1)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.launcher != "ray" and (args.ray_address or args.ray_cpus is not None):
        raise ConfigError("--ray-address and --ray-cpus are only used with --launcher ray")
    fleet = _ray_fleet(args.ray_address, args.ray_cpus) if args.launcher == "ray" else None  # no Ray: fail first
    opened = open_run(args)
    with logs_above_progress(logging.WARNING):
        summary = asyncio.run(simulate(opened, insecure=args.insecure, mutual=args.mtls, host=args.host, fleet=fleet))
    print_results(opened.prepared, summary)
    return 0


def _ray_fleet(address: str | None, cpus: float | None) -> Fleet:
    from client.ray_launcher import DEFAULT_WORKER_CPUS, RayFleet  # only with --launcher ray

    return RayFleet(address, DEFAULT_WORKER_CPUS if cpus is None else cpus)


def process_count(scenario: Scenario) -> int:
    """``federation.processes``, or when 0 one client process per core, at most one per client and at most
    ``MAX_AUTO_PROCESSES``. Measured on 2 cores (10 clients, 1 local epoch each): 1 process 0.100 s per
    round, 2 processes 0.066 s, 4 processes 0.072 s, 10 processes 0.073 s: more processes than cores only
    adds switching, fewer leaves a core idle."""
    fed = scenario.federation
    return fed.processes or min(fed.clients, os.cpu_count() or 1, MAX_AUTO_PROCESSES)


def client_privacy(scenario: Scenario) -> ClientPrivacy:
    """What simulated clients accept and how they seed DP noise: a simulation is a test bench, so a scenario
    that allows short Paillier keys allows them on its clients too, and noise repeats with the seed."""
    return ClientPrivacy(allow_insecure_keys=scenario.privacy.insecure_key_bits, noise_seed=scenario.seed)


def run_security(run_dir: Path, *, mutual: bool, processes: int, host: str) -> tuple[ServerSecurity, Path]:
    """The run's own CA and server certificate (and, for mutual TLS, one client certificate per process),
    made once in ``RUN_DIR/tls`` and reused when the run is resumed."""
    tls_dir = run_dir / TLS_DIR
    if not (tls_dir / "server.pem").exists() or (mutual and not (tls_dir / f"client-{processes - 1}.pem").exists()):
        create_pki(tls_dir, hosts=[host], clients=processes if mutual else 0)
    return ServerSecurity.from_dir(tls_dir, mutual=mutual), tls_dir


async def simulate(opened: OpenedRun, *, insecure: bool = False, mutual: bool = False, host: str = "127.0.0.1",
                   fleet: Fleet | None = None) -> dict[str, Any]:
    """Run ``opened`` with local client processes (or ``fleet``); returns the summary as written."""
    prepared = opened.prepared
    main, loop = asyncio.current_task(), asyncio.get_running_loop()
    terminated = asyncio.Event()

    def on_sigterm() -> None:  # treated like Ctrl-C: unwind, stopping the children on the way out
        terminated.set()
        main.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    processes = process_count(prepared.scenario)
    run_dir = prepared.writer.run_dir
    security, tls_dir = (None, None) if insecure else run_security(run_dir, mutual=mutual, processes=processes,
                                                                   host=host)
    with RoundProgress(prepared) as progress:
        if opened.checkpoint is not None:
            progress.write(f"resuming {run_dir} after round {opened.checkpoint.completed_rounds}")
        coordinator = opened.coordinator(progress)
        server, port = await start_server(coordinator, host, 0, security)
        ids = client_ids(prepared.scenario)
        try:
            fleet = fleet or ClientFleet(run_dir / "logs")
            await fleet.start(f"{host}:{port}", prepared.data_dir, ids, processes, opened.token_file, tls_dir,
                              client_privacy(prepared.scenario))
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

    async def start(self, address: str, shard_dir: Path, ids: list[str], processes: int,
                    token_file: Path | None = None, tls_dir: Path | None = None,
                    privacy: ClientPrivacy = ClientPrivacy()) -> None:
        """Start ``processes`` client processes hosting ``ids`` round-robin; with ``token_file`` they present
        their run tokens, with ``tls_dir`` they dial TLS (presenting a certificate if it holds theirs)."""
        options = ["--exit-with-parent", "--connect-timeout", str(CLIENT_CONNECT_TIMEOUT_S)]
        if privacy.allow_insecure_keys:
            options.append("--insecure-key-bits")
        if privacy.noise_seed is not None:
            options += ["--noise-seed", str(privacy.noise_seed)]
        if token_file is not None:
            options += ["--token-file", str(token_file.resolve())]
        if tls_dir is not None:
            options += ["--tls-dir", str(tls_dir.resolve())]
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
                    "--shard-dir", str(shard_dir.resolve()), "--client-id", *hosted, *options,
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
