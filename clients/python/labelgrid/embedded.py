"""Embedded mode: the queue service in this process, on a loopback port, for one user.

A widget built with `connection_string=` runs the real queue service (the same code a
deployment runs) in a background thread and talks to it over gRPC, so its behaviour is the
same as against a remote server. One service per database URL per process.
"""

from __future__ import annotations

import asyncio
import atexit
import threading

from queue_service.config import Settings
from queue_service.db import normalise_url
from queue_service.server import QueueServer

_lock = threading.Lock()
_running: dict[str, EmbeddedService] = {}


class EmbeddedService:
    """A queue service running on its own event loop in a daemon thread."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.loop = asyncio.new_event_loop()
        self.server = QueueServer(
            Settings(address="127.0.0.1:0", database_url=database_url, shutdown_grace=2.0)
        )
        self.thread = threading.Thread(
            target=self.loop.run_forever, daemon=True, name="labelgrid-embedded"
        )
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(120)
        self.address = f"127.0.0.1:{port}"

    def stop(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def embedded_service(connection_string: str) -> EmbeddedService:
    """Start (once per process) the queue service for a database URL and return it."""
    url = normalise_url(connection_string)
    with _lock:
        service = _running.get(url)
        if service is None:
            service = _running[url] = EmbeddedService(url)
        return service


@atexit.register
def _stop_all() -> None:
    with _lock:
        for service in _running.values():
            try:
                service.stop()
            except Exception:  # the interpreter is going away; nothing left to report to
                pass
        _running.clear()
