"""Re-ranks never stall labelling (issue 17): UpdatePriorities is applied in bounded
transactions, so a Pop completes while a large re-rank is still being applied, on both
backends, and a stale model still never overwrites a newer one across those transactions."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from sqlalchemy.engine import make_url

from labelgrid import QueueClient
from tests.support.servers import ServiceProcess

N = 150_000
# long enough for a re-rank of N to be staged (about a second here), well short of the
# service's 30 s busy timeout
HOLD_SECONDS = 5.0


def ranked_counter(database_url: str) -> Callable[[], int]:
    """How many items have a priority (committed), read straight from the database."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        import sqlite3

        path = url.database

        def count() -> int:
            with sqlite3.connect(path, timeout=30) as conn:
                return conn.execute(
                    "SELECT COUNT(*) FROM items WHERE priority > -1e300"
                ).fetchone()[0]

        return count
    import psycopg

    dsn = url.set(drivername="postgresql").render_as_string(False)

    def count_pg() -> int:
        with psycopg.connect(dsn) as conn:
            return conn.execute("SELECT COUNT(*) FROM items WHERE priority > -1e300").fetchone()[0]

    return count_pg


@contextlib.contextmanager
def hold_sqlite_writes(database_url: str, seconds: float = HOLD_SECONDS) -> Iterator[None]:
    """On SQLite, the file's write lock taken by a connection of the test's and held for
    `seconds`, the block running meanwhile: a re-rank in progress stops at its next
    transaction, so one sent in the block is staged and waiting for the write lock before the
    first can go on. Without it, on a fast machine the first finished all its transactions
    while the second was being staged (CI once), and the test raced. PostgreSQL needs no
    help: a claim there does not wait for the first re-rank's transaction."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        yield
        return
    import sqlite3

    conn = sqlite3.connect(url.database, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")  # waits for the first re-rank's current transaction
    release = threading.Timer(seconds, conn.execute, ("ROLLBACK",))
    release.start()
    try:
        yield
    finally:
        release.join()
        conn.close()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def test_a_pop_completes_while_a_large_rerank_is_in_progress(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    pop_during_a_rerank(service, database_url, project_name)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_rerank_and_a_pop_share_a_pool_of_one(database_url: str, project_name: str) -> None:
    """The re-rank's connection is its own, outside the pool: with a pool of one, a Pop
    holding the write lock still gets the pooled connection (they waited on each other)."""
    service = ServiceProcess(database_url, {"LABELGRID_DB_POOL_SIZE": "1"}).start()
    try:
        pop_during_a_rerank(service, database_url, project_name)
    finally:
        service.kill()


def pop_during_a_rerank(service: ServiceProcess, database_url: str, project_name: str) -> None:
    with QueueClient(service.address, timeout=600) as trainer:
        trainer.create_project(project_name, ["a"])
        ids = np.asarray(trainer.add_features(project_name, np.zeros((N, 1), np.uint8)))
        new = np.random.default_rng(0).random(N)
        ranked = ranked_counter(database_url)
        assert ranked() == 0
        errors: list[BaseException] = []

        def rerank() -> None:
            try:
                trainer.update_priorities(project_name, ids, new, model_version=1)
            except BaseException as exc:  # reported below
                errors.append(exc)

        updating = threading.Thread(target=rerank)
        updating.start()
        wait_for(lambda: ranked() > 0, "a first part of the re-rank committed")
        with QueueClient(service.address, timeout=60, retries=0) as labeller:
            items = labeller.pop(project_name, "w")
        during = ranked()
        # the Pop was served between two transactions of the re-rank, not after all of it
        assert 0 < during < N, during
        assert updating.is_alive()
        assert len(items) == 1
        (item,) = items
        # it was served by the new ranking's applied part (unranked items come last)
        assert item.priority == new[ids == item.id][0]
        updating.join(600)
        assert not errors, errors
        assert ranked() == N
        assert trainer.get_project(project_name).model_version == 1


def test_the_top_of_a_new_ranking_is_applied_first(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    """A re-rank is applied in its new order, so the first Pop during it already gets the
    new model's top item."""
    with QueueClient(service.address, timeout=600) as trainer:
        trainer.create_project(project_name, ["a"])
        ids = np.asarray(trainer.add_features(project_name, np.zeros((N, 1), np.uint8)))
        new = np.random.default_rng(1).random(N)
        ranked = ranked_counter(database_url)
        updating = threading.Thread(
            target=trainer.update_priorities,
            args=(project_name, ids, new),
            kwargs={"model_version": 3},
        )
        updating.start()
        wait_for(lambda: ranked() > 0, "a first part of the re-rank committed")
        with QueueClient(service.address, timeout=60, retries=0) as labeller:
            (item,) = labeller.pop(project_name, "w")
        assert ranked() < N
        assert item.id == ids[np.argmax(new)]
        updating.join(600)
        assert not updating.is_alive()


