"""The decryptor's rules, each played as the coordinator would try to break it: the refusal, and nothing released."""
from __future__ import annotations

from contextlib import contextmanager

import pytest

from fedgrad.crypto.threshold import combine_verified
from fedgrad.decryptor.core import Decryptor, DecryptorRefusal
from fedgrad.protocol import Refusal

RUN = "run-1"
COHORT = ("alice", "bob", "carol")
VALUES = {"alice": [1, 2, 3], "bob": [10, 20, 30], "carol": [100, 200, 300], "dave": [7, 7, 7]}
SUMS = [111, 222, 333]


def records(decryptor: Decryptor) -> list:
    return sorted((decryptor.state_dir / "released").glob("*.json"))


def assert_nothing_released(*decryptors: Decryptor) -> None:
    for decryptor in decryptors:
        assert records(decryptor) == []


@contextmanager
def refused(kind: Refusal, match: str | None = None):
    """Like pytest.raises(DecryptorRefusal), and the refusal is of `kind`."""
    with pytest.raises(DecryptorRefusal, match=match) as info:
        yield info
    assert info.value.kind is kind, f"{info.value.kind}: {info.value}"


def contribute(setup, decryptor, client, round=1, attempt=0, cohort=COHORT, weight=1, run=RUN, payload=None,
               signature=None):
    payload = payload if payload is not None else setup.payload(VALUES[client])
    signature = signature if signature is not None else setup.sign(client, run, round, cohort, payload, weight)
    decryptor.contribute(run, round, attempt, client, weight, payload, signature)
    return payload, signature


@pytest.fixture
def pair(setup, tmp_path):
    decryptors = [setup.decryptor(i, tmp_path / f"d{i}") for i in (1, 2)]
    yield decryptors
    for decryptor in decryptors:
        decryptor.close()


def product_of(setup, payloads):
    from fedgrad.crypto.wire import load_payload, read_header
    nsquare = setup.n * setup.n
    product = None
    for payload in payloads:
        header = read_header(payload)
        cts = load_payload(payload, pub=setup.keys.public_key, fingerprint=header.fingerprint,
                           count=header.count).ciphertexts
        product = cts if product is None else [a * b % nsquare for a, b in zip(product, cts, strict=True)]
    return [int(c) for c in product]


def test_honest_round_decrypts_to_the_sum(setup, pair):
    payloads: dict[str, bytes] = {}
    for decryptor in pair:
        decryptor.open(RUN, 1, 0, COHORT)
        for client in COHORT:
            payloads[client], _ = contribute(setup, decryptor, client, payload=payloads.get(client))
    responses = {d.index: d.release(RUN, 1, 0, list(COHORT)) for d in pair}
    plaintexts, bad = combine_verified(setup.keys, product_of(setup, payloads.values()), responses)
    assert plaintexts == SUMS and bad == []
    assert all(len(records(d)) == 1 for d in pair)


def test_cohort_with_an_unenrolled_client(setup, pair):
    with refused(Refusal.UNAUTHENTICATED, "not enrolled"):
        pair[0].open(RUN, 1, 0, ["alice", "bob", "mallory"])
    with refused(Refusal.STALE, "not open"):
        contribute(setup, pair[0], "alice")
    assert_nothing_released(pair[0])


def test_cohort_with_a_duplicated_client(setup, pair):
    with refused(Refusal.INVALID, "more than once"):
        pair[0].open(RUN, 1, 0, ["alice", "bob", "alice"])
    with refused(Refusal.STALE):
        pair[0].release(RUN, 1, 0, ["alice", "bob", "alice"])
    assert_nothing_released(pair[0])


def test_cohort_below_min_clients(setup, pair):
    with refused(Refusal.INVALID, "min_clients=2"):
        pair[0].open(RUN, 1, 0, ["alice"])
    pair[0].open(RUN, 1, 1, COHORT)
    contribute(setup, pair[0], "alice", attempt=1)
    with refused(Refusal.INVALID, "below this decryptor's min_clients=2"):
        pair[0].release(RUN, 1, 1, ["alice"])
    assert_nothing_released(pair[0])


