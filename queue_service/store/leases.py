"""Pop, Submit, Release and Undo behind one interface, `Leases`, with one implementation
per way of leasing: `SingleLeases` (k = 1, the lease is on the items row; `DirectLeases`
is its PostgreSQL hot path) and `shared.SharedLeases` (k > 1, leases are assignments).
The store picks one per project, so no method branches on the overlap."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from queue_service.errors import FailedPrecondition, NotFound, ResourceExhausted
from queue_service.schema import DONE
from queue_service.store.database import Database
from queue_service.store.rows import InputRow, ItemRow, ProjectRow, SubmitResult
from queue_service.store.sql import sqlite_hot
from queue_service.store.sql.postgres import PostgresDialect
from queue_service.store.sql.sqlite import SqliteDialect


class Leases(Protocol):
    async def pop(
        self, project: ProjectRow, worker: str, n: int, max_leases: int | None = None
    ) -> list[ItemRow]: ...

    async def submit(
        self,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult: ...

    async def release(self, project: ProjectRow, item_id: int, token: str, worker: str) -> None: ...

    async def undo(self, project: ProjectRow, worker: str) -> tuple[ItemRow, list[str]]:
        """Reopen the worker's newest annotation in the project and lease the item back."""
        ...

    async def held(self, project: ProjectRow, worker: str) -> list[ItemRow]:
        """The worker's live leases, oldest first, with tokens and inputs (read-only): what a
        returning labeller is given back before anything new."""
        ...


def next_token(token: str, item_id: int) -> str:
    """The lease token a Submit with pop_next uses, derived so a retried submit finds it."""
    return hashlib.sha256(f"{token}:{item_id}".encode()).hexdigest()[:32]


def same_resubmit(item_id: int, stored: str, labels: list[str]) -> None:
    """A retried Submit must carry the labels recorded the first time."""
    if json.loads(stored) != labels:
        raise FailedPrecondition(
            f"item {item_id} was already submitted with labels {json.loads(stored)}; "
            "use Undo to change a label"
        )


def too_many(project: ProjectRow, worker: str, held: int, n: int, limit: int) -> None:
    raise ResourceExhausted(
        f"worker {worker!r} holds {held} live leases in {project.name!r}; "
        f"{held + n} would pass the limit of {limit} "
        "(LABELGRID_MAX_LEASES_PER_WORKER): submit or release some first"
    )


