"""Engines and migrations: SQLite (WAL, BEGIN IMMEDIATE) or PostgreSQL (asyncpg)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./labelgrid.db"
MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every replica.
_MIGRATION_LOCK_KEY = 0x6C6162656C67


def normalise_url(url: str) -> str:
    """Accept plain SQLAlchemy URLs (`sqlite:///x.db`, `postgresql://…`) and pick async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:// or postgresql://")
    return parsed.render_as_string(hide_password=False)


# connections kept per process when LABELGRID_DB_POOL_SIZE is 0 (unset). On SQLite each is a
# thread of its own, and past a few they only take the GIL from the event loop: with 40, a
# burst of reads (every open page asking for a new training run at once) stalled the crowd
# benchmark's Submits for seconds at 1,000 labellers; with 5, not (bench/results/crowd_round4)
POOL_SIZE = {"sqlite": 5, "postgresql": 10}
# the application_name of the service's PostgreSQL connections (operators: pg_stat_activity)
SERVICE_APPLICATION = "labelgrid-queue"


def create_engine(
    url: str,
    pool_size: int = 0,
    sqlite_synchronous: str = "FULL",
    pool_timeout: float = 30.0,
    pooled: bool = True,
) -> AsyncEngine:
    """`pooled=False` (SQLite): a fresh connection per checkout, outside any pool (a re-rank's
    own connection, held for its whole length)."""
    url = normalise_url(url)
    backend = make_url(url).get_backend_name()
    pool_size = pool_size or POOL_SIZE[backend]
    if backend == "sqlite":
        from queue_service import sqlite_driver

        # one thread hop per statement instead of four (sqlite_driver.py says why)
        module = sqlite_driver.dbapi()
        extra = {"module": module} if module is not None else {}
        # no rollback on check-in: every checkout ends its own transaction (begin() commits
        # or rolls back; Connection.close() rolls back one left open), so that rollback
        # would be one more thread hop per transaction for nothing
        pool = (
            {"pool_size": pool_size, "max_overflow": 0, "pool_reset_on_return": None}
            if pooled
            else {"poolclass": NullPool}
        )
        engine = create_async_engine(url, **pool, **extra)
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    # no pre-ping: it would cost a round trip per call; a connection lost with the database
    # is invalidated on its first error (the caller gets UNAVAILABLE and retries)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        connect_args={"server_settings": {"application_name": SERVICE_APPLICATION}},
    )
    _drop_broken_connections(engine)
    return engine


def _drop_broken_connections(engine: AsyncEngine) -> None:
    """Count more errors as disconnects than SQLAlchemy does: asyncpg reports a connection
    the server has closed, or one whose protocol is mid-way through an error, as an
    InterfaceError or InternalClientError while `is_closed()` is still false, and SQLAlchemy
    would hand that connection to the next caller (store/failures.py lists them)."""
    from queue_service.store import failures

    @event.listens_for(engine.sync_engine, "handle_error")
    def _handle_error(context: sa.engine.ExceptionContext) -> None:
        if not context.is_disconnect and failures.broken(context.original_exception):
            context.is_disconnect = True


def _configure_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # Writers take the lock up front, so two pops never read the same candidates.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; safe when several replicas start at once."""

    def _upgrade(connection: sa.Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as conn:
        if is_postgres(engine):
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY}
            )
        await conn.run_sync(_upgrade)
