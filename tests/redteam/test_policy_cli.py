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
    assert (policy.run, policy.mode, policy.min_clients, policy.min_fraction) == ("federation-1", "paillier", 5, 0.5)
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


def test_a_decryptor_pinned_to_the_coordinators_certificate_serves_mutual_tls_only(tmp_path, capsys):
    from fedgrad.crypto.identity import ClientIdentity, Enrollment
    from fedgrad.crypto.threshold import write_share
    from fedgrad.policy import make_policy
    from fedgrad.scenario import load_scenario
    from fedgrad.security.certs import create_pki

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        _, shares = deal(512, 3, 2, insecure_key_bits=True)
    keys = key_set(shares)
    keys.save(tmp_path / "keyset.json")
    (tmp_path / "d1").mkdir(mode=0o700)
    write_share(shares[0], tmp_path / "d1" / "share.json")
    Enrollment({f"c{i}": ClientIdentity.generate().public_key_bytes for i in range(3)}).save(tmp_path / "e.json")
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "s"\n[privacy]\nmode = "paillier"\nkey_bits = 512\ninsecure_key_bits = true\n')
    create_pki(tmp_path / "tls", clients=1)
    make_policy(load_scenario(scenario), 5, keys, run="r",
                coordinator_cert=tmp_path / "tls" / "client-0.pem").save(tmp_path / "p.json")
    base = ["decryptor", "--share", str(tmp_path / "d1" / "share.json"), "--key-set", str(tmp_path / "keyset.json"),
            "--enrollment", str(tmp_path / "e.json"), "--state-dir", str(tmp_path / "state"), "--port", "0",
            "--policy", str(tmp_path / "p.json")]
    for extra in ([], ["--tls-dir", str(tmp_path / "tls")]):  # plaintext, or TLS that is not mutual
        assert main([*base, *extra]) == 2
        assert "pins the coordinator's certificate: serve mutual TLS" in capsys.readouterr().err


def test_a_client_of_a_secure_federation_cannot_start_without_a_policy(tmp_path, capsys):
    assert main(["client", "--server", "127.0.0.1:1", "--shard-dir", str(tmp_path), "--client-id", "0",
                 "--identity-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pins the operator's run policy" in err and len(err.strip().splitlines()) == 1
