"""Client workers on a Ray cluster, for simulations larger than one machine.

``fedgrad simulate --launcher ray`` keeps the coordinator (and gRPC) in its own process and, instead of
starting local client processes, runs each group of virtual clients as one Ray task with a CPU budget. A worker is
an ordinary client pool (:func:`client.pool.run_clients`): it joins over gRPC with its run tokens, over
TLS, exactly like ``fedgrad client`` on another machine. The driver ships each worker its shards, tokens
and the CA certificate (and, for mutual TLS, its client certificate) as task arguments, so the cluster
needs no shared file system; its nodes need fedgrad installed.

Which cluster: without ``--ray-address``, ``ray.init()`` finds one the way Ray always does (``RAY_ADDRESS``,
then a cluster started on this machine with ``ray start``) or else starts a local one sized for this
machine; with it, the cluster there (``auto``, ``HOST:PORT``). A local cluster is started by
:meth:`RayFleet.prepare`, before the run starts its gRPC server or any other thread: Ray starts its node's
processes (GCS, raylet) with ``fork`` and a Python ``preexec_fn``, which is unsafe once other threads run in the
process (gRPC's), and left a starting node without its GCS or raylet ("Timed out waiting for file
...gcs_server_port_...", "The current node timed out during startup") in about one start of three on a loaded
2-core machine.

CPU budget: every worker must run at once, since a round samples from every client, and clients whose worker
waits for a CPU would hold rounds up or be left out of them. With ``--ray-cpus`` each worker reserves that many
CPUs, and a fleet whose workers do not all fit on the cluster's nodes is refused before the run starts, with a
one-line error saying what fits. Without it each worker reserves one CPU (a worker trains on one thread, see
:mod:`client.pool`) or, where that does not fit, the largest share that does (4 workers on 2 CPUs: half each).
Fitting on the nodes is not enough on a cluster busy with other work: the workers' CPUs are reserved all at once,
as one placement group (one bundle per worker, spread over the nodes), and the workers are submitted, and the
coordinator starts waiting for their clients, only once Ray has placed the whole group. So no round starts while
a worker waits for a CPU; on a busy cluster the run waits for the CPUs first, saying so.

Failures. Workers are spread over the cluster's nodes, and Ray reruns a worker whose process or node died
(up to :data:`WORKER_RETRIES` times) on a node that is still there; its clients rejoin with the same
tokens and the coordinator gives them back their mailboxes, so losing a node costs a round's wait, not
the run. An error raised by the clients themselves (join refused, coordinator gone) is not retried.

Stopping. At the end of a run, on an error, on Ctrl-C or on SIGTERM, :meth:`RayFleet.stop` cancels every
worker still running, removes the placement group and disconnects from the cluster; a cluster this launcher
started is shut down with it (its raylet, GCS and workers), one it only connected to keeps running.

Ray is an optional dependency (the ``ray`` extra: ``pip install -e '.[ray]'``), imported only here and only
when this launcher is used; without it the launcher stops with a one-line error saying how to install it.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from client.pool import run_clients
from client.session import ClientOptions
from fedgrad.attacks import ClientAttack, load_attacks
from fedgrad.data import Shard, load_shard
from fedgrad.errors import ConfigError, FedgradError
from fedgrad.modes.base import DEFAULT_CLIENT_PRIVACY, ClientPrivacy
from fedgrad.security.tokens import read_token_file
from fedgrad.transport.channel import ClientSecurity
from fedgrad.usercode import NO_CLIENT_CODE, ClientCode, add_code_dir

T = TypeVar("T")

log = logging.getLogger("fedgrad.simulate")

#: CPUs Ray reserves for one client worker, at most, unless ``--ray-cpus`` says otherwise.
DEFAULT_WORKER_CPUS = 1.0
#: Ray counts resources in units of 1/10,000.
CPU_GRANULARITY = 10_000
#: Times Ray reruns a worker whose process or node died before the worker gives up.
WORKER_RETRIES = 3
#: Ray starts a node's workers 15 nice levels below the node (its ``worker_niceness``), so that its raylet stays
#: responsive; but here the workers are the clients, the run's work: on a loaded machine they would get a fraction
#: of the CPU local client processes get (rounds twice as long at a load of 15 on 2 cores). A local cluster started
#: by the launcher runs them at the run's own priority (a ``RAY_worker_niceness`` already set is kept); a cluster
#: started with ``ray start`` keeps its own setting.
WORKER_NICENESS_VARIABLE = "RAY_worker_niceness"
WORKER_NICENESS = "0"
#: Seconds after which a run still waiting for its workers' CPUs says so (a message only: it waits on).
RESERVATION_NOTICE_S = 10.0


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
    attacks: dict[str, ClientAttack]


def host_clients(spec: WorkerSpec) -> None:
    """The body of a Ray task: a client pool for ``spec``'s clients, until the run ends. A user model is
    imported from ``spec.code.code_dir``, which must exist at that path on the worker's node (it does on a
    local cluster), or else from the node's ``PYTHONPATH``."""
    add_code_dir(spec.code.code_dir)
    asyncio.run(run_clients(spec.address, spec.shards, options=spec.options, tokens=spec.tokens,
                            security=spec.security, privacy=spec.privacy, trusted_code=spec.code.trusted,
                            attacks=spec.attacks))


