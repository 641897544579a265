"""The hybrid encoding behind `paillier-masked`: the update under an RLWE mask (`lattice`), only the mask's key
under Paillier (Willow's KAHE + AHE split; OPA). Knows nothing about gRPC or rounds: bytes in, integers out.

Client:      enc = MaskedEncoder(cfg, pub); upload = enc.encrypt(update, examples, run_id, round)
             signs `upload.digest()` where the threshold mode signs the payload's digest
Coordinator: total = MaskedSum(scheme, run_id, round); total.add(client_id, upload.masked)  (uint64 sums)
             the decryptors release Σ_i key ciphertexts (`upload.key_payload`, the threshold mode's payload)
             sums, weight = total.unmask(key_plaintexts)

Integer weights only (weights from clients): client i masks n_i·q_ij for every parameter j and n_i itself as one
more value, so |m| ≤ W·Q (W = `max_weight`, Q = `max_quantized(value_bits)`) sizes `lattice.MaskLayout`; the
key is a ternary secret packed by `lattice.key_layout`. Decoding checks Σ n_i ∈ [K, K·W] and every
|Σ n_i q_ij| ≤ Q·Σ n_i, as `packing.unpack_weighted` does.

Cost: ⌈4096 / key slots⌉ Paillier ciphertexts per client (23 for a 2048-bit key and 1,000 clients) whatever the
model size; (64 − r)/8 bytes per parameter on the wire for the masked vector (`lattice`, step 0: 6 at
1,000 clients, 5 at 10).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import phe

from fedgrad.crypto.accumulator import Accumulator
from fedgrad.crypto.config import SecureAggConfig
from fedgrad.crypto.djn import FastEncryptor
from fedgrad.crypto.errors import AggregationError, CiphertextError, PlaintextRangeError
from fedgrad.crypto.lattice import DEGREE, MaskLayout, key_layout, public_masks
from fedgrad.crypto.quantize import capped_weight, max_quantized, quantize
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width, dump_payload
from fedgrad.errors import ConfigError

_DIGEST_DOMAIN = b"fedgrad/paillier-masked/contribution/v1\0"


@dataclass(frozen=True)
class MaskedUpload:
    """One client's contribution: its key under Paillier (a `wire` payload) and its masked update (uint64 LE)."""

    key_payload: bytes
    masked: bytes

    def digest(self) -> bytes:
        """What the client signs: SHA-256 over both parts' SHA-256 (decryptors see the key part and this digest)."""
        return masked_digest(hashlib.sha256(self.key_payload).digest(), self.masked_sha256())

    def masked_sha256(self) -> bytes:
        return hashlib.sha256(self.masked).digest()

    def to_bytes(self) -> bytes:
        """The update's payload on the wire: the key part, then the masked vector (`MaskedScheme.split`)."""
        return self.key_payload + self.masked


def masked_digest(key_payload_sha256: bytes, masked_sha256: bytes) -> bytes:
    return hashlib.sha256(_DIGEST_DOMAIN + key_payload_sha256 + masked_sha256).digest()


