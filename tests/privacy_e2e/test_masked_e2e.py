"""``privacy.mode = "paillier-masked"`` end to end: lattice-masked updates, only the masks' keys under the
threshold key, real decryptors over gRPC, clients signing with their own keys."""
from __future__ import annotations

import json
import warnings

import numpy as np

from fedgrad.crypto import InsecureKeyWarning
from fedgrad.crypto.lattice import DEGREE, key_layout

FAST_ROUNDS = ("federation.round_timeout_s=20",)


def test_masked_aggregation_matches_plain_training(scenario, run, run_threshold):
    plain = run(scenario())
    masked = run_threshold(scenario('privacy.mode="paillier-masked"', *FAST_ROUNDS))
    # Equal-size IID shards: the clients' own masked example counts weight them as FedAvg does.
    assert [r.accuracy for r in masked.records] == [r.accuracy for r in plain.records]
    np.testing.assert_allclose([r.loss for r in masked.records], plain.losses, rtol=1e-3)
    for record in masked.records:
        assert record.clients_used == 3 and record.dropped is None
        assert record.local == {} and record.decryptors.decryptors_asked == 2
    privacy = masked.summary.privacy
    assert (privacy.mode, privacy.decryptors, privacy.threshold) == ("paillier-masked", 3, 2)
    # the decryptors' work is the key's ciphertexts: 4096 ternary coefficients in 512-bit plaintexts, whatever
    # the model's size
    slots = key_layout(privacy.max_clients, privacy.key_bits).slots
    assert privacy.key_ciphertexts == privacy.ciphertexts_per_update == -(-DEGREE // slots)
    assert privacy.masked_bytes_per_value <= 8
    assert "2 of 3 decryptors must collude" in privacy.guarantee and "RLWE" in privacy.guarantee


def test_fedgrad_simulate_runs_the_masked_mode_with_its_run_policy(scenario_file, tmp_path):
    """The command line path: client processes pinned to simulate's run policy, decryptors as processes."""
    from fedgrad.cli.main import main

    overrides = ['privacy.mode="paillier-masked"', "federation.rounds=2", "federation.processes=2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        assert main(["simulate", str(scenario_file), *(arg for o in overrides for arg in ("--set", o))]) == 0
    [run_dir] = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["privacy"]["mode"] == "paillier-masked" and summary["rounds"] == 2
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record.get("dropped") for record in records] == [None, None]
    assert records[-1]["loss"] < records[0]["loss"]
    client_logs = "".join(path.read_text() for path in (run_dir / "logs").glob("client-process-*.log"))
    assert "refuses the task" not in client_logs


def test_distributed_dp_runs_under_the_masked_mode(scenario, run, run_threshold):
    """The clients' noise shares summed under lattice masks: the masked mode's key sum, DP's ledger on top."""
    plain = run(scenario())
    private = run_threshold(scenario('privacy.mode="dp"', 'privacy.dp_placement="distributed"',
                                     'privacy.dp_secure="paillier-masked"', "privacy.epsilon=1e6",
                                     "privacy.dp_clip=2.0", *FAST_ROUNDS))
    records = private.records
    # fresh OS noise in each client's share: a test email on the decision boundary may flip
    np.testing.assert_allclose([r.accuracy for r in records], [r.accuracy for r in plain.records],
                               atol=1 / 32 + 1e-12)
    np.testing.assert_allclose([r.loss for r in records], plain.losses, rtol=2e-2)
    privacy = private.summary.privacy
    secure = privacy.secure_aggregation
    assert privacy.placement == "distributed" and secure.mode == "paillier-masked"
    assert secure.max_weight == 1 and secure.key_ciphertexts == secure.ciphertexts_per_update
    assert all(r.clients_used == 3 and r.privacy.epsilon_spent > 0 for r in records)
    assert all(r.decryptors.decryptors_asked == 2 for r in records)  # the release's own record, kept
    assert "RLWE masks whose keys are summed under Paillier" in privacy.guarantee
