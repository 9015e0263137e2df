"""One ASGI app for browsers: Connect at `/labelgrid.v1.QueueService/<Method>` (the page's
unary calls through unary.py, the rest through connectrpc), the owner's
export downloads at `/export` (export.py), and the built page (`static/`, from clients/web)
at `/`."""

from __future__ import annotations

import gzip
import mimetypes
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from queue_service.service import QueueService
from queue_service.web.connect import connect_app
from queue_service.web.export import export_download
from queue_service.web.unary import PREFIX, UnaryPath

STATIC = Path(__file__).parent / "static"
EXPORT = "/export"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
# The page talks to its own origin only; pictures may come from http(s) URIs of items.
# No referrer leaves the page: a labeller link carries its token in the query string.
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob: http: https:; "
        b"style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; "
        b"frame-ancestors 'none'",
    ),
]


class StaticFiles:
    """The files under `root`, read once at start (the built page is a few small files) and
    gzipped once for clients that accept it; `/` is index.html. Hashed assets are cached for
    good, the page itself revalidated."""

    def __init__(self, root: Path) -> None:
        self.files: dict[str, tuple[bytes, bytes, bytes]] = {}
        self.gzipped: dict[str, bytes] = {}
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            if path.is_file():
                rel = "/" + path.relative_to(root).as_posix()
                kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
                cache = b"public, max-age=31536000, immutable" if "/assets/" in rel else b"no-cache"
                self.files[rel] = (
                    path.read_bytes(),
                    (kind or "application/octet-stream").encode(),
                    cache,
                )
        for rel, (body, kind, _) in self.files.items():
            if len(body) > 1024 and not kind.startswith((b"image/png", b"image/jpeg")):
                self.gzipped[rel] = gzip.compress(body, 9, mtime=0)
        if "/index.html" in self.files:
            self.files["/"] = self.files["/index.html"]
            if "/index.html" in self.gzipped:
                self.gzipped["/"] = self.gzipped["/index.html"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.files.get(scope["path"])
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed")
            return
        if found is None:
            why = b"not found" if self.files else b"the web app is not built: run `make web`"
            await _plain(send, 404, why)
            return
        body, kind, cache = found
        encoding: list[tuple[bytes, bytes]] = []
        packed = self.gzipped.get(scope["path"])
        if packed is not None:
            encoding.append((b"vary", b"accept-encoding"))
            accepts = b"".join(v for k, v in scope["headers"] if k == b"accept-encoding")
            if b"gzip" in accepts:
                body = packed
                encoding.append((b"content-encoding", b"gzip"))
        headers = [
            *encoding,
            (b"content-type", kind),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", cache),
            *HEADERS,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


async def _plain(send: Send, status: int, text: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def web_app(service: QueueService, read_max_bytes: int, static: Path = STATIC) -> Callable:
    """The ASGI app: Connect for the queue service's own handlers, exports, and the page."""
    rpc = connect_app(service, read_max_bytes)
    unary = UnaryPath(service, read_max_bytes)
    files = StaticFiles(static)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await rpc(scope, receive, send)  # lifespan
        elif (headers := unary.take(scope)) is not None:
            await unary.serve(headers, scope, receive, send)
        elif scope["path"].startswith(PREFIX):
            await rpc(scope, receive, send)
        elif scope["path"] == EXPORT:
            await export_download(service, scope, receive, send)
        else:
            await files(scope, receive, send)

    return app
