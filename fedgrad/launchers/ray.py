"""Client workers on an existing Ray cluster, for simulations larger than one machine.

``fedgrad simulate --launcher ray`` keeps the coordinator in its own process and, instead of starting
local client processes, runs each group of virtual clients as one Ray task (one CPU each) on the
cluster at ``--ray-address``. A worker is an ordinary client pool (:func:`client.pool.run_clients`): it
joins over gRPC with its run tokens, over TLS, exactly like ``fedgrad client`` on another machine. The
driver ships each worker its shards, tokens and the CA certificate as task arguments, so the cluster
needs no shared file system.

Ray is not a dependency of fedgrad and is imported only here, only when this launcher is used; without
it the launcher stops with a one-line error saying how to install it.
"""
from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from fedgrad.modes.base import ClientPrivacy
from client.pool import run_clients
from client.session import ClientOptions
from fedgrad.data import Shard, load_shard
from fedgrad.errors import ConfigError, FedgradError
from fedgrad.security.tokens import read_token_file
from fedgrad.transport.channel import ClientSecurity

T = TypeVar("T")


def import_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`ConfigError` that says how to get it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError("--launcher ray needs Ray, which fedgrad does not install: pip install 'ray[default]' "
                          "(and start or point at a cluster with --ray-address)") from None


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one Ray worker needs to host its clients; plain data, so Ray can ship it anywhere."""

    address: str
    shards: dict[str, Shard]
    tokens: dict[str, str]
    security: ClientSecurity | None
    options: ClientOptions
    privacy: ClientPrivacy


def host_clients(spec: WorkerSpec) -> None:
    """The body of a Ray task: a client pool for ``spec``'s clients, until the run ends."""
    asyncio.run(run_clients(spec.address, spec.shards, options=spec.options, tokens=spec.tokens,
                            security=spec.security, privacy=spec.privacy))


class RayFleet:
    """Client workers as Ray tasks; the same start/supervise/wait_for_exit/stop cycle as local processes."""

    def __init__(self, ray_address: str | None) -> None:
        self._ray = import_ray()
        self._ray_address = ray_address
        self._refs: list[Any] = []
        self._done: list[asyncio.Future[Any]] = []

    async def start(self, address: str, shard_dir: Path, ids: list[str], workers: int,
                    token_file: Path | None = None, tls_dir: Path | None = None,
                    privacy: ClientPrivacy = ClientPrivacy()) -> None:
        """Submit ``workers`` tasks hosting ``ids`` round-robin, connecting to the coordinator at ``address``
        with the tokens of ``token_file`` and, with ``tls_dir``, over TLS trusting its ``ca.pem``."""
        tokens = read_token_file(token_file, ids) if token_file is not None else {}
        security = ClientSecurity.from_dir(tls_dir) if tls_dir is not None else None
        ray = self._ray
        ray.init(address=self._ray_address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(num_cpus=1, max_retries=0)(host_clients)
        for index in range(workers):
            hosted = ids[index::workers]
            shards = {client_id: load_shard(shard_dir, int(client_id)) for client_id in hosted}
            spec = WorkerSpec(address, shards, {cid: tokens[cid] for cid in hosted if cid in tokens}, security,
                              ClientOptions(), privacy)
            ref = remote.remote(spec)
            self._refs.append(ref)
            self._done.append(asyncio.wrap_future(ref.future()))

    async def supervise(self, run: Awaitable[T]) -> T:
        """Await ``run``; fail fast if every worker ends (with its error) before it finishes."""
        run_task = asyncio.ensure_future(run)
        all_done = asyncio.ensure_future(asyncio.wait(self._done))
        try:
            await asyncio.wait({run_task, all_done}, return_when=asyncio.FIRST_COMPLETED)
            if not run_task.done():
                errors = [future.exception() for future in self._done if future.exception() is not None]
                detail = f": {errors[0]}" if errors else ""
                raise FedgradError(f"every Ray client worker ended before the run finished{detail}")
            return run_task.result()
        finally:
            run_task.cancel()
            all_done.cancel()

    async def wait_for_exit(self, timeout: float) -> None:
        """Give the workers ``timeout`` seconds to end after SHUTDOWN (``stop`` cancels the rest)."""
        if self._done:
            await asyncio.wait(self._done, timeout=timeout)

    async def stop(self) -> None:
        """Cancel every worker still running."""
        for ref, done in zip(self._refs, self._done):
            if not done.done():
                self._ray.cancel(ref, force=True)
        for done in self._done:
            if not done.done():
                done.cancel()
