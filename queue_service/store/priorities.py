"""UpdatePriorities: a model's ranking, checked whole, then applied in bounded transactions
so that labellers' Pops go on between them, never from a model older than the one applied.

Every id is checked before anything is written (an id not of the project refuses the whole
call). Each transaction re-reads the project's model version under the write lock and takes
the update's version as the applied one, so across all transactions of all concurrent
re-ranks the applied versions never go down: a part of an older model is never written over
a newer one. A re-rank overtaken by a newer model stops with FAILED_PRECONDITION; the parts
it applied before were applied before the newer model's and may be overwritten by it.

Concurrent re-ranks of one project never interleave: after its ids are checked, a re-rank
claims its version (sets the project's model version, refused when a newer one is there
already), then takes the project's re-rank lock (SQLite: an asyncio lock in the process that
owns the file; PostgreSQL: a session-level advisory lock on the re-rank's own connection, so
replicas serialise too) and holds it until it is done or refused. A newer model does not wait
for an older one to finish: its claim raises the model version at once, so the older re-rank
is refused at its next transaction and lets go of the lock, and the newer one is applied
whole after it. Of two re-ranks of the same version, the later one waits for the first to
finish and is then applied whole over it: every item ends with one of the two rankings.

Relabel requests (store/relabels.py) ride on the same call: checked with the ids before
anything is written, applied after the priorities inside the same re-rank lock, in bounded
transactions under the same version rule. In a project where a completed item can get
another label, every call goes through the re-rank (even one with only a version), since
each applied call replaces the project's open relabel requests.

A re-rank that fails or is interrupted part-way (an I/O error, the client cancelling, a
deadlock victim) keeps the transactions it committed: it may be partly applied, and its
version is already the project's. Retrying the same version is safe and completes it.
"""

from __future__ import annotations

import numpy as np

from queue_service.errors import FailedPrecondition, InvalidArgument
from queue_service.store.database import Database
from queue_service.store.relabels import RelabelResult, Relabels
from queue_service.store.rows import ProjectRow


def stale(version: int, current: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"model version {version} is older than the applied version {current}; "
        "priorities from a stale model are not applied"
    )


class Priorities:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.projects
        self.relabels = Relabels(db)

    async def update(
        self,
        project: ProjectRow,
        version: int,
        ids: np.ndarray,
        priorities: np.ndarray,
        relabel_ids: np.ndarray | None = None,
        relabel_priorities: np.ndarray | None = None,
    ) -> tuple[int, int, RelabelResult]:
        """Apply priorities (and relabel requests) from one model version; an older version
        than the newest applied is refused, so priorities never go back to a staler model."""
        if relabel_ids is None or relabel_priorities is None:
            relabel_ids, relabel_priorities = np.empty(0, np.int64), np.empty(0)
        await self.relabels.check(project, relabel_ids)
        relabel = RelabelResult()
        if not len(ids) and not self.relabels.possible(project):  # only the version
            async with self.db.write() as conn:
                current = (await conn.execute(self.q.model_version, {"p": project.id})).scalar_one()
                if version < current:
                    raise stale(version, current)
                await conn.execute(self.q.set_model_version, {"v": version, "p": project.id})
            return 0, version, relabel
        async with self.db.read() as conn:  # refuse a stale model before staging anything
            current = (await conn.execute(self.q.model_version, {"p": project.id})).scalar_one()
        if version < current:
            raise stale(version, current)
        async with self.db.dialect.rerank(project.id, ids, priorities, self.q) as rerank:
            if rerank.matched != len(ids):
                raise InvalidArgument(
                    f"{len(ids) - rerank.matched} of {len(ids)} ids are not items of project "
                    f"{project.name!r}; nothing was updated"
                )
            newer = await rerank.claim(version)  # the version is the project's: older ones stop
            if newer is not None:
                raise stale(version, newer)
            async with rerank.exclusive():
                while not rerank.done:
                    newer = await rerank.step(version)
                    if newer is not None:
                        raise stale(version, newer)
                relabel, newer = await self.relabels.apply(
                    project, version, relabel_ids, relabel_priorities
                )
                if newer is not None:
                    raise stale(version, newer)
        return len(ids), version, relabel
