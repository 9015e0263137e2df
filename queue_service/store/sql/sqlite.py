"""SQLite's own SQL. Every write transaction is BEGIN IMMEDIATE (see queue_service.db) and
this process's writers also queue on an asyncio lock, so threads do not spin on the
database lock; with the database held, no row locks are needed. Re-ranks run each
transaction as one call on the connection's thread, and so does the hot path (k = 1 Pop
and Submit, sqlite_hot.py), whose concurrent transactions are committed together."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from queue_service import db, sqlite_driver
from queue_service.store.records import INPUT_COLUMNS, ITEM_COLUMNS, item_records
from queue_service.store.rows import InputRow, PackedRows, RowBlock, input_records
from queue_service.store.sql.sqlite_hot import GroupCommit, transaction

NOW = "((julianday('now') - 2440587.5) * 86400.0)"

# this transaction holds the write lock, so max(id) cannot move under us
TOP_ID = sa.text("SELECT COALESCE(MAX(id), 0) FROM items")
# a re-rank is staged whole in a temporary table on its own connection (no write lock: only
# the temp database is written), checked, then applied by ranges of `seq`, its new order
RERANK_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS rerank (seq INTEGER PRIMARY KEY, id INTEGER NOT NULL, "
    "p REAL NOT NULL)"
)
CLEAR_RERANK = "DELETE FROM rerank"
INSERT_RERANK = "INSERT INTO rerank (seq, id, p) VALUES (?, ?, ?)"
RERANK_MATCHED = "SELECT COUNT(*) FROM rerank r JOIN items i ON i.id = r.id WHERE i.project_id = ?"
# `+project_id`: probe items by primary key from the range of rerank, not scan the project
APPLY_RERANK = (
    "UPDATE items SET priority = r.p FROM rerank r WHERE items.id = r.id "
    "AND r.seq >= ? AND r.seq < ? AND +items.project_id = ?"
)
# rows per UPDATE of a re-rank; between two, it commits when another writer waits
RERANK_SLICE = 64
# the longest a re-rank holds the write lock when nobody waits for it
RERANK_HOLD_SECONDS = 0.5
# a re-rank's connection checkpoints the WAL itself after each transaction, with the write
# lock released (PASSIVE runs beside writers): an automatic checkpoint would run inside its
# COMMIT, with every waiting Pop behind it
NO_AUTO_CHECKPOINT = "PRAGMA wal_autocheckpoint=0"
AUTO_CHECKPOINT = "PRAGMA wal_autocheckpoint=1000"
# a re-rank touches rows and index pages all over the table: a larger page cache for its
# connection while it runs (about a quarter less time for 10^6 items), the default after
RERANK_CACHE = "PRAGMA cache_size=-65536"
DEFAULT_CACHE = "PRAGMA cache_size=-2000"
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
# A re-rank's slices commit without waiting for the disk: the WAL is one append-only file,
# so the next commit that does sync (a labeller's, at the configured level) syncs them too,
# and a power cut can only lose the re-rank's last slices, leaving it partly applied under
# its claimed version, the state store/priorities.py already allows for an interrupted
# re-rank. A labeller's Pop waiting for a slice no longer waits for its fsync as well.
SLICES_SYNCHRONOUS = "PRAGMA synchronous=NORMAL"


class SqliteDialect:
    """The `Dialect` of SQLite (aiosqlite)."""

    now = NOW
    instant = NOW  # 'now' is already one instant per statement in SQLite
    lock = ""
    key_lock = ""
    skip = ""
    # the time bucket (width :w seconds) of an annotation: created_at is never negative,
    # so truncation is the floor
    bucket = "CAST(created_at / :w AS INTEGER)"

    _READ = {"sqlite_begin": "DEFERRED"}

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.write_lock = WriteLock()
        self._own: AsyncEngine | None = None
        self._own_made = asyncio.Lock()
        # one re-rank of a project at a time (this process owns the file): store/priorities.py
        self._rerank_locks: dict[int, asyncio.Lock] = {}
        self._hot = GroupCommit(self._own_engine, self.write_lock)

    def read_options(self, snapshot: bool) -> dict[str, str]:
        # a deferred transaction is already a snapshot in WAL mode
        return self._READ

    async def settled_annotation_id(self, patience: float = 0.0) -> int | None:
        """None: every committed annotation is settled (one writer at a time, ids in commit
        order and never reused; store/settled.py)."""
        return None

    unsettled = False

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

    @contextlib.asynccontextmanager
    async def rerank(
        self, project_id: int, ids: np.ndarray, priorities: np.ndarray, q: Any
    ) -> AsyncIterator[SqliteRerank]:
        """A re-rank staged on a connection of its own, held until it is applied; `q`: the
        shared statements of projects (the model version)."""
        version_sql = VersionSql(q.model_version.text, q.set_model_version.text)
        async with (await self._own_engine()).connect() as conn:
            raw = (await conn.get_raw_connection()).dbapi_connection
            try:
                matched = await sqlite_driver.on_thread(
                    raw, stage_rerank, ids, priorities, project_id
                )
                lock = self._rerank_locks.setdefault(project_id, asyncio.Lock())
                yield SqliteRerank(
                    self.write_lock, raw, project_id, len(ids), matched, version_sql, lock
                )
            finally:
                await sqlite_driver.on_thread(raw, _clear_rerank)

    async def _own_engine(self) -> AsyncEngine:
        """Connections outside the pool, for those held long: a re-rank's, held while it
        waits for the write lock (a writer holding the lock may wait for a pooled one: with a
        pool of one, the two waited on each other until the pool timed out), and the hot
        path's, held for good (sqlite_hot.GroupCommit)."""
        async with self._own_made:
            if self._own is None:
                async with self.engine.connect() as conn:  # the same durability as the pool's
                    sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar_one()
                url = self.engine.url.render_as_string(hide_password=False)
                self._own = db.create_engine(url, sqlite_synchronous=str(sync), pooled=False)
        return self._own

    async def run(self, body: Callable[..., tuple[bool, Any]], *args: Any) -> Any:
        """One whole write transaction as one call on the connection's thread (one hop,
        against one per statement), committed with those of other callers waiting at the
        same time (sqlite_hot.GroupCommit): `body(sqlite3_connection, *args)` returns
        whether to keep its writes and what to give back."""
        return await self._hot.run(body, args)

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
        await self._hot.close()
        if self._own is not None:
            await self._own.dispose()


