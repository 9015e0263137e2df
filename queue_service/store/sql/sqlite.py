"""SQLite's own SQL. Every write transaction is BEGIN IMMEDIATE (see queue_service.db) and
this process's writers also queue on an asyncio lock, so threads do not spin on the
database lock; with the database held, no row locks are needed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from queue_service import sqlite_driver
from queue_service.schema import DONE
from queue_service.store.records import INPUT_COLUMNS, ITEM_COLUMNS, item_records
from queue_service.store.rows import InputRow, RowBlock, input_records

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

# the inputs of the items a hot-path Pop leased (at most LABELGRID_MAX_POP of them)
HOT_INPUTS = (
    "SELECT item_id, kind, dtype, shape, data, text, metadata FROM item_inputs "
    "WHERE item_id IN ({})"
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

    async def run(self, body: Callable[..., tuple[bool, Any]], *args: Any) -> Any:
        """One whole write transaction as one call on the connection's thread (one hop,
        against one per statement): `body(sqlite3_connection, *args)` returns whether to
        commit and what to give back."""
        async with self.write_lock, self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            return await sqlite_driver.on_thread(raw.dbapi_connection, _transaction, body, args)

    def refresh_statistics(self) -> None:
        """Nothing to do: SQLite's planner does not go wrong on a freshly filled table."""

    async def close(self) -> None:
        pass


# -- the hot path of k = 1 projects: Pop and Submit, each one call on the sqlite thread ------


def _transaction(
    raw: sqlite3.Connection, body: Callable[..., tuple[bool, Any]], args: tuple
) -> Any:
    """On the connection's thread: BEGIN IMMEDIATE, the body, COMMIT (ROLLBACK when the body
    raises or keeps nothing)."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        keep, result = body(raw, *args)
        raw.execute("COMMIT" if keep else "ROLLBACK")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return result


@dataclass(frozen=True)
class HotStatements:
    """The k = 1 statements the hot path runs: the shared ones (store/sql/queries.py), as
    text for sqlite3's own named parameters."""

    held: str
    reclaim: str
    lease: str
    lock_item: str
    annotate: str
    close_item: str


# what a hot-path lease gives back: (id, priority, lease_expires_at, input columns)
Leased = tuple[int, float, float, tuple]


def lease_rows(
    raw: sqlite3.Connection, q: HotStatements, p: int, w: str, n: int, token: str, secs: float
) -> list[Leased]:
    raw.execute(q.reclaim, {"p": p})
    rows = raw.execute(q.lease, {"p": p, "t": token, "w": w, "l": secs, "n": n}).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    found = raw.execute(HOT_INPUTS.format(", ".join("?" * len(ids))), ids).fetchall()
    inputs = {r[0]: r[1:] for r in found}
    return [(r[0], r[1], r[2], inputs[r[0]]) for r in rows]


def pop_body(
    raw: sqlite3.Connection,
    q: HotStatements,
    p: int,
    w: str,
    n: int,
    limit: int | None,
    token: str,
    secs: float,
) -> tuple[bool, tuple[int | None, list[Leased]]]:
    """(the worker's live leases when n more would pass the limit, else None; the leased)"""
    if limit is not None:
        held = raw.execute(q.held, {"p": p, "w": w}).fetchone()[0]
        if held + n > limit:
            return False, (held, [])
    return True, (None, lease_rows(raw, q, p, w, n, token, secs))


def submit_body(
    raw: sqlite3.Connection,
    q: HotStatements,
    p: int,
    item_id: int,
    token: str,
    w: str,
    labels: str,
    next_token: str | None,
    secs: float,
) -> tuple[bool, tuple[int, Leased | None] | None]:
    """The common Submit: the lease is live and ours. Anything else (a retry, a stale lease,
    an unknown item) keeps nothing and gives None: the caller takes the careful path."""
    item = raw.execute(q.lock_item, {"i": item_id, "p": p}).fetchone()
    if item is None or item[0] == DONE or item[1] != token or item[2] != w:
        return False, None
    params = {"p": p, "i": item_id, "w": w, "l": labels, "t": token}
    ann_id = raw.execute(q.annotate, params).fetchone()[0]
    raw.execute(q.close_item, {"i": item_id})
    nxt = lease_rows(raw, q, p, w, 1, next_token, secs) if next_token is not None else []
    return True, (ann_id, nxt[0] if nxt else None)
