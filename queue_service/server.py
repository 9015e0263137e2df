"""Run the queue service: gRPC server, health checking, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from labelgrid_proto.v1 import queue_pb2, queue_pb2_grpc
from labelgrid_serving import security
from labelgrid_serving.security import ConfigError
from queue_service.auth import Authenticator
from queue_service.config import Settings, is_loopback
from queue_service.metrics import QueueMetrics
from queue_service.service import QueueService
from queue_service.store import Store

log = logging.getLogger("labelgrid.queue")

SERVICE_NAME = queue_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name


class QueueServer:
    """A started queue service; `stop()` lets in-flight calls finish first."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port = 0
        self.metrics_port = 0
        self.metrics: QueueMetrics | None = None
        self._probe: asyncio.Task | None = None

    async def start(self) -> int:
        s = self.settings
        check_security(s)
        self.store = await Store.open(
            s.database_url, s.db_pool_size, s.sqlite_synchronous, s.db_pool_timeout
        )
        options = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self.metrics = QueueMetrics(self.store, s.metrics_interval) if s.metrics_address else None
        interceptors = [self.metrics.interceptor()] if self.metrics else []
        self.server = grpc.aio.server(options=options, interceptors=interceptors)
        self.service = QueueService(
            self.store, s, Authenticator(self.store, s.auth, s.auth_cache_seconds)
        )
        queue_pb2_grpc.add_QueueServiceServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        credentials = server_credentials(s)
        if credentials is None:
            self.port = self.server.add_insecure_port(s.address)
        else:
            self.port = self.server.add_secure_port(s.address, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {s.address}")
        await self.server.start()
        await self._set_health(True)
        self._probe = asyncio.create_task(self._probe_database())
        if self.metrics is not None:
            self.metrics_port = self.metrics.start(s.metrics_address)
        if not s.auth and not is_loopback(s.address):
            log.warning("serving without authentication", extra={"address": s.address})
        log.info(
            "queue service started",
            extra={
                "address": s.address,
                "port": self.port,
                "metrics_port": self.metrics_port,
                "auth": s.auth,
                "tls": credentials is not None,
                "database": _safe_url(s.database_url),
            },
        )
        return self.port

    async def _set_health(self, ok: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _probe_database(self) -> None:
        """Report NOT_SERVING on health while the database cannot be reached."""
        assert self.store is not None
        healthy = True
        while True:
            await asyncio.sleep(self.settings.health_interval)
            try:
                await asyncio.wait_for(self.store.ping(), self.settings.health_interval * 2)
                ok = True
            except Exception:
                ok = False
            if ok != healthy:
                log.warning("database health changed", extra={"serving": ok})
                await self._set_health(ok)
                healthy = ok

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            self.service.notifier.close()
            await self.server.stop(self.settings.shutdown_grace)
        if self.metrics is not None:
            await self.metrics.stop()
        if self.store is not None:
            await self.store.close()
        log.info("queue service stopped")


def check_security(s: Settings) -> None:
    security.check_security(
        s.address,
        auth=s.auth,
        insecure_no_auth=s.insecure_no_auth,
        tls_cert=s.tls_cert,
        tls_key=s.tls_key,
        tls_client_ca=s.tls_client_ca,
        how_to_auth="--auth (LABELGRID_AUTH=true) and create tokens with `labelgrid token create`",
    )


def server_credentials(s: Settings) -> grpc.ServerCredentials | None:
    return security.server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    server = QueueServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


__all__ = ["ConfigError", "QueueServer", "check_security", "serve", "server_credentials"]
