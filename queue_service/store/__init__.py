"""The queue's state in one SQL database (SQLite or PostgreSQL), as a package by concern.

Leasing (k = 1 and k > 1) is still in this module; projects, ingest, priorities, streams,
progress, tokens and runs have their own, sharing a `Database` (database.py) whose dialect
(store/sql/) holds all SQL that differs between the databases. Lease times come from the
database clock only, so a client's clock never decides who holds an item.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from queue_service import db
from queue_service.auth import Principal
from queue_service.consensus import modal_fraction
from queue_service.errors import (
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
)
from queue_service.schema import (
    ADJUDICATION,
    AVAILABLE,
    DONE,
    EXPIRED,
    IN_REVIEW,
    LABEL,
    LEASED,
    LIVE,
    RELEASED,
    REVIEW,
    SUBMITTED,
)
from queue_service.store.database import Database
from queue_service.store.ingest import ANALYZE_AFTER_ROWS, IMPORT_WORKER, Ingest
from queue_service.store.priorities import Priorities
from queue_service.store.progress import Progress
from queue_service.store.projects import Projects
from queue_service.store.records import INPUT_COLUMNS, ITEM_COLUMNS
from queue_service.store.rows import (
    AnnotationRow,
    InputRow,
    ItemRow,
    ProgressRow,
    ProjectRow,
    RowBlock,
    SubmitResult,
    TrainingRunRow,
    VoteRow,
    input_row,
)
from queue_service.store.runs import Runs
from queue_service.store.sql.postgres import POP, SUBMIT, copy_records, copy_stream
from queue_service.store.streams import Streams
from queue_service.store.tokens import Tokens

# re-exported: what callers imported from store.py
__all__ = [
    "ANALYZE_AFTER_ROWS",
    "IMPORT_WORKER",
    "INPUT_COLUMNS",
    "ITEM_COLUMNS",
    "AnnotationRow",
    "InputRow",
    "ItemRow",
    "ProgressRow",
    "ProjectRow",
    "RowBlock",
    "Store",
    "SubmitResult",
    "TrainingRunRow",
    "VoteRow",
    "copy_records",
    "copy_stream",
    "next_token",
]


def _same_resubmit(item_id: int, stored: str, labels: list[str]) -> None:
    """A retried Submit must carry the labels recorded the first time."""
    if json.loads(stored) != labels:
        raise FailedPrecondition(
            f"item {item_id} was already submitted with labels {json.loads(stored)}; "
            "use Undo to change a label"
        )


def next_token(token: str, item_id: int) -> str:
    """The lease token a Submit with pop_next uses, derived so a retried submit finds it."""
    return hashlib.sha256(f"{token}:{item_id}".encode()).hexdigest()[:32]


class Store:
    """The queue's state in one SQL database; stateless apart from a cache of projects.
    Leasing is still here; every other concern has its module, and all SQL that differs
    between the databases is in the dialect (store/sql/)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.db = Database(engine)
        self.postgres = db.is_postgres(engine)
        dialect = self.db.dialect
        self._now, self._lock, self._skip = dialect.now, dialect.lock, dialect.skip
        self._projects = Projects(self.db)
        self._ingest = Ingest(self.db)
        self._priorities = Priorities(self.db)
        self._streams = Streams(self.db)
        self._tokens = Tokens(self.db)
        self._runs = Runs(self.db)
        self._progress = Progress(self.db)

    @classmethod
    async def open(cls, url: str, pool_size: int = 10, sqlite_synchronous: str = "FULL") -> Store:
        engine = db.create_engine(url, pool_size=pool_size, sqlite_synchronous=sqlite_synchronous)
        await db.migrate(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.db.close()

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self.db.write()

    async def ping(self) -> None:
        await self.db.ping()

    # -- projects -----------------------------------------------------------------------

    async def create_project(self, spec: ProjectRow, exist_ok: bool) -> tuple[ProjectRow, bool]:
        return await self._projects.create(spec, exist_ok)

    async def get_project(self, name: str, fresh: bool = False) -> ProjectRow:
        return await self._projects.get(name, fresh)

    async def list_projects(self) -> list[ProjectRow]:
        return await self._projects.all()

    async def add_items(
        self,
        project: ProjectRow,
        inputs: Sequence[InputRow | RowBlock],
        labels: list[list[str] | None],
        priorities: list[float] | None,
        key: str | None,
        digest: str,
    ) -> tuple[list[int], bool]:
        return await self._ingest.add_items(project, inputs, labels, priorities, key, digest)

    async def update_priorities(
        self, project: ProjectRow, version: int, ids: np.ndarray, priorities: np.ndarray
    ) -> tuple[int, int]:
        return await self._priorities.update(project, version, ids, priorities)

    # -- reading ------------------------------------------------------------------------

    async def labelled_chunk(
        self, project: ProjectRow, after: int, limit: int, with_inputs: bool
    ) -> list[AnnotationRow]:
        return await self._streams.labelled_chunk(project, after, limit, with_inputs)

    async def votes(self, project: ProjectRow) -> list[VoteRow]:
        return await self._streams.votes(project)

    async def item_inputs(self, ids: Sequence[int]) -> dict[int, InputRow]:
        return await self._streams.item_inputs(ids)

    async def unlabelled_chunk(
        self, project: ProjectRow, after: int, limit: int, ids_only: bool = False
    ) -> list[ItemRow]:
        return await self._streams.unlabelled_chunk(project, after, limit, ids_only)

    async def progress(self, project: ProjectRow) -> ProgressRow:
        return await self._progress.read(project)

    # -- API tokens and training history -------------------------------------------------

    async def create_token(
        self, name: str, role: str, projects: list[str] | None, any_worker: bool, digest: str
    ) -> int:
        return await self._tokens.create(name, role, projects, any_worker, digest)

    async def list_tokens(self) -> list[dict]:
        return await self._tokens.all()

    async def revoke_token(self, name: str) -> bool:
        return await self._tokens.revoke(name)

    async def find_token(self, digest: str) -> Principal | None:
        return await self._tokens.find(digest)

    async def record_run(self, project: ProjectRow, run: TrainingRunRow) -> int:
        return await self._runs.record(project, run)

    async def list_runs(self, project: ProjectRow) -> list[TrainingRunRow]:
        return await self._runs.all(project)

    # -- leasing ------------------------------------------------------------------------

    async def _inputs(self, conn: AsyncConnection, ids: Sequence[int]) -> dict[int, InputRow]:
        if not ids:
            return {}
        rows = await conn.execute(
            sa.text(
                "SELECT item_id, kind, dtype, shape, data, text, metadata FROM item_inputs "
                "WHERE item_id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": list(ids)},
        )
        return {r.item_id: input_row(r) for r in rows}

    async def _lease(
        self, conn: AsyncConnection, project: ProjectRow, worker: str, n: int, token: str
    ) -> list[ItemRow]:
        params = {"p": project.id}
        # Expired leases go back to the pool first (their token is kept, so a late submit
        # is still accepted as long as nobody else has taken the item).
        await conn.execute(
            sa.text(
                f"UPDATE items SET status = {AVAILABLE} WHERE id IN (SELECT id FROM items "
                f"WHERE project_id = :p AND status = {LEASED} AND lease_expires_at <= {self._now}"
                f" {self._skip})"
            ),
            params,
        )
        rows = (
            await conn.execute(
                sa.text(
                    f"UPDATE items SET status = {LEASED}, lease_token = :t, leased_by = :w, "
                    f"lease_expires_at = {self._now} + :l WHERE id IN (SELECT id FROM items "
                    f"WHERE project_id = :p AND status = {AVAILABLE} "
                    f"ORDER BY priority DESC, id LIMIT :n {self._skip}) "
                    "RETURNING id, priority, lease_expires_at"
                ),
                {**params, "t": token, "w": worker, "l": float(project.lease_seconds), "n": n},
            )
        ).all()
        rows.sort(key=lambda r: (-r.priority, r.id))
        inputs = await self._inputs(conn, [r.id for r in rows])
        return [ItemRow(r.id, inputs[r.id], r.priority, token, r.lease_expires_at) for r in rows]

    async def pop(
        self, project: ProjectRow, worker: str, n: int, max_leases: int | None = None
    ) -> list[ItemRow]:
        if project.shared:
            async with self._write() as conn:
                return await self._pop_shared(conn, project, worker, n, max_leases)
        if self.postgres:
            return await self._pop_postgres(project, worker, n, max_leases)
        async with self._write() as conn:
            if max_leases is not None:
                held = (
                    await conn.execute(
                        sa.text(
                            "SELECT COUNT(*) FROM items WHERE project_id = :p AND status = "
                            f"{LEASED} AND leased_by = :w AND lease_expires_at > {self._now}"
                        ),
                        {"p": project.id, "w": worker},
                    )
                ).scalar_one()
                if held + n > max_leases:
                    self._too_many(project, worker, held, n, max_leases)
            return await self._lease(conn, project, worker, n, secrets.token_hex(16))

    def _too_many(self, project: ProjectRow, worker: str, held: int, n: int, limit: int) -> None:
        raise ResourceExhausted(
            f"worker {worker!r} holds {held} live leases in {project.name!r}; "
            f"{held + n} would pass the limit of {limit} "
            "(LABELGRID_MAX_LEASES_PER_WORKER): submit or release some first"
        )

    async def _fetch(self, sql: str, *args: object) -> list:
        return await self.db.dialect.fetch(sql, *args)  # type: ignore[union-attr]

    async def _pop_postgres(
        self,
        project: ProjectRow,
        worker: str,
        n: int,
        max_leases: int | None,
        token: str | None = None,
    ) -> list[ItemRow]:
        """One statement: count the worker's leases, pick the top available (or expired)
        items with SKIP LOCKED, lease them, and return them with their inputs."""
        token = token or secrets.token_hex(16)
        limit = max_leases if max_leases is not None else 2**62
        rows = await self._fetch(
            POP, project.id, worker, n, limit, token, float(project.lease_seconds)
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
            self._too_many(project, worker, held, n, max_leases)
        items.sort(key=lambda r: (-r.priority, r.id))
        return items

    async def _submit_postgres(
        self, project: ProjectRow, item_id: int, token: str, worker: str, labels: list[str]
    ) -> int | None:
        """The common case in one statement: the lease is live and ours, so close the item
        and record the annotation. None means: take the careful path."""
        rows = await self._fetch(SUBMIT, item_id, project.id, token, worker, json.dumps(labels))
        return rows[0]["id"] if rows else None

    async def submit(
        self,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult:
        if project.shared:
            async with self._write() as conn:
                return await self._submit_shared(
                    conn, project, item_id, token, worker, labels, pop_next
                )
        if self.postgres:
            ann_id = await self._submit_postgres(project, item_id, token, worker, labels)
            if ann_id is not None:
                nxt = None
                if pop_next:
                    leased = await self._pop_postgres(
                        project, worker, 1, None, next_token(token, item_id)
                    )
                    nxt = leased[0] if leased else None
                return SubmitResult(ann_id, False, nxt)
        async with self._write() as conn:
            item = (
                await conn.execute(
                    sa.text(
                        "SELECT status, lease_token, leased_by FROM items "
                        f"WHERE id = :i AND project_id = :p {self._lock}"
                    ),
                    {"i": item_id, "p": project.id},
                )
            ).first()
            if item is None:
                raise NotFound(f"item {item_id} is not in project {project.name!r}")
            if item.status == DONE:
                ann = (
                    await conn.execute(
                        sa.text(
                            "SELECT id, labels FROM annotations WHERE item_id = :i AND "
                            "worker_id = :w AND lease_token = :t ORDER BY id DESC LIMIT 1"
                        ),
                        {"i": item_id, "w": worker, "t": token},
                    )
                ).first()
                if ann is None:
                    raise FailedPrecondition(
                        f"item {item_id} is already labelled under another lease; "
                        "this lease is no longer valid"
                    )
                _same_resubmit(item_id, ann.labels, labels)
                nxt = None
                if pop_next:
                    nxt = await self._find_lease(conn, project, worker, next_token(token, item_id))
                    if nxt is None:
                        nxt = await self._lease_one(conn, project, worker, token, item_id)
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
                    sa.text(
                        "INSERT INTO annotations (project_id, item_id, worker_id, labels, "
                        f"lease_token, created_at) VALUES (:p, :i, :w, :l, :t, {self._now}) "
                        "RETURNING id"
                    ),
                    {
                        "p": project.id,
                        "i": item_id,
                        "w": worker,
                        "l": json.dumps(labels),
                        "t": token,
                    },
                )
            ).scalar_one()
            await conn.execute(
                sa.text(
                    f"UPDATE items SET status = {DONE}, completed_at = {self._now}, "
                    "lease_token = NULL, lease_expires_at = NULL WHERE id = :i"
                ),
                {"i": item_id},
            )
            nxt = await self._lease_one(conn, project, worker, token, item_id) if pop_next else None
            return SubmitResult(ann_id, False, nxt)

    async def _lease_one(
        self, conn: AsyncConnection, project: ProjectRow, worker: str, token: str, item_id: int
    ) -> ItemRow | None:
        leased = await self._lease(conn, project, worker, 1, next_token(token, item_id))
        return leased[0] if leased else None

    async def _find_lease(
        self, conn: AsyncConnection, project: ProjectRow, worker: str, token: str
    ) -> ItemRow | None:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT id, priority, lease_expires_at FROM items WHERE project_id = :p AND "
                    f"status = {LEASED} AND lease_token = :t AND leased_by = :w"
                ),
                {"p": project.id, "t": token, "w": worker},
            )
        ).first()
        if row is None:
            return None
        inputs = await self._inputs(conn, [row.id])
        return ItemRow(row.id, inputs[row.id], row.priority, token, row.lease_expires_at)

    async def release(self, project: ProjectRow, item_id: int, token: str, worker: str) -> None:
        if project.shared:
            async with self._write() as conn:
                return await self._release_shared(conn, project, item_id, token, worker)
        async with self._write() as conn:
            item = (
                await conn.execute(
                    sa.text(
                        "SELECT status, lease_token, leased_by FROM items "
                        f"WHERE id = :i AND project_id = :p {self._lock}"
                    ),
                    {"i": item_id, "p": project.id},
                )
            ).first()
            if item is None:
                raise NotFound(f"item {item_id} is not in project {project.name!r}")
            if item.status == DONE or item.lease_token != token or item.leased_by != worker:
                raise FailedPrecondition(
                    f"item {item_id} is not leased to {worker!r} under this token "
                    "(already labelled, released, or leased again after expiry)"
                )
            await conn.execute(
                sa.text(
                    f"UPDATE items SET status = {AVAILABLE}, lease_token = NULL, leased_by = NULL, "
                    "lease_expires_at = NULL WHERE id = :i"
                ),
                {"i": item_id},
            )

    async def undo(self, project: ProjectRow, worker: str) -> tuple[ItemRow, list[str]]:
        """Reopen the worker's newest annotation in the project and lease the item back."""
        if project.shared:
            async with self._write() as conn:
                return await self._undo_shared(conn, project, worker)
        async with self._write() as conn:
            ann = (
                await conn.execute(
                    sa.text(
                        "SELECT id, item_id, labels FROM annotations WHERE project_id = :p AND "
                        f"worker_id = :w ORDER BY id DESC LIMIT 1 {self._lock}"
                    ),
                    {"p": project.id, "w": worker},
                )
            ).first()
            if ann is None:
                raise FailedPrecondition(
                    f"worker {worker!r} has no annotation in project {project.name!r} to undo"
                )
            await conn.execute(sa.text("DELETE FROM annotations WHERE id = :a"), {"a": ann.id})
            token = secrets.token_hex(16)
            row = (
                await conn.execute(
                    sa.text(
                        f"UPDATE items SET status = {LEASED}, lease_token = :t, leased_by = :w, "
                        f"lease_expires_at = {self._now} + :l, completed_at = NULL "
                        "WHERE id = :i RETURNING id, priority, lease_expires_at"
                    ),
                    {"t": token, "w": worker, "l": float(project.lease_seconds), "i": ann.item_id},
                )
            ).one()
            inputs = await self._inputs(conn, [row.id])
            item = ItemRow(row.id, inputs[row.id], row.priority, token, row.lease_expires_at)
            return item, json.loads(ann.labels)

    # -- overlap: k annotations per item ---------------------------------------------------
    #
    # Each (item, worker) pair has at most one row in `assignments`, so an item is never
    # served twice to one worker, even after the lease expired or was released. The item's
    # status is derived from its assignments by `_settle`; every writer locks the item row
    # before it touches the item's assignments, so the lock order is the same everywhere.

    async def _expire_shared(self, conn: AsyncConnection, project: ProjectRow) -> None:
        """Turn this project's expired leases into EXPIRED assignments, freeing the slots."""
        due = (
            await conn.execute(
                sa.text(
                    "SELECT DISTINCT item_id FROM assignments WHERE project_id = :p AND "
                    f"state = {LIVE} AND expires_at <= {self._now}"
                ),
                {"p": project.id},
            )
        ).all()
        if not due:
            return
        locked = await conn.execute(
            sa.text(f"SELECT id FROM items WHERE id IN :ids ORDER BY id {self._skip}").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": [r.item_id for r in due]},
        )
        for (item_id,) in locked.all():
            await conn.execute(
                sa.text(
                    f"UPDATE assignments SET state = {EXPIRED} WHERE item_id = :i AND "
                    f"state = {LIVE} AND expires_at <= {self._now}"
                ),
                {"i": item_id},
            )
            await self._settle(conn, project, item_id)

    async def _settle(self, conn: AsyncConnection, project: ProjectRow, item_id: int) -> None:
        """Derive the item's status from its assignments (the caller holds the item's lock).

        When its labels are all in and agree less than the project's review threshold, the
        item goes to an adjudicator (if the project names reviewers) or asks for one more
        label (up to `max_overlap`)."""
        item = (
            await conn.execute(
                sa.text(
                    f"SELECT it.stage, it.needed, SUM(CASE WHEN a.state = {LIVE} THEN 1 ELSE 0 "
                    f"END) AS live, SUM(CASE WHEN a.state = {SUBMITTED} THEN 1 ELSE 0 END) AS done "
                    "FROM items it LEFT JOIN assignments a ON a.item_id = it.id "
                    "WHERE it.id = :i GROUP BY it.stage, it.needed"
                ),
                {"i": item_id},
            )
        ).one()
        live, done = item.live or 0, item.done or 0
        stage, needed = item.stage, item.needed or project.overlap
        if stage == IN_REVIEW:
            judged = (
                await conn.execute(
                    sa.text(
                        f"SELECT COUNT(*) FROM annotations WHERE item_id = :i AND kind = "
                        f"{ADJUDICATION}"
                    ),
                    {"i": item_id},
                )
            ).scalar_one()
            status = DONE if judged else LEASED if live else REVIEW
        elif done >= needed:
            status = DONE
            if project.review_threshold > 0:
                votes = await conn.execute(
                    sa.text("SELECT labels FROM annotations WHERE item_id = :i AND kind = :k"),
                    {"i": item_id, "k": LABEL},
                )
                labelsets = [tuple(json.loads(r.labels)) for r in votes]
                if modal_fraction(labelsets) < project.review_threshold:
                    if project.reviewers:
                        stage, status = IN_REVIEW, REVIEW
                    elif done < project.max_overlap:
                        needed = done + 1
                        status = LEASED if live else REVIEW
        else:
            # an item in an extra round waits as REVIEW, which Pop serves first
            free = REVIEW if needed > project.overlap else AVAILABLE
            status = LEASED if done + live >= needed else free
        completed = self._now if status == DONE else "NULL"
        await conn.execute(
            sa.text(
                "UPDATE items SET status = :s, stage = :g, needed = :n, "
                f"completed_at = {completed} WHERE id = :i"
            ),
            {
                "s": status,
                "g": stage,
                "n": needed if needed != project.overlap else None,
                "i": item_id,
            },
        )

    async def _lease_expiry(self, conn: AsyncConnection, project: ProjectRow) -> float:
        """When a lease taken now ends, by the database clock."""
        return (
            await conn.execute(sa.text(f"SELECT {self._now} + :l"), {"l": project.lease_seconds})
        ).scalar_one()

    async def _shared_items(
        self,
        conn: AsyncConnection,
        rows: Sequence[tuple[int, float, int]],
        token: str,
        expires: float,
    ) -> list[ItemRow]:
        """Leased shared items from (id, priority, stage): with their inputs, and with the
        other annotators' labels for those in review."""
        ids = [i for i, _, _ in rows]
        inputs = await self._inputs(conn, ids)
        others = await self._others(conn, [i for i, _, stage in rows if stage == IN_REVIEW])
        return [
            ItemRow(i, inputs[i], priority, token, expires, others.get(i, ()))
            for i, priority, _ in rows
        ]

    async def _pop_shared(
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
        await self._expire_shared(conn, project)
        params = {"p": project.id, "w": worker}
        if max_leases is not None:
            held = (
                await conn.execute(
                    sa.text(
                        "SELECT COUNT(*) FROM assignments WHERE project_id = :p AND "
                        f"worker_id = :w AND state = {LIVE} AND expires_at > {self._now}"
                    ),
                    params,
                )
            ).scalar_one()
            if held + n > max_leases:
                self._too_many(project, worker, held, n, max_leases)
        # never the same item twice to one worker; an adjudicator whose lease expired may
        # take the item up again (a project may have a single reviewer)
        fresh = (
            "NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = items.id AND "
            "a.worker_id = :w{})"
        )
        # items in review come first: to reviewers, or (with no reviewers named, when they
        # need one more label) to anybody
        judging = bool(project.reviewers)
        wanted = [REVIEW, AVAILABLE] if worker in project.reviewers or not judging else [AVAILABLE]
        picked: list[sa.Row] = []
        for status in wanted:
            if len(picked) == n:
                break
            again = status == REVIEW and judging
            unseen = fresh.format(f" AND a.state <> {EXPIRED}" if again else "")
            picked += (
                await conn.execute(
                    sa.text(
                        "SELECT id, priority, stage FROM items WHERE project_id = :p AND "
                        f"status = {status} AND {unseen} ORDER BY priority DESC, id LIMIT :n "
                        f"{self._skip}"
                    ),
                    {**params, "n": n - len(picked)},
                )
            ).all()
        if not picked:
            return []
        retaken = [r.id for r in picked if r.stage == IN_REVIEW]
        if retaken:
            await conn.execute(
                sa.text(
                    "DELETE FROM assignments WHERE item_id IN :ids AND worker_id = :w "
                    f"AND state = {EXPIRED}"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": retaken, "w": worker},
            )
        expires = await self._lease_expiry(conn, project)
        await conn.execute(
            sa.text(
                "INSERT INTO assignments (project_id, item_id, worker_id, token, state, "
                f"expires_at, created_at) VALUES (:p, :i, :w, :t, {LIVE}, :e, {self._now})"
            ),
            [{**params, "i": r.id, "t": token, "e": expires} for r in picked],
        )
        # a new lease only fills a slot: the item is LEASED once all of its slots are taken
        # (what `_settle` would decide, in one statement for every picked item)
        await conn.execute(
            sa.text(
                f"UPDATE items SET status = CASE WHEN stage = {IN_REVIEW} THEN {LEASED} "
                "WHEN (SELECT COUNT(*) FROM assignments a WHERE a.item_id = items.id AND "
                f"a.state IN ({LIVE}, {SUBMITTED})) >= COALESCE(needed, :k) THEN {LEASED} "
                "ELSE status END WHERE id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"k": project.overlap, "ids": [r.id for r in picked]},
        )
        return await self._shared_items(
            conn, [(r.id, r.priority, r.stage) for r in picked], token, expires
        )

    async def _others(
        self, conn: AsyncConnection, ids: Sequence[int]
    ) -> dict[int, tuple[tuple[str, list[str]], ...]]:
        """The labels other workers gave, shown to an adjudicator."""
        if not ids:
            return {}
        rows = await conn.execute(
            sa.text(
                "SELECT item_id, worker_id, labels FROM annotations WHERE item_id IN :ids "
                f"AND kind = {LABEL} ORDER BY id"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": list(ids)},
        )
        out: dict[int, list[tuple[str, list[str]]]] = {}
        for r in rows:
            out.setdefault(r.item_id, []).append((r.worker_id, json.loads(r.labels)))
        return {i: tuple(v) for i, v in out.items()}

    async def _lock_shared(
        self, conn: AsyncConnection, project: ProjectRow, item_id: int, worker: str
    ) -> tuple[sa.Row, sa.Row | None]:
        item = (
            await conn.execute(
                sa.text(
                    f"SELECT status, stage, priority FROM items WHERE id = :i AND project_id = :p "
                    f"{self._lock}"
                ),
                {"i": item_id, "p": project.id},
            )
        ).first()
        if item is None:
            raise NotFound(f"item {item_id} is not in project {project.name!r}")
        held = (
            await conn.execute(
                sa.text(
                    "SELECT id, token, state FROM assignments WHERE item_id = :i AND worker_id = :w"
                ),
                {"i": item_id, "w": worker},
            )
        ).first()
        return item, held

    async def _submit_shared(
        self,
        conn: AsyncConnection,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult:
        item, held = await self._lock_shared(conn, project, item_id, worker)
        if held is None or held.token != token:
            raise FailedPrecondition(
                f"lease token does not hold item {item_id} for worker {worker!r}; Pop a new item"
            )
        if held.state == SUBMITTED:
            ann = (
                await conn.execute(
                    sa.text(
                        "SELECT id, labels FROM annotations WHERE item_id = :i AND "
                        "worker_id = :w ORDER BY id DESC LIMIT 1"
                    ),
                    {"i": item_id, "w": worker},
                )
            ).one()
            _same_resubmit(item_id, ann.labels, labels)
            nxt = None
            if pop_next:
                again = next_token(token, item_id)
                nxt = await self._find_shared(conn, project, worker, again)
                if nxt is None:
                    leased = await self._pop_shared(conn, project, worker, 1, None, again)
                    nxt = leased[0] if leased else None
            return SubmitResult(ann.id, True, nxt)
        if held.state == RELEASED:
            raise FailedPrecondition(f"item {item_id} was released (skipped) by {worker!r}")
        if held.state == EXPIRED:
            # a late label is still welcome while the item has a free slot (a lease past its
            # time but not yet reclaimed by a Pop still holds its slot)
            if item.stage == IN_REVIEW or item.status not in (AVAILABLE, REVIEW):
                raise FailedPrecondition(
                    f"the lease on item {item_id} expired and its slot went to another worker"
                )
        # an adjudication is a reviewer's label on an item in review; it decides the item
        kind = ADJUDICATION if item.stage == IN_REVIEW and worker in project.reviewers else LABEL
        ann_id = (
            await conn.execute(
                sa.text(
                    "INSERT INTO annotations (project_id, item_id, worker_id, labels, "
                    f"lease_token, created_at, kind) VALUES (:p, :i, :w, :l, :t, {self._now}, :k) "
                    "RETURNING id"
                ),
                {
                    "p": project.id,
                    "i": item_id,
                    "w": worker,
                    "l": json.dumps(labels),
                    "t": token,
                    "k": kind,
                },
            )
        ).scalar_one()
        await conn.execute(
            sa.text(f"UPDATE assignments SET state = {SUBMITTED} WHERE id = :a"), {"a": held.id}
        )
        await self._settle(conn, project, item_id)
        nxt = None
        if pop_next:
            leased = await self._pop_shared(
                conn, project, worker, 1, None, next_token(token, item_id)
            )
            nxt = leased[0] if leased else None
        return SubmitResult(ann_id, False, nxt)

    async def _find_shared(
        self, conn: AsyncConnection, project: ProjectRow, worker: str, token: str
    ) -> ItemRow | None:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT a.item_id, a.expires_at, it.priority, it.stage FROM assignments a "
                    "JOIN items it ON it.id = a.item_id WHERE a.project_id = :p AND "
                    f"a.worker_id = :w AND a.token = :t AND a.state = {LIVE}"
                ),
                {"p": project.id, "w": worker, "t": token},
            )
        ).first()
        if row is None:
            return None
        [item] = await self._shared_items(
            conn, [(row.item_id, row.priority, row.stage)], token, row.expires_at
        )
        return item

    async def _release_shared(
        self, conn: AsyncConnection, project: ProjectRow, item_id: int, token: str, worker: str
    ) -> None:
        """A skip: the slot goes to somebody else, and this worker is not asked again."""
        _, held = await self._lock_shared(conn, project, item_id, worker)
        if held is None or held.token != token or held.state != LIVE:
            raise FailedPrecondition(
                f"item {item_id} is not leased to {worker!r} under this token "
                "(already labelled, released, or expired)"
            )
        await conn.execute(
            sa.text(f"UPDATE assignments SET state = {RELEASED} WHERE id = :a"), {"a": held.id}
        )
        await self._settle(conn, project, item_id)

    async def _undo_shared(
        self, conn: AsyncConnection, project: ProjectRow, worker: str
    ) -> tuple[ItemRow, list[str]]:
        ann = (
            await conn.execute(
                sa.text(
                    "SELECT id, item_id, labels FROM annotations WHERE project_id = :p AND "
                    "worker_id = :w ORDER BY id DESC LIMIT 1"
                ),
                {"p": project.id, "w": worker},
            )
        ).first()
        if ann is None:
            raise FailedPrecondition(
                f"worker {worker!r} has no annotation in project {project.name!r} to undo"
            )
        item, held = await self._lock_shared(conn, project, ann.item_id, worker)
        if held is None:
            raise FailedPrecondition(f"item {ann.item_id} has no assignment for {worker!r}")
        await conn.execute(sa.text("DELETE FROM annotations WHERE id = :a"), {"a": ann.id})
        token = secrets.token_hex(16)
        expires = await self._lease_expiry(conn, project)
        await conn.execute(
            sa.text(
                f"UPDATE assignments SET state = {LIVE}, token = :t, expires_at = :e WHERE id = :a"
            ),
            {"t": token, "e": expires, "a": held.id},
        )
        await self._settle(conn, project, ann.item_id)
        [row] = await self._shared_items(
            conn, [(ann.item_id, item.priority, item.stage)], token, expires
        )
        return row, json.loads(ann.labels)
