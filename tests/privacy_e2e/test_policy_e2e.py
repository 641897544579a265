"""Clients pinned to a run policy, over real gRPC, given tasks outside it: they send nothing but their refusal,
which the coordinator logs and counts, so a round does not wait for them; with every client refusing, the run
fails at once with a one-line error instead of training on anything."""
from __future__ import annotations

import logging
import warnings

import pytest

from fedgrad.crypto import InsecureKeyWarning
from fedgrad.crypto.threshold import deal, key_set
from fedgrad.modes.base import ClientPrivacy
from fedgrad.policy import make_policy
from server.coordinator import MAX_ROUND_ATTEMPTS, RoundFailed


def test_pinned_clients_decline_plaintext_tasks_and_the_coordinator_stops_waiting(scenario, run, tmp_path, caplog):
    secure = scenario('privacy.mode="paillier"')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        _, shares = deal(512, 3, 2, insecure_key_bits=True)
    make_policy(secure, 50, key_set(shares), run="pinned-run").save(tmp_path / "policy.json")
    privacy = ClientPrivacy(allow_insecure_keys=True, policy=tmp_path / "policy.json")
    # a coordinator sending plaintext tasks; rounds that would each wait 10 minutes for answers that never come
    plain = scenario('privacy.mode="none"', "federation.round_timeout_s=600", "federation.rounds=2")
    with caplog.at_level(logging.WARNING, logger="fedgrad"), pytest.raises(RoundFailed, match="round 1: fewer"):
        run(plain, privacy=privacy)
    declined = [r.getMessage() for r in caplog.records if "declined its task" in r.getMessage()]
    assert len(declined) == MAX_ROUND_ATTEMPTS * plain.federation.clients_per_round
    assert not [r for r in caplog.records if "missed the round's deadline" in r.getMessage()]
    assert all("carries no privacy announcement, so the update would travel in plaintext" in line
               for line in declined)
