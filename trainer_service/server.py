"""Run the trainer service: gRPC server, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from labelgrid_proto.v1 import trainer_pb2, trainer_pb2_grpc
from trainer_service.service import TrainerService

log = logging.getLogger("labelgrid.trainer")

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


class TrainerServer:
    def __init__(self, address: str, queue_address: str) -> None:
        self.address = address
        self.service = TrainerService(queue_address)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = grpc.aio.server()
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.address}")
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "trainer service started",
            extra={"address": self.address, "port": self.port, "queue": self.service.queue_address},
        )
        return self.port

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.service.stop_all()
        if self.server is not None:
            await self.server.stop(5)
        log.info("trainer service stopped")


async def serve(address: str, queue_address: str, jobs: list | None = None) -> None:
    server = TrainerServer(address, queue_address)
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
