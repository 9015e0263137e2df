"""The queue service's Prometheus metrics: the RPC metrics every server has
(labelgrid_serving.metrics), per-project gauges read every `metrics_interval` seconds
(the counts GetProgress gives), and the database connection pool, read at each scrape."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from labelgrid_serving.metrics import Metrics
from queue_service.store import Store

log = logging.getLogger("labelgrid.queue")


class QueueMetrics(Metrics):
    def __init__(self, store: Store, interval: float) -> None:
        super().__init__()
        self.store = store
        self.interval = interval
        project = ["project"]
        self.leases = self.gauge(
            "labelgrid_queue_leases_live", "Items leased now (lease not expired)", project
        )
        self.unlabelled = self.gauge(
            "labelgrid_queue_items_unlabelled", "Items not yet done (available or leased)", project
        )
        self.labelled = self.gauge("labelgrid_queue_items_labelled", "Items done", project)
        self.in_review = self.gauge(
            "labelgrid_queue_items_in_review", "Items waiting for a reviewer", project
        )
        self.database_up = self.gauge(
            "labelgrid_database_up", "1 when the last read of the project gauges succeeded"
        )
        self.gauge_seconds = self.gauge(
            "labelgrid_queue_gauges_read_seconds", "How long the last read of the gauges took"
        )
        pool = store.engine.pool
        self.gauge(
            "labelgrid_db_pool_size", "Connections the pool keeps (overflow comes on top)"
        ).set_function(pool.size)
        checked_out = self.gauge("labelgrid_db_pool_connections", "Connections by state", ["state"])
        checked_out.labels("in_use").set_function(pool.checkedout)
        checked_out.labels("idle").set_function(pool.checkedin)
        self.gauge(
            "labelgrid_db_pool_overflow", "Connections open beyond the pool size (negative: unused)"
        ).set_function(pool.overflow)
        self._task: asyncio.Task | None = None

    def start(self, address: str) -> int:
        port = self.serve(address)
        self._task = asyncio.get_running_loop().create_task(self._refresh_forever())
        return port

    async def refresh(self) -> None:
        """Read every project's counts into the gauges (one snapshot per project)."""
        started = asyncio.get_running_loop().time()
        for project in await self.store.list_projects():
            row = await self.store.progress(project)
            self.leases.labels(project.name).set(row.leased)
            self.unlabelled.labels(project.name).set(row.total - row.labelled)
            self.labelled.labels(project.name).set(row.labelled)
            self.in_review.labels(project.name).set(row.in_review)
        self.gauge_seconds.set(asyncio.get_running_loop().time() - started)

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
                self.database_up.set(1)
            except Exception as exc:  # the database is away: say so, keep the last values
                self.database_up.set(0)
                log.warning("metrics: reading the gauges failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.stop_http()
