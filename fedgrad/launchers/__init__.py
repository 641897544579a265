"""Where a simulation's client workers run: one home for launchers.

- ``base``:  the :class:`Fleet` protocol (start, supervise, wait for exit, stop);
- ``local``: :class:`ClientFleet`, local OS processes running ``fedgrad client``;
- ``ray``:   :class:`~fedgrad.launchers.ray.RayFleet`, tasks on an existing Ray cluster (Ray is imported only when
  one is built: :func:`ray_fleet`).
"""
from __future__ import annotations

from fedgrad.launchers.base import Fleet
from fedgrad.launchers.local import ClientFleet


def ray_fleet(address: str | None, cpus_per_worker: float | None = None) -> Fleet:
    """Client workers as Ray tasks, ``cpus_per_worker`` CPUs each (default: one, or the share that lets all of
    them run at once), on the cluster at ``address`` or on a local cluster started for the run; a one-line
    :class:`~fedgrad.errors.ConfigError` without Ray."""
    from fedgrad.launchers.ray import RayFleet

    return RayFleet(address, cpus_per_worker)


__all__ = ["ClientFleet", "Fleet", "ray_fleet"]
