"""A project's annotations as columns: what agreement, consensus and reliability read.

Read as one row object per annotation, a consensus export of 10^6 labels grew the queue
service by 600-800 MB (the rows, then the votes built from them, then a row per item, all
at once). Here each annotation is a few numbers: its worker and its label set are codes
into lists of the distinct ones, so 10^6 annotations take about 35 MB, and the rows are read
a page at a time (`VoteTableBuilder.add`), so no more than a page of them is ever held as
objects. The same export now grows it by 155-180 MB, most of it the consensus's
(items, labels) matrices (bench/results/export_memory_columns.json).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from queue_service.store.rows import VoteRow


@dataclass(frozen=True)
class VoteTable:
    """Annotation v: id `id[v]`, on item `item_id[v]` (done or not: `done[v]`), by worker
    `workers[worker[v]]`, giving labels `labelsets[labels[v]]`, of kind `kind[v]`, at
    `created_at[v]`; in ascending id order."""

    id: np.ndarray  # int64
    item_id: np.ndarray  # int64
    worker: np.ndarray  # int32, index into workers
    labels: np.ndarray  # int32, index into labelsets
    kind: np.ndarray  # int8
    created_at: np.ndarray  # float64
    done: np.ndarray  # bool
    workers: list[str]
    labelsets: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.id)

    @classmethod
    def from_rows(cls, rows: Iterable[VoteRow]) -> VoteTable:
        """From row objects in id order (tests, and anything else that has them)."""
        builder = VoteTableBuilder()
        for r in rows:
            builder.add(
                r.id, r.item_id, r.worker_id, tuple(r.labels), r.kind, r.created_at, r.item_done
            )
        return builder.table()


class VoteTableBuilder:
    """Columns filled row by row; label sets arrive as their stored JSON text (parsed once
    per distinct text) or as tuples."""

    def __init__(self) -> None:
        self._id = array("q")
        self._item = array("q")
        self._worker = array("i")
        self._labels = array("i")
        self._kind = array("b")
        self._at = array("d")
        self._done = array("b")
        self._workers: dict[str, int] = {}
        self._sets: dict[tuple[str, ...], int] = {}
        self._texts: dict[str, int] = {}

    def add(
        self,
        id_: int,
        item_id: int,
        worker: str,
        labels: str | tuple[str, ...],
        kind: int,
        created_at: float,
        done: bool,
    ) -> None:
        self._id.append(id_)
        self._item.append(item_id)
        code = self._workers.get(worker)
        if code is None:
            code = self._workers[worker] = len(self._workers)
        self._worker.append(code)
        self._labels.append(self._set_code(labels))
        self._kind.append(kind)
        self._at.append(created_at)
        self._done.append(1 if done else 0)

    def _set_code(self, labels: str | tuple[str, ...]) -> int:
        if isinstance(labels, str):
            code = self._texts.get(labels)
            if code is None:
                code = self._texts[labels] = self._set_code(tuple(json.loads(labels)))
            return code
        code = self._sets.get(labels)
        if code is None:
            code = self._sets[labels] = len(self._sets)
        return code

    def table(self) -> VoteTable:
        """The columns, viewing the builder's buffers (no copy: half the peak at 10^6 votes);
        the builder takes no more rows after this (its arrays then refuse to grow)."""
        return VoteTable(
            id=np.frombuffer(self._id, dtype=np.int64),
            item_id=np.frombuffer(self._item, dtype=np.int64),
            worker=np.frombuffer(self._worker, dtype=np.int32),
            labels=np.frombuffer(self._labels, dtype=np.int32),
            kind=np.frombuffer(self._kind, dtype=np.int8),
            created_at=np.frombuffer(self._at, dtype=np.float64),
            done=np.frombuffer(self._done, dtype=np.int8).astype(bool),
            workers=list(self._workers),
            labelsets=list(self._sets),
        )