def test_forged_signature(setup, pair):
    decryptor = pair[0]
    decryptor.open(RUN, 1, 0, COHORT)
    payload = setup.payload(VALUES["bob"])
    by_alice = setup.sign("alice", RUN, 1, COHORT, payload, 1)  # alice's key signing "bob's" contribution
    for signature in (by_alice, bytes(64), b"short"):
        with refused(Refusal.UNAUTHENTICATED):
            decryptor.contribute(RUN, 1, 0, "bob", 1, payload, signature)
    contribute(setup, decryptor, "alice")
    contribute(setup, decryptor, "carol")
    with refused(Refusal.INVALID, "never contributed here"):
        decryptor.release(RUN, 1, 0, list(COHORT))
    assert_nothing_released(decryptor)


@pytest.mark.parametrize("change", ["round", "cohort", "weight", "payload", "run"])
def test_signature_reused_for_other_data(setup, pair, change):
    decryptor = pair[0]
    cohort = ("alice", "bob", "dave") if change == "cohort" else COHORT
    run = "run-2" if change == "run" else RUN
    decryptor.open(run, 2, 0, cohort)
    payload = setup.payload(VALUES["alice"])
    signature = setup.sign("alice", RUN, 1 if change == "round" else 2, COHORT, payload, 1)
    other = setup.payload(VALUES["dave"]) if change == "payload" else payload
    weight = 2 if change == "weight" else 1
    with refused(Refusal.UNAUTHENTICATED, "does not verify"):
        decryptor.contribute(run, 2, 0, "alice", weight, other, signature)
    contribute(setup, decryptor, "bob", round=2, cohort=cohort, run=run)
    with refused(Refusal.INVALID):
        decryptor.release(run, 2, 0, ["alice", "bob"])
    assert_nothing_released(decryptor)


def test_replay_of_an_earlier_round(setup, pair):
    decryptor = pair[0]
    decryptor.open(RUN, 1, 0, COHORT)
    signed = {client: contribute(setup, decryptor, client) for client in COHORT}
    decryptor.release(RUN, 1, 0, list(COHORT))
    decryptor.open(RUN, 2, 0, COHORT)
    for client, (payload, signature) in signed.items():
        with refused(Refusal.UNAUTHENTICATED, "does not verify"):
            decryptor.contribute(RUN, 2, 0, client, 1, payload, signature)
    with refused(Refusal.INVALID):
        decryptor.release(RUN, 2, 0, list(COHORT))
    assert len(records(decryptor)) == 1  # round 1 only


@pytest.mark.parametrize("claimed", [["alice", "bob"], ["alice"], ["alice", "bob", "carol", "dave"],
                                     ["alice", "bob", "dave"], ["alice", "bob", "bob"]])
def test_subset_or_superset_of_contributors(setup, pair, claimed):
    decryptor = pair[0]
    decryptor.open(RUN, 1, 0, COHORT)
    for client in COHORT:
        contribute(setup, decryptor, client)
    with refused(Refusal.INVALID):
        decryptor.release(RUN, 1, 0, claimed)
    assert_nothing_released(decryptor)
    decryptor.release(RUN, 1, 0, list(COHORT))  # the refusal burned nothing: the honest claim still works


def test_contribution_twice_or_from_outside_the_cohort(setup, pair):
    decryptor = pair[0]
    decryptor.open(RUN, 1, 0, COHORT)
    payload, signature = contribute(setup, decryptor, "alice")
    with refused(Refusal.STALE, "already contributed"):
        decryptor.contribute(RUN, 1, 0, "alice", 1, payload, signature)
    with refused(Refusal.UNAUTHENTICATED, "not in the cohort"):
        contribute(setup, decryptor, "dave")
    assert_nothing_released(decryptor)


