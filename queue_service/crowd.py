"""A project's agreement and consensus, from its stored annotations (no SQL here).

Only ordinary labels vote. A final label, an adjudicator's or one imported with the data,
decides its item outright (confidence 1) and takes no part in the agreement measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from queue_service import agreement
from queue_service.consensus import MAJORITY, Consensus, Vote, Votes, aggregate
from queue_service.schema import ADJUDICATION
from queue_service.store import IMPORT_WORKER, AnnotationRow, ProjectRow, VoteRow

CONSENSUS_WORKER = "(consensus)"


def _is_final(row: VoteRow) -> bool:
    return row.kind == ADJUDICATION or row.worker_id == IMPORT_WORKER


def votes_of(project: ProjectRow, rows: Sequence[VoteRow], done_only: bool = False) -> Votes:
    return Votes.build(
        [
            Vote(r.item_id, r.worker_id, r.labels)
            for r in rows
            if not _is_final(r) and (r.item_done or not done_only)
        ],
        project.multi_label,
        project.options,
    )


def _decided(
    project: ProjectRow, rows: Sequence[VoteRow], method: str
) -> tuple[dict[int, tuple[list[str], float]], dict[int, VoteRow]]:
    """Each completed item's (labels, confidence), and its newest annotation."""
    done = [r for r in rows if r.item_done]
    result = aggregate(votes_of(project, done, done_only=True), method)
    decided = {
        int(i): (labels, float(c))
        for i, labels, c in zip(result.item_ids, result.labels, result.confidence, strict=True)
    }
    newest: dict[int, VoteRow] = {}
    for r in done:
        if _is_final(r):
            decided[r.item_id] = (list(r.labels), 1.0)
        if r.item_id not in newest or r.id > newest[r.item_id].id:
            newest[r.item_id] = r
    return decided, newest


def consensus_rows(
    project: ProjectRow, rows: Sequence[VoteRow], method: str = MAJORITY
) -> list[AnnotationRow]:
    """One row per completed item, ordered by the id of the item's newest annotation (the
    cursor a follower resumes from)."""
    decided, newest = _decided(project, rows, method)
    out = [
        AnnotationRow(
            last.id,
            item_id,
            list(decided[item_id][0]),
            CONSENSUS_WORKER,
            last.created_at,
            None,
            decided[item_id][1],
        )
        for item_id, last in newest.items()
        if item_id in decided
    ]
    out.sort(key=lambda r: r.id)
    return out


def worker_report(
    project: ProjectRow,
    rows: Sequence[VoteRow],
    method: str = MAJORITY,
    votes: Votes | None = None,
) -> list[agreement.WorkerStats]:
    """Each worker's labels, agreement with the consensus of the completed items, pace."""
    votes = votes if votes is not None else votes_of(project, rows)
    decided, _ = _decided(project, rows, method)
    consensus = Consensus(
        item_ids=np.fromiter(decided, dtype=np.int64, count=len(decided)),
        labels=[labels for labels, _ in decided.values()],
        confidence=np.fromiter((c for _, c in decided.values()), float, count=len(decided)),
    )
    times: dict[str, list[float]] = {}
    for r in rows:
        if r.worker_id != IMPORT_WORKER:
            times.setdefault(r.worker_id, []).append(r.created_at)
    return agreement.worker_stats(votes, consensus, times)


def report(
    project: ProjectRow, rows: Sequence[VoteRow], method: str = MAJORITY
) -> tuple[agreement.Agreement, list[agreement.WorkerStats]]:
    """Agreement over every item with several labels, and each worker's statistics."""
    votes = votes_of(project, rows)
    return agreement.measure(votes), worker_report(project, rows, method, votes)
