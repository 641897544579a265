"""Every refusal of the key holder, each with a request that would otherwise succeed."""
import numpy as np
import pytest

from fedgrad.crypto import Accumulator, KeyHolder, KeyHolderRefusal, SecureAggConfig, make_encoder
from fedgrad.crypto.wire import ciphertext_width, dump_payload
from fedgrad.errors import ConfigError, FedgradError

CFG = SecureAggConfig(mode="paillier", n_params=30, clip=1.0, max_clients=4)


def aggregate(pub, client_ids, seed=0):
    rng = np.random.default_rng(seed)
    encoder, accumulator = make_encoder(CFG, pub), Accumulator(CFG, pub)
    for client_id in client_ids:
        accumulator.add(client_id, encoder.encrypt(rng.uniform(-1, 1, CFG.n_params), 0.25))
    return accumulator.contributors, accumulator.payload()


@pytest.fixture
def holder(small_key):
    return KeyHolder(small_key[1], CFG, min_clients=2)


def test_refusals_are_user_facing_errors():
    assert issubclass(KeyHolderRefusal, FedgradError)


def test_has_no_decrypt_one_update_call(holder):
    assert [name for name in dir(holder) if not name.startswith("_")] == ["close", "decrypt_aggregate",
                                                                         "decrypt_weighted_aggregate"]


def test_single_client_is_refused(small_key, holder):
    contributors, payload = aggregate(small_key[0], ["a"])
    with pytest.raises(KeyHolderRefusal, match="1 distinct contributor"):
        holder.decrypt_aggregate(round=1, contributors=contributors, payload=payload)
    # nothing was spent: the same round decrypts once enough clients took part
    contributors, payload = aggregate(small_key[0], ["a", "b"])
    assert holder.decrypt_aggregate(round=1, contributors=contributors, payload=payload).shape == (30,)


def test_fewer_than_min_clients_is_refused(small_key):
    holder = KeyHolder(small_key[1], CFG, min_clients=3)
    contributors, payload = aggregate(small_key[0], ["a", "b"])
    with pytest.raises(KeyHolderRefusal, match="at least 3"):
        holder.decrypt_aggregate(round=1, contributors=contributors, payload=payload)
    with pytest.raises(KeyHolderRefusal, match="2 distinct"):  # repeated ids count once
        holder.decrypt_aggregate(round=1, contributors=["a", "b", "a"], payload=payload)


def test_second_decryption_of_a_round_is_refused(small_key, holder):
    holder.decrypt_aggregate(1, *aggregate(small_key[0], ["a", "b"], seed=1))
    with pytest.raises(KeyHolderRefusal, match="round 1 was already decrypted"):
        holder.decrypt_aggregate(1, *aggregate(small_key[0], ["a", "b"], seed=2))


def test_same_ciphertexts_are_never_decrypted_twice(small_key, holder):
    contributors, payload = aggregate(small_key[0], ["a", "b"])
    holder.decrypt_aggregate(1, contributors, payload)
    with pytest.raises(KeyHolderRefusal, match="already decrypted"):
        holder.decrypt_aggregate(2, contributors, payload)


def test_contributor_count_must_match_the_payload(small_key, holder):
    _, payload = aggregate(small_key[0], ["a", "b"])
    with pytest.raises(KeyHolderRefusal, match="aggregates 2 updates but 3"):
        holder.decrypt_aggregate(1, {"a", "b", "c"}, payload)


def test_more_than_max_clients_is_refused(small_key, holder):
    _, payload = aggregate(small_key[0], ["a", "b", "c", "d"])
    with pytest.raises(KeyHolderRefusal, match="exceed max_clients=4"):
        holder.decrypt_aggregate(1, {"a", "b", "c", "d", "e"}, payload)


