"""Run the trainer service: gRPC server, health, reflection, graceful shutdown; auth, TLS
and metrics as the queue service has them."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from labelgrid_proto.v1 import trainer_pb2, trainer_pb2_grpc
from labelgrid_serving import security
from trainer_service.auth import TokenChecker
from trainer_service.config import TrainerSettings
from trainer_service.loop import RunResult
from trainer_service.service import TrainerService

log = logging.getLogger("labelgrid.trainer")

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name
# a run takes from a fraction of a second (a small model) to many minutes
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class TrainerMetrics:
    """Training runs as Prometheus metrics, on top of the RPC metrics every server has."""

    def __init__(self) -> None:
        from labelgrid_serving.metrics import Metrics

        self.metrics = m = Metrics()
        labels = ["project", "status"]
        self.runs = m.counter("labelgrid_training_runs", "Training runs, by outcome", labels)
        self.seconds = m.histogram(
            "labelgrid_training_run_duration_seconds",
            "How long a training run took (fit, score, re-rank)",
            labels,
            RUN_BUCKETS,
        )
        self.score = m.gauge(
            "labelgrid_training_score", "The newest run's cross-validated score", ["project"]
        )
        self.labels = m.gauge(
            "labelgrid_training_labels", "Labels the newest run was fitted on", ["project"]
        )
        self.version = m.gauge(
            "labelgrid_training_model_version", "Model version of the newest run", ["project"]
        )
        self.jobs = m.gauge("labelgrid_training_jobs", "Jobs by state", ["state"])

    def on_run(self, project: str, result: RunResult) -> None:
        self.runs.labels(project, result.status).inc()
        self.seconds.labels(project, result.status).observe(result.seconds)
        if result.score is not None:
            self.score.labels(project).set(result.score)
        self.labels.labels(project).set(result.n_labels)
        if result.model_version:
            self.version.labels(project).set(result.model_version)


class TrainerServer:
    def __init__(self, settings: TrainerSettings | str, queue_address: str | None = None) -> None:
        if isinstance(settings, str):  # TrainerServer(address, queue_address), as before
            settings = TrainerSettings.from_env(address=settings, queue_address=queue_address)
        self.settings = s = settings
        self.metrics = TrainerMetrics() if s.metrics_address else None
        self.checker = TokenChecker(
            s.queue_address,
            s.auth,
            s.auth_cache_seconds,
            s.queue_tls_ca,
            s.queue_tls_cert,
            s.queue_tls_key,
        )
        self.service = TrainerService(
            s.queue_address,
            checker=self.checker,
            client_options=s.queue_client_options(),
            on_run=self.metrics.on_run if self.metrics else None,
            learner_options=s.learner_options(),
            scorer=s.make_scorer(),
        )
        self.address = s.address
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics_port = 0

    async def start(self) -> int:
        s = self.settings
        security.check_security(
            s.address,
            auth=s.auth,
            insecure_no_auth=s.insecure_no_auth,
            tls_cert=s.tls_cert,
            tls_key=s.tls_key,
            tls_client_ca=s.tls_client_ca,
            how_to_auth="--auth (LABELGRID_AUTH=true; callers' tokens are checked with the "
            "queue service, which must run with --auth too)",
        )
        interceptors = [self.metrics.metrics.interceptor()] if self.metrics else []
        # no SO_REUSEPORT: a second trainer on a taken port fails instead of sharing it
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=interceptors)
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        credentials = security.server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca)
        self.port = security.listen(self.server, s.address, credentials)
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.metrics is not None:
            self.metrics_port = self.metrics.metrics.serve(s.metrics_address)
            self._count_jobs()
        if not s.auth and not security.is_loopback(s.address):
            log.warning("serving without authentication", extra={"address": s.address})
        log.info(
            "trainer service started",
            extra={
                "address": s.address,
                "port": self.port,
                "metrics_port": self.metrics_port,
                "queue": s.queue_address,
                "auth": s.auth,
                "tls": credentials is not None,
            },
        )
        return self.port

    def _count_jobs(self) -> None:
        assert self.metrics is not None
        jobs = self.service.jobs
        for state in ("running", "stopped", "failed"):
            self.metrics.jobs.labels(state).set_function(
                lambda state=state: sum(j.state == state for j in list(jobs.values()))
            )

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.service.stop_all()
        if self.server is not None:
            await self.server.stop(5)
        await self.checker.close()
        if self.metrics is not None:
            self.metrics.metrics.stop_http()
        log.info("trainer service stopped")


async def serve(
    settings: TrainerSettings | str, queue_address: str | None = None, jobs: list | None = None
) -> None:
    server = TrainerServer(settings, queue_address)
    await server.start()
    starting = [asyncio.create_task(server.service.start_when_ready(spec)) for spec in jobs or []]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    for task in starting:
        task.cancel()
    await server.stop()
