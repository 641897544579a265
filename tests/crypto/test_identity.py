"""Client identities: a decryptor accepts a contribution signature only for exactly the data it was made for."""
import hashlib
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgrad.crypto import CryptoError
from fedgrad.crypto.identity import (
    ClientIdentity,
    Enrollment,
    SignatureError,
    cohort_digest,
    contribution_digest,
    sign_contribution,
    verify_contribution,
)

ALICE, BOB, CAROL = ClientIdentity.generate(), ClientIdentity.generate(), ClientIdentity.generate()
ENROLLED = {"alice": ALICE.public_key_bytes, "bob": BOB.public_key_bytes, "carol": CAROL.public_key_bytes}
COHORT = cohort_digest(ENROLLED)
CT = hashlib.sha256(b"alice's ciphertexts").digest()
FIELDS: dict[str, Any] = dict(run_id="run-1", round=3, cohort_digest=COHORT, ciphertext_sha256=CT, weight=120)


def signed(identity=ALICE, **overrides):
    return sign_contribution(identity, **{**FIELDS, **overrides})


def test_genuine_signature_verifies():
    verify_contribution(ALICE.public_key_bytes, signed(), **FIELDS)
    verify_contribution(ALICE.public_key_bytes, signed(weight=0.25), **{**FIELDS, "weight": 0.25})


@pytest.mark.parametrize("field,value", [
    ("run_id", "run-2"), ("round", 4), ("round", 0), ("cohort_digest", cohort_digest({"alice": ALICE.public_key_bytes,
                                                                                      "bob": BOB.public_key_bytes})),
    ("ciphertext_sha256", hashlib.sha256(b"other").digest()), ("weight", 121), ("weight", 120.0), ("weight", 1),
])
def test_signature_reused_for_other_data_is_rejected(field, value):
    with pytest.raises(SignatureError, match="does not verify"):
        verify_contribution(ALICE.public_key_bytes, signed(), **{**FIELDS, field: value})


def test_wrong_key_and_forgeries_are_rejected():
    signature = signed()
    with pytest.raises(SignatureError):
        verify_contribution(BOB.public_key_bytes, signature, **FIELDS)  # alice's signature is not bob's
    with pytest.raises(SignatureError):
        verify_contribution(ALICE.public_key_bytes, signed(BOB), **FIELDS)  # bob signing as alice
    for i in (0, 31, 32, 63):
        forged = bytearray(signature)
        forged[i] ^= 1
        with pytest.raises(SignatureError):
            verify_contribution(ALICE.public_key_bytes, bytes(forged), **FIELDS)
    with pytest.raises(SignatureError):
        verify_contribution(ALICE.public_key_bytes, os.urandom(64), **FIELDS)


@pytest.mark.parametrize("signature,key", [
    (b"", None), (b"\0" * 63, None), (b"\0" * 65, None), ("not bytes", None),
    (None, b"\0" * 31), (None, b"\0" * 33), (None, "alice"),
])
def test_malformed_bytes_are_rejected(signature, key):
    with pytest.raises(SignatureError):
        verify_contribution(ALICE.public_key_bytes if key is None else key,
                            signed() if signature is None else signature, **FIELDS)


@pytest.mark.parametrize("field,value", [("cohort_digest", b"\0" * 31), ("ciphertext_sha256", b""), ("round", -1),
                                         ("round", 1 << 64), ("round", True), ("run_id", ""), ("weight", -1),
                                         ("weight", float("nan")), ("weight", True), ("weight", "1")])
def test_malformed_fields_are_rejected(field, value):
    with pytest.raises(CryptoError):
        signed(**{field: value})
    with pytest.raises(SignatureError):
        verify_contribution(ALICE.public_key_bytes, signed(), **{**FIELDS, field: value})


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(st.text(min_size=1), st.integers(0, 2**64 - 1), st.one_of(st.integers(0, 2**70), st.floats(0, 1e9))),
       b=st.tuples(st.text(min_size=1), st.integers(0, 2**64 - 1), st.one_of(st.integers(0, 2**70), st.floats(0, 1e9))))
def test_encoding_is_unambiguous(a, b):
    """Distinct (run, round, weight) never hash alike (length prefixes, typed weights)."""
    da = contribution_digest(a[0], a[1], COHORT, ALICE.public_key_bytes, CT, a[2])
    db = contribution_digest(b[0], b[1], COHORT, ALICE.public_key_bytes, CT, b[2])
    same = a[0] == b[0] and a[1] == b[1] and type(a[2]) is type(b[2]) and a[2] == b[2]
    assert (da == db) == same


