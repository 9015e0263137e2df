"""Run the queue service: gRPC server, health checking, reflection, graceful shutdown; with a
web address also HTTP (the labelling web app and Connect), on the same loop and handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from labelgrid_proto.v1 import queue_pb2, queue_pb2_grpc
from labelgrid_serving import security
from labelgrid_serving.security import ConfigError
from queue_service.auth import Authenticator
from queue_service.config import Settings, is_loopback, split_address
from queue_service.metrics import QueueMetrics
from queue_service.service import QueueService
from queue_service.store import Store
from queue_service.store.changes import ChangeFeed

log = logging.getLogger("labelgrid.queue")

SERVICE_NAME = queue_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name
KEEP_ALIVE_SECONDS = 75


class QueueServer:
    """A started queue service; `stop()` lets in-flight calls finish first."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port = 0
        self.web_port = 0
        self.metrics_port = 0
        self.metrics: QueueMetrics | None = None
        self._probe: asyncio.Task | None = None
        self._web: Any = None  # uvicorn.Server
        self._web_loop: asyncio.Task | None = None
        self._feed: ChangeFeed | None = None

    async def start(self) -> int:
        s = self.settings
        check_security(s)
        check_positive(s)
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
        self.port = security.listen(self.server, s.address, credentials)
        # changes made here are told to the other replicas (once the feed has started)
        self._feed = self.store.change_feed()
        self.service.notifier.publish = self._feed.publish
        await self.server.start()
        if s.web_address:
            await self._start_web()
        # changes made through other replicas wake this one's watchers (store/changes.py)
        await self._feed.start(
            self.service.notifier.notify_remote, self.service.notifier.notify_waiting
        )
        await self._set_health(True)
        self._probe = asyncio.create_task(self._probe_database())
        if self.metrics is not None:
            self.metrics_port = self.metrics.start(s.metrics_address)
        for address in (s.address, s.web_address):
            if address and not s.auth and not is_loopback(address):
                log.warning("serving without authentication", extra={"address": address})
        log.info(
            "queue service started",
            extra={
                "address": s.address,
                "port": self.port,
                "web_address": s.web_address,
                "web_port": self.web_port,
                "metrics_port": self.metrics_port,
                "auth": s.auth,
                "tls": credentials is not None,
                "database": _safe_url(s.database_url),
            },
        )
        return self.port

    async def _start_web(self) -> None:
        """uvicorn on this loop, serving the web app over the same QueueService instance
        (same store, auth and change notifier as gRPC)."""
        import uvicorn

        from queue_service.web.app import web_app

        s = self.settings
        host, port = split_address(s.web_address)
        tls: dict[str, Any] = {}
        if s.tls_cert:
            tls = {"ssl_certfile": s.tls_cert, "ssl_keyfile": s.tls_key}
            if s.tls_client_ca:
                import ssl

                tls.update(ssl_ca_certs=s.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
        config = uvicorn.Config(
            web_app(self.service, s.max_message_bytes),
            host=host,
            port=port,
            lifespan="off",
            ws="none",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            # idle connections kept this long, as nginx does by default: with uvicorn's 5 s,
            # a page's connection idle between two labels was closed just as its next request
            # went out (failed connections at 2,000+ pages, bench/results/crowd_keepalive_ab.json)
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=int(s.shutdown_grace),
            **tls,
        )
        web = uvicorn.Server(config)
        config.load()
        web.lifespan = config.lifespan_class(config)
        try:
            await web.startup()  # binds now, so a taken port fails the start
        except SystemExit:
            raise ConfigError(
                f"cannot listen on {s.web_address} (--web-address): the port is taken "
                "(another labelgrid?) or the address is not on this machine"
            ) from None
        self._web = web
        self.web_port = web.servers[0].sockets[0].getsockname()[1]
        self._web_loop = asyncio.create_task(web.main_loop())

    async def _stop_web(self) -> None:
        if self._web is None:
            return
        self._web.should_exit = True
        if self._web_loop is not None:
            await self._web_loop
        await self._web.shutdown()

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
            await asyncio.gather(self.server.stop(self.settings.shutdown_grace), self._stop_web())
        service = getattr(self, "service", None)  # set once start got that far
        if service is not None:
            await service.routing.close()
        if self.metrics is not None:
            await self.metrics.stop()
        if self._feed is not None:
            await self._feed.close()
        if self.store is not None:
            await self.store.close()
        log.info("queue service stopped")


def check_security(s: Settings) -> None:
    for address in (s.address, s.web_address):
        if not address:
            continue
        security.check_security(
            address,
            auth=s.auth,
            insecure_no_auth=s.insecure_no_auth,
            tls_cert=s.tls_cert,
            tls_key=s.tls_key,
            tls_client_ca=s.tls_client_ca,
            how_to_auth=(
                "--auth (LABELGRID_AUTH=true) and create tokens with `labelgrid token create`"
            ),
        )


def check_positive(s: Settings) -> None:
    """Settings that would spin or divide by zero when not positive."""
    for name in ("follow_poll_seconds", "progress_messages_per_second"):
        if not getattr(s, name) > 0:
            raise ConfigError(f"LABELGRID_{name.upper()} must be positive; got {getattr(s, name)}")


def server_credentials(s: Settings) -> grpc.ServerCredentials | None:
    return security.server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    server = QueueServer(settings)
    try:
        await server.start()
    except BaseException:
        await server.stop()  # what did start (gRPC, the store) closes cleanly
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


__all__ = ["ConfigError", "QueueServer", "check_security", "serve", "server_credentials"]
