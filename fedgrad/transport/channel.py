"""gRPC channel and server construction: the protocol's limits and transport security in one place.

Both ends set the same explicit message limit (rather than relying on gRPC's defaults) so that an
oversized message fails fast with RESOURCE_EXHAUSTED on whichever side receives it. Payloads never
come near it: they travel as chunks of ``codec.MAX_CHUNK_BYTES``.

Transport security is TLS with the federation's private CA (``fedgrad certs``, :mod:`fedgrad.security`):

- server-authenticated TLS: the coordinator presents ``server.pem``; clients trust only ``ca.pem``, so
  nobody can impersonate the coordinator or read the models and updates on the wire;
- mutual TLS (optional): clients must also present a certificate signed by the CA, so machines outside
  the federation cannot even open a connection. Which *client ids* a connection may speak for is not
  decided here but by the run's tokens (``server.registry``): several virtual clients share one process,
  one channel and therefore one certificate.

``None`` for the security argument means plaintext TCP; the CLIs only allow that when asked explicitly.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from fedgrad.errors import ConfigError
from fedgrad.security import client_name, load_identity, load_root_certificates
from fedgrad.security.certs import SERVER_NAME, cert_path, key_path
from fedgrad.transport.codec import MAX_CHUNK_BYTES

#: Bumped on any incompatible change to proto/fedgrad.proto; Join refuses a mismatch.
PROTOCOL_VERSION = 2

#: Largest single gRPC message either side sends or accepts: one chunk plus generous header room.
MAX_MESSAGE_BYTES = 4 * MAX_CHUNK_BYTES

_MESSAGE_LIMITS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


@dataclass(frozen=True)
class ServerSecurity:
    """What the coordinator presents (its certificate) and, for mutual TLS, the CA its clients must use."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None  # set: mutual TLS

    @classmethod
    def from_dir(cls, tls_dir: Path | str, *, mutual: bool = False) -> ServerSecurity:
        """``server.pem``/``server.key`` (and ``ca.pem`` for mutual TLS) from a ``fedgrad certs`` directory."""
        identity = load_identity(tls_dir, SERVER_NAME)
        return cls(identity.certificate_chain, identity.private_key, identity.root_certificates if mutual else None)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.private_key, self.certificate_chain)],
                                           root_certificates=self.client_ca, require_client_auth=self.mutual)


@dataclass(frozen=True)
class ClientSecurity:
    """The CA a client trusts for the coordinator and, for mutual TLS, the certificate it presents."""

    root_certificates: bytes
    private_key: bytes | None = None
    certificate_chain: bytes | None = None

    @classmethod
    def from_dir(cls, tls_dir: Path | str, identity: str | None = None) -> ClientSecurity:
        """``ca.pem`` from ``tls_dir``, plus ``identity``'s certificate and key when named.

        ``identity`` is a certificate name as ``fedgrad certs`` writes them (``client-3``); a named
        identity that is missing is an error, not a silent fall-back to server-only TLS.
        """
        if identity is None:
            return cls(load_root_certificates(tls_dir))
        if not cert_path(Path(tls_dir), identity).exists() or not key_path(Path(tls_dir), identity).exists():
            raise ConfigError(f"{tls_dir}: no certificate {identity}.pem/{identity}.key for mutual TLS "
                              f"(create it with: fedgrad certs {tls_dir} --clients N)")
        loaded = load_identity(tls_dir, identity)
        return cls(loaded.root_certificates, loaded.private_key, loaded.certificate_chain)

    @classmethod
    def for_clients(cls, tls_dir: Path | str, client_ids: list[str]) -> ClientSecurity:
        """Server-authenticated TLS, presenting ``client-<K>`` for the first hosted client K if the
        directory holds that certificate (what mutual TLS needs; harmless otherwise)."""
        first = client_ids[0] if client_ids else ""
        name = client_name(int(first)) if first.isdigit() else first
        has_identity = bool(name) and cert_path(Path(tls_dir), name).exists()
        return cls.from_dir(tls_dir, name if has_identity else None)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)


def open_channel(address: str, security: ClientSecurity | None = None) -> grpc.aio.Channel:
    """An asyncio channel to a coordinator at ``host:port``: TLS with ``security``, plaintext without."""
    if security is None:
        return grpc.aio.insecure_channel(address, options=_MESSAGE_LIMITS)
    return grpc.aio.secure_channel(address, security.credentials(), options=_MESSAGE_LIMITS)


def open_blocking_channel(address: str, security: ClientSecurity | None = None) -> grpc.Channel:
    """A blocking (thread-friendly) channel to ``host:port`` with the same limits and security as
    :func:`open_channel`; the decryptor pool calls it from worker threads."""
    if security is None:
        return grpc.insecure_channel(address, options=_MESSAGE_LIMITS)
    return grpc.secure_channel(address, security.credentials(), options=_MESSAGE_LIMITS)


def new_server(interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> grpc.aio.Server:
    """An asyncio gRPC server with the protocol's limits; call it from the event loop that will run it.

    ``so_reuseport`` is off so that binding a port another process already serves fails loudly
    instead of silently splitting connections between two coordinators.
    """
    ignore_cancelled_rpcs(asyncio.get_running_loop())
    return grpc.aio.server(interceptors=list(interceptors), options=[*_MESSAGE_LIMITS, ("grpc.so_reuseport", 0)])


def listen(server: grpc.aio.Server, address: str, security: ServerSecurity | None = None) -> int:
    """Bind ``server`` to ``address`` (TLS with ``security``); the port bound, 0 when binding failed."""
    try:
        if security is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, security.credentials())
    except RuntimeError:
        return 0


def ignore_cancelled_rpcs(loop: asyncio.AbstractEventLoop) -> None:
    """Keep the cancellations of an interrupted server (coordinator or decryptor) out of its output. Ctrl-C or
    SIGTERM cancels the gRPC server's in-flight RPC tasks, and grpc.aio hands some of those cancellations to the
    loop's exception handler, which logs each with a traceback (grpc/grpc#24716). At shutdown they are expected;
    every other exception still reaches asyncio's default handler."""
    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not isinstance(context.get("exception"), asyncio.CancelledError):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
