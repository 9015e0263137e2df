"""Relabel requests (issue 18): a model asks one more annotation on completed items of a
project with max_overlap > overlap, ranked on the same scale as its unlabelled items.

They travel in UpdatePriorities (store/priorities.py) and follow its rules: every id is
checked before anything is written, and they are applied after the priorities, under the
same re-rank lock, in bounded transactions that each re-read the project's model version
and stop when a newer model got there first.

A requested item that is done, has fewer than max_overlap labels and no final label (an
adjudication, or a label imported with the data) is reopened: status AVAILABLE, stage
RELABEL, `needed` one more than the labels it has, its priority the requested one. Pop then
serves it like any available item, by priority, and never to a worker who has an
assignment of it (slots.py). Any other requested item is left as it is and counted as
ignored; an item already open keeps its request with the new priority.

Each applied call replaces the project's open requests: an open item this call does not
ask again is withdrawn (done again), unless a worker holds a live lease on it: that label
is welcome, and the item is done once it is in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from queue_service.errors import FailedPrecondition, InvalidArgument
from queue_service.schema import DONE, IN_REVIEW, RELABEL
from queue_service.store.database import Database
from queue_service.store.ingest import IMPORT_WORKER
from queue_service.store.rows import ProjectRow
from queue_service.store.slots import Slots

#: items per transaction of a relabel request (each is a few statements per slice)
RELABEL_SLICE = 200
#: ids per query when checking that they are the project's
CHECK_CHUNK = 5000


@dataclass
class RelabelResult:
    opened: int = 0
    ignored: int = 0
    withdrawn: int = 0


def not_possible(project: ProjectRow) -> FailedPrecondition:
    return FailedPrecondition(
        f"project {project.name!r} has max_overlap {project.max_overlap} and overlap "
        f"{project.overlap}: no completed item can get another label. Relabel requests need "
        "max_overlap > overlap; raise max_overlap (create the project with a higher one)"
    )


class Relabels:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.relabels
        self.version = db.q.projects
        self.slots = Slots(db)

    @staticmethod
    def possible(project: ProjectRow) -> bool:
        """Whether any completed item of the project could get another label."""
        return project.shared and project.max_overlap > project.overlap

    async def check(self, project: ProjectRow, ids: np.ndarray) -> None:
        """Refuse (before anything is written) requests the project cannot take or ids
        that are not its items."""
        if not len(ids):
            return
        if not self.possible(project):
            raise not_possible(project)
        matched = 0
        async with self.db.read() as conn:
            for at in range(0, len(ids), CHECK_CHUNK):
                part = ids[at : at + CHECK_CHUNK].tolist()
                found = await conn.execute(self.q.matched, {"p": project.id, "ids": part})
                matched += found.scalar_one()
        if matched != len(ids):
            raise InvalidArgument(
                f"{len(ids) - matched} of {len(ids)} relabel_ids are not items of project "
                f"{project.name!r}; nothing was updated"
            )

    async def _current(self, conn: AsyncConnection, project: ProjectRow) -> int:
        return (await conn.execute(self.version.model_version, {"p": project.id})).scalar_one()

    async def apply(
        self, project: ProjectRow, version: int, ids: np.ndarray, priorities: np.ndarray
    ) -> tuple[RelabelResult, int | None]:
        """Open the requests (then withdraw the older ones), in bounded transactions; the
        newer version when one got there first (the caller refuses the call)."""
        result = RelabelResult()
        if not self.possible(project):
            return result, None
        order = np.argsort(ids, kind="stable")  # rows locked in id order everywhere
        ids, priorities = ids[order], priorities[order]
        for at in range(0, len(ids), RELABEL_SLICE):
            part = ids[at : at + RELABEL_SLICE].tolist()
            prios = priorities[at : at + RELABEL_SLICE].tolist()
            async with self.db.write() as conn:
                current = await self._current(conn, project)
                if version < current:
                    return result, current
                await self._open(conn, project, dict(zip(part, prios, strict=True)), result)
        newer = await self._withdraw(project, version, set(ids.tolist()), result)
        return result, newer

    async def _open(
        self,
        conn: AsyncConnection,
        project: ProjectRow,
        wanted: dict[int, float],
        result: RelabelResult,
    ) -> None:
        ids = list(wanted)
        rows = (await conn.execute(self.q.lock, {"p": project.id, "ids": ids})).all()
        slots = {r.item_id: r for r in await conn.execute(self.q.slots, {"ids": ids})}
        final = {
            r.item_id for r in await conn.execute(self.q.final, {"ids": ids, "imp": IMPORT_WORKER})
        }
        reopen, again = [], []
        for row in rows:
            if row.stage == RELABEL:  # still open from an earlier call: the new priority
                again.append({"pr": wanted[row.id], "i": row.id})
                continue
            done = int(slots[row.id].done or 0) if row.id in slots else 0
            if (
                row.status != DONE
                or row.stage == IN_REVIEW
                or row.id in final
                or done >= project.max_overlap
            ):
                result.ignored += 1
                continue
            reopen.append({"n": done + 1, "pr": wanted[row.id], "i": row.id})
        if reopen:
            await conn.execute(self.q.reopen, reopen)
        if again:
            await conn.execute(self.q.reprioritise, again)
        result.opened += len(reopen) + len(again)

    async def _withdraw(
        self, project: ProjectRow, version: int, keep: set[int], result: RelabelResult
    ) -> int | None:
        async with self.db.read() as conn:
            found = [r.id for r in await conn.execute(self.q.open, {"p": project.id})]
        stale = sorted(i for i in found if i not in keep)
        for at in range(0, len(stale), RELABEL_SLICE):
            part = stale[at : at + RELABEL_SLICE]
            async with self.db.write() as conn:
                current = await self._current(conn, project)
                if version < current:
                    return current
                rows = (await conn.execute(self.q.lock, {"p": project.id, "ids": part})).all()
                await conn.execute(self.q.expire, {"ids": part})  # leases past their time
                slots = {r.item_id: r for r in await conn.execute(self.q.slots, {"ids": part})}
                for row in rows:
                    slot = slots.get(row.id)
                    if row.stage == RELABEL and not (slot is not None and slot.live):
                        done = int(slot.done or 0) if slot is not None else 0
                        needed = done if done != project.overlap else None
                        await conn.execute(self.q.withdraw, {"n": needed, "i": row.id})
                        result.withdrawn += 1
                    # else closed meanwhile, or leased (that label is kept); every item is
                    # settled again, as leases past their time were just expired
                    await self.slots.settle(conn, project, row.id)
        return None
