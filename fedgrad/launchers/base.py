"""What every launcher offers: the :class:`Fleet` protocol a simulation drives its client workers through."""
from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol, TypeVar

from fedgrad.modes.base import ClientPrivacy
from fedgrad.usercode import ClientCode

T = TypeVar("T")


class Fleet(Protocol):
    """Where a simulation's client workers run: local OS processes (:class:`ClientFleet`) or Ray tasks
    (:class:`fedgrad.launchers.ray.RayFleet`).

    ``prepare`` comes first, before the run starts its gRPC server, channels or child processes: a launcher that
    forks helpers of its own (Ray's local node) does it while the process is still single-threaded."""

    async def prepare(self, workers: int) -> None: ...

    async def start(self, address: str, shard_dir: Path, ids: list[str], workers: int, token_file: Path | None,
                    tls_dir: Path | None, privacy: ClientPrivacy, code: ClientCode) -> None: ...

    async def supervise(self, run: Awaitable[T]) -> T: ...

    async def wait_for_exit(self, timeout: float) -> None: ...

    async def stop(self) -> None: ...
