"""SQLite's group commit (queue_service/store/sql/sqlite_hot.py): concurrent hot
transactions share one COMMIT, yet each is kept or rolled back on its own, a failed
transaction keeps nothing of any of them, and a caller cancelled before its turn is left out.
Real SQLite files; what was kept is read back through a fresh sqlite3 connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from queue_service.db import create_engine
from queue_service.store.sql.sqlite import SqliteDialect
from queue_service.store.sql.sqlite_hot import PROBE_SECONDS


def _insert(raw: sqlite3.Connection, v: str, keep: bool = True) -> tuple[bool, int]:
    row = raw.execute("INSERT INTO t (v) VALUES (?) RETURNING id", (v,)).fetchone()
    return keep, row[0]


def _insert_then_fail(raw: sqlite3.Connection, v: str) -> tuple[bool, int]:
    raw.execute("INSERT INTO t (v) VALUES (?)", (v,))
    raise ValueError(f"body {v} failed")


class Interrupted(BaseException):
    """Not an Exception: it ends the whole transaction, as a lost connection would."""


def _insert_then_interrupt(raw: sqlite3.Connection, v: str) -> tuple[bool, int]:
    raw.execute("INSERT INTO t (v) VALUES (?)", (v,))
    raise Interrupted


def _missing_table(raw: sqlite3.Connection) -> tuple[bool, int]:
    raw.execute("INSERT INTO nowhere VALUES (1)")
    return True, 0


def _stored(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]


async def _dialect(path: Path) -> SqliteDialect:
    engine = create_engine(f"sqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    return SqliteDialect(engine)


def test_concurrent_transactions_share_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "g.db"

    async def run() -> list[int]:
        dialect = await _dialect(path)
        try:
            ids = await asyncio.gather(*(dialect.run(_insert, f"v{i:02d}") for i in range(20)))
            # all twenty were waiting when the first reached the thread: one transaction
            assert (dialect._hot.transactions, dialect._hot.calls) == (1, 20)
            held = dialect._hot._raw
            alone = await dialect.run(_insert, "later")
            assert (dialect._hot.transactions, dialect._hot.calls) == (2, 21)
            # on the hot path's own connection, held between transactions, not the pool's
            assert held is not None and dialect._hot._raw is held
            assert dialect.engine.pool.checkedout() == 0
            return [*ids, alone]
        finally:
            await dialect.close()
            await dialect.engine.dispose()

    ids = asyncio.run(run())
    assert sorted(ids) == list(range(1, 22))  # each saw the ones before it
    assert _stored(path) == sorted([f"v{i:02d}" for i in range(20)] + ["later"])


def test_each_body_is_kept_or_rolled_back_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "g.db"

    async def run() -> list[object]:
        dialect = await _dialect(path)
        try:
            calls = [dialect.run(_insert, f"ok{i}") for i in range(4)]
            calls.insert(1, dialect.run(_insert_then_fail, "failed"))
            calls.insert(3, dialect.run(_insert, "dropped", False))
            calls.append(dialect.run(_insert, "ok0"))  # a duplicate: IntegrityError
            calls.append(dialect.run(_missing_table))
            out = await asyncio.gather(*calls, return_exceptions=True)
            assert dialect._hot.transactions == 1
            return out
        finally:
            await dialect.close()
            await dialect.engine.dispose()

    out = asyncio.run(run())
    assert isinstance(out[1], ValueError) and str(out[1]) == "body failed failed"
    assert isinstance(out[3], int)  # kept nothing, still answered
    # sqlite3's errors come back as SQLAlchemy's, as through the engine (store/failures.py)
    assert isinstance(out[6], sa.exc.IntegrityError)
    assert isinstance(out[7], sa.exc.OperationalError) and "nowhere" in str(out[7])
    assert _stored(path) == ["ok0", "ok1", "ok2", "ok3"]


def test_a_failed_transaction_keeps_nothing_and_fails_every_caller(tmp_path: Path) -> None:
    path = tmp_path / "g.db"

    async def run() -> list[object]:
        dialect = await _dialect(path)
        try:
            calls = [dialect.run(_insert, "first"), dialect.run(_insert_then_interrupt, "x")]
            calls.append(dialect.run(_insert, "third"))
            out = await asyncio.gather(*calls, return_exceptions=True)
            # the queue goes on afterwards
            assert isinstance(await dialect.run(_insert, "after"), int)
            return out
        finally:
            await dialect.close()
            await dialect.engine.dispose()

    out = asyncio.run(run())
    assert all(isinstance(o, Interrupted) for o in out), out
    assert _stored(path) == ["after"]  # "first" ran, but its transaction was not committed


def test_a_caller_cancelled_before_its_turn_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    on_thread = threading.Event()
    release = threading.Event()

    def slow(raw: sqlite3.Connection) -> tuple[bool, int]:
        on_thread.set()
        release.wait(10)
        return _insert(raw, "slow")

    async def run() -> None:
        dialect = await _dialect(path)
        try:
            first = asyncio.ensure_future(dialect.run(slow))
            await asyncio.to_thread(on_thread.wait, 10)
            waiting = asyncio.ensure_future(dialect.run(_insert, "cancelled"))
            kept = asyncio.ensure_future(dialect.run(_insert, "kept"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            release.set()
            await first
            await kept
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert (dialect._hot.transactions, dialect._hot.calls) == (2, 2)
        finally:
            release.set()
            await dialect.close()
            await dialect.engine.dispose()

    asyncio.run(run())
    assert _stored(path) == ["kept", "slow"]


def test_a_lone_call_waits_for_company_only_while_calls_come_often(tmp_path: Path) -> None:
    path = tmp_path / "g.db"

    async def run() -> None:
        dialect = await _dialect(path)
        hot = dialect._hot
        hot.delay = 0.5  # long enough that the second call below surely comes within it
        hot.busy_rate = 10.0  # so that the burst below counts as busy on a slow machine too
        try:
            await dialect.run(_insert, "one person")  # a first call: no rate yet
            assert (hot.delayed, hot.transactions) == (0, 1)
            await asyncio.gather(*(dialect.run(_insert, f"burst{i:03d}") for i in range(120)))
            assert hot.delayed == 0  # never alone
            # calls came often: a lone call now waits, and the next one shares its COMMIT
            first = asyncio.ensure_future(dialect.run(_insert, "lone"))
            await asyncio.sleep(0.05)
            second = asyncio.ensure_future(dialect.run(_insert, "company"))
            before = hot.transactions
            await asyncio.gather(first, second)
            assert hot.delayed == 1 and hot.transactions == before + 1
            # after a quiet second and more, a lone call goes at once again
            await asyncio.sleep(1.5)
            await dialect.run(_insert, "quiet")
            assert hot.delayed == 1
        finally:
            await dialect.close()
            await dialect.engine.dispose()

    asyncio.run(run())
    assert len(_stored(path)) == 124


def test_one_fast_client_stops_waiting_for_company_that_never_comes(tmp_path: Path) -> None:
    """A script calling back to back is busy by rate but alone: after a few waits that bring
    nobody, it waits at most once a second (a probe), not on every call."""
    path = tmp_path / "g.db"

    async def run() -> tuple[int, float]:
        dialect = await _dialect(path)
        hot = dialect._hot
        hot.delay = 0.05
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            for i in range(300):
                await dialect.run(_insert, f"v{i:03d}")
            return hot.delayed, loop.time() - started
        finally:
            await dialect.close()
            await dialect.engine.dispose()

    delayed, seconds = asyncio.run(run())
    # four waits bring the smoothed company (from 1) under a half, then one probe a second
    assert delayed <= 4 + int(seconds / PROBE_SECONDS) + 1, (delayed, seconds)
    assert len(_stored(path)) == 300


def test_no_transaction_after_close(tmp_path: Path) -> None:
    path = tmp_path / "g.db"

    async def run() -> None:
        dialect = await _dialect(path)
        await dialect.run(_insert, "before")
        await dialect.close()
        with pytest.raises(RuntimeError, match="closed"):
            await dialect.run(_insert, "after")
        assert dialect._hot._raw is None  # nothing reopened
        await dialect.engine.dispose()

    asyncio.run(run())
    assert _stored(path) == ["before"]
