"""gRPC channels for the clients: plain or TLS (optionally with a client certificate), with
an API token sent as `authorization: Bearer …` metadata on every call."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import grpc

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Token(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self.header]
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


def _read(path: str | os.PathLike | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def credentials(tls_ca: str | None, tls_cert: str | None, tls_key: str | None):
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls_ca),
        private_key=_read(tls_key),
        certificate_chain=_read(tls_cert),
    )


def channel(
    address: str,
    *,
    token: str | None = None,
    tls: bool = False,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> grpc.Channel:
    """A sync channel; TLS when `tls` or any certificate path is given. The token defaults
    to the LABELGRID_TOKEN environment variable."""
    token = token if token is not None else os.environ.get("LABELGRID_TOKEN") or None
    if tls or tls_ca or tls_cert:
        chan = grpc.secure_channel(address, credentials(tls_ca, tls_cert, tls_key), OPTIONS)
    else:
        chan = grpc.insecure_channel(address, OPTIONS)
    return grpc.intercept_channel(chan, _Token(token)) if token else chan
