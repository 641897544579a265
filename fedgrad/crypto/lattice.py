"""Key-additive RLWE masking of client updates: the lattice half of the `paillier-masked` design.

After Willow (Bell-Clark, Gascón, Li, Raykova, Schoppmann, "Secure aggregation with one-shot clients":
key-additive homomorphic encryption, KAHE, next to an AHE for the keys) and OPA (Karthikeyan & Polychroniadou,
"OPA: One-shot private aggregation with single client interaction and its applications to federated
learning", 2024). Client i masks block j of its update m_ij (N coefficients) as

    c_ij = a_j·s_i + e_ij + Δ·m_ij   in R_q = Z_q[X]/(X^N + 1),

with a_j public, s_i its fresh secret for the round and e_ij a small error. Summed over a cohort K:
Σ_i c_ij = a_j·S + E_j + Δ·M_j with S = Σ_i s_i, so whoever holds S, and only S, recovers M_j exactly.
S itself travels under threshold Paillier (`key_layout` packs a secret into Paillier slots).

Parameters and their source
---------------------------
Homomorphic Encryption Security Standard (Albrecht et al., HomomorphicEncryption.org, 2018), Table 1,
128-bit classical security: N = 4096 allows log₂ q ≤ 109 for uniform, error-distributed and ternary secrets
with error σ = 8/√(2π) ≈ 3.19. We take

- N = 4096, q = 2^64 (log₂ q = 64, 45 bits below the table's bound: the margin the Hint-LWE argument below
  spends). A power-of-two q makes reduction mod q the uint64 wrap-around, on numpy and on cupy.
- s_i uniform ternary in {-1, 0, 1}^N (the standard's ternary column).
- e_ij centered binomial with η = 21: e = Σ_{k<21} (b_k − b'_k), variance η/2 = 10.5, σ ≈ 3.24 ≥ 3.19,
  support |e| ≤ η (the usual substitution for the discrete Gaussian, as in Kyber and NewHope).

Why small secrets (cost). The decryptors' Paillier work is the number of Paillier ciphertexts that carry one
client's key. A ternary coefficient summed over K ≤ N_max clients lies in [-N_max, N_max]: with the packing
code's offset layout (value_bits = 2, Q = 1) a slot is bit_length(2·N_max) bits, 11 for N_max = 1000, so a
2048-bit Paillier key carries 186 coefficients and a key takes ⌈4096/186⌉ = 23 ciphertexts. A uniform secret
mod 2^64 would need ≥ 64 + log₂ N_max bits per slot (beyond the packing code's int64 slots) and ≥ 6× as many
ciphertexts. Releasing S = Σ_i s_i is a hint on each s_i; Hint-LWE (Kim, Lee, Seo, Song, "Asymptotically
faster multi-key homomorphic encryption from homomorphic gadget decomposition" / "Hint-LWE", CRYPTO 2023)
shows that RLWE with a hint s_i + r, r the sum of the other K−1 honest secrets, stays as hard as RLWE with a
secret of variance reduced by the factor (K−1)/K, which the 45 bits of modulus margin above covers many
times over. Cohorts need K ≥ 2 honest clients (the threshold mode's `min_clients` already ensures K ≥ 2);
docs/threat-model.md states what the released key sum reveals.

Δ and the plaintext range (why recovery is exact)
-------------------------------------------------
Notation: η = error bound, K ≤ N_max contributors, V = the largest |m_ij| a client may mask, q = 2^64,
r = low bits dropped on the wire (a multiple of 8), ρ = 2^(r−1) for r > 0 and 0 for r = 0.

0. Rounding (as in learning with rounding): a client sends c' = ⌊(c + 2^(r−1)) / 2^r⌋ mod 2^(64−r) in
   (64 − r)/8 bytes; c'·2^r ≡ c + ρ_c (mod 2^64) with |ρ_c| ≤ ρ. The coordinator sums the c' (uint64) and
   shifts left by r, which is Σ_i c_i + Σ_i ρ_ci mod 2^64: one more error of at most ρ per client.
1. Σ_i c'_ij·2^r − a_j·S = E_j + Δ·M_j (mod q) with |E_j| ≤ K·(η + ρ) ≤ N_max·(η + ρ), |M_j| ≤ K·V ≤ N_max·V.
2. Δ = 2^d is the smallest power of two with Δ > 2·N_max·(η + ρ), so |E_j| < Δ/2.
3. The layout requires N_max·V·Δ + N_max·(η + ρ) < 2^63, so t = E_j + Δ·M_j lies in (−2^63, 2^63): the
   centred representative of (Σ_i c'_ij·2^r − a_j·S) mod 2^64, read as int64, is t itself.
4. M_j = round(t / Δ) (floor((t + Δ/2) / Δ)) exactly, because |E_j| < Δ/2. `unmask` then checks
   |t − Δ·M_j| ≤ K·(η + ρ) and |M_j| ≤ K·V, and refuses an aggregate that breaks either (it was not the sum
   of K well-formed masked updates).
5. `derive` takes the largest r ∈ {0, 8, ..., 56} for which step 3's condition holds.

Figures (η = 21): N_max = 1000, V = 1000·(2^15 − 1) (16-bit values, weights up to 1000): r = 16, Δ = 2^26,
6 bytes per value; N_max = 10: r = 24, Δ = 2^28, 5 bytes per value. Padding coefficients are not sent.
Dropping bits publishes less of c, so it cannot weaken the RLWE mask (the rounded value is a function of c).
What it does cost: the checks of step 4 see fewer redundant bits, so a random (garbage) aggregate passes one
coefficient's checks with a probability that grows with r (up to ~0.7 for 3 clients masking values ≤ 10);
the checks run over every coefficient, so an update of thousands of parameters is still caught.

Ring products by FFT, exact in float64
---------------------------------------
a·s in R_q with a uniform mod 2^64 and s ternary: split a into four 16-bit limbs a = Σ_l a_l·2^(16l); each
a_l·s is a negacyclic convolution with integer coefficients of magnitude ≤ N·(2^16 − 1) < 2^28, computed by the
twisted complex FFT (x_k ↦ x_k·ψ^k, ψ = e^(iπ/N), turns the negacyclic convolution into a cyclic one). The
FFT convolution's round-off is at most ‖a_l‖₂·‖s‖₂·c·ε·log₂N ≤ 2^22 · 2^6 · 3 · 12 · 2^-53 < 2^-19 (ε the
float64 unit round-off, c a small constant of the radix-2 error analysis), far below 1/2, so rounding gives the
exact integers; `negacyclic_mul` also checks the distance to the nearest integer at run time. The limbs
recombine as Σ_l (a_l·s)·2^(16l) mod 2^64 in uint64 (two's complement handles negative coefficients).
All array work goes through the input's array module (`fedgrad.backend.array_module`): numpy or cupy.

Randomness: public a_j are SHAKE-128 output of (domain, run, round) read block after block (distinct per
block and per (run, round)); secrets and errors come from `os.urandom` unless a test passes its own bytes.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedgrad.backend import Array, array_module
from fedgrad.crypto.errors import AggregationError, EncodingError, PlaintextRangeError
from fedgrad.crypto.packing import SlotLayout
from fedgrad.errors import ConfigError

DEGREE = 4096
"""N: the ring degree (HE Security Standard, Table 1: log₂ q ≤ 109 at 128-bit classical security)."""
MODULUS_BITS = 64
"""log₂ q: q = 2^64, reduction is uint64 wrap-around."""
ERROR_ETA = 21
"""η of the centered binomial error: σ = √(η/2) ≈ 3.24 ≥ the standard's 3.19; |e| ≤ η."""

