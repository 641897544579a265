"""How a client turns its trained delta into the payload its task asks for.

The pipeline, each step only when the task asks for it:

1. clip the whole update to L2 norm C (``TaskHeader.differential_privacy.clip``, DP-FedAvg);
2. add this client's share of the DP noise, N(0, noise_std²) per value (distributed DP), drawn from
   ``noise_rng(noise_seed, round, client stream)`` so that clients sharing a seed still draw independently;
3. fold in the client's weight, quantize, pack and encrypt (``TaskHeader.secure_aggregation``, see
   ``fedgrad.crypto``): weight = ``task.weight / cohort_weight``, the client's share of its cohort's
   total (FedAvg), or 1 under DP, where every update counts once;
4. otherwise send the tensors in plain.

Some decisions are the client's, because it is the client's data they protect (:class:`ClientPrivacy`):
a Paillier key shorter than 2048 bits is refused unless this client allows it, and the noise seed is the
client's own. A seed the coordinator knew would let it regenerate and subtract every noise share; the
default (None) draws it from the operating system. A noise share is never sent in plain: it is a fraction of
the noise the guarantee needs, so the client refuses a task that asks for one without secure aggregation.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedgrad.crypto import SecureAggConfig, make_encoder, public_key_from_bytes
from fedgrad.errors import FedgradError
from fedgrad.privacy.clipping import clip_update
from fedgrad.privacy.mechanism import add_gaussian_noise
from fedgrad.privacy.rng import noise_rng
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import encode_tensors, tensor_specs


class EncodingRefused(FedgradError):
    """The task asks for an encoding this client will not produce (it would expose the client's data)."""


@dataclass(frozen=True)
class ClientPrivacy:
    """Privacy settings that belong to the client process, not to the coordinator's task."""

    allow_insecure_keys: bool = False  # accept Paillier keys below 2048 bits (tests and demos only)
    noise_seed: int | None = None      # seed of the DP noise shares; None: fresh OS entropy per draw


@dataclass(frozen=True)
class EncodedUpdate:
    encoding: int                   # pb.Encoding
    tensors: list[pb.TensorSpec]    # the delta's manifest (the global model's)
    payload: bytes


def encode_update(task: pb.TaskHeader, client_id: str, delta: Mapping[str, np.ndarray],
                  privacy: ClientPrivacy) -> EncodedUpdate:
    """The payload ``task`` asks for, made from ``delta`` (see the module docstring)."""
    update = dict(delta)
    dp = task.differential_privacy if task.HasField("differential_privacy") else None
    secure = task.secure_aggregation if task.HasField("secure_aggregation") else None
    if dp is not None:
        update, _ = clip_update(update, dp.clip)
        if dp.noise_std > 0:
            if secure is None:
                raise EncodingRefused(f"client {client_id}: the task asks for a DP noise share without secure "
                                      "aggregation, which would expose an update carrying only part of the noise")
            update = add_gaussian_noise(update, dp.noise_std,
                                        noise_rng(privacy.noise_seed, task.round, noise_stream(client_id)))
    if secure is None:
        return EncodedUpdate(pb.PLAIN, *encode_tensors(update))
    cfg = SecureAggConfig.from_dict(json.loads(secure.config_json))
    public_key = public_key_from_bytes(secure.public_key, insecure_key_bits=privacy.allow_insecure_keys)
    if dp is not None:
        weight = 1.0
    elif secure.cohort_weight > 0:
        weight = task.weight / secure.cohort_weight
    else:
        raise EncodingRefused(f"client {client_id}: the task announces no cohort weight for secure aggregation")
    flat = np.concatenate([np.asarray(update[spec.name], dtype=np.float64).reshape(-1) for spec in task.tensors])
    return EncodedUpdate(secure.encoding, tensor_specs(update), make_encoder(cfg, public_key).encrypt(flat, weight))


def noise_stream(client_id: str) -> int:
    """A 64-bit stream index for ``client_id``: distinct clients draw independent noise from one seed."""
    return int.from_bytes(hashlib.sha256(client_id.encode("utf-8")).digest()[:8], "big")
