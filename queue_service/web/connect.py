"""`labelgrid.v1.QueueService` over Connect: the grpc.aio handlers, unchanged, behind the
generated Connect ASGI application.

The generated app calls snake_case methods with (request, RequestContext); the handlers are
CamelCase grpc.aio servicer methods taking (request, ServicerContext). The adapter maps the
name, gives the handlers the two things they use of a gRPC context (the request headers as
invocation metadata, so `authorization: Bearer` works as on gRPC; and `abort`, raised as a
ConnectError with the same code and message), and passes streams through. Leasing, auth and
change notification are the very same code and the same instance as the gRPC server's.
"""

from __future__ import annotations

import inspect
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import grpc
from connectrpc.code import Code
from connectrpc.compression.gzip import GzipCompression
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from labelgrid_proto.v1.queue_connect import QueueServiceASGIApplication
from queue_service.service import QueueService

# grpc.StatusCode.NOT_FOUND -> Code.NOT_FOUND ("not_found" on the wire), and so on
CODES = {status: Code[status.name] for status in grpc.StatusCode if status.name in Code.__members__}


class HandlerContext:
    """The part of grpc.aio.ServicerContext the handlers use; `metadata` gives the request's
    headers when a handler asks (most calls never do: no token is needed without auth)."""

    __slots__ = ("_metadata",)

    def __init__(self, metadata: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._metadata())

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise ConnectError(CODES.get(code, Code.UNKNOWN), details)


class ConnectQueueService:
    """Serves the generated Connect protocol by calling the gRPC handlers of `service`."""

    def __init__(self, service: QueueService) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Callable[..., Any]:
        camel = re.sub(r"(?:^|_)([a-z])", lambda m: m.group(1).upper(), name)
        handler = getattr(self._service, camel, None)
        if handler is None:
            raise AttributeError(name)
        if inspect.isasyncgenfunction(handler):  # server streaming

            def stream(request: Any, ctx: RequestContext) -> Any:
                return handler(request, HandlerContext(ctx.request_headers.items))

            return stream

        async def call(request: Any, ctx: RequestContext) -> Any:  # unary, client streaming
            return await handler(request, HandlerContext(ctx.request_headers.items))

        return call


class FitGzip(GzipCompression):
    """gzip with a window fitted to the message. Every browser accepts gzip, so every reply
    is compressed, most of them a few hundred bytes (a Submit's next item): zlib's default
    32 KiB window and hash table cost about 45 us to set up for each, a 1 KiB window 16 us
    (the output is as small, and any gzip reader reads it)."""

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        # deflate looks back at most the window less 262 bytes
        bits = max((len(data) + 262).bit_length(), 9)
        if bits >= 15:
            return super().compress(data)
        packer = zlib.compressobj(6, zlib.DEFLATED, 16 + bits, max(bits - 8, 1))
        return packer.compress(data) + packer.flush()


def connect_app(service: QueueService, read_max_bytes: int) -> QueueServiceASGIApplication:
    return QueueServiceASGIApplication(
        ConnectQueueService(service),  # type: ignore[arg-type]
        read_max_bytes=read_max_bytes,
        compressions=(FitGzip(),),
    )
