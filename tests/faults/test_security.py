"""Who gets in: TLS (and mutual TLS) on the channel, run tokens checked at join and on every call, revocation
taking effect on a running federation, and tokens that never appear on a command line."""
import asyncio
import json
import os
import stat
from pathlib import Path

import grpc
import pytest

from client.pool import run_clients
from client.session import ClientError, ClientOptions
from fedgrad.cli.main import main
from fedgrad.data import load_shard
from fedgrad.errors import ConfigError
from fedgrad.security import create_pki
from fedgrad.security.tokens import read_token_file
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import PROTOCOL_VERSION, ClientSecurity, open_channel

pytestmark = pytest.mark.faults

FAST = ClientOptions(wait_s=0.5, rpc_timeout_s=10.0, connect_timeout_s=10.0, backoff_max_s=0.2)


async def join(address: str, security, client_id: str, token: str) -> pb.JoinReply:
    async with open_channel(address, security) as channel:
        return await pb_grpc.CoordinatorStub(channel).Join(
            pb.JoinRequest(client_id=client_id, token=token, n_examples=1, protocol_version=PROTOCOL_VERSION),
            timeout=5)


def test_channel_admits_only_peers_the_federation_ca_vouches_for(lab, tally, tmp_path):
    scenario = lab.scenario(rounds=1)
    stranger = tmp_path / "stranger"
    create_pki(stranger, clients=1)

    async def run():
        async with lab.federation(scenario, mutual=True) as fed:
            token = read_token_file(fed.token_file, ["0"])["0"]
            trusted = ClientSecurity.from_dir(lab.pki, "client-0")
            assert (await join(fed.address, trusted, "0", token)).accepted
            for what, security in (("plaintext client on a TLS channel", None),
                                   ("client trusting another CA", ClientSecurity.from_dir(stranger, "client-0")),
                                   ("client with no certificate under mutual TLS", ClientSecurity.from_dir(lab.pki)),
                                   ("client certificate from another CA",
                                    ClientSecurity(trusted.root_certificates, *_identity(stranger)))):
                with tally.bad_input(what) as bad:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await join(fed.address, security, "0", token)
                    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
                    bad.refused(f"UNAVAILABLE: {caught.value.details()}")

    asyncio.run(run())


def _identity(directory: Path) -> tuple[bytes, bytes]:
    return (directory / "client-0.key").read_bytes(), (directory / "client-0.pem").read_bytes()


def test_tokens_are_checked_at_join_and_revocation_stops_a_running_client(lab, tally, caplog):
    scenario = lab.scenario(rounds=30, timeout_s=5.0)

    async def run():
        async with lab.federation(scenario) as fed:
            tokens = read_token_file(fed.token_file, ["0", "1", "2"])
            security = lab.client_security()
            for what, client_id, token, reason in (
                    ("join without a token", "0", "", "presented no token"),
                    ("join with a forged token", "0", tokens["0"][:-2] + "xx", "not valid for this run"),
                    ("join with another client's token", "0", tokens["1"], "not valid for this run"),
                    ("join as an unknown client", "7", tokens["0"], "unknown client id '7'")):
                with tally.bad_input(what) as bad:
                    reply = await join(fed.address, security, client_id, token)
                    assert not reply.accepted and reason in reply.reason, reply.reason
                    bad.refused(f"join refused: {reply.reason}")
            shards = {cid: load_shard(fed.run_dir / "data", int(cid)) for cid in tokens}
            honest = asyncio.create_task(run_clients(fed.address, {c: shards[c] for c in "01"}, options=FAST,
                                                     tokens=tokens, security=security))
            doomed = asyncio.create_task(run_clients(fed.address, {"2": shards["2"]}, options=FAST, tokens=tokens,
                                                     security=security))
            await lab.wait_for(lambda: len(fed.records()) >= 2, 30, "two rounds with client 2")
            with tally.bad_input("calls from a client revoked mid-run") as bad:
                # Another process revokes client 2, as an operator would, while the run goes on. The running
                # client's next call is refused as revoked (PERMISSION_DENIED) and it stops: it is never sent
                # back to join (which a token check racing the revocation used to do).
                assert await asyncio.to_thread(main, ["tokens", "revoke", str(fed.run_dir), "2"]) == 0
                with pytest.raises(ClientError) as caught:
                    await asyncio.wait_for(doomed, 10)
                assert str(caught.value) == "client '2' was revoked for this run"
                revoked_at = len(fed.records())
                reply = await join(fed.address, security, "2", tokens["2"])
                assert not reply.accepted and reply.reason == "client '2' was revoked for this run", reply.reason
                bad.refused(f"{caught.value}; rejoin refused: {reply.reason}")
            await asyncio.wait_for(fed.run, 60)
            await asyncio.wait_for(honest, 10)
            return fed.records(), revoked_at

    records, revoked_at = asyncio.run(run())
    assert len(records) == 30
    # After the revocation took effect, client 2 was never selected again (and cost no timeouts).
    assert all(r.clients_selected == 2 == r.clients_used for r in records[revoked_at + 1:])
    assert any("PERMISSION_DENIED" in m and "revoked" in m for m in caplog.messages)


