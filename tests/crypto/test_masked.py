"""The hybrid encoding (`fedgrad.crypto.masked`): masked updates summed in uint64, the key sum through threshold
Paillier, exact weighted sums out; a fixed number of key ciphertexts whatever the model size."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedgrad.crypto.config import SecureAggConfig
from fedgrad.crypto.errors import AggregationError, CiphertextError, PlaintextRangeError
from fedgrad.crypto.masked import MaskedEncoder, MaskedScheme, MaskedSum
from fedgrad.crypto.quantize import quantize
from fedgrad.crypto.threshold import combine, partial_decrypt
from fedgrad.crypto.wire import load_payload
from fedgrad.errors import ConfigError


def _cfg(n_params: int, max_clients: int = 4) -> SecureAggConfig:
    return SecureAggConfig(mode="paillier", n_params=n_params, clip=1.0, value_bits=16, max_clients=max_clients,
                           max_weight=100)


def _release(threshold_key: Any, scheme: MaskedScheme, key_payloads: list[bytes]) -> list[int]:
    """What t decryptors release: the plaintexts of the product of the clients' key ciphertexts."""
    pub, shares = threshold_key
    nsquare = pub.n * pub.n
    product = [1] * scheme.n_ciphertexts
    for payload in key_payloads:
        loaded = load_payload(payload, pub=pub, fingerprint=scheme.fingerprint, count=scheme.n_ciphertexts)
        product = [a * int(c) % nsquare for a, c in zip(product, loaded.ciphertexts, strict=True)]
    partials = {s.index: partial_decrypt(s, product) for s in shares[:3]}
    return [int(m) for m in combine(pub, partials, 3, 5)]


def test_weighted_sum_round_trip(threshold_key: Any) -> None:
    pub, _ = threshold_key
    cfg = _cfg(5000)
    encoder = MaskedEncoder(cfg, pub)
    rng = np.random.default_rng(1)
    updates = [rng.uniform(-1.5, 1.5, size=5000) for _ in range(3)]
    weights = [3, 100, 250]  # the last is capped at max_weight
    uploads = [encoder.encrypt(u, w, "run", 7) for u, w in zip(updates, weights, strict=True)]
    total = MaskedSum(encoder.scheme, "run", 7)
    for i, upload in enumerate(uploads):
        total.add(f"c{i}", upload.masked)
    sums, weight = total.unmask(_release(threshold_key, encoder.scheme, [u.key_payload for u in uploads]))
    capped = [3, 100, 100]
    expected = sum(quantize(cfg, u, 1.0) * n for u, n in zip(updates, capped, strict=True))
    assert weight == 203 and np.array_equal(sums, expected)


def test_wrong_round_masks_do_not_unmask(threshold_key: Any) -> None:
    pub, _ = threshold_key
    encoder = MaskedEncoder(_cfg(100), pub)
    uploads = [encoder.encrypt(np.zeros(100), 1, "run", 1) for _ in range(2)]
    total = MaskedSum(encoder.scheme, "run", 2)  # the coordinator replays round 1's uploads as round 2's
    for i, upload in enumerate(uploads):
        total.add(f"c{i}", upload.masked)
    with pytest.raises(PlaintextRangeError):
        total.unmask(_release(threshold_key, encoder.scheme, [u.key_payload for u in uploads]))


def test_key_ciphertexts_do_not_grow_with_the_model(threshold_key: Any) -> None:
    pub, _ = threshold_key
    small, large = MaskedScheme(_cfg(12_900), pub), MaskedScheme(_cfg(420_000), pub)
    assert small.n_ciphertexts == large.n_ciphertexts
    assert large.masked_bytes == 4 * 420_001 and small.masked_bytes == 4 * 12_901  # 4 clients, W = 100: r = 32


def test_refusals(threshold_key: Any) -> None:
    pub, _ = threshold_key
    with pytest.raises(ConfigError):
        MaskedScheme(SecureAggConfig(mode="paillier", n_params=10, clip=1.0, max_clients=4), pub)
    scheme = MaskedScheme(_cfg(10, max_clients=2), pub)
    total = MaskedSum(scheme, "run", 0)
    with pytest.raises(CiphertextError):
        total.add("a", b"\0" * 8)
    total.add("a", b"\0" * scheme.masked_bytes)
    with pytest.raises(AggregationError):
        total.add("a", b"\0" * scheme.masked_bytes)
    total.add("b", b"\0" * scheme.masked_bytes)
    with pytest.raises(AggregationError):
        total.add("c", b"\0" * scheme.masked_bytes)
