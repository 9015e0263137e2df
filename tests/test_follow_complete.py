"""StreamLabelled's cursor is an annotation id: a follower (the trainer, `new_labels`, an
export pipeline) asks for what is past the last id it got. That is only sound if no label can
ever appear below an id a follower has already passed, which this file checks the way labels
actually arrive: concurrent labellers on PostgreSQL (whose ids are taken when a transaction
inserts, not when it commits), and an undo followed by a new label on SQLite (which reuses the
largest rowid once its row is deleted)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from labelgrid import QueueClient
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query


def _follow(
    address: str, project: str, got: list[int], stop: threading.Event, consensus: str | None
) -> None:
    """Follow StreamLabelled until `stop`: annotation ids, or item ids of consensus rows."""
    with QueueClient(address, retries=0) as client:
        stream = client.stream_labelled(project, follow=True, labels_only=True, consensus=consensus)
        threading.Thread(target=lambda: (stop.wait(), stream.cancel()), daemon=True).start()
        try:
            for chunk in stream:
                got.extend(i.item_id if consensus else i.annotation_id for i in chunk.items)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise


def _followed(
    follow: str, crowd: list[str], project: str, url: str, sql: str, consensus: str | None = None
) -> tuple[set[int], list[int]]:
    """Label for a few seconds through `crowd` while following through `follow`; what the
    database holds (`sql`) and what the follower got, once it caught up (10 s at most)."""
    got: list[int] = []
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(follow, project, got, stop, consensus))
    follower.start()
    try:
        _crowd(crowd, project, 6)
        stored = {r[0] for r in query(url, sql)}
        deadline = time.monotonic() + 10
        while set(got) != stored and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        follower.join(10)
    return stored, got


def _check(stored: set[int], got: list[int], least: int) -> None:
    assert len(stored) > least
    missed = sorted(stored - set(got))
    assert not missed, f"the follower never got {len(missed)} of {len(stored)}: {missed[:10]}"
    assert len(got) == len(set(got)), "sent twice"


def _label(address: str, project: str, worker: str, until: float, errors: list) -> None:
    try:
        with QueueClient(address, retries=0) as client:
            items = client.pop(project, worker)
            while items and time.monotonic() < until:
                reply = client.submit(project, items[0], "x", worker, pop_next=True)
                items = [reply.next] if reply.HasField("next") else []
    except Exception as exc:  # reported by the test
        errors.append(exc)


def test_a_follower_gets_every_label_of_concurrent_labellers(
    service, client: QueueClient, database_url: str, project_name: str
) -> None:
    client.create_project(project_name, ["x"])
    client.add_features(project_name, [f"item {i}" for i in range(20000)])
    address = service.address
    sql = "SELECT id FROM annotations"
    _check(*_followed(address, [address], project_name, database_url, sql), least=200)


def test_a_label_after_an_undo_reaches_a_follower_past_the_undone_one(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["x", "y"])
    client.add_features(project_name, ["a", "b"])
    for _ in range(2):
        [item] = client.pop(project_name, "ann")
        client.submit(project_name, item, "x", "ann")
    first = [r for c in client.stream_labelled(project_name) for r in c.items]
    cursor = first[-1].annotation_id
    item, _ = client.undo(project_name, "ann")
    client.submit(project_name, item, "y", "ann")
    later = [r for c in client.stream_labelled(project_name, cursor) for r in c.items]
    assert [(r.item_id, list(r.labels)) for r in later] == [(item.id, ["y"])]
    assert later[0].annotation_id > cursor


def _crowd(addresses: list[str], project: str, seconds: float) -> None:
    errors: list = []
    until = time.monotonic() + seconds
    labellers = [
        threading.Thread(
            target=_label, args=(addresses[k % len(addresses)], project, w, until, errors)
        )
        for k, w in enumerate(("w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7"))
    ]
    for t in labellers:
        t.start()
    for t in labellers:
        t.join()
    assert not errors, errors


def test_a_consensus_follower_gets_every_completed_item(
    service, client: QueueClient, database_url: str, project_name: str
) -> None:
    """Overlap 3: a follower of the consensus gets a row for every item whose third label
    came, however the labellers' transactions interleave."""
    client.create_project(project_name, ["x"], overlap=3)
    client.add_features(project_name, [f"item {i}" for i in range(20000)])
    address, sql = service.address, "SELECT id FROM items WHERE status = 2"
    done = _followed(address, [address], project_name, database_url, sql, "majority")
    _check(*done, least=50)


