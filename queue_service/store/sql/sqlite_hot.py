"""SQLite's hot path: k = 1 Pop and Submit, each a whole transaction run as one call on the
connection's thread, and concurrent callers' transactions committed together.

A COMMIT with `synchronous=FULL` costs an fsync of the WAL (about 0.2 ms of CPU here, and
the disk's latency), and every call on the thread costs the event loop a wake-up and a GIL
hand-off. Labellers' Pops and Submits that arrive while one is on the thread wait anyway
(one writer at a time), so `GroupCommit` runs all of them as one transaction: each in a
SAVEPOINT of its own, so one that fails or keeps nothing is rolled back alone, then one
COMMIT. None is answered before that COMMIT, so an acknowledged label is as durable as
before; a failed COMMIT fails them all and nothing of theirs is kept. Run one after the
other in the order they came, they see each other's writes exactly as separate transactions
would. A crowd at human pace rarely sends two at once, so while calls come often a lone one
waits a few milliseconds for others (COMMIT_DELAY; bench/results/crowd_round5.json)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from queue_service import sqlite_driver
from queue_service.schema import DONE

# most transactions in one COMMIT: the last of them waits for all before it
MOST_PER_COMMIT = 64
# A lone caller waits this long for company when calls come this often (per second) or more,
# and while such waits do bring company: a crowd at human pace sends its labels one at a
# time, each its own COMMIT and fsync otherwise (PostgreSQL's commit_delay, which likewise
# waits only when other transactions are about). A client alone, however fast, finds nobody
# after a few waits and then waits at most once a second (a probe for a crowd).
COMMIT_DELAY = 0.005
BUSY_RATE = 100.0
PROBE_SECONDS = 1.0

Body = Callable[..., tuple[bool, Any]]

# the inputs of the items a hot-path Pop leased (at most LABELGRID_MAX_POP of them)
HOT_INPUTS = (
    "SELECT item_id, kind, dtype, shape, data, text, metadata FROM item_inputs "
    "WHERE item_id IN ({})"
)


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


def transaction(raw: sqlite3.Connection, body: Body, args: tuple) -> Any:
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


def transactions(raw: sqlite3.Connection, calls: list[tuple[Body, tuple]]) -> list[tuple]:
    """On the connection's thread: BEGIN IMMEDIATE, each body in a savepoint (rolled back
    when it raises or keeps nothing), one COMMIT. Gives (True, result) or (False, error) per
    body; raises, with nothing kept, when the transaction itself fails (a BaseException)."""
    if len(calls) == 1:  # alone: the transaction is its savepoint
        try:
            return [(True, transaction(raw, *calls[0]))]
        except Exception as exc:
            return [(False, exc)]
    raw.execute("BEGIN IMMEDIATE")
    out: list[tuple] = []
    try:
        for body, args in calls:
            raw.execute("SAVEPOINT hot")
            try:
                keep, result = body(raw, *args)
            except Exception as exc:  # this body's own failure: the others go on
                raw.execute("ROLLBACK TO hot")
                raw.execute("RELEASE hot")
                out.append((False, exc))
                continue
            if not keep:
                raw.execute("ROLLBACK TO hot")
            raw.execute("RELEASE hot")
            out.append((True, result))
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return out


_Call = tuple[Body, tuple, asyncio.Future]


class GroupCommit:
    """Hot transactions of concurrent callers, run and committed together on a connection of
    their own, outside the pool (see the module's docstring). A caller cancelled before its
    turn is left out, as one cancelled while waiting for the write lock was before."""

    def __init__(self, engine: Callable[[], Awaitable[AsyncEngine]], write_lock: Any) -> None:
        self._engine = engine  # the engine the hot path's own connection comes from
        self.write_lock = write_lock
        self._queue: list[_Call] = []
        self._drainer: asyncio.Task | None = None
        self._conn: AsyncConnection | None = None
        self._raw: Any = None
        self.transactions = 0  # run on the thread, and the callers they served
        self.calls = 0
        self.delay = COMMIT_DELAY
        self.busy_rate = BUSY_RATE
        self.delayed = 0  # lone callers that waited for company
        self._rate = 0.0  # calls a second, smoothed over about a second
        self._last = 0.0
        self._company = 1.0  # others a wait brought, smoothed over the last few waits
        self._probe_at = 0.0
        self._closed = False

    async def _connection(self) -> Any:
        """The hot path's connection, opened once and held: checking one out of SQLAlchemy's
        pool and back for every transaction cost the event loop about as much as the
        transaction's own SQL (bench/results/crowd_round5_1_sqlite_hot_connection.json)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        if self._raw is None:
            conn = await (await self._engine()).connect()
            try:
                raw = (await conn.get_raw_connection()).dbapi_connection
            except BaseException:
                await asyncio.shield(conn.close())
                raise
            self._conn, self._raw = conn, raw
        return self._raw

    async def _drop(self) -> None:
        """After a failure of the transaction itself: the next one starts on a new connection
        (this one is closed once whatever it still runs on its thread is done, even if the
        drainer is cancelled meanwhile)."""
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())

    async def close(self) -> None:
        """No new transaction from now on; the one on the thread finishes first."""
        self._closed = True
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            await conn.close()

    async def run(self, body: Body, args: tuple) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((body, args, future))
        now = loop.time()
        gap, self._last = now - self._last, now
        weight = min(gap, 1.0)  # an exponential average of the rate over ~1 s
        self._rate = self._rate * (1.0 - weight) + weight / max(gap, 1e-6)
        if self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                waited = len(self._queue) == 1 and self._worth_waiting()
                if waited:
                    self.delayed += 1
                    await asyncio.sleep(self.delay)
                calls = [c for c in self._queue[:MOST_PER_COMMIT] if not c[2].done()]
                del self._queue[:MOST_PER_COMMIT]
                if waited:
                    self._company = 0.8 * self._company + 0.2 * max(len(calls) - 1, 0)
                if calls:
                    await self._commit(calls)
        finally:
            self._drainer = None
            if self._queue:  # cancelled (the loop is closing): nobody will answer these
                for *_, future in self._queue:
                    future.cancel()
                self._queue.clear()

    def _worth_waiting(self) -> bool:
        """Whether a lone call should wait for company: calls come often, and waits have
        been bringing company (else once a second, to notice a crowd arriving)."""
        if not self.delay or self._rate < self.busy_rate:
            return False
        if self._company >= 0.5:
            return True
        now = asyncio.get_running_loop().time()
        if now < self._probe_at:
            return False
        self._probe_at = now + PROBE_SECONDS
        return True

    async def _commit(self, calls: list[_Call]) -> None:
        try:
            async with self.write_lock:
                raw = await self._connection()
                self.transactions += 1
                self.calls += len(calls)
                results = await sqlite_driver.on_thread(
                    raw, transactions, [(body, args) for body, args, _ in calls]
                )
        except BaseException as exc:
            for *_, future in calls:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            await self._drop()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (*_, future), (ok, value) in zip(calls, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(sqlite_driver.as_sqlalchemy_error(value))
