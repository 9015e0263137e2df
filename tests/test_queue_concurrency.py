"""Many labellers at once: no double leases, nothing acknowledged lost, counts add up."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from labelgrid import QueueClient
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query

WORKERS = 16
ITEMS = 2000


def test_sixteen_clients_drain_two_thousand_items(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    with QueueClient(service.address) as admin:
        admin.create_project(project_name, ["even", "odd"])
        ids = admin.add_features(project_name, np.arange(ITEMS, dtype=np.int64).reshape(-1, 1))
    assert len(ids) == ITEMS

    acknowledged: dict[str, list[int]] = {}
    leased_at_once: list[tuple[str, int]] = []
    holders: dict[int, str] = {}
    guard = threading.Lock()
    errors: list[BaseException] = []

    def labeller(worker: str) -> None:
        mine: list[int] = []
        try:
            with QueueClient(service.address) as client:
                while True:
                    batch = client.pop(project_name, worker, n=1 + len(mine) % 3)
                    if not batch:
                        break
                    with guard:
                        for it in batch:
                            if it.id in holders:
                                leased_at_once.append((worker, it.id))
                            holders[it.id] = worker
                    for it in batch:
                        label = "even" if int(it.input[0]) % 2 == 0 else "odd"
                        with guard:
                            del holders[it.id]
                        client.submit(project_name, it, label, worker)
                        mine.append(it.id)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        acknowledged[worker] = mine

    threads = [threading.Thread(target=labeller, args=(f"w{i}",)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert leased_at_once == []

    all_acked = [i for ids_ in acknowledged.values() for i in ids_]
    assert sorted(all_acked) == ids  # every item labelled exactly once
    rows = query(database_url, "SELECT item_id, worker_id FROM annotations")
    assert len(rows) == ITEMS
    assert Counter(w for _, w in rows) == Counter({w: len(v) for w, v in acknowledged.items()})
    assert {item for item, _ in rows} == set(ids)

    with QueueClient(service.address) as client:
        progress = client.progress(project_name)
    assert (progress.total, progress.labelled, progress.leased, progress.available) == (
        ITEMS,
        ITEMS,
        0,
        0,
    )
    assert sum(w.labelled for w in progress.workers) == ITEMS
    assert {c.label: c.count for c in progress.labels} == {"even": ITEMS // 2, "odd": ITEMS // 2}
    assert sum(1 for v in acknowledged.values() if v) > 1  # the work really was shared


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_priority_update_waiting_on_an_item_never_blocks_submits(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    """UpdatePriorities holds its project's row while it waits for an item row; a Submit's
    foreign-key check on that project row must not wait behind it (that wait was one half
    of a deadlock seen under load)."""
    import psycopg
    from sqlalchemy.engine import make_url

    with QueueClient(service.address) as client:
        client.create_project(project_name, ["a"])
        ids = client.add_features(project_name, ["x", "y", "z"])
        leased = client.pop(project_name, "w", n=2)
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(dsn) as blocker:
            blocker.execute(f"SELECT id FROM items WHERE id = {ids[2]} FOR UPDATE")
            updating = threading.Thread(
                target=client.update_priorities,
                args=(project_name, ids, [1.0, 2.0, 3.0]),
                kwargs={"model_version": 1},
            )
            updating.start()
            time.sleep(1.0)  # the update now holds the project row and waits for item z
            assert updating.is_alive()
            with QueueClient(service.address, timeout=5, retries=0) as labeller:
                reply = labeller.submit(project_name, leased[0], "a", "w")
            assert reply.annotation_id > 0
            blocker.rollback()
        updating.join(30)
        assert not updating.is_alive()
        assert client.get_project(project_name).model_version == 1
