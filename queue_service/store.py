"""All of the queue's SQL, for SQLite and PostgreSQL, in one place.

Every method is one short transaction. Lease times come from the database clock only
(`_NOW`), so a client's clock never decides who holds an item. On PostgreSQL pops use
`FOR UPDATE SKIP LOCKED`; on SQLite every write transaction is `BEGIN IMMEDIATE` and
writes from this process are also serialised by an asyncio lock, so threads do not spin
on the database lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field

import asyncpg
import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from queue_service import db
from queue_service.consensus import modal_fraction
from queue_service.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from queue_service.principal import Principal
from queue_service.schema import (
    ADJUDICATION,
    AVAILABLE,
    DONE,
    EXPIRED,
    IN_REVIEW,
    KIND_ARRAY,
    LABEL,
    LEASED,
    LIVE,
    RELEASED,
    REVIEW,
    SUBMITTED,
    UNRANKED,
)

_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}

log = logging.getLogger("labelgrid.queue")

IMPORT_WORKER = "(import)"
# after a bulk insert this large, PostgreSQL's statistics are refreshed at once: until
# autovacuum gets to it the planner thinks the table is empty, and a Pop sorts every item
# (31 ms instead of 0.2 ms for 100,000 items)
ANALYZE_AFTER_ROWS = 5000


@dataclass(frozen=True)
class ProjectRow:
    id: int
    name: str
    options: tuple[str, ...]
    multi_label: bool
    allow_other: bool
    lease_seconds: int
    model_version: int
    created_at: float
    overlap: int = 1
    max_overlap: int = 1
    review_threshold: float = 0.0
    reviewers: tuple[str, ...] = ()
    # markdown for labellers; editable, so not one of the settings compared by exist_ok
    instructions: str = ""

    @property
    def shared(self) -> bool:
        """Several annotations per item: leases live in `assignments`, not on the item."""
        return self.overlap > 1

    def settings(self) -> tuple:
        return (
            self.options,
            self.multi_label,
            self.allow_other,
            self.lease_seconds,
            self.overlap,
            self.max_overlap,
            self.review_threshold,
            self.reviewers,
        )


@dataclass(slots=True)
class InputRow:
    """One item's input as stored: an array (dtype, shape, data) or a text-like value."""

    kind: int
    dtype: str | None = None
    shape: str | None = None
    data: bytes | None = None
    text: str | None = None
    metadata: str | None = None


def _input(row: sa.Row) -> InputRow:
    """An input from a result row that selected kind, dtype, shape, data, text, metadata."""
    return InputRow(row.kind, row.dtype, row.shape, row.data, row.text, row.metadata)


@dataclass(frozen=True, slots=True)
class RowBlock:
    """n array items of one dtype and shape in one buffer: the bulk AddFeatures case, kept
    whole so a 100,000-row call never becomes 100,000 Python objects."""

    dtype: str
    shape: str
    data: memoryview | bytes
    n: int
    stride: int

    def rows(self) -> list[InputRow]:
        data = memoryview(self.data)
        step = self.stride
        return [
            InputRow(KIND_ARRAY, self.dtype, self.shape, data[i * step : (i + 1) * step])
            for i in range(self.n)
        ]


def _input_records(ids: list[int], inputs: Sequence[InputRow | RowBlock]) -> Iterator[tuple]:
    """item_inputs records; blocks are sliced without a Python object per row."""
    at = 0
    for seg in inputs:
        if isinstance(seg, RowBlock):
            data, step = memoryview(seg.data), seg.stride
            for k in range(seg.n):
                row = data[k * step : (k + 1) * step]
                yield (ids[at + k], KIND_ARRAY, seg.dtype, seg.shape, row, None, None)
            at += seg.n
        else:
            yield (ids[at], seg.kind, seg.dtype, seg.shape, seg.data, seg.text, seg.metadata)
            at += 1


ITEM_COLUMNS = (
    "id",
    "project_id",
    "batch_id",
    "status",
    "priority",
    "inserted_at",
    "completed_at",
)
INPUT_COLUMNS = ("item_id", "kind", "dtype", "shape", "data", "text", "metadata")
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


