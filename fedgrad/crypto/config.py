"""`SecureAggConfig`: what the coordinator announces to clients with each task so both sides agree on the encoding."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from fedgrad.errors import ConfigError

MODES = ("paillier", "paillier-naive")
MAX_VALUE_BITS = 32
MAX_CLIENTS_LIMIT = 1 << 20  # keeps every slot sum below 2**53 (exact in int64 and float64)
MAX_WEIGHT_LIMIT = 1 << 30
MAX_SLOT_BITS = 62  # integer weights: every slot sum must stay exact in int64 (see `packing`)


def _require_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True, kw_only=True)
class SecureAggConfig:
    """Secure-aggregation parameters shared by the coordinator, the clients and the key holder.

    mode:        "paillier" (packed, fast) or "paillier-naive" (one phe ciphertext per value, the book's scheme).
    n_params:    length of the flat update vector.
    clip:        per-coordinate bound C; updates are clipped to [-C, C] before quantization.
    value_bits:  b, bits of one quantized signed value (resolution C / (2**(b-1) - 1)).
    max_clients: most contributions one aggregate may hold; sizes the packing headroom (see `packing`).
    max_weight:  0 (default): the client folds a fractional FedAvg weight w_i ∈ (0, 1] into its values before
                 quantizing (the coordinator announces w_i; the trusted-key-holder mode keeps this encoding).
                 W ≥ 1: the client encrypts n_i·q_i and its integer example count n_i, capped at W, in the same
                 packed plaintexts; decryption yields (Σ n_i q_i, Σ n_i) exactly and the division happens after
                 it, so no party has to trust weights the coordinator announced. Costs ⌈log₂ W⌉ bits per slot.
    short_randomizer: False (default): DJN randomizer exponents of ⌈|n|/2⌉ bits, the length DJN 2010 analyse.
                 True: 2λ-bit exponents (224 bits for 2048-bit keys), ~4.5× faster encryption, under the extra
                 short-exponent indistinguishability assumption stated in `djn`. Opt in explicitly.
    """

    mode: str
    n_params: int
    clip: float
    value_bits: int = 16
    max_clients: int
    max_weight: int = 0
    short_randomizer: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"privacy mode must be one of {MODES}, got {self.mode!r}")
        _require_int("n_params", self.n_params, 1, 1 << 40)
        if isinstance(self.clip, bool) or not isinstance(self.clip, (int, float)) \
                or not math.isfinite(self.clip) or self.clip <= 0:
            raise ConfigError(f"clip must be a positive finite number, got {self.clip!r}")
        object.__setattr__(self, "clip", float(self.clip))
        _require_int("value_bits", self.value_bits, 2, MAX_VALUE_BITS)
        _require_int("max_clients", self.max_clients, 1, MAX_CLIENTS_LIMIT)
        _require_int("max_weight", self.max_weight, 0, MAX_WEIGHT_LIMIT)
        if not isinstance(self.short_randomizer, bool):
            raise ConfigError(f"short_randomizer must be true or false, got {self.short_randomizer!r}")
        if self.max_weight:
            top = self.max_clients * self.max_weight * 2 * ((1 << (self.value_bits - 1)) - 1)
            if top.bit_length() > MAX_SLOT_BITS:
                raise ConfigError(f"max_clients × max_weight × 2^value_bits needs {top.bit_length()}-bit slots; "
                                  f"at most {MAX_SLOT_BITS} are supported (lower max_weight or value_bits)")

    @property
    def integer_weights(self) -> bool:
        """Whether clients send integer example counts in the plaintext (max_weight ≥ 1)."""
        return self.max_weight > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SecureAggConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown secure-aggregation key(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # a missing required key
            raise ConfigError(f"incomplete secure-aggregation config: {exc}") from None

    def fingerprint(self, n: int) -> bytes:
        """8 bytes binding a payload to this configuration and the key's modulus n.

        Payloads carry it so a ciphertext made under another key, model size or encoding is rejected
        up front instead of decrypting to garbage.
        """
        digest = hashlib.sha256(b"fedgrad/secure-agg/v1\0")
        digest.update(json.dumps(self.to_dict(), sort_keys=True).encode())
        digest.update(int(n).to_bytes((int(n).bit_length() + 7) // 8, "big"))
        return digest.digest()[:8]
