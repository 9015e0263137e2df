"""The PostgreSQL hot path keeps its connections between statements (store/sql/held.py):
one statement after another runs on the same backend, outside the pool's bookkeeping; a
burst returns what it does not keep; a connection lost with its backend is replaced."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from queue_service.db import create_engine
from queue_service.errors import Unavailable
from queue_service.store.sql.postgres import PostgresDialect


def test_statements_reuse_held_connections_and_survive_a_lost_one(pg) -> None:
    url = pg.new_database()

    async def run() -> None:
        engine = create_engine(url)
        dialect = PostgresDialect(engine)
        held = dialect._held
        try:
            first = (await dialect.fetch("SELECT pg_backend_pid()"))[0][0]
            again = (await dialect.fetch("SELECT pg_backend_pid()"))[0][0]
            assert again == first and held.opened == 1
            assert engine.pool.checkedout() == 1  # held, not checked in and out again

            # a burst of 8 at once: 8 connections, then only `keep` of them stay out
            slow = [dialect.fetch("SELECT pg_backend_pid() FROM pg_sleep(0.2)") for _ in range(8)]
            pids = {row[0][0] for row in await asyncio.gather(*slow)}
            assert len(pids) == 8
            assert engine.pool.checkedout() == held.keep < 8

            # a statement error leaves the connection in use (the most recent goes next)
            opened = held.opened
            last = (await dialect.fetch("SELECT pg_backend_pid()"))[0][0]
            with pytest.raises(asyncpg.UndefinedTableError):
                await dialect.fetch("SELECT * FROM nowhere")
            assert (await dialect.fetch("SELECT pg_backend_pid()"))[0][0] == last
            assert held.opened == opened and len(held._idle) == held.keep

            # the backends go away. (The pool's own idle connections, the burst's extra ones,
            # would die too: they are SQLAlchemy's to replace, so the pool starts empty here
            # and only the held ones are stale.)
            await engine.dispose()
            admin = await asyncpg.connect(pg.dsn(url.rsplit("/", 1)[1]))
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
            finally:
                await admin.close()
            dead = [c for c, _ in held._idle]
            answers, unavailable = [], 0
            for k in range(3):
                if k == 1:  # the first failure took every idle one with it
                    assert not any(c is d for c, _ in held._idle for d in dead)
                try:
                    answers.append((await dialect.fetch("SELECT pg_backend_pid()"))[0][0])
                except Unavailable:  # the statement was sent on the dead one: a retry
                    unavailable += 1
            # the first dead one took every idle one with it: at most one call failed, and
            # one new connection served the rest
            assert unavailable <= 1 and len(answers) >= 2
            assert not set(answers) & pids and held.opened == opened + 1
        finally:
            await dialect.close()
            await engine.dispose()

    asyncio.run(run())


def test_a_small_pool_is_not_taken_over(pg) -> None:
    url = pg.new_database()

    async def run() -> None:
        engine = create_engine(url, pool_size=2)  # 2 + 2 overflow
        dialect = PostgresDialect(engine)
        try:
            assert dialect._held.keep == 1
            slow = [dialect.fetch("SELECT 1 FROM pg_sleep(0.2)") for _ in range(4)]
            await asyncio.gather(*slow)
            assert engine.pool.checkedout() == 1
            async with engine.connect() as conn:  # the rest of the service still gets one
                assert (await conn.exec_driver_sql("SELECT 2")).scalar_one() == 2
        finally:
            await dialect.close()
            await engine.dispose()

    asyncio.run(run())
