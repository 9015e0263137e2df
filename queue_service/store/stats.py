"""The owner's statistics: per-worker activity and labels over time, each one aggregate
query, so the cost is one scan of a project's annotations and the reply is a row per worker
or per time bucket (never per annotation)."""

from __future__ import annotations

from queue_service.store.database import Database
from queue_service.store.ingest import IMPORT_WORKER
from queue_service.store.rows import ProjectRow, ProjectStatsRow, WorkerActivityRow

#: a gap between two labels longer than this is a break, not labelling time
BREAK_SECONDS = 600.0
#: bucket widths GetProjectStats picks from (seconds), smallest first
BUCKET_WIDTHS = (1, 5, 10, 30, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800)
MAX_BUCKETS = 60


def bucket_width(span_seconds: float) -> int:
    """The smallest width that covers `span_seconds` in at most MAX_BUCKETS buckets."""
    for width in BUCKET_WIDTHS:
        if span_seconds / width < MAX_BUCKETS:
            return width
    return BUCKET_WIDTHS[-1]


class Stats:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.stats

    async def read(self, project: ProjectRow, bucket_seconds: int = 0) -> ProjectStatsRow:
        params = {"p": project.id}
        async with self.db.read(snapshot=True) as conn:
            if not bucket_seconds:
                first, last = (await conn.execute(self.q.span, params)).one()
                bucket_seconds = bucket_width((last - first) if first is not None else 0.0)
            buckets = [
                (float(b) * bucket_seconds, int(n))
                for b, n in await conn.execute(self.q.buckets, {**params, "w": bucket_seconds})
            ]
            workers = {
                w: WorkerActivityRow(w, int(n), float(a), float(b), float(s), int(g))
                for w, n, a, b, s, g in await conn.execute(
                    self.q.activity, {**params, "brk": BREAK_SECONDS}
                )
            }
            # without overlap no item has two ordinary labels: nothing to compare
            agreement = (
                await conn.execute(self.q.agreement, {**params, "imp": IMPORT_WORKER})
                if project.max_overlap > 1
                else ()
            )
            for w, compared, agreed in agreement:
                if w in workers:
                    workers[w].compared = int(compared)
                    workers[w].agreed = int(agreed or 0)
        return ProjectStatsRow(list(workers.values()), buckets, bucket_seconds)