class WriteLock:
    """This process's writers, one at a time (an asyncio lock), and whether one is waiting
    (`wanted`, read by a re-rank on its thread: it commits and lets the waiter in)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._waiting = 0
        self.wanted = threading.Event()

    async def __aenter__(self) -> None:
        if not self._lock.locked():
            await self._lock.acquire()
            return
        self._waiting += 1
        self.wanted.set()
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
            if not self._waiting:
                self.wanted.clear()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


@dataclass(frozen=True)
class VersionSql:
    """The shared statements of a project's model version (store/sql/queries.py), as text."""

    get: str
    set: str


def stage_rerank(
    raw: sqlite3.Connection, ids: np.ndarray, priorities: np.ndarray, project_id: int
) -> int:
    """On the re-rank's connection (and off the event loop): the new priorities, in their
    new order (the top is applied first), into its temporary table (the main database is
    only read); how many of the ids are items of the project."""
    order = np.lexsort((ids, -priorities))
    rows = zip(range(len(ids)), ids[order].tolist(), priorities[order].tolist(), strict=True)
    raw.execute(RERANK_TABLE)
    raw.execute(NO_AUTO_CHECKPOINT)
    raw.execute(RERANK_CACHE)
    raw.execute("BEGIN")
    try:
        raw.execute(CLEAR_RERANK)
        raw.executemany(INSERT_RERANK, _sharing_the_gil(rows))
        raw.execute("COMMIT")
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    return raw.execute(RERANK_MATCHED, (project_id,)).fetchone()[0]


