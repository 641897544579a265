"""L2 clipping of client updates: the step that bounds one client's influence on the aggregate.

Client-level DP-FedAvg (McMahan et al., 2018, "Learning Differentially Private Recurrent Language Models")
protects a whole client, not one example: the coordinator must not learn whether a given client took part.
Clipping every client's *entire* update (all tensors together) to L2 norm ``C`` makes the sensitivity of the
sum of updates exactly ``C`` under adding or removing one client, which is what the Gaussian noise is
calibrated against. Clipping tensor by tensor would give a sensitivity of ``C * sqrt(#tensors)`` instead.

Norms are computed in float64 so float32 updates with many parameters neither overflow nor lose the bound to
rounding; the scaled result is cast back to the input dtype, so the clipped norm can exceed ``C`` by at most
one float rounding (relative ``~1e-7`` for float32). Callers that check a received update against the bound
should allow that tolerance.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Update = Mapping[str, np.ndarray]


def l2_norm(update: np.ndarray | Update) -> float:
    """Global L2 norm of one array or of all arrays of a state-dict-like update, computed in float64."""
    arrays = update.values() if isinstance(update, Mapping) else (update,)
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(a, dtype=np.float64))) for a in arrays)))


def _clip_scale(norm: float, c: float) -> float:
    if not c > 0:
        raise ValueError(f"clip bound must be positive, got {c}")
    if not np.isfinite(norm):
        raise ValueError("update contains NaN or Inf; it cannot be clipped and must be rejected")
    return 1.0 if norm <= c else c / norm


def _scaled(array: np.ndarray, scale: float) -> np.ndarray:
    array = np.asarray(array)
    if scale == 1.0:
        return array.copy()
    return (array.astype(np.float64) * scale).astype(array.dtype)


def clip_by_l2(update: np.ndarray, c: float) -> tuple[np.ndarray, bool]:
    """Scale ``update`` down to L2 norm ``c`` if it is longer; returns ``(clipped_copy, was_clipped)``.

    Updates already inside the ball are returned unchanged (as a copy), never scaled up.
    Raises ``ValueError`` for NaN/Inf input: no scaling makes such an update safe to add.
    """
    scale = _clip_scale(l2_norm(update), c)
    return _scaled(update, scale), scale < 1.0


def clip_update(update: Update, c: float) -> tuple[dict[str, np.ndarray], bool]:
    """Clip a whole state-dict-like update (name -> array) by its *global* L2 norm.

    All tensors are scaled by the same factor, so the direction of the update is preserved and the
    per-client sensitivity is ``c`` (see the module docstring). Returns ``(clipped_copy, was_clipped)``.
    """
    scale = _clip_scale(l2_norm(update), c)
    return {name: _scaled(array, scale) for name, array in update.items()}, scale < 1.0
