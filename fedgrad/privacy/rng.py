"""Random streams for DP noise: reproducible when seeded, unpredictable when not.

Simulations pass a seed so that runs can be repeated and compared. Without a seed the generator is seeded
with 128 bits from ``secrets`` (the operating system's CSPRNG), so nobody can guess the noise from a seed.

That is still not enough for a real deployment, and the limits are stated here so no one mistakes it:

* numpy's PCG64 is a statistical generator, not a cryptographic one: its output is predictable from its
  state, and its state can be recovered from enough output. Noise that protects real people must come from a
  CSPRNG.
* Sampling a continuous Gaussian in floating point leaks through the low-order bits of the noisy values
  (Mironov, CCS 2012). Production systems sample discrete Gaussian noise with exact arithmetic
  (Canonne, Kamath & Steinke, 2020) on integers, which also suits secure aggregation.

Each client of a distributed-noise round needs its *own* stream: identical seeds would give identical noise
shares, whose sum has ``m`` times the planned variance and no longer matches the accounting. ``noise_rng``
derives independent streams from one seed with numpy's ``SeedSequence`` spawn keys.
"""
from __future__ import annotations

import secrets

import numpy as np


def noise_rng(seed: int | None = None, *stream: int) -> np.random.Generator:
    """Generator for one noise stream, e.g. ``noise_rng(seed, round_index, client_index)``.

    Equal ``(seed, stream)`` give equal noise; different ``stream`` tuples give independent streams.
    ``seed=None`` draws fresh entropy from ``secrets`` (see the module docstring for what that does and does
    not guarantee).
    """
    if any(s < 0 for s in stream):
        raise ValueError(f"stream indices must be non-negative, got {stream}")
    entropy = secrets.randbits(128) if seed is None else seed
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=tuple(stream)))