@pytest.mark.parametrize("bad", ["aggregate", "zero", "not-a-unit", "count", "fingerprint", "garbage"])
def test_malformed_payloads(setup, pair, bad):
    from fedgrad.crypto.wire import ciphertext_width, dump_payload
    decryptor = pair[0]
    decryptor.open(RUN, 1, 0, COHORT)
    contribute(setup, decryptor, "alice")
    width, pub = ciphertext_width(setup.keys.public_key), setup.keys.public_key
    good = [pub.raw_encrypt(v) for v in VALUES["bob"]]
    payload = {
        "aggregate": setup.payload(VALUES["bob"], contributors=2),
        "zero": dump_payload(b"test-fp1", 1, [0, *good[1:]], width),
        "not-a-unit": dump_payload(b"test-fp1", 1, [setup.shares[0].n, *good[1:]], width),
        "count": dump_payload(b"test-fp1", 1, good[:2], width),
        "fingerprint": dump_payload(b"other-fp", 1, good, width),
        "garbage": b"FGCT\x01 not a payload",
    }[bad]
    with refused(Refusal.INVALID):
        contribute(setup, decryptor, "bob", payload=payload)
    contribute(setup, decryptor, "bob")  # bob's refused attempt did not use up his place
    assert_nothing_released(decryptor)


def test_second_release_under_another_attempt(setup, pair):
    decryptor = pair[0]
    decryptor.open(RUN, 1, 0, COHORT)
    decryptor.open(RUN, 1, 1, COHORT)
    for client in COHORT:
        contribute(setup, decryptor, client, attempt=0)
        contribute(setup, decryptor, client, attempt=1)
    decryptor.release(RUN, 1, 0, list(COHORT))
    with refused(Refusal.STALE, "already released"):
        decryptor.release(RUN, 1, 1, list(COHORT))
    with refused(Refusal.STALE, "already released"):
        decryptor.open(RUN, 1, 2, COHORT)
    with refused(Refusal.STALE):
        decryptor.open(RUN, 1, 0, COHORT)
    assert len(records(decryptor)) == 1


def test_reopening_the_same_attempt(setup, pair):
    pair[0].open(RUN, 1, 0, COHORT)
    with refused(Refusal.STALE, "opened before"):
        pair[0].open(RUN, 1, 0, ("alice", "bob"))


def test_second_release_after_a_restart(setup, tmp_path):
    first = setup.decryptor(1, tmp_path / "state")
    first.open(RUN, 1, 0, COHORT)
    for client in COHORT:
        contribute(setup, first, client)
    first.release(RUN, 1, 0, list(COHORT))
    first.close()
    restarted = setup.decryptor(1, tmp_path / "state")
    assert restarted.released(RUN, 1)
    with refused(Refusal.STALE, "already released"):
        restarted.open(RUN, 1, 1, COHORT)
    with refused(Refusal.STALE, "already released"):
        restarted.release(RUN, 1, 1, list(COHORT))
    assert len(records(restarted)) == 1
    restarted.open(RUN, 2, 0, COHORT)  # later rounds are unaffected


def test_pinned_run_id(setup, tmp_path):
    decryptor = Decryptor(setup.shares[0], setup.keys, setup.enrollment, min_clients=2, state_dir=tmp_path,
                          cores=1, run_id=RUN)
    with refused(Refusal.STALE, "serves run"):
        decryptor.open("another-run", 1, 0, COHORT)
    decryptor.open(RUN, 1, 0, COHORT)


def test_share_must_match_the_key_set(setup, tmp_path):
    from fedgrad.crypto.errors import CryptoError
    from fedgrad.crypto.threshold import KeyShare
    share = setup.shares[0]
    wrong = KeyShare(index=1, parties=share.parties, threshold=share.threshold, n=share.n, secret=share.secret + 1)
    with pytest.raises(CryptoError, match="does not match"):
        Decryptor(wrong, setup.keys, setup.enrollment, min_clients=2, state_dir=tmp_path)


