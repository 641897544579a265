"""The gRPC face of a decryptor: decode requests, call `core.Decryptor` off the event loop, map refusals to status.

Every refusal ends the call with the gRPC status of its `Refusal` kind (as the coordinator's service does) and a
one-line message; undecodable requests are refused with INVALID_ARGUMENT by `RefuseMalformedRequests`. A
contribution's announced size is checked before a payload byte is buffered: against `max_payload_bytes` and,
once the session's first contribution has fixed it, against the exact size the session expects. Signature
checks, payload validation and partial decryption run in worker threads (`asyncio.to_thread`), so one slow
release does not stall other calls.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from fedgrad.crypto.errors import CryptoError
from fedgrad.crypto.wire import ciphertext_width
from fedgrad.decryptor.core import Decryptor, DecryptorRefusal
from fedgrad.errors import FedgradError
from fedgrad.protocol.refusal import Refusal
from fedgrad.security.certs import certificate_fingerprint
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import ServerSecurity, listen, new_server
from fedgrad.transport.codec import PayloadBuffer, WireError
from fedgrad.transport.interceptors import STATUS_CODES, RefuseMalformedRequests

log = logging.getLogger("fedgrad.decryptor")

#: Largest contribution payload accepted before the session's first one fixes the exact size (1 GiB).
MAX_PAYLOAD_BYTES = 1 << 30


class DecryptorService(pb_grpc.DecryptorServicer):
    def __init__(self, decryptor: Decryptor, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES,
                 coordinator_cert: str | None = None) -> None:
        """``coordinator_cert``: the SHA-256 (DER) of the only client certificate answered (a run policy's pin;
        the server must then require mutual TLS)."""
        self.decryptor = decryptor
        self.max_payload_bytes = max_payload_bytes
        self.coordinator_cert = coordinator_cert

    async def _check_peer(self, context: grpc.aio.ServicerContext, method: str) -> None:
        """Refuse (UNAUTHENTICATED) a caller that is not the pinned coordinator."""
        if self.coordinator_cert is None:
            return
        presented = list(context.auth_context().get("x509_pem_cert", []))
        try:
            fingerprint = certificate_fingerprint(presented[0]) if presented else None
        except FedgradError:
            fingerprint = None
        if fingerprint != self.coordinator_cert:
            await _abort(context, DecryptorRefusal(Refusal.UNAUTHENTICATED, "only the coordinator the run policy "
                                                   "pins may call this decryptor"), method)

    async def Open(self, request: pb.RoundOpening, context: grpc.aio.ServicerContext) -> pb.Ack:
        await self._check_peer(context, "Open")
        try:
            await asyncio.to_thread(self.decryptor.open, request.run_id, request.round, request.attempt,
                                    list(request.cohort), request.settings_digest, request.model_digest)
        except DecryptorRefusal as refusal:
            await _abort(context, refusal, "Open")
        return pb.Ack(detail=f"decryptor {self.decryptor.index}: opened")

    async def Contribute(self, request_iterator: AsyncIterator[pb.ContributionChunk],
                         context: grpc.aio.ServicerContext) -> pb.Ack:
        await self._check_peer(context, "Contribute")
        stream = aiter(request_iterator)
        first = await anext(stream, None)
        try:
            if first is None or first.WhichOneof("part") != "header":
                raise DecryptorRefusal(Refusal.INVALID, "a contribution stream must start with its header")
            header = first.header
            expected = await asyncio.to_thread(self.decryptor.expected_payload_bytes, header.run_id, header.round,
                                               header.attempt, header.client_id)
            size = header.payload_bytes
            if size > self.max_payload_bytes or (expected is not None and size != expected):
                raise DecryptorRefusal(Refusal.INVALID, f"contribution of client {header.client_id!r:.60} announces "
                                       f"{size} payload bytes; expected "
                                       f"{expected if expected is not None else f'at most {self.max_payload_bytes}'}")
            buffer = PayloadBuffer(size)
            async for chunk in stream:
                if chunk.WhichOneof("part") != "data":
                    raise DecryptorRefusal(Refusal.INVALID, "a contribution stream carries one header, at its start")
                buffer.append(chunk.data)
            payload = buffer.payload()
            await asyncio.to_thread(self.decryptor.contribute, header.run_id, header.round, header.attempt,
                                    header.client_id, header.weight, bytes(payload), header.signature,
                                    header.masked_sha256)
        except WireError as exc:
            await _abort(context, DecryptorRefusal(Refusal.INVALID, str(exc)), "Contribute")
        except DecryptorRefusal as refusal:
            await _abort(context, refusal, "Contribute")
        return pb.Ack(detail=f"decryptor {self.decryptor.index}: contribution of {header.client_id!r} folded in")

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.PartialDecryptions:
        await self._check_peer(context, "Release")
        try:
            partials, proof = await asyncio.to_thread(self.decryptor.release, request.run_id, request.round,
                                                      request.attempt, list(request.contributors))
        except DecryptorRefusal as refusal:
            await _abort(context, refusal, "Release")
        except CryptoError as exc:  # e.g. a partial-decryption worker failed after the round was recorded
            log.error("release of run %r round %d failed: %s", request.run_id, request.round, exc)
            await context.abort(grpc.StatusCode.INTERNAL, f"decryptor {self.decryptor.index}: {exc}")
        width = ciphertext_width(self.decryptor.key_set.public_key)
        timings = self.decryptor.timings.pop((request.run_id, request.round), {})
        return pb.PartialDecryptions(index=self.decryptor.index,
                                     partials=[int(c).to_bytes(width, "big") for c in partials],
                                     proof=proof.to_bytes(), **timings)


async def _abort(context: grpc.aio.ServicerContext, refusal: DecryptorRefusal, method: str) -> None:
    code = STATUS_CODES[refusal.kind]
    level = logging.WARNING if refusal.kind in (Refusal.UNAUTHENTICATED, Refusal.REVOKED) else logging.INFO
    log.log(level, "refused %s (%s): %s", method, code.name, refusal)
    await context.abort(code, str(refusal))


async def start_decryptor_server(decryptor: Decryptor, host: str, port: int,
                                 security: ServerSecurity | None = None, *,
                                 max_payload_bytes: int = MAX_PAYLOAD_BYTES,
                                 coordinator_cert: str | None = None) -> tuple[grpc.aio.Server, int]:
    """Serve `decryptor` on `host:port` (port 0 picks a free one), over TLS with `security`; returns the started
    server and its port. With `coordinator_cert` (a run policy's pin) `security` must be mutual TLS, and only the
    peer presenting that certificate is answered. Call from a running event loop (grpc.aio)."""
    if coordinator_cert is not None and (security is None or not security.mutual):
        raise FedgradError("a decryptor pinned to the coordinator's certificate serves mutual TLS only")
    server = new_server([RefuseMalformedRequests()])
    pb_grpc.add_DecryptorServicer_to_server(DecryptorService(decryptor, max_payload_bytes=max_payload_bytes,
                                                             coordinator_cert=coordinator_cert), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = listen(server, address, security)
    if not bound:
        raise FedgradError(f"cannot listen on {address} (address in use, or not an address of this machine)")
    await server.start()
    return server, bound
