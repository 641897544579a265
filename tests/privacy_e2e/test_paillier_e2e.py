"""Paillier secure aggregation end to end over gRPC: same results as plain, and no plain update ever."""
import numpy as np
import pytest

import fedgrad.modes.plain
from fedgrad.crypto import InsecureKeyWarning
from fedgrad.modes.plain import PlainAccumulator


def learned(records):
    """The per-round values that depend only on the learned model."""
    return [record.scores for record in records]


def test_paillier_reaches_the_plain_accuracy_without_the_coordinator_seeing_a_plain_update(scenario, run,
                                                                                             monkeypatch):
    plain = run(scenario())

    def forbidden(*args, **kwargs):
        raise AssertionError("the coordinator decoded a plain update in paillier mode")

    monkeypatch.setattr(PlainAccumulator, "add", forbidden)
    monkeypatch.setattr(fedgrad.modes.plain, "decode_tensors", forbidden)
    secure = run(scenario('privacy.mode="paillier-trusted"'))

    # Exact aggregation up to 16-bit quantization: the same accuracy, and losses within quantization error.
    assert abs(secure.summary.final.accuracy - plain.summary.final.accuracy) < 1e-3
    assert [r.accuracy for r in secure.records] == [r.accuracy for r in plain.records]
    np.testing.assert_allclose(secure.losses, plain.losses, rtol=1e-3)
    assert secure.losses != plain.losses  # it did go through quantization, not a plain path
    assert plain.losses[-1] < plain.losses[0]

    for record in secure.records:
        assert record.clients_used == 3
        assert record.time_s.encrypt > 0 and record.time_s.decrypt > 0
        assert record.local == {}  # clients withhold their training metrics under secure aggregation
    for before, after in zip(plain.records, secure.records, strict=True):
        assert after.moved.up > before.moved.up > 0
    privacy = secure.summary.privacy
    assert privacy.mode == "paillier-trusted" and privacy.key_bits == 512 and privacy.max_clients == 3
    assert privacy.update_bytes * 3 <= secure.records[0].moved.up
    assert plain.summary.privacy.mode == "none"


def test_naive_paillier_aggregates_bit_identically_to_packed(scenario, run):
    """Both schemes quantize identically; only the ciphertext layout differs (and its size: one per value)."""
    packed = run(scenario('privacy.mode="paillier-trusted"', "federation.rounds=2"))
    naive = run(scenario('privacy.mode="paillier-naive"', "federation.rounds=2"))
    assert learned(naive.records) == learned(packed.records)
    assert naive.summary.privacy.ciphertexts_per_update == naive.summary.privacy.update_bytes // 128
    assert naive.records[0].moved.up > 5 * packed.records[0].moved.up


@pytest.mark.parametrize("max_clients", [0, 8])
def test_packing_bound_follows_the_cohort_or_the_scenario(scenario, max_clients):
    from fedgrad.modes.paillier_trusted import TrustedPaillierMode

    s = scenario('privacy.mode="paillier-trusted"', f"federation.max_clients={max_clients}", "federation.clients=4")
    with pytest.warns(InsecureKeyWarning):
        aggregation = TrustedPaillierMode(s).aggregation({"w": np.zeros((5, 2))})
    aggregation.close()
    assert aggregation.cfg.n_params == 10 and aggregation.cfg.max_clients == (max_clients or 3)


def test_fedgrad_simulate_runs_secure_aggregation_with_client_processes(scenario_file, tmp_path):
    """The command line path: client OS processes, which accept only keys of 2048 bits and more."""
    import json

    from fedgrad.cli.main import main

    overrides = ['privacy.mode="paillier-trusted"', "privacy.key_bits=2048", "federation.rounds=2",
                 "federation.processes=2"]
    assert main(["simulate", str(scenario_file), *(arg for o in overrides for arg in ("--set", o))]) == 0
    [run_dir] = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["privacy"]["mode"] == "paillier-trusted" and summary["privacy"]["key_bits"] == 2048
    assert summary["rounds"] == 2 and summary["time_s"]["decrypt"] > 0 and summary["time_s"]["encrypt"] > 0
