import numpy as np
import pytest

from fedgrad.crypto import Accumulator, AggregationError, CiphertextError, KeyHolder, SecureAggConfig, make_encoder
from fedgrad.crypto.quantize import quantize, scale
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width, dump_payload, load_payload

CFG = SecureAggConfig(mode="paillier", n_params=50, clip=1.0, max_clients=3)  # 512-bit key: 2 ciphertexts


@pytest.fixture
def valid(small_key):
    """A client payload plus what it takes to forge variants of it."""
    pub = small_key[0]
    payload = make_encoder(CFG, pub).encrypt(np.linspace(-1, 1, CFG.n_params), 1.0)
    parsed = load_payload(payload, pub=pub, fingerprint=CFG.fingerprint(pub.n), count=2)
    return payload, [int(c) for c in parsed.ciphertexts]


def forge(pub, ciphertexts, *, contributors=1, width=None, fingerprint=None):
    return dump_payload(fingerprint or CFG.fingerprint(pub.n), contributors, ciphertexts,
                        width or ciphertext_width(pub))


@pytest.mark.parametrize("bad_value,match", [
    (lambda pub, priv: 0, r"outside \(0, n²\)"),
    (lambda pub, priv: pub.nsquare, r"outside \(0, n²\)"),
    (lambda pub, priv: pub.nsquare + 5, r"outside \(0, n²\)"),
    (lambda pub, priv: pub.n, "not a unit"),
    (lambda pub, priv: priv.p * 12345, "not a unit"),
])
def test_invalid_ciphertexts_are_rejected(small_key, valid, bad_value, match):
    pub, priv = small_key
    ciphertexts = valid[1]
    bad = forge(pub, [ciphertexts[0], bad_value(pub, priv)])
    with pytest.raises(CiphertextError, match=match):
        Accumulator(CFG, pub).add("a", bad)


def test_malformed_payloads_are_rejected(small_key, valid):
    pub = small_key[0]
    payload, ciphertexts = valid
    width = ciphertext_width(pub)
    cases = {
        "shorter than its header": payload[:HEADER_BYTES - 1],
        "body is": payload[:-1],  # truncated
        "body is ": payload + b"\0",  # trailing garbage
        "not a ciphertext payload": b"JUNK" + payload[4:],
        "width": forge(pub, ciphertexts, width=width + 1),
        "holds 1 ciphertexts": forge(pub, ciphertexts[:1]),
        "another key": forge(pub, ciphertexts, fingerprint=b"\0" * 8),
        "aggregate of 2": forge(pub, ciphertexts, contributors=2),
        "no contributors": forge(pub, ciphertexts, contributors=0),
    }
    for match, bad in cases.items():
        with pytest.raises(CiphertextError, match=match):
            Accumulator(CFG, pub).add("a", bad)


def test_payload_for_another_config_is_rejected(small_key):
    pub = small_key[0]
    other = SecureAggConfig(mode="paillier", n_params=50, clip=2.0, max_clients=3)
    with pytest.raises(CiphertextError, match="another key"):
        Accumulator(CFG, pub).add("a", make_encoder(other, pub).encrypt(np.zeros(50), 1.0))


def test_rejected_payload_leaves_the_sum_untouched(small_key, valid):
    pub, priv = small_key
    encoder, accumulator = make_encoder(CFG, pub), Accumulator(CFG, pub)
    x = np.linspace(-1, 1, CFG.n_params)
    accumulator.add("a", encoder.encrypt(x, 0.5))
    with pytest.raises(CiphertextError):
        accumulator.add("b", forge(pub, [valid[1][0], 0]))
    accumulator.add("b", encoder.encrypt(-x, 0.25))
    assert accumulator.contributors == frozenset({"a", "b"})
    result = KeyHolder(priv, CFG, min_clients=2).decrypt_aggregate(1, accumulator.contributors, accumulator.payload())
    expected = (quantize(CFG, x, 0.5) + quantize(CFG, -x, 0.25)) / scale(CFG)
    np.testing.assert_array_equal(result, expected)


def test_duplicate_and_excess_clients(small_key, valid):
    pub = small_key[0]
    accumulator = Accumulator(CFG, pub)
    accumulator.add("a", valid[0])
    with pytest.raises(AggregationError, match="already contributed"):
        accumulator.add("a", valid[0])
    accumulator.add("b", valid[0])
    accumulator.add("c", valid[0])
    with pytest.raises(AggregationError, match="max_clients=3"):
        accumulator.add("d", valid[0])
    with pytest.raises(AggregationError, match="client id"):
        Accumulator(CFG, pub).add("", valid[0])


def test_empty_aggregate(small_key):
    with pytest.raises(AggregationError, match="no contributions"):
        Accumulator(CFG, small_key[0]).payload()
