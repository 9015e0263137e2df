"""What a database failure means, in one table: the status the caller gets, and whether the
connection it happened on may be used again.

| failure                                                            | status      | connection |
|--------------------------------------------------------------------|-------------|------------|
| connection refused, lost or reset; server shutting down or         | UNAVAILABLE | dropped    |
| restarting (pg_terminate_backend, `pg_ctl stop`, crash recovery);  |             |            |
| a connection in a bad state (asyncpg InterfaceError,               |             |            |
| InternalClientError, ConnectionDoesNotExistError); too many        |             |            |
| connections; an idle-session timeout                               |             |            |
| no pooled connection free in time (pool timeout); SQLite busy      | UNAVAILABLE | kept       |
| statement_timeout, lock_timeout (the statement was cancelled)      | UNAVAILABLE | kept       |
| deadlock victim, serialization failure (the transaction rolled     | ABORTED     | kept       |
| back whole, nothing of it was applied)                             |             |            |
| anything else (a failed statement is a bug)                        | INTERNAL    | kept       |

UNAVAILABLE and ABORTED both say "retry": the Python client retries UNAVAILABLE for calls
that are safe to repeat (reads, and writes made idempotent by a key or a lease token), and
ABORTED for every call: an aborted transaction changed nothing, and an aborted call is
safe to repeat. One call is more than one transaction: UpdatePriorities applies a re-rank in
bounded transactions, so a re-rank that fails or is interrupted part-way (an I/O error, the
client cancelling, a deadlock victim) keeps the ones it committed and may be partly applied;
retrying the same version is safe and completes it.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import grpc
import sqlalchemy.exc

# The connection itself is gone or can no longer be trusted: drop it from the pool.
_BROKEN: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, broken pipe, connect timeout (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    asyncpg.AdminShutdownError,  # 57P01: pg_terminate_backend, a fast or smart shutdown
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.IdleInTransactionSessionTimeoutError,  # 25P03: the server closed the session
    asyncpg.IdleSessionTimeoutError,  # 57P05
    sqlalchemy.exc.DisconnectionError,
)
# The statement did not finish in time; the connection is fine.
_TIMED_OUT: tuple[type[BaseException], ...] = (
    asyncpg.QueryCanceledError,  # 57014: statement_timeout (or a pg_cancel_backend)
    asyncpg.LockNotAvailableError,  # 55P03: lock_timeout, NOWAIT
    asyncpg.TransactionTimeoutError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free within pool_timeout
)
# The transaction lost a conflict and was rolled back whole.
_CONFLICT: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,  # 40P01
    asyncpg.SerializationError,  # 40001
)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what lies under it: SQLAlchemy's wrapper, the adapted DBAPI error,
    the driver's own exception (its `__cause__`), and so on, at most a few levels deep."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 8:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "orig", None), current.__cause__]


# asyncpg.InterfaceError is also raised for bad arguments (a bug, not an outage)
_UNUSABLE = ("connection is closed", "another operation", "cannot perform operation")


def _unusable(e: BaseException) -> bool:
    """asyncpg refused to use the connection: closed, busy, or stuck mid-protocol."""
    if isinstance(e, asyncpg.InternalClientError):
        return True
    return isinstance(e, asyncpg.InterfaceError) and any(m in str(e) for m in _UNUSABLE)


def broken(exc: BaseException) -> bool:
    """Whether the connection the exception came from must not be used again."""
    for e in causes(exc):
        if isinstance(e, _BROKEN) or _unusable(e):
            return True
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
    return False


def never_sent(exc: BaseException) -> bool:
    """Whether the driver refused the statement before sending it (its connection was
    closed, busy, or in a protocol state it could not leave), so it certainly did not run."""
    return _unusable(exc)


def status(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status a database failure is reported as (see the table above), or None when the
    exception is not a database failure of a known kind."""
    found = list(causes(exc))
    for e in found:
        if isinstance(e, _CONFLICT):
            return grpc.StatusCode.ABORTED, "a concurrent transaction conflicted; retry"
    for e in found:
        if isinstance(e, _TIMED_OUT):
            what = type(e).__name__
            return grpc.StatusCode.UNAVAILABLE, f"database timed out ({what}); retry"
    if broken(exc) or any(
        isinstance(e, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)
        for e in found
    ):
        return grpc.StatusCode.UNAVAILABLE, f"database unavailable: {type(exc).__name__}; retry"
    return None
