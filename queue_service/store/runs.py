"""Training history: one row per trainer run, as the trainer reported it (its phases as JSON
text: a list of [name, seconds], read back in order)."""

from __future__ import annotations

import dataclasses
import json

from queue_service.store.database import Database
from queue_service.store.rows import ProjectRow, TrainingRunRow


class Runs:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.admin

    async def record(self, project: ProjectRow, run: TrainingRunRow) -> int:
        async with self.db.write() as conn:
            return (
                await conn.execute(
                    self.q.insert_run,
                    {
                        "p": project.id,
                        **dataclasses.asdict(run),
                        "phases": json.dumps([[n, s] for n, s in run.phases]),
                    },
                )
            ).scalar_one()

    async def all(self, project: ProjectRow, newest: int = 0) -> list[TrainingRunRow]:
        """Every run oldest first, or only the `newest` last ones (still oldest first)."""
        async with self.db.read() as conn:
            if newest:
                rows = list(await conn.execute(self.q.newest_runs, {"p": project.id, "n": newest}))
                rows.reverse()
            else:
                rows = list(await conn.execute(self.q.runs, {"p": project.id}))
            return [
                TrainingRunRow(
                    **{**r._mapping, "phases": [(n, s) for n, s in json.loads(r.phases or "[]")]}
                )
                for r in rows
            ]