def copy_records(n: int, fields: list[tuple[str, str]]) -> np.ndarray:
    """A record array laid out as PostgreSQL's binary COPY tuples of fixed-size fields:
    a field count, then each field's length and big-endian value. Fill the named fields."""
    layout: list[tuple[str, str]] = [("_count", ">i2")]
    for name, kind in fields:
        layout += [(f"_{name}_len", ">i4"), (name, kind)]
    records = np.zeros(n, dtype=np.dtype(layout))
    records["_count"] = len(fields)
    for name, _ in fields:
        records[f"_{name}_len"] = records.dtype.fields[name][0].itemsize
    return records


def copy_stream(records: np.ndarray) -> bytes:
    return _COPY_HEADER + records.tobytes() + b"\xff\xff"


@dataclass(frozen=True)
class ItemRow:
    id: int
    input: InputRow | None
    priority: float
    lease_token: str | None = None
    lease_expires_at: float | None = None
    # (worker, labels) of the other annotators, for an adjudicator
    others: tuple[tuple[str, list[str]], ...] = ()


@dataclass(frozen=True)
class AnnotationRow:
    id: int
    item_id: int
    labels: list[str]
    worker_id: str
    created_at: float
    input: InputRow | None
    confidence: float = 1.0


@dataclass(frozen=True)
class SubmitResult:
    annotation_id: int
    duplicate: bool
    next_item: ItemRow | None


@dataclass(frozen=True, slots=True)
class VoteRow:
    id: int
    item_id: int
    worker_id: str
    labels: tuple[str, ...]
    kind: int
    created_at: float
    item_done: bool


@dataclass
class ProgressRow:
    total: int = 0
    labelled: int = 0
    leased: int = 0
    available: int = 0
    workers: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    last_annotation_id: int = 0
    annotations: int = 0
    in_review: int = 0
    worker_stats: list = field(default_factory=list)


@dataclass
class TrainingRunRow:
    status: str
    message: str
    score: float | None
    score_std: float | None
    n_labels: int
    n_scored: int
    model_version: int
    seconds: float
    started_at: float
    trainer: str


