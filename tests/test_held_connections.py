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

            # a statement error leaves the connection in use
            with pytest.raises(asyncpg.UndefinedTableError):
                await dialect.fetch("SELECT * FROM nowhere")
            kept = (await dialect.fetch("SELECT pg_backend_pid()"))[0][0]
            assert kept in pids

            # the backend goes away: the next statements get a new connection
            admin = await asyncpg.connect(pg.dsn(url.rsplit("/", 1)[1]))
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
            finally:
                await admin.close()
            answers = []
            for _ in range(3):
                try:
                    answers.append((await dialect.fetch("SELECT pg_backend_pid()"))[0][0])
                except Unavailable:  # the statement was sent on the dead one: a retry
                    continue
            assert answers and not set(answers) & pids
        finally:
            await dialect.close()
            await engine.dispose()

    asyncio.run(run())
