"""SQLite's own SQL. Every write transaction is BEGIN IMMEDIATE (see queue_service.db) and
this process's writers also queue on an asyncio lock, so threads do not spin on the
database lock; with the database held, no row locks are needed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from queue_service.store.records import INPUT_COLUMNS, ITEM_COLUMNS, item_records
from queue_service.store.rows import InputRow, PackedRows, RowBlock, input_records

NOW = "((julianday('now') - 2440587.5) * 86400.0)"

# this transaction holds the write lock, so max(id) cannot move under us
TOP_ID = sa.text("SELECT COALESCE(MAX(id), 0) FROM items")
NEW_PRIORITY_TABLE = "CREATE TEMP TABLE IF NOT EXISTS new_priority (id INTEGER PRIMARY KEY, p REAL)"
CLEAR_NEW_PRIORITY = "DELETE FROM new_priority"
INSERT_NEW_PRIORITY = "INSERT INTO new_priority (id, p) VALUES (?, ?)"
APPLY_NEW_PRIORITY = (
    "UPDATE items SET priority = new_priority.p FROM new_priority "
    "WHERE items.id = new_priority.id AND items.project_id = ?"
)


class SqliteDialect:
    """The `Dialect` of SQLite (aiosqlite)."""

    now = NOW
    lock = ""
    key_lock = ""
    skip = ""
    # the time bucket (width :w seconds) of an annotation: created_at is never negative,
    # so truncation is the floor
    bucket = "CAST(created_at / :w AS INTEGER)"

    _READ = {"sqlite_begin": "DEFERRED"}

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.write_lock = asyncio.Lock()

    def read_options(self, snapshot: bool) -> dict[str, str]:
        # a deferred transaction is already a snapshot in WAL mode
        return self._READ

    async def reserve_ids(self, conn: AsyncConnection, n: int) -> list[int]:
        top = (await conn.execute(TOP_ID)).scalar_one()
        return list(range(top + 1, top + 1 + n))

    async def bulk_insert(
        self, conn: AsyncConnection, table: str, columns: tuple[str, ...], rows: list[tuple]
    ) -> None:
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        await conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    async def insert_unlabelled(
        self,
        conn: AsyncConnection,
        project_id: int,
        batch_id: int | None,
        ids: list[int],
        inputs: Sequence[InputRow | RowBlock],
        priorities: list[float] | None,
        now: float,
    ) -> None:
        items = item_records(project_id, batch_id, ids, [None] * len(ids), priorities, now)
        await self.bulk_insert(conn, "items", ITEM_COLUMNS, items)
        await self.bulk_insert(conn, "item_inputs", INPUT_COLUMNS, list(input_records(ids, inputs)))

    async def set_priorities(
        self, conn: AsyncConnection, project_id: int, ids: np.ndarray, priorities: np.ndarray
    ) -> int:
        """Through a temporary table: one UPDATE ... FROM instead of one per item."""
        await conn.exec_driver_sql(NEW_PRIORITY_TABLE)
        await conn.exec_driver_sql(CLEAR_NEW_PRIORITY)
        await conn.exec_driver_sql(
            INSERT_NEW_PRIORITY, list(zip(ids.tolist(), priorities.tolist(), strict=True))
        )
        result = await conn.exec_driver_sql(APPLY_NEW_PRIORITY, (project_id,))
        await conn.exec_driver_sql(CLEAR_NEW_PRIORITY)
        return result.rowcount

    async def packed_unlabelled(
        self, conn: AsyncConnection, project_id: int, after: int, limit: int
    ) -> PackedRows | None:
        """None: SQLite cannot concatenate blobs in a query, so rows are packed in Python."""
        return None

    async def unlabelled_ids(
        self, conn: AsyncConnection, project_id: int, after: int, limit: int
    ) -> tuple[list[int], list[float]] | None:
        """None: the shared statement through SQLAlchemy is as fast here."""
        return None

    def refresh_statistics(self) -> None:
        """Nothing to do: SQLite's planner does not go wrong on a freshly filled table."""

    async def close(self) -> None:
        pass
