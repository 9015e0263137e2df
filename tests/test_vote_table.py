"""The columnar votes (store/vote_table.py) and what crowd.py computes from them, against the
row-by-row computation they replaced (kept here as the reference), on random projects with
final labels, imported labels, items not yet done, single- and multi-label; and the table
read from a real database a page at a time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from labelgrid_proto.v1 import arrays_pb2, queue_pb2
from queue_service import crowd
from queue_service.auth import Authenticator
from queue_service.config import Settings
from queue_service.consensus import DAWID_SKENE, MAJORITY, Vote, Votes, aggregate
from queue_service.schema import ADJUDICATION, LABEL
from queue_service.service import QueueService
from queue_service.store import IMPORT_WORKER, Store
from queue_service.store import streams as streams_module
from queue_service.store.rows import ProjectRow, VoteRow
from queue_service.store.vote_table import VoteTable

OPTIONS = ("a", "b", "c")


def project(multi_label: bool) -> ProjectRow:
    return ProjectRow(1, "p", OPTIONS, multi_label, False, 600, 0, 0.0, 3, 3, 0.0, (), "", 0.0)


def random_rows(seed: int, multi_label: bool, n: int = 400) -> list[VoteRow]:
    rng = np.random.default_rng(seed)
    rows = []
    labels = [*OPTIONS, "d"]  # "d": a label outside the options
    for i in range(n):
        item = int(rng.integers(1, n // 3))
        worker = str(rng.choice(["w1", "w2", "w3", "w4", "zed", IMPORT_WORKER]))
        if multi_label:
            chosen = tuple(sorted(x for x in labels if rng.random() < 0.4))
        else:
            chosen = (str(rng.choice(labels, p=[0.4, 0.3, 0.2, 0.1])),)
        kind = ADJUDICATION if rng.random() < 0.05 else LABEL
        done = item % 5 != 0
        rows.append(VoteRow(i + 1, item, worker, chosen, kind, 1000.0 + i, done))
    return rows


# -- the reference: the row-by-row code crowd.py had before the columns ---------------------


def _is_final(r: VoteRow) -> bool:
    return r.kind == ADJUDICATION or r.worker_id == IMPORT_WORKER


def ref_votes(p: ProjectRow, rows: list[VoteRow], done_only: bool = False) -> Votes:
    votes = [
        Vote(r.item_id, r.worker_id, r.labels)
        for r in rows
        if not _is_final(r) and (r.item_done or not done_only)
    ]
    return Votes.build(votes, p.multi_label, p.options)


def ref_consensus(p: ProjectRow, rows: list[VoteRow], method: str) -> list[tuple]:
    done = [r for r in rows if r.item_done]
    result = aggregate(ref_votes(p, done, done_only=True), method)
    decided = {
        int(i): (sorted(labels), float(c))
        for i, labels, c in zip(result.item_ids, result.labels, result.confidence, strict=True)
    }
    newest: dict[int, VoteRow] = {}
    for r in done:
        if _is_final(r):
            decided[r.item_id] = (sorted(r.labels), 1.0)
        if r.item_id not in newest or r.id > newest[r.item_id].id:
            newest[r.item_id] = r
    out = [
        (last.id, item, decided[item][0], pytest.approx(decided[item][1]), last.created_at)
        for item, last in newest.items()
        if item in decided
    ]
    return sorted(out)


def rows_of(found) -> list[tuple]:
    return [(r.id, r.item_id, sorted(r.labels), r.confidence, r.created_at) for r in found]


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("method", [MAJORITY, DAWID_SKENE])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_consensus_rows_match_the_row_by_row_computation(
    seed: int, method: str, multi_label: bool
) -> None:
    p = project(multi_label)
    rows = random_rows(seed, multi_label)
    table = VoteTable.from_rows(rows)
    found = crowd.consensus_rows(p, table, method)
    expected = ref_consensus(p, rows, method)
    assert rows_of(found) == expected
    assert len(found) > 50  # items with finals, votes and both were all there
    cursor = expected[len(expected) // 2][0]
    assert rows_of(found.after(cursor)) == [r for r in expected if r[0] > cursor]
    assert rows_of(found.by_item()) == sorted(expected, key=lambda r: r[1])
    assert rows_of(found[3:7]) == expected[3:7]


@pytest.mark.parametrize("multi_label", [False, True])
def test_votes_and_reports_match_the_row_by_row_computation(multi_label: bool) -> None:
    p = project(multi_label)
    rows = random_rows(7, multi_label)
    table = VoteTable.from_rows(rows)
    for done_only in (False, True):
        new, old = crowd.votes_of(p, table, done_only), ref_votes(p, rows, done_only)
        assert new.workers == old.workers and new.label_names == old.label_names
        assert (new.item_ids == old.item_ids).all() and (new.item == old.item).all()
        assert (new.worker == old.worker).all() and (new.onehot == old.onehot).all()
    measured, workers = crowd.report(p, table, MAJORITY)
    stats = {w.worker: w for w in workers}
    assert IMPORT_WORKER not in stats and set(stats) == {"w1", "w2", "w3", "w4", "zed"}
    for name, w in stats.items():
        mine = [r for r in rows if r.worker_id == name]
        assert w.labels == len(mine)
        gaps = np.diff(sorted(r.created_at for r in mine))
        assert w.seconds_per_label == pytest.approx(float(np.median(gaps)))
    # agreement with the consensus, by hand for one worker (items with >= 2 votes)
    votes = ref_votes(p, rows)
    per_item = np.bincount(votes.item, minlength=votes.n_items)
    decided = {r[1]: r[2] for r in ref_consensus(p, rows, MAJORITY)}
    name = "w1"
    code = votes.workers.index(name)
    compared = agreed = 0
    for v in range(len(votes.item)):
        item = int(votes.item_ids[votes.item[v]])
        if votes.worker[v] != code or per_item[votes.item[v]] < 2 or item not in decided:
            continue
        compared += 1
        given = sorted(votes.label_names[j] for j in np.flatnonzero(votes.onehot[v]))
        agreed += given == decided[item]
    assert stats[name].n_compared == compared > 0
    assert stats[name].agreement_with_consensus == pytest.approx(agreed / compared)
    assert 0.0 <= measured.percent <= 1.0


class _Context:
    def invocation_metadata(self) -> tuple:
        return ()

    async def abort(self, code, details):
        raise AssertionError(f"{code}: {details}")


async def _label_twice(url: str, n: int) -> tuple[VoteTable, dict[tuple[int, str], str]]:
    """A project of overlap 2 whose n items two workers label through the service's
    handlers; the store's votes, and what each worker gave each item."""
    store = await Store.open(url)
    try:
        service = QueueService(store, Settings(database_url=url), Authenticator(store, False))
        ctx = _Context()
        spec = queue_pb2.Project(name="v", options=list(OPTIONS), overlap=2, max_overlap=2)
        await service.CreateProject(queue_pb2.CreateProjectRequest(project=spec), ctx)

        async def items():
            yield queue_pb2.AddFeaturesRequest(
                project="v",
                items=[queue_pb2.NewItem(input=arrays_pb2.Payload(text=f"t{i}")) for i in range(n)],
            )

        await service.AddFeatures(items(), ctx)
        given: dict[tuple[int, str], str] = {}
        for worker in ("x", "y"):
            for k in range(n):
                popped = await service.Pop(queue_pb2.PopRequest(project="v", worker_id=worker), ctx)
                item = popped.items[0]
                label = OPTIONS[(item.id + k) % 3]
                given[item.id, worker] = label
                await service.Submit(
                    queue_pb2.SubmitRequest(
                        project="v", item_id=item.id, lease_token=item.lease_token,
                        worker_id=worker, labels=[label],
                    ),
                    ctx,
                )  # fmt: skip
        return await store.votes(await store.get_project("v")), given
    finally:
        await store.close()


def test_the_store_reads_every_vote_a_page_at_a_time(database_url: str, monkeypatch) -> None:
    """Through a real database, with pages of 7 rows: every label once, in id order, with
    its worker, labels and item done."""
    monkeypatch.setattr(streams_module, "VOTES_PAGE", 7)
    table, given = asyncio.run(_label_twice(database_url, 20))
    assert len(table) == len(given) == 40
    assert (np.diff(table.id) > 0).all()
    assert sorted(table.workers) == ["x", "y"]
    assert table.done.all()
    found = {
        (int(table.item_id[v]), table.workers[table.worker[v]]): table.labelsets[table.labels[v]]
        for v in range(len(table))
    }
    assert found == {key: (label,) for key, label in given.items()}