def test_a_stale_model_never_overwrites_a_newer_one_across_transactions(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    """Version 1 is re-ranking, with a labeller popping all along (so it goes in many
    transactions), when version 2 is applied: version 1 stops, refused, and every item keeps
    version 2's priority (no part of version 1 is written after it)."""
    with QueueClient(service.address, timeout=600) as trainer:
        trainer.create_project(project_name, ["a"])
        ids = np.asarray(trainer.add_features(project_name, np.zeros((N, 1), np.uint8)))
        ranked = ranked_counter(database_url)
        outcome: list[BaseException | None] = []
        pops = 0

        def old_model() -> None:
            try:
                trainer.update_priorities(project_name, ids, np.full(N, 1.0), model_version=1)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        def labeller() -> None:
            nonlocal pops
            with QueueClient(service.address, timeout=60, retries=0) as client:
                while updating.is_alive():
                    for item in client.pop(project_name, "w"):
                        client.release(project_name, item, "w")
                        pops += 1

        updating = threading.Thread(target=old_model)
        updating.start()
        popping = threading.Thread(target=labeller)
        popping.start()
        wait_for(lambda: ranked() > 0, "a first part of version 1 committed")
        with hold_sqlite_writes(database_url):
            with QueueClient(service.address, timeout=600, retries=0) as newer:
                newer.update_priorities(project_name, ids, np.full(N, 2.0), model_version=2)
        updating.join(600)
        popping.join(60)
        assert pops > 0
        assert len(outcome) == 1 and outcome[0] is not None
        assert "older than the applied version 2" in str(outcome[0])
        assert trainer.get_project(project_name).model_version == 2
        url = make_url(database_url)
        sql = "SELECT priority, COUNT(*) FROM items GROUP BY priority"
        if url.get_backend_name() == "sqlite":
            import sqlite3

            with sqlite3.connect(url.database) as conn:
                counts = dict(conn.execute(sql).fetchall())
        else:
            import psycopg

            dsn = url.set(drivername="postgresql").render_as_string(False)
            with psycopg.connect(dsn) as conn:
                counts = dict(conn.execute(sql).fetchall())
        assert counts == {2.0: N}


def test_concurrent_reranks_of_one_version_never_interleave(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    """Two re-ranks of the same model version sent at once, with different rankings: both
    succeed, one after the other, and every item ends with one of the two rankings, never a
    mix of them (unserialised, they interleaved slice by slice)."""
    with QueueClient(service.address, timeout=600) as trainer:
        trainer.create_project(project_name, ["a"])
        ids = np.asarray(trainer.add_features(project_name, np.zeros((N, 1), np.uint8)))
        rng = np.random.default_rng(2)
        # distinct values, so each item says which ranking it has (and SQLite applies the
        # two in different orders)
        rankings = [rng.random(N), rng.random(N) + 1.0]
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def rerank(new: np.ndarray) -> None:
            try:
                with QueueClient(service.address, timeout=600, retries=0) as c:
                    start.wait()
                    c.update_priorities(project_name, ids, new, model_version=1)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=rerank, args=(r,)) for r in rankings]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not errors, errors
        got = priorities_by_id(database_url)
        final = np.array([got[i] for i in ids.tolist()])
        from_first = int(np.sum(final == rankings[0]))
        from_second = int(np.sum(final == rankings[1]))
        assert from_first + from_second == N
        assert (from_first, from_second) in ((N, 0), (0, N)), (from_first, from_second)
        assert trainer.get_project(project_name).model_version == 1


def priorities_by_id(database_url: str) -> dict[int, float]:
    """Every item's priority, read straight from the database."""
    url = make_url(database_url)
    sql = "SELECT id, priority FROM items"
    if url.get_backend_name() == "sqlite":
        import sqlite3

        with sqlite3.connect(url.database, timeout=30) as conn:
            return dict(conn.execute(sql).fetchall())
    import psycopg

    dsn = url.set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute(sql).fetchall())


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_pop_waits_for_locked_rows_only_so_long(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    """A Pop that finds every available row locked waits for them under a lock timeout: a
    transaction that holds them all and does not let go leaves the Pop empty, not an error
    and not a call that waits for as long as the lock is held."""
    import psycopg

    from queue_service.schema import AVAILABLE

    with QueueClient(service.address, timeout=600) as trainer:
        trainer.create_project(project_name, ["a"])
        trainer.add_features(project_name, np.zeros((5, 1), np.uint8))
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as holder:
        locked = holder.execute(
            "SELECT id FROM items WHERE status = %s FOR UPDATE", (AVAILABLE,)
        ).fetchall()
        assert len(locked) == 5
        # a deadline far beyond the lock timeout: without one, the Pop ran into it
        with QueueClient(service.address, timeout=60, retries=0) as labeller:
            assert labeller.pop(project_name, "w") == []
        holder.rollback()
    with QueueClient(service.address, timeout=60, retries=0) as labeller:
        assert len(labeller.pop(project_name, "w")) == 1
