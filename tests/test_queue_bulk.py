"""Bulk paths: a large array round-trips bit-exact; a large priority update is served in order."""

from __future__ import annotations

import time

import numpy as np
import pytest

from labelgrid import QueueClient, arrays
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query


def test_fifty_thousand_rows_round_trip_bit_exact(client: QueueClient, project_name: str) -> None:
    rng = np.random.default_rng(42)
    X = rng.standard_normal((50_000, 64)).astype(np.float32)
    X[0, :4] = [np.nan, np.inf, -0.0, np.finfo(np.float32).tiny]  # values a text codec would mangle
    client.create_project(project_name, ["a", "b"])
    ids = client.add_features(project_name, X)
    assert len(ids) == 50_000

    got_ids: list[int] = []
    rows: list[np.ndarray] = []
    chunks = 0
    for chunk in client.stream_unlabelled(project_name, chunk_size=5000):
        chunks += 1
        for item in chunk.items:
            got_ids.append(item.id)
            rows.append(arrays.decode(item.input.array))
    assert chunks > 1
    assert got_ids == ids
    back = np.stack(rows)
    assert back.dtype == np.float32 and back.shape == X.shape
    assert back.tobytes() == X.tobytes()


def test_two_hundred_thousand_priorities_then_pop_in_order(
    service: ServiceProcess, project_name: str
) -> None:
    n = 200_000
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["a"])
        ids = np.asarray(client.add_features(project_name, np.zeros((n, 1), np.uint8)))
        priorities = np.random.default_rng(1).permutation(n).astype(np.float64)
        reply = client.update_priorities(project_name, ids, priorities, model_version=7)
        assert reply.updated == n and reply.model_version == 7
        popped = client.pop(project_name, "w", n=50)
        expected = ids[np.argsort(-priorities, kind="stable")[:50]]
        assert [it.id for it in popped] == expected.tolist()
        assert [it.priority for it in popped] == sorted(priorities, reverse=True)[:50]
        assert client.get_project(project_name).model_version == 7


def test_packed_stream_matches_item_stream(client: QueueClient, project_name: str) -> None:
    rng = np.random.default_rng(5)
    client.create_project(project_name, ["a"])
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    ids = client.add_features(project_name, X)
    mixed = client.add_features(project_name, ["text", np.arange(3, dtype=np.int8)])
    more = client.add_features(project_name, X[:5])
    got_ids: list[int] = []
    got: list = []
    for batch_ids, values in client.unlabelled(project_name, chunk_size=700):
        got_ids += batch_ids
        got += values
    assert got_ids == ids + mixed + more
    assert np.stack(got[:3000]).tobytes() == X.tobytes()
    assert got[3000] == "text" and got[3001].dtype == np.int8
    assert np.stack(got[3002:]).tobytes() == X[:5].tobytes()
    replies = list(client.stream_unlabelled(project_name, packed=True, chunk_size=700))
    assert any(r.HasField("rows") and r.rows.shape[0] > 1 for r in replies)


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_bulk_insert_refreshes_the_planner_statistics(
    client: QueueClient, project_name: str, database_url: str
) -> None:
    """Until statistics exist the planner thinks `items` is empty and a Pop sorts every
    available item; a large AddFeatures therefore ANALYZEs at once, not when autovacuum
    gets round to it."""
    client.create_project(project_name, ["a"])
    client.add_features(project_name, np.zeros((6000, 1), np.uint8))
    analysed = "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'items'"
    deadline = time.monotonic() + 30
    while query(database_url, analysed) != [(True,)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert query(database_url, analysed) == [(True,)]
    plan = "\n".join(
        r[0]
        for r in query(
            database_url,
            "EXPLAIN SELECT id FROM items WHERE project_id = 1 AND status = 0 "
            "ORDER BY priority DESC, id LIMIT 1",
        )
    )
    assert "ix_items_pop" in plan and "Sort" not in plan


def test_bulk_rows_and_item_by_item_are_the_same_data_for_a_key(
    client: QueueClient, project_name: str, database_url: str
) -> None:
    """Rows sent as one block (the fast path) and the same rows sent with (empty) labels,
    which go item by item, hash to the same idempotency digest and store the same bytes."""
    X = np.random.default_rng(5).standard_normal((3000, 8)).astype(np.float32)
    client.create_project(project_name, ["a"])
    ids = client.add_features(project_name, X, key="k1")
    again = client.add_features(project_name, X, key="k1", labels=[None] * len(X))
    assert again == ids
    assert query(database_url, "SELECT COUNT(*) FROM items") == [(3000,)]
    with pytest.raises(Exception, match="different data"):
        client.add_features(project_name, X[::-1].copy(), key="k1")
    back = np.stack([row for _, rows in client.unlabelled(project_name) for row in rows])
    assert back.tobytes() == X.tobytes()
    stored = query(database_url, f"SELECT dtype, shape FROM item_inputs WHERE item_id = {ids[7]}")
    assert stored == [("<f4", "8")]


def test_counting_a_workers_leases_reads_only_that_workers(
    client: QueueClient, project_name: str, database_url: str, backend: str
) -> None:
    """A Pop counts the worker's live leases (the per-worker limit). With a crowd holding
    two leases a page, that count must not read every leased item of the project: each Pop
    would then cost more the larger the crowd (migration 0009's ix_items_held)."""
    client.create_project(project_name, ["a"])
    client.add_features(project_name, np.zeros((2000, 1), np.uint8))
    for w in range(300):
        assert len(client.pop(project_name, worker_id=f"w{w}", n=2)) == 2
    held = (  # store/sql/queries.py's `held`, with values in place of its parameters
        "SELECT COUNT(*) FROM items WHERE project_id = 1 AND status = 1 "
        "AND leased_by = 'w7' AND lease_expires_at > 0"
    )
    assert query(database_url, held) == [(2,)]
    if backend == "postgres":
        plan = "\n".join(r[0] for r in query(database_url, "EXPLAIN " + held))
    else:
        plan = "\n".join(r[3] for r in query(database_url, "EXPLAIN QUERY PLAN " + held))
    assert "ix_items_held" in plan, plan


@pytest.mark.parametrize("backend", ["postgres"])
def test_expired_leases_are_found_by_index(
    client: QueueClient, project_name: str, database_url: str
) -> None:
    """The statements that look for expired leases compare with one instant per statement
    (`statement_timestamp()`), not the volatile `clock_timestamp()`, so the expiry is an
    index condition instead of a filter over every live lease of the project."""
    import psycopg
    from sqlalchemy.engine import make_url

    from queue_service.store.sql.postgres import PostgresDialect
    from queue_service.store.sql.queries import Queries

    client.create_project(project_name, ["a"], overlap=2)
    client.add_features(project_name, np.zeros((2000, 1), np.uint8))
    for w in range(300):
        assert len(client.pop(project_name, worker_id=f"w{w}", n=2)) == 2
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE assignments, items")  # what autovacuum would do by now
    q = Queries(PostgresDialect)  # type: ignore[arg-type]  # only its clauses are read
    for statement in (q.shared.due, q.single.reclaim):
        sql = statement.text.replace(":p", "1")
        plan = "\n".join(r[0] for r in query(database_url, "EXPLAIN " + sql))
        conditions = [line for line in plan.splitlines() if "Index Cond" in line]
        assert any("expires_at <=" in line for line in conditions), plan
