"""PostgreSQL's own SQL: the one-statement Pop and Submit run straight on asyncpg, binary
COPY for bulk inserts, `unnest` for priorities, and FOR UPDATE SKIP LOCKED pickers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from queue_service.errors import Unavailable
from queue_service.schema import AVAILABLE, DONE, KIND_ARRAY, LEASED, RELABEL, UNRANKED
from queue_service.store import failures
from queue_service.store.records import INPUT_COLUMNS
from queue_service.store.rows import InputRow, PackedRows, RowBlock, input_records
from queue_service.store.settled import SettledIds
from queue_service.store.sql.held import HeldConnections

log = logging.getLogger("labelgrid.queue")

NOW = "extract(epoch from clock_timestamp())::float8"
# the same instant for a whole statement (stable, where clock_timestamp() is volatile), so
# `lease_expires_at <= INSTANT` is an index condition: with NOW every leased row of the project
# was read and filtered, about two per open page, on every Pop
INSTANT = "extract(epoch from statement_timestamp())::float8"

# $1 project, $2 worker, $3 n, $4 most leases, $5 token, $6 lease seconds
_POP = (
    f"WITH held AS (SELECT COUNT(*) AS c FROM items WHERE project_id = $1 "
    f"AND status = {LEASED} AND leased_by = $2 AND lease_expires_at > {INSTANT}), "
    "avail AS (SELECT id, priority FROM items WHERE project_id = $1 AND "
    f"status = {AVAILABLE} ORDER BY priority DESC, id LIMIT $3 FOR UPDATE{{wait}}), "
    "expired AS (SELECT id, priority FROM items WHERE project_id = $1 AND "
    f"status = {LEASED} AND lease_expires_at <= {INSTANT} "
    "ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED), "
    "picked AS (SELECT id FROM (SELECT * FROM avail UNION ALL "
    "SELECT * FROM expired) c WHERE (SELECT c FROM held) + $3 <= $4 "
    "ORDER BY priority DESC, id LIMIT $3), "
    f"leased AS (UPDATE items SET status = {LEASED}, lease_token = $5, "
    f"leased_by = $2, lease_expires_at = {NOW} + $6 FROM picked "
    "WHERE items.id = picked.id "
    "RETURNING items.id, items.priority, items.lease_expires_at) "
    "SELECT h.c AS held, l.id, l.priority, l.lease_expires_at, i.kind, "
    "i.dtype, i.shape, i.data, i.text, i.metadata FROM held h LEFT JOIN "
    "(leased l JOIN item_inputs i ON i.item_id = l.id) ON true"
)
POP = _POP.format(wait=" SKIP LOCKED")
# the same, waiting for available rows another transaction holds (a re-rank's slice): taken
# only when POP found none free while some are available, so a Pop is never empty then
POP_WAITING = _POP.format(wait="")
# ... for at most this long (its own transaction): rows other Pops hold are held for a moment,
# a re-rank's slice well under it; past it, the Pop takes what is free (SKIP LOCKED) instead
POP_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '2s'"
# $1 project
ANY_AVAILABLE = (
    f"SELECT EXISTS (SELECT 1 FROM items WHERE project_id = $1 AND status = {AVAILABLE})"
)
# $1 item, $2 project, $3 token, $4 worker, $5 labels (JSON): close the item when the lease
# is live and ours (`upd`), and record the annotation
_CLOSE = (
    f"upd AS (UPDATE items SET status = {DONE}, completed_at = {NOW}, "
    "lease_token = NULL, lease_expires_at = NULL WHERE id = $1 AND "
    f"project_id = $2 AND status <> {DONE} AND lease_token = $3 AND "
    "leased_by = $4 RETURNING id)"
)
_ANNOTATE = (
    "INSERT INTO annotations (project_id, item_id, worker_id, labels, lease_token, "
    f"created_at) SELECT $2, id, $4, $5, $3, {NOW} FROM upd RETURNING id"
)
SUBMIT = f"WITH {_CLOSE} {_ANNOTATE}"
# Submit with pop_next in one statement (one round trip, one commit: about a quarter of a
# label's CPU here and in PostgreSQL): SUBMIT, then the top available or expired item
# leased to the same worker under $6, only when the submit matched. The submitted item is
# leased in the statement's snapshot, so it is not available, and `id <> $1` keeps it out
# of the expired ones. $1 item, $2 project, $3 token, $4 worker, $5 labels, $6 next token,
# $7 lease seconds; one row (ann = the annotation id, id NULL when nothing was free), none
# when the lease was not live and ours.
SUBMIT_NEXT = (
    f"WITH {_CLOSE}, ann AS ({_ANNOTATE}), "
    "avail AS (SELECT id, priority FROM items WHERE project_id = $2 AND "
    f"status = {AVAILABLE} AND EXISTS (SELECT 1 FROM upd) ORDER BY priority DESC, id "
    "LIMIT 1 FOR UPDATE SKIP LOCKED), "
    "expired AS (SELECT id, priority FROM items WHERE project_id = $2 AND "
    f"status = {LEASED} AND lease_expires_at <= {INSTANT} AND id <> $1 AND "
    "EXISTS (SELECT 1 FROM upd) ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED), "
    "picked AS (SELECT id FROM (SELECT * FROM avail UNION ALL SELECT * FROM expired) c "
    "ORDER BY priority DESC, id LIMIT 1), "
    f"leased AS (UPDATE items SET status = {LEASED}, lease_token = $6, "
    f"leased_by = $4, lease_expires_at = {NOW} + $7 FROM picked "
    "WHERE items.id = picked.id "
    "RETURNING items.id, items.priority, items.lease_expires_at) "
    "SELECT a.id AS ann, l.id, l.priority, l.lease_expires_at, i.kind, i.dtype, i.shape, "
    "i.data, i.text, i.metadata FROM ann a LEFT JOIN "
    "(leased l JOIN item_inputs i ON i.item_id = l.id) ON true"
)
RESERVE_IDS = "SELECT array_agg(nextval('items_id_seq')) FROM generate_series(1, $1)"
SET_PRIORITIES = sa.text(
    "UPDATE items SET priority = u.p FROM unnest(CAST(:ids AS bigint[]), "
    "CAST(:ps AS float8[])) AS u(id, p) WHERE items.id = u.id AND "
    "items.project_id = :proj"
)
# a re-rank: every id checked first, then applied in slices of RERANK_SLICE ids, the new
# model's top first (as on SQLite: labellers get its best items soonest), each slice its own
# transaction locking its rows in id order, so a Pop skips at most one slice's locked rows
RERANK_MATCHED = sa.text(
    "SELECT COUNT(*) FROM items WHERE project_id = :proj AND id = ANY(CAST(:ids AS bigint[]))"
)
RERANK_SLICE = 2000
# each slice by the primary key (a nested loop over the ids): right after a bulk AddFeatures
# the planner has no statistics yet and chose a hash join over a scan of every item, about
# 1 s a slice at 10^6 items with the slice's rows locked (a labeller's Submit waited seconds)
RERANK_PLAN = sa.text(
    "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
)
RERANK_CHECK = 50_000
# one re-rank of a project at a time, across replicas: a session-level advisory lock on the
# re-rank's own connection, keyed (namespace, project id); store/priorities.py
RERANK_LOCK_SPACE = 0x4C47_5252  # "LGRR"
RERANK_LOCK = sa.text("SELECT pg_advisory_lock(:space, :proj)")
RERANK_UNLOCK = sa.text("SELECT pg_advisory_unlock(:space, :proj)")
ANALYZE = sa.text("ANALYZE items, item_inputs, assignments")
# $1 project, $2 after id, $3 n: the next n unlabelled items with their inputs, straight on
# asyncpg (its C decoder; SQLAlchemy's row layer was most of StreamUnlabelled's time).
# `i.item_id > $2` too: without it the planner merge-joins item_inputs from its first row,
# so every chunk re-read all the rows before the cursor (quadratic in the pool).
UNLABELLED_RAW = (
    "SELECT it.id, it.priority, i.kind, i.dtype, i.shape, i.data FROM items it "
    "JOIN item_inputs i ON i.item_id = it.id WHERE it.project_id = $1 AND "
    f"it.status <> {DONE} AND it.stage <> {RELABEL} AND it.id > $2 AND i.item_id > $2 "
    "ORDER BY it.id LIMIT $3"
)
# $1 project, $2 after id, $3 n: the ids and priorities of the next n unlabelled items
UNLABELLED_IDS_RAW = (
    f"SELECT id, priority FROM items WHERE project_id = $1 AND status <> {DONE} "
    f"AND stage <> {RELABEL} AND id > $2 ORDER BY id LIMIT $3"
)

# Changes fanned out to the other replicas (store/changes.py): LISTEN on this channel (asyncpg
# `add_listener`), and one NOTIFY per changed project, its id as the payload, every project
# changed since the last flush in one round trip. NOTIFY stays within one database.
CHANGES_CHANNEL = "labelgrid_changes"
NOTIFY_CHANGES = "SELECT pg_notify($1, p::text) FROM unnest($2::int[]) AS p"
# the listener's connection, found by name in pg_stat_activity (operators, tests)
LISTENER_APPLICATION = "labelgrid-listener"
KEEPALIVE = "SELECT 1"

# The settled annotation id (store/settled.py): the sequence's value, then the transactions
# holding a lock on the sequence (nextval takes it before an id and keeps it to the end),
# read in that order (a MATERIALIZED CTE, then the projection). pg_locks shows every
# session's locks, fast-path ones too, to any role.
ANNOTATION_SEQUENCE = (
    "SELECT s, s::regclass::oid FROM pg_get_serial_sequence('annotations', 'id') AS s"
)
SETTLED_SAMPLE = (
    "WITH s AS MATERIALIZED (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 "
    "END AS v FROM {sequence}) SELECT s.v, ARRAY(SELECT virtualtransaction FROM pg_locks "
    "WHERE locktype = 'relation' AND relation = $1 AND granted AND pid <> pg_backend_pid()) "
    "FROM s"
)
# how long a read waits, at most, for the ids taken before it to settle (a Submit's
# transaction takes a few milliseconds; an import of labels may take minutes)
SETTLE_PATIENCE = 0.1

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


def copy_records(n: int, fields: list[tuple[str, str]]) -> np.ndarray:
    """A record array laid out as PostgreSQL's binary COPY tuples of fixed-size fields:
    a field count, then each field's length and big-endian value. Fill the named fields."""
    layout: list[tuple[str, str]] = [("_count", ">i2")]
    for name, kind in fields:
        layout += [(f"_{name}_len", ">i4"), (name, kind)]
    records = np.zeros(n, dtype=np.dtype(layout))
    records["_count"] = len(fields)
    for name, _ in fields:
        records[f"_{name}_len"] = records.dtype.fields[name][0].itemsize
    return records