def _sharing_the_gil(rows: Iterator[tuple], every: int = 512) -> Iterator[tuple]:
    """The rows, with a pause every `every` of them: binding a million rows' parameters holds
    the GIL almost throughout, and the event loop and the labellers' Pop threads, each waiting
    for it up to the switch interval at every step, were slowed to ~100 ms a call."""
    for i, row in enumerate(rows):
        if not i % every:
            time.sleep(0.0001)
        yield row


def rerank_body(
    raw: sqlite3.Connection,
    q: VersionSql,
    project_id: int,
    version: int,
    start: int,
    end: int,
    wanted: threading.Event,
) -> tuple[bool, tuple[int, int | None]]:
    """One transaction of a re-rank: refused (with the newer version) when a newer model
    was applied since the last one; else slices from `start` until the end, another writer
    waits, or RERANK_HOLD_SECONDS pass. (where it stopped, the newer version or None)"""
    current = raw.execute(q.get, {"p": project_id}).fetchone()[0]
    if version < current:
        return False, (start, current)
    until = time.monotonic() + RERANK_HOLD_SECONDS
    at = start
    while at < end:
        raw.execute(APPLY_RERANK, (at, min(at + RERANK_SLICE, end), project_id))
        at += RERANK_SLICE
        if wanted.is_set() or time.monotonic() > until:
            break
    raw.execute(q.set, {"v": version, "p": project_id})
    return True, (min(at, end), None)


class SqliteRerank:
    """A staged re-rank, applied in bounded transactions (`step`)."""

    def __init__(
        self,
        lock: WriteLock,
        raw: Any,
        project_id: int,
        n: int,
        matched: int,
        q: VersionSql,
        project_lock: asyncio.Lock,
    ) -> None:
        self.lock, self.raw, self.project_id, self.n = lock, raw, project_id, n
        self.matched, self.q, self.project_lock = matched, q, project_lock
        self.at = 0

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """The project's re-rank lock, held for the whole re-rank (not the write lock:
        labellers' writes go on between its transactions)."""
        async with self.project_lock:
            yield

    @property
    def done(self) -> bool:
        return self.at >= self.n

    async def claim(self, version: int) -> int | None:
        """Make `version` the project's model version before waiting for the project's lock
        (an older re-rank holding it is refused at its next transaction); the newer applied
        version if refused."""
        async with self.lock:
            _, newer = await sqlite_driver.on_thread(
                self.raw,
                transaction,
                rerank_body,
                (self.q, self.project_id, version, 0, 0, self.lock.wanted),
            )
        return newer

    async def step(self, version: int) -> int | None:
        """The next part in one transaction; the newer applied version if refused."""
        if self.at == 0:
            await sqlite_driver.on_thread(self.raw, _slices_synchronous)
        async with self.lock:
            self.at, newer = await sqlite_driver.on_thread(
                self.raw,
                transaction,
                rerank_body,
                (self.q, self.project_id, version, self.at, self.n, self.lock.wanted),
            )
        await sqlite_driver.on_thread(self.raw, _checkpoint)
        return newer


def _slices_synchronous(raw: sqlite3.Connection) -> None:
    # only ever lowers it (OFF stays OFF)
    if raw.execute("PRAGMA synchronous").fetchone()[0] > 1:
        raw.execute(SLICES_SYNCHRONOUS)


def _clear_rerank(raw: sqlite3.Connection) -> None:
    raw.execute(CLEAR_RERANK)
    raw.execute(AUTO_CHECKPOINT)
    raw.execute(DEFAULT_CACHE)


def _checkpoint(raw: sqlite3.Connection) -> None:
    raw.execute(CHECKPOINT).fetchall()
