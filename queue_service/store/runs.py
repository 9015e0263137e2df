"""Training history: one row per trainer run, as the trainer reported it."""

from __future__ import annotations

from queue_service.store.database import Database
from queue_service.store.rows import ProjectRow, TrainingRunRow


class Runs:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.admin

    async def record(self, project: ProjectRow, run: TrainingRunRow) -> int:
        async with self.db.write() as conn:
            return (
                await conn.execute(self.q.insert_run, {"p": project.id, **vars(run)})
            ).scalar_one()

    async def all(self, project: ProjectRow) -> list[TrainingRunRow]:
        async with self.db.read() as conn:
            rows = await conn.execute(self.q.runs, {"p": project.id})
            return [TrainingRunRow(**r._mapping) for r in rows]