def test_tokens_never_appear_on_a_command_line_and_their_files_are_private(lab, tally):
    scenario = lab.scenario(rounds=100000)
    simulate = lab.processes.start("simulate", "simulate", str(scenario), "--set", "federation.processes=2")
    lab.wait_until(lambda: any(lab.runs.glob("*/metrics.jsonl")), 60, "the simulation's first round")
    run_dir = lab.traces.only_run_dir(lab.runs)
    tokens = json.loads((run_dir / "auth" / "client-tokens.json").read_text())["tokens"]
    command_lines = [_cmdline(pid) for pid in lab.traces.pids_mentioning(str(run_dir))]
    assert len(command_lines) == 2 and all("--token-file" in line for line in command_lines)
    assert not any(token in line for token in tokens.values() for line in command_lines)
    for secret in ("auth/client-tokens.json", "auth/issuer.json", "tls/ca.key", "tls/server.key"):
        assert stat.S_IMODE((run_dir / secret).stat().st_mode) == 0o600, secret
    assert stat.S_IMODE((run_dir / "auth").stat().st_mode) == 0o700
    simulate.terminate()
    assert simulate.wait(timeout=30) != 0


def test_operator_mistakes_are_one_line_errors(lab, tally, capsys, tmp_path):
    scenario = lab.scenario(rounds=1)
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"run": "r", "tokens": {"0": "t"}}))
    os.chmod(token_file, 0o644)
    for what, argv, message in (
            ("plaintext on a public address", ["server", str(scenario), "--host", "0.0.0.0"], "refusing to serve"),
            ("mutual TLS without certificates", ["server", str(scenario), "--mtls"], "--mtls needs --tls-dir"),
            ("scenario and --resume together", ["server", str(scenario), "--resume", str(tmp_path)], "not both"),
            ("token file others can read", ["client", "--server", "127.0.0.1:1", "--shard-dir", str(tmp_path),
                                            "--client-id", "0", "--token-file", str(token_file)], "chmod 600"),
            ("missing shard", ["client", "--server", "127.0.0.1:1", "--shard-dir", str(tmp_path), "--client-id",
                               "0"], "missing"),
            ("unknown client in a revocation", ["tokens", "revoke", str(tmp_path), "3"], "cannot read")):
        with tally.bad_input(what) as bad:
            assert main(argv) == 2, what
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err and err.count("\n") == 1, (what, err)
            bad.refused(f"exit 2: {err.strip()}")
    with pytest.raises(ConfigError, match="no certificate client-9"):
        ClientSecurity.from_dir(lab.pki, "client-9")


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")