def test_concurrent_releases_of_one_round_release_once(setup, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    first = setup.decryptor(1, tmp_path / "shared")
    second = setup.decryptor(1, tmp_path / "shared")  # e.g. a stale second process on the same state dir
    for attempt, decryptor in enumerate((first, second)):
        decryptor.open(RUN, 1, attempt, COHORT)
        for client in COHORT:
            contribute(setup, decryptor, client, attempt=attempt)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(d.release, RUN, 1, attempt, list(COHORT)) for attempt, d in enumerate((first, second))]
    outcomes = [future.exception() for future in futures]
    assert sum(outcome is None for outcome in outcomes) == 1
    (refusal,) = [outcome for outcome in outcomes if outcome is not None]
    assert isinstance(refusal, DecryptorRefusal) and refusal.kind is Refusal.STALE
    assert len(records(first)) == 1


def test_release_below_the_policys_share_of_the_announced_cohort(setup, tmp_path):
    """Two of a cohort of four contributed (at min_clients = 2): a decryptor holding a run policy's cohort
    fraction of 3/4 refuses, so a coordinator cannot claim that the others dropped."""
    cohort = ("alice", "bob", "carol", "dave")
    decryptor = Decryptor(setup.shares[0], setup.keys, setup.enrollment, min_clients=2, state_dir=tmp_path,
                          cores=1, min_fraction=0.75)
    decryptor.open(RUN, 1, 0, cohort)
    for client in ("alice", "bob"):
        contribute(setup, decryptor, client, cohort=cohort)
    with refused(Refusal.INVALID, "2 of a cohort of 4 contributed, below this decryptor's min_fraction=0.75"):
        decryptor.release(RUN, 1, 0, ["alice", "bob"])
    contribute(setup, decryptor, "carol", cohort=cohort)
    partials, _ = decryptor.release(RUN, 1, 0, ["alice", "bob", "carol"])
    assert len(partials) == len(VALUES["alice"]) and len(records(decryptor)) == 1
    decryptor.close()


def _masked_signature(setup, client, payload, masked_sha256, round=1):
    from fedgrad.crypto.identity import sign_contribution
    from fedgrad.crypto.masked import masked_digest
    from fedgrad.decryptor.core import payload_digest
    return sign_contribution(setup.identities[client], RUN, round, setup.enrollment.cohort(COHORT),
                             masked_digest(payload_digest(payload), masked_sha256), 1)


def test_a_masked_contribution_is_bound_to_its_masked_vector(setup, pair):
    """paillier-masked: the client signs its key ciphertexts together with its masked vector's digest. The
    coordinator cannot pair the key with another masked vector, drop the masked digest, or present a
    paillier contribution as a masked one (the digests are domain-separated)."""
    import hashlib
    decryptor = pair[0]
    decryptor.open(RUN, 1, 0, COHORT)
    masked = {client: hashlib.sha256(client.encode()).digest() for client in COHORT}
    payloads = {client: setup.payload(VALUES[client]) for client in COHORT}
    alice = _masked_signature(setup, "alice", payloads["alice"], masked["alice"])
    with refused(Refusal.UNAUTHENTICATED, "signature"):  # another masked vector
        decryptor.contribute(RUN, 1, 0, "alice", 1, payloads["alice"], alice, masked["bob"])
    with refused(Refusal.UNAUTHENTICATED, "signature"):  # the masked digest left out
        decryptor.contribute(RUN, 1, 0, "alice", 1, payloads["alice"], alice)
    with refused(Refusal.UNAUTHENTICATED, "32 bytes"):
        decryptor.contribute(RUN, 1, 0, "alice", 1, payloads["alice"], alice, masked["alice"][:16])
    bob = setup.sign("bob", RUN, 1, COHORT, payloads["bob"], 1)  # a paillier contribution, claimed masked
    with refused(Refusal.UNAUTHENTICATED, "signature"):
        decryptor.contribute(RUN, 1, 0, "bob", 1, payloads["bob"], bob, masked["bob"])
    for client in COHORT:
        decryptor.contribute(RUN, 1, 0, client, 1, payloads[client],
                             _masked_signature(setup, client, payloads[client], masked[client]), masked[client])
    responses = {d.index: d.release(RUN, 1, 0, list(COHORT)) for d in pair[:1]}
    assert responses and len(records(decryptor)) == 1
