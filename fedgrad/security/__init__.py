"""Transport security for a federation, independent of gRPC and of the coordinator.

- ``certs``: a private CA with server and client certificates (TLS, mutual TLS) for the gRPC channel.
- ``tokens``: run-scoped client tokens (HMAC-SHA256), verified on every call, revocable, persisted for resume;
  and the clients' token file (its writer and its reader).
"""
from fedgrad.security.certs import (
    TlsIdentity,
    client_name,
    create_pki,
    load_identity,
    load_root_certificates,
)
from fedgrad.security.tokens import TokenIssuer, read_token_file, write_token_file

__all__ = [
    "TlsIdentity",
    "TokenIssuer",
    "client_name",
    "create_pki",
    "load_identity",
    "load_root_certificates",
    "read_token_file",
    "write_token_file",
]
