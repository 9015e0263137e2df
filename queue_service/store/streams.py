"""The read side: labelled and unlabelled items in id-ordered chunks (for streaming and
export), every vote of a project (for agreement and consensus), and item inputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from queue_service.store.database import Database
from queue_service.store.rows import (
    AnnotationRow,
    InputRow,
    ItemRow,
    PackedRows,
    ProjectRow,
    input_row,
)
from queue_service.store.vote_table import VoteTable, VoteTableBuilder

# votes read per query: a page of row objects at a time, never the project's all at once
VOTES_PAGE = 20_000
# the bound of a read with no settled id (SQLite): the largest id there can be
EVERY_ID = 2**63 - 1


class Streams:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.reads

    async def labelled_chunk(
        self, project: ProjectRow, after: int, limit: int, with_inputs: bool, upto: int | None
    ) -> list[AnnotationRow]:
        """The next annotations past `after` (up to id `upto`: StreamLabelled's settled id,
        store/settled.py, taken before this read's snapshot)."""
        async with self.db.read() as conn:
            upto = EVERY_ID if upto is None else upto
            params = {"p": project.id, "c": after, "w": upto, "n": limit}
            rows = await conn.execute(self.q.labelled[with_inputs], params)
            return [_annotation(r, with_inputs) for r in rows]

    async def labelled_by_item(
        self, project: ProjectRow, after_item: int, n_items: int, with_inputs: bool
    ) -> tuple[list[AnnotationRow], int | None]:
        """The annotations of the project's next `n_items` items after `after_item`, ordered
        by item id then annotation id, with each item's metadata; and the item-id cursor to
        go on from (None when no items are left)."""
        async with self.db.read(snapshot=True) as conn:
            params = {"p": project.id, "c": after_item, "n": n_items}
            upto = (await conn.execute(self.q.items_upto, params)).scalar_one()
            if upto is None:
                return [], None
            rows = await conn.execute(
                self.q.labelled_by_item[with_inputs], {"p": project.id, "c": after_item, "u": upto}
            )
            return [_annotation(r, with_inputs, r.metadata) for r in rows], upto

    async def votes(self, project: ProjectRow) -> VoteTable:
        """Every annotation of the project, labels only, with whether its item is done:
        what agreement and consensus are computed from (in one snapshot), read a page at a
        time into columns (store/vote_table.py says why)."""
        builder = VoteTableBuilder()
        after = 0
        async with self.db.read(snapshot=True) as conn:
            while True:
                params = {"p": project.id, "c": after, "n": VOTES_PAGE}
                rows = (await conn.execute(self.q.votes, params)).all()
                for r in rows:  # the columns of VoteTableBuilder.add, in its order
                    builder.add(*r)
                if len(rows) < VOTES_PAGE:
                    return builder.table()
                after = rows[-1][0]

    async def item_inputs(self, ids: Sequence[int]) -> dict[int, InputRow]:
        async with self.db.read() as conn:
            return await self.db.inputs(conn, ids)

    async def unlabelled_packed(
        self, project: ProjectRow, after: int, limit: int
    ) -> PackedRows | None:
        """The next chunk packed by the database, when it can (PostgreSQL) and the items are
        all arrays of one dtype and shape; None otherwise (read `unlabelled_chunk`)."""
        async with self.db.read() as conn:
            return await self.db.dialect.packed_unlabelled(conn, project.id, after, limit)

    async def unlabelled_ids(
        self, project: ProjectRow, after: int, limit: int
    ) -> tuple[list[int], list[float]]:
        """The ids and priorities of the next `limit` unlabelled items, as two lists."""
        async with self.db.read() as conn:
            found = await self.db.dialect.unlabelled_ids(conn, project.id, after, limit)
            if found is not None:
                return found
            rows = await conn.execute(
                self.q.unlabelled_ids, {"p": project.id, "c": after, "n": limit}
            )
            ids, priorities = [], []
            for r in rows:
                ids.append(r.id)
                priorities.append(r.priority)
            return ids, priorities

    async def unlabelled_chunk(
        self, project: ProjectRow, after: int, limit: int, ids_only: bool = False
    ) -> list[ItemRow]:
        params = {"p": project.id, "c": after, "n": limit}
        if ids_only:
            async with self.db.read() as conn:
                rows = await conn.execute(self.q.unlabelled_ids, params)
                return [ItemRow(r.id, None, r.priority) for r in rows]
        async with self.db.read() as conn:
            rows = await conn.execute(self.q.unlabelled, params)
            return [ItemRow(r.id, input_row(r), r.priority) for r in rows]


def _annotation(r: Any, with_inputs: bool, metadata: str | None = None) -> AnnotationRow:
    """One annotation row as the store returns it (the input only when it was selected)."""
    return AnnotationRow(
        r.id,
        r.item_id,
        json.loads(r.labels),
        r.worker_id,
        r.created_at,
        input_row(r) if with_inputs else None,
        metadata=metadata,
    )
