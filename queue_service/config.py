"""Service settings: flags override `LABELGRID_*` environment variables, which override defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from labelgrid_serving.security import is_loopback
from labelgrid_serving.settings import parse_env
from queue_service.db import DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1:50051"
    #: Also serve HTTP here (the labelling web app and Connect for browsers); "" = off.
    web_address: str = ""
    database_url: str = DEFAULT_DATABASE_URL
    #: Largest message the server accepts or sends (RESOURCE_EXHAUSTED beyond it).
    max_message_bytes: int = 8 * 1024 * 1024
    #: Most items one Pop may lease.
    max_pop: int = 1000
    #: Longest label, in characters.
    max_label_chars: int = 1000
    #: Most items per streamed chunk.
    max_chunk_items: int = 10000
    #: Largest array of one item, in bytes.
    max_array_bytes: int = 64 * 1024 * 1024
    #: Most live leases one worker may hold in a project.
    max_leases_per_worker: int = 1000
    #: Require API tokens (`authorization: Bearer …`).
    auth: bool = False
    #: Seconds a token lookup is cached (a revoked token works at most this long).
    auth_cache_seconds: float = 5.0
    #: Allow serving without auth on a non-loopback address (you were warned).
    insecure_no_auth: bool = False
    #: TLS: server certificate chain and key (PEM paths); both or neither.
    tls_cert: str = ""
    tls_key: str = ""
    #: TLS: CA bundle for client certificates; set, clients must present one it signed.
    tls_client_ca: str = ""
    #: Database connections kept per replica; 0: the backend's default (db.POOL_SIZE).
    db_pool_size: int = 0
    #: Seconds a call waits for a free database connection (then UNAVAILABLE).
    db_pool_timeout: float = 30.0
    sqlite_synchronous: str = "FULL"
    #: Seconds between database health probes.
    health_interval: float = 2.0
    #: Seconds in-flight calls get to finish on SIGTERM.
    shutdown_grace: float = 10.0
    #: HOST:PORT to serve Prometheus metrics on (HTTP, /metrics); empty: no metrics.
    metrics_address: str = ""
    #: Seconds between reads of the per-project gauges (leases, unlabelled items).
    metrics_interval: float = 15.0
    #: Seconds a follow stream (WatchProgress, StreamLabelled follow) waits for a change
    #: notification before it reads again anyway: the bound on staleness when a notification
    #: is lost (another replica's, while the PostgreSQL listener reconnects).
    follow_poll_seconds: float = 1.0
    #: Most WatchProgress messages a second per project: with more pages open than this
    #: allows at one update per progress_min_seconds, each page is updated less often
    #: (queue_service/watch.py).
    progress_messages_per_second: float = 1000.0
    #: Seconds between two progress reads of a project at least, so between two updates of a
    #: page: people read a counter about once a second, and each update is a send per page.
    progress_min_seconds: float = 1.0
    #: Most of the time one project's progress reads may take (0: no bound): a big project's
    #: read is slow (0.25 s at 10^6 items on SQLite), and its pages are then updated less
    #: often instead of the server reading it back to back.
    progress_read_share: float = 0.1
    #: Seconds a project's worker reliabilities wait after a label before they are
    #: recomputed (one computation for every label meanwhile): annotator-aware routing,
    #: projects with a reliability_cut only (queue_service/routing.py).
    reliability_seconds: float = 2.0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            env = os.environ.get(f"LABELGRID_{f.name.upper()}")
            if env is not None:
                values[f.name] = parse_env(env, f.default, f"LABELGRID_{f.name.upper()}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def split_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


__all__ = ["Settings", "is_loopback", "split_address"]