_LIMB_BITS = 16
_LIMBS = MODULUS_BITS // _LIMB_BITS
_DOMAIN = b"fedgrad/lattice/public-mask/v1"

RandomBytes = Callable[[int], bytes]
"""Where secrets and errors come from: `os.urandom` outside tests."""


def public_masks(run_id: str, round_number: int, n_blocks: int, degree: int = DEGREE) -> np.ndarray:
    """a_0 .. a_{n_blocks-1}, uniform mod 2^64, as uint64 (n_blocks, degree): SHAKE-128 of (run, round)."""
    if n_blocks < 0 or round_number < 0:
        raise ValueError("n_blocks and round_number must be non-negative")
    run = run_id.encode("utf-8")
    seed = _DOMAIN + len(run).to_bytes(4, "big") + run + round_number.to_bytes(8, "big")
    raw = hashlib.shake_128(seed).digest(n_blocks * degree * 8)
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(n_blocks, degree)


def sample_secret(degree: int = DEGREE, random_bytes: RandomBytes = os.urandom) -> np.ndarray:
    """s uniform in {-1, 0, 1}^degree (int64), by rejection of bytes ≥ 255 so that byte mod 3 is uniform."""
    out = np.empty(0, dtype=np.int64)
    while out.size < degree:
        raw = np.frombuffer(random_bytes(degree + 64), dtype=np.uint8)
        out = np.concatenate([out, raw[raw < 255].astype(np.int64) % 3 - 1])
    return out[:degree]


