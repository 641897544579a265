"""Decryptors over real gRPC on localhost: the service's refusals, and the coordinator's pool surviving deaths."""
from __future__ import annotations

import grpc
import pytest

from fedgrad.decryptor.pool import DecryptorPool, ReleaseFailed
from fedgrad.decryptor.service import start_decryptor_server
from fedgrad.protocol import Refusal
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import open_blocking_channel

RUN = "run-p"
COHORT = ("alice", "bob", "carol")
VALUES = {"alice": [1, 2, 3], "bob": [10, 20, 30], "carol": [100, 200, 300], "dave": [7, 7, 7]}


@pytest.fixture
def cluster(setup, tmp_path, loop_thread):
    """Three decryptor servers (shares 1..3) on one background loop; yields (addresses, servers, decryptors)."""
    decryptors = [setup.decryptor(i, tmp_path / f"d{i}") for i in (1, 2, 3)]
    servers, addresses = [], []
    for decryptor in decryptors:
        server, port = loop_thread.run(start_decryptor_server(decryptor, "127.0.0.1", 0))
        servers.append(server)
        addresses.append(f"127.0.0.1:{port}")
    yield addresses, servers, decryptors
    for server in servers:
        loop_thread.run(server.stop(0))
    for decryptor in decryptors:
        decryptor.close()


def signed(setup, client, round=1, cohort=COHORT, weight=1):
    payload = setup.payload(VALUES[client])
    return payload, setup.sign(client, RUN, round, cohort, payload, weight)


def product(setup, payloads):
    from fedgrad.crypto.wire import load_payload, read_header
    nsquare = setup.n * setup.n
    out = None
    for payload in payloads:
        header = read_header(payload)
        cts = load_payload(payload, pub=setup.keys.public_key, fingerprint=header.fingerprint,
                           count=header.count).ciphertexts
        out = cts if out is None else [a * b % nsquare for a, b in zip(out, cts, strict=True)]
    return [int(c) for c in out]


def test_pool_round_trip_and_forged_contribution(setup, cluster):
    addresses, _, decryptors = cluster
    with DecryptorPool(addresses, setup.keys, timeout_s=20) as pool:
        pool.open(RUN, 1, 0, COHORT)
        forged = setup.payload(VALUES["dave"])
        refusals = pool.contribute(RUN, 1, 0, "carol", 1, forged, setup.sign("alice", RUN, 1, COHORT, forged, 1))
        assert [r.kind for r in refusals.result(20)] == [Refusal.UNAUTHENTICATED] * 3
        assert pool.alive == [1, 2, 3]  # a refusal is not death
        payloads = {}
        for client in COHORT:
            payloads[client], signature = signed(setup, client)
            assert pool.contribute(RUN, 1, 0, client, 1, payloads[client], signature).result(20) == []
        assert sorted((i, who) for i, who, _ in pool.refusals(RUN, 1, 0)) == [(1, "carol"), (2, "carol"), (3, "carol")]
        with pytest.raises(ReleaseFailed, match="never contributed here"):
            pool.open(RUN, 2, 0, COHORT)
            pool.release(RUN, 2, 0, ["alice", "bob"], [1])
        assert pool.release(RUN, 1, 0, list(COHORT), product(setup, payloads.values())) == [111, 222, 333]
        with pytest.raises(ReleaseFailed, match="already released"):
            pool.release(RUN, 1, 0, list(COHORT), product(setup, payloads.values()))
    assert all(d.released(RUN, 1) for d in decryptors)


def test_pool_survives_k_minus_t_deaths_and_fails_beyond(setup, cluster, loop_thread):
    addresses, servers, _ = cluster
    with DecryptorPool(addresses, setup.keys, timeout_s=20) as pool:
        for round_ in (1, 2):
            pool.open(RUN, round_, 0, COHORT)
        payloads: dict[int, dict[str, bytes]] = {1: {}, 2: {}}
        for i, client in enumerate(COHORT):
            if i == 1:  # decryptor 3 dies mid-round
                loop_thread.run(servers[2].stop(0))
            for round_ in (1, 2):
                payloads[round_][client], signature = signed(setup, client, round=round_)
                pool.contribute(RUN, round_, 0, client, 1, payloads[round_][client], signature)
        assert pool.release(RUN, 1, 0, list(COHORT), product(setup, payloads[1].values())) == [111, 222, 333]
        assert pool.alive == [1, 2]
        loop_thread.run(servers[1].stop(0))  # a second death: one live share is below t = 2
        with pytest.raises(ReleaseFailed, match=r"1 of 2 live|only 1 decryptor"):
            pool.release(RUN, 2, 0, list(COHORT), product(setup, payloads[2].values()))
        assert pool.alive == [1]


def test_service_refuses_malformed_and_oversized_streams(setup, cluster):
    addresses, _, _ = cluster
    channel = open_blocking_channel(addresses[0])
    stub = pb_grpc.DecryptorStub(channel)
    try:
        stub.Open(pb.RoundOpening(run_id=RUN, round=1, attempt=0, cohort=list(COHORT)), timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            stub.Open(pb.RoundOpening(run_id=RUN, round=1, attempt=0, cohort=list(COHORT)), timeout=10)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as info:
            stub.Contribute(iter([pb.ContributionChunk(data=b"x")]), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        header = pb.ContributionHeader(run_id=RUN, round=1, attempt=0, client_id="alice", weight=1,
                                       signature=bytes(64), payload_bytes=1 << 40)
        with pytest.raises(grpc.RpcError) as info:
            stub.Contribute(iter([pb.ContributionChunk(header=header)]), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "announces" in (info.value.details() or "")
        payload, signature = signed(setup, "alice")
        header = pb.ContributionHeader(run_id=RUN, round=1, attempt=0, client_id="alice", weight=1,
                                       signature=signature, payload_bytes=len(payload) + 5)
        with pytest.raises(grpc.RpcError) as info:  # stream shorter than announced
            stub.Contribute(iter([pb.ContributionChunk(header=header), pb.ContributionChunk(data=payload)]),
                            timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        undecodable: grpc.UnaryUnaryMultiCallable = channel.unary_unary("/fedgrad.Decryptor/Release")
        with pytest.raises(grpc.RpcError) as info:
            undecodable(b"\xff\xff\xff", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            stub.Release(pb.ReleaseRequest(run_id=RUN, round=1, attempt=0, contributors=["alice"]), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()