def copy_stream(records: np.ndarray) -> bytes:
    return _COPY_HEADER + records.tobytes() + b"\xff\xff"


class PostgresDialect:
    """The `Dialect` of PostgreSQL (asyncpg); also runs the k = 1 hot path statements."""

    now = NOW
    instant = INSTANT
    lock = "FOR UPDATE"
    key_lock = "FOR NO KEY UPDATE"
    skip = "FOR UPDATE SKIP LOCKED"
    # the time bucket (width :w seconds) of an annotation (a cast alone would round)
    bucket = "CAST(FLOOR(created_at / :w) AS BIGINT)"
    # row locks and SKIP LOCKED keep concurrent writers apart; nothing to hold in-process
    write_lock = contextlib.nullcontext()

    _READ = {False: {}, True: {"isolation_level": "REPEATABLE READ"}}

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # single statements that need no explicit transaction (one round trip)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._tasks: set[asyncio.Task] = set()
        self._held = HeldConnections(engine)  # the hot path's, between statements
        self._settled = SettledIds()
        self._sample: tuple[str, int] | None = None  # SETTLED_SAMPLE, the sequence's oid

    def read_options(self, snapshot: bool) -> dict[str, str]:
        return self._READ[snapshot]

    async def settled_annotation_id(self, patience: float = SETTLE_PATIENCE) -> int | None:
        """The highest annotation id below which no label can still commit (store/settled.py),
        waiting up to `patience` seconds for the ids seen taken to settle."""
        if self._sample is None:
            [(name, oid)] = await self.fetch(ANNOTATION_SEQUENCE)
            self._sample = (SETTLED_SAMPLE.format(sequence=name), oid)
        loop = asyncio.get_running_loop()
        until = loop.time() + patience
        # every id taken before this call, not the newest: a crowd always takes more
        [(target, holders)] = await self.fetch(*self._sample)
        settled, wait = self._settled.update(target, holders), 0.002
        while settled < target and loop.time() + wait <= until:
            await asyncio.sleep(wait)
            wait *= 2
            [(value, holders)] = await self.fetch(*self._sample)
            settled = self._settled.update(value, holders)
        return settled

    @property
    def unsettled(self) -> bool:
        """Whether ids beyond the settled one were seen taken: a follower reads again soon."""
        return self._settled.waiting

    # -- the hot path: Pop and Submit of k = 1 projects --------------------------------

    async def fetch(self, sql: str, *args: object, lock_timeout: str | None = None) -> list:
        """One statement straight on asyncpg (prepared once per connection, autocommitted):
        the two hot paths skip SQLAlchemy's execution layer, about a third of their CPU, and
        its pool between statements (held.py).

        SQLAlchemy never sees errors raised here, so this does what it would: a connection
        that failed, or that a cancelled call left mid-statement, is dropped from the pool.
        When asyncpg refused to send the statement at all (the connection's protocol was
        still consuming the server's goodbye), it is sent again on another connection; any
        other lost connection reaches the caller as UNAVAILABLE (store/failures.py)."""
        for attempt in range(3):
            held = await self._held.acquire()
            driver = held[1]
            try:
                if lock_timeout is None:
                    rows = await driver.fetch(sql, *args)
                else:
                    async with driver.transaction():
                        await driver.execute(lock_timeout)
                        rows = await driver.fetch(sql, *args)
            except asyncpg.DeadlockDetectedError:
                await self._held.release(held)
                # the statement was rolled back whole, so running it again is safe
                if attempt == 2:
                    raise
                continue
            except asyncio.CancelledError:
                # the statement may still be running on this connection
                await self._held.discard(held, lost=False)
                raise
            except Exception as exc:
                if not failures.broken(exc):
                    await self._held.release(held)
                    raise  # a statement error or a timeout: the connection is fine
                await self._held.discard(held, lost=True)
                if attempt == 2 or not failures.never_sent(exc):
                    raise Unavailable(f"database unavailable: {type(exc).__name__}; retry") from exc
                continue
            await self._held.release(held)
            return rows
        raise AssertionError("unreachable")

    async def pop(
        self, project_id: int, worker: str, n: int, limit: int, token: str, seconds: float
    ) -> list:
        """Count the worker's leases, pick the top available (or expired) items with SKIP
        LOCKED, lease them, and return them with their inputs: one statement."""
        args = (project_id, worker, n, limit, token, seconds)
        rows = await self.fetch(POP, *args)
        if (rows and rows[0]["id"] is not None) or (rows and rows[0]["held"] + n > limit):
            return rows
        # every available row was locked (a re-rank's slice, other Pops): wait for them, for
        # at most POP_LOCK_TIMEOUT; past it, what is free now (maybe nothing), not an error
        for _ in range(3):
            if not (await self.fetch(ANY_AVAILABLE, project_id))[0][0]:
                break
            try:
                rows = await self.fetch(POP_WAITING, *args, lock_timeout=POP_LOCK_TIMEOUT)
            except asyncpg.LockNotAvailableError:
                return await self.fetch(POP, *args)
            if rows and rows[0]["id"] is not None:
                break
        return rows

    async def submit(
        self, item_id: int, project_id: int, token: str, worker: str, labels: str
    ) -> int | None:
        """Close the item and record the annotation when the lease is live and ours; None
        otherwise (the caller takes the careful path)."""
        rows = await self.fetch(SUBMIT, item_id, project_id, token, worker, labels)
        return rows[0]["id"] if rows else None

    async def submit_next(
        self,
        item_id: int,
        project_id: int,
        token: str,
        worker: str,
        labels: str,
        next_token: str,
        seconds: float,
    ) -> Any:
        """SUBMIT_NEXT: the row (annotation id, and the next item leased under `next_token`
        or a NULL id), or None when the lease was not live and ours (the careful path)."""
        rows = await self.fetch(
            SUBMIT_NEXT, item_id, project_id, token, worker, labels, next_token, seconds
        )
        return rows[0] if rows else None

    # -- streams ------------------------------------------------------------------------

    async def packed_unlabelled(
        self, conn: AsyncConnection, project_id: int, after: int, limit: int
    ) -> PackedRows | None:
        """The next `limit` unlabelled items packed: ids, priorities and their input bytes
        joined; None when they are not all arrays of one dtype and shape (the caller then
        reads them row by row)."""
        raw = await conn.get_raw_connection()
        rows = await raw.driver_connection.fetch(  # type: ignore[union-attr]
            UNLABELLED_RAW, project_id, after, limit
        )
        if not rows:
            return PackedRows([], [], "", "", b"")
        first = rows[0]
        kind, dtype, shape = first[2], first[3], first[4]
        if kind != KIND_ARRAY or any(
            r[2] != kind or r[3] != dtype or r[4] != shape or r[5] is None for r in rows
        ):
            return None
        return PackedRows(
            [r[0] for r in rows],
            [r[1] for r in rows],
            dtype,
            shape or "",
            b"".join([r[5] for r in rows]),
        )

    async def unlabelled_ids(
        self, conn: AsyncConnection, project_id: int, after: int, limit: int
    ) -> tuple[list[int], list[float]] | None:
        """The ids and priorities of the next `limit` unlabelled items, straight on asyncpg
        (a trainer reads a million of them each run)."""
        raw = await conn.get_raw_connection()
        rows = await raw.driver_connection.fetch(  # type: ignore[union-attr]
            UNLABELLED_IDS_RAW, project_id, after, limit
        )
        return [r[0] for r in rows], [r[1] for r in rows]

    # -- bulk inserts -------------------------------------------------------------------

    async def reserve_ids(self, conn: AsyncConnection, n: int) -> list[int]:
        raw = await conn.get_raw_connection()
        return await raw.driver_connection.fetchval(RESERVE_IDS, n)  # type: ignore[union-attr]

    async def bulk_insert(
        self, conn: AsyncConnection, table: str, columns: tuple[str, ...], rows: list[tuple]
    ) -> None:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table, records=rows, columns=list(columns)
        )

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
        """Items and blocks of array rows by binary COPY, each one numpy record array;
        single items as records."""
        await self._copy_items(conn, project_id, batch_id, ids, priorities, now)
        await self._copy_inputs(conn, ids, inputs)

    async def _copy_items(
        self,
        conn: AsyncConnection,
        project_id: int,
        batch_id: int | None,
        ids: list[int],
        priorities: list[float] | None,
        now: float,
    ) -> None:
        n = len(ids)
        fields = [("id", ">i8"), ("project_id", ">i4")]
        if batch_id is not None:
            fields.append(("batch_id", ">i4"))
        fields += [("status", ">i2"), ("priority", ">f8"), ("inserted_at", ">f8")]
        columns = [name for name, _ in fields]
        table = copy_records(n, fields)
        table["id"] = ids
        table["project_id"] = project_id
        if batch_id is not None:
            table["batch_id"] = batch_id
        table["status"] = AVAILABLE
        table["priority"] = UNRANKED if priorities is None else priorities
        table["inserted_at"] = now
        await self._copy(conn, "items", columns, table)

    async def _copy_inputs(
        self, conn: AsyncConnection, ids: list[int], inputs: Sequence[InputRow | RowBlock]
    ) -> None:
        at = 0
        singles: list[tuple[int, InputRow]] = []
        for seg in inputs:
            if not isinstance(seg, RowBlock):
                singles.append((ids[at], seg))
                at += 1
                continue
            dtype, shape = seg.dtype.encode(), seg.shape.encode()
            fields = [
                ("item_id", ">i8"),
                ("kind", ">i2"),
                ("dtype", f"S{len(dtype)}"),
                ("shape", f"S{len(shape)}"),
                ("data", f"V{seg.stride}"),
            ]
            table = copy_records(seg.n, fields)
            table["item_id"] = ids[at : at + seg.n]
            table["kind"] = KIND_ARRAY
            table["dtype"] = dtype
            table["shape"] = shape
            if seg.stride:
                table["data"] = np.frombuffer(seg.data, dtype=f"V{seg.stride}", count=seg.n)
            await self._copy(conn, "item_inputs", [f for f, _ in fields], table)
            at += seg.n
        if singles:
            records = list(input_records([i for i, _ in singles], [x for _, x in singles]))
            await self.bulk_insert(conn, "item_inputs", INPUT_COLUMNS, records)

    async def _copy(
        self, conn: AsyncConnection, table: str, columns: list[str], records: np.ndarray
    ) -> None:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_to_table(  # type: ignore[union-attr]
            table, source=io.BytesIO(copy_stream(records)), columns=columns, format="binary"
        )

    def refresh_statistics(self) -> None:
        """ANALYZE the item tables in the background, once per burst: until autovacuum
        gets to it the planner thinks a freshly filled table is empty."""
        if self._tasks:
            return

        async def analyze() -> None:
            try:
                async with self._autocommit.connect() as conn:
                    await conn.execute(ANALYZE)
            except Exception as exc:  # autovacuum will get there; serving goes on
                log.warning("ANALYZE after a bulk insert failed", extra={"error": str(exc)})

        task = asyncio.get_running_loop().create_task(analyze())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- priorities ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def rerank(
        self, project_id: int, ids: np.ndarray, priorities: np.ndarray, q: Any
    ) -> AsyncIterator[PostgresRerank]:
        order = np.argsort(ids, kind="stable")
        ids, priorities = ids[order], priorities[order]
        matched = 0
        async with self.engine.connect() as conn:  # in parts: no long stall of the event loop
            for at in range(0, len(ids), RERANK_CHECK):
                part = ids[at : at + RERANK_CHECK].tolist()
                found = await conn.execute(RERANK_MATCHED, {"proj": project_id, "ids": part})
                matched += found.scalar_one()
            await conn.commit()
            top = np.argsort(-priorities, kind="stable")
            ids, priorities = ids[top], priorities[top]
            # the re-rank's own connection: its advisory lock and every slice
            yield PostgresRerank(conn, project_id, ids, priorities, matched, q)

    async def close(self) -> None:
        await self._held.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class PostgresRerank:
    """A checked re-rank, applied in bounded transactions (`step`): each takes the project's
    model version row (FOR NO KEY UPDATE), refuses when a newer model was applied since, and
    updates one slice."""

    def __init__(
        self,
        conn: AsyncConnection,
        project_id: int,
        ids: np.ndarray,
        priorities: np.ndarray,
        matched: int,
        q: Any,
    ) -> None:
        self.conn, self.project_id, self.ids, self.priorities = (
            conn,
            project_id,
            ids,
            priorities,
        )
        self.matched, self.q = matched, q
        self.at = 0

    @property
    def done(self) -> bool:
        return self.at >= len(self.ids)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """The project's re-rank advisory lock (session level, on this connection), held for
        the whole re-rank and released in the end; a connection left unsure (cancelled while
        waiting or releasing) is dropped, which releases the lock with its session."""
        key = {"space": RERANK_LOCK_SPACE, "proj": self.project_id}
        try:
            await self.conn.execute(RERANK_LOCK, key)
            await self.conn.commit()
        except BaseException:
            await asyncio.shield(self.conn.invalidate())
            raise
        try:
            yield
        finally:
            try:
                if self.conn.in_transaction():
                    await self.conn.rollback()
                await self.conn.execute(RERANK_UNLOCK, key)
                await self.conn.commit()
            except BaseException:
                await asyncio.shield(self.conn.invalidate())
                raise

    async def claim(self, version: int) -> int | None:
        """Make `version` the project's model version before waiting for the advisory lock
        (an older re-rank holding it is refused at its next slice); the newer one if refused."""
        p = self.project_id
        conn = self.conn
        async with conn.begin():
            current = (await conn.execute(self.q.model_version, {"p": p})).scalar_one()
            if version < current:
                return current
            await conn.execute(self.q.set_model_version, {"v": version, "p": p})
        return None

    async def step(self, version: int) -> int | None:
        p = self.project_id
        end = self.at + RERANK_SLICE
        conn = self.conn
        async with conn.begin():
            current = (await conn.execute(self.q.model_version, {"p": p})).scalar_one()
            if version < current:
                return current
            ids, ps = self.ids[self.at : end], self.priorities[self.at : end]
            by_id = np.argsort(ids, kind="stable")  # one lock order for every writer
            params = {"ids": ids[by_id].tolist(), "ps": ps[by_id].tolist(), "proj": p}
            await conn.execute(RERANK_PLAN)
            await conn.execute(SET_PRIORITIES, params)
            await conn.execute(self.q.set_model_version, {"v": version, "p": p})
        self.at = end
        return None
