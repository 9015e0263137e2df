"""Prometheus metrics of a gRPC server, served over HTTP when asked (`--metrics-address
HOST:PORT` or LABELGRID_METRICS_ADDRESS; off by default).

Every server gets `labelgrid_rpc_requests_total` and `labelgrid_rpc_duration_seconds` by
service, method and status code (from a server interceptor, so every RPC counts, refused
ones included), `labelgrid_rpc_in_flight`, and the process's own memory, CPU and file
descriptors (`labelgrid_process_*`). Each server keeps its own registry, so two servers in one
process (tests, the embedded mode) do not mix their numbers; the queue service and the
trainer add their own gauges to it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

# from a quarter of a millisecond (a cached read) to a minute (a big upload or re-rank)
BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BUCKETS += (5, 10, 30, 60)


class Metrics:
    """The registry of one server, its RPC metrics, and the HTTP endpoint that serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(namespace="labelgrid", registry=self.registry)
        labels = ["service", "method", "code"]
        self.requests = Counter(
            "labelgrid_rpc_requests",
            "RPCs handled, by service, method and gRPC status code",
            labels,
            registry=self.registry,
        )
        self.seconds = Histogram(
            "labelgrid_rpc_duration_seconds",
            "Time from an RPC's arrival to its status (streams: to their end), by code",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "labelgrid_rpc_in_flight",
            "RPCs being handled now (follow and watch streams included)",
            ["service", "method"],
            registry=self.registry,
        )
        self._http: Any = None

    def gauge(self, name: str, documentation: str, labels: list[str] | None = None) -> Gauge:
        return Gauge(name, documentation, labels or [], registry=self.registry)

    def histogram(
        self, name: str, documentation: str, labels: list[str], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return _Recorder(self)

    def serve(self, address: str) -> int:
        """Serve /metrics over HTTP on HOST:PORT (port 0: any free one); returns the port."""
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(int(port), host.strip("[]") or "0.0.0.0", self.registry)
        self._http = server
        return int(server.server_address[1])

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def _code(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)


class _Recorder(grpc.aio.ServerInterceptor):
    """Wraps every handler to count its status and time it."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        path, _, method = details.method.lstrip("/").rpartition("/")
        service = path.rpartition(".")[2]
        m = self.metrics

        def record(code: grpc.StatusCode, started: float) -> None:
            m.requests.labels(service, method, code.name).inc()
            m.seconds.labels(service, method, code.name).observe(time.perf_counter() - started)

        for kind, make in (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        ):
            behavior = getattr(handler, kind)
            if behavior is not None:
                gauge = m.in_flight.labels(service, method)
                return make(
                    _wrap(behavior, record, gauge),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


class _Measured:
    """What both wrappers account for a call: the in-flight gauge while it runs, and its
    status and duration when it ends (CANCELLED when cancelled, else the context's code)."""

    __slots__ = ("context", "gauge", "record", "started")

    def __init__(self, context: grpc.aio.ServicerContext, record: Callable, gauge: Gauge) -> None:
        self.context, self.record, self.gauge = context, record, gauge

    def __enter__(self) -> None:
        self.started = time.perf_counter()
        self.gauge.inc()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.gauge.dec()
        if kind is None:
            code = _code(self.context, grpc.StatusCode.OK)
        elif issubclass(kind, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        else:
            code = _code(self.context, grpc.StatusCode.UNKNOWN)
        self.record(code, self.started)


def _wrap(behavior: Callable, record: Callable, gauge: Gauge) -> Callable:
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with _Measured(context, record, gauge):
                async for message in behavior(request, context):
                    yield message

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with _Measured(context, record, gauge):
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

    return call
