"""A project's agreement and consensus, from its stored annotations (no SQL here).

Only ordinary labels vote. A final label, an adjudicator's or one imported with the data,
decides its item outright (confidence 1) and takes no part in the agreement measures.
Everything is computed on the annotations as columns (store/vote_table.py), and the
consensus rows are made only as they are sent (`ConsensusRows`): a consensus export of 10^6
labels grows the queue service by 155-180 MB, against 600-800 MB with a row object per
annotation and per item (bench/results/export_memory_columns.json, _rows_before.json).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from queue_service import agreement
from queue_service.consensus import (
    MAJORITY,
    Consensus,
    LabelSets,
    Votes,
    aggregate,
    onehot_sets,
)
from queue_service.schema import ADJUDICATION
from queue_service.store import IMPORT_WORKER, AnnotationRow, ProjectRow, VoteTable

CONSENSUS_WORKER = "(consensus)"


def _final(table: VoteTable) -> np.ndarray:
    """Which annotations are final labels (an adjudicator's, or imported)."""
    final = table.kind == ADJUDICATION
    if IMPORT_WORKER in table.workers:
        final |= table.worker == table.workers.index(IMPORT_WORKER)
    return final


def votes_of(project: ProjectRow, table: VoteTable, done_only: bool = False) -> Votes:
    keep = ~_final(table)
    if done_only:
        keep &= table.done
    return Votes.from_codes(
        table.item_id[keep],
        table.worker[keep],
        table.workers,
        table.labels[keep],
        table.labelsets,
        project.multi_label,
        project.options,
    )


def _last_per_item(item_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct items ascending, the position of each one's last annotation), for
    annotations in id order."""
    reversed_items = item_id[::-1]
    items, first = np.unique(reversed_items, return_index=True)
    return items, len(item_id) - 1 - first


def _decided(project: ProjectRow, table: VoteTable, method: str) -> Consensus:
    """Each completed item's labels and confidence: its newest final label when it has one
    (confidence 1), else the consensus of its votes."""
    result = aggregate(votes_of(project, table, done_only=True), method)
    final = np.flatnonzero(_final(table) & table.done)
    final_items, last = _last_per_item(table.item_id[final])
    final_sets = table.labels[final[last]]
    names, by_set = onehot_sets(table.labelsets, np.unique(final_sets), result.labels.names)
    item_ids = np.union1d(result.item_ids, final_items)
    present = np.zeros((len(item_ids), len(names)), dtype=bool)
    confidence = np.ones(len(item_ids))
    voted = np.searchsorted(item_ids, result.item_ids)
    present[voted, : result.labels.present.shape[1]] = result.labels.present
    confidence[voted] = result.confidence
    decided = np.searchsorted(item_ids, final_items)
    present[decided] = by_set[final_sets]
    confidence[decided] = 1.0
    return Consensus(item_ids, LabelSets(present, names), confidence)


class ConsensusRows(Sequence[AnnotationRow]):
    """One row per completed item, ordered by the id of the item's newest annotation (the
    cursor a follower resumes from); each AnnotationRow is made when it is read."""

    def __init__(
        self, ids: np.ndarray, decided: Consensus, at: np.ndarray, created_at: np.ndarray
    ) -> None:
        self.ids = ids  # the id of each row's newest annotation
        self.decided = decided
        self.at = at  # each row's position in `decided`
        self.created_at = created_at

    def __len__(self) -> int:
        return len(self.ids)

    def _row(self, i: int) -> AnnotationRow:
        at = int(self.at[i])
        return AnnotationRow(
            int(self.ids[i]),
            int(self.decided.item_ids[at]),
            self.decided.labels[at],
            CONSENSUS_WORKER,
            float(self.created_at[i]),
            None,
            float(self.decided.confidence[at]),
        )

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self._row(j) for j in range(*i.indices(len(self)))]
        return self._row(i)

    def _take(self, keep: np.ndarray) -> ConsensusRows:
        return ConsensusRows(self.ids[keep], self.decided, self.at[keep], self.created_at[keep])

    def after(self, cursor: int, upto: int | None = None) -> ConsensusRows:
        """The rows whose newest annotation is past `cursor` (and at most `upto`)."""
        start = np.searchsorted(self.ids, cursor, side="right")
        stop = len(self) if upto is None else np.searchsorted(self.ids, upto, side="right")
        return self._take(np.arange(start, max(start, stop)))

    def by_item(self) -> ConsensusRows:
        """The same rows in item id order."""
        return self._take(np.argsort(self.decided.item_ids[self.at], kind="stable"))


def consensus_rows(project: ProjectRow, table: VoteTable, method: str = MAJORITY) -> ConsensusRows:
    """One row per completed item, ordered by the id of the item's newest annotation."""
    decided = _decided(project, table, method)
    done = np.flatnonzero(table.done)
    items, last = _last_per_item(table.item_id[done])
    newest = done[last]
    keep = np.isin(items, decided.item_ids)
    items, newest = items[keep], newest[keep]
    order = np.argsort(table.id[newest], kind="stable")
    items, newest = items[order], newest[order]
    return ConsensusRows(
        table.id[newest],
        decided,
        np.searchsorted(decided.item_ids, items),
        table.created_at[newest],
    )


def _times(table: VoteTable) -> dict[str, np.ndarray]:
    """Each worker's annotation times (an imported label has no labeller)."""
    order = np.argsort(table.worker, kind="stable")
    codes, starts = np.unique(table.worker[order], return_index=True)
    groups = np.split(table.created_at[order], starts[1:]) if len(order) else []
    return {
        table.workers[code]: times
        for code, times in zip(codes, groups, strict=True)
        if table.workers[code] != IMPORT_WORKER
    }


def worker_report(
    project: ProjectRow,
    table: VoteTable,
    method: str = MAJORITY,
    votes: Votes | None = None,
) -> list[agreement.WorkerStats]:
    """Each worker's labels, agreement with the consensus of the completed items, pace."""
    votes = votes if votes is not None else votes_of(project, table)
    return agreement.worker_stats(votes, _decided(project, table, method), _times(table))


def report(
    project: ProjectRow, table: VoteTable, method: str = MAJORITY
) -> tuple[agreement.Agreement, list[agreement.WorkerStats]]:
    """Agreement over every item with several labels, and each worker's statistics."""
    votes = votes_of(project, table)
    return agreement.measure(votes), worker_report(project, table, method, votes)
