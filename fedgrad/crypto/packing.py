"""Slot packing: many quantized values per Paillier plaintext, with headroom so that sums never carry.

Packing bound (why no slot ever carries into the next)
------------------------------------------------------
Notation: b = value_bits, Q = 2**(b-1) - 1, N_max = max_clients, |n| = bit length of the modulus n.

1. A client's quantized value q ∈ [-Q, Q] (see `quantize`) is offset to u = q + Q ∈ [0, 2Q].
2. For N ≤ N_max contributors a slot of the aggregate holds U = Σ_i u_i ∈ [0, N·2Q] ⊆ [0, N_max·2Q].
   The slot width w = bit_length(N_max·2Q) is the smallest with N_max·2Q < 2**w, so 0 ≤ U < 2**w.
3. A plaintext packs k slots as m = Σ_j u_j·2**(j·w) (slot 0 in the lowest bits). The sum of the N clients'
   plaintexts is M = Σ_j U_j·2**(j·w) with every U_j < 2**w: that *is* the base-2**w representation of M
   (digits are unique), so w-bit digit j of M is exactly U_j — nothing carries from one slot into the next.
4. k = ⌊(|n| − 1) / w⌋ gives M < 2**(k·w) ≤ 2**(|n|−1) < n, so the homomorphic sum, which decrypts to
   M mod n, decrypts to M itself.
5. Decoding: Σ_i q_ij = U_j − N·Q with N the actual number of contributors, exact in int64 (w ≤ 52).

Weights need no extra bits. A client folds its FedAvg weight w_i ∈ (0, 1] in before quantizing, which only
shrinks the value (|w_i·x| ≤ |x| ≤ C), so step 1 holds whatever the weights are. The round's weights also satisfy
Σ_i w_i ≤ 1, which would bound |Σ_i q_i| by Q + N/2 and save at most one bit (the N·Q offset dominates); the
bound does not rely on it, because a client cannot check what the coordinator announced to the others.
(Integer weights n_i, divided out after decryption, would instead cost ⌈log2 max n_i⌉ more bits per slot.)

Figures for b = 16 and a 2048-bit key: N_max = 100 → w = 23, k = 89 (5.75 bytes/param on the wire);
N_max = 256 → w = 24, k = 85 (6.02 bytes/param); N_max = 257 → w = 25, k = 81 (6.32 bytes/param).

Not covered: a malicious client can encrypt any plaintext, including one that overflows a slot; Paillier alone
cannot prove that a plaintext is in range (that takes zero-knowledge range proofs). `unpack_sums` rejects
aggregates that visibly break the bound (a slot above N·2Q, a non-zero padding slot or bits above slot k−1),
which catches garbage, not a carefully chosen in-range lie.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fedgrad.crypto.errors import PlaintextRangeError
from fedgrad.crypto.quantize import max_quantized
from fedgrad.errors import ConfigError


@dataclass(frozen=True)
class SlotLayout:
    """How quantized values sit in a plaintext: `slots` slots of `slot_bits` bits, each offset by `offset`."""

    value_bits: int
    max_clients: int
    key_bits: int
    slot_bits: int
    slots: int

    @classmethod
    def derive(cls, value_bits: int, max_clients: int, key_bits: int) -> SlotLayout:
        """Slot width and slots per plaintext from the bound in the module docstring (steps 2 and 4)."""
        slot_bits = (max_clients * 2 * max_quantized(value_bits)).bit_length()
        slots = (key_bits - 1) // slot_bits
        if slots < 1:
            raise ConfigError(f"a {key_bits}-bit key cannot hold one {slot_bits}-bit slot "
                              f"(value_bits={value_bits}, max_clients={max_clients})")
        return cls(value_bits, max_clients, key_bits, slot_bits, slots)

    @property
    def offset(self) -> int:
        """Q: added to every client value so that slots only ever hold non-negative numbers."""
        return max_quantized(self.value_bits)

    @property
    def plaintext_bits(self) -> int:
        return self.slots * self.slot_bits

    def n_plaintexts(self, n_values: int) -> int:
        return -(-n_values // self.slots)

    def pack(self, q: np.ndarray) -> list[int]:
        """Pack signed values |q| ≤ Q into plaintexts; trailing slots of the last plaintext are zero."""
        if q.size and np.abs(q).max() > self.offset:
            raise ValueError(f"quantized values must lie in [-{self.offset}, {self.offset}]")
        count = self.n_plaintexts(q.size)
        # u < 2**value_bits ≤ 2**32: a slot holds the bits of u as a little-endian uint32, zero-extended
        u = (q + self.offset).astype("<u4")
        u_bits = min(32, self.slot_bits)
        bits = np.zeros((count * self.slots, self.slot_bits), dtype=np.uint8)
        bits[:q.size, :u_bits] = np.unpackbits(u.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")[:, :u_bits]
        rows = np.packbits(bits.reshape(count, self.plaintext_bits), axis=1, bitorder="little")
        width = rows.shape[1]
        raw = rows.tobytes()
        return [int.from_bytes(raw[i * width:(i + 1) * width], "little") for i in range(count)]

    def unpack_sums(self, plaintexts: Sequence[int], n_values: int, n_contributors: int) -> np.ndarray:
        """Exact Σ_i q_i (int64) from the plaintexts of an aggregate of `n_contributors` packed updates."""
        count = self.n_plaintexts(n_values)
        if len(plaintexts) != count:
            raise PlaintextRangeError(f"expected {count} plaintexts for {n_values} values, got {len(plaintexts)}")
        total_bits = self.plaintext_bits
        if any(m < 0 or m >> total_bits for m in plaintexts):
            raise PlaintextRangeError("a decrypted plaintext has bits above its last slot")
        width = (total_bits + 7) // 8
        raw = b"".join(m.to_bytes(width, "little") for m in plaintexts)
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(count, width), axis=1,
                             count=total_bits, bitorder="little")
        # each slot's bits, zero-extended to 64, read back as a little-endian integer (slot_bits ≤ 52)
        slot_words = np.zeros((count * self.slots, 64), dtype=np.uint8)
        slot_words[:, :self.slot_bits] = bits.reshape(count * self.slots, self.slot_bits)
        sums = np.packbits(slot_words, axis=1, bitorder="little").view("<u8").reshape(-1).astype(np.int64)
        if sums[n_values:].any():
            raise PlaintextRangeError("a padding slot of the aggregate is not zero")
        sums = sums[:n_values]
        if sums.max(initial=0) > n_contributors * 2 * self.offset:
            raise PlaintextRangeError(f"a slot exceeds the bound for {n_contributors} contributors")
        return sums - n_contributors * self.offset
