"""Refusing gRPC requests cleanly, shared by every fedgrad service (the coordinator's, the decryptors').

:class:`RefuseMalformedRequests` answers a request whose bytes do not decode with INVALID_ARGUMENT and a one-line
reason, instead of gRPC's UNKNOWN and a traceback; :data:`STATUS_CODES` maps each
:class:`~fedgrad.protocol.Refusal` kind to the gRPC status the caller receives.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import grpc
from google.protobuf.message import DecodeError

from fedgrad.protocol import Refusal

log = logging.getLogger("fedgrad.transport")


class _Malformed:
    """Stands in for a request whose bytes did not decode, so that the handler can refuse it properly."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class RefuseMalformedRequests(grpc.aio.ServerInterceptor):
    """Answers requests whose bytes do not decode with INVALID_ARGUMENT and a logged one-line reason.

    gRPC decodes a request before any handler runs; left alone it answers undecodable bytes with UNKNOWN
    and prints a traceback on the coordinator's stderr, as if the server had a bug.
    """

    async def intercept_service(self, continuation: Callable,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method, decode = details.method.rpartition("/")[2], handler.request_deserializer

        def decode_or_mark(data: bytes) -> object:
            try:
                return decode(data)
            except DecodeError as error:
                return _Malformed(f"malformed {method} message ({len(data)} bytes): {error}")

        if handler.unary_unary is not None:
            return handler._replace(request_deserializer=decode_or_mark,
                                    unary_unary=_checked_unary(handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(request_deserializer=decode_or_mark,
                                    unary_stream=_checked_unary_stream(handler.unary_stream))
        if handler.stream_unary is not None:
            return handler._replace(request_deserializer=decode_or_mark,
                                    stream_unary=_checked_stream_unary(handler.stream_unary))
        if handler.stream_stream is not None:
            return handler._replace(request_deserializer=decode_or_mark,
                                    stream_stream=_checked_stream_stream(handler.stream_stream))
        return handler


async def _refuse_malformed(context: grpc.aio.ServicerContext, request: _Malformed) -> None:
    log.warning("refused a call: %s", request.reason)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)


def _checked_unary(behavior: Callable) -> Callable:
    async def unary(request: object, context: grpc.aio.ServicerContext) -> object:
        if isinstance(request, _Malformed):
            await _refuse_malformed(context, request)
        return await behavior(request, context)
    return unary


def _checked_unary_stream(behavior: Callable) -> Callable:
    async def unary_stream(request: object, context: grpc.aio.ServicerContext) -> AsyncIterator[object]:
        if isinstance(request, _Malformed):
            await _refuse_malformed(context, request)
        async for response in behavior(request, context):
            yield response
    return unary_stream


def _checked_requests(requests: AsyncIterator[object], context: grpc.aio.ServicerContext) -> AsyncIterator[object]:
    async def checked() -> AsyncIterator[object]:
        async for request in requests:
            if isinstance(request, _Malformed):
                await _refuse_malformed(context, request)
            yield request
    return checked()


def _checked_stream_unary(behavior: Callable) -> Callable:
    async def stream_unary(requests: AsyncIterator[object], context: grpc.aio.ServicerContext) -> object:
        return await behavior(_checked_requests(requests, context), context)
    return stream_unary


def _checked_stream_stream(behavior: Callable) -> Callable:
    async def stream_stream(requests: AsyncIterator[object],
                            context: grpc.aio.ServicerContext) -> AsyncIterator[object]:
        async for response in behavior(_checked_requests(requests, context), context):
            yield response
    return stream_stream


#: The gRPC status a caller receives for each kind of refusal.
STATUS_CODES: dict[Refusal, grpc.StatusCode] = {
    Refusal.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.STALE: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Refusal.REVOKED: grpc.StatusCode.PERMISSION_DENIED,
    Refusal.RESOURCE: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

#: Inverse of STATUS_CODES: the refusal kind a caller reads back from a status code.
REFUSALS: dict[grpc.StatusCode, Refusal] = {code: kind for kind, code in STATUS_CODES.items()}
