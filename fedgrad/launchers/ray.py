"""Client workers on a Ray cluster, for simulations larger than one machine.

``fedgrad simulate --launcher ray`` keeps the coordinator (and gRPC) in its own process and, instead of
starting local client processes, runs each group of virtual clients as one Ray task with a CPU budget
(``--ray-cpus``, one CPU by default: a worker trains on one thread, see :mod:`client.pool`). A worker is
an ordinary client pool (:func:`client.pool.run_clients`): it joins over gRPC with its run tokens, over
TLS, exactly like ``fedgrad client`` on another machine. The driver ships each worker its shards, tokens
and the CA certificate (and, for mutual TLS, its client certificate) as task arguments, so the cluster
needs no shared file system; its nodes need fedgrad installed.

Which cluster: without ``--ray-address``, ``ray.init()`` finds one the way Ray always does (``RAY_ADDRESS``,
then a cluster started on this machine with ``ray start``) or else starts a local one sized for this
machine; with it, the cluster there (``auto``, ``HOST:PORT``).

Failures. Workers are spread over the cluster's nodes, and Ray reruns a worker whose process or node died
(up to :data:`WORKER_RETRIES` times) on a node that is still there; its clients rejoin with the same
tokens and the coordinator gives them back their mailboxes, so losing a node costs a round's wait, not
the run. An error raised by the clients themselves (join refused, coordinator gone) is not retried.

Stopping. At the end of a run, on an error, on Ctrl-C or on SIGTERM, :meth:`RayFleet.stop` cancels every
worker still running and disconnects from the cluster; a cluster this launcher started is shut down with
it (its raylet, GCS and workers), one it only connected to keeps running.

Ray is an optional dependency (the ``ray`` extra: ``pip install -e '.[ray]'``), imported only here and only
when this launcher is used; without it the launcher stops with a one-line error saying how to install it.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from client.pool import run_clients
from client.session import ClientOptions
from fedgrad.data import Shard, load_shard
from fedgrad.errors import ConfigError, FedgradError
from fedgrad.modes.base import DEFAULT_CLIENT_PRIVACY, ClientPrivacy
from fedgrad.security.tokens import read_token_file
from fedgrad.transport.channel import ClientSecurity
from fedgrad.usercode import NO_CLIENT_CODE, ClientCode, add_code_dir

T = TypeVar("T")

log = logging.getLogger("fedgrad.simulate")

#: CPUs Ray reserves for one client worker unless ``--ray-cpus`` says otherwise.
DEFAULT_WORKER_CPUS = 1.0
#: Times Ray reruns a worker whose process or node died before the worker gives up.
WORKER_RETRIES = 3
#: Starts of a local Ray node before giving up (Ray's own wait for its raylet is a fixed 30 s).
START_ATTEMPTS = 2


def import_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`ConfigError` that says how to get it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError("--launcher ray needs Ray, which fedgrad does not install by default: "
                          "pip install -e '.[ray]' (or pip install 'ray==2.60.0')") from None


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one Ray worker needs to host its clients; plain data, so Ray can ship it anywhere."""

    address: str
    shards: dict[str, Shard]
    tokens: dict[str, str]
    security: ClientSecurity | None
    options: ClientOptions
    privacy: ClientPrivacy
    code: ClientCode


def host_clients(spec: WorkerSpec) -> None:
    """The body of a Ray task: a client pool for ``spec``'s clients, until the run ends. A user model is
    imported from ``spec.code.code_dir``, which must exist at that path on the worker's node (it does on a
    local cluster), or else from the node's ``PYTHONPATH``."""
    add_code_dir(spec.code.code_dir)
    asyncio.run(run_clients(spec.address, spec.shards, options=spec.options, tokens=spec.tokens,
                            security=spec.security, privacy=spec.privacy, trusted_code=spec.code.trusted))


