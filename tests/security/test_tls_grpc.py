"""The generated certificates work on a real gRPC channel (raw-bytes method, no stubs): TLS, mutual TLS,
and refusal when either side does not trust the other's CA."""
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import cast

import grpc
import pytest

from fedgrad.security import create_pki, load_identity, load_root_certificates

METHOD = "/fedgrad.test.Echo/Echo"
TIMEOUT_S = 10


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    common_name = cast(bytes, context.auth_context().get("x509_common_name", [b"-"])[0])  # stubs say int | bytes
    return request + b"|" + common_name


@contextmanager
def _server(pki_dir, *, mutual: bool) -> Iterator[int]:
    identity = load_identity(pki_dir, "server")
    credentials = grpc.ssl_server_credentials(
        [(identity.private_key, identity.certificate_chain)],
        root_certificates=identity.root_certificates if mutual else None,
        require_client_auth=mutual,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "fedgrad.test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("localhost:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def _call(target: str, credentials: grpc.ChannelCredentials) -> bytes:
    with grpc.secure_channel(target, credentials) as channel:
        echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        return echo(b"ping", timeout=TIMEOUT_S, wait_for_ready=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    create_pki(root / "federation", clients=1)
    create_pki(root / "stranger", clients=1)
    return root


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_call_succeeds_with_the_federation_ca(pki, host):
    with _server(pki / "federation", mutual=False) as port:
        credentials = grpc.ssl_channel_credentials(root_certificates=load_root_certificates(pki / "federation"))
        assert _call(f"{host}:{port}", credentials) == b"ping|-"


def test_mutual_tls_call_succeeds_and_server_sees_the_client_name(pki):
    client = load_identity(pki / "federation", "client-0")
    credentials = grpc.ssl_channel_credentials(client.root_certificates, client.private_key, client.certificate_chain)
    with _server(pki / "federation", mutual=True) as port:
        assert _call(f"localhost:{port}", credentials) == b"ping|client-0"


def test_client_trusting_another_ca_refuses_the_server(pki):
    with _server(pki / "federation", mutual=False) as port:
        credentials = grpc.ssl_channel_credentials(root_certificates=load_root_certificates(pki / "stranger"))
        with pytest.raises(grpc.RpcError) as failure:
            _call(f"localhost:{port}", credentials)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "CERTIFICATE_VERIFY_FAILED" in (failure.value.details() or "")


@pytest.mark.parametrize("client_pki", ["stranger", None])
def test_mutual_tls_server_refuses_clients_without_a_federation_certificate(pki, client_pki):
    roots = load_root_certificates(pki / "federation")
    if client_pki is None:
        credentials = grpc.ssl_channel_credentials(roots)
    else:
        stranger = load_identity(pki / client_pki, "client-0")
        credentials = grpc.ssl_channel_credentials(roots, stranger.private_key, stranger.certificate_chain)
    with _server(pki / "federation", mutual=True) as port:
        with pytest.raises(grpc.RpcError) as failure:
            _call(f"localhost:{port}", credentials)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
