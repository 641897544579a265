"""The two encodings behind `SecureAggConfig.mode`, and the client-side encoder built on them.

Both schemes quantize identically (`quantize`), so they aggregate to bit-identical results and differ only in
how the integers become ciphertexts:

* "paillier" (`PackedScheme`): k values per plaintext (`packing`), encrypted with `djn.FastEncryptor`
  (⌈|n|/2⌉-bit randomizer exponents unless `SecureAggConfig.short_randomizer`).
* "paillier-naive" (`NaiveScheme`): the book's approach, one `phe` ciphertext per value through phe's own
  `EncodedNumber` encoding and `PaillierPublicKey.encrypt` (a full r^n modexp each), kept as the baseline.

Both support the two weight encodings of `SecureAggConfig.max_weight`: fractional weights folded into the values
(`encrypt(q)`, `integer_sums`), or integer example counts carried in the plaintext (`encrypt(q, weight)`, with the
weight as one extra value; `decode` returns (Σ n_i q_i, Σ n_i)).

A scheme maps int64 vectors to plaintext ciphertexts and decrypted plaintexts back to exact integer sums;
payload framing and validation are shared (`wire`).
"""
from __future__ import annotations

from collections.abc import Sequence

import gmpy2
import numpy as np
import phe

from fedgrad.crypto.config import SecureAggConfig
from fedgrad.crypto.djn import FastEncryptor
from fedgrad.crypto.errors import PlaintextRangeError
from fedgrad.crypto.packing import SlotLayout
from fedgrad.crypto.quantize import capped_weight, max_quantized, quantize
from fedgrad.crypto.wire import ciphertext_width, dump_payload


class PackedScheme:
    """Slot-packed plaintexts (see `packing` for the headroom bound), DJN fixed-base encryption."""

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> None:
        self.cfg = cfg
        self.pub = pub
        self.layout = SlotLayout.derive(cfg.value_bits, cfg.max_clients, int(pub.n).bit_length(), cfg.max_weight)
        self.n_ciphertexts = self.layout.n_plaintexts(cfg.n_params)
        self._encryptor: FastEncryptor | None = None  # built on first use: only clients need its table

    def encrypt(self, q: np.ndarray, weight: int | None = None) -> list[gmpy2.mpz]:
        """Encrypt q (fractional weights, `weight` None) or n·q and n (integer weights, `weight` = n)."""
        if self._encryptor is None:
            self._encryptor = FastEncryptor(self.pub, short_randomizer=self.cfg.short_randomizer)
        if self.cfg.integer_weights:
            if weight is None:
                raise ValueError("integer-weight configuration: encrypt needs the client's weight")
            return self._encryptor.encrypt(self.layout.pack_weighted(q, weight))
        if weight is not None:
            raise ValueError("fractional-weight configuration: fold the weight into q before encrypting")
        return self._encryptor.encrypt(self.layout.pack(q))

    def integer_sums(self, plaintexts: Sequence[int], n_contributors: int) -> np.ndarray:
        """Σ_i q_i (fractional weights) or Σ_i n_i q_i (integer weights; `decode` also gives Σ_i n_i)."""
        return self.decode(plaintexts, n_contributors)[0]

    def decode(self, plaintexts: Sequence[int], n_contributors: int) -> tuple[np.ndarray, int | None]:
        """(exact integer sums, Σ_i n_i under integer weights else None); `PlaintextRangeError` off the bound."""
        if self.cfg.integer_weights:
            return self.layout.unpack_weighted(plaintexts, self.cfg.n_params, n_contributors)
        return self.layout.unpack_sums(plaintexts, self.cfg.n_params, n_contributors), None


class NaiveScheme:
    """One phe ciphertext per value; negative values wrap modulo n as in phe's `EncodedNumber`.

    Integer weights: the values are n·q and one more ciphertext holds n.
    """

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> None:
        self.cfg = cfg
        self.pub = pub
        self.n_ciphertexts = cfg.n_params + (1 if cfg.integer_weights else 0)

    def encrypt(self, q: np.ndarray, weight: int | None = None) -> list[int]:
        if self.cfg.integer_weights:
            if weight is None:
                raise ValueError("integer-weight configuration: encrypt needs the client's weight")
            values = [int(v) * weight for v in q] + [weight]
        elif weight is not None:
            raise ValueError("fractional-weight configuration: fold the weight into q before encrypting")
        else:
            values = [int(v) for v in q]
        return [int(self.pub.encrypt(v).ciphertext()) for v in values]

    def _signed(self, plaintexts: Sequence[int], bound: int) -> np.ndarray:
        sums = np.empty(len(plaintexts), dtype=np.int64)
        for i, m in enumerate(plaintexts):
            try:
                value = phe.EncodedNumber(self.pub, int(m), 0).decode()
            except OverflowError:
                value = None
            if value is None or abs(value) > bound:
                raise PlaintextRangeError(f"value {i} exceeds the bound of the aggregate")
            sums[i] = value
        return sums

    def integer_sums(self, plaintexts: Sequence[int], n_contributors: int) -> np.ndarray:
        return self.decode(plaintexts, n_contributors)[0]

    def decode(self, plaintexts: Sequence[int], n_contributors: int) -> tuple[np.ndarray, int | None]:
        if len(plaintexts) != self.n_ciphertexts:
            raise PlaintextRangeError(f"expected {self.n_ciphertexts} plaintexts, got {len(plaintexts)}")
        q_max = max_quantized(self.cfg.value_bits)
        if not self.cfg.integer_weights:
            return self._signed(plaintexts, n_contributors * q_max), None
        total = int(plaintexts[-1])
        if not n_contributors <= total <= n_contributors * self.cfg.max_weight:
            raise PlaintextRangeError(f"total weight {total} is outside the bound for {n_contributors} contributors")
        return self._signed(plaintexts[:-1], total * q_max), total


Scheme = PackedScheme | NaiveScheme


def make_scheme(cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> Scheme:
    return PackedScheme(cfg, pub) if cfg.mode == "paillier" else NaiveScheme(cfg, pub)


class UpdateEncoder:
    """Client side: clip, (weight,) quantize, (pack,) encrypt one update into a payload for the coordinator."""

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> None:
        self.cfg = cfg
        self.scheme = make_scheme(cfg, pub)
        self._fingerprint = cfg.fingerprint(pub.n)
        self._width = ciphertext_width(pub)

    def quantized(self, update: np.ndarray) -> np.ndarray:
        """The unweighted quantized update q (what integer-weight encoding multiplies by n)."""
        return quantize(self.cfg, update, 1.0)

    def encrypt(self, update: np.ndarray, weight: float | int) -> bytes:
        """Payload for this client's update.

        Fractional weights (`cfg.max_weight` = 0): `weight` = this client's n_i / Σ n of the round, in (0, 1],
        folded into the values. Integer weights: `weight` = its example count n_i ≥ 1, capped at `cfg.max_weight`
        and encrypted next to n_i·q (`packing`).
        """
        if self.cfg.integer_weights:
            n_i = capped_weight(self.cfg, weight)
            ciphertexts = self.scheme.encrypt(self.quantized(update), n_i)
        else:
            ciphertexts = self.scheme.encrypt(quantize(self.cfg, update, weight))
        return dump_payload(self._fingerprint, 1, ciphertexts, self._width)


def make_encoder(cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> UpdateEncoder:
    return UpdateEncoder(cfg, pub)
