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

Fractional weights (`max_weight` = 0) need no extra bits. A client folds its FedAvg weight w_i ∈ (0, 1] in
before quantizing, which only shrinks the value (|w_i·x| ≤ |x| ≤ C), so step 1 holds whatever the weights are.
The bound does not rely on Σ_i w_i ≤ 1, because a client cannot check what the coordinator announced to others.

Integer weights (`max_weight` = W ≥ 1; DESIGN "weights from clients")
---------------------------------------------------------------------
Client i sends its example count n_i ∈ [1, W] (capped, `quantize.capped_weight`) inside the plaintext, so the
weights come from the clients, not from the coordinator, and the division happens after decryption.

1'. Client i packs u_ij = n_i·(q_ij + Q) ∈ [0, 2Q·n_i] ⊆ [0, 2QW] into value slot j, and n_i into one extra
    slot (the "weight slot", value index n_params).
2'. For N ≤ N_max contributors with T = Σ_i n_i ∈ [N, N·W]: value slot U_j = Σ_i n_i q_ij + Q·T ∈ [0, 2Q·T]
    ⊆ [0, 2Q·N_max·W], and the weight slot holds T ≤ N_max·W ≤ 2Q·N_max·W (Q ≥ 1). The slot width is
    w = bit_length(N_max·W·2Q), the smallest with N_max·W·2Q < 2**w, so every slot sum is < 2**w and
    steps 3 and 4 above apply unchanged: no carries, and the packed sum stays below 2**(|n|−1) < n.
    Since 2Q = 2**b − 2 < 2**b, N_max·W·2Q < 2**(b + ⌈log₂(N_max·W)⌉), so w ≤ b + ⌈log₂(N_max·W)⌉: DESIGN's
    b + ⌈log₂(N_max·W_max)⌉ + 1 is one bit more than needed — the sign bit it budgets for is never used,
    because the offset Q·n_i makes every slot non-negative. (W = 1 gives back the fractional layout's width.)
5'. Decoding: T is read from the weight slot and checked against N ≤ T ≤ N·W; every value slot against
    U_j ≤ 2Q·T; then Σ_i n_i q_ij = U_j − Q·T exactly (int64: w ≤ 62 is enforced by `SecureAggConfig`).
    The FedAvg mean is Σ_i n_i q_ij / (S·T) (`quantize.weighted_mean`).

Figures for b = 16 and a 2048-bit key: N_max = 100 → w = 23, k = 89 (5.75 bytes/param on the wire);
N_max = 256 → w = 24, k = 85 (6.02 bytes/param); N_max = 257 → w = 25, k = 81 (6.32 bytes/param).
Integer weights, N_max = 100: W = 1000 → w = 33, k = 62 (8.26 bytes/param); W = 10⁴ → w = 36, k = 56.

Not covered: a malicious client can encrypt any plaintext, including one that overflows a slot; Paillier alone
cannot prove that a plaintext is in range (that takes zero-knowledge range proofs). `unpack_sums` rejects
aggregates that visibly break the bound (a slot above N·2Q, a non-zero padding slot or bits above slot k−1),
which catches garbage, not a carefully chosen in-range lie.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedgrad.crypto.errors import PlaintextRangeError
from fedgrad.crypto.quantize import max_quantized
from fedgrad.errors import ConfigError


@dataclass(frozen=True)
class SlotLayout:
    """How values sit in a plaintext: `slots` slots of `slot_bits` bits (see the module docstring).

    `max_weight` = 0: fractional weights, slot j holds q_j + Q. `max_weight` = W ≥ 1: slot j holds n·(q_j + Q)
    and the slot after the last value holds n (`pack_weighted` / `unpack_weighted`).
    """

    value_bits: int
    max_clients: int
    key_bits: int
    slot_bits: int
    slots: int
    max_weight: int = 0

    @classmethod
    def derive(cls, value_bits: int, max_clients: int, key_bits: int, max_weight: int = 0) -> SlotLayout:
        """Slot width and slots per plaintext from the bound in the module docstring (steps 2/2' and 4)."""
        slot_bits = (max_clients * max(1, max_weight) * 2 * max_quantized(value_bits)).bit_length()
        slots = (key_bits - 1) // slot_bits
        if slots < 1:
            raise ConfigError(f"a {key_bits}-bit key cannot hold one {slot_bits}-bit slot "
                              f"(value_bits={value_bits}, max_clients={max_clients}, max_weight={max_weight})")
        if slot_bits > 63:
            raise ConfigError(f"{slot_bits}-bit slots do not fit in int64; lower max_weight or value_bits")
        return cls(value_bits, max_clients, key_bits, slot_bits, slots, max_weight)

    @property
    def offset(self) -> int:
        """Q: added to every client value so that slots only ever hold non-negative numbers."""
        return max_quantized(self.value_bits)

    @property
    def plaintext_bits(self) -> int:
        return self.slots * self.slot_bits

    def n_plaintexts(self, n_values: int) -> int:
        """Plaintexts for `n_values` values (plus the weight slot under integer weights)."""
        return -(-(n_values + (1 if self.max_weight else 0)) // self.slots)

    def _pack_words(self, u: np.ndarray) -> list[int]:
        """Pack non-negative integers u < 2**slot_bits (uint64) into plaintexts, zero padding slots at the end."""
        count = -(-u.size // self.slots)
        words = u.astype("<u8")
        u_bits = min(64, self.slot_bits)
        bits = np.zeros((count * self.slots, self.slot_bits), dtype=np.uint8)
        bits[:u.size, :u_bits] = np.unpackbits(words.view(np.uint8).reshape(-1, 8), axis=1,
                                               bitorder="little")[:, :u_bits]
        rows = np.packbits(bits.reshape(count, self.plaintext_bits), axis=1, bitorder="little")
        width = rows.shape[1]
        raw = rows.tobytes()
        return [int.from_bytes(raw[i * width:(i + 1) * width], "little") for i in range(count)]

    def _unpack_words(self, plaintexts: Sequence[int], count: int) -> np.ndarray:
        """Every slot of `count` plaintexts as int64 (slot_bits ≤ 63), after checking nothing sits above them."""
        if len(plaintexts) != count:
            raise PlaintextRangeError(f"expected {count} plaintexts, got {len(plaintexts)}")
        total_bits = self.plaintext_bits
        if any(m < 0 or m >> total_bits for m in plaintexts):
            raise PlaintextRangeError("a decrypted plaintext has bits above its last slot")
        width = (total_bits + 7) // 8
        raw = b"".join(int(m).to_bytes(width, "little") for m in plaintexts)
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(count, width), axis=1,
                             count=total_bits, bitorder="little")
        # each slot's bits, zero-extended to 64, read back as a little-endian integer
        slot_words = np.zeros((count * self.slots, 64), dtype=np.uint8)
        slot_words[:, :self.slot_bits] = bits.reshape(count * self.slots, self.slot_bits)
        words: np.ndarray = np.packbits(slot_words, axis=1, bitorder="little").view("<u8").reshape(-1)
        return words.astype(np.int64)

    def pack(self, q: np.ndarray) -> list[int]:
        """Fractional weights: pack signed values |q| ≤ Q; trailing slots of the last plaintext are zero."""
        if self.max_weight:
            raise ValueError("this layout carries integer weights: use pack_weighted")
        if q.size and np.abs(q).max() > self.offset:
            raise ValueError(f"quantized values must lie in [-{self.offset}, {self.offset}]")
        return self._pack_words(q.astype(np.int64) + self.offset)

    def pack_weighted(self, q: np.ndarray, weight: int) -> list[int]:
        """Integer weights: pack n·(q + Q) for |q| ≤ Q, then n itself, for 1 ≤ n = `weight` ≤ max_weight."""
        if not self.max_weight:
            raise ValueError("this layout has no weight slot: use pack")
        if isinstance(weight, bool) or not 1 <= weight <= self.max_weight:
            raise ValueError(f"weight must be an integer in [1, {self.max_weight}], got {weight!r}")
        if q.size and np.abs(q).max() > self.offset:
            raise ValueError(f"quantized values must lie in [-{self.offset}, {self.offset}]")
        u = (q.astype(np.int64) + self.offset) * int(weight)
        return self._pack_words(np.append(u, np.int64(weight)))

    def unpack_sums(self, plaintexts: Sequence[int], n_values: int, n_contributors: int) -> np.ndarray:
        """Fractional weights: exact Σ_i q_i (int64) from an aggregate of `n_contributors` packed updates."""
        if self.max_weight:
            raise ValueError("this layout carries integer weights: use unpack_weighted")
        sums = self._unpack_words(plaintexts, self.n_plaintexts(n_values))
        if sums[n_values:].any():
            raise PlaintextRangeError("a padding slot of the aggregate is not zero")
        sums = sums[:n_values]
        if sums.max(initial=0) > n_contributors * 2 * self.offset:
            raise PlaintextRangeError(f"a slot exceeds the bound for {n_contributors} contributors")
        return sums - n_contributors * self.offset

    def unpack_weighted(self, plaintexts: Sequence[int], n_values: int,
                        n_contributors: int) -> tuple[np.ndarray, int]:
        """Integer weights: exact (Σ_i n_i q_i as int64, Σ_i n_i) from an aggregate of `n_contributors` updates."""
        if not self.max_weight:
            raise ValueError("this layout has no weight slot: use unpack_sums")
        words = self._unpack_words(plaintexts, self.n_plaintexts(n_values))
        if words[n_values + 1:].any():
            raise PlaintextRangeError("a padding slot of the aggregate is not zero")
        total = int(words[n_values])
        if not n_contributors <= total <= n_contributors * self.max_weight:
            raise PlaintextRangeError(f"total weight {total} is outside [{n_contributors}, "
                                      f"{n_contributors * self.max_weight}] for {n_contributors} contributors")
        sums = words[:n_values]
        if sums.max(initial=0) > 2 * self.offset * total:
            raise PlaintextRangeError(f"a slot exceeds the bound for total weight {total}")
        return sums - self.offset * total, total
