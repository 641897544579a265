"""Threshold Paillier: any t of k shares decrypt, fewer cannot, bad partials never pass as a plaintext silently
when they can be caught, and share files stay private."""
import itertools
import json
import multiprocessing
import os
import random
import secrets
from typing import Any

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgrad.crypto import Accumulator, CiphertextError, CryptoError, InsecureKeyWarning, SecureAggConfig, make_encoder
from fedgrad.crypto.decryption import ParallelPartialDecryptor
from fedgrad.crypto.djn import FastEncryptor
from fedgrad.crypto.primes import safe_prime
from fedgrad.crypto.schemes import make_scheme
from fedgrad.crypto.threshold import (
    KeySet,
    KeyShare,
    combine,
    deal,
    delta,
    key_set,
    lagrange_coefficients,
    partial_decrypt,
    read_share,
    write_share,
)
from fedgrad.crypto.wire import load_payload


def decrypt_with(pub, shares, indices, ciphertexts, threshold, parties):
    partials = {i: partial_decrypt(shares[i - 1], ciphertexts) for i in indices}
    return combine(pub, partials, threshold, parties)


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(16, 160), seed=st.integers(0, 2**32 - 1))
def test_safe_primes_are_safe_and_exactly_sized(bits, seed):
    p = safe_prime(bits, random.Random(seed))
    assert p.bit_length() == bits and p >> (bits - 2) == 0b11
    assert gmpy2.is_prime(p) and gmpy2.is_prime((p - 1) // 2)


def test_dealt_key_structure(threshold_key):
    pub, shares = threshold_key
    assert pub.g == pub.n + 1 and pub.n.bit_length() == 512
    assert [s.index for s in shares] == [1, 2, 3, 4, 5]
    assert all((s.parties, s.threshold, s.n) == (5, 3, pub.n) for s in shares)
    assert len({s.secret for s in shares}) == 5
    assert "secret" not in repr(shares[0]) and hex(shares[0].secret) not in repr(shares[0])


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_threshold_subset_decrypts(threshold_key, data):
    pub, shares = threshold_key
    subset = data.draw(st.lists(st.integers(1, 5), min_size=3, max_size=5, unique=True))
    plaintexts = data.draw(st.lists(st.one_of(st.integers(0, pub.n - 1), st.sampled_from([0, 1, pub.n - 1])),
                                    min_size=1, max_size=4))
    ciphertexts = [pub.raw_encrypt(m) for m in plaintexts]
    assert decrypt_with(pub, shares, subset, ciphertexts, 3, 5) == plaintexts


@pytest.mark.parametrize("parties,threshold", [(1, 1), (3, 1), (3, 3), (4, 2), (6, 6)])
def test_every_subset_for_edge_thresholds(parties, threshold):
    with pytest.warns(InsecureKeyWarning):
        pub, shares = deal(256, parties, threshold, rng=random.Random(parties * 10 + threshold),
                           insecure_key_bits=True)
    plaintexts = [0, 1, pub.n - 1, secrets.randbelow(pub.n)]
    ciphertexts = FastEncryptor(pub).encrypt(plaintexts)
    for size in range(threshold, parties + 1):
        for subset in itertools.combinations(range(1, parties + 1), size):
            assert decrypt_with(pub, shares, subset, ciphertexts, threshold, parties) == plaintexts


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.integers(0, 2**64), min_size=2, max_size=12), subset=st.permutations([1, 2, 3, 4, 5]))
def test_homomorphic_sums_decrypt(threshold_key, values, subset):
    pub, shares = threshold_key
    encryptor = FastEncryptor(pub)
    nsquare = pub.n * pub.n
    product = 1
    for c in encryptor.encrypt(values):
        product = product * c % nsquare
    assert decrypt_with(pub, shares, subset[:3], [product], 3, 5) == [sum(values) % pub.n]


def test_packed_aggregate_through_threshold_decryption_on_two_cores(threshold_key):
    pub, shares = threshold_key
    cfg = SecureAggConfig(mode="paillier", n_params=300, clip=1.0, max_clients=8, max_weight=50)
    encoder, accumulator = make_encoder(cfg, pub), Accumulator(cfg, pub)
    rng = np.random.default_rng(3)
    updates, weights = rng.uniform(-1, 1, (4, cfg.n_params)), [3, 50, 7, 1]
    for client, (update, weight) in enumerate(zip(updates, weights, strict=True)):
        accumulator.add(f"c{client}", encoder.encrypt(update, weight))
    scheme = make_scheme(cfg, pub)
    parsed = load_payload(accumulator.payload(), pub=pub, fingerprint=cfg.fingerprint(pub.n),
                          count=scheme.n_ciphertexts)
    partials = {}
    for share in (shares[4], shares[1], shares[2]):
        pool = ParallelPartialDecryptor(share, len(parsed.ciphertexts), cores=2, min_chunk=1)
        try:
            partials[share.index] = pool.decrypt(parsed.ciphertexts)
        finally:
            pool.close()
        assert partials[share.index] == partial_decrypt(share, parsed.ciphertexts)
    sums, total = scheme.decode(combine(pub, partials, 3, 5), 4)
    assert total == sum(weights)
    quantized = [encoder.quantized(update) for update in updates]
    np.testing.assert_array_equal(sums, sum(w * q for w, q in zip(weights, quantized, strict=True)))