class RayFleet:
    """Client workers as Ray tasks; the same start/supervise/wait_for_exit/stop cycle as local processes."""

    def __init__(self, ray_address: str | None, cpus_per_worker: float | None = None) -> None:
        """``cpus_per_worker``: what each worker reserves; None sizes it to the cluster (see the module)."""
        if cpus_per_worker is not None and not cpus_per_worker > 0:
            raise ConfigError(f"--ray-cpus must be a positive number of CPUs (got {cpus_per_worker})")
        self._ray = import_ray()
        self._ray_address = ray_address
        self._requested_cpus = cpus_per_worker
        self._cpus: float | None = None  # each worker's share, once prepare() has seen the cluster
        self._connected = False  # by this fleet, which must then disconnect (and stop a cluster it started)
        self._group: Any = None  # the placement group reserving every worker's CPUs
        self._refs: list[Any] = []
        self._done: list[asyncio.Future[Any]] = []

    async def start(self, address: str, shard_dir: Path, ids: list[str], workers: int,
                    token_file: Path | None = None, tls_dir: Path | None = None,
                    privacy: ClientPrivacy = DEFAULT_CLIENT_PRIVACY, code: ClientCode = NO_CLIENT_CODE) -> None:
        """Submit ``workers`` tasks hosting ``ids`` round-robin, connecting to the coordinator at ``address``
        with the tokens of ``token_file`` and, with ``tls_dir``, over TLS trusting its ``ca.pem``; they trust
        and import ``code``'s user model."""
        if self._cpus is None:
            await self.prepare(workers)
        assert self._cpus is not None  # set by prepare
        tokens = read_token_file(token_file, ids) if token_file is not None else {}
        ray = self._ray
        await self._reserve(workers)
        strategies = importlib.import_module("ray.util.scheduling_strategies")
        remote = ray.remote(num_cpus=self._cpus, max_retries=WORKER_RETRIES,
                            scheduling_strategy=strategies.PlacementGroupSchedulingStrategy(self._group))(host_clients)
        for index in range(workers):
            hosted = ids[index::workers]
            shards = {client_id: load_shard(shard_dir, int(client_id)) for client_id in hosted}
            security = ClientSecurity.for_clients(tls_dir, hosted) if tls_dir is not None else None
            spec = WorkerSpec(address, shards, {cid: tokens[cid] for cid in hosted if cid in tokens}, security,
                              ClientOptions(), privacy, code, load_attacks(shard_dir, hosted))
            ref = remote.remote(spec)
            self._refs.append(ref)
            self._done.append(asyncio.wrap_future(ref.future()))

    async def prepare(self, workers: int) -> None:
        """Connect to the cluster (starting a local one if there is none) and size the CPU share of each of
        ``workers`` workers so that all of them run at once; a :class:`ConfigError` if they cannot."""
        self._connect()
        nodes = [node["Resources"].get("CPU", 0.0) for node in self._ray.nodes() if node["Alive"]]
        self._cpus = worker_cpus(nodes, workers, self._requested_cpus)
        log.info("%d Ray client workers, %g CPUs each, on %s", workers, self._cpus, _describe(nodes))

    async def _reserve(self, workers: int) -> None:
        """Reserve the CPUs of all ``workers`` workers at once (a placement group of one bundle per worker, spread
        over the nodes) and wait until Ray has placed every bundle; a lost node's bundles Ray places again."""
        assert self._cpus is not None
        self._group = self._ray.util.placement_group([{"CPU": self._cpus}] * workers, strategy="SPREAD")
        log.info("reserving %g CPUs for each of %d Ray client workers", self._cpus, workers)
        ready = asyncio.wrap_future(self._group.ready().future())
        if not (await asyncio.wait({ready}, timeout=RESERVATION_NOTICE_S))[0]:
            log.warning("waiting for the Ray cluster to free %g CPUs for each of %d client workers (it is busy "
                        "with other work); no round starts before every worker runs", self._cpus, workers)
        await ready

    def _connect(self) -> None:
        """``ray.init``, unless this process is already connected (then the caller owns the connection).

        ``ray.init`` sets a SIGTERM handler of its own (exit at once); the caller's is put back, so that
        SIGTERM still unwinds the run through :meth:`stop`. A local cluster it starts runs its workers at this
        process's priority, like local client processes (see :data:`WORKER_NICENESS`)."""
        ray = self._ray
        if ray.is_initialized():
            return
        sigterm = signal.getsignal(signal.SIGTERM)
        niceness_set_here = WORKER_NICENESS_VARIABLE not in os.environ
        if niceness_set_here:
            os.environ[WORKER_NICENESS_VARIABLE] = WORKER_NICENESS
        try:
            ray.init(address=self._ray_address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        except Exception as error:  # noqa: BLE001 - Ray raises many kinds (connection, auth, bad address)
            where = f"the Ray cluster at {self._ray_address}" if self._ray_address else "a Ray cluster"
            raise FedgradError(f"cannot connect to or start {where}: {_first_line(error)}") from None
        finally:
            if niceness_set_here:
                del os.environ[WORKER_NICENESS_VARIABLE]
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
        if self._group is not None:
            group, self._group = self._group, None
            try:
                self._ray.util.remove_placement_group(group)
            except Exception as error:  # noqa: BLE001 - as above
                log.warning("could not free the Ray client workers' CPUs: %s", error)
        if self._connected:
            self._connected = False
            self._ray.shutdown()


def worker_cpus(nodes: list[float], workers: int, requested: float | None = None) -> float:
    """CPUs each of ``workers`` workers reserves on nodes with ``nodes`` CPUs so that all of them run at once.

    ``requested`` if they all fit with it, else a :class:`ConfigError` saying what fits; without ``requested``,
    :data:`DEFAULT_WORKER_CPUS` or, where that does not fit, the largest share that does (in Ray's units of
    1/10,000 CPU). A worker runs on one node, so the fit is counted node by node, not on the sum of CPUs."""
    units = [round(cpus * CPU_GRANULARITY) for cpus in nodes]

    def fitting(share: int) -> int:  # workers that run at once with ``share`` units each
        return sum(node // share for node in units)

    # the largest share that fits is some node's CPUs split k ways, for some k <= workers
    candidates = {node // k for node in units for k in range(1, workers + 1)} - {0}
    best = max((share for share in candidates if fitting(share) >= workers), default=0)
    if requested is None:
        if best == 0:
            raise ConfigError(f"the Ray cluster ({_describe(nodes)}) has no room for {workers} client workers")
        return min(DEFAULT_WORKER_CPUS, best / CPU_GRANULARITY)
    fit = fitting(max(1, round(requested * CPU_GRANULARITY)))
    if fit >= workers:
        return requested
    remedies = ([f"--ray-cpus {best / CPU_GRANULARITY:g} or less"] if best else []) + (
        [f"federation.processes = {fit}"] if fit else []) + ["a larger cluster"]
    raise ConfigError(f"{workers} client workers x {requested:g} CPUs do not all fit on the Ray cluster "
                      f"({_describe(nodes)}, room for {fit}): use {', or '.join(remedies)}")


def _describe(nodes: list[float]) -> str:
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} with {' + '.join(f'{cpus:g}' for cpus in nodes)} CPUs"


def _first_line(error: BaseException) -> str:
    """The gist of a worker's error: the clients' own exception when Ray wrapped one."""
    cause = getattr(error, "cause", None)
    lines = str(cause if isinstance(cause, BaseException) else error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