def sample_error(shape: tuple[int, ...], eta: int = ERROR_ETA, random_bytes: RandomBytes = os.urandom) -> np.ndarray:
    """Centered binomial errors (int64): popcount of η random bits minus popcount of η more; |e| ≤ η ≤ 32."""
    if not 1 <= eta <= 32:
        raise ValueError("eta must lie in [1, 32]")
    count = int(np.prod(shape))
    words = np.frombuffer(random_bytes(count * 8), dtype="<u4").reshape(2, count)
    low = np.uint32((1 << eta) - 1) if eta < 32 else np.uint32(0xFFFFFFFF)
    ones = np.bitwise_count(words & low).astype(np.int64)
    error: np.ndarray = (ones[0] - ones[1]).reshape(shape)
    return error


def negacyclic_mul(a: Array, s: Array) -> Array:
    """a·s in Z_{2^64}[X]/(X^N + 1) for a uint64 (..., N) and a ternary s (N,): uint64 (..., N), exact.

    Four 16-bit limbs of a, each convolved with s by the twisted FFT (bound in the module docstring).
    """
    xp = array_module(a)
    n = a.shape[-1]
    if s.shape != (n,):
        raise ValueError(f"secret has shape {s.shape}, masks have degree {n}")
    twist = xp.exp(1j * xp.pi * xp.arange(n) / n)
    shifts = xp.arange(_LIMBS, dtype=xp.uint64) * xp.uint64(_LIMB_BITS)
    limbs = (a[..., None, :] >> shifts[:, None]) & xp.uint64((1 << _LIMB_BITS) - 1)
    spectrum = xp.fft.fft(limbs.astype(xp.float64) * twist) * xp.fft.fft(s.astype(xp.float64) * twist)
    exact = xp.fft.ifft(spectrum) * xp.conj(twist)
    rounded = xp.rint(exact.real)
    if float(xp.abs(exact.real - rounded).max()) > 0.25:
        raise ArithmeticError("FFT ring product lost exactness (the float64 bound does not hold)")
    parts = rounded.astype(xp.int64).astype(xp.uint64) << shifts[:, None]
    return parts.sum(axis=-2, dtype=xp.uint64)


