"""`Store`: the one object the gRPC handlers talk to. It turns each operation into the
concern that runs it; the concerns share one `Database` (engine, dialect, statements).

Every method is one short transaction (UpdatePriorities a series of bounded ones). Lease
times come from the database clock only, so a client's clock never decides who holds an
item. On PostgreSQL pops use `FOR UPDATE SKIP LOCKED`; on SQLite every write transaction is
`BEGIN IMMEDIATE` and writes from this process are also serialised by an asyncio lock, so
threads do not spin on the database lock.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from queue_service import sqlite_driver
from queue_service.db import create_engine, migrate
from queue_service.principal import Principal
from queue_service.store.changes import ChangeFeed, LocalFeed, PostgresFeed
from queue_service.store.database import Database
from queue_service.store.ingest import Ingest
from queue_service.store.leases import DirectLeases, Leases, SingleLeases, SqliteLeases
from queue_service.store.priorities import Priorities
from queue_service.store.progress import Progress
from queue_service.store.projects import Projects
from queue_service.store.relabels import RelabelResult
from queue_service.store.rows import (
    AnnotationRow,
    InputRow,
    ItemRow,
    PackedRows,
    ProgressRow,
    ProjectRow,
    ProjectStatsRow,
    RowBlock,
    SubmitResult,
    TrainingRunRow,
)
from queue_service.store.runs import Runs
from queue_service.store.shared import SharedLeases
from queue_service.store.sql.postgres import PostgresDialect
from queue_service.store.stats import Stats
from queue_service.store.streams import Streams
from queue_service.store.tokens import Tokens
from queue_service.store.vote_table import VoteTable


class Store:
    """The queue's state in one SQL database; stateless apart from a cache of projects."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.db = Database(engine)
        self._projects = Projects(self.db)
        self._ingest = Ingest(self.db)
        # the way of leasing is chosen once per dialect (k = 1) and per project (k > 1)
        dialect = self.db.dialect
        self._single: Leases = SingleLeases(self.db)
        if isinstance(dialect, PostgresDialect):
            self._single = DirectLeases(self.db, dialect)
        elif sqlite_driver.supported():  # the hot path runs whole transactions on its thread
            self._single = SqliteLeases(self.db, dialect)
        self._shared: Leases = SharedLeases(self.db)
        self._priorities = Priorities(self.db)
        self._streams = Streams(self.db)
        self._tokens = Tokens(self.db)
        self._runs = Runs(self.db)
        self._progress = Progress(self.db)
        self._stats = Stats(self.db)

    @classmethod
    async def open(
        cls,
        url: str,
        pool_size: int = 0,
        sqlite_synchronous: str = "FULL",
        pool_timeout: float = 30.0,
    ) -> Store:
        engine = create_engine(
            url,
            pool_size=pool_size,
            sqlite_synchronous=sqlite_synchronous,
            pool_timeout=pool_timeout,
        )
        await migrate(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.ping()

    def change_feed(self) -> ChangeFeed:
        """How this replica tells the others of its changes and hears of theirs: LISTEN/NOTIFY
        on its own connection (PostgreSQL); nothing on SQLite (one process)."""
        if not isinstance(self.db.dialect, PostgresDialect):
            return LocalFeed()
        _, connect_args = self.engine.dialect.create_connect_args(self.engine.url)
        for adapter_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            connect_args.pop(adapter_only, None)  # SQLAlchemy's, not asyncpg.connect's
        return PostgresFeed(connect_args)

    def leases(self, project: ProjectRow) -> Leases:
        """How this project's items are leased: k = 1 on the item, k > 1 by assignments."""
        return self._shared if project.shared else self._single

    # -- projects -----------------------------------------------------------------------

    async def create_project(self, spec: ProjectRow, exist_ok: bool) -> tuple[ProjectRow, bool]:
        return await self._projects.create(spec, exist_ok)

    async def get_project(self, name: str, fresh: bool = False) -> ProjectRow:
        return await self._projects.get(name, fresh)

    async def list_projects(self) -> list[ProjectRow]:
        return await self._projects.all()

    async def set_instructions(self, project: ProjectRow, instructions: str) -> ProjectRow:
        return await self._projects.set_instructions(project, instructions)

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

    # -- leasing ------------------------------------------------------------------------

    async def pop(
        self, project: ProjectRow, worker: str, n: int, max_leases: int | None = None
    ) -> list[ItemRow]:
        return await self.leases(project).pop(project, worker, n, max_leases)

    async def submit(
        self,
        project: ProjectRow,
        item_id: int,
        token: str,
        worker: str,
        labels: list[str],
        pop_next: bool,
    ) -> SubmitResult:
        return await self.leases(project).submit(project, item_id, token, worker, labels, pop_next)

    async def list_leases(self, project: ProjectRow, worker: str) -> list[ItemRow]:
        return await self.leases(project).held(project, worker)

    async def release(self, project: ProjectRow, item_id: int, token: str, worker: str) -> None:
        await self.leases(project).release(project, item_id, token, worker)

    async def undo(self, project: ProjectRow, worker: str) -> tuple[ItemRow, list[str]]:
        """Reopen the worker's newest annotation in the project and lease the item back."""
        return await self.leases(project).undo(project, worker)

    async def update_priorities(
        self,
        project: ProjectRow,
        version: int,
        ids: np.ndarray,
        priorities: np.ndarray,
        relabel_ids: np.ndarray | None = None,
        relabel_priorities: np.ndarray | None = None,
    ) -> tuple[int, int, RelabelResult]:
        """Priorities and relabel requests of one model version (store/priorities.py)."""
        return await self._priorities.update(
            project, version, ids, priorities, relabel_ids, relabel_priorities
        )

    # -- annotator-aware routing ----------------------------------------------------------

    async def save_reliability(
        self, project: ProjectRow, estimates: Sequence[tuple[str, float, int]], upto: int
    ) -> None:
        """Store each (worker, reliability, compared) of the project, estimated from the
        annotations up to `upto` (an older estimate never overwrites a newer one)."""
        if not estimates:
            return
        async with self.db.write() as conn:
            await conn.execute(
                self.db.q.reliability.upsert,
                [{"p": project.id, "w": w, "r": r, "c": c, "u": upto} for w, r, c in estimates],
            )

    async def reliabilities(self, project: ProjectRow) -> dict[str, tuple[float, int]]:
        """The stored estimates of the project: worker -> (reliability, compared)."""
        async with self.db.read() as conn:
            rows = await conn.execute(self.db.q.reliability.all, {"p": project.id})
            return {r.worker_id: (r.reliability, r.compared) for r in rows}

    # -- reading ------------------------------------------------------------------------

    async def labelled_chunk(
        self,
        project: ProjectRow,
        after: int,
        limit: int,
        with_inputs: bool,
        upto: int | None = None,
    ) -> list[AnnotationRow]:
        return await self._streams.labelled_chunk(project, after, limit, with_inputs, upto)

    async def labelled_by_item(
        self, project: ProjectRow, after_item: int, n_items: int, with_inputs: bool
    ) -> tuple[list[AnnotationRow], int | None]:
        return await self._streams.labelled_by_item(project, after_item, n_items, with_inputs)

    async def votes(self, project: ProjectRow) -> VoteTable:
        return await self._streams.votes(project)

    async def settled_annotation_id(self) -> int | None:
        """How far a follower may read: no label can still appear at or below it (None: all
        committed ones; store/settled.py). Take it before the reads it bounds; it waits a
        moment for the ids taken before it to settle."""
        return await self.db.dialect.settled_annotation_id()

    @property
    def unsettled(self) -> bool:
        """Whether ids beyond the settled one were seen taken (they settle soon)."""
        return self.db.dialect.unsettled

    async def item_inputs(self, ids: Sequence[int]) -> dict[int, InputRow]:
        return await self._streams.item_inputs(ids)

    async def unlabelled_chunk(
        self, project: ProjectRow, after: int, limit: int, ids_only: bool = False
    ) -> list[ItemRow]:
        return await self._streams.unlabelled_chunk(project, after, limit, ids_only)

    async def unlabelled_packed(
        self, project: ProjectRow, after: int, limit: int
    ) -> PackedRows | None:
        return await self._streams.unlabelled_packed(project, after, limit)

    async def unlabelled_ids(
        self, project: ProjectRow, after: int, limit: int
    ) -> tuple[list[int], list[float]]:
        return await self._streams.unlabelled_ids(project, after, limit)

    async def progress(self, project: ProjectRow) -> ProgressRow:
        return await self._progress.read(project)

    async def project_stats(self, project: ProjectRow, bucket_seconds: int = 0) -> ProjectStatsRow:
        """Per-worker activity and labels per time bucket (0: a width picked to fit)."""
        return await self._stats.read(project, bucket_seconds)

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

    async def list_runs(self, project: ProjectRow, newest: int = 0) -> list[TrainingRunRow]:
        return await self._runs.all(project, newest)
