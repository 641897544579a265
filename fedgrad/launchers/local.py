"""Client workers as local OS processes (``fedgrad client``), each hosting a share of the simulation's clients."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from fedgrad.errors import FedgradError
from fedgrad.modes.base import DEFAULT_CLIENT_PRIVACY, ClientPrivacy
from fedgrad.usercode import NO_CLIENT_CODE, ClientCode

log = logging.getLogger("fedgrad.simulate")

#: Client processes get this long to exit after SIGTERM before they are killed.
TERMINATE_GRACE_S = 3.0
#: A client process gives up this long after losing the coordinator.
CLIENT_CONNECT_TIMEOUT_S = 30.0

T = TypeVar("T")


class ClientFleet:
    """The client OS processes of a simulation, each in its own session so that a Ctrl-C reaches only
    this process, which then stops them in order (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._processes: list[tuple[asyncio.subprocess.Process, Path]] = []
        self._watchers: list[asyncio.Task[None]] = []

    async def prepare(self, workers: int) -> None:
        """Nothing to do before the run: client processes are started by :meth:`start`."""

    async def start(self, address: str, shard_dir: Path, ids: list[str], processes: int,
                    token_file: Path | None = None, tls_dir: Path | None = None,
                    privacy: ClientPrivacy = DEFAULT_CLIENT_PRIVACY, code: ClientCode = NO_CLIENT_CODE) -> None:
        """Start ``processes`` client processes hosting ``ids`` round-robin; with ``token_file`` they present
        their run tokens, with ``tls_dir`` they dial TLS (presenting a certificate if it holds theirs); they
        trust ``code``'s user model and import it from its folder (put first on their ``PYTHONPATH``)."""
        options = ["--exit-with-parent", "--connect-timeout", str(CLIENT_CONNECT_TIMEOUT_S)]
        if privacy.allow_insecure_keys:
            options.append("--insecure-key-bits")
        if privacy.noise_seed is not None:
            options += ["--noise-seed", str(privacy.noise_seed)]
        if privacy.identity_dir is not None:
            options += ["--identity-dir", str(privacy.identity_dir)]
        if privacy.enrollment is not None:
            options += ["--enrollment", str(privacy.enrollment)]
        if privacy.policy is not None:
            options += ["--policy", str(privacy.policy)]
        if privacy.training_seed is not None:
            options += ["--training-seed", str(privacy.training_seed)]
        if token_file is not None:
            options += ["--token-file", str(token_file.resolve())]
        if tls_dir is not None:
            options += ["--tls-dir", str(tls_dir.resolve())]
        for reference in code.trusted:
            options += ["--trust-code", reference]
        self._log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(variable, "1")  # one core per process; several processes share the machine
        if code.code_dir:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (code.code_dir, env.get("PYTHONPATH"))))
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