class SingleLeases:
    """k = 1: one lease per item, on the items row; every operation one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.single

    async def pop(
        self, project: ProjectRow, worker: str, n: int, max_leases: int | None = None
    ) -> list[ItemRow]:
        async with self.db.write() as conn:
            if max_leases is not None:
                held = (
                    await conn.execute(self.q.held, {"p": project.id, "w": worker})
                ).scalar_one()
                if held + n > max_leases:
                    too_many(project, worker, held, n, max_leases)
            return await self._lease(conn, project, worker, n, secrets.token_hex(16))

    async def _lease(
        self, conn: AsyncConnection, project: ProjectRow, worker: str, n: int, token: str
    ) -> list[ItemRow]:
        params = {"p": project.id}
        await conn.execute(self.q.reclaim, params)
        rows = (
            await conn.execute(
                self.q.lease,
                {**params, "t": token, "w": worker, "l": float(project.lease_seconds), "n": n},
            )
        ).all()
        rows.sort(key=lambda r: (-r.priority, r.id))
        inputs = await self.db.inputs(conn, [r.id for r in rows])
        return [ItemRow(r.id, inputs[r.id], r.priority, token, r.lease_expires_at) for r in rows]

    async def held(self, project: ProjectRow, worker: str) -> list[ItemRow]:
        async with self.db.read() as conn:
            rows = (await conn.execute(self.q.live, {"p": project.id, "w": worker})).all()
            inputs = await self.db.inputs(conn, [r.id for r in rows])
        return [ItemRow(r.id, inputs[r.id], r.priority, r.token, r.expires_at) for r in rows]

    async def _lease_next(
        self, conn: AsyncConnection, project: ProjectRow, worker: str, token: str, item_id: int
    ) -> ItemRow | None:
        leased = await self._lease(conn, project, worker, 1, next_token(token, item_id))
        return leased[0] if leased else None

    async def _find(
        self, conn: AsyncConnection, project: ProjectRow, worker: str, token: str
    ) -> ItemRow | None:
        row = (await conn.execute(self.q.find, {"p": project.id, "t": token, "w": worker})).first()
        if row is None:
            return None
        inputs = await self.db.inputs(conn, [row.id])
        return ItemRow(row.id, inputs[row.id], row.priority, token, row.lease_expires_at)

    async def submit(
        self,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult:
        """The careful path: a retried submit returns the first one's annotation (and the
        item that one leased next); a stale lease is refused with the reason."""
        async with self.db.write() as conn:
            item = (await conn.execute(self.q.lock_item, {"i": item_id, "p": project.id})).first()
            if item is None:
                raise NotFound(f"item {item_id} is not in project {project.name!r}")
            if item.status == DONE:
                ann = (
                    await conn.execute(self.q.submitted, {"i": item_id, "w": worker, "t": token})
                ).first()
                if ann is None:
                    raise FailedPrecondition(
                        f"item {item_id} is already labelled under another lease; "
                        "this lease is no longer valid"
                    )
                same_resubmit(item_id, ann.labels, labels)
                nxt = None
                if pop_next:
                    nxt = await self._find(conn, project, worker, next_token(token, item_id))
                    if nxt is None:
                        nxt = await self._lease_next(conn, project, worker, token, item_id)
                return SubmitResult(ann.id, True, nxt)
            if item.lease_token != token:
                raise FailedPrecondition(
                    f"lease token does not hold item {item_id}: the lease expired and the item "
                    "was leased again, or it was released; Pop a new item"
                )
            if item.leased_by != worker:
                raise FailedPrecondition(
                    f"item {item_id} is leased to another worker, not to {worker!r}"
                )
            ann_id = (
                await conn.execute(
                    self.q.annotate,
                    {
                        "p": project.id,
                        "i": item_id,
                        "w": worker,
                        "l": json.dumps(labels),
                        "t": token,
                    },
                )
            ).scalar_one()
            await conn.execute(self.q.close_item, {"i": item_id})
            nxt = (
                await self._lease_next(conn, project, worker, token, item_id) if pop_next else None
            )
            return SubmitResult(ann_id, False, nxt)

    async def release(self, project: ProjectRow, item_id: int, token: str, worker: str) -> None:
        async with self.db.write() as conn:
            item = (await conn.execute(self.q.lock_item, {"i": item_id, "p": project.id})).first()
            if item is None:
                raise NotFound(f"item {item_id} is not in project {project.name!r}")
            if item.status == DONE or item.lease_token != token or item.leased_by != worker:
                raise FailedPrecondition(
                    f"item {item_id} is not leased to {worker!r} under this token "
                    "(already labelled, released, or leased again after expiry)"
                )
            await conn.execute(self.q.release, {"i": item_id})

    async def undo(self, project: ProjectRow, worker: str) -> tuple[ItemRow, list[str]]:
        async with self.db.write() as conn:
            ann = (await conn.execute(self.q.newest, {"p": project.id, "w": worker})).first()
            if ann is None:
                raise FailedPrecondition(
                    f"worker {worker!r} has no annotation in project {project.name!r} to undo"
                )
            await conn.execute(self.db.q.delete_annotation, {"a": ann.id})
            token = secrets.token_hex(16)
            row = (
                await conn.execute(
                    self.q.reopen,
                    {"t": token, "w": worker, "l": float(project.lease_seconds), "i": ann.item_id},
                )
            ).one()
            inputs = await self.db.inputs(conn, [row.id])
            item = ItemRow(row.id, inputs[row.id], row.priority, token, row.lease_expires_at)
            return item, json.loads(ann.labels)


class DirectLeases(SingleLeases):
    """k = 1 on PostgreSQL: Pop and the common Submit (with its next item) are one prepared
    statement each, straight on asyncpg; anything unusual (a retry, a stale lease) takes
    the careful path."""

    def __init__(self, db: Database, dialect: PostgresDialect) -> None:
        super().__init__(db)
        self.direct = dialect

    async def pop(
        self,
        project: ProjectRow,
        worker: str,
        n: int,
        max_leases: int | None = None,
        token: str | None = None,
    ) -> list[ItemRow]:
        token = token or secrets.token_hex(16)
        limit = max_leases if max_leases is not None else 2**62
        rows = await self.direct.pop(
            project.id, worker, n, limit, token, float(project.lease_seconds)
        )
        items = [
            ItemRow(
                r["id"],
                InputRow(r["kind"], r["dtype"], r["shape"], r["data"], r["text"], r["metadata"]),
                r["priority"],
                token,
                r["lease_expires_at"],
            )
            for r in rows
            if r["id"] is not None
        ]
        held = rows[0]["held"] if rows else 0
        if not items and max_leases is not None and held + n > max_leases:
            too_many(project, worker, held, n, max_leases)
        items.sort(key=lambda r: (-r.priority, r.id))
        return items

    async def submit(
        self,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult:
        if not pop_next:
            ann_id = await self.direct.submit(
                item_id, project.id, token, worker, json.dumps(labels)
            )
            if ann_id is None:
                return await super().submit(project, item_id, token, worker, labels, False)
            return SubmitResult(ann_id, False, None)
        nxt_token = next_token(token, item_id)
        row = await self.direct.submit_next(
            item_id,
            project.id,
            token,
            worker,
            json.dumps(labels),
            nxt_token,
            float(project.lease_seconds),
        )
        if row is None:
            return await super().submit(project, item_id, token, worker, labels, True)
        if row["id"] is not None:
            inputs = (row["kind"], row["dtype"], row["shape"], row["data"], row["text"])
            item = ItemRow(
                row["id"],
                InputRow(*inputs, row["metadata"]),
                row["priority"],
                nxt_token,
                row["lease_expires_at"],
            )
            return SubmitResult(row["ann"], False, item)
        # nothing free at that moment: a Pop, which waits for rows a re-rank's slice holds
        # while any are available (never empty then)
        leased = await self.pop(project, worker, 1, None, nxt_token)
        return SubmitResult(row["ann"], False, leased[0] if leased else None)


class SqliteLeases(SingleLeases):
    """k = 1 on SQLite: Pop and the common Submit are each one whole transaction run as one
    call on the connection's thread (store/sql/sqlite.py), not one thread hop per statement;
    anything unusual (a retry, a stale lease) takes the careful path."""

    def __init__(self, db: Database, dialect: SqliteDialect) -> None:
        super().__init__(db)
        self.direct = dialect
        q = self.q
        self.sql = sqlite_hot.HotStatements(
            *(s.text for s in (q.held, q.reclaim, q.lease, q.lock_item, q.annotate, q.close_item))
        )

    def _items(self, rows: list[sqlite_hot.Leased], token: str) -> list[ItemRow]:
        items = [ItemRow(i, InputRow(*inp), prio, token, exp) for i, prio, exp, inp in rows]
        items.sort(key=lambda r: (-r.priority, r.id))
        return items

    async def pop(
        self, project: ProjectRow, worker: str, n: int, max_leases: int | None = None
    ) -> list[ItemRow]:
        token = secrets.token_hex(16)
        secs = float(project.lease_seconds)
        held, rows = await self.direct.run(
            sqlite_hot.pop_body, self.sql, project.id, worker, n, max_leases, token, secs
        )
        if held is not None:
            too_many(project, worker, held, n, max_leases or 0)
        return self._items(rows, token)

    async def submit(
        self,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult:
        nxt_token = next_token(token, item_id) if pop_next else None
        done = await self.direct.run(
            sqlite_hot.submit_body,
            self.sql,
            project.id,
            item_id,
            token,
            worker,
            json.dumps(labels),
            nxt_token,
            float(project.lease_seconds),
        )
        if done is None:
            return await super().submit(project, item_id, token, worker, labels, pop_next)
        ann_id, nxt = done
        item = self._items([nxt], nxt_token or "")[0] if nxt is not None else None
        return SubmitResult(ann_id, False, item)
