"""Annotator-aware routing (issue 18): each worker's reliability, estimated by Dawid-Skene
from a project's labels, decides whether items in an extra round go to them.

The estimate: Dawid-Skene posteriors of every item with two ordinary labels or more (final
labels, an adjudicator's or imported ones, take no part); a worker's reliability is the mean
posterior probability of the labels that worker gave on those items (for a multi-label
project, averaged over the labels' yes/no questions): about the share of their labels that
are right, when the crowd as a whole is better than chance. A worker with fewer than
MIN_COMPARED such labels gets no estimate (and is never held back).

The rule, applied by Pop (store/shared.py): in a project with `reliability_cut` > 0, a worker
whose stored estimate is below the cut is served items in an extra round (relabel requests,
and items asking one more label after a disagreement) only when no item in its first round
is left for them; the other workers get them first, as before.

Cost and replicas: Pop reads one row (a primary-key lookup). The estimate is recomputed off
the Pop path by `Refresher`: a Submit or Undo marks its project, and each marked project is
recomputed at most once every `seconds` (LABELGRID_RELIABILITY_SECONDS), reading the
project's labels once and running EM in a thread. The estimates are stored per (project,
worker) in the database, so every replica routes by the same figures; each replica
recomputes for the labels it took itself, so with several replicas a project may be
recomputed by each (the same result, from all the labels), and an estimate from an older
snapshot never overwrites a newer one (`upto`, the newest annotation id it saw).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import numpy as np

from queue_service.consensus import dawid_skene_posteriors
from queue_service.crowd import votes_of
from queue_service.store import ProjectRow, Store, VoteTable

log = logging.getLogger("labelgrid.queue")

#: labels on items with several labels a worker needs before it has an estimate
MIN_COMPARED = 3


@dataclass(frozen=True)
class Reliability:
    worker: str
    reliability: float
    compared: int


def estimate(project: ProjectRow, table: VoteTable) -> list[Reliability]:
    """Every worker's Dawid-Skene reliability (see the module), those with at least
    MIN_COMPARED labels on items with several."""
    votes = votes_of(project, table)
    if not len(votes.item):
        return []
    per_item = np.bincount(votes.item, minlength=votes.n_items)
    shared = per_item[votes.item] >= 2
    questions = votes.questions()
    right = np.zeros(len(votes.item))
    for _, codes, k in questions:
        post = dawid_skene_posteriors(votes, codes, k)
        right += post[votes.item, codes]
    right /= len(questions)
    out = []
    for w, name in enumerate(votes.workers):
        mine = shared & (votes.worker == w)
        n = int(mine.sum())
        if n >= MIN_COMPARED:
            out.append(Reliability(name, float(right[mine].mean()), n))
    return out


class Refresher:
    """Recomputes the reliability of the projects whose labels changed, coalesced: at most
    once per project every `seconds`, in the background (never on the Pop path)."""

    def __init__(self, store: Store, seconds: float) -> None:
        self.store = store
        self.seconds = seconds
        self._due: dict[int, ProjectRow] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.runs = 0  # for tests and logs

    def touched(self, project: ProjectRow) -> None:
        """The project's labels changed (a Submit or an Undo through this replica)."""
        if not project.reliability_cut or not project.shared:
            return
        self._due[project.id] = project
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="reliability-refresher"
            )
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.seconds)  # labels arriving meanwhile: one computation
            due, self._due = self._due, {}
            for project in due.values():
                try:
                    await self.refresh(project)
                except Exception as exc:  # the next label tries again; serving goes on
                    log.warning(
                        "reliability not recomputed",
                        extra={"project": project.name, "error": f"{type(exc).__name__}: {exc}"},
                    )

    async def refresh(self, project: ProjectRow) -> list[Reliability]:
        """Recompute and store the project's estimates now."""
        table = await self.store.votes(project)
        upto = int(table.id.max()) if len(table) else 0
        found = await asyncio.to_thread(estimate, project, table)
        await self.store.save_reliability(
            project, [(r.worker, r.reliability, r.compared) for r in found], upto
        )
        self.runs += 1
        return found

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