@pytest.mark.postgres
def test_a_follower_of_one_replica_gets_every_label_made_through_both(
    pg, project_name: str
) -> None:
    """The settled id counts every transaction holding the annotation sequence, whichever
    replica runs it, so labels committed late through the other replica are not passed."""
    url = pg.new_database()
    a, b = ServiceProcess(url).start(), ServiceProcess(url).start()
    try:
        with QueueClient(a.address) as client:
            client.create_project(project_name, ["x"])
            client.add_features(project_name, [f"item {i}" for i in range(20000)])
        sql = "SELECT id FROM annotations"
        followed = _followed(a.address, [a.address, b.address], project_name, url, sql)
    finally:
        a.kill()
        b.kill()
    _check(*followed, least=200)


@pytest.mark.postgres
def test_an_id_taken_and_not_committed_holds_followers_back_but_not_exports(
    pg, project_name: str
) -> None:
    """A transaction that has taken an annotation id and not committed (a Submit between its
    insert and its commit, here held open by hand): StreamLabelled stops below it, ExportLabels
    does not wait, and once it ends the follower gets the rest, in id order."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = pg.new_database()
    service = ServiceProcess(url).start()
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    held = psycopg.connect(dsn)
    try:
        with QueueClient(service.address, retries=0) as client:
            client.create_project(project_name, ["x"])
            client.add_features(project_name, ["a", "b", "c", "d"])
            for worker in ("ann", "bob"):
                [item] = client.pop(project_name, worker)
                client.submit(project_name, item, "x", worker)
            # a follower has read once before (the service has seen ids 1-2 settle)
            first = [r.annotation_id for c in client.stream_labelled(project_name) for r in c.items]
            assert len(first) == 2
            taken = held.execute("SELECT nextval(pg_get_serial_sequence('annotations', 'id'))")
            gap = taken.fetchone()[0]
            for worker in ("cy", "dee"):
                [item] = client.pop(project_name, worker)
                client.submit(project_name, item, "x", worker)
            got: list[int] = []
            stop = threading.Event()
            follower = threading.Thread(
                target=_follow, args=(service.address, project_name, got, stop, None)
            )
            follower.start()
            ids = [r.annotation_id for c in client.stream_labelled(project_name) for r in c.items]
            assert ids == [gap - 2, gap - 1]  # not past the id still to commit
            exported = [r.annotation_id for r in client.export_labels(project_name)]
            assert exported == [gap - 2, gap - 1, gap + 1, gap + 2]
            time.sleep(0.5)
            assert got == [gap - 2, gap - 1]
            held.rollback()  # it never commits: the gap is for good
            deadline = time.monotonic() + 5
            while len(got) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            follower.join(10)
            assert got == [gap - 2, gap - 1, gap + 1, gap + 2]
    finally:
        held.close()
        service.kill()


@pytest.mark.postgres
def test_a_read_waits_for_the_ids_taken_before_it_not_for_a_sample_of_the_last_read(
    pg, project_name: str
) -> None:
    """A read's bound covers every id taken before the read, once their transactions end (a
    few milliseconds for a Submit), not only what an earlier read saw: an acknowledged label
    is read back while another transaction (holding a later id for 50 ms) is still open."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = pg.new_database()
    service = ServiceProcess(url).start()
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    take = "SELECT nextval(pg_get_serial_sequence('annotations', 'id'))"

    def hold(seconds: float, taken: threading.Event) -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute(take)
            taken.set()
            time.sleep(seconds)
            conn.rollback()

    try:
        with QueueClient(service.address, retries=0) as client:
            client.create_project(project_name, ["x"])
            client.add_features(project_name, ["a", "b", "c"])
            [first] = client.pop(project_name, "ann")
            client.submit(project_name, first, "x", "ann")
            assert len([r for c in client.stream_labelled(project_name) for r in c.items]) == 1
            # a read while an id is held: the service's last sample is left pending
            taken = threading.Event()
            holder = threading.Thread(target=hold, args=(0.5, taken))
            holder.start()
            taken.wait(10)
            assert [r.item_id for c in client.stream_labelled(project_name) for r in c.items] == [
                first.id
            ]
            holder.join()
            [mine] = client.pop(project_name, "bob")
            client.submit(project_name, mine, "x", "bob")  # acknowledged
            taken = threading.Event()
            holder = threading.Thread(target=hold, args=(0.05, taken))
            holder.start()
            taken.wait(10)
            read = [r.item_id for c in client.stream_labelled(project_name) for r in c.items]
            holder.join()
            assert read == [first.id, mine.id]
    finally:
        service.kill()
