"""Where a simulation's client workers run: one home for launchers.

- ``base``:  the :class:`Fleet` protocol (start, supervise, wait for exit, stop);
- ``local``: :class:`ClientFleet`, local OS processes running ``fedgrad client``;
- ``ray``:   :class:`~fedgrad.launchers.ray.RayFleet`, tasks on an existing Ray cluster (Ray is imported only when
  one is built: :func:`ray_fleet`).
"""
from __future__ import annotations

from fedgrad.launchers.base import Fleet
from fedgrad.launchers.local import ClientFleet


def ray_fleet(address: str | None) -> Fleet:
    """Client workers on the Ray cluster at ``address`` (Ray's own discovery when None); a one-line
    :class:`~fedgrad.errors.ConfigError` when Ray is not installed."""
    from fedgrad.launchers.ray import RayFleet

    return RayFleet(address)


__all__ = ["ClientFleet", "Fleet", "ray_fleet"]
