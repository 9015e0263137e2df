"""Read a whole database synchronously, to prove a refused request changed nothing."""

from __future__ import annotations

import sqlite3

from sqlalchemy.engine import make_url

TABLES = {
    "projects": "id",
    "batches": "id",
    "items": "id",
    "item_inputs": "item_id",
    "annotations": "id",
    "training_runs": "id",
    "tokens": "id",
    "assignments": "id",
}


def snapshot(database_url: str) -> dict[str, list[tuple]]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database)
        try:
            return {
                t: conn.execute(f"SELECT * FROM {t} ORDER BY {k}").fetchall()
                for t, k in TABLES.items()
            }
        finally:
            conn.close()
    import psycopg

    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        return {
            t: [tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY {k}")]
            for t, k in TABLES.items()
        }


def query(database_url: str, sql: str) -> list[tuple]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    import psycopg

    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        return [tuple(r) for r in conn.execute(sql)]
