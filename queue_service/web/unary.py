"""The page's unary calls (Submit, Pop, ...) answered in one step, beside connectrpc.

A labeller's click is one Connect unary POST. connectrpc's general path serves every protocol
and option (gRPC and gRPC-Web, JSON, GET, deadlines, interceptors, cancel on disconnect) and
costs about 0.2 ms of CPU per call doing so (in process): a headers object, a request
context, a deadline scope, and two tasks watching for a disconnect. Skipping it took about
15 % off the crowd benchmark's server CPU per label (bench/results/crowd_unary_ab.json).
This path takes only what the page sends: POST, `application/proto`, no request compression,
no `connect-timeout-ms`; reads the body, calls the same grpc.aio handler with the same
context adapter, and writes the reply (gzipped as connectrpc would) or the error
(connectrpc's own JSON and HTTP status). Anything else goes to connectrpc unchanged.

One difference, on purpose: a call is not cancelled when the browser goes away. A Submit that
reached the handler finishes (the label is kept) and its reply is dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from connectrpc._protocol import ConnectWireError
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import message_factory

from labelgrid_proto.v1 import queue_pb2
from queue_service.service import QueueService
from queue_service.web.connect import FitGzip, HandlerContext

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = "/labelgrid.v1.QueueService/"
# The page's unary calls, all short: a click's Submit (with its next item), a refill's Pop,
# skip and undo, and what it asks at start and after a training run.
METHODS = ("Submit", "Pop", "Release", "Undo", "ListLeases", "GetProject", "ListTrainingRuns")

_PROTO = (b"content-type", b"application/proto")
_VARY = (b"vary", b"Accept-Encoding")


def _gzip_accepted(value: bytes) -> bool:
    """connectrpc's negotiation: the first listed coding it knows (gzip or identity), exactly
    as spelled (`gzip;q=0` is not gzip)."""
    for part in value.split(b","):
        name = part.strip()
        if name in (b"gzip", b"identity"):
            return name == b"gzip"
    return False


def _first(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Each header's first value, as connectrpc reads them."""
    first: dict[bytes, bytes] = {}
    for key, value in headers:
        first.setdefault(key, value)
    return first


class UnaryPath:
    """Serves METHODS for requests shaped as the page sends them (`take(scope)` says whether
    this one is, `serve` answers it); the connectrpc app serves the rest."""

    def __init__(
        self,
        service: QueueService,
        read_max_bytes: int,
        methods: Iterable[str] = METHODS,
    ) -> None:
        described = queue_pb2.DESCRIPTOR.services_by_name["QueueService"].methods_by_name
        self._read_max_bytes = read_max_bytes
        self._gzip = FitGzip()
        self._routes: dict[str, tuple[Callable[..., Awaitable[Any]], Any]] = {}
        for name in methods:
            method = described[name]
            if method.client_streaming or method.server_streaming:
                raise ValueError(f"{name} is a stream: only unary calls take this path")
            request_type = message_factory.GetMessageClass(method.input_type)
            self._routes[PREFIX + name] = (getattr(service, name), request_type)

    def take(self, scope: Scope) -> dict[bytes, bytes] | None:
        """The request's headers (each one's first value) when it is shaped as the page sends
        it, else None."""
        if scope["method"] != "POST" or scope["path"] not in self._routes:
            return None
        first = _first(scope["headers"])
        page = (
            first.get(b"content-type") == b"application/proto"
            and b"connect-timeout-ms" not in first  # a deadline: connectrpc keeps it
            and first.get(b"content-encoding", b"identity") == b"identity"
            # another version: connectrpc's error says why
            and first.get(b"connect-protocol-version", b"1") == b"1"
        )
        return first if page else None

    async def serve(
        self, headers: dict[bytes, bytes], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Answer a request `take` took, with the headers it gave."""
        handler, request_type = self._routes[scope["path"]]
        gzip = _gzip_accepted(headers.get(b"accept-encoding", b""))
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nothing was asked yet
            body += message.get("body", b"")
            if len(body) > self._read_max_bytes:
                await _error(
                    send,
                    ConnectError(
                        Code.RESOURCE_EXHAUSTED,
                        f"message is larger than configured max {self._read_max_bytes}",
                    ),
                )
                return
            if not message.get("more_body", False):
                break
        try:
            request = request_type.FromString(bytes(body))
        except Exception as exc:  # protobuf's DecodeError, and whatever else it raises
            await _error(send, ConnectError(Code.INVALID_ARGUMENT, f"unmarshal message: {exc}"))
            return
        context = HandlerContext(lambda: _metadata(headers))
        try:
            data = (await handler(request, context)).SerializeToString()
        except ConnectError as exc:  # the handler's abort: its status and message
            await _error(send, exc)
            return
        except Exception as exc:  # a bug: answered as connectrpc would, then raised to log
            await _error(send, exc)
            raise
        if gzip:
            data = self._gzip.compress(data)
            coding = (b"content-encoding", b"gzip")
        else:
            coding = (b"content-encoding", b"identity")
        reply_headers = [_PROTO, coding, _VARY]
        await send({"type": "http.response.start", "status": 200, "headers": reply_headers})
        await send({"type": "http.response.body", "body": data})


def _metadata(headers: dict[bytes, bytes]) -> tuple[tuple[str, str], ...]:
    """The headers as connectrpc gives them: the first value of each, UTF-8 (a byte that is
    not is replaced; connectrpc answers such a request with an error)."""
    return tuple(
        (key.decode(errors="replace"), value.decode(errors="replace"))
        for key, value in headers.items()
    )


async def _error(send: Send, exc: Exception) -> None:
    """connectrpc's unary error: the code's HTTP status and `{"code", "message"}` JSON."""
    wire = ConnectWireError.from_exception(exc)
    headers = [(b"content-type", b"application/json")]
    await send(
        {"type": "http.response.start", "status": wire.to_http_status().code, "headers": headers}
    )
    await send({"type": "http.response.body", "body": wire.to_json_bytes()})