class RayFleet:
    """Client workers as Ray tasks; the same start/supervise/wait_for_exit/stop cycle as local processes."""

    def __init__(self, ray_address: str | None, cpus_per_worker: float = DEFAULT_WORKER_CPUS) -> None:
        if not cpus_per_worker > 0:
            raise ConfigError(f"--ray-cpus must be a positive number of CPUs (got {cpus_per_worker})")
        self._ray = import_ray()
        self._ray_address = ray_address
        self._cpus = cpus_per_worker
        self._connected = False  # by this fleet, which must then disconnect (and stop a cluster it started)
        self._refs: list[Any] = []
        self._done: list[asyncio.Future[Any]] = []

    async def start(self, address: str, shard_dir: Path, ids: list[str], workers: int,
                    token_file: Path | None = None, tls_dir: Path | None = None,
                    privacy: ClientPrivacy = DEFAULT_CLIENT_PRIVACY, code: ClientCode = NO_CLIENT_CODE) -> None:
        """Submit ``workers`` tasks hosting ``ids`` round-robin, connecting to the coordinator at ``address``
        with the tokens of ``token_file`` and, with ``tls_dir``, over TLS trusting its ``ca.pem``; they trust
        and import ``code``'s user model."""
        tokens = read_token_file(token_file, ids) if token_file is not None else {}
        ray = self._ray
        self._connect()
        total_cpus = ray.cluster_resources().get("CPU", 0.0)
        if workers * self._cpus > total_cpus:
            log.warning("%d client workers x %g CPUs exceed the cluster's %g CPUs; some workers wait for others "
                        "to finish (lower federation.processes or --ray-cpus)", workers, self._cpus, total_cpus)
        remote = ray.remote(num_cpus=self._cpus, max_retries=WORKER_RETRIES, scheduling_strategy="SPREAD")(
            host_clients)
        for index in range(workers):
            hosted = ids[index::workers]
            shards = {client_id: load_shard(shard_dir, int(client_id)) for client_id in hosted}
            security = ClientSecurity.for_clients(tls_dir, hosted) if tls_dir is not None else None
            spec = WorkerSpec(address, shards, {cid: tokens[cid] for cid in hosted if cid in tokens}, security,
                              ClientOptions(), privacy, code)
            ref = remote.remote(spec)
            self._refs.append(ref)
            self._done.append(asyncio.wrap_future(ref.future()))

    def _connect(self) -> None:
        """``ray.init``, unless this process is already connected (then the caller owns the connection).

        ``ray.init`` sets a SIGTERM handler of its own (exit at once); the caller's is put back, so that
        SIGTERM still unwinds the run through :meth:`stop`."""
        ray = self._ray
        if ray.is_initialized():
            return
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    ray.init(address=self._ray_address, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.WARNING)
                    break
                except Exception as error:  # noqa: BLE001 - Ray raises many kinds (connection, auth, bad address)
                    # Ray gives a starting raylet a fixed 30 s to register; on a loaded machine a second start
                    # usually makes it. Anything else is not retried.
                    if attempt < START_ATTEMPTS and "timed out during startup" in str(error):
                        log.warning("the local Ray node did not start in time (attempt %d); starting it again",
                                    attempt)
                        ray.shutdown()
                        continue
                    where = f"the Ray cluster at {self._ray_address}" if self._ray_address else "a Ray cluster"
                    raise FedgradError(f"cannot connect to or start {where}: {_first_line(error)}") from None
        finally:
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        self._connected = True

    async def supervise(self, run: Awaitable[T]) -> T:
        """Await ``run``; fail fast if a worker fails (Ray gave up on it) or every worker ends before it finishes:
        the run would otherwise wait for their clients forever."""
        run_task = asyncio.ensure_future(run)
        pending: set[asyncio.Future[Any]] = set(self._done)
        try:
            while not run_task.done():
                done, _ = await asyncio.wait({run_task, *pending}, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                errors = [error for future in done if future is not run_task and not future.cancelled()
                          and (error := future.exception()) is not None]
                if errors:
                    raise FedgradError(f"a Ray client worker failed: {_first_line(errors[0])}")
                if not pending and not run_task.done():
                    raise FedgradError("every Ray client worker ended before the run finished")
            return run_task.result()
        finally:
            run_task.cancel()

    async def wait_for_exit(self, timeout: float) -> None:
        """Give the workers ``timeout`` seconds to end after SHUTDOWN (``stop`` cancels the rest)."""
        if self._done:
            await asyncio.wait(self._done, timeout=timeout)

    async def stop(self) -> None:
        """Cancel every worker still running, then disconnect from the cluster, shutting it down if
        ``ray.init`` started it here."""
        for ref, done in zip(self._refs, self._done, strict=True):
            if not done.done():
                done.cancel()
                try:
                    self._ray.cancel(ref, force=True)
                except Exception as error:  # noqa: BLE001 - the cluster may be gone already; stop the rest
                    log.warning("could not cancel a Ray client worker: %s", error)
        if self._connected:
            self._connected = False
            self._ray.shutdown()


def _first_line(error: BaseException) -> str:
    """The gist of a worker's error: the clients' own exception when Ray wrapped one."""
    cause = getattr(error, "cause", None)
    lines = str(cause if isinstance(cause, BaseException) else error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
