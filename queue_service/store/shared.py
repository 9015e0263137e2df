"""k > 1: several workers label each item. A lease is an assignment (a slot of the item);
reviewers adjudicate items whose labels disagree. See `slots` for how an item's status
follows from its assignments. Projects of overlap 1 whose items may get more labels on
request (max_overlap > 1: a model's relabel request, or a disagreement) lease this way too,
serving their first round like an overlap-1 project (ProjectRow.single_first)."""

from __future__ import annotations

import json
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from queue_service.errors import FailedPrecondition, NotFound
from queue_service.schema import (
    ADJUDICATION,
    AVAILABLE,
    EXPIRED,
    IN_REVIEW,
    LABEL,
    LIVE,
    RELEASED,
    REVIEW,
    SUBMITTED,
)
from queue_service.store.database import Database
from queue_service.store.leases import next_token, same_resubmit, too_many
from queue_service.store.rows import ItemRow, ProjectRow, SubmitResult
from queue_service.store.slots import Slots


class SharedLeases:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.shared
        self.slots = Slots(db)

    async def pop(
        self, project: ProjectRow, worker: str, n: int, max_leases: int | None = None
    ) -> list[ItemRow]:
        async with self.db.write() as conn:
            return await self._pop(conn, project, worker, n, max_leases)

    async def _pop(
        self,
        conn: AsyncConnection,
        project: ProjectRow,
        worker: str,
        n: int,
        max_leases: int | None,
        token: str | None = None,
    ) -> list[ItemRow]:
        """Lease up to n items this worker has never been given; reviewers get items that
        wait for adjudication first."""
        token = token or secrets.token_hex(16)
        await self.slots.expire(conn, project)
        params = {"p": project.id, "w": worker}
        if max_leases is not None:
            held = (await conn.execute(self.q.held, params)).scalar_one()
            if held + n > max_leases:
                too_many(project, worker, held, n, max_leases)
        # items in review come first: to reviewers, or (with no reviewers named, when they
        # need one more label) to anybody; items a model asked one more label for are
        # available ones, ranked by their priority among the rest
        judging = bool(project.reviewers)
        reviewing = worker in project.reviewers or not judging
        # overlap 1, more labels on request: served like an overlap-1 project, so a worker
        # who skipped an item or let its lease expire may be given it again
        again = project.single_first
        if again:
            pick, available = self.q.pick_first, self.q.pick_available_first
            picks = [pick[REVIEW]] if reviewing else []
            picks.append(pick[AVAILABLE])
        else:
            available = self.q.pick_available
            picks = [self.q.pick[REVIEW, judging]] if reviewing else []
            picks.append(self.q.pick[AVAILABLE, False])
        if await self._below_cut(conn, project, worker):
            # annotator-aware routing: items in an extra round only when no item in its
            # first round is left for this worker (see Project.reliability_cut)
            first, relabel = available[False], available[True]
            picks = [first, *picks[:-1], relabel]
        picked: list[sa.Row] = []
        for pick in picks:
            if len(picked) == n:
                break
            picked += (await conn.execute(pick, {**params, "n": n - len(picked)})).all()
        if not picked:
            return []
        if again:  # this worker's skipped or expired assignments of these items
            await conn.execute(self.q.reclaim, {"ids": [r.id for r in picked], "w": worker})
        else:
            retaken = [r.id for r in picked if r.stage == IN_REVIEW]
            if retaken:
                await conn.execute(self.q.retake, {"ids": retaken, "w": worker})
        expires = await self.db.lease_expiry(conn, project.lease_seconds)
        await conn.execute(
            self.q.assign, [{**params, "i": r.id, "t": token, "e": expires} for r in picked]
        )
        await conn.execute(self.q.fill, {"k": project.overlap, "ids": [r.id for r in picked]})
        return await self.slots.leased_items(
            conn, [(r.id, r.priority, r.stage) for r in picked], token, expires
        )

    async def _below_cut(self, conn: AsyncConnection, project: ProjectRow, worker: str) -> bool:
        """Whether routing holds extra rounds back from this worker: the project has a
        reliability cut, the worker is no reviewer, and its stored estimate is below the
        cut (one primary-key lookup; no estimate yet is not below)."""
        if not project.reliability_cut or worker in project.reviewers:
            return False
        found = (await conn.execute(self.q.reliability, {"p": project.id, "w": worker})).first()
        return found is not None and found.reliability < project.reliability_cut

    async def _lock(
        self, conn: AsyncConnection, project: ProjectRow, item_id: int, worker: str
    ) -> tuple[sa.Row, sa.Row | None]:
        """Lock the item row, then read this worker's assignment of it (if any)."""
        item = (await conn.execute(self.q.lock_item, {"i": item_id, "p": project.id})).first()
        if item is None:
            raise NotFound(f"item {item_id} is not in project {project.name!r}")
        held = (await conn.execute(self.q.assignment, {"i": item_id, "w": worker})).first()
        return item, held

    async def submit(
        self,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult:
        async with self.db.write() as conn:
            item, held = await self._lock(conn, project, item_id, worker)
            if held is None or held.token != token:
                raise FailedPrecondition(
                    f"lease token does not hold item {item_id} for worker {worker!r}; "
                    "Pop a new item"
                )
            if held.state == SUBMITTED:
                return await self._resubmit(conn, project, item_id, token, worker, labels, pop_next)
            if held.state == RELEASED:
                raise FailedPrecondition(f"item {item_id} was released (skipped) by {worker!r}")
            if held.state == EXPIRED:
                # a late label is still welcome while the item has a free slot (a lease past
                # its time but not yet reclaimed by a Pop still holds its slot)
                if item.stage == IN_REVIEW or item.status not in (AVAILABLE, REVIEW):
                    raise FailedPrecondition(
                        f"the lease on item {item_id} expired and its slot went to another worker"
                    )
            # an adjudication is a reviewer's label on an item in review; it decides the item
            judge = item.stage == IN_REVIEW and worker in project.reviewers
            ann_id = (
                await conn.execute(
                    self.q.annotate,
                    {
                        "p": project.id,
                        "i": item_id,
                        "w": worker,
                        "l": json.dumps(labels),
                        "t": token,
                        "k": ADJUDICATION if judge else LABEL,
                    },
                )
            ).scalar_one()
            await conn.execute(self.q.mark_submitted, {"a": held.id})
            await self.slots.settle(conn, project, item_id)
            nxt = None
            if pop_next:
                leased = await self._pop(conn, project, worker, 1, None, next_token(token, item_id))
                nxt = leased[0] if leased else None
            return SubmitResult(ann_id, False, nxt)

    async def _resubmit(
        self,
        conn: AsyncConnection,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult:
        """A retried submit: the first one's annotation, and the item it leased next."""
        ann = (await conn.execute(self.q.submitted, {"i": item_id, "w": worker})).one()
        same_resubmit(item_id, ann.labels, labels)
        nxt = None
        if pop_next:
            again = next_token(token, item_id)
            nxt = await self._find(conn, project, worker, again)
            if nxt is None:
                leased = await self._pop(conn, project, worker, 1, None, again)
                nxt = leased[0] if leased else None
        return SubmitResult(ann.id, True, nxt)

    async def _find(
        self, conn: AsyncConnection, project: ProjectRow, worker: str, token: str
    ) -> ItemRow | None:
        row = (await conn.execute(self.q.find, {"p": project.id, "w": worker, "t": token})).first()
        if row is None:
            return None
        [item] = await self.slots.leased_items(
            conn, [(row.item_id, row.priority, row.stage)], token, row.expires_at
        )
        return item

    async def held(self, project: ProjectRow, worker: str) -> list[ItemRow]:
        async with self.db.read() as conn:
            rows = (await conn.execute(self.q.live, {"p": project.id, "w": worker})).all()
            inputs = await self.db.inputs(conn, [r.id for r in rows])
            others = await self.slots.others(conn, [r.id for r in rows if r.stage == IN_REVIEW])
        return [
            ItemRow(r.id, inputs[r.id], r.priority, r.token, r.expires_at, others.get(r.id, ()))
            for r in rows
        ]

    async def release(self, project: ProjectRow, item_id: int, token: str, worker: str) -> None:
        """A skip: the slot goes to somebody else, and this worker is not asked again."""
        async with self.db.write() as conn:
            _, held = await self._lock(conn, project, item_id, worker)
            if held is None or held.token != token or held.state != LIVE:
                raise FailedPrecondition(
                    f"item {item_id} is not leased to {worker!r} under this token "
                    "(already labelled, released, or expired)"
                )
            await conn.execute(self.q.mark_released, {"a": held.id})
            await self.slots.settle(conn, project, item_id)

    async def undo(self, project: ProjectRow, worker: str) -> tuple[ItemRow, list[str]]:
        async with self.db.write() as conn:
            ann = (await conn.execute(self.q.newest, {"p": project.id, "w": worker})).first()
            if ann is None:
                raise FailedPrecondition(
                    f"worker {worker!r} has no annotation in project {project.name!r} to undo"
                )
            item, held = await self._lock(conn, project, ann.item_id, worker)
            if held is None:
                raise FailedPrecondition(f"item {ann.item_id} has no assignment for {worker!r}")
            await conn.execute(self.db.q.delete_annotation, {"a": ann.id})
            token = secrets.token_hex(16)
            expires = await self.db.lease_expiry(conn, project.lease_seconds)
            await conn.execute(self.q.relive, {"t": token, "e": expires, "a": held.id})
            await self.slots.settle(conn, project, ann.item_id)
            [row] = await self.slots.leased_items(
                conn, [(ann.item_id, item.priority, item.stage)], token, expires
            )
            return row, json.loads(ann.labels)