_PG_NOW = _NOW["postgresql"]
# $1 project, $2 worker, $3 n, $4 most leases, $5 token, $6 lease seconds
_POP_POSTGRES = (
    f"WITH held AS (SELECT COUNT(*) AS c FROM items WHERE project_id = $1 "
    f"AND status = {LEASED} AND leased_by = $2 AND lease_expires_at > {_PG_NOW}), "
    "avail AS (SELECT id, priority FROM items WHERE project_id = $1 AND "
    f"status = {AVAILABLE} ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED), "
    "expired AS (SELECT id, priority FROM items WHERE project_id = $1 AND "
    f"status = {LEASED} AND lease_expires_at <= {_PG_NOW} "
    "ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED), "
    "picked AS (SELECT id FROM (SELECT * FROM avail UNION ALL "
    "SELECT * FROM expired) c WHERE (SELECT c FROM held) + $3 <= $4 "
    "ORDER BY priority DESC, id LIMIT $3), "
    f"leased AS (UPDATE items SET status = {LEASED}, lease_token = $5, "
    f"leased_by = $2, lease_expires_at = {_PG_NOW} + $6 FROM picked "
    "WHERE items.id = picked.id "
    "RETURNING items.id, items.priority, items.lease_expires_at) "
    "SELECT h.c AS held, l.id, l.priority, l.lease_expires_at, i.kind, "
    "i.dtype, i.shape, i.data, i.text, i.metadata FROM held h LEFT JOIN "
    "(leased l JOIN item_inputs i ON i.item_id = l.id) ON true"
)
# $1 item, $2 project, $3 token, $4 worker, $5 labels (JSON)
_SUBMIT_POSTGRES = (
    f"WITH upd AS (UPDATE items SET status = {DONE}, completed_at = {_PG_NOW}, "
    "lease_token = NULL, lease_expires_at = NULL WHERE id = $1 AND "
    f"project_id = $2 AND status <> {DONE} AND lease_token = $3 AND "
    "leased_by = $4 RETURNING id) INSERT INTO annotations (project_id, "
    "item_id, worker_id, labels, lease_token, created_at) "
    f"SELECT $2, id, $4, $5, $3, {_PG_NOW} FROM upd RETURNING id"
)


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
    """The queue's state in one SQL database; stateless apart from a cache of projects."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.postgres = db.is_postgres(engine)
        self._now = _NOW[self.dialect]
        self._lock = "FOR UPDATE" if self.postgres else ""
        self._key_lock = "FOR NO KEY UPDATE" if self.postgres else ""
        self._skip = "FOR UPDATE SKIP LOCKED" if self.postgres else ""
        self._write_lock = asyncio.Lock()
        # single statements that need no explicit transaction (one round trip)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._projects: dict[str, ProjectRow] = {}
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    async def open(cls, url: str, pool_size: int = 10, sqlite_synchronous: str = "FULL") -> Store:
        engine = db.create_engine(url, pool_size=pool_size, sqlite_synchronous=sqlite_synchronous)
        await db.migrate(engine)
        return cls(engine)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.engine.dispose()

    def _refresh_statistics(self) -> None:
        """ANALYZE the item tables in the background (PostgreSQL), once per burst."""
        if not self.postgres or self._tasks:
            return

        async def analyze() -> None:
            try:
                async with self._autocommit.connect() as conn:
                    await conn.execute(sa.text("ANALYZE items, item_inputs, assignments"))
            except Exception as exc:  # autovacuum will get there; serving goes on
                log.warning("ANALYZE after a bulk insert failed", extra={"error": str(exc)})

        task = asyncio.get_running_loop().create_task(analyze())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- transactions -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        lock = contextlib.nullcontext() if self.postgres else self._write_lock
        async with lock, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _read(self, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            options: dict[str, str] = {"sqlite_begin": "DEFERRED"}
            if snapshot and self.postgres:
                options["isolation_level"] = "REPEATABLE READ"
            await conn.execution_options(**options)
            async with conn.begin():
                yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- projects -----------------------------------------------------------------------

    _PROJECT_COLS = (
        "id, name, options, multi_label, allow_other, lease_seconds, model_version, created_at, "
        "overlap, max_overlap, review_threshold, reviewers, instructions"
    )

    @staticmethod
    def _project(row: sa.Row) -> ProjectRow:
        return ProjectRow(
            id=row.id,
            name=row.name,
            options=tuple(json.loads(row.options)),
            multi_label=bool(row.multi_label),
            allow_other=bool(row.allow_other),
            lease_seconds=row.lease_seconds,
            model_version=row.model_version,
            created_at=row.created_at,
            overlap=row.overlap,
            max_overlap=row.max_overlap,
            review_threshold=row.review_threshold,
            reviewers=tuple(json.loads(row.reviewers)),
            instructions=row.instructions or "",
        )

    async def create_project(self, spec: ProjectRow, exist_ok: bool) -> tuple[ProjectRow, bool]:
        """Create a project with the settings of `spec` (its id, version and time are
        ignored); settings never change afterwards."""
        name = spec.name
        async with self._write() as conn:
            row = (
                await conn.execute(
                    sa.text(f"SELECT {self._PROJECT_COLS} FROM projects WHERE name = :n"),
                    {"n": name},
                )
            ).first()
            if row is not None:
                existing = self._project(row)
                same = existing.settings() == spec.settings()
                if exist_ok and same:
                    return existing, False
                why = "" if same else " with different settings"
                raise AlreadyExists(f"project {name!r} already exists{why}")
            row = (
                await conn.execute(
                    sa.text(
                        "INSERT INTO projects (name, options, multi_label, allow_other, "
                        "lease_seconds, model_version, created_at, overlap, max_overlap, "
                        "review_threshold, reviewers, instructions) VALUES (:n, :o, :m, :a, :l, "
                        f"0, {self._now}, :k, :kmax, :rt, :rv, :ins) "
                        f"RETURNING {self._PROJECT_COLS}"
                    ),
                    {
                        "n": name,
                        "o": json.dumps(list(spec.options)),
                        "m": spec.multi_label,
                        "a": spec.allow_other,
                        "l": spec.lease_seconds,
                        "k": spec.overlap,
                        "kmax": spec.max_overlap,
                        "rt": spec.review_threshold,
                        "rv": json.dumps(list(spec.reviewers)),
                        "ins": spec.instructions or None,
                    },
                )
            ).one()
            return self._project(row), True

    async def get_project(self, name: str, fresh: bool = False) -> ProjectRow:
        """A project by name; settings are immutable, so a cached copy serves all but
        `model_version` (pass fresh=True to read that)."""
        if not fresh and name in self._projects:
            return self._projects[name]
        async with self._read() as conn:
            row = (
                await conn.execute(
                    sa.text(f"SELECT {self._PROJECT_COLS} FROM projects WHERE name = :n"),
                    {"n": name},
                )
            ).first()
        if row is None:
            raise NotFound(f"project {name!r} does not exist; create it with CreateProject")
        project = self._project(row)
        self._projects[name] = project
        return project

    async def list_projects(self) -> list[ProjectRow]:
        async with self._read() as conn:
            rows = await conn.execute(
                sa.text(f"SELECT {self._PROJECT_COLS} FROM projects ORDER BY id")
            )
            return [self._project(r) for r in rows]

    # -- adding items -------------------------------------------------------------------

    async def add_items(
        self,
        project: ProjectRow,
        inputs: Sequence[InputRow | RowBlock],
        labels: list[list[str] | None],
        priorities: list[float] | None,
        key: str | None,
        digest: str,
    ) -> tuple[list[int], bool]:
        """Insert items all-or-nothing; a known idempotency key returns the first call's ids.
        `inputs` are single items and blocks of array rows, in order; `labels` and
        `priorities` have one entry per item."""
        count = sum(seg.n if isinstance(seg, RowBlock) else 1 for seg in inputs)
        async with self._write() as conn:
            batch_id = None
            if key:
                known = (
                    await conn.execute(
                        sa.text(
                            f"SELECT id, digest FROM batches WHERE project_id = :p AND key = :k "
                            f"{self._lock}"
                        ),
                        {"p": project.id, "k": key},
                    )
                ).first()
                if known is not None:
                    if known.digest != digest:
                        raise AlreadyExists(
                            f"idempotency key {key!r} was used before for different data in "
                            f"project {project.name!r}; use a new key for new data"
                        )
                    ids = await conn.execute(
                        sa.text("SELECT id FROM items WHERE batch_id = :b ORDER BY id"),
                        {"b": known.id},
                    )
                    return [r.id for r in ids], True
                batch_id = (
                    await conn.execute(
                        sa.text(
                            "INSERT INTO batches (project_id, key, digest, count, created_at) "
                            f"VALUES (:p, :k, :d, :c, {self._now}) RETURNING id"
                        ),
                        {"p": project.id, "k": key, "d": digest, "c": count},
                    )
                ).scalar_one()
            if not count:
                return [], False
            now = (await conn.execute(sa.text(f"SELECT {self._now}"))).scalar_one()
            ids = await self._reserve_ids(conn, count)
            if self.postgres and not any(labels):
                await self._copy_items(conn, project, batch_id, ids, priorities, now)
                await self._copy_inputs(conn, ids, inputs)
            else:
                await self._insert_rows(
                    conn, project, batch_id, ids, inputs, labels, priorities, now
                )
        if len(ids) >= ANALYZE_AFTER_ROWS:
            self._refresh_statistics()
        return ids, False

    async def _insert_rows(
        self,
        conn: AsyncConnection,
        project: ProjectRow,
        batch_id: int | None,
        ids: list[int],
        inputs: Sequence[InputRow | RowBlock],
        labels: list[list[str] | None],
        priorities: list[float] | None,
        now: float,
    ) -> None:
        """The general insert: labelled items (with their imported annotations), SQLite."""
        count = len(ids)
        status = [DONE if lab else AVAILABLE for lab in labels]
        prio = priorities if priorities is not None else [UNRANKED] * count
        item_rows = [
            (i, project.id, batch_id, s, p, now, now if s == DONE else None)
            for i, s, p in zip(ids, status, prio, strict=True)
        ]
        input_rows = list(_input_records(ids, inputs))
        await self._bulk_insert(conn, "items", ITEM_COLUMNS, item_rows)
        await self._bulk_insert(conn, "item_inputs", INPUT_COLUMNS, input_rows)
        done = [
            {
                "p": project.id,
                "i": i,
                "w": IMPORT_WORKER,
                "l": json.dumps(lab),
                "t": now,
            }
            for i, lab in zip(ids, labels, strict=True)
            if lab
        ]
        if done:
            await conn.execute(
                sa.text(
                    "INSERT INTO annotations (project_id, item_id, worker_id, labels, "
                    "created_at) VALUES (:p, :i, :w, :l, :t)"
                ),
                done,
            )

    async def _reserve_ids(self, conn: AsyncConnection, n: int) -> list[int]:
        if self.postgres:
            raw = await conn.get_raw_connection()
            return await raw.driver_connection.fetchval(  # type: ignore[union-attr]
                "SELECT array_agg(nextval('items_id_seq')) FROM generate_series(1, $1)", n
            )
        # SQLite: this transaction holds the write lock, so max(id) cannot move under us.
        top = (await conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM items"))).scalar_one()
        return list(range(top + 1, top + 1 + n))

    async def _copy_items(
        self,
        conn: AsyncConnection,
        project: ProjectRow,
        batch_id: int | None,
        ids: list[int],
        priorities: list[float] | None,
        now: float,
    ) -> None:
        """Unlabelled items by binary COPY, built as one numpy record array (PostgreSQL)."""
        n = len(ids)
        fields = [("id", ">i8"), ("project_id", ">i4")]
        if batch_id is not None:
            fields.append(("batch_id", ">i4"))
        fields += [("status", ">i2"), ("priority", ">f8"), ("inserted_at", ">f8")]
        columns = [name for name, _ in fields]
        table = copy_records(n, fields)
        table["id"] = ids
        table["project_id"] = project.id
        if batch_id is not None:
            table["batch_id"] = batch_id
        table["status"] = AVAILABLE
        table["priority"] = UNRANKED if priorities is None else priorities
        table["inserted_at"] = now
        await self._copy(conn, "items", columns, table)

    async def _copy_inputs(
        self, conn: AsyncConnection, ids: list[int], inputs: Sequence[InputRow | RowBlock]
    ) -> None:
        """Blocks of array rows by binary COPY (one numpy record array per block); single
        items as records."""
        at = 0
        singles: list[tuple[int, InputRow]] = []
        for seg in inputs:
            if not isinstance(seg, RowBlock):
                singles.append((ids[at], seg))
                at += 1
                continue
            dtype, shape = seg.dtype.encode(), seg.shape.encode()
            fields = [
                ("item_id", ">i8"),
                ("kind", ">i2"),
                ("dtype", f"S{len(dtype)}"),
                ("shape", f"S{len(shape)}"),
                ("data", f"V{seg.stride}"),
            ]
            table = copy_records(seg.n, fields)
            table["item_id"] = ids[at : at + seg.n]
            table["kind"] = KIND_ARRAY
            table["dtype"] = dtype
            table["shape"] = shape
            if seg.stride:
                table["data"] = np.frombuffer(seg.data, dtype=f"V{seg.stride}", count=seg.n)
            await self._copy(conn, "item_inputs", [f for f, _ in fields], table)
            at += seg.n
        if singles:
            records = list(_input_records([i for i, _ in singles], [x for _, x in singles]))
            await self._bulk_insert(conn, "item_inputs", INPUT_COLUMNS, records)

    async def _copy(
        self, conn: AsyncConnection, table: str, columns: list[str], records: np.ndarray
    ) -> None:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_to_table(  # type: ignore[union-attr]
            table, source=io.BytesIO(copy_stream(records)), columns=columns, format="binary"
        )

    async def _bulk_insert(
        self, conn: AsyncConnection, table: str, columns: Sequence[str], rows: list[tuple]
    ) -> None:
        if self.postgres:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                table, records=rows, columns=list(columns)
            )
            return
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        await conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

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
        return {r.item_id: _input(r) for r in rows}

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
        """One statement straight on asyncpg (prepared once per connection, autocommitted):
        the two hot paths skip SQLAlchemy's execution layer, about a third of their CPU.
        A connection that failed is dropped from the pool, and the caller gets UNAVAILABLE."""
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            for attempt in range(3):
                try:
                    return await raw.driver_connection.fetch(sql, *args)  # type: ignore[union-attr]
                except asyncpg.DeadlockDetectedError:
                    # the statement was rolled back whole, so running it again is safe
                    if attempt == 2:
                        raise
                except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
                    await conn.invalidate()
                    raise Unavailable(f"database unavailable: {type(exc).__name__}; retry") from exc
            raise AssertionError("unreachable")

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
            _POP_POSTGRES, project.id, worker, n, limit, token, float(project.lease_seconds)
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
        rows = await self._fetch(
            _SUBMIT_POSTGRES, item_id, project.id, token, worker, json.dumps(labels)
        )
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

    # -- priorities ---------------------------------------------------------------------

    async def update_priorities(
        self, project: ProjectRow, version: int, ids: np.ndarray, priorities: np.ndarray
    ) -> tuple[int, int]:
        """Apply priorities from one model version; an older version than the newest applied
        is refused, so priorities never go back to a staler model."""
        async with self._write() as conn:
            current = (
                await conn.execute(
                    # NO KEY UPDATE serialises priority updates without blocking the
                    # foreign-key check (KEY SHARE) of a Submit that holds an item row this
                    # update waits for: FOR UPDATE here deadlocked the two
                    sa.text(f"SELECT model_version FROM projects WHERE id = :p {self._key_lock}"),
                    {"p": project.id},
                )
            ).scalar_one()
            if version < current:
                raise FailedPrecondition(
                    f"model version {version} is older than the applied version {current}; "
                    "priorities from a stale model are not applied"
                )
            if len(ids):
                updated = await self._set_priorities(conn, project.id, ids, priorities)
                if updated != len(ids):
                    raise InvalidArgument(
                        f"{len(ids) - updated} of {len(ids)} ids are not items of project "
                        f"{project.name!r}; nothing was updated"
                    )
            await conn.execute(
                sa.text("UPDATE projects SET model_version = :v WHERE id = :p"),
                {"v": version, "p": project.id},
            )
            return len(ids), version

    async def _set_priorities(
        self, conn: AsyncConnection, project_id: int, ids: np.ndarray, priorities: np.ndarray
    ) -> int:
        if self.postgres:
            result = await conn.execute(
                sa.text(
                    "UPDATE items SET priority = u.p FROM unnest(CAST(:ids AS bigint[]), "
                    "CAST(:ps AS float8[])) AS u(id, p) WHERE items.id = u.id AND "
                    "items.project_id = :proj"
                ),
                {"ids": ids.tolist(), "ps": priorities.tolist(), "proj": project_id},
            )
            return result.rowcount
        await conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS new_priority (id INTEGER PRIMARY KEY, p REAL)"
        )
        await conn.exec_driver_sql("DELETE FROM new_priority")
        await conn.exec_driver_sql(
            "INSERT INTO new_priority (id, p) VALUES (?, ?)",
            list(zip(ids.tolist(), priorities.tolist(), strict=True)),
        )
        result = await conn.exec_driver_sql(
            "UPDATE items SET priority = new_priority.p FROM new_priority "
            "WHERE items.id = new_priority.id AND items.project_id = ?",
            (project_id,),
        )
        await conn.exec_driver_sql("DELETE FROM new_priority")
        return result.rowcount

    # -- reading ------------------------------------------------------------------------

    async def labelled_chunk(
        self, project: ProjectRow, after: int, limit: int, with_inputs: bool
    ) -> list[AnnotationRow]:
        cols = ", i.kind, i.dtype, i.shape, i.data, i.text, i.metadata" if with_inputs else ""
        join = " JOIN item_inputs i ON i.item_id = a.item_id" if with_inputs else ""
        async with self._read() as conn:
            rows = await conn.execute(
                sa.text(
                    f"SELECT a.id, a.item_id, a.labels, a.worker_id, a.created_at{cols} "
                    f"FROM annotations a{join} WHERE a.project_id = :p AND a.id > :c "
                    "ORDER BY a.id LIMIT :n"
                ),
                {"p": project.id, "c": after, "n": limit},
            )
            return [
                AnnotationRow(
                    r.id,
                    r.item_id,
                    json.loads(r.labels),
                    r.worker_id,
                    r.created_at,
                    _input(r) if with_inputs else None,
                )
                for r in rows
            ]

    async def votes(self, project: ProjectRow) -> list[VoteRow]:
        """Every annotation of the project, labels only, with whether its item is done:
        what agreement and consensus are computed from (in one snapshot)."""
        async with self._read(snapshot=True) as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT a.id, a.item_id, a.worker_id, a.labels, a.kind, a.created_at, "
                    f"CASE WHEN it.status = {DONE} THEN 1 ELSE 0 END AS done FROM annotations a "
                    "JOIN items it ON it.id = a.item_id WHERE a.project_id = :p ORDER BY a.id"
                ),
                {"p": project.id},
            )
            return [
                VoteRow(
                    r.id,
                    r.item_id,
                    r.worker_id,
                    tuple(json.loads(r.labels)),
                    r.kind,
                    r.created_at,
                    bool(r.done),
                )
                for r in rows
            ]

    async def item_inputs(self, ids: Sequence[int]) -> dict[int, InputRow]:
        async with self._read() as conn:
            return await self._inputs(conn, ids)

    async def unlabelled_chunk(
        self, project: ProjectRow, after: int, limit: int, ids_only: bool = False
    ) -> list[ItemRow]:
        if ids_only:
            async with self._read() as conn:
                rows = await conn.execute(
                    sa.text(
                        "SELECT id, priority FROM items WHERE project_id = :p AND "
                        f"status <> {DONE} AND id > :c ORDER BY id LIMIT :n"
                    ),
                    {"p": project.id, "c": after, "n": limit},
                )
                return [ItemRow(r.id, None, r.priority) for r in rows]
        async with self._read() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT it.id, it.priority, i.kind, i.dtype, i.shape, i.data, i.text, "
                    "i.metadata FROM items it JOIN item_inputs i ON i.item_id = it.id "
                    f"WHERE it.project_id = :p AND it.status <> {DONE} AND it.id > :c "
                    "ORDER BY it.id LIMIT :n"
                ),
                {"p": project.id, "c": after, "n": limit},
            )
            return [ItemRow(r.id, _input(r), r.priority) for r in rows]

    # -- API tokens -----------------------------------------------------------------------

    async def create_token(
        self, name: str, role: str, projects: list[str] | None, any_worker: bool, digest: str
    ) -> int:
        async with self._write() as conn:
            taken = (
                await conn.execute(sa.text("SELECT id FROM tokens WHERE name = :n"), {"n": name})
            ).first()
            if taken is not None:
                raise AlreadyExists(f"a token named {name!r} exists; revoke it or pick a new name")
            return (
                await conn.execute(
                    sa.text(
                        "INSERT INTO tokens (name, token_hash, role, projects, any_worker, "
                        f"created_at) VALUES (:n, :h, :r, :p, :a, {self._now}) RETURNING id"
                    ),
                    {
                        "n": name,
                        "h": digest,
                        "r": role,
                        "a": any_worker,
                        "p": None if projects is None else json.dumps(sorted(projects)),
                    },
                )
            ).scalar_one()

    async def list_tokens(self) -> list[dict]:
        async with self._read() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT id, name, role, projects, any_worker, created_at, revoked_at "
                    "FROM tokens ORDER BY id"
                )
            )
            return [dict(r._mapping) for r in rows]

    async def revoke_token(self, name: str) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                sa.text(
                    f"UPDATE tokens SET revoked_at = {self._now} WHERE name = :n "
                    "AND revoked_at IS NULL"
                ),
                {"n": name},
            )
            return result.rowcount == 1

    async def find_token(self, digest: str) -> Principal | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT name, role, projects, any_worker FROM tokens "
                        "WHERE token_hash = :h AND revoked_at IS NULL"
                    ),
                    {"h": digest},
                )
            ).first()
        if row is None:
            return None
        projects = None if row.projects is None else frozenset(json.loads(row.projects))
        return Principal(row.name, row.role, projects, bool(row.any_worker))

    # -- training history ---------------------------------------------------------------

    _RUN_COLS = (
        "status, message, score, score_std, n_labels, n_scored, model_version, seconds, "
        "started_at, trainer"
    )

    async def record_run(self, project: ProjectRow, run: TrainingRunRow) -> int:
        async with self._write() as conn:
            return (
                await conn.execute(
                    sa.text(
                        f"INSERT INTO training_runs (project_id, {self._RUN_COLS}, recorded_at) "
                        "VALUES (:p, :status, :message, :score, :score_std, :n_labels, "
                        f":n_scored, :model_version, :seconds, :started_at, :trainer, {self._now}) "
                        "RETURNING id"
                    ),
                    {"p": project.id, **vars(run)},
                )
            ).scalar_one()

    async def list_runs(self, project: ProjectRow) -> list[TrainingRunRow]:
        async with self._read() as conn:
            rows = await conn.execute(
                sa.text(
                    f"SELECT {self._RUN_COLS} FROM training_runs WHERE project_id = :p ORDER BY id"
                ),
                {"p": project.id},
            )
            return [TrainingRunRow(**r._mapping) for r in rows]

    async def progress(self, project: ProjectRow) -> ProgressRow:
        """Exact counts read in one snapshot; nothing is cached."""
        out = ProgressRow()
        async with self._read(snapshot=True) as conn:
            params = {"p": project.id}
            counts = await conn.execute(
                sa.text(
                    "SELECT status, CASE WHEN status = 1 AND lease_expires_at <= "
                    f"{self._now} THEN 1 ELSE 0 END AS expired, COUNT(*) AS n FROM items "
                    "WHERE project_id = :p GROUP BY 1, 2"
                ),
                params,
            )
            for status, expired, n in counts:
                out.total += n
                if status == DONE:
                    out.labelled += n
                elif status == LEASED and not expired:
                    out.leased += n
                else:
                    out.available += n
                    if status == REVIEW:
                        out.in_review += n
            workers = await conn.execute(
                sa.text(
                    "SELECT worker_id, COUNT(*) FROM annotations WHERE project_id = :p "
                    "GROUP BY worker_id"
                ),
                params,
            )
            out.workers = {w: n for w, n in workers}
            out.annotations = sum(out.workers.values())
            labels = await conn.execute(
                sa.text(
                    "SELECT labels, COUNT(*) FROM annotations WHERE project_id = :p GROUP BY labels"
                ),
                params,
            )
            for text, n in labels:
                for label in json.loads(text):
                    out.labels[label] = out.labels.get(label, 0) + n
            out.last_annotation_id = (
                await conn.execute(
                    sa.text("SELECT COALESCE(MAX(id), 0) FROM annotations WHERE project_id = :p"),
                    params,
                )
            ).scalar_one()
        return out

    # -- the web app: instructions, and a returning labeller's own leases -------------------

    async def set_instructions(self, project: ProjectRow, instructions: str) -> ProjectRow:
        """Replace a project's instructions (markdown; empty removes them)."""
        async with self._write() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "UPDATE projects SET instructions = :ins WHERE id = :p "
                        f"RETURNING {self._PROJECT_COLS}"
                    ),
                    {"ins": instructions or None, "p": project.id},
                )
            ).one()
        updated = self._project(row)
        self._projects[updated.name] = updated
        return updated

    async def list_leases(self, project: ProjectRow, worker: str) -> list[ItemRow]:
        """The worker's live leases in the project, oldest lease first, with their tokens and
        inputs (and, for shared items in review, the other annotators' labels). Read-only:
        overlap 1 leases live on the `items` row, overlap > 1 leases in `assignments`."""
        if project.shared:
            sql = (
                "SELECT a.item_id AS id, a.token, a.expires_at, it.priority, it.stage "
                "FROM assignments a JOIN items it ON it.id = a.item_id "
                f"WHERE a.project_id = :p AND a.worker_id = :w AND a.state = {LIVE} "
                f"AND a.expires_at > {self._now} "
                "ORDER BY a.expires_at, it.priority DESC, a.item_id"
            )
        else:
            sql = (
                "SELECT id, lease_token AS token, lease_expires_at AS expires_at, priority, "
                f"stage FROM items WHERE project_id = :p AND status = {LEASED} AND "
                f"leased_by = :w AND lease_expires_at > {self._now} "
                "ORDER BY lease_expires_at, priority DESC, id"
            )
        async with self._read() as conn:
            rows = (await conn.execute(sa.text(sql), {"p": project.id, "w": worker})).all()
            inputs = await self._inputs(conn, [r.id for r in rows])
            others = await self._others(conn, [r.id for r in rows if r.stage == IN_REVIEW])
        return [
            ItemRow(r.id, inputs[r.id], r.priority, r.token, r.expires_at, others.get(r.id, ()))
            for r in rows
        ]
