"""The two encodings behind `SecureAggConfig.mode`, and the client-side encoder built on them.

Both schemes quantize identically (`quantize`), so they aggregate to bit-identical results and differ only in
how the integers become ciphertexts:

* "paillier" (`PackedScheme`): k values per plaintext (`packing`), encrypted with `djn.FastEncryptor`.
* "paillier-naive" (`NaiveScheme`): the book's approach, one `phe` ciphertext per value through phe's own
  `EncodedNumber` encoding and `PaillierPublicKey.encrypt` (a full r^n modexp each), kept as the baseline.

A scheme maps int64 vectors to plaintext ciphertexts and decrypted plaintexts back to exact integer sums;
payload framing and validation are shared (`wire`).
"""
from __future__ import annotations

from typing import Sequence

import gmpy2
import numpy as np
import phe

from fedgrad.crypto.config import SecureAggConfig
from fedgrad.crypto.djn import FastEncryptor
from fedgrad.crypto.errors import PlaintextRangeError
from fedgrad.crypto.packing import SlotLayout
from fedgrad.crypto.quantize import max_quantized, quantize
from fedgrad.crypto.wire import ciphertext_width, dump_payload


class PackedScheme:
    """Slot-packed plaintexts (see `packing` for the headroom bound), DJN fixed-base encryption."""

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> None:
        self.cfg = cfg
        self.pub = pub
        self.layout = SlotLayout.derive(cfg.value_bits, cfg.max_clients, int(pub.n).bit_length())
        self.n_ciphertexts = self.layout.n_plaintexts(cfg.n_params)
        self._encryptor: FastEncryptor | None = None  # built on first use: only clients need its table

    def encrypt(self, q: np.ndarray) -> list[gmpy2.mpz]:
        if self._encryptor is None:
            self._encryptor = FastEncryptor(self.pub)
        return self._encryptor.encrypt(self.layout.pack(q))

    def integer_sums(self, plaintexts: Sequence[int], n_contributors: int) -> np.ndarray:
        return self.layout.unpack_sums(plaintexts, self.cfg.n_params, n_contributors)


class NaiveScheme:
    """One phe ciphertext per value; negative values wrap modulo n as in phe's `EncodedNumber`."""

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> None:
        self.cfg = cfg
        self.pub = pub
        self.n_ciphertexts = cfg.n_params

    def encrypt(self, q: np.ndarray) -> list[int]:
        return [self.pub.encrypt(int(v)).ciphertext() for v in q]

    def integer_sums(self, plaintexts: Sequence[int], n_contributors: int) -> np.ndarray:
        bound = n_contributors * max_quantized(self.cfg.value_bits)
        sums = np.empty(len(plaintexts), dtype=np.int64)
        for i, m in enumerate(plaintexts):
            try:
                value = phe.EncodedNumber(self.pub, int(m), 0).decode()
            except OverflowError:
                value = None
            if value is None or abs(value) > bound:
                raise PlaintextRangeError(f"value {i} exceeds the bound for {n_contributors} contributors")
            sums[i] = value
        return sums


Scheme = PackedScheme | NaiveScheme


def make_scheme(cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> Scheme:
    return PackedScheme(cfg, pub) if cfg.mode == "paillier" else NaiveScheme(cfg, pub)


class UpdateEncoder:
    """Client side: clip, weight, quantize, (pack,) encrypt one update into a payload for the coordinator."""

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> None:
        self.cfg = cfg
        self.scheme = make_scheme(cfg, pub)
        self._fingerprint = cfg.fingerprint(pub.n)
        self._width = ciphertext_width(pub)

    def encrypt(self, update: np.ndarray, weight: float) -> bytes:
        """Payload for `weight` · update, weight = this client's n_i / Σ n of the round, in (0, 1]."""
        ciphertexts = self.scheme.encrypt(quantize(self.cfg, update, weight))
        return dump_payload(self._fingerprint, 1, ciphertexts, self._width)


def make_encoder(cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> UpdateEncoder:
    return UpdateEncoder(cfg, pub)
