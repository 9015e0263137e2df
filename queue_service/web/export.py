"""`POST /export`: a project's labels as a file download (CSV, JSON lines, Parquet) for the
owner's view, the same bytes as `labelgrid export PROJECT --format …`.

The rows come from the service's own ExportLabels handler (so its auth check applies: admins
and trainers only) and are encoded by `labelgrid_proto.exportfile`, the encoder the CLI uses,
one reply at a time: the response streams and the server's memory stays flat (apart from a
consensus, which the handler computes from every vote, as for the CLI).

The token comes in an `authorization: Bearer` header, or, from the page, as a `token` field
of a form POST body: a browser streams a form's download straight to disk (a fetch would
hold the whole file in the page), and a body never shows in an address, history or referrer.
Query strings are ignored for the token on purpose.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, NoReturn
from urllib.parse import parse_qs, quote

import grpc

from labelgrid_proto import exportfile
from labelgrid_proto.v1 import queue_pb2
from queue_service.service import QueueService

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_FORM_BYTES = 16 * 1024
METHODS = {
    "majority": queue_pb2.CONSENSUS_MAJORITY,
    "dawid_skene": queue_pb2.CONSENSUS_DAWID_SKENE,
}
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
}
# like the page's headers, but an error may show in the page's own hidden frame
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'self'"),
]


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Context:
    """What the handlers use of a gRPC context: the caller's token, and abort."""

    def __init__(self, token: str) -> None:
        self.token = token

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Refused(code, details)


async def _form(receive: Receive) -> dict[str, str]:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the form is too large")
        if not message.get("more_body"):
            break
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _bearer(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"authorization" and value.startswith(b"Bearer "):
            return value[7:].decode("latin-1").strip()
    return ""


async def _chunks(stream: AsyncIterator[queue_pb2.ExportLabelsResponse]) -> AsyncIterator[list]:
    async for reply in stream:
        yield list(reply.items)


async def _primed(stream: AsyncIterator[list]) -> AsyncIterator[list]:
    """Read the first chunk now (where the handler checks the caller), before any byte of
    the response is sent, so a refusal still gets a proper status."""
    first = await anext(stream, None)

    async def rest() -> AsyncIterator[list]:
        if first is not None:
            yield first
        async for chunk in stream:
            yield chunk

    return rest()


def _disposition(project: str, fmt: str) -> bytes:
    name = f"{project}.{fmt}"
    plain = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name)}".encode()


async def _refuse(send: Send, code: grpc.StatusCode, message: str) -> None:
    name = code.name.lower()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS]
    status = HTTP_STATUS.get(code, 500)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": f"{name}: {message}".encode()})


async def export_download(
    service: QueueService, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve one export: POST project=P&format=csv|jsonl|parquet[&consensus=…][&token=…]."""
    if scope["method"] != "POST":
        await _refuse(send, grpc.StatusCode.INVALID_ARGUMENT, "POST the export form")
        return
    try:
        form = await _form(receive)
        project_name = form.get("project", "")
        fmt = form.get("format", "")
        try:
            exportfile.check_format(fmt)
        except ValueError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "Parquet exports need pyarrow beside the queue service: "
                "pip install 'labelgrid[export]'",
            )
        context = _Context(_bearer(scope) or form.get("token", ""))
        reply = await service.GetProject(queue_pb2.GetProjectRequest(project=project_name), context)
        try:
            method = exportfile.method_for(reply.project, form.get("consensus", "auto"))
        except ValueError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        annotations = await _primed(
            _chunks(
                service.ExportLabels(
                    queue_pb2.ExportLabelsRequest(project=project_name, by_item=True), context
                )
            )
        )
        consensus = (
            await _primed(
                _chunks(
                    service.ExportLabels(
                        queue_pb2.ExportLabelsRequest(
                            project=project_name, by_item=True, consensus=METHODS[method]
                        ),
                        context,
                    )
                )
            )
            if method
            else None
        )
    except Refused as exc:
        await _refuse(send, exc.code, str(exc))
        return
    encoder = exportfile.Encoder(fmt, reply.project, with_consensus=method is not None)
    headers = [
        (b"content-type", exportfile.CONTENT_TYPES[fmt].encode()),
        (b"content-disposition", _disposition(project_name, fmt)),
        *HEADERS,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    # Parquet's encoding is real work: off the event loop the labellers' calls share
    heavy = fmt == "parquet"

    async def run(step: Callable[..., bytes], *args: Any) -> None:
        data = await asyncio.to_thread(step, *args) if heavy else step(*args)
        if data:
            await send({"type": "http.response.body", "body": data, "more_body": True})

    await run(encoder.begin)
    async for part in exportfile.join_async(annotations, consensus):
        await run(encoder.add, part)
    await run(encoder.end)
    await send({"type": "http.response.body", "body": b""})
