"""GetProgress: exact counts read in one snapshot; nothing is cached."""

from __future__ import annotations

import json

from queue_service.schema import DONE, LEASED, REVIEW
from queue_service.store.database import Database
from queue_service.store.rows import ProgressRow, ProjectRow


class Progress:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.reads

    async def read(self, project: ProjectRow) -> ProgressRow:
        out = ProgressRow()
        async with self.db.read(snapshot=True) as conn:
            params = {"p": project.id}
            for status, n in await conn.execute(self.q.status_counts, params):
                out.total += n
                if status == DONE:
                    out.labelled += n
                elif status == LEASED:
                    out.leased += n
                else:
                    out.available += n
                    if status == REVIEW:
                        out.in_review += n
            expired = self.q.expired_assignments if project.single_first else self.q.expired_leases
            lapsed = (await conn.execute(expired, params)).scalar_one()
            out.leased -= lapsed  # a lease that is up makes its item available again
            out.available += lapsed
            workers = await conn.execute(self.q.worker_counts, params)
            out.workers = {w: n for w, n in workers}
            out.annotations = sum(out.workers.values())
            for text, n in await conn.execute(self.q.label_counts, params):
                for label in json.loads(text):
                    out.labels[label] = out.labels.get(label, 0) + n
            last = (await conn.execute(self.q.last_ids, params)).one()
            out.last_annotation_id, out.last_training_run_id = last
        return out