class MaskedScheme:
    """The layouts of one configuration and key: Δ and the value bound, the key's Paillier slots."""

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> None:
        if not cfg.integer_weights:
            raise ConfigError("paillier-masked carries the clients' integer weights: set privacy.max_weight >= 1")
        self.cfg = cfg
        self.pub = pub
        self.offset = max_quantized(cfg.value_bits)
        self.masks = MaskLayout.derive(cfg.max_clients, cfg.max_weight * self.offset)
        self.keys = key_layout(cfg.max_clients, int(pub.n).bit_length())
        self.n_values = cfg.n_params + 1  # the weight rides as one more value
        self.n_blocks = self.masks.n_blocks(self.n_values)
        self.n_ciphertexts = self.keys.n_plaintexts(DEGREE)
        self.fingerprint = hashlib.sha256(b"masked\0" + cfg.fingerprint(pub.n)).digest()[:8]
        self.masked_bytes = self.n_values * self.masks.value_bytes

    @property
    def key_bytes(self) -> int:
        """Bytes of a client's key part (a `wire` payload of `n_ciphertexts` ciphertexts)."""
        return HEADER_BYTES + self.n_ciphertexts * ciphertext_width(self.pub)

    @property
    def payload_bytes(self) -> int:
        """Bytes of one update on the wire (`MaskedUpload.to_bytes`)."""
        return self.key_bytes + self.masked_bytes

    def split(self, payload: bytes) -> MaskedUpload:
        """An upload from its wire bytes; `CiphertextError` unless it has exactly `payload_bytes`."""
        if len(payload) != self.payload_bytes:
            raise CiphertextError(f"a masked update has {len(payload)} bytes, expected {self.payload_bytes}")
        return MaskedUpload(bytes(payload[:self.key_bytes]), bytes(payload[self.key_bytes:]))

    def words(self, masked: bytes) -> np.ndarray:
        """A masked vector's wire bytes as uint64 words (the dropped high bytes zero); `CiphertextError` unless it
        has exactly `masked_bytes`."""
        if len(masked) != self.masked_bytes:
            raise CiphertextError(f"a masked update has {len(masked)} bytes, expected {self.masked_bytes}")
        words = np.zeros((self.n_values, 8), dtype=np.uint8)
        words[:, :self.masks.value_bytes] = np.frombuffer(masked, dtype=np.uint8).reshape(self.n_values, -1)
        return words.view("<u8").reshape(-1)

    def wire_bytes(self, words: np.ndarray) -> bytes:
        """uint64 words as a masked vector on the wire: each reduced mod 2^(8·value_bytes)."""
        octets = np.ascontiguousarray(words, dtype="<u8").view(np.uint8).reshape(-1, 8)
        return octets[:, :self.masks.value_bytes].tobytes()

    def key_accumulator(self) -> Accumulator:
        """The running Paillier product of the clients' key parts (what the decryptors also compute)."""
        return Accumulator(self.cfg, self.pub, fingerprint=self.fingerprint, count=self.n_ciphertexts)

    def public_masks(self, run_id: str, round_number: int) -> np.ndarray:
        return public_masks(run_id, round_number, self.n_blocks)


class MaskedEncoder:
    """Client side: clip, quantize, weight, mask; encrypt the fresh key (DJN fast encryption)."""

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey) -> None:
        self.scheme = MaskedScheme(cfg, pub)
        self._encryptor = FastEncryptor(pub, short_randomizer=cfg.short_randomizer)
        self._width = ciphertext_width(pub)

    def encrypt(self, update: np.ndarray, examples: int, run_id: str, round_number: int) -> MaskedUpload:
        scheme = self.scheme
        n_i = capped_weight(scheme.cfg, examples)
        values = np.append(quantize(scheme.cfg, update, 1.0) * n_i, np.int64(n_i))
        masked, secret = scheme.masks.mask(values, scheme.public_masks(run_id, round_number))
        key = self._encryptor.encrypt(scheme.keys.pack(secret))
        return MaskedUpload(dump_payload(scheme.fingerprint, 1, key, self._width), scheme.wire_bytes(masked))


class MaskedSum:
    """Coordinator side: the uint64 sum of the masked vectors of one (run, round), and its unmasking."""

    def __init__(self, scheme: MaskedScheme, run_id: str, round_number: int) -> None:
        self.scheme = scheme
        self._masks = scheme.public_masks(run_id, round_number)
        self._total = np.zeros(scheme.n_values, dtype=np.uint64)
        self.contributors: set[str] = set()

    def add(self, client_id: str, masked: bytes) -> None:
        if client_id in self.contributors:
            raise AggregationError(f"client {client_id!r} already contributed")
        if len(self.contributors) >= self.scheme.cfg.max_clients:
            raise AggregationError(f"more than {self.scheme.cfg.max_clients} contributions")
        self._total += self.scheme.words(masked)
        self.contributors.add(client_id)

    def unmask(self, key_plaintexts: list[int]) -> tuple[np.ndarray, int]:
        """(Σ_i n_i q_i as int64, Σ_i n_i) from the released key-sum plaintexts, or `PlaintextRangeError`."""
        scheme, count = self.scheme, len(self.contributors)
        key_sum = scheme.keys.unpack_sums(key_plaintexts, DEGREE, count)
        values = scheme.masks.unmask(self._total, self._masks, key_sum, count)
        total = int(values[-1])
        if not count <= total <= count * scheme.cfg.max_weight:
            raise PlaintextRangeError(f"total weight {total} is outside [{count}, {count * scheme.cfg.max_weight}]")
        sums = values[:-1]
        if int(np.abs(sums).max(initial=0)) > scheme.offset * total:
            raise PlaintextRangeError(f"a sum exceeds the bound for total weight {total}")
        return sums, total
