"""What the Paillier-based modes share: the key's strength in words, the client-side encryption, and turning a
decrypted flat vector back into named tensors. The modes themselves differ in who holds the key."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedgrad.crypto import SecureAggConfig, make_encoder, public_key_from_bytes
from fedgrad.crypto.keys import SECURE_KEY_BITS, security_bits
from fedgrad.modes.base import ClientPrivacy, EncodingRefused, Manifest
from fedgrad.protocol import Announcement, TrainTask


def key_strength(key_bits: int) -> str:
    """A Paillier key's size and strength, for guarantees: ``2048-bit key, ~112-bit security``."""
    if key_bits < SECURE_KEY_BITS[0]:
        return f"{key_bits}-bit key, INSECURE (tests only)"
    return f"{key_bits}-bit key, ~{security_bits(key_bits)}-bit security"


def parameter_count(model: Mapping[str, np.ndarray]) -> int:
    """How many values one update of ``model`` carries."""
    return sum(int(np.asarray(value).size) for value in model.values())


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


def announced_config(announcement: Announcement, client_id: str) -> SecureAggConfig:
    """The packing a round's announcement asks for (its ``secure`` entry); :class:`EncodingRefused` when it
    announces none."""
    params: Mapping[str, Any] = announcement.params
    try:
        return SecureAggConfig.from_dict(dict(params["secure"]))
    except (KeyError, TypeError):
        raise EncodingRefused(f"client {client_id}: the task announces no secure-aggregation config") from None


def encrypt_update(announcement: Announcement, client_id: str, flat: np.ndarray, weight: float,
                   privacy: ClientPrivacy) -> bytes:
    """Clip, weight, quantize, pack and encrypt ``flat`` under the announced key and packing."""
    cfg = announced_config(announcement, client_id)
    public_key = public_key_from_bytes(announcement.public_key, insecure_key_bits=privacy.allow_insecure_keys)
    return make_encoder(cfg, public_key).encrypt(flat, weight)
