"""``privacy.mode = "paillier"`` end to end: real decryptors over gRPC, clients signing with their own keys."""
from __future__ import annotations

import json
import warnings

import numpy as np

from fedgrad.crypto import InsecureKeyWarning
from fedgrad.crypto.threshold import SHARE_FORMAT

FAST_ROUNDS = ("federation.round_timeout_s=20",)

def test_threshold_paillier_matches_plain_training(scenario, run, run_threshold):
    plain = run(scenario())
    secure = run_threshold(scenario('privacy.mode="paillier"', *FAST_ROUNDS))
    # Equal-size IID shards: the clients' own encrypted example counts weight them as FedAvg does.
    assert [r.accuracy for r in secure.records] == [r.accuracy for r in plain.records]
    np.testing.assert_allclose([r.loss for r in secure.records], plain.losses, rtol=1e-3)
    for record in secure.records:
        assert record.clients_used == 3 and record.dropped is None
        assert record.local == {} and record.time_s.decrypt > 0
        stats = record.decryptors  # where the release's time went: t decryptors asked, each one's phases
        assert stats.decryptors_asked == 2 and stats.partial_s > 0 and stats.prove_s > 0
        assert 0 < stats.partial_s + stats.combine_s < record.time_s.decrypt
    privacy = secure.summary.privacy
    assert (privacy.mode, privacy.decryptors, privacy.threshold) == ("paillier", 3, 2)
    assert "2 of 3 decryptors must collude" in privacy.guarantee


def test_the_run_goes_on_when_k_minus_t_decryptors_die(scenario, run_threshold):
    finished = run_threshold(scenario('privacy.mode="paillier"', *FAST_ROUNDS), stop_after_round1=1)
    assert [r.round for r in finished.records] == [1, 2, 3]
    assert all(r.dropped is None for r in finished.records)
    assert finished.records[-1].loss < finished.records[0].loss


def test_with_fewer_than_t_decryptors_rounds_are_dropped_and_the_model_stays(scenario, run_threshold):
    finished = run_threshold(scenario('privacy.mode="paillier"', *FAST_ROUNDS), stop_after_round1=2)
    first, *later = finished.records
    assert first.dropped is None
    for record in later:
        assert record.dropped is not None and "not released" in record.dropped
        assert (record.accuracy, record.loss) == (first.accuracy, first.loss)


def test_fedgrad_simulate_runs_the_decryptors_as_their_own_processes(scenario_file, tmp_path):
    """The command line path: identities, dealer and decryptors as OS processes; no share in the run directory."""
    from fedgrad.cli.main import main

    overrides = ['privacy.mode="paillier"', "federation.rounds=2", "federation.processes=2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        assert main(["simulate", str(scenario_file), *(arg for o in overrides for arg in ("--set", o))]) == 0
    [run_dir] = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["privacy"]["mode"] == "paillier" and summary["rounds"] == 2
    # the clients and decryptors hold simulate's run policy, and every round fitted it
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record.get("dropped") for record in records] == [None, None]
    client_logs = "".join(path.read_text() for path in (run_dir / "logs").glob("client-process-*.log"))
    assert "refuses the task" not in client_logs
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SHARE_FORMAT.encode() not in path.read_bytes(), f"{path} holds a key share"
    assert not [line for line in (run_dir / "logs").glob("decryptor-*.log") if "Traceback" in line.read_text()]
