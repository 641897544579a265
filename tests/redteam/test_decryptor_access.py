"""Anyone who reaches a decryptor's port, against a real decryptor served over gRPC.

Unpinned (plaintext, any run id): an outsider opens sessions under made-up run ids until the coordinator's open
session is evicted, and the round is lost. Pinned to a run policy (its run, mutual TLS answering only the
coordinator's pinned certificate, as ``simulate`` starts decryptors): an outsider without a certificate cannot
complete a handshake, one with another certificate of the same CA is refused, and made-up run ids are refused
even on the coordinator's own channel, whose session stays open.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import grpc
import pytest

from fedgrad.crypto import InsecureKeyWarning
from fedgrad.decryptor.core import MAX_OPEN_SESSIONS, DecryptorRefusal
from fedgrad.decryptor.service import start_decryptor_server
from fedgrad.experiments.redteam import enroll_clients, local_decryptors
from fedgrad.protocol import Refusal
from fedgrad.security.certs import certificate_fingerprint, client_name, create_pki
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import ClientSecurity, ServerSecurity, open_blocking_channel

COHORT = ["c0", "c1", "c2"]
RUN = "the-policys-run"


def _decryptor(tmp_path: Path, run_id: str | None):
    _, enrollment = enroll_clients(tmp_path / "clients", COHORT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        local = local_decryptors(tmp_path / "decryptors", key_bits=512, parties=3, threshold=2,
                                 enrollment=enrollment, min_clients=2, insecure_key_bits=True, run_id=run_id)
    return local.parties[0]


def _outsider_floods(stub: pb_grpc.DecryptorStub) -> list[grpc.StatusCode]:
    codes = []
    for index in range(MAX_OPEN_SESSIONS):
        try:
            stub.Open(pb.RoundOpening(run_id=f"made-up-{index}", round=1, attempt=1, cohort=COHORT), timeout=10)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
    return codes


def test_an_outsider_evicts_the_coordinators_session_from_an_unpinned_decryptor(tmp_path, loop_thread):
    decryptor = _decryptor(tmp_path, None)
    server, port = loop_thread.run(start_decryptor_server(decryptor, "127.0.0.1", 0))
    try:
        decryptor.open(RUN, 1, 1, COHORT)  # the coordinator's round
        with open_blocking_channel(f"127.0.0.1:{port}") as channel:
            assert set(_outsider_floods(pb_grpc.DecryptorStub(channel))) == {grpc.StatusCode.OK}
        with pytest.raises(DecryptorRefusal, match="is not open at this decryptor") as info:
            decryptor.expected_payload_bytes(RUN, 1, 1, "c0")
        assert info.value.kind == Refusal.STALE
    finally:
        loop_thread.run(server.stop(0))
        decryptor.close()


def test_a_decryptor_pinned_to_the_policy_serves_only_the_coordinator(tmp_path, loop_thread):
    tls = tmp_path / "tls"
    create_pki(tls, clients=2)  # client-0: the coordinator's; client-1: another holder of a certificate
    create_pki(tmp_path / "other-ca", clients=1)
    decryptor = _decryptor(tmp_path, RUN)
    pin = certificate_fingerprint((tls / "client-0.pem").read_bytes())
    server, port = loop_thread.run(start_decryptor_server(decryptor, "127.0.0.1", 0,
                                                          ServerSecurity.from_dir(tls, mutual=True),
                                                          coordinator_cert=pin))
    address = f"127.0.0.1:{port}"
    try:
        coordinator = open_blocking_channel(address, ClientSecurity.from_dir(tls, client_name(0)))
        stub = pb_grpc.DecryptorStub(coordinator)
        stub.Open(pb.RoundOpening(run_id=RUN, round=1, attempt=1, cohort=COHORT), timeout=10)
        for security in (ClientSecurity.from_dir(tls),  # no client certificate
                         ClientSecurity(ClientSecurity.from_dir(tls).root_certificates,  # one from another CA
                                        *_identity(tmp_path / "other-ca"))):
            with open_blocking_channel(address, security) as outsider:
                assert set(_outsider_floods(pb_grpc.DecryptorStub(outsider))) == {grpc.StatusCode.UNAVAILABLE}
        with open_blocking_channel(address, ClientSecurity.from_dir(tls, client_name(1))) as same_ca:
            assert set(_outsider_floods(pb_grpc.DecryptorStub(same_ca))) == {grpc.StatusCode.UNAUTHENTICATED}
        # made-up run ids are refused even on the coordinator's channel, and evict nothing
        assert set(_outsider_floods(stub)) == {grpc.StatusCode.FAILED_PRECONDITION}
        assert decryptor.expected_payload_bytes(RUN, 1, 1, "c0") is None  # the coordinator's session is open
        coordinator.close()
    finally:
        loop_thread.run(server.stop(0))
        decryptor.close()


def _identity(directory: Path) -> tuple[bytes, bytes]:
    other = ClientSecurity.from_dir(directory, client_name(0))
    assert other.private_key is not None and other.certificate_chain is not None
    return other.private_key, other.certificate_chain
