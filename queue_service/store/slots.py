"""The k slots of a shared (k > 1) item. Each (item, worker) pair has at most one row in
`assignments`, so an item is never served twice to one worker, even after the lease
expired or was released. The item's status is derived from its assignments by `settle`;
every writer locks the item row before it touches the item's assignments, so the lock
order is the same everywhere."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from queue_service.consensus import modal_fraction
from queue_service.schema import AVAILABLE, DONE, IN_REVIEW, LABEL, LEASED, NORMAL, RELABEL, REVIEW
from queue_service.store.database import Database
from queue_service.store.rows import ItemRow, ProjectRow


class Slots:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.shared

    async def expire(self, conn: AsyncConnection, project: ProjectRow) -> None:
        """Turn this project's expired leases into EXPIRED assignments, freeing the slots."""
        due = (await conn.execute(self.q.due, {"p": project.id})).all()
        if not due:
            return
        locked = await conn.execute(self.q.lock_items, {"ids": [r.item_id for r in due]})
        for (item_id,) in locked.all():
            await conn.execute(self.q.expire, {"i": item_id})
            await self.settle(conn, project, item_id)

    async def settle(self, conn: AsyncConnection, project: ProjectRow, item_id: int) -> None:
        """Derive the item's status from its assignments (the caller holds the item's lock).

        When its labels are all in and agree less than the project's review threshold, the
        item goes to an adjudicator (if the project names reviewers) or asks for one more
        label (up to `max_overlap`). An item a model asked one more label for (stage
        RELABEL, store/relabels.py) waits as AVAILABLE, ranked by its priority like any
        unlabelled item, and is an ordinary completed item again once that label is in."""
        item = (await conn.execute(self.q.slots, {"i": item_id})).one()
        live, done = item.live or 0, item.done or 0
        stage, needed = item.stage, item.needed or project.overlap
        if stage == IN_REVIEW:
            judged = (await conn.execute(self.q.judged, {"i": item_id})).scalar_one()
            status = DONE if judged else LEASED if live else REVIEW
        elif done >= needed:
            status = DONE
            if stage == RELABEL:
                stage = NORMAL
            if project.review_threshold > 0:
                votes = await conn.execute(self.q.votes, {"i": item_id, "k": LABEL})
                labelsets = [tuple(json.loads(r.labels)) for r in votes]
                if modal_fraction(labelsets) < project.review_threshold:
                    if project.reviewers:
                        stage, status = IN_REVIEW, REVIEW
                    elif done < project.max_overlap:
                        needed = done + 1
                        status = LEASED if live else REVIEW
        else:
            # an item in an extra round after a disagreement waits as REVIEW, which Pop
            # serves first; one a model asked again for waits by its priority
            free = REVIEW if needed > project.overlap and stage != RELABEL else AVAILABLE
            status = LEASED if done + live >= needed else free
        await conn.execute(
            self.q.settle[status == DONE],
            {
                "s": status,
                "g": stage,
                "n": needed if needed != project.overlap else None,
                "i": item_id,
            },
        )

    async def leased_items(
        self,
        conn: AsyncConnection,
        rows: Sequence[tuple[int, float, int]],
        token: str,
        expires: float,
    ) -> list[ItemRow]:
        """Leased shared items from (id, priority, stage): with their inputs, and with the
        other annotators' labels for those in review."""
        ids = [i for i, _, _ in rows]
        inputs = await self.db.inputs(conn, ids)
        others = await self.others(conn, [i for i, _, stage in rows if stage == IN_REVIEW])
        return [
            ItemRow(i, inputs[i], priority, token, expires, others.get(i, ()))
            for i, priority, _ in rows
        ]

    async def others(
        self, conn: AsyncConnection, ids: Sequence[int]
    ) -> dict[int, tuple[tuple[str, list[str]], ...]]:
        """The labels other workers gave, shown to an adjudicator."""
        if not ids:
            return {}
        rows = await conn.execute(self.q.others, {"ids": list(ids)})
        out: dict[int, list[tuple[str, list[str]]]] = {}
        for r in rows:
            out.setdefault(r.item_id, []).append((r.worker_id, json.loads(r.labels)))
        return {i: tuple(v) for i, v in out.items()}