def test_pool_uses_workers_and_matches(threshold_key):
    pub, shares = threshold_key
    ciphertexts = FastEncryptor(pub).encrypt(list(range(16)))
    before = set(multiprocessing.active_children())
    pool = ParallelPartialDecryptor(shares[0], 16, cores=2)
    assert pool.parts == 2
    try:
        assert pool.decrypt(ciphertexts) == partial_decrypt(shares[0], ciphertexts)
        assert len(set(multiprocessing.active_children()) - before) == 2
    finally:
        pool.close()


def test_lagrange_coefficients_are_integers_interpolating_delta_at_zero():
    for parties in range(1, 8):
        for size in range(1, parties + 1):
            for subset in itertools.combinations(range(1, parties + 1), size):
                lambdas = lagrange_coefficients(subset, parties)
                # Σ λ_i · f(i) = Δ · f(0) for every polynomial of degree < |subset|: check on the monomials
                for degree in range(size):
                    assert (sum(lam * i ** degree for i, lam in lambdas.items())
                            == (delta(parties) if degree == 0 else 0))


def test_fewer_than_threshold_partials_are_refused(threshold_key):
    pub, shares = threshold_key
    ciphertexts = [pub.raw_encrypt(42)]
    for subset in itertools.combinations(range(1, 6), 2):
        with pytest.raises(CryptoError, match="needs at least 3"):
            decrypt_with(pub, shares, subset, ciphertexts, 3, 5)
    with pytest.raises(CryptoError, match="needs at least 3"):
        combine(pub, {}, 3, 5)


def test_duplicate_and_out_of_range_indices_are_refused(threshold_key):
    pub, shares = threshold_key
    ciphertexts = [pub.raw_encrypt(42)]
    p1, p2 = partial_decrypt(shares[0], ciphertexts), partial_decrypt(shares[1], ciphertexts)
    with pytest.raises(CryptoError, match="two partial decryptions for share index 1"):
        combine(pub, [(1, p1), (2, p2), (1, p1)], 3, 5)
    bad: Any  # ill-typed indices too, on purpose
    for bad in (0, 6, -1, True, "1"):
        with pytest.raises(CryptoError, match="not a share index"):
            combine(pub, [(1, p1), (2, p2), (bad, p1)], 3, 5)
    with pytest.raises(CryptoError, match="different numbers"):
        combine(pub, {1: p1, 2: p2, 3: partial_decrypt(shares[2], ciphertexts * 2)}, 3, 5)
    with pytest.raises(CryptoError, match="threshold must be"):
        combine(pub, {1: p1, 2: p2}, 6, 5)


def test_tampered_partials(threshold_key):
    pub, shares = threshold_key
    n, nsquare = pub.n, pub.n * pub.n
    ciphertexts = [pub.raw_encrypt(1000)]
    honest = {s.index: partial_decrypt(s, ciphertexts) for s in shares}
    # a random substitute: the combination is not (1 + n)^x, so it is caught
    randomized = dict(honest)
    randomized[2] = [secrets.randbelow(nsquare - 2) + 2]
    with pytest.raises(CryptoError, match="do not combine"):
        combine(pub, {i: randomized[i] for i in (1, 2, 3)}, 3, 5)
    # a crafted one (times (1 + n)): with exactly t partials it silently shifts the plaintext (no ZK proofs) ...
    crafted = dict(honest)
    crafted[2] = [honest[2][0] * (1 + n) % nsquare]
    wrong = combine(pub, {i: crafted[i] for i in (1, 2, 3)}, 3, 5)
    assert wrong != [1000]
    # ... but with more than t partials the windows disagree and combine refuses
    with pytest.raises(CryptoError, match="inconsistent"):
        combine(pub, crafted, 3, 5)
    assert combine(pub, honest, 3, 5) == [1000]


