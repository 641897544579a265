"""`fedgrad policy` writes the operator's run policy; `fedgrad decryptor --policy` and `fedgrad client --policy`
read it (one-line errors for a policy that does not fit)."""
from __future__ import annotations

import json
import warnings

import pytest

from fedgrad.cli.main import main
from fedgrad.crypto import InsecureKeyWarning
from fedgrad.crypto.threshold import KeySet, deal, key_set
from fedgrad.data import Vocabulary
from fedgrad.policy import PolicyError, RunPolicy


@pytest.fixture
def operator_files(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        _, shares = deal(512, 3, 2, insecure_key_bits=True)
    key_set(shares).save(tmp_path / "keyset.json")
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "s"\n[federation]\nclients = 10\nclients_per_round = 10\n'
                        '[privacy]\nmode = "paillier"\nkey_bits = 512\ninsecure_key_bits = true\n')
    data = tmp_path / "data"
    data.mkdir()
    (data / "vocab.json").write_text(json.dumps(Vocabulary.build([["a", "b", "c"]]).to_dict()))
    return tmp_path, scenario, data


def test_fedgrad_policy_writes_a_policy_clients_and_decryptors_can_pin(operator_files, capsys):
    root, scenario, data = operator_files
    out = root / "policy.json"
    args = ["policy", str(scenario), "--key-set", str(root / "keyset.json"), "--data-dir", str(data), "--out",
            str(out), "--run", "federation-1"]
    assert main(args) == 0
    policy = RunPolicy.load(out)
    assert (policy.run, policy.mode, policy.min_clients, policy.min_fraction) == ("federation-1", "paillier", 3, 0.5)
    policy.check_key_set(KeySet.load(root / "keyset.json"))
    assert main(args) == 2 and "exists" in capsys.readouterr().err  # never overwritten


def test_a_policy_for_a_mode_without_decryptors_is_refused(operator_files, capsys):
    root, scenario, data = operator_files
    assert main(["policy", str(scenario), "--key-set", str(root / "keyset.json"), "--data-dir", str(data), "--out",
                 str(root / "p.json"), "--set", 'privacy.mode="none"']) == 2
    assert "has no decryptors to hold a policy" in capsys.readouterr().err


def test_a_policy_for_another_key_is_refused(operator_files):
    root, scenario, data = operator_files
    assert main(["policy", str(scenario), "--key-set", str(root / "keyset.json"), "--data-dir", str(data), "--out",
                 str(root / "p.json")]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        _, shares = deal(512, 3, 2, insecure_key_bits=True)
    with pytest.raises(PolicyError, match="not the one run policy"):
        RunPolicy.load(root / "p.json").check_key_set(key_set(shares))
    (root / "bad.json").write_text("{}")
    with pytest.raises(PolicyError, match="expected format"):
        RunPolicy.load(root / "bad.json")
