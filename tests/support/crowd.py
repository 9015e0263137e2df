"""A small crowd labelling a project by a plan, and the owner's statistics that plan must
give (worked out here in Python from the plan and the times the database recorded, so the
service's aggregate SQL is checked against an independent computation)."""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from dataclasses import dataclass

from labelgrid import QueueClient
from tests.support.snapshot import query

BREAK_SECONDS = 600.0

# overlap 3, options a/b/c: item -> {worker: label}; item 3 is a three-way tie (no majority)
PLAN_3 = [
    {"ann": "a", "bob": "a", "cat": "a"},
    {"ann": "a", "bob": "a", "cat": "b"},
    {"ann": "b", "bob": "b", "cat": "a"},
    {"ann": "a", "bob": "b", "cat": "c"},
    {"ann": "b", "bob": "b", "cat": "b"},
]
# overlap 1: one label per item
PLAN_1 = [{"ann": "a"}, {"ann": "b"}, {"bob": "a"}, {"ann": "c"}, {"bob": "b"}]


def label_by_plan(
    client: QueueClient, project: str, plan: list[dict[str, str]], pause: float = 0.0
) -> list[int]:
    """Add one text item per plan entry, then let each worker pop and label their share,
    `pause` seconds between labels; returns the item ids (plan order)."""
    ids = client.add_features(project, [f"item {i}" for i in range(len(plan))])
    index = {item_id: i for i, item_id in enumerate(ids)}
    for worker in sorted({w for entry in plan for w in entry}):
        # everything this worker may take now; with overlap 1 the others' items go back
        items = client.pop(project, worker, n=len(plan))
        for item in items:
            label = plan[index[item.id]].get(worker)
            if label is None:
                client.release(project, item, worker)
        for item in items:
            label = plan[index[item.id]].get(worker)
            if label is not None:
                client.submit(project, item, label, worker)
                time.sleep(pause)
    return ids


@dataclass
class Expected:
    labels: int
    active_seconds: float
    labels_per_minute: float | None
    compared: int
    agreed: int


def majority(entry: dict[str, str]) -> str | None:
    counts = Counter(entry.values()).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def _of(project: str) -> str:
    return f"FROM annotations a JOIN projects p ON p.id = a.project_id WHERE p.name = '{project}'"


def expected_workers(
    database_url: str, project: str, plan: list[dict[str, str]]
) -> dict[str, Expected]:
    """Each worker's statistics: counts and agreement from the plan, times from the
    annotations the database recorded."""
    times: dict[str, list[float]] = {}
    for worker, at in query(database_url, f"SELECT a.worker_id, a.created_at {_of(project)}"):
        times.setdefault(worker, []).append(float(at))
    out = {}
    for worker, stamps in times.items():
        stamps.sort()
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        short = [g for g in gaps if g <= BREAK_SECONDS]
        active = sum(short)
        mine = [entry for entry in plan if worker in entry]
        compared = [entry for entry in mine if len(entry) >= 2]
        agreed = sum(majority(entry) == entry[worker] for entry in compared)
        out[worker] = Expected(
            labels=len(mine),
            active_seconds=active,
            labels_per_minute=60 * len(short) / active if active > 0 else None,
            compared=len(compared),
            agreed=agreed,
        )
    return out


def expected_buckets(database_url: str, project: str, width: int) -> dict[int, int]:
    """Labels per bucket start (seconds since the epoch) for buckets `width` seconds wide."""
    counts: Counter[int] = Counter()
    for (at,) in query(database_url, f"SELECT a.created_at {_of(project)}"):
        counts[math.floor(float(at) / width) * width] += 1
    return dict(sorted(counts.items()))
