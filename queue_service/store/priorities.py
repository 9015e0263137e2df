"""UpdatePriorities: a model's ranking, applied whole or not at all, never from a model
older than the one applied last."""

from __future__ import annotations

import numpy as np

from queue_service.errors import FailedPrecondition, InvalidArgument
from queue_service.store.database import Database
from queue_service.store.rows import ProjectRow


class Priorities:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.projects

    async def update(
        self, project: ProjectRow, version: int, ids: np.ndarray, priorities: np.ndarray
    ) -> tuple[int, int]:
        """Apply priorities from one model version; an older version than the newest applied
        is refused, so priorities never go back to a staler model."""
        async with self.db.write() as conn:
            current = (await conn.execute(self.q.model_version, {"p": project.id})).scalar_one()
            if version < current:
                raise FailedPrecondition(
                    f"model version {version} is older than the applied version {current}; "
                    "priorities from a stale model are not applied"
                )
            if len(ids):
                updated = await self.db.dialect.set_priorities(conn, project.id, ids, priorities)
                if updated != len(ids):
                    raise InvalidArgument(
                        f"{len(ids) - updated} of {len(ids)} ids are not items of project "
                        f"{project.name!r}; nothing was updated"
                    )
            await conn.execute(self.q.set_model_version, {"v": version, "p": project.id})
            return len(ids), version
