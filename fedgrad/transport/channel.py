"""gRPC channel and server construction with the protocol's limits in one place.

Both ends set the same explicit message limit (rather than relying on gRPC's defaults) so that an
oversized message fails fast with RESOURCE_EXHAUSTED on whichever side receives it. Payloads never
come near it: they travel as chunks of ``codec.MAX_CHUNK_BYTES``.
"""
from __future__ import annotations

import grpc

from fedgrad.transport.codec import MAX_CHUNK_BYTES

#: Bumped on any incompatible change to proto/fedgrad.proto; Join refuses a mismatch.
PROTOCOL_VERSION = 1

#: Largest single gRPC message either side sends or accepts: one chunk plus generous header room.
MAX_MESSAGE_BYTES = 4 * MAX_CHUNK_BYTES

_MESSAGE_LIMITS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def open_channel(address: str) -> grpc.aio.Channel:
    """An asyncio channel to a coordinator at ``host:port`` (plain TCP for now)."""
    return grpc.aio.insecure_channel(address, options=_MESSAGE_LIMITS)


def new_server() -> grpc.aio.Server:
    """An asyncio gRPC server with the protocol's limits.

    ``so_reuseport`` is off so that binding a port another process already serves fails loudly
    instead of silently splitting connections between two coordinators.
    """
    return grpc.aio.server(options=[*_MESSAGE_LIMITS, ("grpc.so_reuseport", 0)])
