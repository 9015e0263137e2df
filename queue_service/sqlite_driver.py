"""SQLAlchemy's aiosqlite adapter with one thread hop per statement instead of four.

aiosqlite runs each sqlite3 call on its connection's own thread; SQLAlchemy's adapter makes
four such calls per statement (open a cursor, execute, fetch all, close), and every hop costs
the event loop a wake-up, a GIL hand-off and a callback. A Submit with pop_next runs about
seven statements: 27 hops, about 2 ms of CPU of the event loop's thread, against 0.6 ms for
the same Submit on PostgreSQL (asyncpg needs no thread). Here a statement is one function run
on that thread (cursor, execute, fetch, close), so the SQL, the transaction and the results
are exactly the same; only the number of crossings changes.

It leans on two private parts of aiosqlite that SQLAlchemy's own adapter uses as well
(`Connection._conn`, `Connection._execute`); `tests/test_sqlite_driver.py` checks they are
still there, and the engine falls back to the stock adapter when they are not.
"""

from __future__ import annotations

import collections
from threading import Thread
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_


def _run(raw: Any, operation: Any, parameters: Any, many: bool) -> tuple[Any, int, Any, Any]:
    """On the connection's thread: the whole statement, results read, cursor closed."""
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor that opens, runs, fetches and closes in one call on the sqlite thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:  # no cursor (and no hop) up front
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: Any = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    async def _statement(self, operation: Any, parameters: Any, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:
            conn = self._connection
            found = await conn._execute(_run, conn._conn, operation, parameters, many)
            self._description, self._rowcount, self._lastrowid, rows = found
            self._rows = collections.deque(rows or ())

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._statement(operation, parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._statement(operation, seq_of_parameters, True)

    async def _async_soft_close(self) -> None:
        return None  # closed on the thread already

    def close(self) -> None:
        self._rows.clear()


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to give `create_async_engine(module=...)`."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn:
            connection = creator_fn(*arg, **kw)
        else:
            connection = self.aiosqlite.connect(*arg, **kw)
            thread = connection if isinstance(connection, Thread) else connection._thread
            thread.daemon = True
        return OneHopConnection(self, await_(connection))


async def on_thread(adapted: Any, fn: Any, *args: Any) -> Any:
    """`fn(sqlite3_connection, *args)` run on the connection's own thread: a whole transaction
    as one hop (store/sql/sqlite.py's hot path). sqlite3 errors come back as SQLAlchemy's, as
    through the engine, so store/failures.py gives them the same statuses."""
    import sqlite3

    async with adapted._execute_mutex:
        conn = adapted._connection
        try:
            return await conn._execute(fn, conn._conn, *args)
        except sqlite3.Error as exc:
            raise as_sqlalchemy_error(exc) from exc


def as_sqlalchemy_error(exc: BaseException) -> BaseException:
    """A sqlite3 error as SQLAlchemy's (what store/failures.py maps to a status); any other
    error as it is."""
    import sqlite3

    import sqlalchemy.exc

    if isinstance(exc, sqlite3.Error):
        return sqlalchemy.exc.DBAPIError.instance(None, None, exc, sqlite3.Error)
    return exc


def supported() -> bool:
    """Whether this aiosqlite still has what the one-hop cursor uses."""
    import aiosqlite

    return callable(getattr(aiosqlite.Connection, "_execute", None)) and isinstance(
        getattr(aiosqlite.Connection, "_conn", None), property
    )


def dbapi() -> OneHopDBAPI | None:
    if not supported():
        return None
    import sqlite3

    import aiosqlite

    return OneHopDBAPI(aiosqlite, sqlite3)
