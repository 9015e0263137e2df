"""Every database failure reaches the caller as the status store/failures.py documents:
UNAVAILABLE (an outage or a timeout) or ABORTED (a lost conflict), never INTERNAL. Each case
is driven for real on a throwaway PostgreSQL: backends terminated under load, a
statement_timeout, a pool with no free connection, a deadlock. (Stopping the server is
tests/test_faults.py::test_database_outage_and_recovery.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import psycopg
import pytest
from sqlalchemy.engine import make_url

from labelgrid import QueueClient
from tests.support.postgres import Postgres
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query
from tests.test_faults import Labellers

Code = grpc.StatusCode
pytestmark = pytest.mark.parametrize("backend", ["postgres"])


def _dbname(database_url: str) -> str:
    return str(make_url(database_url).database)


@pytest.fixture
def admin_sql(pg: Postgres, database_url: str) -> Iterator[Callable[..., list]]:
    """Run SQL as the superuser on the test database, autocommitted."""
    conn = psycopg.connect(pg.dsn(_dbname(database_url)), autocommit=True)

    def run(sql: str, *params: object) -> list:
        cur = conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []

    yield run
    conn.close()


def _dsn(database_url: str) -> str:
    url = make_url(database_url)
    return f"postgresql://{url.username}@{url.host}:{url.port}/{url.database}"


def _wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _waiting_on_lock(sql: Callable[..., list], database_url: str) -> int:
    """How many sessions on the test database wait for a lock."""
    rows = sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        _dbname(database_url),
    )
    return rows[0][0]


def test_terminated_connections_under_load(
    database_url: str, admin_sql: Callable[..., list], project_name: str
) -> None:
    """pg_terminate_backend of every service connection, five times while four labellers
    work: each call that fails says UNAVAILABLE (asyncpg raises InternalClientError,
    InterfaceError or ConnectionDoesNotExistError depending on the moment), the client
    retries what it safely can, and no acknowledged label is lost or doubled."""
    proc = ServiceProcess(database_url).start()
    try:
        with QueueClient(proc.address) as client:
            client.create_project(project_name, ["x"], lease_seconds=3)
            client.add_features(project_name, np.arange(20000, dtype=np.int32).reshape(-1, 1))
        with Labellers(lambda: proc.address, project_name, 4, keep_going=True) as crowd:
            for _ in range(5):
                before = len(crowd.acked)
                _wait(lambda b=before: len(crowd.acked) >= b + 30, 60, "labelling")
                killed = admin_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    _dbname(database_url),
                )
                assert killed, "the service had no connection to terminate"
            before = len(crowd.acked)
            _wait(lambda: len(crowd.acked) >= before + 30, 60, "labelling after the last kill")
        crowd.check()
        rows = query(database_url, "SELECT item_id, worker_id FROM annotations")
        assert set(crowd.acked) <= set(rows), "an acknowledged label was lost"
        assert len({item for item, _ in rows}) == len(rows), "an item was labelled twice"
        assert '"code": "INTERNAL"' not in proc.logs()
    finally:
        proc.kill()


def test_statement_timeout_is_unavailable(
    database_url: str, admin_sql: Callable[..., list], project_name: str
) -> None:
    """A statement cancelled by statement_timeout (here: stuck behind a lock another session
    holds) is UNAVAILABLE, changes nothing, and the same call succeeds once the lock goes."""
    admin_sql(f'ALTER DATABASE "{_dbname(database_url)}" SET statement_timeout = 400')
    proc = ServiceProcess(database_url).start()
    try:
        with QueueClient(proc.address, retries=0, timeout=10) as client:
            client.create_project(project_name, ["x"])
            client.add_features(project_name, ["a", "b", "c"])
            with psycopg.connect(_dsn(database_url)) as locker:
                locker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
                for call in (
                    lambda: client.pop(project_name, "w"),  # the asyncpg hot path
                    lambda: client.progress(project_name),  # through SQLAlchemy
                ):
                    with pytest.raises(grpc.RpcError) as err:
                        call()
                    assert err.value.code() == Code.UNAVAILABLE, err.value.details()
                    assert "timed out" in err.value.details()
                locker.rollback()
            assert query(database_url, "SELECT count(*) FROM items WHERE status = 1") == [(0,)]
            item = client.pop(project_name, "w")[0]
            client.submit(project_name, item, "x", "w")
            assert client.progress(project_name).labelled == 1
        assert '"code": "INTERNAL"' not in proc.logs()
    finally:
        proc.kill()


def test_no_free_connection_is_unavailable(
    database_url: str, admin_sql: Callable[..., list], project_name: str
) -> None:
    """With every pooled connection busy (two calls stuck behind a lock, pool of 1 + 1
    overflow), the next call waits LABELGRID_DB_POOL_TIMEOUT and gets UNAVAILABLE; the stuck
    calls finish when the lock goes."""
    env = {"LABELGRID_DB_POOL_SIZE": "1", "LABELGRID_DB_POOL_TIMEOUT": "0.5"}
    proc = ServiceProcess(database_url, env=env).start()
    try:
        with QueueClient(proc.address, retries=0, timeout=20) as client:
            client.create_project(project_name, ["x"])
            client.add_features(project_name, ["a", "b", "c"])
            results: list[object] = []
            with psycopg.connect(_dsn(database_url)) as locker:
                locker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
                stuck = [
                    threading.Thread(target=lambda: results.append(client.progress(project_name)))
                    for _ in range(2)
                ]
                for t in stuck:
                    t.start()
                _wait(lambda: _waiting_on_lock(admin_sql, database_url) == 2, 20, "two waits")
                with pytest.raises(grpc.RpcError) as err:
                    client.progress(project_name)
                assert err.value.code() == Code.UNAVAILABLE, err.value.details()
                assert "TimeoutError" in err.value.details()
                locker.rollback()
            for t in stuck:
                t.join(20)
            assert len(results) == 2
        assert '"code": "INTERNAL"' not in proc.logs()
    finally:
        proc.kill()


def test_deadlock_is_aborted_and_the_client_retries_it(
    database_url: str, admin_sql: Callable[..., list], project_name: str
) -> None:
    """A real deadlock between UpdatePriorities (project row, then item rows) and another
    session (an item row, then the project row): the service's transaction is the victim
    (its deadlock_timeout is the shorter), the call gets ABORTED and nothing of the aborted
    transaction is applied (a re-rank is applied in bounded transactions after claiming its
    version, so the version is already the project's, as queue_service/store/priorities.py
    documents); a client with retries gets it done once the other session ends."""
    admin_sql(f'ALTER DATABASE "{_dbname(database_url)}" SET deadlock_timeout = 100')
    proc = ServiceProcess(database_url).start()
    try:
        with QueueClient(proc.address, retries=0) as client:
            client.create_project(project_name, ["x"])
            ids = client.add_features(project_name, ["a", "b"])
            project_row = query(
                database_url, f"SELECT id FROM projects WHERE name = '{project_name}'"
            )[0]

            def deadlock(call: Callable[[], object]) -> list[object]:
                outcome: list[object] = []

                def run() -> None:
                    try:
                        outcome.append(call())
                    except grpc.RpcError as exc:
                        outcome.append(exc)

                with psycopg.connect(_dsn(database_url)) as other:
                    other.execute("SET deadlock_timeout = '10s'")
                    other.execute("UPDATE items SET priority = 0 WHERE id = %s", (ids[0],))
                    thread = threading.Thread(target=run)
                    thread.start()
                    _wait(lambda: _waiting_on_lock(admin_sql, database_url), 20, "the lock wait")
                    # closes the cycle; PostgreSQL aborts the service's transaction
                    other.execute(
                        "UPDATE projects SET model_version = 0 WHERE id = %s", project_row
                    )
                    time.sleep(0.3)  # a retrying client is now waiting for this session
                    other.rollback()
                thread.join(30)
                return outcome

            (aborted,) = deadlock(lambda: client.update_priorities(project_name, ids, [1, 2], 1))
            assert isinstance(aborted, grpc.RpcError)
            assert aborted.code() == Code.ABORTED, aborted.details()
            assert "conflict" in aborted.details()
            # the claim committed; the one slice (both items) was rolled back whole
            assert client.get_project(project_name).model_version == 1
            assert query(database_url, "SELECT count(*) FROM items WHERE priority > 0") == [(0,)]

        with QueueClient(proc.address, retries=3) as retrying:
            (reply,) = deadlock(lambda: retrying.update_priorities(project_name, ids, [1, 2], 1))
            assert not isinstance(reply, grpc.RpcError), reply
            assert retrying.get_project(project_name).model_version == 1
            got = query(
                database_url,
                f"SELECT priority FROM items WHERE id IN ({ids[0]}, {ids[1]}) ORDER BY id",
            )
            assert [p for (p,) in got] == [1, 2]
        assert '"code": "INTERNAL"' not in proc.logs()
        assert "ABORTED" in proc.logs()
    finally:
        proc.kill()
