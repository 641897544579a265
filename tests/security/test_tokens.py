import json
import stat

import pytest

from fedgrad.errors import ConfigError, DataError
from fedgrad.security import TokenIssuer, read_token_file, write_token_file

SECRET = bytes(range(32))


def test_issued_token_verifies_for_its_client_only():
    issuer = TokenIssuer(SECRET, "run-1")
    token = issuer.issue("client-0")
    other = issuer.issue("client-1")
    assert issuer.verify("client-0", token)
    assert issuer.verify("client-1", other)
    assert not issuer.verify("client-1", token)
    assert not issuer.verify("client-2", token)
    assert issuer.clients == {"client-0", "client-1"}


def test_tampered_truncated_or_garbage_tokens_fail():
    issuer = TokenIssuer(SECRET, "run-1")
    token = issuer.issue("client-0")
    nonce, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for bad in (f"{nonce}.{flipped}", token[:-1], token + "x", mac, f"{nonce}.", "", "ünïcode.☃", "." * 60):
        assert not issuer.verify("client-0", bad), bad
    assert not issuer.verify("client-0", None)  # type: ignore[arg-type]
    assert not issuer.verify(None, token)  # type: ignore[arg-type]
    assert issuer.verify("client-0", token)


def test_token_is_bound_to_the_run_and_the_secret():
    token = TokenIssuer(SECRET, "run-1").issue("client-0")
    other_run = TokenIssuer(SECRET, "run-2")
    other_run.issue("client-0")
    assert not other_run.verify("client-0", token)
    other_secret = TokenIssuer(bytes(32), "run-1")
    other_secret.issue("client-0")
    assert not other_secret.verify("client-0", token)


def test_reissue_rotates_and_revocation_is_permanent():
    issuer = TokenIssuer(SECRET, "run-1")
    first = issuer.issue("client-0")
    second = issuer.issue("client-0")
    assert first != second
    assert not issuer.verify("client-0", first) and issuer.verify("client-0", second)
    issuer.revoke("client-0")
    assert issuer.is_revoked("client-0") and not issuer.verify("client-0", second)
    assert "client-0" not in issuer.clients
    with pytest.raises(ConfigError, match="revoked"):
        issuer.issue("client-0")


def test_persisted_issuer_accepts_the_same_clients_after_a_restart(tmp_path):
    path = tmp_path / "run" / "tokens.json"
    issuer = TokenIssuer.open(path, "run-7")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kept = issuer.issue("client-0")
    dropped = issuer.issue("client-1")
    issuer.revoke("client-1")
    resumed = TokenIssuer.open(path, "run-7")
    assert resumed.verify("client-0", kept)
    assert not resumed.verify("client-1", dropped) and resumed.is_revoked("client-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]  # no temporary files left behind
    with pytest.raises(ConfigError, match="belongs to run 'run-7'"):
        TokenIssuer.open(path, "run-8")


def test_load_refuses_a_secret_file_others_can_read(tmp_path):
    path = tmp_path / "tokens.json"
    TokenIssuer.create("run-1", path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        TokenIssuer.load(path)


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"format": "other"}), json.dumps({"format": "fedgrad-client-tokens", "secret": "zz"}),
     json.dumps({"format": "fedgrad-client-tokens", "secret": "00" * 32, "run_id": "r", "clients": [], "revoked": []})],
)
def test_malformed_token_file_is_a_data_error(tmp_path, content):
    path = tmp_path / "tokens.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(DataError, match=r"tokens.json"):
        TokenIssuer.load(path)


def test_weak_secret_or_empty_names_are_refused():
    with pytest.raises(ConfigError, match="32 bytes"):
        TokenIssuer(b"short", "run-1")
    with pytest.raises(ConfigError):
        TokenIssuer(SECRET, "")
    with pytest.raises(ConfigError):
        TokenIssuer(SECRET, "run-1").issue("")
    with pytest.raises(ConfigError, match="no path"):
        TokenIssuer(SECRET, "run-1").save()


def test_token_file_written_for_clients_is_read_back_by_them(tmp_path):
    path = tmp_path / "client-tokens.json"
    write_token_file(path, "run-1", {"0": "a.b", "1": "c.d"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"run": "run-1", "tokens": {"0": "a.b", "1": "c.d"}}
    assert read_token_file(path, ["1"]) == {"1": "c.d"}
    with pytest.raises(ConfigError, match="no token for client"):
        read_token_file(path, ["0", "2"])
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_token_file(path, ["0"])
    path.write_text("not json")
    path.chmod(0o600)
    with pytest.raises(DataError, match="not a token file"):
        read_token_file(path, ["0"])
