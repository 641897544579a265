"""One insecure 512-bit 2-of-3 threshold key for the whole suite, four enrolled clients, and signed contributions.

Test modules cannot import a conftest (``--import-mode=importlib``), so the helpers reach them as fixtures.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedgrad.crypto import InsecureKeyWarning
from fedgrad.crypto.identity import ClientIdentity, Enrollment, sign_contribution
from fedgrad.crypto.threshold import KeySet, KeyShare, deal, key_set
from fedgrad.crypto.wire import ciphertext_width, dump_payload
from fedgrad.decryptor.core import Decryptor, payload_digest

FINGERPRINT = b"test-fp1"
CLIENTS = ("alice", "bob", "carol", "dave")


@dataclass
class Setup:
    shares: list[KeyShare]
    keys: KeySet
    identities: dict[str, ClientIdentity]
    enrollment: Enrollment

    @property
    def n(self) -> int:
        return self.keys.n

    def payload(self, values: Sequence[int], *, contributors: int = 1) -> bytes:
        pub = self.keys.public_key
        return dump_payload(FINGERPRINT, contributors, [pub.raw_encrypt(v) for v in values], ciphertext_width(pub))

    def sign(self, client: str, run_id: str, round: int, cohort: Sequence[str], payload: bytes,
             weight: int) -> bytes:
        return sign_contribution(self.identities[client], run_id, round, self.enrollment.cohort(cohort),
                                 payload_digest(payload), weight)

    def decryptor(self, index: int, state_dir: Path, *, min_clients: int = 2) -> Decryptor:
        return Decryptor(self.shares[index - 1], self.keys, self.enrollment, min_clients=min_clients,
                         state_dir=state_dir, cores=1)


@pytest.fixture(scope="session")
def setup() -> Setup:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        _, shares = deal(512, 3, 2, rng=random.Random(12), insecure_key_bits=True)
    identities = {client: ClientIdentity.generate() for client in CLIENTS}
    enrollment = Enrollment({client: identity.public_key_bytes for client, identity in identities.items()})
    return Setup(shares, key_set(shares), identities, enrollment)