def test_run_id_boundary_cannot_shift_into_round():
    assert contribution_digest("ab", 1, COHORT, ALICE.public_key_bytes, CT, 1) != \
        contribution_digest("a", 1, COHORT, ALICE.public_key_bytes, CT, 1)


def test_numpy_integer_weight_signs_like_int():
    numpy_weight: Any = np.int64(7)  # outside the annotated int | float, on purpose
    assert contribution_digest("r", 1, COHORT, ALICE.public_key_bytes, CT, numpy_weight) == \
        contribution_digest("r", 1, COHORT, ALICE.public_key_bytes, CT, 7)


def test_cohort_digest_is_order_free_and_binds_ids_and_keys():
    assert cohort_digest(list(ENROLLED.items())[::-1]) == COHORT
    assert cohort_digest({**ENROLLED, "bob": CAROL.public_key_bytes, "carol": BOB.public_key_bytes}) != COHORT
    assert cohort_digest({"alice": ALICE.public_key_bytes, "bobcarol": BOB.public_key_bytes}) != \
        cohort_digest({"alice": ALICE.public_key_bytes, "bob": BOB.public_key_bytes})
    with pytest.raises(CryptoError, match="twice"):
        cohort_digest([("alice", ALICE.public_key_bytes), ("alice", BOB.public_key_bytes)])
    with pytest.raises(CryptoError):
        cohort_digest({})
    with pytest.raises(CryptoError):
        cohort_digest({"alice": b"\0" * 5})


def test_identity_file_is_private(tmp_path):
    path = tmp_path / "client.key"
    ALICE.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = ClientIdentity.load(path)
    assert loaded.public_key_bytes == ALICE.public_key_bytes
    verify_contribution(ALICE.public_key_bytes, sign_contribution(loaded, **FIELDS), **FIELDS)
    with pytest.raises(CryptoError, match="overwrite"):
        BOB.save(path)
    os.chmod(path, 0o644)
    with pytest.raises(CryptoError, match="chmod 600"):
        ClientIdentity.load(path)
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n")
    os.chmod(bad, 0o600)
    with pytest.raises(CryptoError, match="not an unencrypted PEM"):
        ClientIdentity.load(bad)
    assert "PRIVATE" not in repr(ALICE)


def test_enrollment_round_trip_and_validation(tmp_path):
    enrollment = Enrollment(ENROLLED)
    path = tmp_path / "enrollment.json"
    enrollment.save(path)
    loaded = Enrollment.load(path)
    assert loaded == enrollment and loaded.public_key("bob") == BOB.public_key_bytes
    assert loaded.cohort(["carol", "alice", "bob"]) == COHORT
    with pytest.raises(CryptoError, match="not enrolled"):
        loaded.public_key("mallory")
    with pytest.raises(CryptoError, match="share one public key"):
        Enrollment({"a": ALICE.public_key_bytes, "b": ALICE.public_key_bytes})
    for text in ("", "[]", '{"format": "x", "clients": {}}', '{"format": "fedgrad/enrollment/v1", "clients": []}',
                 '{"format": "fedgrad/enrollment/v1", "clients": {"a": "zz"}}',
                 '{"format": "fedgrad/enrollment/v1", "clients": {"a": "00"}}'):
        with pytest.raises(CryptoError):
            Enrollment.from_json(text)
    with pytest.raises(CryptoError, match="cannot read"):
        Enrollment.load(tmp_path / "missing.json")


def test_a_signature_names_the_task_it_was_made_for():
    identity = ClientIdentity.generate()
    cohort, payload = bytes(32), bytes(range(32))
    task, other = bytes([1]) * 32, bytes([2]) * 32
    signature = sign_contribution(identity, "run", 3, cohort, payload, 7, task)
    verify_contribution(identity.public_key_bytes, signature, "run", 3, cohort, payload, 7, task)
    for wrong in (other, None):  # another task, or none (the v1 message): refused
        with pytest.raises(SignatureError):
            verify_contribution(identity.public_key_bytes, signature, "run", 3, cohort, payload, 7, wrong)
    with pytest.raises(SignatureError):
        verify_contribution(identity.public_key_bytes, sign_contribution(identity, "run", 3, cohort, payload, 7),
                            "run", 3, cohort, payload, 7, task)
