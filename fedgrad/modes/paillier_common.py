"""What the Paillier-based modes share: the packing configuration of a run, the client-side encryption, and
turning a decrypted flat vector back into named tensors. The modes themselves differ in who holds the key."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedgrad.crypto import SecureAggConfig, make_encoder, public_key_from_bytes
from fedgrad.modes.base import ClientPrivacy, EncodingRefused, Manifest
from fedgrad.protocol import Announcement, TrainTask
from fedgrad.scenario import Scenario


def secure_config(scenario: Scenario, model: Mapping[str, np.ndarray], *, scheme: str,
                  clip: float) -> SecureAggConfig:
    """The run's packing configuration: the model's size, the scenario's value bits and the packing bound
    ``federation.max_clients`` (0: ``clients_per_round``, the most updates a round can sum)."""
    return SecureAggConfig(mode=scheme, n_params=sum(int(np.asarray(v).size) for v in model.values()), clip=clip,
                           value_bits=scenario.privacy.value_bits,
                           max_clients=scenario.federation.effective_max_clients)


def flatten(task: TrainTask, update: Mapping[str, np.ndarray]) -> np.ndarray:
    """``update`` as one float64 vector, tensors in the model's payload order."""
    return np.concatenate([np.asarray(update[name], dtype=np.float64).reshape(-1) for name in task.tensor_names])


def manifest_shapes(specs: Manifest, cfg: SecureAggConfig) -> dict[str, tuple[int, ...]]:
    """The model's tensor shapes in payload order, checked against the packing configuration's size."""
    shapes = {spec.name: tuple(spec.shape) for spec in specs}
    n_params = sum(math.prod(shape) for shape in shapes.values())
    if n_params != cfg.n_params:
        raise ValueError(f"the model has {n_params} parameters, the secure-aggregation config {cfg.n_params}")
    return shapes


def unflatten(flat: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Split a flat vector into tensors in manifest order (the order clients flattened their updates in)."""
    tensors, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        tensors[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    return tensors


def encrypt_update(announcement: Announcement, client_id: str, flat: np.ndarray, weight: float,
                   privacy: ClientPrivacy) -> bytes:
    """Clip, weight, quantize, pack and encrypt ``flat`` under the announced key and packing."""
    params: Mapping[str, Any] = announcement.params
    try:
        cfg = SecureAggConfig.from_dict(dict(params["secure"]))
    except (KeyError, TypeError):
        raise EncodingRefused(f"client {client_id}: the task announces no secure-aggregation config") from None
    public_key = public_key_from_bytes(announcement.public_key, insecure_key_bits=privacy.allow_insecure_keys)
    return make_encoder(cfg, public_key).encrypt(flat, weight)
