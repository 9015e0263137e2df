"""Service settings: flags override `LABELGRID_*` environment variables, which override defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from queue_service.db import DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1:50051"
    database_url: str = DEFAULT_DATABASE_URL
    #: Largest message the server accepts or sends (RESOURCE_EXHAUSTED beyond it).
    max_message_bytes: int = 8 * 1024 * 1024
    #: Most items one Pop may lease.
    max_pop: int = 1000
    #: Longest label, in characters.
    max_label_chars: int = 1000
    #: Most items per streamed chunk.
    max_chunk_items: int = 10000
    db_pool_size: int = 10
    sqlite_synchronous: str = "FULL"
    #: Seconds between database health probes.
    health_interval: float = 2.0
    #: Seconds in-flight calls get to finish on SIGTERM.
    shutdown_grace: float = 10.0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            env = os.environ.get(f"LABELGRID_{f.name.upper()}")
            if env is not None:
                values[f.name] = type(f.default)(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
