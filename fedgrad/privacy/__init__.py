"""Differential privacy for federated training (client-level DP-FedAvg) and the leakage audit.

Independent of gRPC and of the coordinator: plain functions on numpy arrays and name -> array updates, plus
the ``dp-accounting`` library for the privacy math. Typical use::

    config = DPConfig(epsilon=4, clip=1.0, clients=100, clients_per_round=10, rounds=10)
    mechanism = config.mechanism()                      # calibrated noise multiplier z, std z*C on the sum
    ledger = config.ledger()
    clipped, _ = clip_update(delta, config.clip)        # on every client
    noisy_sum = mechanism.noise_sum(sum_of_clipped, noise_rng(seed, round_index))   # central placement
    epsilon_so_far = ledger.record_round(mechanism.noise_multiplier)

Names are resolved lazily (PEP 562): ``dp-accounting`` pulls in scipy and about 65 MiB of memory, which
client processes, that only clip and add noise, should not pay for.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ACCOUNTANTS": "accounting",
    "FixedSizeSampling": "accounting",
    "PoissonSampling": "accounting",
    "SAMPLINGS": "accounting",
    "sampling_model": "accounting",
    "PrivacyLedger": "accounting",
    "calibrate_noise_multiplier": "accounting",
    "default_delta": "accounting",
    "epsilon_spent": "accounting",
    "make_accountant": "accounting",
    "round_event": "accounting",
    "training_event": "accounting",
    "AdaptiveClip": "adaptive",
    "update_noise_multiplier": "adaptive",
    "Canary": "audit",
    "audit_score": "audit",
    "make_canary": "audit",
    "plant_canary": "audit",
    "recover_words": "audit",
    "CanaryObserver": "empirical",
    "EpsilonEstimate": "empirical",
    "estimate_epsilon": "empirical",
    "clip_by_l2": "clipping",
    "clip_update": "clipping",
    "l2_norm": "clipping",
    "DPConfig": "config",
    "PLACEMENTS": "config",
    "GaussianMechanism": "mechanism",
    "add_gaussian_noise": "mechanism",
    "noise_rng": "rng",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
