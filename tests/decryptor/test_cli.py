"""`fedgrad keygen` and `fedgrad decryptor` as an operator runs them."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import grpc
import pytest

from fedgrad.cli.main import main
from fedgrad.crypto.threshold import KeySet, read_share
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import open_blocking_channel

pytestmark = pytest.mark.filterwarnings("ignore::fedgrad.crypto.InsecureKeyWarning")


@pytest.fixture(scope="module")
def dealt(tmp_path_factory):
    out = tmp_path_factory.mktemp("keys") / "key"
    assert main(["keygen", "--parties", "3", "--threshold", "2", "--key-bits", "256", "--insecure-key-bits",
                 "--out", str(out)]) == 0
    return out


def test_keygen_writes_a_public_key_set_and_private_shares(dealt, capsys):
    keys = KeySet.load(dealt / "keyset.json")
    assert (keys.parties, keys.threshold, keys.n.bit_length()) == (3, 2, 256)
    assert stat.S_IMODE((dealt / "keyset.json").stat().st_mode) == 0o644
    for i in (1, 2, 3):
        assert stat.S_IMODE((dealt / f"decryptor-{i}").stat().st_mode) == 0o700
        assert stat.S_IMODE((dealt / f"decryptor-{i}" / "share.json").stat().st_mode) == 0o600
        keys.check(read_share(dealt / f"decryptor-{i}" / "share.json"))
    assert main(["keygen", "--parties", "3", "--threshold", "2", "--key-bits", "256", "--insecure-key-bits",
                 "--out", str(dealt)]) == 2
    assert "already holds a threshold key" in capsys.readouterr().err


def test_keygen_refuses_a_short_key_without_the_flag(tmp_path, capsys):
    assert main(["keygen", "--parties", "2", "--threshold", "2", "--key-bits", "512", "--out", str(tmp_path)]) == 2
    assert "insecure_key_bits" in capsys.readouterr().err
    assert not (tmp_path / "keyset.json").exists()


def test_decryptor_refuses_a_share_readable_by_others(dealt, setup, tmp_path, capsys):
    share = tmp_path / "share.json"
    share.write_bytes((dealt / "decryptor-1" / "share.json").read_bytes())
    os.chmod(share, 0o644)
    setup.enrollment.save(tmp_path / "enrollment.json")
    assert main(["decryptor", "--share", str(share), "--key-set", str(dealt / "keyset.json"), "--enrollment",
                 str(tmp_path / "enrollment.json"), "--state-dir", str(tmp_path / "state"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "mode 0644" in err and "chmod 600" in err and len(err.strip().splitlines()) == 1


def test_decryptor_process_serves_writes_its_port_and_stops_on_sigterm(dealt, setup, tmp_path):
    setup.enrollment.save(tmp_path / "enrollment.json")
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "fedgrad.cli.main", "decryptor", "--share", str(dealt / "decryptor-2" / "share.json"),
         "--key-set", str(dealt / "keyset.json"), "--enrollment", str(tmp_path / "enrollment.json"),
         "--state-dir", str(tmp_path / "state"), "--port", "0", "--port-file", str(port_file), "--cores", "1",
         "--min-clients", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # blocks until it listens (or exits)
        assert "decryptor 2 of 3 (threshold 2) listening on 127.0.0.1:" in line, process.stderr.read()
        port = int(port_file.read_text())
        assert line.split("127.0.0.1:")[1].split()[0] == str(port)
        channel = open_blocking_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.DecryptorStub(channel)
        stub.Open(pb.RoundOpening(run_id="r", round=1, attempt=0, cohort=["alice", "bob"]), timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            stub.Open(pb.RoundOpening(run_id="r", round=1, attempt=1, cohort=["alice", "mallory"]), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        channel.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
