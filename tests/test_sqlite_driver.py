"""The SQLite engine's one-hop cursor (queue_service/sqlite_driver.py) behaves as the stock
aiosqlite adapter does: rows, rowcount, lastrowid, RETURNING, executemany, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from queue_service import sqlite_driver
from queue_service.db import create_engine


def test_aiosqlite_still_has_what_the_cursor_uses() -> None:
    assert sqlite_driver.supported()


def test_one_hop_cursor_round_trip(tmp_path: Path) -> None:
    async def run() -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
        try:
            async with engine.begin() as conn:
                raw = await conn.get_raw_connection()
                assert isinstance(raw.dbapi_connection, sqlite_driver.OneHopConnection)
                await conn.execute(
                    sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
                )
                inserted = await conn.execute(sa.text("INSERT INTO t (v) VALUES ('a')"))
                assert inserted.lastrowid == 1 and inserted.rowcount == 1
                await conn.execute(
                    sa.text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}]
                )
                back = await conn.execute(sa.text("INSERT INTO t (v) VALUES ('d') RETURNING id"))
                assert back.scalar_one() == 4
                updated = await conn.execute(sa.text("UPDATE t SET v = v || '!' WHERE id > 1"))
                assert updated.rowcount == 3
                rows = (await conn.execute(sa.text("SELECT id, v FROM t ORDER BY id"))).all()
                assert [tuple(r) for r in rows] == [(1, "a"), (2, "b!"), (3, "c!"), (4, "d!")]
                empty = await conn.execute(sa.text("SELECT id FROM t WHERE id > 99"))
                assert empty.all() == []
            with pytest.raises(sa.exc.IntegrityError):
                async with engine.begin() as conn:
                    await conn.execute(sa.text("INSERT INTO t (v) VALUES ('a')"))
            async with engine.connect() as conn:  # the failed transaction left nothing
                count = (await conn.execute(sa.text("SELECT COUNT(*) FROM t"))).scalar_one()
                assert count == 4
        finally:
            await engine.dispose()

    asyncio.run(run())