@pytest.mark.parametrize("bad", ["zero", "nsquare", "above", "not_unit"])
def test_invalid_ciphertexts_and_partials_are_refused(threshold_key, bad):
    pub, shares = threshold_key
    n, nsquare = pub.n, pub.n * pub.n
    value = {"zero": 0, "nsquare": nsquare, "above": nsquare + 5, "not_unit": n}[bad]
    with pytest.raises(CiphertextError):
        partial_decrypt(shares[0], [pub.raw_encrypt(1), value])
    good = {s.index: partial_decrypt(s, [pub.raw_encrypt(1)]) for s in shares[:3]}
    good[3] = [value]
    with pytest.raises(CiphertextError):
        combine(pub, good, 3, 5)


def test_partials_of_another_key_do_not_combine(threshold_key):
    pub, shares = threshold_key
    with pytest.warns(InsecureKeyWarning):
        other_pub, other_shares = deal(512, 5, 3, rng=random.Random(99), insecure_key_bits=True)
    ciphertexts = [pub.raw_encrypt(5)]
    partials = {s.index: partial_decrypt(s, ciphertexts) for s in shares[:2]}
    partials[3] = [c % (pub.n * pub.n) for c in partial_decrypt(other_shares[2], [other_pub.raw_encrypt(5)])]
    with pytest.raises(CryptoError):
        combine(pub, partials, 3, 5)


def test_share_bytes_round_trip_and_malformed(threshold_key):
    _, shares = threshold_key
    for share in shares:
        assert KeyShare.from_bytes(share.to_bytes()) == share
    doc = json.loads(shares[0].to_bytes())
    for mutate in ({"format": "x"}, {"index": 0}, {"index": 6}, {"threshold": 9}, {"secret": "12"},
                   {"n": "0x10"}, {"index": "1"}):
        with pytest.raises(CryptoError):
            KeyShare.from_bytes(json.dumps({**doc, **mutate}).encode())
    for garbage in (b"", b"\xff\xfe", b"[]", b"{}",
                    json.dumps({k: v for k, v in doc.items() if k != "secret"}).encode()):
        with pytest.raises(CryptoError):
            KeyShare.from_bytes(garbage)


def test_share_files_are_private(threshold_key, tmp_path):
    _, shares = threshold_key
    path = tmp_path / "share-1.json"
    old_umask = os.umask(0)  # even with a permissive umask the file is 0600
    try:
        write_share(shares[0], path)
    finally:
        os.umask(old_umask)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_share(path) == shares[0]
    assert [p.name for p in tmp_path.iterdir()] == ["share-1.json"]  # no temporary file left behind
    with pytest.raises(CryptoError, match="refusing to overwrite"):
        write_share(shares[1], path)
    assert read_share(path) == shares[0]
    for mode in (0o640, 0o604, 0o644, 0o660):
        os.chmod(path, mode)
        with pytest.raises(CryptoError, match="chmod 600") as info:
            read_share(path)
        assert "\n" not in str(info.value)
    link = tmp_path / "link.json"
    os.chmod(path, 0o600)
    link.symlink_to(path)
    with pytest.raises(CryptoError):
        read_share(link)
    with pytest.raises(CryptoError, match="cannot open"):
        read_share(tmp_path / "missing.json")


def test_key_set_file(threshold_key, tmp_path):
    pub, shares = threshold_key
    keys = key_set(shares)
    assert (keys.n, keys.parties, keys.threshold) == (pub.n, 5, 3)
    for share in shares:
        keys.check(share)
    path = tmp_path / "keyset.json"
    keys.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert KeySet.load(path) == keys and KeySet.load(path).public_key == pub
    forged = KeyShare(index=2, parties=5, threshold=3, n=pub.n, secret=shares[1].secret + 1)
    with pytest.raises(CryptoError, match="verification key"):
        keys.check(forged)
    with pytest.raises(CryptoError, match="every share"):
        key_set(shares[:4])
    with pytest.raises(CryptoError):
        KeySet.from_json(json.dumps({**json.loads(keys.to_json()), "verification_keys": ["0x0"] * 5}))


def test_deal_argument_checks():
    for parties, threshold in ((0, 1), (3, 0), (3, 4), (65, 2), (True, 1)):
        with pytest.raises(CryptoError):
            deal(128, parties, threshold, insecure_key_bits=True)
    with pytest.raises(CryptoError, match="key_bits"):
        deal(127, 3, 2, insecure_key_bits=True)
    for bits in (512, 1024, 4096):  # the key-size policy of `keys`: short keys only on explicit request
        with pytest.raises(CryptoError, match="insecure_key_bits"):
            deal(bits, 3, 2)