@pytest.mark.parametrize("bad,match", [
    ("zero", r"outside \(0, n²\)"), ("n_squared", r"outside \(0, n²\)"), ("not_unit", "not a unit"),
    ("wrong_width", "width"), ("truncated", "body is"), ("wrong_count", "holds 1 ciphertexts"),
])
def test_malformed_ciphertexts_are_refused(small_key, holder, bad, match):
    pub, priv = small_key
    contributors, payload = aggregate(pub, ["a", "b"])
    width, fingerprint = ciphertext_width(pub), CFG.fingerprint(pub.n)
    forged = {
        "zero": dump_payload(fingerprint, 2, [1, 0], width),
        "n_squared": dump_payload(fingerprint, 2, [1, pub.nsquare], width),
        "not_unit": dump_payload(fingerprint, 2, [priv.q, 1], width),
        "wrong_width": dump_payload(fingerprint, 2, [1, 1], width - 1),
        "truncated": payload[:-7],
        "wrong_count": dump_payload(fingerprint, 2, [1], width),
    }[bad]
    with pytest.raises(KeyHolderRefusal, match="invalid payload: .*" + match):
        holder.decrypt_aggregate(1, contributors, forged)
    assert holder.decrypt_aggregate(1, contributors, payload).shape == (30,)  # the round was not spent


@pytest.mark.parametrize("plaintext,match", [
    (lambda bits: 1 << bits, "above its last slot"),  # a bit beyond the last slot
    (lambda bits: (1 << bits) - 1, "exceeds the bound"),  # every slot at 2**w - 1 > 2 · 2Q
])
def test_aggregate_breaking_the_bound_is_refused(small_key, holder, plaintext, match):
    pub = small_key[0]
    layout = make_encoder(CFG, pub).scheme.layout
    # c = 1 + m·n is a valid encryption of m (randomizer 1); the second ciphertext encrypts 0
    forged = dump_payload(CFG.fingerprint(pub.n), 2, [1 + plaintext(layout.plaintext_bits) * pub.n, 1],
                          ciphertext_width(pub))
    with pytest.raises(KeyHolderRefusal, match="not a sum of 2 valid updates: .*" + match):
        holder.decrypt_aggregate(1, {"a", "b"}, forged)


def test_contributors_must_be_a_collection_of_ids(small_key, holder):
    contributors, payload = aggregate(small_key[0], ["a", "b"])
    with pytest.raises(TypeError, match="not one string"):
        holder.decrypt_aggregate(1, "ab", payload)
    with pytest.raises(TypeError, match="round must be an int"):
        holder.decrypt_aggregate("1", contributors, payload)


def test_policy_misconfiguration(small_key):
    for min_clients in (1, 0, 5, True):
        with pytest.raises(ConfigError, match="min_clients"):
            KeyHolder(small_key[1], CFG, min_clients=min_clients)


def test_integer_weights_come_from_the_clients(small_key):
    """max_weight ≥ 1: clients send n_i (capped at W) in the plaintext; the key holder returns Σ n_i x_i and Σ n_i."""
    import numpy as np

    from fedgrad.crypto import Accumulator, KeyHolder, SecureAggConfig, make_encoder
    from fedgrad.crypto.quantize import weighted_mean

    pub, priv = small_key
    for mode in ("paillier", "paillier-naive"):
        cfg = SecureAggConfig(mode=mode, n_params=7, clip=1.0, max_clients=4, max_weight=100)
        encoder, accumulator = make_encoder(cfg, pub), Accumulator(cfg, pub)
        updates = np.random.default_rng(5).uniform(-1, 1, (3, 7))
        counts = [5, 250, 40]  # 250 is capped at W = 100
        for client, (update, count) in enumerate(zip(updates, counts, strict=True)):
            accumulator.add(f"c{client}", encoder.encrypt(update, count))
        total_sum, total_weight = KeyHolder(priv, cfg, min_clients=2, cores=1).decrypt_weighted_aggregate(
            0, accumulator.contributors, accumulator.payload())
        assert total_weight == 145
        expected = sum(w * encoder.quantized(u) for w, u in zip((5, 100, 40), updates, strict=True))
        assert isinstance(expected, np.ndarray)
        np.testing.assert_allclose(total_sum, expected / (32767 / cfg.clip), rtol=0, atol=1e-9)
        mean = weighted_mean(cfg, expected, total_weight)
        np.testing.assert_allclose(mean, np.average(updates, axis=0, weights=[5, 100, 40]), atol=3 / 32767)