@dataclass(frozen=True)
class MaskLayout:
    """Δ and the plaintext bound for cohorts of at most `max_clients`, each masking |m| ≤ `max_value`."""

    max_clients: int
    max_value: int
    delta_bits: int
    dropped_bits: int = 0
    degree: int = DEGREE
    eta: int = ERROR_ETA

    @classmethod
    def derive(cls, max_clients: int, max_value: int, degree: int = DEGREE, eta: int = ERROR_ETA) -> MaskLayout:
        """The largest r, then the smallest Δ = 2^d > 2·N_max·(η + ρ), with N_max·V·Δ + N_max·(η + ρ) < 2^63;
        refusal when not even r = 0 fits (module docstring, steps 2, 3 and 5)."""
        if max_clients < 1 or max_value < 1:
            raise ConfigError("max_clients and max_value must be at least 1")
        for dropped in range(MODULUS_BITS - 8, -1, -8):
            noise = max_clients * (eta + _rounding(dropped))
            delta_bits = (2 * noise).bit_length()
            if max_clients * max_value * (1 << delta_bits) + noise < 1 << (MODULUS_BITS - 1):
                return cls(max_clients, max_value, delta_bits, dropped, degree, eta)
        raise ConfigError(f"{max_clients} clients masking values up to {max_value} do not fit below 2^63 "
                          f"with Δ = 2^{(2 * max_clients * eta).bit_length()}; lower max_clients, max_weight or "
                          f"value_bits")

    @property
    def delta(self) -> int:
        return 1 << self.delta_bits

    @property
    def value_bytes(self) -> int:
        """Bytes of one masked coefficient on the wire: (64 − r) / 8."""
        return (MODULUS_BITS - self.dropped_bits) // 8

    @property
    def noise_per_client(self) -> int:
        """η + ρ: a client's error plus its rounding."""
        return self.eta + _rounding(self.dropped_bits)

    def n_blocks(self, n_values: int) -> int:
        return -(-n_values // self.degree)

    def encode(self, values: Array, masks: Array, secret: Array, error: Array) -> Array:
        """c' = round((a·s + e + Δ·m) / 2^r) for given s and e (`mask` samples them): uint64 below 2^(64−r), one
        per value. The last block is zero-padded; its padding coefficients are not sent."""
        xp = array_module(masks)
        if values.size and int(xp.abs(values).max()) > self.max_value:
            raise EncodingError(f"a masked value exceeds the layout's bound {self.max_value}")
        blocks = masks.shape[0]
        if self.n_blocks(values.size) != blocks or error.shape != masks.shape:
            raise ValueError(f"{values.size} values need {self.n_blocks(values.size)} blocks of masks and errors")
        padded = xp.zeros(blocks * self.degree, dtype=xp.int64)
        padded[:values.size] = values
        plain = (padded.reshape(blocks, self.degree) * self.delta + error).astype(xp.uint64)
        full = (negacyclic_mul(masks, secret) + plain).reshape(-1)[:values.size]
        if not self.dropped_bits:
            return full
        return (full + xp.uint64(_rounding(self.dropped_bits))) >> xp.uint64(self.dropped_bits)

    def mask(self, values: Array, masks: Array, random_bytes: RandomBytes = os.urandom) -> tuple[Array, np.ndarray]:
        """(masked blocks, fresh secret s): the client's side. The secret goes under Paillier (`key_layout`)."""
        xp = array_module(masks)
        secret = sample_secret(self.degree, random_bytes)
        error = sample_error(tuple(masks.shape), self.eta, random_bytes)
        return self.encode(values, masks, xp.asarray(secret), xp.asarray(error)), secret

    def unmask(self, masked_sum: Array, masks: Array, key_sum: Array, n_contributors: int) -> Array:
        """Exact Σ_i m_i (int64) from Σ_i c'_i (uint64, one per value) and S = Σ_i s_i, or a refusal."""
        xp = array_module(masked_sum)
        if not 1 <= n_contributors <= self.max_clients:
            raise AggregationError(f"{n_contributors} contributors is outside [1, {self.max_clients}]")
        if int(xp.abs(key_sum).max()) > n_contributors:
            raise PlaintextRangeError(f"a key-sum coefficient exceeds {n_contributors} for ternary secrets")
        if self.n_blocks(masked_sum.size) != masks.shape[0]:
            raise ValueError(f"{masked_sum.size} masked values do not fill {masks.shape[0]} blocks of masks")
        restored = masked_sum << xp.uint64(self.dropped_bits)
        centred = (restored - negacyclic_mul(masks, key_sum).reshape(-1)[:masked_sum.size]).view(xp.int64)
        half = 1 << (self.delta_bits - 1)
        sums = (centred + half) >> self.delta_bits
        noise = centred - (sums << self.delta_bits)
        if int(xp.abs(noise).max()) > n_contributors * self.noise_per_client:
            raise PlaintextRangeError("the unmasked aggregate's noise exceeds the bound for its contributors")
        if int(xp.abs(sums).max()) > n_contributors * self.max_value:
            raise PlaintextRangeError("an unmasked sum exceeds the bound for its contributors")
        return sums


def _rounding(dropped_bits: int) -> int:
    """ρ: the most that rounding away `dropped_bits` low bits moves a coefficient."""
    return 1 << (dropped_bits - 1) if dropped_bits else 0


def key_layout(max_clients: int, key_bits: int) -> SlotLayout:
    """How a ternary secret rides in Paillier plaintexts: value_bits = 2 (Q = 1), slots of bit_length(2·N_max).

    `layout.pack(s)` per client, `layout.unpack_sums(plaintexts, DEGREE, K)` gives S = Σ_i s_i exactly
    (the packing proof in `packing`); ⌈DEGREE / layout.slots⌉ ciphertexts per client whatever the model size.
    """
    return SlotLayout.derive(2, max_clients, key_bits)