def test_real_2048_bit_threshold_key(real_threshold_key):
    pub, shares = real_threshold_key
    assert pub.n.bit_length() == 2048
    plaintexts = [0, pub.n - 1, secrets.randbelow(pub.n)]
    ciphertexts = FastEncryptor(pub).encrypt(plaintexts)
    for subset in ((1, 2), (1, 3), (2, 3), (1, 2, 3)):
        assert decrypt_with(pub, shares, subset, ciphertexts, 2, 3) == plaintexts


# ---- zero-knowledge proofs of correct partial decryption ----

from fedgrad.crypto.threshold import PartialProof, combine_verified, prove_partials, verify_partials  # noqa: E402


@pytest.fixture(scope="module")
def proved(threshold_key):
    pub, shares = threshold_key
    keys = key_set(shares)
    plaintexts = [0, 1, 77, pub.n - 1]
    ciphertexts = FastEncryptor(pub).encrypt(plaintexts)
    responses = {}
    for share in shares:
        partials = partial_decrypt(share, ciphertexts)
        responses[share.index] = (partials, prove_partials(share, ciphertexts, partials))
    return pub, shares, keys, plaintexts, ciphertexts, responses


def test_honest_proofs_verify_and_combine(proved):
    _pub, _shares, keys, plaintexts, ciphertexts, responses = proved
    for index, (partials, proof) in responses.items():
        verify_partials(keys, index, ciphertexts, partials, proof)
        assert PartialProof.from_bytes(proof.to_bytes()) == proof
    assert combine_verified(keys, ciphertexts, responses) == (plaintexts, [])


@pytest.mark.parametrize("tamper", ["times_1_plus_n", "random", "swap", "other_share_exponent"])
def test_wrong_partials_fail_their_proof_even_when_reproved(proved, tamper):
    pub, shares, keys, _plaintexts, ciphertexts, responses = proved
    nsquare = pub.n * pub.n
    partials = list(responses[2][0])
    if tamper == "times_1_plus_n":
        partials[1] = partials[1] * (1 + pub.n) % nsquare
    elif tamper == "random":
        partials[2] = gmpy2.powmod(secrets.randbelow(pub.n - 2) + 2, 2, nsquare)
    elif tamper == "swap":
        partials[0], partials[3] = partials[3], partials[0]
    else:
        partials = partial_decrypt(shares[3], ciphertexts)  # share 4's partials claimed as share 2's
    for proof in (responses[2][1], prove_partials(shares[1], ciphertexts, partials)):
        with pytest.raises(CryptoError, match="fail their proof"):
            verify_partials(keys, 2, ciphertexts, partials, proof)


def test_proofs_are_bound_to_share_and_ciphertexts(proved):
    _pub, _shares, keys, _plaintexts, ciphertexts, responses = proved
    partials, proof = responses[1]
    with pytest.raises(CryptoError, match="not 2"):
        verify_partials(keys, 2, ciphertexts, partials, proof)
    with pytest.raises(CryptoError, match="fail their proof"):  # share 1's proof relabelled as share 2's
        verify_partials(keys, 2, ciphertexts, partials, PartialProof(2, proof.challenge, proof.response))
    with pytest.raises(CryptoError, match="fail their proof"):  # same partials, other ciphertexts
        verify_partials(keys, 1, ciphertexts[::-1], partials[::-1], proof)
    with pytest.raises(CryptoError, match="fail their proof"):
        verify_partials(keys, 1, ciphertexts, partials, PartialProof(1, proof.challenge, proof.response + 1))
    with pytest.raises(CryptoError, match="out of range"):
        verify_partials(keys, 1, ciphertexts, partials, PartialProof(1, 1 << 256, proof.response))
    with pytest.raises(CryptoError, match="one partial per ciphertext"):
        verify_partials(keys, 1, ciphertexts, partials[:-1], proof)
    for garbage in (b"", b"{}", b'{"index": 1, "e": "12", "z": "0x1"}'):
        with pytest.raises(CryptoError, match="malformed"):
            PartialProof.from_bytes(garbage)


def test_combine_verified_drops_and_names_cheaters(proved):
    pub, shares, keys, plaintexts, ciphertexts, responses = proved
    nsquare = pub.n * pub.n
    cheating = dict(responses)
    for index in (1, 4):
        partials = list(responses[index][0])
        partials[0] = partials[0] * (1 + pub.n) % nsquare
        cheating[index] = (partials, prove_partials(shares[index - 1], ciphertexts, partials))
    assert combine_verified(keys, ciphertexts, cheating) == (plaintexts, [1, 4])
    cheating[2] = (cheating[1][0], cheating[2][1])
    with pytest.raises(CryptoError, match=r"only 2 decryptor.*\[1, 2, 4\].*needs 3"):
        combine_verified(keys, ciphertexts, cheating)
